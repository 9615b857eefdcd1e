"""What ``unetkit predict`` writes: label images in the user's own values (same format as the input),
probability maps (float16 TIFF or npz), overlays; and the band sinks for images larger than memory.
The file names are :mod:`unetkit.io.naming`'s (:func:`~unetkit.io.naming.prediction_paths`).

Every file is written to a temporary name and renamed when complete, so a killed run never leaves
a half-written output and a rerun can skip the outputs that exist.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import ConfigError
from ..io import ImageMeta, write_image
from ..io.display import to_display_rgb
from ..io.memmap import release_pages
from ..io.naming import NPZ_KEY
from ..utils import atomic_path, output_error, temp_path
from .large import BandSink

OVERLAY_COLOURS = np.array(
    [
        [0, 0, 0],
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
    ],
    np.uint8,
)


def decode_labels(indices: np.ndarray, label_map) -> np.ndarray:
    """Class indices → ``(C, *spatial)`` label image in the user's values (C = 3 for colour maps)."""
    if label_map is None:
        return indices.astype(np.uint8 if indices.max(initial=0) < 256 else np.uint16)[None]
    return label_map.decode(indices)


def write_labels(path: Path, labels: np.ndarray, meta: Optional[ImageMeta] = None) -> None:
    """Write a ``(C, *spatial)`` label image, keeping spacing/affine from the input's ``meta``."""
    if labels.dtype.kind not in "ub" or (
        path.suffix.lower() == ".png" and labels.dtype.itemsize > 2
    ):
        labels = labels.astype(np.uint16 if labels.max(initial=0) > 255 else np.uint8)
    write_image(path, labels, _meta_for(meta, path))


def _meta_for(meta: Optional[ImageMeta], path: Path) -> Optional[ImageMeta]:
    if meta is None:
        return None
    same_format = meta.format == (
        "nifti"
        if path.name.lower().endswith((".nii", ".nii.gz"))
        else "tiff"
        if path.suffix.lower() in (".tif", ".tiff")
        else "png"
    )
    return meta if same_format else None


def write_probabilities(path: Path, probs: np.ndarray) -> None:
    """``(K, *spatial)`` probabilities as float16 TIFF (planar) or compressed ``.npz`` (the array
    :data:`~unetkit.io.naming.NPZ_KEY`, ``probabilities``)."""
    probs = probs.astype(np.float16)
    if path.suffix == ".npz":
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **{NPZ_KEY: probs})
    else:
        import tifffile

        with atomic_path(path) as tmp:
            tifffile.imwrite(
                tmp,
                probs,
                compression="zlib",
                metadata={"axes": "CYX" if probs.ndim == 3 else "CZYX"},
            )


def overlay_image(image: np.ndarray, indices: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """The image (:func:`~unetkit.io.display.to_display_rgb`) with each foreground class tinted and
    its outline drawn (2D; 3D: middle slice)."""
    from scipy import ndimage

    if indices.ndim == 3:
        mid = indices.shape[0] // 2
        image, indices = image[:, mid], indices[mid]
    rgb = to_display_rgb(image).astype(np.float32)
    colours = OVERLAY_COLOURS[np.minimum(indices, len(OVERLAY_COLOURS) - 1)].astype(np.float32)
    fg = indices > 0
    rgb[fg] = (1 - alpha) * rgb[fg] + alpha * colours[fg]
    edge = fg & ~ndimage.binary_erosion(fg, iterations=1, border_value=1)
    rgb[edge] = colours[edge]
    return rgb.astype(np.uint8)


def write_overlay(path: Path, image: np.ndarray, indices: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(overlay_image(image, indices)).save(tmp, format="PNG")


def _reserve(path: Path) -> None:
    """Allocate the disk blocks of a (sparse) memory-mapped file now: on a full disk this raises
    ENOSPC here, instead of a SIGBUS that kills the process when a page is first written."""
    import errno
    import os

    if not hasattr(os, "posix_fallocate"):
        return
    with open(path, "r+b") as fh:
        try:
            os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise


class TiffBandSink(BandSink):
    """Writes labels (user values, uint8/16) and optional float16 probabilities into uncompressed
    TIFF memory maps band by band, releasing pages as it goes; files appear complete or not at all."""

    def __init__(
        self,
        shape,
        num_classes: int,
        label_map,
        labels_path: Path,
        prob_path: Optional[Path] = None,
        source: Optional[np.ndarray] = None,
    ):
        import tifffile

        if label_map is not None and getattr(label_map, "kind", "labels") == "colors":
            raise ConfigError(
                "colour label maps cannot be written band by band; predict a smaller image"
            )
        self.label_map, self.source = label_map, source
        dtype = np.dtype(label_map.dtype) if label_map is not None else np.uint8
        if prob_path is not None and prob_path.suffix != ".tif":
            raise ConfigError(
                "band-by-band prediction writes probabilities as TIFF (--probabilities tiff)"
            )
        self.labels = self.probs = None
        self._paths = [
            (labels_path, temp_path(labels_path))
        ]  # hidden temporary names, as atomic_path's
        try:
            self.labels = tifffile.memmap(
                self._paths[0][1], shape=tuple(shape), dtype=dtype, photometric="minisblack"
            )
            if prob_path is not None:
                self._paths.append((prob_path, temp_path(prob_path)))
                k = max(num_classes, 2)
                self.probs = tifffile.memmap(
                    self._paths[1][1],
                    shape=(k, *shape),
                    dtype=np.float16,
                    photometric="minisblack",
                    planarconfig="separate",
                )
            for _, partial in self._paths:
                _reserve(partial)
        except OSError as exc:
            self.abort()
            raise output_error(exc, labels_path) from exc

    def write(self, y0: int, probs: np.ndarray) -> None:
        idx = probs.argmax(axis=0)
        values = decode_labels(idx, self.label_map)[0]
        self.labels[y0 : y0 + values.shape[0]] = values
        release_pages(self.labels)
        if self.probs is not None:
            self.probs[:, y0 : y0 + probs.shape[1]] = probs.astype(np.float16)
            release_pages(self.probs)
        if self.source is not None:
            release_pages(self.source)

    def close(self) -> None:
        import os

        for arr in (self.labels, self.probs):
            if arr is not None:
                arr.flush()
        self.labels = self.probs = None
        try:
            for final, partial in self._paths:
                os.replace(partial, final)
        except OSError as exc:
            self.abort()
            raise output_error(exc, final) from exc

    def abort(self) -> None:
        """Drop the memory maps and delete the unfinished files (after a failure or an interrupt)."""
        self.labels = self.probs = None
        for _, partial in self._paths:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)

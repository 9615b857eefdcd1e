"""What ``unetkit predict`` writes: label images in the user's own values (same format as the input),
probability maps (float32 TIFF or float16 npz), overlays; and the band sinks for images larger than
memory. The file names are :mod:`unetkit.io.naming`'s (:func:`~unetkit.io.naming.prediction_paths`).

TIFF outputs are ImageJ hyperstacks where the data allows
(:func:`~unetkit.io.writers.imagej_compatible`), calibrated with the input's pixel size and unit, so
Fiji opens them as they are: labels as integer greyscale images shown from 0 to the highest label,
probabilities as one float32 channel per class shown from 0 to 1 (Fiji cannot open float16).

Every file is written to a temporary name and renamed when complete, so a killed run never leaves
a half-written output and a rerun can skip the outputs that exist.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import ConfigError
from ..io import ImageMeta, write_image
from ..io.display import to_display_rgb
from ..io.memmap import release_pages
from ..io.naming import NPZ_KEY
from ..io.readers import split_suffix
from ..io.writers import imagej_compatible, tiff_calibration
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


def write_labels(
    path: Path,
    labels: np.ndarray,
    meta: Optional[ImageMeta] = None,
    palette: Optional[Sequence[int]] = None,
) -> None:
    """Write a ``(C, *spatial)`` label image, keeping spacing/affine from the input's ``meta``.

    Labels are unsigned integers; a TIFF shows them from 0 to the highest label (a 0/1 mask is
    visible in Fiji, not black); colour labels (3 channels, a colour label map) are RGB.
    ``palette`` (the label map's, from palette-mode masks): a PNG of 8-bit labels is written as a
    palette image with it, as the masks were (shown in their colours, not near-black indices).
    """
    if labels.dtype.kind not in "ub" or (
        path.suffix.lower() == ".png" and labels.dtype.itemsize > 2
    ):
        labels = labels.astype(np.uint16 if labels.max(initial=0) > 255 else np.uint8)
    meta = _meta_for(meta, path)
    png = path.suffix.lower() == ".png"
    if palette and png and labels.shape[0] == 1 and labels.dtype == np.uint8:
        meta = replace(meta, palette=list(palette)) if meta else ImageMeta(palette=list(palette))
    if labels.shape[0] == 3 and meta is not None:
        meta = replace(meta, channel_axis="S")  # decoded colours are samples, as in the masks
    highest = int(labels.max(initial=0))
    write_image(path, labels, meta, display_range=(0, max(highest, 1)))


def _meta_for(meta: Optional[ImageMeta], path: Path) -> Optional[ImageMeta]:
    """``meta`` when it describes the output's format (NRRD, MetaImage and DICOM share one
    geometry, so a DICOM series' labels keep it in ``.nrrd``), else ``None``."""
    from ..io.itk import GEOMETRY_FORMATS

    if meta is None:
        return None
    out_format = (
        "nifti"
        if path.name.lower().endswith((".nii", ".nii.gz"))
        else "tiff"
        if path.suffix.lower() in (".tif", ".tiff")
        else "zarr"
        if path.suffix.lower() == ".zarr"
        else "nrrd"
        if path.suffix.lower() in (".nrrd", ".mha")
        else "png"
    )
    same_format = meta.format == out_format or (
        meta.format in GEOMETRY_FORMATS and out_format == "nrrd"
    )
    return meta if same_format else None


def class_names(label_map, num_classes: int) -> list[str]:
    """``["class 0 (value 0)", "class 1 (value 255)"]``: what each probability channel is, in
    the user's mask values (``colour (r, g, b)``); ``class k`` alone without a label map."""
    values = list(label_map.values) if label_map is not None else []
    if len(values) != num_classes:
        return [f"class {k}" for k in range(num_classes)]
    return [
        f"class {k} ({'colour' if isinstance(v, (tuple, list)) else 'value'} {v})"
        for k, v in enumerate(values)
    ]


def write_probabilities(
    path: Path, probs: np.ndarray, meta: Optional[ImageMeta] = None, label_map=None
) -> None:
    """``(K, *spatial)`` probabilities as a float32 TIFF or a compressed float16 ``.npz``.

    The TIFF (zlib) is an ImageJ hyperstack with one channel per class, the pixel size and unit of
    the input's ``meta`` (any format: only spacing and unit are kept) and display range 0..1, each
    channel labelled with its class and mask value (:func:`class_names`, of ``label_map``); the
    ``.npz`` holds the array :data:`~unetkit.io.naming.NPZ_KEY` (``probabilities``), no calibration.
    """
    if path.suffix == ".npz":
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **{NPZ_KEY: probs.astype(np.float16)})
    else:
        calibration = (
            None
            if meta is None
            else ImageMeta(spacing=meta.spacing, spacing_unit=meta.spacing_unit)
        )
        write_image(
            path,
            probs.astype(np.float32),
            calibration,
            display_range=(0.0, 1.0),
            channel_names=class_names(label_map, probs.shape[0]),
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

    if not hasattr(os, "posix_fallocate") or path.is_dir():  # a zarr store allocates per chunk
        return
    with open(path, "r+b") as fh:
        try:
            os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise


def _calibrated_memmap(
    path: Path,
    shape: tuple,
    dtype,
    spacing,
    unit,
    display_range,
    channels: bool = False,
    channel_names: Optional[Sequence[str]] = None,
) -> np.memmap:
    """A new uncompressed TIFF memory map of ``shape`` (``(H, W)``, ``(D, H, W)``, with
    ``channels`` ``(C, H, W)`` or ImageJ's ``(D, C, H, W)`` for a volume), calibrated by
    :func:`~unetkit.io.writers.tiff_calibration`: an ImageJ hyperstack when the data fits one."""
    import tifffile

    dtype = np.dtype(dtype)
    imagej = imagej_compatible(dtype, int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
    spatial = "ZYX" if len(shape) - channels == 3 else "YX"
    axes = ("ZCYX" if spatial == "ZYX" else "CYX") if channels else spatial
    kwargs = tiff_calibration(
        axes,
        shape,
        spacing,
        unit,
        imagej=imagej,
        display_range=display_range if imagej else None,
        channel_names=channel_names,
    )
    return tifffile.memmap(path, shape=shape, dtype=dtype, photometric="minisblack", **kwargs)


class TiffBandSink(BandSink):
    """Writes labels (user values, uint8/16) and optional float32 probabilities into uncompressed
    TIFF memory maps band by band, releasing pages as it goes; files appear complete or not at all.
    Labels whose path ends in ``.zarr`` go into an OME-Zarr label image instead (chunk-compressed,
    :func:`~unetkit.io.ome_zarr.create_ome_zarr`).

    With ``levels`` > 1 the labels are a pyramid (:mod:`unetkit.io.pyramid`): an OME-Zarr store gets
    its reduced levels on :meth:`close`; a TIFF is filled as a hidden memory map and on
    :meth:`close` converted tile by tile into a tiled, compressed, pyramidal OME-TIFF at
    ``labels_path`` (``.ome.tif``), the memory map then deleted.

    ``tifffile.memmap`` writes ImageJ hyperstacks, so each file is calibrated as
    :func:`write_labels` / :func:`write_probabilities` write theirs (pixel size from ``spacing`` and
    ``spacing_unit``, the source image's; display ranges), only uncompressed (a memory map cannot
    be compressed). A file over 4 GB cannot be ImageJ's: it is a BigTIFF with unetkit's JSON
    description and the resolution tags, which Fiji opens through Bio-Formats.
    """

    def __init__(
        self,
        shape,
        num_classes: int,
        label_map,
        labels_path: Path,
        prob_path: Optional[Path] = None,
        source: Optional[np.ndarray] = None,
        spacing: Optional[tuple] = None,
        spacing_unit: Optional[str] = None,
        levels: int = 1,
    ):
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
        self.levels, self.spacing, self.spacing_unit = int(levels), spacing, spacing_unit
        filled = labels_path  # a pyramidal TIFF is filled as a plain one, converted on close
        if self.levels > 1 and not labels_path.name.lower().endswith(".zarr"):
            filled = labels_path.with_name(split_suffix(labels_path)[0] + ".tif")
        self._paths = [(labels_path, temp_path(filled))]  # hidden temporary names, as atomic_path's
        shape = tuple(int(n) for n in shape)
        values = label_map.values if label_map is not None else range(max(num_classes, 2))
        try:
            if labels_path.name.lower().endswith(".zarr"):  # an OME-Zarr label image, chunk-wise
                from ..io.ome_zarr import create_ome_zarr

                self.labels = create_ome_zarr(
                    self._paths[0][1],
                    shape,
                    dtype,
                    channels=False,
                    spacing=spacing,
                    unit=spacing_unit,
                    label=True,
                )
            else:
                self.labels = _calibrated_memmap(
                    self._paths[0][1], shape, dtype, spacing, spacing_unit, (0, max(max(values), 1))
                )
            if prob_path is not None:
                self._paths.append((prob_path, temp_path(prob_path)))
                k = max(num_classes, 2)
                # a volume's channels go after its depth, in ImageJ's order (Z, C, Y, X)
                prob_shape = (k, *shape) if len(shape) == 2 else (shape[0], k, *shape[1:])
                self.probs = _calibrated_memmap(
                    self._paths[1][1],
                    prob_shape,
                    np.float32,
                    spacing,
                    spacing_unit,
                    (0.0, 1.0),
                    channels=True,
                    channel_names=class_names(label_map, k),
                )
            for _, partial in self._paths:
                _reserve(partial)
        except OSError as exc:
            self.abort()
            raise output_error(exc, labels_path) from exc

    #: :func:`~unetkit.inference.large.predict_large` may hand this sink windows of rows (y/x
    #: blocks of a volume's slabs): the outputs are memory maps or zarr arrays, written anywhere
    windows = True

    def write(self, y0: int, probs: np.ndarray, window: Optional[tuple] = None) -> None:
        idx = probs.argmax(axis=0)
        values = decode_labels(idx, self.label_map)[0]
        rest = tuple(slice(a, b) for a, b in window) if window is not None else ()
        self.labels[(slice(y0, y0 + values.shape[0]), *rest)] = values
        release_pages(self.labels)
        if self.probs is not None:
            rows = slice(y0, y0 + probs.shape[1])
            if probs.ndim == 3:
                self.probs[(slice(None), rows, *rest)] = probs
            else:  # (K, slices, H, W) into the (D, K, H, W) file
                self.probs[(rows, slice(None), *rest)] = np.moveaxis(probs, 0, 1)
            release_pages(self.probs)
        if self.source is not None:
            release_pages(self.source)

    def write_labels(self, y0: int, values: np.ndarray) -> None:
        """Rows ``y0 …`` of finished label values (the user's, decoded): how the labels a cluster
        predicted block by block into a zarr store are copied into a TIFF."""
        self.labels[y0 : y0 + values.shape[0]] = values
        release_pages(self.labels)

    def close(self) -> None:
        import os

        from ..errors import OutputError

        for arr in (self.labels, self.probs):
            if arr is not None and hasattr(arr, "flush"):  # memory maps; zarr writes as it goes
                arr.flush()
        final = self._paths[0][0]
        try:
            if self.levels > 1:
                self._finish_pyramid()
            self.labels = self.probs = None
            for final, partial in self._paths:
                if partial.is_dir() and final.exists():  # --overwrite of a zarr store
                    import shutil

                    shutil.rmtree(final)
                os.replace(partial, final)
        except OutputError:
            self.abort()
            raise
        except OSError as exc:
            self.abort()
            raise output_error(exc, final) from exc

    def _finish_pyramid(self) -> None:
        """Add the reduced levels: into the OME-Zarr store, or by writing the final pyramidal
        OME-TIFF from the filled memory map (which is then deleted, its entry done)."""
        from ..io.pyramid import add_ome_zarr_levels, write_pyramidal_ome_tiff

        final, partial = self._paths[0]
        if partial.is_dir():
            add_ome_zarr_levels(partial, self.levels)
            return
        write_pyramidal_ome_tiff(
            final, self.labels, self.spacing, self.spacing_unit, levels=self.levels
        )
        self.labels = None
        partial.unlink()
        self._paths.pop(0)

    def abort(self) -> None:
        """Drop the memory maps and delete the unfinished files (after a failure or an interrupt)."""
        self.labels = self.probs = None
        import shutil

        for _, partial in self._paths:
            with contextlib.suppress(OSError):
                if partial.is_dir():
                    shutil.rmtree(partial)
                else:
                    partial.unlink(missing_ok=True)

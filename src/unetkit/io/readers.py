"""Read PNG/JPEG/BMP/GIF, TIFF, NIfTI, NRRD, MetaImage files and DICOM series into channel-first
arrays plus their metadata.

Every reader returns ``(array, meta)`` with ``array`` of shape ``(C, *spatial)``: ``(C, H, W)`` for
2D images and ``(C, D, H, W)`` for 3D volumes. The axis order is fixed here, once; nothing later
guesses it. The on-disk sample type is kept (``uint8``, ``uint16``, ``int16``, ``float32`` …): a
16-bit image keeps its full range and is never divided by 255.

Axis rules, format by format:

* **PNG/JPEG/BMP/GIF** (Pillow), always 2D. ``L``/``I;16``/``I``/``F`` → 1 channel; ``RGB`` → 3;
  ``P`` (palette) → 1 channel of palette *indices*, the palette goes to ``meta.palette``;
  ``1`` (1-bit) → ``uint8`` 0/1. An alpha channel (``RGBA``, ``LA``, ``PA``) is **dropped** unless
  ``keep_alpha=True`` (then ``RGBA`` → 4 channels, ``LA`` → 2); ``meta.alpha_dropped`` records it.
  Other modes (``CMYK``, ``YCbCr`` …) are converted to RGB. Spacing is not read (PNG's pixels per
  metre are almost always a screen DPI). A 16-bit PNG that Pillow opens as ``I`` is returned as
  ``uint16`` (PNG stores at most 16 bits). A 16-bit *colour* PNG (48-bit RGB, 64-bit RGBA, 32-bit
  grey + alpha), which Pillow alone reduces to 8 bits, is read at full depth as ``uint16``
  (``meta.mode`` is then Pillow's raw mode, ``"RGB;16B"``, ``"RGBA;16B"`` or ``"LA;16B"``); the
  same alpha rule applies.
* **TIFF** (tifffile), first series of the file. The axes string tifffile derives from ImageJ,
  OME or unetkit's own metadata decides: ``Y``, ``X`` spatial; ``Z`` depth; ``C`` and ``S``
  (samples, e.g. RGB) channels; pages with no stated meaning (``I``, ``Q``) are **depth** (a plain
  multi-page TIFF is a 3D stack, never guessed to be channels); any other axis (``T`` time …) must
  have length 1. So ``YX`` → (1, H, W), ``YXS`` → (3, H, W), ``IYX``/``ZYX`` → (1, D, H, W),
  ``CYX`` → (C, H, W), ``ZCYX`` → (C, D, H, W). Pass ``axes="CYX"`` to override what the file
  says. Alpha follows the PNG rule: samples that the file's ``ExtraSamples`` tag marks as alpha
  (RGBA: 4 samples, grey + alpha: 2) are **dropped** unless ``keep_alpha=True``
  (``meta.alpha_dropped`` records it); unspecified extra samples are kept as channels.
  Spacing: unetkit's metadata, else ImageJ (``spacing`` for Z, resolution tags for Y/X,
  ``unit``, whose ``\\uXXXX`` escapes ImageJ writes for ``µm`` are decoded), else OME
  ``PhysicalSize*``, else resolution tags in centimetres, or tifffile's millimetres and
  micrometres (converted to µm); a resolution in inches
  (the 72-dpi default of most software) is treated as unknown, and so is an ImageJ file with no
  ``unit`` line, no Z ``spacing`` and a pixel size of 1 (ImageJ's own uncalibrated images; its unit
  ``pixel`` gives the spacing with no unit). Units are unetkit's short names: ``um`` for
  ``micron``/``µm``.
* **NIfTI** (nibabel). The file's voxel axes (i, j, k) = (X, Y, Z) are reversed, so a 3D
  volume comes back as ``(1, Z, Y, X)`` = ``(1, D, H, W)`` (SimpleITK's and nnU-Net's order) and a
  4D one ``(X, Y, Z, C)`` as ``(C, D, H, W)``; a 2D file ``(X, Y)`` as ``(1, H, W)``. A file with a
  single slice, ``(X, Y, 1)`` (or ``(X, Y, 1, C)``), is **2D**: ``(1, H, W)`` (``(C, H, W)``), the
  usual way 2D data is stored for nnU-Net; ``meta.axes`` stays ``"XYZ"`` (``"XYZC"``), ``spacing``
  is ``(dy, dx)`` and ``affine`` the file's, so :func:`~unetkit.io.write_image` writes the slice
  back as ``(X, Y, 1)``. ``spacing``
  is the header zooms in the same reversed order; ``affine`` is the file's 4×4 voxel-to-world
  matrix for the *file's* (i, j, k) order, kept so that writing puts the volume back in place.
  Data with a scale factor (``scl_slope``/``scl_inter``) is scaled to float; otherwise the stored
  type is kept.
* **zarr** (``.zarr``/``.ome.zarr`` folders, zarr v2 or v3): a plain array is channel first like
  ``.npy`` (``(H, W)``, ``(C, H, W)``, ``(C, D, H, W)``); an OME-Zarr image group (NGFF 0.4/0.5
  ``multiscales``) is read at full resolution with its named axes (``t`` of length 1, a ``z`` of
  length 1 dropped) and spacing from the scale transformation. Read through
  :func:`unetkit.io.lazy.open_lazy`, which reads any region of it (and other levels) on access.
* **NRRD** (``.nrrd``/``.nhdr``), **MetaImage** (``.mha``/``.mhd``) and **DICOM series** (a folder
  of slices) through SimpleITK (:mod:`unetkit.io.itk`, the optional extra ``unetkit[medical]``):
  ``(1, D, H, W)`` from ITK's ``(z, y, x)`` array, vector pixels as channels ``(C, D, H, W)``,
  2D files ``(C, H, W)``; ``spacing`` ``(dz, dy, dx)`` in ``mm``, plus ``origin`` and
  ``direction`` (ITK's LPS world geometry; how they relate to a NIfTI affine is in
  :mod:`unetkit.io.itk`). A DICOM series folder (:func:`~unetkit.io.itk.is_dicom_folder`) is one
  image named by the whole folder name: :func:`list_images` lists it like a file, so a dataset's
  ``images/`` may hold one series folder per case; it must hold one evenly spaced series.

Every unusable file raises :class:`~unetkit.errors.DataError` with a one-line message that starts
with the path. NaN/inf values in float data are *not* an error here (``check-data`` reports them).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..errors import ConfigError, DataError
from .meta import ImageMeta
from .tiff_meta import _tiff_alpha_samples, _tiff_spacing

PathLike = Union[str, Path]


def _drop_tifffile_no_pages(record: logging.LogRecord) -> bool:
    """tifffile logs "contains no pages" each time it opens such a file (four times before
    unetkit's own one-line error says the same); the filter drops that message only."""
    return "contains no pages" not in record.getMessage()


def _drop_nibabel_zero_pixdim(record: logging.LogRecord) -> bool:
    """nibabel logs "pixdim[1,2,3] should be non-zero; setting 0 dims to 1" as it loads such a
    header, above unetkit's own error for it (:func:`_nifti_geometry_problem`); dropped."""
    return "should be non-zero" not in record.getMessage()


logging.getLogger("tifffile").addFilter(_drop_tifffile_no_pages)
logging.getLogger("nibabel.global").addFilter(_drop_nibabel_zero_pixdim)

#: File suffix → format name. Multi-part suffixes are matched first.
FORMATS = {
    ".nii.gz": "nifti",
    ".nii": "nifti",
    ".ome.tiff": "tiff",
    ".ome.tif": "tiff",
    ".tiff": "tiff",
    ".tif": "tiff",
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".bmp": "bmp",
    ".gif": "gif",
    ".npy": "npy",
    ".ome.zarr": "zarr",
    ".zarr": "zarr",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".mha": "metaimage",
    ".mhd": "metaimage",
}
#: Suffixes :func:`read_image` accepts (lower case).
SUPPORTED_SUFFIXES = tuple(FORMATS)

_PIL_FORMATS = ("png", "jpeg", "bmp", "gif")


def split_suffix(path: PathLike) -> tuple[str, str]:
    """``("case_01", ".nii.gz")`` for ``case_01.nii.gz``; the suffix is lower-cased.

    Known multi-part suffixes (``.nii.gz``, ``.ome.tif``) count as one; an unknown suffix is the
    last dot-part (``("notes", ".txt")``). An existing folder other than a ``.zarr`` store has no
    suffix: its stem is its whole name (a DICOM series folder ``3.000000-CT-90451`` is the case
    ``"3.000000-CT-90451"``).
    """
    name = Path(path).name
    lower = name.lower()
    folder = Path(path).is_dir()
    for suffix in FORMATS:
        if lower.endswith(suffix) and len(name) > len(suffix):
            if folder and FORMATS[suffix] != "zarr":
                break
            return name[: -len(suffix)], suffix
    if folder:
        return name, ""
    p = Path(name)
    return p.stem, p.suffix.lower()


def image_format(path: PathLike) -> str:
    """The format name of ``path`` from its suffix; ``"dicom"`` for a DICOM series folder.

    Raises:
        DataError: the suffix is not a supported image format, or ``path`` is a folder that is
            neither a zarr store nor a DICOM series.
    """
    from .itk import DICOM, is_dicom_folder

    suffix = split_suffix(path)[1]
    if FORMATS.get(suffix) != "zarr" and is_dicom_folder(path):
        return DICOM
    if suffix not in FORMATS and Path(path).is_dir():
        raise DataError(
            "is a folder, not an image file (nor a zarr store, nor a DICOM series: no *.dcm file "
            "or file with the DICOM marker in it)",
            path,
        )
    if suffix not in FORMATS:
        shown = f"'{suffix}'" if suffix else "(none)"
        raise DataError(
            f"unsupported file type {shown}; supported: {', '.join(SUPPORTED_SUFFIXES)}", path
        )
    return FORMATS[suffix]


def is_image_file(path: PathLike) -> bool:
    """``True`` when the suffix of ``path`` is one :func:`read_image` reads, or ``path`` is a DICOM
    series folder."""
    from .itk import is_dicom_folder

    return split_suffix(path)[1] in FORMATS or is_dicom_folder(path)


#: Files that operating systems leave in image folders; never data, never reported.
JUNK_NAMES = frozenset({"Thumbs.db", "desktop.ini"})


@dataclass
class FolderListing:
    """The files of one folder, sorted by name: image files grouped by stem, and the rest.

    Attributes:
        by_stem: ``{stem: [paths]}`` of the image files (more than one path = a duplicate stem).
        others: entries that are not image files (sub-folders included); hidden files (``.*``) and
            :data:`JUNK_NAMES` are left out of both.
    """

    by_stem: dict
    others: list

    def duplicates(self) -> dict:
        """``{stem: [paths]}`` of the stems with more than one file."""
        return {stem: paths for stem, paths in self.by_stem.items() if len(paths) > 1}

    def first(self) -> dict:
        """``{stem: path}``, the first (sorted) file of each stem."""
        return {stem: paths[0] for stem, paths in self.by_stem.items()}


def list_images(folder: PathLike, extra_suffixes: tuple = ()) -> FolderListing:
    """List ``folder`` once, the way every command does: image files by stem (plus files with one of
    ``extra_suffixes``, such as ``.npz`` probability maps), everything else apart.

    Data discovery, ``predict`` on a folder and ``evaluate`` all match files by stem, so they must agree
    on what an image file is, what its stem is and what is ignored; each caller decides what a
    duplicate stem or a stray file means for it. A DICOM series folder is an image file here, its
    stem the whole folder name.
    """
    from .itk import is_dicom_folder

    by_stem: dict = {}
    others: list = []
    for entry in sorted(Path(folder).iterdir()):
        if entry.name.startswith(".") or entry.name in JUNK_NAMES:
            continue
        stem, suffix = split_suffix(entry)
        if entry.is_dir() and FORMATS.get(suffix) != "zarr":
            image = is_dicom_folder(entry)
        else:
            image = suffix in FORMATS or suffix in extra_suffixes
        if image:
            by_stem.setdefault(stem, []).append(entry)
        else:
            others.append(entry)
    return FolderListing(by_stem, others)


def read_image(
    path: PathLike, *, axes: Optional[str] = None, keep_alpha: bool = False
) -> tuple[np.ndarray, ImageMeta]:
    """Read an image or volume as a channel-first array.

    Args:
        path: a ``.png``, ``.jpg``/``.jpeg``, ``.bmp``, ``.gif``, ``.tif``/``.tiff``,
            ``.nii``/``.nii.gz``, ``.npy``, ``.nrrd``/``.nhdr`` or ``.mha``/``.mhd`` file, a
            ``.zarr`` store or a DICOM series folder.
        axes: TIFF only: the axis letters of the first series (e.g. ``"CYX"``), overriding
            what the file's metadata says.
        keep_alpha: keep the alpha channel of an ``RGBA``/``LA`` image or of a TIFF whose extra
            samples are alpha (dropped by default).

    Returns:
        ``(array, meta)``: ``array`` of shape ``(C, H, W)`` or ``(C, D, H, W)`` in the stored
        sample type (C-contiguous), and its :class:`ImageMeta`.

    Raises:
        DataError: the file is missing, empty, of an unsupported type, unreadable, truncated or
            not an image (a DICOM folder: not one evenly spaced series); the message names it.
        ConfigError: an NRRD/MetaImage/DICOM input and SimpleITK is not installed.

    Example:
        >>> arr, meta = read_image("masks/01.png")  # doctest: +SKIP
        >>> arr.shape, arr.dtype, meta.mode
        ((1, 512, 512), dtype('uint8'), 'L')
    """
    path = Path(path)
    fmt = image_format(path)
    if not path.exists():
        if path.is_symlink():
            raise DataError(
                f"broken symbolic link (its target {os.readlink(path)} does not exist)", path
            )
        raise DataError("file not found", path)
    if path.is_dir() and fmt not in ("zarr", "dicom"):
        raise DataError("is a folder, not an image file", path)
    if fmt == "zarr" and not path.is_dir():
        raise DataError("a .zarr image is a folder (a zarr store), this is a file", path)
    if fmt not in ("zarr", "dicom") and path.stat().st_size == 0:
        raise DataError("empty file (0 bytes)", path)
    if axes is not None and fmt != "tiff":
        raise DataError(f"axes={axes!r} applies to TIFF files only, not {fmt.upper()}", path)
    try:
        if fmt == "tiff":
            array, meta = _read_tiff(path, axes, keep_alpha)
        elif fmt == "nifti":
            array, meta = _read_nifti(path)
        elif fmt == "npy":
            array, meta = _read_npy(path)
        elif fmt == "zarr":
            array, meta = _read_zarr(path)
        elif fmt in ("nrrd", "metaimage"):
            from .itk import read_itk

            array, meta = read_itk(path, fmt)
        elif fmt == "dicom":
            from .itk import read_dicom_series

            array, meta = read_dicom_series(path)
        else:
            array, meta = _read_pil(path, fmt, keep_alpha)
    except (DataError, ConfigError):
        raise
    except MemoryError:
        raise
    except Exception as exc:  # third-party decoders raise many types on corrupt input
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(
            f"unreadable or truncated {fmt.upper()} file ({type(exc).__name__}: {detail}): "
            f"save it again from its source, or give it the suffix of its real format",
            path,
        ) from exc
    array = np.ascontiguousarray(array)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    meta.path = str(path)
    meta.format = fmt
    meta.shape = tuple(int(s) for s in array.shape)
    return array, meta


def read_spacing(path: PathLike) -> tuple[Optional[tuple], Optional[str]]:
    """``(meta.spacing, meta.spacing_unit)`` of :func:`read_image`, for images too large to load.

    A TIFF's spacing comes from its tags and description alone, without decoding the pixels (what
    band-by-band prediction needs to calibrate its outputs); a ``.npy`` file has none; other formats
    are read whole with :func:`read_image`.

    Raises:
        DataError: the file is unusable, naming it.
    """
    fmt = image_format(path)
    if fmt == "npy":
        return None, None
    if fmt == "zarr":  # the metadata only, as for TIFF
        from .lazy import open_lazy

        with open_lazy(path) as image:
            return image.meta.spacing, image.meta.spacing_unit
    if fmt != "tiff":
        meta = read_image(path)[1]
        return meta.spacing, meta.spacing_unit
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            if not tf.series:
                raise DataError("TIFF file contains no image data", path)
            series = tf.series[0]
            axes = str(series.axes).upper()
            depth = "Z" if _depth_axes(axes, tuple(series.shape)) else ""
            return _tiff_spacing(tf, depth + _SPATIAL)
    except DataError:
        raise
    except Exception as exc:  # as read_image: decoders raise many types on corrupt input
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"unreadable TIFF file ({type(exc).__name__}: {detail})", path) from exc


# --------------------------------------------------------------------------------------------- PIL
def _read_pil(path: Path, fmt: str, keep_alpha: bool) -> tuple[np.ndarray, ImageMeta]:
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(path)
    except UnidentifiedImageError:
        raise DataError(
            f"not a {fmt.upper()} image (the file content is not a known image format)", path
        ) from None
    with im:
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            raise DataError(
                f"has {frames} frames; unetkit reads one 2D image per {fmt.upper()} file "
                "(save a stack as a multi-page TIFF)",
                path,
            )
        rawmode = _tile_rawmode(im)
        if fmt == "png" and rawmode in _PNG16_COLOUR:
            return _read_png16_colour(path, rawmode, keep_alpha)
        im.load()
        mode = im.mode
        meta = ImageMeta(mode=mode, axes="YX", dtype="uint8")
        if mode == "1":
            arr = np.asarray(im).astype(np.uint8)
            meta.dtype = "bool"
        elif mode in ("P", "PA"):
            if mode == "PA":
                if keep_alpha:
                    raise DataError(
                        "keep_alpha=True is not supported for palette images with alpha (mode PA)",
                        path,
                    )
                im = im.convert("P")
                meta.alpha_dropped = True
            arr = np.asarray(im)
            meta.palette = [int(v) for v in (im.getpalette("RGB") or [])]
        elif mode in ("L", "I", "F") or mode.startswith("I;16"):
            arr = np.asarray(im)
            if mode == "I" and fmt == "png":  # older Pillow: 16-bit PNG as 32-bit "I"
                arr = arr.astype(np.uint16)
            meta.dtype = str(arr.dtype.newbyteorder("="))
        elif mode in ("RGB", "RGBA", "LA", "La", "RGBa"):
            if mode in ("La", "RGBa"):  # premultiplied alpha
                im = im.convert(mode.upper())
            arr = np.asarray(im)
            has_alpha = im.mode in ("RGBA", "LA")
            if has_alpha and not keep_alpha:
                arr = arr[..., :-1]
                meta.alpha_dropped = True
            meta.axes = "YXS"
            meta.channel_axis = "S"
        else:  # CMYK, YCbCr, LAB, HSV, ...
            arr = np.asarray(im.convert("RGB"))
            meta.axes = "YXS"
            meta.channel_axis = "S"
    arr = arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)
    return arr, meta


#: Pillow raw modes of 16-bit colour PNGs → the raw modes that decode them losslessly in parts:
#: ``"RGB;16B"`` gives the high byte of each sample and ``"RGB;16L"`` (read on big-endian data) the
#: low byte; ``"RGBA"`` on grey + alpha copies the four bytes ``L_hi, L_lo, A_hi, A_lo`` as they are.
_PNG16_COLOUR = {
    "RGB;16B": ("RGB;16B", "RGB;16L"),
    "RGBA;16B": ("RGBA;16B", "RGBA;16L"),
    "LA;16B": ("RGBA",),
}


def _tile_rawmode(im: Any) -> Optional[str]:
    """Pillow's raw (on-disk) mode of a single-tile image not yet loaded, else ``None``."""
    tile = getattr(im, "tile", None)
    if not tile or len(tile) != 1:
        return None
    args = tile[0][3]
    args = args[0] if isinstance(args, tuple) and args else args
    return args if isinstance(args, str) else None


def _read_png16_colour(path: Path, rawmode: str, keep_alpha: bool) -> tuple[np.ndarray, ImageMeta]:
    """A 16-bit colour PNG at full depth: ``(S, H, W)`` uint16.

    Pillow has no 16-bit colour mode and unpacks such files to 8 bits (the high byte). Its PNG
    decoder does undo the row filters on the full 16-bit rows, though; only the final unpacking
    drops bytes. Decoding the file once per byte with a raw mode that keeps that byte, and joining
    the bytes, gives the exact samples.
    """
    from PIL import Image

    parts = []
    for part_mode in _PNG16_COLOUR[rawmode]:
        with Image.open(path) as im:
            im.tile = [
                im.tile[0]._replace(args=part_mode)
                if hasattr(im.tile[0], "_replace")
                else (*im.tile[0][:3], part_mode)
            ]
            im.load()
            parts.append(np.asarray(im).astype(np.uint16))
    if rawmode == "LA;16B":  # bytes L_hi, L_lo, A_hi, A_lo
        b = parts[0]
        arr = np.stack([(b[..., 0] << 8) | b[..., 1], (b[..., 2] << 8) | b[..., 3]], axis=-1)
    else:
        arr = (parts[0] << 8) | parts[1]
    meta = ImageMeta(mode=rawmode, axes="YXS", channel_axis="S", dtype="uint16")
    if not keep_alpha and rawmode in ("RGBA;16B", "LA;16B"):
        arr = arr[..., :-1]
        meta.alpha_dropped = True
    return np.moveaxis(arr, -1, 0), meta


# -------------------------------------------------------------------------------------------- TIFF
_SPATIAL = "YX"
_CHANNEL = "CS"
_PAGES = "IQ"


class _LogCapture(logging.Handler):
    """Collects tifffile's log messages during one read instead of printing them."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(" ".join(record.getMessage().split()))


def _read_tiff(
    path: Path, axes: Optional[str], keep_alpha: bool = False
) -> tuple[np.ndarray, ImageMeta]:
    logger = logging.getLogger("tifffile")
    capture, propagate = _LogCapture(), logger.propagate
    logger.addHandler(capture)
    logger.propagate = False
    try:
        arr, meta = _read_tiff_quiet(path, axes, keep_alpha)
    finally:
        logger.removeHandler(capture)
        logger.propagate = propagate
    damaged = [
        m
        for m in capture.messages
        if any(w in m.lower() for w in ("offset", "truncat", "failed to read"))
    ]
    if damaged:
        raise DataError(f"damaged or truncated TIFF file ({damaged[0]})", path)
    return arr, meta


def _read_tiff_quiet(
    path: Path, axes: Optional[str], keep_alpha: bool
) -> tuple[np.ndarray, ImageMeta]:
    import tifffile

    with tifffile.TiffFile(path) as tf:
        if not tf.series:
            raise DataError("TIFF file contains no image data", path)
        series = tf.series[0]
        data = series.asarray()
        file_axes = str(series.axes).upper()
        if axes is not None:
            if len(axes) != data.ndim:
                raise DataError(
                    f"axes={axes!r} has {len(axes)} letters but the data has {data.ndim} "
                    f"dimensions (shape {tuple(data.shape)}, file axes {file_axes!r})",
                    path,
                )
            file_axes = axes.upper()
        dtype = data.dtype
        alpha = [] if keep_alpha else _tiff_alpha_samples(tf, data, file_axes)
        if alpha:
            data = np.delete(data, alpha, axis=file_axes.index("S"))
        arr, channel_axis, out_axes = _tiff_to_channel_first(data, file_axes, path)
        spacing, unit = _tiff_spacing(tf, out_axes)
    meta = ImageMeta(
        axes=file_axes,
        channel_axis=channel_axis,
        dtype=str(dtype.newbyteorder("=")),
        spacing=spacing,
        spacing_unit=unit,
        alpha_dropped=bool(alpha),
    )
    return arr, meta


#: how to tell unetkit a TIFF's axes, from the command line (re-save) and from Python
_AXES_FIX = (
    "save it with its axes named (Fiji: Image › Properties, or tifffile.imwrite(..., "
    "metadata={'axes': 'CYX'})), or in Python read_image(path, axes='CYX')"
)


def _tiff_to_channel_first(
    data: np.ndarray, axes: str, path: Path
) -> tuple[np.ndarray, Optional[str], str]:
    """Reorder ``data`` with tifffile ``axes`` to ``(C, [Z,] Y, X)``; returns (array, channel letters, spatial letters)."""
    if len(set(axes)) != len(axes):
        raise DataError(f"TIFF axes {axes!r} repeat a letter", path)
    for letter in _SPATIAL:
        if letter not in axes:
            raise DataError(f"TIFF axes {axes!r} have no {letter} axis; {_AXES_FIX}", path)
    depth = _depth_axes(axes, data.shape)
    if len(depth) > 1:
        raise DataError(
            f"TIFF axes {axes!r} (shape {tuple(data.shape)}) have more than one depth-like axis "
            f"({', '.join(depth)}); {_AXES_FIX}",
            path,
        )
    channels = [a for a in axes if a in _CHANNEL]
    keep = set(_SPATIAL) | set(depth) | set(channels)
    extra = [(a, data.shape[i]) for i, a in enumerate(axes) if a not in keep]
    too_long = [f"{a}={n}" for a, n in extra if n > 1]
    if too_long:
        raise DataError(
            f"TIFF axes {axes!r} (shape {tuple(data.shape)}) have axes unetkit cannot map to "
            f"channels or depth ({', '.join(too_long)}); store one image per file, or {_AXES_FIX}",
            path,
        )
    squeeze = tuple(i for i, a in enumerate(axes) if a not in keep)
    data = data.squeeze(axis=squeeze) if squeeze else data
    axes = "".join(a for a in axes if a in keep)
    spatial = "".join(depth) + _SPATIAL
    order = [axes.index(a) for a in channels] + [axes.index(a) for a in spatial]
    data = np.transpose(data, order)
    n_channels = (
        int(np.prod([data.shape[i] for i in range(len(channels))], dtype=np.int64))
        if channels
        else 1
    )
    data = data.reshape((n_channels, *data.shape[len(channels) :]))
    out_spatial = ("Z" if depth else "") + _SPATIAL
    return data, ("".join(channels) or None), out_spatial


def _depth_axes(axes: str, shape: tuple) -> list[str]:
    """The letters of ``axes`` that are depth: ``Z``, and page axes (``I``, ``Q``) longer than 1."""
    pages = [a for a in axes if a in _PAGES and shape[axes.index(a)] > 1]
    return (["Z"] if "Z" in axes else []) + pages


# ------------------------------------------------------------------------------------------- NIfTI
def _read_npy(path: Path) -> tuple[np.ndarray, ImageMeta]:
    """NumPy ``.npy``: ``(H, W)``, ``(C, H, W)`` or ``(C, D, H, W)`` (channel first, as unetkit
    writes it and as the band-by-band predictor memory-maps it); no pickled objects."""
    array = np.load(path, allow_pickle=False)
    if array.dtype.kind not in "biuf":
        raise DataError(
            f"holds {array.dtype} values; an image needs booleans, integers or floats", path
        )
    axes = {2: "YX", 3: "CYX", 4: "CZYX"}.get(array.ndim)
    if axes is None:
        raise DataError(
            f"expected (H, W), (C, H, W) or (C, D, H, W), got shape {array.shape}", path
        )
    if array.ndim == 3 and array.shape[-1] in (2, 3, 4) and array.shape[0] > 4:
        kind = "RGB" if array.shape[-1] > 2 else "C"
        raise DataError(
            f"shape {array.shape} looks like (H, W, {kind}): save it channel first, "
            f"np.moveaxis(a, -1, 0)",
            path,
        )
    if array.ndim == 2:
        array = array[None]
    meta = ImageMeta(
        path=str(path),
        format="npy",
        dtype=str(array.dtype),
        shape=tuple(array.shape),
        axes=axes,
        channel_axis="C" if axes[0] == "C" else None,
    )
    return array, meta


def _read_zarr(path: Path) -> tuple[np.ndarray, ImageMeta]:
    """A zarr array or OME-Zarr image (full resolution), read whole; see :func:`unetkit.io.lazy.open_lazy`."""
    from .lazy import open_lazy

    image = open_lazy(path)
    try:
        return image[...], image.meta
    finally:
        image.close()


def spatial_shape(path) -> Optional[tuple]:
    """The spatial size of the image at ``path`` read from its header where the format allows
    (TIFF, zarr, ``.npy``, NIfTI, NRRD/MetaImage, and the formats Pillow opens), else from the
    whole image (a DICOM folder); ``None`` when it cannot be read (the readers say why later). For
    estimates that must not read every pixel, such as the time validation of a folder of large
    images or volumes takes."""
    path = Path(path)
    try:
        from .lazy import is_zarr_path, open_lazy

        if is_zarr_path(path) or path.name.lower().endswith((".npy", ".tif", ".tiff")):
            source = open_lazy(path)
            try:
                return tuple(int(s) for s in source.shape[1:])
            finally:
                if hasattr(source, "close") and not isinstance(source, np.ndarray):
                    source.close()
        if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".gif"):
            from PIL import Image

            with Image.open(path) as img:
                return (int(img.height), int(img.width))
        name = path.name.lower()
        if name.endswith((".nii", ".nii.gz")):
            import nibabel as nib

            shape = nib.load(str(path)).shape  # (X, Y[, Z[, C]]): the header only
            spatial = [s for s in shape[:3]]
            if len(spatial) == 3 and spatial[2] == 1:  # one slice: a 2D image
                spatial = spatial[:2]
            return tuple(int(s) for s in reversed(spatial))
        if name.endswith((".nrrd", ".nhdr", ".mha", ".mhd")):
            import SimpleITK as sitk

            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            reader.ReadImageInformation()
            return tuple(int(s) for s in reversed(reader.GetSize()))
        return tuple(int(s) for s in read_image(path)[0].shape[1:])
    except (DataError, OSError, ValueError, ImportError, RuntimeError):
        return None


def _nifti_geometry_problem(path: Path, img, dims: int) -> Optional[str]:
    """What makes a NIfTI header's geometry unusable, in one line, else ``None``: a voxel size of 0
    (or NaN) in ``pixdim`` on one of the ``dims`` spatial axes (nibabel quietly takes it for 1, so
    the case would be trained and resampled as 1 mm thick), or a stated affine (qform or sform)
    that maps the volume onto a plane (a zero column: writing the prediction would fail, after
    other outputs were written)."""
    from nibabel.openers import ImageOpener

    with ImageOpener(str(path)) as fh:  # the header as stored: nibabel's load fixes pixdim
        raw = type(img.header).from_fileobj(fh, check=False)
    pixdim = np.asarray(raw["pixdim"][1 : 1 + dims], dtype=float)
    if not np.all(np.isfinite(pixdim) & (pixdim != 0)):
        shown = "×".join(f"{v:g}" for v in pixdim)
        return (
            f"the header's voxel size (pixdim, x y z) is {shown}: one axis has none; write the file "
            "again with its real voxel size (e.g. nibabel's header.set_zooms)"
        )
    if int(raw["qform_code"]) > 0 or int(raw["sform_code"]) > 0:
        matrix = np.asarray(img.affine, dtype=float)[:3, :dims]
        lengths = np.linalg.norm(matrix, axis=0) if np.all(np.isfinite(matrix)) else np.zeros(1)
        # each axis's direction, whatever its voxel size (0.5 µm in metres is 5e-7)
        flat = not np.all(lengths > 0) or (np.linalg.matrix_rank(matrix / lengths, tol=1e-6) < dims)
        if flat:
            which = "sform" if int(raw["sform_code"]) > 0 else "qform"
            return (
                f"the header's {which} affine maps the image onto fewer than {dims} axes (a zero "
                "or repeated column); write the file again with its real affine"
            )
    return None


def _read_nifti(path: Path) -> tuple[np.ndarray, ImageMeta]:
    import nibabel as nib

    img = nib.load(str(path), mmap=False)
    proxy = img.dataobj
    disk_dtype = np.dtype(img.get_data_dtype()).newbyteorder("=")
    slope, inter = getattr(proxy, "slope", 1.0), getattr(proxy, "inter", 0.0)
    if (slope in (1.0, None) or np.isnan(slope)) and (inter in (0.0, None) or np.isnan(inter)):
        data = (
            np.asarray(proxy.get_unscaled())
            if hasattr(proxy, "get_unscaled")
            else np.asarray(proxy)
        )
    else:
        data = np.asarray(img.get_fdata(dtype=np.float32))
    zooms = tuple(float(z) for z in img.header.get_zooms())
    if data.ndim == 5 and data.shape[3] == 1:  # old-style vector images: (X, Y, Z, 1, C)
        data = data[:, :, :, 0]
        zooms = zooms[:3] + zooms[4:]
    if data.ndim == 2:
        arr, axes, channel_axis, spatial_zooms = data.T[None], "XY", None, zooms[:2][::-1]
    elif data.ndim == 3 and data.shape[2] == 1:  # one slice (X, Y, 1): a 2D image
        arr, axes, channel_axis, spatial_zooms = data[:, :, 0].T[None], "XYZ", None, zooms[:2][::-1]
    elif data.ndim == 4 and data.shape[2] == 1:  # one slice with channels (X, Y, 1, C)
        arr, axes, channel_axis, spatial_zooms = (
            np.transpose(data[:, :, 0], (2, 1, 0)),
            "XYZC",
            "C",
            zooms[:2][::-1],
        )
    elif data.ndim == 3:
        arr, axes, channel_axis, spatial_zooms = data.T[None], "XYZ", None, zooms[:3][::-1]
    elif data.ndim == 4:
        arr, axes, channel_axis, spatial_zooms = (
            np.transpose(data, (3, 2, 1, 0)),
            "XYZC",
            "C",
            zooms[:3][::-1],
        )
    else:
        raise DataError(
            f"NIfTI data has {data.ndim} dimensions (shape {data.shape}); unetkit reads 2D, 3D or "
            "4D (X, Y, Z, channels)",
            path,
        )
    problem = _nifti_geometry_problem(path, img, len(spatial_zooms))
    if problem:
        raise DataError(problem, path)
    xyzt_units = img.header.get_xyzt_units()[0]
    unit = {"mm": "mm", "micron": "um", "meter": "m"}.get(xyzt_units)
    meta = ImageMeta(
        axes=axes,
        channel_axis=channel_axis,
        dtype=str(disk_dtype),
        spacing=spatial_zooms,
        spacing_unit=unit,
        affine=np.asarray(img.affine, dtype=float).tolist(),
        nifti_codes=(int(img.header["qform_code"]), int(img.header["sform_code"])),
    )
    return arr, meta

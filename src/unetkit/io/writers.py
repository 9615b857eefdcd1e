"""Write channel-first arrays to PNG/BMP, TIFF, NIfTI, NRRD and MetaImage files, atomically, keeping
metadata.

:func:`write_image` is the inverse of :func:`~unetkit.io.readers.read_image`: reading what it wrote
gives the same array (same values, same dtype) and, where the format can hold them, the same
spacing, affine and palette. Files are written to a temporary name in the target folder and moved
into place with :func:`os.replace`, so a failed or interrupted write never leaves a half-written
file under the target name (and leaves an existing target unchanged).

What each format stores (anything else is refused with a :class:`~unetkit.errors.DataError`):

* **PNG**: 2D only; ``uint8`` with 1 (``L``), 2 (``LA``), 3 (``RGB``) or 4 (``RGBA``) channels,
  ``uint16`` with 1 channel (``I;16``), ``bool`` with 1 channel (``1``-bit). With
  ``meta.palette`` a 1-channel ``uint8`` array is written as a palette image; with
  ``meta.mode == "1"`` a 0/1 ``uint8`` array as 1-bit. Spacing is not stored.
* **BMP**: 2D ``uint8`` with 1, 3 or 4 channels (and ``bool``/palette as PNG).
* **TIFF**: 2D or 3D, any integer or float type (``bool`` is stored as ``uint8`` 0/1), zlib
  compressed. A ``uint8``/``uint16`` array with 3 or 4 channels is written as interleaved RGB(A)
  (axes ``YXS``) when ``meta`` says the channels were samples (``channel_axis == "S"``) or,
  without ``meta``, when it has 3 ``uint8`` channels; otherwise channels are planes. Data that
  ImageJ holds (:func:`imagej_compatible`: ``uint8``, ``uint16`` or ``float32``, RGB(A) only as
  ``uint8``, under 4 GB) is an **ImageJ hyperstack**, so that Fiji opens it as it is with its pixel
  size: axes ``YX``/``ZYX`` (one channel), ``CYX``/``ZCYX`` (channels as ImageJ channels),
  ``YXS``/``ZYXS`` (RGB); ``resolution`` = pixels per unit, ``spacing`` (Z) and ``unit`` in the
  ImageJ description (:func:`imagej_unit`: ``um`` is shown as µm; a spacing without a unit is
  ImageJ's ``pixel``); ``display_range`` becomes ImageJ's ``min``/``max`` (and per-channel
  ``Ranges``). Other data (``int16``, ``int32``, ``uint32``, ``float64`` …, 16-bit RGB) keeps
  unetkit's layout: axes and spacing in tifffile's JSON description, channels as planes
  (``CYX``/``CZYX``), spacing also in the X/YResolution tags (unit none). Both read back with the
  same array, dtype, spacing and unit; a pixel size stored as ImageJ's resolution fraction (32-bit
  integers) can differ from the written float in its last bit.
* **NIfTI** (``.nii``, ``.nii.gz``): 2D with 1 channel, or 3D with any channel count (4D file
  ``(X, Y, Z, C)``); integer types and ``float32``/``float64`` (``bool`` stored as ``uint8``).
  The affine is ``meta.affine`` when given, else a diagonal built from ``meta.spacing``. A 2D
  array whose ``meta.axes`` is ``"XYZ"`` or ``"XYZC"`` (read from a single-slice file) is written
  back as one slice, ``(X, Y, 1)`` or ``(X, Y, 1, C)`` (any channel count), like the file it came
  from; other 2D arrays as ``(X, Y)``. Without ``meta.affine``, a 3D volume's ITK geometry
  (``meta.origin``/``meta.direction``, e.g. read from NRRD or DICOM) gives the affine
  (:func:`~unetkit.io.itk.nifti_affine`, LPS → RAS).
* **NRRD** (``.nrrd``, gzip) and **MetaImage** (``.mha``, zlib), through SimpleITK
  (:func:`~unetkit.io.itk.write_itk`): 2D or 3D, channels as vector pixels, integer types and
  ``float32``/``float64``, with ``meta``'s origin, direction and spacing (or a NIfTI affine's
  geometry). ``.nhdr`` and ``.mhd`` (header + separate data file) are refused: write ``.nrrd`` or
  ``.mha``. DICOM is not written.
* **NumPy** (``.npy``): any array as it is, channel first ``(C, *spatial)``.
* **OME-Zarr** (``.zarr``/``.ome.zarr`` folders, NGFF 0.5, zarr v3): a one-channel integer array as
  a label image (axes ``yx``/``zyx``, ``image-label``), anything else with a ``c`` axis; spacing as
  the scale, its unit as NGFF's (:mod:`unetkit.io.ome_zarr`).
* **JPEG** and **GIF** are not written (lossy / palette-only): use PNG.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..errors import DataError
from ..utils import atomic_path
from .readers import ImageMeta, image_format
from .tiff_meta import norm_unit

PathLike = Union[str, Path]

_NIFTI_DTYPES = (
    "uint8",
    "int8",
    "uint16",
    "int16",
    "uint32",
    "int32",
    "uint64",
    "int64",
    "float32",
    "float64",
)


#: Atomic writing lives in :mod:`unetkit.utils`; re-exported here for the writers' users.
atomic_write = atomic_path


def write_image(
    path: PathLike,
    array: np.ndarray,
    meta: Optional[ImageMeta] = None,
    *,
    display_range: Optional[tuple[float, float]] = None,
    channel_names: Optional[Sequence[str]] = None,
) -> Path:
    """Write a channel-first array to ``path``; the format follows the suffix.

    Args:
        path: target file (``.png``, ``.bmp``, ``.tif``/``.tiff``, ``.nii``/``.nii.gz``, ``.npy``,
            ``.nrrd``, ``.mha``). Parent folders are created.
        array: ``(C, H, W)`` or ``(C, D, H, W)`` array.
        meta: metadata from :func:`~unetkit.io.readers.read_image` (spacing, affine, origin and
            direction, palette, 1-bit mode, RGB layout); optional.
        display_range: ``(black, white)``: the values Fiji first shows as black and white, for a
            TIFF written as an ImageJ hyperstack (``(0, highest label)`` makes a 0/1 mask visible,
            ``(0, 1)`` suits probabilities); ignored otherwise.
        channel_names: one name per channel, kept by a TIFF (:func:`tiff_calibration`); ignored
            otherwise.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        DataError: unsupported suffix, an array that is not channel-first 2D/3D, or a dtype or
            channel count the format cannot store (the message says what it can store).

    Example:
        >>> arr, meta = read_image("ct.nii.gz")  # doctest: +SKIP
        >>> write_image("copy.nii.gz", arr, meta)  # doctest: +SKIP
    """
    path = Path(path)
    fmt = image_format(path)
    arr = np.asarray(array)
    if arr.ndim not in (3, 4):
        raise DataError(
            f"cannot write an array of shape {tuple(arr.shape)}: expected channel-first (C, H, W) "
            "or (C, D, H, W) (add a channel axis with array[None])",
            path,
        )
    if arr.dtype.kind not in "biuf":
        raise DataError(
            f"cannot write {arr.dtype} data: only bool, integer and float images are supported",
            path,
        )
    if fmt == "zarr":  # a folder: written whole under a temporary name, then renamed
        from ..utils import atomic_dir
        from .ome_zarr import write_ome_zarr

        with atomic_dir(path) as tmp:
            write_ome_zarr(tmp, arr, meta)
        return path
    if fmt == "dicom":
        raise DataError("unetkit does not write DICOM; write .nrrd (or .nii.gz)", path)
    if fmt in ("jpeg", "gif"):
        raise DataError(
            f"unetkit does not write {fmt.upper()} files ({'lossy' if fmt == 'jpeg' else 'palette-only'}); "
            "use .png, .tif or .nii.gz",
            path,
        )
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    writer = {
        "png": _write_pil,
        "bmp": _write_pil,
        "tiff": partial(_write_tiff, display_range=display_range, channel_names=channel_names),
        "nifti": _write_nifti,
        "npy": _write_npy,
        "nrrd": _write_itk,
        "metaimage": _write_itk,
    }[fmt]
    with atomic_write(path) as tmp:
        writer(tmp, path, fmt, arr, meta)
    return path


# --------------------------------------------------------------------------------------------- PIL
def _refuse(path: Path, fmt: str, arr: np.ndarray, holds: str) -> DataError:
    return DataError(
        f"cannot store {arr.dtype} data with {arr.shape[0]} channel(s) and shape {tuple(arr.shape)} "
        f"in a {fmt.upper()} file (it holds {holds}); write .tif or .nii.gz instead",
        path,
    )


def _write_pil(tmp: Path, path: Path, fmt: str, arr: np.ndarray, meta: Optional[ImageMeta]) -> None:
    from PIL import Image

    channels = arr.shape[0]
    if fmt == "png":
        holds = "2D uint8 with 1-4 channels, uint16 with 1 channel or bool with 1 channel"
        allowed = {"uint8": (1, 2, 3, 4), "uint16": (1,), "bool": (1,)}
    else:
        holds = "2D uint8 with 1, 3 or 4 channels or bool with 1 channel"
        allowed = {"uint8": (1, 3, 4), "bool": (1,)}
    if arr.ndim != 3 or channels not in allowed.get(str(arr.dtype), ()):
        raise _refuse(path, fmt, arr, holds)
    plane = arr[0] if channels == 1 else np.moveaxis(arr, 0, -1)
    plane = np.ascontiguousarray(plane)
    if arr.dtype == bool:
        im = Image.fromarray(plane)
    elif channels == 1 and arr.dtype == np.uint8 and meta is not None and meta.palette:
        im = Image.fromarray(plane)
        im.putpalette(list(meta.palette))
    elif channels == 1 and arr.dtype == np.uint8 and meta is not None and meta.mode == "1":
        if plane.max(initial=0) > 1:
            raise DataError(
                f"meta.mode is '1' (1-bit) but the array holds values up to {int(plane.max())}; "
                "pass meta=None to write 8-bit",
                path,
            )
        im = Image.fromarray(plane.astype(bool))
    else:
        im = Image.fromarray(plane)
    im.save(tmp, format="PNG" if fmt == "png" else "BMP")


# -------------------------------------------------------------------------------------------- TIFF
#: Sample types ImageJ opens natively (RGB only as ``uint8``).
IMAGEJ_DTYPES = ("uint8", "uint16", "float32")
#: Largest data an ImageJ hyperstack may hold here: beyond it tifffile needs BigTIFF, which the
#: ImageJ format is not (tifffile's own BigTIFF threshold).
IMAGEJ_MAX_BYTES = 2**32 - 2**25


def imagej_compatible(dtype, nbytes: int, rgb: bool = False) -> bool:
    """``True`` when data of this sample type and size can be an ImageJ hyperstack that Fiji opens
    as it is: ``uint8``, ``uint16`` or ``float32`` (RGB(A): ``uint8``), at most
    :data:`IMAGEJ_MAX_BYTES`."""
    dtype = np.dtype(dtype)
    allowed = ("uint8",) if rgb else IMAGEJ_DTYPES
    return dtype.name in allowed and dtype.isnative and int(nbytes) <= IMAGEJ_MAX_BYTES


def imagej_unit(unit: Optional[str]) -> Optional[str]:
    """unetkit's ``spacing_unit`` as an ImageJ description's ``unit``, or ``None`` when unknown.

    ImageJ takes any text and recognises ``nm``, ``um`` (shown as µm), ``mm``, ``cm``, ``m``,
    ``km``, ``inch``; the micrometre's other spellings become ``um``; other non-ASCII characters are
    escaped as ``\\uXXXX``, as ImageJ itself writes them (the reader decodes them).
    """
    if not unit or unit == "pixel":
        return None
    unit = norm_unit(unit)
    return "".join(c if 0x20 <= ord(c) < 0x7F and c != "\\" else f"\\u{ord(c):04X}" for c in unit)


def tiff_calibration(
    axes: str,
    shape: tuple,
    spacing: Optional[tuple],
    unit: Optional[str],
    *,
    imagej: bool,
    display_range: Optional[tuple[float, float]] = None,
    channel_names: Optional[Sequence[str]] = None,
) -> dict:
    """Keyword arguments for ``tifffile.imwrite``/``tifffile.memmap`` that record the axes, pixel
    size and unit of data laid out as ``axes``; one home for the TIFF writer and the band sink.

    Args:
        axes: tifffile axis letters of the data as written (ImageJ order ``ZCYXS`` when ``imagej``).
        shape: the shape of the data as written, one length per letter of ``axes``.
        spacing: ``(dy, dx)`` or ``(dz, dy, dx)``, or ``None`` (then only the axes are recorded, as
            for a spacing of the wrong length; a non-positive Y/X size gives no resolution tags, and
            an ImageJ file no calibration).
        unit: unetkit's ``spacing_unit`` (``"um"``, ``"mm"`` …) or ``None``.
        imagej: write an ImageJ hyperstack (``imagej=True``, ``resolution`` = pixels per unit, Z
            ``spacing`` and ``unit`` in the ImageJ description); else unetkit's JSON description
            (``axes``, ``spacing``, ``spacing_unit``) plus the resolution tags, unit none.
        display_range: ImageJ only: ``min``/``max`` of the description and, for several channels,
            the same range per channel (ImageJ's ``Ranges``).
        channel_names: one name per channel (a ``C`` axis): ImageJ's slice ``Labels`` (Fiji shows
            them above each channel), else ``channels`` in unetkit's description.
    """
    spatial = sum(a in "ZYX" for a in axes)
    if spacing is not None:
        spacing = [float(s) for s in spacing]
        spacing = spacing if len(spacing) == spatial else None
    positive = spacing is not None and spacing[-1] > 0 and spacing[-2] > 0
    out: dict = {}
    metadata: dict = {"axes": axes}
    if positive:
        out["resolution"] = (1.0 / spacing[-1], 1.0 / spacing[-2])
    if imagej:
        out["imagej"] = True
        if positive:
            if len(spacing) == 3:
                metadata["spacing"] = spacing[0]
            metadata["unit"] = imagej_unit(unit) or "pixel"  # ImageJ's word for no unit
        if display_range is not None:
            lo, hi = (float(v) for v in display_range)
            metadata["min"], metadata["max"] = lo, hi
            if "C" in axes:
                metadata["Ranges"] = (lo, hi) * int(shape[axes.index("C")])
        if channel_names and "C" in axes:  # one label per plane, ImageJ's order (Z, then C)
            planes = int(shape[axes.index("Z")]) if "Z" in axes else 1
            metadata["Labels"] = [str(n) for n in channel_names] * planes
    elif spacing is not None:
        metadata["spacing"] = spacing
        if unit:
            metadata["spacing_unit"] = unit
        if positive:
            out["resolutionunit"] = "NONE"
    if channel_names and "C" in axes and not imagej:
        metadata["channels"] = [str(n) for n in channel_names]
    out["metadata"] = metadata
    return out


def _write_tiff(
    tmp: Path,
    path: Path,
    fmt: str,
    arr: np.ndarray,
    meta: Optional[ImageMeta],
    display_range: Optional[tuple[float, float]] = None,
    channel_names: Optional[Sequence[str]] = None,
) -> None:
    import tifffile

    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.dtype.itemsize > 8:
        raise _refuse(path, fmt, arr, "integer and float types up to 64 bits")
    spatial_dims = arr.ndim - 1
    channels = arr.shape[0]
    if meta is not None:
        rgb = meta.channel_axis == "S" and channels in (3, 4)
    else:
        rgb = channels == 3 and arr.dtype == np.uint8
    rgb = rgb and arr.dtype in (np.uint8, np.uint16)
    imagej = imagej_compatible(arr.dtype, arr.nbytes, rgb)
    depth = "Z" if spatial_dims == 3 else ""
    if rgb:
        data, axes = np.moveaxis(arr, 0, -1), depth + "YXS"
    elif not imagej:
        data, axes = arr, "C" + depth + "YX"
    elif channels == 1:
        data, axes = arr[0], depth + "YX"
    else:  # ImageJ's order is ZCYX
        data, axes = (np.swapaxes(arr, 0, 1) if depth else arr), depth + "CYX"
    spacing = meta.spacing if meta is not None else None
    unit = meta.spacing_unit if meta is not None else None
    kwargs = tiff_calibration(
        axes,
        data.shape,
        spacing,
        unit,
        imagej=imagej,
        display_range=None if rgb else display_range,
        channel_names=None if rgb else channel_names,
    )
    tifffile.imwrite(
        tmp,
        np.ascontiguousarray(data),
        photometric="rgb" if rgb else "minisblack",
        compression="zlib",
        extrasamples=("unassalpha",) if rgb and channels == 4 else None,
        **kwargs,
    )


# --------------------------------------------------------------------------------- NRRD, MetaImage
def _write_itk(tmp: Path, path: Path, fmt: str, arr: np.ndarray, meta: Optional[ImageMeta]) -> None:
    from .itk import write_itk

    write_itk(tmp, path, fmt, arr, meta)


# ------------------------------------------------------------------------------------------- NIfTI
def _write_npy(tmp: Path, path: Path, fmt: str, arr: np.ndarray, meta: Optional[ImageMeta]) -> None:
    with open(tmp, "wb") as f:  # a file object: np.save would append .npy to other names
        np.save(f, arr, allow_pickle=False)


def _write_nifti(
    tmp: Path, path: Path, fmt: str, arr: np.ndarray, meta: Optional[ImageMeta]
) -> None:
    import nibabel as nib

    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if str(arr.dtype) not in _NIFTI_DTYPES:
        raise _refuse(path, fmt, arr, ", ".join(_NIFTI_DTYPES))
    spatial_dims = arr.ndim - 1
    channels = arr.shape[0]
    one_slice = spatial_dims == 2 and meta is not None and meta.axes in ("XYZ", "XYZC")
    if spatial_dims == 2 and channels != 1 and not one_slice:
        raise _refuse(
            path, fmt, arr, "2D images with 1 channel or 3D volumes with any channel count"
        )
    data = arr.T  # (C, [Z,] Y, X) -> (X, Y, [Z,] C)
    if one_slice:
        data = data[:, :, None, :]  # (X, Y, 1, C)
    if channels == 1:
        data = data[..., 0]
    affine = None
    if meta is not None and meta.affine is None and meta.origin is not None:
        from .itk import nifti_affine_of  # a volume read from NRRD, MetaImage or DICOM

        affine = nifti_affine_of(meta, spatial_dims)
    elif meta is not None and meta.affine is not None:
        affine = np.asarray(meta.affine, dtype=float)
        if affine.shape != (4, 4):
            raise DataError(f"meta.affine must be 4x4, got shape {affine.shape}", path)
    if affine is None:
        zooms = [1.0] * 3
        if meta is not None and meta.spacing is not None and len(meta.spacing) == spatial_dims:
            zooms[:spatial_dims] = [float(s) for s in meta.spacing][::-1]
        affine = np.diag([*zooms, 1.0])
    img = nib.Nifti1Image(np.ascontiguousarray(data), affine, dtype=data.dtype)
    codes = getattr(meta, "nifti_codes", None)
    if codes is not None and any(codes):  # the input's own coordinate-system codes
        img.set_qform(affine, code=int(codes[0]))
        img.set_sform(affine, code=int(codes[1]))
    unit = (
        {"mm": "mm", "um": "micron", "m": "meter"}.get(meta.spacing_unit or "")
        if meta is not None
        else None
    )
    if unit:
        img.header.set_xyzt_units(xyz=unit)
    nib.save(img, str(tmp))

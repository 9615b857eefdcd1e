"""NRRD, MetaImage and DICOM series through SimpleITK: reading, writing and the geometry they keep.

The 3D formats nnU-Net users bring besides NIfTI. :func:`~unetkit.io.readers.read_image` and
:func:`~unetkit.io.writers.write_image` dispatch here; SimpleITK is imported on first use (the
optional extra ``unetkit[medical]``), and a missing SimpleITK is a one-line
:class:`~unetkit.errors.ConfigError` saying how to install it.

Formats (format names in :data:`~unetkit.io.readers.FORMATS`):

* **NRRD** (``"nrrd"``): ``.nrrd`` (header and data in one file) and ``.nhdr`` (detached header).
* **MetaImage** (``"metaimage"``): ``.mha`` (one file) and ``.mhd`` (header + ``.raw``/``.zraw``).
* **DICOM series** (``"dicom"``): a *folder* of slice files (see "DICOM folders" below).

Axis order. SimpleITK's arrays are ``(z, y, x)``, which is unetkit's ``(D, H, W)``: a 3D scalar
image is returned as ``(1, D, H, W)``, a 2D one as ``(1, H, W)``; multi-component (vector) pixels
become the channels, ``(C, D, H, W)``. ``meta.axes`` is ITK's index order, ``"XYZ"`` (``"XY"``),
with ``"C"`` appended for vector pixels (``meta.channel_axis == "C"``). Images of 4 or more
dimensions are refused. The stored sample type is kept (DICOM: after the rescale slope/intercept,
which GDCM applies, so a CT series comes back as ``int16`` Hounsfield units or as ``float``).

Geometry (:class:`~unetkit.io.readers.ImageMeta` fields), for a voxel at ITK index ``(i, j, k)``
= (x, y, z) = array position ``[k, j, i]``::

    world (x, y, z) = origin + direction @ diag(sx, sy, sz) @ (i, j, k)

* ``spacing``: ``(dz, dy, dx)`` (array order, like every reader; ITK's ``GetSpacing()`` reversed),
  ``spacing_unit`` ``"mm"`` (ITK's and DICOM's convention).
* ``origin``: ``(x, y, z)``, the world position of the first voxel's centre, ITK's order.
* ``direction``: ITK's direction cosines as a list of rows (3×3, or 2×2 for a 2D image); column
  ``j`` is the world direction of index axis ``j`` (x, y, z). ``GetDirection()`` is its rows,
  flattened.

World coordinates are **LPS** (x grows to the patient's left, y to posterior, z to superior), as in
DICOM and ITK. NIfTI's ``meta.affine`` (read by nibabel) maps the same (i, j, k) to **RAS** (x to
the right, y to anterior), so with ``F = diag(-1, -1, 1)``::

    affine[:3, :3] = F @ direction @ diag(sx, sy, sz)        affine[:3, 3] = F @ origin

:func:`nifti_affine` and :func:`geometry_from_affine` convert one into the other (the convention
ITK's own NIfTI reader follows); the writers use them so that an NRRD/MHA/DICOM volume written as
NIfTI, or a NIfTI volume written as NRRD/MHA, stays in place.

DICOM folders. A folder is a DICOM series folder (:func:`is_dicom_folder`) when one of its files is
named ``*.dcm`` or one of its first files carries the DICOM file marker (``DICM`` after the 128-byte
preamble, which every DICOM file written to disk has); this is decided without SimpleITK, so listing
a dataset stays cheap. Its slices are the files directly inside (sub-folders are not searched) that
GDCM finds for a series. The folder must hold **one** series (one Series Instance UID), with slices
evenly spaced along the slice normal (no slice missing, none twice) and one orientation; anything
else is a one-line :class:`~unetkit.errors.DataError` naming the folder and what to do. A DICOM
folder is one image named by the folder: its case id is the whole folder name (a folder has no
suffix, :func:`~unetkit.io.readers.split_suffix`), so ``unetkit predict SERIES_FOLDER`` predicts it,
and a dataset's ``images/`` folder may hold one such folder per case (``images/case_01/*.dcm`` beside
``masks/case_01.nrrd``). unetkit does not write DICOM: ``predict`` writes the labels of a DICOM
series as ``.nrrd`` (:data:`~unetkit.io.naming.LABEL_SUFFIX`), one file with the series' exact
geometry that 3D Slicer, ITK-SNAP and nnU-Net's SimpleITK reader open as they are.

Writing (:func:`write_itk`): ``.nrrd`` (gzip) and ``.mha`` (zlib), one file each, written to a
temporary name and renamed like every output. ``.nhdr`` and ``.mhd`` are refused: their data lives
in a second file whose name the header records, and the pair cannot be replaced in one atomic step;
``.nrrd`` and ``.mha`` are the same formats in one file. Sample types: ``(u)int8`` … ``(u)int64``,
``float32``, ``float64`` (``bool`` is stored as ``uint8``). The geometry written is
``meta.origin``/``meta.direction``/``meta.spacing`` (spacing converted to mm from ``um``, ``nm``,
``cm`` or ``m``), else the geometry of a 3D ``meta.affine``, else a spacing only (or none).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..errors import ConfigError, DataError
from .meta import ImageMeta

PathLike = Union[str, Path]

#: Format names of the files SimpleITK reads here; ``"dicom"`` is a series folder.
FILE_FORMATS = ("nrrd", "metaimage")
DICOM = "dicom"
#: Formats whose ``meta`` (origin, direction, spacing in mm) carries over to each other's outputs.
GEOMETRY_FORMATS = (*FILE_FORMATS, DICOM)
#: Suffix → the one-file suffix written instead (two-file formats cannot be replaced atomically).
ONE_FILE_SUFFIX = {".nhdr": ".nrrd", ".mhd": ".mha"}

_IMAGE_IO = {"nrrd": "NrrdImageIO", "metaimage": "MetaImageIO"}
_WRITE_DTYPES = (
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
#: Millimetres per unit, for writing a spacing read from another format in ITK's millimetres.
_MM_PER_UNIT = {"mm": 1.0, "um": 1e-3, "nm": 1e-6, "cm": 10.0, "m": 1e3}
#: Bytes 128-131 of a DICOM file (PS3.10: a 128-byte preamble, then this marker).
_DICOM_MARKER = b"DICM"
#: Files whose first bytes :func:`is_dicom_folder` reads at most (when none is named ``*.dcm``).
_PROBE_FILES = 8
#: LPS ↔ RAS: ITK/DICOM world coordinates → NIfTI world coordinates (and back).
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
#: Relative tolerance on the distance between neighbouring DICOM slices.
_SLICE_GAP_TOLERANCE = 0.01


def simpleitk(path: PathLike) -> Any:
    """The SimpleITK module, or a :class:`ConfigError` naming ``path`` when it is not installed."""
    try:
        import SimpleITK
    except ImportError:
        raise ConfigError(
            f"{path}: reading and writing NRRD, MetaImage and DICOM needs SimpleITK, which is not "
            "installed: pip install 'unetkit[medical]'"
        ) from None
    return SimpleITK


# ------------------------------------------------------------------------------------------ files
def read_itk(path: Path, fmt: str) -> tuple[np.ndarray, ImageMeta]:
    """An NRRD or MetaImage file as ``(C, *spatial)`` plus its geometry (see the module doc).

    Raises:
        DataError: unreadable, truncated or not of its suffix's format; 4D or complex data.
        ConfigError: SimpleITK is not installed.
    """
    sitk = simpleitk(path)
    reader = sitk.ImageFileReader()
    reader.SetImageIO(_IMAGE_IO[fmt])  # the suffix decides the format, as for every reader
    reader.SetFileName(str(path))
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise DataError(
            f"unreadable or truncated {_format_name(fmt)} file ({_itk_detail(exc)}): save it "
            "again from its source, or give it the suffix of its real format",
            path,
        ) from None
    return _image_to_array(sitk, image, path)


def _format_name(fmt: str) -> str:
    """The name of ``fmt`` in messages: ``"NRRD"``, ``"MetaImage"``, ``"DICOM"``."""
    return {"nrrd": "NRRD", "metaimage": "MetaImage", DICOM: "DICOM"}.get(fmt, fmt.upper())


def _image_to_array(sitk: Any, image: Any, path: Path) -> tuple[np.ndarray, ImageMeta]:
    """A SimpleITK image → ``(C, *spatial)`` array and its :class:`ImageMeta` geometry."""
    dims = image.GetDimension()
    if dims not in (2, 3):
        raise DataError(
            f"{dims}D image of size {image.GetSize()}; unetkit reads 2D and 3D images (several "
            "values per voxel as channels): save one volume per file",
            path,
        )
    arr = sitk.GetArrayFromImage(image)
    vector = image.GetNumberOfComponentsPerPixel() > 1
    arr = np.moveaxis(arr, -1, 0) if vector else arr[None]
    if arr.dtype.kind not in "biuf":
        raise DataError(
            f"holds {image.GetPixelIDTypeAsString()} pixels; an image needs integers or floats",
            path,
        )
    meta = ImageMeta(
        axes="XYZ"[:dims] + ("C" if vector else ""),
        channel_axis="C" if vector else None,
        dtype=str(arr.dtype),
        spacing=tuple(float(s) for s in reversed(image.GetSpacing())),
        spacing_unit="mm",
        origin=tuple(float(v) for v in image.GetOrigin()),
        direction=np.asarray(image.GetDirection(), dtype=float).reshape(dims, dims).tolist(),
    )
    return arr, meta


def _itk_detail(exc: Exception) -> str:
    """The telling line of a SimpleITK exception, without its source-file location and object
    address: ``'_nrrdRead: couldn't parse "hello w" as magic …'``."""
    lines = [line.strip() for line in str(exc).splitlines()]
    lines = [line for line in lines[1:] if line and line != "Reason: Success"] or lines[:1]
    detail = lines[-1]
    for marker in ("ERROR: ", "[nrrd] "):
        if marker in detail:
            detail = detail.split(marker, 1)[1]
    if detail.startswith(tuple(_IMAGE_IO.values()) + ("GDCMImageIO",)) and "): " in detail:
        detail = detail.split("): ", 1)[1]  # "MetaImageIO(0x55…): File cannot be read …"
    return " ".join(detail.split()).rstrip(".") or type(exc).__name__


def write_itk(tmp: Path, path: Path, fmt: str, arr: np.ndarray, meta: Optional[ImageMeta]) -> None:
    """Write ``(C, *spatial)`` ``arr`` to ``tmp`` as ``path``'s format (NRRD or MetaImage, one
    file, compressed) with the geometry of ``meta`` (see the module doc); the caller renames it.

    Raises:
        DataError: a ``.nhdr``/``.mhd`` target, a sample type ITK cannot store, or geometry in
            ``meta`` that does not fit the array.
    """
    suffix = Path(path).suffix.lower()
    if suffix in ONE_FILE_SUFFIX:
        raise DataError(
            f"unetkit does not write {suffix} files (the data goes to a second file, and the pair "
            f"cannot be replaced in one atomic step); write {ONE_FILE_SUFFIX[suffix]}, the same "
            "format in one file",
            path,
        )
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if str(arr.dtype) not in _WRITE_DTYPES:
        raise DataError(
            f"cannot store {arr.dtype} data in a {_format_name(fmt)} file (it holds "
            f"{', '.join(_WRITE_DTYPES)}); convert it, e.g. to float32",
            path,
        )
    sitk = simpleitk(path)
    vector = arr.shape[0] > 1
    data = np.ascontiguousarray(np.moveaxis(arr, 0, -1) if vector else arr[0])
    image = sitk.GetImageFromArray(data, isVector=vector)
    spacing, origin, direction = _geometry_of(meta, arr.ndim - 1, path)
    if spacing is not None:
        image.SetSpacing(spacing)
    if origin is not None:
        image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    writer = sitk.ImageFileWriter()
    writer.SetImageIO(_IMAGE_IO[fmt])
    writer.SetFileName(str(tmp))
    writer.UseCompressionOn()
    try:
        writer.Execute(image)
    except RuntimeError as exc:
        raise DataError(
            f"cannot write the {_format_name(fmt)} file ({_itk_detail(exc)})", path
        ) from None


def _geometry_of(
    meta: Optional[ImageMeta], dims: int, path: Path
) -> tuple[Optional[tuple], Optional[tuple], Optional[tuple]]:
    """``(spacing, origin, direction)`` in ITK's (x, y, z) order and units for a ``dims``-D image,
    each ``None`` when ``meta`` does not say; ``direction`` flat, row major."""
    if meta is None:
        return None, None, None
    spacing = origin = direction = None
    if meta.spacing is not None and len(meta.spacing) == dims:
        scale = _MM_PER_UNIT.get(meta.spacing_unit or "", 1.0)
        spacing = tuple(float(s) * scale for s in reversed(meta.spacing))
    if meta.origin is not None or meta.direction is not None:
        origin = tuple(float(v) for v in meta.origin) if meta.origin is not None else None
        matrix = np.asarray(meta.direction, dtype=float) if meta.direction is not None else None
        if (origin is not None and len(origin) != dims) or (
            matrix is not None and matrix.shape != (dims, dims)
        ):
            raise DataError(
                f"meta.origin/meta.direction ({origin}, {None if matrix is None else matrix.shape}) "
                f"do not fit a {dims}D image; pass the meta of an image with the same dimensions",
                path,
            )
        direction = tuple(matrix.ravel().tolist()) if matrix is not None else None
    elif meta.affine is not None and dims == 3:
        origin, matrix, affine_spacing = geometry_from_affine(meta.affine)
        direction = tuple(np.ravel(matrix).tolist())
        spacing = spacing or tuple(reversed(affine_spacing))
    return spacing, origin, direction


# --------------------------------------------------------------------------------------- geometry
def nifti_affine(origin: Any, direction: Any, spacing: Any) -> list:
    """The NIfTI (RAS) 4×4 affine of an ITK (LPS) geometry: ``origin`` (x, y, z), ``direction``
    3×3 rows and ``spacing`` in unetkit's order (dz, dy, dx); nested lists."""
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = _LPS_TO_RAS @ matrix @ np.diag([float(s) for s in reversed(spacing)])
    affine[:3, 3] = _LPS_TO_RAS @ np.asarray(origin, dtype=float)
    return affine.tolist()


def nifti_affine_of(meta: ImageMeta, dims: int) -> Optional[np.ndarray]:
    """:func:`nifti_affine` of ``meta``'s ITK geometry for a ``dims``-D image, or ``None`` unless
    ``meta`` has a 3D origin, direction and spacing."""
    complete = (
        dims == 3
        and meta.origin is not None
        and len(meta.origin) == 3
        and meta.direction is not None
        and np.shape(meta.direction) == (3, 3)
        and meta.spacing is not None
        and len(meta.spacing) == 3
    )
    if not complete:
        return None
    return np.asarray(nifti_affine(meta.origin, meta.direction, meta.spacing), dtype=float)


def geometry_from_affine(affine: Any) -> tuple[tuple, list, tuple]:
    """``(origin, direction, spacing)`` of a NIfTI affine, the inverse of :func:`nifti_affine`:
    origin (x, y, z) in LPS, direction 3×3 rows, spacing (dz, dy, dx)."""
    affine = np.asarray(affine, dtype=float)
    scaled = _LPS_TO_RAS @ affine[:3, :3]
    sizes = np.linalg.norm(scaled, axis=0)
    direction = scaled / np.where(sizes > 0, sizes, 1.0)
    origin = _LPS_TO_RAS @ affine[:3, 3]
    return (
        tuple(float(v) for v in origin),
        direction.tolist(),
        tuple(float(s) for s in reversed(sizes)),
    )


# ------------------------------------------------------------------------------------------ DICOM
def is_dicom_folder(path: PathLike) -> bool:
    """Whether ``path`` is a folder of DICOM files: one named ``*.dcm``, or one of its first
    :data:`_PROBE_FILES` files starting with the DICOM preamble and marker. Hidden files are
    skipped; needs no SimpleITK."""
    path = Path(path)
    if not path.is_dir():
        return False
    probed = 0
    try:
        for entry in sorted(path.iterdir()):
            if entry.name.startswith(".") or not entry.is_file():
                continue
            if entry.suffix.lower() == ".dcm":
                return True
            if probed < _PROBE_FILES:
                probed += 1
                with open(entry, "rb") as fh:
                    if fh.read(132)[128:] == _DICOM_MARKER:
                        return True
    except OSError:
        return False
    return False


def read_dicom_series(folder: Path) -> tuple[np.ndarray, ImageMeta]:
    """The one DICOM series in ``folder`` as ``(1, D, H, W)`` plus its geometry.

    Raises:
        DataError: no series, several series, unevenly spaced or differently oriented slices, or
            an unreadable file; one line naming the folder and what to do.
        ConfigError: SimpleITK is not installed.
    """
    sitk = simpleitk(folder)
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise DataError(
            "no DICOM image series in this folder (no file GDCM can read as an image slice)",
            folder,
        )
    if len(series) > 1:
        shown = ", ".join(series[:3]) + (f" and {len(series) - 3} more" if len(series) > 3 else "")
        raise DataError(
            f"{len(series)} DICOM series in this folder (Series Instance UIDs {shown}); put each "
            "series in its own folder",
            folder,
        )
    files = reader.GetGDCMSeriesFileNames(str(folder), series[0])
    try:
        _check_slices(sitk, folder, files)
        reader.SetFileNames(files)
        image = reader.Execute()
    except RuntimeError as exc:
        raise DataError(f"unreadable DICOM series ({_itk_detail(exc)})", folder) from None
    return _image_to_array(sitk, image, folder)


def _check_slices(sitk: Any, folder: Path, files: tuple) -> None:
    """Refuse a series whose slices (sorted by GDCM) differ in orientation or are not evenly
    spaced along the slice normal: a missing slice, a slice twice, two scans under one UID."""
    positions, orientations = [], []
    for name in files:
        header = sitk.ImageFileReader()
        header.SetImageIO("GDCMImageIO")
        header.SetFileName(name)
        header.LoadPrivateTagsOff()
        header.ReadImageInformation()
        if not (header.HasMetaDataKey("0020|0032") and header.HasMetaDataKey("0020|0037")):
            return  # no patient geometry per slice (e.g. one multi-frame file): nothing to compare
        positions.append(_numbers(header.GetMetaData("0020|0032")))
        orientations.append(_numbers(header.GetMetaData("0020|0037")))
    if len(files) < 2:
        return
    names = [Path(f).name for f in files]
    turned = [
        i for i, o in enumerate(orientations) if not np.allclose(o, orientations[0], atol=1e-4)
    ]
    if turned:
        raise DataError(
            f"slices with different orientations ({names[0]} and {names[turned[0]]}, "
            "ImageOrientationPatient): the folder mixes scans; put each scan in its own folder",
            folder,
        )
    row, col = orientations[0][:3], orientations[0][3:]
    along = np.asarray(positions) @ np.cross(row, col)
    order = np.argsort(along, kind="stable")
    gaps = np.diff(along[order])
    step = float(np.median(gaps))
    for i, gap in enumerate(gaps):
        first, second = names[order[i]], names[order[i + 1]]
        if gap <= _SLICE_GAP_TOLERANCE * step or step <= 0:
            raise DataError(
                f"two slices at the same position ({first} and {second}): a slice is there twice "
                "or the folder mixes scans; keep one scan per folder",
                folder,
            )
        if abs(gap - step) > _SLICE_GAP_TOLERANCE * step:
            raise DataError(
                f"slices are not evenly spaced ({gap:.4g} mm between {first} and {second}, "
                f"{step:.4g} mm elsewhere): a slice is missing or misplaced; export the complete "
                "series again",
                folder,
            )


def _numbers(text: str) -> np.ndarray:
    """A DICOM multi-value decimal string (``"1\\\\0\\\\0"``) as floats."""
    return np.asarray([float(v) for v in text.strip().split("\\")], dtype=float)


__all__ = [
    "DICOM",
    "FILE_FORMATS",
    "GEOMETRY_FORMATS",
    "ONE_FILE_SUFFIX",
    "geometry_from_affine",
    "is_dicom_folder",
    "nifti_affine",
    "nifti_affine_of",
    "read_dicom_series",
    "read_itk",
    "simpleitk",
    "write_itk",
]

"""``ImageMeta``: what a reader learnt about a file besides the pixels.

Its own module so that the readers (:mod:`unetkit.io.readers`) and the format modules they
dispatch to (:mod:`unetkit.io.itk`) share it without importing each other; ``readers`` re-exports
it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Optional

#: Metres per unit of the length units unetkit names (``um``: every spelling of the micrometre,
#: :func:`unetkit.io.tiff_meta.norm_unit`), to compare voxel sizes stated in different units.
METRES_PER_UNIT = {
    "m": 1.0,
    "cm": 1e-2,
    "mm": 1e-3,
    "um": 1e-6,
    "nm": 1e-9,
    "A": 1e-10,
    "pm": 1e-12,
}


def convert_spacing(
    spacing: Optional[tuple], unit: Optional[str], to_unit: Optional[str]
) -> Optional[tuple]:
    """``spacing`` given in ``unit``, in ``to_unit``: unchanged where either unit is unknown (not a
    length unetkit names, or not stated) or both are the same."""
    if spacing is None or unit == to_unit:
        return spacing
    a, b = METRES_PER_UNIT.get(unit or ""), METRES_PER_UNIT.get(to_unit or "")
    if a is None or b is None:
        return spacing
    return tuple(float(s) * a / b for s in spacing)


#: The most two voxel sizes that should agree may differ on one axis, a factor either way: an image's
#: and its model's, a case's and the other training cases', a target spacing and the data's. Beyond
#: it the image would be resampled 50-fold or more, which is a wrong unit (µm read as nm, a header
#: in metres, a napari scale in mm) far more often than real data, and would fill the memory
#: (upsampled) or wash the image out (downsampled) silently.
SPACING_RATIO_LIMIT = 50.0


def spacing_ratio(spacing, reference) -> float:
    """``spacing / reference`` on the axis where they differ most (> 1: coarser, < 1: finer); 1.0
    where no axis can be compared (another length, a size of 0)."""
    ratios = [float(s) / float(r) for s, r in zip(spacing, reference) if s > 0 and r > 0]
    if not ratios or len(spacing) != len(reference):
        return 1.0
    return max(ratios, key=lambda r: max(r, 1 / r))


def far_off(ratio: float) -> Optional[str]:
    """``"1,000× finer"`` / ``"62.5× coarser"`` for a :func:`spacing_ratio` beyond
    :data:`SPACING_RATIO_LIMIT`, else ``None``."""
    factor = max(ratio, 1 / ratio)
    if factor <= SPACING_RATIO_LIMIT:
        return None
    shown = f"{factor:,.0f}" if factor >= 100 else f"{factor:.3g}"
    return f"{shown}× {'coarser' if ratio > 1 else 'finer'}"


@dataclass
class ImageMeta:
    """What a reader learnt about a file besides the pixels; JSON-friendly via :meth:`to_dict`.

    Attributes:
        path: the file read (``None`` for arrays made in memory).
        format: ``"png"``, ``"jpeg"``, ``"bmp"``, ``"gif"``, ``"tiff"``, ``"nifti"``, ``"npy"``,
            ``"zarr"``, ``"nrrd"``, ``"metaimage"`` or ``"dicom"`` (a series folder).
        dtype: the sample type stored in the file (``"uint16"``; ``"bool"`` for a 1-bit PNG,
            which is returned as ``uint8`` 0/1; a scaled NIfTI's raw type, returned as float).
        shape: shape of the returned array, ``(C, *spatial)``.
        axes: the file's own axis letters as read, before reordering (``"YX"``, ``"YXS"``,
            ``"ZCYX"``, ``"IYX"``, NIfTI and ITK ``"XYZ"``/``"XYZC"``).
        channel_axis: the letters of ``axes`` that became the channel axis (``"S"``, ``"C"``,
            ``"CS"``, NIfTI ``"C"``), or ``None`` when the file has none and a length-1 channel
            axis was added.
        spacing: physical size of a pixel/voxel per spatial axis, in the array's order
            (``(dy, dx)`` or ``(dz, dy, dx)``), or ``None`` when the file does not say.
        spacing_unit: unit of ``spacing`` when the file says (``"um"``, ``"mm"`` …).
        mode: Pillow mode of a PNG/JPEG/BMP/GIF (``"L"``, ``"I;16"``, ``"RGB"``, ``"P"``, ``"1"``;
            for a 16-bit colour PNG Pillow's raw mode ``"RGB;16B"``, ``"RGBA;16B"`` or ``"LA;16B"``).
        palette: flat ``[r0, g0, b0, r1, …]`` palette of a ``P``-mode image (the array then holds
            palette indices).
        affine: NIfTI 4×4 voxel (i, j, k) = (X, Y, Z) → world matrix, as nested lists.
        alpha_dropped: an alpha channel was present in the file and dropped.
        origin: NRRD/MetaImage/DICOM: world position ``(x, y, z)`` (``(x, y)`` in 2D) of the first
            voxel's centre, in mm, ITK's order and LPS convention.
        direction: NRRD/MetaImage/DICOM: ITK's direction cosines as rows (3×3, 2×2 in 2D);
            column ``j`` is the world direction of index axis ``j`` (x, y, z). See
            :mod:`unetkit.io.itk` for both and for how they relate to ``affine``.
        nifti_codes: NIfTI ``(qform_code, sform_code)`` (1 scanner, 2 aligned, …), written back
            so that an output claims the same coordinate system as its input.
    """

    path: Optional[str] = None
    format: str = ""
    dtype: str = ""
    shape: tuple = ()
    axes: str = ""
    channel_axis: Optional[str] = None
    spacing: Optional[tuple] = None
    spacing_unit: Optional[str] = None
    mode: Optional[str] = None
    palette: Optional[list] = None
    affine: Optional[list] = None
    alpha_dropped: bool = False
    origin: Optional[tuple] = None
    direction: Optional[list] = None
    nifti_codes: Optional[tuple] = None

    @property
    def spatial_dims(self) -> int:
        """2 for an image ``(C, H, W)``, 3 for a volume ``(C, D, H, W)``."""
        return len(self.shape) - 1

    def to_dict(self) -> dict:
        """Plain ``dict`` of JSON types (lists instead of tuples, Python numbers)."""
        out = asdict(self)
        out["shape"] = [int(s) for s in self.shape]
        if self.spacing is not None:
            out["spacing"] = [float(s) for s in self.spacing]
        if self.palette is not None:
            out["palette"] = [int(v) for v in self.palette]
        if self.affine is not None:
            out["affine"] = [[float(v) for v in row] for row in self.affine]
        if self.origin is not None:
            out["origin"] = [float(v) for v in self.origin]
        if self.direction is not None:
            out["direction"] = [[float(v) for v in row] for row in self.direction]
        if self.nifti_codes is not None:
            out["nifti_codes"] = [int(v) for v in self.nifti_codes]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> ImageMeta:
        """Inverse of :meth:`to_dict`. Unknown keys (from a newer version) are ignored."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if "shape" in kwargs:
            kwargs["shape"] = tuple(int(s) for s in kwargs["shape"])
        if kwargs.get("spacing") is not None:
            kwargs["spacing"] = tuple(float(s) for s in kwargs["spacing"])
        if kwargs.get("affine") is not None:
            kwargs["affine"] = [[float(v) for v in row] for row in kwargs["affine"]]
        if kwargs.get("palette") is not None:
            kwargs["palette"] = [int(v) for v in kwargs["palette"]]
        if kwargs.get("origin") is not None:
            kwargs["origin"] = tuple(float(v) for v in kwargs["origin"])
        if kwargs.get("direction") is not None:
            kwargs["direction"] = [[float(v) for v in row] for row in kwargs["direction"]]
        if kwargs.get("nifti_codes") is not None:
            kwargs["nifti_codes"] = tuple(int(v) for v in kwargs["nifti_codes"])
        return cls(**kwargs)


__all__ = ["METRES_PER_UNIT", "ImageMeta", "convert_spacing"]

"""Anatomical orientation of 3D volumes: which way each array axis points, and turning a volume to a
chosen orientation (and back) by permuting and flipping its axes, never interpolating.

Scanners store volumes in different orientations (axial LPS DICOM, RAS NIfTI, flipped or permuted
axes). unetkit's array order is always the readers' ``(z, y, x)`` = ``(D, H, W)``: the *file's*
voxel axes (i, j, k) = (x, y, z) reversed (:mod:`unetkit.io.readers`). Which anatomical direction
those axes point to is whatever the file stored; a net trained on one orientation sees another one
mirrored or transposed. ``data.orientation`` (``unetkit train --orientation RAS``) turns every
volume to one orientation before training, and ``predict`` turns each input the same way and its
outputs back, so they overlay the input exactly.

Orientation codes. Three letters, one from each pair R/L (right/left), A/P (anterior/posterior),
S/I (superior/inferior), in **(x, y, z) order**, the order of the file's voxel axes as NIfTI,
nibabel, ITK and 3D Slicer name them; each letter is the direction in which the voxel index along
that axis *grows* (nibabel's convention: ``"RAS"`` = x grows to the patient's right, y to anterior,
z to superior; nibabel's ``as_closest_canonical`` gives ``"RAS"``, a DICOM axial series is usually
``"LPS"``). unetkit's arrays hold the axes in the reverse order, ``(z, y, x)``: the letters read
from last to first name the array axes 0, 1, 2. A volume in ``"RAS"`` is an array whose axis 0
(depth) grows to superior, axis 1 to anterior and axis 2 (width) to the right (``"SAR"`` read in
array order); one in ``"LPS"`` has array axes superior, posterior, left (``"SPL"``).

Where the geometry comes from: a NIfTI ``meta.affine`` (voxel (i, j, k) → RAS world) or an
NRRD/MetaImage/DICOM ``meta.origin``/``meta.direction``/``meta.spacing`` (LPS world), converted to
the same affine by :func:`~unetkit.io.itk.nifti_affine`. An oblique volume gets the code of its
closest axes (nibabel's ``io_orientation``). 2D images and files that state no geometry (PNG, TIFF,
``.npy``, zarr) have no code: :func:`reorient` passes them through unchanged, with an identity
:class:`Reorientation`.

:func:`reorient` returns the turned array, an :class:`~unetkit.io.meta.ImageMeta` whose spacing,
affine, origin and direction describe the turned array exactly (every voxel keeps its world
position), and the :class:`Reorientation` that :func:`restore` undoes exactly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import ConfigError, DataError
from .meta import ImageMeta

#: The three axis pairs of an orientation code; a code takes one letter of each.
AXIS_PAIRS = ("RL", "AP", "SI")
#: The orientation of an axis that stays where it is, unflipped, for each of the 3 axes.
_IDENTITY = ((0, 1), (1, 1), (2, 1))


def check_orientation(code, where: str = "orientation") -> Optional[str]:
    """``code`` upper-cased (``"ras"`` → ``"RAS"``), ``None`` for ``None``; anything but three
    letters, one of each pair R/L, A/P, S/I, is a one-line :class:`ConfigError` naming ``where``."""
    if code is None:
        return None
    text = str(code).strip().upper() if isinstance(code, str) else None
    valid = (
        text is not None
        and len(text) == 3
        and all(sum(letter in pair for letter in text) == 1 for pair in AXIS_PAIRS)
    )
    if not valid:
        raise ConfigError(
            f"{where} {code!r} is not an orientation code: give 3 letters, one of each pair R/L, "
            "A/P, S/I, in (x, y, z) order (e.g. RAS, LPS)"
        )
    return text


@dataclass(frozen=True)
class Reorientation:
    """How :func:`reorient` turned a volume, so that :func:`restore` can turn it back.

    Attributes:
        source: the stored orientation code (``None`` when the volume has none: 2D, no geometry).
        target: the code asked for (``None``: left as stored).
        ornt: nibabel orientation transform over the (x, y, z) axes: row ``i`` is ``(j, flip)``,
            stored axis ``i`` becomes axis ``j``, reversed when ``flip`` is ``-1``.
        shape: the stored spatial shape, array order ``(z, y, x)`` (``()`` when unknown).
    """

    source: Optional[str] = None
    target: Optional[str] = None
    ornt: tuple = _IDENTITY
    shape: tuple = ()

    @property
    def is_identity(self) -> bool:
        """Whether the array is left as stored (no permutation, no flip)."""
        return tuple(map(tuple, self.ornt)) == _IDENTITY

    @property
    def shape_after(self) -> tuple:
        """The spatial shape of the turned array, array order."""
        if not self.shape:
            return ()
        xyz, out = self.shape[::-1], [0, 0, 0]
        for i, (j, _) in enumerate(self.ornt):
            out[j] = xyz[i]
        return tuple(out[::-1])

    def inverse(self) -> Reorientation:
        """The transform that undoes this one."""
        inv = [(0, 1)] * 3
        for i, (j, flip) in enumerate(self.ornt):
            inv[j] = (i, flip)
        return Reorientation(self.target, self.source, tuple(inv), self.shape_after)

    def apply(self, array: np.ndarray) -> np.ndarray:
        """``array`` (``(*spatial)`` or ``(C, *spatial)``, stored orientation) turned: what
        :func:`reorient` does to the image, for the case's mask, instance ids or weights."""
        return _apply(array, self.ornt, self.shape, "reorient")


def axis_codes(meta: Optional[ImageMeta]) -> Optional[str]:
    """The orientation code of a volume's axes (module docstring), e.g. ``"RAS"`` or ``"LPS"``;
    ``None`` for a 2D image or a file that states no 3D geometry.

    Raises:
        DataError: a degenerate geometry (an axis with no direction), naming the file.
    """
    affine = world_affine(meta)
    if affine is None:
        return None
    return _codes(affine, meta)


def world_affine(meta: Optional[ImageMeta]) -> Optional[np.ndarray]:
    """The 4×4 voxel (i, j, k) = (x, y, z) → RAS world matrix of a 3D volume's ``meta`` (the NIfTI
    affine, or the NIfTI affine of its ITK geometry), or ``None`` without 3D geometry."""
    if meta is None or _spatial_dims(meta) not in (None, 3):
        return None
    if meta.affine is not None:
        affine = np.asarray(meta.affine, dtype=float)
        return affine if affine.shape == (4, 4) else None
    from .itk import nifti_affine_of

    return nifti_affine_of(meta, 3)


def reorient(
    array: np.ndarray, meta: Optional[ImageMeta], target: Optional[str]
) -> tuple[np.ndarray, Optional[ImageMeta], Reorientation]:
    """``array`` turned to orientation ``target`` by permuting and flipping axes only.

    Args:
        array: ``(C, z, y, x)`` image or ``(z, y, x)`` mask, in the stored orientation.
        meta: its :class:`ImageMeta` (for a mask: its image's).
        target: an orientation code (``"RAS"``, ``"LPS"``; see the module docstring), or ``None``
            to leave the array as stored.

    Returns:
        ``(turned, new_meta, transform)``: ``new_meta`` a copy of ``meta`` whose ``shape``,
        ``spacing``, ``affine``, ``origin`` and ``direction`` describe ``turned`` (each voxel keeps
        its world position); ``transform`` what :func:`restore` undoes. A 2D image, a file without
        geometry or ``target`` ``None`` come back as they are (the same objects), with an identity
        transform.

    Raises:
        ConfigError: ``target`` is no orientation code.
        DataError: the array does not fit ``meta`` (spatial size or dimensions), or its geometry
            is degenerate.
    """
    target = check_orientation(target)
    affine = world_affine(meta) if target is not None else None
    if affine is None:
        return array, meta, Reorientation(target=target)
    from nibabel.orientations import axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

    source = _codes(affine, meta)
    spatial = _spatial_shape(array, meta)
    ornt = ornt_transform(io_orientation(affine), axcodes2ornt(tuple(target)))
    transform = Reorientation(
        source, target, tuple((int(j), int(f)) for j, f in ornt), tuple(spatial)
    )
    if transform.is_identity:
        return array, meta, transform
    turned = transform.apply(array)
    # index in the turned array → index in the stored one (x, y, z, homogeneous)
    back = inv_ornt_aff(np.asarray(transform.ornt, dtype=float), spatial[::-1])
    changes: dict = {"shape": _turned_shape(meta, array, transform.shape_after)}
    if meta.spacing is not None:
        zooms = [0.0, 0.0, 0.0]
        for i, (j, _) in enumerate(transform.ornt):
            zooms[j] = float(meta.spacing[::-1][i])
        changes["spacing"] = tuple(zooms[::-1])
    if meta.affine is not None:
        changes["affine"] = (affine @ back).tolist()
    if meta.origin is not None and meta.direction is not None:  # ITK geometry, LPS world
        direction = np.asarray(meta.direction, dtype=float)
        steps = direction * np.asarray(meta.spacing[::-1], dtype=float)  # columns: index steps
        changes["origin"] = tuple(
            float(v) for v in steps @ back[:3, 3] + np.asarray(meta.origin, dtype=float)
        )
        changes["direction"] = (direction @ back[:3, :3]).tolist()
    return turned, dataclasses.replace(meta, **changes), transform


def restore(array: np.ndarray, transform: Reorientation) -> np.ndarray:
    """``array`` (``(*spatial)`` or ``(C, *spatial)``, turned by ``transform``: labels,
    probabilities) back in the stored orientation; the exact inverse of :func:`reorient`.

    Raises:
        DataError: the array's spatial size is not the turned volume's.
    """
    if transform.is_identity:
        return array
    inverse = transform.inverse()
    return _apply(array, inverse.ornt, inverse.shape, "restore")


# ----------------------------------------------------------------------------------------- helpers
def _apply(array: np.ndarray, ornt: tuple, shape: tuple, what: str) -> np.ndarray:
    """``array`` (``(*spatial)`` or ``(C, *spatial)``, spatial of size ``shape``) with the (x, y, z)
    orientation transform ``ornt`` applied, C-contiguous."""
    if tuple(map(tuple, ornt)) == _IDENTITY:
        return array
    if array.ndim not in (3, 4) or (shape and tuple(array.shape[-3:]) != tuple(shape)):
        raise DataError(
            f"cannot {what} an array of shape {tuple(array.shape)}: expected (z, y, x) = "
            f"{tuple(shape)}, with or without a channel axis in front"
        )
    from nibabel.orientations import apply_orientation

    lead = array.ndim - 3
    xyz = array.transpose(lead + 2, lead + 1, lead, *range(lead))  # (x, y, z[, C])
    out = apply_orientation(xyz, np.asarray(ornt, dtype=float))
    return np.ascontiguousarray(out.transpose(*range(3, 3 + lead), 2, 1, 0))


def _codes(affine: np.ndarray, meta: ImageMeta) -> str:
    """The orientation code of ``affine``, or a DataError naming ``meta.path`` when an axis has no
    direction (a zero column)."""
    from nibabel.orientations import aff2axcodes

    codes = aff2axcodes(affine)
    if any(c is None for c in codes):
        raise DataError(
            f"its geometry gives no direction to every axis (orientation {codes}, affine "
            f"{np.round(affine, 4).tolist()}); fix the file's header",
            getattr(meta, "path", None),
        )
    return "".join(codes)


def _spatial_dims(meta: ImageMeta) -> Optional[int]:
    """2 or 3 from ``meta.shape`` (else ``meta.spacing``), ``None`` when it says neither."""
    if meta.shape:
        return meta.spatial_dims
    return len(meta.spacing) if meta.spacing is not None else None


def _spatial_shape(array: np.ndarray, meta: ImageMeta) -> tuple:
    """The array's spatial shape ``(z, y, x)``, checked against ``meta.shape``."""
    if array.ndim not in (3, 4):
        raise DataError(
            f"an array of shape {tuple(array.shape)} is no volume: reorient takes (C, z, y, x) "
            "images and (z, y, x) masks",
            getattr(meta, "path", None),
        )
    spatial = tuple(int(s) for s in array.shape[-3:])
    if meta.shape and tuple(meta.shape[1:]) != spatial:
        raise DataError(
            f"array of shape {tuple(array.shape)} does not fit its meta (spatial size "
            f"{tuple(meta.shape[1:])})",
            getattr(meta, "path", None),
        )
    return spatial


def _turned_shape(meta: ImageMeta, array: np.ndarray, spatial: tuple) -> tuple:
    """``meta.shape`` for the turned volume: its channels, the turned spatial size."""
    channels = array.shape[0] if array.ndim == 4 else (meta.shape[0] if meta.shape else 1)
    return (int(channels), *spatial)


__all__ = [
    "AXIS_PAIRS",
    "Reorientation",
    "axis_codes",
    "check_orientation",
    "reorient",
    "restore",
    "world_affine",
]

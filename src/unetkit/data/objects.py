"""Objects in a mask: which lie close to another (touching) and how big they are.

Objects are the ids of a label image (``0`` = background): instance ids, or the connected components
of a class (face connectivity, as :func:`~unetkit.data.weightmap.instance_labels` and
:func:`scipy.ndimage.label` by default: 4-neighbours in 2D, 6 in 3D, so two objects that meet only
at a corner, or are separated by a 1-px background line, stay two objects).

*Touching* uses the Chebyshev distance: two objects touch when a pixel of one lies within
``max_gap`` px of a pixel of the other along every axis (``max_gap=1``: 8-adjacent in 2D, 26-adjacent
in 3D; ``max_gap=2``, the default: across a 1-px background line, as the U-Net paper's ground
truth separates touching cells).

Example:
    >>> lab = np.zeros((5, 13), int)
    >>> lab[1:4, 1:4] = 1; lab[1:4, 5:8] = 2; lab[1:4, 11:13] = 3  # 1 and 2 one column apart
    >>> touching_pairs(lab).tolist(), touching_objects(lab).tolist(), touching_fraction(lab)
    ([[1, 2]], [1, 2], 0.6666666666666666)
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy import ndimage

from ..errors import ConfigError


def _check(instances: np.ndarray, max_gap: int) -> np.ndarray:
    lab = np.asarray(instances)
    if lab.ndim not in (2, 3):
        raise ConfigError(f"instances must be 2D (H, W) or 3D (D, H, W), got shape {lab.shape}")
    if lab.dtype.kind not in "biu":
        raise ConfigError(f"instances must hold integer ids, got dtype {lab.dtype}")
    if isinstance(max_gap, bool) or int(max_gap) != max_gap or max_gap < 1:
        raise ConfigError(f"max_gap must be >= 1, got {max_gap}")
    return lab


def touching_pairs(instances: np.ndarray, max_gap: int = 2) -> np.ndarray:
    """Pairs of objects with pixels at most ``max_gap`` px apart (Chebyshev distance).

    Compares the label image with shifted copies of itself (``((2·max_gap + 1)^N − 1) / 2`` shifts);
    when only *which* objects touch matters, :func:`touching_objects` is faster.

    Args:
        instances: ``(H, W)`` or ``(D, H, W)`` integer object ids (0 = background).
        max_gap: the largest distance between two pixels of a touching pair (1 = adjacent,
            diagonals included; 2 = across a 1-px line).

    Returns:
        ``(P, 2)`` int64 array of id pairs ``(a, b)`` with ``a < b``, sorted.

    Raises:
        ConfigError: not 2D/3D, not integer, or ``max_gap < 1``.
    """
    lab = _check(instances, max_gap).astype(np.int64, copy=False)
    found = []
    shape = lab.shape
    for offset in itertools.product(range(-max_gap, max_gap + 1), repeat=lab.ndim):
        if offset <= (0,) * lab.ndim:  # each unordered pair of shifts once
            continue
        a = lab[tuple(slice(max(0, -d), n - max(0, d)) for d, n in zip(offset, shape))]
        b = lab[tuple(slice(max(0, d), n - max(0, -d)) for d, n in zip(offset, shape))]
        sel = (a > 0) & (b > 0) & (a != b)
        if sel.any():
            found.append(np.stack([np.minimum(a[sel], b[sel]), np.maximum(a[sel], b[sel])], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(found), axis=0)


def touching_objects(instances: np.ndarray, max_gap=2) -> np.ndarray:
    """The ids of the objects with another object within ``max_gap`` px (Chebyshev distance).

    The same objects as ``np.unique(touching_pairs(instances, max_gap))``, found with one maximum and
    one minimum filter over a ``(2·max_gap + 1)^N`` box (separable, so a 2000×2000 image with
    hundreds of objects takes a few tens of milliseconds): an object pixel whose box holds a larger
    or a smaller non-zero id has a neighbour of another object.

    Args:
        instances: ``(H, W)`` or ``(D, H, W)`` integer object ids (0 = background).
        max_gap: see :func:`touching_pairs`; or one gap per axis (:func:`gaps_per_axis`: an
            anisotropic volume's 2 px in x and y span 1 slice of five times their length in z).

    Returns:
        Sorted int64 ids.
    """
    gaps = list(max_gap) if isinstance(max_gap, (list, tuple, np.ndarray)) else None
    if gaps is not None:
        lab = _check(instances, 1)
        if len(gaps) != lab.ndim or any(int(g) != g or g < 1 for g in gaps):
            raise ConfigError(f"max_gap per axis must be {lab.ndim} integers >= 1, got {max_gap}")
    else:
        lab = _check(instances, max_gap)
    if lab.size == 0:
        return np.zeros(0, dtype=np.int64)
    lab = lab.astype(np.int64 if lab.max() > np.iinfo(np.int32).max - 1 else np.int32, copy=False)
    size = tuple(2 * int(g) + 1 for g in gaps) if gaps else 2 * int(max_gap) + 1
    top = np.iinfo(lab.dtype).max
    inside = lab > 0
    larger = ndimage.maximum_filter(lab, size=size, mode="constant", cval=0) > lab
    smaller = (
        ndimage.minimum_filter(np.where(inside, lab, top), size=size, mode="constant", cval=top)
        < lab
    )
    return np.unique(lab[inside & (larger | smaller)]).astype(np.int64)


def touching_fraction(instances: np.ndarray, max_gap: int = 2) -> float:
    """Share of the objects that touch another object (see :func:`touching_objects`); NaN without
    objects.

    Example:
        >>> lab = np.zeros((5, 9), int); lab[1:4, 1:4] = 1; lab[1:4, 5:8] = 2   # 1-px line apart
        >>> touching_fraction(lab), touching_fraction(lab, max_gap=1)
        (1.0, 0.0)
    """
    lab = _check(instances, max_gap)
    n = int(np.count_nonzero(np.bincount(lab[lab > 0].ravel().astype(np.int64))))
    if n == 0:
        return float("nan")
    return float(touching_objects(lab, max_gap).size / n)


def gaps_per_axis(max_gap: int, spacing, ndim: int) -> list[int]:
    """For a volume of voxel size ``spacing``: ``max_gap`` px along the two axes of the median
    voxel size (the image plane of an anisotropic stack), the same length (at least 1 px) along
    the third: objects two x/y pixels apart touch, objects two slices of five times that length
    apart do not (they counted as touching, and switched on the separation of touching objects,
    in stacks of 0.2 µm pixels and 1 µm slices), and slices finer than the pixels get more of
    them. 2D images and volumes without a spacing: ``max_gap`` on every axis."""
    if ndim != 3 or spacing is None or len(spacing) != 3 or min(spacing) <= 0:
        return [int(max_gap)] * ndim
    plane = float(np.median([float(s) for s in spacing]))
    return [max(1, int(round(max_gap * plane / float(s)))) for s in spacing]


def contact_pixels(instances: np.ndarray) -> np.ndarray:
    """Object pixels with a pixel of *another* object among their 8 (2D) / 26 (3D) neighbours.

    Setting them to background carves a 2-px gap wherever two objects meet, the U-Net paper's
    "separating background labels between touching cells": a net trained on such masks leaves the
    gap, so the connected components of its prediction are the objects (see
    ``data.separate_objects``). Pixels next to background only are not contact pixels.

    Example:
        >>> lab = np.zeros((3, 6), int); lab[:, 1:3] = 1; lab[:, 3:5] = 2   # 1 and 2 meet
        >>> contact_pixels(lab).astype(int).tolist()[0]
        [0, 0, 1, 1, 0, 0]
    """
    lab = _check(instances, 1).astype(np.int64, copy=False)
    objects = lab > 0
    if not objects.any():
        return np.zeros(lab.shape, dtype=bool)
    # the largest and the smallest id around each pixel (background excluded from the smallest):
    # an object pixel whose neighbourhood holds another id sees it as one of the two
    largest = ndimage.maximum_filter(lab, size=3, mode="nearest")
    # (background filled with max + 1, not int64's maximum, which the filter overflows)
    fill = lab.max() + 1
    smallest = ndimage.minimum_filter(np.where(objects, lab, fill), size=3, mode="nearest")
    return objects & ((largest != lab) | (smallest != lab))


def object_sizes(instances: np.ndarray) -> np.ndarray:
    """Pixel (voxel) count of every object, in id order (ids need not be consecutive).

    Args:
        instances: integer object ids (0 = background), any shape.

    Returns:
        int64 counts of the ids present, ``0`` excluded.
    """
    lab = np.asarray(instances)
    if lab.dtype.kind not in "biu":
        raise ConfigError(f"instances must hold integer ids, got dtype {lab.dtype}")
    ids = lab[lab > 0].ravel()
    if ids.size == 0:
        return np.zeros(0, dtype=np.int64)
    if int(ids.max()) < 1 << 24:
        counts = np.bincount(ids.astype(np.int64))
        return counts[counts > 0].astype(np.int64)
    return np.unique(ids, return_counts=True)[1].astype(np.int64)


def object_extents(instances: np.ndarray) -> np.ndarray:
    """Longest bounding-box side of every object, in id order, in pixels (voxels).

    For elongated or branching objects (vessels, membranes, neurites) the equivalent diameter says
    how thick they are; the extent says how much image a network must see to follow one.

    Example:
        >>> lab = np.zeros((4, 9), int); lab[1, 1:8] = 1; lab[3, 0] = 2
        >>> object_extents(lab).tolist()
        [7, 1]
    """
    from scipy import ndimage

    lab = np.asarray(instances)
    if lab.dtype.kind not in "biu":
        raise ConfigError(f"instances must hold integer ids, got dtype {lab.dtype}")
    boxes = ndimage.find_objects(lab.astype(np.int64, copy=False))
    return np.array(
        [max(sl.stop - sl.start for sl in box) for box in boxes if box is not None], np.int64
    )


def object_thickness(instances: np.ndarray) -> np.ndarray:
    """Thickness of every object, in id order, in pixels: the diameter ``2·d − 1`` of the largest
    disc (ball) that fits inside it, ``d`` the largest Euclidean distance to a pixel outside it.

    1 for a 1-px line, about the diameter for a disc (an even width reads one less). Unlike the
    equivalent diameter (which grows with a vessel tree's total area) or the extent, it says how
    thin an object is — what a reduced resolution must keep. Objects that touch another are
    measured apart: pixels next to another object's pixels count as outside.

    Example:
        >>> lab = np.zeros((9, 30), int); lab[2:5, 1:29] = 1; lab[6:9, 0:3] = 2
        >>> object_thickness(lab).tolist()                         # a bar 3 px thick, a 3×3 square
        [3.0, 3.0]
    """
    lab = np.asarray(instances)
    if lab.dtype.kind not in "biu":
        raise ConfigError(f"instances must hold integer ids, got dtype {lab.dtype}")
    lab = lab.astype(np.int64, copy=False)
    ids = np.unique(lab[lab > 0])
    if ids.size == 0:
        return np.zeros(0, np.float64)
    top = int(ids[-1]) + 1  # above every id (scipy's filters overflow near the dtype's limit)
    high = ndimage.maximum_filter(lab, size=3)
    low = ndimage.minimum_filter(np.where(lab > 0, lab, top), size=3)
    inside = (lab > 0) & (high == lab) & (low == lab)
    dist = ndimage.distance_transform_edt(np.pad(inside, 1))[(slice(1, -1),) * lab.ndim]
    deepest = ndimage.maximum(dist, lab, ids)
    return np.maximum(2.0 * np.asarray(deepest, np.float64) - 1.0, 1.0)


def equivalent_diameter(sizes, spatial_dims: int) -> np.ndarray:
    """Diameter of the disc (2D) or ball (3D) with the same pixel (voxel) count, in pixels.

    2D: ``2·sqrt(A/π)``; 3D: ``(6·V/π)^(1/3)``.

    Example:
        >>> equivalent_diameter([math.pi], 2).tolist()
        [2.0]
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    if spatial_dims == 2:
        return 2.0 * np.sqrt(sizes / math.pi)
    if spatial_dims == 3:
        return np.cbrt(6.0 * sizes / math.pi)
    raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")


__all__ = [
    "equivalent_diameter",
    "object_extents",
    "object_sizes",
    "object_thickness",
    "touching_fraction",
    "touching_objects",
    "touching_pairs",
]

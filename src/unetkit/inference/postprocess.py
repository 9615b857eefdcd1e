"""From probability maps to clean label images and instance label images (2D and 3D).

Semantic steps: :func:`threshold` / :func:`argmax` turn probabilities into class indices;
:func:`remove_small_objects`, :func:`fill_holes` and :func:`keep_largest_component` clean a binary
mask; :func:`clean_labels` applies them class by class to a label image.

Instance steps (the touching cells the U-Net paper separates): :func:`connected_components` labels
each connected object; :func:`watershed_split` also splits touching objects by a seeded watershed,
seeded either

* from the **distance transform** of the mask: one seed per h-maximum of the distance to the
  background (a neck between two round cells is a saddle at least ``h`` lower than both centres),
  flooding ``−distance``; or
* from the **probability of the border class** (``border_prob``; a net trained with the paper's
  border weight maps learns the thin gaps between cells): seeds are the connected parts of the
  mask where ``border_prob <= seed_threshold`` (the cell cores), flooding ``border_prob``.

Either way every pixel of the mask ends in exactly one instance; a part of the mask that got no
seed (an object too small for the h-maximum or with no core) becomes its own instance, so nothing
of the mask is lost. Optionally, instances under ``min_size`` pixels are then dropped and the rest
grown by ``expand`` pixels into the background. Instances are numbered ``1 … n`` in raster order
of their first pixel (0 = background) and returned as ``int32``.
:func:`instances_from_probabilities` is :func:`watershed_split` as the U-Net demo uses it on the
``(background, cell)`` probabilities of a two-class net; :func:`label_instances` labels the objects
of every class of a label image (what ``unetkit predict --instances`` writes). :func:`instance_image` makes a ``(1, *spatial)``
array :func:`~unetkit.io.write_image` can store (``uint16`` → PNG; more than 65535 instances →
``uint32``, TIFF only).

Connectivity 1 (face neighbours: 4 in 2D, 6 in 3D) is the default everywhere, so a one-pixel
diagonal gap separates objects.

A chosen post-processing (what validation kept after training, stored in ``best.pt`` and applied
by ``unetkit predict``) is a :class:`PostProcessing`: ordered :class:`PostStep` s, each one of
:data:`STEP_NAMES` on one class of a label image; :func:`separate_touching` is its watershed step
(a one-pixel background gap between the touching objects :func:`watershed_split` finds, so that
the written label image's connected components are the split objects).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
from scipy import ndimage

from ..errors import ConfigError


def _structure(ndim: int, connectivity: int) -> np.ndarray:
    if not 1 <= connectivity <= ndim:
        raise ConfigError(
            f"connectivity must lie in 1..{ndim} for {ndim}D data, got {connectivity}"
        )
    return ndimage.generate_binary_structure(ndim, connectivity)


def _binary(mask: np.ndarray, name: str = "mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype.kind not in "biu":
        raise ConfigError(
            f"{name} must be a binary (bool or integer) array, got dtype {mask.dtype}"
        )
    if mask.ndim < 1:
        raise ConfigError(f"{name} must have spatial axes, got a scalar")
    return mask.astype(bool, copy=False)


# ----------------------------------------------------------------------------------- probabilities
def threshold(prob: np.ndarray, level: float = 0.5) -> np.ndarray:
    """Binary class indices from a foreground probability map.

    Args:
        prob: ``(*spatial)`` probability (or any score) of the foreground.
        level: pixels with ``prob >= level`` become class 1.

    Returns:
        ``(*spatial)`` int64 in ``{0, 1}``.
    """
    prob = np.asarray(prob)
    if prob.dtype.kind not in "biuf":
        raise ConfigError(f"prob must hold numbers, got dtype {prob.dtype}")
    return (prob >= level).astype(np.int64)


def argmax(probs: np.ndarray, level: float = 0.5) -> np.ndarray:
    """Class indices from per-class probabilities or logits.

    Args:
        probs: ``(K, *spatial)``. ``K = 1`` is a single sigmoid output: thresholded at ``level``.
        level: threshold for ``K = 1``.

    Returns:
        ``(*spatial)`` int64 class indices (ties go to the lower class).
    """
    probs = np.asarray(probs)
    if probs.ndim < 2:
        raise ConfigError(f"probs must be channel-first (K, *spatial), got shape {probs.shape}")
    if probs.shape[0] == 1:
        return threshold(probs[0], level)
    return np.argmax(probs, axis=0).astype(np.int64)


def compact_argmax(probs: np.ndarray, rows: int = 256) -> np.ndarray:
    """``probs.argmax(axis=0)`` for ``(K, *spatial)`` probabilities, K ≥ 2, in the smallest
    unsigned type that holds the classes (uint8 up to 256), a band of ``rows`` along the first
    spatial axis at a time: a whole image's int64 argmax costs 8 bytes a pixel (290 MB at 6000²)
    where the labels need 1. Ties go to the lower class, as NumPy's."""
    probs = np.asarray(probs)
    k = probs.shape[0]
    dtype = np.uint8 if k <= 256 else np.uint16 if k <= 65536 else np.uint32
    out = np.empty(probs.shape[1:], dtype)
    for start in range(0, probs.shape[1], rows):
        out[start : start + rows] = probs[:, start : start + rows].argmax(axis=0)
    return out


# ---------------------------------------------------------------------------------- binary cleanup
def connected_components(mask: np.ndarray, connectivity: int = 1) -> np.ndarray:
    """Instance labels ``1 … n`` (``int32``, 0 = background) of the connected objects of a mask.

    Args:
        mask: ``(*spatial)`` binary mask.
        connectivity: 1 (face neighbours) … ``ndim`` (all neighbours).
    """
    mask = _binary(mask)
    labels, _ = ndimage.label(mask, _structure(mask.ndim, connectivity))
    return labels.astype(np.int32, copy=False)


def remove_small_objects(mask: np.ndarray, min_size: int, connectivity: int = 1) -> np.ndarray:
    """The mask without its connected objects of fewer than ``min_size`` pixels.

    Args:
        mask: ``(*spatial)`` binary mask.
        min_size: smallest object kept, in pixels (0 or 1 keeps everything).
        connectivity: as :func:`connected_components`.

    Returns:
        ``(*spatial)`` bool.
    """
    if min_size < 0:
        raise ConfigError(f"min_size must be >= 0, got {min_size}")
    mask = _binary(mask)
    if min_size <= 1 or not mask.any():
        return mask.copy()
    labels = connected_components(mask, connectivity)
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return keep[labels]


def fill_holes(
    mask: np.ndarray, max_size: Optional[int] = None, connectivity: int = 1
) -> np.ndarray:
    """Fill the holes of a mask: background regions that do not reach the image edge.

    Args:
        mask: ``(*spatial)`` binary mask.
        max_size: fill only holes of at most this many pixels (``None``: every hole).
        connectivity: connectivity of the *background* regions (1: face neighbours).

    Returns:
        ``(*spatial)`` bool.
    """
    mask = _binary(mask)
    structure = _structure(mask.ndim, connectivity)
    filled = ndimage.binary_fill_holes(mask, structure)
    if max_size is None:
        return filled
    holes, _ = ndimage.label(filled & ~mask, structure)
    sizes = np.bincount(holes.ravel())
    small = sizes <= max_size
    small[0] = False
    return mask | small[holes]


_fill_holes = fill_holes  # clean_labels' flag of the same name hides the function


def keep_largest_component(mask: np.ndarray, connectivity: int = 1) -> np.ndarray:
    """Only the largest connected object of a mask (the first in raster order on a tie).

    Args:
        mask: ``(*spatial)`` binary mask.
        connectivity: as :func:`connected_components`.

    Returns:
        ``(*spatial)`` bool (all false for an empty mask).
    """
    mask = _binary(mask)
    if not mask.any():
        return mask.copy()
    labels = connected_components(mask, connectivity)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def clean_labels(
    labels: np.ndarray,
    *,
    min_size: int = 0,
    fill_holes: bool = False,
    keep_largest: bool = False,
    classes: Optional[Sequence[int]] = None,
    background: int = 0,
    connectivity: int = 1,
) -> np.ndarray:
    """Apply the binary clean-ups class by class to a label image.

    Removed pixels (small objects, the non-largest components) become ``background``; holes are
    filled only where the image is ``background`` (a hole holding another class is kept).

    Args:
        labels: ``(*spatial)`` integer class indices.
        min_size: remove objects of fewer pixels, per class.
        fill_holes: fill each class's holes.
        keep_largest: keep only the largest component of each class.
        classes: the classes to clean (default: every value present except ``background``).
        background: the background class index.
        connectivity: as :func:`connected_components`.

    Returns:
        ``(*spatial)`` labels of the same dtype.
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "biu":
        raise ConfigError(f"labels must be integer class indices, got dtype {labels.dtype}")
    out = labels.copy()
    todo = (
        [int(c) for c in np.unique(labels) if c != background]
        if classes is None
        else [int(c) for c in classes]
    )
    for c in todo:
        if c == background:
            raise ConfigError(f"class {c} is the background class; it cannot be cleaned")
        mask = out == c
        cleaned = mask
        if min_size > 1:
            cleaned = remove_small_objects(cleaned, min_size, connectivity)
        if keep_largest:
            cleaned = keep_largest_component(cleaned, connectivity)
        out[mask & ~cleaned] = background
        if fill_holes:
            grow = _fill_holes(cleaned, connectivity=connectivity) & (out == background)
            out[grow] = c
    return out


# -------------------------------------------------------------------------------------- instances
def _relabel_raster(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered ``1 … n`` in raster order of each label's first pixel (0 stays 0), as
    ``int32``. Each first pixel is found in its label's bounding box
    (``ndimage.find_objects``: it lies in the box's first plane, first row of that plane …),
    not by sorting every pixel: ``np.unique(…, return_index=True)`` of a 6000² image took about
    0.4 GB of temporaries."""
    labels = np.asarray(labels)
    top = int(labels.max()) if labels.size else 0
    if top <= 0:
        return np.zeros(labels.shape, np.int32)
    first = np.full(top + 1, np.iinfo(np.int64).max, np.int64)  # flat index of each first pixel
    for i, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        where = [box[0].start]
        view = labels[(box[0].start, *box[1:])] == i
        for axis in range(1, labels.ndim):
            rows = view.reshape(view.shape[0], -1).any(axis=1) if view.ndim > 1 else view
            step = int(np.argmax(rows))
            where.append(box[axis].start + step)
            view = view[step]
        first[i] = np.ravel_multi_index(tuple(where), labels.shape)
    present = np.flatnonzero(first[1:] != np.iinfo(np.int64).max) + 1
    order = present[np.argsort(first[present], kind="stable")]
    lut = np.zeros(top + 1, dtype=np.int32)
    lut[order] = np.arange(1, order.size + 1, dtype=np.int32)
    return lut[labels]


def _h_maxima(dist: np.ndarray, h: float) -> np.ndarray:
    """The h-maxima of a distance map as seeds: the regional maxima (plateaus, 8/26-connected)
    of its reconstruction from ``dist − h``, so every peak at least ``h`` above the saddle to a
    higher one is one connected seed. Hand-written rather than ``skimage.morphology.h_maxima``:
    that marks the pixels within ``h`` of the top, which along the ridge of a slanted elongated
    object (its equal peaks a few hundredths apart on the pixel grid) are separate pixels, so one
    nucleus at 15–30° became three to seven seeds and as many objects."""
    from skimage.morphology import local_maxima, reconstruction

    full = ndimage.generate_binary_structure(dist.ndim, dist.ndim)
    # a peak exactly h high still counts (as h_maxima's ">= h"): the seed sits a hair higher
    hmax = reconstruction(dist - (h - min(1e-6, h / 2)), dist, method="dilation", footprint=full)
    return local_maxima(hmax, footprint=full, allow_borders=True) & (dist > 0)


def _within_components(
    markers: np.ndarray, mask: np.ndarray, structure: np.ndarray
) -> tuple[np.ndarray, int]:
    """``markers`` split where they span two components of ``mask`` (8/26-connected seeds of
    objects that touch only at a corner, under face connectivity), numbered ``1 … n`` again: an
    instance never spans two objects."""
    components, _ = ndimage.label(mask, structure)
    inside = markers > 0
    pairs = markers[inside].astype(np.int64) * (int(components.max()) + 1) + components[inside]
    _, numbered = np.unique(pairs, return_inverse=True)
    out = np.zeros(markers.shape, np.int32)
    out[inside] = numbered.reshape(-1) + 1
    return out, int(numbered.max()) + 1 if numbered.size else 0


def watershed_split(
    mask: np.ndarray,
    border_prob: Optional[np.ndarray] = None,
    *,
    h: float = 2.0,
    seed_threshold: float = 0.3,
    min_seed_size: int = 1,
    spacing: Optional[Sequence[float]] = None,
    connectivity: int = 1,
    compactness: float = 0.0,
    min_size: int = 0,
    expand: int = 0,
) -> np.ndarray:
    """Instance labels of a mask with touching objects split by a seeded watershed.

    The one instance-separation function of unetkit; :func:`instances_from_probabilities` feeds it
    a two-class probability map.

    Args:
        mask: ``(*spatial)`` binary foreground (e.g. ``threshold(p_fg)``).
        border_prob: ``(*spatial)`` probability that a pixel is border/background between objects
            (``1 − p_fg`` of a two-class net trained with border weight maps, or the border class of
            a three-class net). ``None``: seed from the distance transform instead.
        h: distance-transform seeding: a local maximum of the distance to the background is a seed
            when it rises at least ``h`` (in ``spacing`` units) above the saddle to any higher one.
            Larger ``h`` splits less.
        seed_threshold: border seeding: cell cores are where ``border_prob <= seed_threshold``.
        min_seed_size: border seeding: cores of fewer pixels are dropped.
        spacing: pixel size per axis for the distance transform (default 1).
        connectivity: 1 (face neighbours) … ``ndim``.
        compactness: the watershed's compactness (0: classic watershed).
        min_size: after the split, instances of fewer pixels are dropped (0 or 1 keeps all) and
            the rest renumbered ``1 … n`` in the same order.
        expand: then each instance grows by this many pixels into the background without
            touching another (:func:`skimage.segmentation.expand_labels`; a net trained with the
            border weight map draws the gaps wider than the truth's 1-px lines). The numbering
            stays that of the instances before they grew.

    Returns:
        ``(*spatial)`` int32 instance labels ``1 … n`` (0 = background); with the defaults every
        mask pixel is labelled.

    Example:
        >>> yy, xx = np.mgrid[:20, :40]
        >>> two = ((yy - 10) ** 2 + (xx - 12) ** 2 < 64) | ((yy - 10) ** 2 + (xx - 26) ** 2 < 64)
        >>> int(connected_components(two).max()), int(watershed_split(two).max())
        (1, 2)
    """
    from skimage.segmentation import watershed

    mask = _binary(mask)
    structure = _structure(mask.ndim, connectivity)
    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    if border_prob is None:
        if h <= 0:
            raise ConfigError(f"h must be > 0, got {h}")
        sampling = None if spacing is None else tuple(float(s) for s in spacing)
        if sampling is not None and len(sampling) != mask.ndim:
            raise ConfigError(f"spacing must hold {mask.ndim} numbers, got {spacing!r}")
        dist = ndimage.distance_transform_edt(mask, sampling=sampling)
        seeds = _h_maxima(dist, h)
        seed_structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
        elevation = -dist
    else:
        border_prob = np.asarray(border_prob, dtype=np.float64)
        if border_prob.shape != mask.shape:
            raise ConfigError(
                f"border_prob shape {border_prob.shape} differs from mask shape {mask.shape}"
            )
        seeds = mask & (border_prob <= seed_threshold)
        if min_seed_size > 1:
            seeds = remove_small_objects(seeds, min_seed_size, connectivity)
        elevation = border_prob
        seed_structure = structure
    markers, n = ndimage.label(seeds & mask, seed_structure)
    if seed_structure is not structure and n:
        markers, n = _within_components(markers, mask, structure)
    labels = watershed(
        elevation, markers, mask=mask, connectivity=connectivity, compactness=compactness
    )
    missed = mask & (labels == 0)
    if missed.any():
        extra, _ = ndimage.label(missed, structure)
        labels = np.where(missed, extra + n, labels)
    labels = _relabel_raster(labels.astype(np.int32, copy=False))
    if min_size > 1:
        from skimage.segmentation import relabel_sequential

        small = np.bincount(labels.ravel()) < min_size
        small[0] = False
        labels = relabel_sequential(np.where(small[labels], 0, labels))[0]
    if expand > 0:
        from skimage.segmentation import expand_labels

        labels = expand_labels(labels, expand)
    return labels.astype(np.int32, copy=False)


def instances_from_probabilities(
    probs: np.ndarray,
    seed_threshold: float = 0.3,
    expand: int = 0,
    min_size: int = 20,
    *,
    level: float = 0.5,
    min_seed_size: int = 4,
) -> np.ndarray:
    """Instances from the class probabilities of a two-class (background, cell) net.

    Cells are ``p_cell >= level``; :func:`watershed_split` on the background probability splits
    them at the thin gaps the net predicts (the seeds are the cores where ``p_background <=
    seed_threshold``, of at least ``min_seed_size`` pixels); instances under ``min_size`` pixels
    are dropped; each instance then grows by ``expand`` pixels into the background without touching
    another. ``unetkit demo`` picks ``seed_threshold`` and ``expand`` on its validation images
    (:func:`unetkit.evaluation.instances.tune_separation`).

    Args:
        probs: ``(2, *spatial)`` probabilities (background, cell).
        seed_threshold, expand, min_size, min_seed_size: see :func:`watershed_split`.
        level: the cell threshold.

    Returns:
        ``(*spatial)`` int32 instance ids ``1 … n`` (0 = background).

    Example:
        >>> p_cell = np.zeros((8, 20)); p_cell[1:7, 1:19] = 0.9; p_cell[1:7, 10] = 0.6
        >>> int(instances_from_probabilities(np.stack([1 - p_cell, p_cell]), min_size=4).max())
        2
    """
    probs = np.asarray(probs)
    if probs.ndim < 2 or probs.shape[0] != 2:
        raise ConfigError(
            f"probs must be (2, *spatial) probabilities (background, cell), got shape {probs.shape}"
        )
    return watershed_split(
        probs[1] >= level,
        border_prob=probs[0],
        seed_threshold=seed_threshold,
        min_seed_size=min_seed_size,
        min_size=min_size,
        expand=expand,
    )


def separate_touching(
    labels: np.ndarray,
    label: int,
    *,
    h: float = 2.0,
    connectivity: int = 1,
    background: int = 0,
) -> np.ndarray:
    """A label image whose touching objects of one class are parted by a background gap.

    :func:`watershed_split` (seeded from the distance transform, ``h``) splits the class's mask
    into objects; where two of them touch (neighbours under ``connectivity``), the pixels of the
    one with the higher id become ``background``: a one-pixel gap, so the class's connected
    components are the split objects. What the watershed leaves whole stays untouched.

    Args:
        labels: ``(*spatial)`` integer class indices.
        label: the class whose objects are split (not ``background``).
        h: the watershed's h-maximum (see :func:`watershed_split`; larger splits less).
        connectivity: 1 (face neighbours) … ``ndim``.
        background: the class the gap pixels get.

    Returns:
        ``(*spatial)`` labels of the same dtype.

    Example:
        >>> yy, xx = np.mgrid[:20, :40]
        >>> two = ((yy - 10) ** 2 + (xx - 12) ** 2 < 64) | ((yy - 10) ** 2 + (xx - 26) ** 2 < 64)
        >>> int(connected_components(separate_touching(two.astype(int), 1) == 1).max())
        2
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "biu":
        raise ConfigError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if label == background:
        raise ConfigError(f"class {label} is the background class; its objects cannot be split")
    out = labels.copy()
    mask = labels == label
    if mask.any():
        objects = watershed_split(mask, h=h, connectivity=connectivity)
        out[_contact_pixels(objects, connectivity)] = background
    return out


def _contact_pixels(objects: np.ndarray, connectivity: int) -> np.ndarray:
    """The pixels of an object with a neighbour of a lower non-zero id: removed, they leave no two
    objects touching (of each touching pair, the higher id gives up its contact pixels)."""
    structure = _structure(objects.ndim, connectivity)
    padded = np.pad(objects, 1)
    contact = np.zeros(objects.shape, bool)
    for offset in np.argwhere(structure) - 1:
        if not offset.any():
            continue
        nb = padded[tuple(slice(1 + o, 1 + o + n) for o, n in zip(offset, objects.shape))]
        contact |= (nb > 0) & (nb < objects)
    return contact


#: How :func:`label_instances` makes objects of a class: its connected components, or those split by
#: a watershed on the distance transform (:func:`watershed_split`).
INSTANCE_METHODS = ("components", "watershed")


def label_instances(
    indices: np.ndarray,
    method: str = "components",
    *,
    background: int = 0,
    h: float = 2.0,
    connectivity: int = 1,
) -> np.ndarray:
    """Instance labels of a semantic label image: the objects of every class but ``background``.

    Each class is labelled on its own (:func:`connected_components`, or :func:`watershed_split`
    seeded from the distance transform with ``h`` for ``"watershed"``), so an instance never mixes
    two classes and has one class (the one at any of its pixels), and two touching objects of
    different classes are two instances. Every foreground pixel gets an instance. The distance
    transform works on the written labels of any model (one or several classes, an ensemble, an
    exported net), where seeding from a border probability would need a net trained for it.

    Args:
        indices: ``(*spatial)`` integer class indices (e.g. a post-processed argmax).
        method: one of :data:`INSTANCE_METHODS`.
        background: the class that holds no objects.
        h: ``"watershed"`` only: the h-maximum of :func:`watershed_split` (larger splits less).
        connectivity: 1 (face neighbours) … ``ndim``.

    Returns:
        ``(*spatial)`` int32 instance ids ``1 … n`` in raster order of each instance's first pixel
        (0 = background).

    Example:
        >>> yy, xx = np.mgrid[:20, :40]
        >>> two = ((yy - 10) ** 2 + (xx - 12) ** 2 < 64) | ((yy - 10) ** 2 + (xx - 26) ** 2 < 64)
        >>> [int(label_instances(two.astype(int), m).max()) for m in INSTANCE_METHODS]
        [1, 2]
    """
    indices = np.asarray(indices)
    if indices.dtype.kind not in "biu":
        raise ConfigError(f"indices must be integer class indices, got dtype {indices.dtype}")
    if method not in INSTANCE_METHODS:
        raise ConfigError(
            f"instance method must be one of {', '.join(INSTANCE_METHODS)}, got {method!r}"
        )
    out = np.zeros(indices.shape, np.int32)  # ids 1 … n, renumbered below
    count = 0
    for c in np.unique(indices):
        if c == background:
            continue
        mask = indices == c
        if method == "components":
            objects = connected_components(mask, connectivity)
        else:
            objects = watershed_split(mask, h=h, connectivity=connectivity)
        out[mask] = objects[mask] + count
        count += int(objects.max())
    return _relabel_raster(out)


def instance_image(labels: np.ndarray) -> np.ndarray:
    """``(1, *spatial)`` instance image for :func:`~unetkit.io.write_image`: ``uint16`` (PNG, TIFF,
    NIfTI) up to 65535 instances, else ``uint32`` (TIFF, NIfTI).

    Args:
        labels: ``(*spatial)`` non-negative integer instance labels.
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "biu" or (labels.size and labels.min() < 0):
        raise ConfigError("instance labels must be non-negative integers")
    top = int(labels.max()) if labels.size else 0
    return labels.astype(np.uint16 if top <= 0xFFFF else np.uint32)[None]


# ------------------------------------------------------------------------ chosen post-processing
#: The steps a :class:`PostProcessing` can hold, in the order validation tries them.
STEP_NAMES = ("remove_small", "fill_holes", "keep_largest", "split_touching")
_STEP_PARAMETER = {"remove_small": "min_size", "split_touching": "h"}


@dataclass(frozen=True)
class PostStep:
    """One clean-up of one class of a label image.

    Attributes:
        name: one of :data:`STEP_NAMES`: ``remove_small`` (the class's objects of fewer than
            ``min_size`` pixels become background), ``fill_holes`` (background enclosed by the
            class becomes the class), ``keep_largest`` (only the class's largest object stays),
            ``split_touching`` (:func:`separate_touching` with ``h``).
        label: the class index it cleans (≥ 1; class 0 is the background).
        min_size: ``remove_small`` only: the smallest object kept, in pixels (≥ 2).
        min_volume: ``remove_small`` only, optional: the smallest object kept as a volume (an area
            in 2D) in the unit of the images' spacing (mm³, µm²), chosen on validation images of
            known spacing. Where it is set, an image of known spacing gets the pixel count of that
            volume at its own voxel size (one threshold in pixels would delete every object of a
            coarser scan: a 3 mm CT holds a third of a 1 mm one's voxels); ``min_size`` (the
            validation's median voxel size) serves images without a spacing.
        h: ``split_touching`` only: the watershed's h-maximum (> 0).
    """

    name: str
    label: int
    min_size: Optional[int] = None
    h: Optional[float] = None
    min_volume: Optional[float] = None

    def __post_init__(self) -> None:
        if self.name not in STEP_NAMES:
            raise ConfigError(
                f"post-processing step must be one of {', '.join(STEP_NAMES)}, got {self.name!r}"
            )
        if not _is_int(self.label) or self.label < 1:
            raise ConfigError(
                f"post-processing step {self.name}: the class must be an integer ≥ 1, got "
                f"{self.label!r}"
            )
        object.__setattr__(self, "label", int(self.label))
        wanted = _STEP_PARAMETER.get(self.name)
        for name in ("min_size", "h"):
            value = getattr(self, name)
            if name != wanted:
                if value is not None:
                    raise ConfigError(f"post-processing step {self.name} takes no {name}")
            elif name == "min_size":
                if not _is_int(value) or value < 2:
                    raise ConfigError(
                        f"post-processing step remove_small: min_size must be an integer ≥ 2, "
                        f"got {value!r}"
                    )
                object.__setattr__(self, name, int(value))
            else:
                if not _is_number(value) or not 0 < float(value) < float("inf"):
                    raise ConfigError(
                        f"post-processing step split_touching: h must be a number > 0, got {value!r}"
                    )
                object.__setattr__(self, name, float(value))
        if self.min_volume is not None:
            if self.name != "remove_small":
                raise ConfigError(f"post-processing step {self.name} takes no min_volume")
            if not _is_number(self.min_volume) or not 0 < float(self.min_volume) < float("inf"):
                raise ConfigError(
                    "post-processing step remove_small: min_volume must be a number > 0, got "
                    f"{self.min_volume!r}"
                )
            object.__setattr__(self, "min_volume", float(self.min_volume))

    def pixels(self, spacing: Optional[Sequence[float]] = None) -> Optional[int]:
        """``remove_small``'s threshold in pixels for an image of voxel size ``spacing``: that of
        ``min_volume`` where both are known, else ``min_size``."""
        if self.min_volume is None or not spacing:
            return self.min_size
        voxel = float(np.prod([float(v) for v in spacing]))
        if not voxel > 0:
            return self.min_size
        return max(2, int(round(self.min_volume / voxel)))

    def apply(
        self,
        indices: np.ndarray,
        connectivity: int = 1,
        spacing: Optional[Sequence[float]] = None,
    ) -> np.ndarray:
        """``(*spatial)`` integer class indices → the cleaned indices (a new array, same dtype).
        ``spacing``: the image's voxel size, which turns a ``min_volume`` into pixels."""
        if self.name == "split_touching":
            return separate_touching(indices, self.label, h=self.h, connectivity=connectivity)
        flags = {
            "remove_small": {"min_size": self.pixels(spacing)},
            "fill_holes": {"fill_holes": True},
            "keep_largest": {"keep_largest": True},
        }[self.name]
        return clean_labels(indices, classes=[self.label], connectivity=connectivity, **flags)

    def describe(self, unit: Optional[str] = None, dims: Optional[int] = None) -> str:
        """The step in words: ``remove class 1 objects under 12 px``; a size kept as a volume in
        ``unit`` (the images' spacing unit, ``"um"``) and ``dims`` (2: an area): ``under 10.3
        µm² (12 px at the validation's median voxel size)``."""
        c = self.label
        if self.name == "remove_small" and self.min_volume is not None:
            shown = {"um": "µm"}.get(unit or "", unit)
            power = {2: "²", 3: "³"}.get(dims or 0, "")
            size = (
                f"{self.min_volume:.4g} {shown}{power}"
                if shown and power
                else f"{self.min_volume:.4g} (in the images' spacing unit, {'squared' if dims == 2 else 'cubed' if dims == 3 else 'to the power of the dimensions'})"
            )
            return (
                f"remove class {c} objects under {size} "
                f"({self.min_size} {'voxels' if dims == 3 else 'px'} at the validation's median "
                "voxel size)"
            )
        if self.name == "remove_small":
            return (
                f"remove class {c} objects under {self.min_size} {'voxels' if dims == 3 else 'px'}"
            )
        if self.name == "split_touching":
            return f"split touching class {c} objects (watershed, h={self.h:g})"
        if self.name == "fill_holes":
            return f"fill the holes of class {c}"
        return f"keep the largest class {c} object"

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"name": self.name, "label": self.label}
        wanted = _STEP_PARAMETER.get(self.name)
        if wanted:
            out[wanted] = getattr(self, wanted)
        if self.min_volume is not None:
            out["min_volume"] = self.min_volume
        return out

    @classmethod
    def from_dict(cls, data: Any) -> PostStep:
        if not isinstance(data, dict) or not {"name", "label"} <= set(data):
            raise ConfigError(
                f"a post-processing step must be a mapping with a name and a label, got {data!r}"
            )
        unknown = set(data) - {"name", "label", "min_size", "h", "min_volume"}
        if unknown:
            raise ConfigError(
                f"post-processing step {data['name']!r}: unknown key(s) {', '.join(sorted(unknown))}"
            )
        return cls(**data)


@dataclass(frozen=True)
class PostProcessing:
    """What validation chose to do to the predicted class indices; the empty one does nothing.

    Built by :func:`unetkit.evaluation.postprocess_choice.choose_postprocessing`, stored in
    ``best.pt`` (``extra["postprocess"]``, :meth:`to_dict`) and ``postprocess.json``, read back by
    :meth:`Predictor.from_checkpoint <unetkit.inference.predictor.Predictor.from_checkpoint>`
    (``predictor.postprocess``) and applied by ``unetkit predict``.

    Attributes:
        steps: the :class:`PostStep` s, applied in this order.
        connectivity: what counts as one object (1: face neighbours … ``ndim``).

    Example:
        >>> pp = PostProcessing((PostStep("remove_small", 1, min_size=3),))
        >>> pp.apply(np.array([[1, 1, 1, 0, 1]])).tolist()
        [[1, 1, 1, 0, 0]]
        >>> PostProcessing.from_dict(pp.to_dict()) == pp, PostProcessing().describe()
        (True, 'none')
    """

    steps: tuple = ()
    connectivity: int = 1

    def __post_init__(self) -> None:
        steps = tuple(self.steps)
        if not all(isinstance(s, PostStep) for s in steps):
            raise ConfigError(f"post-processing steps must be PostStep objects, got {steps!r}")
        if not _is_int(self.connectivity) or self.connectivity < 1:
            raise ConfigError(
                f"post-processing connectivity must be an integer ≥ 1, got {self.connectivity!r}"
            )
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "connectivity", int(self.connectivity))

    def __bool__(self) -> bool:
        return bool(self.steps)

    def then(self, step: PostStep) -> PostProcessing:
        """This post-processing followed by ``step``."""
        return PostProcessing((*self.steps, step), self.connectivity)

    def apply(
        self, prediction: np.ndarray, spacing: Optional[Sequence[float]] = None
    ) -> np.ndarray:
        """Clean a prediction.

        Args:
            prediction: ``(*spatial)`` integer class indices, or ``(K, *spatial)`` float
                probabilities / logits (turned into indices by :func:`argmax` first).
            spacing: the image's voxel size, for steps whose sizes are volumes
                (:attr:`PostStep.min_volume`); ``None``: their pixel sizes.

        Returns:
            ``(*spatial)`` class indices (a new array; the dtype of integer input, else int64).
        """
        prediction = np.asarray(prediction)
        if prediction.dtype.kind == "f":
            indices = argmax(prediction)
        elif prediction.dtype.kind in "biu":
            indices = prediction.copy()
        else:
            raise ConfigError(
                f"post-processing needs class indices or probabilities, got dtype {prediction.dtype}"
            )
        for step in self.steps:
            indices = step.apply(indices, self.connectivity, spacing)
        return indices

    def describe(self, unit: Optional[str] = None, dims: Optional[int] = None) -> str:
        """The steps in words, ``;``-separated (``none`` when empty); ``unit``, ``dims``: see
        :meth:`PostStep.describe`."""
        return "; ".join(s.describe(unit, dims) for s in self.steps) or "none"

    def to_dict(self) -> dict:
        return {"steps": [s.to_dict() for s in self.steps], "connectivity": self.connectivity}

    @classmethod
    def from_dict(cls, data: Any) -> PostProcessing:
        """The inverse of :meth:`to_dict`; ``None`` (a checkpoint without one) is the empty one."""
        if data is None:
            return cls()
        if not isinstance(data, dict) or not isinstance(data.get("steps", []), list):
            raise ConfigError(
                f"post-processing must be a mapping with a list of steps, got {data!r}"
            )
        unknown = set(data) - {"steps", "connectivity"}
        if unknown:
            raise ConfigError(f"post-processing: unknown key(s) {', '.join(sorted(unknown))}")
        steps = tuple(PostStep.from_dict(s) for s in data.get("steps", []))
        return cls(steps, data.get("connectivity", 1))


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    return _is_int(value) or isinstance(value, (float, np.floating))

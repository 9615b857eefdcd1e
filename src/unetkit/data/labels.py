"""Mask values ↔ class indices: :class:`LabelMap`, :func:`infer_label_map` and :func:`read_mask`.

A mask file holds the user's values (``{0, 255}``, ``{0, 1, 2}``, RGB colours, palette indices or
instance ids); the network needs class indices ``0 … num_classes-1``. A :class:`LabelMap` is the
ordered list of those values: class ``i`` is ``values[i]``. It encodes masks to indices, decodes
predictions back to the user's values, and is saved in checkpoints (:meth:`LabelMap.to_dict`).

How :func:`infer_label_map` decides with ``kind="auto"``:

* a 3-channel mask → ``"colors"``: each distinct RGB colour is a class, colours sorted
  (so black ``(0, 0, 0)`` is class 0). A grey mask saved as RGB (R = G = B everywhere) is read as
  its grey channel (:func:`~unetkit.data.object_masks.grey_if_equal_channels`), so it mixes with
  masks saved as grey; an 8-bit grey mask among colour ones is the grey colour ``(v, v, v)``;
* a 1-channel mask → ``"labels"``: each distinct value is a class, values sorted ascending. So a
  binary ``{0, 255}`` or ``{0, 1}`` mask gives classes ``{0, 1}``; ISBI 2012 (255 = cell interior,
  0 = membrane) gives 0 = membrane, 1 = interior; DRIVE (255 = vessel) gives 1 = vessel. Pass
  ``LabelMap([255, 0])`` to number them the other way. A palette (``P``) mask holds palette
  indices, which are its labels; the palette is kept in :attr:`LabelMap.palette`;
* ``"auto"`` and 2D masks each numbered 0, 1 … n with n varying from mask to mask (up to at least
  :data:`FEW_IDS_MIN`), every number one connected region: instance ids of images with few objects
  (:func:`numbered_per_mask`), read as instances;
* ``"auto"`` and many values: a 2D mask with more than :data:`INSTANCE_GUESS_MIN_IDS` values, 0
  among them, each non-zero value one connected region (:func:`looks_like_instances`) is an
  instance mask (Cellpose's, StarDist's and most nuclei sets' label images), and the whole set is
  read as instances. The same holds for colour-coded instance masks (an RGB image, one colour per
  object on black, as Fiji's "glasbey" overlays are saved): more than ``max_classes`` colours, each
  one region. Otherwise more than ``max_classes`` distinct values over all masks is an error that
  suggests ``--mask-kind instances`` or a lossless format (JPEG artefacts, a grey-level image given
  as a mask). ``kind="labels"`` lifts the limit and never guesses.

JPEG masks (``.jpg``/``.jpeg``, as Kvasir-SEG and many Kaggle sets ship them): lossy compression
leaves no exact label value, so with ``"auto"`` a set with JPEG masks is read as **binary**: each
mask's grey level (the mean of R, G, B where it is stored as colour) at or above
:data:`~unetkit.data.lossy.LOSSY_THRESHOLD` is foreground (:attr:`LabelMap.threshold`; classes 0/255). A JPEG mask in
colour, or one with more than :data:`~unetkit.data.lossy.LOSSY_MID_SHARE` of its pixels between black and white (several
classes, or an image given as a mask), is an error asking for lossless (PNG) masks.

A **per-object mask folder** in place of a mask file (one binary file per object, as the 2018 Data
Science Bowl nuclei ship, :mod:`~unetkit.data.object_masks`) is read as instance ids; with ``"auto"``
a set holding one is read as instances, and ``"labels"``/``"colors"`` refuse it.

``kind="instances"``: each non-zero value (or each colour other than black) is one object id; the
semantic mask is ``id > 0`` (classes background/object) and the ids are returned too (for weight
maps and object metrics, :func:`instance_ids`).

**Unlabelled pixels** (partial annotations: scribbles, a few outlined cells, regions nobody
annotated): one grey mask value, :attr:`LabelMap.ignore` (``--ignore-value V``; nnU-Net's
``"ignore"`` label in ``dataset.json``), is no class. :meth:`LabelMap.encode` gives it
:data:`IGNORE_INDEX`, which the loss, the validation scores, the post-processing choice, the
fingerprint and ``evaluate`` leave out, and predictions never hold it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Iterable, NamedTuple, Optional, Sequence, Union

import numpy as np

from ..errors import ConfigError, DataError
from ..io.readers import ImageMeta
from .discovery import Discovery
from .lossy import LOSSY_THRESHOLD, is_lossy_mask, lossy_mask_grey
from .object_masks import is_object_source, read_mask_source

PathLike = Union[str, Path]
MaskLike = Union[PathLike, np.ndarray]

LABEL_KINDS = ("labels", "colors", "instances")
#: The class index of unlabelled pixels (:attr:`LabelMap.ignore`): negative, so it is no class
#: index, ``mask > 0`` (foreground) and ``mask >= 0`` (annotated) leave it out, and code that
#: forgets it fails loudly (``bincount``, one-hot) instead of counting it as a class.
IGNORE_INDEX = -1
INFER_KINDS = ("auto", *LABEL_KINDS)
_SHOW = 10


def _fmt_value(v) -> str:
    return f"({v[0]}, {v[1]}, {v[2]})" if isinstance(v, tuple) else str(v)


def _fmt_values(values: Sequence, limit: int = _SHOW) -> str:
    shown = ", ".join(_fmt_value(v) for v in list(values)[:limit])
    return shown + (f" … ({len(values)} values)" if len(values) > limit else "")


def _pack(rgb: np.ndarray) -> np.ndarray:
    """(3, *spatial) colours → (*spatial) int64 ``r << 16 | g << 8 | b``."""
    rgb = rgb.astype(np.int64)
    return (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]


def _unpack(v: int) -> tuple:
    return (int(v) >> 16 & 255, int(v) >> 8 & 255, int(v) & 255)


#: ``"auto"`` guesses instance ids only in a 2D mask with more values than this (class masks with
#: this many classes are rare in 2D; 3D atlases hold a hundred organs, one region each: never guessed)
INSTANCE_GUESS_MIN_IDS = 32
#: ... whose equal-valued 8-connected regions number at most this × the non-zero values (plus 2):
#: an id cut in two by an object's thin neck still passes; a grey-level image or a JPEG-compressed
#: mask scatters every value over many small regions
INSTANCE_GUESS_REGIONS = 1.25
#: ... and whose typical id covers at least this many pixels (objects, not pixel noise)
INSTANCE_GUESS_MIN_PIXELS = 4


def looks_like_instances(plane: np.ndarray) -> bool:
    """Whether one mask plane ``(H, W)`` is an instance label image: integer values, 0 among them,
    more than :data:`INSTANCE_GUESS_MIN_IDS` of them, each non-zero value (nearly) one connected
    region of a few pixels or more, as instance ids are. What ``kind="auto"`` reads as instances."""
    plane = np.asarray(plane)
    if plane.ndim != 2 or plane.dtype.kind not in "iub":
        return False
    ids, counts = np.unique(plane, return_counts=True)
    if ids.size <= INSTANCE_GUESS_MIN_IDS or ids[0] != 0:
        return False
    if np.median(counts[1:]) < INSTANCE_GUESS_MIN_PIXELS:  # objects, not single noisy pixels
        return False
    from skimage.measure import label

    _, regions = label(plane, background=0, connectivity=2, return_num=True)
    return regions <= INSTANCE_GUESS_REGIONS * (ids.size - 1) + 2


#: a set of 2D masks each numbered 0, 1 … n, n differing between masks and reaching at least this
#: in one, every number (nearly) one region, holds instance ids of a few objects per image
FEW_IDS_MIN = 4


def each_value_one_region(plane: np.ndarray) -> bool:
    """Whether every non-zero value of a 2D or 3D integer ``plane`` is (nearly) one connected
    region (8- or 26-connected), as an object's id is (:data:`INSTANCE_GUESS_REGIONS`)."""
    plane = np.asarray(plane)
    if plane.ndim not in (2, 3) or plane.dtype.kind not in "iub":
        return False
    from skimage.measure import label

    values = np.unique(plane)
    _, regions = label(plane, background=0, connectivity=plane.ndim, return_num=True)
    return regions <= INSTANCE_GUESS_REGIONS * int((values != 0).sum()) + 2


def numbered_per_mask(values: Sequence[set], one_region: Sequence[bool]) -> bool:
    """Whether masks whose values are ``values`` (one set per mask) hold instance ids numbered
    from 1 in each mask: each set is 0 … n, the n differ and reach :data:`FEW_IDS_MIN`, and every
    value of every mask is one region (``one_region``, :func:`each_value_one_region`). Class masks
    hold the same classes from image to image, or classes missing in between; images of fewer
    objects than :data:`INSTANCE_GUESS_MIN_IDS` are what :func:`looks_like_instances` misses."""
    if not values or not all(one_region):
        return False
    tops = [max(v) for v in values]
    return (
        all(set(v) == set(range(top + 1)) for v, top in zip(values, tops))
        and max(tops) >= FEW_IDS_MIN
        and len(set(tops)) > 1
    )


#: volumes larger than this are not searched for ids numbered per mask (one connected-component
#: labelling each, 0.4 s at this size): nuclei stacks are smaller, CT label maps far larger
NUMBERED_VOLUME_MAX_VOXELS = 2**23


def numbered_regions(plane: np.ndarray, values: set) -> bool:
    """Whether a mask ``plane`` of ``values`` is numbered 0 … n, each number one region: the
    cheap test of the values first, the labelling only then (and for volumes only up to
    :data:`NUMBERED_VOLUME_MAX_VOXELS`)."""
    if not values or values != set(range(max(values) + 1)):
        return False
    if np.ndim(plane) == 3 and (
        max(values) < FEW_IDS_MIN or plane.size > NUMBERED_VOLUME_MAX_VOXELS
    ):
        return False
    return each_value_one_region(plane)


def numbered_volumes_note(values: Sequence[set], one_region: Sequence[bool]) -> Optional[str]:
    """What to say of 3D masks numbered 0 … n per volume, n differing, each number one region
    (:func:`numbered_per_mask`): nuclei ids, likely, but organ label maps look alike (each organ
    one region; volumes that miss the last organs stop lower), so volumes are not read as
    instances unasked, as 2D masks are: the line names the flag. ``None`` when they do not look
    so."""
    if not numbered_per_mask(values, one_region):
        return None
    tops = sorted({max(v) for v in values})
    return (
        f"the {len(values)} mask volumes are each numbered 0 … n (n from {tops[0]} to "
        f"{tops[-1]}), every number one connected region: trained as {tops[-1]} classes; if the "
        "numbers are objects (nuclei, cells), pass --mask-kind instances"
    )


def _spread(k: int) -> list[set]:
    """The values of classes ``0 … k`` spread over 0–255 as image editors save them (``k`` = 3:
    0/85/170/255), rounded and cut (``k`` = 2: 0/128/255 and 0/127/255)."""
    return [{round(i * 255 / k) for i in range(k + 1)}, {i * 255 // k for i in range(k + 1)}]


def two_codings(values: dict) -> Optional[tuple]:
    """``(mask, message)`` when label masks were saved two ways, some as class numbers (0/1,
    0/1/2/3) and some spread over 0–255 (0/255, 0/85/170/255) (``values``: each mask's set of
    values): read as they are, 1 and 255 (or 1 and 85) would be two classes that never meet.
    The mask named is one of the fewer kind. ``None`` otherwise."""
    sets = [set(v) for v in values.values()]
    union = set().union(*sets) if sets else set()
    for k in range(1, 17):
        numbers = set(range(k + 1))
        for spread in _spread(k):
            if not union <= numbers | spread or not union - spread or not union - numbers:
                continue
            if k > 1 and not union & (spread - {0, 255}):
                continue  # 0/255 beside 0/1/2 is not 3 classes spread: no grey step is there
            if not all(v <= numbers or v <= spread for v in sets):
                return None  # 1 and 255 together in a mask: classes
            counted = [m for m, v in values.items() if v - spread]
            spreads = [m for m, v in values.items() if v - numbers]
            a, b = "/".join(map(str, sorted(numbers))), "/".join(map(str, sorted(spread)))
            few, many, (a, b) = (
                (counted, spreads, (a, b))
                if len(counted) <= len(spreads)
                else (spreads, counted, (b, a))
            )
            what = "binary masks" if k == 1 else "label masks"
            return few[0], (
                f"mask values {a} while {len(many)} of the {len(values)} masks hold {b}: {what} "
                f"saved two ways would train {len(union) - 1} foreground classes instead of {k}; "
                f"save every mask as {b}, or pass --mask-kind labels to keep them apart"
            )
    return None


def instance_ids(mask: np.ndarray, path: Optional[PathLike] = None) -> np.ndarray:
    """The object ids of an instance mask, ``(*spatial)`` ``int64``, 0 = background.

    A 1-channel mask holds the ids (whole numbers). A 3-channel ``uint8`` mask is colour-coded:
    black is background, every other colour one object, numbered ``1 … n`` in colour order (compact
    ids: weight maps and metrics count objects with ``bincount``, and packed colours reach 2**24).

    Raises:
        DataError: another channel count, an RGB mask that is not ``uint8``, or non-integer values.
    """
    mask = np.asarray(mask)
    if mask.ndim >= 3 and mask.shape[0] == 1:
        return _integral(mask[0], path)
    if mask.ndim >= 3 and mask.shape[0] == 3:
        if mask.dtype != np.uint8:
            raise DataError(f"a colour-coded instance mask must be uint8, got {mask.dtype}", path)
        colours, ids = np.unique(_pack(mask), return_inverse=True)
        ids = ids.reshape(mask.shape[1:]).astype(np.int64, copy=False)
        return ids if colours[0] == 0 else ids + 1
    raise DataError(
        f"an instance mask must have 1 channel (ids) or 3 (one colour per object), got shape "
        f"{tuple(mask.shape)}",
        path,
    )


def _instance_like(arr: np.ndarray) -> bool:
    """A 1-channel mask or a ``uint8`` RGB one whose ids :func:`looks_like_instances`."""
    if arr.ndim != 3 or arr.shape[0] not in (1, 3) or (arr.shape[0] == 3 and arr.dtype != np.uint8):
        return False
    return looks_like_instances(arr[0] if arr.shape[0] == 1 else instance_ids(arr))


def _numbered_set(masks: Sequence[MaskLike]) -> bool:
    """Every mask is a 2D plane of ids numbered 0 … n per image (:func:`numbered_per_mask`): what
    the few-objects rule reads as instances, also where the ids pass ``max_classes``."""
    values, regions = [], []
    for mask in masks:
        arr = _load(mask)[0]
        if arr.ndim != 3 or arr.shape[0] != 1 or arr.dtype.kind not in "iub":
            return False
        here = {int(v) for v in _unique(arr[0])}
        counted = here == set(range(max(here) + 1))
        values.append(here)
        regions.append(counted and each_value_one_region(arr[0]))
        if not counted:
            return False
    return numbered_per_mask(values, regions)


def _any_instance_like(masks: Sequence[MaskLike]) -> bool:
    """Some mask of the set is :func:`_instance_like` (a set of instance masks may start with
    images of few objects; one with many decides)."""
    return any(_instance_like(_load(mask)[0]) for mask in masks)


def _lossy_binary_map(masks: Sequence[MaskLike]) -> LabelMap:
    """The label map of a set with JPEG masks: binary at :data:`LOSSY_THRESHOLD` (see the module
    doc); lossless masks among them must hold 0/255 only (their values are not thresholded away)."""
    foreground = False
    for mask in masks:
        arr, _, path = _load(mask)
        if is_lossy_mask(mask):
            foreground = foreground or bool((lossy_mask_grey(arr, path) >= LOSSY_THRESHOLD).any())
            continue
        values = set(np.unique(arr).tolist())
        if not values <= {0, 255}:
            raise DataError(
                f"mask values {_fmt_values(sorted(values))} beside JPEG masks, which are read as "
                "binary 0/255: store every mask the same way",
                path,
            )
        foreground = foreground or 255 in values
    if not foreground:
        raise DataError(
            f"no JPEG mask has a pixel of grey {LOSSY_THRESHOLD} or brighter: no foreground to learn",
            next((m for m in masks if is_lossy_mask(m)), None),
        )
    return LabelMap((0, 255), kind="labels", dtype="uint8", threshold=LOSSY_THRESHOLD)


def non_integer_problem(plane: np.ndarray) -> Optional[str]:
    """What is wrong with a float mask that does not hold whole numbers, in one line with the fix,
    else ``None`` (a float mask of 0.0 and 1.0 is fine)."""
    finite = np.isfinite(plane)
    if not finite.all():
        return (
            f"mask holds {int((~finite).sum())} NaN/inf value(s); masks hold class numbers "
            "(0, 1, …): save it again without them"
        )
    frac = plane != np.round(plane)
    if not frac.any():
        return None
    return (
        f"mask holds {int(frac.sum())} non-integer value(s) (e.g. {float(plane[frac][0]):g}): masks "
        "hold class numbers (0, 1, …); a probability map or an image given as a mask? Threshold "
        "it, or save it as integers"
    )


def _integral(plane: np.ndarray, path: Optional[PathLike]) -> np.ndarray:
    """``plane`` as int64; float planes must hold finite whole numbers."""
    if plane.dtype.kind == "f":
        problem = non_integer_problem(plane)
        if problem:
            raise DataError(problem, path)
    elif plane.dtype.kind not in "biu":
        raise DataError(f"mask has dtype {plane.dtype}; expected integers", path)
    return plane.astype(np.int64, copy=False)


#: a value found in one mask only and covering under this share of it is most likely a stray
#: value (a brush slip, a resampled or lossy-saved edge), not a class: training warns, naming the
#: mask (``check-data`` refuses it, by the same share)
LONE_VALUE_SHARE = 0.001
#: ... and so is one with at least this share of its pixels on region borders, lying between the
#: mask's other values: the grey edge an anti-aliased drawing leaves between 0 and 255
BLEND_BORDER_SHARE = 0.5


def border_pixels(plane: np.ndarray) -> np.ndarray:
    """Pixels that differ from a face neighbour (they lie on a region border), ``(*spatial)`` bool."""
    border = np.zeros(plane.shape, dtype=bool)
    for ax in range(plane.ndim):
        n = plane.shape[ax]
        if n < 2:
            continue
        lo = [slice(None)] * plane.ndim
        hi = [slice(None)] * plane.ndim
        lo[ax], hi[ax] = slice(0, n - 1), slice(1, n)
        diff = plane[tuple(lo)] != plane[tuple(hi)]
        border[tuple(lo)] |= diff
        border[tuple(hi)] |= diff
    return border


def blended_values(plane: np.ndarray, counts: dict) -> set:
    """The values of a mask plane (``counts``: value → pixels) that lie between its smallest and
    largest and sit mostly on region borders (:data:`BLEND_BORDER_SHARE`), as anti-aliasing leaves
    them; empty for a mask of fewer than three values or more than 16 (an instance mask, read as
    such: no border pass then)."""
    if not 3 <= len(counts) <= 16:
        return set()
    lo, hi = min(counts), max(counts)
    on_border = _value_counts(plane[border_pixels(plane)])
    return {
        v
        for v, n in counts.items()
        if lo < v < hi and on_border.get(v, 0) >= BLEND_BORDER_SHARE * n
    }


def _value_counts(plane: np.ndarray) -> dict:
    """``{value: pixels}`` of a mask plane (``bincount`` for 8-bit ones, as :func:`_unique`)."""
    if plane.dtype == np.uint8 or plane.dtype == bool:
        counts = np.bincount(plane.ravel(), minlength=2)
        return {int(v): int(counts[v]) for v in np.flatnonzero(counts)}
    found, counts = np.unique(plane, return_counts=True)
    return {int(v): int(n) for v, n in zip(found, counts)}


def smoothed_edges_hint(mask: np.ndarray, max_classes: int = 16) -> Optional[str]:
    """The fix for a ``(C, *spatial)`` mask of many values of which ``max_classes`` cover 95 % of
    the pixels and the rest lie mostly on region borders: a mask resized with interpolation or
    drawn with anti-aliased edges (its blends are no classes, nor objects); ``None`` otherwise
    (an instance mask's objects cover the image, not its borders)."""
    mask = np.asarray(mask)
    plane = _pack(mask) if mask.shape[0] == 3 else mask[0]
    values, counts = np.unique(plane, return_counts=True)
    if len(values) <= max_classes:
        return None
    order = np.argsort(counts)[::-1]
    main = values[order[:max_classes]]
    if counts[order[:max_classes]].sum() < 0.95 * plane.size:
        return None
    others = ~np.isin(plane, main)
    if (others & border_pixels(plane)).sum() < BLEND_BORDER_SHARE * others.sum():
        return None
    return (
        f"{len(values) - max_classes} of them cover {100 * others.mean():.1f} % of this mask, "
        "along the edges between regions: a mask resized with interpolation or drawn with "
        "smoothed (anti-aliased) edges? resize masks with nearest-neighbour and draw them "
        "without smoothing, so each pixel holds one class's value"
    )


_WARNED: set = set()  # (mask, values) already warned of in this process


def _warn_lone_values(scarce: list, seen_in: Counter, values: set) -> None:
    """Warn (stderr, once per mask) of a value no other mask has that covers under
    :data:`LONE_VALUE_SHARE` of it, or that lies on region borders between the mask's other values
    (an anti-aliased edge, :func:`blended_values`): trained as stored, it becomes a class of its
    own. A warning, not a refusal: a rare class can look the same, and a run without flags should
    still train. ``scarce``: ``(mask, its rare values, its blended values)``."""
    import sys

    for path, rare, blended in scarce:
        lone = sorted(v for v in rare | blended if seen_in[v] == 1)
        if lone and (str(path), tuple(lone)) not in _WARNED:
            _WARNED.add((str(path), tuple(lone)))  # once: the plan and the trainer both read
            rest = sorted(v for v in values if v not in lone)
            why = (
                f"cover under {100 * LONE_VALUE_SHARE:g} % of this one"
                if set(lone) <= rare
                else "lie on region borders between its other values, as an anti-aliased "
                "drawing leaves them"
                if set(lone) <= blended
                else f"cover under {100 * LONE_VALUE_SHARE:g} % of this one or lie on region "
                "borders (anti-aliasing)"
            )
            print(
                f"warning: {path}: label value(s) {', '.join(map(str, lone))} are in no other "
                f"mask and {why} (the others use {', '.join(map(str, rest))}); trained as "
                "class(es) of their own. If they are slips, correct the mask ('unetkit "
                "check-data' lists such values)",
                file=sys.stderr,
            )


def _unique(plane: np.ndarray) -> np.ndarray:
    if plane.dtype == np.uint8 or plane.dtype == bool:
        return np.flatnonzero(np.bincount(plane.ravel(), minlength=2))
    return np.unique(plane)


@dataclass(frozen=True)
class LabelMap:
    """Ordered class values: class ``i`` ↔ ``values[i]``.

    Args:
        values: mask values, one per class, in class order: ints (``[0, 255]``) or, with
            ``kind="colors"``, RGB triples (``[(0, 0, 0), (255, 0, 0)]``).
        names: optional class names, one per value.
        kind: ``"labels"`` (integer values), ``"colors"`` (RGB masks) or ``"instances"``
            (object ids; ``values`` must be ``(0, 1)``: background, object).
        dtype: sample type :meth:`decode` returns; ``""`` picks the smallest unsigned type that
            holds the values (``uint8`` for colours).
        palette: flat ``[r0, g0, b0, …]`` palette of palette-mode masks (to write predictions back
            as palette PNGs), or ``None``.
        threshold: for lossy (JPEG) masks: :meth:`encode` reads a mask's grey level (1 channel,
            or the mean of R, G, B) and gives class 1 from this level on; ``None`` (the default)
            reads exact values. Needs 2 ``values`` (predictions are written in them).
        ignore: the mask value of unlabelled pixels (``kind="labels"`` only), not among
            ``values``: :meth:`encode` gives it :data:`IGNORE_INDEX`. ``None``: every value is a
            class.

    Example:
        >>> lm = LabelMap([0, 255])
        >>> lm.encode(np.array([[[0, 255, 255]]], dtype=np.uint8)).tolist()
        [[0, 1, 1]]
        >>> lm.decode(np.array([[1, 0]])).tolist()
        [[[255, 0]]]
    """

    values: tuple
    names: Optional[tuple] = None
    kind: str = "labels"
    dtype: str = ""
    palette: Optional[tuple] = None
    threshold: Optional[int] = None
    ignore: Optional[int] = None

    def __post_init__(self):
        if self.kind not in LABEL_KINDS:
            raise ConfigError(
                f"unknown label map kind {self.kind!r}; valid: {', '.join(LABEL_KINDS)}"
            )
        if self.kind == "colors":
            values = []
            for v in self.values:
                t = tuple(int(c) for c in np.ravel(v))
                if len(t) != 3 or not all(0 <= c <= 255 for c in t):
                    raise ConfigError(
                        f"colour class values must be (r, g, b) triples in 0..255, got {v!r}"
                    )
                values.append(t)
            values = tuple(values)
        else:
            values = []
            for v in self.values:
                if isinstance(v, (bool, np.bool_)) or not float(v).is_integer():
                    raise ConfigError(f"class values must be integers, got {v!r}")
                values.append(int(v))
            values = tuple(values)
        if self.kind == "instances" and values != (0, 1):
            raise ConfigError(
                f"an instance label map has the values (0, 1) (background, object), got {values}"
            )
        if len(values) < 2:
            raise ConfigError(f"a label map needs at least 2 classes, got values {values}")
        if len(set(values)) != len(values):
            raise ConfigError(f"class values repeat: {_fmt_values(values)}")
        object.__setattr__(self, "values", values)
        if self.names is not None:
            names = tuple(str(n) for n in self.names)
            if len(names) != len(values):
                raise ConfigError(f"{len(names)} class names for {len(values)} class values")
            object.__setattr__(self, "names", names)
        dtype = self.dtype or self._default_dtype(values)
        try:
            np.dtype(dtype)
        except TypeError:
            raise ConfigError(f"unknown dtype {dtype!r} for the label map") from None
        object.__setattr__(self, "dtype", str(np.dtype(dtype)))
        if self.palette is not None:
            object.__setattr__(self, "palette", tuple(int(v) for v in self.palette))
        if self.threshold is not None:
            if self.kind != "labels" or len(values) != 2 or not 0 < int(self.threshold) <= 255:
                raise ConfigError(
                    f"a threshold (binary masks read from grey levels) needs 2 label values and a "
                    f"level in 1..255, got values {values} and threshold {self.threshold!r}"
                )
            object.__setattr__(self, "threshold", int(self.threshold))
        if self.ignore is not None:
            object.__setattr__(self, "ignore", check_ignore_value(self.ignore, self.kind))
            if self.ignore in values or self.threshold is not None:
                raise ConfigError(
                    f"the ignore value {self.ignore} (unlabelled pixels) cannot also be a class "
                    f"value: {_fmt_values(values)}"
                    if self.threshold is None
                    else "an ignore value needs lossless masks (exact values), not JPEG masks"
                )

    def _default_dtype(self, values: tuple) -> str:
        if self.kind == "colors":
            return "uint8"
        lo, hi = min(values), max(values)
        for t in ("uint8", "uint16", "uint32") if lo >= 0 else ("int8", "int16", "int32"):
            info = np.iinfo(t)
            if info.min <= lo and hi <= info.max:
                return t
        return "int64"

    @property
    def num_classes(self) -> int:
        """Number of classes (the network's output channels for soft-max training)."""
        return len(self.values)

    @property
    def mask_channels(self) -> int:
        """Channels of a mask this map reads: 3 for colours, else 1 (an instance map also reads
        colour-coded 3-channel masks, :func:`instance_ids`)."""
        return 3 if self.kind == "colors" else 1

    def encode(self, mask: np.ndarray, path: Optional[PathLike] = None) -> np.ndarray:
        """Class indices of a mask.

        Args:
            mask: ``(1, *spatial)`` values (``(3, *spatial)`` RGB for ``kind="colors"``), as
                :func:`~unetkit.io.read_image` returns it.
            path: the mask's file, named in error messages.

        Returns:
            ``(*spatial)`` ``int64`` class indices.

        Raises:
            DataError: the mask holds values that are not in the map (listed), or has the wrong
                channel count.
        """
        mask = np.asarray(mask)
        if self.kind == "instances":  # 1 channel of ids, or 3 of colours (instance_ids)
            return (instance_ids(mask, path) != 0).astype(np.int64)
        if self.threshold is not None:  # lossy masks: grey level, 1 channel or grey RGB
            if mask.ndim < 3 or mask.shape[0] not in (1, 3):
                raise DataError(
                    f"mask of shape {tuple(mask.shape)} is not channel-first grey or RGB", path
                )
            grey = mask[0] if mask.shape[0] == 1 else mask.mean(axis=0)
            return (grey >= self.threshold).astype(np.int64)
        if self.kind == "colors" and mask.ndim >= 3 and mask.shape[0] == 1:
            mask = np.repeat(mask, 3, axis=0)  # a grey mask in a colour set: v is (v, v, v)
        if mask.ndim < 3 or mask.shape[0] != self.mask_channels:
            raise DataError(
                f"mask of shape {tuple(mask.shape)} is not channel-first with {self.mask_channels} "
                f"channel(s) (label map kind {self.kind!r})",
                path,
            )
        if self.kind == "colors":
            plane = _pack(mask)
            keys = np.array([(r << 16) | (g << 8) | b for r, g, b in self.values], dtype=np.int64)
        else:
            plane = mask[0]
            keys = np.array(self.values, dtype=np.int64)
        indices = np.arange(len(keys), dtype=np.int64)
        if self.ignore is not None:  # the unlabelled value encodes to IGNORE_INDEX
            keys = np.append(keys, self.ignore)
            indices = np.append(indices, IGNORE_INDEX)
        if plane.dtype in (np.uint8, np.uint16, np.bool_):
            lut = np.full(256 if plane.dtype != np.uint16 else 65536, -2, dtype=np.int64)
            inside = (keys >= 0) & (keys < lut.size)
            lut[keys[inside]] = indices[inside]
            out = lut[plane.astype(np.intp, copy=False)]
            bad_mask = out == -2
        else:
            plane = _integral(plane, path)
            order = np.argsort(keys, kind="stable")
            sorted_keys = keys[order]
            pos = np.minimum(np.searchsorted(sorted_keys, plane), len(keys) - 1)
            bad_mask = sorted_keys[pos] != plane
            out = indices[order][pos]
        if bad_mask.any():
            bad = np.unique(np.asarray(plane)[bad_mask])
            shown = [_unpack(v) for v in bad] if self.kind == "colors" else [int(v) for v in bad]
            unlabelled = "" if self.ignore is None else f", and {self.ignore} for unlabelled pixels"
            raise DataError(
                f"unexpected label values {_fmt_values(shown)} (the label map has "
                f"{_fmt_values(self.values)}{unlabelled})",
                path,
            )
        return out.astype(np.int64, copy=False)

    def decode(self, indices: np.ndarray) -> np.ndarray:
        """The user's mask values for class indices (so predictions are written in them).

        Args:
            indices: ``(*spatial)`` integer class indices in ``0 … num_classes-1``.

        Returns:
            ``(1, *spatial)`` values in :attr:`dtype` (``(3, *spatial)`` ``uint8`` for colours),
            ready for :func:`~unetkit.io.write_image`.

        Raises:
            ConfigError: an index is outside ``0 … num_classes-1``.
        """
        indices = np.asarray(indices)
        if indices.dtype.kind not in "biu":
            raise ConfigError(f"class indices must be integers, got dtype {indices.dtype}")
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_classes):
            raise ConfigError(
                f"class indices must lie in 0..{self.num_classes - 1}, got "
                f"{int(indices.min())}..{int(indices.max())}"
            )
        if self.kind == "colors":
            table = np.array(self.values, dtype=np.uint8)  # (K, 3)
            return np.moveaxis(table[indices], -1, 0)
        table = np.array(self.values, dtype=np.dtype(self.dtype))
        return table[indices][None]

    def to_dict(self) -> dict:
        """JSON-friendly form (for checkpoints and run folders); :meth:`from_dict` inverts it."""
        values = [list(v) for v in self.values] if self.kind == "colors" else list(self.values)
        out = {
            "kind": self.kind,
            "values": values,
            "names": None if self.names is None else list(self.names),
            "dtype": self.dtype,
            "palette": None if self.palette is None else list(self.palette),
        }
        if self.threshold is not None:  # only where set: the dict of exact-valued maps is unchanged
            out["threshold"] = self.threshold
        if self.ignore is not None:  # likewise: maps without unlabelled pixels read as before
            out["ignore"] = self.ignore
        return out

    @classmethod
    def from_dict(cls, data: dict) -> LabelMap:
        if not isinstance(data, dict) or "values" not in data:
            raise ConfigError(f"a label map dict needs a 'values' list, got {data!r}")
        kind = data.get("kind", "labels")
        values = [tuple(v) for v in data["values"]] if kind == "colors" else data["values"]
        return cls(
            values,
            names=data.get("names"),
            kind=kind,
            dtype=data.get("dtype") or "",
            palette=data.get("palette"),
            threshold=data.get("threshold"),
            ignore=data.get("ignore"),
        )

    @classmethod
    def from_nnunet(cls, labels: dict) -> LabelMap:
        """From a nnU-Net ``dataset.json`` ``labels`` entry: v2 ``{"background": 0, "liver": 1}``
        or v1 ``{"0": "background", "1": "liver"}``. A v2 label named ``"ignore"`` (nnU-Net's
        unlabelled pixels) is :attr:`ignore`, not a class."""
        if not isinstance(labels, dict) or not labels:
            raise ConfigError(f"dataset.json 'labels' must be a non-empty object, got {labels!r}")
        if all(str(k).lstrip("-").isdigit() for k in labels):  # v1: value -> name
            pairs = [(int(k), str(v)) for k, v in labels.items()]
        else:
            pairs = []
            for name, value in labels.items():
                if isinstance(value, (list, tuple)):
                    raise ConfigError(
                        f"region-based nnU-Net label {name!r}: {value} is not supported; "
                        "use one value per class"
                    )
                pairs.append((int(value), str(name)))
        pairs.sort()
        ignore = [v for v, n in pairs if n.lower() == "ignore"]
        pairs = [(v, n) for v, n in pairs if n.lower() != "ignore"]
        return cls(
            [v for v, _ in pairs], names=[n for _, n in pairs], ignore=ignore[0] if ignore else None
        )

    def with_ignore(self, ignore: Optional[int]) -> LabelMap:
        """This map with ``ignore`` as its unlabelled value (``None``: unchanged)."""
        if ignore is None:
            return self
        return LabelMap(
            self.values, self.names, self.kind, self.dtype, self.palette, self.threshold, ignore
        )


def check_ignore_value(value, kind: str = "labels") -> int:
    """The unlabelled mask value as an int, or a :class:`ConfigError` naming what is wrong: an
    integer of a grey label mask (colour and instance masks have none)."""
    if kind != "labels":
        raise ConfigError(
            f"an ignore value (unlabelled pixels) needs grey label masks, not {kind} masks: save "
            "the unlabelled pixels as one grey value beside the class values"
        )
    try:
        whole = not isinstance(value, (bool, np.bool_)) and float(value).is_integer()
    except (TypeError, ValueError):
        whole = False
    if not whole:
        raise ConfigError(f"the ignore value must be an integer mask value, got {value!r}")
    return int(value)


#: A training-mask value covering at least this share of the pixels while no validation mask holds
#: it: the validation masks are complete and the training ones partial (scribbles, boxes).
UNLABELLED_ABSENT_SHARE = 0.5
#: A value other than the lowest (background) covering at least this share of the mask pixels,
#: beside two or more other values: more than a class usually covers, as unpainted pixels do.
UNLABELLED_DOMINANT_SHARE = 0.85


class UnlabelledGuess(NamedTuple):
    """A mask value that looks like unlabelled pixels (:func:`forgotten_ignore_value`)."""

    value: int
    note: str
    #: a tell that leaves little doubt (a negative value; one complete validation masks lack),
    #: said as a warning; else a hint (a value covering most pixels, as a tissue class may)
    strong: bool


def forgotten_ignore_value(
    shares: dict, val_values: Optional[Collection] = None, where: str = "the masks"
) -> Optional[UnlabelledGuess]:
    """The grey mask value that looks like unlabelled pixels trained as a class, with a note naming
    ``--ignore-value V`` (``None`` where no value does). Forgetting the flag fails silently otherwise:
    the net learns to paint "unlabelled" and the validation Dice stays near 0.

    Args:
        shares: each mask value's share of the (training) mask pixels.
        val_values: the values the validation masks hold, where they are a separate folder
            (complete masks beside partial training ones lack the unlabelled value).
        where: how the note names the masks ``shares`` counts.

    The tells, first that applies: one negative value (no class is stored below 0); a value
    covering :data:`UNLABELLED_ABSENT_SHARE` of the pixels that no validation mask holds; a value
    other than background (0, else the lowest) covering :data:`UNLABELLED_DOMINANT_SHARE` beside
    two or more others (a weak tell: a tissue class can cover as much).
    """
    values = sorted(int(v) for v, s in shares.items() if s > 0)
    if len(values) < 3:  # one class besides the unlabelled value: nothing the flag would rescue
        return None
    fix = (
        "if it marks unlabelled pixels (a partial annotation), pass --ignore-value {v}; as it is, "
        "it trains as a class"
    )
    negative = [v for v in values if v < 0]
    if len(negative) == 1:
        v = negative[0]
        note = f"mask value {v} in {where} is below every class value: " + fix.format(v=v)
        return UnlabelledGuess(v, note, True)
    top = max(values, key=lambda v: shares[v])
    share = float(shares[top])
    if val_values is not None and top not in val_values and share >= UNLABELLED_ABSENT_SHARE:
        note = (
            f"mask value {top} covers {100 * share:.0f} % of {where} but no validation mask holds "
            "it: " + fix.format(v=top)
        )
        return UnlabelledGuess(top, note, True)
    background = 0 if 0 in values else values[0]
    if top != background and share >= UNLABELLED_DOMINANT_SHARE:
        note = (
            f"mask value {top} covers {100 * share:.0f} % of {where}, more than a class other than "
            "background usually does: " + fix.format(v=top)
        )
        return UnlabelledGuess(top, note, False)
    return None


#: The label map of instance masks: background 0, object 1 (any non-zero id).
INSTANCE_LABEL_MAP = LabelMap((0, 1), names=("background", "object"), kind="instances")


def _load(mask: MaskLike) -> tuple[np.ndarray, Optional[ImageMeta], Optional[PathLike]]:
    if isinstance(mask, (str, Path)):
        arr, meta = read_mask_source(mask)
        return arr, meta, mask
    return np.asarray(mask), None, None


def _check_grey_beside_colours(grey: set, channels: dict) -> None:
    """Grey masks beside colour ones (or under ``kind="colors"``) are read as grey colours
    ``(v, v, v)``, as a colour-coded set holds a mask of only black and white saved as grey: only
    values 0–255 can be."""
    if min(grey) >= 0 and max(grey) <= 255:
        return
    if not channels[3]:
        raise DataError(
            f"mask values up to {max(grey)} are no 8-bit grey colours but the label map is "
            "'colors'; use --mask-kind auto or labels",
            channels[1][0],
        )
    few = 1 if len(channels[1]) <= len(channels[3]) else 3
    raise DataError(
        f"mask has {few} channel(s) ({'labels' if few == 1 else 'RGB colours'}) but "
        f"{len(channels[4 - few])} of the {len(channels[1]) + len(channels[3])} masks have "
        f"{4 - few} ({'RGB colours' if few == 1 else 'labels'}); store every mask the same way",
        channels[few][0],
    )


def _warn_once(note: str) -> None:
    """``warning: note`` on stderr, once per process: the plan and the trainer both read the
    masks."""
    if note not in _WARNED:
        import sys

        _WARNED.add(note)
        print(f"warning: {note}", file=sys.stderr)


class SingleValueMasks(DataError):
    """:func:`infer_label_map` found one value in every mask (``value``, as shown): no classes to
    tell apart. Training cannot learn from it; evaluating blank fields reads the classes elsewhere."""

    def __init__(self, message: str, path=None, value: str = ""):
        super().__init__(message, path)
        self.value = value


def infer_label_map(
    masks: Iterable[MaskLike],
    kind: str = "auto",
    max_classes: int = 16,
    warn_lone: bool = False,
    ignore: Optional[int] = None,
) -> LabelMap:
    """The label map of a set of masks: the union of their values, sorted.

    Args:
        masks: mask files or channel-first arrays ``(1, *spatial)`` / ``(3, *spatial)``.
        kind: ``"auto"``, ``"labels"``, ``"colors"`` or ``"instances"`` (see the module doc).
        max_classes: with ``"auto"``, more distinct values than this is an error, unless the mask
            that passes it looks like instance ids (:func:`looks_like_instances`): then every mask
            is read as instances.
        warn_lone: with ``"auto"``, warn (stderr) of a value found in one mask only, under
            :data:`LONE_VALUE_SHARE` of it, which would train as a class of its own (the training
            path asks; a sample of the masks, or evaluation, would warn wrongly).
        ignore: the grey value of unlabelled pixels (:attr:`LabelMap.ignore`): no class, and
            not counted among the values (a set of instance ids, colour or JPEG masks refuse it).

    Returns:
        The :class:`LabelMap` (``dtype`` = the masks' sample type; ``palette`` from the first
        palette-mode mask).

    Raises:
        ConfigError: unknown ``kind``.
        DataError: unreadable mask, channel count not 1 (labels) / 3 (colours), non-integer
            values, too many values for ``"auto"``, or fewer than 2 values in all masks.

    Example:
        >>> infer_label_map([np.array([[[0, 255]]], np.uint8)]).values
        (0, 255)
    """
    if kind not in INFER_KINDS:
        raise ConfigError(f"unknown mask kind {kind!r}; valid: {', '.join(INFER_KINDS)}")
    if ignore is not None:
        ignore = check_ignore_value(ignore, "labels" if kind == "auto" else kind)
    masks = list(masks)  # read twice where "auto" finds instance ids
    folder = next((m for m in masks if is_object_source(m)), None)
    if folder is not None and kind in ("labels", "colors"):
        raise DataError(
            f"a per-object mask folder (one file per object) holds instances, not {kind}: use "
            "--mask-kind auto or instances",
            folder,
        )
    if kind == "auto" and folder is not None:
        kind = "instances"
    if kind == "auto" and any(is_lossy_mask(m) for m in masks):
        if ignore is not None:
            raise DataError(
                "JPEG masks hold no exact values, so no value can mark unlabelled pixels: save "
                "the masks losslessly (PNG, TIFF) to use --ignore-value",
                next(m for m in masks if is_lossy_mask(m)),
            )
        return _lossy_binary_map(masks)
    if kind == "instances" and ignore is not None:
        raise DataError(
            "instance masks (one id per object) have no unlabelled value: give class masks "
            "(0 background, 1 object, the ignore value unlabelled) to use --ignore-value",
            folder if folder is not None else next(iter(masks), None),
        )
    if kind == "instances":
        for mask in masks:
            arr, _, path = _load(mask)
            instance_ids(arr, path)  # raises on a wrong channel count or non-integer ids
        return INSTANCE_LABEL_MAP
    per_mask: list = []  # each 2D 1-channel mask's values and whether each is one region
    per_volume: list = []  # the same of each 3D mask (a warning only: numbered_volumes_note)
    seen_in: Counter = Counter()  # in how many 1-channel masks each value occurs
    scarce: list = []  # (mask, its values covering under LONE_VALUE_SHARE of it)
    grey_sets: dict = {}  # each 1-channel mask's values (two_codings)
    grey: set = set()  # the values of the 1-channel masks
    colours: set = set()  # the packed colours of the 3-channel ones
    channels: dict[int, list] = {1: [], 3: []}  # the masks of each channel count
    dtypes, palette, first_path, count = [], None, None, 0
    ignore_seen = False  # some mask holds the ignore value
    for mask in masks:
        arr, meta, path = _load(mask)
        count += 1
        first_path = first_path if first_path is not None else path
        if arr.ndim < 3 or arr.shape[0] not in (1, 3):
            raise DataError(
                f"a mask must be channel-first with 1 channel (labels) or 3 (RGB colours), got shape "
                f"{tuple(arr.shape)}"
                + (
                    ": a 4D file holds several volumes; save one label volume per case"
                    if arr.ndim == 4
                    else ""
                ),
                path,
            )
        if arr.shape[0] == 3:
            if ignore is not None:
                check_ignore_value(ignore, "colors")  # raises: colour masks have no ignore value
            if kind == "labels":
                raise DataError(
                    "mask has 3 channel(s) (RGB colours) but the label map is 'labels' (1 "
                    "channel); use --mask-kind auto or colors, or save the mask as grey labels",
                    path,
                )
            if arr.dtype != np.uint8:
                raise DataError(f"an RGB colour mask must be uint8, got {arr.dtype}", path)
            colours.update(int(v) for v in np.unique(_pack(arr)))
        else:
            plane = _integral(arr[0], path) if arr.dtype.kind == "f" else arr[0]
            counts = _value_counts(plane)  # one pass: the values, and how much each covers
            # unlabelled pixels: no class, no instance id
            ignore_seen = counts.pop(ignore, None) is not None or ignore_seen
            here = set(counts)
            grey.update(here)
            dtypes.append(arr.dtype)
            if kind == "auto" and warn_lone:
                seen_in.update(here)
                limit = LONE_VALUE_SHARE * plane.size
                rare = {v for v, n in counts.items() if n < limit} if len(here) > 1 else set()
                blended = blended_values(plane, counts) if arr.ndim == 3 else set()
                scarce.append((path if path is not None else f"mask {count}", rare, blended))
            if kind == "auto" and len(here) <= 17:  # two_codings: up to 16 classes
                grey_sets[path if path is not None else count] = here
            if kind == "auto" and arr.ndim == 3:  # ids numbered per image? (numbered_per_mask)
                counted = bool(here) and here == set(range(max(here) + 1))
                ids = arr[0] if ignore is None else np.where(arr[0] == ignore, 0, arr[0])
                per_mask.append((here, counted and each_value_one_region(ids)))
            if kind == "auto" and arr.ndim == 4 and warn_lone:  # volumes: a warning only
                per_volume.append((here, numbered_regions(arr[0], here)))
        channels[arr.shape[0]].append(path)
        if meta is not None and meta.palette and palette is None:
            palette = meta.palette
        if kind == "auto" and len(grey) + len(colours) > max_classes:
            if _any_instance_like(masks) or _numbered_set(masks):
                return infer_label_map(masks, kind="instances")
            smoothed = smoothed_edges_hint(arr, max_classes)
            raise DataError(
                f"{len(grey) + len(colours)} distinct mask values so far (more than "
                f"max_classes={max_classes}): "
                + (
                    smoothed
                    or "an instance mask? use --mask-kind instances (kind='instances'); a "
                    "grey-level image or a JPEG-compressed mask? masks must be lossless label images"
                ),
                path,
            )
    if count == 0:
        raise ConfigError("infer_label_map got no masks")
    resolved = "colors" if colours or kind == "colors" else "labels"
    if (
        resolved == "labels"
        and len(per_mask) == count
        and numbered_per_mask([v for v, _ in per_mask], [ok for _, ok in per_mask])
    ):
        return infer_label_map(masks, kind="instances")
    if resolved == "labels" and kind == "auto" and len(scarce) >= 2:
        _warn_lone_values(scarce, seen_in, grey)
    if resolved == "labels" and len(per_volume) == count:
        note = numbered_volumes_note([v for v, _ in per_volume], [ok for _, ok in per_volume])
        if note:
            _warn_once(note)
    if resolved == "labels" and len(grey_sets) == count:
        mixed = two_codings(grey_sets)
        if mixed is not None:
            where, message = mixed
            raise DataError(message, where if isinstance(where, (str, Path)) else None)
    if resolved == "colors" and grey:
        _check_grey_beside_colours(grey, channels)
        colours.update((v << 16) | (v << 8) | v for v in grey)  # grey v is the colour (v, v, v)
    values = sorted(colours if resolved == "colors" else grey)
    if len(values) < 2:
        shown = _fmt_value(_unpack(values[0])) if resolved == "colors" else str(values[0])
        raise SingleValueMasks(
            f"every mask ({count}) holds the single value {shown}"
            + (f" beside the unlabelled {ignore}" if ignore is not None else "")
            + ": nothing to learn; masks must "
            "mark the objects (their values are the classes)",
            first_path if count == 1 or first_path is None else Path(first_path).parent,
            value=shown,
        )
    if resolved == "colors":
        return LabelMap([_unpack(v) for v in values], kind="colors")
    if ignore is not None and not ignore_seen:
        _warn_once(
            f"no mask holds the ignore value {ignore} (their values: {_fmt_values(values)}): every "
            "pixel is labelled; check the value if some were meant to be unlabelled"
        )
    dtype = np.result_type(*dtypes)
    if dtype.kind == "b":
        dtype = np.dtype(np.uint8)
    return LabelMap(values, kind="labels", dtype=str(dtype), palette=palette, ignore=ignore)


def dataset_label_map(
    found: Discovery,
    masks: Iterable[MaskLike],
    kind: str = "auto",
    warn_lone: bool = False,
    ignore: Optional[int] = None,
) -> LabelMap:
    """The label map training uses for a dataset found by :func:`~unetkit.data.discovery.scan_dataset`.

    With ``kind`` ``"auto"`` or ``"labels"``, the ``labels`` of an nnU-Net ``dataset.json`` when the
    discovery read one (class ``i`` = the ``i``-th smallest value); otherwise
    :func:`infer_label_map` over ``masks`` (all the masks training will read; ``warn_lone``:
    see there). ``ignore``: the value of unlabelled pixels (the ``dataset.json``'s ``"ignore"``
    label otherwise).

    Raises:
        DataError: an unusable ``dataset.json`` ``labels`` entry (naming the file), an
            ``ignore`` that contradicts it, or what :func:`infer_label_map` raises.
    """
    data = found.dataset_json
    if kind in ("auto", "labels") and data is not None and "labels" in data:
        where = found.root / "dataset.json"
        try:
            found_map = LabelMap.from_nnunet(data["labels"])
            if ignore is not None and found_map.ignore not in (None, ignore):
                raise ConfigError(
                    f"its 'ignore' label is {found_map.ignore} but the ignore value given is "
                    f"{ignore}; give {found_map.ignore} or none"
                )
            return found_map.with_ignore(ignore)
        except ConfigError as exc:
            raise DataError(f"unusable 'labels' entry: {exc}", where) from None
    return infer_label_map(masks, kind=kind, warn_lone=warn_lone, ignore=ignore)


def read_mask(
    path: PathLike, label_map: Optional[LabelMap] = None, kind: Optional[str] = None
) -> tuple[np.ndarray, Optional[np.ndarray], ImageMeta]:
    """Read a mask file as class indices (and instance ids for instance masks).

    Args:
        path: the mask file.
        label_map: the dataset's map (from :func:`infer_label_map` over *all* masks, or a
            checkpoint). Required unless ``kind="instances"``: inferring classes from one mask
            would number them differently from file to file.
        kind: ``"instances"`` to read without a map; otherwise ``None`` or the map's kind.

    Returns:
        ``(class_indices, instances, meta)``: ``(*spatial)`` ``int64`` class indices;
        ``(*spatial)`` ``int64`` instance ids (0 = background) for instance masks, else ``None``;
        the file's :class:`~unetkit.io.ImageMeta`.

    Raises:
        ConfigError: no ``label_map`` and ``kind`` is not ``"instances"``, or ``kind`` contradicts
            the map.
        DataError: unreadable file, or values not in the map (listed, with the file).
    """
    if kind is not None and kind not in LABEL_KINDS:
        raise ConfigError(f"unknown mask kind {kind!r}; valid: {', '.join(LABEL_KINDS)}")
    if label_map is None:
        if kind != "instances":
            raise ConfigError(
                "read_mask needs the dataset's LabelMap (build it once with infer_label_map over all "
                "masks) unless kind='instances'"
            )
        label_map = INSTANCE_LABEL_MAP
    elif kind is not None and kind != label_map.kind:
        raise ConfigError(f"kind={kind!r} contradicts the label map's kind {label_map.kind!r}")
    if label_map.kind != "instances" and is_object_source(path):
        raise DataError(
            f"a per-object mask folder holds instances, but the label map is {label_map.kind!r}: "
            "give one label image per case instead",
            path,
        )
    arr, meta = read_mask_source(path)
    classes = label_map.encode(arr, path)
    instances = instance_ids(arr, path).copy() if label_map.kind == "instances" else None
    return classes, instances, meta

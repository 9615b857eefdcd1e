"""Random training patches with foreground oversampling and mirrored context.

A :class:`PatchSampler` picks a *label region* of ``label_size`` (where the loss is computed) and an
*input region* of ``input_size`` centred on it (what the network sees). For same-padding networks
the two coincide; for valid-padding networks (the original U-Net: 572 in → 388 out) the input region
carries the network's border, ``(input_size − label_size) / 2`` pixels on each side. Wherever a
region leaves the image, the image is **mirrored** about its edge pixels (:data:`PAD_MODE`,
``np.pad(mode="reflect")``: ``d c b | a b c d | c b a``), the overlap-tile strategy of the U-Net
paper; inference must use the same mode.

Placement: with probability ``fg_fraction`` (default 0.33, as nnU-Net; drawn per patch) the label
region is centred on a random foreground pixel (by default a random foreground class present in the
mask is chosen first, then one of its pixels, so rare classes are not drowned out), otherwise its
position is uniform. The foreground is every class > 0 unless ``fg_classes`` names the classes to
oversample, class 0 included: ISBI 2012 masks have 0 = membrane, the thin structure worth
oversampling, so ``fg_classes=[0]`` centres patches on membranes.

Partial annotations (unlabelled pixels, class index
:data:`~unetkit.data.labels.IGNORE_INDEX`): the draws that are not centred on foreground are
centred on a random *labelled* pixel (:func:`labelled_locations`) instead of lying uniformly, so a
mask labelled only in a few scribbles still gives patches the loss can learn from.

Along an axis where the image is at least ``label_size`` long the label region is shifted to lie
inside the image (the chosen foreground pixel stays inside it); along an axis where the image is
shorter, the label region covers the whole image and is padded.

Label padding (only where the image is shorter than ``label_size``): by default mask, weight map and
instances are mirrored like the image, so the labels stay exactly right for the mirrored content and
no loss needs an ignore label. With ``mask_pad_value`` set (e.g. ``-100``, PyTorch's default
``ignore_index``) the padded mask pixels get that value, padded instances 0 and padded weights 0.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from ..errors import ConfigError

#: ``np.pad`` mode for context outside the image: mirror about the edge pixel (``scipy.ndimage``
#: calls it ``"mirror"``). Inference (overlap-tile) must pad with the same mode.
PAD_MODE = "reflect"
#: The mirror modes :func:`mirror_indices` knows: ``reflect`` (:data:`PAD_MODE`) and ``symmetric``.
MIRROR_MODES = ("reflect", "symmetric")

Size = Union[int, Sequence[int]]


def mirror_indices(start: int, size: int, n: int, mode: str = PAD_MODE) -> np.ndarray:
    """Indices into an axis of length ``n`` for positions ``start … start + size − 1``, mirrored.

    The one mirror fold of unetkit: training patches (:func:`crop_with_mirror`) and inference tiles
    (:func:`unetkit.inference.tiling.mirror_indices`, ``mirror_pad``) both index through it.
    Positions outside ``[0, n)`` are reflected about the first/last pixel (``reflect``, period
    ``2n − 2``: ``d c b | a b c d | c b a``), which equals ``np.pad(mode="reflect")`` for any pad
    width; ``symmetric`` repeats the edge pixel (period ``2n``: ``c b a | a b c d | d c b``). An axis
    of length 1 repeats its pixel.
    """
    if mode not in MIRROR_MODES:
        raise ConfigError(f"mirror mode must be one of {MIRROR_MODES}, got {mode!r}")
    if n < 1:
        raise ConfigError(f"cannot crop an empty axis (length {n})")
    pos = np.arange(start, start + size, dtype=np.int64)
    if n == 1:
        return np.zeros_like(pos)
    period = 2 * (n - 1) if mode == "reflect" else 2 * n
    m = np.mod(pos, period)
    return np.where(m < n, m, period - m - (0 if mode == "reflect" else 1))


def crop_with_mirror(array: np.ndarray, start: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """Crop ``array[..., start:start + size]`` over its last ``len(start)`` axes, mirroring outside.

    Args:
        array: ``(*lead, *spatial)`` array, e.g. an image ``(C, *spatial)`` or a mask ``(*spatial)``.
        start: first index of the crop per spatial axis; may be negative or beyond the array.
        size: crop size per spatial axis.

    Returns:
        A new array ``(*lead, *size)``; ``crop_with_mirror(a, (-p,) * nd, [n + 2 * p for n in a.shape])``
        equals ``np.pad(a, p, mode="reflect")``.
    """
    start = [int(s) for s in start]
    size = [int(s) for s in size]
    nd = len(start)
    if len(size) != nd or nd > array.ndim:
        raise ConfigError(
            f"crop start {start} and size {size} do not fit an array of shape {array.shape}"
        )
    if any(s < 1 for s in size):
        raise ConfigError(f"crop size must be >= 1 per axis, got {size}")
    shape = array.shape[array.ndim - nd :]
    if all(s >= 0 and s + z <= n for s, z, n in zip(start, size, shape)):
        return np.array(array[(Ellipsis,) + tuple(slice(s, s + z) for s, z in zip(start, size))])
    idx = [mirror_indices(s, z, n) for s, z, n in zip(start, size, shape)]
    return array[(Ellipsis,) + np.ix_(*idx)]


def center_crop(array: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Central ``size`` part of the last ``len(size)`` axes (each difference must be even)."""
    shape = array.shape[array.ndim - len(size) :]
    diff = [n - int(z) for n, z in zip(shape, size)]
    if any(d < 0 or d % 2 for d in diff):
        raise ConfigError(
            f"cannot centre-crop spatial shape {shape} to {tuple(size)}: each difference must be "
            f"even and >= 0"
        )
    return array[(Ellipsis,) + tuple(slice(d // 2, d // 2 + int(z)) for d, z in zip(diff, size))]


def foreground_locations(
    mask: np.ndarray,
    max_per_class: Optional[int] = None,
    rng: Optional[np.random.Generator] = None,
    classes: Optional[Sequence[int]] = None,
) -> dict[int, np.ndarray]:
    """Flat indices of the foreground pixels (``mask > 0``, or of ``classes``) of each class.

    Computing these once per mask (e.g. when a data set is opened) saves the search in each
    :meth:`PatchSampler.sample` call.

    Args:
        mask: ``(*spatial)`` integer class indices.
        max_per_class: keep at most this many random pixels per class (memory bound for big volumes).
        rng: generator for that subsampling (default: seeded 0, deterministic).
        classes: the classes to collect (``None``: every class > 0).

    Returns:
        ``{class: int64 flat indices into mask}`` for each of those classes present, sorted by class.
    """
    flat = np.asarray(mask).ravel()
    idx = np.flatnonzero(flat > 0 if classes is None else np.isin(flat, np.asarray(list(classes))))
    if idx.size == 0:
        return {}
    values = flat[idx]
    order = np.argsort(values, kind="stable")
    idx, values = idx[order], values[order]
    classes, first = np.unique(values, return_index=True)
    out = {}
    rng = rng if rng is not None else np.random.default_rng(0)
    for k, (c, lo) in enumerate(zip(classes, first)):
        hi = first[k + 1] if k + 1 < len(first) else idx.size
        loc = idx[lo:hi]
        if max_per_class is not None and loc.size > max_per_class:
            loc = np.sort(rng.choice(loc, size=int(max_per_class), replace=False))
        out[int(c)] = loc
    return out


#: at most this many labelled pixels are kept per mask for :func:`labelled_locations` (a random
#: subset: the memory of a partially labelled volume's index list stays bounded)
MAX_LABELLED_LOCATIONS = 1_000_000


def labelled_locations(
    mask: np.ndarray, max_count: int = MAX_LABELLED_LOCATIONS
) -> Optional[np.ndarray]:
    """Flat indices of the labelled pixels (class index ``>= 0``) of a mask that has unlabelled
    ones (a seeded random subset of at most ``max_count``), else ``None`` (every pixel is
    labelled, or none is: uniform placement)."""
    flat = np.asarray(mask).ravel()
    if not flat.size or flat.min() >= 0:
        return None
    idx = np.flatnonzero(flat >= 0)
    if idx.size == 0:
        return None
    if idx.size > max_count:
        idx = np.sort(np.random.default_rng(0).choice(idx, size=int(max_count), replace=False))
    return idx


def _sizes(value: Size, nd: int, name: str) -> tuple[int, ...]:
    vals = np.atleast_1d(np.asarray(value))
    if (
        vals.ndim != 1
        or vals.size not in (1, nd)
        or not np.issubdtype(vals.dtype, np.integer)
        or np.any(vals < 1)
    ):
        raise ConfigError(
            f"{name} must be a positive integer or one per spatial axis ({nd}), got {value!r}"
        )
    return tuple(int(v) for v in np.broadcast_to(vals, (nd,)))


class PatchSampler:
    """Random patches with foreground oversampling and mirrored context.

    Args:
        label_size: size of the label region (the network's output size), an int or one per axis.
        input_size: size of the input region (the network's input size), ``>= label_size`` with an
            even difference per axis; ``None`` = ``label_size`` (same-padding networks).
        fg_fraction: probability that a patch is centred on a foreground pixel (default 0.33).
        fg_mode: ``"class"`` (default: pick a present foreground class uniformly, then one of its
            pixels) or ``"any"`` (any foreground pixel uniformly).
        fg_classes: the classes to oversample (class indices, 0 allowed); ``None`` (default) = every
            class > 0. Precomputed ``fg_locations`` passed to :meth:`sample` must then come from
            ``foreground_locations(mask, classes=fg_classes)`` (:class:`PatchDataset` does this).
        mask_pad_value: ``None`` (default) mirrors the labels like the image where the image is
            shorter than ``label_size``; an integer puts that value in the padded mask pixels (and 0
            in padded weights and instances).

    Example:
        >>> sampler = PatchSampler(label_size=388, input_size=572)      # original U-Net tile
        >>> patch = sampler.sample(image, mask, np.random.default_rng(0))
        >>> patch["image"].shape, patch["mask"].shape
        ((1, 572, 572), (388, 388))
    """

    def __init__(
        self,
        label_size: Size,
        input_size: Optional[Size] = None,
        fg_fraction: float = 0.33,
        fg_mode: str = "class",
        mask_pad_value: Optional[int] = None,
        fg_classes: Optional[Sequence[int]] = None,
    ):
        self.label_size = label_size
        self.input_size = input_size
        nd = max(np.size(label_size), 1 if input_size is None else np.size(input_size))
        lab = _sizes(label_size, nd, "label_size")
        inp = lab if input_size is None else _sizes(input_size, nd, "input_size")
        if any(i < s or (i - s) % 2 for i, s in zip(inp, lab)):
            raise ConfigError(
                f"input_size {inp} must be >= label_size {lab} with an even difference per axis "
                f"(the same border on each side)"
            )
        if not 0.0 <= float(fg_fraction) <= 1.0:
            raise ConfigError(f"fg_fraction must be in [0, 1], got {fg_fraction}")
        if fg_mode not in ("class", "any"):
            raise ConfigError(f"fg_mode must be 'class' or 'any', got {fg_mode!r}")
        if mask_pad_value is not None and not isinstance(mask_pad_value, (int, np.integer)):
            raise ConfigError(f"mask_pad_value must be an integer or None, got {mask_pad_value!r}")
        if fg_classes is not None:
            classes = np.atleast_1d(np.asarray(fg_classes))
            if (
                classes.ndim != 1
                or classes.size == 0
                or not np.issubdtype(classes.dtype, np.integer)
                or np.any(classes < 0)
            ):
                raise ConfigError(
                    f"fg_classes must be a non-empty list of class indices >= 0, got {fg_classes!r}"
                )
            fg_classes = sorted({int(c) for c in classes})
        self.fg_classes = fg_classes
        self.fg_fraction = float(fg_fraction)
        self.fg_mode = fg_mode
        self.mask_pad_value = mask_pad_value

    def sizes(self, spatial_dims: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """``(label_size, input_size, border)`` per axis for ``spatial_dims`` axes."""
        lab = _sizes(self.label_size, spatial_dims, "label_size")
        inp = (
            lab if self.input_size is None else _sizes(self.input_size, spatial_dims, "input_size")
        )
        return lab, inp, tuple((i - s) // 2 for i, s in zip(inp, lab))

    def choose_start(
        self,
        mask: np.ndarray,
        rng: np.random.Generator,
        fg_locations: Optional[dict[int, np.ndarray]] = None,
        labelled: Optional[np.ndarray] = None,
    ) -> tuple[tuple[int, ...], bool]:
        """Draw the label region's start corner; ``labelled``: :func:`labelled_locations` of a
        partially labelled mask, where the draws not centred on foreground are centred.

        Returns:
            ``(label_start, fg_centred)``; ``fg_centred`` is True when the patch was placed on a
            foreground pixel (False when uniform, including when the mask has no foreground).
        """
        shape = mask.shape
        lab, _, _ = self.sizes(len(shape))
        lo = [min(0, n - s) for n, s in zip(shape, lab)]
        hi = [max(0, n - s) for n, s in zip(shape, lab)]
        want_fg = rng.random() < self.fg_fraction
        if want_fg:
            locs = (
                fg_locations
                if fg_locations is not None
                else foreground_locations(mask, classes=self.fg_classes)
            )
            wanted = self.fg_classes
            locs = {
                c: v
                for c, v in locs.items()
                if len(v) and (c > 0 if wanted is None else c in wanted)
            }
            if locs:
                if self.fg_mode == "class":
                    classes = sorted(locs)
                    pool = locs[classes[int(rng.integers(len(classes)))]]
                else:
                    pool = np.concatenate([locs[c] for c in sorted(locs)])
                return self._centred(pool, shape, lab, lo, hi, rng), True
        if labelled is not None and len(labelled):
            return self._centred(labelled, shape, lab, lo, hi, rng), False
        return tuple(int(rng.integers(a, b + 1)) for a, b in zip(lo, hi)), False

    @staticmethod
    def _centred(pool, shape, lab, lo, hi, rng) -> tuple[int, ...]:
        """The start corner of a label region centred on a random pixel of ``pool`` (flat
        indices), shifted to lie inside the image where it fits."""
        centre = np.unravel_index(int(pool[int(rng.integers(len(pool)))]), shape)
        return tuple(int(np.clip(c - s // 2, a, b)) for c, s, a, b in zip(centre, lab, lo, hi))

    def sample(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        rng: np.random.Generator,
        weight: Optional[np.ndarray] = None,
        instances: Optional[np.ndarray] = None,
        fg_locations: Optional[dict[int, np.ndarray]] = None,
        full_context: bool = False,
        labelled: Optional[np.ndarray] = None,
    ) -> dict:
        """Cut one random patch.

        Args:
            image: ``(C, *spatial)`` image.
            mask: ``(*spatial)`` integer class indices.
            rng: random generator (same seed → same patch).
            weight: optional ``(*spatial)`` weight map, cropped like the mask.
            instances: optional ``(*spatial)`` instance labels, cropped like the mask.
            fg_locations: optional precomputed :func:`foreground_locations` of ``mask``.
            full_context: crop the labels at the *input* region too (all arrays share one spatial shape,
                so spatial augmentation can follow; then call :meth:`crop_labels`).
            labelled: optional precomputed :func:`labelled_locations` of a partially labelled
                ``mask`` (see :meth:`choose_start`).

        Returns:
            A sample dict: ``image`` ``(C, *input_size)``; ``mask`` (and ``weight``, ``instances`` if
            given) ``(*label_size)`` or ``(*input_size)`` with ``full_context``; ``label_start`` and
            ``input_start`` (corner indices in the image, may be negative); ``fg_centred`` (bool).
        """
        image, mask = np.asarray(image), np.asarray(mask)
        if image.ndim != mask.ndim + 1 or image.shape[1:] != mask.shape:
            raise ConfigError(
                f"image {image.shape} and mask {mask.shape} do not match: expected image (C, *spatial) "
                f"and mask (*spatial)"
            )
        for name, arr in (("weight", weight), ("instances", instances)):
            if arr is not None and np.shape(arr) != mask.shape:
                raise ConfigError(f"{name} has shape {np.shape(arr)} but the mask has {mask.shape}")
        lab, inp, border = self.sizes(mask.ndim)
        label_start, fg = self.choose_start(mask, rng, fg_locations, labelled)
        input_start = tuple(s - b for s, b in zip(label_start, border))
        out = {
            "image": crop_with_mirror(image, input_start, inp),
            "label_start": label_start,
            "input_start": input_start,
            "fg_centred": fg,
        }
        lstart, lsize = (input_start, inp) if full_context else (label_start, lab)
        outside = None
        if self.mask_pad_value is not None and any(
            s < 0 or s + z > n for s, z, n in zip(lstart, lsize, mask.shape)
        ):
            outside = np.zeros(lsize, dtype=bool)
            for ax, (s, z, n) in enumerate(zip(lstart, lsize, mask.shape)):
                pos = np.arange(s, s + z)
                out_ax = (pos < 0) | (pos >= n)
                outside |= out_ax.reshape((1,) * ax + (-1,) + (1,) * (len(lsize) - ax - 1))
        for name, arr, pad in (
            ("mask", mask, self.mask_pad_value),
            ("weight", weight, 0),
            ("instances", instances, 0),
        ):
            if arr is None:
                continue
            crop = crop_with_mirror(np.asarray(arr), lstart, lsize)
            if outside is not None:
                crop[outside] = pad
            out[name] = crop
        return out

    def crop_labels(self, sample: dict) -> dict:
        """Centre-crop ``mask``/``weight``/``instances`` of a ``full_context`` sample to ``label_size``.

        Returns a new dict; the image keeps the input size.
        """
        out = dict(sample)
        lab, _, _ = self.sizes(sample["image"].ndim - 1)
        for key in ("mask", "weight", "instances"):
            if out.get(key) is not None:
                out[key] = np.ascontiguousarray(center_crop(out[key], lab))
        return out

    def __repr__(self) -> str:
        return (
            f"PatchSampler(label_size={self.label_size!r}, input_size={self.input_size!r}, "
            f"fg_fraction={self.fg_fraction}, fg_mode={self.fg_mode!r}, mask_pad_value={self.mask_pad_value!r}, "
            f"fg_classes={self.fg_classes!r})"
        )


__all__ = [
    "MIRROR_MODES",
    "PAD_MODE",
    "PatchSampler",
    "crop_with_mirror",
    "center_crop",
    "mirror_indices",
    "foreground_locations",
    "labelled_locations",
]

"""Intensity normalisation, chosen explicitly and saved with the model.

Nothing here guesses the scheme from one image (no "divide by 255 if the maximum is above 1"): the
user names a scheme, a :class:`Normalizer` applies it per channel, and :meth:`Normalizer.to_dict`
records the scheme *and* any statistics fitted on the training set so that a checkpoint carries them
to inference.

Schemes (``create_normalizer(name, **params)``):

* ``zscore``: ``(x - mean) / std`` per channel; statistics of each image (``per_image=True``, the
  default) or of the whole training set (``per_image=False`` then :meth:`~Normalizer.fit`), or given
  (``mean=..., std=...``).
* ``percentile``: clip each channel to its ``lower``/``upper`` percentiles (default 1 and 99.8) and
  scale that range linearly to **[0, 1]**; percentiles of each image or, with ``per_image=False``, of
  the training set (pooled pixels, see :meth:`PercentileNormalizer.fit`).
* ``minmax``: scale ``[min, max]`` to [0, 1]; per image or of the training set.
* ``fixed``: clip to a given ``(low, high)`` range (scalars or one per channel) and scale it to
  [0, 1], e.g. a CT window ``fixed(low=-1000, high=400)`` or 8-bit images ``fixed(low=0, high=255)``.
* ``none``: only cast to float32.
* ``ct``: nnU-Net's CT scheme: clip to the 0.5 and 99.5 percentiles of the training set's
  foreground voxels (label > 0; :meth:`~Normalizer.fit` takes the masks), then subtract their mean
  and divide by their std (see :class:`CTNormalizer`).
* ``per-channel``: one of the above per channel, e.g. CT + MR:
  ``per-channel(channels=[{"name": "ct"}, {"name": "zscore"}])``.

Choosing from the channel names (:func:`choose_normalization`, ``data.normalization: {name:
auto}``, the default): a scheme the user names wins; else channel names (``--channel-names CT,T2``,
else an nnU-Net ``dataset.json``'s ``channel_names``) choose nnU-Net's scheme per channel: ``CT`` →
``ct``, ``noNorm`` → ``none``, ``rescale_to_0_1`` → per-image ``minmax``, ``rgb_to_0_1`` →
``fixed`` 0 … 255, any other name (MR, microscopy) → per-image ``zscore``; without names, per-image
``zscore``.

A constant channel never yields NaN: a zero spread is replaced by 1, so the channel maps to 0.

Example:
    >>> norm = create_normalizer("zscore", per_image=False).fit(train_images)
    >>> x = norm(image)                      # (C, *spatial) float32
    >>> same = Normalizer.from_dict(norm.to_dict())
    >>> ct = create_normalizer("ct").fit(train_images, train_masks)  # foreground = label > 0
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

import numpy as np

from ..errors import ConfigError
from ..registry import Registry

#: A spread (std or range) below this is treated as zero and replaced by 1.
EPS = 1e-8

Number = Union[int, float]
PerChannel = Optional[Union[Number, Sequence[Number]]]


def _as_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim < 2:
        raise ConfigError(f"normalisation expects an image (C, *spatial), got shape {image.shape}")
    if not (np.issubdtype(image.dtype, np.number) or image.dtype == bool):
        raise ConfigError(f"normalisation expects a numeric image, got dtype {image.dtype}")
    return image


def _channel_vector(value: PerChannel, name: str) -> Optional[np.ndarray]:
    """A per-channel parameter as a float64 vector (a scalar becomes a length-1 vector)."""
    if value is None:
        return None
    vec = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if vec.ndim != 1 or vec.size == 0 or not np.all(np.isfinite(vec)):
        raise ConfigError(
            f"{name} must be a finite number or a list of them (one per channel), got {value!r}"
        )
    return vec


def _broadcast(vec: np.ndarray, channels: int, name: str, spatial_ndim: int) -> np.ndarray:
    """Shape a per-channel vector (1 or C entries) to broadcast over ``(C, *spatial)``."""
    if vec.size not in (1, channels):
        raise ConfigError(
            f"{name} has {vec.size} values but the image has {channels} channel(s); "
            f"give one value or one per channel"
        )
    return np.broadcast_to(vec, (channels,)).reshape((channels,) + (1,) * spatial_ndim)


def _spread(x: np.ndarray) -> np.ndarray:
    """A std or a range with zeros (constant channels) replaced by 1."""
    return np.where(x > EPS, x, 1.0)


def _to_list(x: Optional[np.ndarray]) -> Optional[list]:
    return None if x is None else [float(v) for v in np.atleast_1d(x)]


def _pairs(images: Iterable, masks: Optional[Iterable], name: str) -> Iterator[tuple]:
    """``(image, mask)`` pairs, ``mask`` ``None`` without masks; as many masks as images."""
    if masks is None:
        for image in images:
            yield image, None
        return
    end = object()
    images, masks = iter(images), iter(masks)
    while True:
        image, mask = next(images, end), next(masks, end)
        if image is end and mask is end:
            return
        if image is end or mask is end:
            raise ConfigError(
                f"{name}.fit: got more {'masks' if image is end else 'images'} than "
                f"{'images' if image is end else 'masks'}; give one mask per image"
            )
        yield image, mask


class Normalizer:
    """Base class: a per-channel intensity mapping ``(C, *spatial) -> float32 (C, *spatial)``.

    Subclasses set :attr:`name`, implement :meth:`_apply` and, when they have dataset statistics,
    :attr:`_fits`, :meth:`_accumulate` and :meth:`_finish` (the steps of :meth:`fit`, so that a
    :class:`PerChannelNormalizer` fits its children in one pass), :meth:`_params` and
    :meth:`_stats`.
    """

    name = "base"

    #: Whether the statistics come from the training set (then :meth:`fit` must be called first).
    per_image: bool = True

    #: Whether :meth:`fit` needs the training masks (statistics of the foreground voxels).
    needs_masks: bool = False

    @property
    def _fits(self) -> bool:
        """Whether :meth:`fit` computes anything (dataset schemes); per-image and fixed ones do not."""
        return False

    def fit(
        self, images: Iterable[np.ndarray], masks: Optional[Iterable[np.ndarray]] = None
    ) -> Normalizer:
        """Compute dataset statistics from ``images`` (each ``(C, *spatial)``); returns ``self``.

        A no-op for per-image and fixed schemes. Images (and masks) are consumed one at a time, so
        generators that read one case each keep memory bounded.

        Args:
            images: the training images.
            masks: one ``(*spatial)`` label array per image (foreground = label > 0; ``None`` for
                an unlabelled case), in the same order; needed by schemes with
                :attr:`needs_masks` (``ct``), ignored by the others.

        Raises:
            ConfigError: no images, different channel counts, a mask whose shape is not its
                image's, or no masks for a scheme that needs them.
        """
        if not self._fits:
            return self
        if masks is None and self.needs_masks:
            raise ConfigError(
                f"{self.name} normalisation needs labelled foreground: fit(images, masks) with the "
                "training masks (foreground = label > 0)"
            )
        state, channels = None, None
        for image, mask in _pairs(images, masks, self.name):
            image = _as_image(image)
            if channels is not None and image.shape[0] != channels:
                raise ConfigError(
                    f"{self.name}.fit: images have different channel counts "
                    f"({channels} and {image.shape[0]})"
                )
            channels = image.shape[0]
            if mask is not None and np.shape(mask) != image.shape[1:]:
                raise ConfigError(
                    f"{self.name}.fit: a mask of shape {np.shape(mask)} for an image of spatial "
                    f"shape {image.shape[1:]}"
                )
            state = self._accumulate(state, image, mask)
        if channels is None:
            raise ConfigError(f"{self.name}.fit: got no images")
        self._finish(state)
        return self

    def _accumulate(self, state: Any, image: np.ndarray, mask: Optional[np.ndarray]) -> Any:
        """Add one image (and its mask) to the running statistics ``state`` (``None`` at first)."""
        raise NotImplementedError

    def _finish(self, state: Any) -> None:
        """Set the statistics from the final ``state`` of :meth:`_accumulate`."""
        raise NotImplementedError

    def _dataset_version(self) -> Normalizer:
        """A new, unfitted normaliser of this scheme with ``per_image=False``."""
        state = self.to_dict()
        return create_normalizer(state["name"], **{**state["params"], "per_image": False})

    def frozen(self, chunks: Iterable[np.ndarray]) -> Normalizer:
        """This scheme with the statistics of one whole image, computed in one pass over ``chunks``
        (pieces of that image, ``(C, *part)`` each): band-by-band prediction applies it to every
        band, so per-image statistics are the whole image's, not the band's. A scheme without
        per-image statistics is returned as it is."""
        if not self.per_image:
            return self
        return self._dataset_version().fit(chunks)

    @property
    def fitted(self) -> bool:
        """True when the normaliser can be applied (per-image schemes always can)."""
        return True

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Normalise one image.

        Args:
            image: ``(C, *spatial)`` array of any numeric dtype.

        Returns:
            ``(C, *spatial)`` float32 array (a new array; the input is not modified).

        Raises:
            ConfigError: not fitted yet, or the channel count does not match the statistics.
        """
        image = _as_image(image)
        if not self.fitted:
            raise ConfigError(
                f"normaliser {self.name!r} uses dataset statistics: call fit(images) first "
                f"(or pass them explicitly, or use per_image=True)"
            )
        out = self._apply(image.astype(np.float64, copy=False))
        return out.astype(np.float32)

    def _apply(self, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _params(self) -> dict:
        return {}

    def _stats(self) -> dict:
        return {}

    def to_dict(self) -> dict:
        """Scheme, parameters and fitted statistics as plain Python values (JSON/checkpoint safe)."""
        return {"name": self.name, "params": self._params(), "stats": self._stats()}

    @staticmethod
    def from_dict(d: dict) -> Normalizer:
        """Rebuild a normaliser saved with :meth:`to_dict` (statistics included)."""
        if not isinstance(d, dict) or "name" not in d:
            raise ConfigError(f"a saved normaliser must be a dict with a 'name', got {d!r}")
        norm = create_normalizer(d["name"], **d.get("params", {}))
        norm._load_stats(d.get("stats", {}) or {})
        return norm

    def _load_stats(self, stats: dict) -> None:
        if stats:
            raise ConfigError(f"normaliser {self.name!r} has no statistics, got {sorted(stats)}")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Normalizer) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


class NoNormalizer(Normalizer):
    """``none``: cast to float32, values unchanged."""

    name = "none"
    per_image = False  # no statistics at all: nothing to freeze for band-by-band prediction

    def _apply(self, image: np.ndarray) -> np.ndarray:
        return image


class ZScoreNormalizer(Normalizer):
    """``zscore``: ``(x - mean) / std`` per channel.

    Args:
        per_image: statistics of each image (default) or of the training set (call :meth:`fit`).
        mean: optional given mean(s), one value or one per channel (then ``std`` is required too and
            :meth:`fit` is not needed).
        std: optional given standard deviation(s).
    """

    name = "zscore"

    def __init__(self, per_image: bool = True, mean: PerChannel = None, std: PerChannel = None):
        self.mean = _channel_vector(mean, "mean")
        self.std = _channel_vector(std, "std")
        if (self.mean is None) != (self.std is None):
            raise ConfigError("zscore: give both mean and std, or neither")
        if self.std is not None and np.any(self.std < 0):
            raise ConfigError(f"zscore: std must be >= 0, got {std!r}")
        self.per_image = bool(per_image) and self.mean is None

    @property
    def fitted(self) -> bool:
        return self.per_image or self.mean is not None

    @property
    def _fits(self) -> bool:
        return not self.per_image

    def fit(self, images: Iterable[np.ndarray], masks=None) -> ZScoreNormalizer:
        """Per-channel mean and std over all pixels of all ``images`` (pooled, float64, streaming);
        ``masks`` are ignored."""
        return super().fit(images, masks)

    def _accumulate(self, state, image, mask):
        x = image.astype(np.float64, copy=False).reshape(image.shape[0], -1)
        n = x.shape[1]
        m = x.mean(axis=1)
        s = ((x - m[:, None]) ** 2).sum(axis=1)
        if state is None:
            return n, m, s
        count, mean, m2 = state  # Chan et al. parallel update: exact and stable
        delta = m - mean
        total = count + n
        return total, mean + delta * n / total, m2 + s + delta**2 * count * n / total

    def _finish(self, state) -> None:
        count, mean, m2 = state
        self.mean, self.std = mean, np.sqrt(m2 / count)

    def _apply(self, image: np.ndarray) -> np.ndarray:
        c, nd = image.shape[0], image.ndim - 1
        if self.per_image:
            flat = image.reshape(c, -1)
            mean = flat.mean(axis=1).reshape((c,) + (1,) * nd)
            std = flat.std(axis=1).reshape((c,) + (1,) * nd)
        else:
            mean = _broadcast(self.mean, c, "zscore mean", nd)
            std = _broadcast(self.std, c, "zscore std", nd)
        return (image - mean) / _spread(std)

    def _params(self) -> dict:
        return {"per_image": self.per_image}

    def _stats(self) -> dict:
        return {} if self.mean is None else {"mean": _to_list(self.mean), "std": _to_list(self.std)}

    def _load_stats(self, stats: dict) -> None:
        if stats:
            self.mean = _channel_vector(stats.get("mean"), "mean")
            self.std = _channel_vector(stats.get("std"), "std")
            if self.mean is None or self.std is None:
                raise ConfigError(f"zscore statistics need 'mean' and 'std', got {sorted(stats)}")


class _RangeNormalizer(Normalizer):
    """Shared code: clip to ``[low, high]`` per channel and scale that range to [0, 1]."""

    low: Optional[np.ndarray] = None
    high: Optional[np.ndarray] = None

    @property
    def fitted(self) -> bool:
        return self.per_image or self.low is not None

    @property
    def _fits(self) -> bool:
        return not self.per_image

    def _range(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _apply(self, image: np.ndarray) -> np.ndarray:
        c, nd = image.shape[0], image.ndim - 1
        if self.per_image:
            low, high = self._range(image.reshape(c, -1))
            low, high = low.reshape((c,) + (1,) * nd), high.reshape((c,) + (1,) * nd)
        else:
            low = _broadcast(self.low, c, f"{self.name} low", nd)
            high = _broadcast(self.high, c, f"{self.name} high", nd)
        return (np.clip(image, low, high) - low) / _spread(high - low)

    def _stats(self) -> dict:
        return (
            {}
            if self.low is None or self.name == "fixed"
            else {"low": _to_list(self.low), "high": _to_list(self.high)}
        )

    def _load_stats(self, stats: dict) -> None:
        if stats:
            self.low = _channel_vector(stats.get("low"), "low")
            self.high = _channel_vector(stats.get("high"), "high")
            if self.low is None or self.high is None:
                raise ConfigError(
                    f"{self.name} statistics need 'low' and 'high', got {sorted(stats)}"
                )


class PercentileNormalizer(_RangeNormalizer):
    """``percentile``: clip to the ``lower``/``upper`` percentiles per channel, then scale to [0, 1].

    Args:
        lower: lower percentile in [0, 100) (default 1).
        upper: upper percentile in (lower, 100] (default 99.8).
        per_image: percentiles of each image (default) or of the training set (call :meth:`fit`).
        max_samples: at most this many pixels per channel and image are pooled by :meth:`fit`
            (an evenly strided subset, so the result is deterministic).
    """

    name = "percentile"

    def __init__(
        self,
        lower: float = 1.0,
        upper: float = 99.8,
        per_image: bool = True,
        max_samples: int = 100_000,
    ):
        if not (0.0 <= lower < upper <= 100.0):
            raise ConfigError(
                f"percentile: need 0 <= lower < upper <= 100, got lower={lower}, upper={upper}"
            )
        if int(max_samples) < 1:
            raise ConfigError(f"percentile: max_samples must be >= 1, got {max_samples}")
        self.lower, self.upper = float(lower), float(upper)
        self.per_image = bool(per_image)
        self.max_samples = int(max_samples)

    def _range(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = np.percentile(flat, [self.lower, self.upper], axis=1)
        return q[0], q[1]

    def fit(self, images: Iterable[np.ndarray], masks=None) -> PercentileNormalizer:
        """Percentiles of the pooled pixels of all ``images`` (at most ``max_samples`` per image);
        ``masks`` are ignored."""
        return super().fit(images, masks)

    def _accumulate(self, state, image, mask):
        flat = image.reshape(image.shape[0], -1)
        step = max(1, math.ceil(flat.shape[1] / self.max_samples))
        return (state or []) + [flat[:, ::step].astype(np.float64)]

    def _finish(self, state) -> None:
        self.low, self.high = self._range(np.concatenate(state, axis=1))

    def _params(self) -> dict:
        return {
            "lower": self.lower,
            "upper": self.upper,
            "per_image": self.per_image,
            "max_samples": self.max_samples,
        }


class MinMaxNormalizer(_RangeNormalizer):
    """``minmax``: scale ``[min, max]`` per channel to [0, 1].

    Args:
        per_image: range of each image (default) or of the training set (call :meth:`fit`).
    """

    name = "minmax"

    def __init__(self, per_image: bool = True):
        self.per_image = bool(per_image)

    def _range(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return flat.min(axis=1), flat.max(axis=1)

    def fit(self, images: Iterable[np.ndarray], masks=None) -> MinMaxNormalizer:
        """Per-channel minimum and maximum over all ``images``; ``masks`` are ignored."""
        return super().fit(images, masks)

    def _accumulate(self, state, image, mask):
        lo, hi = self._range(image.reshape(image.shape[0], -1).astype(np.float64))
        return (lo, hi) if state is None else (np.minimum(state[0], lo), np.maximum(state[1], hi))

    def _finish(self, state) -> None:
        self.low, self.high = state

    def _params(self) -> dict:
        return {"per_image": self.per_image}


class FixedNormalizer(_RangeNormalizer):
    """``fixed``: clip to ``[low, high]`` and scale to [0, 1] (CT window, 8/16-bit range...).

    Args:
        low: lower bound, one value or one per channel (e.g. -1000 for a CT lung/soft-tissue window).
        high: upper bound, same form, each > ``low`` (e.g. 400).
    """

    name = "fixed"
    per_image = False

    @property
    def _fits(self) -> bool:
        return False  # the range is given

    def __init__(self, low: PerChannel = None, high: PerChannel = None):
        if low is None or high is None:
            raise ConfigError(
                "fixed normalisation needs low and high, e.g. a CT window: --set "
                "'data.normalization={name: fixed, low: -1000, high: 400}' (Python: "
                "create_normalizer('fixed', low=-1000, high=400))"
            )
        self.low, self.high = _channel_vector(low, "low"), _channel_vector(high, "high")
        if self.low.size != self.high.size and 1 not in (self.low.size, self.high.size):
            raise ConfigError(
                f"fixed: low has {self.low.size} values and high {self.high.size}; give as many"
            )
        if np.any(self.high <= self.low):
            raise ConfigError(f"fixed: need high > low, got low={low!r}, high={high!r}")

    def _params(self) -> dict:
        low, high = _to_list(self.low), _to_list(self.high)
        return {
            "low": low[0] if len(low) == 1 else low,
            "high": high[0] if len(high) == 1 else high,
        }


#: Foreground voxels are located in pieces of this many voxels (bounded index memory).
_CHUNK = 1 << 22


def _foreground_sample(mask: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted flat indices of at most ``k`` foreground voxels (label > 0) of ``mask``: all of them
    when there are no more, else ``k`` drawn without replacement. Memory: a boolean copy of the
    mask plus one chunk of indices, however large the foreground."""
    fg = np.asarray(mask).reshape(-1) > 0
    n = int(np.count_nonzero(fg))
    if n <= k:
        return np.flatnonzero(fg)
    ranks = np.sort(rng.choice(n, size=k, replace=False))
    out, seen = [], 0
    for start in range(0, fg.size, _CHUNK):
        idx = np.flatnonzero(fg[start : start + _CHUNK])
        lo, hi = np.searchsorted(ranks, [seen, seen + idx.size])
        out.append(idx[ranks[lo:hi] - seen] + start)
        seen += idx.size
    return np.concatenate(out)


class CTNormalizer(Normalizer):
    """``ct``: nnU-Net's CT scheme. Clip to the ``lower``/``upper`` percentiles (0.5, 99.5) of the
    training set's **foreground** voxels (label > 0), then subtract their mean and divide by their
    std; per channel.

    Hounsfield units mean the same in every scan, so one set of dataset statistics serves all, and
    those of the labelled structures keep the contrast where it matters (air and bed are clipped).
    As in nnU-Net, mean and std are those of the foreground samples *before* clipping. nnU-Net
    draws 10,000 foreground voxels per case with replacement; here each case gives at most
    ``max_samples`` drawn without replacement (all of them when it has no more), seeded by
    ``(seed, case index)``, so the statistics are exact for small foregrounds and memory stays
    bounded for large sets (``max_samples`` × cases × channels values).

    Args:
        lower: lower percentile in [0, 100) (default 0.5).
        upper: upper percentile in (lower, 100] (default 99.5).
        low, high, mean, std: given statistics (all four; one value or one per channel): a
            pre-fitted normaliser, no :meth:`fit` needed.
        max_samples: at most this many foreground voxels per case are pooled by :meth:`fit`.
        seed: seed of that sampling.
    """

    name = "ct"
    per_image = False
    needs_masks = True

    def __init__(
        self,
        lower: float = 0.5,
        upper: float = 99.5,
        low: PerChannel = None,
        high: PerChannel = None,
        mean: PerChannel = None,
        std: PerChannel = None,
        max_samples: int = 10_000,
        seed: int = 0,
    ):
        if not (0.0 <= lower < upper <= 100.0):
            raise ConfigError(
                f"ct: need 0 <= lower < upper <= 100 (percentiles), got lower={lower}, upper={upper}"
            )
        if int(max_samples) < 1:
            raise ConfigError(f"ct: max_samples must be >= 1, got {max_samples}")
        self.lower, self.upper = float(lower), float(upper)
        self.max_samples, self.seed = int(max_samples), int(seed)
        self.low = self.high = self.mean = self.std = None
        given = {"low": low, "high": high, "mean": mean, "std": std}
        self._load_stats({k: v for k, v in given.items() if v is not None})

    @property
    def fitted(self) -> bool:
        return self.low is not None

    @property
    def _fits(self) -> bool:
        return True

    def fit(self, images: Iterable[np.ndarray], masks=None) -> CTNormalizer:
        """Clip range, mean and std of the foreground voxels (label > 0 in ``masks``) of
        ``images``, per channel.

        Raises:
            ConfigError: no masks, or no foreground in any of them.
        """
        return super().fit(images, masks)

    def _accumulate(self, state, image, mask):
        state = state or {"cases": 0, "pooled": []}
        if mask is not None:
            rng = np.random.default_rng([self.seed, state["cases"]])
            idx = _foreground_sample(mask, self.max_samples, rng)
            if idx.size:
                flat = image.reshape(image.shape[0], -1)
                state["pooled"].append(flat[:, idx].astype(np.float64))
        state["cases"] += 1
        return state

    def _finish(self, state) -> None:
        if not state["pooled"]:
            raise ConfigError(
                f"ct normalisation needs labelled foreground (label > 0): the {state['cases']} "
                "training mask(s) have none; label the structures or use another scheme (zscore)"
            )
        pooled = np.concatenate(state["pooled"], axis=1)
        q = np.percentile(pooled, [self.lower, self.upper], axis=1)
        self.low, self.high = q[0], q[1]
        self.mean, self.std = pooled.mean(axis=1), pooled.std(axis=1)

    def _apply(self, image: np.ndarray) -> np.ndarray:
        c, nd = image.shape[0], image.ndim - 1
        low, high, mean, std = (
            _broadcast(getattr(self, k), c, f"ct {k}", nd) for k in ("low", "high", "mean", "std")
        )
        return (np.clip(image, low, high) - mean) / _spread(std)

    def _params(self) -> dict:
        return {
            "lower": self.lower,
            "upper": self.upper,
            "max_samples": self.max_samples,
            "seed": self.seed,
        }

    def _stats(self) -> dict:
        keys = ("low", "high", "mean", "std")
        return {} if self.low is None else {k: _to_list(getattr(self, k)) for k in keys}

    def _load_stats(self, stats: dict) -> None:
        if not stats:
            return
        keys = ("low", "high", "mean", "std")
        values = {k: _channel_vector(stats.get(k), k) for k in keys}
        if any(v is None for v in values.values()):
            raise ConfigError(f"ct statistics need low, high, mean and std, got {sorted(stats)}")
        sizes = {v.size for v in values.values()} - {1}
        if len(sizes) > 1:
            raise ConfigError(
                f"ct: low, high, mean and std have {[v.size for v in values.values()]} values; "
                "give one value or one per channel each"
            )
        if np.any(values["high"] < values["low"]) or np.any(values["std"] < 0):
            raise ConfigError(f"ct: need high >= low and std >= 0, got {stats}")
        self.low, self.high, self.mean, self.std = (values[k] for k in keys)


class PerChannelNormalizer(Normalizer):
    """``per-channel``: one scheme per channel, e.g. a CT and an MR channel
    (``channels=[{"name": "ct"}, {"name": "zscore"}]``, the form of ``data.normalization``).

    Channel ``i`` of an image is normalised by scheme ``i`` alone; :meth:`fit` fits the schemes
    that have dataset statistics in one pass over the images (each sees its channel and the
    masks; like every :meth:`~Normalizer.fit`, it refits given statistics too); :meth:`to_dict`
    nests theirs.

    Args:
        channels: one ``{"name": ..., **params}`` per channel, in channel order.
        per_image: ``False`` turns the per-image schemes into their dataset form (as
            ``zscore(per_image=False)``); the default keeps them.
    """

    name = "per-channel"

    def __init__(self, channels: Sequence[dict], per_image: Optional[bool] = None):
        if isinstance(channels, (str, bytes, dict)) or not isinstance(channels, Sequence):
            raise ConfigError(
                "per-channel normalisation needs channels: a list of one scheme per channel, "
                f"e.g. [{{name: ct}}, {{name: zscore}}], got {channels!r}"
            )
        if not channels:
            raise ConfigError("per-channel normalisation needs at least one channel scheme")
        self.children: list[Normalizer] = []
        for i, spec in enumerate(channels):
            if isinstance(spec, Normalizer):  # a built one, statistics included
                child = spec
            elif isinstance(spec, dict) and "name" in spec:
                try:
                    child = create_normalizer(**spec)
                except ConfigError as exc:
                    raise ConfigError(f"per-channel channels[{i}]: {exc}") from None
            else:
                raise ConfigError(
                    f"per-channel channels[{i}] must be a mapping with a 'name', got {spec!r}"
                )
            if per_image is False and child.per_image:
                child = child._dataset_version()
            if isinstance(child, PerChannelNormalizer):
                raise ConfigError(f"per-channel channels[{i}] cannot be per-channel itself")
            self.children.append(child)

    @property
    def per_image(self) -> bool:  # type: ignore[override]
        """True when a channel's scheme uses per-image statistics."""
        return any(c.per_image for c in self.children)

    @property
    def needs_masks(self) -> bool:  # type: ignore[override]
        return any(c.needs_masks and c._fits for c in self.children)

    @property
    def fitted(self) -> bool:
        return all(c.fitted for c in self.children)

    @property
    def _fits(self) -> bool:
        return any(c._fits for c in self.children)

    def fit(self, images: Iterable[np.ndarray], masks=None) -> PerChannelNormalizer:
        """Fit every channel's scheme that has dataset statistics on its channel of ``images``
        (with ``masks`` for those that need them, ``ct``), in one pass."""
        return super().fit(images, masks)

    def _check_channels(self, channels: int) -> None:
        if channels != len(self.children):
            raise ConfigError(
                f"per-channel normalisation has {len(self.children)} channel scheme(s) "
                f"({', '.join(c.name for c in self.children)}), the image has {channels} "
                "channel(s); give one scheme per channel"
            )

    def _accumulate(self, state, image, mask):
        self._check_channels(image.shape[0])
        state = state or [None] * len(self.children)
        for i, child in enumerate(self.children):
            if child._fits:
                state[i] = child._accumulate(state[i], image[i : i + 1], mask)
        return state

    def _finish(self, state) -> None:
        for child, child_state in zip(self.children, state):
            if child._fits:
                child._finish(child_state)

    def frozen(self, chunks: Iterable[np.ndarray]) -> Normalizer:
        """The per-image schemes with the statistics of one whole image (see
        :meth:`Normalizer.frozen`), all in one pass over ``chunks``; the others as they are."""
        if not self.per_image:
            return self
        out = PerChannelNormalizer(
            [c._dataset_version() if c.per_image else c for c in self.children]
        )
        state = None
        for chunk in chunks:
            chunk = _as_image(chunk)
            self._check_channels(chunk.shape[0])
            state = state or [None] * len(self.children)
            for i, (old, new) in enumerate(zip(self.children, out.children)):
                if old.per_image:
                    state[i] = new._accumulate(state[i], chunk[i : i + 1], None)
        if state is None:
            raise ConfigError("per-channel.frozen: got no image chunks")
        for i, (old, new) in enumerate(zip(self.children, out.children)):
            if old.per_image:
                new._finish(state[i])
        return out

    def _apply(self, image: np.ndarray) -> np.ndarray:
        self._check_channels(image.shape[0])
        return np.concatenate(
            [c._apply(image[i : i + 1]) for i, c in enumerate(self.children)], axis=0
        )

    def _params(self) -> dict:
        return {"channels": [{"name": c.name, **c._params()} for c in self.children]}

    def _stats(self) -> dict:
        stats = [c._stats() for c in self.children]
        return {"channels": stats} if any(stats) else {}

    def _load_stats(self, stats: dict) -> None:
        if not stats:
            return
        per_child = stats.get("channels")
        if not isinstance(per_child, list) or len(per_child) != len(self.children):
            raise ConfigError(
                f"per-channel statistics need 'channels': one entry per channel "
                f"({len(self.children)}), got {stats!r}"
            )
        for child, child_stats in zip(self.children, per_child):
            child._load_stats(child_stats or {})

    def __repr__(self) -> str:
        return f"PerChannelNormalizer({', '.join(map(repr, self.children))})"


NORMALIZERS = Registry("normalization")
NORMALIZERS.register(
    "zscore", ZScoreNormalizer, "(x - mean) / std per channel; per image or dataset"
)
NORMALIZERS.register(
    "percentile", PercentileNormalizer, "clip to percentiles (1, 99.8), scale to [0, 1]"
)
NORMALIZERS.register("minmax", MinMaxNormalizer, "scale [min, max] to [0, 1]; per image or dataset")
NORMALIZERS.register(
    "fixed", FixedNormalizer, "clip to a given (low, high) window, scale to [0, 1]"
)
NORMALIZERS.register("none", NoNormalizer, "cast to float32 only")
NORMALIZERS.register(
    "ct", CTNormalizer, "nnU-Net's CT scheme: clip to foreground percentiles, foreground z-score"
)
NORMALIZERS.register("per-channel", PerChannelNormalizer, "one scheme per channel (CT + MR ...)")


def create_normalizer(name: str, **params: Any) -> Normalizer:
    """Build a normaliser by scheme name.

    Args:
        name: ``zscore``, ``percentile``, ``minmax``, ``fixed``, ``none``, ``ct`` or
            ``per-channel``.
        **params: the scheme's options (see its class); ``None`` values keep the defaults.

    Raises:
        ConfigError: unknown name (the valid ones are listed) or invalid/unknown parameters.

    Example:
        >>> create_normalizer("fixed", low=-1000, high=400)(ct_volume)  # CT window -> [0, 1]
    """
    if isinstance(name, Normalizer):
        return name
    if not isinstance(name, str):
        raise ConfigError(f"normalization must be a scheme name, got {name!r}")
    return NORMALIZERS.create(name, **params)


def list_normalizers() -> list[str]:
    """Names accepted by :func:`create_normalizer`."""
    return NORMALIZERS.names()


# -- choosing the scheme from the channel names ----------------------------------------------------

#: ``data.normalization`` name meaning "choose from the channel names" (see
#: :func:`choose_normalization`); the config default.
AUTO = "auto"

#: nnU-Net's channel names (``dataset.json`` ``channel_names``, lower case) with a scheme of their
#: own; every other name (MR sequences, microscopy stains ...) gets a per-image z-score.
CHANNEL_SCHEMES = {
    "ct": {"name": "ct"},
    "nonorm": {"name": "none"},
    "zscore": {"name": "zscore"},
    "rescale_to_0_1": {"name": "minmax"},
    "rgb_to_0_1": {"name": "fixed", "low": 0, "high": 255},
}


def channel_name_list(channel_names: Any, what: str = "channel names") -> list[str]:
    """Channel names in channel order: a list as it is, nnU-Net's ``{"0": "CT", "1": "T2"}``
    ordered by index.

    Raises:
        ConfigError: not a list or mapping of non-empty strings, or mapping keys that are not the
            indices 0 … n-1.
    """
    if isinstance(channel_names, dict):
        try:
            keys = sorted(int(k) for k in channel_names)
        except (TypeError, ValueError):
            keys = None
        if keys != list(range(len(channel_names))):
            raise ConfigError(
                f"{what} must map the channel indices 0 … n-1 to names "
                f'(e.g. {{"0": "CT", "1": "T2"}}), got {channel_names!r}'
            )
        names = [channel_names[k] for k in sorted(channel_names, key=int)]
    elif isinstance(channel_names, (list, tuple)):
        names = list(channel_names)
    else:
        raise ConfigError(f"{what} must be a list or a mapping, got {channel_names!r}")
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ConfigError(f"{what} must be non-empty names, got {channel_names!r}")
    return [n.strip() for n in names]


def normalization_for_channel_names(channel_names: Any) -> dict:
    """nnU-Net's scheme for each channel name, as a ``data.normalization`` spec.

    ``CT`` (any case) → ``ct`` (:class:`CTNormalizer`, dataset statistics of the foreground);
    ``noNorm`` → ``none``; ``rescale_to_0_1`` → per-image ``minmax``; ``rgb_to_0_1`` →
    ``fixed`` 0 … 255; any other name → per-image ``zscore``. Every scheme works channel by
    channel, so when all channels get the same one (one channel, or four MR sequences) that plain
    spec is returned, else a ``per-channel`` spec.

    Example:
        >>> normalization_for_channel_names({"0": "CT", "1": "T2"})
        {'name': 'per-channel', 'channels': [{'name': 'ct'}, {'name': 'zscore'}]}
    """
    names = channel_name_list(channel_names)
    specs = [dict(CHANNEL_SCHEMES.get(n.lower(), {"name": "zscore"})) for n in names]
    if all(spec == specs[0] for spec in specs):
        return specs[0]
    return {"name": "per-channel", "channels": specs}


def dataset_channel_names(dataset_json: Optional[dict]) -> Optional[list[str]]:
    """The ``channel_names`` (or the older ``modality``) of an nnU-Net ``dataset.json``, in channel
    order; ``None`` when there are none."""
    if not isinstance(dataset_json, dict):
        return None
    names = dataset_json.get("channel_names", dataset_json.get("modality"))
    if names is None:
        return None
    return channel_name_list(names, "dataset.json channel_names")


def describe_normalization(spec: Union[dict, Normalizer]) -> str:
    """A spec or a normaliser in a few words, with the options that differ from the scheme's
    defaults: ``ct``, ``zscore (per_image=False)``, ``per-channel (ct, zscore)``."""
    if isinstance(spec, Normalizer):
        if isinstance(spec, PerChannelNormalizer):
            return f"per-channel ({', '.join(describe_normalization(c) for c in spec.children)})"
        return spec.name + _options_shown(spec.name, spec._params())
    name = str(spec.get("name"))
    if name.replace("_", "-") == "per-channel":
        children = [describe_normalization(dict(c)) for c in spec.get("channels") or []]
        return f"per-channel ({', '.join(children)})"
    return name + _options_shown(name, {k: v for k, v in spec.items() if k != "name"})


def _options_shown(name: str, params: dict) -> str:
    """`` (key=value, …)`` for the ``params`` that differ from the scheme's defaults, else ``""``."""
    import inspect

    try:
        defaults = inspect.signature(NORMALIZERS.get(name).builder).parameters
    except ConfigError:
        return ""
    shown = [
        f"{key}={value!r}"
        for key, value in params.items()
        if key not in defaults or defaults[key].default != value
    ]
    return f" ({', '.join(shown)})" if shown else ""


def choose_normalization(
    normalization: Optional[dict] = None,
    channel_names: Optional[Sequence[str]] = None,
    dataset_json: Optional[dict] = None,
    hot_pixels: Sequence[str] = (),
) -> tuple[dict, str]:
    """The ``data.normalization`` spec to use and why, first that applies:

    1. ``normalization`` when it names a scheme (not ``auto``): the user's choice;
    2. ``channel_names`` given by the user (``--channel-names CT,T2``);
    3. the ``dataset.json`` ``channel_names`` (or ``modality``) of an nnU-Net folder;
    4. ``percentile`` per image (1 … 99.8, CSBDeep's and StarDist's) where images hold a few
       pixels far outside the rest (``hot_pixels``: their names, from the fingerprint): a
       z-score would divide their signal by the std those pixels make;
    5. ``zscore`` per image.

    2 and 3 follow nnU-Net (:func:`normalization_for_channel_names`).

    Returns:
        ``(spec, reason)``, the reason one line for logs and the plan.
    """
    if normalization is not None and normalization.get("name") != AUTO:
        return dict(normalization), "set by the user (data.normalization / --normalization)"
    for names, source in (
        (channel_names, "--channel-names / data.channel_names"),
        (dataset_channel_names(dataset_json), "dataset.json channel_names"),
    ):
        if names:
            names = channel_name_list(names)
            spec = normalization_for_channel_names(names)
            rules = dict.fromkeys(
                f"{n}: {_CHANNEL_RULES.get(n.lower(), _CHANNEL_RULES['zscore'])}" for n in names
            )
            return spec, f"{source} {', '.join(names)} (nnU-Net's rule): {'; '.join(rules)}"
    if hot_pixels:
        shown = ", ".join(list(hot_pixels)[:3]) + (" …" if len(hot_pixels) > 3 else "")
        return {"name": "percentile"}, (
            f"percentiles per image (1 … 99.8): {len(hot_pixels)} image(s) hold a few pixels far "
            f"outside the rest ({shown}), which a z-score would divide the signal by"
        )
    return {"name": "zscore"}, (
        "z-score per image: no channel names (dataset.json channel_names or --channel-names)"
    )


_CHANNEL_RULES = {
    "ct": "clip to the 0.5/99.5 percentiles of the training foreground, then its mean and std",
    "nonorm": "no normalisation",
    "zscore": "z-score per image",
    "rescale_to_0_1": "per-image min-max to [0, 1]",
    "rgb_to_0_1": "0 … 255 to [0, 1]",
}


__all__ = [
    "Normalizer",
    "ZScoreNormalizer",
    "PercentileNormalizer",
    "MinMaxNormalizer",
    "FixedNormalizer",
    "NoNormalizer",
    "CTNormalizer",
    "PerChannelNormalizer",
    "NORMALIZERS",
    "AUTO",
    "CHANNEL_SCHEMES",
    "channel_name_list",
    "choose_normalization",
    "create_normalizer",
    "dataset_channel_names",
    "describe_normalization",
    "list_normalizers",
    "normalization_for_channel_names",
]

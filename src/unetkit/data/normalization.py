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

A constant channel never yields NaN: a zero spread is replaced by 1, so the channel maps to 0.

Example:
    >>> norm = create_normalizer("zscore", per_image=False).fit(train_images)
    >>> x = norm(image)                      # (C, *spatial) float32
    >>> same = Normalizer.from_dict(norm.to_dict())
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
                "fixed normalisation needs low and high, e.g. fixed(low=-1000, high=400) "
                "for a CT window or fixed(low=0, high=255) for 8-bit images"
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


def create_normalizer(name: str, **params: Any) -> Normalizer:
    """Build a normaliser by scheme name.

    Args:
        name: ``zscore``, ``percentile``, ``minmax``, ``fixed`` or ``none``.
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


__all__ = [
    "Normalizer",
    "ZScoreNormalizer",
    "PercentileNormalizer",
    "MinMaxNormalizer",
    "FixedNormalizer",
    "NoNormalizer",
    "NORMALIZERS",
    "create_normalizer",
    "list_normalizers",
]

"""Arrays → pictures: the one grey-value stretch and the label drawing shared by every picture unetkit
writes (``unetkit predict --overlay``, the evaluation report's overlays, the demo's report).

:func:`stretch` maps an image to ``[0, 1]`` between its :data:`LOWER_PERCENTILE` (1) and
:data:`UPPER_PERCENTILE` (99.5) percentiles, so a few hot pixels do not grey out the picture;
:func:`to_display_rgb` is the same as 8-bit RGB. :func:`colour_labels` and :func:`outlines` draw
instance (or class) label images.
"""

from __future__ import annotations

import numpy as np

#: Percentiles of the grey-value stretch: the image's 1st percentile shows black, its 99.5th white.
LOWER_PERCENTILE = 1.0
UPPER_PERCENTILE = 99.5


def stretch(
    image: np.ndarray, lower: float = LOWER_PERCENTILE, upper: float = UPPER_PERCENTILE
) -> np.ndarray:
    """An image as ``(H, W, 3)`` float RGB in ``[0, 1]``: percentile stretch, grey → RGB.

    Args:
        image: ``(C, H, W)`` (the first three channels are shown as RGB; with fewer than three,
            the first channel as grey) or ``(H, W)`` grey.
        lower, upper: the percentiles (over all shown channels together) that map to 0 and 1;
            every picture of unetkit uses the defaults, 1 and 99.5.

    Returns:
        ``(H, W, 3)`` float (read as float32, scaled in float64); a constant image gives zeros.

    Example:
        >>> rgb = stretch(np.arange(200.0).reshape(1, 10, 20))
        >>> rgb.shape, float(rgb.min()), float(rgb.max())
        ((10, 20, 3), 0.0, 1.0)
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[None]
    img = img[:3] if img.shape[0] >= 3 else img[:1]
    lo, hi = np.percentile(img, [lower, upper])
    img = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = np.repeat(img, 3, axis=0) if img.shape[0] == 1 else img
    return np.moveaxis(rgb, 0, -1)


def to_display_rgb(
    image: np.ndarray, lower: float = LOWER_PERCENTILE, upper: float = UPPER_PERCENTILE
) -> np.ndarray:
    """:func:`stretch` as ``(H, W, 3)`` uint8 (values truncated to 0 … 255).

    Args:
        image: ``(C, H, W)`` or ``(H, W)``, see :func:`stretch`.
        lower, upper: the stretch's percentiles (default 1 and 99.5).
    """
    return (stretch(image, lower, upper) * 255).astype(np.uint8)


def colour_labels(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """``(H, W)`` ids → ``(H, W, 3)`` uint8: a random bright colour per id (the same for the same
    ``seed``), black background (id 0).

    Args:
        labels: non-negative integer ids of any shape ``S``; the result is ``(*S, 3)``.
        seed: seeds the colour table.
    """
    rng = np.random.default_rng(seed)
    lut = rng.integers(60, 256, size=(int(labels.max()) + 1, 3)).astype(np.uint8)
    lut[0] = 0
    return lut[labels]


def outlines(labels: np.ndarray) -> np.ndarray:
    """Boolean mask of the inner boundary pixels of each label (pixels of a non-zero label with a
    face neighbour of another label, as :func:`skimage.segmentation.find_boundaries` ``mode="inner"``).

    Args:
        labels: ``(*spatial)`` integer labels (0 = background).
    """
    from skimage.segmentation import find_boundaries

    return find_boundaries(labels, mode="inner")


__all__ = [
    "LOWER_PERCENTILE",
    "UPPER_PERCENTILE",
    "colour_labels",
    "outlines",
    "stretch",
    "to_display_rgb",
]

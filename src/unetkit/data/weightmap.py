"""The U-Net paper's border weight map, which makes the thin gaps between touching objects count.

``w(x) = w_c(x) + w0 · exp(−(d1(x) + d2(x))² / (2σ²))``  (Ronneberger et al. 2015, eq. 2)

* ``w_c`` balances the class frequencies of the mask (``class_weights``):

  - ``"balanced"`` (default): ``w_c(k) = N / (K · n_k)`` with ``n_k`` the pixel count of class
    ``k``, ``N`` the labelled pixel count and ``K`` the number of classes present; the mean of
    ``w_c`` over the mask is then exactly 1 and each class carries the same total weight
    (e.g. 80 % background / 20 % foreground → 0.625 and 2.5);
  - ``None``: 1 everywhere;
  - a sequence: ``w_c(k) = class_weights[k]``.

* ``d1``, ``d2``: Euclidean distances (in ``spacing`` units, pixels by default) from ``x`` to the
  nearest pixel of the nearest and of the second-nearest object. Objects are the given
  ``instances`` labels (each id > 0 one object) or, without them, the connected components (face
  connectivity: 4-neighbourhood in 2D, 6 in 3D) of each foreground class of the mask, labelled class
  by class so touching objects of different classes stay apart.
* The exponential term is added on **background pixels only** (mask 0 and no instance), i.e. in the
  gaps between objects, as in Fig. 3d of the paper; it needs at least two objects.
* Pixels with a negative mask value (an ignore label) get weight 0 and do not count in ``w_c``.

Speed: each object's distance transform is computed only inside its bounding box grown by
``R = σ·sqrt(2·ln(w0 / tolerance))``; a pixel whose two nearest objects are not both within ``R``
has ``w0·exp(−(d1 + d2)²/(2σ²)) ≤ tolerance`` and its term is computed from the distances found
(possibly none, i.e. 0), so the result differs from the exact map by at most ``tolerance``
(default 1e-6; ``tolerance=0`` computes every distance over the whole image).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import numpy as np
from scipy import ndimage

from ..errors import ConfigError
from ..utils import per_axis

ClassWeights = Optional[Union[str, Sequence[float]]]


def class_weight_map(mask: np.ndarray, class_weights: ClassWeights = "balanced") -> np.ndarray:
    """Per-pixel class weights ``w_c`` (see the module docstring).

    Args:
        mask: ``(*spatial)`` integer class indices; negative values are ignored (weight 0).
        class_weights: ``"balanced"``, ``None`` or one weight per class index.

    Returns:
        ``(*spatial)`` float32.
    """
    mask = _check_mask(mask)
    valid = mask >= 0
    if class_weights is None:
        return valid.astype(np.float32)
    if isinstance(class_weights, str):
        if class_weights != "balanced":
            raise ConfigError(
                f"class_weights must be 'balanced', None or a list of weights, got {class_weights!r}"
            )
        counts = np.bincount(mask[valid].ravel()) if valid.any() else np.zeros(1, np.int64)
        present = counts > 0
        table = np.zeros(counts.size, dtype=np.float64)
        table[present] = counts.sum() / (present.sum() * counts[present])
    else:
        table = np.asarray(class_weights, dtype=np.float64)
        if table.ndim != 1 or not np.all(np.isfinite(table)) or np.any(table < 0):
            raise ConfigError(
                f"class_weights must be finite weights >= 0, one per class, got {class_weights!r}"
            )
        top = int(mask.max(initial=0))
        if top >= table.size:
            raise ConfigError(
                f"class_weights has {table.size} entries but the mask contains class {top}"
            )
    out = np.zeros(mask.shape, dtype=np.float32)
    out[valid] = table[mask[valid]]
    return out


def instance_labels(mask: np.ndarray) -> np.ndarray:
    """Objects of a semantic mask: connected components of each class > 0, numbered 1, 2, … .

    Args:
        mask: ``(*spatial)`` integer class indices.

    Returns:
        ``(*spatial)`` int32 labels, 0 outside objects (face connectivity, class by class).
    """
    mask = _check_mask(mask)
    out = np.zeros(mask.shape, dtype=np.int32)
    count = 0
    for c in np.unique(mask[mask > 0]):
        lab, n = ndimage.label(mask == c)
        out[lab > 0] = lab[lab > 0] + count
        count += n
    return out


def two_nearest_distances(
    instances: np.ndarray, spacing: Optional[Sequence[float]] = None, max_distance: float = math.inf
) -> tuple[np.ndarray, np.ndarray]:
    """Distances to the nearest and second-nearest object of every pixel.

    Args:
        instances: ``(*spatial)`` integer object labels (0 = no object, ids need not be consecutive).
        spacing: pixel size per axis (default 1).
        max_distance: each object's distances are computed only within its bounding box grown by
            this distance; pixels farther away may report a larger distance or ``inf``. Every pair of
            distances with ``d2 <= max_distance`` is exact.

    Returns:
        ``(d1, d2)`` float64 ``(*spatial)``; ``inf`` where fewer objects were found.
    """
    labels = np.asarray(instances)
    sp = _spacing(spacing, labels.ndim)
    if labels.size and labels.min() < 0:
        raise ConfigError("instance labels must be >= 0 (0 = no object)")
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if (
        ids.size and ids[-1] > 4 * ids.size + 1024
    ):  # sparse ids: renumber so find_objects stays small
        labels = np.searchsorted(np.concatenate([[0], ids]), labels).astype(np.int64)
        ids = np.arange(1, ids.size + 1)
    d1 = np.full(labels.shape, np.inf)
    d2 = np.full(labels.shape, np.inf)
    grow = [math.inf if math.isinf(max_distance) else int(math.ceil(max_distance / s)) for s in sp]
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        if any(math.isinf(g) for g in grow):
            box = tuple(slice(0, n) for n in labels.shape)
        else:
            box = tuple(
                slice(max(0, b.start - g), min(n, b.stop + g))
                for b, g, n in zip(box, grow, labels.shape)
            )
        dk = ndimage.distance_transform_edt(labels[box] != k, sampling=sp)
        s1, s2 = d1[box], d2[box]  # views: updated in place
        np.minimum(s2, np.maximum(s1, dk), out=s2)
        np.minimum(s1, dk, out=s1)
    return d1, d2


def border_weight_map(
    mask: np.ndarray,
    instances: Optional[np.ndarray] = None,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: ClassWeights = "balanced",
    spacing: Optional[Sequence[float]] = None,
    tolerance: float = 1e-6,
) -> np.ndarray:
    """The U-Net paper's weight map ``w_c + w0·exp(−(d1 + d2)²/(2σ²))`` (see the module docstring).

    Args:
        mask: ``(*spatial)`` integer class indices (2D or 3D); negative = ignore (weight 0).
        instances: optional ``(*spatial)`` object labels (0 = none); default: connected components of
            each foreground class of ``mask``.
        w0: amplitude of the border term (paper: 10); 0 disables it.
        sigma: width of the border term in ``spacing`` units (paper: ≈ 5 px).
        class_weights: ``"balanced"``, ``None`` or one weight per class (see :func:`class_weight_map`).
        spacing: pixel size per axis (default 1 for each axis).
        tolerance: largest allowed error of the border term (speed/accuracy trade-off; 0 = exact).

    Returns:
        ``(*spatial)`` float32 weights.

    Example:
        >>> w = border_weight_map(cells_mask)               # binary mask, touching cells as components
        >>> w = border_weight_map(semantic, instances=ids)  # given instance ids
    """
    mask = _check_mask(mask)
    if not (math.isfinite(w0) and w0 >= 0):
        raise ConfigError(f"w0 must be a number >= 0, got {w0!r}")
    if not (math.isfinite(sigma) and sigma > 0):
        raise ConfigError(f"sigma must be > 0, got {sigma!r}")
    if not tolerance >= 0:
        raise ConfigError(f"tolerance must be >= 0, got {tolerance!r}")
    if instances is None:
        instances = instance_labels(mask)
    else:
        instances = np.asarray(instances)
        if instances.shape != mask.shape or not np.issubdtype(instances.dtype, np.integer):
            raise ConfigError(
                f"instances must be an integer array of the mask's shape {mask.shape}, "
                f"got {instances.dtype} {instances.shape}"
            )
    weight = class_weight_map(mask, class_weights)
    background = (instances == 0) & (mask == 0)
    if w0 == 0 or not background.any():
        return weight
    if tolerance >= w0:  # the whole term is below the tolerance
        return weight
    reach = math.inf if tolerance == 0 else sigma * math.sqrt(2.0 * math.log(w0 / tolerance))
    d1, d2 = two_nearest_distances(instances, spacing, reach)
    s = d1[background] + d2[background]
    weight[background] += (w0 * np.exp(-(s * s) / (2.0 * sigma * sigma))).astype(np.float32)
    return weight


def _check_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == bool):
        raise ConfigError(f"mask must hold integer class indices, got dtype {mask.dtype}")
    if mask.ndim not in (2, 3):
        raise ConfigError(f"mask must be 2D or 3D (*spatial), got shape {mask.shape}")
    return mask.astype(np.int64, copy=False)


def _spacing(spacing: Optional[Sequence[float]], ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    return per_axis(spacing, ndim, "spacing", kind=float, positive=True)


__all__ = ["border_weight_map", "class_weight_map", "instance_labels", "two_nearest_distances"]

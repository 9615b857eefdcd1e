"""Boundary metrics: Hausdorff distance, HD95, the average symmetric surface distance (ASSD) and the
normalised surface Dice (NSD).

Definitions (2D and 3D, distances in ``spacing`` units, pixels by default):

* The **surface** of a binary mask is its pixels that have a face neighbour (4-neighbourhood in 2D,
  6 in 3D) outside the mask; pixels on the image edge count as outside, so an object touching the
  edge has a surface there (MedPy's and MONAI's convention).
* ``d(a, B)`` is the Euclidean distance from a surface pixel ``a`` of one mask to the nearest
  surface pixel of the other, read from a distance transform of the other surface (never
  pairwise distances: a 512² image takes milliseconds).
* **HD** = max over both directions of the largest ``d``.
* **HD95** = the larger of the two *directed* 95th percentiles (linear interpolation), as MONAI's
  ``compute_hausdorff_distance(percentile=95)`` and DeepMind's ``compute_robust_hausdorff`` do.
* **ASSD** = the mean of all ``d`` of both directions pooled (Heimann et al. 2009, MICCAI 2007
  liver challenge; MONAI's ``symmetric=True``): ``(Σ d(a, B) + Σ d(b, A)) / (|∂A| + |∂B|)``.
* **NSD** at tolerance ``τ`` (Nikolov et al. 2021, "surface Dice"): the fraction of both surfaces
  lying within ``τ`` of the other, ``(|{a ∈ ∂A: d(a, B) ≤ τ}| + |{b ∈ ∂B: d(b, A) ≤ τ}|) /
  (|∂A| + |∂B|)``, from the same distances; 1 = the boundaries agree everywhere to within ``τ``.
  ``τ`` is in ``spacing`` units; the default is one pixel of the finest axis, ``min(spacing)``
  (1 without spacing): a boundary off by at most one pixel counts as right. Pass the tolerance of
  your task (Nikolov et al. use the inter-rater variation of each organ, in mm).

NSD and MONAI: ``monai.metrics.compute_surface_dice(..., use_subvoxels=False)`` (its default) gives
the same number to float32 precision: its edges are ``binary_erosion(mask) ^ mask`` with the face
structure after cropping with a one-pixel zero margin, so image-edge pixels are surface there too,
and its distances are the same Euclidean distance transform with ``spacing``. With
``use_subvoxels=True`` MONAI follows DeepMind's ``surface-distance`` (the paper's code) and weights
each surface element by its area (surfels between voxel corners, from the spacing) instead of
counting pixels; unetkit counts surface pixels, so that NSD, HD, HD95 and ASSD all describe one
surface, and the pixel count is what MONAI computes by default. Scores then differ slightly where
the area of a surface pixel varies (anisotropic spacing, diagonal boundaries), not in kind.

Empty masks (:data:`EMPTY_POLICY`): both empty → NaN (undefined, left out of means and counted).
Exactly one empty: HD/HD95/ASSD → the **image diagonal** ``sqrt(Σ (n_i · s_i)²)``, a bound that no
real distance reaches (BraTS' 373.13 for 240×240×155), so a missed or hallucinated object is
penalised in every mean instead of being silently dropped; NSD → 0 (no boundary lies within any
tolerance of a missing one), MONAI's convention, a real score like Dice's 0.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from ..errors import ConfigError
from ..utils import per_axis

EMPTY_POLICY = (
    "HD/HD95/ASSD/NSD: both masks empty is undefined (NaN, left out of means and counted); exactly "
    "one empty scores the image diagonal sqrt(sum((n_i*s_i)^2)) for HD/HD95/ASSD, a penalty larger "
    "than any real distance, and 0 for NSD (MONAI's convention)"
)

#: The distance metrics: an empty side scores the image-diagonal penalty.
DISTANCE_METRICS = ("hd", "hd95", "assd")
BOUNDARY_METRICS = (*DISTANCE_METRICS, "nsd")


def _check_spacing(spacing: Optional[Sequence[float]], ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    return per_axis(np.ravel(spacing), ndim, "spacing", kind=float, positive=True)


def resolve_nsd_tolerance(tolerance: Optional[float], spacing: Sequence[float]) -> float:
    """The NSD tolerance to use: ``tolerance``, or one pixel of the finest axis, ``min(spacing)``.

    Raises:
        ConfigError: ``tolerance`` is negative, NaN or infinite.
    """
    if tolerance is None:
        return float(min(spacing))
    value = float(tolerance)
    if not np.isfinite(value) or value < 0:
        raise ConfigError(
            f"nsd_tolerance must be a finite distance >= 0 (in spacing units), got {tolerance!r}"
        )
    return value


def surface_dice(d_pred: np.ndarray, d_truth: np.ndarray, tolerance: float) -> float:
    """NSD from the directed surface distances of :func:`surface_distances`: the fraction of both
    surfaces within ``tolerance`` of the other."""
    inside = np.count_nonzero(d_pred <= tolerance) + np.count_nonzero(d_truth <= tolerance)
    return float(inside / (d_pred.size + d_truth.size))


def image_diagonal(shape: Sequence[int], spacing: Optional[Sequence[float]] = None) -> float:
    """``sqrt(Σ (n_i · s_i)²)``: the penalty distance when exactly one mask is empty.

    Example:
        >>> round(image_diagonal((155, 240, 240)), 2)
        373.13
    """
    s = _check_spacing(spacing, len(shape))
    return float(np.sqrt(sum((n * v) ** 2 for n, v in zip(shape, s))))


def surface(mask: np.ndarray) -> np.ndarray:
    """Surface pixels of a binary mask (``(*spatial)`` bool): pixels with a face neighbour outside it."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask.copy()
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure, border_value=0)


def surface_distances(
    pred: np.ndarray, truth: np.ndarray, spacing: Optional[Sequence[float]] = None
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances between two non-empty binary masks.

    Args:
        pred, truth: ``(*spatial)`` binary masks of one shape, both non-empty.
        spacing: pixel size per axis (default 1).

    Returns:
        ``(d_pred, d_truth)``: float64 arrays; ``d_pred`` holds, for each surface pixel of
        ``pred``, the distance to the nearest surface pixel of ``truth``; ``d_truth`` the converse.

    Raises:
        ConfigError: shapes differ or a mask is empty.
    """
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise ConfigError(f"prediction shape {pred.shape} differs from truth shape {truth.shape}")
    if not pred.any() or not truth.any():
        raise ConfigError("surface distances need two non-empty masks (see boundary.EMPTY_POLICY)")
    s = _check_spacing(spacing, pred.ndim)
    # Cropping to the bounding box of both masks is exact: every surface pixel lies inside it.
    box = ndimage.find_objects((pred | truth).astype(np.uint8))[0]
    sp, st = surface(pred[box]), surface(truth[box])
    d_pred = ndimage.distance_transform_edt(~st, sampling=s)[sp]
    d_truth = ndimage.distance_transform_edt(~sp, sampling=s)[st]
    return d_pred, d_truth


def boundary_scores(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing: Optional[Sequence[float]] = None,
    percentile: float = 95.0,
    nsd_tolerance: Optional[float] = None,
) -> dict[str, float]:
    """HD, HD95, ASSD and NSD of two binary masks, with the empty policy of :data:`EMPTY_POLICY`.

    Args:
        pred, truth: ``(*spatial)`` binary masks (2D or 3D) of one shape.
        spacing: pixel size per axis (default 1), e.g. ``meta.spacing``.
        percentile: the percentile reported as ``"hd95"``.
        nsd_tolerance: the NSD tolerance ``τ`` in ``spacing`` units (default: one pixel of the
            finest axis, ``min(spacing)``).

    Returns:
        ``{"hd": float, "hd95": float, "assd": float, "nsd": float}``.

    Raises:
        ConfigError: shapes differ; a bad spacing, percentile or tolerance.

    Example:
        >>> a = np.zeros((5, 5), bool); a[1, 1] = True
        >>> b = np.zeros((5, 5), bool); b[1, 4] = True
        >>> boundary_scores(a, b)["hd"], boundary_scores(a, b, nsd_tolerance=3)["nsd"]
        (3.0, 1.0)
    """
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise ConfigError(f"prediction shape {pred.shape} differs from truth shape {truth.shape}")
    if not 0 <= percentile <= 100:
        raise ConfigError(f"percentile must lie in [0, 100], got {percentile}")
    tolerance = resolve_nsd_tolerance(nsd_tolerance, _check_spacing(spacing, pred.ndim))
    has_p, has_t = bool(pred.any()), bool(truth.any())
    if not has_p and not has_t:
        nan = float("nan")
        return {"hd": nan, "hd95": nan, "assd": nan, "nsd": nan}
    if has_p != has_t:
        diag = image_diagonal(pred.shape, spacing)
        return {"hd": diag, "hd95": diag, "assd": diag, "nsd": 0.0}
    d_pred, d_truth = surface_distances(pred, truth, spacing)
    return {
        "hd": float(max(d_pred.max(), d_truth.max())),
        "hd95": float(max(np.percentile(d_pred, percentile), np.percentile(d_truth, percentile))),
        "assd": float((d_pred.sum() + d_truth.sum()) / (d_pred.size + d_truth.size)),
        "nsd": surface_dice(d_pred, d_truth, tolerance),
    }

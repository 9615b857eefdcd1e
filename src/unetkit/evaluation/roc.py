"""ROC curve and its area for a binary probability map (DRIVE reports AUC inside its field of view).

The AUC is computed exactly from ranks (Mann–Whitney U): the probability that a random positive
pixel scores higher than a random negative one, ties counting one half. That equals the trapezoidal
area under the ROC curve of :func:`roc_curve` (scikit-learn's ``roc_auc_score``). Scores are only
ranked, so probabilities, logits or 8-bit probability images give the same AUC.

Empty policy (:data:`EMPTY_POLICY`): no positive or no negative pixel (in the mask) → NaN.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import ConfigError

EMPTY_POLICY = (
    "AUC: undefined (NaN) when the truth has no positive or no negative pixel inside the mask"
)


def _prepare(scores, truth, mask) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores)
    truth = np.asarray(truth)
    if scores.shape != truth.shape:
        raise ConfigError(f"scores shape {scores.shape} differs from truth shape {truth.shape}")
    if scores.dtype.kind not in "biuf":
        raise ConfigError(f"scores must be numbers, got dtype {scores.dtype}")
    s = scores.reshape(-1).astype(np.float64)
    t = truth.reshape(-1).astype(bool)
    if mask is not None:
        m = np.asarray(mask).reshape(-1).astype(bool)
        if m.size != s.size:
            raise ConfigError(f"mask has {m.size} pixels, scores {s.size}")
        s, t = s[m], t[m]
    if np.isnan(s).any():
        raise ConfigError(f"scores hold {int(np.isnan(s).sum())} NaN value(s)")
    return s, t


def roc_auc(scores: np.ndarray, truth: np.ndarray, mask: Optional[np.ndarray] = None) -> float:
    """Area under the ROC curve.

    Args:
        scores: ``(*spatial)`` probability (or any score) of the positive class.
        truth: ``(*spatial)`` binary truth (non-zero = positive).
        mask: optional ``(*spatial)`` boolean field of view; pixels outside are ignored.

    Returns:
        The AUC in ``[0, 1]``, NaN when a class is missing.

    Example:
        >>> roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
        0.75
    """
    s, t = _prepare(scores, truth, mask)
    n_pos = int(t.sum())
    n_neg = t.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata  # imported here: scipy.stats is slow to import

    ranks = rankdata(s)  # average ranks for ties
    return float((ranks[t].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(
    scores: np.ndarray, truth: np.ndarray, mask: Optional[np.ndarray] = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct score threshold.

    Args:
        scores, truth, mask: as :func:`roc_auc`.

    Returns:
        ``(fpr, tpr, thresholds)``, each ``(P,)``: predicting positive where ``score >= threshold``;
        the first point is ``(0, 0)`` with threshold ``+inf``, the last ``(1, 1)``.

    Raises:
        ConfigError: no positive or no negative pixel (the rates are undefined).
    """
    s, t = _prepare(scores, truth, mask)
    n_pos = int(t.sum())
    n_neg = t.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ConfigError("a ROC curve needs positive and negative pixels")
    order = np.argsort(-s, kind="stable")
    s, t = s[order], t[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each distinct score
    tps = np.cumsum(t)[last]
    fps = (last + 1) - tps
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    return fpr, tpr, np.r_[np.inf, s[last]]

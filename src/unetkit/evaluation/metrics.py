"""Overlap metrics from a confusion matrix, with an explicit policy for empty classes.

Popular tools count a class that is absent from both truth and prediction as a perfect Dice of 1.0
inside a mean, inflating multi-class scores. Here such a score is **undefined** (NaN) and left out of
every mean (:data:`EMPTY_POLICY`); a class absent from the truth but predicted scores 0.

Definitions, per class ``c`` with ``TP``, ``FP``, ``FN``, ``TN`` counted one class against the rest:
Dice ``2TP / (2TP + FP + FN)``, IoU ``TP / (TP + FP + FN)``, precision ``TP / (TP + FP)``, recall
(sensitivity) ``TP / (TP + FN)``, specificity ``TN / (TN + FP)``; the pixel error of a case is
``1 − accuracy`` = the fraction of counted pixels whose class is wrong. A ``mask`` (e.g. DRIVE's
field of view) restricts every count to the pixels inside it.

This module needs only numpy: torch tensors are accepted (converted on the CPU) without importing
torch.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..errors import ConfigError

EMPTY_POLICY = (
    "a class absent from both truth and prediction has an undefined (NaN) Dice/IoU/precision/"
    "recall and is left out of means; absent from the truth but predicted scores 0"
)


def _as_numpy(x: Any) -> np.ndarray:
    """``x`` as a numpy array; a torch tensor (any device) is detached and copied to the CPU."""
    if type(x).__module__.startswith("torch"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def confusion_matrix(pred, truth, num_classes: int, mask: Optional[Any] = None) -> np.ndarray:
    """``(K, K)`` int64 counts, rows = truth class, columns = predicted class.

    Args:
        pred, truth: integer class maps of the same shape (any dims), numpy arrays or tensors.
        num_classes: K; values outside ``[0, K)`` raise.
        mask: optional boolean map of the same shape; only pixels where it is true count (e.g.
            DRIVE's field of view).

    Raises:
        ConfigError: shapes differ, or a class value lies outside ``[0, K)``.

    Example:
        >>> confusion_matrix(np.array([0, 1, 1]), np.array([0, 0, 1]), 2).tolist()
        [[1, 1], [0, 1]]
    """
    p = _as_numpy(pred)
    t = _as_numpy(truth)
    if p.size != t.size:
        raise ConfigError(f"prediction has {p.size} pixels, truth {t.size}")
    p = p.reshape(-1)
    t = t.reshape(-1)
    if mask is not None:
        m = _as_numpy(mask).reshape(-1).astype(bool, copy=False)
        if m.size != p.size:
            raise ConfigError(f"mask has {m.size} pixels, prediction {p.size}")
        p, t = p[m], t[m]
    for name, v in (("prediction", p), ("truth", t)):
        if v.dtype.kind not in "biu":
            raise ConfigError(f"{name} must hold integer class indices, got dtype {v.dtype}")
        if v.size and (int(v.min()) < 0 or int(v.max()) >= num_classes):
            raise ConfigError(f"{name} has class values outside [0, {num_classes})")
    key = t.astype(np.int64) * num_classes + p.astype(np.int64)
    cm = np.bincount(key, minlength=num_classes * num_classes)
    return cm.reshape(num_classes, num_classes).astype(np.int64)


def overlap_scores(cm: np.ndarray) -> dict[str, Any]:
    """Per-class Dice, IoU, precision, recall, specificity (NaN where undefined) and the pixel error.

    Args:
        cm: ``(K, K)`` confusion matrix from :func:`confusion_matrix`.

    Returns:
        ``{"dice", "iou", "precision", "recall", "specificity": (K,) float64, "pixel_error": float}``.
        Precision is 0 when nothing is predicted but the class is present (recall 0 likewise when
        the class is predicted but absent); specificity is NaN when every pixel is of the class.
        ``pixel_error`` is NaN for an empty matrix (no pixel counted).
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    total = cm.sum()
    tn = total - tp - fp - fn
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.where(fn > 0, 0.0, np.nan))
        recall = np.where(tp + fn > 0, tp / (tp + fn), np.where(fp > 0, 0.0, np.nan))
        specificity = np.where(tn + fp > 0, tn / (tn + fp), np.nan)
    return {
        "dice": dice,
        "iou": iou,
        "precision": precision,
        "recall": recall,
        "specificity": specificity,
        "pixel_error": float(1 - tp.sum() / total) if total else float("nan"),
    }


def summarize_scores(
    per_case: list[np.ndarray], include_background: bool = False
) -> dict[str, float]:
    """Mean over cases and classes of per-class scores, NaNs (undefined) left out.

    Args:
        per_case: one ``(K,)`` array per case.
        include_background: count class 0 in the mean (off: foreground classes only, K ≥ 2).

    Returns:
        ``{"mean": float, "defined": int, "undefined": int}`` (mean NaN when nothing is defined).
    """
    arr = np.stack(per_case) if per_case else np.zeros((0, 0))
    if arr.size and not include_background and arr.shape[1] > 1:
        arr = arr[:, 1:]
    valid = arr[~np.isnan(arr)] if arr.size else arr
    return {
        "mean": float(valid.mean()) if valid.size else float("nan"),
        "defined": int(valid.size),
        "undefined": int(arr.size - valid.size),
    }

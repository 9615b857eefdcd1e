"""Overlap metrics from a confusion matrix, with an explicit policy for empty classes.

Popular tools count a class that is absent from both truth and prediction as a perfect Dice of 1.0
inside a mean, inflating multi-class scores. Here such a score is **undefined** (NaN) and left out of
every mean (:data:`EMPTY_POLICY`); a class absent from the truth but predicted scores 0.
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch

EMPTY_POLICY = ("a class absent from both truth and prediction has an undefined (NaN) Dice/IoU/precision/"
                "recall and is left out of means; absent from the truth but predicted scores 0")

ArrayLike = Union[np.ndarray, torch.Tensor]


def confusion_matrix(pred: ArrayLike, truth: ArrayLike, num_classes: int,
                     mask: Optional[ArrayLike] = None) -> np.ndarray:
    """``(K, K)`` int64 counts, rows = truth class, columns = predicted class.

    Args:
        pred, truth: integer class maps of the same shape (any dims).
        num_classes: K; values outside ``[0, K)`` raise.
        mask: optional boolean map; only pixels where it is true count (e.g. DRIVE's field of view).
    """
    p = torch.as_tensor(pred).reshape(-1).long()
    t = torch.as_tensor(truth).reshape(-1).long()
    if p.shape != t.shape:
        raise ValueError(f"prediction has {p.numel()} pixels, truth {t.numel()}")
    if mask is not None:
        m = torch.as_tensor(mask).reshape(-1).bool()
        p, t = p[m], t[m]
    for name, v in (("prediction", p), ("truth", t)):
        if v.numel() and (int(v.min()) < 0 or int(v.max()) >= num_classes):
            raise ValueError(f"{name} has class values outside [0, {num_classes})")
    cm = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return cm.reshape(num_classes, num_classes).cpu().numpy().astype(np.int64)


def overlap_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class Dice, IoU, precision, recall (NaN where undefined) and the pixel error.

    Returns:
        ``{"dice": (K,), "iou": (K,), "precision": (K,), "recall": (K,), "pixel_error": float}``.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.where(fn > 0, 0.0, np.nan))
        recall = np.where(tp + fn > 0, tp / (tp + fn), np.where(fp > 0, 0.0, np.nan))
    total = cm.sum()
    return {"dice": dice, "iou": iou, "precision": precision, "recall": recall,
            "pixel_error": float(1 - tp.sum() / total) if total else float("nan")}


def summarize_scores(per_case: list[np.ndarray], include_background: bool = False) -> dict[str, float]:
    """Mean over cases and classes of per-class scores, NaNs (undefined) left out.

    Args:
        per_case: one ``(K,)`` array per case.
        include_background: count class 0 in the mean (off: foreground classes only, K ≥ 2).
    """
    arr = np.stack(per_case) if per_case else np.zeros((0, 0))
    if arr.size and not include_background and arr.shape[1] > 1:
        arr = arr[:, 1:]
    valid = arr[~np.isnan(arr)] if arr.size else arr
    return {"mean": float(valid.mean()) if valid.size else float("nan"), "defined": int(valid.size),
            "undefined": int(arr.size - valid.size)}

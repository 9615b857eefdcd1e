"""Scores the accuracy benchmarks share, so that every recipe they compare is scored by one function."""

from __future__ import annotations

import numpy as np


def pixel_scores(pred: np.ndarray, truth: np.ndarray, roi: np.ndarray | None = None) -> dict:
    """Pixel error and Dice of one structure.

    Args:
        pred, truth: ``(H, W)`` bool, the structure (membrane, vessel, nucleus).
        roi: ``(H, W)`` bool, the pixels that count (DRIVE's field of view); ``None`` = all.

    Returns:
        ``{"pixel_error", "dice"}``; Dice is NaN when neither side has the structure.
    """
    if roi is not None:
        pred, truth = pred[roi], truth[roi]
    total = int(pred.sum()) + int(truth.sum())
    inter = int(np.logical_and(pred, truth).sum())
    return {
        "pixel_error": float(np.mean(pred != truth)),
        "dice": 2 * inter / total if total else float("nan"),
    }


def case_scores(
    pred: np.ndarray,
    truth: np.ndarray,
    roi: np.ndarray | None = None,
    instances: np.ndarray | None = None,
) -> dict:
    """:func:`pixel_scores`, plus the object F1 at IoU 0.5 when the truth has ``instances``.

    Predicted objects are the 4-connected components of ``pred``; they are matched one to one
    with the ``(H, W)`` instance ids (0 = background) by unetkit's object matching.
    """
    out = pixel_scores(pred, truth, roi)
    if instances is not None:
        from unetkit.evaluation.objects import label_objects, match_objects

        match = match_objects(instances, label_objects(pred), thresholds=(0.5,))
        out["obj_f1"] = float(match.scores()["f1"][0])
    return out


def mean_scores(per_case: list[dict]) -> dict:
    """The mean of each score over the cases."""
    return {k: float(np.mean([s[k] for s in per_case])) for k in per_case[0]}

"""Object-level metrics, as cell-segmentation tools report them (StarDist, Cellpose, DSB 2018).

Objects are instance labels (each id > 0 one object) or, for a semantic mask, its connected
components. Truth and predicted objects are matched **one to one**: a pair may match when its IoU
is at least the threshold ``τ``, and the assignment maximises the number of matches, then the summed
IoU (Hungarian algorithm, StarDist's ``matching``). For ``τ > 0.5`` a pair above ``τ`` is unique
anyway; the assignment only matters at ``τ ≤ 0.5``. With ``TP`` matches, ``FP`` unmatched
predictions and ``FN`` unmatched truth objects:

* precision ``TP / (TP + FP)``, recall ``TP / (TP + FN)``, F1 ``2TP / (2TP + FP + FN)``;
* **average precision** at ``τ``: ``AP_τ = TP / (TP + FP + FN)`` (the Data Science Bowl 2018 and
  Cellpose definition; StarDist calls it "accuracy"), and ``mAP`` = its mean over
  ``τ = 0.5, 0.55, …, 0.95``.

Merges and splits (:func:`merge_split_counts`, :func:`merged_predictions`) are counted by majority
instead: a truth object is *covered* by the predicted object holding more than half of its pixels.

Empty policy (:data:`EMPTY_POLICY`), as for pixel overlap: no object in truth nor prediction →
every score NaN (undefined, left out of means); objects only in the truth → precision 0,
recall/F1/AP 0; objects only in the prediction → recall 0, precision/F1/AP 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from ..errors import ConfigError
from .contingency import contingency

EMPTY_POLICY = (
    "objects: no object in truth nor prediction is undefined (NaN); objects on one side only score 0 "
    "(precision when nothing is predicted, recall when the truth has none)"
)

#: The IoU thresholds of ``mAP`` (0.5, 0.55, …, 0.95).
IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
OBJECT_METRICS = (
    "obj_precision",
    "obj_recall",
    "obj_f1",
    "ap50",
    "ap75",
    "map",
    "n_true",
    "n_pred",
)


@dataclass(frozen=True)
class ObjectMatch:
    """Matching counts per IoU threshold (arrays of shape ``(T,)``, ``T = len(thresholds)``)."""

    thresholds: tuple
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    n_true: int
    n_pred: int

    def scores(self) -> dict[str, np.ndarray]:
        """``{"precision", "recall", "f1", "ap": (T,) float64}`` with the module's empty policy."""
        tp, fp, fn = (x.astype(np.float64) for x in (self.tp, self.fp, self.fn))
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(tp + fp > 0, tp / (tp + fp), np.where(fn > 0, 0.0, np.nan))
            recall = np.where(tp + fn > 0, tp / (tp + fn), np.where(fp > 0, 0.0, np.nan))
            f1 = np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
            ap = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)
        return {"precision": precision, "recall": recall, "f1": f1, "ap": ap}


def label_objects(mask: np.ndarray, connectivity: int = 1) -> np.ndarray:
    """Connected components of a binary mask as ``(*spatial)`` int32 labels 1…n (0 = background).

    Args:
        mask: ``(*spatial)`` binary mask.
        connectivity: 1 = face neighbours (4 in 2D, 6 in 3D; a one-pixel diagonal membrane then
            separates cells), up to ``ndim`` = all neighbours (8 / 26).
    """
    mask = np.asarray(mask, dtype=bool)
    if not 1 <= connectivity <= mask.ndim:
        raise ConfigError(
            f"connectivity must lie in 1..{mask.ndim} for a {mask.ndim}D mask, got {connectivity}"
        )
    labels, _ = ndimage.label(mask, ndimage.generate_binary_structure(mask.ndim, connectivity))
    return labels.astype(np.int32, copy=False)


def iou_pairs(truth: np.ndarray, pred: np.ndarray):
    """IoU of every overlapping (truth object, predicted object) pair.

    Returns:
        ``(rows, cols, iou, n_true, n_pred)``: ``rows[m]``/``cols[m]`` index the truth/predicted
        objects (0 … n-1, in label order, background excluded) of the pair with IoU ``iou[m]``.
    """
    c = contingency(truth, pred)
    t_fg, p_fg = c.truth_ids != 0, c.pred_ids != 0
    t_index = np.cumsum(t_fg) - 1
    p_index = np.cumsum(p_fg) - 1
    keep = t_fg[c.rows] & p_fg[c.cols]
    rows, cols, inter = c.rows[keep], c.cols[keep], c.counts[keep].astype(np.float64)
    union = c.truth_sizes[rows] + c.pred_sizes[cols] - inter
    return t_index[rows], p_index[cols], inter / union, int(t_fg.sum()), int(p_fg.sum())


def _matches(rows: np.ndarray, cols: np.ndarray, iou: np.ndarray, thresh: float) -> int:
    ok = iou >= thresh
    rows, cols, iou = rows[ok], cols[ok], iou[ok]
    if rows.size == 0:
        return 0
    # pairs whose truth and predicted object each have a single candidate match as they are
    r_count = np.bincount(rows)
    c_count = np.bincount(cols)
    lone = (r_count[rows] == 1) & (c_count[cols] == 1)
    tp = int(lone.sum())
    rows, cols, iou = rows[~lone], cols[~lone], iou[~lone]
    if rows.size:
        from scipy.optimize import linear_sum_assignment

        ur, ri = np.unique(rows, return_inverse=True)
        uc, ci = np.unique(cols, return_inverse=True)
        cost = np.zeros((ur.size, uc.size))
        cost[ri, ci] = -1.0 - iou / (2 * max(ur.size, uc.size))  # count first, then summed IoU
        r, c = linear_sum_assignment(cost)
        tp += int((cost[r, c] < 0).sum())
    return tp


def match_objects(
    truth: np.ndarray, pred: np.ndarray, thresholds: Sequence[float] = IOU_THRESHOLDS
) -> ObjectMatch:
    """One-to-one matching of truth and predicted objects at each IoU threshold.

    Args:
        truth, pred: ``(*spatial)`` instance labels (0 = background) of one shape.
        thresholds: IoU thresholds in ``(0, 1]``.

    Returns:
        An :class:`ObjectMatch`.
    """
    thresholds = tuple(float(t) for t in thresholds)
    if not thresholds or not all(0 < t <= 1 for t in thresholds):
        raise ConfigError(f"IoU thresholds must lie in (0, 1], got {thresholds}")
    rows, cols, iou, n_true, n_pred = iou_pairs(truth, pred)
    tp = np.array([_matches(rows, cols, iou, t) for t in thresholds], dtype=np.int64)
    return ObjectMatch(thresholds, tp, n_pred - tp, n_true - tp, n_true, n_pred)


def object_scores(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """The object metrics of a case (keys of :data:`OBJECT_METRICS`).

    ``obj_precision``, ``obj_recall``, ``obj_f1`` at IoU 0.5; ``ap50``, ``ap75``; ``map`` the mean
    AP over :data:`IOU_THRESHOLDS` (NaN when undefined); ``n_true``/``n_pred`` the object counts.

    Args:
        truth, pred: ``(*spatial)`` instance labels (0 = background) of one shape.
    """
    m = match_objects(truth, pred, IOU_THRESHOLDS)
    s = m.scores()
    i50, i75 = IOU_THRESHOLDS.index(0.5), IOU_THRESHOLDS.index(0.75)
    return {
        "obj_precision": float(s["precision"][i50]),
        "obj_recall": float(s["recall"][i50]),
        "obj_f1": float(s["f1"][i50]),
        "ap50": float(s["ap"][i50]),
        "ap75": float(s["ap"][i75]),
        "map": float(s["ap"].mean()),
        "n_true": float(m.n_true),
        "n_pred": float(m.n_pred),
    }


def _majority(truth: np.ndarray, pred: np.ndarray):
    """Overlaps of (truth object, predicted object) pairs, background excluded: ``(c, rows, cols,
    frac, major)`` with ``frac`` the share of the truth object's pixels and ``major`` = ``frac > 0.5``."""
    c = contingency(truth, pred)
    keep = (c.truth_ids[c.rows] != 0) & (c.pred_ids[c.cols] != 0)
    rows, cols, counts = c.rows[keep], c.cols[keep], c.counts[keep]
    frac = counts / c.truth_sizes[rows]
    return c, rows, cols, frac, frac > 0.5


def merge_split_counts(truth: np.ndarray, pred: np.ndarray) -> dict[str, int]:
    """How many truth objects were merged with a neighbour, or split.

    A truth object is *covered* by the predicted object holding more than half of its pixels. It
    is **merged** when that predicted object also covers another truth object, and **split** when
    no predicted object covers it but two or more predicted objects each hold at least a quarter
    of it.

    Args:
        truth, pred: ``(*spatial)`` instance ids (0 = background) of one shape.

    Returns:
        ``{"merged": int, "split": int}`` (numbers of truth objects).

    Example:
        >>> truth = np.array([[1, 1, 0, 2, 2]]); pred = np.array([[5, 5, 5, 5, 5]])
        >>> merge_split_counts(truth, pred)
        {'merged': 2, 'split': 0}
    """
    c, rows, cols, frac, major = _majority(truth, pred)
    owners = cols[major]
    per_owner = np.bincount(owners, minlength=c.pred_ids.size)
    merged = int((per_owner[owners] >= 2).sum())
    covered = np.zeros(c.truth_ids.size, dtype=bool)
    covered[rows[major]] = True
    quarter = np.bincount(rows[frac >= 0.25], minlength=c.truth_ids.size)
    split = int(((quarter >= 2) & ~covered).sum())
    return {"merged": merged, "split": split}


def merged_predictions(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The ids of the predicted objects that cover two or more truth objects (the merges of
    :func:`merge_split_counts`), sorted.

    Args:
        truth, pred: ``(*spatial)`` instance ids (0 = background) of one shape.
    """
    c, _, cols, _, major = _majority(truth, pred)
    per_owner = np.bincount(cols[major], minlength=c.pred_ids.size)
    return c.pred_ids[np.flatnonzero(per_owner >= 2)]

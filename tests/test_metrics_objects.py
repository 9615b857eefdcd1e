"""Object matching and average precision, against hand cases and a brute-force IoU computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from unetkit.errors import ConfigError
from unetkit.evaluation.objects import (
    EMPTY_POLICY,
    IOU_THRESHOLDS,
    iou_pairs,
    label_objects,
    match_objects,
    merge_split_counts,
    merged_predictions,
    object_scores,
)


def _square(shape, y, x, h, w, value, out=None):
    out = np.zeros(shape, np.int32) if out is None else out
    out[y : y + h, x : x + w] = value
    return out


def test_hand_case_three_thresholds():
    truth = _square((20, 30), 1, 1, 4, 4, 1)
    _square((20, 30), 10, 10, 4, 5, 2, truth)  # 20 px
    pred = _square((20, 30), 1, 1, 4, 4, 7)  # exact: IoU 1
    _square((20, 30), 10, 10, 4, 3, 8, pred)  # 12 px inside object 2: IoU 0.6
    _square((20, 30), 16, 20, 2, 2, 9, pred)  # a false positive
    m = match_objects(truth, pred, (0.5, 0.6, 0.75))
    assert m.tp.tolist() == [2, 2, 1] and m.fp.tolist() == [1, 1, 2] and m.fn.tolist() == [0, 0, 1]
    s = m.scores()
    assert s["precision"].tolist() == pytest.approx([2 / 3, 2 / 3, 1 / 3])
    assert s["recall"].tolist() == pytest.approx([1.0, 1.0, 0.5])
    assert s["f1"].tolist() == pytest.approx([0.8, 0.8, 0.4])
    assert s["ap"].tolist() == pytest.approx([2 / 3, 2 / 3, 1 / 4])
    o = object_scores(truth, pred)
    assert o["ap50"] == pytest.approx(2 / 3) and o["ap75"] == pytest.approx(1 / 4)
    # AP per threshold: 0.5, 0.55, 0.6 → 2/3; 0.65 … 0.95 → 1/4
    assert o["map"] == pytest.approx((3 * 2 / 3 + 7 * 1 / 4) / 10)
    assert o["n_true"] == 2 and o["n_pred"] == 3


def test_one_to_one_at_a_tie():
    truth = np.array([[1, 1]])
    pred = np.array([[1, 2]])  # both halves have IoU exactly 0.5 with the one truth object
    m = match_objects(truth, pred, (0.5,))
    assert m.tp.tolist() == [1] and m.fp.tolist() == [1] and m.fn.tolist() == [0]


def test_assignment_beats_greedy_below_one_half():
    truth = np.zeros((1, 20), int)
    truth[0, :10], truth[0, 10:] = 1, 2
    pred = np.zeros((1, 20), int)
    pred[0, 2:12], pred[0, :2] = 1, 2
    # IoU: (t1, p1) = 8/12, (t2, p1) = 2/18, (t1, p2) = 2/10; greedy takes (t1, p1) and stops at 1
    assert match_objects(truth, pred, (0.1,)).tp.tolist() == [2]
    assert match_objects(truth, pred, (0.5,)).tp.tolist() == [1]


def _brute_tp(truth, pred, thresh):
    """Independent: pairs with IoU >= thresh (unique for thresh > 0.5), IoU from boolean masks."""
    tp = 0
    for t in np.unique(truth[truth > 0]):
        for p in np.unique(pred[pred > 0]):
            a, b = truth == t, pred == p
            if (a & b).sum() / (a | b).sum() >= thresh:
                tp += 1
    return tp


@pytest.mark.parametrize("seed", [0, 1])
def test_random_objects_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.random((40, 40)), 1.5)
    truth = label_objects(smooth > np.quantile(smooth, 0.6))
    noisy = ndimage.gaussian_filter(rng.random((40, 40)), 1.5) * 0.3 + smooth
    pred = label_objects(noisy > np.quantile(noisy, 0.6))
    thresholds = (0.55, 0.7, 0.9)
    m = match_objects(truth, pred, thresholds)
    assert m.tp.tolist() == [_brute_tp(truth, pred, t) for t in thresholds]
    assert m.n_true == truth.max() and m.n_pred == pred.max()


def test_iou_pairs_values():
    truth = np.array([[1, 1, 0, 2]])
    pred = np.array([[3, 0, 0, 3]])
    rows, cols, iou, n_true, n_pred = iou_pairs(truth, pred)
    assert (n_true, n_pred) == (2, 1)
    assert sorted(zip(rows.tolist(), cols.tolist(), iou.tolist())) == [
        (0, 0, pytest.approx(1 / 3)),
        (1, 0, pytest.approx(1 / 2)),
    ]


def test_empty_policy():
    empty = np.zeros((6, 6), int)
    obj = _square((6, 6), 1, 1, 2, 2, 1)
    none = object_scores(empty, empty)
    assert all(
        math.isnan(none[k]) for k in ("obj_precision", "obj_recall", "obj_f1", "ap50", "map")
    )
    hallucinated = object_scores(empty, obj)
    assert hallucinated["obj_precision"] == 0 and hallucinated["obj_recall"] == 0
    assert hallucinated["obj_f1"] == 0 and hallucinated["map"] == 0
    missed = object_scores(obj, empty)
    assert missed["obj_precision"] == 0 and missed["obj_recall"] == 0 and missed["ap50"] == 0
    assert "undefined (NaN)" in EMPTY_POLICY


def test_label_objects_connectivity():
    diag = np.array([[1, 0], [0, 1]], bool)
    assert label_objects(diag).max() == 2
    assert label_objects(diag, connectivity=2).max() == 1
    with pytest.raises(ConfigError, match="connectivity must lie in 1..2"):
        label_objects(diag, connectivity=3)


def test_thresholds_and_defaults():
    assert IOU_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    with pytest.raises(ConfigError, match=r"IoU thresholds must lie in \(0, 1\]"):
        match_objects(np.ones((2, 2), int), np.ones((2, 2), int), (0.0,))


def test_merge_split_counts_by_hand():
    truth = np.zeros((6, 12), int)
    truth[1:5, 1:3], truth[1:5, 4:6], truth[1:5, 8:11] = 1, 2, 3
    pred = np.zeros_like(truth)
    pred[1:5, 1:6] = 7  # cells 1 and 2 merged into one
    pred[1:3, 8:11], pred[3:5, 8:11] = 8, 9  # cell 3 split in halves
    assert merge_split_counts(truth, pred) == {"merged": 2, "split": 1}
    assert merge_split_counts(truth, truth) == {"merged": 0, "split": 0}
    assert merged_predictions(truth, pred).tolist() == [7]
    assert merged_predictions(truth, truth).tolist() == []

"""Overlap metrics: confusion matrix, Dice/IoU/precision/recall/specificity, pixel error, empty policy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unetkit.errors import ConfigError
from unetkit.evaluation.metrics import (
    EMPTY_POLICY,
    confusion_matrix,
    overlap_scores,
    summarize_scores,
)


def test_confusion_matrix_hand_case():
    truth = np.array([0, 0, 1, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 2, 2])
    cm = confusion_matrix(pred, truth, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 1], [0, 0, 1]]
    assert cm.dtype == np.int64


def test_confusion_matrix_mask_counts_only_inside():
    truth = np.array([[0, 1], [1, 0]])
    pred = np.array([[1, 1], [0, 0]])
    fov = np.array([[False, True], [True, True]])
    assert confusion_matrix(pred, truth, 2, mask=fov).tolist() == [[1, 0], [1, 1]]


def test_confusion_matrix_accepts_tensors():
    rng = np.random.default_rng(1)
    truth, pred = rng.integers(0, 3, (2, 16, 16))
    expected = confusion_matrix(pred, truth, 3)
    assert np.array_equal(
        confusion_matrix(torch.from_numpy(pred), torch.from_numpy(truth), 3), expected
    )


def test_confusion_matrix_errors():
    with pytest.raises(ConfigError, match="prediction has 3 pixels, truth 2"):
        confusion_matrix(np.zeros(3, int), np.zeros(2, int), 2)
    with pytest.raises(ConfigError, match=r"truth has class values outside \[0, 2\)"):
        confusion_matrix(np.zeros(2, int), np.array([0, 2]), 2)
    with pytest.raises(ConfigError, match="integer class indices, got dtype float64"):
        confusion_matrix(np.zeros(2), np.zeros(2, int), 2)
    with pytest.raises(
        ValueError
    ):  # ConfigError is a ValueError (the trainer's callers rely on it)
        confusion_matrix(np.zeros(2, int), np.array([0, -1]), 2)


def test_overlap_scores_hand_values():
    truth = np.array([0, 0, 1, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 2, 2])
    s = overlap_scores(confusion_matrix(pred, truth, 3))
    # class 1: TP 2, FP 1, FN 1, TN 2
    assert s["dice"][1] == pytest.approx(4 / 6)
    assert s["iou"][1] == pytest.approx(2 / 4)
    assert s["precision"][1] == pytest.approx(2 / 3)
    assert s["recall"][1] == pytest.approx(2 / 3)
    assert s["specificity"][1] == pytest.approx(2 / 3)
    # class 2: TP 1, FP 1, FN 0, TN 4
    assert s["dice"][2] == pytest.approx(2 / 3)
    assert s["specificity"][2] == pytest.approx(4 / 5)
    assert s["pixel_error"] == pytest.approx(2 / 6)


def test_overlap_scores_match_an_independent_computation():
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 4, (32, 32))
    pred = np.where(rng.random((32, 32)) < 0.3, rng.integers(0, 4, (32, 32)), truth)
    s = overlap_scores(confusion_matrix(pred, truth, 4))
    for c in range(4):
        t, p = truth == c, pred == c
        inter = np.logical_and(t, p).sum()
        assert s["dice"][c] == pytest.approx(2 * inter / (t.sum() + p.sum()))
        assert s["iou"][c] == pytest.approx(inter / np.logical_or(t, p).sum())
        assert s["precision"][c] == pytest.approx(inter / p.sum())
        assert s["recall"][c] == pytest.approx(inter / t.sum())
        assert s["specificity"][c] == pytest.approx((~t & ~p).sum() / (~t).sum())
    assert s["pixel_error"] == pytest.approx(np.mean(pred != truth))


def test_empty_policy():
    # class 2 absent from both, class 1 predicted but absent from the truth, class 3 missed
    truth = np.array([0, 0, 3, 3])
    pred = np.array([0, 1, 0, 0])
    s = overlap_scores(confusion_matrix(pred, truth, 4))
    for key in ("dice", "iou", "precision", "recall"):
        assert math.isnan(s[key][2]), key
    assert s["dice"][1] == 0 and s["iou"][1] == 0 and s["precision"][1] == 0 and s["recall"][1] == 0
    assert s["dice"][3] == 0 and s["precision"][3] == 0 and s["recall"][3] == 0
    assert "undefined (NaN)" in EMPTY_POLICY


def test_specificity_undefined_when_every_pixel_is_the_class():
    s = overlap_scores(confusion_matrix(np.ones(4, int), np.ones(4, int), 2))
    assert math.isnan(s["specificity"][1]) and s["dice"][1] == 1.0
    assert math.isnan(overlap_scores(np.zeros((2, 2), int))["pixel_error"])


def test_summarize_scores_leaves_out_undefined_and_background():
    per_case = [np.array([0.9, 1.0, np.nan]), np.array([0.8, 0.5, 0.25])]
    out = summarize_scores(per_case)
    assert out == {"mean": pytest.approx((1.0 + 0.5 + 0.25) / 3), "defined": 3, "undefined": 1}
    assert summarize_scores(per_case, include_background=True)["defined"] == 5
    assert math.isnan(summarize_scores([])["mean"])

"""Adapted Rand error and VOI, cross-checked with scikit-image and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import adapted_rand_error, variation_of_information

from unetkit.errors import ConfigError
from unetkit.evaluation.connectomics import EMPTY_POLICY, adapted_rand, connectomics_scores
from unetkit.evaluation.connectomics import variation_of_information as voi


def _cells(seed: int, shape=(48, 48)) -> np.ndarray:
    """Cell regions separated by background membranes (0), like ISBI 2012."""
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.random(shape), 1.5)
    labels, _ = ndimage.label(smooth > np.quantile(smooth, 0.35))
    return labels


def _singletons(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """``pred`` with each background pixel inside a true cell given its own new label."""
    out = pred.copy()
    where = (pred == 0) & (truth != 0)
    out[where] = pred.max() + 1 + np.arange(int(where.sum()))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_segment_convention_equals_skimage(seed):
    truth, pred = _cells(seed), _cells(seed + 10)
    are, sk_prec, sk_rec = adapted_rand_error(truth, pred, ignore_labels=(0,))
    ours = adapted_rand(truth, pred, pred_background="segment")
    assert ours["rand_error"] == pytest.approx(are, rel=1e-12)
    # scikit-image names them the other way round (its "precision" divides by the truth pairs)
    assert ours["rand_recall"] == pytest.approx(sk_prec, rel=1e-12)
    assert ours["rand_precision"] == pytest.approx(sk_rec, rel=1e-12)
    split, merge = variation_of_information(truth, pred, ignore_labels=(0,))
    v = voi(truth, pred, pred_background="segment")
    assert v["voi_split"] == pytest.approx(split, rel=1e-10, abs=1e-12)
    assert v["voi_merge"] == pytest.approx(merge, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("seed", [3, 4])
def test_singleton_convention_equals_skimage_on_relabelled_background(seed):
    truth, pred = _cells(seed), _cells(seed + 10)
    relabelled = _singletons(truth, pred)
    are, _, _ = adapted_rand_error(truth, relabelled, ignore_labels=(0,))
    split, merge = variation_of_information(truth, relabelled, ignore_labels=(0,))
    s = connectomics_scores(truth, pred)
    assert s["rand_error"] == pytest.approx(are, rel=1e-12)
    assert s["voi_split"] == pytest.approx(split, rel=1e-10)
    assert s["voi_merge"] == pytest.approx(merge, rel=1e-10, abs=1e-12)
    assert s["voi"] == pytest.approx(split + merge, rel=1e-10)


def test_hand_merge_of_two_cells():
    truth = np.array([1, 1, 2, 2])
    pred = np.array([5, 5, 5, 5])
    s = connectomics_scores(truth, pred)
    # pairs (ordered, distinct): together in both 2+2, in the truth 2+2, in the prediction 4·3
    assert s["rand_precision"] == pytest.approx(4 / 12)
    assert s["rand_recall"] == 1.0
    assert s["rand_error"] == pytest.approx(1 - 2 * 4 / (12 + 4))
    assert s["voi_split"] == 0.0 and s["voi_merge"] == pytest.approx(
        1.0
    )  # one bit: which of two cells


def test_hand_split_and_perfect():
    truth = np.array([[1, 1, 1, 1]])
    split = connectomics_scores(truth, np.array([[1, 1, 2, 2]]))
    assert split["voi_split"] == pytest.approx(1.0) and split["voi_merge"] == 0.0
    assert split["rand_precision"] == 1.0 and split["rand_recall"] == pytest.approx(4 / 12)
    perfect = connectomics_scores(truth, np.array([[7, 7, 7, 7]]))
    assert perfect["rand_error"] == 0.0 and perfect["voi"] == 0.0


def test_truth_background_is_not_scored():
    truth = np.array([0, 0, 1, 1])
    pred = np.array([3, 4, 1, 1])  # whatever is predicted on the membrane does not count
    assert connectomics_scores(truth, pred)["rand_error"] == 0.0


def test_empty_prediction_is_a_full_error_not_a_perfect_score():
    truth = np.array([1, 1, 1, 1])
    empty = np.zeros(4, int)
    s = connectomics_scores(truth, empty)
    assert s["rand_error"] == 1.0 and s["rand_precision"] == 0.0 and s["rand_recall"] == 0.0
    assert (
        s["voi_split"] == pytest.approx(2.0) and s["voi_merge"] == 0.0
    )  # 4 singletons: log2(4) bits
    # the scikit-image convention would call this perfect: the background is one segment
    assert adapted_rand(truth, empty, pred_background="segment")["rand_error"] == 0.0
    assert "Rand error of 1" in EMPTY_POLICY


def test_empty_truth_is_undefined():
    s = connectomics_scores(np.zeros((4, 4), int), np.ones((4, 4), int))
    assert all(math.isnan(v) for v in s.values())


def test_single_pixel_cells_have_no_pairs():
    s = adapted_rand(np.array([1, 2, 3]), np.array([0, 0, 0]))
    assert all(math.isnan(v) for v in s.values())


def test_3d_and_bad_convention():
    truth = np.stack([_cells(5, (16, 16)), _cells(6, (16, 16))])
    pred = np.stack([_cells(7, (16, 16)), _cells(8, (16, 16))])
    are, _, _ = adapted_rand_error(truth, pred, ignore_labels=(0,))
    assert adapted_rand(truth, pred, "segment")["rand_error"] == pytest.approx(are)
    with pytest.raises(ConfigError, match="pred_background must be one of singletons, segment"):
        adapted_rand(truth, pred, "ignore")

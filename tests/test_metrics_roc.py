"""ROC AUC: rank formula against brute-force pair counting and the trapezoid under roc_curve."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unetkit.errors import ConfigError
from unetkit.evaluation.roc import EMPTY_POLICY, roc_auc, roc_curve


def _brute_auc(scores, truth):
    pos, neg = scores[truth], scores[~truth]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size


def test_hand_case():
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert roc_auc(np.full(6, 0.3), np.array([0, 1, 0, 1, 1, 0])) == 0.5
    assert roc_auc(np.array([0.9, 0.1]), np.array([0, 1])) == 0.0


@pytest.mark.parametrize("levels", [None, 5])
def test_matches_pair_counting_and_trapezoid(levels):
    rng = np.random.default_rng(3)
    truth = rng.random((24, 24)) < 0.3
    scores = rng.random((24, 24)) + 0.4 * truth
    if levels:  # many ties
        scores = np.round(scores * levels) / levels
    auc = roc_auc(scores, truth)
    assert auc == pytest.approx(_brute_auc(scores.ravel(), truth.ravel()), rel=1e-12)
    fpr, tpr, thr = roc_curve(scores, truth)
    assert auc == pytest.approx(
        np.trapezoid(tpr, fpr) if hasattr(np, "trapezoid") else np.trapz(tpr, fpr)
    )
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0) and thr[0] == np.inf
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


def test_rank_invariance_and_mask():
    rng = np.random.default_rng(4)
    truth = rng.random((16, 16)) < 0.4
    prob = np.clip(rng.random((16, 16)) * 0.7 + 0.3 * truth, 0, 1)
    as_uint16 = np.round(prob * 65535).astype(np.uint16)
    assert roc_auc(as_uint16, truth) == pytest.approx(roc_auc(prob, truth))
    fov = np.zeros((16, 16), bool)
    fov[4:12, 4:12] = True
    assert roc_auc(prob, truth, fov) == pytest.approx(_brute_auc(prob[fov], truth[fov]))


def test_empty_policy_and_errors():
    assert math.isnan(roc_auc(np.array([0.2, 0.3]), np.array([0, 0])))
    assert math.isnan(roc_auc(np.array([0.2, 0.3]), np.array([1, 1])))
    assert "NaN" in EMPTY_POLICY
    with pytest.raises(ConfigError, match="needs positive and negative pixels"):
        roc_curve(np.array([0.2, 0.3]), np.array([1, 1]))
    with pytest.raises(ConfigError, match=r"scores shape \(2,\) differs from truth shape \(3,\)"):
        roc_auc(np.zeros(2), np.zeros(3))
    with pytest.raises(ConfigError, match="scores hold 1 NaN"):
        roc_auc(np.array([0.1, np.nan]), np.array([0, 1]))

"""``evaluation.instances``: instance scores (the demo's metrics) and the tuning of the separation."""

from __future__ import annotations

import numpy as np
import pytest

from unetkit.errors import DataError
from unetkit.evaluation.instances import (
    EXPANSIONS,
    INSTANCE_METRICS,
    SEED_THRESHOLDS,
    instance_scores,
    tune_separation,
)
from unetkit.inference.postprocess import instances_from_probabilities


def test_instance_scores_perfect_and_merged():
    truth = np.zeros((12, 20), int)
    truth[2:10, 2:8], truth[2:10, 9:15] = 1, 2
    m = instance_scores(truth, truth)
    assert set(m) == {*INSTANCE_METRICS, "merged", "split"}
    assert m["obj_f1"] == 1.0 and m["dice"] == 1.0 and m["pixel_error"] == 0.0 and m["merged"] == 0
    merged = np.where(truth > 0, 1, 0)
    merged[2:10, 8] = 1  # the gap filled: one object
    m = instance_scores(merged, truth)
    assert m["n_pred"] == 1 and m["merged"] == 2 and m["obj_f1"] == 0.0  # IoU 48/104 < 0.5
    assert m["dice"] == pytest.approx(2 * 96 / (96 + 104))
    assert set(instance_scores(merged, truth, merges=False)) == set(INSTANCE_METRICS)


def test_tune_separation_picks_the_best_mean_ap():
    truth = np.zeros((20, 30), np.int64)
    truth[4:16, 3:15], truth[4:16, 16:27] = 1, 2  # two cells, a 1-px line between them
    p_cell = (truth > 0) * 0.95
    p_cell[4:16, 15] = 0.55  # the net's gap: cell by threshold, background-ish for the seeds
    probs = np.stack([1 - p_cell, p_cell])
    tuned = tune_separation([(probs, truth)] * 2)
    assert set(tuned["grid"]) == {f"{t:g}/{e}" for t in SEED_THRESHOLDS for e in EXPANSIONS}
    best = instance_scores(
        instances_from_probabilities(probs, tuned["seed_threshold"], tuned["expand"]),
        truth,
        merges=False,
    )["map"]
    assert tuned["val_map"] == pytest.approx(best) == max(tuned["grid"].values())
    assert tuned["val_map"] > 0.9
    small = tune_separation([(probs, truth)], seed_thresholds=(0.3,), expansions=(0,))
    assert list(small["grid"]) == ["0.3/0"] and small["seed_threshold"] == 0.3
    with pytest.raises(DataError, match="no validation cases"):
        tune_separation([])

"""``io.naming``: the names ``unetkit predict`` writes are the names ``unetkit evaluate`` reads back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from unetkit.evaluation import evaluate_folders
from unetkit.inference.outputs import write_labels, write_overlay, write_probabilities
from unetkit.io import is_image_file, write_image
from unetkit.io.naming import (
    LABEL_SUFFIX,
    NPZ_KEY,
    SIDE_SUFFIXES,
    is_side_file,
    label_suffix,
    prediction_paths,
    probability_stem,
)


def test_prediction_paths_names():
    paths = prediction_paths(Path("out"), "22", ".JPG", "npz", True)
    assert {k: p.name for k, p in paths.items()} == {
        "labels": "22.png",
        "probabilities": "22_prob.npz",
        "overlay": "22_overlay.png",
    }
    assert prediction_paths(Path("o"), "v", ".nii.gz", "tiff")["probabilities"].name == "v_prob.tif"
    assert set(prediction_paths(Path("o"), "v", ".npy")) == {"labels"}
    shapes = prediction_paths(Path("o"), "v", ".png", instances=True, rois=True, geojson=True)
    assert [p.name for p in shapes.values()] == [
        "v.png",
        "v_instances.tif",
        "v_rois.zip",
        "v.geojson",
    ]
    assert label_suffix(".npy") == ".tif" and label_suffix(".xyz") == ".tif"
    assert all(label_suffix(s) == v for s, v in LABEL_SUFFIX.items())


@pytest.mark.parametrize("stem", ["22", "case_01", "a_b_c"])
def test_every_side_file_predict_writes_is_one_evaluate_ignores(stem):
    paths = prediction_paths(
        Path("out"), stem, ".png", "npz", True, instances=True, rois=True, geojson=True
    )
    side = [p.name[: -len(p.suffix)] for k, p in paths.items() if k not in ("labels", "geojson")]
    assert side == [stem + s for s in SIDE_SUFFIXES]
    assert not is_image_file(paths["geojson"])  # shares the case's stem; evaluate never lists it
    assert all(is_side_file(s, {stem}) for s in side)
    assert not is_side_file(stem, {stem})
    assert probability_stem(stem) == side[0]
    # another case's side file is not this one's, and a case whose name extends another stays a case
    assert not is_side_file(stem + "_prob", {"other"})
    assert not is_side_file(stem + "_2", {stem, stem + "_2"})


@pytest.mark.parametrize("fmt", ["npz", "tiff"])
def test_round_trip_predict_names_to_evaluate(tmp_path, fmt):
    """Files written by predict's writers under predict's names: evaluate takes the labels as the
    predictions, leaves the side files out and finds the probabilities in the same folder."""
    pred_dir, truth_dir = tmp_path / "pred", tmp_path / "truth"
    rng = np.random.default_rng(0)
    for case in ("a", "a_1"):  # "a_1" is a case of its own, not a side file of "a"
        truth = np.zeros((16, 16), np.uint8)
        truth[3:11, 4:12] = 255
        write_image(truth_dir / f"{case}.png", truth[None])
        p_fg = np.clip((truth > 0) * 0.6 + rng.random(truth.shape) * 0.3, 0, 1)
        probs = np.stack([1 - p_fg, p_fg]).astype(np.float32)
        indices = probs.argmax(axis=0)
        paths = prediction_paths(pred_dir, case, ".png", fmt, True)
        pred_dir.mkdir(exist_ok=True)
        write_labels(paths["labels"], (indices * 255).astype(np.uint8)[None])
        write_probabilities(paths["probabilities"], probs)
        write_overlay(paths["overlay"], rng.random((1, 16, 16)), indices)
    if fmt == "npz":
        with np.load(pred_dir / "a_prob.npz") as data:
            assert data.files == [NPZ_KEY]
    res = evaluate_folders(pred_dir, truth_dir, prob_dir=pred_dir, metrics=["dice", "auc"])
    assert res.cases == ["a", "a_1"]
    assert all(r["dice"] == 1.0 and r["auc"] == 1.0 for r in res.rows)

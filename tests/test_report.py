"""``evaluation.report``'s instance pictures and table (used by ``unetkit demo``)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from unetkit.evaluation.report import (
    instance_metrics_table,
    write_instance_overlays,
    write_weight_map_figure,
)


def test_instance_metrics_table_rows():
    m = {"obj_f1": 0.9, "ap50": 0.8, "dice": 0.95, "merged": 3}
    text = instance_metrics_table(
        m, {"obj_f1": 0.5, "ap50": 0.4, "dice": 0.94, "merged": 90}, ("a", "b")
    )
    assert text.splitlines()[0] == "| metric | a | b |"
    assert "| object F1 at IoU 0.5 | 0.900 | 0.500 |" in text
    assert "| truth cells merged with a neighbour | 3 | 90 |" in text
    assert instance_metrics_table({"dice": 0.5}).splitlines() == [
        "| metric | watershed |",
        "|---|---:|",
        "| pixel Dice (cells) | 0.5000 |",
    ]


def _cells():
    truth = np.zeros((40, 60), np.int64)
    truth[5:20, 5:25], truth[5:20, 26:45], truth[25:35, 10:50] = 1, 2, 3
    pred = np.where(truth > 0, 7, 0)  # 1, 2 and 3 … 3 kept apart below
    pred[25:35, 10:50] = 9
    pred[5:20, 25] = 7  # 1 and 2 merged
    image = np.random.default_rng(0).random((40, 60))
    return image, truth, pred


def test_write_instance_overlays(tmp_path):
    image, truth, pred = _cells()
    paths = write_instance_overlays(tmp_path, image, truth, pred, crop=32)
    assert set(paths) == {"overlay", "overlay_zoom"}
    full = np.asarray(Image.open(paths["overlay"]))
    assert full.shape == (40, 60, 3)
    assert (full[25, 30] == (255, 255, 255)).all()  # the top outline of cell 3: both agree
    assert (full[10, 24] == (60, 220, 60)).all()  # truth outline of cell 1 inside the merged blob
    zoom = np.asarray(Image.open(paths["overlay_zoom"]))
    assert zoom.shape == (2 * 32, 2 * (3 * 32 + 8), 3)
    red = (zoom == (255, 0, 0)).all(axis=-1)
    assert (
        red[:, 2 * (2 * 32 + 8) :].any() and not red[:, : 2 * 32].any()
    )  # merged cell, right panel
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_write_weight_map_figure_stats(tmp_path):
    image, truth, _ = _cells()
    stats = write_weight_map_figure(tmp_path / "wm.png", image, truth, 10.0, 5.0, crop=40)
    assert (tmp_path / "wm.png").is_file()
    assert set(stats) == {"max", "mean_gap", "mean_cell", "mean_background"}
    assert stats["mean_gap"] > 5 * stats["mean_cell"] and stats["max"] >= stats["mean_gap"]
    assert stats["mean_cell"] == pytest.approx(1.0, abs=0.5)

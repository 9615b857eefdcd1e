"""The end-to-end demo: the synthetic cell generator, the demo's helpers and a ``--quick`` run."""

from __future__ import annotations

import importlib.util
import json
from types import SimpleNamespace

import numpy as np
import pytest

from unetkit.cli import main
from unetkit.demo.pipeline import (
    BudgetSchedule,
    DemoOptions,
    choose_checkpoint,
    overlap_tile_size,
    prepare_out_dir,
    validation_cases,
)
from unetkit.demo.synthetic import (
    CellStyle,
    separate_instances,
    smooth_noise,
    synthetic_cells,
    touching_fraction,
    touching_pairs,
    write_dataset,
)
from unetkit.errors import ConfigError, DataError


# ------------------------------------------------------------------------------------ generator
def test_same_seed_same_arrays_other_seed_differs():
    a_img, a_lab = synthetic_cells((96, 128), seed=3)
    b_img, b_lab = synthetic_cells((96, 128), seed=3)
    c_img, c_lab = synthetic_cells((96, 128), seed=4)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert not np.array_equal(a_img, c_img) and not np.array_equal(a_lab, c_lab)
    assert (
        a_img.dtype == np.uint8
        and a_lab.dtype == np.uint16
        and a_img.shape == a_lab.shape == (96, 128)
    )


def test_instances_are_consecutive_separated_and_mostly_touching():
    image, lab = synthetic_cells((192, 192), seed=0)
    ids = np.unique(lab)
    assert ids[0] == 0 and np.array_equal(ids[1:], np.arange(1, ids.size))  # 1 … n, no id skipped
    assert np.bincount(lab.ravel())[1:].min() >= 30  # no sliver
    assert len(ids) - 1 > 40
    assert 0.3 < (lab > 0).mean() < 0.8  # cells and background both present
    assert (
        len(touching_pairs(lab, max_gap=1)) == 0
    )  # no two cells 8-connected: a 1-px line between them
    assert touching_fraction(lab) > 0.8  # across that line most cells touch a neighbour
    # each instance is one 8-connected piece after the cut (the cut never strands a fragment far away)
    from scipy import ndimage

    pieces = [ndimage.label(lab == i, np.ones((3, 3)))[1] for i in ids[1:]]
    assert np.mean(np.array(pieces) == 1) > 0.97
    # cells are brighter than the background on average, and the image uses the 8-bit range
    assert image[lab > 0].mean() > 1.5 * image[lab == 0].mean()
    assert image.max() > 150


def test_separate_instances_cuts_the_higher_id():
    lab = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [0, 0, 3, 3]])
    out = separate_instances(lab)
    # 2 loses its pixels next to 1; 3 loses its pixels next to 1 or 2 (all of them here but none stays 8-adjacent)
    assert out.tolist() == [[1, 1, 0, 2], [1, 1, 0, 2], [0, 0, 0, 0]]
    with pytest.raises(ConfigError, match="2D integer array"):
        separate_instances(lab.astype(float))


def test_smooth_noise_is_standardised_and_seeded():
    a = smooth_noise((50, 70), np.random.default_rng(1), 12.0)
    b = smooth_noise((50, 70), np.random.default_rng(1), 12.0)
    assert a.shape == (50, 70) and np.array_equal(a, b)
    assert abs(a.mean()) < 1e-9 and a.std() == pytest.approx(1.0)
    # features of ~12 px: neighbouring pixels are strongly correlated
    assert np.corrcoef(a[:, :-1].ravel(), a[:, 1:].ravel())[0, 1] > 0.9


def test_style_validation_messages(tmp_path):
    with pytest.raises(ConfigError, match="spacing must be >= 6"):
        CellStyle(spacing=3)
    with pytest.raises(ConfigError, match=r"reach must be a range \(lo, hi\)"):
        CellStyle(reach=(1.3, 1.0))
    with pytest.raises(ConfigError, match=r"empty_fraction and dropout must lie in \[0, 1\)"):
        CellStyle(dropout=1.0)
    with pytest.raises(ConfigError, match="photons must be > 0"):
        CellStyle(photons=0)
    with pytest.raises(ConfigError, match="shape must be"):
        synthetic_cells((8, 100))
    with pytest.raises(ConfigError, match="need n_train >= 1"):
        write_dataset(tmp_path, n_train=0)


def test_write_dataset_layout_and_stats(tmp_path):
    from unetkit.io import read_image

    ds = write_dataset(
        tmp_path / "d", n_train=2, n_val=1, size=(64, 80), large_shape=(96, 160), seed=5
    )
    assert sorted(p.name for p in (ds.train_dir / "images").iterdir()) == [
        "train_000.png",
        "train_001.png",
    ]
    assert sorted(p.name for p in (ds.val_dir / "masks").iterdir()) == ["val_000.png"]
    img, _ = read_image(ds.train_dir / "images" / "train_001.png")
    msk, _ = read_image(ds.train_dir / "masks" / "train_001.png")
    ref_img, ref_msk = synthetic_cells((64, 80), seed=np.random.SeedSequence([5, 0, 1]))
    assert (
        np.array_equal(img[0], ref_img)
        and np.array_equal(msk[0], ref_msk)
        and msk.dtype == np.uint16
    )
    large, _ = read_image(ds.large_mask)
    assert large.shape == (1, 96, 160)
    stats = json.loads((tmp_path / "d" / "stats.json").read_text())
    assert stats["large"]["cells"] == len(np.unique(large)) - 1
    assert 0.5 < stats["touching_fraction"] <= 1.0


# -------------------------------------------------------------------------------------- helpers
# (instance separation, instance metrics and the report pictures the demo uses are tested with their
# library homes: test_postprocess.py, test_metrics_instances.py, test_metrics_objects.py,
# test_report.py)
def test_overlap_tile_size_gives_the_paper_tile():
    from unetkit import create_model

    assert overlap_tile_size(create_model("unet-original"), 388) == 572  # the paper's 572 → 388
    net = create_model("unet-original", base_features=4, depth=3)
    size = overlap_tile_size(net, 388)
    assert net.is_valid_input_size(size) and net.output_size(size) >= 388
    assert (
        net.output_size(size - 8) < 388
    )  # the next smaller valid tile is too small (alignment 2³)


def test_budget_schedule_runs_poly_on_the_clock(monkeypatch):
    import time

    clock = {"t": 100.0}
    monkeypatch.setattr(time, "monotonic", lambda: clock["t"])
    group = {"lr": 0.002}
    trainer = SimpleNamespace(
        t_start=90.0,
        config=SimpleNamespace(train=SimpleNamespace(epochs=1000)),
        optimizer=SimpleNamespace(param_groups=[group]),
    )
    cb = BudgetSchedule(budget_s=100.0, lr=0.002, reserve_s=2.0)
    cb.on_train_start(trainer)  # 10 s of set-up: 88 s available
    clock["t"] = 122.0  # epoch 1 took 22 s: a quarter of the time is gone, 3 more epochs fit
    cb.on_epoch_end(trainer, [{}])
    assert group["lr"] == pytest.approx(0.002 * 0.75**0.9)
    assert trainer.config.train.epochs == 4
    # epoch 2 took 44 s (a busier machine): 22 s left of a 33-s epoch, over half: one more, which
    # the trainer's own budget cuts short
    clock["t"] = 166.0
    cb.on_epoch_end(trainer, [{}, {}])
    assert group["lr"] == pytest.approx(0.002 * 0.25**0.9)
    assert trainer.config.train.epochs == 3
    clock["t"] = 200.0  # past the budget: the rate is 0, never negative
    cb.on_epoch_end(trainer, [{}] * 3)
    assert group["lr"] == 0.0 and trainer.config.train.epochs == 3


def test_prepare_out_dir_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="not made by unetkit demo"):
        prepare_out_dir(tmp_path)
    out = prepare_out_dir(tmp_path / "demo")
    (out / "run").mkdir()
    (out / "run" / "old.txt").write_text("x")
    prepare_out_dir(out)  # the demo's own folder: its run/ is cleared
    assert not (out / "run").exists() and (tmp_path / "mine.txt").read_text() == "keep me"


def test_prepare_out_dir_refuses_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(DataError, match="exists and is not a folder"):
        prepare_out_dir(tmp_path / "f")


def test_missing_validation_images_and_checkpoints(tmp_path):
    with pytest.raises(DataError, match="no validation images to tune the instance separation on"):
        validation_cases(None, tmp_path)
    with pytest.raises(DataError, match="no checkpoints/last.pt or best.pt"):
        choose_checkpoint(tmp_path, tmp_path)


def test_cli_reports_a_foreign_out_folder(tmp_path, capsys):
    (tmp_path / "x.txt").write_text("x")
    assert main(["demo", "--quick", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "not made by unetkit demo" in capsys.readouterr().err


def test_options_validation():
    with pytest.raises(ConfigError, match="train_minutes must be > 0"):
        DemoOptions(train_minutes=0).preset()
    assert DemoOptions(quick=True).preset()["large_shape"] == (512, 768)


# ----------------------------------------------------------------------------- the quick demo
def test_quick_demo_writes_a_sane_report(tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--minutes", "0.3", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    report = out / "report"
    assert f"report   {report / 'README.md'}" in printed and "objects  F1@0.5" in printed
    for name in (
        "README.md",
        "metrics.md",
        "metrics.json",
        "curves.png",
        "overlay.png",
        "overlay_zoom.png",
        "weight_map.png",
        "probability.png",
    ):
        assert (report / name).is_file(), name
    payload = json.loads((report / "metrics.json").read_text())
    m = payload["metrics"]
    for key in (
        "dice",
        "iou",
        "pixel_error",
        "rand_error",
        "obj_f1",
        "obj_precision",
        "obj_recall",
        "ap50",
        "map",
    ):
        assert 0.0 <= m[key] <= 1.0, (key, m[key])
    assert m["n_true"] == payload["data"]["large"]["cells"] > 300
    assert payload["data"]["touching_fraction"] > 0.5
    info = payload["info"]
    assert (
        info["tile_out"] == [388, 388] and info["tiles"] == 4
    )  # 512×768 in 388-px output tiles: 2 × 2
    assert info["weight_map"] is True and info["epochs"] >= 1
    # the demo model as a bioimage.io package that bioimageio.core's own test passed
    if importlib.util.find_spec("bioimageio.core") is not None:
        assert info["bioimageio"]["status"] == "passed" and info["bioimageio"]["checks"] > 0
        assert (out / "model.bioimageio.zip").is_file()
        assert "test_model: passed" in (report / "README.md").read_text()
    else:
        assert info["bioimageio"]["status"] == "not written"
    assert info["checkpoint"] in ("best.pt", "last.pt") and set(info["candidates"]) == {
        "best.pt",
        "last.pt",
    }
    assert info["separation"]["seed_threshold"] in (0.1, 0.2, 0.3, 0.5) and info["separation"][
        "expand"
    ] in (0, 1, 2)
    wm = info["weight_map_stats"]
    assert (
        wm["mean_gap"] > 5 * wm["mean_cell"]
    )  # the border term dominates on the gaps between cells
    with Image.open(report / "overlay.png") as im:
        assert im.size == (768, 512) and im.mode == "RGB"
    with Image.open(report / "overlay_zoom.png") as im:
        assert im.size == (2 * (3 * 256 + 8), 2 * 256)
    text = (report / "README.md").read_text()
    assert f"{m['obj_f1']:.3f}" in text and "overlap-tile" in text
    assert (out / "run" / "checkpoints" / "best.pt").is_file()

"""Post-processing chosen by validation: the value object (inference/postprocess.py), the greedy
choice (evaluation/postprocess_choice.py), the trainer writing it into the run and ``predict``
applying it. Synthetic masks where each step demonstrably helps or hurts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from unetkit.errors import ConfigError, DataError
from unetkit.evaluation.postprocess_choice import (
    GUARD_NOTE,
    choose_postprocessing,
    dice_classes,
    mean_dice,
    object_f1,
)
from unetkit.inference.postprocess import (
    PostProcessing,
    PostStep,
    clean_labels,
    connected_components,
    separate_touching,
)

SHAPE = (64, 64)


def disc(cy: float, cx: float, r: float, shape=SHAPE) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def labels_of(*masks_and_classes, shape=SHAPE) -> np.ndarray:
    out = np.zeros(shape, np.int64)
    for mask, c in masks_and_classes:
        out[mask] = c
    return out


def kept(choice) -> list[dict]:
    return [s.to_dict() for s in choice.postprocessing.steps]


def guards(choice) -> list[dict]:
    """The removals kept as a guard against specks (GUARD_RULE), in order."""
    return [r["step"] for r in choice.candidates if r["kept"] and r["note"] == GUARD_NOTE]


def kept_beyond_guards(choice) -> list[dict]:
    return [s for s in kept(choice) if s not in guards(choice)]


# -- the value object ----------------------------------------------------------------------------
def test_round_trip_apply_and_describe():
    pp = PostProcessing(
        (
            PostStep("remove_small", 2, min_size=6),
            PostStep("fill_holes", 1),
            PostStep("keep_largest", 1),
            PostStep("split_touching", 1, h=2),
        ),
        connectivity=1,
    )
    data = json.loads(json.dumps(pp.to_dict()))  # what best.pt / postprocess.json hold
    assert PostProcessing.from_dict(data) == pp
    assert data["steps"][0] == {"name": "remove_small", "label": 2, "min_size": 6}
    assert data["steps"][3] == {"name": "split_touching", "label": 1, "h": 2.0}
    assert pp.describe() == (
        "remove class 2 objects under 6 px; fill the holes of class 1; keep the largest class 1 "
        "object; split touching class 1 objects (watershed, h=2)"
    )
    empty = PostProcessing.from_dict(None)
    assert not empty and empty == PostProcessing() and empty.describe() == "none"
    indices = labels_of((disc(20, 20, 8), 1), (disc(50, 50, 1), 2))
    assert np.array_equal(empty.apply(indices), indices)

    # each step is the existing clean-up of its one class, in order
    raw = labels_of(
        (disc(20, 20, 8) & ~disc(20, 20, 2), 1), (disc(50, 50, 5), 1), (disc(5, 50, 1), 2)
    )
    expected = clean_labels(raw, min_size=6, classes=[2])
    expected = clean_labels(expected, fill_holes=True, classes=[1])
    expected = clean_labels(expected, keep_largest=True, classes=[1])
    expected = separate_touching(expected, 1, h=2.0)
    assert np.array_equal(pp.apply(raw), expected)
    assert (expected == 2).sum() == 0 and (expected[20, 20] == 1) and (expected[50, 50] == 0)
    # probabilities are turned into indices first
    probs = np.stack([(raw == k).astype(np.float32) for k in range(3)])
    assert np.array_equal(pp.apply(probs), expected)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"steps": [{"name": "dilate", "label": 1}]}, "must be one of remove_small, fill_holes"),
        ({"steps": [{"name": "fill_holes", "label": 0}]}, "the class must be an integer ≥ 1"),
        ({"steps": [{"name": "remove_small", "label": 1, "min_size": 1}]}, "min_size must be"),
        ({"steps": [{"name": "remove_small", "label": 1}]}, "min_size must be an integer ≥ 2"),
        ({"steps": [{"name": "fill_holes", "label": 1, "h": 2}]}, "fill_holes takes no h"),
        ({"steps": [{"name": "split_touching", "label": 1, "h": -1}]}, "h must be a number > 0"),
        ({"steps": [{"name": "fill_holes", "label": 1, "size": 2}]}, "unknown key(s) size"),
        ({"steps": "fill"}, "must be a mapping with a list of steps"),
        ({"steps": [], "order": 1}, "unknown key(s) order"),
        ({"steps": [], "connectivity": 0}, "connectivity must be an integer ≥ 1"),
    ],
)
def test_bad_post_processing_is_named(data, message):
    with pytest.raises(ConfigError) as info:
        PostProcessing.from_dict(data)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_separate_touching_draws_a_one_pixel_gap():
    two = disc(32, 22, 10) | disc(32, 40, 10)  # overlapping discs: one component
    assert connected_components(two).max() == 1
    out = separate_touching(two.astype(np.uint8), 1)
    assert out.dtype == np.uint8 and connected_components(out == 1).max() == 2
    gap = two & (out == 0)
    assert 0 < gap.sum() <= 2 * 12  # about the neck's height, one pixel wide
    assert len(np.unique(np.nonzero(gap)[1])) <= 2
    one = disc(32, 32, 10).astype(np.int64)
    assert np.array_equal(separate_touching(one, 1), one)  # nothing to split: unchanged


# -- the choice ----------------------------------------------------------------------------------
def test_dice_classes_and_mean_dice_follow_the_trainer():
    assert dice_classes("val_dice", 3) == ("val_dice", [1, 2])
    assert dice_classes("val_dice_c0", 2) == ("val_dice_c0", [0])
    assert dice_classes("val_pixel_error", 2) == ("val_dice", [1])
    truth = [labels_of((disc(20, 20, 6), 1)), np.zeros(SHAPE, np.int64)]
    pred = [labels_of((disc(20, 20, 6), 1)), labels_of((disc(40, 40, 3), 1))]
    # class 1: case 0 Dice 1, case 1 Dice 0 (predicted but absent) → 0.5
    assert mean_dice(pred, truth, 2, [1]) == pytest.approx(0.5)
    # class 2 is absent everywhere: undefined, left out of the mean over classes
    assert mean_dice(pred, truth, 3, [1, 2]) == pytest.approx(0.5)


def _speck_cases(rng, n=3):
    """Class 1 and class 2 discs, plus class-2 false-positive specks of 2×2 pixels."""
    truths, preds = [], []
    for _ in range(n):
        truth = labels_of((disc(18, 18, 7), 1), (disc(44, 44, 9), 2))
        pred = truth.copy()
        for _ in range(5):
            y, x = rng.integers(2, 8), rng.integers(30, 60)
            pred[y : y + 2, x : x + 2] = 2
        truths.append(truth)
        preds.append(pred)
    return truths, preds


def test_small_specks_are_removed_for_the_class_that_has_them():
    truths, preds = _speck_cases(np.random.default_rng(0))
    choice = choose_postprocessing(preds, truths, 3)
    smallest = int(disc(44, 44, 9).sum())  # the truth's class-2 objects: all this size
    disc1 = int(disc(18, 18, 7).sum())
    # class 1 has no specks: the guard (a quarter of its objects) changes nothing, costs nothing
    guard1 = {"name": "remove_small", "label": 1, "min_size": int(round(0.25 * disc1))}
    assert kept(choice) == [
        guard1,
        {"name": "remove_small", "label": 2, "min_size": int(round(0.5 * smallest))},
    ]
    assert guards(choice) == [guard1]
    assert choice.final == pytest.approx(1.0) and choice.baseline < 1.0 - 0.01
    assert choice.baseline == pytest.approx(mean_dice(preds, truths, 3, [1, 2]))
    # class 1 has nothing to remove: its candidates changed nothing and only the guard was kept
    class1 = [r for r in choice.candidates if r["step"]["label"] == 1]
    assert class1 and [r["step"] for r in class1 if r["kept"]] == [guard1]
    assert all(r["note"] in ("no change", GUARD_NOTE) for r in class1[:3])
    lines = choice.describe()
    assert len(lines) == 2 and lines[1].startswith("post-processing: kept 'remove class 2 objects")
    assert lines[0].endswith(": it costs nothing here and removes specks")
    # judged on class 1's Dice alone (train.select_metric val_dice_c1), the specks do not
    # matter: no size raises it, and only the guards (which cost it nothing) are kept
    only1 = choose_postprocessing(preds, truths, 3, select_metric="val_dice_c1")
    assert kept(only1) == guards(only1) and only1.metric == "val_dice_c1"
    assert [g["label"] for g in guards(only1)] == [1, 2]


def test_real_small_objects_are_not_removed():
    """The truth has small objects (3×3) the prediction finds, a little smaller (2×3): removing
    objects under the truth's smallest size would delete them, so it is not kept."""
    truths, preds = [], []
    for k in range(3):
        truth = labels_of((disc(40, 40, 12), 1))
        pred = truth.copy()
        for j in range(4):
            y, x = 4 + 6 * j, 4 + 4 * k
            truth[y : y + 3, x : x + 3] = 1
            pred[y : y + 2, x : x + 3] = 1
        truths.append(truth)
        preds.append(pred)
    choice = choose_postprocessing(preds, truths, 2)
    removal = [r for r in choice.candidates if r["step"]["name"] == "remove_small"]
    # half the smallest, the smallest, then the guard (a quarter of the smallest)
    assert [r["step"]["min_size"] for r in removal] == [4, 9, 2]
    assert removal[0]["note"] == "no change"
    assert removal[1]["dice"] < choice.baseline  # deletes true objects
    assert kept(choice) == guards(choice) == [removal[2]["step"]]  # the 6-px objects stay
    assert choice.final == choice.baseline


def _five_nuclei(shift: int) -> np.ndarray:
    """Instance ids 1…5 of five discs of radius 6 (113 px each), shifted ``shift`` px right."""
    inst = np.zeros(SHAPE, np.int32)
    for j, (y, x) in enumerate([(12, 12), (12, 40), (40, 12), (40, 40), (26, 26)]):
        inst[disc(y, x + shift, 6)] = j + 1
    return inst


def test_specks_that_barely_move_dice_are_removed_by_object_f1_where_truth_has_ids():
    """Nuclei and a one-pixel speck per image: removing them raises Dice by < 0.001 (under the
    margin) but each speck is a false object. With the truth's instance ids the removal is judged
    on object F1 and kept; without ids (semantic masks, vessels) Dice alone judges and it is not."""
    truths, preds, instances = [], [], []
    for k in range(3):
        inst = _five_nuclei(shift=k)
        truth = (inst > 0).astype(np.int64)
        pred = truth.copy()
        pred[2, 60 - k] = 1  # a speck far from every nucleus
        truths.append(truth)
        preds.append(pred)
        instances.append(inst)
    plain = choose_postprocessing(preds, truths, 2)
    gain = plain.candidates[0]["dice"] - plain.baseline
    assert 0 < gain < 0.001 and plain.candidates[0]["step"]["name"] == "remove_small"
    # Dice rises by < 0.001, under the margin: no size is kept for it, but the guard (objects
    # under a quarter of a nucleus) removes the speck at no cost
    assert kept(plain) == guards(plain) == [{"name": "remove_small", "label": 1, "min_size": 28}]
    choice = choose_postprocessing(preds, truths, 2, truth_instances=instances)
    assert [s["name"] for s in kept(choice)] == ["remove_small"]
    row = next(r for r in choice.candidates if r["kept"])
    assert row["obj_f1_before"] == pytest.approx(2 * 15 / (2 * 15 + 3)) and row["obj_f1"] == 1.0
    assert choice.final == pytest.approx(1.0)
    assert "object F1 0.909 → 1.000" in choice.describe()[0]


def test_a_removal_that_costs_true_objects_is_not_kept_for_its_dice_where_truth_has_ids():
    """Two small true nuclei (3×3, found as 5 px) and two false 8-px blobs per image: removing
    objects under 9 px raises Dice (16 false pixels go, 10 true ones) but loses two nuclei, so
    object F1 falls from 0.875 to 0.833. Dice alone keeps it; with instance ids it is refused."""
    truths, preds, instances = [], [], []
    for k in range(3):
        inst = _five_nuclei(shift=k)
        pred = (inst > 0).astype(np.int64)
        for j, x in enumerate((52, 58)):
            inst[54:57, x : x + 3] = 6 + j  # a small true nucleus …
            pred[54, x : x + 3] = pred[55, x : x + 2] = 1  # … found as 5 px
            pred[2 + 4 * j : 4 + 4 * j, 52 + k : 56 + k] = 1  # a false 8-px blob
        truths.append((inst > 0).astype(np.int64))
        preds.append(pred)
        instances.append(inst)
    plain = choose_postprocessing(preds, truths, 2)
    assert kept(plain) == [{"name": "remove_small", "label": 1, "min_size": 9}]
    choice = choose_postprocessing(preds, truths, 2, truth_instances=instances)
    row = next(r for r in choice.candidates if r["step"].get("min_size") == 9)
    assert row["dice"] > row["before"] + 0.001
    assert row["obj_f1_before"] == pytest.approx(14 / 16) and row["obj_f1"] == pytest.approx(
        10 / 12
    )
    assert not row["kept"]
    # the guard (under 2 px) removes nothing here and costs nothing: the 5-px nuclei stay
    assert kept(choice) == guards(choice) == [{"name": "remove_small", "label": 1, "min_size": 2}]


def test_holes_are_filled():
    truths = [labels_of((disc(30, 30, 12), 1)), labels_of((disc(20, 40, 9), 1))]
    preds = [
        labels_of((disc(30, 30, 12) & ~disc(30, 30, 3), 1)),
        labels_of((disc(20, 40, 9) & ~disc(20, 40, 2), 1)),
    ]
    choice = choose_postprocessing(preds, truths, 2)
    assert kept_beyond_guards(choice) == [{"name": "fill_holes", "label": 1}]
    assert choice.final == pytest.approx(1.0)


def test_keep_largest_removes_a_false_blob():
    truths, preds = [], []
    for k in range(2):
        truth = labels_of((disc(40, 40, 15), 1))
        pred = labels_of((disc(40, 40, 14), 1))
        pred[2:22, 2 + k : 27 + k] = 1  # a 500-px false blob: larger than half the truth object
        truths.append(truth)
        preds.append(pred)
    choice = choose_postprocessing(preds, truths, 2)
    assert kept_beyond_guards(choice) == [{"name": "keep_largest", "label": 1}]
    expected = mean_dice([labels_of((disc(40, 40, 14), 1))] * 2, truths, 2, [1])
    assert choice.final == pytest.approx(expected)


def _touching_cases():
    """Pairs of discs the prediction merges; the truth has them apart (a one-pixel gap)."""
    truths, preds, instances = [], [], []
    for cx in (17, 19):
        a, b = disc(32, cx, 14), disc(32, cx + 27, 14)
        inst = np.zeros(SHAPE, np.int32)
        inst[a] = 1
        inst[b & ~a] = 2
        preds.append((a | b).astype(np.int64))
        instances.append(inst)
        truths.append((a | b).astype(np.int64))
    return truths, preds, instances


def test_watershed_split_is_kept_by_object_f1():
    truths, preds, instances = _touching_cases()
    # without instance ids the truth's objects are its components: one per pair, nothing to gain
    plain = choose_postprocessing(preds, truths, 2)
    assert not kept_beyond_guards(plain)
    assert object_f1(preds, [connected_components(t) for t in truths], 1) == 1.0
    # with the truth's instances: F1 rises to 1; the gap costs under 0.5 % Dice
    choice = choose_postprocessing(preds, truths, 2, truth_instances=instances)
    steps = kept_beyond_guards(choice)
    assert len(steps) == 1 and steps[0]["name"] == "split_touching"
    row = next(r for r in choice.candidates if r["kept"] and r["note"] != GUARD_NOTE)
    assert row["obj_f1_before"] < 0.7 and row["obj_f1"] == 1.0
    assert 1.0 - 0.005 <= choice.final < 1.0
    # a split that costs more Dice than allowed is not kept
    strict = choose_postprocessing(preds, truths, 2, truth_instances=instances, dice_tolerance=0)
    assert not kept_beyond_guards(strict)
    assert f"object F1 {row['obj_f1_before']:.3f} → 1.000" in choice.describe()[-1]


def test_a_merge_the_truth_shows_by_a_gap_is_split():
    """Semantic truth with a background line between the cells (as ISBI's membranes)."""
    truths, preds, instances = _touching_cases()
    gapped = [np.where(_line(i), 0, t) for t, i in zip(truths, instances)]
    choice = choose_postprocessing(preds, gapped, 2)
    assert [s["name"] for s in kept_beyond_guards(choice)] == ["split_touching"]
    assert choice.final > choice.baseline


def _line(instances: np.ndarray) -> np.ndarray:
    """The pixels of object 2 touching object 1."""
    from scipy import ndimage

    return (instances == 2) & ndimage.binary_dilation(instances == 1)


def test_choice_errors_and_the_clock():
    with pytest.raises(DataError, match="needs validation cases"):
        choose_postprocessing([], [], 2)
    with pytest.raises(DataError, match=r"prediction shape \(4, 4\) ≠ truth \(4, 5\)"):
        choose_postprocessing([np.zeros((4, 4), int)], [np.zeros((4, 5), int)], 2)
    truths, preds = _speck_cases(np.random.default_rng(1))
    stopped = choose_postprocessing(preds, truths, 3, out_of_time=lambda: True)
    assert not stopped.postprocessing and stopped.candidates == () and stopped.stopped
    assert stopped.describe() == ["post-processing: none chosen, no candidate tried (time budget)"]
    # time for the removal candidates only: what they found is kept, the rest is not tried
    full = choose_postprocessing(preds, truths, 3)
    n = sum(r["step"]["name"] == "remove_small" for r in full.candidates)
    calls = iter(range(len(full.candidates) + 1))
    part = choose_postprocessing(preds, truths, 3, out_of_time=lambda: next(calls) >= n)
    assert part.candidates == full.candidates[:n] and part.stopped == "time budget"
    assert part.postprocessing == full.postprocessing and kept(part)[0]["name"] == "remove_small"


# -- the run and predict -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny run (2 epochs × 2 iterations, base_features 4, 48 px images) and its data."""
    from unetkit.training import Trainer

    from .test_training import make_cells, tiny_config

    root = tmp_path_factory.mktemp("postprocess")
    cells = make_cells(root / "train")
    cfg = tiny_config(cells, epochs=2, iters_per_epoch=2)
    result = Trainer(cfg, run_dir=root / "run", progress=False).fit()
    return root, cells, result


def test_training_chooses_and_stores_the_post_processing(run, capsys):
    from unetkit.checkpoint import load_checkpoint

    root, _, result = run
    record = json.loads((root / "run" / "postprocess.json").read_text())
    best = load_checkpoint(root / "run" / "checkpoints" / "best.pt")
    chosen = PostProcessing.from_dict(best["extra"]["postprocess"])
    assert record["postprocess"] == best["extra"]["postprocess"]
    assert chosen == result.postprocess.postprocessing
    assert record["epoch"] == best["epoch"] == result.best["epoch"]
    assert record["metric"] == "val_dice" and record["describe"] == chosen.describe()
    # the choice starts from the best epoch's own validation Dice (same weights, same prediction)
    assert record["baseline"] == pytest.approx(result.best["value"], abs=1e-9)
    names = {r["step"]["name"] for r in record["candidates"]}
    assert {"fill_holes", "keep_largest", "split_touching"} <= names
    assert sum(r["kept"] for r in record["candidates"]) == len(chosen.steps)
    assert record["final"] >= record["baseline"] - 0.005 * len(chosen.steps)
    assert "postprocess" not in load_checkpoint(root / "run" / "checkpoints" / "last.pt")["extra"]


def test_postprocess_none_and_no_time_choose_nothing(tmp_path, monkeypatch, capsys):
    from unetkit.training import Trainer

    from .test_training import make_cells, tiny_config

    cells = make_cells(tmp_path / "train", n=3)
    cfg = tiny_config(cells, epochs=1, iters_per_epoch=1, postprocess="none")
    result = Trainer(cfg, run_dir=tmp_path / "off", progress=False).fit()
    assert result.postprocess is None and not (tmp_path / "off" / "postprocess.json").exists()

    # under a time budget with no time left after the last epoch: skipped, with the reason printed
    monkeypatch.setattr(Trainer, "_seconds_left", lambda self: 1.0)
    cfg = tiny_config(cells, epochs=1, iters_per_epoch=1, time_budget_minutes=10)
    result = Trainer(cfg, run_dir=tmp_path / "late", progress=False).fit()
    assert result.postprocess is None and not (tmp_path / "late" / "postprocess.json").exists()
    assert "post-processing: not chosen, 1 s of the time budget left" in capsys.readouterr().out


def _with_post_processing(src: Path, dst: Path, pp: PostProcessing) -> Path:
    from unetkit.checkpoint import load_checkpoint, write_checkpoint

    ckpt = load_checkpoint(src)
    ckpt["extra"]["postprocess"] = pp.to_dict()
    return write_checkpoint(dst, ckpt)


def test_predict_applies_the_checkpoint_post_processing(run, tmp_path, capsys):
    from unetkit import cli
    from unetkit.inference.batch import predict_files
    from unetkit.inference.predictor import Predictor
    from unetkit.io import read_image

    root, cells, result = run
    best = root / "run" / "checkpoints" / "best.pt"
    # a post-processing that surely changes the labels of this barely trained net
    pp = PostProcessing((PostStep("keep_largest", 1), PostStep("fill_holes", 1)))
    ckpt = _with_post_processing(best, tmp_path / "pp.pt", pp)
    predictor = Predictor.from_checkpoint(ckpt, precision="fp32")
    assert predictor.postprocess == pp
    assert Predictor.from_checkpoint(best).postprocess == result.postprocess.postprocessing
    images = cells / "images"
    predict_files(predictor, [images], tmp_path / "auto", progress=False)
    assert cli.main(
        [
            "predict", str(ckpt), str(images), "--output", str(tmp_path / "none"),
            "--postprocess", "none", "--precision", "fp32", "--threads", "1", "--no-progress",
        ]
    ) == 0  # fmt: skip
    assert "post-processing" not in capsys.readouterr().out
    changed = 0
    for path in sorted(images.glob("*.png")):
        raw = predictor.predict_proba(read_image(path)[0]).argmax(0)
        auto = read_image(tmp_path / "auto" / path.name)[0][0]
        none = read_image(tmp_path / "none" / path.name)[0][0]
        np.testing.assert_array_equal(auto, 255 * pp.apply(raw))
        np.testing.assert_array_equal(none, 255 * raw)
        changed += int(not np.array_equal(auto, none))
    assert changed > 0


def test_predict_cli_says_what_it_applies_and_refuses_a_bad_value(run, tmp_path, capsys):
    from unetkit import cli

    root, cells, _ = run
    pp = PostProcessing((PostStep("remove_small", 1, min_size=20),))
    ckpt = _with_post_processing(root / "run/checkpoints/best.pt", tmp_path / "pp.pt", pp)
    image = str(sorted((cells / "images").glob("*.png"))[0])
    out = str(tmp_path / "out")
    assert (
        cli.main(["predict", str(ckpt), image, "-o", out, "--threads", "1", "--no-progress"]) == 0
    )
    assert (
        "post-processing (chosen on validation): remove class 1 objects under 20 px"
        in capsys.readouterr().out
    )
    with pytest.raises(SystemExit) as info:
        cli.main(["predict", str(ckpt), image, "-o", out, "--postprocess", "largest"])
    assert info.value.code == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert len(errors) == 1 and errors[0].startswith(  # the choices are quoted from Python 3.12 on
        "unetkit predict: error: argument --postprocess: invalid choice: 'largest' (choose from"
    )


def test_a_damaged_post_processing_entry_is_named(run, tmp_path):
    from unetkit.checkpoint import load_checkpoint, write_checkpoint
    from unetkit.inference.predictor import Predictor

    root, _, _ = run
    ckpt = load_checkpoint(root / "run" / "checkpoints" / "best.pt")
    ckpt["extra"]["postprocess"] = {"steps": [{"name": "erode", "label": 1}]}
    path = write_checkpoint(tmp_path / "bad.pt", ckpt)
    with pytest.raises(DataError) as info:
        Predictor.from_checkpoint(path)
    assert str(info.value).startswith(f"{path}: damaged checkpoint: its post-processing")
    assert "\n" not in str(info.value)
    assert not Predictor.from_checkpoint(path, postprocess=None).postprocess


def _organ(shape, spacing_z: float) -> np.ndarray:
    """A box of 8 mm × 10 × 10 px at a slice spacing of ``spacing_z`` mm (1 mm pixels)."""
    t = np.zeros(shape, np.int64)
    depth = int(round(8 / spacing_z))
    t[2 : 2 + depth, 5:15, 5:15] = 1
    return t


def test_small_object_sizes_are_volumes_where_the_spacing_is_known():
    """Validation at 1 mm slices, a test scan at 3 mm: the organ holds a third of the voxels
    there. A threshold in pixels (chosen at 1 mm) deletes it; one in mm³ keeps it and still
    removes the specks."""
    from unetkit.inference.postprocess import PostProcessing, PostStep

    truths = [_organ((16, 24, 24), 1.0) for _ in range(2)]
    preds = [t.copy() for t in truths]
    for p in preds:
        p[14, 20, 20:22] = 1  # specks: false objects of 2 voxels
        p[12, 1, 1:3] = 1
    by_volume = choose_postprocessing(preds, truths, 2, spacings=[(1.0, 1.0, 1.0)] * 2)
    (step,) = by_volume.postprocessing.steps
    assert step.name == "remove_small" and step.min_volume is not None
    assert step.min_volume == pytest.approx(step.min_size * 1.0)  # 1 mm³ voxels at validation
    assert step.describe("mm", 3) == (
        f"remove class 1 objects under {step.min_volume:.4g} mm³ ({step.min_size} voxels at the "
        "validation's median voxel size)"
    )
    assert "in the images' spacing unit, cubed" in step.describe(None, 3)
    # the trainer gives the files' unit: the log and postprocess.json say mm³, not "the unit"
    named = choose_postprocessing(preds, truths, 2, spacings=[(1.0, 1.0, 1.0)] * 2, unit="mm")
    assert named.candidates[0]["describe"].startswith("remove class 1 objects under ")
    assert " mm³ (" in named.candidates[0]["describe"] and "voxels at the" in named.describe()[0]
    assert named.to_dict()["describe"] == named.postprocessing.describe("mm", 3)  # the json's
    assert " mm³ (" in named.to_dict()["describe"]
    coarse = _organ((8, 24, 24), 3.0)  # 3 slices of 3 mm: 300 voxels, 900 mm³
    coarse[6, 20, 20:22] = 1
    kept = by_volume.postprocessing.apply(coarse, spacing=(3.0, 1.0, 1.0))
    np.testing.assert_array_equal(kept, _organ((8, 24, 24), 3.0))  # organ kept, speck gone
    # the same choice made in pixels (no spacing known) deletes the organ of the 3 mm scan
    by_pixels = choose_postprocessing(preds, truths, 2)
    assert by_pixels.postprocessing.steps[0].min_volume is None
    assert not by_pixels.postprocessing.apply(coarse).any()
    # without a spacing at predict time the volume step falls back to its pixel size
    assert not by_volume.postprocessing.apply(coarse).any()
    # stored and read back with its volume
    pp = PostProcessing.from_dict(json.loads(json.dumps(by_volume.postprocessing.to_dict())))
    assert pp == by_volume.postprocessing
    assert PostStep("remove_small", 1, min_size=4, min_volume=2.0).pixels((0.5, 0.5)) == 8
    with pytest.raises(ConfigError, match="min_volume must be a number > 0"):
        PostStep("remove_small", 1, min_size=4, min_volume=-1)
    with pytest.raises(ConfigError, match="fill_holes takes no min_volume"):
        PostStep("fill_holes", 1, min_volume=3.0)


def test_the_guard_clears_specks_from_a_blank_field_the_validation_never_showed():
    """Validation images all hold nuclei and are predicted clean: no removal can gain, yet the
    guard is kept, and a noise-only field's one- and two-pixel false objects go (a nuclei model
    trained without empty fields predicted 376-405 of them per field)."""
    truths, preds = [], []
    for k in range(3):
        inst = _five_nuclei(shift=k)
        truths.append((inst > 0).astype(np.int64))
        preds.append((inst > 0).astype(np.int64))
    choice = choose_postprocessing(preds, truths, 2)
    nucleus = int(disc(12, 12, 6).sum())
    assert (
        kept(choice)
        == guards(choice)
        == [{"name": "remove_small", "label": 1, "min_size": int(round(0.25 * nucleus))}]
    )
    assert choice.final == choice.baseline == 1.0
    blank = np.zeros(SHAPE, np.int64)
    rng = np.random.default_rng(0)
    ys, xs = rng.integers(0, SHAPE[0] - 1, 60), rng.integers(0, SHAPE[1] - 1, 60)
    blank[ys, xs] = 1
    blank[ys[:20], xs[:20] + 1] = 1  # some two-pixel specks
    assert connected_components(blank).max() > 40
    assert not choice.postprocessing.apply(blank).any()
    near = np.zeros(SHAPE, np.int64)
    near[disc(30, 30, 4)] = 1  # a small real nucleus, 49 px, above a quarter of 113 px: kept
    np.testing.assert_array_equal(choice.postprocessing.apply(near), near)


def test_the_guard_never_costs_its_own_class_even_when_another_class_is_judged():
    """Judged on class 1 alone (val_dice_c1), a class-2 removal changes no judged Dice; the
    guard still must not cost class 2 its own true pixels (a found piece of a true object, cut
    off from the rest, smaller than a quarter of the smallest true object)."""
    truths, preds = [], []
    for _ in range(2):
        truth = labels_of((disc(18, 18, 7), 1), (disc(44, 44, 12), 2))
        pred = truth.copy()
        pred[44:47, 32:57] = 0  # a band across the disc: its top part is one object …
        pred[32:44, 32:57] = np.where(pred[32:44, 32:57] == 2, 0, pred[32:44, 32:57])
        pred[40:44, 40:48] = 2  # … and a 32-px true piece lies apart above the band
        truths.append(truth)
        preds.append(pred)
    choice = choose_postprocessing(preds, truths, 3, select_metric="val_dice_c1")
    assert [g["label"] for g in guards(choice)] == [1]  # class 1's changes nothing: kept
    row = next(r for r in choice.candidates if r["step"].get("min_size") == 110)  # 441 / 4
    assert row["step"]["label"] == 2 and not row["kept"]
    assert row["dice"] == row["before"]  # class 1's Dice, the one judged: unchanged


def test_a_class_no_validation_image_holds_is_neither_judged_nor_cleaned_up():
    """Class 2 is in no validation truth: its predicted objects would score Dice 0, so a mean
    with it would keep removing them (here keep_largest and a removal would 'win'); it is left
    out of the judged Dice and no clean-up of it is tried."""
    from unetkit.evaluation.postprocess_choice import held_classes

    truths, preds = [], []
    for k in range(2):
        truths.append(labels_of((disc(30, 30, 10), 1)))
        preds.append(
            labels_of((disc(30, 30, 10), 1), (disc(50, 50, 3 + k), 2), (disc(8, 50, 6), 2))
        )
    assert held_classes(truths, [1, 2]) == [1] and held_classes(truths, [2]) == [2]
    choice = choose_postprocessing(preds, truths, 3)
    assert {r["step"]["label"] for r in choice.candidates} == {1}
    assert choice.baseline == pytest.approx(1.0) and mean_dice(preds, truths, 3, [1, 2]) == 0.5
    # a class named by the select metric is judged even where no truth holds it
    named = choose_postprocessing(preds, truths, 3, select_metric="val_dice_c2")
    assert named.baseline == 0.0


def test_training_leaves_a_class_out_of_val_dice_where_no_validation_image_has_it(tmp_path, capsys):
    from PIL import Image

    from unetkit.training import Trainer

    from .test_training import tiny_config

    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        for folder in ("images", "masks"):
            (tmp_path / split / folder).mkdir(parents=True)
        for i in range(n):
            mask = labels_of((disc(14, 14, 7, (48, 48)), 1), shape=(48, 48))
            if split == "train":
                mask[30:40, 30:40] = 2  # a class only the training images have
            image = np.clip(mask * 90 + 40 + rng.normal(0, 10, mask.shape), 0, 255)
            Image.fromarray(image.astype(np.uint8)).save(tmp_path / split / "images" / f"{i}.png")
            Image.fromarray(mask.astype(np.uint8)).save(tmp_path / split / "masks" / f"{i}.png")
    cfg = tiny_config(tmp_path / "train", epochs=2, iters_per_epoch=2, postprocess="none")
    cfg.data.val_dir = str(tmp_path / "val")
    result = Trainer(cfg, run_dir=tmp_path / "run", progress=False).fit()
    out = capsys.readouterr().out
    assert (
        "note: class 2 (mask value 2) in no validation image: val dice leaves it out, so the best "
        "checkpoint and the post-processing are chosen without judging it" in out
    )
    for record in result.history:
        assert record["val_dice"] == pytest.approx(record["val_dice_c1"])
        assert "val_dice_c2" in record


def test_a_choice_skipped_for_time_says_what_best_pt_carries(tmp_path, capsys):
    """A resumed run with no time left to choose: the clean-ups best.pt carries from an earlier
    choice are named (predict applies them); a best.pt without any says predict applies none,
    and the postprocess.json of an older best.pt goes."""
    from unetkit.checkpoint import load_checkpoint, write_checkpoint
    from unetkit.training import Trainer

    from .test_training import make_cells, tiny_config

    data = make_cells(tmp_path / "data", n=4)
    trainer = Trainer(tiny_config(data, epochs=2), run_dir=tmp_path / "run", progress=False)
    trainer.fit()
    record, best = tmp_path / "run" / "postprocess.json", tmp_path / "run/checkpoints/best.pt"
    assert record.is_file()
    ckpt = load_checkpoint(best)
    ckpt["extra"]["postprocess"] = PostProcessing((PostStep("fill_holes", 1),)).to_dict()
    write_checkpoint(best, ckpt)
    capsys.readouterr()
    trainer._seconds_left = lambda: 0.0
    assert trainer.choose_postprocessing() is None
    out = capsys.readouterr().out
    assert "best.pt keeps the one chosen for it before: fill the holes of class 1" in out
    assert "kept to save best.pt" in out and record.is_file()
    ckpt["extra"]["postprocess"] = None  # a best.pt written since (rebuilt, or a better epoch)
    write_checkpoint(best, ckpt)
    assert trainer.choose_postprocessing() is None
    assert "(predict applies none)" in capsys.readouterr().out
    assert not record.exists()

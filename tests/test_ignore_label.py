"""Partial annotations: one mask value marks unlabelled pixels (``data.ignore_value``), which no
loss, score, sampler or post-processing choice counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unetkit.checkpoint import load_checkpoint
from unetkit.data import IGNORE_INDEX, LabelMap, infer_label_map, labelled_locations
from unetkit.data.resample import resample_labels
from unetkit.data.sampling import PatchSampler
from unetkit.errors import ConfigError, DataError
from unetkit.evaluation.evaluate import evaluate_folders
from unetkit.evaluation.postprocess_choice import choose_postprocessing, mean_dice
from unetkit.training import Trainer

from .test_training import make_cells, tiny_config

UNLABELLED = 7


def _u8(*rows) -> np.ndarray:
    return np.array([rows], dtype=np.uint8)


# ---------------------------------------------------------------- label map


def test_the_ignore_value_encodes_to_the_ignore_index_in_both_lookup_paths():
    lm = LabelMap([0, 255], ignore=UNLABELLED)
    mask = _u8([0, 7, 255, 7])
    assert lm.encode(mask).tolist() == [[0, IGNORE_INDEX, 1, IGNORE_INDEX]]
    assert lm.encode(mask.astype(np.int32)).tolist() == [[0, IGNORE_INDEX, 1, IGNORE_INDEX]]
    assert lm.num_classes == 2
    with pytest.raises(DataError, match=r"unexpected label values 3 .*and 7 for unlabelled"):
        lm.encode(_u8([0, 3]))
    assert LabelMap.from_dict(lm.to_dict()) == lm
    assert "ignore" not in LabelMap([0, 255]).to_dict()  # maps without one are saved as before


def test_an_ignore_value_that_is_a_class_or_of_colour_masks_is_refused():
    with pytest.raises(ConfigError, match="cannot also be a class value"):
        LabelMap([0, 1, 2], ignore=2)
    with pytest.raises(ConfigError, match="needs grey label masks"):
        LabelMap([(0, 0, 0), (255, 0, 0)], kind="colors", ignore=1)
    with pytest.raises(ConfigError, match="integer mask value"):
        LabelMap([0, 1], ignore="x")


def test_nnunet_ignore_label_is_the_unlabelled_value():
    lm = LabelMap.from_nnunet({"background": 0, "nucleus": 1, "ignore": 2})
    assert lm.values == (0, 1) and lm.names == ("background", "nucleus") and lm.ignore == 2


def test_infer_label_map_leaves_the_ignore_value_out_of_the_classes():
    masks = [_u8([0, 1, 2, 2]), _u8([0, 1, 1, 0])]
    lm = infer_label_map(masks, ignore=0)
    assert lm.values == (1, 2) and lm.ignore == 0
    assert lm.encode(masks[0]).tolist() == [[-1, 0, 1, 1]]
    # without it the unlabelled value is a class of its own
    assert infer_label_map(masks).values == (0, 1, 2)
    with pytest.raises(DataError, match="single value 1 beside the unlabelled 0"):
        infer_label_map([_u8([0, 1, 1, 0])], ignore=0)
    with pytest.raises(ConfigError, match="needs grey label masks, not instances masks"):
        infer_label_map(masks, kind="instances", ignore=0)


def test_jpeg_masks_cannot_name_an_unlabelled_value(tmp_path):
    path = tmp_path / "m.jpg"
    Image.fromarray(np.tile(np.array([0, 255], np.uint8), (8, 4))).save(path)
    with pytest.raises(DataError, match="JPEG masks hold no exact values"):
        infer_label_map([path], ignore=128)


# ---------------------------------------------------------------- resampling and sampling


def test_resampled_labels_keep_their_unlabelled_regions():
    mask = np.zeros((8, 8), np.int64)
    mask[:, 4:] = 1
    mask[:4, :] = IGNORE_INDEX
    out = resample_labels(mask, (4, 4), 2)
    expected = np.zeros((4, 4), np.int64)
    expected[:, 2:] = 1
    expected[:2, :] = IGNORE_INDEX
    np.testing.assert_array_equal(out, expected)


def test_patches_not_on_foreground_are_centred_on_labelled_pixels():
    mask = np.full((200, 200), IGNORE_INDEX, np.int64)
    mask[150:160, 150:160] = 0  # one small labelled scribble of background, no foreground
    image = np.zeros((1, 200, 200), np.float32)
    sampler = PatchSampler(label_size=32, fg_fraction=0.0)
    rng = np.random.default_rng(0)
    labelled = labelled_locations(mask)
    assert labelled.size == 100
    with_labels = [
        (sampler.sample(image, mask, rng, labelled=labelled)["mask"] >= 0).any() for _ in range(50)
    ]
    uniform = [(sampler.sample(image, mask, rng)["mask"] >= 0).any() for _ in range(50)]
    assert all(with_labels)
    assert sum(uniform) < 25  # uniform placement mostly misses the scribble
    assert labelled_locations(np.zeros((4, 4), np.int64)) is None  # fully labelled: uniform


# ---------------------------------------------------------------- scores


def test_validation_dice_and_post_processing_leave_unlabelled_pixels_out():
    truth = np.zeros((20, 20), np.int64)
    truth[5:10, 5:10] = 1
    truth[:, 15:] = IGNORE_INDEX
    pred = np.zeros_like(truth)
    pred[5:10, 5:10] = 1
    pred[0:4, 16:19] = 1  # an object where nobody labelled: no false positive
    assert mean_dice([pred], [truth], 2, [1]) == 1.0
    choice = choose_postprocessing([pred], [truth], 2)
    tried = {row["step"]["name"] for row in choice.candidates}
    assert "split_touching" not in tried  # judged on objects, which partial truth lacks
    assert choice.baseline == choice.final == 1.0


def test_no_clean_up_is_kept_that_changes_pixels_nobody_labelled():
    # one outlined cell and one labelled background patch holding a false object; three real
    # cells nobody outlined: removing small objects fixes the labelled patch but would delete them
    truth = np.full((60, 60), IGNORE_INDEX, np.int64)
    truth[0:20, 0:20] = 0
    truth[2:18, 2:18] = 1  # the outlined (large) cell
    truth[40:60, 40:60] = 0  # labelled background
    pred = np.zeros_like(truth)
    pred[2:18, 2:18] = 1
    pred[45:52, 45:52] = 1  # a false object on labelled background (49 px)
    for y, x in ((5, 30), (30, 5), (30, 30)):
        pred[y : y + 10, x : x + 10] = 1  # unlabelled real cells (100 px)
    choice = choose_postprocessing([pred], [truth], 2)
    assert choice.postprocessing.steps == ()
    removal = [r for r in choice.candidates if r["step"]["name"] == "remove_small"]
    assert removal and all(not r["kept"] for r in removal)
    assert any(r["note"] == "changes unlabelled pixels, which nothing judges" for r in removal)


def test_thin_strokes_survive_resampling_to_a_coarser_grid():
    mask = np.full((48, 48), IGNORE_INDEX, np.int64)
    mask[10, :] = 1  # a 1-px stroke of an object
    mask[30:32, :] = 0  # a 2-px stroke of background
    out = resample_labels(mask, (16, 16), 2)
    assert (out == 1).sum() == 16 and (out == 0).sum() == 16  # one row each, none lost


# ---------------------------------------------------------------- training


def _partial_cells(root: Path) -> Path:
    """The test cells with the right third of every mask unlabelled (value 7)."""
    data = make_cells(root)
    for path in sorted((data / "masks").glob("*.png")):
        mask = np.array(Image.open(path))
        mask[:, 32:] = UNLABELLED
        Image.fromarray(mask).save(path)
    return data


@pytest.fixture(scope="module")
def partial(tmp_path_factory) -> Path:
    return _partial_cells(tmp_path_factory.mktemp("partial") / "train")


def test_training_leaves_unlabelled_pixels_out_of_loss_and_scores(partial, tmp_path):
    cfg = tiny_config(partial, epochs=1).override({"data.ignore_value": UNLABELLED})
    trainer = Trainer(cfg, run_dir=tmp_path / "run", progress=False)
    result = trainer.fit()
    lm = trainer.data.label_map
    assert lm.values == (0, 255) and lm.ignore == UNLABELLED
    assert "classes [0, 255] (unlabelled 7)" in trainer.header_lines()[0]
    assert np.isfinite(result.history[-1]["train_loss"])
    saved = LabelMap.from_dict(load_checkpoint(result.run_dir / "checkpoints/best.pt")["label_map"])
    assert saved.ignore == UNLABELLED

    # the loss has no gradient on unlabelled pixels
    target = torch.from_numpy(trainer.data.train[0].mask[:32, 16:].copy())[None]
    assert (target == IGNORE_INDEX).any() and (target >= 0).any()
    logits = torch.randn(1, 2, 32, 32, requires_grad=True)
    trainer.loss_fn(logits, target).backward()
    assert float(logits.grad[0][:, target[0] == IGNORE_INDEX].abs().max()) == 0.0

    # validation Dice: the labelled pixels only, recomputed independently
    record = trainer.validate()
    predictor = trainer._validation_predictor(trainer.model)
    dices = []
    for case in trainer.data.val:
        pred = predictor.predict_logits(case.image).argmax(0)
        keep = case.mask >= 0
        p, t = (pred == 1) & keep, (case.mask == 1) & keep
        if p.sum() + t.sum():
            dices.append(2 * (p & t).sum() / (p.sum() + t.sum()))
    assert record["val_dice_c1"] == pytest.approx(np.mean(dices), abs=1e-9)


def test_without_an_ignore_value_the_unlabelled_value_is_a_class(partial, tmp_path):
    trainer = Trainer(tiny_config(partial, epochs=1), run_dir=tmp_path / "run", progress=False)
    trainer.setup()
    assert trainer.data.label_map.values == (0, 7, 255)


def test_the_ignore_value_is_refused_with_colour_masks_and_replaces_loss_ignore_index(partial):
    with pytest.raises(ConfigError, match="needs grey class masks"):
        tiny_config(partial).override({"data.ignore_value": 1, "data.mask_kind": "colors"})
    with pytest.raises(ConfigError, match="data.ignore_value"):
        tiny_config(partial).override({"loss.options": {"ignore_index": 7}})


# ---------------------------------------------------------------- evaluate


def test_evaluate_scores_labelled_pixels_only_and_names_a_likely_unlabelled_value(tmp_path):
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    truth_dir.mkdir()
    pred_dir.mkdir()
    rng = np.random.default_rng(3)
    expected = []
    for i in range(3):
        full = (rng.random((32, 32)) < 0.4).astype(np.uint8)
        truth = np.where(rng.random((32, 32)) < 0.7, 0, full + 1).astype(np.uint8)  # 0 unlabelled
        pred = np.where(rng.random((32, 32)) < 0.1, 1 - full, full).astype(np.uint8) + 1
        Image.fromarray(truth).save(truth_dir / f"{i}.png")
        Image.fromarray(pred).save(pred_dir / f"{i}.png")
        keep = truth > 0
        p, t = (pred == 2) & keep, (truth == 2) & keep
        expected.append(2 * (p & t).sum() / (p.sum() + t.sum()))
    result = evaluate_folders(pred_dir, truth_dir, ignore_value=0)
    assert result.metrics == ("dice", "iou", "precision", "recall", "specificity", "pixel_error")
    dice = [r["dice"] for r in result.rows]
    np.testing.assert_allclose(dice, expected, atol=1e-12)
    assert result.summary["ignore_value"] == 0
    with pytest.raises(ConfigError, match="only the overlap metrics and auc"):
        evaluate_folders(pred_dir, truth_dir, ignore_value=0, metrics=["hd95"])
    plain = evaluate_folders(pred_dir, truth_dir, metrics=["dice"])
    assert any("--ignore-value 0" in w for w in plain.summary["warnings"])


def test_evaluate_cli_reads_the_ignore_value(tmp_path, capsys):
    from unetkit.cli import main

    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    truth_dir.mkdir()
    pred_dir.mkdir()
    Image.fromarray(np.array([[0, 1], [2, 2]], np.uint8)).save(truth_dir / "a.png")
    Image.fromarray(np.array([[2, 1], [2, 2]], np.uint8)).save(pred_dir / "a.png")
    assert main(["evaluate", str(pred_dir), str(truth_dir), "--ignore-value", "0", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ignore_value"] == 0


# ---------------------------------------------------------------- check-data


def test_check_data_reports_the_unlabelled_share_and_keeps_it_out_of_the_classes(partial):
    from unetkit.data.checks import check_dataset

    plain = check_dataset(partial)
    assert plain.label_values == [0, 7, 255] and plain.ignore_value is None
    report = check_dataset(partial, ignore_value=UNLABELLED, label_map=LabelMap([0, 255]))
    assert report.ok, report.problems
    assert report.label_values == [0, 255]
    assert report.unlabelled_percent == pytest.approx(100 * 16 / 48)  # columns 32…47 of 48
    assert sum(report.class_frequencies) == pytest.approx(100.0)
    assert "unlabelled (value 7): 33.33 % of mask pixels" in report.format()
    assert report.label_map().ignore == UNLABELLED
    assert not any("no mask holds" in n for n in report.notes)
    typo = check_dataset(partial, ignore_value=128)
    assert any("no mask holds the ignore value 128" in n for n in typo.notes)
    strict = check_dataset(partial, label_map=LabelMap([0, 255]))
    assert not strict.ok  # without it, 7 is a value the stated classes lack


def test_the_unet3plus_classification_module_is_refused_with_unlabelled_pixels(partial, tmp_path):
    # it learns "this patch holds foreground" from whole masks and gates predictions with it
    cfg = tiny_config(partial, epochs=1).override(
        {
            "data.ignore_value": UNLABELLED,
            "model.name": "unet3plus-ds-cgm",
            "model.options": {"base_features": 4, "depth": 2},
        }
    )
    with pytest.raises(ConfigError, match="classification-guided module"):
        Trainer(cfg, run_dir=tmp_path / "run", progress=False).fit()
    assert not (tmp_path / "run").exists()


def test_fine_tuning_keeps_the_checkpoints_unlabelled_value_unless_told(partial, tmp_path, capsys):
    from unetkit import cli

    cfg = tiny_config(partial, epochs=1).override({"data.ignore_value": UNLABELLED})
    source = Trainer(cfg, run_dir=tmp_path / "src", progress=False).fit().run_dir
    best = str(source / "checkpoints/best.pt")
    flags = [
        "--no-plan", "--epochs", "1", "--iters-per-epoch", "2", "--batch-size", "2",
        "--patch-size", "32", "--precision", "fp32", "--no-progress",
    ]  # fmt: skip
    run = tmp_path / "tuned"
    assert (
        cli.main(["train", str(partial), "--init-from", best, "--run-dir", str(run), *flags]) == 0
    )
    assert "unlabelled mask value 7 (--set data.ignore_value=null" in capsys.readouterr().out
    tuned = LabelMap.from_dict(load_checkpoint(run / "checkpoints/best.pt")["label_map"])
    assert tuned.values == (0, 255) and tuned.ignore == UNLABELLED
    run2 = tmp_path / "as_class"
    argv = ["train", str(partial), "--init-from", best, "--run-dir", str(run2), *flags]
    assert cli.main([*argv, "--set", "data.ignore_value=null"]) == 0
    as_class = LabelMap.from_dict(load_checkpoint(run2 / "checkpoints/best.pt")["label_map"])
    assert as_class.values == (0, 7, 255) and as_class.ignore is None


def test_a_models_unlabelled_value_limits_predict_truth_scores_to_overlap(tmp_path):
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    truth_dir.mkdir()
    pred_dir.mkdir()
    Image.fromarray(np.array([[0, 1], [2, 2]], np.uint8)).save(truth_dir / "a.png")
    Image.fromarray(np.array([[2, 1], [2, 2]], np.uint8)).save(pred_dir / "a.png")
    # as predict --truth passes its model's label map
    result = evaluate_folders(pred_dir, truth_dir, label_map=LabelMap([1, 2], ignore=0))
    assert "hd95" not in result.metrics and result.summary["ignore_value"] == 0
    assert [r["dice"] for r in result.rows] == [1.0]


def test_an_ignore_value_no_mask_holds_is_warned_of(capsys):
    lm = infer_label_map([_u8([0, 255, 255]), _u8([0, 0, 255])], ignore=128)
    assert lm.values == (0, 255)
    assert "no mask holds the ignore value 128 (their values: 0, 255)" in capsys.readouterr().err


def test_the_fingerprint_sizes_only_objects_wholly_inside_the_labelled_pixels(partial):
    from scipy import ndimage

    from unetkit.data.fingerprint import fingerprint_dataset

    fp = fingerprint_dataset(partial, ignore_value=UNLABELLED)
    assert fp.ignore_value == UNLABELLED
    assert fp.unlabelled_fraction == pytest.approx(16 / 48)
    whole = cut = 0
    for path in sorted((partial / "masks").glob("*.png")):
        lab, n = ndimage.label(np.array(Image.open(path)) == 255)
        touching = set(np.unique(lab[:, 31])) - {0}  # face neighbours of the unlabelled columns
        whole, cut = whole + n - len(touching), cut + len(touching)
    assert cut > 0
    assert fp.objects["1"]["count"] == whole
    assert fp.labelled_extent == 48  # one labelled region per mask: columns 0…31 of 48 rows


def test_validation_masks_that_label_nothing_are_said_so(partial, tmp_path):
    val = make_cells(tmp_path / "val", n=2)
    for path in sorted((val / "masks").glob("*.png")):
        Image.fromarray(np.full((48, 48), UNLABELLED, np.uint8)).save(path)
    cfg = tiny_config(partial, epochs=2).override(
        {"data.ignore_value": UNLABELLED, "data.val_dir": str(val)}
    )
    trainer = Trainer(cfg, run_dir=tmp_path / "run", progress=False)
    result = trainer.fit()
    assert "the validation masks label no pixel" in trainer.unjudged_note()
    assert load_checkpoint(result.run_dir / "checkpoints/best.pt")["epoch"] == 2  # the last
    record = json.loads((result.run_dir / "postprocess.json").read_text())
    assert record["postprocess"]["steps"] == []


# ---------------------------------------------------------------- a forgotten --ignore-value


def test_a_value_that_looks_like_unlabelled_pixels_is_named_with_the_flag():
    from unetkit.data.labels import forgotten_ignore_value

    value, note, strong = forgotten_ignore_value({0: 0.04, 128: 0.93, 255: 0.03})
    assert value == 128 and "covers 93 %" in note and "pass --ignore-value 128" in note
    assert not strong  # a tissue class can cover as much: a hint, not a warning
    # absent from (complete) validation masks: half the training pixels are enough
    assert forgotten_ignore_value({0: 0.3, 7: 0.6, 255: 0.1}, {0, 255})[:1] == (7,)
    assert forgotten_ignore_value({0: 0.3, 7: 0.6, 255: 0.1}, {0, 255}).strong
    assert forgotten_ignore_value({0: 0.3, 7: 0.6, 255: 0.1}, {0, 7, 255}) is None
    assert forgotten_ignore_value({-1: 0.2, 0: 0.7, 1: 0.1}).value == -1  # below every class
    # background is 0 where masks hold it: never named unlabelled, however much it covers
    assert forgotten_ignore_value({-2: 0.01, -1: 0.01, 0: 0.9, 1: 0.08}) is None
    # class masks as data sets hold them: no note
    assert forgotten_ignore_value({0: 0.22, 255: 0.78}) is None  # one class: nothing to rescue
    assert forgotten_ignore_value({0: 0.95, 1: 0.03, 2: 0.02}) is None  # background dominates
    assert forgotten_ignore_value({0: 0.5, 1: 0.3, 2: 0.2}, {0, 1}) is None  # a small class
    assert forgotten_ignore_value({0: 0.1, 1: 0.8, 2: 0.1}) is None  # under the 85 %


def _scribbled_cells(root: Path) -> Path:
    """The test cells labelled on their first 6 columns only, the rest 128 (unlabelled)."""
    data = make_cells(root)
    for path in sorted((data / "masks").glob("*.png")):
        mask = np.array(Image.open(path))
        mask[:, 6:] = 128
        Image.fromarray(mask).save(path)
    return data


def test_check_data_and_the_plan_name_a_forgotten_ignore_value(tmp_path):
    from unetkit.data.checks import check_dataset
    from unetkit.data.fingerprint import fingerprint_dataset

    data = _scribbled_cells(tmp_path / "train")
    report = check_dataset(data)
    assert report.label_values == [0, 128, 255]
    (note,) = [n for n in report.notes if "--ignore-value" in n]
    assert note.startswith("mask value 128 covers 88 % of the masks")  # 42 of 48 columns
    assert not [n for n in check_dataset(data, ignore_value=128).notes if "--ignore-value" in n]
    lines = fingerprint_dataset(data).describe()
    assert any(line.startswith("note: mask value 128 covers 88 %") for line in lines)
    assert not any(
        "--ignore-value" in line for line in fingerprint_dataset(data, ignore_value=128).describe()
    )


def test_training_warns_of_a_value_complete_validation_masks_lack(tmp_path):
    train = _partial_cells(tmp_path / "train")
    for path in sorted((train / "masks").glob("*.png")):  # 7 over 5/8 of every mask
        mask = np.array(Image.open(path))
        mask[:, 18:] = UNLABELLED
        Image.fromarray(mask).save(path)
    val = make_cells(tmp_path / "val", n=2)  # complete masks: 0 and 255 only
    cfg = tiny_config(train, epochs=1).override({"data.val_dir": str(val)})
    trainer = Trainer(cfg, run_dir=tmp_path / "run", progress=False)
    trainer.setup()
    lines = trainer.header_lines()
    (warning,) = [line for line in lines if "--ignore-value" in line]
    assert warning.startswith("warning: mask value 7 covers 62 % of the training masks' pixels")
    assert "no validation mask holds it" in warning
    # the class-in-no-validation-image note does not also send the user for another --val
    assert not any("in no validation image" in line for line in lines)
    told = Trainer(
        cfg.override({"data.ignore_value": UNLABELLED}), run_dir=tmp_path / "r2", progress=False
    )
    told.setup()
    assert not any("--ignore-value" in line for line in told.header_lines())


def _evaluate_error(tmp_path, capsys, truth: list, pred: list) -> str:
    """``unetkit evaluate`` of one 2×2 prediction against its truth, refused: its stderr."""
    from unetkit.cli import main

    for name, rows in (("truth", truth), ("pred", pred)):
        (tmp_path / name).mkdir()
        Image.fromarray(np.array(rows, np.uint8)).save(tmp_path / name / "a.png")
    assert main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "truth")]) == 2
    return capsys.readouterr().err.strip()


def test_evaluate_names_the_flag_for_a_predicted_value_between_the_classes(tmp_path, capsys):
    err = _evaluate_error(tmp_path, capsys, [[0, 255], [255, 0]], [[128, 255], [128, 0]])
    assert err.endswith(
        "if 128 marked unlabelled pixels of the training masks, the model learnt it as a class: "
        "train it again with --ignore-value 128"
    )


def test_class_indices_written_as_values_get_no_ignore_value_hint(tmp_path, capsys):
    err = _evaluate_error(tmp_path, capsys, [[0, 100], [200, 0]], [[0, 1], [1, 0]])
    assert "write the predictions in the masks' values" in err and "--ignore-value" not in err

"""``evaluate_folders`` / ``unetkit evaluate``: values, files, policies, errors and the real data."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import adapted_rand_error, variation_of_information

from unetkit.cli import main
from unetkit.data.labels import LabelMap
from unetkit.errors import ConfigError, DataError
from unetkit.evaluation import evaluate_case, evaluate_folders, resolve_metrics
from unetkit.evaluation.boundary import boundary_scores, image_diagonal
from unetkit.evaluation.report import read_csv
from unetkit.io import ImageMeta, read_image, write_image

SIZE = 24


def _png(path, arr):
    write_image(path, np.asarray(arr, np.uint8)[None])


def _cases():
    """truth, pred per case: perfect, shifted, hallucinated (empty truth), both empty."""
    a = np.zeros((SIZE, SIZE), np.uint8)
    a[4:14, 4:14] = 255
    b_t = np.zeros_like(a)
    b_t[2:8, 2:8] = 255
    b_t[12:20, 12:22] = 255
    b_p = np.zeros_like(a)
    b_p[2:8, 3:9] = 255
    b_p[12:20, 12:20] = 255
    c_p = np.zeros_like(a)
    c_p[5:8, 5:8] = 255
    zero = np.zeros_like(a)
    return {"a": (a, a), "b": (b_t, b_p), "c": (zero, c_p), "d": (zero, zero)}


@pytest.fixture
def folders(tmp_path):
    truth_dir, pred_dir, image_dir = (
        tmp_path / "data" / "masks",
        tmp_path / "pred",
        tmp_path / "data" / "images",
    )
    rng = np.random.default_rng(0)
    for name, (t, p) in _cases().items():
        _png(truth_dir / f"{name}.png", t)
        _png(pred_dir / f"{name}.png", p)
        _png(image_dir / f"{name}.png", rng.integers(0, 255, (SIZE, SIZE)))
    (pred_dir / "notes.txt").write_text("not an image: ignored")
    return truth_dir, pred_dir


def test_values_policies_and_summary(folders):
    truth_dir, pred_dir = folders
    res = evaluate_folders(pred_dir, truth_dir)
    assert res.cases == ["a", "b", "c", "d"] and res.classes == ["255"]
    assert res.label_map.values == (0, 255)
    rows = {r["case"]: r for r in res.rows}
    cases = _cases()
    t, p = cases["b"][0] > 0, cases["b"][1] > 0
    assert rows["b"]["dice"] == pytest.approx(2 * (t & p).sum() / (t.sum() + p.sum()))
    assert rows["b"]["pixel_error"] == pytest.approx(np.mean(t != p))
    for key, value in boundary_scores(p, t).items():
        assert rows["b"][key] == pytest.approx(value)
    assert rows["a"]["dice"] == 1.0 and rows["a"]["hd95"] == 0.0 and rows["a"]["rand_error"] == 0.0
    assert rows["a"]["map"] == 1.0
    # hallucination on an empty truth: scores 0, distance = the image diagonal, Rand undefined
    assert rows["c"]["dice"] == 0.0 and rows["c"]["hd95"] == pytest.approx(
        image_diagonal((SIZE, SIZE))
    )
    assert math.isnan(rows["c"]["rand_error"]) and rows["c"]["obj_precision"] == 0.0
    # both empty: undefined, never 1
    assert (
        math.isnan(rows["d"]["dice"])
        and math.isnan(rows["d"]["hd"])
        and math.isnan(rows["d"]["map"])
    )
    stats = res.summary["per_class"]["255"]
    assert stats["dice"]["n"] == 3 and stats["dice"]["undefined"] == 1
    assert stats["dice"]["mean"] == pytest.approx((1.0 + rows["b"]["dice"] + 0.0) / 3)
    assert stats["hd95"]["penalized"] == 1 and stats["hd95"]["undefined"] == 1
    assert stats["hd95"]["mean"] == pytest.approx(
        (0.0 + rows["b"]["hd95"] + image_diagonal((SIZE, SIZE))) / 3
    )
    assert stats["dice"]["median"] == pytest.approx(rows["b"]["dice"])
    assert stats["dice"]["std"] == pytest.approx(np.std([1.0, rows["b"]["dice"], 0.0]))
    assert res.summary["case"]["pixel_error"]["n"] == 4
    assert res.mean("dice") == pytest.approx(stats["dice"]["mean"]) == res.mean("dice", "255")
    assert (res.summary["best_case"], res.summary["worst_case"]) == ("a", "c")
    assert set(res.summary["policies"]) == {"overlap", "boundary", "connectomics", "objects"}
    assert res.files == {}


def test_files_written(folders, tmp_path):
    truth_dir, pred_dir = folders
    out = tmp_path / "eval"
    res = evaluate_folders(pred_dir, truth_dir, out_dir=out, metrics=["overlap", "hd95"])
    assert set(res.files) == {
        "csv",
        "summary",
        "report",
        "boxplots",
        "overlay_best",
        "overlay_worst",
    }
    back = read_csv(res.files["csv"])
    assert [r["case"] for r in back] == ["a", "b", "c", "d"]
    for got, want in zip(back, res.rows):
        for key in ("dice", "hd95", "pixel_error"):
            assert (math.isnan(got[key]) and math.isnan(want[key])) or got[key] == pytest.approx(
                want[key]
            )
    text = res.files["summary"].read_text()
    summary = json.loads(
        text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}")
    )
    assert summary["per_class"]["255"]["dice"]["undefined"] == 1
    report = res.files["report"].read_text()
    assert (
        "| dice |" in report
        and "![box plots](boxplots.png)" in report
        and "overlay_worst_c.png" in report
    )
    overlay, _ = read_image(res.files["overlay_worst"])
    assert overlay.shape == (3, SIZE, SIZE) and overlay.dtype == np.uint8
    r, g, b = overlay[:, 6, 6].astype(int)  # a false positive of case c: red tint
    assert r > g and r > b
    assert res.files["overlay_best"].name == "overlay_best_a.png"


def test_field_of_view_restricts_the_counts(tmp_path):
    t = np.zeros((SIZE, SIZE), np.uint8)
    t[4:10, 4:10] = 255
    p = t.copy()
    p[20:23, 20:23] = 255  # an error outside the field of view
    fov = np.zeros_like(t)
    fov[:16, :16] = 255
    for folder, arr in (("truth", t), ("pred", p), ("fov", fov)):
        _png(tmp_path / folder / "x.png", arr)
    res = evaluate_folders(tmp_path / "pred", tmp_path / "truth", fov_dir=tmp_path / "fov")
    row = res.rows[0]
    assert (
        row["dice"] == 1.0 and row["pixel_error"] == 0.0 and row["hd"] == 0.0 and row["n_pred"] == 1
    )
    assert evaluate_folders(tmp_path / "pred", tmp_path / "truth").rows[0]["n_pred"] == 2


def test_probabilities_give_auc(tmp_path):
    rng = np.random.default_rng(1)
    t = np.zeros((SIZE, SIZE), np.uint8)
    t[5:15, 5:15] = 255
    prob = np.clip((t > 0) * 0.5 + rng.random(t.shape) * 0.6, 0, 1).astype(np.float32)
    _png(tmp_path / "truth" / "x.png", t)
    _png(tmp_path / "pred" / "x.png", (prob >= 0.5) * 255)
    write_image(tmp_path / "prob" / "x.tif", prob[None])
    res = evaluate_folders(
        tmp_path / "pred", tmp_path / "truth", prob_dir=tmp_path / "prob", metrics=["auc", "dice"]
    )
    from unetkit.evaluation.roc import roc_auc

    assert res.metrics == ("dice", "auc")
    assert res.rows[0]["auc"] == pytest.approx(roc_auc(prob, t > 0))
    # the layout of `unetkit predict --probabilities npz --overlay`: side files beside the labels
    np.savez_compressed(
        tmp_path / "pred" / "x_prob.npz",
        probabilities=np.stack([1 - prob, prob]).astype(np.float16),
    )
    _png(tmp_path / "pred" / "x_overlay.png", np.zeros((SIZE, SIZE)))
    res = evaluate_folders(
        tmp_path / "pred",
        tmp_path / "truth",
        prob_dir=tmp_path / "pred",
        metrics=["auc"],
        out_dir=tmp_path / "pred" / "evaluation",
    )
    assert res.cases == ["x"] and res.rows[0]["auc"] == pytest.approx(
        roc_auc(prob.astype(np.float16), t > 0)
    )


def test_instances_and_suffix_detection(tmp_path):
    t = np.zeros((SIZE, SIZE), np.uint16)
    t[2:10, 2:6], t[2:10, 6:10], t[2:10, 10:14] = 1, 2, 3  # three touching cells
    p = np.zeros_like(t)
    p[2:10, 2:14] = 5  # predicted as one
    write_image(tmp_path / "truth" / "x.png", t[None])
    write_image(tmp_path / "pred" / "x_pred.png", p[None])
    res = evaluate_folders(
        tmp_path / "pred", tmp_path / "truth", instances=True, metrics=["objects", "dice"]
    )
    row = res.rows[0]
    assert res.classes == ["object"] and row["dice"] == 1.0
    assert row["n_true"] == 3 and row["n_pred"] == 1 and row["obj_f1"] == 0.0  # each IoU 1/3
    sem = evaluate_folders(
        tmp_path / "pred",
        tmp_path / "truth",
        metrics=["objects"],
        label_map=LabelMap([0, 1, 2, 3, 5]),
    )
    assert [r["class"] for r in sem.rows] == ["1", "2", "3", "5"]


def test_binary_truth_with_instances_is_scored_by_components_as_the_prediction(tmp_path):
    """--instances with 0/255 truth and predictions: both sides' objects are their components
    (the truth was one object against the prediction's many), and the user is told touching
    truth objects count as one."""
    t = np.zeros((SIZE, SIZE), np.uint8)
    t[2:6, 2:6] = t[2:6, 10:14] = t[10:14, 2:6] = 255  # three separate objects
    p = t.copy()
    p[10:14, 2:6] = 0  # one missed
    write_image(tmp_path / "truth" / "x.png", t[None])
    write_image(tmp_path / "pred" / "x.png", p[None])
    res = evaluate_folders(
        tmp_path / "pred", tmp_path / "truth", instances=True, metrics=["objects"]
    )
    row = res.rows[0]
    assert row["n_true"] == 3 and row["n_pred"] == 2 and row["obj_f1"] == pytest.approx(0.8)
    (warning,) = res.summary["warnings"]
    assert warning.startswith("1 truth mask(s) (x) are binary: their objects are their connected")
    # an empty truth mask is not called binary; an instance folder keeps its ids: one object in
    # two parts stays one object, where another mask numbers two
    write_image(tmp_path / "truth" / "y.png", np.zeros_like(t)[None])
    write_image(tmp_path / "pred" / "y.png", np.zeros_like(t)[None])
    res = evaluate_folders(
        tmp_path / "pred", tmp_path / "truth", instances=True, metrics=["objects"]
    )
    assert res.summary["warnings"][0].startswith("1 truth mask(s) (x) are binary")
    ids = np.zeros((SIZE, SIZE), np.uint16)
    ids[2:6, 2:6] = ids[10:14, 10:14] = 1  # one object drawn in two parts
    two = np.zeros_like(ids)
    two[2:6, 2:6], two[10:14, 10:14] = 1, 2
    for name, mask in (("x", ids), ("y", two)):
        write_image(tmp_path / "truth" / f"{name}.png", mask[None])
        write_image(tmp_path / "pred" / f"{name}.png", (mask > 0).astype(np.uint8)[None])
    res = evaluate_folders(
        tmp_path / "pred", tmp_path / "truth", instances=True, metrics=["objects"]
    )
    assert [r["n_true"] for r in res.rows] == [1, 2] and res.summary["warnings"] == []


def test_truth_masks_named_with_a_suffix_are_matched_as_train_reads_them(tmp_path, capsys):
    """``01_mask.png`` beside ``images/01.png`` is case ``01``, scored against the prediction
    ``01.png`` (as ``unetkit predict`` names it): detected from the images, or from the
    predictions without images, or given with --mask-suffix; a mask lacking a given suffix is named."""
    rng = np.random.default_rng(1)
    data, pred = tmp_path / "data", tmp_path / "pred"
    for name, (t, p) in _cases().items():
        _png(data / "masks" / f"{name}_mask.png", t)
        _png(data / "images" / f"{name}.png", rng.integers(0, 255, (SIZE, SIZE)))
        _png(pred / f"{name}.png", p)
    _png(pred / "a_overlay.png", rng.integers(0, 255, (SIZE, SIZE)))  # a side file of predict
    plain = tmp_path / "plain"
    for name, (t, _) in _cases().items():
        _png(plain / f"{name}.png", t)
    expected = evaluate_folders(pred, plain, metrics=["dice"]).rows
    for truth in (data / "masks", data):  # the mask folder, or the dataset folder
        res = evaluate_folders(pred, truth, metrics=["dice"])
        assert [r["case"] for r in res.rows] == ["a", "b", "c", "d"]
        np.testing.assert_array_equal([r["dice"] for r in res.rows], [r["dice"] for r in expected])
    # without images beside the masks the predictions' names are the reference
    (data / "images").rename(tmp_path / "elsewhere")
    assert len(evaluate_folders(pred, data / "masks", metrics=["dice"]).rows) == 4
    # given: the same; a mask without it is named with the fix
    assert main(["evaluate", str(pred), str(data / "masks"), "--mask-suffix", "_mask"]) == 0
    (data / "masks" / "d_mask.png").rename(data / "masks" / "d.png")
    assert main(["evaluate", str(pred), str(data / "masks"), "--mask-suffix", "_mask"]) == 2
    err = capsys.readouterr().err
    assert "d.png: mask name lacks the mask suffix '_mask'" in err and "STEM_mask.png" in err
    # detected only where every mask has it: otherwise the stems are the cases (and d_… is named)
    with pytest.raises(DataError, match="no prediction for 3 of 4 truth mask"):
        evaluate_folders(pred, data / "masks", metrics=["dice"])


def test_an_instances_folder_beside_binary_masks_scores_objects_by_id(tmp_path):
    ids = np.zeros((SIZE, SIZE), np.uint16)
    ids[2:10, 2:6], ids[2:10, 6:10] = 4, 9  # two cells that touch: one blob in the binary mask
    ids[14:20, 14:20] = 2
    _png(tmp_path / "val" / "masks" / "x.png", (ids > 0) * 255)
    write_image(tmp_path / "val" / "instances" / "x.png", ids[None])
    pred = np.zeros((SIZE, SIZE), np.uint8)
    pred[2:10, 2:5] = pred[2:10, 7:10] = pred[14:20, 14:20] = 255  # the two apart, a gap between
    _png(tmp_path / "pred" / "x.png", pred)
    res = evaluate_folders(tmp_path / "pred", tmp_path / "val", metrics=["objects"])
    row = res.rows[0]
    # IoU 24/32 and 24/32 for the pair, 1 for the third: all three matched
    assert row["n_true"] == 3 and row["n_pred"] == 3 and row["obj_f1"] == 1.0
    assert res.summary["truth_objects"].endswith("instances")
    (tmp_path / "val" / "instances" / "x.png").rename(tmp_path / "val" / "instances" / "y.png")
    with pytest.raises(DataError, match=r"no instance file for 1 case\(s\): x"):
        evaluate_folders(tmp_path / "pred", tmp_path / "val", metrics=["objects"])
    (tmp_path / "val" / "instances" / "y.png").unlink()
    (tmp_path / "val" / "instances").rmdir()
    merged = evaluate_folders(tmp_path / "pred", tmp_path / "val", metrics=["objects"]).rows[0]
    assert merged["n_true"] == 2 and merged["obj_f1"] == pytest.approx(
        2 * 1 / 2 * 1 / 3 / (1 / 2 + 1 / 3)
    )


def test_instance_truth_found_with_no_flag_scores_label_predictions_by_components(tmp_path):
    """Truth masks of instance ids are recognised (no --instances); a 0/1 label prediction, as
    ``predict`` writes for such a model, is scored by its connected components, and an instance
    prediction by its ids."""
    from unetkit.demo.synthetic import synthetic_cells

    _, ids = synthetic_cells((120, 150), seed=5)
    write_image(tmp_path / "truth" / "x.png", ids[None].astype(np.uint16))
    labels = (ids > 0).astype(np.uint8)
    _png(tmp_path / "pred" / "x.png", labels)
    row = evaluate_folders(tmp_path / "pred", tmp_path / "truth", metrics=["objects"]).rows[0]
    n = int(ids.max())
    components = ndimage.label(labels, np.ones((3, 3)))[1]
    assert row["n_true"] == n and row["n_pred"] == components
    assert components > 1  # not one object of id 1
    write_image(tmp_path / "ids" / "x.png", ids[None].astype(np.uint16))
    same = evaluate_folders(tmp_path / "ids", tmp_path / "truth", metrics=["objects"]).rows[0]
    assert same["n_pred"] == n and same["obj_f1"] == 1.0


def test_jpeg_truth_masks_are_scored_as_binary(tmp_path):
    """Truth masks saved as JPEG (lossy) score a 0/255 PNG prediction of the same drawing at Dice
    ≈ 1, not as a many-class problem."""
    from tests.test_labels import _blobs, _jpeg

    mask = _blobs()
    _jpeg(tmp_path / "truth" / "x.jpg", np.stack([mask] * 3, -1), quality=60)
    _png(tmp_path / "pred" / "x.png", mask)
    result = evaluate_folders(tmp_path / "pred", tmp_path / "truth")
    assert result.label_map.threshold == 128
    assert result.rows[0]["dice"] > 0.999


def test_multiclass_rows_and_mean_over_classes(tmp_path):
    t = np.zeros((SIZE, SIZE), np.uint8)
    t[2:8, 2:8], t[12:20, 12:20] = 1, 2
    p = t.copy()
    p[12:20, 12:16] = 0
    _png(tmp_path / "truth" / "x.png", t)
    _png(tmp_path / "pred" / "x.png", p)
    res = evaluate_folders(
        tmp_path / "pred", tmp_path / "truth", metrics=["dice"], include_background=True
    )
    dice = {r["class"]: r["dice"] for r in res.rows}
    assert dice["1"] == 1.0 and dice["2"] == pytest.approx(2 * 32 / (64 + 32))
    assert res.summary["mean_over_classes"]["dice"] == pytest.approx(np.mean(list(dice.values())))


def test_3d_volumes_use_the_file_spacing(tmp_path):
    t = np.zeros((6, 10, 10), np.uint8)
    t[1:5, 2:8, 2:8] = 1
    p = np.zeros_like(t)
    p[3:5, 2:8, 2:8] = 1
    meta = ImageMeta(spacing=(4.0, 1.0, 1.0), spacing_unit="um")
    write_image(tmp_path / "truth" / "v.tif", t[None], meta)
    write_image(tmp_path / "pred" / "v.tif", p[None], meta)
    res = evaluate_folders(tmp_path / "pred", tmp_path / "truth", metrics=["hd", "dice"])
    assert (
        res.rows[0]["hd"] == pytest.approx(boundary_scores(p, t, (4.0, 1.0, 1.0))["hd"])
        and res.rows[0]["hd"] == 8.0
    )
    assert res.summary["distance_unit"] == "um"


def test_evaluate_case_direct():
    t = np.zeros((8, 8), int)
    t[2:6, 2:6] = 1
    row = evaluate_case(t, t, 2, metrics=["dice", "hd95"])[0]
    assert (row["dice"], row["hd95"], row["truth_pixels"]) == (1.0, 0.0, 16)
    with pytest.raises(ConfigError, match="class indices \\[3\\] outside 0..1"):
        evaluate_case(t, t, 2, classes=[3])


def test_resolve_metrics():
    assert resolve_metrics(["hd95", "overlap"])[:2] == ("dice", "iou")
    assert resolve_metrics("dice,voi") == ("dice", "voi")
    assert "auc" not in resolve_metrics(None) and "auc" in resolve_metrics(None, with_auc=True)
    assert (
        len(resolve_metrics(["all"])) == 24 and len(resolve_metrics(["all"], with_auc=True)) == 25
    )
    with pytest.raises(ConfigError, match="unknown metric 'dise'; valid groups: all, overlap"):
        resolve_metrics(["dise"])
    with pytest.raises(ConfigError, match="auc metric needs probability maps"):
        resolve_metrics(["auc"])


# ------------------------------------------------------------------------------------------ errors
def test_missing_prediction_is_named(folders):
    truth_dir, pred_dir = folders
    (pred_dir / "b.png").unlink()
    with pytest.raises(
        DataError, match=r"no prediction for 1 of 4 truth mask\(s\) of .*masks: b.png"
    ):
        evaluate_folders(pred_dir, truth_dir)


def test_extra_prediction_is_named(folders):
    truth_dir, pred_dir = folders
    _png(pred_dir / "zz.png", np.zeros((SIZE, SIZE)))
    with pytest.raises(DataError, match=r"no truth mask for 1 prediction\(s\) of .*pred: zz.png"):
        evaluate_folders(pred_dir, truth_dir)


def test_shape_mismatch_names_the_prediction(folders):
    truth_dir, pred_dir = folders
    _png(pred_dir / "a.png", np.zeros((SIZE, SIZE + 1)))
    with pytest.raises(
        DataError, match=r"a.png: prediction shape \(24, 25\) differs from the truth mask a.png"
    ):
        evaluate_folders(pred_dir, truth_dir)


def test_prediction_values_outside_the_label_map(folders):
    truth_dir, pred_dir = folders
    _png(pred_dir / "c.png", np.full((SIZE, SIZE), 128))
    with pytest.raises(
        DataError, match=r"pred/c.png: unexpected label values 128 \(the label map has 0, 255\)"
    ):
        evaluate_folders(pred_dir, truth_dir)


def test_missing_field_of_view(folders, tmp_path):
    truth_dir, pred_dir = folders
    _png(tmp_path / "fov" / "a.png", np.ones((SIZE, SIZE)))
    with pytest.raises(DataError, match=r"no field of view for 3 case\(s\): b, c, d"):
        evaluate_folders(pred_dir, truth_dir, fov_dir=tmp_path / "fov")


def test_empty_and_missing_folders(folders, tmp_path):
    truth_dir, _ = folders
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no image files in the prediction folder"):
        evaluate_folders(tmp_path / "empty", truth_dir)
    with pytest.raises(DataError, match="nowhere: truth mask folder not found"):
        evaluate_folders(tmp_path / "empty", tmp_path / "nowhere")


# --------------------------------------------------------------------------------------------- CLI
def test_cli_subprocess(folders, tmp_path):
    truth_dir, pred_dir = folders
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "unetkit",
            "evaluate",
            str(pred_dir),
            str(truth_dir.parent),
            "--out",
            str(tmp_path / "o"),
            "--metrics",
            "dice",
            "hd95",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (
        "4 case(s), classes 255" in done.stdout
        and "dice" in done.stdout
        and "penalized" in done.stdout
    )
    assert (tmp_path / "o" / "per_case.csv").is_file() and (tmp_path / "o" / "report.md").is_file()


def test_cli_errors_exit_2(folders, capsys):
    truth_dir, pred_dir = folders
    assert main(["evaluate", str(pred_dir), str(truth_dir), "--metrics", "auc"]) == 2
    assert "auc metric needs probability maps" in capsys.readouterr().err
    assert (
        main(["evaluate", str(pred_dir), str(truth_dir), "--labels", "0,255", "--instances"]) == 2
    )
    assert "--labels does not apply to --instances" in capsys.readouterr().err


# --------------------------------------------------------------------------------------- real data
def _eroded_copy(src, dst, value=255):
    dst.mkdir(parents=True)
    for path in sorted(src.glob("*.png")):
        arr, _ = read_image(path)
        fg = ndimage.binary_erosion(arr[0] == value, ndimage.generate_binary_structure(2, 1))
        _png(dst / path.name, fg * value)


def test_isbi_masks_against_themselves_and_an_eroded_copy(shared_data, tmp_path):
    masks = shared_data / "isbi2012" / "val" / "masks"
    same = evaluate_folders(
        masks, masks, metrics=["overlap", "boundary", "connectomics", "objects"]
    )
    for metric, perfect in (
        ("dice", 1.0),
        ("hd95", 0.0),
        ("rand_error", 0.0),
        ("voi", 0.0),
        ("map", 1.0),
        ("pixel_error", 0.0),
    ):
        assert same.mean(metric) == perfect, metric
    _eroded_copy(masks, tmp_path / "eroded")
    res = evaluate_folders(tmp_path / "eroded", masks, metrics=["dice", "hd95", "connectomics"])
    for row in res.rows:
        truth = read_image(masks / f"{row['case']}.png")[0][0] == 255
        pred = read_image(tmp_path / "eroded" / f"{row['case']}.png")[0][0] == 255
        assert row["dice"] == pytest.approx(2 * (truth & pred).sum() / (truth.sum() + pred.sum()))
        # distances from scipy's distance transform of the full image (no cropping), surfaces by erosion
        st, sp = truth & ~ndimage.binary_erosion(truth), pred & ~ndimage.binary_erosion(pred)
        d_p, d_t = ndimage.distance_transform_edt(~st)[sp], ndimage.distance_transform_edt(~sp)[st]
        assert row["hd95"] == pytest.approx(max(np.percentile(d_p, 95), np.percentile(d_t, 95)))
        cells_t, _ = ndimage.label(truth)
        cells_p, _ = ndimage.label(pred)
        singles = cells_p.copy()
        gap = (cells_p == 0) & (cells_t > 0)
        singles[gap] = cells_p.max() + 1 + np.arange(gap.sum())
        assert row["rand_error"] == pytest.approx(adapted_rand_error(cells_t, singles)[0], rel=1e-9)
        split, merge = variation_of_information(cells_t, singles, ignore_labels=(0,))
        assert (row["voi_split"], row["voi_merge"]) == (
            pytest.approx(split, rel=1e-9),
            pytest.approx(merge, abs=1e-9),
        )
    assert 0.95 < res.mean("dice") < 0.97 and 0.03 < res.mean("rand_error") < 0.06
    # scikit-image's own convention (predicted membrane = one segment) on the raw components
    raw = evaluate_folders(
        tmp_path / "eroded", masks, metrics=["rand_error", "voi"], pred_background="segment"
    )
    for row in raw.rows:
        cells_t, _ = ndimage.label(read_image(masks / f"{row['case']}.png")[0][0] == 255)
        cells_p, _ = ndimage.label(
            read_image(tmp_path / "eroded" / f"{row['case']}.png")[0][0] == 255
        )
        assert row["rand_error"] == pytest.approx(adapted_rand_error(cells_t, cells_p)[0], rel=1e-9)
        assert row["voi"] == pytest.approx(
            variation_of_information(cells_t, cells_p, ignore_labels=(0,)).sum(), rel=1e-9
        )


def test_drive_inside_the_field_of_view(shared_data, tmp_path):
    val = shared_data / "drive" / "val"
    same = evaluate_folders(val / "masks", val / "masks", fov_dir=val / "fov", metrics=["overlap"])
    assert same.mean("dice") == 1.0 and same.summary["case"]["pixel_error"]["max"] == 0.0
    _eroded_copy(val / "masks", tmp_path / "eroded")
    res = evaluate_folders(
        tmp_path / "eroded", val / "masks", fov_dir=val / "fov", metrics=["overlap"]
    )
    for row in res.rows:
        fov = read_image(val / "fov" / f"{row['case']}.png")[0][0] > 0
        truth = (read_image(val / "masks" / f"{row['case']}.png")[0][0] == 255)[fov]
        pred = (read_image(tmp_path / "eroded" / f"{row['case']}.png")[0][0] == 255)[fov]
        assert row["recall"] == pytest.approx(
            pred.sum() / truth.sum()
        )  # erosion: every predicted pixel is true
        assert row["pixel_error"] == pytest.approx(np.mean(truth != pred))


def test_a_dataset_folder_with_aliased_names_stands_for_its_masks(tmp_path):
    """``Ground Truth/`` beside ``Images/``: the dataset folder is the truth, its images the
    overlays' background."""
    truth = np.zeros((SIZE, SIZE), np.uint8)
    truth[4:12, 4:12] = 255
    _png(tmp_path / "set" / "Ground Truth" / "x.png", truth)
    _png(tmp_path / "set" / "Images" / "x.png", truth // 2)
    _png(tmp_path / "pred" / "x.png", truth)
    res = evaluate_folders(tmp_path / "pred", tmp_path / "set", tmp_path / "out", metrics=["dice"])
    assert res.cases == ["x"] and res.rows[0]["dice"] == 1.0
    assert "overlay_best" in res.files  # one case: best and worst are the same overlay


def test_3d_object_ids_scored_as_classes_are_warned_about(tmp_path, capsys):
    """3D masks of object ids are never guessed as instances (an organ atlas looks the same):
    scored as classes against binary predictions, the user is told to pass --instances."""
    truth = np.zeros((1, 6, 16, 16), np.uint16)
    for k in range(6):  # six objects numbered 1 … 6
        truth[0, k, 2 + 2 * k : 4 + 2 * k, 3:7] = k + 1
    pred = (truth > 0).astype(np.uint8)
    write_image(tmp_path / "truth" / "v.tif", truth)
    write_image(tmp_path / "pred" / "v.tif", pred)
    assert main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "truth")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "unetkit evaluate: warning: the truth masks hold 7 values, read as 7 classes, but the "
        "predictions only 0 and 1: are the truth values object ids? evaluate with --instances to "
        "score objects"
    ]
    assert main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "truth"), "--instances"]) == 0
    assert capsys.readouterr().err == ""
    # binary truth, or predictions that use the classes: no warning
    res = evaluate_folders(tmp_path / "pred", tmp_path / "pred")
    assert res.summary["warnings"] == []
    write_image(tmp_path / "multi" / "v.tif", truth)
    assert evaluate_folders(tmp_path / "multi", tmp_path / "truth").summary["warnings"] == []
    # a 3-class task whose model never predicts class 2: no talk of object ids
    write_image(tmp_path / "three" / "v.tif", np.minimum(truth, 2).astype(np.uint16))
    assert evaluate_folders(tmp_path / "pred", tmp_path / "three").summary["warnings"] == []
    # but masks of three objects each (0 … 3, read as classes) beside 0/1 predictions: told
    write_image(tmp_path / "few" / "v.tif", np.minimum(truth, 3).astype(np.uint16))
    (warning,) = evaluate_folders(tmp_path / "pred", tmp_path / "few").summary["warnings"]
    assert warning.startswith("the truth masks hold 4 values, read as 4 classes")


def test_a_3d_prediction_elsewhere_in_the_world_than_its_truth_is_refused(tmp_path, capsys):
    """Scored voxel by voxel, a prediction must lie on its truth's grid: the same size but another
    voxel size or origin (a header rewritten by another tool) is one line naming the prediction."""
    pytest.importorskip("SimpleITK")
    geometry = dict(spacing=(3.0, 0.8, 0.8), origin=(-10.0, 5.0, 2.0), direction=np.eye(3))
    truth = np.zeros((1, 6, 10, 12), np.uint8)
    truth[0, 2:4, 3:7, 3:8] = 1
    write_image(tmp_path / "truth" / "v.nrrd", truth, ImageMeta(**geometry))
    write_image(tmp_path / "same" / "v.nrrd", truth, ImageMeta(**geometry))
    assert evaluate_folders(tmp_path / "same", tmp_path / "truth").rows[0]["dice"] == 1.0
    moved = {**geometry, "origin": (-10.0, 35.0, 2.0)}
    write_image(tmp_path / "moved" / "v.nrrd", truth, ImageMeta(**moved))
    assert main(["evaluate", str(tmp_path / "moved"), str(tmp_path / "truth")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"unetkit evaluate: error: {tmp_path / 'moved' / 'v.nrrd'}: prediction origin -10×35×2 "
        "differs from its truth's -10×5×2 (x×y×z in ITK's LPS mm; v.nrrd): its size matches, so "
        "fix its header to the "
        "truth's (or resample it onto the truth)"
    ]


def test_an_nnunet_dataset_folder_as_truth_names_its_label_folders(tmp_path, capsys):
    """Given the dataset folder, evaluate used to take imagesTr … labelsTs for per-object mask
    folders ("no prediction for 4 of 4 truth masks"); it names the label folders instead, and the
    labelsTs folder itself is scored."""
    truth = np.zeros((1, 8, 8), np.uint8)
    truth[0, 2:5, 2:6] = 1
    data = tmp_path / "Dataset001_X"
    for name in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        write_image(data / name / ("c_0000.png" if name.startswith("images") else "c.png"), truth)
    write_image(tmp_path / "pred" / "c.png", truth)
    assert main(["evaluate", str(tmp_path / "pred"), str(data)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"unetkit evaluate: error: {data}: an nnU-Net dataset folder: give the folder of the masks "
        f"the predictions are of as the truth ({data / 'labelsTs'} or {data / 'labelsTr'})"
    )
    assert evaluate_folders(tmp_path / "pred", data / "labelsTs").rows[0]["dice"] == 1.0


def test_an_instance_label_map_given_scores_predictions_by_their_components(tmp_path):
    """predict --truth passes an instance-trained model's label map: its 0/1 labels are scored by
    their components against the truth's ids (it counted all foreground as one object), and 0/255
    truth by its components too."""
    from unetkit.data.labels import INSTANCE_LABEL_MAP

    ids = np.zeros((SIZE, SIZE), np.uint16)
    ids[2:6, 2:6], ids[2:6, 10:14], ids[10:14, 2:6] = 1, 2, 3
    write_image(tmp_path / "truth" / "x.png", ids[None])
    write_image(tmp_path / "binary" / "x.png", ((ids > 0) * 255).astype(np.uint8)[None])
    pred = (ids > 0).astype(np.uint8)
    pred[10:14, 2:6] = 0  # one missed
    write_image(tmp_path / "pred" / "x.png", pred[None])
    for truth in ("truth", "binary"):
        res = evaluate_folders(
            tmp_path / "pred", tmp_path / truth, label_map=INSTANCE_LABEL_MAP, metrics=["objects"]
        )
        row = res.rows[0]
        assert (row["n_true"], row["n_pred"]) == (3, 2), truth
        assert row["obj_f1"] == pytest.approx(0.8)


def test_evaluate_instances_scores_the_instance_files_predict_wrote(tmp_path):
    """--instances scores what predict --instances wrote (<case>_instances.tif: touching objects
    split) rather than the label image's components, and the truth's instances/ folder beside its
    binary masks rather than their components."""
    ids = np.zeros((SIZE, SIZE), np.uint16)
    ids[2:10, 2:6], ids[2:10, 6:10], ids[14:20, 14:20] = 1, 2, 3  # two touching, one apart
    _png(tmp_path / "truth" / "masks" / "x.png", (ids > 0) * 255)
    write_image(tmp_path / "truth" / "instances" / "x.png", ids[None])
    _png(tmp_path / "pred" / "x.png", (ids > 0).astype(np.uint8))  # labels: the pair is one blob
    write_image(tmp_path / "pred" / "x_instances.tif", ids[None])  # the split objects
    res = evaluate_folders(
        tmp_path / "pred", tmp_path / "truth" / "masks", instances=True, metrics=["objects"]
    )
    row = res.rows[0]
    assert (row["n_true"], row["n_pred"], row["obj_f1"]) == (3, 3, 1.0)
    assert res.summary["truth_objects"] == f"ids in {tmp_path / 'truth' / 'instances'}"
    assert res.summary["prediction_objects"] == "the _instances files"
    assert res.summary["warnings"] == []
    # without --instances: the labels' components, and a warning names the files left aside
    _png(tmp_path / "pred255" / "x.png", (ids > 0) * 255)  # labels in the truth's values
    write_image(tmp_path / "pred255" / "x_instances.tif", ids[None])
    plain = evaluate_folders(
        tmp_path / "pred255", tmp_path / "truth" / "masks", metrics=["objects"]
    )
    assert plain.rows[0]["n_pred"] == 2
    assert any("--instances scores those files' objects" in w for w in plain.summary["warnings"])
    # several classes: --instances would read them as ids, so no such advice
    three = np.where(ids == 3, 2, ids > 0).astype(np.uint8)
    _png(tmp_path / "t3" / "x.png", three)
    _png(tmp_path / "p3" / "x.png", three)
    write_image(tmp_path / "p3" / "x_instances.tif", ids[None])
    multi = evaluate_folders(tmp_path / "p3", tmp_path / "t3", metrics=["objects"])
    assert not any("--instances" in w for w in multi.summary["warnings"])
    # without the instance files: the labels' components (2 objects), and the summary says so
    (tmp_path / "pred" / "x_instances.tif").unlink()
    res = evaluate_folders(
        tmp_path / "pred", tmp_path / "truth" / "masks", instances=True, metrics=["objects"]
    )
    assert (res.rows[0]["n_true"], res.rows[0]["n_pred"]) == (3, 2)
    assert res.summary["prediction_objects"] == "labels"


def test_a_0_1_prediction_of_0_255_masks_gets_the_fix(tmp_path, capsys):
    """Another tool's 0/1 prediction against 0/255 truth: one line that says what to change."""
    t = np.zeros((SIZE, SIZE), np.uint8)
    t[2:6, 2:6] = 255
    _png(tmp_path / "truth" / "x.png", t)
    _png(tmp_path / "pred" / "x.png", (t > 0).astype(np.uint8))
    assert main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "truth")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"unetkit evaluate: error: {tmp_path / 'pred' / 'x.png'}: unexpected label values 1 (the "
        "label map has 0, 255): predictions are scored in the truth masks' values; a 0/1 "
        "prediction of 0/255 masks? write its 1 as 255 (unetkit predict writes the values it was "
        "trained on)"
    )


def test_instance_files_for_some_cases_only_are_not_mixed_in(tmp_path):
    """Scoring some cases by their _instances files and others by their labels would mix two
    object counts: all are scored by the labels, with a warning."""
    ids = np.zeros((SIZE, SIZE), np.uint16)
    ids[2:10, 2:6], ids[2:10, 6:10] = 1, 2
    for name in ("x", "y"):
        write_image(tmp_path / "truth" / f"{name}.png", ids[None])
        _png(tmp_path / "pred" / f"{name}.png", (ids > 0).astype(np.uint8))
    write_image(tmp_path / "pred" / "x_instances.tif", ids[None])
    res = evaluate_folders(
        tmp_path / "pred",
        tmp_path / "truth",
        instances=True,
        metrics=["objects"],
        out_dir=tmp_path / "out",
    )
    assert res.summary["prediction_objects"] == "labels"
    # the warning is in the report too, before the scores it qualifies
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"## Warnings\n\n- {res.summary['warnings'][0]}\n" in report
    assert report.index("## Warnings") < report.index("## Summary")
    assert res.summary["warnings"] == [
        "only 1 of 2 case(s) have a _instances file, so every case is scored by its label image's "
        "objects"
    ]
    assert [r["n_pred"] for r in res.rows] == [1, 1]


def test_objects_pooled_over_the_images_count_the_false_objects_of_blank_fields(tmp_path):
    """Per image, a blank field with 36 false objects scores F1 0, as one with a single false
    object would; pooled over the images (StarDist's by_image=False) the 36 count. Checked
    against counts made by hand."""
    truth = np.zeros((SIZE, SIZE), np.uint8)
    truth[2:8, 2:8] = truth[12:18, 12:18] = 255  # two cells
    found = truth.copy()
    found[12:18, 12:18] = 0  # one of them found
    specks = np.zeros((SIZE, SIZE), np.uint8)
    specks[1::4, 1::4] = 255  # 6 × 6 = 36 one-pixel objects
    blank = np.zeros((SIZE, SIZE), np.uint8)
    for name, t, p in (("a", truth, found), ("b", blank, specks), ("c", blank, blank)):
        _png(tmp_path / "truth" / f"{name}.png", t)
        _png(tmp_path / "pred" / f"{name}.png", p)
    res = evaluate_folders(tmp_path / "pred", tmp_path / "truth", metrics=["objects"])
    pooled = res.summary["objects_pooled"]["255"]
    n_pred = 1 + 36  # one cell in a, 36 specks in b
    assert (pooled["tp"], pooled["n_true"], pooled["n_pred"]) == (1, 2, n_pred)
    assert pooled["obj_precision"] == pytest.approx(1 / n_pred)
    assert pooled["obj_recall"] == pytest.approx(1 / 2)
    assert pooled["obj_f1"] == pytest.approx(2 * 1 / (2 + n_pred))
    assert (pooled["images_without_objects"], pooled["predicted_there"]) == (2, 36)
    assert "objects pooled over the 3 image(s), IoU ≥ 0.5:\n  class 255: F1 0.0513" in res.format()
    assert "; 36 predicted in the 2 image(s) without true objects" in res.format()


def test_names_that_only_continue_a_number_are_not_paired_by_a_suffix(tmp_path):
    """Truth 1, 2, 3 beside predictions 10, 20, 30: "0" continues the numbers, it is no suffix
    such as _pred, so nothing is paired (1 ↔ 10 was scored silently); training's discovery
    likewise never reads mask 10 as image 1's."""
    from unetkit.data.discovery import _detect_suffix, continues_number

    half = np.zeros((SIZE, SIZE))
    half[: SIZE // 2] = 255
    for name in ("1", "2", "3"):
        _png(tmp_path / "truth" / f"{name}.png", half)
        _png(tmp_path / "pred" / f"{name}0.png", half)
    with pytest.raises(DataError, match=r"no prediction for 3 of 3 truth mask\(s\)"):
        evaluate_folders(tmp_path / "pred", tmp_path / "truth")
    assert _detect_suffix(["1", "2", "3"], ["10", "20", "30"]) == ""
    assert _detect_suffix(["1", "2"], ["1_mask", "2_mask"]) == "_mask"
    assert _detect_suffix(["a", "b"], ["a1", "b1"]) == "1"  # a digit after a letter may be one
    assert continues_number("img1", "0") and not continues_number("img", "0")
    # a suffix that starts with a letter after a digit is still found: 1_pred, 1pred
    for name in ("1", "2", "3"):
        (tmp_path / "pred" / f"{name}0.png").rename(tmp_path / "pred" / f"{name}pred.png")
    assert [r["case"] for r in evaluate_folders(tmp_path / "pred", tmp_path / "truth").rows] == [
        "1",
        "2",
        "3",
    ]


def test_only_the_side_files_predict_writes_are_left_out(folders):
    """img_2 beside img is a prediction of its own: without a truth mask it is named, not left
    out as if it were a side file of img (only _prob, _overlay, _instances, _rois are)."""
    truth_dir, pred_dir = folders
    _png(pred_dir / "a_2.png", np.zeros((SIZE, SIZE)))
    _png(pred_dir / "a_overlay.png", np.zeros((SIZE, SIZE)))
    with pytest.raises(DataError, match=r"no truth mask for 1 prediction\(s\) of .*pred: a_2.png"):
        evaluate_folders(pred_dir, truth_dir)
    (pred_dir / "a_2.png").unlink()
    assert len(evaluate_folders(pred_dir, truth_dir).rows) == 4  # the overlay is not scored


def test_masks_with_their_own_suffix_get_the_flag_in_the_error(tmp_path):
    half = np.zeros((SIZE, SIZE))
    half[: SIZE // 2] = 255
    for name in ("a", "b"):
        _png(tmp_path / "truth" / f"{name}_mask.png", half)
        _png(tmp_path / "pred" / f"{name}_pred.png", half)
    with pytest.raises(
        DataError,
        match=r"matched by stem; if the masks' names add _mask to the "
        r"case's, pass --mask-suffix _mask\)$",
    ):
        evaluate_folders(tmp_path / "pred", tmp_path / "truth")
    rows = evaluate_folders(tmp_path / "pred", tmp_path / "truth", mask_suffix="_mask").rows
    assert [r["case"] for r in rows] == ["a", "b"]


def test_blank_truth_takes_its_classes_from_the_predictions(tmp_path, capsys):
    """Blank fields (truth all background) are scored against what was predicted there; truth
    and predictions of one value both is an error naming --labels, not "nothing to learn"."""
    blank = np.zeros((SIZE, SIZE))
    speck = blank.copy()
    speck[3:6, 3:6] = 255
    for name, pred in (("e1", speck), ("e2", blank)):
        _png(tmp_path / "truth" / f"{name}.png", blank)
        _png(tmp_path / "pred" / f"{name}.png", pred)
    res = evaluate_folders(tmp_path / "pred", tmp_path / "truth")
    assert res.summary["label_map"]["values"] == [0, 255]
    e1, e2 = res.rows
    assert e1["precision"] == 0 and e1["n_pred"] == 1 and math.isnan(e2["dice"])
    (tmp_path / "pred" / "e1.png").unlink()
    _png(tmp_path / "pred" / "e1.png", blank)
    code = main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "truth")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "every truth mask and every prediction (2 each) holds the single value 0" in err
    assert "--labels 0,255" in err
    assert (
        main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "truth"), "--labels", "0,255"])
        == 0
    )


def test_a_predicted_class_no_truth_mask_holds_gets_the_labels_that_name_it(tmp_path, capsys):
    truth = np.zeros((SIZE, SIZE), np.uint8)
    truth[2:8, 2:8], truth[12:18, 12:18] = 1, 2
    pred = truth.copy()
    pred[20:23, 20:23] = 3  # a class the model knows and this test set lacks
    _png(tmp_path / "truth" / "a.png", truth)
    _png(tmp_path / "pred" / "a.png", pred)
    assert main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "truth")]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            "if 3 is a class no truth mask holds, name every class with --labels 0,1,2,3; else write "
            "the predictions in the masks' values"
        )
    )
    args = ["evaluate", str(tmp_path / "pred"), str(tmp_path / "truth"), "--labels", "0,1,2,3"]
    assert main(args) == 0


def test_a_binary_truth_beside_a_prediction_of_another_class_gets_the_labels_hint(tmp_path):
    truth = np.zeros((SIZE, SIZE), np.uint8)
    truth[2:8, 2:8] = 255
    pred = truth.copy()
    pred[12:15, 12:15] = 128
    _png(tmp_path / "truth" / "a.png", truth)
    _png(tmp_path / "pred" / "a.png", pred)
    with pytest.raises(
        DataError,
        match=r"if 128 is a class no truth mask holds, name every class "
        r"with --labels 0,128,255",
    ):
        evaluate_folders(tmp_path / "pred", tmp_path / "truth")
    _png(tmp_path / "pred" / "a.png", (truth > 0).astype(np.uint8))  # 0/1: the other fix
    with pytest.raises(DataError, match=r"a 0/1 prediction of 0/255 masks\? write its 1 as 255"):
        evaluate_folders(tmp_path / "pred", tmp_path / "truth")


def test_object_ids_scored_against_class_masks_are_told_to_use_instances(tmp_path, capsys):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    truth.mkdir()
    pred.mkdir()
    mask = np.zeros((40, 40), np.uint8)
    for i in range(6):
        mask[2 + 6 * i : 6 + 6 * i, 5:12] = 255
    write_image(truth / "a.png", mask[None])
    ids = ndimage.label(mask > 0)[0].astype(np.uint8)  # 6 objects, ids 1…6
    write_image(pred / "a.png", ids[None])
    assert main(["evaluate", str(pred), str(truth)]) == 2
    err = capsys.readouterr().err
    assert "object ids? evaluate with --instances" in err and "--labels" not in err
    assert main(["evaluate", str(pred), str(truth), "--instances", "--json"]) == 0


def test_object_scores_of_an_image_with_objects_on_one_side_only_count_as_penalized(tmp_path):
    # e: no true object, two predicted (recall 0 by the policy); f: objects on both sides
    e_truth, e_pred = np.zeros((SIZE, SIZE), np.uint8), np.zeros((SIZE, SIZE), np.uint8)
    e_pred[2:5, 2:5] = e_pred[10:13, 10:13] = 255
    f_truth = np.zeros((SIZE, SIZE), np.uint8)
    f_truth[2:6, 2:6] = 255
    for name, truth, pred in (("e", e_truth, e_pred), ("f", f_truth, f_truth)):
        _png(tmp_path / "truth" / f"{name}.png", truth)
        _png(tmp_path / "pred" / f"{name}.png", pred)
    res = evaluate_folders(
        tmp_path / "pred", tmp_path / "truth", metrics=["objects"], label_map=LabelMap([0, 255])
    )
    stats = res.summary["per_class"]["255"]
    assert stats["obj_recall"]["penalized"] == 1 and stats["obj_recall"]["mean"] == 0.5
    assert stats["n_pred"]["penalized"] == 0

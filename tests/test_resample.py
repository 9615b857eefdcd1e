"""Reduced resolution: resampling images, masks and logits; the planner's resolution rule; training
at a scale and predicting back to each image's own size (Python API, CLI, ONNX export)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from unetkit import cli
from unetkit.checkpoint import load_checkpoint
from unetkit.commands.train import planned_values
from unetkit.data.dataset import prepare_data
from unetkit.data.objects import object_thickness
from unetkit.data.resample import (
    resample_image,
    resample_instances,
    resample_labels,
    resample_logits,
    scale_factors,
    scaled_shape,
)
from unetkit.errors import ConfigError, DataError
from unetkit.inference.large import predict_large
from unetkit.inference.predictor import Predictor
from unetkit.models import create_model
from unetkit.planning.planner import LR, MIN_SCALE, make_plan, plan_lr, plan_patch, plan_scale

from .test_planner import FakeFingerprint, speed
from .test_training import make_cells


# -- the resampling functions ---------------------------------------------------------------------
def test_scale_factors_and_shapes():
    assert scale_factors(None, 2) is None and scale_factors(1, 3) is None
    assert scale_factors([0.5], 2) == (0.5, 0.5)
    assert scale_factors([1, 0.5, 0.5], 3) == (1.0, 0.5, 0.5)
    assert scaled_shape((481, 1348), 0.5) == (240, 674)  # rounded half to even: 240.5 → 240
    assert scaled_shape((3, 5), 0.1) == (1, 1)  # never below one pixel
    assert scaled_shape((7, 9), None) == (7, 9)
    with pytest.raises(ConfigError, match="scale"):
        scale_factors([0.5, 0.5, 0.5], 2)
    with pytest.raises(ConfigError, match="positive"):
        scale_factors(0, 2)


def test_image_shrinks_by_area_mean_and_grows_linearly():
    img = np.arange(2 * 4 * 6, dtype=np.float32).reshape(2, 4, 6)
    half = resample_image(img, (2, 3))
    # each output pixel is the mean of its 2×2 block
    expected = img.reshape(2, 2, 2, 3, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(half, expected, rtol=0, atol=1e-5)
    grown = resample_image(np.full((1, 5, 5), 7.0, np.float32), (11, 13))
    assert grown.shape == (1, 11, 13) and np.allclose(grown, 7.0)
    mixed = resample_image(img, (2, 12))  # one axis shrinks, the other grows
    assert mixed.shape == (2, 2, 12) and mixed.dtype == np.float32
    vol = resample_image(np.ones((1, 8, 8, 8), np.float32), (4, 4, 4))
    assert vol.shape == (1, 4, 4, 4) and np.allclose(vol, 1)


def test_labels_resample_per_class_and_instances_keep_their_ids():
    mask = np.zeros((40, 40), np.int64)
    mask[4:20, 4:20] = 1  # 16×16 square
    mask[24:36, 24:36] = 2
    small = resample_labels(mask, (20, 20), 3)
    assert small.dtype == np.int64 and set(np.unique(small)) == {0, 1, 2}
    assert (small == 1).sum() == 64 and (small == 2).sum() == 36  # (16/2)², (12/2)²
    inst = np.zeros((40, 40), np.uint16)
    inst[4:20, 4:20], inst[22:38, 4:20] = 7, 9
    out = resample_instances(inst, (20, 20))
    assert out.dtype == np.uint16 and set(np.unique(out)) == {0, 7, 9}
    logits = torch.randn(3, 10, 12)
    assert resample_logits(logits, (20, 24)).shape == (3, 20, 24)
    assert resample_logits(logits, (10, 12)) is logits


def test_thickness_is_the_largest_inscribed_diameter_not_the_size():
    lab = np.zeros((60, 101), np.int32)
    lab[2:5, 1:99] = 1  # a bar 3 px thick, 98 long
    yy, xx = np.mgrid[:60, :101]
    lab[(yy - 30) ** 2 + (xx - 50) ** 2 <= 20**2] = 2  # a disc of diameter 41
    alone = object_thickness(lab)
    lab[30, 0:30] = 3  # a 1-px line up to the disc's edge: measured apart
    thick = object_thickness(lab)
    assert thick[0] == 3.0 and thick[2] == 1.0
    assert 39 <= thick[1] <= alone[1] <= 41  # the disc loses only the pixel the line touches
    cube = np.zeros((20, 20, 20), np.uint8)
    cube[5:15, 5:15, 5:15] = 4
    assert object_thickness(cube).tolist() == [9.0]
    assert object_thickness(np.zeros((5, 5), np.uint8)).size == 0


# -- the planner's rule ---------------------------------------------------------------------------
def _objects(extent: float, thin: float) -> dict:
    """Objects reaching ``extent`` px (90th percentile), the thin ones ``thin`` px thick (10th)."""
    return {
        "1": {
            "count": 60,
            "per_case_median": 1,
            "diameter_px": {"median": extent / 2, "p10": extent / 4, "p90": extent},
            "extent_px": {"median": extent / 2, "p10": extent / 4, "p90": extent},
            "width_px": {"median": thin * 2, "p10": thin, "p90": thin * 4},
        }
    }


def test_large_objects_plan_a_reduced_resolution():
    polyps = FakeFingerprint(
        sizes={"median": [530, 620], "min": [481, 481], "max": [1000, 1348]},
        objects=_objects(400, 100),
    )
    scale, why = plan_scale(polyps, "cpu")
    assert scale == 0.32 and "400 px" in why  # 256 / (2 × 400)
    # the reason counts the objects in the patch the smallest image allows, not in the largest
    assert "a 144-px patch (cut to the smallest image) holds 1.1 of them" in why
    wide_images = FakeFingerprint(
        sizes={"median": [2000, 2000], "min": [1600, 1600], "max": [2400, 2400]},
        objects=_objects(400, 100),
    )
    assert "a 256-px patch holds 2.0 of them" in plan_scale(wide_images, "cpu")[1]
    patch, _ = plan_patch(polyps, "cpu", scale)
    assert patch == [144, 144]  # the smallest image at 0.32 is 154 px: the pooling grid inside it
    plan = make_plan(polyps, 5, "cpu", timer=speed())
    assert plan.config["data.scale"] == [0.32, 0.32]
    # a short run at a reduced resolution keeps the common rate (the higher one was unstable there)
    assert plan.model_steps < 2000 and plan.config["train.lr"] == LR
    assert "reduced resolution" in next(d for d in plan.decisions if d.name == "schedule").reason
    assert plan_lr(100, [0.5, 0.5])[0] == LR and plan_lr(100, 2.0)[0] > LR
    assert next(d for d in plan.decisions if d.name == "resolution").value == 0.32
    # a scale the user fixes is planned for: the patch follows it
    full = make_plan(polyps, 5, "cpu", timer=speed(), scale=1)
    assert "data.scale" not in full.config and full.config["data.patch_size"] == [256, 256]
    assert full.config["train.lr"] > LR  # as stored: the short-run rate
    # a scale given when training with a saved plan is judged the same way
    assert planned_values(full, {"data.scale": 0.5})["train.lr"] == LR
    assert "set by the user" in next(d for d in full.decisions if d.name == "resolution").reason


def test_thin_or_small_structures_keep_the_stored_resolution():
    vessels = FakeFingerprint(objects=_objects(400, 3))  # long but 3 px thick
    scale, why = plan_scale(vessels, "cpu")
    assert scale == 1.0 and "3 px thick" in why
    assert "data.scale" not in make_plan(vessels, 5, "cpu", timer=speed()).config
    assert plan_scale(FakeFingerprint(), "cpu")[0] == 1.0  # 30-px objects fit a patch as they are
    huge = FakeFingerprint(
        sizes={"median": [4000, 4000], "min": [4000, 4000], "max": [4000, 4000]},
        objects=_objects(3000, 1000),
    )
    assert plan_scale(huge, "cpu")[0] == MIN_SCALE  # never below a quarter
    wide = FakeFingerprint(objects=_objects(400, 20))  # 20-px thin objects: at least 8/20 = 0.4
    assert plan_scale(wide, "cpu")[0] == 0.4


# -- training at a scale, predicting back ---------------------------------------------------------
def test_predictor_scale_predicts_the_resampled_image_and_returns_the_input_size():
    torch.manual_seed(0)
    model = create_model("unet", base_features=4, depth=2, norm="instance")
    image = np.random.default_rng(0).normal(size=(1, 50, 70)).astype(np.float32)
    scaled = Predictor(model, device="cpu", precision="fp32", scale=0.5)
    plain = Predictor(model, device="cpu", precision="fp32")
    assert scaled.scale == (0.5, 0.5) and plain.scale is None
    logits = scaled.predict_logits(image)
    assert logits.shape == (2, 50, 70)
    expected = resample_logits(
        torch.from_numpy(plain.predict_logits(resample_image(image, (25, 35)))), (50, 70)
    ).numpy()
    np.testing.assert_array_equal(logits, expected)
    assert scaled.predict(image).shape == (50, 70)
    out = np.empty((2, 50, 70), np.float32)
    assert scaled.predict_logits(image, out=out) is out and np.array_equal(out, logits)
    with pytest.raises(DataError, match="band-by-band"):
        predict_large(scaled, image, sink=None, path="big.tif")


def test_training_cases_are_resampled_and_validation_cases_are_not(tmp_path):
    data = make_cells(tmp_path / "d", n=4, size=48)
    prepared = prepare_data(str(data), val_fraction=0.25, scale=[0.5, 0.5])
    assert {c.image.shape for c in prepared.train} == {(1, 24, 24)}
    assert {c.mask.shape for c in prepared.train} == {(24, 24)}
    assert {c.image.shape for c in prepared.val} == {(1, 48, 48)}
    assert set(np.unique(prepared.train[0].mask)) <= {0, 1}


def test_train_at_half_resolution_then_predict_full_size(tmp_path):
    data = make_cells(tmp_path / "d", n=4, size=48)
    run = tmp_path / "run"
    args = ["train", str(data), "--no-plan", "--scale", "0.5", "--patch-size", "24"]
    args += ["--epochs", "1", "--iters-per-epoch", "2", "--batch-size", "2", "--no-progress"]
    args += ["--set", "model.options.base_features=4", "--set", "model.options.depth=2"]
    assert cli.main([*args, "--run-dir", str(run)]) == 0
    ckpt = run / "checkpoints" / "last.pt"
    assert load_checkpoint(ckpt)["config"]["data"]["scale"] == [0.5]
    predictor = Predictor.from_checkpoint(ckpt, device="cpu")
    assert predictor.scale == (0.5, 0.5)
    out = tmp_path / "preds"
    assert (
        cli.main(["predict", str(ckpt), str(data / "images"), "-o", str(out), "--no-progress"]) == 0
    )
    labels = np.asarray(Image.open(out / "00.png"))
    assert labels.shape == (48, 48) and set(np.unique(labels)) <= {0, 255}
    assert predictor.predict(np.asarray(Image.open(data / "images" / "00.png"))[None]).shape == (
        48,
        48,
    )


def test_scale_flag_bad_values_fail_before_training(tmp_path, capsys):
    data = make_cells(tmp_path / "d", n=4, size=48)
    for value, message in (("0", "data.scale"), ("fast", "data.scale"), ("5", "data.scale")):
        code = cli.main(
            ["train", str(data), "--no-plan", "--scale", value, "--run-dir", str(tmp_path / "r")]
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], err
        assert not (tmp_path / "r").exists()


def test_onnx_export_carries_the_scale(tmp_path):
    pytest.importorskip("onnxruntime")
    from unetkit.checkpoint import save_checkpoint
    from unetkit.config import RunConfig
    from unetkit.inference.export import OnnxRunner, export_onnx

    model = create_model("unet", base_features=4, depth=2)
    config = RunConfig.from_dict({"data": {"scale": [0.5]}}).to_dict()
    ck = save_checkpoint(tmp_path / "ck.pt", model, config=config, with_rng=False)
    report = export_onnx(ck, tmp_path / "m.onnx", input_size=32, threads=1)
    assert report.metadata["scale"] == [0.5]
    predictor = OnnxRunner(report.path, threads=1).predictor()
    assert predictor.scale == (0.5, 0.5)
    assert predictor.predict(np.zeros((1, 40, 40), np.float32)).shape == (40, 40)

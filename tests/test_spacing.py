"""Spacing-aware training and prediction: the target spacing rule, per-case resampling, and a
mixed-spacing 3D set on which it decides the result (issue: 3D medical volumes)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from unetkit.config import RunConfig
from unetkit.data.dataset import load_case, prepare_data
from unetkit.data.discovery import scan_dataset
from unetkit.data.fingerprint import fingerprint_dataset
from unetkit.data.resample import resample_image, resample_logits, spacing_factors
from unetkit.errors import ConfigError
from unetkit.inference.predictor import Predictor
from unetkit.io import read_image
from unetkit.models import create_model
from unetkit.planning.planner import make_plan
from unetkit.planning.spacing import plan_target_spacing, target_spacing_rule
from unetkit.training import Trainer

sitk = pytest.importorskip("SimpleITK")

INPLANE, EXTENT, RADIUS = 1.5, 48.0, 6.0


def write_volume(path: Path, array: np.ndarray, spacing_zyx) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in reversed(spacing_zyx)))  # ITK: x, y, z
    image.SetOrigin((10.0, -5.0, 2.5))
    sitk.WriteImage(image, str(path))


def make_case(root: Path, name: str, z_spacing: float, rng) -> None:
    """A 48 mm cube at 1.5 mm in-plane and ``z_spacing`` mm slices with two balls of radius 6 mm
    (foreground) and two ellipsoids 6 × 6 × 18 mm (background, same intensity). In voxels a 4.5-mm
    case's ellipsoid is a 1.5-mm case's ball: only the physical shape tells them apart."""
    nz, ny = int(round(EXTENT / z_spacing)), int(round(EXTENT / INPLANE))
    z = (np.arange(nz) + 0.5) * z_spacing
    y = (np.arange(ny) + 0.5) * INPLANE
    zz, yy, xx = np.meshgrid(z, y, y, indexing="ij")
    image = np.zeros((nz, ny, ny), np.float32)
    mask = np.zeros((nz, ny, ny), np.uint8)
    centres: list = []
    kinds = [1, 1, 0, 0]
    rng.shuffle(kinds)
    for ball in kinds:
        rz = RADIUS if ball else 3 * RADIUS
        for _ in range(200):
            c = rng.uniform(
                [rz + 1, RADIUS + 1, RADIUS + 1],
                [EXTENT - rz - 1, EXTENT - RADIUS - 1, EXTENT - RADIUS - 1],
            )
            if all(np.hypot(*(c[1:] - d[1:])) > 2 * RADIUS + 2 for d in centres):
                break
        centres.append(c)
        inside = ((zz - c[0]) / rz) ** 2 + ((yy - c[1]) / RADIUS) ** 2 + (
            (xx - c[2]) / RADIUS
        ) ** 2 <= 1
        image[inside] = 1.0
        mask[inside] = ball
    image += rng.normal(0, 0.2, image.shape).astype(np.float32)
    write_volume(root / "images" / f"{name}.mha", image, (z_spacing, INPLANE, INPLANE))
    write_volume(root / "masks" / f"{name}.mha", mask, (z_spacing, INPLANE, INPLANE))


def make_set(root: Path, n: int, seed: int, spacings=(1.5, 4.5)) -> Path:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        make_case(root, f"c{i:02d}", spacings[i % len(spacings)], rng)
    return root


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("mixed")
    return make_set(root / "train", 12, 0), make_set(root / "test", 6, 1)


# -- the rule ---------------------------------------------------------------------------------------
def test_spacing_factors():
    assert spacing_factors((3.0, 0.8, 0.8), (1.5, 0.8, 0.8), 3) == (2.0, 1.0, 1.0)
    assert spacing_factors((1.0, 1.0), (1.0, 1.0), 2) is None
    assert spacing_factors(None, (2.0, 2.0), 2) is None  # no spacing stated: on the target grid
    assert spacing_factors((0.8000001, 0.8), (0.8, 0.8), 2) is None  # float32 noise
    assert spacing_factors((1.0, 1.0), None, 2, scale=0.5) == (0.5, 0.5)
    with pytest.raises(ConfigError, match="target_spacing"):
        spacing_factors((1.0, 1.0), (1.0, 0.0), 2)


def test_target_spacing_rule_median_and_anisotropy():
    # mild: the median
    assert target_spacing_rule([2.0, 0.8, 0.8], [1.0, 0.7, 0.7], [100, 256, 256]) == (
        [2.0, 0.8, 0.8],
        None,
    )
    # 5 mm slices, few of them: the coarse axis takes its 10th percentile
    assert target_spacing_rule([5.0, 0.8, 0.8], [1.5, 0.7, 0.7], [40, 512, 512]) == (
        [1.5, 0.8, 0.8],
        0,
    )
    # the 10th percentile is never finer than the other axes' target
    assert target_spacing_rule([5.0, 0.8, 0.8], [0.5, 0.7, 0.7], [40, 512, 512]) == (
        [0.8, 0.8, 0.8],
        0,
    )
    # anisotropic spacing but many slices: the median stays (nnU-Net's second condition)
    assert target_spacing_rule([5.0, 0.8, 0.8], [1.5, 0.7, 0.7], [400, 512, 512])[1] is None


def test_plan_target_spacing_on_a_fingerprint(mixed):
    train, _ = mixed
    fp = fingerprint_dataset(train)
    assert fp.spacing_spread["files"] == 12
    assert fp.spacing_spread["min"] == pytest.approx([1.5, 1.5, 1.5])
    assert fp.spacing_spread["max"] == pytest.approx([4.5, 1.5, 1.5])
    target, why = plan_target_spacing(fp)
    assert target == pytest.approx([3.0, 1.5, 1.5])  # the median of six 1.5 and six 4.5
    assert "resampled to 3×1.5×1.5 mm" in why
    assert "min 1.5×1.5×1.5 … max 4.5×1.5×1.5" in fp.describe()[0]
    # the planner writes it into the config and plans the patch on the target grid (16 slices)
    plan = make_plan(fp, 2, "cpu", timer=lambda c: 0.05)
    assert plan.config["data.target_spacing"] == pytest.approx([3.0, 1.5, 1.5])
    assert "data.scale" not in plan.config
    assert plan.config["data.patch_size"][0] == 16
    # a 3D plan on CPU trains in fp32 whatever the CPU, and says why; the batch line states the
    # pixels the batch really holds (the rule's 2 × 96³ are for the first patch tried)
    from unetkit import runtime

    precision = next(d for d in plan.decisions if d.name == "precision")
    native = runtime.resolve_precision("auto", torch.device("cpu")) == torch.bfloat16
    assert precision.value == "fp32"
    assert ("3D nets train in fp32 on CPU" in precision.reason) == native
    batch = next(d for d in plan.decisions if d.name == "batch")
    pixels = plan.full_batch * math.prod(plan.config["data.patch_size"])
    assert f"{pixels:,} pixels per batch" in batch.reason or "≈ 1,769,472" in batch.reason
    # one spacing for every case: nothing to resample
    same = make_set(train.parent / "same", 2, 3, spacings=(2.0,))
    target, why = plan_target_spacing(fingerprint_dataset(same))
    assert target is None and "within 10 %" in why


def test_object_lengths_are_rescaled_to_the_target_grid(mixed):
    """On a finer target grid an object spans more voxels: the object lengths the patch rules read
    grow with the sizes (by the cube root of the voxel-count factor: 2 slices for 1 here)."""
    from unetkit.planning.spacing import OBJECT_LENGTHS, on_target_grid

    train, _ = mixed
    fp = fingerprint_dataset(train)
    assert fp.spacing == pytest.approx([3.0, 1.5, 1.5])
    fine = on_target_grid(fp, [1.5, 1.5, 1.5])
    factor = 2.0 ** (1 / 3)
    for cls, before in fp.objects.items():
        after = fine.objects[cls]
        assert after["count"] == before["count"]
        assert after["touching_fraction"] == before["touching_fraction"]
        for key in OBJECT_LENGTHS:
            for q, v in before[key].items():
                assert after[key][q] == (None if v is None else pytest.approx(v * factor))
    assert on_target_grid(fp, fp.spacing).objects == fp.objects  # the same grid: unchanged


def test_plan_leaves_files_without_spacing_as_stored(tmp_path):
    from PIL import Image

    for d in ("images", "masks"):
        (tmp_path / d).mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(
            tmp_path / "images" / f"{i}.png"
        )
        Image.fromarray((rng.random((40, 40)) > 0.7).astype(np.uint8)).save(
            tmp_path / "masks" / f"{i}.png"
        )
    target, why = plan_target_spacing(fingerprint_dataset(tmp_path))
    assert target is None and "state no voxel size" in why


def test_plan_leaves_volumes_in_different_units_as_stored(tmp_path):
    """Volumes whose files state voxel sizes in mm (MetaImage) and in µm (an ImageJ TIFF) have no
    common grid: trained as stored, and the reason names the units."""
    from unetkit.io import write_image
    from unetkit.io.readers import ImageMeta

    root = make_set(tmp_path / "set", 2, 0, spacings=(1.5, 4.5))
    rng = np.random.default_rng(1)
    mask = np.zeros((8, 16, 16), np.uint8)
    mask[2:6, 4:12, 4:12] = 1
    # µm beside mm, 750× finer: not resampled (mixed units), so not refused as a wrong unit either
    meta = ImageMeta(spacing=(2.0, 0.5, 0.5), spacing_unit="um")
    write_image(
        root / "images" / "t.tif", rng.normal(0, 1, (1, 8, 16, 16)).astype(np.float32), meta
    )
    write_image(root / "masks" / "t.tif", mask[None], meta)
    fp = fingerprint_dataset(root)
    assert fp.spacing_spread["units"] == ["mm", "um"] and fp.spacing_unit is None
    target, why = plan_target_spacing(fp)
    assert target is None
    assert "different units (mm, um): trained as stored" in why
    assert fingerprint_dataset(make_set(tmp_path / "one", 2, 0)).spacing_spread["units"] == ["mm"]


# -- resampling per case ---------------------------------------------------------------------------
def test_load_case_resamples_each_case_by_its_own_spacing(mixed):
    train, _ = mixed
    cases = {c.case_id: c for c in scan_dataset(train).cases}
    data = prepare_data(str(train), val_fraction=0.0, target_spacing=[3.0, 1.5, 1.5])
    shapes = {c.case_id: c.image.shape for c in data.train}
    assert shapes["c00"] == (1, 16, 32, 32)  # 32 slices of 1.5 mm → 16 of 3 mm
    assert shapes["c01"] == (1, 16, 32, 32)  # 11 slices of 4.5 mm (48 mm rounded) → 16 of 3 mm
    loaded = load_case(cases["c00"], data.label_map, None, target_spacing=None)
    assert loaded.image.shape == (1, 32, 32, 32) and loaded.spacing == pytest.approx((1.5,) * 3)
    with pytest.raises(ConfigError, match="both set"):
        RunConfig.from_dict({"data": {"scale": 0.5, "target_spacing": [1.0, 1.0, 1.0]}})


def test_predictor_resamples_by_spacing_and_returns_the_input_grid():
    torch.manual_seed(0)
    net = create_model(
        "unet", spatial_dims=3, in_channels=1, num_classes=2, base_features=4, depth=2
    )
    image = np.random.default_rng(0).normal(size=(1, 11, 24, 24)).astype(np.float32)
    pred = Predictor(net, precision="fp32", target_spacing=[3.0, 1.5, 1.5])
    logits = pred.predict_logits(image, spacing=(4.5, 1.5, 1.5))
    assert logits.shape == (2, 11, 24, 24)
    # the same by hand: resample to the target grid, predict as stored, resample the logits back
    plain = Predictor(net, precision="fp32")
    small = resample_image(image, (16, 24, 24))  # 11 × 4.5 / 3 = 16.5 → 16
    by_hand = resample_logits(torch.from_numpy(plain.predict_logits(small)), (11, 24, 24))
    np.testing.assert_allclose(logits, by_hand.numpy(), atol=1e-5)
    # on the target grid already: no resampling at all
    np.testing.assert_array_equal(
        pred.predict_logits(small, spacing=(3.0, 1.5, 1.5)), plain.predict_logits(small)
    )
    with pytest.raises(ConfigError, match="not both"):
        Predictor(net, scale=0.5, target_spacing=[1.0, 1.0, 1.0])


# -- acceptance: physical shape decides -----------------------------------------------------------
def _train(
    data: Path, run: Path, target, *, epochs=10, iters=10, width=8, val_fraction=0.0
) -> Path:
    """A tiny 3D U-Net trained for a fixed number of steps in fp32; its last checkpoint."""
    cfg = RunConfig.from_dict(
        {
            "data": {
                "train_dir": str(data),
                "val_fraction": val_fraction,
                "patch_size": [16, 32, 32],
                "augmentation": None,
                "target_spacing": target,
            },
            "model": {
                "name": "unet",
                "options": {"spatial_dims": 3, "base_features": width, "depth": 2},
            },
            "loss": {"name": "dice-ce"},
            "train": {
                "epochs": epochs,
                "iters_per_epoch": iters,
                "batch_size": 2,
                "lr": 0.01,
                "seed": 0,
                "precision": "fp32",
                "threads": 2,
            },
        }
    )
    return Trainer(cfg, run_dir=run, progress=False).fit().run_dir / "checkpoints" / "last.pt"


def _dice_per_case(checkpoint: Path, test: Path) -> dict:
    predictor = Predictor.from_checkpoint(checkpoint)
    out = {}
    for path in sorted((test / "images").glob("*.mha")):
        image, meta = read_image(path)
        truth = read_image(test / "masks" / path.name)[0][0] > 0
        pred = predictor.predict(image, spacing=meta.spacing) > 0
        assert pred.shape == truth.shape  # back on the case's own grid
        out[path.stem] = 2 * (pred & truth).sum() / (pred.sum() + truth.sum())
    return out


def test_spacing_aware_training_beats_the_stored_grids_on_mixed_spacings(mixed, tmp_path):
    """Six 1.5-mm and six 4.5-mm training volumes: on the stored grids a thick-slice case's
    ellipsoid (background) is voxel for voxel a thin-slice case's ball (foreground), so the net
    cannot learn both; resampled to 3 mm slices each object has one shape. Fixed steps, fp32."""
    train, test = mixed
    stored = _dice_per_case(_train(train, tmp_path / "stored", None), test)
    aware_ckpt = _train(train, tmp_path / "aware", [3.0, 1.5, 1.5])
    aware = _dice_per_case(aware_ckpt, test)
    mean_stored, mean_aware = np.mean(list(stored.values())), np.mean(list(aware.values()))
    print(f"mixed spacings: Dice stored grids {mean_stored:.3f}, spacing-aware {mean_aware:.3f}")
    assert mean_aware >= 0.8
    assert mean_aware >= mean_stored + 0.1
    assert Predictor.from_checkpoint(aware_ckpt).target_spacing == (3.0, 1.5, 1.5)


def test_predict_cli_writes_each_case_on_its_own_grid(mixed, tmp_path, capsys):
    """``unetkit predict`` with a spacing-aware checkpoint: each output has its input's shape,
    spacing, origin and direction, and the command says that it resampled them (silent before);
    an input without a voxel size is named as predicted as stored."""
    from unetkit.cli import main
    from unetkit.inference.batch import _spacing_notes

    train, test = mixed
    ckpt = _train(
        train, tmp_path / "run", [3.0, 1.5, 1.5], epochs=1, iters=2, width=4, val_fraction=0.2
    )
    out = tmp_path / "pred"
    assert main(["predict", str(ckpt), str(test / "images"), "--output", str(out)]) == 0
    n = len(list((test / "images").glob("*.mha")))
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and notes[0].startswith(
        f"note: {n} of {n} input(s) resampled to the model's voxel size 3×1.5×1.5 mm and back ("
    )
    predictor = Predictor.from_checkpoint(ckpt)
    sizes = [("a.npy", None), ("b.mha", (3.0, 1.5, 1.5))]
    assert _spacing_notes(predictor, sizes) == [
        "1 of 2 input(s) state no voxel size (a.npy): predicted as stored, as if at the model's "
        "3×1.5×1.5 mm"  # the unit of its files, recorded also where no plan was made
    ]
    # an ensemble says the same; a model of a resolution factor (data.scale) says nothing
    from unetkit.inference.ensemble import EnsemblePredictor

    fine = [("c.mha", (1.5, 1.5, 1.5))]
    two = EnsemblePredictor([predictor, Predictor.from_checkpoint(ckpt)])
    assert _spacing_notes(two, fine) == _spacing_notes(predictor, fine) != []
    scaled = Predictor(predictor.model, scale=0.5, trained_spacing=(3.0, 1.5, 1.5))
    assert _spacing_notes(scaled, fine) == []
    for path in sorted((test / "images").glob("*.mha")):
        src = sitk.ReadImage(str(path))
        got = sitk.ReadImage(str(next(out.glob(f"{path.stem}*"))))
        assert got.GetSize() == src.GetSize()
        assert got.GetSpacing() == pytest.approx(src.GetSpacing())
        assert got.GetOrigin() == pytest.approx(src.GetOrigin())
        assert got.GetDirection() == pytest.approx(src.GetDirection())


def test_plan_gives_anisotropic_volumes_an_anisotropic_net(tmp_path):
    """4.5-mm slices of 1.5-mm pixels (one spacing, so no resampling): the patch spans the same
    millimetres on every axis and the net pools the slices only once the pixels have caught up."""
    thick = make_set(tmp_path / "thick", 3, 5, spacings=(4.5,))
    fp = fingerprint_dataset(thick)
    plan = make_plan(fp, 2, "cpu", timer=lambda c: 0.05)
    assert "data.target_spacing" not in plan.config  # every case on one grid already
    assert plan.config["data.patch_size"] == [8, 32, 32]  # 11 slices × 32² px, 3:1 voxels
    assert plan.config["model.options.strides"] == [[1, 2, 2], [2, 2, 2], [1, 2, 2]]
    assert plan.config["model.options.kernel_sizes"] == [[1, 3, 3]] + [[3, 3, 3]] * 3
    assert plan.config["model.options.depth"] == 3
    assert "pooling period 2×8×8" in next(d.reason for d in plan.decisions if d.name == "depth")
    cfg = RunConfig.from_dict({"data": {"train_dir": str(thick)}}).override(plan.config)
    net = create_model(cfg.model.name, in_channels=1, num_classes=2, **cfg.model.options)
    assert net.size_rule().period == (2, 8, 8)
    assert net(torch.zeros(1, 1, 8, 32, 32)).shape == (1, 2, 8, 32, 32)


# -- the paths that must not resample silently ------------------------------------------------------
def test_band_prediction_checks_every_member_and_the_spacing_it_is_given():
    from unetkit.errors import DataError
    from unetkit.inference.ensemble import EnsemblePredictor
    from unetkit.inference.large import check_band_prediction

    torch.manual_seed(0)
    net = create_model("unet", in_channels=1, num_classes=2, base_features=4, depth=2)
    image = np.zeros((1, 64, 64), np.float32)  # a memory map carries no meta: spacing given apart
    at_half = Predictor(net, precision="fp32", target_spacing=[0.5, 0.5])
    check_band_prediction(at_half, image, spacing=(0.5, 0.5))  # on the model's grid: fine
    check_band_prediction(at_half, image)  # no voxel size stated: taken as on the grid
    with pytest.raises(DataError, match="voxel size 0.5×0.5 and this image's is 0.25×0.25"):
        check_band_prediction(at_half, image, spacing=(0.25, 0.25))
    plain = Predictor(net, precision="fp32")
    both = EnsemblePredictor([plain, Predictor(net, precision="fp32", target_spacing=[1.0, 1.0])])
    with pytest.raises(DataError, match="voxel size 1×1"):  # the second member would resample
        check_band_prediction(both, image, spacing=(0.5, 0.5))
    # a model trained as stored at 0.5: refused only where it would resample (over 10 % away)
    stored = Predictor(net, precision="fp32", trained_spacing=[0.5, 0.5])
    check_band_prediction(stored, image, spacing=(0.52, 0.5))
    with pytest.raises(DataError, match="voxel size 0.5×0.5 and this image's is 1×1"):
        check_band_prediction(stored, image, spacing=(1.0, 1.0))


def test_user_depth_drops_the_planned_topology_and_napari_refuses_orientation_models():
    from unetkit.commands.train import planned_values
    from unetkit.errors import DataError
    from unetkit.napari.jobs import segment
    from unetkit.planning import Plan

    plan = Plan(
        10,
        {},
        {},
        config={
            "model.name": "unet",
            "model.options.depth": 3,
            "model.options.spatial_dims": 3,
            "model.options.strides": [[1, 2, 2], [2, 2, 2], [1, 2, 2]],
            "model.options.kernel_sizes": [[1, 3, 3]] + [[3, 3, 3]] * 3,
        },
    )
    kept = planned_values(plan, {"model.options.depth": 2})
    assert not {"model.options.strides", "model.options.kernel_sizes"} & set(kept)
    assert planned_values(plan, {})["model.options.strides"] == plan.config["model.options.strides"]
    net = create_model(
        "unet", spatial_dims=3, in_channels=1, num_classes=2, base_features=4, depth=2
    )
    turned = Predictor(net, precision="fp32")
    turned.orientation = "RAS"
    with pytest.raises(DataError, match="orientation"):
        segment(turned, np.zeros((8, 16, 16), np.float32), False, "ct")


def test_plan_cli_plans_for_a_target_spacing_and_refuses_bad_ones(tmp_path, capsys):
    """``unetkit plan --target-spacing`` writes the user's voxel size into the plan (train --plan
    then resamples to it) and plans the patch on that grid; bad values are one line, exit 2, and
    no plan file."""
    import json

    from unetkit.cli import main

    data = make_set(tmp_path / "thick", 2, 0, spacings=(4.5,))
    out = tmp_path / "plan.json"
    args = ["plan", str(data), "--time-budget", "0.2", "--output", str(out)]
    for bad, words in [
        (["--target-spacing", "0,1,1"], "positive numbers"),
        (["--target-spacing", "abc"], "positive numbers"),
        (["--target-spacing", "1.5,1.5"], "target_spacing"),
        (["--target-spacing", "3", "--scale", "0.5"], "not both"),
    ]:
        assert main([*args, *bad]) == 2, bad
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err
        assert not out.exists()
    assert main([*args, "--target-spacing", "4.5,3,3"]) == 0
    plan = json.loads(out.read_text())
    assert plan["config"]["data.target_spacing"] == [4.5, 3.0, 3.0]
    # 1.5-mm pixels resampled to 3 mm (32 px → 16 px): the patch fits the target grid's images
    assert plan["fingerprint"]["sizes"]["median"][1:] == [32.0, 32.0]  # the data as stored
    assert max(plan["config"]["data.patch_size"][1:]) <= 16


def test_a_model_trained_as_stored_resamples_images_of_far_off_spacing(tmp_path):
    """Training volumes within 10 % of one voxel size are trained as stored (no target spacing):
    the model still knows that size from its plan, and an image far from it (4.5 mm for 3 mm) is
    resampled to it and back, as a target spacing would do; a near one (3.2 mm) is not."""
    from unetkit.checkpoint import save_checkpoint
    from unetkit.inference.predictor import _trained_spacing

    torch.manual_seed(0)
    net = create_model(
        "unet", spatial_dims=3, in_channels=1, num_classes=2, base_features=4, depth=2
    )
    image = np.random.default_rng(0).normal(size=(1, 11, 24, 24)).astype(np.float32)
    plain = Predictor(net, precision="fp32")
    pred = Predictor(net, precision="fp32", trained_spacing=[3.0, 1.5, 1.5])
    np.testing.assert_array_equal(
        pred.predict_logits(image, spacing=(3.2, 1.5, 1.5)), plain.predict_logits(image)
    )
    assert pred.resampling((3.2, 1.5, 1.5)) is None and pred.resampling(None) is None
    assert pred.resampling((4.5, 1.5, 1.5)) == pytest.approx((1.5, 1.0, 1.0))
    targeted = Predictor(net, precision="fp32", target_spacing=[3.0, 1.5, 1.5])
    np.testing.assert_allclose(
        pred.predict_logits(image, spacing=(4.5, 1.5, 1.5)),
        targeted.predict_logits(image, spacing=(4.5, 1.5, 1.5)),
        atol=1e-6,
    )
    # from a checkpoint: the plan's fingerprint gives it where the plan trained as stored because
    # every case lay within 10 % of it, not where it did so for want of spacings or of one unit
    spread = {"min": [2.9, 1.5, 1.5], "max": [3.1, 1.5, 1.5], "files": 4, "units": ["mm"]}
    plan = {"fingerprint": {"cases": 4, "spacing": [3.0, 1.5, 1.5], "spacing_spread": spread}}
    path = save_checkpoint(tmp_path / "m.pt", net, extra={"plan": plan}, with_rng=False)
    assert Predictor.from_checkpoint(path, precision="fp32").trained_spacing == [3.0, 1.5, 1.5]

    def trained(**change):
        fp = {**plan["fingerprint"], "spacing_spread": {**spread, **change}}
        return _trained_spacing({"extra": {"plan": {"fingerprint": fp}}})

    assert trained() == [3.0, 1.5, 1.5]
    assert trained(units=["mm", "um"]) is None  # no common grid
    assert trained(files=3) is None  # a file stated no spacing
    assert trained(max=[4.5, 1.5, 1.5]) is None  # not within 10 %: the plan had a target then
    assert _trained_spacing({"extra": {}}) is None


def test_a_case_in_another_unit_and_a_target_spacing_in_another_unit_are_refused(tmp_path, capsys):
    """One case whose header is in metres among mm cases would be resampled to a volume of one
    voxel and the plan fitted to it: check-data names it as a problem, plan and train refuse it
    (one line, nothing written). A --target-spacing 1,000× off the data is refused the same way,
    and one in range is planned as given (no reduced resolution on top of it)."""
    import json

    from unetkit.cli import main
    from unetkit.data import check_dataset

    data = make_set(tmp_path / "data", 3, 0, spacings=(3.0,))
    image, _ = read_image(data / "images" / "c00.mha")
    mask, _ = read_image(data / "masks" / "c00.mha")
    metres = (0.003, INPLANE / 1000, INPLANE / 1000)
    write_volume(data / "images" / "c03.mha", image[0], metres)
    write_volume(data / "masks" / "c03.mha", mask[0], metres)
    line = (
        f"{data / 'images' / 'c03.mha'}: voxel size 0.003×0.0015×0.0015 mm is 1,000× finer than "
        "the median of the 4 cases (3×1.5×1.5 mm) on some axis: most likely another unit or a lost "
        "calibration in its header; correct it, or leave the case out"
    )
    assert check_dataset(data).problems == [line]
    out = tmp_path / "plan.json"
    assert main(["plan", str(data), "--time-budget", "0.1", "--output", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"unetkit plan: error: {line}"
    assert not out.exists()
    runs = tmp_path / "runs"
    assert main(["train", str(data), "--time-budget", "0.1", "--output", str(runs)]) == 2
    assert capsys.readouterr().err.strip().endswith(line) and not runs.exists()

    # of two cases neither is blamed
    from unetkit.data.reading import odd_voxel_size

    path, message = odd_voxel_size([("a.mha", (3.0, 1.5, 1.5), "mm"), ("b.mha", metres, "mm")])
    assert path == "b.mha" and message == (
        "voxel size 0.003×0.0015×0.0015 mm is 1,000× finer than 3×1.5×1.5 mm of the other case "
        "(a.mha) on some axis: most likely another unit or a lost calibration in one of their "
        "headers; correct it, or leave a case out"
    )
    assert odd_voxel_size([("a", (3.0, 1.0, 1.0), "mm"), ("b", (0.003, 0.001, 0.001), "m")]) is None
    for name in ("images", "masks"):
        (data / name / "c03.mha").unlink()
    args = ["plan", str(data), "--time-budget", "0.1", "--output", str(out)]
    assert main([*args, "--target-spacing", "0.003,0.0015,0.0015"]) == 2
    assert capsys.readouterr().err.strip() == (
        "unetkit plan: error: --target-spacing 0.003×0.0015×0.0015 is 1,000× finer than the "
        "cases' median voxel size 3×1.5×1.5 mm: give it in the files' unit and axis order (z, y, x)"
    )
    assert not out.exists()
    # the NIfTI/ITK axis order (x, y, z): the coarse axis would be upsampled, the fine ones thinned
    assert main([*args, "--target-spacing", "1.5,1.5,3"]) == 2
    assert capsys.readouterr().err.strip() == (
        "unetkit plan: error: --target-spacing 1.5×1.5×3 makes axis z finer than x, but the cases' "
        "median voxel size 3×1.5×1.5 has it 2× coarser: give it in the files' axis order (z, y, x), "
        "e.g. 3,1.5,1.5"
    )
    assert not out.exists()
    assert main([*args, "--target-spacing", "6,3,3"]) == 0
    plan = json.loads(out.read_text())
    assert plan["config"]["data.target_spacing"] == [6.0, 3.0, 3.0]
    assert "data.scale" not in plan["config"]

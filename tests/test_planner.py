"""The planner: rules on a dataset fingerprint, widths chosen by measured speed within the budget,
the probe's cache, plans saved and followed by ``unetkit train``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from PIL import Image

from unetkit import cli
from unetkit.commands.train import (
    _folds_note,
    _width_hint,
    _width_note,
    _yours_note,
    apply_overrides,
    planned_values,
)
from unetkit.config import RunConfig
from unetkit.data.transforms import (
    RandomFlip,
    RandomGamma,
    RandomRot90,
    SpatialTransform,
    build_augmentation,
)
from unetkit.errors import ConfigError
from unetkit.planning import Candidate, Plan, cache_path, make_plan
from unetkit.planning.planner import (
    FULL_AUGMENTATION_STEPS,
    LR,
    MIN_BATCH,
    MIN_STEPS,
    SHORT_RUN_LR,
    SHORT_RUN_STEPS,
    choose_width,
    plan_augmentation,
    plan_batch,
    plan_depth,
    plan_lr,
    plan_patch,
    short_run_batch,
    train_seconds,
)
from unetkit.planning.probe import (
    PROBE_SECONDS,
    PROBE_STEPS,
    WARMUP_STEPS,
    Measurement,
    measure,
    settled_median,
)


@dataclass
class FakeFingerprint:
    """The fields the planner reads, as :class:`unetkit.data.fingerprint.Fingerprint` has them."""

    cases: int = 30
    spatial_dims: int = 2
    sizes: dict = field(
        default_factory=lambda: {"median": [512, 512], "min": [400, 500], "max": [600, 700]}
    )
    channels: int = 1
    grey_as_colour: bool = False
    label_values: list = field(default_factory=lambda: [0, 1])
    class_fraction: list = field(default_factory=lambda: [0.8, 0.2])
    objects: dict = field(
        default_factory=lambda: {
            "1": {
                "count": 300,
                "per_case_median": 10,
                "diameter_px": {"median": 20, "p10": 10, "p90": 30},
            }
        }
    )
    touching_fraction: float = 0.0
    instance_ids: bool = False
    cases_found: int = 0
    hot_pixel_cases: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(vars(self))


def _decision(plan, name):
    return next(d for d in plan.decisions if d.name == name)


def speed(base: float = 1.0):
    """A fake machine: seconds per step grow with width², pixels and batch (as convolutions do)."""

    def timer(c: Candidate) -> float:
        return base * (c.base_features / 16) ** 2 * (np.prod(c.patch) / 256**2) * c.batch_size / 4

    return timer


def test_patch_holds_the_large_objects_and_fits_the_smallest_image():
    fp = FakeFingerprint()
    patch, why = plan_patch(fp, "cpu")
    assert patch == [128, 128] and "30 px" in why  # 3 × 30 = 90 → at least 128 px of context
    big = FakeFingerprint(
        objects={"1": {"count": 5, "diameter_px": {"median": 90, "p10": 50, "p90": 120}}}
    )
    assert plan_patch(big, "cpu")[0] == [256, 256]  # capped on a CPU
    assert plan_patch(big, "cuda")[0] == [368, 368]
    small = FakeFingerprint(
        sizes={"median": [90, 200], "min": [70, 150], "max": [100, 300]}, objects={}
    )
    patch, why = plan_patch(small, "cpu")
    assert patch == [64, 144] and "smallest image" in why  # multiples of 16, never past an image


def test_partial_masks_size_the_patch_only_by_objects_most_images_hold_whole():
    """Scribbles leave few objects wholly inside the labelled pixels (the fingerprint sizes no
    other): those fragments must not size the patch; boxes that hold whole objects still do."""
    fragments = {
        "1": {
            "count": 9,
            "per_case_median": 0,
            "diameter_px": {"median": 5, "p10": 3, "p90": 8},
        }
    }
    scribbled = FakeFingerprint(objects=fragments)
    scribbled.ignore_value = 0
    patch, why = plan_patch(scribbled, "cpu")
    assert patch == [256, 256] and "pieces of scribbles, too few to size it by" in why
    complete = FakeFingerprint(objects=fragments)  # complete masks: a rare class, sized as found
    assert "(8 px, 90th percentile" in plan_patch(complete, "cpu")[1]
    boxed = FakeFingerprint()  # partial, but whole objects in most images
    boxed.ignore_value = 0
    assert plan_patch(boxed, "cpu") == plan_patch(FakeFingerprint(), "cpu")
    boxed.objects["1"]["extent_px"] = {"p90": 39}
    boxed.labelled_extent = 200.0  # labelled regions far larger than the objects: sized by them
    assert "(39 px, 90th percentile" in plan_patch(boxed, "cpu")[1]
    boxed.labelled_extent = 64.0  # 64-px boxes hold whole only the objects under 64 px
    patch, why = plan_patch(boxed, "cpu")
    assert patch == [192, 192] and "at least the labelled regions' 64 px" in why
    # a class cut short is sized as large as the regions, not left out: a smaller class
    # beside it does not shrink the patch
    boxed.objects["2"] = {
        "count": 500,
        "per_case_median": 20,
        "diameter_px": {"median": 6, "p10": 4, "p90": 9},
        "extent_px": {"p90": 10},
    }
    assert plan_patch(boxed, "cpu")[0] == [192, 192]


def test_one_small_image_among_large_ones_does_not_cut_every_patch(tmp_path):
    """The patch fits nine images in ten (the 10th percentile of the sizes); the sampler mirrors
    the smaller ones to fill it, so one thumbnail does not shrink the patch and the depth."""
    from unetkit.data.fingerprint import fingerprint_dataset

    root = tmp_path / "data"
    for d in ("images", "masks"):
        (root / d).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, size in enumerate([(48, 56)] + [(300, 320)] * 10):
        mask = np.zeros(size, np.uint8)
        mask[10:40, 10:40] = 255
        image = (rng.normal(60, 10, size) + (mask > 0) * 100).clip(0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"{i:02d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:02d}.png")
    fp = fingerprint_dataset(root)
    assert fp.sizes["min"] == [48, 56] and fp.sizes["p10"] == [300, 320]
    patch, why = plan_patch(fp, "cpu")
    assert patch == [128, 128] and "cut" not in why  # the objects' rule, not the thumbnail's
    # a tenth of small images still cut it, and the reason says the smaller ones are mirrored
    fp.sizes["p10"] = [100, 120]
    patch, why = plan_patch(fp, "cpu")
    assert patch == [96, 112]
    assert "cut to the smaller images (10th percentile 100×120; smaller ones are mirrored" in why
    # a fingerprint saved before the percentile: the smallest image, as before
    del fp.sizes["p10"]
    assert plan_patch(fp, "cpu")[0] == [48, 48]


def test_depth_and_batch_rules():
    assert [plan_depth([p, p]) for p in (32, 64, 96, 128, 192, 256, 512)] == [2, 2, 3, 3, 4, 4, 4]
    assert plan_batch([256, 256], 2) == 4 and plan_batch([128, 128], 2) == 16
    assert plan_batch([512, 512], 2) == 2 and plan_batch([64, 64], 2) == 32
    assert plan_batch([96, 96, 96], 3) == 2


def test_a_short_run_halves_the_batch_down_to_the_minimum():
    assert short_run_batch(16, 309) == (8, 618)  # DRIVE, fp32, 5 minutes
    assert short_run_batch(16, 100) == (4, 400)  # halved twice, then MIN_BATCH
    assert short_run_batch(16, SHORT_RUN_STEPS) == (16, SHORT_RUN_STEPS)  # not short
    assert short_run_batch(4, 232) == (4, 232)  # never below MIN_BATCH
    assert short_run_batch(21, 200) == (5, 840)  # odd batches: steps follow the pixels
    assert MIN_BATCH == 4 and short_run_batch(7, 10) == (7, 10)


def test_width_is_the_widest_the_budget_trains_enough():
    ms = [
        Measurement(Candidate("unet", 16, 4, (256, 256), 4), 1.0, False),
        Measurement(Candidate("unet", 32, 4, (256, 256), 4), 3.0, False),
    ]
    best, steps, why = choose_width(ms, 5)
    assert best.candidate.base_features == 16 and steps == int(train_seconds(5))
    assert train_seconds(5) / 3.0 < MIN_STEPS[32]
    # the trainer keeps 5 s for saving and a tenth of a short budget (at most 10 s) for the
    # post-processing search at its end: a 0.5-minute budget trains 22 s, not 24
    assert train_seconds(5) == pytest.approx(240) and train_seconds(0.5) == pytest.approx(22)
    assert train_seconds(0.1) == pytest.approx(1.2)  # under 5.6 s: a fifth still planned
    best, steps, _ = choose_width(ms, 30)
    assert (
        best.candidate.base_features == 32
        and steps == int(train_seconds(30) / 3.0) >= MIN_STEPS[32]
    )


def test_plan_follows_the_budget_and_the_machine():
    fp = FakeFingerprint()
    short = make_plan(fp, 5, "cpu", timer=speed(1.0))
    long = make_plan(fp, 60, "cpu", timer=speed(1.0))
    assert short.config["model.options.base_features"] == 16
    assert long.config["model.options.base_features"] == 32  # more time: a wider net
    assert (
        short.config["train.time_budget_minutes"] == 5
        and short.config["train.scheduler"] == "budget"
    )
    assert short.config["data.patch_size"] == [128, 128]
    assert short.config["model.options.depth"] == 3
    # 240 steps of 16 × 128² are a short run: the batch is halved to 8 (480 steps), then 4 (960)
    assert short.config["train.batch_size"] == 4 and long.config["train.batch_size"] == 16
    assert _decision(short, "batch").reason.startswith(
        "16 (≈ 262,144 pixels per batch) halved twice to 4"
    )
    assert short.model_steps == 240  # the rules that read steps count them at the full batch
    assert short.config["train.iters_per_epoch"] == 960 // 10  # the smaller batch's steps
    # objects of 100 px on a machine 20× slower: too few steps at 256² → smaller patches are tried
    big = FakeFingerprint(
        objects={"1": {"count": 5, "diameter_px": {"median": 90, "p10": 50, "p90": 100}}}
    )
    assert make_plan(big, 5, "cpu", timer=speed(1.0)).config["data.patch_size"] == [256, 256]
    slow = make_plan(big, 5, "cpu", timer=speed(20.0))
    assert slow.config["data.patch_size"] == [144, 144]
    assert "reduced" in _decision(slow, "patch").reason
    assert (
        slow.config["train.batch_size"] == 4
    )  # the batch stays (MIN_BATCH): the steps get cheaper
    # every planned value is a valid config value
    cfg = RunConfig().override(short.config)
    assert cfg.model.options["base_features"] == 16 and cfg.train.scheduler == "budget"
    names = [d.name for d in short.decisions]
    assert names[:4] == ["precision", "spacing", "resolution", "patch"] and "schedule" in names
    table = short.table()
    assert all(n in table for n in names) and "5-minute budget" in table


def test_few_steps_get_the_exact_symmetries_many_steps_the_full_augmentation():
    fp = FakeFingerprint()
    short = make_plan(fp, 5, "cpu", timer=speed(1.0))  # 1 s steps: a few hundred in 5 minutes
    assert _decision(short, "augmentation").value == "flips, 90° rotations"
    aug = RunConfig().override(short.config).data.augmentation
    assert [type(t) for t in build_augmentation(aug, 2).transforms] == [RandomFlip, RandomRot90]
    fast = make_plan(fp, 60, "cpu", timer=speed(0.01))  # an hour on a fast machine
    steps = int(_decision(fast, "augmentation").reason.split()[0])
    assert steps >= FULL_AUGMENTATION_STEPS and _decision(fast, "augmentation").value == "default"
    assert not any(k.startswith("data.augmentation") for k in fast.config)
    assert len(build_augmentation(RunConfig().override(fast.config).data.augmentation, 2)) == 7


def test_flags_replace_the_planned_augmentation_above_and_below_the_key_they_name():
    plan = make_plan(FakeFingerprint(), 5, "cpu", timer=speed(1.0))
    planned = {k for k in plan.config if k.startswith("data.augmentation.")}
    assert planned == {
        f"data.augmentation.{n}"
        for n in ("spatial", "gamma", "brightness_contrast", "blur", "noise")
    }

    def augmentation(overrides):
        values = planned_values(plan, overrides)
        return apply_overrides(RunConfig(), {**values, **overrides}).data.augmentation

    assert augmentation({}) == {n.split(".")[-1]: False for n in planned}
    # --no-augment: nothing planned is left
    assert augmentation({"data.augmentation": None}) is None
    # --no-augment and one transform named: that transform only, not the whole default set
    only = augmentation({"data.augmentation": None, "data.augmentation.gamma": True})
    assert [type(t) for t in build_augmentation(only, 2).transforms] == [RandomGamma]
    only = augmentation({"data.augmentation": None, "data.augmentation.spatial.p_elastic": 1.0})
    assert only["spatial"] == {"p_elastic": 1.0}
    assert [type(t) for t in build_augmentation(only, 2).transforms] == [SpatialTransform]
    # one transform's parameter: that transform comes back (with its defaults), the rest stay off
    mine = augmentation({"data.augmentation.spatial.p_elastic": 1.0})
    assert mine["spatial"] == {"p_elastic": 1.0} and mine["gamma"] is False
    assert [type(t) for t in build_augmentation(mine, 2).transforms] == [
        RandomFlip,
        RandomRot90,
        SpatialTransform,
    ]
    # a transform the plan switched off, named by the user: back on
    assert augmentation({"data.augmentation.spatial": True})["spatial"] is True
    assert augmentation({"data.augmentation": {}}) == {}  # the whole default set
    assert "model.options.base_features" in planned_values(
        plan, {"data.augmentation.spatial.p_elastic": 1.0}
    )  # unrelated planned keys stay
    # a fixed number of epochs: judged on the user's steps (epochs × iterations per epoch)
    assert augmentation({"train.epochs": 3}) == {n.split(".")[-1]: False for n in planned}
    assert augmentation({"train.epochs": 40, "train.iters_per_epoch": 50}) == {}  # 2000 steps


def test_the_augmentation_is_judged_again_on_each_models_steps():
    assert plan_augmentation(FULL_AUGMENTATION_STEPS - 1)[0] == "flips, 90° rotations"
    assert plan_augmentation(FULL_AUGMENTATION_STEPS) == ("default", plan_augmentation(2000)[1], {})
    fast = make_plan(
        FakeFingerprint(cases=100), 60, "cpu", timer=speed(0.01)
    )  # no folds: 100 cases
    assert fast.config["train.folds"] == 1 and fast.model_steps >= FULL_AUGMENTATION_STEPS
    assert not any(k.startswith("data.augmentation") for k in planned_values(fast, {}))
    # ten folds share the steps: each model gets a tenth, too few for the full set
    ten = planned_values(fast, {"train.folds": 10})
    assert (
        fast.model_steps // 10 < FULL_AUGMENTATION_STEPS
        and ten["data.augmentation.spatial"] is False
    )
    # a saved plan followed with a budget a tenth as long: a tenth of the steps
    assert (
        planned_values(fast, {"train.time_budget_minutes": 6})["data.augmentation.gamma"] is False
    )
    # the plan keeps its steps when saved; an older plan without them keeps its augmentation
    assert Plan.from_dict(fast.to_dict()).model_steps == fast.model_steps
    old = {k: v for k, v in fast.to_dict().items() if k != "model_steps"}
    assert not any(
        k.startswith("data.augmentation")
        for k in planned_values(Plan.from_dict(old), {"train.folds": 10})
    )


def test_a_saved_plan_judges_its_folds_again_on_the_runs_steps():
    # 30 cases, 60 minutes: 3600 steps of width 64 make 3 folds of 1200 (5 would get 720 < 1200)
    plan = make_plan(FakeFingerprint(cases=30), 60, "cpu", timer=speed(0.05))
    assert plan.config["train.folds"] == 3 and plan.model_steps == 1200
    assert plan.config["model.options.base_features"] == 64
    iters = plan.config["train.iters_per_epoch"]
    assert planned_values(plan, {})["train.folds"] == 3  # the plan's own steps: as planned
    assert _folds_note(plan, planned_values(plan, {}), {}) is None
    # followed for 6 minutes: 360 steps in all, too few to share: one model, short-run rules on
    # its 360 steps (batch halved), its epochs three folds' worth of steps at twice the batch
    short = planned_values(plan, {"train.time_budget_minutes": 6})
    assert short["train.folds"] == 1 and short["train.batch_size"] == 8
    assert short["train.iters_per_epoch"] == iters * 3 * 2
    assert _folds_note(plan, short, {"train.time_budget_minutes": 6}) == (
        "plan: one model, not the plan's 3 folds: this run (6 minutes) has 360 steps in all, the "
        "plan 3600; --folds K to choose"
    )
    # followed for 120 minutes: 7200 steps, 5 folds of 1440 each (≥ width 64's 1200)
    long = planned_values(plan, {"train.time_budget_minutes": 120})
    assert long["train.folds"] == 5 and long["train.iters_per_epoch"] == iters * 3 // 5
    # a width of the user's own: width 128 steps 4× slower, 900 steps: one model
    wide = planned_values(plan, {"model.options.base_features": 128})
    assert wide["train.folds"] == 1
    assert "this run (width 128) has 900 steps" in _folds_note(
        plan, wide, {"model.options.base_features": 128}
    )
    # the user's folds, fixed epochs, a validation folder: not judged again
    assert "train.folds" not in planned_values(
        plan, {"train.time_budget_minutes": 6, "train.folds": 5}
    )
    for mine in ({"train.epochs": 3}, {"data.val_dir": "val"}):
        assert "train.folds" not in planned_values(plan, {"train.time_budget_minutes": 6, **mine})
    # one model planned for 5 minutes (1200 steps: 3 folds would get 400), followed for 30: folds
    one = make_plan(FakeFingerprint(cases=30), 5, "cpu", timer=speed(0.05))
    assert one.config["train.folds"] == 1
    assert planned_values(one, {"train.time_budget_minutes": 30})["train.folds"] == 5
    # many cases: one model whatever the budget; a plan saved before its steps keeps its folds
    many = make_plan(FakeFingerprint(cases=100), 60, "cpu", timer=speed(0.05))
    assert planned_values(many, {"train.time_budget_minutes": 600})["train.folds"] == 1
    old = Plan.from_dict({k: v for k, v in plan.to_dict().items() if k != "model_steps"})
    assert planned_values(old, {"train.time_budget_minutes": 6})["train.folds"] == 3


def test_a_saved_plan_judges_the_short_run_batch_again_on_the_runs_budget():
    # 100 cases: one model at any budget (30 would train folds at 60 minutes, which share steps)
    short = make_plan(FakeFingerprint(cases=100), 5, "cpu", timer=speed(1.0))
    # 240 steps of 16 at 5 minutes: halved to 4, epochs of 96 steps
    assert short.full_batch == 16 and short.config["train.batch_size"] == 4
    iters = short.config["train.iters_per_epoch"]
    # 60 minutes give 2880 steps of 16: not a short run, the full batch, epochs of the same pixels
    long = planned_values(short, {"train.time_budget_minutes": 60})
    assert long["train.batch_size"] == 16 and long["train.iters_per_epoch"] == iters * 4 // 16
    # 10 minutes: 480 steps, halved once
    ten = planned_values(short, {"train.time_budget_minutes": 10})
    assert ten["train.batch_size"] == 8 and ten["train.iters_per_epoch"] == iters // 2
    # the plan's own budget, a batch of the user's own, fixed epochs: the batch as planned
    assert planned_values(short, {})["train.batch_size"] == 4
    assert "train.batch_size" not in planned_values(
        short, {"train.time_budget_minutes": 60, "train.batch_size": 2}
    )
    assert (
        planned_values(short, {"train.time_budget_minutes": 60, "train.epochs": 3})[
            "train.batch_size"
        ]
        == 4
    )
    # and the other way round: a long plan followed for 5 minutes halves its batch
    assert (
        make_plan(FakeFingerprint(cases=100), 60, "cpu", timer=speed(1.0)).config[
            "train.batch_size"
        ]
        == 16
    )
    long_plan = make_plan(FakeFingerprint(cases=100), 60, "cpu", timer=speed(1.0))
    assert planned_values(long_plan, {"train.time_budget_minutes": 5})["train.batch_size"] == 4
    # the full batch is saved with the plan; a plan saved without it keeps its batch
    assert Plan.from_dict(short.to_dict()).full_batch == 16
    old = {k: v for k, v in short.to_dict().items() if k != "full_batch"}
    assert (
        planned_values(Plan.from_dict(old), {"train.time_budget_minutes": 60})["train.batch_size"]
        == 4
    )
    # the table gives the width (whose steps the batch's reason quotes) before the batch
    names = [d.name for d in short.decisions]
    assert names.index("width") < names.index("batch")


def test_a_patch_of_the_users_own_gets_the_batch_of_the_planned_pixels(
    tmp_path, capsys, monkeypatch
):
    """The planner's batch holds ≈ PIXELS_PER_BATCH pixels; with a larger patch of the user's own
    the planned batch would multiply the memory and the step time the plan counted."""
    long = make_plan(FakeFingerprint(cases=100), 60, "cpu", timer=speed(1.0))
    assert long.config["data.patch_size"] == [128, 128] and long.config["train.batch_size"] == 16
    iters = long.config["train.iters_per_epoch"]
    big = planned_values(long, {"data.patch_size": 256})  # 4 × 256²: the planned pixels
    assert big["train.batch_size"] == 4 and big["train.iters_per_epoch"] == iters
    wide = planned_values(long, {"data.patch_size": [128, 256]})
    assert wide["train.batch_size"] == 8 and wide["train.iters_per_epoch"] == iters
    small = planned_values(long, {"data.patch_size": 64})
    assert small["train.batch_size"] == 32 and small["train.iters_per_epoch"] == iters * 2
    # the planned patch, or a batch of the user's own: as planned or as given
    assert planned_values(long, {"data.patch_size": [128, 128]})["train.batch_size"] == 16
    assert "train.batch_size" not in planned_values(
        long, {"data.patch_size": 256, "train.batch_size": 2}
    )
    # a short run: 16 halved to 4 at 128²; at 256² the batch of the planned pixels is already 4
    # (not halved below MIN_BATCH), but each step holds 4× the pixels: a quarter of the iterations
    short = make_plan(FakeFingerprint(cases=100), 5, "cpu", timer=speed(1.0))
    assert short.config["train.batch_size"] == 4
    mine = planned_values(short, {"data.patch_size": 256})
    assert mine["train.batch_size"] == 4
    assert mine["train.iters_per_epoch"] == round(short.config["train.iters_per_epoch"] / 4)
    # the command says why the batch is not the planned one
    _fake_probe(monkeypatch)
    data = _write_cells(tmp_path / "train", size=(256, 256))
    out = tmp_path / "plan.json"
    assert cli.main(["plan", str(data), "--time-budget", "60", "--output", str(out)]) == 0
    planned = Plan.load(out)
    patch = [p * 2 for p in planned.config["data.patch_size"]]
    run = ["train", str(data), "--plan", str(out), "--time-budget", "0.05"]
    run += ["--patch-size", ",".join(map(str, patch)), "--no-progress", "--run-dir"]
    capsys.readouterr()
    assert cli.main([*run, str(tmp_path / "run")]) == 0
    text = capsys.readouterr().out
    cfg = RunConfig.from_yaml(tmp_path / "run" / "config.yaml")
    assert list(cfg.data.patch_size) == patch
    mine = {"data.patch_size": patch, "train.time_budget_minutes": 0.05}
    assert cfg.train.batch_size == planned_values(planned, mine)["train.batch_size"] < 16
    assert f"your {patch[0]}×{patch[1]} patch (≈ 262,144 pixels a batch)" in text


def test_a_short_run_gets_a_higher_learning_rate_judged_again_on_each_models_steps():
    assert plan_lr(FULL_AUGMENTATION_STEPS - 1)[0] == SHORT_RUN_LR > LR
    assert plan_lr(FULL_AUGMENTATION_STEPS)[0] == LR
    # 240 steps; 100 cases: one model for any budget (folds would share a longer one's steps)
    short = make_plan(FakeFingerprint(cases=100), 5, "cpu", timer=speed(1.0))
    assert short.config["train.lr"] == SHORT_RUN_LR
    assert _decision(short, "schedule").reason.startswith(f"AdamW lr {SHORT_RUN_LR:g} (240 steps")
    fast = make_plan(FakeFingerprint(cases=100), 60, "cpu", timer=speed(0.01))
    assert fast.model_steps >= FULL_AUGMENTATION_STEPS and fast.config["train.lr"] == LR
    assert _decision(fast, "schedule").reason.startswith(f"AdamW lr {LR:g}, poly")
    # ten folds share the steps; a saved plan followed for 60 minutes has 2880 steps; fixed epochs
    assert planned_values(fast, {"train.folds": 10})["train.lr"] == SHORT_RUN_LR
    assert planned_values(short, {"train.time_budget_minutes": 60})["train.lr"] == LR
    assert (
        planned_values(short, {"train.epochs": 100, "train.iters_per_epoch": 20})["train.lr"] == LR
    )
    # a rate of the user's own is theirs
    assert "train.lr" not in planned_values(short, {"train.lr": 0.01})


def test_a_parameter_of_a_switched_off_transform_switches_it_on():
    # a planned run's config.yaml has "spatial: false"; --resume/--config with a parameter of it
    cfg = RunConfig().override(
        {"data.augmentation.spatial": False, "data.augmentation.gamma": False}
    )
    cfg = cfg.override({"data.augmentation.spatial.p_elastic": 0.9})
    assert cfg.data.augmentation == {"spatial": {"p_elastic": 0.9}, "gamma": False}
    assert [type(t) for t in build_augmentation(cfg.data.augmentation, 2).transforms][:3] == [
        RandomFlip,
        RandomRot90,
        SpatialTransform,
    ]


def test_touching_objects_get_the_border_weight_map_and_rare_classes_oversampling():
    fp = FakeFingerprint(touching_fraction=0.6, class_fraction=[0.995, 0.005])
    plan = make_plan(fp, 5, "cpu", timer=speed())
    assert plan.config["data.weight_map"] is True and plan.config["data.fg_fraction"] == 0.5
    # the border term only: Dice balances the classes; class weights would shift the decision
    assert plan.config["data.class_balance"] is False
    assert "over-segment" in _decision(plan, "loss").reason
    plain = make_plan(FakeFingerprint(), 5, "cpu", timer=speed())
    assert plain.config["data.weight_map"] is False and plain.config["data.fg_fraction"] == 0.33
    assert "data.class_balance" not in plain.config


def test_touching_objects_with_instance_ids_get_separation_gaps_and_without_ids_do_not():
    with_ids = make_plan(
        FakeFingerprint(touching_fraction=0.3, instance_ids=True), 5, "cpu", timer=speed()
    )
    assert with_ids.config["data.separate_objects"] is True
    assert "30 %" in _decision(with_ids, "separate touching objects").reason
    # the same touching objects from a binary mask: nothing says where one ends
    no_ids = make_plan(FakeFingerprint(touching_fraction=0.3), 5, "cpu", timer=speed())
    assert no_ids.config["data.separate_objects"] is False
    assert "instances/" in _decision(no_ids, "separate touching objects").reason
    apart = make_plan(
        FakeFingerprint(touching_fraction=0.01, instance_ids=True), 5, "cpu", timer=speed()
    )
    assert apart.config["data.separate_objects"] is False
    # an instances/ folder that lacks a file: no ids for the set, and the reason says why
    partial = FakeFingerprint(touching_fraction=0.3)
    partial.cases_with_ids = partial.cases - 1
    plan = make_plan(partial, 5, "cpu", timer=speed())
    assert plan.config["data.separate_objects"] is False
    assert _decision(plan, "separate touching objects").reason.startswith(
        f"instance ids for only {partial.cases - 1} of the {partial.cases} cases read (the "
        "instances/ folder lacks some"
    )


def test_thin_touching_structures_get_no_weight_map_and_patches_follow_their_extent():
    vessels = FakeFingerprint(
        touching_fraction=1.0,
        objects={
            "1": {
                "count": 900,
                "diameter_px": {"median": 2, "p10": 1, "p90": 4},
                "extent_px": {"median": 20, "p10": 5, "p90": 60},
            }
        },
    )
    plan = make_plan(vessels, 5, "cpu", timer=speed())
    assert plan.config["data.weight_map"] is False and "thin" in _decision(plan, "loss").reason
    assert plan.config["data.patch_size"] == [192, 192]  # 3 × the 60-px extent, not the 4-px width


def test_the_rarer_class_chooses_the_best_checkpoint():
    assert make_plan(FakeFingerprint(), 5, "cpu", timer=speed()).config["train.select_metric"] == (
        "val_dice"
    )
    membranes = FakeFingerprint(class_fraction=[0.23, 0.77])  # ISBI: 255 = cell interior
    plan = make_plan(membranes, 5, "cpu", timer=speed())
    assert plan.config["train.select_metric"] == "val_dice_c0"
    assert "77 %" in _decision(plan, "model selection").reason


def test_validation_cadence_keeps_validation_a_small_share():
    fp = FakeFingerprint(sizes={"median": [4000, 4000], "min": [3000, 3000], "max": [5000, 5000]})
    plan = make_plan(fp, 5, "cpu", timer=speed(), val_cases=10)
    sched = _decision(plan, "schedule")
    # the same huge validation images given by size beside small training images: timed as
    # huge (the training images' median had made one 4000² image "≈ 1 s")
    small = FakeFingerprint()
    by_count = _decision(make_plan(small, 5, "cpu", timer=speed(), val_cases=10), "schedule")
    by_size = _decision(
        make_plan(small, 5, "cpu", timer=speed(), val_cases=10, val_sizes=[[4000, 4000]] * 10),
        "schedule",
    )
    assert by_size.reason != by_count.reason
    assert by_size.reason.split("validation")[-1] == sched.reason.split("validation")[-1]
    # huge validation images: two validations, at the 4th and 8th of 8 shorter epochs
    assert "about 8 epochs" in sched.reason and "every 4th followed by a validation" in sched.reason
    from unetkit.planning.planner import _ordinal

    assert [_ordinal(n) for n in (1, 2, 3, 11, 12, 21, 22, 113)] == [
        "1st",
        "2nd",
        "3rd",
        "11th",
        "12th",
        "21st",
        "22nd",
        "113th",
    ]
    assert plan.config["train.val_every"] == 4
    few = make_plan(FakeFingerprint(), 5, "cpu", timer=speed(), val_cases=1)
    assert "about 10 epochs" in _decision(few, "schedule").reason
    # a budget of a few steps: the epochs of at least 5 steps hold no more steps than it has
    # (7 steps at the planned batch of 16 = 28 at the batch of 4 it runs: 5 epochs of 5, not 8)
    tiny = make_plan(FakeFingerprint(), 0.5, "cpu", timer=speed(3.0), val_cases=1)
    assert tiny.model_steps == 7 and tiny.config["train.batch_size"] == 4
    assert (
        "about 5 epochs of 5 steps, every 2nd followed by a validation"
        in _decision(tiny, "schedule").reason
    )
    assert tiny.config["train.iters_per_epoch"] == 5 and tiny.config["train.val_every"] == 2
    one = make_plan(FakeFingerprint(), 0.5, "cpu", timer=speed(8.0), val_cases=1)
    assert "about 1 epoch of 5 steps" in _decision(one, "schedule").reason


def test_plan_round_trip(tmp_path):
    plan = make_plan(FakeFingerprint(), 5, "cpu", timer=speed())
    back = Plan.load(plan.save(tmp_path / "plan.json"))
    assert back.to_dict() == json.loads(json.dumps(plan.to_dict()))


def test_probe_times_real_steps_once_and_caches_them(monkeypatch):
    from unetkit.planning import probe

    monkeypatch.setattr(probe, "cpu_snapshot", lambda: None)  # cached however busy the machine
    cand = Candidate("unet", 4, 2, (32, 32), 2)
    first = measure([cand], 1, 2, 2, torch.device("cpu"), None)
    again = measure([cand], 1, 2, 2, torch.device("cpu"), None)
    assert not first[0].cached and again[0].cached
    assert again[0].seconds_per_step == first[0].seconds_per_step > 0
    stored = json.loads(cache_path().read_text())
    (machine,) = [k for k, v in stored.items() if any(cand.key() in e for e in v)]
    assert "torch" in machine and "threads" in machine


def test_the_probe_times_steps_once_the_warm_up_has_settled():
    def steps(*seconds):
        it = iter(seconds)
        calls = []

        def one_step():
            calls.append(next(it))
            return calls[-1]

        return one_step, calls

    # a fresh net's first steps are slow (buffers, kernels): the warm-up lasts until a step is
    # within 10 % of the one before, then three steps are timed and their median kept
    one_step, calls = steps(0.64, 0.55, 0.46, 0.41, 0.47, 0.44, 9.0)
    assert settled_median(one_step) == 0.44 and len(calls) == 6
    # settled at once: two warm-up steps
    one_step, calls = steps(0.2, 0.19, 0.18, 0.21, 0.2, 9.0)
    assert settled_median(one_step) == 0.2 and len(calls) == 5
    # never settling: at most WARMUP_STEPS warm-up steps
    one_step, calls = steps(*[0.5 / 2**i for i in range(WARMUP_STEPS + PROBE_STEPS)], 9.0)
    settled_median(one_step)
    assert len(calls) == WARMUP_STEPS + PROBE_STEPS
    # slow steps: the warm-up and the timing each stop at PROBE_SECONDS
    one_step, calls = steps(PROBE_SECONDS + 1, 5.0, 4.0, 9.0)
    assert settled_median(one_step) == 5.0 and len(calls) == 2


def test_contention_is_the_share_of_the_probes_cpus_other_processes_took():
    from unetkit.planning.probe import CpuSnapshot, contention

    def snap(busy, own, wall, cpus=2):  # 100 jiffies per CPU-second
        return CpuSnapshot(busy, int(100 * cpus * wall), cpus, own, wall)

    start = snap(0, 0.0, 0.0)
    assert contention(start, snap(400, 4.0, 2.0), 2) == 0.0  # the probe alone, both cores
    assert contention(start, snap(400, 2.0, 2.0), 2) == pytest.approx(0.5)  # another job
    assert contention(start, snap(400, 0.0, 2.0), 2) == pytest.approx(1.0)  # no CPU at all
    # one thread on two cores: another job on the other core takes nothing from it
    assert contention(start, snap(400, 2.0, 2.0), 1) == 0.0
    assert contention(start, snap(10, 0.0, 0.1), 2) is None  # too short to tell
    assert contention(None, snap(400, 2.0, 2.0), 2) is None  # no /proc/stat


def test_contention_reads_real_busy_processes():
    import subprocess
    import sys
    import time

    from unetkit.planning.probe import contention, cpu_snapshot

    if cpu_snapshot() is None:
        pytest.skip("no /proc/stat on this system")
    cpus = len(os.sched_getaffinity(0))
    spin = "import time\nt = time.time()\nwhile time.time() - t < 1.6: pass"
    jobs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(cpus)]
    try:
        time.sleep(0.3)  # the interpreters started
        before = cpu_snapshot()
        time.sleep(1.0)  # this process idle: every busy tick is another's
        busy = contention(before, cpu_snapshot(), cpus)
    finally:
        for job in jobs:
            job.wait()
    assert busy >= 0.8


def test_a_timing_taken_on_a_busy_machine_serves_the_plan_but_is_not_cached(monkeypatch, tmp_path):
    from unetkit.planning import probe

    monkeypatch.setenv("UNETKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(probe, "time_training_step", lambda *a, **k: 0.7)
    snaps = iter([probe.CpuSnapshot(0, 0, 2, 0.0, 0.0), probe.CpuSnapshot(400, 400, 2, 2.0, 2.0)])
    monkeypatch.setattr(probe, "cpu_snapshot", lambda: next(snaps))
    said = []
    cand = Candidate("unet", 4, 2, (32, 32), 2)
    (busy,) = measure([cand], 1, 2, 2, torch.device("cpu"), None, progress=said.append)
    assert busy.seconds_per_step == 0.7 and not busy.cached
    assert "other processes took 50 % of the CPU time" in said[-1]
    assert not (tmp_path / "cache" / "probe.json").exists()
    snaps = iter([probe.CpuSnapshot(0, 0, 2, 0.0, 0.0), probe.CpuSnapshot(400, 400, 2, 4.0, 2.0)])
    measure([cand], 1, 2, 2, torch.device("cpu"), None)  # an idle machine: kept
    assert measure([cand], 1, 2, 2, torch.device("cpu"), None)[0].cached


def test_the_cache_keeps_cpu_generations_of_one_name_apart(monkeypatch):
    """Virtual machines call several CPU generations "AMD EPYC"; a cache in a home folder shared by
    a cluster's nodes must not hand one generation's timings to another."""
    from unetkit import runtime
    from unetkit.planning.probe import machine_key

    def cpu(family, isa, flags):
        return runtime.CpuInfo("AMD EPYC", isa, flags, "avx512_bf16" in flags, 2, family)

    zen3 = cpu("family 25 model 1", "AVX2", ("avx2", "fma"))
    zen4 = cpu("family 25 model 17", "AVX512", ("avx2", "fma", "avx512f", "avx512_bf16"))
    zen5 = cpu("family 26 model 2", "AVX512", ("avx2", "fma", "avx512f", "avx512_bf16"))
    keys = []
    for info in (zen3, zen4, zen5, zen5):
        monkeypatch.setattr(runtime, "cpu_info", lambda info=info: info)
        keys.append(machine_key(torch.device("cpu"), torch.bfloat16))
    assert len(set(keys)) == 3 and keys[2] == keys[3]
    assert "family 26 model 2" in keys[2] and "AVX512" in keys[2] and "threads" in keys[2]


def test_a_cache_that_contradicts_itself_is_measured_again():
    """A narrower net cached as slower than a wider one (timed on a busy machine) is timed again."""
    from unetkit.planning.probe import _save_cache, machine_key

    narrow, wide = (Candidate("unet", w, 2, (32, 32), 2) for w in (3, 6))
    stored = json.loads(cache_path().read_text()) if cache_path().is_file() else {}
    stored.setdefault(machine_key(torch.device("cpu"), None), {})[f"{narrow.key()}-c1-k2-2d"] = 9.0
    _save_cache(cache_path(), stored)  # the busy machine's number, as a real probe saves it
    timed = []

    def timer(c: Candidate) -> float:
        timed.append(c.base_features)
        return 0.01 * c.base_features

    got = measure([narrow, wide], 1, 2, 2, torch.device("cpu"), None, timer=timer)
    assert timed == [6, 3]  # the wide one (new), then the cached narrow one again
    assert [m.seconds_per_step for m in got] == [0.03, 0.06] and not got[0].cached


def test_probe_stops_timing_wider_nets_when_its_share_of_the_budget_is_spent(monkeypatch, tmp_path):
    import time

    def slow(c: Candidate) -> float:
        time.sleep(0.05)
        return 0.01 * c.base_features

    cands = [Candidate("unet", w, 2, (32, 32), 2) for w in (5, 6, 7)]
    got = measure(cands, 1, 2, 2, torch.device("cpu"), None, timer=slow, max_seconds=0.01)
    assert [m.candidate.base_features for m in got] == [5]  # the first is always timed
    # in a plan: a 0.1-minute budget leaves the probe 0.18 s, the first width's timing takes 0.2 s
    plan = make_plan(FakeFingerprint(), 0.1, "cpu", timer=lambda c: time.sleep(0.2) or 1.0)
    width = _decision(plan, "width")
    assert width.value == 16 and "width 32 not timed" in width.reason
    assert [m["base_features"] for m in plan.measurements] == [16]
    # the share holds for all the patches tried (a slow machine shrinks the patch twice), not for
    # each: the first patch gets its narrowest width timed; the wider one, whose timing would take
    # ~4× its 20 s steps, is not started; the smaller patches are estimated from that timing per
    # voxel (a 3D step of a large patch takes seconds: timing each patch had spent a 0.5-minute
    # plan's budget). On a clock of the test's own, so that a loaded machine cannot change it
    from types import SimpleNamespace

    from unetkit.planning import planner as planner_module
    from unetkit.planning import probe as probe_module

    clock = {"t": 0.0}
    fake_time = SimpleNamespace(
        perf_counter=lambda: clock["t"], monotonic=time.monotonic, sleep=time.sleep
    )
    monkeypatch.setattr(planner_module, "time", fake_time)
    monkeypatch.setattr(probe_module, "time", fake_time)
    calls = []

    def slow_machine(c: Candidate) -> float:
        calls.append((c.base_features, c.patch))
        clock["t"] += 0.06  # each timing takes 0.06 s of the share's 0.1 s
        return 20.0

    big = FakeFingerprint(
        objects={"1": {"count": 5, "diameter_px": {"median": 90, "p10": 50, "p90": 100}}}
    )
    plan = make_plan(big, 0.1 / (0.03 * 60), "cpu", timer=slow_machine)
    assert [w for w, _ in calls] == [16]  # one timing
    tried = [(m["base_features"], m.get("estimated", False)) for m in plan.measurements]
    assert tried == [(16, False), (16, True), (16, True)]
    first, later = plan.measurements[0], plan.measurements[-1]
    voxels = np.prod(later["patch"]) / np.prod(first["patch"])
    assert later["seconds_per_step"] == pytest.approx(20.0 * voxels, rel=1e-3)
    assert "estimated from the larger patch's timing" in _decision(plan, "width").reason
    # an estimate names the timing it came from: a run of the estimated net that beats it by far
    # forgets that timing (a busy machine's 20 s step would otherwise shape every later plan here)
    assert later["estimated_from"] == first["entry"]
    assert later["factor"] == pytest.approx(voxels, rel=1e-5)
    from unetkit.planning import feedback
    from unetkit.planning.probe import _load_cache, _update_cache

    monkeypatch.setenv("UNETKIT_CACHE_DIR", str(tmp_path / "cache"))
    key = plan.machine["key"]
    _update_cache(probe_module.cache_path(), key, {first["entry"]: 20.0})
    monkeypatch.setattr(feedback, "machine_key", lambda device, dtype: key)
    config = SimpleNamespace(
        model=SimpleNamespace(
            name=later["model"],
            options={"base_features": later["base_features"], "depth": later["depth"]},
        ),
        data=SimpleNamespace(patch_size=later["patch"]),
    )

    def run(images_per_s):
        trainer = SimpleNamespace(
            plan=plan.to_dict(),
            dist=SimpleNamespace(enabled=False),
            history=[{"images_per_s": images_per_s}] * 3,
            device=None,
            autocast_dtype=None,
            config=config,
        )
        return feedback.check_the_probe(trainer)

    batch = plan.full_batch
    assert run(batch / (20.0 * voxels)) is None  # as estimated: kept
    assert first["entry"] in _load_cache(probe_module.cache_path())[key]
    line = run(batch / (0.1 * voxels))  # 200× faster than the timing said
    assert line == (
        f"probe: this run trained at {0.1 * voxels:.2f} s per {batch} images, the cached timing of "
        f"{first['entry']} said {20.0 * voxels:.2f} s (scaled) (timed on a busy machine?): "
        "forgotten, the next plan times it again"
    )
    assert first["entry"] not in _load_cache(probe_module.cache_path())[key]


# -- the commands -------------------------------------------------------------------------------
def _write_cells(root, n=4, size=(64, 80), seed=0):
    rng = np.random.default_rng(seed)
    for d in ("images", "masks"):
        (root / d).mkdir(parents=True)
    for i in range(n):
        mask = np.zeros(size, np.uint8)
        for _ in range(6):
            y, x = rng.integers(4, size[0] - 12), rng.integers(4, size[1] - 12)
            mask[y : y + 8, x : x + 8] = 255
        image = (rng.normal(60, 10, size) + (mask > 0) * 100).clip(0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"{i:02d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:02d}.png")
    return root


def _fake_probe(monkeypatch, base: float = 0.5):
    """The commands time candidates with :func:`speed`'s fake machine: the real probe is
    ``test_probe_times_real_steps_once_and_caches_them``'s job, and real steps of two widths cost a
    minute under emulated bf16."""
    import tempfile

    fake = speed(base)
    monkeypatch.setattr(
        "unetkit.planning.probe.time_training_step", lambda cand, *a, **k: fake(cand)
    )
    # fake timings go to a cache of their own: in the session's, later plans would read them
    monkeypatch.setenv("UNETKIT_CACHE_DIR", tempfile.mkdtemp(prefix="unetkit-fake-probe-"))


def test_plan_command_then_train_follows_the_plan(tmp_path, capsys, monkeypatch):
    _fake_probe(monkeypatch)
    data = _write_cells(tmp_path / "train")
    out = tmp_path / "plan.json"
    assert cli.main(["plan", str(data), "--time-budget", "0.5", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "plan for a 0.5-minute budget" in text and "width" in text and out.is_file()
    plan = Plan.load(out)
    assert plan.config["data.patch_size"] == [64, 80]  # small images: the whole (smallest) image
    run = tmp_path / "run"
    code = cli.main(
        [
            "train",
            str(data),
            "--plan",
            str(out),
            "--epochs",
            "1",
            "--iters-per-epoch",
            "2",
            "--run-dir",
            str(run),
            "--no-progress",
        ]
    )
    assert code == 0
    cfg = RunConfig.from_yaml(run / "config.yaml")
    assert cfg.model.options["base_features"] == plan.config["model.options.base_features"]
    assert cfg.train.epochs == 1 and cfg.train.scheduler == "poly"  # --epochs replaced the schedule
    assert json.loads((run / "plan.json").read_text())["config"] == plan.config
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["extra"]["plan"]["config"] == plan.config


def test_a_run_far_faster_than_its_cached_probe_timing_forgets_it(tmp_path, capsys, monkeypatch):
    """A cached timing taken on a busy machine would shape every later plan here: a planned run
    that steps far faster drops it (the next plan times it again); a slower run keeps it."""
    from unetkit.planning.probe import (
        RUN_CONTRADICTS,
        _load_cache,
        _save_cache,
        forget_if_contradicted,
    )

    # a cache of its own: another test may have cached this candidate already
    monkeypatch.setenv("UNETKIT_CACHE_DIR", str(tmp_path / "cache"))
    data = _write_cells(tmp_path / "train", n=6)

    def train(run, base):
        _fake_probe(monkeypatch, base)
        argv = ["train", str(data), "--time-budget", "0.5", "--epochs", "3"]
        argv += ["--iters-per-epoch", "1", "--precision", "fp32", "--device", "cpu"]
        assert cli.main([*argv, "--no-progress", "--run-dir", str(tmp_path / run)]) == 0
        plan = Plan.load(tmp_path / run / "plan.json")
        assert plan.machine["precision"] == "fp32"  # timed as it trains
        width = plan.config["model.options.base_features"]
        trained = [m["entry"] for m in plan.measurements if m["base_features"] == width]
        others = [m["entry"] for m in plan.measurements if m["base_features"] != width]
        cache = _load_cache(cache_path())[plan.machine["key"]]
        return capsys.readouterr().out, trained, others, cache

    # the fake probe says tens of seconds per step; the real steps take milliseconds
    out, (trained,), others, cache = train("slow-probe", 60.0)
    assert "probe: this run trained at" in out and f"timing of {trained} said" in out
    # (the wider net is not timed: a step the fake probe says takes minutes would not fit the
    # probe's share; any other entry stays)
    assert trained not in cache and all(e in cache for e in others)
    # the fake probe says microseconds: a slower run keeps the timing (it may wait for its data)
    out, (trained,), _, cache = train("fast-probe", 1e-6)
    assert "probe: this run" not in out and trained in cache

    # each fold of a --folds run tells the cache too (the first forgets, the entry is gone after)
    _fake_probe(monkeypatch, 60.0)
    argv = ["train", str(data), "--time-budget", "0.5", "--epochs", "3", "--folds", "2"]
    argv += ["--iters-per-epoch", "1", "--precision", "fp32", "--device", "cpu", "--no-progress"]
    assert cli.main([*argv, "--run-dir", str(tmp_path / "folds")]) == 0
    out = capsys.readouterr().out
    plan = Plan.load(tmp_path / "folds" / "fold_0" / "plan.json")
    width = plan.config["model.options.base_features"]
    (trained,) = [m["entry"] for m in plan.measurements if m["base_features"] == width]
    assert out.count(f"timing of {trained} said") == 1
    assert trained not in _load_cache(cache_path())[plan.machine["key"]]

    # and so does the napari plugin's training job, in the line it ends with
    from unetkit.napari import jobs, layers

    _fake_probe(monkeypatch, 60.0)
    image = np.asarray(Image.open(data / "images" / "00.png"))
    mask = np.asarray(Image.open(data / "masks" / "00.png")) > 0
    pairs = [layers.training_pair(image, False, mask.astype(np.uint8), "cells", "truth")]
    flags = "--epochs 3 --iters-per-epoch 1 --precision fp32 --device cpu"
    done = jobs.train_from_layers(pairs, tmp_path / "napari", 0.5, extra_flags=flags)
    assert done.probe_note and "forgotten, the next plan times it again" in done.probe_note
    assert done.describe().endswith(done.probe_note)

    # the rule itself: only a run under RUN_CONTRADICTS of the cached time forgets it
    _save_cache(cache_path(), {"m": {"e": 1.0}})
    assert forget_if_contradicted("m", "e", RUN_CONTRADICTS + 0.01) is None
    assert forget_if_contradicted("m", "other", 0.1) is None
    assert forget_if_contradicted("m", "e", RUN_CONTRADICTS - 0.01) == 1.0
    assert _load_cache(cache_path()) == {"m": {}}


_WRITER = """
import sys
from pathlib import Path
from unetkit.planning.probe import _update_cache
path, who = Path(sys.argv[1]), sys.argv[2]
for i in range(40):
    _update_cache(path, "m", {f"{who}-{i}": float(i)})
"""


def test_writers_sharing_a_cache_keep_each_others_timings(tmp_path):
    """Plans on the nodes of a cluster share one cache in their home folder: each writer changes
    only its entries, on the file as another left it, so none is lost (whole-file rewrites of a
    copy read earlier lost them: last writer won)."""
    import subprocess
    import sys

    path = tmp_path / "probe.json"
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), who]) for who in "abc"]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0]
    from unetkit.planning.probe import _load_cache

    entries = _load_cache(path)["m"]
    assert sorted(entries) == sorted(f"{who}-{i}" for who in "abc" for i in range(40))
    assert entries["b-7"] == 7.0


def test_a_cache_update_drops_entries_and_saves_without_the_lock(tmp_path, monkeypatch):
    import errno
    import fcntl

    from unetkit.planning import probe

    path = tmp_path / "probe.json"
    probe._save_cache(path, {"m": {"a": 1.0, "b": 2.0}, "other": {"a": 5.0}})
    before = probe._update_cache(path, "m", {"a": None, "c": 3.0})
    assert before == {"a": 1.0, "c": None}
    assert probe._load_cache(path) == {"m": {"b": 2.0, "c": 3.0}, "other": {"a": 5.0}}

    def held(*args):  # another process holds the lock and does not let go
        raise OSError(errno.EAGAIN, "locked")

    monkeypatch.setattr(fcntl, "lockf", held)
    monkeypatch.setattr(probe, "LOCK_WAIT_S", 0.1)
    probe._update_cache(path, "new", {"x": 4.0})  # waits 0.1 s, then saves all the same
    assert probe._load_cache(path)["new"] == {"x": 4.0}
    # a damaged cache is replaced, not a reason to fail
    path.write_text("{not json")
    probe._update_cache(path, "m", {"y": 1.0})
    assert probe._load_cache(path) == {"m": {"y": 1.0}}


def test_the_probe_times_the_precision_the_run_will_use(monkeypatch, tmp_path):
    """--precision fp32 on a bf16 CPU trains 2–3× slower than the bf16 steps auto would time."""
    monkeypatch.setenv("UNETKIT_CACHE_DIR", str(tmp_path / "cache"))
    dtypes = []

    def timing(cand, in_channels, num_classes, dims, device, dtype):
        dtypes.append(dtype)
        return speed()(cand)

    monkeypatch.setattr("unetkit.planning.probe.time_training_step", timing)
    plan = make_plan(FakeFingerprint(), 1, "cpu", precision="fp32")
    assert dtypes and set(dtypes) == {None}  # every candidate timed in fp32
    assert plan.machine["precision"] == "fp32" and "|fp32|" in plan.machine["key"]
    assert "set by the user" in _decision(plan, "precision").reason
    assert plan.config["train.precision"] == "fp32"  # train --plan trains in what was timed
    auto = make_plan(FakeFingerprint(), 1, "cpu", timer=speed())
    assert "set by the user" not in _decision(auto, "precision").reason
    assert "train.precision" not in auto.config  # auto: the trainer decides as the probe did
    with pytest.raises(ConfigError, match="fp16"):
        make_plan(FakeFingerprint(), 1, "cpu", timer=speed(), precision="fp16")


def test_a_saved_plan_timed_on_another_machine_or_precision_says_so(tmp_path, capsys, monkeypatch):
    from unetkit.commands.train import _timed_elsewhere

    _fake_probe(monkeypatch)
    data = _write_cells(tmp_path / "train")
    out = tmp_path / "plan.json"
    assert cli.main(["plan", str(data), "--time-budget", "0.5", "--output", str(out)]) == 0
    run = ["train", str(data), "--plan", str(out), "--epochs", "1", "--iters-per-epoch", "1"]
    run += ["--no-progress", "--device", "cpu"]
    capsys.readouterr()
    assert cli.main([*run, "--run-dir", str(tmp_path / "same")]) == 0
    assert "its probe timed" not in capsys.readouterr().out  # this machine, this precision
    plan = Plan.load(out)
    timed = plan.machine["precision"].replace("bf16", "bfloat16")
    other = "fp32" if timed != "fp32" else "bf16"
    assert cli.main([*run, "--precision", other, "--run-dir", str(tmp_path / "other")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "its probe timed" in x)
    assert f"its probe timed {timed}, this run {other.replace('bf16', 'bfloat16')}:" in line
    # a plan timed in the precision asked for keeps it: train --plan trains in it, no warning
    fp32 = tmp_path / "fp32.json"
    assert cli.main(["plan", str(data), "--precision", "fp32", "--output", str(fp32)]) == 0
    run[run.index(str(out))] = str(fp32)
    capsys.readouterr()
    assert cli.main([*run, "--run-dir", str(tmp_path / "fp32")]) == 0
    assert "its probe timed" not in capsys.readouterr().out
    assert RunConfig.from_yaml(tmp_path / "fp32" / "config.yaml").train.precision == "fp32"

    config = RunConfig().override({"train.device": "cpu"})
    name, torch_version, device, precision, threads = plan.machine["key"].split("|")
    for key, says in (
        # a key saved before the CPU's family numbers were in it: the same CPU by its name
        (f"{name.split(' (')[0]}|{torch_version}|{device}|{precision}|{threads}", None),
        (f"{name}|torch 0.0|{device}|{precision}|{threads}", None),  # torch's version: no matter
        (
            f"Other CPU (family 1 model 1; AVX2; avx2)|{torch_version}|{device}|{precision}|{threads}",
            "Other CPU (family 1 model 1; AVX2; avx2) (cpu), this run " + name,
        ),
        (f"{name}|{torch_version}|{device}|{precision}|99 threads", "99 threads, this run "),
        ("a key of another form", None),
    ):
        plan.machine["key"] = key
        got = _timed_elsewhere(plan, config)
        assert (got is None) if says is None else (says in got), (key, got)


def test_a_saved_plan_followed_for_a_shorter_budget_says_it_halves_the_batch(
    tmp_path, capsys, monkeypatch
):
    _fake_probe(monkeypatch)
    data = _write_cells(tmp_path / "train")
    out = tmp_path / "plan.json"
    assert cli.main(["plan", str(data), "--time-budget", "5", "--output", str(out)]) == 0
    plan = Plan.load(out)
    assert plan.config["train.batch_size"] == plan.full_batch == 32  # not short at 5 minutes
    capsys.readouterr()
    run = tmp_path / "run"
    argv = ["train", str(data), "--plan", str(out), "--time-budget", "0.1"]
    assert cli.main(argv + ["--run-dir", str(run), "--no-progress"]) == 0
    assert (
        "plan: batch 4, not the planned 32: a short run's batch is judged on this run's 0.1 "
        "minutes (the plan's 5)" in capsys.readouterr().out
    )
    cfg = RunConfig.from_yaml(run / "config.yaml")
    assert cfg.train.batch_size == 4
    assert cfg.train.iters_per_epoch == plan.config["train.iters_per_epoch"] * 32 // 4


def test_a_saved_plan_with_a_config_file_keeps_the_files_values(tmp_path, capsys, monkeypatch):
    """``--plan`` and ``--config``: the file's values count as the user's, the plan fills the rest."""
    _fake_probe(monkeypatch)
    data = _write_cells(tmp_path / "train")
    out = tmp_path / "plan.json"
    assert cli.main(["plan", str(data), "--time-budget", "0.5", "--output", str(out)]) == 0
    plan = Plan.load(out)
    assert plan.config["data.augmentation.spatial"] is False  # a few steps: symmetries only
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(  # a blank section (a template's "model:") sets nothing
        "model:\nloss: {}\ndata:\n  augmentation:\n    spatial: {p_elastic: 0.9}\n"
        "train:\n  epochs: 1\n  iters_per_epoch: 2\n  lr: 0.002\n"
    )
    run = tmp_path / "run"
    argv = ["train", str(data), "--plan", str(out), "--config", str(recipe), "--run-dir", str(run)]
    assert cli.main([*argv, "--no-progress"]) == 0
    capsys.readouterr()
    cfg = RunConfig.from_yaml(run / "config.yaml")
    # the file's values
    assert cfg.train.epochs == 1 and cfg.train.iters_per_epoch == 2 and cfg.train.lr == 0.002
    assert cfg.data.augmentation["spatial"] == {"p_elastic": 0.9}
    # the plan's, where the file is silent (2 steps: the other transforms stay off)
    assert cfg.model.name == plan.config["model.name"] and cfg.loss.name == plan.config["loss.name"]
    assert cfg.model.options["base_features"] == plan.config["model.options.base_features"]
    assert cfg.data.patch_size == plan.config["data.patch_size"]
    assert cfg.data.augmentation["gamma"] is False and cfg.train.scheduler == "poly"


def test_plan_command_bad_inputs(tmp_path, capsys):
    assert cli.main(["plan", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing" in err[0]
    data0 = _write_cells(tmp_path / "d0")
    for args, message in (
        (["--time-budget", "0"], "--time-budget must be > 0 minutes, got 0"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--device", "cpu", "--precision", "fp16"], "precision fp16 needs a CUDA device"),
        (["--output", str(data0 / "images" / "00.png" / "p.json")], "00.png"),
    ):
        assert cli.main(["plan", str(data0), *args]) == 2
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert "data:" not in captured.out  # refused before any image is read
    run = ["train", str(data0), "--device", "cpu", "--precision", "fp16", "--run-dir"]
    assert cli.main([*run, str(tmp_path / "r16")]) == 2
    captured = capsys.readouterr()
    assert "precision fp16 needs a CUDA device" in captured.err and "data:" not in captured.out
    assert not (tmp_path / "r16").exists()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    data = _write_cells(tmp_path / "train")
    assert cli.main(["train", str(data), "--plan", str(bad), "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.json" in err[0] and not (tmp_path / "r").exists()


def test_torchrun_needs_a_saved_plan(tmp_path, capsys, monkeypatch):
    data = _write_cells(tmp_path / "train")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert cli.main(["train", str(data), "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--plan plan.json" in err[0] and not (tmp_path / "r").exists()


def test_a_width_of_the_users_own_judges_the_short_run_rules_on_its_steps():
    # 20 minutes on speed(0.15): width 16 takes 0.15 s a step (6400 steps), width 32 0.6 s (1600)
    plan = make_plan(FakeFingerprint(cases=100), 20, "cpu", timer=speed(0.15))
    assert plan.config["model.options.base_features"] == 32 and plan.model_steps == 1600
    assert plan.config["train.lr"] == SHORT_RUN_LR and plan.config["train.batch_size"] == 16
    assert plan.step_seconds(16) == (pytest.approx(0.15), True)
    # width 64 was not timed under 30 minutes: estimated from width 32 (FLOPs grow with width²)
    assert plan.step_seconds(64) == (pytest.approx(2.4), False)
    # width 16 gets 6400 steps: a long run, the full augmentation and the common rate
    narrow = planned_values(plan, {"model.options.base_features": 16})
    assert narrow["train.lr"] == LR and not any(k.startswith("data.augmentation") for k in narrow)
    # width 64 gets ≈ 400: a short run, its batch halved to 8
    wide = planned_values(plan, {"model.options.base_features": 64})
    assert wide["train.lr"] == SHORT_RUN_LR and wide["train.batch_size"] == 8
    assert wide["data.augmentation.spatial"] is False
    # epochs of the same time: 4 × the steps of width 16's quarter-time steps, a quarter of width
    # 64's, then twice that at its halved batch (an epoch covers the same pixels)
    iters = plan.config["train.iters_per_epoch"]
    assert (
        narrow["train.iters_per_epoch"] == 4 * iters and wide["train.iters_per_epoch"] == iters // 2
    )
    # the user's folds share width 16's steps: 5 × 1280, a short run each
    five = planned_values(plan, {"model.options.base_features": 16, "train.folds": 5})
    assert five["train.lr"] == SHORT_RUN_LR
    assert _width_note(plan, {"model.options.base_features": 16}, 5).startswith(
        "plan: width 16 gets ≈ 1280 steps per model (the planned width 32: 320; measured)"
    )
    assert "estimated" in _width_note(plan, {"model.options.base_features": 64}, 1)
    # fixed epochs, another model, widths given otherwise: no note, not judged on the width
    assert _width_note(plan, {"model.options.base_features": 16, "train.epochs": 3}, 1) is None
    for other in ({"model.name": "unet-original"}, {"model.options.feature_scale": 2}):
        mine = {"model.options.base_features": 16, **other}
        assert _width_note(plan, mine, 1) is None
        assert planned_values(plan, mine).get("train.lr") == SHORT_RUN_LR
    # a saved plan followed for 2 minutes: width 32 would get 160 steps (< 300), width 16 suits
    assert _width_hint(plan, {"train.time_budget_minutes": 2}) == (
        "plan: width 16 would suit this run's 2 minutes better than the plan's 32 (made for 20; "
        "640 steps of it in the budget): plan again ('unetkit plan DATA --time-budget 2') or add "
        "--set model.options.base_features=16"
    )
    assert (
        planned_values(plan, {"train.time_budget_minutes": 2})["model.options.base_features"] == 32
    )
    for same in ({}, {"train.time_budget_minutes": 20}, {"train.time_budget_minutes": 30}):
        assert _width_hint(plan, same) is None  # the planned width still suits
    for mine in ({"model.options.base_features": 16}, {"train.epochs": 3}):
        assert _width_hint(plan, {"train.time_budget_minutes": 2, **mine}) is None
    # the planned width, or a plan without timings at its patch: judged on the planned steps
    same = planned_values(plan, {"model.options.base_features": 32})
    assert {**same, "model.options.base_features": 32} == planned_values(plan, {})
    untimed = Plan.from_dict({**plan.to_dict(), "measurements": []})
    assert untimed.step_seconds(16) is None
    assert _width_hint(untimed, {"train.time_budget_minutes": 2}) is None
    assert planned_values(untimed, {"model.options.base_features": 16})["train.lr"] == SHORT_RUN_LR


def test_train_says_how_many_steps_a_width_of_the_users_own_gets(tmp_path, capsys, monkeypatch):
    # a fast fake machine: at 0.1815 minutes (4.8 s of steps: 10.9 s less the 6.1 s the trainer
    # keeps at the end) width 32 gets 384 steps (a short run: batch 16 of 32), the user's width 16
    # four times as many (not short: the full batch)
    _fake_probe(monkeypatch, base=0.005)
    monkeypatch.setenv("UNETKIT_CACHE_DIR", str(tmp_path / "cache"))  # not other tests' timings
    data = _write_cells(tmp_path / "train")
    run = tmp_path / "run"
    argv = ["train", str(data), "--time-budget", "0.1815"]
    argv += ["--set", "model.options.base_features=16"]
    assert cli.main(argv + ["--run-dir", str(run), "--no-progress"]) == 0
    plan = Plan.load(run / "plan.json")
    assert plan.config["model.options.base_features"] == 32 and plan.model_steps == 384
    assert plan.config["train.batch_size"] == 16 and plan.full_batch == 32
    out = capsys.readouterr().out
    # the table shows the planned width 32; the line under it says which one trains
    assert "plan: yours, not the plan's: model.options.base_features 16 (planned 32)" in out
    assert (
        "plan: width 16 gets ≈ 1536 steps per model (the planned width 32: 384; measured): the "
        "short-run rules are judged on them" in out
    )
    assert (
        "plan: batch 32, not the planned 16: a short run's batch is judged on width 16's steps"
        in out
    )
    cfg = RunConfig.from_yaml(run / "config.yaml")
    assert cfg.model.options["base_features"] == 16 and cfg.train.batch_size == 32
    # the plan in the checkpoint holds plain numbers (the fake probe's timings are numpy floats)
    plan_in_ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["extra"]["plan"]
    assert plan_in_ckpt["measurements"] == plan.to_dict()["measurements"]


def test_values_of_the_users_own_are_named_under_the_plan_table():
    plan = make_plan(FakeFingerprint(cases=100), 10, "cpu", timer=speed(0.05))
    lr, patch = plan.config["train.lr"], plan.config["data.patch_size"]
    assert _yours_note(plan, {}) is None
    # the plan's own values given again (a tuple for its list, 10 for 10.0) replace nothing
    same = {"data.patch_size": tuple(patch), "train.time_budget_minutes": 10}
    assert _yours_note(plan, same) is None
    mine = {"train.lr": 1e-4, "data.patch_size": [64, 64], "train.seed": 3}  # no seed is planned
    assert _yours_note(plan, mine) == (
        f"plan: yours, not the plan's: train.lr 0.0001 (planned {lr:g}); "
        f"data.patch_size 64×64 (planned {patch[0]}×{patch[1]})"
    )
    # a config file's leaves come apart (data.normalization.name): the same scheme is no change
    assert _yours_note(plan, {"data.normalization.name": "zscore"}) is None
    assert _yours_note(plan, {"data.normalization.per_image": False}) == (
        "plan: yours, not the plan's: normalization zscore (per_image=False) (planned zscore)"
    )
    # the normalisation is decided, not a config value; the planned epochs are only a ceiling
    yours = {"data.normalization": {"name": "zscore", "per_image": False}, "train.epochs": 2}
    assert _yours_note(plan, yours) == (
        "plan: yours, not the plan's: train.epochs 2 (planned as many as the budget allows); "
        "normalization zscore (per_image=False) (planned zscore)"
    )
    assert _yours_note(plan, {"data.normalization": {"name": "zscore"}}) is None


def test_a_sampled_fingerprint_plans_the_split_of_every_case():
    """300 cases of which 200 were read: the hold-out validated on is 60 images, not 40."""
    fp = FakeFingerprint(cases=200, cases_found=300)
    plan = make_plan(fp, 10, "cpu", timer=speed(0.05))
    assert "of 60 image(s)" in _decision(plan, "schedule").reason


def test_thumbnails_do_not_cut_the_patch_below_one_object_of_the_typical_image():
    """A third of the images are thumbnails (5×10 px) beside 300² images of 22-px nuclei: the
    patch fits the thumbnails' percentile no lower than one nucleus (it was 16², no whole
    nucleus); images as small as their objects keep the cut (37×50 with 30-px objects)."""
    objects = {"1": {"count": 100, "per_case_median": 10, "diameter_px": {"p10": 10, "p90": 22}}}
    sizes = {"median": [300, 300], "min": [3, 5], "p10": [5, 10], "max": [300, 300]}
    fp = FakeFingerprint(cases=12, sizes=sizes, objects=objects)
    plan = make_plan(fp, 1, "cpu", timer=speed())
    assert plan.config["data.patch_size"] == [32, 32]
    assert _decision(plan, "patch").reason.endswith(
        "(10th percentile 5×10; smaller ones are mirrored to fill it), but not below one large "
        "object (22 px), which the typical image (300×300) holds"
    )
    small = {"median": [40, 52], "min": [37, 50], "p10": [37, 50], "max": [60, 60]}
    plan = make_plan(FakeFingerprint(sizes=small), 5, "cpu", timer=speed())
    assert plan.config["data.patch_size"] == [32, 48]
    # objects larger than the patch limit: held at the limit, not above it
    huge = {"1": {"count": 50, "per_case_median": 2, "diameter_px": {"p10": 200, "p90": 300}}}
    sizes = {"median": [1200, 1200], "min": [60, 60], "p10": [60, 60], "max": [1200, 1200]}
    patch, why = plan_patch(FakeFingerprint(cases=12, sizes=sizes, objects=huge), "cpu")
    assert patch == [256, 256] and "but as near one large object (300 px) as the typical" in why


def test_plan_reasons_say_what_happened_to_a_patch_the_images_cut():
    """Images of 37 × 50 px cut the patch below the 128-px floor: the reason does not claim the
    patch lies within the limits, and depth 2 (the fewest) does not claim a 12-px bottleneck."""
    fp = FakeFingerprint(
        sizes={"median": [40, 52], "min": [37, 50], "p10": [37, 50], "max": [60, 60]}
    )
    plan = make_plan(fp, 5, "cpu", timer=speed())
    patch = _decision(plan, "patch")
    assert patch.value == [32, 48] and "within" not in patch.reason
    assert patch.reason.endswith("at most 256 px, cut to the smallest image (37×50)")
    depth = _decision(plan, "depth")
    assert depth.value == 2 and depth.reason == (
        "the fewest poolings a plan uses (8 px bottleneck at 32; one of 12 px needs a patch of 48 "
        "px or more)"
    )


def test_plan_training_gives_python_the_config_and_plan_the_command_trains(tmp_path, monkeypatch):
    """A notebook plans as ``unetkit train DIR`` does: the plan's values under the flags given,
    one model unless folds are asked for, and the plan that Trainer(plan=) saves with the run."""
    from unetkit import Trainer, plan_training

    _fake_probe(monkeypatch)
    data = _write_cells(tmp_path / "train", n=6)
    config, plan = plan_training(data, time_budget=0.5, flags=["--seed", "3", "--epochs", "1"])
    assert isinstance(config, RunConfig) and plan["budget_minutes"] == 0.5
    assert config.train.seed == 3 and config.train.epochs == 1 and config.train.folds == 1
    assert config.data.patch_size == plan["config"]["data.patch_size"]
    assert config.model.options["base_features"] == plan["config"]["model.options.base_features"]
    run = tmp_path / "run"
    config = config.override({"train.iters_per_epoch": 1})
    Trainer(config, run_dir=run, progress=False, plan=plan).fit()
    assert json.loads((run / "plan.json").read_text())["config"] == plan["config"]
    with pytest.raises(ConfigError, match=r"^unetkit: unrecognized arguments: --bogus$"):
        plan_training(data, flags=["--bogus"])


def test_the_readme_python_tour_runs_as_written(tmp_path, monkeypatch, capsys):
    """README's notebook block, run as written on a small folder (the budget shortened)."""
    import re
    from pathlib import Path

    _fake_probe(monkeypatch)
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = re.search(r"The same from Python \(a notebook\):\n\n```python\n(.*?)```", readme, re.S)
    code = block[1].replace("time_budget=10", "time_budget=0.05")
    assert code != block[1]
    for split, seed in (("train", 0), ("val", 1), ("test", 2)):
        _write_cells(tmp_path / "data" / split, n=3 if split == "train" else 1, seed=seed)
    (tmp_path / "data/test/images/00.png").rename(tmp_path / "data/test/images/a.png")
    (tmp_path / "data/test/masks/00.png").rename(tmp_path / "data/test/masks/a.png")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert set(np.unique(scope["masks"])) <= {0, 255} and scope["labels"].shape == (64, 80)
    assert (tmp_path / "runs/tour/plan.json").is_file() and (tmp_path / "preds/a.png").is_file()
    assert 0 <= float(capsys.readouterr().out.strip().splitlines()[-1]) <= 1  # the Dice printed


def test_images_with_hot_pixels_are_planned_with_percentiles_not_a_z_score():
    """A few extreme pixels (the fingerprint's hot_pixel_cases) make the plan choose per-image
    percentiles, and set it (training alone would choose the z-score); channel names still win."""
    plain = make_plan(FakeFingerprint(), 5, "cpu", timer=speed(1.0))
    assert _decision(plain, "normalization").value == "zscore"
    assert "data.normalization" not in plain.config
    fp = FakeFingerprint(cases=10, hot_pixel_cases=["a.tif", "b.tif"])
    hot = make_plan(fp, 5, "cpu", timer=speed(1.0))
    decision = _decision(hot, "normalization")
    assert decision.value.startswith("percentile")
    assert "2 image(s) hold a few pixels far outside the rest (a.tif, b.tif)" in decision.reason
    assert hot.config["data.normalization"] == {"name": "percentile"}
    named = make_plan(
        FakeFingerprint(hot_pixel_cases=["a.tif"]), 5, "cpu", timer=speed(1.0), channel_names=["CT"]
    )
    assert _decision(named, "normalization").value.startswith("ct")


def test_a_16_bit_channel_named_rgb_to_0_1_is_refused():
    fp = FakeFingerprint(channels=2)
    fp.intensity = [{"p99_5": 3000.0}, {"p99_5": 200.0}]
    with pytest.raises(
        ConfigError,
        match=r"channel 0 is named rgb_to_0_1 \(0 … 255 to \[0, 1\]\) "
        r"but its foreground reaches 3000",
    ):
        make_plan(fp, 5, "cpu", timer=speed(1.0), channel_names=["rgb_to_0_1", "noNorm"])
    plan = make_plan(fp, 5, "cpu", timer=speed(1.0), channel_names=["zscore", "rgb_to_0_1"])
    assert plan.config["data.channel_names"] == ["zscore", "rgb_to_0_1"]


def test_the_users_channel_names_replace_a_planned_normalization():
    from unetkit.commands.train import planned_values

    hot = make_plan(
        FakeFingerprint(hot_pixel_cases=["a.tif", "b.tif", "c.tif"]), 5, "cpu", timer=speed(1.0)
    )
    assert planned_values(hot, {})["data.normalization"] == {"name": "percentile"}
    assert "data.normalization" not in planned_values(hot, {"data.channel_names": ["CT"]})
    # one image with hot pixels among thirty: not worth another input for every image
    one = make_plan(FakeFingerprint(hot_pixel_cases=["a.tif"]), 5, "cpu", timer=speed(1.0))
    assert _decision(one, "normalization").value == "zscore"

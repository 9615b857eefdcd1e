"""Cross-validation ensembles: ``EnsemblePredictor`` is the mean of its members (whole images and band
by band), run folders resolve to their folds, ``unetkit train --folds K`` trains every fold into one
folder within one budget, and the planner's folds rule."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetkit import cli, create_model
from unetkit.checkpoint import load_checkpoint, save_checkpoint
from unetkit.config import RunConfig
from unetkit.data import LabelMap, create_normalizer
from unetkit.errors import ConfigError, DataError
from unetkit.inference import batch as batch_mod
from unetkit.inference.batch import predict_files
from unetkit.inference.ensemble import EnsemblePredictor
from unetkit.inference.large import predict_large
from unetkit.inference.predictor import Predictor
from unetkit.planning import Plan, make_plan
from unetkit.planning.planner import FOLD_MIN_STEPS, LIGHT_AUGMENTATION, MIN_STEPS, plan_folds
from unetkit.run_folder import (
    folder_not_file,
    incomplete_folds_warning,
    model_files,
    refresh_fold,
    run_checkpoints,
)
from unetkit.training import folds as folds_mod

from .test_planner import FakeFingerprint, speed
from .test_training import make_cells


def _checkpoint(path: Path, seed: int, labels=(0, 255), **model) -> Path:
    import torch

    torch.manual_seed(seed)
    net = create_model("unet", **{"base_features": 4, "depth": 2, "norm": "instance", **model})
    return save_checkpoint(
        path,
        net,
        normalization=create_normalizer("zscore").to_dict(),
        label_map=LabelMap(list(labels)).to_dict(),
        patch_size=[32, 32],
        with_rng=False,
    )


@pytest.fixture
def two(tmp_path) -> list[Path]:
    return [_checkpoint(tmp_path / f"m{i}.pt", seed=i) for i in range(2)]


def _image(shape=(40, 50), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, shape).astype(np.uint8)


# -- the mean of the members --------------------------------------------------------------------
def test_ensemble_is_the_mean_of_its_members_probabilities(two, tmp_path):
    members = [Predictor.from_checkpoint(p, precision="fp32") for p in two]
    ens = EnsemblePredictor.from_checkpoints(two, precision="fp32")
    image = _image()[None]
    each = [m.predict_proba(image) for m in members]
    assert not np.allclose(each[0], each[1], atol=1e-3)  # two different models
    mean = (each[0] + each[1]) / 2
    probs = ens.predict_proba(image)
    assert probs.shape == (2, 40, 50) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, mean, rtol=0, atol=1e-6)
    assert np.array_equal(ens.predict(image), mean.argmax(0))
    # predict_files writes the mean's argmax in the masks' values
    Image.fromarray(image[0]).save(tmp_path / "a.png")
    predict_files(ens, [tmp_path / "a.png"], tmp_path / "out", progress=False)
    labels = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    assert np.array_equal(labels, np.where(mean.argmax(0) == 1, 255, 0))
    assert "ensemble of 2 models" in ens.describe() and str(two[1]) in ens.describe()


def test_ensemble_progress_counts_every_members_tiles(two):
    ens = EnsemblePredictor.from_checkpoints(two, precision="fp32", tile=32)
    seen = []
    ens.predict_proba(_image()[None], progress=lambda done, total: seen.append((done, total)))
    tiles = len(ens.members[0].plan((40, 50)).grid().tiles)
    assert seen == [(d, 2 * tiles) for d in range(1, 2 * tiles + 1)]


def test_post_processing_is_the_steps_every_member_chose(two):
    """Each fold chooses on its own validation images: a step all kept is applied (a removal at
    the smallest of their sizes: each fold sizes it from its own objects, so the speck guard
    alone made folds disagree and lose their common hole filling); a step one lacks is not."""
    from unetkit.inference.postprocess import PostProcessing, PostStep

    fill = PostProcessing((PostStep("fill_holes", 1),))
    small = PostProcessing((PostStep("remove_small", 1, min_size=12),))
    same = [Predictor.from_checkpoint(p, postprocess=fill) for p in two]
    assert EnsemblePredictor(same).postprocess == fill
    apart = [Predictor.from_checkpoint(two[0], postprocess=fill)]
    apart.append(Predictor.from_checkpoint(two[1], postprocess=small))
    assert not EnsemblePredictor(apart).postprocess  # nothing in common
    assert EnsemblePredictor(apart, postprocess=small).postprocess == small
    guards = [
        PostProcessing((PostStep("remove_small", 1, min_size=37), PostStep("fill_holes", 1))),
        PostProcessing((PostStep("fill_holes", 1), PostStep("remove_small", 1, min_size=49))),
    ]
    folds = [Predictor.from_checkpoint(p, postprocess=g) for p, g in zip(two, guards)]
    assert EnsemblePredictor(folds).postprocess == PostProcessing(
        (PostStep("remove_small", 1, min_size=37), PostStep("fill_holes", 1))
    )
    other = PostProcessing(guards[1].steps, connectivity=2)
    folds[1] = Predictor.from_checkpoint(two[1], postprocess=other)
    assert not EnsemblePredictor(folds).postprocess  # objects counted otherwise: nothing shared


def test_mismatched_members_are_refused_naming_the_checkpoint(tmp_path, two):
    other = _checkpoint(tmp_path / "labels01.pt", seed=3, labels=(0, 1))
    with pytest.raises(ConfigError, match=r"labels01\.pt: its label map \[0, 1\] differs from"):
        EnsemblePredictor.from_checkpoints([two[0], other], precision="fp32")
    rgb = _checkpoint(tmp_path / "rgb.pt", seed=3, in_channels=3)
    with pytest.raises(ConfigError, match=r"rgb\.pt: its input channels 3 differs from 1"):
        EnsemblePredictor.from_checkpoints([two[0], rgb], precision="fp32")
    with pytest.raises(ConfigError, match="at least one model"):
        EnsemblePredictor([])
    um, mm = (
        Predictor.from_checkpoint(two[0], precision="fp32", spacing_unit=unit)
        for unit in ("um", "mm")
    )
    with pytest.raises(ConfigError, match=r"calibrated in different units \(mm, um\)"):
        EnsemblePredictor([um, mm])


def test_cli_mismatched_label_maps_one_line_exit_2(tmp_path, two, capsys):
    other = _checkpoint(tmp_path / "labels01.pt", seed=3, labels=(0, 1))
    Image.fromarray(_image()).save(tmp_path / "a.png")
    code = cli.main(
        ["predict", f"{two[0]},{other}", str(tmp_path / "a.png"), "-o", str(tmp_path / "out")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("unetkit predict: error: ") and f"{other}: its label map" in err[0]
    assert not (tmp_path / "out").exists()


# -- band by band -------------------------------------------------------------------------------
class _MemorySink:
    def __init__(self):
        self.rows = []

    def write(self, y0, probs):
        assert y0 == sum(r.shape[1] for r in self.rows)
        self.rows.append(np.array(probs))

    def close(self):
        pass


def _band_members(blend: str, **second) -> list[Predictor]:
    kwargs = dict(
        precision="fp32",
        max_tile=96,
        min_overlap=16,
        blend=blend,
        normalizer=create_normalizer("zscore"),
        label_map=LabelMap([0, 255]),
    )
    models = [
        create_model("unet", base_features=2, depth=2, init="torch", norm="none"),
        create_model(
            "unet", base_features=2, depth=2, init="torch", norm="none", **second.pop("model", {})
        ),
    ]
    return [Predictor(models[0], **kwargs), Predictor(models[1], **{**kwargs, **second})]


@pytest.mark.parametrize("blend, sigmoid", [("crop", False), ("gaussian", True)])
def test_band_by_band_ensemble_equals_the_whole_image_mean(blend, sigmoid, tmp_path, monkeypatch):
    # a one-channel (sigmoid) member stacks with a softmax one: both become log-probabilities
    members = _band_members(blend, model={"num_classes": 1} if sigmoid else {})
    ens = EnsemblePredictor(members, ["a", "b"])
    image = np.random.default_rng(3).normal(size=(1, 301, 257)).astype(np.float32)
    assert len(ens.plan(image.shape[1:]).grid().rows()) > 1  # really several bands
    whole = (members[0].predict_proba(image) + members[1].predict_proba(image)) / 2
    sink = _MemorySink()
    predict_large(ens, image, sink)
    np.testing.assert_allclose(np.concatenate(sink.rows, axis=1), whole, rtol=0, atol=1e-6)
    # through predict_files: the band path and its labels
    np.save(tmp_path / "big.npy", image)
    monkeypatch.setattr(batch_mod, "LARGE_PIXELS", 1000)
    res = predict_files(ens, [tmp_path / "big.npy"], tmp_path / "out", "tiff", progress=False)
    assert res[0].mode == "band-by-band"
    probs = tifffile.imread(tmp_path / "out" / "big_prob.tif").astype(np.float32)
    np.testing.assert_allclose(probs, whole, atol=2e-3)  # float16 storage


def test_band_path_refuses_members_that_normalise_or_tile_apart():
    image = np.random.default_rng(0).normal(size=(1, 200, 150)).astype(np.float32)
    norm = EnsemblePredictor(
        _band_members("crop", normalizer=create_normalizer("minmax")), ["a.pt", "b.pt"]
    )
    with pytest.raises(ConfigError, match=r"^b\.pt: its normalisation differs from a\.pt's"):
        predict_large(norm, image, _MemorySink())
    assert norm.predict_proba(image).shape == (2, 200, 150)  # whole images: each its own
    tiles = EnsemblePredictor(_band_members("crop", max_tile=64), ["a.pt", "b.pt"])
    with pytest.raises(ConfigError, match=r"^b\.pt: its tiling differs"):
        predict_large(tiles, image, _MemorySink())
    scaled = EnsemblePredictor(_band_members("crop", scale=0.5), ["a.pt", "b.pt"])
    with pytest.raises(DataError, match="the model works at 0.5×0.5 of the stored resolution"):
        predict_large(scaled, image, _MemorySink())  # as for one scaled model


# -- run folders --------------------------------------------------------------------------------
def _fold_run(root: Path, checkpoints: list[Path]) -> Path:
    for i, ckpt in enumerate(checkpoints):
        (root / f"fold_{i}" / "checkpoints").mkdir(parents=True)
        shutil.copy(ckpt, root / f"fold_{i}" / "checkpoints" / "best.pt")
    return root


def test_run_folder_with_folds_is_found_and_averaged(two, tmp_path, capsys):
    run = _fold_run(tmp_path / "run", two)
    best = [run / "fold_0/checkpoints/best.pt", run / "fold_1/checkpoints/best.pt"]
    assert run_checkpoints(run) == best == model_files(str(run))
    Image.fromarray(_image()).save(tmp_path / "a.png")
    out = tmp_path / "out"
    argv = [str(run), str(tmp_path / "a.png"), "-o", str(out), "--no-progress"]
    assert cli.main(["predict", *argv, "--probabilities", "npz", "--precision", "fp32"]) == 0
    assert "ensemble of 2 models" in capsys.readouterr().out
    image = _image()[None]
    mean = sum(Predictor.from_checkpoint(p, precision="fp32").predict_proba(image) for p in two) / 2
    probs = np.load(out / "a_prob.npz")["probabilities"].astype(np.float32)
    np.testing.assert_allclose(probs, mean, atol=2e-3)  # float16 storage
    # ensemble.json decides which folds; a plain run folder is its best.pt; commas join models
    (run / "ensemble.json").write_text(json.dumps({"checkpoints": ["fold_1/checkpoints/best.pt"]}))
    assert run_checkpoints(run) == best[1:]
    single = tmp_path / "single"
    (single / "checkpoints").mkdir(parents=True)
    shutil.copy(two[0], single / "checkpoints" / "best.pt")
    assert model_files(f"{single},{two[1]}") == [single / "checkpoints/best.pt", two[1]]
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        DataError, match="empty: is a folder, not a checkpoint file or a run folder"
    ):
        model_files(str(tmp_path / "empty"))
    # a run still in its first epoch (or killed in it), then one with only last.pt: said so
    early = tmp_path / "early"
    (early / "checkpoints").mkdir(parents=True)
    (early / "config.yaml").write_text("model: {name: unet}\n")
    with pytest.raises(
        DataError,
        match=r"early: is a run folder without a checkpoints/best\.pt "
        r"yet \(still in its first epoch, or stopped before it ended\)",
    ):
        model_files(str(early))
    shutil.copy(two[0], early / "checkpoints" / "last.pt")
    with pytest.raises(DataError, match=r"its latest epoch is .*last\.pt: give that file"):
        model_files(str(early))
    (run / "ensemble.json").write_text(json.dumps({"checkpoints": ["fold_0/checkpoints/best.pt"]}))
    best[0].unlink()
    with pytest.raises(DataError, match=r"fold_0/checkpoints/best\.pt: listed in .* but missing"):
        run_checkpoints(run)


def test_a_fold_that_failed_to_train_is_called_out(two, tmp_path, capsys):
    """A run whose fold 0 scored 0.13 where the others reached 0.95: predict says so and names
    the models that leave it out; folds that agree, or a loss metric, say nothing."""
    from unetkit.run_folder import weak_folds_warning, write_ensemble

    run = _fold_run(tmp_path / "run", two)
    members = [
        {"fold": 0, "best": {"value": 0.13, "epoch": 1}},
        {"fold": 1, "best": {"value": 0.96, "epoch": 3}},
    ]
    write_ensemble(run, members, "val_dice")
    warning = weak_folds_warning(run)
    assert warning == (
        f"val_dice per fold: fold 0 0.130, fold 1 0.960; fold(s) 0 most likely failed to train "
        f"and the mean of the folds includes them; to leave them out, predict with "
        f"{run / 'fold_1' / 'checkpoints' / 'best.pt'}"
    )
    Image.fromarray(_image()).save(tmp_path / "a.png")
    argv = [str(run), str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--no-progress"]
    assert cli.main(["predict", *argv, "--precision", "fp32"]) == 0
    assert f"warning: {warning}\n" in capsys.readouterr().err
    members[0]["best"]["value"] = 0.90
    write_ensemble(run, members, "val_dice")
    assert weak_folds_warning(run) is None
    members[0]["best"]["value"] = 0.1
    write_ensemble(run, members, "val_loss")  # lower is better: not judged
    assert weak_folds_warning(run) is None
    write_ensemble(run, members, "val_pixel_error")  # nor is an error
    assert weak_folds_warning(run) is None
    members[0]["best"] = None  # a fold that never validated is the clearest failure
    write_ensemble(run, members, "val_dice")
    assert "fold 0 none, fold 1 0.960; fold(s) 0 most likely failed" in weak_folds_warning(run)
    assert weak_folds_warning(two[0]) is None  # a checkpoint, not a run folder


# -- training the folds ------------------------------------------------------------------------
FAST = [
    "--no-plan",
    "--epochs",
    "1",
    "--iters-per-epoch",
    "2",
    "--patch-size",
    "32",
    "--batch-size",
    "2",
    "--precision",
    "fp32",
    "--threads",
    "1",
    "--set",
    "model.options.base_features=4",
    "--set",
    "model.options.depth=2",
    "--no-progress",
]


def test_train_folds_writes_every_fold_and_the_ensemble(tmp_path, capsys):
    data = make_cells(tmp_path / "data", n=5)
    run = tmp_path / "run"
    assert cli.main(["train", str(data), "--folds", "2", "--run-dir", str(run), *FAST]) == 0
    out = capsys.readouterr().out
    assert "fold 1/2 done:" in out and "fold 2/2 done:" in out and "cross-validated val_dice" in out
    record = json.loads((run / "ensemble.json").read_text())
    assert record["folds"] == 2 and record["select_metric"] == "val_dice"
    assert record["checkpoints"] == ["fold_0/checkpoints/best.pt", "fold_1/checkpoints/best.pt"]
    values = [m["best"]["value"] for m in record["members"]]
    assert record["mean"] == pytest.approx(sum(values) / 2)
    val = []
    for i in range(2):
        fold = run / f"fold_{i}"
        cfg = RunConfig.from_yaml(fold / "config.yaml")
        assert (cfg.data.num_folds, cfg.data.fold, cfg.train.folds) == (2, i, 1)
        assert (fold / "checkpoints" / "best.pt").is_file()
        splits = json.loads((fold / "splits.json").read_text())
        val.append(set(splits[i]["val"]))
    assert not val[0] & val[1] and val[0] | val[1] == {f"{i:02d}" for i in range(5)}
    assert model_files(str(run)) == [run / c for c in record["checkpoints"]]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--val", "{data}"], "train.folds=2 (--folds: every fold of a cross-validation split)"),
        (["--num-folds", "3"], "and data.num_folds=3 (--num-folds: one fold of a split)"),
        (["--folds", "9"], "--folds 9 (train.folds) needs at least 9 cases"),
    ],
)
def test_train_folds_bad_arguments_one_line_exit_2(tmp_path, capsys, extra, message):
    data = make_cells(tmp_path / "data", n=3)
    run = tmp_path / "run"
    argv = ["train", str(data), "--folds", "2", "--run-dir", str(run), *FAST]
    code = cli.main(argv + [a.replace("{data}", str(data)) for a in extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not run.exists()


def test_budget_is_shared_out_as_the_folds_go_and_a_failure_keeps_finished_folds(
    tmp_path, monkeypatch
):
    """Fold i gets (budget − time spent) / (folds left): a fast fold leaves its time to the others."""
    clock = {"now": 0.0}
    spent = iter([1.0, 4.0, 2.0])  # minutes each fold takes
    budgets = []

    class FakeTrainer:
        def __init__(self, config, run_dir, progress, plan):
            self.config, self.run_dir = config, Path(run_dir)

        def fit(self):
            budgets.append(self.config.train.time_budget_minutes)
            clock["now"] += 60 * next(spent)
            (self.run_dir / "checkpoints").mkdir(parents=True)  # its first epoch saved a model
            (self.run_dir / "checkpoints" / "best.pt").write_bytes(b"")
            if self.config.data.fold == fail_at:
                raise RuntimeError("boom")
            return folds_mod.TrainResult(self.run_dir, 1, None, "time budget reached")

    monkeypatch.setattr(folds_mod, "Trainer", FakeTrainer)
    monkeypatch.setattr(folds_mod.time, "monotonic", lambda: clock["now"])
    data = make_cells(tmp_path / "data", n=3)
    cfg = RunConfig.from_dict(
        {"data": {"train_dir": str(data)}, "train": {"folds": 3, "time_budget_minutes": 9}}
    )
    fail_at = None
    result = folds_mod.train_folds(cfg, tmp_path / "run", say=lambda s: None)
    assert budgets == [3.0, 4.0, 4.0]  # 9/3; (9−1)/2; (9−1−4)/1
    assert result.record["mean"] is None and result.record["folds"] == 3
    # a failure in fold 1: fold 0 stays, no ensemble.json, the exception goes on
    lines, budgets[:] = [], []
    clock["now"], spent, fail_at = 0.0, iter([1.0, 1.0]), 1
    with pytest.raises(RuntimeError, match="boom"):
        folds_mod.train_folds(cfg, tmp_path / "run2", say=lines.append)
    assert not (tmp_path / "run2" / "ensemble.json").exists()
    # the failed fold saved a model too: predict averages both, and the line says so
    assert "the 2 fold(s) with a model (fold_0, fold_1) stay in" in lines[-1]


# -- the planner's rule --------------------------------------------------------------------------
def test_folds_pay_only_for_small_data_with_enough_steps_per_fold():
    need = max(FOLD_MIN_STEPS, MIN_STEPS[32])
    assert plan_folds(30, 5 * need, 32, 30, fixed_val=False)[0] == 5
    assert plan_folds(30, 4 * need, 32, 30, fixed_val=False)[0] == 4
    assert plan_folds(4, 5 * need, 32, 30, fixed_val=False)[0] == 4  # no more folds than cases
    k, why = plan_folds(30, 3 * need - 3, 32, 10, fixed_val=False)
    assert k == 1 and why == (
        f"a 10-minute budget on this machine gives one model {3 * need - 3} steps; 3 folds would "
        f"get {need - 1} each (fewer than {need} at width 32)"
    )
    assert plan_folds(41, 10**6, 16, 30, fixed_val=False)[0] == 1  # plenty of data: hold out
    assert plan_folds(30, 10**6, 16, 30, fixed_val=True) == (
        1,
        "a validation folder is given: one model, validated on it",
    )
    assert plan_folds(2, 10**6, 16, 30, fixed_val=False)[0] == 1


def test_plan_chooses_folds_with_a_fake_machine():
    fp = FakeFingerprint(cases=30)
    short = make_plan(fp, 5, "cpu", timer=speed(0.1))  # 600 steps at width 32: one model
    assert short.config["train.folds"] == 1
    long = make_plan(fp, 30, "cpu", timer=speed(0.1))  # 3600 steps at width 32: 5 folds of 720
    assert long.config["train.folds"] == 5
    (folds,) = [d for d in long.decisions if d.name == "folds"]
    assert folds.reason.startswith("only 30 cases: a 20 % hold-out wastes data; 5 folds of 720")
    assert long.config["train.iters_per_epoch"] == 72  # each fold's 720 steps over 10 validations
    assert make_plan(fp, 30, "cpu", timer=speed(0.1), val_cases=6).config["train.folds"] == 1
    assert (
        make_plan(FakeFingerprint(cases=300), 30, "cpu", timer=speed(0.1)).config["train.folds"]
        == 1
    )


def test_planned_folds_give_way_to_a_validation_folder_or_a_chosen_fold():
    from unetkit.commands.train import planned_values

    plan = Plan(30, {}, {}, config={"train.folds": 5, "train.iters_per_epoch": 72})
    assert planned_values(plan, {}) == {"train.folds": 5, "train.iters_per_epoch": 72}
    for given in ({"data.val_dir": "v"}, {"data.num_folds": 3}, {"data.fold": 1}):
        # one model gets the steps of all five folds: epochs five times as long
        assert planned_values(plan, given) == {"train.iters_per_epoch": 360}
    assert planned_values(plan, {"train.folds": 2}) == {"train.iters_per_epoch": 180}
    # a fixed number of epochs: one model (planned folds would multiply the run), unless asked;
    # its 5 × 50 steps get the exact symmetries only
    assert planned_values(plan, {"train.epochs": 5}) == LIGHT_AUGMENTATION
    assert planned_values(plan, {"train.epochs": 5, "train.folds": 3}) == LIGHT_AUGMENTATION


# -- records of a run whose folds were trained on, interrupted or given twice ------------------------
def test_resuming_a_fold_rewrites_its_row_of_the_ensemble_record(tmp_path, capsys):
    data = make_cells(tmp_path / "data", n=5)
    run = tmp_path / "run"
    assert cli.main(["train", str(data), "--folds", "2", "--run-dir", str(run), *FAST]) == 0
    before = json.loads((run / "ensemble.json").read_text())
    assert (
        cli.main(["train", "--resume", str(run / "fold_1"), "--epochs", "2", "--no-progress"]) == 0
    )
    assert "ensemble.json (fold record)" in capsys.readouterr().out
    after = json.loads((run / "ensemble.json").read_text())
    assert after["members"][0] == before["members"][0]
    assert after["members"][1]["epochs"] == 2
    best = load_checkpoint(run / "fold_1/checkpoints/best.pt")["extra"]["best"]
    assert after["members"][1]["best"] == best
    values = [m["best"]["value"] for m in after["members"]]
    assert after["mean"] == pytest.approx(sum(values) / 2)
    assert after["checkpoints"] == before["checkpoints"]
    assert not refresh_fold(tmp_path / "data", best, 1, "x")  # no fold of an ensemble


def test_an_unfinished_folds_run_is_named_with_the_folds_to_train(two, tmp_path):
    run = _fold_run(tmp_path / "run", two[:1])  # fold 0 only
    (run / "fold_0" / "splits.json").write_text(json.dumps([{"train": [], "val": []}] * 3))
    (run / "fold_0" / "config.yaml").write_text("model: {name: unet}\n")
    (run / "fold_1" / "checkpoints").mkdir(parents=True)
    shutil.copy(two[1], run / "fold_1" / "checkpoints" / "last.pt")  # interrupted in fold 1
    (run / "fold_1" / "train.log").write_text(
        f"ended: interrupted after epoch 1; unetkit train --resume {run / 'fold_1'} continues it\n"
    )
    warning = incomplete_folds_warning(run)
    head = f"{run} is a 3-fold run that did not finish: averaging the 1 fold(s) with a model (0)"
    assert head in warning
    assert f"fold(s) 1, 2 have none (to finish: 'unetkit train --resume {run / 'fold_1'}'; " in (
        warning
    )  # the run's own settings for the fold that never started
    config = run / "fold_0" / "config.yaml"
    assert f"'unetkit train --config {config} --fold 2 --run-dir {run / 'fold_2'}'" in warning
    # a fold with a model that was stopped part-way is offered its --resume too
    shutil.copy(two[1], run / "fold_1" / "checkpoints" / "best.pt")
    warning = incomplete_folds_warning(run)
    assert "fold(s) 2 have none; fold(s) 1 stopped part-way" in warning
    assert f"'unetkit train --resume {run / 'fold_1'}'" in warning
    (run / "ensemble.json").write_text(json.dumps({"checkpoints": ["fold_0/checkpoints/best.pt"]}))
    assert incomplete_folds_warning(run) is None
    assert incomplete_folds_warning(two[0]) is None


def test_a_resumed_fold_stopped_part_way_still_updates_its_row(tmp_path, monkeypatch):
    from unetkit.training import Trainer

    from .test_training import _CrashAfter

    data = make_cells(tmp_path / "data", n=5)
    run = tmp_path / "run"
    assert cli.main(["train", str(data), "--folds", "2", "--run-dir", str(run), *FAST]) == 0
    monkeypatch.chdir(run / "fold_1")  # "--resume ." names the fold too
    trainer = Trainer.resume(".", overrides={"train.epochs": 3}, progress=False)
    trainer.extra_callbacks.append(_CrashAfter(2))
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer.fit()
    row = json.loads((run / "ensemble.json").read_text())["members"][1]
    assert row["epochs"] == 2 and row["stop_reason"] == "interrupted"
    assert row["best"] == load_checkpoint(run / "fold_1/checkpoints/best.pt")["extra"]["best"]


def test_a_folder_for_one_checkpoint_names_the_file_to_give(two, tmp_path):
    assert folder_not_file(two[0]) == "is not a checkpoint file (a .pt file unetkit train wrote)"
    run = _fold_run(tmp_path / "run", two)
    with pytest.raises(DataError, match=r"is a --folds run \(2 models, which only predict uses "):
        load_checkpoint(run)
    assert str(run / "fold_0/checkpoints/best.pt") in folder_not_file(run)
    assert folder_not_file(run / "fold_1") == (
        f"is a run folder, not a checkpoint file; give its model, {run / 'fold_1/checkpoints/best.pt'}"
    )


def test_a_model_named_twice_is_refused(two, tmp_path):
    run = _fold_run(tmp_path / "run", two)
    with pytest.raises(DataError, match="is named twice in"):
        model_files(f"{run},{run / 'fold_0/checkpoints/best.pt'}")
    with pytest.raises(DataError, match="an ensemble would count it twice"):
        model_files(f"{two[0]},{two[0]}")


def test_predict_says_which_clean_ups_all_models_chose_and_which_it_left_out(two):
    from unetkit.inference.postprocess import PostProcessing, PostStep

    fill, split = PostStep("fill_holes", 1), PostStep("split_touching", 1, h=4.0)
    members = [
        Predictor.from_checkpoint(two[0], postprocess=PostProcessing((fill, split))),
        Predictor.from_checkpoint(two[1], postprocess=PostProcessing((fill,))),
    ]
    line = EnsemblePredictor(members).postprocess_line()
    assert line.startswith("post-processing (the steps all 2 models chose on validation): fill")
    assert "; left out: " in line and "(model 1 of 2 only)" in line
    members[1] = Predictor.from_checkpoint(two[1], postprocess=PostProcessing((split,)))
    members[0] = Predictor.from_checkpoint(two[0], postprocess=PostProcessing((fill,)))
    line = EnsemblePredictor(members).postprocess_line()
    assert line.startswith("post-processing: none (no step was chosen by all 2 models)")
    assert "(model 1 of 2 only)" in line and "(model 2 of 2 only)" in line
    small = [PostStep("remove_small", 1, min_size=20), PostStep("remove_small", 1, min_size=80)]
    three = [
        Predictor.from_checkpoint(two[i % 2], postprocess=PostProcessing((s,)))
        for i, s in enumerate(small)
    ]
    three.append(Predictor.from_checkpoint(two[0], postprocess=PostProcessing()))
    assert "(model 1, 2 of 3 only, sizes 20/80 px)" in EnsemblePredictor(three).postprocess_line()
    apart = [
        Predictor.from_checkpoint(two[0], postprocess=PostProcessing((fill,), connectivity=1)),
        Predictor.from_checkpoint(two[1], postprocess=PostProcessing((fill,), connectivity=2)),
    ]
    assert EnsemblePredictor(apart).postprocess_line() == (
        "post-processing: none (the 2 models count objects with different connectivities, so "
        "no step is shared)"
    )
    plain = [Predictor.from_checkpoint(p, postprocess=PostProcessing()) for p in two]
    assert EnsemblePredictor(plain).postprocess_line() is None


def test_members_given_in_another_order_are_the_same_model_for_a_rerun(two, tmp_path, capsys):
    """The members' probabilities are averaged, so their order does not change the model: a rerun
    into the same output folder with the checkpoints swapped skips what is done (it was refused
    as "another model"); a single checkpoint keeps the digest of its contents."""
    import hashlib

    from unetkit.cli import main
    from unetkit.run_folder import model_digest

    assert model_digest(two) == model_digest(two[::-1]) != model_digest(two[:1])
    assert model_digest(two[:1]) == hashlib.sha256(two[0].read_bytes() + b"\0").hexdigest()
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(_image()).save(images / "a.png")
    out = tmp_path / "out"
    assert main(["predict", f"{two[0]},{two[1]}", str(images), "--output", str(out)]) == 0
    written = (out / "a.png").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["predict", f"{two[1]},{two[0]}", str(images), "--output", str(out)]) == 0
    assert (out / "a.png").stat().st_mtime_ns == written  # skipped as done, not refused
    # a folder recorded in member order (as before the digest ignored it) is adopted, not refused
    from unetkit.inference.batch import MODEL_RECORD
    from unetkit.run_folder import ordered_model_digest

    (out / MODEL_RECORD).write_text(json.dumps({"model": ordered_model_digest(two)}) + "\n")
    assert main(["predict", f"{two[0]},{two[1]}", str(images), "--output", str(out)]) == 0
    assert (out / "a.png").stat().st_mtime_ns == written
    assert json.loads((out / MODEL_RECORD).read_text())["model"] == model_digest(two)

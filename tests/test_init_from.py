"""Fine-tuning (``unetkit train DATA --init-from CHECKPOINT``, ``train.init_from``): the run starts
from the checkpoint's weights; the input conv / output heads start new when the channels / classes
differ; another architecture, a missing or foreign file are one-line errors before any run folder;
``--resume`` of a fine-tuned run continues from its own weights. Tiny synthetic data, tiny models."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unetkit import cli
from unetkit.checkpoint import load_checkpoint, save_checkpoint
from unetkit.config import RunConfig
from unetkit.errors import ConfigError
from unetkit.models import create_model
from unetkit.planning import Plan
from unetkit.training import Trainer
from unetkit.training.init_from import (
    defaults_left_open,
    describe_inherited,
    inherited_values,
    source_model,
)

from .test_training import _CrashAfter, make_cells

SOURCE_MODEL = {"base_features": 4, "depth": 2, "norm": "instance", "dropout": 0.1}


def run_config(data: Path, **train) -> RunConfig:
    """A tiny run (2 iterations an epoch); the model section is left at the defaults."""
    return RunConfig.from_dict(
        {
            "data": {"train_dir": str(data), "val_fraction": 0.34, "patch_size": [32]},
            "train": {
                "epochs": 1,
                "iters_per_epoch": 2,
                "batch_size": 2,
                "lr": 0.01,
                "seed": 3,
                "precision": "fp32",
                "threads": 1,
                **train,
            },
        }
    )


def fine_tune_config(data: Path, source: Path, **train) -> RunConfig:
    """``run_config`` with the checkpoint's model and normalisation, as ``unetkit train`` resolves it."""
    values = inherited_values(load_checkpoint(source), source)
    return run_config(data, **train).override({**values, "train.init_from": str(source)})


def _derived(cells: Path, root: Path, image_fn=None, mask_fn=None) -> Path:
    """A copy of ``cells`` with images and/or masks changed."""
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for f in sorted((cells / "images").glob("*.png")):
        img = np.array(Image.open(f))
        mask = np.array(Image.open(cells / "masks" / f.name))
        Image.fromarray(image_fn(img) if image_fn else img).save(root / "images" / f.name)
        Image.fromarray(mask_fn(mask) if mask_fn else mask).save(root / "masks" / f.name)
    return root


def _three_classes(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    left = out[:, : out.shape[1] // 2]
    left[left == 255] = 128  # discs on the left half: a second foreground class
    return out


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread, as ``--threads 1`` gives the command-line runs here (tiny nets: threads only
    add waiting on a busy machine); the count before is restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cells(tmp_path_factory) -> Path:
    return make_cells(tmp_path_factory.mktemp("ft_cells") / "train")


@pytest.fixture(scope="module")
def source(cells, tmp_path_factory) -> Path:
    """``last.pt`` of a tiny trained source run (percentile normalisation, to see it inherited)."""
    cfg = run_config(cells).override(
        {
            "model.name": "unet",
            "model.options": SOURCE_MODEL,
            "data.normalization": {"name": "percentile", "lower": 2.0},
        }
    )
    run = tmp_path_factory.mktemp("ft_source") / "run"
    Trainer(cfg, run_dir=run, progress=False).fit()
    return run / "checkpoints" / "last.pt"


def _tree(root: Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


# ------------------------------------------------------------------------------- the weights
def test_fine_tuned_run_starts_from_the_checkpoint_weights(cells, source, tmp_path, capsys):
    trainer = Trainer(fine_tune_config(cells, source), run_dir=tmp_path / "ft", progress=False)
    trainer.setup()
    theirs = load_checkpoint(source)
    ours = trainer.model.state_dict()
    assert ours.keys() == theirs["state_dict"].keys()
    for k, v in theirs["state_dict"].items():
        assert torch.equal(ours[k].cpu(), v), k
    # nothing else comes from the checkpoint: fresh optimiser, schedule and epoch
    assert trainer.epoch == 0 and trainer.history == [] and trainer.best is None
    assert trainer.optimizer.state_dict()["state"] == {}
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.01)
    assert trainer.data.normalizer.to_dict()["params"]["lower"] == 2.0  # the checkpoint's scheme
    record = trainer.init_record
    assert record["layers_new"] == [] and record["tensors_loaded"] == len(ours)
    assert record["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    out = capsys.readouterr().out
    assert f"init-from: all {len(ours)} weight tensors from {source}" in out
    assert "optimiser, schedule and epoch start fresh" in out


def _check_partial(trainer, source: Path, new_layers: list) -> None:
    """Tensors of ``new_layers`` differ in shape from the checkpoint's; every other one is equal."""
    theirs = load_checkpoint(source)["state_dict"]
    ours = trainer.model.state_dict()
    assert trainer.init_record["layers_new"] == new_layers
    for k, v in ours.items():
        if k.rsplit(".", 1)[0] in new_layers and v.shape != theirs[k].shape:
            continue
        assert torch.equal(v.cpu(), theirs[k]), k
    changed = {k.rsplit(".", 1)[0] for k, v in ours.items() if v.shape != theirs[k].shape}
    assert changed == set(new_layers)


def test_more_classes_give_new_heads_and_keep_the_rest(cells, source, tmp_path, capsys):
    data = _derived(cells, tmp_path / "three", mask_fn=_three_classes)
    cfg = fine_tune_config(data, source).override({"model.options.deep_supervision": True})
    trainer = Trainer(cfg, run_dir=tmp_path / "ft", progress=False)
    trainer.setup()
    assert trainer.model.num_classes == 3
    _check_partial(trainer, source, ["head.0", "aux_heads.0"])  # deep-supervision head too
    assert "kept new: head.0, aux_heads.0 (3 classes here, 2 in the checkpoint)" in (
        capsys.readouterr().out
    )
    assert list(trainer.data.label_map.values) == [0, 128, 255]  # the label map is the new data's


def test_other_input_channels_give_a_new_first_conv(cells, source, tmp_path, capsys):
    data = _derived(cells, tmp_path / "rgb", image_fn=lambda g: np.stack([g, 255 - g, g // 2], -1))
    trainer = Trainer(fine_tune_config(data, source), run_dir=tmp_path / "ft", progress=False)
    trainer.setup()
    assert trainer.model.in_channels == 3
    _check_partial(trainer, source, ["encoder.stages.0.convs.0.0"])
    out = capsys.readouterr().out
    assert (
        "kept new: encoder.stages.0.convs.0.0 (3 input channel(s) here, 1 in the checkpoint)" in out
    )


def test_another_architecture_is_a_config_error_naming_the_layer(cells, source, tmp_path):
    cfg = fine_tune_config(cells, source).override({"model.options.base_features": 8})
    with pytest.raises(ConfigError) as info:
        Trainer(cfg, run_dir=tmp_path / "ft", progress=False).fit()
    text = str(info.value)
    assert "\n" not in text and "encoder.stages.0.convs.0.0.weight" in text
    assert "(8, 1, 3, 3) here but (4, 1, 3, 3) in the checkpoint" in text
    assert not (tmp_path / "ft").exists()


def test_a_3d_checkpoint_does_not_start_a_2d_run(cells, tmp_path):
    net = create_model("unet", spatial_dims=3, base_features=2, depth=1, in_channels=1)
    save_checkpoint(tmp_path / "3d.pt", net)
    cfg = run_config(cells, init_from=str(tmp_path / "3d.pt")).override(
        {"model.options": {"base_features": 2, "depth": 1}}
    )
    with pytest.raises(ConfigError, match="holds a 3D model but the images are 2D"):
        Trainer(cfg, run_dir=tmp_path / "ft", progress=False).fit()


# ------------------------------------------------------------------------------- resume
def test_resume_of_a_fine_tuned_run_continues_from_its_own_weights(cells, source, tmp_path, capsys):
    copy = tmp_path / "source.pt"
    shutil.copy(source, copy)
    cfg = fine_tune_config(cells, copy, epochs=2)
    full = Trainer(cfg, run_dir=tmp_path / "full", progress=False).fit()
    with pytest.raises(RuntimeError, match="simulated crash"):
        Trainer(cfg, run_dir=tmp_path / "part", progress=False, callbacks=[_CrashAfter(1)]).fit()
    copy.unlink()  # a resumed run never reads the source again
    capsys.readouterr()
    resumed = Trainer.resume(tmp_path / "part", progress=False).fit()
    assert resumed.epochs_completed == 2 and "init-from" not in capsys.readouterr().out
    a = load_checkpoint(full.run_dir / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "part" / "checkpoints" / "last.pt")
    for k in a["state_dict"]:  # exactly the uninterrupted run: the source was not loaded again
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], atol=1e-6, rtol=1e-5)
    assert b["extra"]["init_from"] == a["extra"]["init_from"]  # the record survives the resume
    assert b["extra"]["init_from"]["path"] == str(copy.resolve())
    assert RunConfig.from_yaml(tmp_path / "part" / "config.yaml").train.init_from == str(copy)


# ------------------------------------------------------------------------------- command line
def _train_args(data: Path, *extra: str) -> list:
    return [
        "train",
        str(data),
        "--epochs",
        "1",
        "--iters-per-epoch",
        "2",
        "--threads",
        "1",
        "--no-progress",
        *extra,
    ]


def _saved_plan(path: Path) -> Path:
    """A plan as 'unetkit plan' writes it (no probe): its own model, width and depth."""
    plan = Plan(1.0, {"device": "cpu", "precision": "fp32", "threads": 1}, {})
    plan.decide("patch", [40, 40], "test", **{"data.patch_size": [40, 40]})
    plan.decide("model", "unet-residual", "test", **{"model.name": "unet-residual"})
    plan.decide("depth", 3, "test", **{"model.options.depth": 3})
    plan.decide("width", 8, "test", **{"model.options.base_features": 8})
    plan.decide("batch", 3, "test", **{"train.batch_size": 3})
    plan.decide("schedule", "1 min", "test", **{"train.lr": 3e-3})  # a short run's rate
    return plan.save(path)


def test_cli_with_a_plan_takes_the_checkpoint_model_and_records_the_source(
    cells, source, tmp_path, capsys
):
    run = tmp_path / "run"
    args = ["--init-from", str(source), "--plan", str(_saved_plan(tmp_path / "plan.json"))]
    assert cli.main(_train_args(cells, *args, "--run-dir", str(run))) == 0
    out = capsys.readouterr().out
    assert "(base_features=4, depth=2, norm=instance, dropout=0.1)" in out
    assert "(not the planned model: the table's model rows do not apply)" in out
    assert "init-from: all " in out
    # the plan's short-run rate lowered, and said so
    assert "; lr 0.001, not the planned 0.003: fine-tuning starts from learnt features" in out
    cfg = RunConfig.from_yaml(run / "config.yaml")
    assert cfg.train.init_from == str(source)
    assert cfg.model.name == "unet" and cfg.model.options == SOURCE_MODEL  # not the plan's
    assert cfg.data.patch_size == [40, 40] and cfg.train.batch_size == 3  # still the plan's
    assert cfg.train.lr == 1e-3  # fine-tuning: not the short run's higher rate
    assert cfg.data.normalization["name"] == "percentile"
    assert cfg.data.normalization["lower"] == 2.0
    extra = load_checkpoint(run / "checkpoints" / "last.pt")["extra"]
    assert extra["init_from"]["path"] == str(source.resolve())
    assert extra["init_from"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert extra["init_from"]["layers_new"] == [] and extra["init_from"]["layers_loaded"]
    assert json.loads((run / "plan.json").read_text())["config"]["model.name"] == "unet-residual"


def test_cli_judges_a_plans_short_run_rules_on_the_checkpoints_width(
    cells, source, tmp_path, capsys
):
    """The checkpoint's 4-wide net trains, not the plan's 8-wide one: the short-run rules read
    width 4's steps (estimated from width 8's timing: a quarter of its FLOPs)."""
    plan = Plan.load(_saved_plan(tmp_path / "plan.json"))
    plan.config["model.name"] = "unet"  # the checkpoint's model, at another width
    plan.model_steps, plan.full_batch = 100, 3
    plan.measurements = [
        {"model": "unet", "base_features": 8, "depth": 3, "patch": [40, 40], "batch_size": 3}
        | {"seconds_per_step": 0.4}
    ]
    path = plan.save(tmp_path / "plan.json")
    run = tmp_path / "run"
    argv = ["train", str(cells), "--init-from", str(source), "--plan", str(path)]
    argv += ["--time-budget", "0.05", "--threads", "1", "--no-progress", "--run-dir", str(run)]
    assert cli.main(argv) == 0
    assert (
        "plan: width 4 gets ≈ 20 steps per model (the planned width 8: 5; estimated from the "
        "widths timed): the short-run rules are judged on them" in capsys.readouterr().out
    )
    cfg = RunConfig.from_yaml(run / "config.yaml")
    assert cfg.model.options == SOURCE_MODEL and cfg.train.lr == 1e-3


def test_cli_flags_override_what_the_checkpoint_offers(cells, source, tmp_path, capsys):
    run = tmp_path / "run"
    extra = ["--init-from", str(source), "--no-plan", "--normalization", "minmax"]
    extra += ["--set", "model.options.dropout=0.2"]  # the same shapes: the weights still fit
    assert cli.main(_train_args(cells, *extra, "--run-dir", str(run))) == 0
    cfg = RunConfig.from_yaml(run / "config.yaml")
    assert cfg.data.normalization["name"] == "minmax"
    assert cfg.model.options == {**SOURCE_MODEL, "dropout": 0.2}


def test_cli_config_file_values_are_the_users(cells, source, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("model:\n  options:\n    depth: 3\ntrain:\n  epochs: 1\n")
    before = _tree(tmp_path)
    code = cli.main(_train_args(cells, "--config", str(config), "--init-from", str(source)))
    assert code == 2
    line = _error_line(capsys)
    assert "the weights do not fit model 'unet'" in line and "drop the --model" in line
    assert _tree(tmp_path) == before


def test_cli_errors_are_one_line_and_leave_no_run_folder(
    cells, source, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # the default output folder runs/ would appear here
    run = tmp_path / "run"
    junk = tmp_path / "notes.txt"
    junk.write_text("not a checkpoint")
    cases = [
        (
            ["--init-from", str(tmp_path / "missing.pt")],
            f"{tmp_path / 'missing.pt'}: checkpoint not found; --init-from (train.init_from) "
            "takes a checkpoint file written by 'unetkit train'",
        ),
        (["--init-from", str(junk)], f"{junk}: not a unetkit checkpoint (a text file)"),
        (
            ["--init-from", str(source.parent.parent)],
            f"is a run folder; give one of its checkpoints, e.g. {source.parent / 'best.pt'}",
        ),
        (
            ["--init-from", str(source), "--no-plan", "--set", "model.options.base_features=8"],
            "layer 'encoder.stages.0.convs.0.0.weight' is (8, 1, 3, 3) here but (4, 1, 3, 3) in "
            "the checkpoint; the architecture must be the checkpoint's (unet with base_features=4",
        ),
        (
            ["--init-from", str(source), "--no-plan", "--model", "unet-residual"],
            "its layer 'encoder.stages.0.shortcut.0.weight' (4, 1, 1, 1) is not in the checkpoint",
        ),
    ]
    before = _tree(tmp_path)
    for args, message in cases:
        assert cli.main(_train_args(cells, *args, "--run-dir", str(run))) == 2, args
        line = _error_line(capsys)
        assert line.startswith("unetkit train: error: ") and message in line, line
        assert _tree(tmp_path) == before
    assert cli.main(["train", "--resume", str(run), "--init-from", str(source)]) == 2
    assert "drop DATA_DIR/--config/--plan/--init-from" in _error_line(capsys)


# ------------------------------------------------------------------------------- the pieces
def test_inherited_values_and_what_the_user_leaves_open(source):
    values = inherited_values(load_checkpoint(source), source)
    assert values["model.name"] == "unet"
    assert {k: v for k, v in values.items() if k.startswith("model.options.")} == {
        f"model.options.{k}": v for k, v in SOURCE_MODEL.items()
    }
    assert values["data.normalization"]["name"] == "percentile"
    assert "stats" not in values["data.normalization"]  # scheme and parameters, refitted
    # a user value covers the same key, above or below it
    left = defaults_left_open(values, {"data.normalization.lower": 5, "model.options.depth": 3})
    assert "data.normalization" not in left and "model.options.depth" not in left
    assert left["model.options.base_features"] == 4 and left["model.name"] == "unet"
    # another preset keeps the options it takes
    left = defaults_left_open(values, {"model.name": "unet3plus"})
    assert "model.name" not in left and left["model.options.base_features"] == 4
    assert describe_inherited(left, "x.pt").startswith("init-from: x.pt: model options (")


def test_a_checkpoint_without_a_preset_names_the_closest_one(tmp_path):
    from unetkit.models import UNet

    net = UNet(base_features=4, depth=2, norm="instance", init="torch")
    save_checkpoint(tmp_path / "bare.pt", net)
    name, options = source_model(load_checkpoint(tmp_path / "bare.pt"))
    assert name == "unet"  # the UNet preset needing the fewest options
    assert options == {"base_features": 4, "depth": 2, "norm": "instance", "init": "torch"}


def test_the_config_field_is_checked():
    with pytest.raises(
        ConfigError, match="train.init_from must be a non-empty path or null, got ''"
    ):
        RunConfig.from_dict({"train": {"init_from": ""}})
    assert RunConfig.from_dict({"train": {"init_from": Path("a.pt")}}).train.init_from == "a.pt"

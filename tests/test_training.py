"""Trainer: run folder, checkpoints, exact resume (also after SIGKILL), time budget, early stopping,
multi-process (torchrun/DDP) equivalence, CLI errors. Tiny synthetic data, tiny models."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unetkit.checkpoint import build_model, load_checkpoint
from unetkit.config import RunConfig
from unetkit.errors import ConfigError, DataError
from unetkit.training import Trainer
from unetkit.training.callbacks import Callback


def make_cells(root: Path, n: int = 6, size: int = 48, seed: int = 0) -> Path:
    """Bright discs on a noisy background; masks 0/255."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        mask = np.zeros((size, size), bool)
        for _ in range(4):
            cy, cx, r = rng.integers(8, size - 8), rng.integers(8, size - 8), rng.integers(4, 8)
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        img = np.clip(mask * 120 + 60 + rng.normal(0, 20, mask.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / f"{i:02d}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(root / "masks" / f"{i:02d}.png")
    return root


def tiny_config(data: Path, **train) -> RunConfig:
    return RunConfig.from_dict(
        {
            "data": {"train_dir": str(data), "val_fraction": 0.34, "patch_size": [32]},
            "model": {
                "name": "unet",
                "options": {"base_features": 4, "depth": 2, "norm": "instance", "dropout": 0.1},
            },
            "loss": {"name": "dice-ce"},
            "train": {
                "epochs": 3,
                "iters_per_epoch": 3,
                "batch_size": 2,
                "lr": 0.01,
                "seed": 7,
                "precision": "fp32",
                "threads": 1,
                **train,
            },
        }
    )


@pytest.fixture(scope="module")
def cells(tmp_path_factory) -> Path:
    return make_cells(tmp_path_factory.mktemp("cells") / "train")


def _weights(path: Path) -> dict:
    return load_checkpoint(path)["state_dict"]


def _assert_same_weights(a: dict, b: dict, atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=1e-5, msg=f"parameter {k} differs")


def test_training_writes_a_complete_run_folder(cells, tmp_path):
    result = Trainer(tiny_config(cells), run_dir=tmp_path / "run", progress=False).fit()
    run = tmp_path / "run"
    assert result.epochs_completed == 3 and result.stop_reason == "completed"

    # a notebook cell run again: the trained run is kept, and the way to continue it named
    before = (run / "checkpoints" / "best.pt").read_bytes()
    with pytest.raises(
        DataError,
        match=r"holds a trained run already; give a new run_dir, or continue it with Trainer\.resume\(",
    ):
        Trainer(tiny_config(cells), run_dir=run, progress=False).fit()
    assert (run / "checkpoints" / "best.pt").read_bytes() == before
    with pytest.raises(ConfigError, match=r"^Trainer takes a RunConfig, got dict \(build one with"):
        Trainer({"data": {"train_dir": str(cells)}})
    for name in (
        "config.yaml",
        "splits.json",
        "metrics.csv",
        "curves.png",
        "train.log",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
    ):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert {
        "train_loss",
        "val_loss",
        "val_dice",
        "val_iou",
        "val_pixel_error",
        "val_dice_c0",
        "val_dice_c1",
        "lr",
        "images_per_s",
    } <= set(rows[0])
    assert RunConfig.from_yaml(run / "config.yaml").to_dict() == tiny_config(cells).to_dict()
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["epoch"] == 3 and ckpt["label_map"]["values"] == [0, 255]
    assert ckpt["normalization"]["name"] == "zscore" and ckpt["patch_size"] == [32, 32]
    assert ckpt["model"]["preset"] == "unet" and ckpt["model"]["kwargs"]["base_features"] == 4
    model = build_model(ckpt)  # self-describing: nothing else needed
    assert model.num_classes == 2 and model.in_channels == 1
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["metrics"]["val_dice"] == max(float(r["val_dice"]) for r in rows)
    # train.log: how the run started (model, data, CPU path), its epochs, and why it ended
    log = (run / "train.log").read_text().splitlines()
    assert log[0].startswith("unetkit train: unet (") and log[1] == f"run folder: {run}"
    assert [ln.split()[1] for ln in log if ln.startswith("epoch")] == ["1/3", "2/3", "3/3"]
    assert log[-1] == (
        f"ended: completed after epoch 3; best val_dice {result.best['value']:.4f} at epoch "
        f"{result.best['epoch']}"
    )


class _CrashAfter(Callback):
    """Simulates a crash right after the checkpoint of epoch ``n`` was written."""

    def __init__(self, n: int):
        self.n = n

    def on_epoch_end(self, trainer, history):
        if history[-1]["epoch"] == self.n:
            raise RuntimeError("simulated crash")


def _stopped_by(cells, run_dir, callback, error) -> None:
    """A 4-epoch run that ``callback`` stops with ``error``."""
    with pytest.raises(error):
        Trainer(
            tiny_config(cells, epochs=4), run_dir=run_dir, progress=False, callbacks=[callback]
        ).fit()


def test_resume_continues_exactly(cells, tmp_path):
    full = Trainer(tiny_config(cells, epochs=4), run_dir=tmp_path / "full", progress=False).fit()
    _stopped_by(cells, tmp_path / "part", _CrashAfter(2), RuntimeError)
    ended = [
        ln for ln in (tmp_path / "part" / "train.log").read_text().splitlines() if "ended" in ln
    ]
    assert ended[0].startswith("ended: stopped by an error (RuntimeError) after epoch 2; best")
    try:  # a caller retrying inside an except block: that error did not end this run
        raise MemoryError("the caller's own")
    except MemoryError:
        resumed = Trainer.resume(tmp_path / "part", progress=False).fit()
    assert resumed.epochs_completed == 4
    log = (tmp_path / "part" / "train.log").read_text()
    assert "(resumed at epoch 2)" in log and "ended: completed after epoch 4" in log
    _assert_same_weights(
        _weights(full.run_dir / "checkpoints/last.pt"),
        _weights(tmp_path / "part" / "checkpoints/last.pt"),
    )
    np.testing.assert_allclose(
        [r["train_loss"] for r in resumed.history],
        [r["train_loss"] for r in full.history],
        rtol=1e-5,
    )
    assert (
        len(list(csv.DictReader((tmp_path / "part" / "metrics.csv").read_text().splitlines()))) == 4
    )


def test_resume_of_a_run_with_a_val_folder_keeps_the_cases_of_both(tmp_path, capsys):
    import json
    import shutil

    from unetkit.cli import main

    data, val = make_cells(tmp_path / "data", n=4), make_cells(tmp_path / "val", n=2, seed=5)
    run = tmp_path / "run"
    Trainer(
        tiny_config(data, epochs=1).override({"data.val_dir": str(val)}),
        run_dir=run,
        progress=False,
    ).fit()
    split = json.loads((run / "splits.json").read_text())
    assert split["val"] == ["val/00", "val/01"]
    for folder in (data, val):
        for sub in ("images", "masks"):
            shutil.copy(folder / sub / "00.png", folder / sub / "new.png")
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert json.loads((run / "splits.json").read_text()) == split
    err = capsys.readouterr().err
    assert f"{data}: 1 case(s) added since the run began (new)" in err
    assert f"{val}: 1 case(s) added since the run began (new)" in err


def test_set_takes_a_normalization_by_its_name():
    import argparse

    from unetkit.commands import train as train_cmd

    parser = argparse.ArgumentParser()
    train_cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(["train", "d", "--set", "data.normalization=percentile"])
    assert train_cmd.collect_overrides(args)["data.normalization"] == {"name": "percentile"}
    config = train_cmd.apply_overrides(RunConfig(), train_cmd.collect_overrides(args))
    assert config.data.normalization["name"] == "percentile"


class _CtrlCIn(Callback):
    """Ctrl-C during a batch of epoch ``n`` (the epochs before it finished and saved)."""

    def __init__(self, n: int):
        self.n = n

    def on_batch_end(self, trainer, batch, loss):
        if trainer.epoch == self.n:
            raise KeyboardInterrupt


def test_an_interrupted_run_logs_the_epochs_it_saved_and_how_to_continue(cells, tmp_path):
    _stopped_by(cells, tmp_path / "run", _CtrlCIn(3), KeyboardInterrupt)
    last = (tmp_path / "run" / "train.log").read_text().splitlines()[-1]
    assert last.startswith("ended: interrupted after epoch 2; best ")
    assert last.endswith(f"; unetkit train --resume {tmp_path / 'run'} continues it")
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["epoch"] == 2


def test_resume_can_extend_the_schedule(cells, tmp_path):
    Trainer(tiny_config(cells, epochs=2), run_dir=tmp_path / "run", progress=False).fit()
    resumed = Trainer.resume(tmp_path / "run", overrides={"train.epochs": 4}, progress=False).fit()
    assert resumed.epochs_completed == 4
    assert resumed.history[2]["lr"] == pytest.approx(
        0.01 * (1 - 2 / 4) ** 0.9
    )  # poly rate of the new length


def test_resume_keeps_its_split_and_refuses_to_become_another_run(tmp_path, capsys):
    """Cases added to the folder since do not move validation cases into training; flags that
    would change the model, data or optimisation are one line (exit 2), not a traceback or a
    silently different run; a case of the split that is gone is named."""
    import json
    import shutil

    from unetkit.cli import main

    data = make_cells(tmp_path / "data", n=6)
    run = tmp_path / "run"
    Trainer(tiny_config(data, epochs=1), run_dir=run, progress=False).fit()
    split = json.loads((run / "splits.json").read_text())
    for sub in ("images", "masks"):  # two new cases
        for new, old in (("n1", "00"), ("n2", "01")):
            shutil.copy(data / sub / f"{old}.png", data / sub / f"{new}.png")
    resume = ["train", "--resume", str(run), "--no-progress"]
    assert main([*resume, "--epochs", "2"]) == 0
    assert json.loads((run / "splits.json").read_text()) == split
    err = capsys.readouterr().err
    assert "2 case(s) added since the run began (n1, n2) are left out" in err
    for flags, key in (
        (["--set", "model.options.depth=3"], "model.options.depth"),
        (["--patch-size", "16"], "data.patch_size"),
        (["--set", "model.options.base_features=8"], "model.options.base_features"),
        (["--lr", "0.1"], "train.lr"),
    ):
        assert main([*resume, "--epochs", "3", *flags]) == 2
        err = capsys.readouterr().err
        assert f"--resume continues {run} as it was set up; {key} would change from" in err, err
        assert err.count("\n") == 1 and "--init-from" in err
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 2  # nothing ran
    # a new run into this folder would replace its checkpoints: refused before anything is read
    before = sorted(p.name for p in run.iterdir())
    assert main(["train", str(data), "--run-dir", str(run), "--no-plan", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert f"{run}: holds a trained run already; give a new --run-dir, or continue it with " in err
    assert f"--resume {run}" in err and sorted(p.name for p in run.iterdir()) == before
    # a run killed before its first checkpoint left files but nothing trained: taken again
    stale = tmp_path / "stale"
    (stale / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", "splits.json", "train.log", "plan.json"):
        (stale / name).write_text("left by a killed run\n")
    fresh = ["train", str(data), "--run-dir", str(stale), "--no-plan", "--epochs", "1"]
    assert main([*fresh, "--iters-per-epoch", "1", "--patch-size", "32", "--no-progress"]) == 0
    assert (stale / "checkpoints" / "last.pt").is_file()
    gone = split["val"][0]
    for sub in ("images", "masks"):
        (data / sub / f"{gone}.png").unlink()
    assert main([*resume, "--epochs", "3"]) == 2
    assert f"case {gone!r} of the run's split (splits.json) is not in this folder" in (
        capsys.readouterr().err
    )


def _cli(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "unetkit", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


def test_sigkill_mid_run_then_resume_matches_uninterrupted(cells, tmp_path):
    args = [
        "train",
        str(cells),
        "--patch-size",
        "32",
        "--batch-size",
        "2",
        "--iters-per-epoch",
        "6",
        "--epochs",
        "5",
        "--lr",
        "0.01",
        "--seed",
        "3",
        "--precision",
        "fp32",
        "--threads",
        "1",
        "--val-fraction",
        "0.34",
        "--set",
        "model.options.base_features=4",
        "--set",
        "model.options.depth=2",
        "--set",
        "model.options.norm=instance",
        "--no-progress",
    ]
    ref = _cli(*args, "--run-dir", str(tmp_path / "ref"))
    victim = _cli(*args, "--run-dir", str(tmp_path / "victim"))
    csv_path = tmp_path / "victim" / "metrics.csv"
    deadline = time.monotonic() + 600  # a bound for a stuck run, not a speed requirement
    while time.monotonic() < deadline:  # kill as soon as two epochs are logged
        if csv_path.exists() and len(csv_path.read_text().strip().splitlines()) >= 3:
            break
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(tmp_path / "victim" / "checkpoints" / "last.pt")[
        "epoch"
    ]  # loads: not torn
    assert 2 <= killed_at < 5
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "unetkit",
            "train",
            "--resume",
            str(tmp_path / "victim"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"resumed at epoch {killed_at}" in res.stdout
    assert (
        res.stdout.count("compute path: cpu ") == 1 and ", fp32, " in res.stdout
    )  # --precision fp32, said once
    assert ref.wait(timeout=300) == 0, ref.stdout.read()
    _assert_same_weights(
        _weights(tmp_path / "ref/checkpoints/last.pt"),
        _weights(tmp_path / "victim/checkpoints/last.pt"),
    )
    assert not list((tmp_path / "victim" / "checkpoints").glob(".*tmp*"))


def test_time_budget_stops_cleanly_with_best_checkpoint(cells, tmp_path, monkeypatch):
    """The budget is read from the trainer's clock; a fake one (each reading 0.5 s after the last)
    makes the stop deterministic on any machine, loaded or not."""
    from types import SimpleNamespace

    import unetkit.training.trainer as trainer_module

    clock = {"t": 1000.0}

    def monotonic() -> float:
        clock["t"] += 0.5
        return clock["t"]

    monkeypatch.setattr(
        trainer_module, "time", SimpleNamespace(monotonic=monotonic, strftime=time.strftime)
    )
    cfg = tiny_config(cells, epochs=1000, time_budget_minutes=0.15)
    result = Trainer(cfg, run_dir=tmp_path / "run", progress=False).fit()
    assert result.stop_reason == "time budget reached" and 1 <= result.epochs_completed < 1000
    assert (tmp_path / "run/checkpoints/best.pt").is_file()
    assert "val_dice" in result.history[-1]  # the last, cut-short epoch is still validated


class _StopAtBatch(Callback):
    """Records every batch report and asks the trainer to stop at batch ``n`` of epoch 2."""

    def __init__(self, n: int):
        self.n, self.seen = n, []

    def on_batch_end(self, trainer, batch, loss):
        self.seen.append((trainer.epoch, batch, loss))
        if trainer.epoch == 2 and batch == self.n:
            trainer.request_stop("stopped by the user")


def test_request_stop_ends_the_run_after_that_batch_and_keeps_the_model(cells, tmp_path):
    """A GUI's stop: the run ends after the batch it was asked in, that epoch is validated and
    saved, like a time budget running out; on_batch_end saw every batch with its running loss."""
    relay = _StopAtBatch(2)
    cfg = tiny_config(cells, epochs=10)
    result = Trainer(cfg, run_dir=tmp_path / "run", progress=False, callbacks=[relay]).fit()
    assert result.stop_reason == "stopped by the user" and result.epochs_completed == 2
    assert [(e, b) for e, b, _ in relay.seen] == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2)]
    assert all(np.isfinite(loss) for *_, loss in relay.seen)
    assert "val_dice" in result.history[-1]
    assert load_checkpoint(tmp_path / "run/checkpoints/last.pt")["epoch"] == 2


def test_early_stopping(cells, tmp_path):
    cfg = tiny_config(cells, epochs=50, early_stopping=1, lr=1e-9)
    result = Trainer(cfg, run_dir=tmp_path / "run", progress=False).fit()
    assert result.stop_reason.startswith("early stopping") and result.epochs_completed < 50


def test_weight_map_sgd_and_valid_padding_model_train(cells, tmp_path):
    cfg = tiny_config(cells, epochs=1, optimizer="sgd", momentum=0.99, precision="bf16").override(
        {"data.weight_map": True, "model.name": "unet-original", "loss.name": "ce"}
    )
    cfg.model.options = {"base_features": 4, "depth": 2}
    result = Trainer(cfg, run_dir=tmp_path / "run", progress=False).fit()
    ckpt = load_checkpoint(result.run_dir / "checkpoints/last.pt")
    assert (
        ckpt["patch_size"][0] - ckpt["extra"]["label_size"][0] == 40
    )  # valid net: input = label + border
    assert np.isfinite(result.history[-1]["train_loss"])


@pytest.mark.parametrize("class_balance", [True, False])
def test_weight_map_class_term_follows_class_balance(cells, tmp_path, class_balance):
    # the paper's w_c balances the class frequencies; without it, only the border term is added
    cfg = tiny_config(cells, epochs=1).override(
        {"data.weight_map": True, "data.class_balance": class_balance}
    )
    trainer = Trainer(cfg, run_dir=tmp_path / "run", progress=False)
    trainer.setup()  # reads the data and computes the weight maps
    case = trainer.data.train[0]
    fg = case.mask == 1
    n, n_fg = case.mask.size, int(fg.sum())
    expected_fg = n / (2 * n_fg) if class_balance else 1.0
    # object pixels get w_c only (the border term lives in the background gaps)
    np.testing.assert_allclose(case.weight[fg], expected_fg, rtol=1e-5)
    # background far from two objects: w_c alone; in the gaps the border term adds up to w0
    expected_bg = n / (2 * (n - n_fg)) if class_balance else 1.0
    assert case.weight[~fg].min() == pytest.approx(expected_bg, rel=1e-4)
    assert case.weight[~fg].max() > expected_bg + 1


def test_unet3plus_with_deep_supervision_and_cgm_trains(cells, tmp_path):
    cfg = tiny_config(cells, epochs=1).override(
        {
            "model.name": "unet3plus-ds-cgm",
            "loss.name": "unet3plus-hybrid",
            "model.options": {"base_features": 4, "depth": 2, "num_classes": 1},
        }
    )
    result = Trainer(cfg, run_dir=tmp_path / "run", progress=False).fit()
    assert np.isfinite(result.history[-1]["train_loss"]) and not np.isnan(
        result.history[-1]["val_dice"]
    )


def test_torchrun_two_processes_match_one_process(cells, tmp_path):
    # every process follows one saved plan (planning per process could differ)
    plan = tmp_path / "plan.json"
    made = subprocess.run(
        [sys.executable, "-m", "unetkit", "plan", str(cells), "--output", str(plan)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    common = [
        "train",
        str(cells),
        "--plan",
        str(plan),
        "--patch-size",
        "32",
        "--batch-size",
        "4",
        "--iters-per-epoch",
        "3",
        "--epochs",
        "2",
        "--lr",
        "0.01",
        "--seed",
        "5",
        "--precision",
        "fp32",
        "--threads",
        "1",
        "--val-fraction",
        "0.34",
        "--set",
        "model.options.base_features=4",
        "--set",
        "model.options.depth=2",
        "--set",
        "model.options.norm=instance",
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        [sys.executable, "-m", "unetkit", *common, "--run-dir", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert single.returncode == 0, single.stdout + single.stderr
    multi = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29517",
            "-m",
            "unetkit",
            *common,
            "--run-dir",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert multi.returncode == 0, multi.stdout + multi.stderr
    assert (
        "2 processes" in multi.stdout and multi.stdout.count("epoch   2/2") == 1
    )  # rank 0 logs alone
    _assert_same_weights(
        _weights(tmp_path / "one/checkpoints/last.pt"),
        _weights(tmp_path / "two/checkpoints/last.pt"),
        atol=1e-4,
    )


def test_train_cli_errors_are_one_line(cells, tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "unetkit", "train", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        res.returncode == 2
        and "nope: dataset folder not found" in res.stderr
        and "Traceback" not in res.stderr
    )
    res = subprocess.run(
        [sys.executable, "-m", "unetkit", "train", "--resume", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "not a unetkit run folder" in res.stderr
    res = subprocess.run(
        [sys.executable, "-m", "unetkit", "train", str(cells), "--set", "train.epoch=3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "unknown key(s) epoch" in res.stderr


def test_config_errors(cells):
    with pytest.raises(ConfigError, match="train.optimizer must be one of sgd, adam, adamw"):
        tiny_config(cells, optimizer="lbfgs")
    cfg = tiny_config(cells).override({"model.name": "unet"})
    cfg.model.options = {"base_features": 4, "depth": 2, "in_channels": 3}
    with pytest.raises(ConfigError, match="expects 3 input channels but the images have 1"):
        Trainer(cfg, progress=False).fit()
    with pytest.raises(DataError, match="no checkpoints/last.pt"):
        (Path(cells).parent / "empty_run").mkdir(exist_ok=True)
        (Path(cells).parent / "empty_run" / "config.yaml").write_text(tiny_config(cells).to_yaml())
        Trainer.resume(Path(cells).parent / "empty_run")


def test_select_metric_picks_best_checkpoint_by_one_class(cells, tmp_path):
    cfg = tiny_config(cells, epochs=3, select_metric="val_dice_c0")
    result = Trainer(cfg, run_dir=tmp_path / "run", progress=False).fit()
    best_epoch = max(result.history, key=lambda r: r["val_dice_c0"])["epoch"]
    assert result.best["metric"] == "val_dice_c0" and result.best["epoch"] == best_epoch
    assert load_checkpoint(tmp_path / "run/checkpoints/best.pt")["epoch"] == best_epoch
    with pytest.raises(
        ConfigError, match="val_dcie' is not among the validation values val_loss, val_dice"
    ):
        tiny_config(
            cells, epochs=1, select_metric="val_dcie"
        )  # refused with the config, before any epoch
    with pytest.raises(
        ConfigError, match="'val_dice_c2' names class 2, but the masks have 2 classes"
    ):
        Trainer(
            tiny_config(cells, select_metric="val_dice_c2"),
            run_dir=tmp_path / "bad",
            progress=False,
        ).fit()
    assert not (tmp_path / "bad").exists()


def test_kfold_fg_classes_and_weight_map_cache_reach_the_data(cells, tmp_path):
    cfg = tiny_config(cells, epochs=1).override(
        {
            "data.num_folds": 3,
            "data.fold": 1,
            "data.fg_classes": [0],
            "data.weight_map": True,
            "data.cache_dir": str(tmp_path / "c"),
        }
    )
    result = Trainer(cfg, run_dir=tmp_path / "run", progress=False).fit()
    import json

    folds = json.loads((result.run_dir / "splits.json").read_text())
    assert len(folds) == 3 and len(folds[1]["val"]) == 2
    assert any((tmp_path / "c").iterdir())  # weight maps cached on disk
    assert Trainer(cfg, run_dir=tmp_path / "run2", progress=False).fit().epochs_completed == 1


def test_a_full_disk_at_the_first_checkpoint_is_one_line_and_leaves_no_run_folder(
    cells, tmp_path, monkeypatch, capsys
):
    """torch's archive writer turns the OSError of a full disk into a RuntimeError ("unexpected
    pos"): it is named as the full disk it is, exit 2, and the run folder made for the run goes
    (it was kept, empty of checkpoints, and a traceback printed)."""
    import builtins
    import errno
    import io

    import unetkit.checkpoint as ck
    from unetkit.cli import main

    class Full(io.FileIO):
        def write(self, b):
            if self.tell() + len(b) > 50_000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(b)

    def full_open(path, mode="r", *a, **k):
        if "w" in mode:
            return io.BufferedWriter(Full(path, "w"))
        return builtins.open(path, mode, *a, **k)

    monkeypatch.setattr(ck, "open", full_open, raising=False)
    run = tmp_path / "runs" / "r"
    argv = ["train", str(cells), "--no-plan", "--epochs", "1", "--iters-per-epoch", "1"]
    argv += ["--patch-size", "32", "--set", "model.options.base_features=4", "--no-progress"]
    assert main([*argv, "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"unetkit train: error: {run / 'checkpoints' / 'best.pt'}: no space left on the device "
        "(disk full or quota reached); free some space or choose another output location"
    ]
    assert not (tmp_path / "runs").exists()


def test_resume_with_best_pt_missing_or_stale_writes_a_new_one_and_says_so(cells, tmp_path, capsys):
    from unetkit.checkpoint import write_checkpoint

    run = tmp_path / "run"
    Trainer(tiny_config(cells, epochs=2), run_dir=run, progress=False).fit()
    best, last = run / "checkpoints" / "best.pt", run / "checkpoints" / "last.pt"
    record = load_checkpoint(last)["extra"]["best"]
    assert record["epoch"] == 2  # the tiny run improves every epoch
    # the best epoch is last.pt's own: best.pt is that model again, before anything trains
    best.unlink()
    capsys.readouterr()
    resumed = Trainer.resume(run, progress=False).fit()  # nothing left to train
    out = capsys.readouterr().out
    assert (
        "note: checkpoints/best.pt is missing: written again from last.pt, which holds the " in out
    )
    assert load_checkpoint(best)["epoch"] == 2 and resumed.best["epoch"] == 2
    # a best epoch before last.pt's, its best.pt gone: the next epochs decide a new one
    ckpt = load_checkpoint(last)
    ckpt["extra"]["best"] = {**record, "epoch": 1}
    write_checkpoint(last, ckpt)
    best.unlink()
    resumed = Trainer.resume(run, overrides={"train.epochs": 3}, progress=False).fit()
    out = capsys.readouterr().out
    assert (
        "note: checkpoints/best.pt is missing, not the best epoch this run recorded (epoch 1, "
        in out
    ) and "the best of the epochs from here on becomes best.pt" in out
    assert load_checkpoint(best)["epoch"] == 3 == resumed.best["epoch"]
    assert (run / "postprocess.json").is_file()
    # such a run with no epoch left: last.pt becomes best.pt, said so
    ckpt = load_checkpoint(last)
    ckpt["extra"]["best"] = {**record, "epoch": 1}
    write_checkpoint(last, ckpt)
    best.unlink()
    Trainer.resume(run, progress=False).fit()
    assert f"note: no best.pt: {best} is a copy of last.pt (epoch 3)" in capsys.readouterr().out
    assert load_checkpoint(best)["epoch"] == 3
    # the recorded best.pt in place: nothing said
    Trainer.resume(run, overrides={"train.epochs": 4}, progress=False).fit()
    out = capsys.readouterr().out
    assert "note: checkpoints/best.pt" not in out and "note: no best.pt" not in out


def test_resume_refuses_an_edited_config_and_a_new_folder(cells, tmp_path, capsys):
    from unetkit.cli import main

    run = tmp_path / "run"
    Trainer(tiny_config(cells, epochs=1), run_dir=run, progress=False).fit()
    cfg = run / "config.yaml"
    text = cfg.read_text()
    cfg.write_text(text.replace("base_features: 4", "base_features: 8"))
    resume = ["train", "--resume", str(run), "--epochs", "2", "--no-progress"]
    assert main(resume) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert (
        f"{cfg}: model.options.base_features is 8 here but 4 in last.pt, which the run continues "
        "from; set it back, or start a new run from its weights (--init-from " in err
    )
    cfg.write_text(text)
    assert main([*resume, "--run-dir", str(tmp_path / "other")]) == 2
    assert capsys.readouterr().err == (
        f"unetkit train: error: --resume continues the run in its own folder ({run}); drop "
        "--run-dir\n"
    )
    assert main([*resume, "--output", str(tmp_path / "else")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "output_dir would change from 'runs' to " in err
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 1
    # the Python API's overrides are no edit of the file: a new rate is taken, as before
    again = Trainer.resume(run, overrides={"train.epochs": 2, "train.lr": 0.001}, progress=False)
    assert again.fit().epochs_completed == 2


def test_runs_started_in_one_second_get_folders_of_their_own(cells, tmp_path, monkeypatch):
    import unetkit.training.trainer as trainer_mod

    monkeypatch.setattr(trainer_mod, "run_name", lambda config: "unet-20270101-000000")
    cfg = tiny_config(cells, epochs=1, iters_per_epoch=1)
    cfg.output_dir = str(tmp_path / "runs")
    first = Trainer(cfg, progress=False).fit().run_dir
    second = Trainer(cfg, progress=False).fit().run_dir
    assert first.name == "unet-20270101-000000" and second.name == "unet-20270101-000000-2"
    assert (first / "checkpoints" / "last.pt").is_file()
    assert (second / "checkpoints" / "last.pt").is_file()


def test_sigterm_ends_a_run_as_ctrl_c_does_with_how_to_resume(cells, tmp_path):
    """SIGTERM (kill, SLURM's time limit) ends the run as an interrupted one: exit 143, the log's
    last line and the console say how to continue; the saved epochs resume."""
    run = tmp_path / "run"
    args = ["train", str(cells), "--no-plan", "--patch-size", "32", "--iters-per-epoch", "6"]
    args += ["--epochs", "50", "--threads", "1", "--precision", "fp32", "--no-progress"]
    args += ["--set", "model.options.base_features=4", "--set", "model.options.depth=2"]
    proc = _cli(*args, "--run-dir", str(run))
    csv_path = run / "metrics.csv"
    deadline = time.monotonic() + 600  # a bound for a stuck run, not a speed requirement
    while time.monotonic() < deadline:
        if csv_path.exists() and len(csv_path.read_text().strip().splitlines()) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 143, out
    last = (run / "train.log").read_text().strip().splitlines()[-1]
    assert last.startswith("ended: terminated (SIGTERM) after epoch ")
    assert last.endswith(f"; unetkit train --resume {run} continues it")
    assert last in out and out.strip().endswith("unetkit train: terminated (SIGTERM)")
    assert not list((run / "checkpoints").glob(".*tmp*"))
    load_checkpoint(run / "checkpoints" / "last.pt")  # whole


def test_runs_of_folds_started_in_one_second_get_folders_of_their_own(cells, tmp_path, monkeypatch):
    import unetkit.training.folds as folds_mod
    import unetkit.training.trainer as trainer_mod

    monkeypatch.setattr(folds_mod, "run_name", lambda config: "unet-20270101-000000")
    monkeypatch.setattr(trainer_mod, "run_name", lambda config: "unet-20270101-000000")
    cfg = tiny_config(cells, epochs=1, iters_per_epoch=1, folds=2)
    cfg.output_dir = str(tmp_path / "runs")
    cfg.data.val_fraction = 0.2
    folds_mod.train_folds(cfg, progress=False)
    folds_mod.train_folds(cfg, progress=False)
    made = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert made == ["unet-20270101-000000", "unet-20270101-000000-2"]
    for name in made:
        assert (tmp_path / "runs" / name / "ensemble.json").is_file()


def test_an_error_of_its_own_with_a_reason_is_logged_by_its_type(cells, tmp_path):
    """Only the command's own endings (SIGTERM, a closed output) are logged by their words."""

    class Odd(RuntimeError):
        reason = "invalid start byte"

    class _Raise(Callback):
        def on_epoch_end(self, trainer, history):
            raise Odd("x")

    with pytest.raises(Odd):
        Trainer(
            tiny_config(cells, epochs=2),
            run_dir=tmp_path / "r",
            progress=False,
            callbacks=[_Raise()],
        ).fit()
    last = (tmp_path / "r" / "train.log").read_text().splitlines()[-1]
    assert last.startswith("ended: stopped by an error (Odd) after epoch 1")


def test_a_run_folder_beside_images_and_masks_is_taken(cells, tmp_path):
    """runs/ inside the data folder, beside images/ and masks/, is never read as data: allowed."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(cells, data)
    cfg = tiny_config(data, epochs=1, iters_per_epoch=1)
    cfg.output_dir = str(data / "runs")
    assert Trainer(cfg, progress=False).fit().run_dir.parent == data / "runs"
    again = Trainer(tiny_config(data, epochs=1, iters_per_epoch=1), progress=False)
    again.config.output_dir = str(data / "runs")
    assert len(again.fit().history) == 1  # the run folder did not become a case

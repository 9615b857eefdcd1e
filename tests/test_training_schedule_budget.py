"""``train.scheduler: budget``: the poly learning-rate schedule on the clock (BudgetSchedule)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from unetkit.checkpoint import load_checkpoint
from unetkit.cli import main
from unetkit.config import RunConfig
from unetkit.errors import ConfigError
from unetkit.training import Trainer
from unetkit.training import callbacks as callbacks_module
from unetkit.training import trainer as trainer_module
from unetkit.training.callbacks import BudgetSchedule, Callback
from unetkit.training.optim import build_scheduler

from .test_training import (  # discs on noise (masks 0/255); a crash after epoch n
    _CrashAfter,
    make_cells,
)


def tiny_config(data: Path, **train) -> RunConfig:
    return RunConfig.from_dict(
        {
            "data": {
                "train_dir": str(data),
                "val_fraction": 0.25,
                "patch_size": [32],
                "augmentation": None,
            },
            "model": {
                "name": "unet",
                "options": {"base_features": 4, "depth": 2, "norm": "instance"},
            },
            "loss": {"name": "dice-ce"},
            "train": {
                "epochs": 1000,
                "iters_per_epoch": 2,
                "batch_size": 2,
                "lr": 0.01,
                "seed": 7,
                "precision": "fp32",
                "threads": 1,
                "scheduler": "budget",
                "time_budget_minutes": 1.0,
                **train,
            },
        }
    )


@pytest.fixture(scope="module")
def cells(tmp_path_factory) -> Path:
    return make_cells(tmp_path_factory.mktemp("cells") / "train")


class _Tick(Callback):
    """Advances the shared fake clock by ``step`` seconds after each training batch."""

    def __init__(self, clock: dict, step: float):
        self.clock, self.step = clock, step

    def on_batch_end(self, trainer, batch, loss):
        self.clock["t"] += self.step


def fake_step_clock(monkeypatch, step: float) -> _Tick:
    """One fake clock for the trainer and its callbacks: it moves by ``step`` seconds per training
    step (the returned callback, to pass to the trainer) and by 1 ns per reading, so set-up and
    validation take (almost) no time."""
    clock = {"t": 1000.0}

    def monotonic() -> float:
        clock["t"] += 1e-9
        return clock["t"]

    fake = SimpleNamespace(monotonic=monotonic)
    monkeypatch.setattr(callbacks_module, "time", fake)
    monkeypatch.setattr(trainer_module, "time", fake)
    return _Tick(clock, step)


def fake_trainer(t_start: float, lr: float, epochs: int = 1000, dist=None):
    group = {"lr": lr}
    trainer = SimpleNamespace(
        t_start=t_start,
        config=SimpleNamespace(train=SimpleNamespace(epochs=epochs)),
        optimizer=SimpleNamespace(param_groups=[group, dict(group)]),
    )
    if dist is not None:
        trainer.dist = dist
    return trainer


# ------------------------------------------------------------------------------------- config
def test_budget_without_time_budget_is_a_config_error():
    with pytest.raises(
        ConfigError,
        match=r"train.scheduler budget .* needs a time budget: set "
        r"train.time_budget_minutes \(--time-budget MINUTES\)",
    ):
        RunConfig.from_dict({"train": {"scheduler": "budget"}})
    cfg = RunConfig.from_dict({"train": {"epochs": 5}})
    with pytest.raises(ConfigError, match="set train.time_budget_minutes"):
        cfg.override({"train.scheduler": "budget"})
    ok = cfg.override({"train.scheduler": "budget", "train.time_budget_minutes": 2.5})
    assert ok.train.scheduler == "budget" and ok.train.time_budget_minutes == 2.5
    with pytest.raises(ConfigError, match="one of poly, cosine, plateau, budget, none"):
        RunConfig.from_dict({"train": {"scheduler": "clock"}})


def test_build_scheduler_leaves_budget_to_the_callback():
    cfg = RunConfig.from_dict({"train": {"scheduler": "budget", "time_budget_minutes": 1}}).train
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    assert build_scheduler(cfg, opt) is None
    assert opt.param_groups[0]["lr"] == 0.1


def test_train_cli_accepts_scheduler_budget_and_explains_the_missing_budget(cells, capsys):
    assert main(["train", str(cells), "--scheduler", "budget", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "set train.time_budget_minutes (--time-budget MINUTES)" in err


# ----------------------------------------------------------------------------------- callback
def test_learning_rate_follows_poly_of_the_elapsed_time(monkeypatch):
    clock = {"t": 1000.0}
    monkeypatch.setattr(callbacks_module, "time", SimpleNamespace(monotonic=lambda: clock["t"]))
    lr, budget, reserve, setup = 0.004, 200.0, 5.0, 15.0
    T = budget - setup - reserve  # 180 s for training
    trainer = fake_trainer(t_start=1000.0 - setup, lr=lr)
    cb = BudgetSchedule(budget_s=budget, lr=lr, reserve_s=reserve)
    cb.on_train_start(trainer)
    # epoch durations 30, 30, 60, 50 s; epochs = done + the mean-of-last-3 epochs that still start
    # before T (the last one cut short)
    for done, (t, epochs) in enumerate([(30, 6), (60, 6), (120, 5), (170, 5)], start=1):
        clock["t"] = 1000.0 + t
        cb.on_epoch_end(trainer, [{}] * done)
        expected = lr * (1.0 - t / T) ** 0.9
        assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx(
            [expected, expected], rel=1e-12
        )
        assert trainer.config.train.epochs == epochs
    clock["t"] = 1000.0 + 190  # past T: the rate is 0, never negative or complex
    cb.on_epoch_end(trainer, [{}] * 5)
    assert trainer.optimizer.param_groups[0]["lr"] == 0.0 and trainer.config.train.epochs == 5


def test_any_time_left_starts_one_more_epoch_and_epochs_stay_an_upper_bound(monkeypatch):
    clock = {"t": 0.0}
    monkeypatch.setattr(callbacks_module, "time", SimpleNamespace(monotonic=lambda: clock["t"]))
    trainer = fake_trainer(t_start=0.0, lr=0.01)
    cb = BudgetSchedule(budget_s=150.0, lr=0.01, reserve_s=0.0)
    cb.on_train_start(trainer)
    clock["t"] = 88.0  # one long epoch, 62 s left: one more
    cb.on_epoch_end(trainer, [{}])
    assert trainer.config.train.epochs == 2
    clock["t"] = 145.0  # mean epoch 72.5 s, 5 s left: one more still, which the trainer cuts short
    cb.on_epoch_end(trainer, [{}] * 2)
    assert trainer.config.train.epochs == 3
    clock["t"] = 150.0  # no time left: stop here
    cb.on_epoch_end(trainer, [{}] * 3)
    assert trainer.config.train.epochs == 3
    # the trainer's end-of-run reserve, when larger than the schedule's, says where training stops
    clock["t"] = 160.0
    trainer = fake_trainer(t_start=160.0, lr=0.01)
    trainer.end_reserve_s = lambda: 40.0
    cb.on_train_start(trainer)
    clock["t"] = 160.0 + 50.0  # 50 s, 1 epoch: 60 s until the trainer stops (150 − 40 − 50)
    cb.on_epoch_end(trainer, [{}])
    assert trainer.config.train.epochs == 1 + 2
    # a user's train.epochs is an upper bound
    trainer = fake_trainer(t_start=clock["t"], lr=0.01, epochs=2)
    cb.on_train_start(trainer)
    clock["t"] += 10.0
    cb.on_epoch_end(trainer, [{}])
    assert trainer.config.train.epochs == 2


def test_train_start_resets_the_rate_and_a_spent_budget_gives_zero(monkeypatch):
    clock = {"t": 50.0}
    monkeypatch.setattr(callbacks_module, "time", SimpleNamespace(monotonic=lambda: clock["t"]))
    trainer = fake_trainer(t_start=0.0, lr=1e-7)  # a resumed optimiser at its last, tiny rate
    cb = BudgetSchedule(budget_s=100.0, lr=0.01, power=2.0, reserve_s=0.0)
    cb.on_train_start(trainer)
    assert trainer.optimizer.param_groups[0]["lr"] == 0.01
    clock["t"] = 75.0
    cb.on_epoch_end(trainer, [{}] * 3)  # T = 50, t = 25: 0.01 · 0.5²
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0025)
    assert trainer.config.train.epochs == 3 + 1
    late = BudgetSchedule(
        budget_s=30.0, lr=0.01
    )  # set-up took longer than the whole budget: no time left
    late.on_train_start(trainer)
    clock["t"] = 80.0
    late.on_epoch_end(trainer, [{}])
    assert trainer.optimizer.param_groups[0]["lr"] == 0.0 and trainer.config.train.epochs == 1


def test_every_rank_takes_rank_zeros_decision(monkeypatch):
    import torch.distributed

    clock = {"t": 10.0}
    monkeypatch.setattr(callbacks_module, "time", SimpleNamespace(monotonic=lambda: clock["t"]))
    sent = []

    def broadcast_object_list(box, src=0):  # as seen on rank 1: rank 0's clock decides
        sent.append((list(box), src))
        box[:] = [0.8] if len(box) == 1 else [0.5, 9]  # the start rate; then lr 0.5, 9 epochs

    monkeypatch.setattr(torch.distributed, "broadcast_object_list", broadcast_object_list)
    trainer = fake_trainer(t_start=10.0, lr=1.0, dist=SimpleNamespace(enabled=True))
    cb = BudgetSchedule(budget_s=103.0, lr=1.0, power=1.0)
    cb.on_train_start(trainer)  # a resumed run's start rate differs with each rank's set-up time
    assert trainer.optimizer.param_groups[0]["lr"] == 0.8
    clock["t"] = 60.0
    cb.on_epoch_end(trainer, [{}])
    # its own views (the peak at t = 0; t = 50 of T = 100) were sent for rank 0 to overwrite
    assert sent == [([1.0], 0), ([0.5, 2], 0)]
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [
        0.5,
        0.5,
    ] and trainer.config.train.epochs == 9


# ------------------------------------------------------------------------------------ trainer
def test_trainer_runs_the_budget_schedule_until_its_own_budget_stops_training(
    cells, tmp_path, monkeypatch, capsys
):
    tick = fake_step_clock(monkeypatch, step=1.0)  # every step "takes" 1 s of the 60 s budget
    cfg = tiny_config(cells)
    trainer = Trainer(cfg, run_dir=tmp_path / "run", progress=False, callbacks=[tick])
    result = trainer.fit()
    schedule = trainer.callbacks[0]  # first, so the epoch line sees the count it sets
    assert isinstance(schedule, BudgetSchedule) and (schedule.budget_s, schedule.lr) == (60.0, 0.01)
    T = schedule.available  # 60 s − 3 s reserve (set-up takes no time on this clock)
    assert abs(T - 57.0) < 1e-3
    # the trainer keeps 1.5 s for saving (saves take no time on this clock) and 6 s, a tenth of
    # the budget, for the post-processing (validation is instant): training stops at 52.5 s,
    # in the 27th epoch of 2 steps, which the schedule let start
    assert trainer.end_reserve_s() == pytest.approx(7.5, abs=1e-3)
    assert result.epochs_completed == 27 and result.stop_reason == "time budget reached"
    lrs = [r["lr"] for r in result.history]  # each epoch's rate, set after the one before
    assert lrs == pytest.approx(
        [0.01] + [0.01 * (1 - 2 * k / T) ** 0.9 for k in range(1, 27)], rel=1e-6
    )
    assert all(b < a for a, b in zip(lrs, lrs[1:]))
    assert RunConfig.from_yaml(tmp_path / "run" / "config.yaml").train.scheduler == "budget"
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["scheduler"] is None
    assert cfg.train.epochs == 1000  # the trainer shortened its own copy, not the caller's config
    # the epoch lines show the schedule's estimate, already from the first epoch (not the 1000)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("epoch")]
    assert lines[0].startswith("epoch   1/~27 ") and lines[-1].startswith("epoch  27/~27 ")


def slow_save(trainer: Trainer, clock: dict, epoch: int, seconds: float) -> None:
    """Makes saving ``last.pt`` after epoch ``epoch`` "take" ``seconds`` on the fake clock."""
    save = trainer.save

    def slow(name, record):
        path = save(name, record)
        if name == "last.pt" and len(trainer.history) == epoch:
            clock["t"] += seconds
        return path

    trainer.save = slow


def test_time_running_out_between_epochs_still_ends_on_a_validated_epoch(
    cells, tmp_path, monkeypatch
):
    tick = fake_step_clock(monkeypatch, step=1.0)
    # epoch 26 ends at 52 s, 0.5 s before training must stop (60 s − 7.5 s reserve), and its save
    # "takes" 2 s: the schedule finds no time left after an epoch that train.val_every skipped
    cfg = tiny_config(cells, val_every=1000)
    trainer = Trainer(cfg, run_dir=tmp_path / "run", progress=False, callbacks=[tick])
    slow_save(trainer, tick.clock, epoch=26, seconds=2.0)
    result = trainer.fit()
    validated = [r["epoch"] for r in result.history if "val_dice" in r]
    # one more epoch, stopped after its first step, and validated
    assert result.epochs_completed == 27 and validated == [27]
    assert result.stop_reason == "time budget reached"
    assert result.best["epoch"] == 27
    # the callback alone: an unvalidated last epoch gets one more, a validated one does not
    clock = {"t": 0.0}
    monkeypatch.setattr(callbacks_module, "time", SimpleNamespace(monotonic=lambda: clock["t"]))
    fake = fake_trainer(t_start=0.0, lr=0.01)
    fake.data = SimpleNamespace(val=[object()])
    cb = BudgetSchedule(budget_s=100.0, lr=0.01, reserve_s=0.0)
    cb.on_train_start(fake)
    clock["t"] = 100.0
    cb.on_epoch_end(fake, [{"train_loss": 1.0}])
    assert fake.config.train.epochs == 2
    cb.on_epoch_end(fake, [{"train_loss": 1.0}, {"train_loss": 1.0, "val_dice": 0.5}])
    assert fake.config.train.epochs == 2
    fake.data = SimpleNamespace(val=[])  # nothing to validate: stop
    cb.on_epoch_end(fake, [{"train_loss": 1.0}] * 3)
    assert fake.config.train.epochs == 3


def test_a_run_the_schedule_ends_between_epochs_says_the_budget_ended_it(
    cells, tmp_path, monkeypatch
):
    """The schedule lowers train.epochs when no time is left for another epoch: the run ends on
    that count without a stop inside an epoch, and its reason is the budget, not "completed"."""
    tick = fake_step_clock(monkeypatch, step=1.0)
    cfg = tiny_config(cells, val_every=1)
    trainer = Trainer(cfg, run_dir=tmp_path / "run", progress=False, callbacks=[tick])
    slow_save(trainer, tick.clock, epoch=25, seconds=4.0)  # epoch 25 ends at 50 s, saved at 54 s
    result = trainer.fit()
    assert result.epochs_completed == trainer.config.train.epochs == 25  # the schedule's count
    assert result.stop_reason == "time budget reached"
    # a count of the user's own, reached within the budget, is "completed"
    tick = fake_step_clock(monkeypatch, step=1.0)
    cfg = tiny_config(cells, val_every=1).override({"train.epochs": 3})
    done = Trainer(cfg, run_dir=tmp_path / "short", progress=False, callbacks=[tick]).fit()
    assert done.epochs_completed == 3 and done.stop_reason == "completed"


def test_resume_continues_the_budget_and_the_rate_where_they_stopped(cells, tmp_path, monkeypatch):
    tick = fake_step_clock(monkeypatch, step=1.0)
    cfg = tiny_config(cells, time_budget_minutes=0.4)  # 24 s: about 8 epochs of 2 s
    whole = Trainer(cfg, run_dir=tmp_path / "whole", progress=False, callbacks=[tick])
    uninterrupted = whole.fit()  # the same run without the crash
    tick = fake_step_clock(monkeypatch, step=1.0)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Trainer(
            cfg,
            run_dir=tmp_path / "run",
            progress=False,
            callbacks=[_CrashAfter(2), tick],
        ).fit()
    clock = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["extra"]["clock"]
    assert clock["budget_minutes"] == 0.4  # two epochs of two 1-s steps
    assert clock["spent_s"] == pytest.approx(4.0, abs=0.01)
    assert clock["schedule_s"] == pytest.approx(4.0, abs=0.01)

    tick = fake_step_clock(monkeypatch, step=1.0)  # a new process: a new clock
    trainer = Trainer.resume(tmp_path / "run", progress=False)
    trainer.extra_callbacks.append(tick)
    result = trainer.fit()
    assert any("0.3 of the 0.4-minute time budget left" in n for n in trainer.resume_notes)
    lrs = [r["lr"] for r in result.history]
    T = trainer.callbacks[0].available
    assert abs(T - whole.callbacks[0].available) < 1e-3
    assert lrs[2] == pytest.approx(0.01 * (1 - 4 / T) ** 0.9, rel=1e-6)  # where it stopped
    # the resumed run is the uninterrupted one: the same epochs at the same rates
    done = result.epochs_completed
    assert done == uninterrupted.epochs_completed > 4
    assert lrs == pytest.approx([r["lr"] for r in uninterrupted.history], rel=1e-6)
    assert result.stop_reason == "time budget reached"

    # ended by its budget: refused, nothing trained; a new budget trains again from the peak
    with pytest.raises(
        ConfigError, match=r"run has spent its 0\.4-minute time budget; --time-budget M"
    ):
        Trainer.resume(tmp_path / "run", progress=False).fit()
    tick = fake_step_clock(monkeypatch, step=1.0)
    again = Trainer.resume(
        tmp_path / "run", overrides={"train.time_budget_minutes": 0.2}, progress=False
    )
    again.extra_callbacks.append(tick)
    more = again.fit()
    assert more.history[done]["lr"] == 0.01  # back at the peak
    assert "a new 0.2-minute time budget" in again.resume_notes[-1]
    assert more.epochs_completed > done


def test_a_completed_run_with_a_budget_is_extended_by_epochs_on_what_is_left(
    cells, tmp_path, monkeypatch
):
    """--epochs with --time-budget (the budget only stops the run): a run that completed its
    epochs is lengthened by --epochs on resume, within the rest of its budget, not refused."""
    tick = fake_step_clock(monkeypatch, step=1.0)
    cfg = tiny_config(cells, scheduler="poly").override({"train.epochs": 2})
    done = Trainer(cfg, run_dir=tmp_path / "run", progress=False, callbacks=[tick]).fit()
    assert done.stop_reason == "completed"
    tick = fake_step_clock(monkeypatch, step=1.0)
    more = Trainer.resume(tmp_path / "run", overrides={"train.epochs": 3}, progress=False)
    more.extra_callbacks.append(tick)
    assert more.fit().epochs_completed == 3
    assert any("0.9 of the 1-minute time budget left" in n for n in more.resume_notes)


def test_resume_on_the_command_line_continues_or_takes_a_new_budget(cells, tmp_path, monkeypatch):
    tick = fake_step_clock(monkeypatch, step=1.0)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Trainer(
            tiny_config(cells),
            run_dir=tmp_path / "run",
            progress=False,
            callbacks=[_CrashAfter(2), tick],
        ).fit()
    # a checkpoint saved before budgets were recorded: a new budget, said so
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=False)
    del ckpt["extra"]["clock"]
    torch.save(ckpt, last)
    old = Trainer.resume(tmp_path / "run", progress=False)
    old.setup()
    assert any("records no time spent (an older checkpoint)" in n for n in old.resume_notes)
    assert old.budget_spent_s == 0.0
    seen = {}

    class Seen(Exception):
        pass

    def fit(self):  # the trainer as the command hands it over, not trained
        seen["restart"] = self.restart_budget
        raise Seen

    monkeypatch.setattr(Trainer, "fit", fit)
    run = str(tmp_path / "run")
    with pytest.raises(Seen):
        main(["train", "--resume", run, "--no-progress"])
    assert seen["restart"] is False
    with pytest.raises(Seen):
        main(["train", "--resume", run, "--time-budget", "1", "--no-progress"])
    assert seen["restart"] is True


def test_the_planning_time_comes_out_of_the_budget_and_says_so():
    from unetkit.commands.train import MIN_TRAIN_MINUTES, budget_left_after_plan

    left, line = budget_left_after_plan(5, 30)
    assert left == 4.5
    assert line == "plan: made in 30 s; 4.5 of 5 minutes left to train"
    # a budget the plan used up still trains one epoch, and the line does not claim time left
    left, line = budget_left_after_plan(1e-9, 2)
    assert left == MIN_TRAIN_MINUTES == 0.1
    assert line == (
        "plan: made in 2 s, more than the 1e-09-minute budget leaves to train: "
        "training for 0.1 minutes (a first model)"
    )
    assert budget_left_after_plan(0.2, 4)[0] == pytest.approx(0.2 - 4 / 60)
    assert budget_left_after_plan(0.2, 7)[0] == 0.1  # 0.083 left: the least it trains


def test_the_end_reserve_shrinks_with_a_short_budget_and_a_fast_save():
    """A 30-s budget kept 15 s for saving and the post-processing search whatever they took
    (training used under half of it): the search keeps a tenth of a short budget (it stops
    trying candidates when time is up) and saving three times the last save timed."""
    from unetkit.training.trainer import end_reserve_fixed_s

    assert end_reserve_fixed_s(300) == 5.0 + 10.0  # 5 minutes: as before
    assert end_reserve_fixed_s(30) == pytest.approx(5.0 + 3.0)  # before a save was timed
    assert end_reserve_fixed_s(30, save_s=0.2) == pytest.approx(1.5 + 3.0)  # at least 1.5 s
    assert end_reserve_fixed_s(30, save_s=1.0) == pytest.approx(3.0 + 3.0)
    assert end_reserve_fixed_s(300, save_s=4.0) == 5.0 + 10.0  # at most 5 s
    assert end_reserve_fixed_s(30, save_s=0.2, postprocess=False) == 1.5

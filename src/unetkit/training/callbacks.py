"""Trainer callbacks: CSV log, loss/metric plot, TensorBoard, one-line epoch summaries, and the
learning-rate schedule on the clock (:class:`BudgetSchedule`, ``train.scheduler: budget``).

Each logging callback sees the whole history (a list of per-epoch dicts) and rewrites its file from
it atomically, so a resumed run's logs hold exactly the epochs its checkpoint holds.
"""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from pathlib import Path
from typing import Optional

from ..utils import atomic_path, atomic_write_text


class Callback:
    """Hooks the trainer calls: the logging callbacks and a trainer's ``callbacks=[...]`` run on the main
    process only; a :class:`BudgetSchedule` built from ``train.scheduler: budget`` runs on every rank."""

    def on_train_start(self, trainer) -> None:
        pass

    def on_batch_end(self, trainer, batch: int, loss: float) -> None:
        """After each training batch: its number in the epoch (from 1) and the epoch's mean loss
        so far (a GUI's progress; :meth:`Trainer.request_stop` ends the run early)."""

    def on_epoch_end(self, trainer, history: list[dict]) -> None:
        pass

    def on_train_end(self, trainer, history: list[dict]) -> None:
        pass


class CSVLogger(Callback):
    """``metrics.csv``: one row per epoch, every metric as a column."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_epoch_end(self, trainer, history):
        keys: list[str] = []
        for row in history:
            keys += [k for k in row if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
        atomic_write_text(self.path, buf.getvalue())


class PlotCallback(Callback):
    """``curves.png``: training/validation loss and validation Dice/IoU per epoch (needs matplotlib)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_epoch_end(self, trainer, history):
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:  # plotting is optional
            return
        epochs = [r["epoch"] for r in history]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
        for key, label in (("train_loss", "train loss"), ("val_loss", "val loss")):
            ys = [r.get(key, math.nan) for r in history]
            if any(not math.isnan(y) for y in ys):
                ax1.plot(epochs, ys, marker=".", label=label)
        ax1.set_xlabel("epoch")
        ax1.set_ylabel("loss")
        ax1.legend()
        for key in ("val_dice", "val_iou"):
            ys = [r.get(key, math.nan) for r in history]
            if any(not math.isnan(y) for y in ys):
                ax2.plot(epochs, ys, marker=".", label=key.replace("_", " "))
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("foreground mean")
        ax2.set_ylim(0, 1)
        if ax2.lines:
            ax2.legend()
        fig.tight_layout()
        with atomic_path(self.path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)


class TensorBoardLogger(Callback):
    """TensorBoard scalars under ``tensorboard/`` when the ``tensorboard`` package is installed."""

    def __init__(self, log_dir: Path):
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(log_dir))
        except Exception:  # tensorboard not installed: silently off
            self.writer = None

    def on_epoch_end(self, trainer, history):
        if self.writer is None:
            return
        row = history[-1]
        for k, v in row.items():
            if k != "epoch" and isinstance(v, (int, float)) and not math.isnan(v):
                self.writer.add_scalar(k, v, row["epoch"])
        self.writer.flush()

    def on_train_end(self, trainer, history):
        if self.writer is not None:
            self.writer.close()


class ConsoleSummary(Callback):
    """One line per epoch: losses, validation scores, best so far, learning rate, throughput."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def on_epoch_end(self, trainer, history):
        r = history[-1]
        # on the clock the count is the budget schedule's estimate from the speed so far
        about = "~" if trainer.config.train.scheduler == "budget" else ""
        parts = [
            f"epoch {r['epoch']:>3}/{about}{trainer.config.train.epochs}",
            f"loss {r['train_loss']:.4f}",
        ]
        if not math.isnan(r.get("val_loss", math.nan)):
            parts.append(f"val loss {r['val_loss']:.4f}")
        if not math.isnan(r.get("val_dice", math.nan)):
            parts.append(f"val dice {r['val_dice']:.4f}")
            k = sum(key.startswith("val_dice_c") for key in r)
            per_class = [r[f"val_dice_c{c}"] for c in range(k)]  # class order, not name order
            if 2 < len(per_class) <= 6 or len(per_class) == 2:
                # val dice is the mean over the foreground classes: background is named apart
                shown = [
                    ("bg " if c == 0 else f"{c}: ") + ("n/a" if math.isnan(v) else f"{v:.3f}")
                    for c, v in enumerate(per_class)
                ]
                parts.append("per class [" + ", ".join(shown) + "]")
            best: Optional[dict] = trainer.best
            if best is not None:
                label = "" if best["metric"] == "val_dice" else f"{best['metric']} "
                parts.append(f"(best {label}{best['value']:.4f} @ {best['epoch']})")
        parts += [
            f"lr {r['lr']:.2e}",
            f"{r['images_per_s']:.1f} img/s",
            f"{r['epoch_time_s']:.0f} s",
        ]
        print("  ".join(parts), file=self.stream, flush=True)


class BudgetSchedule(Callback):
    """The poly learning-rate schedule run on the clock: the rate falls steadily over the time
    budget, and epochs start until the trainer stops for the end of the run.

    The trainer adds one for ``train.scheduler: budget`` (budget ``train.time_budget_minutes``·60 s,
    rate ``train.lr``). After each epoch, with ``t`` seconds of training behind and ``T`` available
    (the budget minus the set-up time and ``reserve_s``), the learning rate of the next epoch becomes
    ``lr · (1 − t/T)^power`` and ``train.epochs`` the epochs done plus those that still start
    before the trainer stops, at the speed of the last three. The rate thus falls steadily however
    the speed of a shared machine changes, instead of being cut off at its peak as the per-epoch
    ``poly`` schedule is when the budget ends first.

    Training stops where the trainer's own budget keeps its end-of-run reserve
    (``Trainer.end_reserve_s``: the last validation, saving, choosing the post-processing), so the
    epochs go on while any of that time is left, the last one cut short by the trainer: no
    training time is left unused. ``T`` keeps only ``reserve_s``, so the rate ends at about
    10–30 % of its peak, not at 0. That is measured, not an oversight: with ``T`` ending where the
    trainer stops (the rate at 0 there, set every step), 4-minute MoNuSeg runs lost 0.007 Dice and
    0.015 object F1 in a paired comparison (DRIVE: equal); runs this short are far from converged.
    ``train.epochs`` stays an upper bound. The run never ends on an epoch that ``train.val_every``
    left unvalidated: should time run out between two epochs, one more starts, which the trainer
    stops after its first step and validates.

    Resume: the run continues. The trainer's ``budget_spent_s`` (the budget its earlier sessions
    spent) and ``schedule_spent_s`` (the seconds they trained on this schedule) come out of
    ``T`` and ``t``, so the rate goes on from where it stopped and reaches the same end. A resumed
    run given a new budget (``--time-budget`` again) has both at 0: a warm restart at ``lr``.

    Multi-process (torchrun): the callback runs on every rank and rank 0's learning rate and epoch
    count are broadcast, so all ranks train with the same rate and stop after the same epoch.

    Args:
        budget_s: the time budget in seconds, counted from the trainer's set-up.
        lr: the peak learning rate (the rate at ``t = 0``).
        power: the poly exponent (0.9, as nnU-Net).
        reserve_s: seconds by which ``T`` ends before the budget (the trainer's reserve, when
            larger, decides where training stops).
    """

    def __init__(self, budget_s: float, lr: float, power: float = 0.9, reserve_s: float = 3.0):
        self.budget_s, self.lr, self.power, self.reserve_s = (
            float(budget_s),
            float(lr),
            float(power),
            float(reserve_s),
        )

    def on_train_start(self, trainer) -> None:
        self.t0 = self.last = time.monotonic()
        # the training seconds and the budget a resumed run's earlier sessions spent
        self.prior = float(getattr(trainer, "schedule_spent_s", 0.0) or 0.0)
        spent = float(getattr(trainer, "budget_spent_s", 0.0) or 0.0)
        # the budget's seconds left once set-up is done, and those the rate decays over
        self.after_setup = self.budget_s - spent - (self.t0 - trainer.t_start)
        self.available = self.prior + self.after_setup - self.reserve_s
        self.epoch_times: list[float] = []
        self.max_epochs = trainer.config.train.epochs
        # the schedule's start, or where a resumed run left it (its optimiser holds its last rate)
        self._set_lr(trainer, self._from_rank_0(trainer, [self._rate(self.prior)])[0])

    def trained_s(self) -> float:
        """Seconds trained on this schedule, earlier sessions of a resumed run included."""
        return self.prior + time.monotonic() - self.t0 if hasattr(self, "t0") else 0.0

    def _rate(self, elapsed: float) -> float:
        left = 1.0 - elapsed / self.available if self.available > 0 else 0.0
        return self.lr * max(0.0, left) ** self.power

    def on_epoch_end(self, trainer, history) -> None:
        now = time.monotonic()
        self.epoch_times.append(now - self.last)
        self.last = now
        elapsed = now - self.t0
        recent = self.epoch_times[-3:]
        per_epoch = sum(recent) / len(recent)
        lr = self._rate(self.prior + elapsed)
        # the epochs that still start before the trainer stops; it cuts the last one short
        end_reserve = getattr(trainer, "end_reserve_s", None)
        reserve = max(self.reserve_s, end_reserve() if callable(end_reserve) else 0.0)
        train_left = self.after_setup - reserve - elapsed
        epochs = len(history) + max(0, math.ceil(train_left / max(per_epoch, 1e-9)))
        if epochs <= len(history) and _unvalidated(trainer, history):
            # time ran out while the epoch was being saved, after the trainer's last check: one
            # more epoch, which the trainer stops after its first step and validates, so the run
            # does not end on an epoch left unvalidated (train.val_every > 1)
            epochs = len(history) + 1
        epochs = min(epochs, self.max_epochs)
        lr, epochs = self._from_rank_0(trainer, [lr, epochs])
        self._set_lr(trainer, lr)
        trainer.config.train.epochs = epochs

    @staticmethod
    def _from_rank_0(trainer, values: list) -> list:
        """``values`` as rank 0 has them (multi-process): its clock decides for every rank, so
        all train at one rate (DDP keeps weights equal only if the steps are) and stop alike."""
        dist = getattr(trainer, "dist", None)
        if dist is not None and dist.enabled:
            import torch.distributed

            torch.distributed.broadcast_object_list(values, src=0)
        return values

    @staticmethod
    def _set_lr(trainer, lr: float) -> None:
        for group in trainer.optimizer.param_groups:
            group["lr"] = lr


def _unvalidated(trainer, history: list) -> bool:
    """Whether the trainer has validation images but the last epoch (``history[-1]``) was not
    validated."""
    data = getattr(trainer, "data", None)
    return bool(
        history
        and getattr(data, "val", None)
        and not any(str(k).startswith("val_") for k in history[-1])
    )

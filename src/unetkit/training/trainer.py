"""The trainer: a short loop of named hooks; every number comes from :class:`~unetkit.config.RunConfig`.

    setup()                      data, model (fine-tuning: train.init_from weights), loss,
                                 optimiser, schedule, callbacks; resume state
    for each epoch:
        train_epoch()            train_step() per batch (autocast, clipping, optimiser step)
        validate()               whole validation images, per-class Dice / IoU
        end_epoch()              scheduler, checkpoints (last / best), logs, stopping rules
    choose_postprocessing()      best.pt on the validation images: the clean-ups that raise the Dice
                                 (or the object F1, for steps judged on objects)

A run folder holds ``config.yaml`` (resolved), ``splits.json``, ``metrics.csv``, ``curves.png``,
``train.log``, ``checkpoints/{last,best}.pt`` and ``postprocess.json`` (the post-processing chosen
for ``best.pt``, also stored in it); ``Trainer.resume(run_dir)`` continues exactly.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from .. import runtime
from ..checkpoint import load_checkpoint, save_checkpoint, set_rng_state, write_checkpoint
from ..config import RunConfig
from ..data import (
    IGNORE_INDEX,
    LabelMap,
    Normalizer,
    PatchDataset,
    PatchSampler,
    build_augmentation,
    patch_geometry,
    prepare_data,
    save_splits,
)
from ..data.normalization import describe_normalization
from ..errors import ConfigError, DataError
from ..evaluation.metrics import EMPTY_POLICY, confusion_matrix, overlap_scores
from ..inference.predictor import Predictor, labels_from_logits
from ..losses import DeepSupervisionLoss, create_loss
from ..models import create_model
from ..run_folder import ENSEMBLE_FILE, check_new_run_dir, last_ending, refresh_fold
from ..utils import (
    atomic_write_text,
    json_default,
    jsonable,
    progress_bars_off,
    remove_stale_temp_files,
)
from . import distributed as dist_utils
from .callbacks import (
    BudgetSchedule,
    Callback,
    ConsoleSummary,
    CSVLogger,
    PlotCallback,
    TensorBoardLogger,
)
from .init_from import load_matching_weights, read_source

DEFAULT_PATCH = {2: 256, 3: 96}
#: Seconds of a time budget kept for saving after the last step, until a save was timed: then
#: three times the last save, within [_MIN_SAVE_RESERVE_S, _SAVE_RESERVE_S].
_SAVE_RESERVE_S = 5.0
_MIN_SAVE_RESERVE_S = 1.5
#: time kept for trying the post-processing candidates besides their one validation pass (the
#: watershed split of 3 ISBI slices takes ~5 s on 2 cores), or this share of a shorter budget: the
#: search stops trying candidates when the time is up, so a 30-s budget need not keep 10 s for it
_POSTPROCESS_SEARCH_S = 10.0
_POSTPROCESS_SEARCH_SHARE = 0.1


#: what a resumed run may change: how long the run goes on, and where and how it runs. Everything
#: else (model, data, split, loss, patches, optimiser, the folder of its runs) is the run's own, or
#: the run would not continue but become another one half-way (a changed model cannot even load
#: its weights).
RESUME_MAY_CHANGE = (
    "train.epochs",
    "train.time_budget_minutes",
    "train.device",
    "train.precision",
    "train.threads",
    "data.num_workers",
    "data.cache_dir",
)


def first_resume_change(saved: RunConfig, changed: RunConfig) -> Optional[tuple]:
    """``(key, old, new)`` of the first setting (dotted, sorted) that differs between a run's
    config and the one it would resume with, leaving out :data:`RESUME_MAY_CHANGE`; ``None``."""

    def flat(tree: dict, prefix: str = "") -> dict:
        out: dict = {}
        for key, value in tree.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict) and value:
                out.update(flat(value, f"{name}."))
            else:
                out[name] = value
        return out

    before, after = flat(saved.to_dict()), flat(changed.to_dict())
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key) and not key.startswith(RESUME_MAY_CHANGE):
            return key, before.get(key), after.get(key)
    return None


def end_reserve_fixed_s(
    budget_s: float, save_s: Optional[float] = None, postprocess: bool = True
) -> float:
    """The seconds a budget of ``budget_s`` keeps at its end besides its last validations: saving
    (three times ``save_s``, the last save timed, within ``_MIN_SAVE_RESERVE_S`` …
    ``_SAVE_RESERVE_S``; ``_SAVE_RESERVE_S`` before one was timed) and, with ``postprocess``, the
    post-processing search (``_POSTPROCESS_SEARCH_S``, or ``_POSTPROCESS_SEARCH_SHARE`` of a
    shorter budget). The planner counts the same seconds out of the budget it plans steps for."""
    save = (
        _SAVE_RESERVE_S
        if save_s is None
        else min(_SAVE_RESERVE_S, max(_MIN_SAVE_RESERVE_S, 3.0 * save_s))
    )
    search = min(_POSTPROCESS_SEARCH_S, _POSTPROCESS_SEARCH_SHARE * budget_s) if postprocess else 0
    return save + search


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns."""

    run_dir: Path
    epochs_completed: int
    best: Optional[dict]
    stop_reason: str
    history: list = field(default_factory=list)
    #: the :class:`~unetkit.evaluation.postprocess_choice.PostProcessingChoice` (``None``: not chosen)
    postprocess: Optional[object] = None


class Trainer:
    """Train a model as a :class:`RunConfig` says.

    Args:
        config: the run configuration (validated here; the trainer works on a copy).
        run_dir: the run folder (default ``<output_dir>/<model>-<timestamp>``).
        progress: show a per-epoch progress bar (main process only).
        callbacks: extra :class:`Callback` objects.
        plan: the planner's decisions behind ``config`` (``Plan.to_dict()``), kept with the run:
            written to ``plan.json`` in the run folder and into every checkpoint.

    The trainer changes nothing process-wide: torch's thread count (``train.threads``) and the
    allocator setting are made by the entry point, :func:`unetkit.runtime.configure_process`
    (``unetkit train`` calls it); the ``compute path:`` line reports the threads torch uses.

    Example:
        >>> cfg = RunConfig.from_dict({"data": {"train_dir": "data/train"}, "train": {"epochs": 5}})
        >>> result = Trainer(cfg).fit()  # doctest: +SKIP
    """

    def __init__(
        self,
        config: RunConfig,
        run_dir: Optional[Union[str, Path]] = None,
        progress: bool = True,
        callbacks: Optional[list[Callback]] = None,
        plan: Optional[dict] = None,
    ):
        if not isinstance(config, RunConfig):
            hint = " (build one with RunConfig.from_dict(d))" if isinstance(config, dict) else ""
            raise ConfigError(
                f"Trainer takes a RunConfig, got {type(config).__name__}{hint}; "
                "RunConfig.from_yaml(path) reads a config file"
            )
        self.plan = plan
        self.config = copy.deepcopy(
            config
        ).validate()  # its own copy: the budget schedule changes train.epochs
        self.run_dir = Path(run_dir) if run_dir is not None else None
        _check_writable(self.run_dir if self.run_dir is not None else Path(self.config.output_dir))
        self._created: list = []  # what this trainer made: removed if it fails before its first checkpoint
        self._saved = False  # a checkpoint was written: the run folder is worth keeping
        self.progress = progress
        self.extra_callbacks = list(callbacks or [])
        self._resume_from: Optional[Path] = None
        #: a resumed budget run takes a new budget (``--time-budget`` given again) instead of the
        #: rest of its own
        self.restart_budget = False
        #: seconds of the time budget, and of the budget schedule's training, the run's earlier
        #: sessions spent (a resumed run continues them: ``extra.clock`` of its checkpoint)
        self.budget_spent_s = 0.0
        self.schedule_spent_s = 0.0
        self.epoch = 0
        self.history: list[dict] = []
        self.best: Optional[dict] = None
        self.stop_reason = ""
        self.ending_error: Optional[BaseException] = None
        self._stop_requested: Optional[str] = None

    @classmethod
    def resume(
        cls, run_dir: Union[str, Path], overrides: Optional[dict] = None, progress: bool = True
    ) -> Trainer:
        """A trainer that continues the run in ``run_dir`` from ``checkpoints/last.pt``.

        ``overrides`` (``{"train.epochs": 100}``) may extend the run or change the device; the data
        and model are the run's own. A time budget run continues with what is left of its budget
        (the learning rate continues its decay on the clock); ``train.time_budget_minutes`` among
        ``overrides`` gives it a new budget instead (the rate starts again at its peak).
        """
        run_dir = Path(run_dir)
        cfg_path, last = run_dir / "config.yaml", run_dir / "checkpoints" / "last.pt"
        if not cfg_path.is_file():
            from ..run_folder import fold_index

            folds = [
                p.name
                for p in sorted(run_dir.glob("fold_*"), key=lambda p: fold_index(p) or 0)
                if fold_index(p) is not None and (p / "config.yaml").is_file()
            ]
            if folds:
                raise DataError(
                    f"is a --folds run: resume one fold at a time (--resume {run_dir / folds[0]}, "
                    f"… {folds[-1]})",
                    run_dir,
                )
            raise DataError("not a unetkit run folder (no config.yaml)", run_dir)
        if not last.is_file():
            raise DataError(
                "nothing to resume: no checkpoints/last.pt (the run stopped before its first epoch "
                "ended; start it again)",
                run_dir,
            )
        on_file = RunConfig.from_yaml(cfg_path)
        config = on_file.override(overrides) if overrides else on_file
        plan_path = run_dir / "plan.json"
        plan = json.loads(plan_path.read_text()) if plan_path.is_file() else None
        trainer = cls(config, run_dir, progress=progress, plan=plan)
        trainer._resume_from = last
        trainer._config_on_file = on_file  # checked against the checkpoint's (setup)
        trainer.restart_budget = bool(overrides and "train.time_budget_minutes" in overrides)
        return trainer

    def request_stop(self, reason: str = "stopped on request") -> None:
        """End the run after the current batch, as a time budget does: that epoch is validated
        and saved, so the model trained so far is kept. Safe to call from another thread (a
        GUI's stop button)."""
        self._stop_requested = str(reason)

    # ------------------------------------------------------------------------------------ setup
    def setup(self) -> None:
        cfg = self.config
        self.t_start = time.monotonic()
        self.device = runtime.resolve_device(cfg.train.device)
        self.dist = dist_utils.init_distributed(self.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        torch.manual_seed(cfg.train.seed)
        np.random.seed(cfg.train.seed)
        ckpt = load_checkpoint(self._resume_from) if self._resume_from else None
        if ckpt is not None:
            self._check_config_file(ckpt)
        # fine-tuning: the source is read first (a bad path fails before any data); a resumed run
        # continues from its own weights and keeps the record of where they started
        source = read_source(cfg.train.init_from) if cfg.train.init_from and ckpt is None else None
        self.init_record = (ckpt.get("extra") or {}).get("init_from") if ckpt else None

        if cfg.data.train_dir is None:
            raise ConfigError("no training data: give DATA_DIR (data.train_dir)")
        weight_map = (
            {
                "w0": cfg.data.w0,
                "sigma": cfg.data.sigma,
                "class_weights": "balanced" if cfg.data.class_balance else None,
            }
            if cfg.data.weight_map
            else None
        )
        self.data = prepare_data(
            cfg.data.train_dir,
            cfg.data.val_dir,
            val_fraction=cfg.data.val_fraction,
            seed=cfg.train.seed,
            mask_suffix=cfg.data.mask_suffix,
            mask_kind=cfg.data.mask_kind,
            ignore_value=cfg.data.ignore_value,
            normalization=cfg.data.normalization,
            channel_names=cfg.data.channel_names,
            weight_map=weight_map,
            num_folds=cfg.data.num_folds,
            scale=cfg.data.scale,
            target_spacing=cfg.data.target_spacing,
            orientation=cfg.data.orientation,
            separate_objects=cfg.data.separate_objects,
            fold=cfg.data.fold,
            cache_dir=cfg.data.cache_dir,
            label_map=LabelMap.from_dict(ckpt["label_map"]) if ckpt else None,
            normalizer=Normalizer.from_dict(ckpt["normalization"]) if ckpt else None,
            # a resumed run keeps its own split, whatever was added to the folder since
            saved_splits=self._saved_splits() if ckpt else None,
        )
        self._check_select_metric()
        self.judged_classes = self._validation_classes()
        self.model = self.build_model()
        if source is not None:
            self.init_weights(source)
        self.setup_patches()
        self.setup_optimisation()
        if ckpt is not None:
            self.load_state(ckpt)
            self.resume_notes = self._check_best_checkpoint() + self._resume_budget(ckpt)
        # everything was read and built: only now the run folder is made (a bad input leaves nothing behind)
        self._make_run_dir()
        if self.dist.is_main:
            save_splits(
                self.run_dir / "splits.json",
                self.data.folds if self.data.folds is not None else self.data.splits,
            )
        if self.dist.enabled:
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        else:
            self.ddp = self.model
        self.callbacks: list[Callback] = []
        if self.dist.is_main:
            # the epoch's lines first, the slow pictures after: a Ctrl-C while curves.png is
            # drawn must not leave a saved epoch missing from the console, the log and the CSV
            self.callbacks = [
                CSVLogger(self.run_dir / "metrics.csv"),
                ConsoleSummary(),
                _LogFile(self.run_dir / "train.log"),
                PlotCallback(self.run_dir / "curves.png"),
                TensorBoardLogger(self.run_dir / "tensorboard"),
                *self.extra_callbacks,
            ]
            self.config.to_yaml(self.run_dir / "config.yaml")
            if self.plan is not None:
                atomic_write_text(
                    self.run_dir / "plan.json",
                    json.dumps(self.plan, indent=2, default=json_default),
                )
        if cfg.train.scheduler == "budget":
            # the schedule on the clock; on every rank (rank 0's clock decides); first, so that
            # the epoch line and the logs already see the epoch count it sets from the speed
            self.callbacks.insert(
                0, BudgetSchedule(cfg.train.time_budget_minutes * 60, lr=cfg.train.lr)
            )

    def _saved_splits(self):
        """The split this run saved (``splits.json``), or ``None`` (a run folder from before)."""
        from ..data.splits import load_splits

        path = Path(self.run_dir) / "splits.json" if self.run_dir is not None else None
        return load_splits(path) if path is not None and path.is_file() else None

    def _make_run_dir(self) -> None:
        made = None  # the default-named folder this process created for itself
        missing: list = []  # folders above the run folder that did not exist (deepest first)
        if self.run_dir is None:
            output_dir = Path(self.config.output_dir)
            name = run_name(self.config)
            if self._resume_from is None:  # every rank: all refuse alike
                _check_not_in_data(output_dir / name, f"--output {output_dir}", self.config)
            if self.dist.is_main:  # a name of its own: runs started in one second (job arrays)
                made, missing = _claim_run_name(output_dir, name)
                name = made or name  # not made: the checks below say why
            if self.dist.enabled:  # every rank must use rank 0's folder
                box = [name]
                torch.distributed.broadcast_object_list(box, src=0)
                name = box[0]
            self.run_dir = output_dir / name
        elif self._resume_from is None:
            _check_not_in_data(self.run_dir, str(self.run_dir), self.config)
        if self.dist.is_main:
            _check_writable(self.run_dir)
            existed = made is None and self.run_dir.exists()
            if made is None:
                missing = [p for p in self.run_dir.parents if not p.exists()]
            before = set(self.run_dir.iterdir()) if existed else set()
            try:
                (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DataError(
                    f"cannot make the run folder: {exc.strerror or exc}", self.run_dir
                ) from None
            # a new folder goes as a whole, and the folders made above it only while empty (a run
            # started beside it may be in them); in one that existed (--run-dir, a resumed run)
            # only the new entries
            self._created = [_NewEntries(self.run_dir, before)] if existed else [self.run_dir]
            self._empty_parents = missing
            remove_stale_temp_files(self.run_dir / "checkpoints")
            remove_stale_temp_files(self.run_dir)
        dist_utils.barrier(self.dist)

    def build_model(self) -> torch.nn.Module:
        cfg = self.config
        options = dict(cfg.model.options)
        options.setdefault("in_channels", self.data.in_channels)
        options.setdefault("num_classes", self.data.label_map.num_classes)
        options.setdefault("spatial_dims", self.data.spatial_dims)
        if options["num_classes"] == 1 and self.data.label_map.num_classes != 2:
            raise ConfigError(
                f"num_classes=1 (one sigmoid channel) needs a binary mask; the masks have "
                f"{self.data.label_map.num_classes} classes"
            )
        if options["in_channels"] != self.data.in_channels:
            first = self.data.train[0].meta.path or self.data.train[0].case_id
            raise ConfigError(
                f"the model expects {options['in_channels']} input channels but the images have "
                f"{self.data.in_channels} (e.g. {first}); set model.options.in_channels to "
                f"{self.data.in_channels} or leave it unset (taken from the images)"
            )
        try:
            model = create_model(cfg.model.name, **options)
        except (
            TypeError,
            ValueError,
        ) as exc:  # a ConfigError too: say which model and data it was built for
            raise ConfigError(
                f"model {cfg.model.name!r} for {self.data.in_channels}-channel {self.data.spatial_dims}D "
                f"images with {options['num_classes']} classes: {exc}"
            ) from None
        model.outputs = "all"
        for module in model.inactive_modules():  # unused heads: no gradients, no DDP bookkeeping
            for p in module.parameters():
                p.requires_grad_(False)
        model.to(self.device)
        self.autocast_dtype = runtime.training_precision(
            cfg.train.precision, self.device, model.spatial_dims
        )
        self.channels_last = runtime.use_channels_last(
            model, self.device, cfg.train.channels_last, dtype=self.autocast_dtype, training=True
        )
        self.memory_format = runtime.memory_format(model.spatial_dims, self.channels_last)
        return model.to(memory_format=self.memory_format)

    def init_weights(self, source: dict) -> None:
        """Fine-tuning: the tensors of ``train.init_from`` that fit the model; an input conv or
        output heads that the new data's channels or classes change stay new (one line says which).
        See :mod:`unetkit.training.init_from`."""
        cfg = self.config
        self.init_record, line = load_matching_weights(
            self.model, source, cfg.train.init_from, cfg.model.name, cfg.model.options
        )
        if self.dist.is_main:
            print(line, flush=True)

    def setup_patches(self) -> None:
        cfg, dims = self.config, self.data.spatial_dims
        smallest = np.min([c.image.shape[1:] for c in self.data.train], axis=0)
        if cfg.data.patch_size is None:
            requested = [min(int(s), DEFAULT_PATCH[dims]) for s in smallest]
        else:
            requested = list(cfg.data.patch_size) * (dims if len(cfg.data.patch_size) == 1 else 1)
            if len(requested) != dims:
                raise ConfigError(f"data.patch_size has {len(requested)} values for {dims}D images")
        self.input_size, self.label_size = patch_geometry(self.model, requested)
        sampler = PatchSampler(
            self.label_size,
            self.input_size,
            fg_fraction=cfg.data.fg_fraction,
            fg_classes=cfg.data.fg_classes,
        )
        try:
            augmentation = (
                build_augmentation(cfg.data.augmentation, dims)
                if cfg.data.augmentation is not None
                else None
            )
        except ConfigError as exc:
            raise ConfigError(f"data.augmentation for {dims}D images: {exc}") from None
        self.dataset = PatchDataset(
            self.data.train,
            sampler,
            augmentation,
            length=cfg.train.iters_per_epoch * cfg.train.batch_size,
            seed=cfg.train.seed,
        )
        batches = dist_utils.RankBatchSampler(
            cfg.train.iters_per_epoch, cfg.train.batch_size, self.dist
        )
        self.loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=batches,
            num_workers=cfg.data.num_workers,
            pin_memory=self.device.type == "cuda",
        )

    def setup_optimisation(self) -> None:
        from .optim import build_optimizer, build_scheduler

        cfg = self.config
        options = dict(cfg.loss.options)
        if self.data.label_map.ignore is not None:  # unlabelled pixels count nowhere
            options["ignore_index"] = IGNORE_INDEX
            if getattr(self.model, "cgm", False):
                # the CGM learns "this patch holds foreground" from the whole mask, and gates the
                # prediction with it: a patch whose objects are unlabelled would teach it "none"
                raise ConfigError(
                    f"model {cfg.model.name!r} has UNet 3+'s classification-guided module, which "
                    "needs fully labelled masks, but the masks leave pixels unlabelled (ignore "
                    f"value {self.data.label_map.ignore}); use a model without it (unet3plus-ds)"
                )
        base = create_loss(cfg.loss.name, **options)
        self.loss_fn = DeepSupervisionLoss(
            base, weights=cfg.loss.deep_supervision_weights, cgm_weight=cfg.loss.cgm_weight
        )
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(cfg.train, params)
        self.scheduler = build_scheduler(cfg.train, self.optimizer)
        self.scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype == torch.float16 else None

    def load_state(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt.get("scheduler") is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
            _sync_lr_to_schedule(self.scheduler, self.config.train.epochs)
        if self.scaler is not None and ckpt.get("scaler") is not None:
            self.scaler.load_state_dict(ckpt["scaler"])
        if ckpt.get("rng") is not None:
            set_rng_state(ckpt["rng"])
        self.epoch = int(ckpt["epoch"])
        self.history = list(ckpt.get("history", []))
        self.best = ckpt.get("extra", {}).get("best")
        self.bad_validations = int(ckpt.get("extra", {}).get("bad_validations", 0))

    # -------------------------------------------------------------------------------------- loop
    def fit(self) -> TrainResult:
        """Run (or continue) training until the epochs, the time budget or early stopping end it.

        When it fails before its first checkpoint, the run folder it made is removed again (a
        folder that existed before, such as a resumed run, is never removed). A new run refuses a
        ``run_dir`` that holds a trained run (:func:`~unetkit.run_folder.check_new_run_dir`):
        :meth:`resume` continues one."""
        if self._resume_from is None and self.run_dir is not None and not self._saved:
            check_new_run_dir(self.run_dir, python=True)
        try:
            return self._fit()
        except BaseException:
            if self._saved:  # this run saved an epoch: best.pt may have moved before the stop
                self._refresh_fold_record("interrupted")
            self._discard_run_dir()
            raise

    def _fit(self) -> TrainResult:
        self.setup()
        self.bad_validations = getattr(self, "bad_validations", 0)
        for cb in self.callbacks:
            cb.on_train_start(self)
        if self.dist.is_main:
            self._announce()
        try:
            while self.epoch < self.config.train.epochs and not self.stop_reason:
                self.epoch += 1
                t0 = time.monotonic()
                train_loss, images, train_time = self.train_epoch()
                record = {"epoch": self.epoch, "train_loss": train_loss}
                if (
                    self.epoch % self.config.train.val_every == 0
                    or self.epoch == self.config.train.epochs
                    or self.stop_reason
                ):
                    record.update(self.validate())
                record["lr"] = self.optimizer.param_groups[0]["lr"]
                record["epoch_time_s"] = time.monotonic() - t0
                record["images_per_s"] = images / max(train_time, 1e-9)
                self.end_epoch(record)
            if self.dist.is_main:
                self._best_from_last()
            choice = self.choose_postprocessing() if self.dist.is_main else None
            dist_utils.barrier(self.dist)
        except BaseException as exc:  # what ended the run, for train.log (then raised on)
            self.ending_error = exc
            raise
        finally:
            for cb in self.callbacks:
                cb.on_train_end(self, self.history)
            dist_utils.shutdown_distributed()
        self.stop_reason = self.stop_reason or self._end_without_a_stop()
        self._refresh_fold_record(self.stop_reason)
        return TrainResult(
            self.run_dir, self.epoch, self.best, self.stop_reason, self.history, choice
        )

    def train_epoch(self) -> tuple[float, int, float]:
        """One epoch of ``iters_per_epoch`` batches; returns the mean loss, the images seen and the
        seconds spent."""
        from tqdm import tqdm

        self.ddp.train()
        self.dataset.set_epoch(self.epoch)
        total, count, images = 0.0, 0, 0
        t0 = time.monotonic()
        bar = tqdm(
            self.loader,
            total=len(self.loader),
            desc=f"epoch {self.epoch}",
            leave=False,
            dynamic_ncols=True,
            disable=progress_bars_off(self.progress and self.dist.is_main),
        )
        for batch in bar:
            loss = self.train_step(batch)
            total, count = total + loss, count + 1
            images += batch["image"].shape[0] * self.dist.world_size
            bar.set_postfix(
                loss=f"{total / count:.4f}", img_s=f"{images / (time.monotonic() - t0):.1f}"
            )
            for cb in self.callbacks:
                cb.on_batch_end(self, count, total / count)
            requested = self._stop_requested  # request_stop, from another thread
            if dist_utils.broadcast_flag(requested is not None or self._out_of_time(), self.dist):
                self.stop_reason = requested or "time budget reached"
                break
        bar.close()
        return (
            dist_utils.mean_across_ranks(total / max(count, 1), self.dist),
            images,
            time.monotonic() - t0,
        )

    def _end_without_a_stop(self) -> str:
        """Why the epochs ended when nothing stopped them: the budget schedule leaves no time for
        another epoch before its configured count (it lowers ``train.epochs``), or that count
        is done."""
        budget = next((cb for cb in self.callbacks if isinstance(cb, BudgetSchedule)), None)
        if budget is not None and self.epoch < getattr(budget, "max_epochs", self.epoch):
            return "time budget reached"
        return "completed"

    def train_step(self, batch: dict) -> float:
        """Forward, loss, backward and optimiser step on one batch; returns the loss."""
        x = (
            batch["image"]
            .to(self.device, non_blocking=True)
            .contiguous(memory_format=self.memory_format)
        )
        y = batch["mask"].to(self.device, non_blocking=True)
        w = batch["weight"].to(self.device, non_blocking=True) if "weight" in batch else None
        loss = optimisation_step(
            self.ddp,
            self.loss_fn,
            self.optimizer,
            x,
            y,
            w,
            self.device,
            self.autocast_dtype,
            self.config.train.grad_clip,
            self.scaler,
            params=self.model.parameters(),
        )
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"loss became {loss} at epoch {self.epoch}; lower the learning rate "
                f"(train.lr = {self.config.train.lr}) or use precision fp32"
            )
        return loss

    def validate(self) -> dict:
        """Whole-image prediction of the validation cases (shared across ranks): the loss and the
        per-class Dice / IoU, averaged over cases with undefined scores left out (see EMPTY_POLICY).

        The predictor plans its tiles as ``predict`` does (not the training patch: fewer, larger
        tiles), so validation scores what ``predict`` writes."""
        if not self.data.val:
            return {}
        t0 = time.monotonic()
        k = self.data.label_map.num_classes
        predictor = self._validation_predictor(self.model)
        sums = torch.zeros(4, k, dtype=torch.float64)  # dice sum, dice count, iou sum, iou count
        cm_total = np.zeros((k, k), dtype=np.int64)
        loss_sum = torch.zeros(2, dtype=torch.float64)
        for case in self.data.val[self.dist.rank :: self.dist.world_size]:
            logits = torch.from_numpy(predictor.predict_logits(case.image, spacing=case.spacing))
            loss_sum += torch.tensor(
                [float(self.loss_fn(logits[None], torch.from_numpy(case.mask)[None])), 1.0],
                dtype=torch.float64,
            )
            labelled = case.mask >= 0 if self.data.label_map.ignore is not None else None
            cm = confusion_matrix(labels_from_logits(logits), case.mask, k, mask=labelled)
            cm_total += cm
            scores = overlap_scores(cm)
            for row, key in ((0, "dice"), (2, "iou")):
                vals = torch.from_numpy(scores[key])
                sums[row] += torch.nan_to_num(vals, nan=0.0)
                sums[row + 1] += (~torch.isnan(vals)).double()
        self.model.train()
        if self.dist.enabled:
            cm_t = torch.from_numpy(cm_total)
            for t in (sums, cm_t, loss_sum):
                torch.distributed.all_reduce(t)
            cm_total = cm_t.numpy()
        per_class_dice = (sums[0] / sums[1]).numpy()
        per_class_iou = (sums[2] / sums[3]).numpy()
        fg = self.judged_classes if k > 1 else slice(None)
        record = {
            "val_loss": float(loss_sum[0] / max(loss_sum[1], 1)),
            "val_dice": _nanmean(per_class_dice[fg]),
            "val_iou": _nanmean(per_class_iou[fg]),
            "val_pixel_error": overlap_scores(cm_total)["pixel_error"],
        }
        for c in range(k):
            record[f"val_dice_c{c}"] = float(per_class_dice[c])
        self.last_val_time = time.monotonic() - t0
        return record

    def end_epoch(self, record: dict) -> None:
        """Scheduler, history, checkpoints, callbacks and the stopping rules."""
        from .optim import step_scheduler

        cfg = self.config.train
        name = cfg.select_metric
        metric = record.get(name)
        if "val_dice" in record and name not in record:
            raise ConfigError(
                f"train.select_metric {name!r} is not among the validation values "
                f"{', '.join(k for k in record if k.startswith('val_'))}"
            )
        valid = metric is not None and not math.isnan(metric)
        sign = -1.0 if name.endswith(("loss", "error")) else 1.0
        step_scheduler(self.scheduler, sign * metric if valid else None)
        self.history.append(record)
        improved = valid and (self.best is None or sign * metric > sign * self.best["value"])
        if improved:
            self.best = {
                "epoch": self.epoch,
                "metric": name,
                "value": metric,
                "val_dice": record.get("val_dice"),
            }
            self.bad_validations = 0
        elif metric is not None:
            self.bad_validations += 1
        if cfg.early_stopping is not None and self.bad_validations >= cfg.early_stopping:
            self.stop_reason = f"early stopping: no improvement in {cfg.early_stopping} validations"
        if self.dist.is_main:
            # best.pt first: a crash between the two leaves last.pt at the epoch before, which a
            # resumed run trains again (and best.pt newer than last.pt's record, which it notes)
            if improved or (self.best is None and metric is None):
                self.save("best.pt", record)
            self.save("last.pt", record)
        for cb in self.callbacks:  # other ranks hold only the schedule callbacks (see setup)
            cb.on_epoch_end(self, self.history)
        dist_utils.barrier(self.dist)

    def choose_postprocessing(self):
        """The post-processing of ``best.pt`` (main process, after the last epoch; ``train.postprocess:
        auto`` and validation images): the validation images predicted once more with the best
        weights, the candidate clean-ups tried on them
        (:func:`~unetkit.evaluation.postprocess_choice.choose_postprocessing`, judged on the Dice
        of ``train.select_metric``, and on object F1 for the split and, where the truth has
        instance ids, the removal of small objects), the choice written to ``postprocess.json``
        and into ``best.pt`` (``extra["postprocess"]``), one line printed per kept step. Under a time budget it is skipped,
        with a printed reason, when one validation no longer fits, and stops trying candidates when
        the budget is up. Returns the choice, or ``None``."""
        from ..evaluation.postprocess_choice import choose_postprocessing

        best_path = self.run_dir / "checkpoints" / "best.pt"
        if not self._postprocess_enabled() or not best_path.is_file():
            return None
        left, val_time = self._seconds_left(), getattr(self, "last_val_time", 0.0)
        save = end_reserve_fixed_s(0.0, getattr(self, "last_save_time", None), postprocess=False)
        if left < val_time + save:
            why = (
                f"{max(left, 0):.0f} s of the time budget left, and one validation takes "
                f"{val_time:.0f} s beside the {save:.0f} s kept to save best.pt"
            )
            earlier = self._carried_choice(best_path)
            if earlier is not None:
                print(
                    f"post-processing: not chosen again ({why}); best.pt keeps the one chosen "
                    f"for it before: {earlier}",
                    flush=True,
                )
                return None
            (self.run_dir / "postprocess.json").unlink(missing_ok=True)  # an older best.pt's
            print(f"post-processing: not chosen, {why} (predict applies none)", flush=True)
            return None
        ckpt = load_checkpoint(best_path)
        model = copy.deepcopy(self.model)
        model.load_state_dict(ckpt["state_dict"])
        predictor = self._validation_predictor(model)
        val = self.data.val
        choice = choose_postprocessing(
            [predictor.predict(case.image, spacing=case.spacing) for case in val],
            [case.mask for case in val],
            self.data.label_map.num_classes,
            select_metric=self.config.train.select_metric,
            truth_instances=[case.instances for case in val],
            out_of_time=lambda: self._seconds_left() < save,
            spacings=[case.spacing for case in val],
            unit=self.spacing_unit,
        )
        ckpt.setdefault("extra", {})["postprocess"] = choice.postprocessing.to_dict()
        write_checkpoint(best_path, ckpt)
        record = {
            "checkpoint": "checkpoints/best.pt",
            "epoch": int(ckpt["epoch"]),
            **choice.to_dict(),
        }
        atomic_write_text(self.run_dir / "postprocess.json", json.dumps(jsonable(record), indent=2))
        for line in choice.describe():
            print(line, flush=True)
        return choice

    def _refresh_fold_record(self, reason: str) -> None:
        """A fold of a finished ``--folds`` run trained on (resumed): its row of the ensemble's
        ``ensemble.json`` follows its ``best.pt`` (:func:`~unetkit.run_folder.refresh_fold`),
        also when the run is stopped (the epochs saved count)."""
        if self._resume_from is None or not self.dist.is_main or self.run_dir is None:
            return
        done = int(self.history[-1]["epoch"]) if self.history else self.epoch
        try:
            if refresh_fold(self.run_dir, self.best, done, reason):
                print(f"updated {self.run_dir.parent / ENSEMBLE_FILE} (fold record)", flush=True)
        except OSError:  # a record that cannot be written must not hide why the run ended
            pass

    def _carried_choice(self, best_path: Path) -> Optional[str]:
        """The post-processing ``best.pt`` carries from an earlier choice (a resumed run whose
        best epoch did not change), in words, else ``None``: what predict applies."""
        from ..inference.postprocess import PostProcessing

        extra = load_checkpoint(best_path).get("extra") or {}
        carried = PostProcessing.from_dict(extra.get("postprocess"))
        if not carried.steps:
            return None
        return carried.describe(self.spacing_unit, self.data.spatial_dims)

    @property
    def spacing_unit(self) -> Optional[str]:
        """The unit the training files state their voxel size in: the plan's fingerprint's, else
        the one unit the cases state (``None``: none, or several). A post-processing size kept
        as a volume is in it, so predict converts an image's voxel size to it: without it, a
        ``--no-plan`` model of µm images read a mm image's sizes as µm."""
        unit = ((self.plan or {}).get("fingerprint") or {}).get("spacing_unit")
        if unit:
            return unit
        units = {
            getattr(case.meta, "spacing_unit", None)
            for case in (*self.data.train, *self.data.val)
            if getattr(case.meta, "spacing", None) is not None
        }
        return units.pop() if len(units) == 1 and None not in units else None

    def save(self, name: str, record: dict) -> Path:
        started = time.monotonic()
        path = self._save(name, record)
        self._saved = True  # only once written: a failed first save leaves no run folder behind
        self.last_save_time = time.monotonic() - started  # the end of a budget keeps 3× this
        return path

    def _save(self, name: str, record: dict) -> Path:
        return save_checkpoint(
            self.run_dir / "checkpoints" / name,
            self.model,
            epoch=self.epoch,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            scaler=self.scaler,
            config=self.config.to_dict(),
            label_map=self.data.label_map.to_dict(),
            normalization=self.data.normalizer.to_dict(),
            patch_size=self.input_size,
            metrics=record,
            history=self.history,
            extra={
                "best": self.best,
                "bad_validations": self.bad_validations,
                "label_size": self.label_size,
                "empty_policy": EMPTY_POLICY,
                "plan": self.plan,
                "init_from": self.init_record,
                **({"spacing_unit": unit} if (unit := self.spacing_unit) else {}),
                **({"clock": clock} if (clock := self._clock_record()) else {}),
            },
        )

    # ----------------------------------------------------------------------------------- helpers
    def _validation_predictor(self, model: torch.nn.Module) -> Predictor:
        """How validation predicts whole images (the post-processing choice predicts the same way)."""
        return Predictor(
            model,
            device=self.device,
            precision=self.config.train.precision,
            channels_last=self.channels_last,
            fast="eager",
            scale=self.config.data.scale,
            target_spacing=self.config.data.target_spacing,
        )

    def _check_best_checkpoint(self) -> list[str]:
        """A resumed run's ``best.pt`` is the best epoch its ``last.pt`` records; where it is
        missing, unreadable or of another epoch (deleted, damaged, or a crash between writing the
        two) that record is dropped, so the best of the epochs from here on is written as
        ``best.pt`` (the run would otherwise end without one, or with a stale one). Returns the
        line saying so, or nothing."""
        best = self.best
        if not best or best.get("epoch") is None:
            return []
        path = self._resume_from.parent / "best.pt"
        problem = None
        if not path.is_file():
            problem = "is missing"
        else:
            try:
                epoch = int(load_checkpoint(path)["epoch"])
            except (DataError, KeyError, TypeError, ValueError):
                problem = "cannot be read"
            else:
                problem = None if epoch == best["epoch"] else f"is of epoch {epoch}"
        if problem is None:
            return []
        if best["epoch"] == self.epoch:  # last.pt holds the best epoch's weights: the same model
            write_checkpoint(path, load_checkpoint(self._resume_from))
            return [
                f"note: checkpoints/best.pt {problem}: written again from last.pt, which holds "
                f"the same epoch ({self.epoch}, {best['metric']} {best['value']:.4f})"
            ]
        self.best, self.bad_validations = None, 0
        return [
            f"note: checkpoints/best.pt {problem}, not the best epoch this run recorded (epoch "
            f"{best['epoch']}, {best['metric']} {best['value']:.4f}): the best of the epochs from "
            "here on becomes best.pt"
        ]

    def _best_from_last(self) -> None:
        """After the last epoch: a run without ``best.pt`` (a resumed run whose best was lost and
        that trained no epoch since) gets ``last.pt`` as it, said so, so that predict and the
        post-processing have a model."""
        best, last = (self.run_dir / "checkpoints" / n for n in ("best.pt", "last.pt"))
        if best.is_file() or not last.is_file():
            return
        ckpt = load_checkpoint(last)
        record = (ckpt.get("history") or [{}])[-1]
        name = self.config.train.select_metric
        value = record.get(name)
        if value is not None and not math.isnan(value):  # both files say best.pt is this epoch
            self.best = {
                "epoch": int(ckpt["epoch"]),
                "metric": name,
                "value": value,
                "val_dice": record.get("val_dice"),
            }
            ckpt.setdefault("extra", {})["best"] = self.best
            write_checkpoint(last, ckpt)
        write_checkpoint(best, ckpt)
        print(f"note: no best.pt: {best} is a copy of last.pt (epoch {ckpt['epoch']})", flush=True)

    def _check_config_file(self, ckpt: dict) -> None:
        """A resumed run's ``config.yaml`` on disk is the one its checkpoint was trained with, but
        for :data:`RESUME_MAY_CHANGE`: an edited file would load weights into another model (a
        traceback) or claim settings that never ran (a new rate written, the old one used)."""
        try:
            saved = RunConfig.from_dict(ckpt.get("config") or {})
        except ConfigError:
            return  # a checkpoint of another version: its own loading says what is wrong
        # the file as it is on disk: what a caller overrides on purpose (``resume(overrides=)``,
        # the command's flags, which it checks itself) is no edit of it
        change = first_resume_change(saved, getattr(self, "_config_on_file", None) or self.config)
        if change is not None:
            key, old, new = change
            path = self._resume_from.parent.parent / "config.yaml"
            raise ConfigError(
                f"{path}: {key} is {new!r} here but {old!r} in {self._resume_from.name}, which "
                "the run continues from; set it back, or start a new run from its weights "
                f"(--init-from {self._resume_from})"
            )

    def _validation_classes(self) -> list[int]:
        """The foreground classes ``val_dice`` averages: those some validation mask holds
        (:func:`~unetkit.evaluation.postprocess_choice.held_classes`). A class in no validation
        image scores 0 whenever the net predicts it, so with it the run would keep the epoch that
        never predicts that class; its own ``val_dice_c<k>`` is still recorded."""
        from ..evaluation.postprocess_choice import held_classes

        k = self.data.label_map.num_classes
        return held_classes([case.mask for case in self.data.val], range(1, k)) if k > 1 else [0]

    def unlabelled_hint(self) -> Optional[tuple[int, str]]:
        """The class whose mask value looks like unlabelled pixels trained as a class (a
        forgotten ``--ignore-value``: :func:`~unetkit.data.labels.forgotten_ignore_value`), with
        the warning that names the flag; ``None`` where no value does."""
        if not hasattr(self, "_unlabelled_hint"):
            self._unlabelled_hint = self._find_unlabelled_hint()
        return self._unlabelled_hint

    def _find_unlabelled_hint(self) -> Optional[tuple[int, str]]:
        lm = self.data.label_map
        k = lm.num_classes
        if lm.ignore is not None or lm.kind != "labels" or k < 3:
            return None
        from ..data.labels import forgotten_ignore_value

        counts = np.zeros(k, np.int64)
        for case in self.data.train:
            if case.mask is not None:
                counts += np.bincount(case.mask.ravel(), minlength=k)[:k]
        if not counts.sum():
            return None
        held = {
            int(c) for case in self.data.val if case.mask is not None for c in np.unique(case.mask)
        }
        found = forgotten_ignore_value(
            {lm.values[c]: counts[c] / counts.sum() for c in range(k)},
            {lm.values[c] for c in held if 0 <= c < k} if self.data.val else None,
            where="the training masks' pixels",
        )
        if found is None:
            return None
        return lm.values.index(
            found.value
        ), f"{'warning' if found.strong else 'note'}: {found.note}"

    def unjudged_note(self) -> Optional[str]:
        """A line naming the foreground classes no validation image holds (or saying that the
        validation masks label no pixel at all), or ``None``."""
        k = self.data.label_map.num_classes
        if not self.data.val or k < 2:
            return None
        if self.data.label_map.ignore is not None and not any(
            (case.mask >= 0).any() for case in self.data.val
        ):
            return (
                f"note: the validation masks label no pixel (all hold the unlabelled value "
                f"{self.data.label_map.ignore}): validation cannot score the net, so the best "
                "checkpoint is the last one and no post-processing is kept; label some pixels of "
                "the validation images"
            )
        forgotten = self.unlabelled_hint()
        out = [
            c
            for c in range(1, k)
            if c not in self.judged_classes and (forgotten is None or c != forgotten[0])
        ]  # the class a forgotten --ignore-value explains has its own line
        if not out or len(out) == k - 1:
            return None
        values = self.data.label_map.values
        named = ", ".join(f"{c} (mask value {values[c]})" for c in out)
        return (
            f"note: class{'es' if len(out) > 1 else ''} {named} in no validation image: val dice "
            "leaves it out, so the best checkpoint and the post-processing are chosen without "
            "judging it; a --val folder whose masks hold it lets the run judge it"
        )

    def _check_select_metric(self) -> None:
        """``train.select_metric`` naming one class (``val_dice_c<k>``) needs class ``k`` in the label map."""
        name, k = self.config.train.select_metric, self.data.label_map.num_classes
        m = re.fullmatch(r"val_dice_c(\d+)", name)
        if m and int(m[1]) >= k:
            raise ConfigError(
                f"train.select_metric {name!r} names class {m[1]}, but the masks have {k} classes "
                f"(val_dice_c0 … val_dice_c{k - 1})"
            )

    def _discard_run_dir(self) -> None:
        """Remove what this trainer made in the file system (the run folder, or the new entries of a run
        folder that existed before) when no checkpoint was written (main process only)."""
        created, self._created = self._created, []
        if self._saved:
            return
        for item in created:
            if isinstance(item, _NewEntries):
                for path in set(item.folder.iterdir()) - item.before:
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
            else:
                shutil.rmtree(item, ignore_errors=True)
        for parent in getattr(self, "_empty_parents", []):  # deepest first, only while empty
            try:
                parent.rmdir()
            except OSError:
                break

    def _seconds_left(self) -> float:
        """Seconds of ``train.time_budget_minutes`` left (infinite without a budget), the earlier
        sessions of a resumed run counted (:attr:`budget_spent_s`)."""
        budget = self.config.train.time_budget_minutes
        if budget is None:
            return math.inf
        return budget * 60 - self.budget_spent_s - (time.monotonic() - self.t_start)

    def _clock_record(self) -> Optional[dict]:
        """What a checkpoint keeps of the time budget, so that a resumed run continues it."""
        budget = self.config.train.time_budget_minutes
        if budget is None or not hasattr(self, "t_start"):
            return None
        schedule = next((cb for cb in self.callbacks if isinstance(cb, BudgetSchedule)), None)
        return {
            "budget_minutes": budget,
            "spent_s": round(self.budget_spent_s + time.monotonic() - self.t_start, 3),
            **({"schedule_s": round(schedule.trained_s(), 3)} if schedule is not None else {}),
        }

    def _resume_budget(self, ckpt: dict) -> list[str]:
        """A resumed budget run continues the budget its checkpoint records (the note that says
        so), or takes the new one it was given; one it has spent is refused."""
        budget = self.config.train.time_budget_minutes
        clock = (ckpt.get("extra") or {}).get("clock") or {}
        if budget is None:
            return []
        if not clock:  # saved by a version that kept no record of the budget
            return [
                f"note: {self._resume_from.name} records no time spent (an older checkpoint): "
                f"the run gets a new {budget:g}-minute budget, the learning rate from its peak"
            ]
        if self.restart_budget or clock.get("budget_minutes") != budget:
            return [
                f"note: a new {budget:g}-minute time budget (given again): the learning rate "
                "starts again at its peak"
            ]
        self.budget_spent_s = float(clock.get("spent_s", 0.0))
        self.schedule_spent_s = float(clock.get("schedule_s", 0.0))
        left = budget * 60 - self.budget_spent_s
        run_dir = self._resume_from.parent.parent
        # a run its budget ended kept the rest of it for its end (last validation, saving)
        ending = last_ending(run_dir, session=True) or ""
        if left <= 0 or ending.startswith("ended: time budget reached"):
            raise ConfigError(
                f"{run_dir}: the run has spent its {budget:g}-minute time budget; --time-budget M "
                "trains it M minutes more"
            )
        return [
            f"note: {left / 60:.1f} of the {budget:g}-minute time budget left, the learning rate "
            "continuing its decay (--time-budget M: M minutes more, from the peak rate)"
        ]

    def _postprocess_enabled(self) -> bool:
        return self.config.train.postprocess == "auto" and bool(self.data.val)

    def end_reserve_s(self) -> float:
        """Seconds a time budget keeps for the end of the run: the last validation and saving, and
        choosing the post-processing (one more validation pass, and time for the candidates,
        which are tried while time is left; :func:`end_reserve_fixed_s`). Training stops, and the
        budget schedule stops starting epochs, where this reserve begins."""
        val_time = getattr(self, "last_val_time", 0.0)
        post = self._postprocess_enabled()
        budget_s = (self.config.train.time_budget_minutes or 0.0) * 60
        fixed = end_reserve_fixed_s(budget_s, getattr(self, "last_save_time", None), post)
        return val_time * (2 if post else 1) + fixed

    def _out_of_time(self) -> bool:
        """Whether training must stop now to leave :meth:`end_reserve_s` of the time budget."""
        if self.config.train.time_budget_minutes is None:
            return False
        return self._seconds_left() <= self.end_reserve_s()

    def _announce(self) -> None:
        for line in self.header_lines():
            print(line, flush=True)

    def header_lines(self) -> list[str]:
        """What a run says when it starts (the console's first lines, and ``train.log``'s): the
        model, the data, the run folder and the CPU/GPU path it trains on."""
        cfg, m = self.config, self.model
        return [
            f"unetkit train: {cfg.model.name} ({m.num_parameters():,} parameters), "
            f"{len(self.data.train)} train / {len(self.data.val)} val cases, classes "
            f"{list(self.data.label_map.values)}"
            + (
                f" (unlabelled {self.data.label_map.ignore})"
                if self.data.label_map.ignore is not None
                else ""
            )
            + f", patch {self.input_size}→{self.label_size}, "
            f"normalisation {describe_normalization(self.data.normalizer)}"
            f"{f', {self.dist.world_size} processes' if self.dist.enabled else ''}",
            f"run folder: {self.run_dir}"
            + (f" (resumed at epoch {self.epoch})" if self._resume_from else ""),
            runtime.describe_path(self.device, self.autocast_dtype, self.channels_last),
            *filter(None, [(self.unlabelled_hint() or (0, None))[1], self.unjudged_note()]),
            *getattr(self, "resume_notes", []),
        ]


def optimisation_step(
    model: torch.nn.Module,
    loss_fn,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    w: Optional[torch.Tensor],
    device: torch.device,
    dtype: Optional[torch.dtype],
    grad_clip: Optional[float],
    scaler=None,
    params=None,
) -> float:
    """One training step as the :class:`Trainer` takes it (autocast forward and loss, backward,
    gradient clipping, optimiser step; the grad scaler for fp16); returns the loss. The planner's
    machine probe times this same function. A non-finite loss is returned without a step."""
    with runtime.autocast(device, dtype):
        out = model(x)
        loss = loss_fn(out, y, w)
    if not torch.isfinite(loss):
        return float(loss.detach())
    optimizer.zero_grad(set_to_none=True)
    params = list(params if params is not None else model.parameters())
    if scaler is not None:
        scaler.scale(loss).backward()
        if grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
    return float(loss.detach())


def _check_not_in_data(run_dir: Path, shown: str, config: RunConfig) -> None:
    """A run folder that is a data folder, or inside its image or mask folder (``--run-dir
    data/train``, ``--output data/train/images``), would put checkpoints, logs and pictures among
    the files the next run reads: refused, naming the option (``shown``). A run folder beside
    ``images/`` and ``masks/`` (``data/train/runs/…``) is left alone: discovery never reads it."""
    from ..data.discovery import IMAGE_DIR_NAMES, MASK_DIR_NAMES, is_dir_alias
    from ..data.reading import INSTANCE_DIR_NAMES

    here = Path(run_dir).resolve()
    for data in (config.data.train_dir, config.data.val_dir):
        if not data:
            continue
        folder = Path(data).resolve()
        if here != folder and folder not in here.parents:
            continue
        sub = here.relative_to(folder).parts[:1]
        inside = sub and (
            any(is_dir_alias(sub[0], names) for names in (IMAGE_DIR_NAMES, MASK_DIR_NAMES))
            or sub[0].lower() in INSTANCE_DIR_NAMES
            or sub[0].startswith(("images", "labels"))  # nnU-Net's imagesTr, labelsTr
        )
        if here == folder or inside:
            where = f"{data}" if here == folder else f"{Path(data) / sub[0]}"
            raise ConfigError(
                f"{shown}: the run would be written into the data folder {where}; give a "
                "--run-dir (or --output) outside it"
            )


def _claim_run_name(output_dir: Path, name: str) -> tuple[Optional[str], list]:
    """``(name, missing)``: ``name``, or ``name-2``, ``name-3`` … , the first whose folder this
    process creates itself (``mkdir`` without ``exist_ok`` is atomic), so two runs started in the
    same second under one ``output_dir`` never share a folder; ``None`` where no folder can be
    made there (the run-folder checks that follow say why). ``missing``: the folders above it
    that did not exist before (deepest first), to remove again while empty if the run fails."""
    missing = [p for p in [output_dir, *output_dir.parents] if not p.exists()]
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError:  # a file in the way, no permission
        return None, missing
    for k in range(1, 1000):
        candidate = name if k == 1 else f"{name}-{k}"
        try:
            (output_dir / candidate).mkdir()
        except FileExistsError:
            continue
        except OSError:
            return None, missing
        return candidate, missing
    return None, missing


def run_name(config: RunConfig) -> str:
    """The default name of a run folder under ``output_dir``: ``<model>-<YYYYmmdd-HHMMSS>``."""
    return f"{config.model.name}-{time.strftime('%Y%m%d-%H%M%S')}"


@dataclass
class _NewEntries:
    """The entries of ``folder`` that are not in ``before`` (what a trainer added to an existing folder)."""

    folder: Path
    before: set


def _check_writable(path: Path) -> None:
    """Fail now, naming ``path``, when a run folder could not be made or written there: the path is a
    file, lies under a file, or its nearest existing folder is not writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(
            "exists and is not a folder: choose another run folder (--run-dir/--output)", path
        )
    existing = next((p for p in [path, *path.parents] if p.exists()), Path.cwd())
    if not existing.is_dir():
        raise DataError(f"cannot make a run folder here: {existing} is a file, not a folder", path)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(f"cannot make a run folder here: {existing} is not writable", path)


def _sync_lr_to_schedule(scheduler, epochs: int) -> None:
    """After loading a schedule, set the learning rate it gives for the current epoch under *this*
    config: a resumed run may have been extended (``--epochs``), which changes poly/cosine rates."""
    if isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
        scheduler.T_max = epochs
        lrs = scheduler._get_closed_form_lr()
    elif isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        import warnings

        with warnings.catch_warnings():  # get_lr() outside step() is exactly what is wanted here
            warnings.simplefilter("ignore", UserWarning)
            lrs = scheduler.get_lr()
    else:
        return
    for group, lr in zip(scheduler.optimizer.param_groups, lrs):
        group["lr"] = lr


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    ok = values[~np.isnan(values)]
    return float(ok.mean()) if ok.size else float("nan")


class _LogFile(Callback):
    """``train.log``: the lines a run starts with, the console's epoch lines, and why it ended;
    appended (a resumed run adds its own)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def _append(self, text: str) -> None:
        with open(self.path, "a") as fh:
            fh.write(text)

    def on_train_start(self, trainer):
        self._append("".join(f"{line}\n" for line in trainer.header_lines()))

    def on_epoch_end(self, trainer, history):
        import io

        buf = io.StringIO()
        ConsoleSummary(buf).on_epoch_end(trainer, history)
        self._append(buf.getvalue())

    def on_train_end(self, trainer, history):
        error = getattr(trainer, "ending_error", None)
        if getattr(error, "unetkit_ending", None):  # the command's own: terminated, output closed
            reason = str(error.unetkit_ending)
        elif isinstance(error, KeyboardInterrupt):
            reason = "interrupted"
        elif error is not None:
            reason = f"stopped by an error ({type(error).__name__})"
        else:
            reason = trainer.stop_reason or trainer._end_without_a_stop()
        best = trainer.best
        score = (
            f"; best {best['metric']} {best['value']:.4f} at epoch {best['epoch']}" if best else ""
        )
        # the last epoch finished (and saved): one stopped part-way is not counted
        done = int(history[-1]["epoch"]) if history else 0
        more = (
            f"; unetkit train --resume {trainer.run_dir} continues it"
            if error is not None and (Path(trainer.run_dir) / "checkpoints" / "last.pt").is_file()
            else ""
        )
        self._append(f"ended: {reason} after epoch {done}{score}{more}\n")
        if more and isinstance(error, KeyboardInterrupt):  # Ctrl-C, SIGTERM: how to go on, said
            print(f"ended: {reason} after epoch {done}{score}{more}", file=sys.stderr, flush=True)

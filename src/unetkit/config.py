"""Typed run configuration: dataclasses validated on build, YAML in and out, saved with every run.

Every number the trainer uses comes from here; the resolved config is written into the run folder and
into each checkpoint, so the run folder alone reproduces the run.

Example:
    >>> cfg = RunConfig.from_dict({"model": {"name": "unet-original"}, "train": {"epochs": 5}})
    >>> cfg.train.optimizer
    'adamw'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from .errors import ConfigError


@dataclass
class DataConfig:
    """Where the images are and how samples are made.

    Attributes:
        train_dir: folder with ``images/`` + ``masks/`` (or an nnU-Net raw folder).
        val_dir: fixed validation folder; when unset, ``val_fraction`` of the training cases is held
            out (seeded) and the split is saved in the run folder.
        mask_suffix: suffix of mask stems (``_mask``); auto-detected when unset.
        mask_kind: ``auto``, ``labels``, ``colors`` (RGB masks) or ``instances`` (see
            :func:`~unetkit.data.infer_label_map`).
        val_fraction: hold-out fraction when there is no ``val_dir``.
        num_folds, fold: k-fold cross-validation instead of a hold-out: all folds are saved in
            ``splits.json`` and fold ``fold`` is trained.
        normalization: scheme name and parameters, e.g. ``{"name": "percentile", "lower": 1}``.
        patch_size: training patch (label) size per axis; unset = whole images (all the same size).
        fg_fraction: share of patches centred on foreground (nnU-Net uses 0.33).
        fg_classes: the classes to oversample (default every class > 0; ISBI membranes: ``[0]``).
        augmentation: augmentation settings (``{}`` = defaults, ``None`` = off).
        weight_map: use the U-Net paper's border weight map in the loss (``w0``, ``sigma``).
        cache_dir: folder caching the weight maps across runs (keyed by mask and parameters).
        num_workers: DataLoader worker processes (0 = in the main process).
    """

    train_dir: Optional[str] = None
    val_dir: Optional[str] = None
    mask_suffix: Optional[str] = None
    mask_kind: str = "auto"
    val_fraction: float = 0.2
    num_folds: Optional[int] = None
    fold: Optional[int] = None
    normalization: dict = field(default_factory=lambda: {"name": "zscore"})
    patch_size: Optional[list] = None
    fg_fraction: float = 0.33
    fg_classes: Optional[list] = None
    augmentation: Optional[dict] = field(default_factory=dict)
    weight_map: bool = False
    w0: float = 10.0
    sigma: float = 5.0
    cache_dir: Optional[str] = None
    num_workers: int = 0

    def validate(self) -> None:
        if self.mask_kind not in ("auto", "labels", "colors", "instances"):
            raise ConfigError(f"data.mask_kind must be auto, labels, colors or instances, got {self.mask_kind!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 <= self.fg_fraction <= 1.0:
            raise ConfigError(f"data.fg_fraction must be in [0, 1], got {self.fg_fraction}")
        if self.patch_size is not None:
            if isinstance(self.patch_size, int):
                self.patch_size = [self.patch_size]
            if any(int(p) < 1 for p in self.patch_size):
                raise ConfigError(f"data.patch_size must be positive, got {self.patch_size}")
            self.patch_size = [int(p) for p in self.patch_size]
        if not isinstance(self.normalization, dict) or "name" not in self.normalization:
            raise ConfigError("data.normalization must be a mapping with a 'name', e.g. {name: zscore}")
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers must be ≥ 0, got {self.num_workers}")


@dataclass
class ModelConfig:
    """Which model: a preset name of ``create_model`` and options overriding it.

    ``in_channels`` and ``num_classes`` are filled in from the data unless given here.
    """

    name: str = "unet"
    options: dict = field(default_factory=dict)

    def validate(self) -> None:
        from .models import MODELS

        MODELS.get(self.name)  # raises with the valid names


@dataclass
class LossConfig:
    """Which loss (a name of ``create_loss``) with its options; deep-supervision and CGM weights."""

    name: str = "dice_ce"
    options: dict = field(default_factory=dict)
    deep_supervision_weights: Optional[list] = None
    cgm_weight: float = 1.0

    def validate(self) -> None:
        if self.cgm_weight < 0:
            raise ConfigError(f"loss.cgm_weight must be ≥ 0, got {self.cgm_weight}")


OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("poly", "cosine", "plateau", "budget", "none")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


@dataclass
class TrainConfig:
    """The training loop's numbers.

    Attributes:
        epochs: number of epochs; ``iters_per_epoch`` batches each (an epoch is a fixed number of
            random patches, as in nnU-Net, not a pass over the files).
        batch_size: global batch size (split across processes under torchrun).
        optimizer: ``sgd`` (Nesterov off, ``momentum`` 0.99 as the paper), ``adam``, ``adamw``.
        scheduler: ``poly`` (nnU-Net, power 0.9, per epoch over ``epochs``), ``cosine``, ``plateau``,
            ``budget`` (poly on the clock over ``time_budget_minutes``: the rate reaches about 0 when the
            time is up and training ends when the next epoch would not fit; ``epochs`` is then only an
            upper bound; see :class:`~unetkit.training.callbacks.BudgetSchedule`) or ``none``.
        grad_clip: max gradient norm (``None`` = off).
        precision: ``auto`` (bf16 autocast where the CPU/GPU supports it, else fp32; 3D nets on CPU
            train in fp32, see :func:`unetkit.runtime.training_precision`), ``bf16``, ``fp16``
            (CUDA only), ``fp32``.
        channels_last: memory format; ``None`` = automatic (on for batch-norm nets on CPU).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        val_every: validate every N epochs.
        early_stopping: stop after this many validations without improvement (``None`` = off).
        time_budget_minutes: stop cleanly when the time is up (the best checkpoint is kept).
        select_metric: validation value that picks ``best.pt`` and drives early stopping and the
            plateau schedule: ``val_dice`` (mean foreground Dice), ``val_dice_c<k>`` (one class, e.g.
            ``val_dice_c0`` for ISBI's membranes), ``val_iou``, or ``val_loss`` / ``val_pixel_error``
            (minimised; every other name is maximised).
        threads: torch CPU threads (``None`` = torch's default).
    """

    epochs: int = 50
    iters_per_epoch: int = 50
    batch_size: int = 4
    optimizer: str = "adamw"
    lr: float = 1e-3
    momentum: float = 0.99
    weight_decay: float = 1e-4
    scheduler: str = "poly"
    grad_clip: Optional[float] = 12.0
    precision: str = "auto"
    channels_last: Optional[bool] = None
    device: str = "auto"
    seed: int = 0
    val_every: int = 1
    early_stopping: Optional[int] = None
    time_budget_minutes: Optional[float] = None
    select_metric: str = "val_dice"
    threads: Optional[int] = None

    def validate(self) -> None:
        for name in ("epochs", "iters_per_epoch", "batch_size", "val_every"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"train.{name} must be ≥ 1, got {getattr(self, name)}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"train.optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"train.scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        if not str(self.select_metric).startswith("val_"):
            raise ConfigError(f"train.select_metric must name a validation value such as val_dice, got "
                              f"{self.select_metric!r}")
        if self.time_budget_minutes is not None and self.time_budget_minutes <= 0:
            raise ConfigError(f"train.time_budget_minutes must be > 0, got {self.time_budget_minutes}")
        if self.scheduler == "budget" and self.time_budget_minutes is None:
            raise ConfigError("train.scheduler budget runs the learning-rate schedule on the clock and needs a "
                              "time budget: set train.time_budget_minutes (--time-budget MINUTES)")


@dataclass
class RunConfig:
    """A whole training run: data, model, loss, training loop and where it is written."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output_dir: str = "runs"

    def validate(self) -> RunConfig:
        for section in (self.data, self.model, self.loss, self.train):
            section.validate()
        return self

    # -- conversion ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Optional[dict], source: str = "config") -> RunConfig:
        """Build and validate from nested mappings; unknown keys raise, naming the valid ones."""
        raw = dict(raw or {})
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in raw:
                continue
            value = raw.pop(f.name)
            section_cls = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig, "train": TrainConfig}.get(f.name)
            kwargs[f.name] = _section(section_cls, value, f"{source}: {f.name}") if section_cls else value
        if raw:
            valid = ", ".join(f.name for f in dataclasses.fields(cls))
            raise ConfigError(f"{source}: unknown section(s) {', '.join(sorted(raw))}; valid: {valid}")
        return cls(**kwargs).validate()

    @classmethod
    def from_yaml(cls, path: Union[str, Path]) -> RunConfig:
        import yaml

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the config must be a mapping of sections (data, model, loss, train)")
        return cls.from_dict(raw, source=str(path))

    def to_yaml(self, path: Optional[Union[str, Path]] = None) -> str:
        """The config as YAML; also written atomically to ``path`` when given."""
        import yaml

        text = yaml.safe_dump(_plain(self.to_dict()), sort_keys=False)
        if path is not None:
            from .utils import atomic_write_text

            atomic_write_text(path, text)
        return text

    def override(self, dotted: dict) -> RunConfig:
        """Return a copy with ``{"train.lr": 0.01, ...}`` applied (``None`` values are skipped)."""
        raw = self.to_dict()
        for key, value in dotted.items():
            if value is None:
                continue
            section, _, name = key.partition(".")
            if section not in raw or not isinstance(raw[section], dict) or not name:
                raise ConfigError(f"cannot set {key!r}: use section.name, sections data, model, loss, train")
            raw[section][name] = value
        return RunConfig.from_dict(raw)


def _section(cls, value: Any, where: str):
    if value is None:
        return cls()
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    return cls(**value)


def _plain(value: Any) -> Any:
    """Tuples → lists (YAML safe_dump cannot write tuples)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value

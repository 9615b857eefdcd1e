"""Optimisers and learning-rate schedules by name (numbers from :class:`~unetkit.config.TrainConfig`)."""

from __future__ import annotations

from typing import Any, Optional

import torch

from ..config import TrainConfig
from ..errors import ConfigError


def build_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    """``sgd`` (momentum ``cfg.momentum``, 0.99 in the U-Net paper), ``adam`` or ``adamw``."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ConfigError(f"unknown optimizer {cfg.optimizer!r}")


def build_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer) -> Optional[Any]:
    """Per-epoch schedule: ``poly`` lr·(1 − epoch/epochs)^0.9 (nnU-Net), ``cosine``, ``plateau``
    (halve after 5 validations without improvement of the selection metric) or ``none``.

    ``budget`` (poly on the clock) and ``none`` return ``None``: for ``budget`` the trainer adds a
    :class:`~unetkit.training.callbacks.BudgetSchedule` callback, which sets the rate after each epoch."""
    if cfg.scheduler == "poly":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda e: max(0.0, 1 - e / cfg.epochs) ** 0.9
        )
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=0.5, patience=5
        )
    if cfg.scheduler in ("budget", "none"):
        return None
    raise ConfigError(f"unknown scheduler {cfg.scheduler!r}")


def step_scheduler(scheduler: Any, metric: Optional[float]) -> None:
    """Advance one epoch (plateau schedules need the validation metric)."""
    if scheduler is None:
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        if metric is not None:
            scheduler.step(metric)
    else:
        scheduler.step()

"""Test-time augmentation: predict flipped / rotated copies, undo the transform, average the
probabilities (the U-Net paper averaged 7 rotated versions plus the original on ISBI 2012)."""

from __future__ import annotations

from itertools import combinations
from typing import Callable

import torch

from ..errors import ConfigError

TTA_MODES = ("none", "flip", "d4")

#: A transform: (flip axes, number of 90° turns in the last two axes), applied flip-then-rotate.
Transform = tuple[tuple[int, ...], int]


def tta_transforms(mode: str, spatial_dims: int, square: bool = True) -> list[Transform]:
    """The transforms of a TTA mode (identity first).

    ``flip``: every combination of flipped spatial axes (4 in 2D, 8 in 3D). ``d4`` (2D): the 8
    symmetries of the square (4 rotations × optional flip; needs square tiles, else flips only).
    """
    if mode not in TTA_MODES:
        raise ConfigError(f"tta must be one of {', '.join(TTA_MODES)}, got {mode!r}")
    axes = list(range(spatial_dims))
    if mode == "none":
        return [((), 0)]
    if mode == "d4" and spatial_dims == 2 and square:
        return [(flip, k) for flip in ((), (1,)) for k in range(4)]
    return [(tuple(c), 0) for r in range(len(axes) + 1) for c in combinations(axes, r)]


def _apply(x: torch.Tensor, t: Transform) -> torch.Tensor:
    flips, k = t
    if flips:
        x = torch.flip(x, dims=[2 + a for a in flips])
    return torch.rot90(x, k, dims=(-2, -1)) if k else x


def _undo(y: torch.Tensor, t: Transform) -> torch.Tensor:
    flips, k = t
    if k:
        y = torch.rot90(y, -k, dims=(-2, -1))
    return torch.flip(y, dims=[2 + a for a in flips]) if flips else y


def with_tta(fn: Callable[[torch.Tensor], torch.Tensor], transforms: list[Transform]) -> Callable:
    """Wrap a logits function: mean probability over ``transforms``, returned as logits.

    The result is ``log(p̄)`` for softmax outputs and ``logit(p̄)`` for one sigmoid channel, so
    that softmax/sigmoid of it gives back the averaged probabilities exactly.
    """
    if len(transforms) == 1 and transforms[0] == ((), 0):
        return fn

    def run(batch: torch.Tensor) -> torch.Tensor:
        total = None
        for t in transforms:
            logits = _undo(fn(_apply(batch, t)), t).float()
            p = torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)
            total = p if total is None else total + p
        mean = (total / len(transforms)).clamp(1e-7, 1 - 1e-7)
        return torch.logit(mean) if mean.shape[1] == 1 else torch.log(mean)

    return run

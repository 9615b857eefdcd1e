"""What every unetkit loss shares: input checks, fp32 under autocast, class probabilities, reductions.

A loss subclasses :class:`SegmentationLoss` and implements :meth:`SegmentationLoss.compute`, which
receives a checked :class:`LossInput` (fp32 logits, int64 targets with ignored pixels masked out).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

REDUCTIONS = ("weighted_mean", "mean")


@dataclass
class LossInput:
    """Checked inputs of one loss call.

    Attributes:
        logits: (B, K, *spatial) fp32 logits.
        target: (B, *spatial) int64 class indices; ignored pixels are set to 0 (see ``valid``).
        valid: (B, *spatial) bool, False on ``ignore_index`` pixels; ``None`` when every pixel counts.
        weight: (B, *spatial) fp32 per-pixel weight map as given (ignored pixels not yet zeroed), or ``None``.
    """

    logits: torch.Tensor
    target: torch.Tensor
    valid: Optional[torch.Tensor]
    weight: Optional[torch.Tensor]

    @property
    def num_classes(self) -> int:
        """Number of probability channels C: K for softmax, 2 for a single sigmoid channel."""
        return max(self.logits.shape[1], 2)

    def log_probs(self) -> torch.Tensor:
        """(B, C, *spatial) log class probabilities; K = 1 gives (log(1 − σ(z)), log σ(z))."""
        if self.logits.shape[1] == 1:
            z = self.logits[:, 0]
            return torch.stack([F.logsigmoid(-z), F.logsigmoid(z)], dim=1)
        return F.log_softmax(self.logits, dim=1)

    def probs(self) -> torch.Tensor:
        """(B, C, *spatial) class probabilities (softmax, or (1 − σ(z), σ(z)) for K = 1)."""
        if self.logits.shape[1] == 1:
            p = torch.sigmoid(self.logits[:, 0])
            return torch.stack([1.0 - p, p], dim=1)
        return torch.softmax(self.logits, dim=1)

    def one_hot(self) -> torch.Tensor:
        """(B, C, *spatial) fp32 one-hot target (ignored pixels are one-hot of class 0)."""
        return F.one_hot(self.target, self.num_classes).movedim(-1, 1).to(self.logits.dtype)

    def pixel_weight(self) -> Optional[torch.Tensor]:
        """(B, *spatial) weight map × valid mask, or ``None`` when every pixel has weight 1."""
        if self.valid is None:
            return self.weight
        valid = self.valid.to(self.logits.dtype)
        return valid if self.weight is None else self.weight * valid

    def num_valid(self) -> torch.Tensor:
        """Number of non-ignored pixels (a 0-d fp32 tensor)."""
        if self.valid is None:
            return torch.tensor(float(self.target.numel()), device=self.target.device)
        return self.valid.sum().to(self.logits.dtype)


def no_autocast(device: torch.device):
    """A context that turns autocast off on ``device`` (a no-op where autocast does not exist)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def squeeze_target(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Bring a target (B, *spatial) or (B, 1, *spatial) to (B, *spatial) matching ``logits``.

    Raises:
        ConfigError: when the shape matches neither form.
    """
    spatial = tuple(logits.shape[2:])
    if target.dim() == logits.dim() and target.shape[1] == 1:
        target = target[:, 0]
    if tuple(target.shape) != (logits.shape[0], *spatial):
        raise ConfigError(
            f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}: expected "
            f"(B, *spatial) = {(logits.shape[0], *spatial)} or (B, 1, *spatial) (for a valid-padding model, "
            f"crop the target to the output size)"
        )
    return target


def check_inputs(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    ignore_index: Optional[int] = None,
) -> LossInput:
    """Check shapes, dtypes and label values; return fp32 logits and int64 targets.

    Args:
        logits: (B, K, *spatial), any float dtype.
        target: (B, *spatial) or (B, 1, *spatial) integer or bool class indices in 0..max(K, 2) − 1,
            or ``ignore_index``.
        weight: optional (B, *spatial) or (B, 1, *spatial) per-pixel weights (≥ 0).
        ignore_index: label of pixels to leave out.

    Raises:
        ConfigError: naming the offending shape, dtype or values.
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() < 3:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ConfigError(
            f"logits must be a tensor (B, K, *spatial) with at least one spatial axis, got {shape}"
        )
    if not logits.is_floating_point():
        raise ConfigError(f"logits must be a float tensor, got dtype {logits.dtype}")
    target = squeeze_target(target, logits)
    if target.is_floating_point() or target.is_complex():
        raise ConfigError(
            f"target must hold integer class indices (B, *spatial), got dtype {target.dtype}; "
            f"convert masks with .long() (and map RGB/255 masks to class indices first)"
        )
    target = target.long()
    num_classes = max(logits.shape[1], 2)
    valid = None
    if ignore_index is not None:
        valid = target != int(ignore_index)
        if bool(valid.all()):
            valid = None
        else:
            target = torch.where(valid, target, torch.zeros_like(target))
    if target.numel():
        lo, hi = int(target.min()), int(target.max())
        if lo < 0 or hi >= num_classes:
            meaning = (
                "K = 1 means one sigmoid channel with targets in {0, 1}"
                if logits.shape[1] == 1
                else "class indices must lie in 0..K-1, background included"
            )
            raise ConfigError(
                f"target values range over {lo}..{hi} but logits have K = {logits.shape[1]} "
                f"channel(s): {meaning} (set ignore_index for a label to leave out)"
            )
    if weight is not None:
        if weight.dim() == logits.dim() and weight.shape[1] == 1:
            weight = weight[:, 0]
        if tuple(weight.shape) != tuple(target.shape):
            raise ConfigError(
                f"weight map shape {tuple(weight.shape)} does not match the target "
                f"{tuple(target.shape)}: expected (B, *spatial) or (B, 1, *spatial)"
            )
        weight = weight.float()
    return LossInput(logits.float(), target, valid, weight)


def reduce_pixels(
    values: torch.Tensor, inp: LossInput, reduction: str, extra: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Reduce a per-pixel loss map (B, *spatial) to a scalar.

    ``w`` = weight map × valid mask × ``extra`` (e.g. class weights of each pixel's target).

    * ``weighted_mean``: Σ w·L / Σ w (PyTorch's convention for class weights; the result does not
      grow with the weight magnitude).
    * ``mean``: Σ w·L / N_valid (the number of non-ignored pixels).

    Args:
        values: (B, *spatial) per-pixel loss.
        inp: the checked inputs (weight map, valid mask).
        reduction: ``weighted_mean`` or ``mean``.
        extra: optional (B, *spatial) factor included in the weights and, for
            ``weighted_mean``, in the normaliser.
    """
    w = inp.pixel_weight()
    if extra is not None:
        w = extra if w is None else w * extra
    if w is None:
        return values.mean()
    total = (values * w).sum()
    denom = w.sum() if reduction == "weighted_mean" else inp.num_valid()
    return total / denom.clamp_min(1e-12)


def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ConfigError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def class_vector(
    values: Optional[Sequence[float]], num_classes: int, what: str, like: torch.Tensor
) -> Optional[torch.Tensor]:
    """A per-class fp32 vector of length C = max(K, 2), or ``None``; raises on a wrong length."""
    if values is None:
        return None
    vec = torch.as_tensor(values, dtype=torch.float32, device=like.device).flatten()
    if vec.numel() != num_classes:
        raise ConfigError(
            f"{what} has {vec.numel()} value(s) but the logits give {num_classes} classes "
            f"(K = 1 counts as 2: background, foreground)"
        )
    return vec


def overlap_stats(inp: LossInput, include_background: bool, batch_dice: bool):
    """Soft true positives, false positives and false negatives per class.

    With p the class probabilities, g the one-hot target and w the weight map × valid mask:
    TP = Σ w·p·g, FP = Σ w·p·(1 − g), FN = Σ w·(1 − p)·g, summed over the spatial axes and, when
    ``batch_dice``, over the batch too.

    Returns:
        (tp, fp, fn), each (C',) when ``batch_dice`` else (B, C'), C' = C or C − 1 (no background).
    """
    p, g = inp.probs(), inp.one_hot()
    if not include_background:
        p, g = p[:, 1:], g[:, 1:]
    axes = ([0] if batch_dice else []) + list(range(2, p.dim()))
    w = inp.pixel_weight()
    pg = p * g
    if w is not None:
        w = w.unsqueeze(1)
        p, g, pg = p * w, g * w, pg * w
    tp, sum_p, sum_g = pg.sum(axes), p.sum(axes), g.sum(axes)
    return tp, sum_p - tp, sum_g - tp


class SegmentationLoss(nn.Module):
    """Base class: ``forward(logits, target, weight=None)`` → fp32 scalar, computed outside autocast.

    Args:
        ignore_index: label of pixels that do not count (``None``: all pixels count).
    """

    def __init__(self, ignore_index: Optional[int] = None):
        super().__init__()
        if ignore_index is not None and not isinstance(ignore_index, int):
            raise ConfigError(f"ignore_index must be an int or None, got {ignore_index!r}")
        self.ignore_index = ignore_index

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Loss of ``logits`` (B, K, *spatial) against ``target`` (B, *spatial) class indices.

        Args:
            logits: (B, K, *spatial), any float dtype (bf16 is cast to fp32).
            target: (B, *spatial) or (B, 1, *spatial) integer class indices.
            weight: optional (B, *spatial) per-pixel weight map.

        Returns:
            A 0-d fp32 tensor.
        """
        inp = check_inputs(logits, target, weight, self.ignore_index)
        with no_autocast(inp.logits.device):
            return self.compute(inp)

    def compute(self, inp: LossInput) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

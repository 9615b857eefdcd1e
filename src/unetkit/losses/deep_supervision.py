"""Deep supervision: one loss on the main and every auxiliary output, plus the UNet 3+ CGM loss."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..models.base import ModelOutput
from .base import no_autocast, squeeze_target

Outputs = Union[ModelOutput, torch.Tensor, Sequence[torch.Tensor]]


def default_weights(n: int) -> list[float]:
    """nnU-Net-style weights 1, 1/2, 1/4, … for the main output and ``n − 1`` auxiliary ones, summing to 1.

    nnU-Net additionally sets the lowest-resolution output's weight to 0; pass explicit weights to
    reproduce that (or the UNet 3+ paper's equal weights).
    """
    raw = [0.5**i for i in range(n)]
    total = sum(raw)
    return [r / total for r in raw]


def downsample_labels(target: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Nearest-neighbour resampling of class indices (B, *spatial) to (B, *size).

    Output index i along an axis of length n_in → n_out takes input index floor(i · n_in / n_out)
    (``F.interpolate(mode="nearest")``'s rule, computed exactly in integers), so ×2 down-sampling
    keeps every even pixel. Label values are never mixed.
    """
    for axis, (n_in, n_out) in enumerate(zip(target.shape[1:], size), start=1):
        if n_in != n_out:
            idx = torch.arange(n_out, device=target.device) * n_in // n_out
            target = target.index_select(axis, idx)
    return target


def downsample_weight(weight: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Area (average) resampling of a weight map (B, *spatial) to (B, *size)."""
    if tuple(weight.shape[1:]) == tuple(size):
        return weight
    return F.interpolate(weight.unsqueeze(1).float(), size=tuple(size), mode="area").squeeze(1)


def cgm_targets(target: torch.Tensor, ignore_index: Optional[int] = None) -> torch.Tensor:
    """One-hot "object present" targets (B, 2) = (absent, present) for the classification-guided module.

    An image is "present" when any non-ignored pixel has a foreground label (> 0).

    Args:
        target: (B, *spatial) class indices.
        ignore_index: label that does not count as foreground.
    """
    fg = target > 0
    if ignore_index is not None:
        fg &= target != ignore_index
    present = fg.flatten(1).any(1).float()
    return torch.stack([1.0 - present, present], dim=1)


class DeepSupervisionLoss(nn.Module):
    """Σ_i w_i · loss(output_i, target_i) + ``cgm_weight`` · BCE(cls_logits, presence).

    Output 0 is the main logits, outputs 1… the auxiliary ones in :class:`ModelOutput` order
    (next-deeper level first). An output smaller than the target is supervised with the target
    down-sampled by nearest neighbour (:func:`downsample_labels`) and the weight map by area
    averaging (:func:`downsample_weight`); the main output must have the target's size.
    For a valid-padding model the auxiliary outputs do not cover the main output's field of view
    exactly; resizing ignores that.

    Default weights (``weights=None``): 1, 1/2, 1/4, … normalised to sum 1 (nnU-Net-style, see
    :func:`default_weights`); explicit weights are used as given. The CGM term is the binary
    cross-entropy of the (B, 2) ``cls_logits`` (sigmoid per logit, mean over B × 2) against
    :func:`cgm_targets`; it is added when the model returns ``cls_logits``.

    Args:
        loss: a per-output loss ``loss(logits, target, weight)`` → scalar.
        weights: one weight per output (main first), or ``None`` for the default.
        cgm_weight: weight of the CGM term.
        ignore_index: label not counted as foreground by the CGM target; defaults to
            ``loss.ignore_index`` when the loss has one.

    Example:
        >>> ds = DeepSupervisionLoss(DiceLoss())
        >>> out = ModelOutput(torch.randn(2, 2, 32, 32), [torch.randn(2, 2, 16, 16)], None)
        >>> ds(out, torch.randint(0, 2, (2, 32, 32)))  # 2/3 · dice(32²) + 1/3 · dice(16²)
    """

    def __init__(
        self,
        loss: nn.Module,
        weights: Optional[Sequence[float]] = None,
        cgm_weight: float = 1.0,
        ignore_index: Optional[int] = None,
    ):
        super().__init__()
        if weights is not None:
            weights = [float(w) for w in weights]
            if not weights or any(w < 0 for w in weights) or not any(weights):
                raise ConfigError(
                    f"deep supervision weights must be ≥ 0 and not all 0, got {weights}"
                )
        if cgm_weight < 0:
            raise ConfigError(f"cgm_weight must be ≥ 0, got {cgm_weight}")
        self.loss = loss
        self.weights = weights
        self.cgm_weight = float(cgm_weight)
        self.ignore_index = (
            ignore_index if ignore_index is not None else getattr(loss, "ignore_index", None)
        )

    @staticmethod
    def unpack(outputs: Outputs) -> tuple[list[torch.Tensor], Optional[torch.Tensor]]:
        """([main logits, *aux], cls_logits or None) from a ModelOutput, a tensor or a list of tensors."""
        if isinstance(outputs, ModelOutput):
            return [outputs.logits, *outputs.aux], outputs.cls_logits
        if isinstance(outputs, torch.Tensor):
            return [outputs], None
        if (
            isinstance(outputs, (list, tuple))
            and outputs
            and all(isinstance(o, torch.Tensor) for o in outputs)
        ):
            return list(outputs), None
        raise ConfigError(
            f"deep supervision expects a ModelOutput, a tensor or a non-empty list of tensors, "
            f"got {type(outputs).__name__}"
        )

    def output_weights(self, n: int) -> list[float]:
        """The weight of each of ``n`` outputs (main first)."""
        if self.weights is None:
            return default_weights(n)
        if len(self.weights) != n:
            raise ConfigError(
                f"deep supervision has {len(self.weights)} weight(s) but the model returned {n} "
                f"output(s) (main + {n - 1} auxiliary)"
            )
        return self.weights

    def forward(
        self, outputs: Outputs, target: torch.Tensor, weight: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Total loss of every output.

        Args:
            outputs: :class:`ModelOutput`, a logits tensor (B, K, *spatial), or [main, *aux] logits.
            target: (B, *spatial) or (B, 1, *spatial) class indices at the main output's size.
            weight: optional (B, *spatial) per-pixel weight map at the main output's size.

        Returns:
            A 0-d fp32 tensor.
        """
        preds, cls_logits = self.unpack(outputs)
        target = squeeze_target(target, preds[0])
        if weight is not None and weight.dim() == target.dim() + 1 and weight.shape[1] == 1:
            weight = weight[:, 0]
        full = tuple(target.shape[1:])
        resized = {full: (target, weight)}
        total = None
        for w, pred in zip(self.output_weights(len(preds)), preds):
            size = tuple(pred.shape[2:])
            if size not in resized:
                if len(size) != len(full) or any(s > f for s, f in zip(size, full)):
                    raise ConfigError(
                        f"auxiliary output of shape {tuple(pred.shape)} is not smaller than the "
                        f"target {tuple(target.shape)}: cannot bring the target to its size"
                    )
                resized[size] = (
                    downsample_labels(target, size),
                    None if weight is None else downsample_weight(weight, size),
                )
            if w == 0:
                continue
            term = w * self.loss(pred, *resized[size])
            total = term if total is None else total + term
        if cls_logits is not None and self.cgm_weight:
            if cls_logits.dim() != 2 or cls_logits.shape != (target.shape[0], 2):
                raise ConfigError(
                    f"cls_logits must be (B, 2) = ({target.shape[0]}, 2), got {tuple(cls_logits.shape)}"
                )
            with no_autocast(cls_logits.device):
                bce = F.binary_cross_entropy_with_logits(
                    cls_logits.float(), cgm_targets(target, self.ignore_index)
                )
            total = total + self.cgm_weight * bce
        return total

"""Soft Dice loss (multi-class, batch or per-image) and the overlap-loss base it shares with IoU/Tversky."""

from __future__ import annotations

from typing import Optional

import torch

from ..errors import ConfigError
from .base import LossInput, SegmentationLoss, overlap_stats


class OverlapLoss(SegmentationLoss):
    """Base of the soft overlap losses: 1 − mean over classes (and images) of a score in [0, 1].

    The score of each class is computed from soft TP, FP, FN
    (:func:`~unetkit.losses.base.overlap_stats`), which include the weight map and leave out
    ignored pixels.

    Args:
        include_background: score class 0 too (K = 1: the background 1 − σ(z) channel). Default
            ``False``, as nnU-Net; K = 1 and K = 2 then both score the one foreground class.
        batch_dice: ``True``: one score per class over the whole batch (nnU-Net's ``batch_dice``);
            ``False``: one score per image and class, then the mean.
        smooth_nr: added to the numerator; with ``smooth_dr`` it makes a class absent from both
            prediction and target score 1 (not 0), so an empty image with an empty prediction
            costs nothing.
        smooth_dr: added to the denominator (avoids 0/0).
        ignore_index: label of pixels left out.
    """

    def __init__(
        self,
        include_background: bool = False,
        batch_dice: bool = False,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        ignore_index: Optional[int] = None,
    ):
        super().__init__(ignore_index)
        if smooth_nr < 0 or smooth_dr < 0:
            raise ConfigError(
                f"smooth_nr and smooth_dr must be ≥ 0, got {smooth_nr} and {smooth_dr}"
            )
        self.include_background = bool(include_background)
        self.batch_dice = bool(batch_dice)
        self.smooth_nr = float(smooth_nr)
        self.smooth_dr = float(smooth_dr)

    def score(
        self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor
    ) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def compute(self, inp: LossInput) -> torch.Tensor:
        tp, fp, fn = overlap_stats(inp, self.include_background, self.batch_dice)
        return 1.0 - self.score(tp, fp, fn).mean()


class DiceLoss(OverlapLoss):
    """Soft Dice loss: 1 − mean_c (2·TP_c + smooth_nr) / (2·TP_c + FP_c + FN_c + smooth_dr).

    2·TP + FP + FN = Σ p + Σ g. Minimum 0. nnU-Net's ``SoftDiceLoss`` returns −Dice (minimum −1)
    with one ``smooth`` = 1e-5 in both places: the same gradients, shifted by 1.

    Args: see :class:`OverlapLoss`.

    Example:
        >>> logits = torch.randn(2, 3, 16, 16)
        >>> target = torch.randint(0, 3, (2, 16, 16))
        >>> DiceLoss(batch_dice=True)(logits, target).shape
        torch.Size([])
    """

    def score(self, tp, fp, fn):
        return (2 * tp + self.smooth_nr) / (2 * tp + fp + fn + self.smooth_dr)

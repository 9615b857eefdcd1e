"""Tversky loss (Salehi et al. 2017): Dice/IoU with separate costs for false positives and negatives."""

from __future__ import annotations

from typing import Optional

from ..errors import ConfigError
from .dice import OverlapLoss


class TverskyLoss(OverlapLoss):
    """1 − mean_c (TP_c + smooth_nr) / (TP_c + α·FP_c + β·FN_c + smooth_dr).

    α weighs false positives, β false negatives (MONAI's convention); α = β = 0.5 is Dice,
    α = β = 1 is IoU; β > α favours recall. Minimum 0.

    Args:
        alpha: weight of false positives (≥ 0).
        beta: weight of false negatives (≥ 0).
        Other arguments: see :class:`~unetkit.losses.dice.OverlapLoss`.
    """

    def __init__(
        self,
        alpha: float = 0.5,
        beta: float = 0.5,
        include_background: bool = False,
        batch_dice: bool = False,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        ignore_index: Optional[int] = None,
    ):
        super().__init__(include_background, batch_dice, smooth_nr, smooth_dr, ignore_index)
        if alpha < 0 or beta < 0:
            raise ConfigError(f"Tversky alpha and beta must be ≥ 0, got {alpha} and {beta}")
        self.alpha = float(alpha)
        self.beta = float(beta)

    def score(self, tp, fp, fn):
        return (tp + self.smooth_nr) / (tp + self.alpha * fp + self.beta * fn + self.smooth_dr)

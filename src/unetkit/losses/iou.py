"""Soft IoU (Jaccard) loss, as in UNet 3+'s hybrid loss."""

from __future__ import annotations

from .dice import OverlapLoss


class IoULoss(OverlapLoss):
    """Soft IoU loss: 1 − mean_c (TP_c + smooth_nr) / (TP_c + FP_c + FN_c + smooth_dr).

    TP + FP + FN = Σ p + Σ g − Σ p·g (the soft union). Minimum 0. Same options as
    :class:`~unetkit.losses.dice.DiceLoss` (``include_background=False`` by default).
    """

    def score(self, tp, fp, fn):
        return (tp + self.smooth_nr) / (tp + fp + fn + self.smooth_dr)

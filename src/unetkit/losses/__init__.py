"""Segmentation losses: CE/BCE, Dice, Dice + CE, focal, IoU, Tversky, MS-SSIM, UNet 3+ hybrid, deep supervision.

Conventions (every loss):

* ``loss(logits, target, weight=None)`` → 0-d fp32 tensor; every loss is an ``nn.Module``.
* ``logits``: (B, K, *spatial), 2D or 3D (any float dtype; cast to fp32 and computed with autocast
  off, so bf16 autocast gives an fp32 result).
* K = 1: one sigmoid channel, binary task, target in {0, 1}; internally its class probabilities are
  (1 − σ(z), σ(z)), so BCE with logit z equals 2-class CE with logits (0, z), and likewise for every
  other loss. K ≥ 2: softmax over K classes, class 0 = background.
* ``target``: (B, *spatial) integer class indices (int64; (B, 1, *spatial) is accepted too).
* ``weight``: optional (B, *spatial) per-pixel weight map (the U-Net border weights); pixel losses
  (CE, focal) weight each pixel, overlap losses (Dice, IoU, Tversky) weight each pixel's
  contribution to TP/FP/FN; MS-SSIM does not use it.
* ``ignore_index``: pixels with this label count nowhere (constructor argument of every loss).
* ``include_background=False`` by default for the overlap and MS-SSIM losses (nnU-Net's choice).
* Every loss has minimum 0, reached by a perfect, confident prediction.

Build by name with :func:`create_loss` (``list_losses()`` gives the names); wrap in
:class:`DeepSupervisionLoss` for models returning a :class:`~unetkit.models.ModelOutput`.

Example:
    >>> loss = DeepSupervisionLoss(create_loss("dice-ce", batch_dice=True))
    >>> loss(model(x), target)  # model.outputs == "all"
"""

from __future__ import annotations

from torch import nn

from ..registry import Registry
from .base import LossInput, SegmentationLoss, check_inputs
from .ce import CrossEntropyLoss
from .compound import CompoundLoss, DiceCELoss, UNet3PlusHybridLoss
from .deep_supervision import (
    DeepSupervisionLoss,
    cgm_targets,
    default_weights,
    downsample_labels,
    downsample_weight,
)
from .dice import DiceLoss, OverlapLoss
from .focal import FocalLoss
from .iou import IoULoss
from .ssim import MS_SSIM_WEIGHTS, MSSSIMLoss, ms_ssim, ms_ssim_plan
from .tversky import TverskyLoss

LOSSES = Registry("loss")
_r = LOSSES.register
_r(
    "ce",
    CrossEntropyLoss,
    "cross-entropy (softmax, K ≥ 2) or BCE (K = 1), class weights, weight map",
)
_r("bce", CrossEntropyLoss, "alias of 'ce' (the channel count K picks sigmoid or softmax)")
_r("dice", DiceLoss, "soft Dice, batch or per-image, foreground classes by default")
_r("dice-ce", DiceCELoss, "nnU-Net's default: Dice + CE (weights 1, 1)")
_r("focal", FocalLoss, "focal loss, gamma 2, optional alpha")
_r("iou", IoULoss, "soft IoU (Jaccard)")
_r("jaccard", IoULoss, "alias of 'iou'")
_r("tversky", TverskyLoss, "Tversky: alpha weighs false positives, beta false negatives")
_r("ms-ssim", MSSSIMLoss, "1 − MS-SSIM of the probability maps vs the one-hot target (2D/3D)")
_r("unet3plus-hybrid", UNet3PlusHybridLoss, "UNet 3+ hybrid loss: focal + MS-SSIM + IoU")
_r("compound", CompoundLoss, "weighted sum of named losses: weights={'dice': 1, 'ce': 1}")
del _r


def create_loss(name: str, **kwargs) -> nn.Module:
    """Build a registered loss; keyword arguments go to its constructor (``None`` = keep the default).

    Example:
        >>> loss = create_loss("focal", gamma=2.0, ignore_index=255)
        >>> loss = create_loss("compound", weights={"dice": 1.0, "ce": 0.5})
    """
    return LOSSES.create(name, **kwargs)


def list_losses() -> list[str]:
    """Names accepted by :func:`create_loss`."""
    return LOSSES.names()


__all__ = [
    "LOSSES",
    "MS_SSIM_WEIGHTS",
    "CompoundLoss",
    "CrossEntropyLoss",
    "DeepSupervisionLoss",
    "DiceCELoss",
    "DiceLoss",
    "FocalLoss",
    "IoULoss",
    "LossInput",
    "MSSSIMLoss",
    "OverlapLoss",
    "SegmentationLoss",
    "TverskyLoss",
    "UNet3PlusHybridLoss",
    "cgm_targets",
    "check_inputs",
    "create_loss",
    "default_weights",
    "downsample_labels",
    "downsample_weight",
    "list_losses",
    "ms_ssim",
    "ms_ssim_plan",
]

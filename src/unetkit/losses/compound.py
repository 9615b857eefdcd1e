"""Weighted sums of losses: the generic :class:`CompoundLoss`, Dice + CE (nnU-Net) and the UNet 3+ hybrid."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from ..errors import ConfigError


class CompoundLoss(nn.Module):
    """Σ_name weight · loss_name, each term built from the loss registry by name.

    Args:
        weights: {registry name: weight ≥ 0}, e.g. ``{"dice": 1.0, "ce": 1.0}``. Terms of weight 0
            are built but not computed.
        options: {registry name: keyword arguments of that loss}.
        ignore_index: given to every term (so they agree on which pixels count).

    ``forward(logits, target, weight=None)`` passes the weight map to every term (those that do not
    use it, MS-SSIM, say so in their docs). :meth:`components` returns the unweighted terms for logging.

    Example:
        >>> loss = CompoundLoss({"dice": 1.0, "focal": 0.5}, options={"focal": {"gamma": 2.0}})
        >>> loss(torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))).shape
        torch.Size([])
    """

    def __init__(
        self,
        weights: Mapping[str, float],
        options: Optional[Mapping[str, Mapping[str, Any]]] = None,
        ignore_index: Optional[int] = None,
    ):
        super().__init__()
        from . import LOSSES  # the registry lists this class too

        if not isinstance(weights, Mapping) or not weights:
            raise ConfigError(
                f"CompoundLoss needs a non-empty {{loss name: weight}} mapping, got {weights!r}"
            )
        options = dict(options or {})
        unknown = sorted(set(options) - set(weights))
        if unknown:
            raise ConfigError(
                f"CompoundLoss options given for {', '.join(unknown)}, which are not among the "
                f"weighted terms {', '.join(weights)}"
            )
        self.terms = nn.ModuleDict()
        self.weights: dict[str, float] = {}
        for name, w in weights.items():
            if not isinstance(w, (int, float)) or w < 0:
                raise ConfigError(
                    f"CompoundLoss weight of {name!r} must be a number ≥ 0, got {w!r}"
                )
            LOSSES.get(name)  # an unknown name raises, listing the valid ones
            key = name.lower().replace("_", "-")
            kwargs = dict(options.get(name, {}))
            if ignore_index is not None:
                kwargs.setdefault("ignore_index", ignore_index)
            self.terms[key] = LOSSES.create(key, **kwargs)
            self.weights[key] = float(w)
        self.ignore_index = ignore_index

    def components(
        self, logits: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None
    ) -> dict[str, torch.Tensor]:
        """{name: unweighted loss} for every term of non-zero weight."""
        return {
            name: term(logits, target, weight)
            for name, term in self.terms.items()
            if self.weights[name]
        }

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Weighted sum of the terms for logits (B, K, *spatial) and target (B, *spatial)."""
        parts = self.components(logits, target, weight)
        return sum(self.weights[name] * value for name, value in parts.items())


class DiceCELoss(CompoundLoss):
    """nnU-Net's default loss: ``dice_weight`` · soft Dice + ``ce_weight`` · cross-entropy (1 and 1).

    Minimum 0 (nnU-Net reports −Dice + CE, minimum −1: same gradients).

    Args:
        dice_weight, ce_weight: term weights.
        include_background, batch_dice, smooth_nr, smooth_dr: of the Dice term
            (:class:`~unetkit.losses.dice.DiceLoss`).
        class_weights, ce_reduction: of the CE term (:class:`~unetkit.losses.ce.CrossEntropyLoss`).
        ignore_index: label of pixels left out by both terms.
    """

    def __init__(
        self,
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        include_background: bool = False,
        batch_dice: bool = False,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        class_weights: Optional[Sequence[float]] = None,
        ce_reduction: str = "weighted_mean",
        ignore_index: Optional[int] = None,
    ):
        super().__init__(
            {"dice": dice_weight, "ce": ce_weight},
            options={
                "dice": dict(
                    include_background=include_background,
                    batch_dice=batch_dice,
                    smooth_nr=smooth_nr,
                    smooth_dr=smooth_dr,
                ),
                "ce": dict(class_weights=class_weights, reduction=ce_reduction),
            },
            ignore_index=ignore_index,
        )


class UNet3PlusHybridLoss(CompoundLoss):
    """UNet 3+'s hybrid loss: focal + MS-SSIM + IoU (weights 1, 1, 1), minimum 0.

    Apply it to every supervised output with :class:`~unetkit.losses.deep_supervision.DeepSupervisionLoss`
    (the paper gives each of the five outputs the same weight: ``weights=[1] * 5``).

    Args:
        focal_weight, ms_ssim_weight, iou_weight: term weights.
        gamma, alpha: of the focal term (:class:`~unetkit.losses.focal.FocalLoss`).
        include_background: of the MS-SSIM and IoU terms (default: foreground only).
        ignore_index: label of pixels left out by every term.
    """

    def __init__(
        self,
        focal_weight: float = 1.0,
        ms_ssim_weight: float = 1.0,
        iou_weight: float = 1.0,
        gamma: float = 2.0,
        alpha: Optional[Union[float, Sequence[float]]] = None,
        include_background: bool = False,
        ignore_index: Optional[int] = None,
    ):
        super().__init__(
            {"focal": focal_weight, "ms-ssim": ms_ssim_weight, "iou": iou_weight},
            options={
                "focal": dict(gamma=gamma, alpha=alpha),
                "ms-ssim": dict(include_background=include_background),
                "iou": dict(include_background=include_background),
            },
            ignore_index=ignore_index,
        )

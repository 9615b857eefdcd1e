"""Focal loss (Lin et al. 2017), softmax for K ≥ 2 and sigmoid for K = 1."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from ..errors import ConfigError
from .base import LossInput, SegmentationLoss, check_reduction, class_vector, reduce_pixels


class FocalLoss(SegmentationLoss):
    """FL(x) = −α_t · (1 − p_t)^γ · log p_t, p_t the probability of the true class t(x).

    K = 1 is the binary (sigmoid) focal loss of the paper; K ≥ 2 its softmax form. With γ = 0 and
    no α this is :class:`~unetkit.losses.ce.CrossEntropyLoss`.

    α: ``None`` (no factor); a float a ∈ [0, 1] gives 1 − a to the background (class 0) and a to
    every other class (the paper's binary α; MONAI's convention for softmax); a sequence gives one
    factor per class (length max(K, 2)).

    Reduction as :class:`CrossEntropyLoss`, except that α is not part of the normaliser (as in the
    paper): ``weighted_mean`` = Σ w·FL / Σ w with w = weight map × valid mask; ``mean`` = Σ w·FL / N.
    Minimum 0.

    Args:
        gamma: focusing parameter γ ≥ 0 (UNet 3+ and the paper: 2).
        alpha: class balance factor (see above).
        ignore_index: label of pixels left out.
        reduction: ``weighted_mean`` or ``mean``.
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: Optional[Union[float, Sequence[float]]] = None,
        ignore_index: Optional[int] = None,
        reduction: str = "weighted_mean",
    ):
        super().__init__(ignore_index)
        if gamma < 0:
            raise ConfigError(f"focal gamma must be ≥ 0, got {gamma}")
        if isinstance(alpha, (int, float)):
            if not 0.0 <= alpha <= 1.0:
                raise ConfigError(
                    f"focal alpha must be in [0, 1] (or one value per class), got {alpha}"
                )
            alpha = float(alpha)
        elif alpha is not None:
            alpha = tuple(float(a) for a in alpha)
        self.gamma = float(gamma)
        self.alpha = alpha
        self.reduction = check_reduction(reduction)

    def compute(self, inp: LossInput) -> torch.Tensor:
        logp_t = inp.log_probs().gather(1, inp.target.unsqueeze(1)).squeeze(1)
        one_minus_p = (-torch.expm1(logp_t)).clamp_min(1e-12)  # 1 − p_t, accurate near p_t = 1
        fl = -one_minus_p.pow(self.gamma) * logp_t
        if self.alpha is not None:
            alpha = self.alpha
            if isinstance(alpha, float):
                alpha = [1.0 - alpha] + [alpha] * (inp.num_classes - 1)
            fl = fl * class_vector(alpha, inp.num_classes, "focal alpha", inp.logits)[inp.target]
        return reduce_pixels(fl, inp, self.reduction)

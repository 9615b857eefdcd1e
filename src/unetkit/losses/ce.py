"""Cross-entropy (softmax, K ≥ 2) and binary cross-entropy (one sigmoid channel, K = 1) in one loss."""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from .base import LossInput, SegmentationLoss, check_reduction, class_vector, reduce_pixels


class CrossEntropyLoss(SegmentationLoss):
    """Pixel-wise cross-entropy with class weights and the U-Net per-pixel weight map.

    K ≥ 2: softmax cross-entropy −log p_t(x). K = 1: binary cross-entropy on σ(z), which equals the
    2-class cross-entropy with logits (0, z). The loss is

    * ``reduction="weighted_mean"`` (default): Σ w(x)·CE(x) / Σ w(x), with
      w(x) = class_weights[t(x)] · weight(x) · [t(x) ≠ ignore_index]. Without a weight map this is
      exactly ``torch.nn.functional.cross_entropy(weight=class_weights, ignore_index=…)``; with the
      U-Net border map it is the paper's energy Σ w·log p normalised by the total weight, so its scale
      does not depend on w0.
    * ``reduction="mean"``: Σ w(x)·CE(x) / N, N = number of non-ignored pixels (the energy per pixel;
      grows with the weight magnitude).

    Minimum 0 (perfect, confident prediction).

    Args:
        class_weights: one weight per class, length max(K, 2) (K = 1: background, foreground).
        ignore_index: label of pixels left out.
        reduction: ``weighted_mean`` or ``mean`` (see above).

    Example:
        >>> loss = CrossEntropyLoss(class_weights=(1.0, 3.0))
        >>> loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))  # log 2
        tensor(0.6931)
    """

    def __init__(
        self,
        class_weights: Optional[Sequence[float]] = None,
        ignore_index: Optional[int] = None,
        reduction: str = "weighted_mean",
    ):
        super().__init__(ignore_index)
        self.class_weights = (
            None if class_weights is None else tuple(float(c) for c in class_weights)
        )
        self.reduction = check_reduction(reduction)

    def compute(self, inp: LossInput) -> torch.Tensor:
        ce = -inp.log_probs().gather(1, inp.target.unsqueeze(1)).squeeze(1)
        cw = class_vector(self.class_weights, inp.num_classes, "class_weights", inp.logits)
        return reduce_pixels(ce, inp, self.reduction, None if cw is None else cw[inp.target])

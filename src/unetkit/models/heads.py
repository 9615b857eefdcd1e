"""Output heads: segmentation, deep supervision and the UNet 3+ classification-guided module."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from . import layers
from .blocks import ConvNormAct

#: Logit written into foreground channels of images the CGM judges empty (softmax/sigmoid ≈ 0).
CGM_SUPPRESSED_LOGIT = -1.0e4


class SegmentationHead(nn.Sequential):
    """Optional extra conv-norm-act layers, then a ``kernel_size`` conv to ``num_classes`` logits.

    Args:
        spatial_dims: 2 or 3.
        in_channels: width of the decoder map.
        num_classes: output channels (1: a single sigmoid channel; ≥ 2: softmax classes).
        kernel_size: 1 (U-Net) or 3 (UNet 3+).
        extra_convs: number of 3×3 conv-norm-act layers before the final conv.
        padding: ``same`` or ``valid`` (valid extra convs shrink the output).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        kernel_size: int = 1,
        extra_convs: int = 0,
        norm: str = "batch",
        act: str = "relu",
        bias: Optional[bool] = None,
        padding: str = "same",
    ):
        mods: list[nn.Module] = [
            ConvNormAct(
                spatial_dims, in_channels, in_channels, 3, padding, norm=norm, act=act, bias=bias
            )
            for _ in range(extra_convs)
        ]
        pad = (kernel_size - 1) // 2 if padding == "same" else 0
        mods.append(
            layers.conv(spatial_dims, in_channels, num_classes, kernel_size, padding=pad, bias=True)
        )
        super().__init__(*mods)


class ClassificationGuidedModule(nn.Module):
    """UNet 3+ CGM: dropout(0.5) → 1×1 conv to 2 → global max pool, on the bottleneck.

    Returns logits (B, 2) for (organ absent, organ present); train with BCE on their sigmoid
    against the one-hot presence target. Max-pooling before the sigmoid equals the paper's
    sigmoid-then-pool, since the sigmoid is monotonic.
    """

    def __init__(self, spatial_dims: int, in_channels: int, dropout: float = 0.5):
        super().__init__()
        self.dropout = layers.dropout(spatial_dims, dropout)
        self.conv = layers.conv(spatial_dims, in_channels, 2, 1)

    def forward(self, bottleneck: torch.Tensor) -> torch.Tensor:
        y = self.conv(self.dropout(bottleneck))
        return torch.amax(y, dim=tuple(range(2, y.dim())))


def gate_with_cgm(logits: torch.Tensor, cls_logits: torch.Tensor) -> torch.Tensor:
    """Suppress the foreground of images the CGM calls empty.

    Args:
        logits: (B, K, *spatial) segmentation logits; channel 0 is background when K ≥ 2.
        cls_logits: (B, 2) CGM logits; an image is "present" when logit 1 > logit 0.

    Returns:
        ``logits`` with foreground channels set to :data:`CGM_SUPPRESSED_LOGIT` on "absent" images
        (the paper multiplies the sigmoid maps by the 0/1 decision; this is that, in logit space).
    """
    present = (cls_logits[:, 1] > cls_logits[:, 0]).view(-1, *([1] * (logits.dim() - 1)))
    fg = torch.ones(logits.shape[1], dtype=torch.bool, device=logits.device)
    if logits.shape[1] > 1:
        fg[0] = False
    fg = fg.view(1, -1, *([1] * (logits.dim() - 2)))
    suppressed = torch.full_like(logits, CGM_SUPPRESSED_LOGIT)
    return torch.where(fg & ~present, suppressed, logits)

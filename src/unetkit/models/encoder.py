"""The contracting path, built in a loop over per-stage lists (depth is data, not code)."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import nn

from ..errors import ConfigError
from . import layers
from .blocks import ConvBlock, make_downsample


class Encoder(nn.Module):
    """U-Net contracting path: stage 0 at full resolution, each later stage down-samples ×2 first.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        features: output width of each stage, shallowest first; its length is the number of stages
            (depth + 1: the paper's (64, 128, 256, 512, 1024) has 4 down-samplings).
        n_convs: convolutions per stage (scalar or one per stage).
        kernel_size: conv kernel size.
        padding: ``"same"`` or ``"valid"`` (unpadded, the original U-Net).
        dilation: conv dilation (scalar or one per stage).
        downsample: ``maxpool``, ``avgpool``, ``conv2`` or ``conv3`` (see ``make_downsample``).
        norm, act, bias: see :class:`~unetkit.models.blocks.ConvNormAct`.
        residual: residual stage blocks.
        double_second_conv: the first conv of each stage has half the stage width (3D U-Net,
            the UNet 3+ Keras option).
        dropout: drop-out probability on the outputs of the last ``dropout_stages`` stages (the
            paper puts drop-out at the end of the contracting path).
        dropout_stages: how many of the deepest stages get drop-out.

    Shapes:
        ``forward(x)`` with x (B, in_channels, *S) returns a list with one map per stage,
        stage i of shape (B, features[i], *S_i).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        features: Sequence[int],
        n_convs: Union[int, Sequence[int]] = 2,
        kernel_size: int = 3,
        padding: str = "same",
        dilation: Union[int, Sequence[int]] = 1,
        downsample: str = "maxpool",
        norm: str = "batch",
        act: str = "relu",
        bias: Optional[bool] = None,
        residual: bool = False,
        double_second_conv: bool = False,
        dropout: float = 0.0,
        dropout_stages: int = 2,
    ):
        super().__init__()
        layers.check_spatial_dims(spatial_dims)
        features = [int(f) for f in features]
        if len(features) < 2:
            raise ConfigError(
                f"features needs at least 2 stages (one down-sampling), got {features}"
            )
        if any(f < 1 for f in features):
            raise ConfigError(f"every stage width must be ≥ 1, got {features}")
        if in_channels < 1:
            raise ConfigError(f"in_channels must be ≥ 1, got {in_channels}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd, got {kernel_size}")
        n = len(features)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.features = features
        self.padding = padding
        self.kernel_size = kernel_size
        self.n_convs = [int(c) for c in layers.per_stage(n_convs, n, "n_convs")]
        self.dilation = [int(d) for d in layers.per_stage(dilation, n, "dilation")]
        self.downsample_mode = downsample
        self.stages = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        prev = in_channels
        for i, width in enumerate(features):
            if i > 0:
                self.downsamples.append(
                    make_downsample(downsample, spatial_dims, prev, norm, act, bias, padding)
                )
            self.stages.append(
                ConvBlock(
                    spatial_dims,
                    prev,
                    width,
                    mid_channels=width // 2 if double_second_conv else None,
                    n_convs=self.n_convs[i],
                    kernel_size=kernel_size,
                    padding=padding,
                    dilation=self.dilation[i],
                    norm=norm,
                    act=act,
                    bias=bias,
                    residual=residual,
                )
            )
            prev = width
        if not 0 <= dropout_stages <= n:
            raise ConfigError(f"dropout_stages must be between 0 and {n}, got {dropout_stages}")
        self.dropouts = nn.ModuleList(
            [
                layers.dropout(spatial_dims, dropout if i >= n - dropout_stages else 0.0)
                for i in range(n)
            ]
        )

    def stage_shrink(self, i: int) -> int:
        """Pixels lost per axis by stage ``i``'s convolutions (0 with same padding)."""
        if self.padding == "same":
            return 0
        return self.n_convs[i] * self.dilation[i] * (self.kernel_size - 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = self.downsamples[i - 1](x)
            x = self.dropouts[i](stage(x))
            skips.append(x)
        return skips

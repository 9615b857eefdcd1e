"""UNet++ nested dense skip pathways (Zhou et al., 2018)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ...errors import ConfigError
from .. import layers
from ..blocks import ConvBlock, Upsample
from ..encoder import Encoder


class UNetPlusPlusDecoder(nn.Module):
    """Nested decoder: node X(i, j), j ≥ 1, convolves the concatenation of X(i, 0 … j−1) and the
    up-sampled X(i+1, j−1); X(i, 0) are the encoder stages. Up-sampling into row ``i`` mirrors the
    encoder's stride into stage ``i + 1`` and row ``i``'s nodes use stage ``i``'s kernel sizes (per
    axis for an anisotropic encoder).

    Args:
        encoder: the encoder served; must use same padding.
        upsample: ``interpolate`` (bilinear, the common PyTorch port) or ``transpose`` (2×2
            transposed conv to the level's width, the authors' Keras code).
        norm, act, bias, residual: for every node block.

    Shapes:
        ``forward(skips)`` returns the top-row nodes ``[X(0,1), X(0,2), …, X(0,depth)]``, each of
        width ``encoder.features[0]`` at full resolution.
    """

    def __init__(
        self,
        encoder: Encoder,
        upsample: str = "interpolate",
        norm: str = "batch",
        act: str = "relu",
        bias: Optional[bool] = None,
        residual: bool = False,
    ):
        super().__init__()
        if encoder.padding != "same":
            raise ConfigError("UNet++ needs padding='same'")
        feats = encoder.features
        n = len(feats)
        dims = encoder.spatial_dims
        self.depth = n - 1
        self.ups = nn.ModuleDict()
        self.nodes = nn.ModuleDict()
        for j in range(1, n):
            for i in range(n - j):
                up = Upsample(upsample, dims, feats[i + 1], feats[i], encoder.strides[i])
                in_ch = feats[i] * j + up.out_channels
                self.ups[f"{i}_{j}"] = up
                self.nodes[f"{i}_{j}"] = ConvBlock(
                    dims,
                    in_ch,
                    feats[i],
                    n_convs=encoder.n_convs[i],
                    kernel_size=encoder.kernel_sizes[i],
                    padding="same",
                    dilation=encoder.dilation[i],
                    norm=norm,
                    act=act,
                    bias=bias,
                    residual=residual,
                )
        self.out_channels = [feats[0]] * self.depth

    def forward(self, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        n = len(skips)
        grid: list[list[torch.Tensor]] = [[s] for s in skips]  # grid[i][j] = X(i, j)
        for j in range(1, n):
            for i in range(n - j):
                key = f"{i}_{j}"
                up = layers.match_size(self.ups[key](grid[i + 1][j - 1]), grid[i][0].shape[2:])
                grid[i].append(self.nodes[key](grid[i][:j] + [up]))  # joined in the block
        return grid[0][1:]

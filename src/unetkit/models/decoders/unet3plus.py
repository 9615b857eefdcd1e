"""UNet 3+ full-scale skip decoder, as loops over (source level, target level) pairs."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ...errors import ConfigError
from .. import layers
from ..blocks import ConvNormAct
from ..encoder import Encoder


class _FullScaleInput(nn.Module):
    """Bring one source map to the target level: pool (shallower) or resize (deeper), then conv."""

    def __init__(
        self,
        dims: int,
        in_channels: int,
        out_channels: int,
        pool: int,
        norm: str,
        act: str,
        bias: Optional[bool],
    ):
        super().__init__()
        self.pool = layers.max_pool(dims, pool) if pool > 1 else nn.Identity()
        self.conv = ConvNormAct(
            dims, in_channels, out_channels, 3, "same", norm=norm, act=act, bias=bias
        )

    def forward(self, x: torch.Tensor, size: list[int]) -> torch.Tensor:
        # pooled maps already have the target size unless strided-conv down-sampling rounded up;
        # deeper maps are bilinearly up-sampled to it (to an explicit size, so odd sizes work)
        return self.conv(layers.resize_to(self.pool(x), size))


class UNet3PlusDecoder(nn.Module):
    """Full-scale decoder of UNet 3+ (Huang et al., 2020).

    Each decoder level ``t`` fuses one map from every level ``s``: shallower encoder maps are
    max-pooled by ``2**(t - s)``, the same-level encoder map is used directly, deeper decoder maps
    (and the bottleneck) are bilinearly resized; each is brought to ``cat_channels`` by a 3×3
    conv-norm-act, and the ``n_levels · cat_channels`` concatenation goes through one more 3×3
    conv-norm-act.

    Args:
        encoder: the encoder served; must use same padding.
        cat_channels: width of each of the full-scale inputs (64 in the paper; default
            ``encoder.features[0]``).
        norm, act, bias: for every decoder conv.

    Shapes:
        ``forward(skips)`` returns a list with one map per decoder level, shallowest first, each of
        width ``fused_channels = cat_channels · len(encoder.features)``.
    """

    def __init__(
        self,
        encoder: Encoder,
        cat_channels: Optional[int] = None,
        norm: str = "batch",
        act: str = "relu",
        bias: Optional[bool] = None,
    ):
        super().__init__()
        if encoder.padding != "same":
            raise ConfigError(
                "UNet 3+ needs padding='same' (its full-scale skips resize maps freely)"
            )
        feats = encoder.features
        n = len(feats)
        dims = encoder.spatial_dims
        self.cat_channels = cat = int(cat_channels or feats[0])
        self.fused_channels = fused = cat * n
        self.inputs = nn.ModuleList()
        self.fuse = nn.ModuleList()
        for t in range(n - 1):  # target decoder level; built for every t, used deepest first
            row = nn.ModuleList()
            for s in range(n):
                if s <= t:
                    src_width, pool = feats[s], 2 ** (t - s)
                else:
                    src_width, pool = (feats[s] if s == n - 1 else fused), 1
                row.append(_FullScaleInput(dims, src_width, cat, pool, norm, act, bias))
            self.inputs.append(row)
            self.fuse.append(
                ConvNormAct(dims, fused, fused, 3, "same", norm=norm, act=act, bias=bias)
            )
        self.out_channels = [fused] * (n - 1)

    def forward(self, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        n = len(skips)
        dec: list[torch.Tensor] = list(
            skips
        )  # dec[s]: encoder map for s <= t, decoder map for s > t
        for t in range(n - 2, -1, -1):
            size = list(skips[t].shape[2:])
            joined = torch.cat([self.inputs[t][s](dec[s], size) for s in range(n)], dim=1)
            # the full-scale inputs are not kept while the fusing conv runs (with autograd off
            # they are freed at once: n · cat_channels maps at this level's resolution)
            dec[t] = self.fuse[t](joined)
            del joined
        return dec[: n - 1]

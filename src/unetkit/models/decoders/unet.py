"""The U-Net expanding path: up-sample, join the skip, convolve; one loop over levels."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import nn

from .. import layers
from ..blocks import ConvBlock, Upsample, canonical_upsample
from ..encoder import Encoder


class UNetDecoder(nn.Module):
    """Expanding path for ``encoder``.

    Level ``l`` (``depth - 1`` … 0) up-samples the map from below (mirroring, per axis, the
    encoder's stride into stage ``l + 1``), joins it with encoder stage ``l`` (the skip is
    centre-cropped with valid padding; the up-sampled map is padded/cropped to the skip with same
    padding, so any input size works) and applies a :class:`ConvBlock` with stage ``l``'s kernel
    sizes.

    Widths: with a learned up-sampling (``transpose``, ``transpose3``, ``interpolate_conv``) the
    up-sampling maps to the skip width and the block maps ``2·skip`` → ``skip`` (the paper).
    With parameter-free ``interpolate`` the concatenation is ``skip + below``, the block's middle
    width is half of it and its output is ``features[l] // 2`` (``features[0]`` at the top): the
    layout of the popular bilinear PyTorch U-Net, whose encoder bottom is halved to match.

    Args:
        encoder: the encoder this decoder serves (widths, padding, dims are read from it).
        upsample: see :class:`~unetkit.models.blocks.Upsample`.
        n_convs: convolutions per decoder block (scalar or one per level, shallowest first).
        norm, act, bias, residual: as for the encoder blocks.

    Shapes:
        ``forward(skips)`` returns a list with one map per level, shallowest (full resolution)
        first: item ``l`` has ``out_channels[l]`` channels.
    """

    def __init__(
        self,
        encoder: Encoder,
        upsample: str = "transpose",
        n_convs: Union[int, Sequence[int], None] = None,
        norm: str = "batch",
        act: str = "relu",
        bias: Optional[bool] = None,
        residual: bool = False,
    ):
        super().__init__()
        self.upsample_mode = canonical_upsample(upsample)
        feats = encoder.features
        n_levels = len(feats) - 1
        dims = encoder.spatial_dims
        self.padding = encoder.padding
        self.n_convs = [
            int(c)
            for c in layers.per_stage(
                n_convs if n_convs is not None else encoder.n_convs[:-1],
                n_levels,
                "decoder n_convs",
            )
        ]
        self.dilation = encoder.dilation[:-1]
        self.kernel_size = encoder.kernel_size
        self.kernel_sizes = encoder.kernel_sizes[:-1]
        ups, blocks = [None] * n_levels, [None] * n_levels
        self.out_channels = [0] * n_levels
        below = feats[-1]
        for lvl in range(n_levels - 1, -1, -1):
            skip = feats[lvl]
            if self.upsample_mode == "interpolate":
                up = Upsample("interpolate", dims, below, below, encoder.strides[lvl])
                cat = skip + below
                out = feats[lvl] // 2 if lvl > 0 else feats[0]
                mid = cat // 2
            else:
                up = Upsample(self.upsample_mode, dims, below, skip, encoder.strides[lvl])
                cat, out, mid = 2 * skip, skip, skip
            ups[lvl] = up
            blocks[lvl] = ConvBlock(
                dims,
                cat,
                out,
                mid_channels=mid,
                n_convs=self.n_convs[lvl],
                kernel_size=self.kernel_sizes[lvl],
                padding=encoder.padding,
                dilation=self.dilation[lvl],
                norm=norm,
                act=act,
                bias=bias,
                residual=residual,
            )
            self.out_channels[lvl] = out
            below = out
        self.ups = nn.ModuleList(ups)
        self.blocks = nn.ModuleList(blocks)

    def level_shrink(self, lvl: int, axis: int = 0) -> int:
        """Pixels lost along ``axis`` by level ``lvl``'s block (0 with same padding)."""
        if self.padding == "same":
            return 0
        return self.n_convs[lvl] * self.dilation[lvl] * (self.kernel_sizes[lvl][axis] - 1)

    def forward(
        self, skips: list[torch.Tensor], all_levels: bool = True
    ) -> list[Optional[torch.Tensor]]:
        """The decoder maps, shallowest first (``None`` for levels below 0 when not ``all_levels``).

        With autograd off (prediction), each map is dropped as soon as it has been used: the
        entries of ``skips`` are set to ``None`` once joined, the up-sampled map and the skip are
        handed to the block as a list it empties (:meth:`ConvBlock.forward`), and without
        ``all_levels`` (no deep supervision) the deeper levels' outputs are not kept. A U-Net
        tile's peak memory sits at the top level, where all of these would otherwise be alive
        beside the full-resolution concatenation; with same padding the skip is also copied into
        the joined map before the up-sampling runs (the 64-wide net's 608² fp32 tile: ≈ 0.78 GB
        → ≈ 0.4 GB of activations at the peak). With autograd on, ``skips`` is left as it is (the backward pass keeps what it
        needs anyway).
        """
        release = not torch.is_grad_enabled()
        # in place only when run eagerly: a traced and frozen graph (``fast="jit"``) mis-handles
        # writes into slices of an empty tensor, and compiled graphs plan their own buffers
        in_place = release and not (torch.jit.is_tracing() or torch.compiler.is_compiling())
        x = skips[-1]
        if release:
            skips[-1] = None
        outs: list[Optional[torch.Tensor]] = [None] * (len(skips) - 1)
        for lvl in range(len(skips) - 2, -1, -1):
            skip = skips[lvl]
            if release:
                skips[lvl] = None
            if in_place and self.padding == "same":
                # join in place: the skip is copied into the joined map and freed before the
                # up-sampled map exists, so skip, up-sampled and joined map are never alive at once
                joined = _empty_join(skip, self.blocks[lvl].in_channels)
                c = skip.shape[1]
                joined[:, :c] = skip
                del skip
                joined[:, c:] = layers.match_size(self.ups[lvl](x), joined.shape[2:])
                x = None  # the map from below lives on only in ``outs`` (all_levels)
                parts = [joined]
                del joined
            else:
                up = self.ups[lvl](x)
                x = None
                if self.padding == "valid":
                    skip = layers.center_crop(skip, up.shape[2:])
                else:
                    up = layers.match_size(up, skip.shape[2:])
                parts = [skip, up]
                del skip, up
            x = self.blocks[lvl](parts)
            if all_levels or lvl == 0:
                outs[lvl] = x
        return outs


def _empty_join(skip: torch.Tensor, channels: int) -> torch.Tensor:
    """An uninitialised ``(B, channels, *spatial)`` map in ``skip``'s dtype, device and memory format
    (channels-last stays channels-last, as ``torch.cat`` keeps it). Under autocast the block's first
    convolution casts its input to the autocast type whatever the join's dtype, so joining in the
    skip's dtype gives the same result as ``torch.cat``'s type promotion."""
    fmt = torch.contiguous_format
    if not skip.is_contiguous():
        for candidate in (torch.channels_last, torch.channels_last_3d):
            try:
                if skip.is_contiguous(memory_format=candidate):
                    fmt = candidate
                    break
            except RuntimeError:  # channels_last needs 4 dims, channels_last_3d 5
                continue
    return torch.empty(
        (skip.shape[0], channels, *skip.shape[2:]),
        dtype=skip.dtype,
        device=skip.device,
        memory_format=fmt,
    )

"""UNet++ (Zhou et al., 2018): nested dense skip pathways, optional deep supervision."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import nn

from .base import ModelOutput, SegmentationModel, infer_depth, resolve_features
from .decoders import UNetPlusPlusDecoder
from .encoder import Encoder
from .heads import SegmentationHead


class UNetPlusPlus(SegmentationModel):
    """UNet++ with optional deep supervision on the top-row nodes X(0, 1 … depth).

    Args:
        upsample: ``interpolate`` (bilinear, as the common PyTorch port) or ``transpose``.
        deep_supervision: 1×1-conv heads on X(0, 1 … depth−1), returned (deepest node first) in
            ``outputs="all"`` mode; the main output is the head on X(0, depth).
        strides, kernel_sizes: per-axis down-sampling strides and per-stage kernel sizes for
            anisotropic volumes, as for :class:`~unetkit.models.unet.UNet`.
        Other arguments as for :class:`~unetkit.models.unet.UNet` (same padding only).
    """

    arch_name = "UNetPlusPlus"

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        num_classes: int = 2,
        features: Optional[Sequence[int]] = None,
        base_features: int = 32,
        depth: Optional[int] = None,
        feature_scale: float = 1,
        n_convs: Union[int, Sequence[int]] = 2,
        kernel_size: int = 3,
        dilation: Union[int, Sequence[int]] = 1,
        downsample: str = "maxpool",
        upsample: str = "interpolate",
        norm: str = "batch",
        decoder_norm: Optional[str] = None,
        act: str = "relu",
        bias: Optional[bool] = None,
        residual: bool = False,
        double_second_conv: bool = False,
        head_kernel_size: int = 1,
        deep_supervision: bool = False,
        outputs: Optional[str] = None,
        init: str = "he",
        strides: Optional[Sequence[Union[int, Sequence[int]]]] = None,
        kernel_sizes: Optional[Sequence[Union[int, Sequence[int]]]] = None,
    ):
        kwargs = dict(locals())
        super().__init__(spatial_dims, in_channels, num_classes, deep_supervision, outputs)
        self.init_kwargs = {k: v for k, v in kwargs.items() if k not in ("self", "__class__")}
        depth = infer_depth(depth, features, strides, kernel_sizes)
        feats = resolve_features(features, base_features, depth, feature_scale)
        self.encoder = Encoder(
            spatial_dims,
            in_channels,
            feats,
            n_convs,
            kernel_size,
            "same",
            dilation,
            downsample,
            norm,
            act,
            bias,
            residual,
            double_second_conv,
            strides=strides,
            kernel_sizes=kernel_sizes,
        )
        self.decoder = UNetPlusPlusDecoder(
            self.encoder, upsample, decoder_norm or norm, act, bias, residual
        )
        self.head = SegmentationHead(spatial_dims, feats[0], num_classes, head_kernel_size)
        self.aux_heads = nn.ModuleList(
            [
                SegmentationHead(spatial_dims, feats[0], num_classes, head_kernel_size)
                for _ in range(len(feats) - 2)
            ]
        )
        self.initialise(init)

    def forward_all(self, x: torch.Tensor, with_aux: bool = True) -> ModelOutput:
        top = self.decoder(self.encoder(x))  # X(0,1) … X(0,depth)
        logits = self.head(top[-1])
        aux = (
            [h(t) for h, t in zip(self.aux_heads, reversed(top[:-1]))]
            if self.deep_supervision and with_aux
            else []
        )
        return ModelOutput(logits, aux, None)

    def inactive_modules(self) -> list[nn.Module]:
        return [] if self.deep_supervision else [self.aux_heads]

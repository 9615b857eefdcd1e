"""UNet 3+ (Huang et al., ICASSP 2020): full-scale skips, full-scale deep supervision, CGM."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import nn

from ..errors import ConfigError
from . import layers
from .base import ModelOutput, SegmentationModel, resolve_features
from .decoders import UNet3PlusDecoder
from .encoder import Encoder
from .heads import ClassificationGuidedModule, SegmentationHead


class UNet3Plus(SegmentationModel):
    """UNet 3+ with the options of the official code and of the popular Keras transcription.

    Args:
        spatial_dims, in_channels, num_classes, features, base_features, depth, feature_scale,
        n_convs, kernel_size, dilation, downsample, norm, act, bias, residual, double_second_conv:
            encoder options as for :class:`~unetkit.models.unet.UNet` (same padding only).
        decoder_norm: norm of the decoder convs (default ``norm``).
        cat_channels: width of each full-scale input (64 in the paper; default ``features[0]``).
        head_kernel_size: output conv kernel (3, as the paper).
        deep_supervision: 3×3-conv heads on every decoder level and the bottleneck, bilinearly
            up-sampled to full size (the paper's full-scale deep supervision).
        cgm: use the classification-guided module. Its logits are returned in ``outputs="all"``
            mode (train them with BCE); in ``outputs="logits"`` mode they gate the segmentation.
        cgm_dropout: CGM drop-out probability (0.5).
        outputs, init: see :class:`~unetkit.models.base.SegmentationModel` and ``UNet``.
        strides, kernel_sizes: accepted only when they describe the isotropic net (2 on every axis,
            ``kernel_size`` everywhere): the full-scale skips pool and resize between every pair of
            levels, which per-axis strides would change; anisotropic volumes use the ``unet``
            presets.
    """

    arch_name = "UNet3Plus"

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        num_classes: int = 1,
        features: Optional[Sequence[int]] = None,
        base_features: int = 64,
        depth: Optional[int] = None,
        feature_scale: float = 1,
        n_convs: Union[int, Sequence[int]] = 2,
        kernel_size: int = 3,
        dilation: Union[int, Sequence[int]] = 1,
        downsample: str = "maxpool",
        norm: str = "batch",
        decoder_norm: Optional[str] = None,
        act: str = "relu",
        bias: Optional[bool] = None,
        residual: bool = False,
        double_second_conv: bool = False,
        cat_channels: Optional[int] = None,
        head_kernel_size: int = 3,
        deep_supervision: bool = False,
        cgm: bool = False,
        cgm_dropout: float = 0.5,
        outputs: Optional[str] = None,
        init: str = "he",
        strides: Optional[Sequence[Union[int, Sequence[int]]]] = None,
        kernel_sizes: Optional[Sequence[Union[int, Sequence[int]]]] = None,
    ):
        kwargs = dict(locals())
        super().__init__(spatial_dims, in_channels, num_classes, deep_supervision, outputs, cgm)
        self.init_kwargs = {k: v for k, v in kwargs.items() if k not in ("self", "__class__")}
        feats = resolve_features(features, base_features, depth, feature_scale)
        dec_norm = decoder_norm or norm
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
        if not self.encoder.is_isotropic:
            raise ConfigError(
                f"UNet 3+ takes no per-axis strides={strides!r} / kernel_sizes={kernel_sizes!r}; "
                f"use a 'unet' preset (unet, unet-residual, unet-strided, unet3d) for anisotropic volumes"
            )
        self.decoder = UNet3PlusDecoder(self.encoder, cat_channels, dec_norm, act, bias)
        fused = self.decoder.fused_channels
        self.head = SegmentationHead(spatial_dims, fused, num_classes, head_kernel_size)
        widths = [fused] * (len(feats) - 2) + [
            feats[-1]
        ]  # decoder levels 1 … depth−1, then bottleneck
        self.aux_heads = nn.ModuleList(
            [SegmentationHead(spatial_dims, w, num_classes, head_kernel_size) for w in widths]
        )
        self.cgm_head = ClassificationGuidedModule(spatial_dims, feats[-1], cgm_dropout)
        self.initialise(init)

    def forward_all(self, x: torch.Tensor, with_aux: bool = True) -> ModelOutput:
        skips = self.encoder(x)
        dec = self.decoder(skips)
        size = list(x.shape[2:])
        logits = self.head(dec[0])
        aux = []
        if self.deep_supervision and with_aux:
            sources = dec[1:] + [skips[-1]]
            aux = [layers.resize_to(h(s), size) for h, s in zip(self.aux_heads, sources)]
        cls_logits = self.cgm_head(skips[-1]) if self.cgm else None
        return ModelOutput(logits, aux, cls_logits)

    def inactive_modules(self) -> list[nn.Module]:
        mods: list[nn.Module] = []
        if not self.deep_supervision:
            mods.append(self.aux_heads)
        if not self.cgm:
            mods.append(self.cgm_head)
        return mods

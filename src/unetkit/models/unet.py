"""U-Net: the original (valid convolutions, 572 → 388) and the same-padding variants, 2D and 3D."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import nn

from . import layers
from .base import ModelOutput, SegmentationModel, down_size, infer_depth, resolve_features
from .blocks import canonical_upsample
from .decoders import UNetDecoder
from .encoder import Encoder
from .heads import SegmentationHead


class UNet(SegmentationModel):
    """U-Net (Ronneberger et al., 2015) and its common variants, in one class.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        num_classes: output channels: 1 → one sigmoid (binary) channel; K ≥ 2 → softmax over K
            classes, background included.
        features: per-stage widths, shallowest first (default ``base_features·2**i /
            feature_scale`` for ``depth + 1`` stages: 64, 128, 256, 512, 1024).
        base_features, depth, feature_scale: see ``features``.
        n_convs: convolutions per stage (scalar or per stage).
        kernel_size: conv kernel size (3).
        padding: ``same`` (any input size) or ``valid`` (unpadded, as the paper: output is smaller
            than the input and only some sizes work — see :meth:`valid_input_size`).
        dilation: conv dilation (scalar or per stage).
        downsample: ``maxpool``, ``avgpool``, ``conv2`` or ``conv3``.
        upsample: ``transpose`` (2×2), ``transpose3``, ``interpolate`` (bi/trilinear; halves the
            bottom and decoder widths, the popular bilinear layout) or ``interpolate_conv``.
        norm: ``batch``, ``instance``, ``group``, ``layer`` or ``none``; ``encoder_norm`` and
            ``decoder_norm`` override it on one side.
        act: activation name.
        bias: conv bias; ``None`` = only for convs without a norm.
        residual: residual blocks (1×1 projection where widths differ).
        double_second_conv: first conv of each stage at half width.
        dropout, dropout_stages: drop-out on the deepest encoder stages.
        head_convs: extra 3×3 conv-norm-act layers before the output conv.
        head_kernel_size: kernel of the output conv (1).
        deep_supervision: also return 1×1-conv logits of decoder levels 1 … depth−1 (at their own
            resolution, as nnU-Net) when ``outputs == "all"``.
        outputs: ``logits`` or ``all`` (default: ``all`` when deep supervision is on).
        init: ``he`` (N(0, 2/fan_in), the paper) or ``torch`` (PyTorch defaults).
        strides: per down-sampling (``depth`` entries), 2 or a per-axis list of 1 and 2: an
            anisotropic volume pools its coarse axis only once its spacing is fine enough (e.g.
            ``[[1, 2, 2], [1, 2, 2], [2, 2, 2]]`` for 3 mm slices at 0.8 mm in-plane; see
            :func:`unetkit.planning.anisotropic_topology`). Every down- and up-sampling mode follows
            it; the pooling period becomes per axis. ``None`` = 2 on every axis.
        kernel_sizes: per stage (``depth + 1`` entries), an odd int or a per-axis list (``[1, 3,
            3]`` where an axis is still coarse); decoder level ``l`` uses stage ``l``'s. ``None`` =
            ``kernel_size`` everywhere. When ``depth`` and ``features`` are unset, the depth is
            ``len(strides)`` (or ``len(kernel_sizes) - 1``).

    Example:
        >>> net = UNet(in_channels=1, num_classes=2, padding="valid")
        >>> net.output_size(572)
        388
    """

    arch_name = "UNet"

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        num_classes: int = 2,
        features: Optional[Sequence[int]] = None,
        base_features: int = 64,
        depth: Optional[int] = None,
        feature_scale: float = 1,
        n_convs: Union[int, Sequence[int]] = 2,
        kernel_size: int = 3,
        padding: str = "same",
        dilation: Union[int, Sequence[int]] = 1,
        downsample: str = "maxpool",
        upsample: str = "transpose",
        norm: str = "batch",
        encoder_norm: Optional[str] = None,
        decoder_norm: Optional[str] = None,
        act: str = "relu",
        bias: Optional[bool] = None,
        residual: bool = False,
        double_second_conv: bool = False,
        dropout: float = 0.0,
        dropout_stages: int = 2,
        head_convs: int = 0,
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
        upsample = canonical_upsample(upsample)
        if upsample == "interpolate":  # concatenation skip + below stays 2·skip
            feats = feats[:-1] + [feats[-1] // 2]
        enc_norm, dec_norm = encoder_norm or norm, decoder_norm or norm
        self.encoder = Encoder(
            spatial_dims,
            in_channels,
            feats,
            n_convs,
            kernel_size,
            padding,
            dilation,
            downsample,
            enc_norm,
            act,
            bias,
            residual,
            double_second_conv,
            dropout,
            dropout_stages,
            strides,
            kernel_sizes,
        )
        self.decoder = UNetDecoder(self.encoder, upsample, None, dec_norm, act, bias, residual)
        self.head = SegmentationHead(
            spatial_dims,
            self.decoder.out_channels[0],
            num_classes,
            head_kernel_size,
            head_convs,
            dec_norm,
            act,
            bias,
            padding,
        )
        self.head_shrink = (
            0 if padding == "same" else head_convs * (kernel_size - 1) + head_kernel_size - 1
        )
        self.aux_heads = nn.ModuleList(
            [layers.conv(spatial_dims, w, num_classes, 1) for w in self.decoder.out_channels[1:]]
        )
        self.initialise(init)

    def forward_all(self, x: torch.Tensor, with_aux: bool = True) -> ModelOutput:
        dec = self.decoder(self.encoder(x), all_levels=self.deep_supervision and with_aux)
        logits = self.head(dec[0])
        aux = (
            [h(d) for h, d in zip(self.aux_heads, dec[1:])]
            if self.deep_supervision and with_aux
            else []
        )
        return ModelOutput(logits, aux, None)

    def inactive_modules(self) -> list[nn.Module]:
        return [] if self.deep_supervision else [self.aux_heads]

    def describe_sizes(self) -> str:
        if self.encoder.padding == "valid":
            k = max(max(ks) for ks in self.encoder.kernel_sizes)
            return (
                f"valid-padding U-Net (depth {len(self.encoder.features) - 1}): every down-sampling must see an "
                f"even size and every conv a size > {k - 1}"
            )
        return super().describe_sizes()

    def _axis_output_size(self, size: int, axis: int = 0) -> Optional[int]:
        enc, dec = self.encoder, self.decoder
        s = size
        skips = []
        for i in range(len(enc.features)):
            if i > 0:
                stride = enc.strides[i - 1][axis]
                if stride > 1 and (s < 2 or (enc.padding == "valid" and s % 2)):
                    return None
                s = down_size(s, enc.downsample_mode, stride)
            s -= enc.stage_shrink(i, axis)
            if s < 1:
                return None
            skips.append(s)
        for lvl in range(len(enc.features) - 2, -1, -1):
            s = enc.strides[lvl][axis] * s if enc.padding == "valid" else skips[lvl]
            if s > skips[lvl]:
                return None
            s -= dec.level_shrink(lvl, axis)
            if s < 1:
                return None
        s -= self.head_shrink
        return s if s >= 1 else None

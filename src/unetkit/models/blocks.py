"""Building blocks shared by every architecture: conv-norm-act, the stage block, down/up-sampling."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import nn

from ..errors import ConfigError
from ..utils import per_axis
from . import layers

DOWNSAMPLE_MODES = ("maxpool", "avgpool", "conv2", "conv3")
UPSAMPLE_MODES = ("transpose", "transpose3", "interpolate", "interpolate_conv")
IntOrAxes = Union[int, Sequence[int]]
_UPSAMPLE_ALIASES = {
    "bilinear": "interpolate",
    "trilinear": "interpolate",
    "nearest": "interpolate",
}


class ConvNormAct(nn.Sequential):
    """Convolution → norm → activation (→ drop-out).

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: channel counts.
        kernel_size: odd kernel size, one int or one per axis (``(1, 3, 3)`` for a stage where the
            first axis is still coarse).
        padding: ``"same"`` keeps the size (padding ``dilation * (k - 1) / 2`` per axis);
            ``"valid"`` pads nothing (the original U-Net), shrinking each side by
            ``dilation * (k - 1) / 2``.
        stride: convolution stride (2 for strided down-sampling; int or per axis).
        dilation: convolution dilation.
        norm: see :func:`unetkit.models.layers.norm`.
        act: see :func:`unetkit.models.layers.activation`; ``None`` for no activation.
        bias: conv bias; ``None`` means "only when there is no norm after it".
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrAxes = 3,
        padding: str = "same",
        stride: IntOrAxes = 1,
        dilation: int = 1,
        norm: str = "batch",
        act: Optional[str] = "relu",
        bias: Optional[bool] = None,
    ):
        if padding not in ("same", "valid"):
            raise ConfigError(f"padding must be 'same' or 'valid', got {padding!r}")
        kernel_size = layers.compact(kernel_size)
        if padding == "valid":
            pad: IntOrAxes = 0
        elif isinstance(kernel_size, int):
            pad = dilation * (kernel_size - 1) // 2
        else:
            pad = tuple(dilation * (k - 1) // 2 for k in kernel_size)
        use_bias = (norm == "none") if bias is None else bias
        mods: list[nn.Module] = [
            layers.conv(
                spatial_dims,
                in_channels,
                out_channels,
                kernel_size,
                stride=layers.compact(stride),
                padding=pad,
                dilation=dilation,
                bias=use_bias,
            ),
        ]
        if norm != "none":
            mods.append(layers.norm(norm, out_channels, spatial_dims))
        if act is not None:
            mods.append(layers.activation(act))
        super().__init__(*mods)


class ConvBlock(nn.Module):
    """A stage's convolutions: ``n_convs`` × ConvNormAct, optionally residual.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input width.
        out_channels: output width.
        mid_channels: width of the convolutions before the last one (default ``out_channels``;
            ``out_channels // 2`` gives the "double the features in the second conv" pattern of 3D
            U-Net, and the bilinear same-padding U-Net uses ``in_channels // 2``).
        n_convs: number of convolutions (≥ 1).
        residual: add a shortcut from the input to the output before the last activation, with a
            1×1 conv (+ norm) projection where the widths differ; centre-cropped in valid mode.
        Other arguments as in :class:`ConvNormAct`.

    Shapes:
        (B, in_channels, *S) → (B, out_channels, *S') with S' = S ("same") or S − n·dilation·(k−1).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        mid_channels: Optional[int] = None,
        n_convs: int = 2,
        kernel_size: IntOrAxes = 3,
        padding: str = "same",
        dilation: int = 1,
        norm: str = "batch",
        act: str = "relu",
        bias: Optional[bool] = None,
        residual: bool = False,
    ):
        super().__init__()
        if n_convs < 1:
            raise ConfigError(f"a block needs at least one convolution, got n_convs={n_convs}")
        mid = mid_channels or out_channels
        widths = [in_channels] + [mid] * (n_convs - 1) + [out_channels]
        convs = []
        for i in range(n_convs):
            last = i == n_convs - 1
            convs.append(
                ConvNormAct(
                    spatial_dims,
                    widths[i],
                    widths[i + 1],
                    kernel_size,
                    padding,
                    dilation=dilation,
                    norm=norm,
                    act=None if (residual and last) else act,
                    bias=bias,
                )
            )
        self.convs = nn.Sequential(*convs)
        self.in_channels = in_channels
        self.residual = residual
        if residual:
            if in_channels != out_channels:
                self.shortcut = ConvNormAct(
                    spatial_dims, in_channels, out_channels, 1, norm=norm, act=None, bias=bias
                )
            else:
                self.shortcut = nn.Identity()
            self.out_act = layers.activation(act)
        self.out_channels = out_channels

    def forward(self, x: Union[torch.Tensor, list]) -> torch.Tensor:
        """``x`` a tensor, or a list of tensors joined along the channels (a decoder's skip and
        up-sampled map). With autograd off the list is emptied once joined and (without the
        residual shortcut, which needs it) the joined map freed after the first convolution, so
        that none of them stays alive while the rest of the block runs."""
        if isinstance(x, list):
            parts = x
            x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
            if not torch.is_grad_enabled():
                parts.clear()
            if not torch.is_grad_enabled() and not self.residual:  # the shortcut needs x
                convs = iter(self.convs)
                y = next(convs)(x)
                del x
                for conv in convs:
                    y = conv(y)
                return y
        y = self.convs(x)
        if self.residual:
            y = self.out_act(y + layers.center_crop(self.shortcut(x), y.shape[2:]))
        return y


def make_downsample(
    mode: str,
    spatial_dims: int,
    channels: int,
    norm: str,
    act: str,
    bias: Optional[bool],
    padding: str,
    stride: IntOrAxes = 2,
) -> nn.Module:
    """Halve the spatial size along the axes whose ``stride`` is 2 (all by default), keeping the width.

    Modes: ``maxpool`` (the paper), ``avgpool``, ``conv2`` (2×2 stride-2 conv), ``conv3`` (3×3
    stride-2 conv + norm + activation, the medical variant; same padding only). Along an axis of
    stride 1 every mode has kernel 1: the axis keeps its size and is not mixed here.
    """
    stride = layers.compact(stride)
    if mode == "maxpool":
        return layers.max_pool(spatial_dims, stride)
    if mode == "avgpool":
        return layers.avg_pool(spatial_dims, stride)
    if mode == "conv2":
        return layers.conv(spatial_dims, channels, channels, stride, stride=stride, bias=True)
    if mode == "conv3":
        if padding == "valid":
            raise ConfigError(
                "downsample='conv3' needs padding='same'; with valid padding use maxpool, avgpool or conv2"
            )
        kernel = 3 if isinstance(stride, int) else tuple(3 if s > 1 else 1 for s in stride)
        return ConvNormAct(
            spatial_dims,
            channels,
            channels,
            kernel,
            "same",
            stride=stride,
            norm=norm,
            act=act,
            bias=bias,
        )
    raise ConfigError(f"unknown downsample {mode!r}; choose one of {', '.join(DOWNSAMPLE_MODES)}")


def canonical_upsample(mode: str) -> str:
    """Map aliases (``bilinear``, ``trilinear``) to a name in :data:`UPSAMPLE_MODES`; reject others."""
    mode = _UPSAMPLE_ALIASES.get(mode, mode)
    if mode not in UPSAMPLE_MODES:
        raise ConfigError(
            f"unknown upsample {mode!r}; choose one of {', '.join(UPSAMPLE_MODES)} (or bilinear/trilinear)"
        )
    return mode


class Upsample(nn.Module):
    """Double the spatial size along the axes whose ``stride`` is 2 (the mirror of the
    down-sampling); with a conv it also maps ``in_channels`` to ``out_channels``.

    Modes: ``transpose`` (2×2 stride-2 transposed conv, the paper's up-convolution), ``transpose3``
    (3×3 stride-2 transposed conv, padding 1, output padding 1), ``interpolate`` (bi/trilinear, no
    parameters, width unchanged), ``interpolate_conv`` (bi/trilinear then a 1×1 conv). Along an
    axis of stride 1 the transposed convs have kernel 1.
    """

    def __init__(
        self,
        mode: str,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        stride: IntOrAxes = 2,
    ):
        super().__init__()
        self.mode = canonical_upsample(mode)
        self.stride = tuple(per_axis(stride, spatial_dims, "up-sampling stride"))
        st = layers.compact(self.stride)
        if self.mode == "transpose":
            self.conv = layers.conv_transpose(
                spatial_dims, in_channels, out_channels, st, stride=st
            )
        elif self.mode == "transpose3":
            k = [3 if s > 1 else 1 for s in self.stride]
            p = [1 if s > 1 else 0 for s in self.stride]
            self.conv = layers.conv_transpose(
                spatial_dims,
                in_channels,
                out_channels,
                layers.compact(k),
                stride=st,
                padding=layers.compact(p),
                output_padding=layers.compact(p),
            )
        elif self.mode == "interpolate_conv":
            self.conv = layers.conv(spatial_dims, in_channels, out_channels, 1)
        else:
            self.conv = None
        self.out_channels = in_channels if self.mode == "interpolate" else out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode in ("transpose", "transpose3"):
            return self.conv(x)
        y = layers.resize_to(x, [s * f for s, f in zip(x.shape[2:], self.stride)])
        return self.conv(y) if self.conv is not None else y

"""The contracting path, built in a loop over per-stage lists (depth is data, not code).

Per-stage, per-axis strides and kernel sizes (:func:`resolve_strides`, :func:`resolve_kernel_sizes`)
let a 3D net pool an anisotropic volume's coarse axis later than the fine ones, as nnU-Net does.
"""

from __future__ import annotations

import numbers
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn

from ..errors import ConfigError
from . import layers
from .blocks import ConvBlock, make_downsample

Axes = tuple[int, ...]


def _axes_entry(value: Any, dims: int, name: str) -> list:
    """One entry of a per-stage list as one value per axis (an int applies to every axis)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return [int(value)] * dims
    if (
        isinstance(value, (list, tuple))
        and len(value) == dims
        and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value)
    ):
        return [int(v) for v in value]
    raise ConfigError(f"{name} = {value!r}: give an int or {dims} ints (one per spatial axis)")


def _stage_list(value: Any, n: int, name: str, unit: str) -> list:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        got = f"{len(value)} entries" if isinstance(value, (list, tuple)) else repr(value)
        raise ConfigError(f"{name} needs one entry per {unit} ({n}), got {got}: {value!r}")
    return list(value)


def resolve_strides(strides: Any, depth: int, dims: int) -> list[Axes]:
    """Per down-sampling, the stride of each axis (1 or 2); ``None`` → 2 on every axis.

    Raises:
        ConfigError: the wrong number of entries, or a stride other than 1 or 2.
    """
    if strides is None:
        return [(2,) * dims] * depth
    out = []
    for i, entry in enumerate(_stage_list(strides, depth, "strides", "down-sampling")):
        axes = _axes_entry(entry, dims, f"strides[{i}]")
        if any(a not in (1, 2) for a in axes):
            raise ConfigError(f"strides[{i}] = {entry!r}: every stride must be 1 or 2")
        out.append(tuple(axes))
    return out


def resolve_kernel_sizes(kernel_sizes: Any, n_stages: int, dims: int, default: int) -> list[Axes]:
    """Per stage, the conv kernel size of each axis (odd); ``None`` → ``default`` everywhere.

    Raises:
        ConfigError: the wrong number of entries, or an even or non-positive kernel size.
    """
    if kernel_sizes is None:
        return [(int(default),) * dims] * n_stages
    out = []
    for i, entry in enumerate(_stage_list(kernel_sizes, n_stages, "kernel_sizes", "stage")):
        axes = _axes_entry(entry, dims, f"kernel_sizes[{i}]")
        if any(k < 1 or k % 2 == 0 for k in axes):
            raise ConfigError(f"kernel_sizes[{i}] = {entry!r}: kernel sizes must be odd and ≥ 1")
        out.append(tuple(axes))
    return out


class Encoder(nn.Module):
    """U-Net contracting path: stage 0 at full resolution, each later stage down-samples first
    (×2 on every axis, or per axis with ``strides``).

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        features: output width of each stage, shallowest first; its length is the number of stages
            (depth + 1: the paper's (64, 128, 256, 512, 1024) has 4 down-samplings).
        n_convs: convolutions per stage (scalar or one per stage).
        kernel_size: conv kernel size (every stage and axis unless ``kernel_sizes`` is given).
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
        strides: per down-sampling (``depth`` entries), 2 (every axis) or a per-axis list of 1
            and 2, e.g. ``[[1, 2, 2], [2, 2, 2]]``; ``None`` = 2 on every axis.
        kernel_sizes: per stage (``depth + 1`` entries), an odd int or a per-axis list, e.g.
            ``[[1, 3, 3], [3, 3, 3], [3, 3, 3]]``; ``None`` = ``kernel_size`` everywhere.

    Attributes:
        strides, kernel_sizes: the resolved per-stage tuples (one value per axis).

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
        strides: Optional[Sequence[Union[int, Sequence[int]]]] = None,
        kernel_sizes: Optional[Sequence[Union[int, Sequence[int]]]] = None,
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
        self.strides = resolve_strides(strides, n - 1, spatial_dims)
        self.kernel_sizes = resolve_kernel_sizes(kernel_sizes, n, spatial_dims, kernel_size)
        self.n_convs = [int(c) for c in layers.per_stage(n_convs, n, "n_convs")]
        self.dilation = [int(d) for d in layers.per_stage(dilation, n, "dilation")]
        self.downsample_mode = downsample
        self.stages = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        prev = in_channels
        for i, width in enumerate(features):
            if i > 0:
                self.downsamples.append(
                    make_downsample(
                        downsample,
                        spatial_dims,
                        prev,
                        norm,
                        act,
                        bias,
                        padding,
                        self.strides[i - 1],
                    )
                )
            self.stages.append(
                ConvBlock(
                    spatial_dims,
                    prev,
                    width,
                    mid_channels=width // 2 if double_second_conv else None,
                    n_convs=self.n_convs[i],
                    kernel_size=self.kernel_sizes[i],
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

    def stage_shrink(self, i: int, axis: int = 0) -> int:
        """Pixels lost along ``axis`` by stage ``i``'s convolutions (0 with same padding)."""
        if self.padding == "same":
            return 0
        return self.n_convs[i] * self.dilation[i] * (self.kernel_sizes[i][axis] - 1)

    @property
    def is_isotropic(self) -> bool:
        """Every down-sampling halves every axis and every stage has ``kernel_size`` on every axis."""
        dims = self.spatial_dims
        return all(s == (2,) * dims for s in self.strides) and all(
            k == (self.kernel_size,) * dims for k in self.kernel_sizes
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = self.downsamples[i - 1](x)
            x = self.dropouts[i](stage(x))
            skips.append(x)
        return skips

"""The one place where dimensionality is decided.

Every other model module asks this file for its convolution, pooling, norm and up-sampling layers by
``spatial_dims`` (2 or 3), so that each architecture is written once for 2D and 3D.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

NORMS = ("batch", "instance", "group", "layer", "none")
ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "silu", "prelu")


def check_spatial_dims(spatial_dims: int) -> int:
    """Return ``spatial_dims`` if it is 2 or 3, else raise a :class:`ConfigError`."""
    if spatial_dims not in (2, 3):
        raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return spatial_dims


def conv(spatial_dims: int, *args, **kwargs) -> nn.Module:
    """``nn.Conv2d`` or ``nn.Conv3d`` with the given arguments."""
    return (nn.Conv2d, nn.Conv3d)[check_spatial_dims(spatial_dims) - 2](*args, **kwargs)


def conv_transpose(spatial_dims: int, *args, **kwargs) -> nn.Module:
    """``nn.ConvTranspose2d`` or ``nn.ConvTranspose3d``."""
    cls = (nn.ConvTranspose2d, nn.ConvTranspose3d)[check_spatial_dims(spatial_dims) - 2]
    return cls(*args, **kwargs)


def max_pool(spatial_dims: int, kernel_size: int) -> nn.Module:
    """Max-pooling with stride equal to the kernel size (floor mode, as in the paper)."""
    return (nn.MaxPool2d, nn.MaxPool3d)[check_spatial_dims(spatial_dims) - 2](kernel_size)


def avg_pool(spatial_dims: int, kernel_size: int) -> nn.Module:
    """Average pooling with stride equal to the kernel size."""
    return (nn.AvgPool2d, nn.AvgPool3d)[check_spatial_dims(spatial_dims) - 2](kernel_size)


def dropout(spatial_dims: int, p: float) -> nn.Module:
    """Channel-wise drop-out (whole feature maps), or identity when ``p == 0``."""
    if not 0.0 <= p < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {p}")
    if p == 0:
        return nn.Identity()
    return (nn.Dropout2d, nn.Dropout3d)[check_spatial_dims(spatial_dims) - 2](p)


def norm(kind: str, channels: int, spatial_dims: int, groups: int = 8) -> nn.Module:
    """A normalisation layer by name.

    Args:
        kind: ``batch``, ``instance`` (affine, as nnU-Net), ``group`` (``groups`` groups, reduced to
            a divisor of ``channels``), ``layer`` (GroupNorm with one group: statistics over channels
            and space of each sample, one scale and shift per channel) or ``none``.
        channels: number of channels normalised.
        spatial_dims: 2 or 3.
        groups: group count for ``group`` norm.
    """
    check_spatial_dims(spatial_dims)
    if kind == "batch":
        return (nn.BatchNorm2d, nn.BatchNorm3d)[spatial_dims - 2](channels)
    if kind == "instance":
        return (nn.InstanceNorm2d, nn.InstanceNorm3d)[spatial_dims - 2](channels, affine=True)
    if kind == "group":
        g = math.gcd(channels, groups)
        return nn.GroupNorm(g, channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"unknown norm {kind!r}; choose one of {', '.join(NORMS)}")


def activation(name: str) -> nn.Module:
    """A non-linearity by name (``leaky_relu`` uses slope 0.01, as nnU-Net)."""
    factories: dict[str, Callable[[], nn.Module]] = {
        "relu": lambda: nn.ReLU(inplace=True),
        "leaky_relu": lambda: nn.LeakyReLU(0.01, inplace=True),
        "elu": lambda: nn.ELU(inplace=True),
        "gelu": nn.GELU,
        "silu": lambda: nn.SiLU(inplace=True),
        "prelu": nn.PReLU,
    }
    if name not in factories:
        raise ConfigError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return factories[name]()


def interpolate_mode(spatial_dims: int) -> str:
    """``bilinear`` in 2D, ``trilinear`` in 3D."""
    return ("bilinear", "trilinear")[check_spatial_dims(spatial_dims) - 2]


def resize_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Linear (bi/trilinear) resize of ``x`` (B, C, *spatial) to exactly ``size``.

    While tracing (ONNX/TorchScript export) the size stays symbolic, so the exported graph keeps
    dynamic spatial axes.
    """
    mode = interpolate_mode(x.dim() - 2)
    if torch.jit.is_tracing():
        return F.interpolate(x, size=list(size), mode=mode, align_corners=False)
    size = tuple(int(s) for s in size)
    if tuple(x.shape[2:]) == size:
        return x
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


def match_size(x: torch.Tensor, ref_size: Sequence[int]) -> torch.Tensor:
    """Zero-pad or centre-crop ``x`` so its spatial size equals ``ref_size``.

    Used by same-padding decoders so that any input size (odd too) works: an up-sampled map one
    pixel short of its skip is padded, one pixel over (strided-conv down-sampling rounds up) is
    cropped.
    """
    diffs = [int(r) - int(s) for r, s in zip(ref_size, x.shape[2:])]
    if not any(diffs):
        return x
    pads: list[int] = []
    for d in reversed(diffs):  # F.pad wants the last dim first
        pads += [d // 2, d - d // 2] if d > 0 else [0, 0]
    if any(pads):
        x = F.pad(x, pads)
    if any(d < 0 for d in diffs):
        x = center_crop(x, ref_size)
    return x


def center_crop(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Crop the centre ``size`` out of ``x`` (B, C, *spatial); the original U-Net's skip crop."""
    slices = [slice(None), slice(None)]
    for have, want in zip(x.shape[2:], size):
        if want > have:
            raise ValueError(f"cannot crop size {have} to larger size {want}")
        start = (have - want) // 2
        slices.append(slice(start, start + want))
    return x[tuple(slices)]


def fan_in(module: nn.Module) -> int:
    """Number of inputs feeding one output unit of a conv or transposed conv.

    For a transposed conv each output pixel sees ``in_channels * prod(kernel / stride)`` inputs
    (``in_channels`` for the 2×2, stride-2 up-convolution of the paper).
    """
    weight = module.weight
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        receptive = math.prod(k / s for k, s in zip(module.kernel_size, module.stride))
        return max(1, int(round(module.in_channels / module.groups * receptive)))
    return weight.shape[1] * math.prod(weight.shape[2:])


def init_he(model: nn.Module) -> None:
    """He initialisation as in the U-Net paper: weights ~ N(0, 2 / fan_in), biases 0, norms (1, 0)."""
    for m in model.modules():
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
            std = (
                math.sqrt(2.0 / fan_in(m))
                if not isinstance(m, nn.Linear)
                else math.sqrt(2.0 / m.in_features)
            )
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif (
            isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm))
            and getattr(m, "weight", None) is not None
        ):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


IntOrSeq = Union[int, Sequence[int]]


def compact(values: IntOrSeq) -> IntOrSeq:
    """A per-axis size as one int when every axis agrees (the layers an isotropic net always
    built), else as a tuple: conv, pooling and transposed-conv layers accept either."""
    if isinstance(values, int):
        return values
    values = tuple(int(v) for v in values)
    return values[0] if len(set(values)) == 1 else values


def per_stage(value, n: int, name: str) -> list:
    """Expand a scalar to ``n`` copies, or check that a sequence has ``n`` items.

    Raises:
        ConfigError: when a sequence has the wrong length, naming ``name`` and the expected length.
    """
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ConfigError(
                f"{name} has {len(value)} entries but the model has {n} stages: give one value or {n}"
            )
        return list(value)
    return [value] * n

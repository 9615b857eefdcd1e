"""What every unetkit model shares: output convention, active-parameter counts, size arithmetic."""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional, Sequence, Union

import torch
from torch import nn

from ..errors import ConfigError
from ..utils import per_axis
from . import layers
from .geometry import SizeRule

OUTPUT_MODES = ("logits", "all")
Size = Union[int, Sequence[int]]


class ModelOutput(NamedTuple):
    """Everything a model can supervise, returned when ``model.outputs == "all"``.

    Attributes:
        logits: (B, num_classes, *spatial) main output (never CGM-gated).
        aux: deep-supervision logits, next-deeper level first (empty when deep supervision is
            off). U-Net's are at their level's resolution; UNet 3+'s and UNet++'s at full size.
        cls_logits: (B, 2) classification-guided-module logits (absent, present), or ``None``.
    """

    logits: torch.Tensor
    aux: list[torch.Tensor]
    cls_logits: Optional[torch.Tensor]


def resolve_features(
    features: Optional[Sequence[int]],
    base_features: int,
    depth: Optional[int],
    feature_scale: float,
) -> list[int]:
    """Per-stage widths from an explicit list, or ``base_features · 2**i / feature_scale``.

    ``depth`` is the number of down-samplings (the stage count minus one).
    """
    if features is not None:
        features = [int(f) for f in features]
        if depth is not None and depth != len(features) - 1:
            raise ConfigError(
                f"depth={depth} contradicts features={features} ({len(features) - 1} down-samplings)"
            )
        return features
    depth = 4 if depth is None else int(depth)
    if depth < 1:
        raise ConfigError(f"depth must be ≥ 1, got {depth}")
    if feature_scale <= 0:
        raise ConfigError(f"feature_scale must be > 0, got {feature_scale}")
    feats = [int(base_features * 2**i / feature_scale) for i in range(depth + 1)]
    if feats[0] < 1:
        raise ConfigError(
            f"base_features={base_features} / feature_scale={feature_scale} leaves no channels"
        )
    return feats


def infer_depth(
    depth: Optional[int], features: Optional[Sequence[int]], strides: Any, kernel_sizes: Any
) -> Optional[int]:
    """``depth``, or — when neither it nor ``features`` is given — the depth that per-stage
    ``strides`` (one per down-sampling) or ``kernel_sizes`` (one per stage) imply."""
    if depth is None and features is None:
        if isinstance(strides, (list, tuple)):
            return len(strides)
        if isinstance(kernel_sizes, (list, tuple)):
            return len(kernel_sizes) - 1
    return depth


class SegmentationModel(nn.Module):
    """Base class: logits out, explicit output flag, heads that are always built.

    Subclasses build ``self.encoder`` and implement :meth:`forward_all`, :meth:`inactive_modules`
    and :meth:`_axis_output_size`.

    Flags (plain attributes, change them at any time; ``self.training`` never changes outputs):
        outputs: ``"logits"`` → ``forward`` returns the main logits tensor (gated by the CGM when
            ``cgm`` is on); ``"all"`` → a :class:`ModelOutput` with every supervised output.
        deep_supervision: compute the auxiliary outputs (in ``"all"`` mode).
        cgm: use the classification-guided module (UNet 3+ only).
    """

    arch_name = "model"

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        deep_supervision: bool,
        outputs: Optional[str],
        cgm: bool = False,
    ):
        super().__init__()
        layers.check_spatial_dims(spatial_dims)
        if num_classes < 1:
            raise ConfigError(
                f"num_classes must be ≥ 1 (1 = one sigmoid channel, ≥ 2 = softmax), got {num_classes}"
            )
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.deep_supervision = bool(deep_supervision)
        self.cgm = bool(cgm)
        self.outputs = (
            outputs if outputs is not None else ("all" if (deep_supervision or cgm) else "logits")
        )
        self.init_kwargs: dict = {}
        self.preset: Optional[str] = None  # registry name, set by create_model

    # -- outputs ---------------------------------------------------------------------------
    @property
    def outputs(self) -> str:
        return self._outputs

    @outputs.setter
    def outputs(self, value: str) -> None:
        if value not in OUTPUT_MODES:
            raise ConfigError(f"outputs must be one of {OUTPUT_MODES}, got {value!r}")
        self._outputs = value

    def forward_all(
        self, x: torch.Tensor, with_aux: bool = True
    ) -> ModelOutput:  # pragma: no cover
        """Every output: main logits, aux logits (when ``with_aux`` and deep supervision is on)
        and CGM logits (when ``cgm`` is on). No input checks; prefer calling the model."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor):
        """Run the model on x (B, in_channels, *spatial).

        Returns:
            ``outputs == "logits"``: tensor (B, num_classes, *out_spatial).
            ``outputs == "all"``: :class:`ModelOutput`.
        """
        self.check_input(x)
        out = self.forward_all(x, with_aux=self.outputs == "all")
        if self.outputs == "all":
            return out
        if self.cgm and out.cls_logits is not None:
            from .heads import gate_with_cgm

            return gate_with_cgm(out.logits, out.cls_logits)
        return out.logits

    # -- parameters ------------------------------------------------------------------------
    def inactive_modules(self) -> list[nn.Module]:
        """Heads that are built (so every checkpoint loads) but unused under the current flags."""
        return []

    def num_parameters(self, active_only: bool = True, trainable_only: bool = False) -> int:
        """Parameter count; by default only those the current flags use (as the papers count)."""
        skip = {
            id(p) for m in (self.inactive_modules() if active_only else []) for p in m.parameters()
        }
        return sum(
            p.numel()
            for p in self.parameters()
            if id(p) not in skip and (p.requires_grad or not trainable_only)
        )

    def initialise(self, init: str) -> None:
        """``he``: N(0, 2/fan_in) weights as in the U-Net paper; ``torch``: keep PyTorch's defaults."""
        if init == "he":
            layers.init_he(self)
        elif init != "torch":
            raise ConfigError(f"init must be 'he' or 'torch', got {init!r}")

    # -- size arithmetic -------------------------------------------------------------------
    @property
    def pooling_period(self) -> tuple[int, ...]:
        """Per axis, the product of that axis's strides (``2**depth`` on every axis by default):
        the net is equivariant to shifts by multiples of it (its pooling grid)."""
        return tuple(
            math.prod(s[a] for s in self.encoder.strides) for a in range(self.spatial_dims)
        )

    def size_rule(self) -> SizeRule:
        """This model's :class:`~unetkit.models.geometry.SizeRule`: accepted sizes, shrink, period.

        Derived from :meth:`_axis_output_size` (the definition); tiling, export, checkpoints and
        backends read the rule instead of probing the model.
        """
        return SizeRule.from_axis_function(
            self._axis_output_size,
            self.spatial_dims,
            getattr(self.encoder, "padding", "same"),
            self.pooling_period,
            what=type(self).__name__,
        )

    def _axis_output_size(self, size: int, axis: int = 0) -> Optional[int]:
        """Output size along spatial ``axis`` for input ``size``, or ``None`` when it is not valid.

        This default serves same-padding nets: the output has the input's size, and the input only
        has to survive every down-sampling of ``self.encoder`` along that axis (an axis of stride 1
        is not down-sampled there).
        """
        s = size
        for stride in self.encoder.strides:
            if stride[axis] == 1:
                continue
            if s < 2:
                return None
            s = down_size(s, self.encoder.downsample_mode)
        return size

    def _sizes(self, size: Size) -> list[int]:
        return list(per_axis(size, self.spatial_dims, "input size"))

    def is_valid_input_size(self, size: Size) -> bool:
        """Whether every axis of ``size`` (an int applies to all axes) is accepted."""
        return all(
            self._axis_output_size(s, a) is not None for a, s in enumerate(self._sizes(size))
        )

    def nearest_valid_sizes(
        self, size: int, search: int = 4096, axis: int = 0
    ) -> tuple[Optional[int], Optional[int]]:
        """The largest valid size ≤ ``size`` on ``axis`` and the smallest ≥ ``size`` (``None`` if none)."""
        ok = self._axis_output_size
        below = next((s for s in range(size, 0, -1) if ok(s, axis) is not None), None)
        above = next(
            (s for s in range(max(size, 1), size + search) if ok(s, axis) is not None), None
        )
        return below, above

    def valid_input_size(self, min_size: Size, search: int = 4096) -> Union[int, tuple[int, ...]]:
        """Smallest valid input size ≥ ``min_size`` per axis; an int in gives the smallest int
        ≥ it that every axis accepts (the same per axis unless the net is anisotropic)."""
        if isinstance(min_size, (int, float)):
            lo = self._sizes(min_size)[0]  # refuses fractional sizes as before
            found = next(
                (s for s in range(max(lo, 1), lo + search) if self.is_valid_input_size(s)), None
            )
            if found is None:
                raise ConfigError(f"no input size valid on every axis found at or above {lo}")
            return found
        out = []
        for axis, s in enumerate(self._sizes(min_size)):
            above = self.nearest_valid_sizes(s, search, axis)[1]
            if above is None:
                raise ConfigError(
                    f"no valid input size found at or above {s} on spatial axis {axis}"
                )
            out.append(above)
        return tuple(out)

    def output_size(self, input_size: Size) -> Union[int, tuple[int, ...]]:
        """Output spatial size for ``input_size``; an int in gives an int out when every axis
        gives the same output (else a tuple). Raises on invalid sizes."""
        sizes = self._sizes(input_size)
        self._check_sizes(sizes)
        out = tuple(self._axis_output_size(s, a) for a, s in enumerate(sizes))
        return out[0] if isinstance(input_size, (int, float)) and len(set(out)) == 1 else out

    def _check_sizes(self, sizes: Sequence[int]) -> None:
        for axis, s in enumerate(sizes):
            if self._axis_output_size(s, axis) is None:
                below, above = self.nearest_valid_sizes(s, axis=axis)
                options = [
                    f"{v} (output {self._axis_output_size(v, axis)})"
                    for v in (below, above)
                    if v is not None
                ]
                raise ConfigError(
                    f"input size {s} on spatial axis {axis} is not valid for this {self.describe_sizes()}; "
                    f"nearest valid sizes: {' and '.join(options) or 'none'}"
                )

    def describe_sizes(self) -> str:
        """One phrase saying why sizes can be invalid (used in error messages)."""
        return f"{self.arch_name} (every down-sampling must see a size ≥ 2)"

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a :class:`ConfigError` naming the problem when ``x`` cannot go through the model."""
        if x.dim() != self.spatial_dims + 2:
            raise ConfigError(
                f"expected a {self.spatial_dims + 2}-D tensor (B, C, {'D, ' if self.spatial_dims == 3 else ''}H, W), "
                f"got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ConfigError(
                f"the model expects {self.in_channels} input channel(s), got {x.shape[1]} "
                f"(shape {tuple(x.shape)})"
            )
        if not torch.jit.is_tracing():
            self._check_sizes(list(x.shape[2:]))


def down_size(size: int, mode: str, stride: int = 2) -> int:
    """Size after one down-sampling along an axis of ``stride`` 2 (floor for pooling and 2×2 conv,
    ceil for 3×3 stride-2 conv) or 1 (unchanged)."""
    if stride == 1:
        return size
    return math.ceil(size / 2) if mode == "conv3" else size // 2

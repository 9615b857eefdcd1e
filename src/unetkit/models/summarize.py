"""A torchsummary-style table for any model: per-layer output shapes, parameters, FLOPs, memory.

Shapes are traced on PyTorch's ``meta`` device by default, so even a 3D net at a large input size is
summarised instantly and without allocating memory.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import torch
from torch import nn

from ..errors import ConfigError
from ..utils import per_axis
from .geometry import size_rule_of


@dataclass
class LayerRow:
    """One row of the table."""

    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int
    flops: int


@dataclass
class ModelSummary:
    """Result of :func:`summary`; ``str()`` gives the table.

    Attributes:
        rows: one per reported module, in execution order.
        input_shape / output_shape: (B, C, *spatial) of the input and the main output.
        total_params: every parameter built; ``active_params``: those the current flags use (the
            count the papers report; equal to ``total_params`` for plain nets).
        trainable_params: parameters with ``requires_grad``.
        flops: floating-point operations of one forward pass over conv, transposed-conv and linear
            layers (a multiply-add counts 2).
        activation_bytes: bytes of all module outputs of one forward pass: what training keeps for
            the backward pass (an estimate: in-place ops and autograd details change it a little).
        param_bytes: bytes of the parameters.
    """

    model_name: str
    rows: list[LayerRow] = field(default_factory=list)
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()
    total_params: int = 0
    active_params: int = 0
    trainable_params: int = 0
    flops: int = 0
    activation_bytes: int = 0
    param_bytes: int = 0

    def __str__(self) -> str:
        return self.format()

    def format(self) -> str:
        headers = ("Layer", "Type", "Output shape", "Params", "GFLOPs")
        body = [
            (r.name, r.type, str(list(r.output_shape)), f"{r.params:,}", f"{r.flops / 1e9:.3f}")
            for r in self.rows
        ]
        widths = [
            max(len(h), *(len(b[i]) for b in body)) if body else len(h)
            for i, h in enumerate(headers)
        ]
        line = "-" * (sum(widths) + 2 * (len(widths) - 1))

        def fmt(cells):
            return "  ".join(
                c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
            )

        out = [self.model_name, line, fmt(headers), line, *(fmt(b) for b in body), line]
        out += [
            f"Input shape:            {list(self.input_shape)}",
            f"Output shape:           {list(self.output_shape)}",
            f"Parameters (in use):    {self.active_params:,}",
        ]
        if self.total_params != self.active_params:
            out.append(
                f"Parameters (built):     {self.total_params:,}  (includes inactive heads; "
                f"checkpoints load with the heads on or off)"
            )
        out += [
            f"Trainable parameters:   {self.trainable_params:,}",
            f"FLOPs per forward:      {_giga(self.flops)} G  (conv/linear, multiply-add = 2)",
            f"Parameter memory:       {_mib(self.param_bytes)}",
            f"Activation memory:      {_mib(self.activation_bytes)}  (forward outputs kept for training, estimate)",
        ]
        return "\n".join(out)


def _giga(flops: float) -> str:
    """``flops`` in G with three significant digits below 100 G (a small net's 0.0961 G was
    printed "0.10 G"), whole hundredths above."""
    g = flops / 1e9
    return f"{g:,.2f}" if g >= 100 else f"{g:.3g}"


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _layer_flops(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        per_input = module.out_channels // module.groups * math.prod(module.kernel_size)
        return 2 * inp.numel() * per_input
    if isinstance(module, nn.modules.conv._ConvNd):
        per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
        return 2 * out.numel() * per_output
    if isinstance(module, nn.Linear):
        return 2 * out.numel() * module.in_features
    return 0


def _first_tensor(value) -> Optional[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (list, tuple)):
        for v in value:
            t = _first_tensor(v)
            if t is not None:
                return t
    return None


def _select_rows(
    root: nn.Module,
    started: list[nn.Module],
    shapes: dict,
    leaf_flops: dict,
    names: dict,
    depth: Optional[int],
) -> list[LayerRow]:
    """Rows at the requested depth, counting only ancestors that ran (containers such as
    ``nn.ModuleList`` never run, so ``encoder.stages.0`` sits at depth 2 under ``encoder``)."""
    ran = set(started)
    parent = {c: m for m in root.modules() for c in m.children()}

    def run_depth(m: nn.Module) -> int:
        d, p = 1, parent.get(m)
        while p is not None and p is not root:
            d += p in ran
            p = parent.get(p)
        return d

    ran_children = {m: [c for c in m.modules() if c is not m and c in ran] for m in started}
    rows = []
    for m in started:
        d = run_depth(m)
        has_ran_children = bool(ran_children[m])
        if depth is None:
            keep = not has_ran_children
        else:
            keep = d == depth or (d < depth and not has_ran_children)
        n_params = sum(p.numel() for p in m.parameters())
        if not keep or (isinstance(m, nn.Identity) and n_params == 0):
            continue
        flops = sum(leaf_flops.get(c, 0) for c in m.modules())
        rows.append(LayerRow(names[m], type(m).__name__, shapes[m], n_params, flops))
    return rows


def summary(
    model: nn.Module,
    input_size: Union[int, Sequence[int], None] = None,
    batch_size: int = 1,
    depth: Optional[int] = 2,
    device: Union[str, torch.device] = "meta",
    dtype: torch.dtype = torch.float32,
) -> ModelSummary:
    """Summarise ``model`` for one input.

    Args:
        model: any ``nn.Module``; unetkit models also report active vs built parameters and pick a
            valid default size.
        input_size: spatial size (an int for every axis, or one per axis); default 512² / 128³,
            and for valid-padding nets the paper's tiles 572² / 132³ (raised to a valid size).
        batch_size: batch dimension B.
        depth: report modules at this nesting depth (1 = ``encoder``/``decoder``, 2 = stages and blocks);
            ``None`` reports every leaf layer. FLOPs and memory always come from leaf layers.
        device: ``meta`` traces shapes without computing; pass ``cpu``/``cuda`` to run for real.
        dtype: element type for the memory estimate (and the real run).

    Returns:
        A :class:`ModelSummary`; ``print()`` it for the table.

    Example:
        >>> from unetkit import create_model, summary
        >>> s = summary(create_model("unet-original"), 572)
        >>> s.output_shape
        (1, 2, 388, 388)
    """
    spatial_dims = getattr(model, "spatial_dims", 2)
    in_channels = getattr(model, "in_channels", None)
    if in_channels is None:
        first = next((m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
        if first is None:
            raise ConfigError("cannot tell the input channels of this model; it has no convolution")
        in_channels = first.in_channels
    rule = size_rule_of(model, spatial_dims) if hasattr(model, "size_rule") else None
    if input_size is None:  # the paper tiles for valid-padding nets (572², 132³), else 512² / 128³
        valid = rule is not None and rule.is_valid_padding
        default = (572 if valid else 512) if spatial_dims == 2 else (132 if valid else 128)
        input_size = rule.at_least(default) if rule is not None else default
    sizes = list(per_axis(input_size, spatial_dims, "input_size", minimum=1))
    if hasattr(model, "_check_sizes"):
        model._check_sizes(sizes)

    work = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    if hasattr(work, "outputs"):
        work.outputs = "logits"
    inactive = {id(p) for m in getattr(work, "inactive_modules", list)() for p in m.parameters()}
    names = {m: n for n, m in work.named_modules()}
    started: list[nn.Module] = []  # modules in the order their forward began (parents first)
    shapes: dict[nn.Module, tuple[int, ...]] = {}
    leaf_flops: dict[nn.Module, int] = {}
    act_bytes = [0]

    def pre_hook(mod, inputs):
        if mod not in shapes:
            shapes[mod] = ()
            started.append(mod)

    def post_hook(mod, inputs, output):
        out, inp = _first_tensor(output), _first_tensor(inputs)
        if out is None:
            return
        shapes[mod] = tuple(out.shape)
        if not list(mod.children()) and inp is not None:
            leaf_flops[mod] = leaf_flops.get(mod, 0) + _layer_flops(mod, inp, out)
            act_bytes[0] += out.numel() * out.element_size()

    handles = [m.register_forward_pre_hook(pre_hook) for m in work.modules() if m is not work]
    handles += [m.register_forward_hook(post_hook) for m in work.modules() if m is not work]
    try:
        x = torch.zeros(batch_size, in_channels, *sizes, device=device, dtype=dtype)
        with torch.no_grad():
            out = _first_tensor(work(x))
    finally:
        for h in handles:
            h.remove()
    rows = _select_rows(work, started, shapes, leaf_flops, names, depth)
    params = list(work.parameters())
    return ModelSummary(
        model_name=f"{type(model).__name__}"
        + (f" (preset {model.preset!r})" if getattr(model, "preset", None) else ""),
        rows=rows,
        input_shape=tuple(x.shape),
        output_shape=tuple(out.shape) if out is not None else (),
        total_params=sum(p.numel() for p in params),
        active_params=sum(p.numel() for p in params if id(p) not in inactive),
        trainable_params=sum(
            p.numel() for p in params if p.requires_grad and id(p) not in inactive
        ),
        flops=sum(leaf_flops.values()),
        activation_bytes=act_bytes[0],
        param_bytes=sum(p.numel() * p.element_size() for p in params if id(p) not in inactive),
    )

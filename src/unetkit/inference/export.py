"""Export a trained model to ONNX or TorchScript, check it against PyTorch, and run ONNX exports.

Both exporters take a model, a checkpoint path or a loaded checkpoint dict, export the main logits
``(B, K, *out)`` of the model in eval mode (deep-supervision and CGM logits are not outputs; a
UNet 3+ CGM still gates the logits, as in PyTorch), write the file atomically and, with
``check=True``, run the written file at two input shapes and compare it with the PyTorch model.

How far the exported graph generalises depends on the model code, because both ONNX (the
TorchScript-based ``torch.onnx.export(dynamo=False)``) and TorchScript (``torch.jit.trace``) trace
one forward pass and bake every Python ``int`` taken from a tensor shape into the graph:

* The batch axis is always dynamic.
* Same-padding U-Nets (max-pool, strided conv; transposed-conv up-sampling): dynamic spatial axes
  for every multiple of ``2**depth``. Other sizes work in PyTorch (the decoder pads the up-sampled
  map to its skip) but that padding is decided in Python, so the traced graph does not have it.
* The original valid-padding U-Net: dynamic for every valid input size (``16·k + 60`` for depth 4;
  the skip crops are traced as shape arithmetic).
* Models that resize feature maps to an explicit size (UNet 3+, the bilinear U-Net, UNet++):
  the resize targets are Python ints in :func:`unetkit.models.layers.resize_to`, so their graph is
  specialised to the traced spatial size (batch stays dynamic).

Nothing is assumed: the exporter traces the model, runs the trace at a second size and compares it
with eager PyTorch; the spatial axes are declared dynamic only when that matches. The result is
recorded in the file's metadata (``valid_input_size``), which :class:`OnnxRunner` enforces.

The ONNX file's ``metadata_props`` hold JSON strings: the unetkit format marker and version, the
model spec (preset, class, kwargs), ``spatial_dims``, ``in_channels``, ``num_classes``,
``label_map``, ``normalization``, ``patch_size``, ``scale`` (the resolution factor the net works
at, ``null`` = as stored), ``target_spacing`` (the voxel size it works at, ``null`` = as stored),
``trained_spacing`` (the voxel size a model trained as stored was trained at, where its cases
agreed within 10 %: images far from it are resampled to it; ``null`` = none), ``spacing_unit``
(the unit of those voxel sizes, as the training files stated it; ``null`` = not stated),
``postprocess`` (the clean-ups validation chose, applied by ``unetkit predict``; ``null`` = none),
``orientation`` (the orientation code volumes are turned to, ``null`` = as stored),
``outputs`` (``"logits"``), ``activation``
(``sigmoid`` for one channel, else ``softmax``) and ``valid_input_size``. A TorchScript export holds
the same dict as the extra file ``unetkit.json``.

Example:
    >>> report = export_onnx("runs/unet/checkpoints/best.pt", "unet.onnx")
    >>> runner = OnnxRunner("unet.onnx")
    >>> logits = runner(torch.zeros(1, 1, 256, 256))        # (1, K, 256, 256) float32
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, DataError, UnetkitError
from ..models.geometry import SizeRule
from ..utils import atomic_path, check_output_file, json_default, per_axis

FORMAT = "unetkit-export"
FORMAT_VERSION = 1
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
#: Name of the metadata file inside a TorchScript archive.
TORCHSCRIPT_METADATA = "unetkit.json"
#: Seed of the random example batches used to trace and check.
CHECK_SEED = 0
INSTALL_HINT = "pip install unetkit[export]"

Size = Union[int, Sequence[int]]
ModelSource = Union[nn.Module, str, Path, dict]


class ExportCheckError(UnetkitError, RuntimeError):
    """The exported file does not reproduce the PyTorch model within the tolerance."""


class MissingDependencyError(UnetkitError, ImportError):
    """An optional package that export needs is not installed; the message says how to install it."""


def require(module: str) -> Any:
    """Import an optional dependency (``onnx``, ``onnxruntime``) or raise a one-line install hint."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"this needs the '{module}' package, which is not importable ({exc}); "
            f"install it with: {INSTALL_HINT}"
        ) from None


# -- reports ---------------------------------------------------------------------------------------
@dataclass
class SizeCheck:
    """One comparison of the exported file with PyTorch at one input shape.

    Attributes:
        input_shape: (B, C, *spatial) of the random input.
        output_shape: (B, K, *out) of the logits.
        max_abs_diff: max |exported − PyTorch| over all logits (fp32).
        tolerance: the largest difference accepted (``rtol`` × the logit range, at least ``rtol``).
    """

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    max_abs_diff: float
    tolerance: float

    def describe(self) -> str:
        shape = "×".join(str(s) for s in self.input_shape)
        return (
            f"input {shape}: max abs diff {self.max_abs_diff:.2e} (tolerance {self.tolerance:.1e})"
        )


@dataclass
class ExportReport:
    """What an export wrote and how well it reproduces PyTorch.

    Attributes:
        path: the written file.
        format: ``onnx`` or ``torchscript``.
        file_size: bytes.
        example_size: spatial size traced at.
        dynamic_batch: whether the batch axis accepts any size.
        dynamic_spatial: whether the spatial axes accept other (valid) sizes than ``example_size``.
        dynamic_axes: ``{tensor name: {axis: label}}`` as declared to the exporter (ONNX) or as
            verified (TorchScript).
        checks: comparisons with PyTorch (empty when ``check=False``).
        metadata: the unetkit metadata stored in the file (decoded).
        opset: ONNX opset (``None`` for TorchScript).
        notes: remarks worth printing (e.g. why the spatial size is fixed).
    """

    path: Path
    format: str
    file_size: int
    example_size: tuple[int, ...]
    dynamic_batch: bool
    dynamic_spatial: bool
    dynamic_axes: dict
    checks: list[SizeCheck] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    opset: Optional[int] = None
    notes: list[str] = field(default_factory=list)

    @property
    def max_abs_diff(self) -> Optional[float]:
        """The largest difference over all checks (``None`` without checks)."""
        return max((c.max_abs_diff for c in self.checks), default=None)

    def describe(self) -> str:
        """A few lines for the CLI: file, size, axes, checks."""
        kind = f"ONNX opset {self.opset}" if self.format == "onnx" else "TorchScript (traced)"
        rule = self.metadata.get("valid_input_size", {})
        lines = [f"wrote {self.path} ({_human_bytes(self.file_size)}, {kind})"]
        spatial = _spatial_labels(len(self.example_size))
        inp = ["batch" if self.dynamic_batch else "1", str(self.metadata.get("in_channels"))]
        out = ["batch" if self.dynamic_batch else "1", str(self.metadata.get("num_classes"))]
        if self.dynamic_spatial:
            inp += spatial
            out += [
                f"{s}-{k}" if k else s
                for s, k in zip(spatial, rule.get("shrink", [0] * len(spatial)))
            ]
        else:
            inp += [str(s) for s in self.example_size]
            out += [
                str(s - k)
                for s, k in zip(self.example_size, rule.get("shrink", [0] * len(spatial)))
            ]
        lines.append(f"input  {INPUT_NAME}: ({', '.join(inp)}) float32")
        lines.append(f"output {OUTPUT_NAME}: ({', '.join(out)}) float32")
        axes = sorted(
            {label for axes in self.dynamic_axes.values() for label in axes.values()},
            key=(["batch", *spatial]).index,
        )
        lines.append(
            f"dynamic axes: {', '.join(axes) if axes else 'none'}; valid spatial sizes: {describe_rule(rule)}"
        )
        for c in self.checks:
            lines.append(f"check vs PyTorch (fp32), {c.describe()}")
        if not self.checks:
            lines.append("check skipped (--no-check)")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _spatial_labels(ndim: int) -> list[str]:
    return ["height", "width"] if ndim == 2 else ["depth", "height", "width"]


# -- the size rule of an exported graph --------------------------------------------------------
def export_rule(model: nn.Module) -> SizeRule:
    """Spatial sizes a traced graph of ``model`` can accept (:meth:`SizeRule.for_export`).

    Same-padding nets: multiples of ``2**depth`` (no decoder padding is traced); valid-padding
    nets: every size the model accepts. Whether the graph really is dynamic is decided by tracing
    (see :func:`export_onnx`).

    Raises:
        ConfigError: ``model`` is not a unetkit model (no size rule).
    """
    if not callable(getattr(model, "size_rule", None)):
        raise ConfigError(
            f"export needs a unetkit model (with an encoder and size arithmetic), "
            f"got {type(model).__name__}"
        )
    return model.size_rule().for_export()


def describe_rule(rule: dict) -> str:
    """The ``valid_input_size`` metadata in words, for messages (:meth:`SizeRule.describe`)."""
    return SizeRule.from_dict(rule).describe() if rule else "unknown"


def _example_size(
    rule: SizeRule, input_size: Optional[Size], patch_size: Optional[Size]
) -> list[int]:
    if input_size is not None:
        sizes = rule.sizes(input_size, "input_size")
        rule.check(sizes, what="an export of this model")
        return list(sizes)
    dims = rule.spatial_dims
    wanted = (
        per_axis(patch_size, dims, "patch_size")
        if patch_size is not None
        else (512 if dims == 2 else 128,) * dims
    )
    return list(rule.at_most(wanted))


def _second_size(rule: SizeRule, example: Sequence[int]) -> list[int]:
    """Another valid size on every axis, about half the example (cheap to check), axes differing.

    Axis ``i`` gets the largest valid size ≤ ``example / 2`` minus ``i`` steps; where that falls
    below the smallest valid size, the example plus ``i + 1`` steps.
    """
    out = []
    for axis, s in enumerate(example):
        lo, step = rule.min[axis], rule.step[axis]
        half = (rule.nearest(axis, max(s // 2, 1))[0] or lo) - step * axis
        out.append(half if lo <= half < s else s + step * (axis + 1))
    return out


# -- model sources and metadata -----------------------------------------------------------------
def _load(source: ModelSource) -> tuple[nn.Module, dict]:
    """A CPU fp32 eval-mode copy of the model (logits output) and the checkpoint fields for metadata."""
    if isinstance(source, nn.Module):
        model, ckpt = source, {}
    elif isinstance(source, (str, Path, dict)):
        from ..checkpoint import build_model, load_checkpoint

        ckpt = load_checkpoint(source) if not isinstance(source, dict) else source
        model = build_model(ckpt, None if isinstance(source, dict) else source)
    else:
        raise ConfigError(
            f"export needs a model, a checkpoint path or a checkpoint dict, got {type(source).__name__}"
        )
    model = (
        copy.deepcopy(getattr(model, "module", model)).float().cpu().eval()
    )  # never touch the caller's model
    if hasattr(model, "outputs"):
        model.outputs = "logits"
    return model, ckpt


def _metadata(model: nn.Module, ckpt: dict, extra: Optional[dict], rule: dict) -> dict:
    import unetkit

    from .predictor import _spacing_unit, _trained_spacing

    info = {
        "label_map": ckpt.get("label_map"),
        "normalization": ckpt.get("normalization"),
        "patch_size": ckpt.get("patch_size"),
        "scale": ((ckpt.get("config") or {}).get("data") or {}).get("scale"),
        "target_spacing": ((ckpt.get("config") or {}).get("data") or {}).get("target_spacing"),
        "trained_spacing": _trained_spacing(ckpt),
        "spacing_unit": _spacing_unit(ckpt),
        "orientation": ((ckpt.get("config") or {}).get("data") or {}).get("orientation"),
        "postprocess": (ckpt.get("extra") or {}).get("postprocess"),
    }
    for key, value in (extra or {}).items():
        if key not in info:
            raise ConfigError(f"unknown metadata key {key!r}; use {sorted(info)}")
        info[key] = value.to_dict() if hasattr(value, "to_dict") else value
    num_classes = int(getattr(model, "num_classes", 0))
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "unetkit_version": unetkit.__version__,
        "torch_version": str(torch.__version__),
        "model": ckpt.get("model")
        or {
            "preset": getattr(model, "preset", None),
            "class": type(model).__name__,
            "kwargs": dict(getattr(model, "init_kwargs", {})),
        },
        "spatial_dims": int(model.spatial_dims),
        "in_channels": int(model.in_channels),
        "num_classes": num_classes,
        **info,
        "outputs": "logits",
        "activation": "sigmoid" if num_classes == 1 else "softmax",
        "valid_input_size": rule,
    }


def encode_metadata(meta: dict) -> dict[str, str]:
    """Metadata dict → ``{key: JSON string}`` (the form ONNX ``metadata_props`` hold)."""
    return {k: json.dumps(v, default=json_default) for k, v in meta.items()}


def decode_metadata(props: dict[str, str], path: Optional[Union[str, Path]] = None) -> dict:
    """Inverse of :func:`encode_metadata`; raises :class:`DataError` when it is not unetkit metadata."""
    if "format" not in props:
        raise DataError("not a unetkit export (no unetkit metadata in the file)", path)
    try:
        meta = {k: json.loads(v) for k, v in props.items()}
    except json.JSONDecodeError as exc:
        raise DataError(f"unreadable unetkit metadata ({exc})", path) from None
    if meta.get("format") != FORMAT:
        raise DataError(f"not a unetkit export (format {meta.get('format')!r})", path)
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise DataError(
            f"export format {meta['format_version']} is newer than this unetkit ({FORMAT_VERSION}); "
            f"upgrade unetkit",
            path,
        )
    return meta


# -- tracing and comparing ----------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_tracing():
    """Hide the tracer's and the deprecated exporters' warnings: generalisation is checked instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        # instance norm always normalises with the input's statistics: eval and train agree
        warnings.filterwarnings("ignore", message="ONNX export mode is set to TrainingMode.EVAL")
        yield


def _random_batch(
    batch: int, channels: int, size: Sequence[int], seed: int = CHECK_SEED
) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + batch + sum(size))
    return torch.randn(batch, channels, *size, generator=g)


class _Reference:
    """Seeded random inputs and the eager PyTorch logits for them, each computed once."""

    def __init__(self, model: nn.Module):
        self.model = model
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, batch: int, size: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        key = (batch, *size)
        if key not in self._cache:
            x = _random_batch(batch, int(self.model.in_channels), size)
            with torch.inference_mode():
                self._cache[key] = x, self.model(x).float()
        return self._cache[key]


def _tolerance(ref: torch.Tensor, rtol: float) -> float:
    """``rtol`` × the logit range (at least 1), ignoring CGM-suppressed logits."""
    from ..models.heads import CGM_SUPPRESSED_LOGIT

    vals = ref[ref > CGM_SUPPRESSED_LOGIT / 2]
    spread = float(vals.max() - vals.min()) if vals.numel() else 0.0
    return rtol * max(1.0, spread)


def _compare(run, x: torch.Tensor, ref: torch.Tensor, rtol: float) -> Optional[SizeCheck]:
    """Compare ``run(x)`` with ``ref``; ``None`` when ``run`` fails or gives another shape."""
    try:
        with torch.no_grad():
            out = run(x).detach()
    except Exception:  # a graph specialised to another size fails in many ways (shape errors)
        return None
    if tuple(out.shape) != tuple(ref.shape):
        return None
    diff = float((out.float() - ref).abs().max()) if ref.numel() else 0.0
    return SizeCheck(tuple(x.shape), tuple(ref.shape), diff, _tolerance(ref, rtol))


def _probe(
    model: nn.Module, reference: _Reference, example: list[int], second: list[int], rtol: float
):
    """Trace at ``example``; return (traced module, dynamic_batch, dynamic_spatial)."""
    with _quiet_tracing(), torch.no_grad():
        traced = torch.jit.trace(model, reference(1, example)[0], check_trace=False)
        traced.eval()

    def ok(b: int, size: list[int]) -> bool:
        res = _compare(traced, *reference(b, size), rtol)
        return res is not None and res.max_abs_diff <= res.tolerance

    spatial = ok(2, second)
    batch = spatial or ok(2, example)
    return traced, batch, spatial


def _check_shapes(example, second, dynamic_batch, dynamic_spatial) -> list[tuple[int, list[int]]]:
    shapes = [(1, list(example))]
    if dynamic_spatial:
        shapes.append((2 if dynamic_batch else 1, list(second)))
    elif dynamic_batch:
        shapes.append((2, list(example)))
    return shapes


def _run_checks(run, reference: _Reference, shapes, rtol, what: str, path: Path) -> list[SizeCheck]:
    checks = []
    c = int(reference.model.in_channels)
    for b, size in shapes:
        res = _compare(run, *reference(b, size), rtol)
        if res is None:
            raise ExportCheckError(
                f"{path}: the {what} export fails or gives another output shape than PyTorch "
                f"at input shape {(b, c, *size)}; the file was not written"
            )
        if not res.max_abs_diff <= res.tolerance:
            raise ExportCheckError(
                f"{path}: the {what} export differs from PyTorch by {res.max_abs_diff:.3g} "
                f"(tolerance {res.tolerance:.3g}) at input shape {(b, c, *size)}; "
                f"the file was not written"
            )
        checks.append(res)
    return checks


def _prepare(source, input_size, metadata, dynamic, rtol):
    if rtol <= 0:
        raise ConfigError(f"rtol must be > 0, got {rtol}")
    model, ckpt = _load(source)
    graph_rule = export_rule(model)
    patch = (metadata or {}).get("patch_size", ckpt.get("patch_size"))
    example = _example_size(graph_rule, input_size, patch)
    second = _second_size(graph_rule, example)
    reference = _Reference(model)
    if dynamic:
        traced, dyn_batch, dyn_spatial = _probe(model, reference, example, second, rtol)
    else:
        traced, dyn_batch, dyn_spatial = None, False, False
    if not dyn_spatial:
        graph_rule = graph_rule.fixed(example)
    rule = dict(
        graph_rule.to_dict(),
        dynamic_batch=dyn_batch,
        dynamic_spatial=dyn_spatial,
        example=list(example),
    )
    meta = _metadata(model, ckpt, metadata, rule)
    notes = []
    if dynamic and not dyn_spatial:
        notes.append(
            f"the traced graph of this {type(model).__name__} is specialised to its traced spatial size "
            f"{'×'.join(map(str, example))} (a Python int in its resize/pad code); pass --input-size to "
            f"export another size"
        )
    if dynamic and not dyn_batch:
        notes.append("the traced graph is specialised to batch size 1")
    return model, reference, example, second, dyn_batch, dyn_spatial, meta, notes, traced


def _dynamic_axes(dims: int, batch: bool, spatial: bool) -> dict:
    axes: dict[int, str] = {0: "batch"} if batch else {}
    if spatial:
        axes.update({2 + i: name for i, name in enumerate(_spatial_labels(dims))})
    return {INPUT_NAME: dict(axes), OUTPUT_NAME: dict(axes)} if axes else {}


# -- ONNX --------------------------------------------------------------------------------------
def export_onnx(
    model_or_checkpoint: ModelSource,
    path: Union[str, Path],
    input_size: Optional[Size] = None,
    opset: int = 17,
    dynamic: bool = True,
    check: bool = True,
    *,
    metadata: Optional[dict] = None,
    rtol: float = 1e-3,
    threads: Optional[int] = None,
) -> ExportReport:
    """Export the logits of a unetkit model to an ONNX file (TorchScript-based exporter).

    Args:
        model_or_checkpoint: a unetkit model (copied, never modified), a checkpoint path or a
            loaded checkpoint dict (label map, normalisation and patch size are taken from it).
        path: the ``.onnx`` file to write (atomically: a failed export or check leaves no file).
        input_size: spatial size to trace at (int or one per axis); default the checkpoint's patch
            size (else 512² / 128³) rounded down to an exportable size. Same-padding nets need a
            multiple of ``2**depth`` (per axis: the pooling period, which per-axis strides make
            differ); valid-padding nets a valid size (``16·k + 60`` for depth 4).
        opset: ONNX opset version.
        dynamic: declare the batch axis and, where the trace generalises, the spatial axes dynamic.
        check: run the written file with onnxruntime (CPU) at the example size (batch 1) and at a
            second shape (batch 2 at another valid size, about half the example and different per
            axis; batch 2 at the example size when the spatial size is fixed) and compare with
            PyTorch in fp32. The same inputs serve the trace probe, so the eager model runs once
            per shape.
        metadata: for a bare model, the inference fields a checkpoint would supply:
            ``label_map``, ``normalization`` (dicts or objects with ``to_dict()``), ``patch_size``.
        rtol: accepted difference relative to the logit range (the range counts as at least 1).
        threads: onnxruntime intra-op threads for the check (``None`` = its default).

    Returns:
        An :class:`ExportReport` (path, size, dynamic axes, checks, metadata).

    Raises:
        DataError: the checkpoint is missing, unreadable or damaged (named with what is wrong).
        OutputError: ``path`` cannot be written (a folder, under a file, no permission, disk full).
        ConfigError: an input size the graph cannot be traced at, or a bad argument.
        MissingDependencyError: ``onnx`` (or ``onnxruntime`` with ``check=True``) is not installed.
        ExportCheckError: the check failed; no file is written.
    """
    onnx = require("onnx")
    if check:
        require("onnxruntime")
    if not isinstance(opset, int) or not 11 <= opset <= 25:
        raise ConfigError(f"opset must be an int between 11 and 25, got {opset!r}")
    path = Path(path)
    check_output_file(path)  # before the trace: a path that can never be written fails at once
    model, reference, example, second, dyn_batch, dyn_spatial, meta, notes, _ = _prepare(
        model_or_checkpoint, input_size, metadata, dynamic, rtol
    )
    dims = int(model.spatial_dims)
    axes = _dynamic_axes(dims, dyn_batch, dyn_spatial)
    buffer = io.BytesIO()
    with _quiet_tracing(), torch.no_grad():
        torch.onnx.export(
            model,
            (reference(1, example)[0],),
            buffer,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamic_axes=axes or None,
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    proto.doc_string = f"unetkit {meta['model'].get('preset') or meta['model'].get('class')} logits"
    for key, value in encode_metadata(meta).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    checks: list[SizeCheck] = []
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
        if check:
            runner = OnnxRunner(tmp, threads=threads)
            checks = _run_checks(
                runner,
                reference,
                _check_shapes(example, second, dyn_batch, dyn_spatial),
                rtol,
                "ONNX",
                path,
            )
    return ExportReport(
        path=path,
        format="onnx",
        file_size=path.stat().st_size,
        example_size=tuple(example),
        dynamic_batch=dyn_batch,
        dynamic_spatial=dyn_spatial,
        dynamic_axes=axes,
        checks=checks,
        metadata=meta,
        opset=opset,
        notes=notes,
    )


def read_onnx_metadata(path: Union[str, Path]) -> dict:
    """The decoded unetkit metadata of an exported ``.onnx`` file (needs ``onnx``)."""
    onnx = require("onnx")
    path = Path(path)
    if not path.is_file():
        raise DataError("ONNX model not found", path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise DataError(
            f"cannot read ONNX model ({type(exc).__name__}: {str(exc)[:200]})", path
        ) from None
    return decode_metadata({p.key: p.value for p in proto.metadata_props}, path)


class OnnxRunner:
    """Run an exported ``.onnx`` model with onnxruntime (CPU), as a :class:`Predictor` backend.

    ``runner(batch)`` has the contract of ``Predictor._forward``: a float batch ``(B, C, *tile)``
    (torch, any float dtype and device) in, CPU float32 logits ``(B, K, *out)`` out. Like a
    unetkit model it answers :meth:`size_rule` (from the file's metadata), which is all the tiling
    code asks of a model, so ``choose_overlap_tile(runner, …)`` works for valid-padding exports.

    Args:
        path: an ``.onnx`` file written by :func:`export_onnx`.
        threads: intra-op threads (``None`` = onnxruntime's default, all cores).

    Raises:
        DataError: missing or unreadable file, or not a unetkit export.
        MissingDependencyError: onnxruntime is not installed.

    Example:
        >>> runner = OnnxRunner("unet.onnx", threads=2)
        >>> runner(torch.zeros(2, 1, 64, 64)).shape
        torch.Size([2, 2, 64, 64])
    """

    backend_name = "onnxruntime (CPU execution provider)"

    def __init__(self, path: Union[str, Path], threads: Optional[int] = None):
        ort = require("onnxruntime")
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError("ONNX model not found", self.path)
        if threads is not None and int(threads) < 1:
            raise ConfigError(f"threads must be ≥ 1, got {threads}")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(self.path), opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise DataError(
                f"cannot read ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
                self.path,
            ) from None
        self.metadata = decode_metadata(self.session.get_modelmeta().custom_metadata_map, self.path)
        self.spatial_dims = int(self.metadata["spatial_dims"])
        self.in_channels = int(self.metadata["in_channels"])
        self.num_classes = int(self.metadata["num_classes"])
        #: ``fp32``, or ``int8`` for a copy written by :func:`unetkit.inference.quantize.quantize_int8`
        self.precision = str(self.metadata.get("precision", "fp32"))
        self.info = self.metadata["valid_input_size"]  # the rule plus dynamic axes and example
        self.rule = SizeRule.from_dict(self.info, self.spatial_dims)
        self.input_name = self.session.get_inputs()[0].name

    def eval(self) -> OnnxRunner:
        """No-op (an exported graph is always in eval mode), so a Predictor can hold the runner as its model."""
        return self

    # -- sizes -------------------------------------------------------------------------------------
    def size_rule(self) -> SizeRule:
        """The graph's :class:`~unetkit.models.geometry.SizeRule`, from the file's metadata."""
        return self.rule

    def _check_sizes(self, sizes: Sequence[int]) -> None:
        self.rule.check(sizes, what="this export", prefix=f"{self.path}: ")

    # -- running -------------------------------------------------------------------------------
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """``(B, C, *spatial)`` float batch → ``(B, K, *out)`` CPU float32 logits."""
        if not isinstance(batch, torch.Tensor) or not batch.is_floating_point():
            raise ConfigError(
                f"expected a float torch tensor batch, got {getattr(batch, 'dtype', type(batch))}"
            )
        if batch.dim() != self.spatial_dims + 2 or batch.shape[1] != self.in_channels:
            raise ConfigError(
                f"{self.path}: expected a batch (B, {self.in_channels}, "
                f"{', '.join(_spatial_labels(self.spatial_dims))}), got shape {tuple(batch.shape)}"
            )
        self._check_sizes(list(batch.shape[2:]))
        if not self.info.get("dynamic_batch", False) and batch.shape[0] != 1:
            return torch.cat([self(batch[i : i + 1]) for i in range(batch.shape[0])])
        x = batch.detach().to("cpu", torch.float32).contiguous().numpy()
        try:
            (y,) = self.session.run([OUTPUT_NAME], {self.input_name: x})
        except Exception as exc:
            raise DataError(
                f"onnxruntime failed on input shape {tuple(x.shape)}: "
                f"{str(exc).splitlines()[0][:300]}",
                self.path,
            ) from None
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))

    def predictor_kwargs(self) -> dict:
        """What a :class:`~unetkit.inference.predictor.Predictor` needs besides the network.

        Returns:
            ``{"tile": [..], "normalization": dict | None, "label_map": dict | None}``: the tile is
            the training patch size when the graph accepts it, else the traced example size;
            ``normalization`` / ``label_map`` are the checkpoint dicts (rebuild them with
            ``Normalizer.from_dict`` / ``LabelMap.from_dict``).
        """
        patch = self.metadata.get("patch_size")
        tile = list(self.info.get("example") or self.rule.min)
        if patch is not None:
            sizes = per_axis(patch, self.spatial_dims, "patch_size")
            if self.rule.accepts(sizes):
                tile = list(sizes)
        return {
            "tile": tile,
            "normalization": self.metadata.get("normalization"),
            "label_map": self.metadata.get("label_map"),
        }

    def predictor(self, **kwargs):
        """A CPU fp32 :class:`~unetkit.inference.predictor.Predictor` that runs this file.

        The runner is both the predictor's model (for sizes) and its backend. Normaliser and label
        map come from the metadata; a graph fixed to one spatial size gets that size as its tile
        (images smaller than it are mirror-padded by the tiler). Keyword arguments go to
        ``Predictor`` (``tile``, ``overlap``, ``tta``, ``batch_size`` …) and override those.
        """
        from ..data.labels import LabelMap
        from ..data.normalization import Normalizer
        from .postprocess import PostProcessing
        from .predictor import Predictor

        info = self.predictor_kwargs()
        if kwargs.get("tile") is None and not self.info.get("dynamic_spatial", False):
            kwargs["tile"] = info["tile"]
        if "normalizer" not in kwargs:
            kwargs["normalizer"] = (
                Normalizer.from_dict(info["normalization"]) if info["normalization"] else None
            )
        if "label_map" not in kwargs:
            kwargs["label_map"] = (
                LabelMap.from_dict(info["label_map"]) if info["label_map"] else None
            )
        kwargs.setdefault("scale", self.metadata.get("scale"))
        kwargs.setdefault("target_spacing", self.metadata.get("target_spacing"))
        if kwargs.get("scale") is None and kwargs.get("target_spacing") is None:
            kwargs.setdefault("trained_spacing", self.metadata.get("trained_spacing"))
        kwargs.setdefault("spacing_unit", self.metadata.get("spacing_unit"))
        kwargs.setdefault("orientation", self.metadata.get("orientation"))
        if "postprocess" not in kwargs:  # the clean-ups the checkpoint's training chose
            try:
                kwargs["postprocess"] = PostProcessing.from_dict(self.metadata.get("postprocess"))
            except UnetkitError as exc:
                raise DataError(
                    f"damaged post-processing in the metadata ({exc}); export it again", self.path
                ) from None
        for key in ("device", "precision", "channels_last", "runner"):
            if kwargs.pop(key, None) not in (None, "auto", "cpu", "fp32", False, self):
                raise ConfigError(f"{key} cannot be chosen for the onnxruntime backend (CPU, fp32)")
        return Predictor(
            self, device="cpu", precision="fp32", channels_last=False, runner=self, **kwargs
        )

    def __repr__(self) -> str:
        return (
            f"OnnxRunner({str(self.path)!r}, {self.metadata['model'].get('class')}, "
            f"{self.spatial_dims}D, sizes {self.rule.describe()})"
        )


# -- TorchScript ---------------------------------------------------------------------------------
def export_torchscript(
    model_or_checkpoint: ModelSource,
    path: Union[str, Path],
    input_size: Optional[Size] = None,
    check: bool = True,
    *,
    metadata: Optional[dict] = None,
    rtol: float = 1e-3,
) -> ExportReport:
    """Export the logits of a unetkit model as a traced TorchScript module (``torch.jit.trace``).

    ``torch.jit.script`` is not attempted: the model code (imports inside ``forward``, error
    messages built at run time) is not scriptable. A traced module replays the operations of one
    forward pass: every size the model code turned into a Python int is a constant. Measured with
    torch 2.13: same-padding U-Nets generalise to every multiple of ``2**depth`` and the valid
    U-Net to every valid size; UNet 3+, the bilinear U-Net and UNet++ are specialised to the traced
    spatial size (their resizes target constant sizes) and fail at another one. Every export runs
    the trace at a second size to find out, and records the answer in the metadata
    (``valid_input_size``), stored as the extra file ``unetkit.json``
    (see :func:`read_torchscript_metadata`).

    Args:
        model_or_checkpoint, input_size, metadata, rtol: as for :func:`export_onnx`.
        path: the file to write (atomically), conventionally ``*.torchscript.pt``.
        check: reload the written file and compare it with PyTorch at the example size and at a
            second shape, as :func:`export_onnx` does.

    Returns:
        An :class:`ExportReport` (``dynamic_axes`` lists the axes verified dynamic).

    Raises:
        DataError, ConfigError: as for :func:`export_onnx`.
        ExportCheckError: the reloaded file does not reproduce PyTorch; no file is written.
    """
    path = Path(path)
    check_output_file(path)
    model, reference, example, second, dyn_batch, dyn_spatial, meta, notes, traced = _prepare(
        model_or_checkpoint, input_size, metadata, True, rtol
    )
    checks: list[SizeCheck] = []
    with atomic_path(path) as tmp:
        with (
            _quiet_tracing(),
            open(tmp, "wb") as fh,
        ):  # a Python file: a full disk raises OSError, not RuntimeError
            torch.jit.save(
                traced,
                fh,
                _extra_files={TORCHSCRIPT_METADATA: json.dumps(meta, default=json_default)},
            )
        if check:
            with _quiet_tracing():
                loaded = torch.jit.load(str(tmp), map_location="cpu")

            def run(x):
                with torch.inference_mode():
                    return loaded(x).float()

            checks = _run_checks(
                run,
                reference,
                _check_shapes(example, second, dyn_batch, dyn_spatial),
                rtol,
                "TorchScript",
                path,
            )
    return ExportReport(
        path=path,
        format="torchscript",
        file_size=path.stat().st_size,
        example_size=tuple(example),
        dynamic_batch=dyn_batch,
        dynamic_spatial=dyn_spatial,
        dynamic_axes=_dynamic_axes(int(model.spatial_dims), dyn_batch, dyn_spatial),
        checks=checks,
        metadata=meta,
        notes=notes,
    )


def load_torchscript(path: Union[str, Path]) -> tuple[torch.jit.ScriptModule, dict]:
    """Load a TorchScript export on the CPU with its decoded unetkit metadata."""
    path = Path(path)
    if not path.is_file():
        raise DataError("TorchScript model not found", path)
    files = {TORCHSCRIPT_METADATA: ""}
    try:
        with _quiet_tracing():
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    except Exception as exc:
        raise DataError(
            f"cannot read TorchScript model ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
            path,
        ) from None
    raw = files[TORCHSCRIPT_METADATA]
    if not raw:
        raise DataError("not a unetkit export (no unetkit.json inside)", path)
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DataError(f"unreadable unetkit metadata ({exc})", path) from None
    return module, decode_metadata(encode_metadata(meta), path)


def read_torchscript_metadata(path: Union[str, Path]) -> dict:
    """The decoded unetkit metadata of a TorchScript export."""
    return load_torchscript(path)[1]


__all__ = [
    "ExportCheckError",
    "ExportReport",
    "MissingDependencyError",
    "OnnxRunner",
    "SizeCheck",
    "decode_metadata",
    "describe_rule",
    "encode_metadata",
    "export_onnx",
    "export_torchscript",
    "load_torchscript",
    "read_onnx_metadata",
    "read_torchscript_metadata",
    "require",
    "export_rule",
]

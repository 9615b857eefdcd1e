"""Fast inference: turn a model into one callable specialised for the tile shape.

``optimize_for_inference(model, example_shape, …)`` returns a :class:`FastForward`, a callable
mapping a batch ``(B, C, *spatial)`` (already on the device, in the model's memory format) to
float32 logits ``(B, K, *out_spatial)``. Modes, with what each costs and where its saving comes
from (measured per 512² tile of the 64-wide U-Net, bf16 + channels-last, with
``benchmarks/bench_infer.py``: BENCHMARKS.md, "The fast path on one 512² tile"):

* ``eager``: the model under ``torch.inference_mode()`` + autocast, as the predictor runs it.
  Build: a copy of the weights.
* ``jit``: ``torch.jit.trace`` under autocast, ``torch.jit.freeze`` (batch norm folded into the
  convolutions, weights constant) and ``torch.jit.optimize_for_inference``. Build: one traced
  forward pass. Most of what freezing saves is page-faulting fresh memory for the batch-norm
  outputs, so once freed memory is reused (:func:`unetkit.runtime.keep_freed_memory`, which
  ``unetkit predict`` turns on) it is barely faster than eager. It holds a second copy of the
  weights. TorchScript is deprecated upstream, but it is still the cheapest freezing there is.
* ``compile``: ``torch.compile(dynamic=False)`` with Inductor *freezing* (batch norm folded,
  weights prepacked for oneDNN, ReLU fused into the convolutions): the fastest per tile, with the
  costliest build (tracing, freezing, code generation and a C++ compile), cheaper when warm.
  Inductor's FX graph cache (on by default) does *not* apply: it bypasses frozen CPU graphs
  ("mkldnn tensors unpickleable"). Without freezing it would, but that graph runs slower, no
  faster than ``jit``. What a later process does reuse is Inductor's on-disk cache of compiled C++
  kernels (``$TORCHINDUCTOR_CACHE_DIR``, else ``/tmp/torchinductor_$USER``): the same net and tile
  shape skip the C++ compiler, whatever the weights; tracing, freezing and code generation remain.
  Needs a C++ compiler.
* ``auto``: by job size, see :func:`choose_mode`.

When ``jit`` or ``compile`` cannot be built, a ``RuntimeWarning`` says why and the callable runs
``eager``.

Shapes: the fast path serves exactly ``example_shape``. A smaller batch of the same tile shape
(the last batch of an image) is zero-padded to the example batch size, so nothing is built again;
any other shape (an image smaller than the tile) runs ``eager``. On CPU a batch of one tile is as
fast per tile as a batch of four, so ``B = 1`` wastes nothing on padding.

The callable holds a copy of the model taken when it is built: later changes to ``model``
(training, loading a state dict) do not reach it, and ``model`` itself is never changed.
"""

from __future__ import annotations

import copy
import time
import warnings
from typing import Callable, Optional, Sequence, Union

import torch
from torch import nn

from .. import runtime
from ..errors import ConfigError

MODES = ("auto", "eager", "jit", "compile")

#: ``auto`` uses ``jit`` from this many tiles of the example shape on: with freed memory reused it
#: saves little per tile and costs a traced forward pass and a second copy of the weights, so it
#: pays for mid-sized jobs only (a 2048² image, 16 tiles, stays eager). Measured: BENCHMARKS.md,
#: "The fast path on one 512² tile".
JIT_MIN_TILES = 64
#: ``auto`` compiles from this many tiles on: a compile takes far longer to build than ``jit`` and
#: saves a little more per tile, which repays the build only on large jobs (same section).
COMPILE_MIN_TILES = 400


def choose_mode(
    model: nn.Module,
    device: torch.device,
    dtype: Optional[torch.dtype],
    expected_tiles: Optional[int] = None,
) -> str:
    """The mode ``auto`` resolves to.

    Rule (measured with the 64-wide U-Net on 512² tiles, BENCHMARKS.md; the build costs are paid
    once per job, the savings per tile):

    * not CPU, or a 3D net: ``eager`` (no gains were measured there);
    * the bf16 path (``dtype`` bf16 on a CPU with bf16, :func:`unetkit.runtime.cpu_supports_bf16`):
      by the job size ``expected_tiles``: unknown or < :data:`JIT_MIN_TILES` → ``eager``;
      < :data:`COMPILE_MIN_TILES` → ``jit``; more → ``compile``;
    * the fp32 path (``dtype`` None): ``compile`` from :data:`COMPILE_MIN_TILES` tiles, else
      ``eager``. On an AVX2-only CPU fp32 ``jit`` gained nothing over eager channels-last, while
      ``compile`` saved a little per tile for a long cold build (BENCHMARKS.md, "The fp32 path on
      a CPU without bf16");
    * any other dtype (emulated bf16, fp16 on CPU): ``eager``.

    Args:
        model: the network (its ``spatial_dims`` attribute, default 2).
        device: where it runs.
        dtype: the autocast dtype (``None`` = fp32).
        expected_tiles: tiles of the example shape the job will run (``None`` = unknown).

    Returns:
        ``"eager"``, ``"jit"`` or ``"compile"``.
    """
    spatial_dims = getattr(model, "spatial_dims", 2)
    if device.type != "cpu" or spatial_dims != 2 or expected_tiles is None:
        return "eager"
    if dtype is None:
        return "compile" if expected_tiles >= COMPILE_MIN_TILES else "eager"
    if dtype != torch.bfloat16 or not runtime.cpu_supports_bf16() or expected_tiles < JIT_MIN_TILES:
        return "eager"
    return "compile" if expected_tiles >= COMPILE_MIN_TILES else "jit"


class FastForward:
    """Callable ``(B, C, *spatial)`` batch → float32 logits ``(B, K, *out_spatial)``.

    Build with :func:`optimize_for_inference`. Attributes:
        mode: the mode actually used (``auto`` resolved; ``eager`` after a failed build).
        requested_mode: the mode asked for.
        example_shape: the batch shape the fast path is specialised for.
        build_seconds: time spent building (the cold-start cost: copy, trace or compile).
    """

    def __init__(
        self,
        fast: Callable[[torch.Tensor], torch.Tensor],
        eager: Callable[[torch.Tensor], torch.Tensor],
        mode: str,
        requested_mode: str,
        example: torch.Tensor,
        build_seconds: float,
    ):
        self._fast, self._eager = fast, eager
        self.mode, self.requested_mode = mode, requested_mode
        self.example_shape = tuple(example.shape)
        self._stride, self._dtype = example.stride(), example.dtype
        self.build_seconds = float(build_seconds)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self._dtype)  # e.g. float64 tiles of a float64 image
        n, full = batch.shape[0], self.example_shape[0]
        if tuple(batch.shape[1:]) != self.example_shape[1:] or n > full:
            return self._eager(batch)
        if n < full:  # the last batch of an image: pad instead of building another graph
            batch = torch.cat([batch, batch.new_zeros((full - n, *batch.shape[1:]))])
        if batch.stride() != self._stride:  # compiled graphs are guarded on strides, too
            batch = torch.empty_strided(
                batch.shape, self._stride, dtype=batch.dtype, device=batch.device
            ).copy_(batch)
        y = self._fast(batch)
        return y[:n] if n < full else y

    def __repr__(self) -> str:
        return (
            f"FastForward(mode={self.mode!r}, example_shape={list(self.example_shape)}, "
            f"build_seconds={self.build_seconds:.2f})"
        )


def optimize_for_inference(
    model: nn.Module,
    example_shape: Sequence[int],
    device: Union[str, torch.device] = "cpu",
    dtype: Optional[torch.dtype] = None,
    channels_last: bool = False,
    mode: str = "auto",
    expected_tiles: Optional[int] = None,
) -> FastForward:
    """Build the fastest forward function for one tile shape.

    Args:
        model: a unetkit model (or any module returning a logits tensor); not modified.
        example_shape: the batch shape ``(B, C, *spatial)`` the job will mostly use.
        device: where batches live (``cpu``, ``cuda`` …).
        dtype: autocast dtype (``torch.bfloat16``, ``torch.float16``) or ``None`` for fp32, as
            :func:`unetkit.runtime.resolve_precision` returns.
        channels_last: whether batches come channels-last (the model is run in that format).
        mode: ``auto``, ``eager``, ``jit`` or ``compile`` (module docstring).
        expected_tiles: tiles the job will run; ``auto`` compiles only for large jobs.

    Returns:
        a :class:`FastForward`: batch ``(B, C, *spatial)`` on ``device`` → float32 logits.

    Raises:
        ConfigError: unknown mode, or an example shape that does not fit the model.

    Example:
        >>> import torch
        >>> from unetkit import create_model
        >>> net = create_model("unet", in_channels=1, num_classes=2, base_features=4, depth=2)
        >>> fwd = optimize_for_inference(net, (2, 1, 64, 64), mode="jit", dtype=torch.bfloat16)
        >>> fwd(torch.zeros(1, 1, 64, 64)).dtype
        torch.float32
    """
    if mode not in MODES:
        raise ConfigError(f"unknown inference mode {mode!r}; use one of {', '.join(MODES)}")
    device = device if isinstance(device, torch.device) else runtime.resolve_device(device)
    example_shape = tuple(int(s) for s in example_shape)
    spatial_dims = getattr(model, "spatial_dims", len(example_shape) - 2)
    if len(example_shape) != spatial_dims + 2 or min(example_shape) < 1:
        raise ConfigError(
            f"example_shape must be (B, C, {'D, ' if spatial_dims == 3 else ''}H, W) with sizes ≥ 1, "
            f"got {list(example_shape)}"
        )
    fmt = runtime.memory_format(spatial_dims, channels_last)
    chosen = choose_mode(model, device, dtype, expected_tiles) if mode == "auto" else mode
    t0 = time.perf_counter()
    net = _logits_copy(model, device, fmt)
    param = next(net.parameters(), None)
    example = torch.zeros(
        example_shape, device=device, dtype=param.dtype if param is not None else torch.float32
    )
    example = example.contiguous(memory_format=fmt)
    eager = _eager_forward(net, device, dtype)
    if chosen == "eager":
        return FastForward(eager, eager, "eager", mode, example, time.perf_counter() - t0)
    try:
        if chosen == "jit":
            fast = _jit_forward(
                net, example, device, dtype
            )  # tracing runs the net once; no warm-up needed
        else:
            fast = _compiled_forward(net, device, dtype)
            fast(example)  # compiles now (errors surface here), not on the first tile
    except Exception as exc:  # a missing C++ compiler, an op the tracer cannot handle …
        warnings.warn(
            f"inference mode {chosen!r} could not be built ({type(exc).__name__}: {exc}); "
            f"running eager",
            RuntimeWarning,
            stacklevel=2,
        )
        return FastForward(eager, eager, "eager", mode, example, time.perf_counter() - t0)
    return FastForward(fast, eager, chosen, mode, example, time.perf_counter() - t0)


# -- builders ------------------------------------------------------------------------------------
def _logits_copy(model: nn.Module, device: torch.device, fmt: torch.memory_format) -> nn.Module:
    """An eval-mode copy returning only the main logits, on ``device`` in ``fmt``."""
    net = copy.deepcopy(model)
    if getattr(net, "outputs", None) is not None:
        net.outputs = "logits"
    return net.to(device).to(memory_format=fmt).eval()


def _eager_forward(net: nn.Module, device: torch.device, dtype: Optional[torch.dtype]):
    """``net`` (a :func:`_logits_copy`) under inference mode and autocast."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), runtime.autocast(device, dtype):
            return net(x).float()

    return forward


def _jit_forward(
    net: nn.Module, example: torch.Tensor, device: torch.device, dtype: Optional[torch.dtype]
):
    """Trace under autocast (weight-cast cache off, as tracing requires), freeze, optimise."""
    with torch.no_grad(), warnings.catch_warnings():
        # shape checks in Python turn into constants (fine: the graph serves one shape); TorchScript
        # itself is deprecated in favour of torch.compile, which a user cannot act on here
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        if dtype is None:
            traced = torch.jit.trace(net, example, check_trace=False)
        else:
            with torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=False):
                traced = torch.jit.trace(net, example, check_trace=False)
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), runtime.autocast(device, dtype):
            return frozen(x).float()

    return forward


def _compiled_forward(net: nn.Module, device: torch.device, dtype: Optional[torch.dtype]):
    """``torch.compile`` with Inductor freezing, for one static shape.

    Freezing is switched on with ``torch._inductor.config.patch`` around each call (a compile only
    happens inside a call): ``torch.compile(options={"freezing": True})`` is silently ignored by
    PyTorch 2.13 (the convolutions then stay unfused and run slower, BENCHMARKS.md), and setting
    the global flag would change every other ``torch.compile`` in the process.
    """
    import torch._inductor.config as inductor_config

    compiled = torch.compile(net, dynamic=False)

    def forward(x: torch.Tensor) -> torch.Tensor:
        with (
            torch.inference_mode(),
            runtime.autocast(device, dtype),
            inductor_config.patch(freezing=True),
        ):
            return compiled(x).float()

    return forward

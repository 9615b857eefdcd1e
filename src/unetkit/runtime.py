"""Device, precision and memory-format choices, made once and explained.

Two CPU paths exist (BENCHMARKS.md has the measurements): on a CPU with native bf16 (AVX-512 BF16 or
AMX) bf16 autocast + channels-last; elsewhere fp32 (bf16 there is emulated and slower than fp32).
Channels-last helps batch-norm nets but not instance-norm ones. ``auto`` settings follow the probe
(:func:`cpu_supports_bf16`), which the environment switch ``UNETKIT_CPU_BF16`` can force either way so
that both paths are tested on any machine.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU raises with the reason."""
    if name in ("auto", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {name!r} requested but this PyTorch ({torch.__version__}) sees no CUDA GPU; "
            f"use --device cpu"
        )
    return device


#: Environment switch for the CPU precision path: ``0`` forces the fp32 path (as on a CPU without
#: native bf16), ``1`` forces bf16 autocast even where it is emulated (slow; for testing the bf16 path
#: on any CPU), unset or ``auto`` follows the probe.
CPU_BF16_ENV = "UNETKIT_CPU_BF16"


def native_cpu_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX-512 BF16, AMX or AVX2-VNNI-2), by oneDNN's probe."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_bf16_override() -> Optional[bool]:
    """The ``UNETKIT_CPU_BF16`` switch: ``True``/``False`` when set to 1/0, ``None`` when unset/auto."""
    import os

    raw = os.environ.get(CPU_BF16_ENV, "auto").strip().lower()
    if raw in ("", "auto"):
        return None
    if raw in ("0", "1"):
        return raw == "1"
    raise ConfigError(f"{CPU_BF16_ENV}={raw!r}: use 0 (fp32 path), 1 (bf16 path) or auto")


def cpu_supports_bf16() -> bool:
    """Whether the CPU path uses bf16: the native probe unless ``UNETKIT_CPU_BF16`` forces a path.

    Every ``auto`` choice on CPU (autocast dtype, fast-path builds) asks this function, so setting
    ``UNETKIT_CPU_BF16=0`` on an AVX-512 machine runs exactly what a CPU without bf16 runs.
    """
    override = cpu_bf16_override()
    return native_cpu_bf16() if override is None else override


@dataclass(frozen=True)
class CpuInfo:
    """What the CPU offers, as far as the precision and kernel choices are concerned."""

    model: str
    isa: str  # torch's kernel level: AVX512, AVX2, DEFAULT, ...
    flags: tuple  # the relevant /proc/cpuinfo flags present (avx2, avx512f, avx512_bf16, amx_bf16, ...)
    native_bf16: bool
    cores: int
    #: /proc/cpuinfo's "cpu family" and "model" numbers ("" where unknown): virtual machines often
    #: name every CPU generation of a vendor alike ("AMD EPYC"), the numbers still tell them apart
    family: str = ""

    def describe(self) -> str:
        bf16 = "native bf16" if self.native_bf16 else "no native bf16"
        family = f"{self.family}; " if self.family else ""
        return (
            f"{self.model} ({family}{self.cores} cores; {self.isa}, {bf16}; "
            f"flags {' '.join(self.flags) or 'none'})"
        )


#: CPU flags that decide unetkit's CPU paths (vector width, bf16/int8 dot products, AMX).
RELEVANT_CPU_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)


def cpu_info() -> CpuInfo:
    """Probe the CPU once: model name and flags from /proc/cpuinfo (Linux), torch's ISA level."""
    import os
    import platform

    model, flags = platform.processor() or platform.machine(), set()
    numbers: dict = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model = value.strip()
                elif key in ("cpu family", "model"):
                    numbers.setdefault(key, value.strip())
                elif key == "flags":  # after the model name: the first processor is enough
                    flags = set(value.split())
                    break
    except OSError:
        pass
    try:
        isa = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        isa = "unknown"
    return CpuInfo(
        model=model or "unknown CPU",
        isa=isa,
        flags=tuple(f for f in RELEVANT_CPU_FLAGS if f in flags),
        native_bf16=native_cpu_bf16(),
        cores=os.cpu_count() or 1,
        family=(
            f"family {numbers['cpu family']} model {numbers['model']}" if len(numbers) == 2 else ""
        ),
    )


def describe_path(
    device: torch.device,
    dtype: Optional[torch.dtype],
    channels_last: bool,
    mode: Optional[str] = None,
) -> str:
    """One line saying which compute path a command chose: device (ISA), precision, layout, threads."""
    prec = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))
    layout = "channels-last" if channels_last else "contiguous layout"
    if device.type == "cpu":
        info = cpu_info()
        override = cpu_bf16_override()
        why = ""
        if override is not None:
            why = f", {CPU_BF16_ENV}={int(override)}"
        bf16 = "native bf16" if info.native_bf16 else "no native bf16"
        where = f"cpu {info.isa} ({bf16}{why}), {torch.get_num_threads()} threads"
    else:
        where = (
            f"{device} ({torch.cuda.get_device_name(device)})"
            if device.type == "cuda"
            else str(device)
        )
    extra = f", {mode}" if mode else ""
    return f"compute path: {where}, {prec}, {layout}{extra}"


def training_precision(name: str, device: torch.device, spatial_dims: int) -> Optional[torch.dtype]:
    """:func:`resolve_precision` for training: ``auto`` trains 3D nets on CPU in fp32.

    oneDNN's bf16 weight gradient of a 3D convolution whose input is 2 voxels deep (the bottleneck
    of a depth-3 net on 16-slice patches, say) reads uninitialised memory in torch 2.13: the gradient
    comes out NaN or silently wrong depending on what the allocator hands back. The bf16 speed-ups
    were measured for 2D only, so ``auto`` does not take the risk in 3D; ``bf16`` asked for
    explicitly is kept, with a warning.
    """
    if device.type == "cpu" and spatial_dims == 3:
        if name == "auto":
            return None
        if name == "bf16":
            import warnings

            warnings.warn(
                "bf16 training of 3D nets on CPU can give non-finite or wrong weight gradients "
                "(oneDNN, 2-voxel-deep inputs); use precision fp32 if the loss turns NaN",
                RuntimeWarning,
                stacklevel=2,
            )
    return resolve_precision(name, device)


def resolve_precision(name: str, device: torch.device) -> Optional[torch.dtype]:
    """Autocast dtype for ``name`` (``auto``/``bf16``/``fp16``/``fp32``) on ``device``; ``None`` = fp32."""
    if name == "fp32":
        return None
    if name == "fp16":
        if device.type != "cuda":
            raise ConfigError("precision fp16 needs a CUDA device; on CPU use bf16 or fp32")
        return torch.float16
    if name == "bf16":
        return torch.bfloat16
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_supports_bf16() else None
    raise ConfigError(f"unknown precision {name!r}; use auto, bf16, fp16 or fp32")


def use_channels_last(
    model: nn.Module,
    device: torch.device,
    requested: Optional[bool],
    dtype: Optional[torch.dtype] = None,
    training: bool = False,
) -> bool:
    """Explicit choice, or automatic: on CPU for nets with batch norm, except fp32 training.

    Measured (BENCHMARKS.md, the kernel-path table and "The fp32 path on a CPU without bf16"):
    channels-last speeds up bf16 training and inference and fp32 inference of batch-norm nets, but
    slows fp32 training down (its backward pass; the wider the net, the more). Instance-norm nets
    gain nothing from it.

    Args:
        model: the network (checked for batch-norm layers).
        device: where it runs.
        requested: ``True``/``False`` decides; ``None`` = automatic.
        dtype: the autocast dtype (``None`` = fp32).
        training: whether the layout is for training steps (forward + backward) or inference.
    """
    if requested is not None:
        return bool(requested)
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if device.type != "cpu" or not has_bn:
        return False
    return not (training and dtype is None)


def memory_format(spatial_dims: int, channels_last: bool) -> torch.memory_format:
    if not channels_last:
        return torch.contiguous_format
    return torch.channels_last if spatial_dims == 2 else torch.channels_last_3d


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    """``torch.autocast`` for ``dtype``, or a no-op context for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


#: torch's CPU threads when unetkit first loaded this module (before any ``--threads``): what the
#: command line gives back after a command run in-process (``unetkit.cli.main``)
THREADS_AT_IMPORT = torch.get_num_threads()


def set_threads(threads: Optional[int]) -> None:
    """Set torch's intra-op CPU threads when given (default: torch's choice, one per core).

    Process-wide; library code does not call it (see :func:`configure_process`).
    """
    if threads:
        torch.set_num_threads(int(threads))


#: glibc ``mallopt`` parameters (malloc.h) and the values :func:`keep_freed_memory` sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 1 << 30
_TRIM_THRESHOLD = (1 << 31) - 1
_allocator_state: dict = {}


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the system.

    A U-Net forward pass on a CPU allocates and frees tensors of tens to hundreds of MB. By default
    glibc serves each from a fresh ``mmap`` and unmaps it when freed, so every tile page-faults and
    zero-fills all of its activations again, a sizeable share of a CPU prediction's time
    (BENCHMARKS.md, "The allocator"). With a 1 GiB mmap threshold and no trimming, freed blocks are
    reused; the peak RSS grows by the heap's fragmentation, and the memory goes back to the system
    when the process ends. Process-wide, once; Linux with glibc only; entry points ask for it
    through :func:`configure_process`. Turn it off with the environment variable
    ``UNETKIT_KEEP_FREED_MEMORY=0``.

    Returns:
        Whether the setting is in effect.
    """
    if "on" in _allocator_state:
        return _allocator_state["on"]
    import os
    import sys

    on = False
    if sys.platform.startswith("linux") and os.environ.get("UNETKIT_KEEP_FREED_MEMORY", "1") != "0":
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            on = bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
                libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
            )
        except (OSError, AttributeError):  # not glibc (musl, …): keep the defaults
            on = False
    _allocator_state["on"] = on
    return on


def configure_process(threads: Optional[int] = None, reuse_freed_memory: bool = True) -> None:
    """Make the process-wide settings unetkit's commands run with; call it once, at the entry point.

    Sets:

    * torch's intra-op CPU threads to ``threads`` (``None`` leaves torch's choice, one per core);
    * with ``reuse_freed_memory``, glibc's malloc to keep freed memory for reuse
      (:func:`keep_freed_memory`): a U-Net forward or training step frees activations of tens to
      hundreds of MB that the next tile or step asks for again, and by default each is unmapped and
      then page-faulted and zero-filled anew. No effect outside Linux/glibc or with
      ``UNETKIT_KEEP_FREED_MEMORY=0``.

    Both change the whole process (every library in it, for its lifetime), so neither
    :class:`~unetkit.inference.predictor.Predictor` nor :class:`~unetkit.training.Trainer` makes
    them: the ``unetkit`` commands (``train``, ``predict``, ``demo``) call this function, with
    ``reuse_freed_memory`` on when they run on the CPU, and :func:`unetkit.cli.main` gives the
    caller's thread count back when a command returns. A script or notebook that wants the same
    speed calls it itself, before predicting or training; ``Predictor(threads=…)`` and
    ``train.threads`` are only recorded.

    Args:
        threads: torch CPU threads (≥ 1), or ``None`` to leave the thread count as it is.
        reuse_freed_memory: keep freed memory for reuse (once per process; cannot be undone).

    Raises:
        ConfigError: ``threads`` is not an integer ≥ 1.

    Example:
        >>> from unetkit import runtime
        >>> runtime.configure_process(threads=2)
        >>> import torch; torch.get_num_threads()
        2
    """
    if threads is not None:
        import numbers

        if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1:
            raise ConfigError(f"threads must be an integer ≥ 1 or None, got {threads!r}")
        set_threads(int(threads))
    if reuse_freed_memory:
        keep_freed_memory()


def main() -> None:
    """``python -m unetkit.runtime``: print the CPU, its relevant flags and the path unetkit takes."""
    device = resolve_device("auto")
    dtype = resolve_precision("auto", device)
    print(f"cpu: {cpu_info().describe()}")
    print(
        f"torch {torch.__version__}; {describe_path(device, dtype, device.type == 'cpu')} for batch-norm nets"
    )


if __name__ == "__main__":  # pragma: no cover
    main()

"""CPU inference speed of the 64-wide same-padding U-Net on one 1×1×512² tile: plain PyTorch
variants, unetkit's fast path (``unetkit.inference.fastpath``) in every mode, ONNX Runtime.

All variants run in one process, timed round-robin (one run of each, repeated), so the ratios stay
comparable when the machine is busy; the median over ``--runs`` timed runs after two warm-up runs is
reported, with the minimum beside it. Build times ("cold start") are separate: ``compile`` is built
here with an empty Inductor cache (cold) and again in a child process that reuses it (warm).

Label agreement compares each bf16 variant's argmax with fp32 eager's. A random-init net's logits
sit near zero and their argmax flips on rounding noise, so by default the net is first trained for
``--train-steps`` Adam steps on 128² synthetic blobs (about a minute) and evaluated on a 512²
synthetic image of the same kind; ``--checkpoint`` uses a trained unetkit checkpoint instead.

All variants run with freed memory kept for reuse (``unetkit.runtime.keep_freed_memory``, which
``unetkit predict`` turns on through ``runtime.configure_process``); ``--default-allocator`` leaves
glibc's default.

Other jobs on the machine distort every timing; ``--idle-wait S`` starts each timed run only once
the CPUs have been idle for half a second (waiting at most S seconds; Linux).

    python benchmarks/bench_infer.py [--width 64] [--size 512] [--runs 5] [--train-steps 25] [--idle-wait 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings


def _cpu_busy(interval: float) -> float:
    """Fraction of all CPUs busy over ``interval`` seconds (Linux ``/proc/stat``; 0 elsewhere)."""

    def sample():
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
        return ticks[3] + ticks[4], sum(ticks)

    try:
        idle0, total0 = sample()
        time.sleep(interval)
        idle1, total1 = sample()
    except OSError:
        return 0.0
    return 1 - (idle1 - idle0) / max(total1 - total0, 1)


def wait_idle(max_wait: float) -> bool:
    """Wait up to ``max_wait`` s for the CPUs to be (almost) idle; whether they were."""
    end = time.perf_counter() + max_wait
    while time.perf_counter() < end:
        if _cpu_busy(0.5) < 0.15:
            return True
    return False


def synthetic_pair(size: int, seed: int):
    """A blob image ``(1, 1, size, size)`` float32 (noisy, uneven brightness) and its mask ``(1, size, size)``."""
    import numpy as np
    import torch
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma=size / 48)
    mask = field > np.quantile(field, 0.6)
    shade = np.linspace(0.7, 1.3, size)[None, :]
    image = (mask * 1.0 + 0.25 * rng.standard_normal((size, size))) * shade
    image = (image - image.mean()) / image.std()
    return (
        torch.from_numpy(image.astype(np.float32))[None, None],
        torch.from_numpy(mask.astype(np.int64))[None],
    )


def auto_variant(mode: str, dtype, variants: dict, default_name: str) -> str:
    """The variant name of the fast path in ``mode`` at ``dtype`` (what ``unetkit predict`` runs
    when ``mode=auto`` resolves to it), or ``default_name`` when that mode was not measured."""
    name = f"fastpath mode={mode} ({'bf16' if dtype is not None else 'fp32'}, channels-last)"
    return name if name in variants else default_name


def build_model(args):
    """The benchmarked net, briefly trained (or loaded), in eval mode."""
    import torch
    import torch.nn.functional as F

    from unetkit import create_model, runtime

    if args.checkpoint:
        from unetkit.checkpoint import build_model as from_ckpt
        from unetkit.checkpoint import load_checkpoint

        return from_ckpt(load_checkpoint(args.checkpoint)).eval()
    torch.manual_seed(0)
    model = create_model("unet", in_channels=1, num_classes=2, base_features=args.width)
    if args.train_steps:
        model.train().to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for step in range(args.train_steps):
            x, y = synthetic_pair(128, seed=1000 + step)
            with runtime.autocast(
                torch.device("cpu"), runtime.resolve_precision("auto", torch.device("cpu"))
            ):
                loss = F.cross_entropy(
                    model(x.contiguous(memory_format=torch.channels_last)).float(), y
                )
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval().to(memory_format=torch.contiguous_format)


def onnx_runner(model, x):
    """``fn(x) -> logits`` through ONNX Runtime (fp32), or ``None`` when onnxruntime is missing."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    import torch

    path = os.path.join(tempfile.mkdtemp(), "unet.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x,),
            path,
            input_names=["x"],
            output_names=["logits"],
            opset_version=17,
            dynamo=False,
        )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return lambda t: torch.from_numpy(session.run(None, {"x": t.numpy()})[0])


def warm_build(args, cache_dir: str, weights: str) -> dict:
    """Build ``compile`` again in a fresh process that reuses the Inductor cache; ``weights`` is a
    saved state dict (the parent's: the same weights) or ``""`` (a new random init)."""
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache_dir)
    cmd = [
        sys.executable,
        __file__,
        "--child-compile",
        weights,
        "--width",
        str(args.width),
        "--size",
        str(args.size),
        "--threads",
        str(args.threads),
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def child_compile(args) -> None:
    import torch

    from unetkit import create_model
    from unetkit.inference.fastpath import optimize_for_inference

    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    model = create_model("unet", in_channels=1, num_classes=2, base_features=args.width).eval()
    if args.child_compile != "-":
        model.load_state_dict(torch.load(args.child_compile, weights_only=True))
    t0 = time.perf_counter()
    from unetkit import runtime

    dtype = runtime.resolve_precision(
        "auto", torch.device("cpu")
    )  # this CPU's path, as the parent's default
    fwd = optimize_for_inference(
        model, (1, 1, args.size, args.size), "cpu", dtype, True, mode="compile"
    )
    build = time.perf_counter() - t0
    x = torch.randn(1, 1, args.size, args.size).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = model(x)
    print(
        json.dumps(
            {
                "build_seconds": build,
                "mode": fwd.mode,
                "max_abs_diff": float((fwd(x) - ref).abs().max()),
                "max_abs_logit": float(ref.abs().max()),
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-steps", type=int, default=25)
    p.add_argument("--checkpoint", help="a trained unetkit checkpoint to benchmark instead")
    p.add_argument("--modes", default="eager,jit,compile", help="fast-path modes to include")
    p.add_argument(
        "--idle-wait",
        type=float,
        default=0,
        help="before each timed run wait up to this many seconds for idle CPUs (shared machines)",
    )
    p.add_argument(
        "--cache-dir", help="Inductor cache to use (default: a new, empty one: a cold compile)"
    )
    p.add_argument("--json", help="also write the results as JSON here")
    p.add_argument(
        "--all-paths",
        action="store_true",
        help="also measure bf16 variants on a CPU without native bf16 (emulated: slow)",
    )
    p.add_argument(
        "--default-allocator",
        action="store_true",
        help="leave glibc malloc as it is (unetkit predict keeps freed memory: runtime.configure_process)",
    )
    p.add_argument("--child-compile", help=argparse.SUPPRESS)
    args = p.parse_args()
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="unetkit-inductor-")
    if not args.child_compile:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_dir  # before torch is imported
    import torch

    torch.set_num_threads(args.threads)
    if args.child_compile:
        child_compile(args)
        return

    from unetkit import runtime, summary
    from unetkit.inference.fastpath import choose_mode, optimize_for_inference

    if not args.default_allocator:
        runtime.keep_freed_memory()  # as `unetkit predict` does on CPU; every variant here shares it

    t0 = time.perf_counter()
    model = build_model(args)
    train_s = time.perf_counter() - t0
    gflop = summary(model, args.size).flops / 1e9
    x, _ = synthetic_pair(args.size, seed=7)
    if model.in_channels != 1:
        x = x.expand(1, model.in_channels, -1, -1).contiguous()
    cl = x.contiguous(memory_format=torch.channels_last)
    bf16 = torch.bfloat16
    model_cl = __import__("copy").deepcopy(model).to(memory_format=torch.channels_last)

    def plain(net, dtype):
        def fn(t):
            with torch.inference_mode(), runtime.autocast(torch.device("cpu"), dtype):
                return net(t).float()

        return fn

    # bf16 variants only where the CPU has native bf16 (emulated bf16 is several times slower than
    # fp32 and no default path uses it); --all-paths measures them anyway.
    dtypes = [None, bf16] if runtime.native_cpu_bf16() or args.all_paths else [None]
    # name -> (fn, input, build seconds)
    variants = {
        "fp32 eager": (plain(model, None), x, 0.0),
        "fp32 channels-last": (plain(model_cl, None), cl, 0.0),
    }
    if bf16 in dtypes:
        variants["bf16 autocast"] = (plain(model, bf16), x, 0.0)
        variants["bf16 autocast + channels-last"] = (plain(model_cl, bf16), cl, 0.0)
    ort = onnx_runner(model, x)
    if ort is not None:
        variants["ONNX Runtime fp32"] = (ort, x, 0.0)
    fell_back = {}  # variant name -> the mode that ran after its build failed
    for mode in [m for m in args.modes.split(",") if m]:
        for dtype in dtypes:
            fwd = optimize_for_inference(model, cl.shape, "cpu", dtype, True, mode=mode)
            name = f"fastpath mode={mode} ({'bf16' if dtype else 'fp32'}, channels-last)"
            variants[name] = (fwd, cl, fwd.build_seconds)
            if fwd.mode != mode:  # what a user gets too: the failed build's time, then eager
                fell_back[name] = fwd.mode
    default_dtype = runtime.resolve_precision("auto", torch.device("cpu"))
    auto = {n: choose_mode(model, torch.device("cpu"), default_dtype, n) for n in (1, 49, 1000)}
    # the variant a default Predictor runs for a one-tile job (eager, this CPU's precision, channels-last)
    default_name = (
        "bf16 autocast + channels-last" if default_dtype == bf16 else "fp32 channels-last"
    )

    outputs, times, idle = {}, {name: [] for name in variants}, []
    for name, (fn, inp, _) in variants.items():
        outputs[name] = fn(inp)
        fn(inp)
    for _ in range(args.runs):
        for name, (fn, inp, _) in variants.items():
            if args.idle_wait:
                idle.append(wait_idle(args.idle_wait))
            t = time.perf_counter()
            fn(inp)
            times[name].append(time.perf_counter() - t)

    ref = outputs["fp32 eager"]
    warm = {}
    if "compile" in args.modes.split(","):
        weights = os.path.join(cache_dir, "weights.pt")
        torch.save(model.state_dict(), weights)
        warm["same weights"] = warm_build(args, cache_dir, weights)
        warm["other weights"] = warm_build(args, cache_dir, "-")
    src = (
        f"checkpoint {args.checkpoint}"
        if args.checkpoint
        else f"trained {args.train_steps} Adam steps on synthetic blobs ({train_s:.0f} s)"
        if args.train_steps
        else "random init"
    )
    from unetkit.runtime import cpu_info

    print(
        f"CPU: {cpu_info().describe()}"
    )  # the flags decide the CPU path: say which machine this was
    print(
        f"Inference, U-Net width {args.width} ({src}), one 1×1×{args.size}² tile, {gflop:.1f} GFLOP, "
        f"{args.threads} threads, torch {torch.__version__}; median (min) of {args.runs} runs after 2 warm-up"
    )
    print(
        f"load average when done: {os.getloadavg()[0]:.1f} (2 = both cores busy with other work)"
        + (f"; {sum(idle)} of {len(idle)} timed runs started on idle CPUs" if idle else "")
    )
    print(f"default path on this CPU: {default_name} (mode=auto by job size in tiles: {auto})")
    for name, ran in fell_back.items():
        print(f"{name}: the build failed, so its row times its build, then mode {ran!r}")
    for what, w in warm.items():
        print(
            f"compile in a new process reusing the cache, {what}: build {w['build_seconds']:.1f} s, mode "
            f"{w['mode']!r}, max |logit - fp32 eager| {w['max_abs_diff']:.3g} (logits up to "
            f"{w['max_abs_logit']:.3g})"
        )
    print()
    print(
        "| variant | build s | median s | min s | GFLOP/s | × fp32 eager | labels = fp32 | max abs Δlogit |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    base = statistics.median(times["fp32 eager"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "gflop": gflop,
                    "default": default_name,
                    # the variant a default Predictor runs for an image of N tiles: the fast path
                    # in the mode `auto` picks (the plain default above where it was not built)
                    "auto": {
                        str(n): auto_variant(mode, default_dtype, variants, default_name)
                        for n, mode in auto.items()
                    },
                    "variants": {
                        name: {
                            "median_s": statistics.median(times[name]),
                            "min_s": min(times[name]),
                            # every timed run, in round order: run i of two variants ran side
                            # by side, so their ratio cancels what the host did meanwhile
                            "times_s": times[name],
                            "build_s": build,
                            "fell_back_to": fell_back.get(name),
                            "labels_agree": (outputs[name].argmax(1) == ref.argmax(1))
                            .double()
                            .mean()
                            .item(),
                        }
                        for name, (_, _, build) in variants.items()
                    },
                },
                f,
                indent=1,
            )
    for name, (_, _, build) in variants.items():
        med, best = statistics.median(times[name]), min(times[name])
        y = outputs[name]
        agree = (y.argmax(1) == ref.argmax(1)).double().mean().item()
        diff = (y - ref).abs().max().item()
        build_s = f"{build:.1f}" if build else "–"
        if name.startswith("fastpath mode=compile") and warm:
            build_s = f"{build:.1f} cold / {warm['same weights']['build_seconds']:.1f} warm"
        label = f"**{name}** (default)" if name == default_name else name
        print(
            f"| {label} | {build_s} | {med:.3f} | {best:.3f} | {gflop / med:.0f} | {base / med:.2f} | "
            f"{100 * agree:.3f} % | {diff:.3g} |"
        )


if __name__ == "__main__":
    main()

"""3D side by side: whole-volume prediction of a 3D U-Net on a 256³ volume (unetkit's Predictor vs
MONAI's ``sliding_window_inference`` with the same net) and 3D training throughput in voxels/s
(unetkit's Trainer vs a plain PyTorch loop, same net, patch, batch, loss and optimiser).

Each variant runs in its own process (peak RSS is per process) with 2 threads: a warm-up, then
``--runs`` timed runs, median reported. The net is the same-padding ``unet`` in 3D, width
``--width`` (16), depth 3, random weights (timings do not depend on them); the volume is smooth
noise. ``labels = MONAI`` is the share of voxels whose argmax agrees with MONAI's output (Gaussian
blending and unetkit's crop stitching differ at tile seams only).

    python benchmarks/bench_3d.py [--size 256] [--width 16] [--runs 2] [--steps 6] [--patch 96]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_model(width: int):
    import torch

    from unetkit import create_model

    torch.manual_seed(0)
    return create_model(
        "unet", spatial_dims=3, in_channels=1, num_classes=2, base_features=width, depth=3
    ).eval()


def volume(size: int) -> np.ndarray:
    from scipy import ndimage

    rng = np.random.default_rng(0)
    coarse = rng.normal(size=(max(2, size // 8),) * 3).astype(np.float32)
    return ndimage.zoom(coarse, size / coarse.shape[0], order=1)[None, :size, :size, :size]


def predict_child(args) -> dict:
    import torch

    torch.set_num_threads(2)
    model = make_model(args.width)
    image = volume(args.size)
    if args.variant == "ours":
        from unetkit import runtime
        from unetkit.inference.predictor import Predictor

        pred = Predictor(model)
        runtime.configure_process(reuse_freed_memory=True)
        fn = lambda im: pred.predict_proba(im)[1]  # noqa: E731
        path = pred.describe()
    else:
        from monai.inferers import sliding_window_inference

        roi = (args.patch,) * 3

        def fn(im):
            with torch.inference_mode():
                logits = sliding_window_inference(
                    torch.from_numpy(im)[None], roi, 1, model, overlap=0.5, mode="gaussian"
                )
                return torch.softmax(logits, 1)[0, 1].numpy()

        path = (
            f"MONAI sliding_window_inference ({args.patch}³ windows, overlap 0.5, Gaussian), fp32"
        )
    fn(image[:, :64, :64, :64])  # warm the kernels on a small volume
    times, out = [], None
    for _ in range(args.runs):
        t0 = time.perf_counter()
        out = fn(image)
        times.append(time.perf_counter() - t0)
    np.save(args.out, (out > 0.5).astype(np.uint8))
    return {
        "median_s": statistics.median(times),
        "runs": len(times),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "path": path,
    }


def train_child(args) -> dict:
    """Steps per second of one training loop on random 3D patches (batch 2, Dice+CE, Adam)."""
    import torch

    torch.set_num_threads(2)
    model = make_model(args.width).train()
    batch, patch = 2, (args.patch,) * 3
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, *patch, generator=g)
    y = (torch.rand(batch, *patch, generator=g) > 0.7).long()
    if args.variant == "ours":
        from unetkit import runtime
        from unetkit.losses import create_loss
        from unetkit.training.trainer import optimisation_step

        cpu = torch.device("cpu")
        dtype = runtime.training_precision("auto", cpu, 3)  # what the Trainer takes for 3D here
        loss_fn = create_loss("dice-ce")
        opt = torch.optim.Adam(model.parameters(), 1e-3)

        def step():
            optimisation_step(model, loss_fn, opt, x, y, None, cpu, dtype, None)

    else:
        from monai.losses import DiceCELoss

        loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
        opt = torch.optim.Adam(model.parameters(), 1e-3)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y[:, None])
            loss.backward()
            opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - t0) / args.steps
    return {
        "s_per_step": seconds,
        "voxels_per_s": batch * float(np.prod(patch)) / seconds,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def run_child(args, mode: str, variant: str, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--variant", variant, "--out", str(out)]
    for k in ("size", "width", "runs", "steps", "patch"):
        cmd += [f"--{k}", str(getattr(args, k))]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{mode} {variant} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--patch", type=int, default=96)
    ap.add_argument("--child", choices=("predict", "train"))
    ap.add_argument("--variant", default="ours")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    if args.child:
        fn = predict_child if args.child == "predict" else train_child
        print(json.dumps(fn(args)))
        return

    from unetkit.runtime import cpu_info

    tmp = Path(tempfile.mkdtemp())
    pred = {v: run_child(args, "predict", v, tmp / f"{v}.npy") for v in ("ours", "monai")}
    agree = float(np.mean(np.load(tmp / "ours.npy") == np.load(tmp / "monai.npy")))
    train = {v: run_child(args, "train", v, tmp / "unused") for v in ("ours", "plain")}
    o, m = pred["ours"], pred["monai"]
    print(f"CPU: {cpu_info().describe()}\n")
    print(
        f"3D U-Net (width {args.width}, depth 3), whole {args.size}³ volume, median of "
        f"{args.runs} runs, 2 threads:\n"
    )
    print("| variant | s | × unetkit | peak RSS | path |\n|---|---:|---:|---:|---|")
    for name, r in (("unetkit Predictor, defaults", o), ("MONAI sliding_window_inference", m)):
        print(
            f"| {name} | {r['median_s']:.1f} | {r['median_s'] / o['median_s']:.2f} | "
            f"{r['peak_rss_gb']:.2f} GB | {r['path']} |"
        )
    print(f"\nlabels = MONAI's on {100 * agree:.2f} % of the voxels.\n")
    print(f"3D training, batch 2 × {args.patch}³, Dice+CE, Adam, mean of {args.steps} steps:\n")
    print("| loop | s/step | voxels/s | × plain | peak RSS |\n|---|---:|---:|---:|---:|")
    for name, r in (
        ("unetkit optimisation_step", train["ours"]),
        ("plain PyTorch + MONAI DiceCE", train["plain"]),
    ):
        print(
            f"| {name} | {r['s_per_step']:.2f} | {r['voxels_per_s'] / 1e6:.2f} M | "
            f"{r['voxels_per_s'] / train['plain']['voxels_per_s']:.2f} | {r['peak_rss_gb']:.2f} GB |"
        )


if __name__ == "__main__":
    main()

"""Training throughput of the 64-wide U-Net on 4×1×256² batches: a plain fp32 PyTorch loop (the common
recipe), MONAI's BasicUNet at the same widths in that loop, and unetkit's Trainer (its defaults: bf16
autocast + channels-last on CPUs with bf16, fp32 in the contiguous layout elsewhere; the row says which).

Each variant runs in its own process (peak RSS is per process). Prints a Markdown table; absolute
numbers are noisy on this machine, the ratio measured in one run is what counts.

    python benchmarks/bench_train.py [--steps 6] [--width 64]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def default_path() -> str:
    """What the Trainer's defaults run on this CPU (precision and layout), for the table's label."""
    import torch

    from unetkit import runtime

    cpu = torch.device("cpu")
    dtype = runtime.resolve_precision("auto", cpu)
    layout = (
        "channels-last" if dtype is not None else "contiguous"
    )  # runtime.use_channels_last(training=True)
    return f"{'bf16 autocast' if dtype is not None else 'fp32'} + {layout}"


def monai_basic_unet(width: int):
    """MONAI's BasicUNet at the widths of unetkit's U-Net (64 … 1024, 4 poolings)."""
    from monai.networks.nets import BasicUNet

    return BasicUNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=2,
        features=(width, 2 * width, 4 * width, 8 * width, 16 * width, width),
    )


def plain_loop(width: int, steps: int, net: str = "unetkit") -> dict:
    import torch
    import torch.nn.functional as F

    from unetkit import create_model

    torch.manual_seed(0)
    if net == "monai":
        model = monai_basic_unet(width)
    else:
        model = create_model("unet", base_features=width, in_channels=1, num_classes=2)
        model.outputs = "logits"
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.99)
    x, y = torch.randn(4, 1, 256, 256), torch.randint(0, 2, (4, 256, 256))
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return {"images_per_s": 4 * len(times) / sum(times)}


def trainer(width: int, steps: int, precision: str) -> dict:
    import numpy as np
    from PIL import Image

    from unetkit import runtime
    from unetkit.config import RunConfig
    from unetkit.training import Trainer

    root = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / sub).mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (256, 256), dtype=np.uint8)).save(
            root / "images" / f"{i}.png"
        )
        Image.fromarray((rng.random((256, 256)) > 0.5).astype(np.uint8) * 255).save(
            root / "masks" / f"{i}.png"
        )
    cfg = RunConfig.from_dict(
        {
            "data": {"train_dir": str(root), "val_fraction": 0, "patch_size": [256]},
            "model": {"name": "unet", "options": {"base_features": width}},
            "loss": {"name": "ce"},
            "train": {
                "epochs": 2,
                "iters_per_epoch": steps,
                "batch_size": 4,
                "optimizer": "sgd",
                "lr": 0.01,
                "precision": precision,
            },
        }
    )
    # the process settings `unetkit train` makes: freed activations kept for reuse on CPU
    runtime.configure_process(
        cfg.train.threads,
        reuse_freed_memory=runtime.resolve_device(cfg.train.device).type == "cpu",
    )
    result = Trainer(cfg, run_dir=root / "run", progress=False).fit()
    return {"images_per_s": result.history[-1]["images_per_s"]}  # epoch 2: warm


def child(args) -> None:
    fn = {
        "plain": lambda: plain_loop(args.width, args.steps),
        "monai": lambda: plain_loop(args.width, args.steps, net="monai"),
        "trainer-fp32": lambda: trainer(args.width, args.steps, "fp32"),
        "trainer": lambda: trainer(args.width, args.steps, "auto"),
    }[args.variant]
    out = fn()
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps(out))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--json", help="also write the results as JSON here")
    p.add_argument("--variant", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.variant:
        child(args)
        return
    rows = []
    labels = {
        "plain": "plain PyTorch loop, fp32 eager (common recipe)",
        "monai": "MONAI BasicUNet (same widths) in the plain loop, fp32 eager",
        "trainer-fp32": "unetkit Trainer, --precision fp32",
        "trainer": f"unetkit Trainer, defaults ({default_path()})",
    }
    for variant in labels:
        res = subprocess.run(
            [
                sys.executable,
                __file__,
                "--variant",
                variant,
                "--steps",
                str(args.steps),
                "--width",
                str(args.width),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append((variant, json.loads(res.stdout.strip().splitlines()[-1])))
    base = rows[0][1]["images_per_s"]
    if args.json:
        Path(args.json).write_text(json.dumps({v: r for v, r in rows}, indent=1))
    from unetkit.runtime import cpu_info

    print(
        f"CPU: {cpu_info().describe()}"
    )  # the flags decide the CPU path: say which machine this was
    print(f"Training, U-Net width {args.width}, batch 4×1×256², SGD, {args.steps} timed steps")
    print("| variant | images/s | × plain | peak RSS (GB) |")
    print("|---|---:|---:|---:|")
    for variant, r in rows:
        print(
            f"| {labels[variant]} | {r['images_per_s']:.2f} | {r['images_per_s'] / base:.2f} | "
            f"{r['peak_rss_gb']:.2f} |"
        )


if __name__ == "__main__":
    main()

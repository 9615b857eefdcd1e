"""Whole-image prediction: unetkit's Predictor vs MONAI's sliding_window_inference vs one full-image
forward, on a 2048×2048 image with the 64-wide same-padding U-Net; and a 20,000×20,000 image in bounded
memory (band by band). Each variant runs in its own process (peak RSS is per process).

Seam error = max |p − p_full| over the image, p_full = softmax of one fp32 full-image forward.
The model is randomly initialised (He init, batch norm in eval mode): timings do not depend on the
weights; the seam errors are indicative.

    python benchmarks/bench_predict.py [--size 2048] [--large 20000] [--large-width 16] [--skip-full]
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

import numpy as np


def _model(width: int):
    import torch

    from unetkit import create_model

    torch.manual_seed(0)
    return create_model("unet", base_features=width, in_channels=1, num_classes=2).eval()


def _image(size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size] / 37.0
    return (np.sin(yy) * np.cos(xx * 1.3) + 0.3 * rng.normal(size=(size, size))).astype(np.float32)[None]


def child(variant: str, size: int, out: Path, width: int) -> dict:
    import torch

    torch.set_num_threads(2)
    model = _model(width)
    image = _image(size) if variant != "large" else None
    t0 = time.perf_counter()
    if variant == "full":
        with torch.inference_mode():
            p = torch.softmax(model(torch.from_numpy(image)[None]), 1)[0].numpy()
    elif variant == "monai":
        from monai.inferers import sliding_window_inference

        with torch.inference_mode():
            logits = sliding_window_inference(torch.from_numpy(image)[None], (512, 512), 1, model, overlap=0.5,
                                              mode="gaussian")
            p = torch.softmax(logits, 1)[0].numpy()
    elif variant.startswith("ours"):
        from unetkit.inference.predictor import Predictor

        precision = "fp32" if variant == "ours-fp32" else "auto"
        p = Predictor(model, precision=precision).predict_proba(image)
    elif variant == "large":
        from unetkit.data import LabelMap
        from unetkit.inference.batch import predict_files
        from unetkit.inference.predictor import Predictor

        path = out.parent / "large.npy"  # written by the parent process (make_large_image)
        t0 = time.perf_counter()
        from unetkit.data import create_normalizer

        pred = Predictor(model, normalizer=create_normalizer("zscore"), label_map=LabelMap([0, 255]))
        predict_files(pred, [path], out.parent / "large_out", progress=False)
        p = None
    else:
        raise SystemExit(f"unknown variant {variant}")
    seconds = time.perf_counter() - t0
    if p is not None:
        np.save(out, p.astype(np.float32))
    return {"seconds": seconds, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def make_large_image(path: Path, size: int) -> None:
    """A size×size uint8 .npy written band by band (never whole in memory)."""
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(1, size, size))
    xx = np.arange(size, dtype=np.float32)
    for y in range(0, size, 512):
        yy = np.arange(y, min(y + 512, size), dtype=np.float32)[:, None]
        arr[0, y:y + len(yy)] = (127 + 100 * np.sin(yy / 37.0) * np.cos(xx[None] / 29.0)).astype(np.uint8)
    arr.flush()
    del arr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--large", type=int, default=20000, help="side of the bounded-memory image (0 = skip)")
    ap.add_argument("--large-width", type=int, default=16, help="U-Net width for the large image")
    ap.add_argument("--skip-full", action="store_true", help="skip the 9 GB full-image forward (no seam errors)")
    ap.add_argument("--variant")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.variant:
        if args.variant == "large" and not (Path(args.out).parent / "large.npy").exists():
            make_large_image(Path(args.out).parent / "large.npy", args.size)
        print(json.dumps(child(args.variant, args.size, Path(args.out), args.width)))
        return
    tmp = Path(tempfile.mkdtemp())
    labels = {"full": "one full-image forward, fp32 (reference p_full)",
              "monai": "MONAI sliding_window_inference (512, overlap 0.5, Gaussian), fp32",
              "ours-fp32": "unetkit Predictor, --precision fp32 (3×3 tiles of 768²)",
              "ours": "unetkit Predictor, defaults (bf16 + channels-last, 3×3 tiles of 768²)"}
    variants = [v for v in labels if not (args.skip_full and v == "full")]
    results = {}
    for v in variants:
        res = subprocess.run([sys.executable, __file__, "--variant", v, "--size", str(args.size), "--width",
                              str(args.width), "--out", str(tmp / f"{v}.npy")], capture_output=True, text=True)
        if res.returncode != 0:
            print(f"{v} failed:\n{res.stderr[-2000:]}", file=sys.stderr)
            continue
        results[v] = json.loads(res.stdout.strip().splitlines()[-1])
    full = np.load(tmp / "full.npy") if (tmp / "full.npy").exists() else None
    print(f"Whole image {args.size}×{args.size}, U-Net width {args.width}, 2 threads")
    print("| variant | seconds | × ours | peak RSS (GB) | seam error max|p − p_full| |")
    print("|---|---:|---:|---:|---:|")
    ours = results.get("ours", {}).get("seconds")
    for v, r in results.items():
        seam = "" if full is None or v == "full" else f"{np.abs(np.load(tmp / f'{v}.npy') - full).max():.4f}"
        ratio = f"{r['seconds'] / ours:.2f}" if ours else ""
        print(f"| {labels[v]} | {r['seconds']:.1f} | {ratio} | {r['peak_rss_gb']:.2f} | {seam} |")
    if args.large:
        make_large_image(tmp / "large.npy", args.large)
        res = subprocess.run([sys.executable, __file__, "--variant", "large", "--size", str(args.large), "--width",
                              str(args.large_width), "--out", str(tmp / "large_probs.npy")], capture_output=True,
                             text=True)
        if res.returncode == 0:
            r = json.loads(res.stdout.strip().splitlines()[-1])
            print(f"\nBounded memory: {args.large}×{args.large} uint8 .npy, U-Net width {args.large_width}, "
                  f"band by band to TIFF: {r['seconds']:.0f} s, peak RSS {r['peak_rss_gb']:.2f} GB")
        else:
            print(f"large image failed:\n{res.stderr[-2000:]}", file=sys.stderr)


if __name__ == "__main__":
    main()

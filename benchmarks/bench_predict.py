"""Whole-image prediction side by side: unetkit's Predictor vs MONAI's ``sliding_window_inference``
vs one plain fp32 forward (and, at 512², MONAI's BasicUNet and ONNX Runtime), on a 512² ISBI slice
and a 2048² mosaic of 16 ISBI slices, with the 64-wide same-padding U-Net; then a 20,000² image in
bounded memory (band by band).

Each variant runs in its own process (peak RSS is per process): one warm-up run, then ``--runs``
timed runs; the median is reported with the minimum. "image GFLOP/s" is the whole image's forward
FLOPs (summary()) over the time, the useful work rate whatever the tiling recomputes. The seam error
is max |p − p_full| of the foreground probability against the fp32 full-image forward; ``labels =
full`` the share of pixels whose argmax agrees with it.

Weights: ``--checkpoint`` (e.g. the common recipe's 64-wide net that ``bench_accuracy.py --keep``
saves), else a random He-initialised net (timings do not depend on the weights; seam errors and
label agreement on random weights mean little).

    python benchmarks/bench_predict.py [--checkpoint CKPT] [--sizes 512,2048] [--runs 5] [--large 20000]
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

REPO = Path(__file__).resolve().parents[1]
ISBI = REPO.parent / "shared" / "data" / "isbi2012"

LABELS = {
    "ours": "unetkit Predictor, defaults",
    "ours-fp32": "unetkit Predictor, --precision fp32",
    "monai": "MONAI sliding_window_inference (512², overlap 0.5, Gaussian), same net, fp32",
    "full": "one plain fp32 forward of the whole image (p_full)",
    "onnx": "ONNX Runtime fp32, whole image, same net",
    "basicunet": "MONAI BasicUNet (same widths, own weights), plain fp32 forward",
}
VARIANTS = {
    512: ["ours", "ours-fp32", "monai", "full", "onnx", "basicunet"],
    2048: ["ours", "ours-fp32", "monai", "full"],
}


def load_model(checkpoint: str | None, width: int):
    import torch

    from unetkit import create_model
    from unetkit.checkpoint import build_model, load_checkpoint

    if checkpoint:
        return build_model(load_checkpoint(checkpoint)).eval()
    torch.manual_seed(0)
    return create_model("unet", base_features=width, in_channels=1, num_classes=2).eval()


def em_image(size: int) -> np.ndarray:
    """``(1, size, size)`` float32 in [0, 1]: ISBI slices tiled (a 2048² EM mosaic), or a synthetic
    texture when ../shared is absent."""
    from PIL import Image

    paths = sorted((ISBI / "train" / "images").glob("*.png")) + sorted(
        (ISBI / "val" / "images").glob("*.png")
    )
    if not paths:
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[:size, :size] / 37.0
        return (
            0.5 + 0.2 * np.sin(yy) * np.cos(xx * 1.3) + 0.1 * rng.normal(size=(size, size))
        ).astype(np.float32)[None]
    tiles = [np.asarray(Image.open(p), dtype=np.float32) / 255.0 for p in paths]
    n = -(-size // tiles[0].shape[0])
    rows = [
        np.concatenate([tiles[(r * n + c) % len(tiles)] for c in range(n)], axis=1)
        for r in range(n)
    ]
    return np.concatenate(rows, axis=0)[None, :size, :size].copy()


def make_fn(variant: str, model, width: int):
    """A function image ``(1, H, W)`` → foreground probability ``(H, W)`` float32."""
    import torch

    if variant in ("ours", "ours-fp32"):
        from unetkit import runtime
        from unetkit.inference.predictor import Predictor

        # as `unetkit predict` runs it (Predictor.from_checkpoint): batch norm folded into the
        # convolutions, freed activations kept for reuse on CPU (threads: the child's 2)
        pred = Predictor(
            model, precision="fp32" if variant == "ours-fp32" else "auto", fold_batch_norm=True
        )
        runtime.configure_process(reuse_freed_memory=pred.device.type == "cpu")

        def ours(im):
            return pred.predict_proba(im)[1]

        ours.describe = pred.describe  # the path that ran, read after the warm-up built it
        return ours
    if variant == "basicunet":
        sys.path.insert(0, str(Path(__file__).parent))
        from bench_train import monai_basic_unet

        torch.manual_seed(0)
        model = monai_basic_unet(width).eval()
    if variant in ("full", "basicunet"):

        def full(im):
            with torch.inference_mode():
                return torch.softmax(model(torch.from_numpy(im)[None]), 1)[0, 1].numpy()

        return full
    if variant == "monai":
        from monai.inferers import sliding_window_inference

        def monai(im):
            with torch.inference_mode():
                logits = sliding_window_inference(
                    torch.from_numpy(im)[None], (512, 512), 1, model, overlap=0.5, mode="gaussian"
                )
                return torch.softmax(logits, 1)[0, 1].numpy()

        return monai
    if variant == "onnx":
        from unetkit.inference.export import OnnxRunner, export_onnx

        path = Path(tempfile.mkdtemp()) / "net.onnx"
        export_onnx(model, path, input_size=512, check=False)
        runner = OnnxRunner(path)
        return lambda im: torch.softmax(runner(torch.from_numpy(im)[None]).float(), 1)[0, 1].numpy()
    raise SystemExit(f"unknown variant {variant}")


def child(args) -> dict:
    import torch

    torch.set_num_threads(2)
    model = load_model(args.checkpoint, args.width)
    image = em_image(args.size)
    fn = make_fn(args.variant, model, args.width)
    cheap_warmup = (
        args.variant in ("monai", "full") and args.size > 512
    )  # 512² windows warm the same kernels
    fn(em_image(512) if cheap_warmup else image)
    times, p = [], None
    for _ in range(args.runs):
        t0 = time.perf_counter()
        out = fn(image)
        times.append(time.perf_counter() - t0)
        p = out if p is None else p
    np.save(args.out, p.astype(np.float32))
    out = {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "runs": len(times),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    if hasattr(fn, "describe"):  # unetkit's rows name the path that actually ran
        out["path"] = fn.describe().replace("compute path: ", "")
    return out


def compare(size: int, args, tmp: Path) -> dict:
    """Run every variant for one image size; returns ``{variant: result}`` with seam errors."""
    from unetkit import summary

    gflop = summary(load_model(args.checkpoint, args.width), size).flops / 1e9
    results = {}
    for v in VARIANTS[size]:
        cmd = [
            sys.executable,
            __file__,
            "--variant",
            v,
            "--size",
            str(size),
            "--width",
            str(args.width),
            "--runs",
            str(args.runs),
            "--out",
            str(tmp / f"{v}-{size}.npy"),
        ]
        if args.checkpoint:
            cmd += ["--checkpoint", args.checkpoint]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            print(f"{v} at {size}² failed:\n{res.stderr[-2000:]}", file=sys.stderr)
            continue
        results[v] = json.loads(res.stdout.strip().splitlines()[-1])
        results[v]["gflop_per_s"] = gflop / results[v]["median_s"]
    full = np.load(tmp / f"full-{size}.npy") if "full" in results else None
    for v, r in results.items():
        if full is not None and v not in ("full", "basicunet"):
            p = np.load(tmp / f"{v}-{size}.npy")
            r["seam_error"] = float(np.abs(p - full).max())
            r["labels_agree"] = float(np.mean((p > 0.5) == (full > 0.5)))
    return {"size": size, "gflop": gflop, "results": results}


def table(block: dict, runs: int) -> str:
    size, res = block["size"], block["results"]
    ours = res.get("ours", {}).get("median_s")
    lines = [
        f"Whole image {size}×{size} ({block['gflop']:.0f} GFLOP for one forward), median (min) of {runs} "
        "runs after a warm-up, 2 threads",
        "| variant | median s | min s | image GFLOP/s | × ours | peak RSS (GB) | seam error | labels = full |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for v, r in res.items():
        seam = f"{r['seam_error']:.2g}" if "seam_error" in r else "–"
        agree = f"{100 * r['labels_agree']:.3f} %" if "labels_agree" in r else "–"
        ratio = f"{r['median_s'] / ours:.2f}" if ours else ""
        label = f"{LABELS[v]} ({r['path']})" if r.get("path") else LABELS[v]
        lines.append(
            f"| {label} | {r['median_s']:.2f} | {r['min_s']:.2f} | {r['gflop_per_s']:.0f} | {ratio} | "
            f"{r['peak_rss_gb']:.2f} | {seam} | {agree} |"
        )
    return "\n".join(lines)


# -- bounded memory --------------------------------------------------------------------------------
def make_large_image(path: Path, size: int) -> None:
    """A size×size uint8 .npy written band by band (never whole in memory)."""
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(1, size, size))
    xx = np.arange(size, dtype=np.float32)
    for y in range(0, size, 512):
        yy = np.arange(y, min(y + 512, size), dtype=np.float32)[:, None]
        arr[0, y : y + len(yy)] = (127 + 100 * np.sin(yy / 37.0) * np.cos(xx[None] / 29.0)).astype(
            np.uint8
        )
    arr.flush()
    del arr


def child_large(args) -> dict:
    import torch

    from unetkit import create_model, runtime
    from unetkit.data import LabelMap, create_normalizer
    from unetkit.inference.batch import predict_files
    from unetkit.inference.predictor import Predictor

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = create_model("unet", base_features=args.width, in_channels=1, num_classes=2).eval()
    pred = Predictor(model, normalizer=create_normalizer("zscore"), label_map=LabelMap([0, 255]))
    runtime.configure_process(reuse_freed_memory=pred.device.type == "cpu")  # as `unetkit predict`
    t0 = time.perf_counter()
    predict_files(pred, [Path(args.out)], Path(args.out).parent / "large_out", progress=False)
    return {
        "seconds": time.perf_counter() - t0,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def run_large(size: int, width: int, tmp: Path) -> dict:
    path = tmp / "large.npy"
    make_large_image(path, size)
    res = subprocess.run(
        [sys.executable, __file__, "--variant", "large", "--width", str(width), "--out", str(path)],
        capture_output=True,
        text=True,
    )
    path.unlink()
    if res.returncode != 0:
        raise SystemExit(f"large image failed:\n{res.stderr[-2000:]}")
    return {"size": size, "width": width, **json.loads(res.stdout.strip().splitlines()[-1])}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--checkpoint",
        help="a trained 2D one-channel unetkit checkpoint (default: random 64-wide net)",
    )
    ap.add_argument("--sizes", default="512,2048", help="image sizes to compare (512 and/or 2048)")
    ap.add_argument("--width", type=int, default=64, help="U-Net width without --checkpoint")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument(
        "--large", type=int, default=20000, help="side of the bounded-memory image (0 = skip)"
    )
    ap.add_argument("--large-width", type=int, default=16, help="U-Net width for the large image")
    ap.add_argument("--json", help="also write the results as JSON here")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant == "large":
        print(json.dumps(child_large(args)))
        return
    if args.variant:
        print(json.dumps(child(args)))
        return
    tmp = Path(tempfile.mkdtemp())
    out = {"compare": [], "large": None}
    from unetkit.runtime import cpu_info

    print(
        f"CPU: {cpu_info().describe()}"
    )  # the flags decide the CPU path: say which machine this was
    for size in [int(s) for s in args.sizes.split(",") if s]:
        if size not in VARIANTS:
            raise SystemExit(f"--sizes: choose among {sorted(VARIANTS)}, got {size}")
        block = compare(size, args, tmp)
        out["compare"].append(block)
        print(table(block, args.runs) + "\n", flush=True)
    if args.large:
        out["large"] = run_large(args.large, args.large_width, tmp)
        r = out["large"]
        print(
            f"Bounded memory: {r['size']}×{r['size']} uint8 .npy, U-Net width {r['width']}, band by band to TIFF: "
            f"{r['seconds']:.0f} s, peak RSS {r['peak_rss_gb']:.2f} GB"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

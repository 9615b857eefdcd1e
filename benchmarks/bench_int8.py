"""Int8 vs fp32 on the CPU: the 64-wide U-Net as unetkit's torch Predictor (its defaults), as fp32
ONNX Runtime and as the int8 ONNX file ``unetkit export --int8`` writes, on one 512² tile and on a
2048² image.

The int8 file is made by :func:`unetkit.inference.quantize.quantize_int8`: calibrated on tiles of the
ISBI 2012 training slices, its labels checked against fp32 on the ISBI validation slices (synthetic
textures where ../shared/data/isbi2012 is absent). The 2048² image is a mosaic of ISBI slices. Each
row is one warm-up and ``--runs`` timed whole-image predictions (median) in this one process;
"speed-up" is torch fp32 time / row time, "labels = torch" the share of pixels whose labels equal
the torch Predictor's.

Weights: ``--checkpoint`` (a trained 64-wide net), else random He-initialised weights with per-image
z-score normalisation. Timings do not depend on the weights, but with random weights the logits
sit near zero everywhere, so the label agreement (and whether the 99.9 % rule would offer int8)
means little; the benchmark keeps the int8 file whatever the agreement and reports it.

    python benchmarks/bench_int8.py [--checkpoint CKPT] [--sizes 512,2048] [--runs 5] [--tiles 16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ISBI = REPO.parent / "shared" / "data" / "isbi2012"
ROWS = {
    "torch": "unetkit Predictor, defaults (torch)",
    "onnx-fp32": "ONNX Runtime fp32 (OnnxRunner.predictor)",
    "onnx-int8": "ONNX Runtime int8 (QDQ U8S8, 7-bit weights)",
}


def slices(split: str) -> list[np.ndarray]:
    """ISBI slices of ``split`` as ``(1, 512, 512)`` uint8, or 3 seeded synthetic textures."""
    from PIL import Image

    paths = sorted((ISBI / split / "images").glob("*.png"))
    if paths:
        return [np.asarray(Image.open(p), dtype=np.uint8)[None] for p in paths]
    rng = np.random.default_rng(0 if split == "train" else 1)
    yy, xx = np.mgrid[:512, :512] / 37.0
    return [
        np.clip(
            127 + 60 * np.sin(yy + k) * np.cos(1.3 * xx) + 25 * rng.normal(size=yy.shape), 0, 255
        ).astype(np.uint8)[None]
        for k in range(3)
    ]


def mosaic(size: int) -> np.ndarray:
    """``(1, size, size)`` uint8: training and validation slices tiled."""
    tiles = [s[0] for s in slices("train") + slices("val")]
    n = -(-size // tiles[0].shape[0])
    rows = [
        np.concatenate([tiles[(r * n + c) % len(tiles)] for c in range(n)], axis=1)
        for r in range(n)
    ]
    return np.concatenate(rows, axis=0)[None, :size, :size].copy()


#: normalisation of the random-weights net (a checkpoint brings its own)
RANDOM_NORM = {"name": "zscore", "params": {"per_image": True}, "stats": {}}


def random_model(width: int):
    import torch

    from unetkit import create_model

    torch.manual_seed(0)
    return create_model("unet", base_features=width, in_channels=1, num_classes=2).eval()


def export(checkpoint: str | None, model, folder: Path) -> Path:
    from unetkit.inference.export import export_onnx

    path = folder / "unet.onnx"
    if checkpoint:
        export_onnx(checkpoint, path, input_size=512, check=False)
    else:
        meta = {"normalization": RANDOM_NORM, "patch_size": 512}
        export_onnx(model, path, input_size=512, check=False, metadata=meta)
    return path


def torch_predictor(checkpoint: str | None, model):
    """The torch Predictor with its defaults, as ``unetkit predict`` runs it."""
    from unetkit import runtime
    from unetkit.data.normalization import Normalizer
    from unetkit.inference.predictor import Predictor

    if checkpoint:
        pred = Predictor.from_checkpoint(checkpoint)
    else:
        pred = Predictor(model, normalizer=Normalizer.from_dict(RANDOM_NORM))
    runtime.configure_process(reuse_freed_memory=True)  # freed activations kept for reuse on CPU
    return pred


def timed(fn, image: np.ndarray, runs: int) -> tuple[float, np.ndarray]:
    labels = fn(image)  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        labels = fn(image)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), labels


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", help="a trained 64-wide U-Net (default: random weights)")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--sizes", default="512,2048", help="image sides to time (default 512,2048)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per row (median)")
    ap.add_argument("--tiles", type=int, default=16, help="calibration tiles (default 16)")
    ap.add_argument("--threads", type=int, help="onnxruntime threads (default: all cores)")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from unetkit.inference.export import OnnxRunner
    from unetkit.inference.quantize import quantize_int8
    from unetkit.runtime import cpu_info

    results: dict = {"cpu": cpu_info().describe(), "weights": args.checkpoint or "random"}
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        model = None if args.checkpoint else random_model(args.width)
        fp32 = export(args.checkpoint, model, Path(tmp))
        t0 = time.perf_counter()
        report = quantize_int8(
            fp32,
            Path(tmp) / "unet.int8.onnx",
            slices("train"),
            slices("val"),
            threshold=None if args.checkpoint else 1e-9,  # random weights: keep it to time it
            tiles=args.tiles,
            threads=args.threads,
            timing_runs=args.runs,
        )
        results["quantize_seconds"] = time.perf_counter() - t0
        results["check"] = {
            "agreement": report.agreement,
            "validation_images": report.images,
            "tile_fp32_s": report.fp32_seconds,
            "tile_int8_s": report.int8_seconds,
            "speedup": report.speedup,
        }
        predictors = {
            "torch": torch_predictor(args.checkpoint, model),
            "onnx-fp32": OnnxRunner(fp32, threads=args.threads).predictor(),
            "onnx-int8": OnnxRunner(report.path, threads=args.threads).predictor(),
        }
        table = []
        for size in (int(s) for s in args.sizes.split(",")):
            image = slices("val")[0] if size == 512 else mosaic(size)
            runs = args.runs if size <= 512 else max(1, args.runs // 5)
            base = None
            for name, pred in predictors.items():
                seconds, labels = timed(pred.predict, image, runs)
                if base is None:
                    base = (seconds, labels)
                row = {
                    "size": size,
                    "variant": name,
                    "seconds": seconds,
                    "speedup": base[0] / seconds,
                    "labels_equal_torch": float(np.mean(labels == base[1])),
                    "runs": runs,
                }
                table.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
        results["rows"] = table
    print(f"CPU: {results['cpu']}")
    print(
        f"int8 check (quantize_int8): labels agree with fp32 ONNX on "
        f"{100 * report.agreement:.2f} % of {report.images} validation image(s); on one "
        f"{report.tile[0]}² tile fp32 {report.fp32_seconds:.2f} s, int8 {report.int8_seconds:.2f} s "
        f"({report.speedup:.2f}×); quantising took {results['quantize_seconds']:.0f} s"
    )
    if not args.checkpoint:
        print("weights: random (label agreement means little with random weights)")
    print()
    print("| image | variant | seconds | speed-up vs torch | labels = torch |")
    print("|---|---|---:|---:|---:|")
    for r in table:
        print(
            f"| {r['size']}² | {ROWS[r['variant']]} | {r['seconds']:.2f} | "
            f"{r['speedup']:.2f}× | {100 * r['labels_equal_torch']:.2f} % |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

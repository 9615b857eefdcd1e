"""One huge image stored four ways, predicted band by band: time, peak RSS and labels per format.

The same size×size uint8 image (written band by band, never whole in memory) as

* ``.npy`` (memory map: the reference path),
* LZW-compressed tiled TIFF (256² tiles),
* JPEG-compressed pyramidal OME-TIFF (256² tiles, quality 95, 3 levels; predicted on level 0),
* OME-Zarr (NGFF 0.5, zarr v3, 1024² chunks, the zarr default codec),

each predicted by ``predict_files`` in its own process (peak RSS is per process) with the same random
16-wide U-Net. The labels of the lossless formats must equal the ``.npy`` labels exactly; JPEG changes
the pixels, so its row reports the share of labels that agree with the ``.npy`` path instead.

    python benchmarks/bench_formats.py [--size 20000] [--width 16] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BAND = 1024
FORMATS = {
    "npy": ("a.npy", ".npy memory map"),
    "tiff-lzw": ("b.tif", "tiled TIFF, LZW"),
    "ome-tiff-jpeg": ("c.ome.tif", "pyramidal OME-TIFF, JPEG q95"),
    "ome-zarr": ("d.ome.zarr", "OME-Zarr (zarr v3)"),
}


def band(y0: int, y1: int, size: int) -> np.ndarray:
    """Rows y0…y1 of the test image: smooth structure plus texture, uint8."""
    yy = np.arange(y0, y1, dtype=np.float32)[:, None]
    xx = np.arange(size, dtype=np.float32)[None]
    wave = 100 * np.sin(yy / 37.0) * np.cos(xx / 29.0) + 20 * np.sin((xx + yy) / 5.0)
    return (127 + wave).astype(np.uint8)


def write_all(folder: Path, size: int) -> None:
    import tifffile
    import zarr

    npy = np.lib.format.open_memmap(
        folder / "a.npy", mode="w+", dtype=np.uint8, shape=(1, size, size)
    )
    group = zarr.open_group(str(folder / "d.ome.zarr"), mode="w")
    arr = group.create_array("0", shape=(1, size, size), chunks=(1, BAND, BAND), dtype=np.uint8)
    for y in range(0, size, BAND):
        rows = band(y, min(y + BAND, size), size)
        npy[0, y : y + len(rows)] = rows
        arr[0, y : y + len(rows)] = rows
    npy.flush()
    del npy
    group.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [
            {
                "axes": [{"name": "c", "type": "channel"}]
                + [{"name": a, "type": "space", "unit": "micrometer"} for a in "yx"],
                "datasets": [
                    {
                        "path": "0",
                        "coordinateTransformations": [{"type": "scale", "scale": [1, 0.5, 0.5]}],
                    }
                ],
            }
        ],
    }
    src = np.load(folder / "a.npy", mmap_mode="r")[0]

    def tiles(step: int = 1):
        view = src[::step, ::step]
        for y in range(0, view.shape[0], 256):
            for x in range(0, view.shape[1], 256):
                t = np.zeros((256, 256), np.uint8)
                piece = view[y : y + 256, x : x + 256]
                t[: piece.shape[0], : piece.shape[1]] = piece
                yield t

    tifffile.imwrite(
        folder / "b.tif",
        tiles(),
        shape=(size, size),
        dtype=np.uint8,
        tile=(256, 256),
        compression="lzw",
    )
    with tifffile.TiffWriter(folder / "c.ome.tif", ome=True, bigtiff=True) as tw:
        opts = dict(
            dtype=np.uint8,
            tile=(256, 256),
            compression="jpeg",
            compressionargs={"level": 95},
            photometric="minisblack",
        )
        tw.write(
            tiles(),
            shape=(size, size),
            subifds=2,
            metadata={"axes": "YX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5},
            **opts,
        )
        for k in (2, 4):
            n = -(-size // k)
            tw.write(tiles(k), shape=(n, n), subfiletype=1, **opts)


def child(path: str, width: int, out: str) -> dict:
    import torch

    from unetkit import create_model, runtime
    from unetkit.data import LabelMap, create_normalizer
    from unetkit.inference import batch
    from unetkit.inference.batch import predict_files
    from unetkit.inference.predictor import Predictor
    from unetkit.io.lazy import open_lazy

    n_pixels = int(np.prod(open_lazy(path).shape[1:]))
    batch.LARGE_PIXELS = min(batch.LARGE_PIXELS, n_pixels - 1)  # band by band at any --size
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = create_model("unet", base_features=width, in_channels=1, num_classes=2).eval()
    pred = Predictor(model, normalizer=create_normalizer("zscore"), label_map=LabelMap([0, 255]))
    runtime.configure_process(reuse_freed_memory=pred.device.type == "cpu")  # as `unetkit predict`
    t0 = time.perf_counter()
    res = predict_files(pred, [Path(path)], Path(out), progress=False)
    return {
        "seconds": time.perf_counter() - t0,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "mode": res[0].mode,
        "labels": str(res[0].outputs["labels"]),
    }


def agreement(a: Path, b: Path) -> tuple[int, int]:
    """(pixels that differ, pixels) between two label TIFFs, read band by band."""
    from unetkit.io.lazy import open_lazy

    x, y = open_lazy(a)[0], open_lazy(b)[0]
    differ = sum(
        int(np.count_nonzero(x[r : r + BAND] != y[r : r + BAND]))
        for r in range(0, x.shape[0], BAND)
    )
    return differ, x.size


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size", type=int, default=20000)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--json")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.width, args.child[1])))
        return
    from unetkit.runtime import cpu_info

    print(f"CPU: {cpu_info().describe()}")
    tmp = Path(tempfile.mkdtemp())
    try:
        t0 = time.perf_counter()
        write_all(tmp, args.size)
        print(
            f"wrote the {args.size}² image in 4 formats in {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
        rows = {}
        for key, (name, _) in FORMATS.items():
            res = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--width",
                    str(args.width),
                    "--child",
                    str(tmp / name),
                    str(tmp / f"out_{key}"),
                ],
                capture_output=True,
                text=True,
            )
            if res.returncode != 0:
                raise SystemExit(f"{key} failed:\n{res.stderr[-2000:]}")
            rows[key] = json.loads(res.stdout.strip().splitlines()[-1])
            p = tmp / name
            rows[key]["file_mb"] = (
                sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
                if p.is_dir()
                else p.stat().st_size
            ) / 2**20
            print(
                f"{key}: {rows[key]['seconds']:.0f} s, {rows[key]['peak_rss_gb']:.2f} GB",
                flush=True,
            )
        ref = Path(rows["npy"]["labels"])
        for key in FORMATS:
            rows[key]["differ"], rows[key]["pixels"] = agreement(ref, Path(rows[key]["labels"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = rows["npy"]["seconds"]
    print(
        f"\n{args.size:,}² uint8 image, random U-Net width {args.width}, band by band (predict_files):\n"
    )
    print("| format | file MB | s | × .npy time | peak RSS GB | labels = .npy |")
    print("|---|---:|---:|---:|---:|---|")
    for key, (_, label) in FORMATS.items():
        r = rows[key]
        same = (
            "identical"
            if r["differ"] == 0
            else f"{100 * (1 - r['differ'] / r['pixels']):.3f} % agree"
        )
        print(
            f"| {label} | {r['file_mb']:.0f} | {r['seconds']:.0f} | {r['seconds'] / base:.2f} | "
            f"{r['peak_rss_gb']:.2f} | {same} |"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"size": args.size, "width": args.width, "rows": rows}, indent=1)
        )


if __name__ == "__main__":
    main()

"""One huge image stored four ways, predicted band by band: time, peak RSS and labels per format.

The same size×size uint8 image (written band by band, never whole in memory) as

* ``.npy`` (memory map: the reference path),
* LZW-compressed tiled TIFF (256² tiles),
* JPEG-compressed pyramidal OME-TIFF (256² tiles, quality 95, 3 levels; predicted on level 0),
* OME-Zarr (NGFF 0.5, zarr v3, 1024² chunks, the zarr default codec),

each predicted by ``predict_files`` in its own process (peak RSS is per process) with the same random
16-wide U-Net. The labels of the lossless formats must equal the ``.npy`` labels exactly; JPEG changes
the pixels, so its row reports the share of labels that agree with the ``.npy`` path instead.

Then (``--volume``) a uint16 zarr volume predicted slab by slab by a random 3D U-Net, with a crop of
it predicted both ways (slabs and whole) to show they agree; and (``--dask-images``) a folder of
512² images predicted by one process, then by a Dask LocalCluster of 1 and 2 one-thread workers.

    python benchmarks/bench_formats.py [--size 20000] [--width 16] [--volume 256,512,512]
                                       [--dask-images 40] [--json out.json]
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


def child_volume(path: str, width: int, out: str) -> dict:
    """A 3D volume predicted by ``predict_files`` (slab by slab above 64 Mpx) in this process."""
    import torch

    from unetkit import create_model, runtime
    from unetkit.data import LabelMap, create_normalizer
    from unetkit.inference.batch import predict_files
    from unetkit.inference.predictor import Predictor

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = create_model("unet", spatial_dims=3, base_features=width, depth=3, num_classes=2).eval()
    pred = Predictor(model, normalizer=create_normalizer("zscore"), label_map=LabelMap([0, 1]))
    runtime.configure_process(reuse_freed_memory=True)
    t0 = time.perf_counter()
    res = predict_files(pred, [Path(path)], Path(out), progress=False)
    return {
        "seconds": time.perf_counter() - t0,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "mode": res[0].mode,
        "plan": pred.describe(),
    }


def run_volume(tmp: Path, zyx: tuple, width: int) -> dict:
    import zarr

    d, h, w = zyx
    arr = zarr.create_array(
        str(tmp / "vol.zarr"), shape=(1, d, h, w), chunks=(1, 32, 256, 256), dtype=np.uint16
    )
    for z in range(0, d, 32):
        zz = np.arange(z, min(z + 32, d), dtype=np.float32)[:, None, None]
        yy = np.arange(h, dtype=np.float32)[None, :, None]
        xx = np.arange(w, dtype=np.float32)[None, None, :]
        arr[0, z : z + 32] = (
            2000 + 1500 * np.sin(zz / 9) * np.cos(yy / 13) * np.sin(xx / 11)
        ).astype(np.uint16)
    res = subprocess.run(
        [
            sys.executable,
            __file__,
            "--width",
            str(width),
            "--child-volume",
            str(tmp / "vol.zarr"),
            str(tmp / "vol_out"),
        ],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        raise SystemExit(f"volume failed:\n{res.stderr[-2000:]}")
    row = json.loads(res.stdout.strip().splitlines()[-1])
    row["voxels"] = d * h * w
    # a crop small enough for memory: slab by slab and whole-volume prediction agree
    import torch

    from unetkit import create_model
    from unetkit.data import LabelMap, create_normalizer
    from unetkit.inference import batch
    from unetkit.inference.batch import predict_files
    from unetkit.inference.predictor import Predictor
    from unetkit.io import read_image

    crop = np.asarray(arr[:, : min(d, 96), : min(h, 160), : min(w, 160)])
    np.save(tmp / "crop.npy", crop)
    torch.manual_seed(0)
    model = create_model("unet", spatial_dims=3, base_features=width, depth=3, num_classes=2).eval()
    pred = Predictor(model, normalizer=create_normalizer("zscore"), label_map=LabelMap([0, 1]))
    batch.LARGE_PIXELS = 1000
    out = predict_files(pred, [tmp / "crop.npy"], tmp / "crop_out", progress=False)
    slabs = read_image(out[0].outputs["labels"])[0][0]
    whole = pred.predict(crop)
    row["crop"] = list(crop.shape[1:])
    row["crop_differ"] = int(np.count_nonzero(slabs != whole))
    return row


def _dask_child(folder: str, out: str, workers: int, width: int) -> dict:
    import functools

    import torch

    from unetkit import create_model
    from unetkit.checkpoint import save_checkpoint
    from unetkit.data import LabelMap, create_normalizer
    from unetkit.inference.batch import predict_files
    from unetkit.inference.predictor import Predictor

    torch.manual_seed(0)
    model = create_model("unet", base_features=width, num_classes=2).eval()
    ckpt = save_checkpoint(  # the same weights in every run (seeded), loaded as `predict` does
        Path(out).with_suffix(".pt"),
        model,
        normalization=create_normalizer("zscore").to_dict(),
        label_map=LabelMap([0, 255]).to_dict(),
    )
    factory = functools.partial(Predictor.from_checkpoint, ckpt)
    pred = factory()
    if workers == 0:
        torch.set_num_threads(2)
        t0 = time.perf_counter()
        predict_files(pred, [folder], out, progress=False)
        return {"seconds": time.perf_counter() - t0}
    from distributed import Client, LocalCluster

    from unetkit.inference.cluster import predict_files_dask

    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(lambda: None)
        t0 = time.perf_counter()
        predict_files_dask(
            factory, [folder], out, client, threads=1, progress=False, predictor=pred
        )
        return {"seconds": time.perf_counter() - t0}


def run_dask(tmp: Path, n: int, width: int) -> dict:
    from PIL import Image

    folder = tmp / "folder"
    folder.mkdir()
    for i in range(n):
        Image.fromarray(band(i * 512, i * 512 + 512, 512)).save(folder / f"im{i:03d}.png")
    rows = {}
    for workers in (0, 1, 2):
        res = subprocess.run(
            [
                sys.executable,
                __file__,
                "--width",
                str(width),
                "--child-dask",
                str(folder),
                str(tmp / f"dask_{workers}"),
                str(workers),
            ],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            raise SystemExit(f"dask {workers} failed:\n{res.stderr[-2000:]}")
        rows[workers] = json.loads(res.stdout.strip().splitlines()[-1])
        rows[workers]["images_per_s"] = n / rows[workers]["seconds"]
    same = all(
        (tmp / "dask_0" / f.name).read_bytes() == f.read_bytes()
        for w in (1, 2)
        for f in sorted((tmp / f"dask_{w}").iterdir())
    )
    return {"images": n, "rows": rows, "identical": same}


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
    ap.add_argument("--volume", default="256,512,512", help="D,H,W of the 3D volume (0 = skip)")
    ap.add_argument("--volume-width", type=int, default=8)
    ap.add_argument(
        "--dask-images", type=int, default=40, help="images for Dask scaling (0 = skip)"
    )
    ap.add_argument("--json")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--child-volume", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--child-dask", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.width, args.child[1])))
        return
    if args.child_volume:
        print(json.dumps(child_volume(args.child_volume[0], args.width, args.child_volume[1])))
        return
    if args.child_dask:
        f, o, w = args.child_dask
        print(json.dumps(_dask_child(f, o, int(w), args.width)))
        return
    from unetkit.runtime import cpu_info

    print(f"CPU: {cpu_info().describe()}")
    tmp = Path(tempfile.mkdtemp())
    rows: dict = {}
    extra: dict = {}
    try:
        if args.dask_images:
            extra["dask"] = run_dask(tmp, args.dask_images, args.width)
        if args.volume != "0":
            zyx = tuple(int(v) for v in args.volume.split(","))
            extra["volume"] = run_volume(tmp, zyx, args.volume_width)
        if not args.size:
            return _report(args, rows, extra)
        t0 = time.perf_counter()
        write_all(tmp, args.size)
        print(
            f"wrote the {args.size}² image in 4 formats in {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
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
    _report(args, rows, extra)


def _report(args, rows: dict, extra: dict) -> None:
    if "dask" in extra:
        dk = extra["dask"]
        print(f"\nDask: {dk['images']} images of 512², random U-Net width {args.width}:\n")
        print("| run | s | images/s | × one process |")
        print("|---|---:|---:|---:|")
        base_d = dk["rows"][0]["images_per_s"]
        for w, label in (
            (0, "one process, 2 threads"),
            (1, "LocalCluster, 1 worker × 1 thread"),
            (2, "LocalCluster, 2 workers × 1 thread"),
        ):
            r = dk["rows"][w]
            print(
                f"| {label} | {r['seconds']:.1f} | {r['images_per_s']:.2f} | "
                f"{r['images_per_s'] / base_d:.2f} |"
            )
        print(f"\noutputs of the cluster runs identical to one process: {dk['identical']}")
    if "volume" in extra:
        v = extra["volume"]
        print(
            f"\n3D volume {args.volume} uint16 zarr, random 3D U-Net width {args.volume_width} "
            f"(depth 3), {v['mode']}: {v['seconds']:.0f} s ({v['voxels'] / v['seconds'] / 1e6:.2f} "
            f"Mvoxel/s), peak RSS {v['peak_rss_gb']:.2f} GB; crop {v['crop']} slab by slab vs "
            f"whole: {v['crop_differ']} voxels differ"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"args": vars(args), "rows": rows, **extra}, indent=1, default=str)
        )
    if not rows:
        return
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


if __name__ == "__main__":
    main()

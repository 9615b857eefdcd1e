"""Speed of the data pipeline on the CPU: augmentation, elastic deformation, weight map, sampling.

Prints a table of the mean and median time per call (ms). The default augmentation draws each
transform with its probability, so its mean over many samples is the cost per training sample. Run: ``python benchmarks/bench_data.py [--repeats N]``.
All work is single-threaded numpy/scipy; the numbers are per sample, one process.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
from skimage.draw import disk

from unetkit.data.normalization import create_normalizer
from unetkit.data.sampling import PatchSampler, foreground_locations
from unetkit.data.transforms import SpatialTransform, build_augmentation
from unetkit.data.weightmap import border_weight_map

ALL_ON = {
    "flip": {"prob": 1.0},
    "rot90": {"prob": 1.0},
    "spatial": {"p_rotation": 1.0, "p_scale": 1.0, "p_elastic": 1.0},
    "gamma": {"prob": 1.0},
    "brightness_contrast": {"prob": 1.0},
    "blur": {"prob": 1.0},
    "noise": {"prob": 1.0},
}


def timeit(fn, repeats: int, warmup: int = 2) -> tuple[float, float]:
    """Mean and median wall time of ``fn()`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.fmean(times), 1000 * statistics.median(times)


def cells(shape, count, rng, radius=(4, 10)):
    """A mask of ``count`` non-overlapping discs and their instance labels."""
    inst = np.zeros(shape, np.int32)
    k = 0
    while k < count:
        centre = rng.integers(0, shape, size=2)
        rr, cc = disk(tuple(centre), int(rng.integers(*radius)), shape=shape)
        if inst[rr, cc].any():
            continue
        k += 1
        inst[rr, cc] = k
    return (inst > 0).astype(np.int64), inst


def sample(n, rng):
    mask, _ = cells((n, n), n // 2, rng)
    return {
        "image": rng.random((1, n, n), dtype=np.float32),
        "mask": mask,
        "weight": rng.random((n, n), dtype=np.float32),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []

    default = build_augmentation(None, 2)
    all_on = build_augmentation(ALL_ON, 2)
    elastic = SpatialTransform(p_elastic=1.0)
    elastic_cubic = SpatialTransform(p_elastic=1.0, image_order=3)
    for n in (256, 512):
        s = sample(n, rng)
        for name, t in (
            (f"augmentation, defaults (image+mask+weight) {n}²", default),
            (f"augmentation, every transform on {n}²", all_on),
            (f"elastic alone (order 1) {n}²", elastic),
            (f"elastic alone, cubic image {n}²", elastic_cubic),
        ):
            r = np.random.default_rng(1)
            rows.append((name, timeit(lambda t=t, s=s, r=r: t(s, r), args.repeats)))

    mask, inst = cells((512, 512), 300, np.random.default_rng(0))
    rows.append(
        ("weight map 512², 300 objects (components)", timeit(lambda: border_weight_map(mask), 10))
    )
    rows.append(
        (
            "weight map 512², 300 objects (instances)",
            timeit(lambda: border_weight_map(mask, instances=inst), 10),
        )
    )
    rows.append(
        (
            "weight map 512², 300 objects, exact (tolerance=0)",
            timeit(lambda: border_weight_map(mask, instances=inst, tolerance=0), 1, warmup=0),
        )
    )
    vol = np.stack([cells((128, 128), 40, np.random.default_rng(z))[0] for z in range(32)])
    rows.append(
        ("weight map 32×128² volume (3D components)", timeit(lambda: border_weight_map(vol), 3))
    )

    image = rng.random((1, 512, 512), dtype=np.float32)
    locs = foreground_locations(mask)
    sampler = PatchSampler(label_size=388, input_size=572)
    r = np.random.default_rng(2)
    rows.append(
        (
            "patch 572→388 from 512² (fg search each call)",
            timeit(lambda: sampler.sample(image, mask, r), 30),
        )
    )
    rows.append(
        (
            "patch 572→388 from 512² (precomputed fg)",
            timeit(lambda: sampler.sample(image, mask, r, fg_locations=locs), 30),
        )
    )
    norm = create_normalizer("percentile")
    rows.append(("percentile normalisation 512²", timeit(lambda: norm(image), 30)))

    width = max(len(name) for name, _ in rows)
    from unetkit.runtime import cpu_info

    print(
        f"CPU: {cpu_info().describe()}"
    )  # the flags decide the CPU path: say which machine this was
    print(
        f"unetkit data pipeline, {platform.processor() or platform.machine()}, numpy {np.__version__}"
    )
    print(f"| {'operation':<{width}} | mean ms | median ms |")
    print(f"|{'-' * (width + 2)}|--------:|----------:|")
    for name, (mean, median) in rows:
        print(f"| {name:<{width}} | {mean:7.1f} | {median:9.1f} |")


if __name__ == "__main__":
    main()

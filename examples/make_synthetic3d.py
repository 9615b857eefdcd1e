"""Write a small synthetic 3D data set (NIfTI) for examples/synthetic3d.yaml.

    python examples/make_synthetic3d.py OUT_DIR [--cases 8] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np


def volume(rng: np.random.Generator, shape=(40, 64, 64)) -> tuple[np.ndarray, np.ndarray]:
    zz, yy, xx = np.mgrid[: shape[0], : shape[1], : shape[2]]
    mask = np.zeros(shape, np.uint8)
    for _ in range(rng.integers(3, 7)):
        c = [rng.integers(6, s - 6) for s in shape]
        r = rng.uniform(3, 8, size=3)
        mask[((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2 <= 1] = 1
    image = mask * 1.0 + rng.normal(0, 0.6, shape) + 0.3 * np.sin(xx / 11.0)
    return image.astype(np.float32), mask


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", type=Path)
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])  # anisotropic voxels, kept through predict
    for i in range(args.cases):
        split = "val" if i >= args.cases - 2 else "train"
        image, mask = volume(rng)
        for sub, arr in (("images", image), ("masks", mask)):
            (args.out / split / sub).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(np.ascontiguousarray(arr.transpose(2, 1, 0)), affine),
                     args.out / split / sub / f"case{i:02d}.nii.gz")
    print(f"wrote {args.cases} volumes to {args.out}")


if __name__ == "__main__":
    main()

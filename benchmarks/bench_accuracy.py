"""Time to accuracy on ISBI 2012: unetkit's recipe vs the common recipe, same wall-clock budget.

* **unetkit**: ``examples/isbi2012.yaml`` (16-wide same-padding U-Net, Dice + CE, AdamW, 4 × 256²
  patches with elastic and the other default augmentations, bf16 + channels-last), the learning rate
  run on the clock (``train.scheduler: budget``), best checkpoint by membrane Dice; prediction with
  the default predictor, with and without d4 test-time augmentation.
* **common recipe** (the popular PyTorch U-Net repos): a plain fp32 loop, 64-wide same-padding U-Net,
  Dice + CE, Adam 1e-3, whole 512² images one at a time, no augmentation, intensities / 255, the last
  weights, whole-image prediction.

Both train on ``isbi2012/train`` (22 slices) for the same number of minutes (2 threads, each in its
own process) and are scored here on the 3 ``isbi2012/val`` slices: pixel error, adapted Rand error
(cells = 4-connected non-membrane regions; the challenge's convention) and membrane Dice. The common
recipe's trained 64-wide net is kept (``--keep DIR``) for the whole-image seam benchmark.

    python benchmarks/bench_accuracy.py [--minutes 5] [--data ../shared/data/isbi2012] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from scoring import mean_scores, pixel_scores

REPO = Path(__file__).resolve().parents[1]


def load_pairs(folder: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(image uint8 (H, W), membrane bool (H, W))`` for each slice of ``folder``."""
    from PIL import Image

    pairs = []
    for path in sorted((folder / "images").glob("*.png")):
        image = np.asarray(Image.open(path))
        membrane = np.asarray(Image.open(folder / "masks" / path.name)) == 0
        pairs.append((image, membrane))
    if not pairs:
        raise SystemExit(f"no images in {folder / 'images'}")
    return pairs


def scores(pred_membrane: np.ndarray, truth_membrane: np.ndarray) -> dict:
    """Pixel error, adapted Rand error and membrane Dice of one slice."""
    from scipy import ndimage

    from unetkit.evaluation.connectomics import adapted_rand

    overlap = pixel_scores(pred_membrane, truth_membrane)
    cells_pred, _ = ndimage.label(~pred_membrane)
    cells_true, _ = ndimage.label(~truth_membrane)
    return {
        "pixel_error": overlap["pixel_error"],
        "rand_error": adapted_rand(cells_true, cells_pred)["rand_error"],
        "membrane_dice": overlap["dice"],
    }


def run_ours(data: Path, minutes: float, work: Path) -> dict:
    from unetkit import runtime
    from unetkit.config import RunConfig
    from unetkit.inference.predictor import Predictor
    from unetkit.training import Trainer

    cfg = RunConfig.from_yaml(REPO / "examples" / "isbi2012.yaml").override(
        {
            "data.train_dir": str(data / "train"),
            "data.val_dir": str(data / "val"),
            "train.seed": 0,
            "train.time_budget_minutes": minutes,
            "train.scheduler": "budget",
            "train.epochs": 100000,
        }
    )
    # the process settings `unetkit train` makes (threads stay the child's 2 unless the recipe says)
    runtime.configure_process(
        cfg.train.threads,
        reuse_freed_memory=runtime.resolve_device(cfg.train.device).type == "cpu",
    )
    t0 = time.monotonic()
    result = Trainer(cfg, run_dir=work / "ours", progress=False).fit()
    train_min = (time.monotonic() - t0) / 60
    out = {
        "train_minutes": train_min,
        "epochs": result.epochs_completed,
        "images": cfg.train.batch_size * cfg.train.iters_per_epoch * result.epochs_completed,
    }
    for tta in ("none", "d4"):
        predictor = Predictor.from_checkpoint(result.run_dir / "checkpoints" / "best.pt", tta=tta)
        per_slice = []
        for image, truth in load_pairs(data / "val"):
            labels = predictor.label_map.decode(predictor.predict(image[None].astype(np.float32)))[
                0
            ]
            per_slice.append(scores(labels == 0, truth))
        out["tta-" + tta] = mean_scores(per_slice)
    return out


def run_common(data: Path, minutes: float, work: Path) -> dict:
    """The plain loop most PyTorch U-Net repos use; saves the last weights as a unetkit checkpoint."""
    import torch
    import torch.nn.functional as F

    from unetkit import create_model
    from unetkit.checkpoint import save_checkpoint
    from unetkit.data import LabelMap, create_normalizer

    torch.manual_seed(0)
    train = load_pairs(data / "train")
    xs = [torch.from_numpy(im.astype(np.float32) / 255.0)[None, None] for im, _ in train]
    ys = [torch.from_numpy((~m).astype(np.int64))[None] for _, m in train]  # 0 = membrane, 1 = cell
    model = create_model("unet", base_features=64, in_channels=1, num_classes=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def dice_ce(logits, y):
        p = torch.softmax(logits, 1)
        onehot = F.one_hot(y, 2).permute(0, 3, 1, 2).float()
        inter = (p * onehot).sum((0, 2, 3))
        dice = (2 * inter + 1e-5) / (p.sum((0, 2, 3)) + onehot.sum((0, 2, 3)) + 1e-5)
        return F.cross_entropy(logits, y) + 1 - dice.mean()

    t0, steps, epochs = time.monotonic(), 0, 0
    rng = np.random.default_rng(0)
    while time.monotonic() - t0 < minutes * 60:
        epochs += 1
        for i in rng.permutation(len(xs)):
            model.train()
            loss = dice_ce(model(xs[i]), ys[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            if time.monotonic() - t0 >= minutes * 60:
                break
    train_min = (time.monotonic() - t0) / 60
    model.eval()
    per_slice = []
    with torch.inference_mode():
        for image, truth in load_pairs(data / "val"):
            logits = model(torch.from_numpy(image.astype(np.float32) / 255.0)[None, None])
            per_slice.append(scores(logits.argmax(1)[0].numpy() == 0, truth))
    save_checkpoint(
        work / "common_unet64.pt",
        model,
        label_map=LabelMap([0, 255]).to_dict(),
        normalization=create_normalizer("fixed", low=0, high=255).to_dict(),
        with_rng=False,
        extra={"recipe": "common", "minutes": minutes, "steps": steps},
    )
    return {
        "train_minutes": train_min,
        "epochs": epochs,
        "images": steps,
        "tta-none": mean_scores(per_slice),
        "checkpoint": str(work / "common_unet64.pt"),
    }


def child(args) -> None:
    import torch

    torch.set_num_threads(2)
    fn = run_ours if args.variant == "ours" else run_common
    print(json.dumps(fn(Path(args.data), args.minutes, Path(args.work))))


def run_all(data: Path, minutes: float, keep: Path | None = None) -> dict:
    """Both recipes, each in its own process; returns ``{variant: result}``."""
    work = keep or Path(tempfile.mkdtemp())
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    for variant in ("ours", "common"):
        res = subprocess.run(
            [
                sys.executable,
                __file__,
                "--variant",
                variant,
                "--data",
                str(data),
                "--minutes",
                str(minutes),
                "--work",
                str(work),
            ],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            raise SystemExit(f"{variant} failed:\n{res.stderr[-3000:]}")
        results[variant] = json.loads(res.stdout.strip().splitlines()[-1])
    return results


def table(results: dict, minutes: float) -> str:
    rows = [
        ("unetkit recipe (examples/isbi2012.yaml)", results["ours"], "tta-none"),
        ("unetkit recipe + d4 test-time augmentation", results["ours"], "tta-d4"),
        (
            "common recipe (64-wide, whole images, no augmentation, fp32)",
            results["common"],
            "tta-none",
        ),
    ]
    lines = [
        f"ISBI 2012, {minutes:g} min of training each (2 threads), scored on the 3 validation slices",
        "| recipe | trained min | images seen | pixel error | adapted Rand error | membrane Dice |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, r, key in rows:
        s = r[key]
        lines.append(
            f"| {label} | {r['train_minutes']:.1f} | {r['images']} | {s['pixel_error']:.4f} | "
            f"{s['rand_error']:.4f} | {s['membrane_dice']:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--minutes", type=float, default=5.0, help="training budget per recipe (default 5)"
    )
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "isbi2012"))
    ap.add_argument(
        "--keep", help="folder for the runs and the common recipe's checkpoint (default: temporary)"
    )
    ap.add_argument("--json", help="also write the results as JSON here")
    ap.add_argument("--variant", choices=("ours", "common"), help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        child(args)
        return
    if not (Path(args.data) / "train" / "images").is_dir():
        raise SystemExit(
            f"ISBI 2012 not found at {args.data} (expects train/ and val/ with images/ and masks/)"
        )
    results = run_all(Path(args.data), args.minutes, Path(args.keep) if args.keep else None)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    from unetkit.runtime import cpu_info

    print(
        f"CPU: {cpu_info().describe()}"
    )  # the flags decide the CPU path: say which machine this was
    print(table(results, args.minutes))


if __name__ == "__main__":
    main()

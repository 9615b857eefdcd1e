"""The main job end to end, as the U-Net paper did it: ``unetkit demo`` / ``make demo``.

    generate_data()      seeded synthetic microscopy of touching cells (train, val, one large image)
    build_config()       the original valid-padding U-Net, narrow; elastic augmentation; the paper's
                         weighted cross-entropy with the border weight map (w0 10, σ 5)
    train()              Trainer.fit() within a time budget; the poly learning-rate schedule runs on
                         the clock (scheduler: budget, i.e. BudgetSchedule)
    choose_checkpoint()  best.pt (validation Dice) or last.pt, and the watershed settings
                         (tune_separation), by the mean AP on the validation images
    predict_large()      Predictor.from_checkpoint(...): overlap-tile over the large image
    separate()           instances: seeded watershed on the predicted background/border probability
    evaluate()           pixel metrics (Dice, pixel error), Rand error, object metrics (F1 at IoU 0.5,
                         AP 0.5:0.95), merged / split cells
    write_report()       report/: curves, overlays, weight map, metrics table, README

:func:`run_demo` runs them in order and returns a :class:`DemoResult`; every step is a plain
function a notebook can call on its own.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np

from ..errors import ConfigError, DataError
from .synthetic import CellStyle, SyntheticDataset, write_dataset

if TYPE_CHECKING:  # re-exported lazily by __getattr__ below (importing it here would import torch)
    from ..training.callbacks import BudgetSchedule

PathLike = Union[str, Path]

#: Marker file that makes a folder the demo's own (its ``data/``, ``run/``, ``report/`` may be replaced).
MARKER = ".unetkit-demo"

#: Sizes and budgets of the two modes.
PRESETS: dict[str, dict[str, Any]] = {
    "full": {
        "n_train": 12,
        "n_val": 2,
        "size": (384, 384),
        "large_shape": (1024, 1536),
        "train_minutes": 6.0,
        "iters_per_epoch": 50,
    },
    "quick": {
        "n_train": 4,
        "n_val": 1,
        "size": (256, 256),
        "large_shape": (512, 768),
        "train_minutes": 0.6,
        "iters_per_epoch": 5,
    },
}


@dataclass
class DemoOptions:
    """What the demo does; ``None`` values come from :data:`PRESETS` (``full`` or ``quick``).

    Attributes:
        out_dir: the demo folder: ``data/``, ``run/`` (the training run) and ``report/``.
        quick: the small preset (about a minute; for tests).
        weight_map: train with the paper's border weight map (``False``: the ablation).
        seed: seeds the data and the training.
        train_minutes: training time budget (default 6, quick 0.6).
        base_features, depth: width and number of poolings of the valid-padding U-Net.
        patch_size: training label patch (the input is ``patch_size + border``).
        batch_size, lr: the optimiser's batch and AdamW learning rate.
        w0, sigma: the border weight map's parameters (the paper's 10 and 5 px).
        out_tile: output tile of the overlap-tile prediction (the paper's 388).
        threads: torch CPU threads (``None``: one per core), recorded in the run config; set by
            ``unetkit demo`` (:func:`unetkit.runtime.configure_process`), not by :func:`run_demo`.
        progress: progress bars and per-epoch lines.
    """

    out_dir: PathLike = "demo_out"
    quick: bool = False
    weight_map: bool = True
    seed: int = 0
    train_minutes: Optional[float] = None
    base_features: int = 16
    depth: int = 3
    patch_size: int = 164
    batch_size: int = 4
    lr: float = 2e-3
    w0: float = 10.0
    sigma: float = 5.0
    out_tile: int = 388
    threads: Optional[int] = None
    progress: bool = True

    def preset(self) -> dict:
        p = dict(PRESETS["quick" if self.quick else "full"])
        if self.train_minutes is not None:
            if not self.train_minutes > 0:
                raise ConfigError(f"train_minutes must be > 0, got {self.train_minutes}")
            p["train_minutes"] = float(self.train_minutes)
        return p


@dataclass
class DemoResult:
    """What :func:`run_demo` returns.

    Attributes:
        report_dir: the report folder (``README.md``, ``metrics.json`` …).
        metrics: the evaluation of the large image (see :func:`evaluate`).
        timings: seconds per step and in total.
        run_dir: the training run folder.
        data: the synthetic data set.
        info: model, training and tiling facts shown in the report.
    """

    report_dir: Path
    metrics: dict
    timings: dict
    run_dir: Path
    data: SyntheticDataset
    info: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------- steps
def prepare_out_dir(out_dir: PathLike) -> Path:
    """Create the demo folder, or clear the demo's own sub-folders of an earlier demo there.

    Raises:
        DataError: the folder exists, is not empty and was not made by the demo.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError("exists and is not a folder; give another --out", out)
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise DataError(
            "folder is not empty and was not made by unetkit demo; give an empty or new --out", out
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(
        "made by unetkit demo: data/, run/ and report/ are replaced by the next demo\n"
    )
    for sub in ("data", "run", "report"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    return out


def generate_data(
    out_dir: PathLike, options: DemoOptions, style: Optional[CellStyle] = None
) -> SyntheticDataset:
    """Write the synthetic data set to ``out_dir/data`` (see :func:`~unetkit.demo.synthetic.write_dataset`)."""
    p = options.preset()
    style = style or CellStyle()
    return write_dataset(
        Path(out_dir) / "data",
        n_train=p["n_train"],
        n_val=p["n_val"],
        size=p["size"],
        large_shape=p["large_shape"],
        seed=options.seed,
        style=style,
        progress=options.progress,
    )


def build_config(data: SyntheticDataset, options: DemoOptions):
    """The :class:`~unetkit.config.RunConfig` of the demo's training run.

    The original U-Net (valid convolutions, no normalisation) ``base_features`` wide with ``depth``
    poolings; instance masks (semantic = cell vs background, ids for the weight map); the paper's
    weighted cross-entropy with the border weight map unless ``options.weight_map`` is off; the
    default augmentation (flips, rotations, elastic deformation, grey values); AdamW with the poly
    schedule run on the clock over the time budget (``scheduler: budget``, see
    :class:`~unetkit.training.callbacks.BudgetSchedule`); ``best.pt`` by validation Dice.
    """
    from ..config import RunConfig

    p = options.preset()
    return RunConfig.from_dict(
        {
            "data": {
                "train_dir": str(data.train_dir),
                "val_dir": str(data.val_dir),
                "mask_kind": "instances",
                "patch_size": [int(options.patch_size)],
                "weight_map": bool(options.weight_map),
                "w0": float(options.w0),
                "sigma": float(options.sigma),
                "augmentation": {},
            },
            "model": {
                "name": "unet-original",
                "options": {
                    "base_features": int(options.base_features),
                    "depth": int(options.depth),
                },
            },
            "loss": {"name": "ce"},
            "train": {
                "epochs": 1000,
                "iters_per_epoch": p["iters_per_epoch"],
                "batch_size": int(options.batch_size),
                "optimizer": "adamw",
                "lr": float(options.lr),
                "scheduler": "budget",
                "seed": int(options.seed),
                "time_budget_minutes": p["train_minutes"],
                "select_metric": "val_dice",
                "channels_last": True,
                "threads": options.threads,
            },
        }
    )


def train(config, run_dir: PathLike, options: DemoOptions):
    """Train as ``config`` says into ``run_dir``; returns the :class:`~unetkit.training.TrainResult`.

    The config's ``scheduler: budget`` makes the trainer run the poly schedule on the clock
    (:class:`~unetkit.training.callbacks.BudgetSchedule`).
    """
    from ..training.trainer import Trainer

    return Trainer(config, run_dir=run_dir, progress=options.progress).fit()


def __getattr__(name: str):
    # BudgetSchedule lives in unetkit.training.callbacks (train.scheduler: budget); kept importable from here
    if name == "BudgetSchedule":
        from ..training.callbacks import BudgetSchedule

        return BudgetSchedule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def overlap_tile_size(model, out_tile: int) -> int:
    """The smallest valid input tile whose output is at least ``out_tile`` (388 for the paper's 572)."""
    size = model.valid_input_size(out_tile)
    while model.output_size(size) < out_tile:
        size = model.valid_input_size(size + 1)
    return int(size)


def overlap_tile_predictor(
    checkpoint: PathLike, out_tile: int = 388, threads: Optional[int] = None
):
    """:meth:`Predictor.from_checkpoint <unetkit.inference.predictor.Predictor.from_checkpoint>` with
    the smallest valid input tile whose output is at least ``out_tile`` (the paper's 572 → 388 for
    the 64-wide net; the demo's depth-3 net: 476 → 388)."""
    from ..checkpoint import build_model, load_checkpoint
    from ..inference.predictor import Predictor

    tile = overlap_tile_size(build_model(load_checkpoint(checkpoint)), out_tile)
    return Predictor.from_checkpoint(checkpoint, tile=tile, threads=threads)


def predict_large(predictor, image: np.ndarray) -> tuple[np.ndarray, dict]:
    """Class probabilities of a large image by overlap-tile.

    Args:
        predictor: from :func:`overlap_tile_predictor`.
        image: ``(1, H, W)`` raw image (the predictor applies the checkpoint's normalisation).

    Returns:
        ``(probs, plan)``: ``(2, H, W)`` float32 probabilities (background, cell) and the tile plan
        (``in_tile``, ``out_tile``, ``tiles``, ``seconds``).
    """
    plan = predictor.plan(image.shape[1:])
    t0 = time.monotonic()
    probs = predictor.predict_proba(image)
    seconds = time.monotonic() - t0
    out = plan["out_tile"]
    tiles = int(np.prod([math.ceil(s / o) for s, o in zip(image.shape[1:], out)]))
    return probs, {"in_tile": plan["in_tile"], "out_tile": out, "tiles": tiles, "seconds": seconds}


def separate(
    probs: np.ndarray, seed_threshold: float = 0.3, expand: int = 0, min_size: int = 20
) -> np.ndarray:
    """Instances from class probabilities.

    Cells are ``p_cell ≥ 0.5``; a seeded watershed on the background probability splits them at the
    thin gaps the net predicts (the seeds are the cores where ``p_background ≤ seed_threshold``);
    objects under ``min_size`` px are dropped; each instance then grows by ``expand`` px into the
    background without touching another (a net trained with the border weight map draws the gaps
    wider than the 1-px lines of the truth).

    Args:
        probs: ``(2, H, W)`` probabilities (background, cell).

    Returns:
        ``(H, W)`` int32 instance ids ``1 … n`` (0 = background).
    """
    from skimage.segmentation import expand_labels, relabel_sequential

    from ..inference.postprocess import watershed_split

    labels = watershed_split(
        probs[1] >= 0.5, border_prob=probs[0], seed_threshold=seed_threshold, min_seed_size=4
    )
    if min_size > 1:
        small = np.bincount(labels.ravel()) < min_size
        small[0] = False
        labels = relabel_sequential(np.where(small[labels], 0, labels))[0]
    if expand > 0:
        labels = expand_labels(labels, expand)
    return labels.astype(np.int32)


#: The post-processing settings :func:`tune_separation` tries on the validation images.
SEED_THRESHOLDS = (0.1, 0.2, 0.3, 0.5)
EXPANSIONS = (0, 1, 2)


def tune_separation(predictor, val_dir: PathLike) -> dict:
    """Pick the watershed seed threshold and the expansion that maximise the mean AP over IoU
    0.5:0.95 on the validation images (never on the image that is evaluated).

    Args:
        predictor: from :func:`overlap_tile_predictor`.
        val_dir: a folder with ``images/`` and ``masks/`` (instance masks).

    Returns:
        ``{"seed_threshold", "expand", "val_map", "grid": {"<threshold>/<expand>": val mAP}}``.
    """
    from ..io import read_image

    val_dir = Path(val_dir)
    images = sorted((val_dir / "images").iterdir()) if (val_dir / "images").is_dir() else []
    cases = []
    for path in images:
        image, _ = read_image(path)
        truth = read_image(val_dir / "masks" / path.name)[0][0].astype(np.int64)
        cases.append((predict_large(predictor, image)[0], truth))
    if not cases:
        raise DataError(
            "no validation images to tune the instance separation on", val_dir / "images"
        )
    grid = {}
    for thr in SEED_THRESHOLDS:
        for grow in EXPANSIONS:
            scores = [
                evaluate(separate(probs, thr, grow), truth, merges=False)["map"]
                for probs, truth in cases
            ]
            grid[f"{thr:g}/{grow}"] = float(np.nanmean(scores))
    best = max(grid, key=lambda k: grid[k])
    thr, grow = best.split("/")
    return {"seed_threshold": float(thr), "expand": int(grow), "val_map": grid[best], "grid": grid}


def choose_checkpoint(
    run_dir: PathLike, val_dir: PathLike, out_tile: int = 388, threads: Optional[int] = None
) -> dict:
    """The checkpoint and the instance separation settings with the best mean AP (IoU 0.5:0.95) on
    the validation images.

    The candidates are ``best.pt`` (highest validation Dice: a pixel score, which the border-weighted
    loss trades for thin gaps) and ``last.pt`` (the end of the schedule); each gets its own
    :func:`tune_separation`. On a tie ``last.pt`` wins.

    Returns:
        ``{"name", "path", "epoch", "separation", "candidates": {name: {"epoch", "val_map"}}}``.
    """
    from ..checkpoint import load_checkpoint

    folder = Path(run_dir) / "checkpoints"
    found: dict = {}
    by_epoch: dict = {}
    for name in ("last.pt", "best.pt"):
        path = folder / name
        if not path.is_file():
            continue
        epoch = int(load_checkpoint(path)["epoch"])
        if epoch in by_epoch:  # the same weights: no need to tune twice
            found[name] = {**found[by_epoch[epoch]], "path": path}
            continue
        by_epoch[epoch] = name
        tuned = tune_separation(overlap_tile_predictor(path, out_tile, threads), val_dir)
        found[name] = {"path": path, "epoch": epoch, "separation": tuned}
    if not found:
        raise DataError("no checkpoints/last.pt or best.pt", run_dir)
    name = max(found, key=lambda n: found[n]["separation"]["val_map"])
    return {
        "name": name,
        "path": found[name]["path"],
        "epoch": found[name]["epoch"],
        "separation": found[name]["separation"],
        "candidates": {
            n: {"epoch": f["epoch"], "val_map": f["separation"]["val_map"]}
            for n, f in found.items()
        },
    }


def merge_split_counts(truth: np.ndarray, pred: np.ndarray) -> dict[str, int]:
    """How many truth cells were merged with a neighbour, or split.

    A truth cell is *covered* by the predicted instance holding more than half of its pixels. It is
    **merged** when that instance also covers another truth cell, and **split** when no predicted
    instance covers it but two or more predicted instances each hold at least a quarter of it.

    Args:
        truth, pred: ``(H, W)`` instance ids (0 = background).

    Returns:
        ``{"merged": int, "split": int}`` (numbers of truth cells).
    """
    from ..evaluation.contingency import contingency

    c = contingency(truth, pred)
    keep = (c.truth_ids[c.rows] != 0) & (c.pred_ids[c.cols] != 0)
    rows, cols, counts = c.rows[keep], c.cols[keep], c.counts[keep]
    frac = counts / c.truth_sizes[rows]
    major = frac > 0.5
    owners = cols[major]
    per_owner = np.bincount(owners, minlength=c.pred_ids.size)
    merged = int((per_owner[owners] >= 2).sum())
    covered = np.zeros(c.truth_ids.size, dtype=bool)
    covered[rows[major]] = True
    quarter = np.bincount(rows[frac >= 0.25], minlength=c.truth_ids.size)
    split = int(((quarter >= 2) & ~covered).sum())
    return {"merged": merged, "split": split}


def evaluate(
    pred_instances: np.ndarray, truth_instances: np.ndarray, merges: bool = True
) -> dict[str, float]:
    """Pixel, connectomics and object metrics of an instance prediction.

    Uses :func:`unetkit.evaluation.evaluate.evaluate_case` with the instance ids as the regions:
    ``dice``, ``iou``, ``pixel_error``, ``rand_error``, ``obj_f1`` / ``obj_precision`` /
    ``obj_recall`` (IoU ≥ 0.5), ``ap50``, ``ap75``, ``map`` (AP over IoU 0.5:0.95), ``n_true``,
    ``n_pred``; plus ``merged`` and ``split`` (:func:`merge_split_counts`) when ``merges``.
    """
    from ..evaluation.evaluate import evaluate_case

    truth_instances = np.asarray(truth_instances).astype(np.int64)
    pred_instances = np.asarray(pred_instances).astype(np.int64)
    row = evaluate_case(
        (pred_instances > 0).astype(np.int64),
        (truth_instances > 0).astype(np.int64),
        2,
        metrics=["overlap", "connectomics", "objects"],
        truth_instances=truth_instances,
        pred_instances=pred_instances,
    )[0]
    keys = (
        "dice",
        "iou",
        "pixel_error",
        "rand_error",
        "obj_precision",
        "obj_recall",
        "obj_f1",
        "ap50",
        "ap75",
        "map",
        "n_true",
        "n_pred",
    )
    out = {k: float(row[k]) for k in keys}
    if merges:
        out.update(merge_split_counts(truth_instances, pred_instances))
    return out


# --------------------------------------------------------------------------------------- report
def _colour_labels(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """``(H, W)`` ids → ``(H, W, 3)`` uint8, a random bright colour per id, black background."""
    rng = np.random.default_rng(seed)
    lut = rng.integers(60, 256, size=(int(labels.max()) + 1, 3)).astype(np.uint8)
    lut[0] = 0
    return lut[labels]


def _outlines(labels: np.ndarray) -> np.ndarray:
    from skimage.segmentation import find_boundaries

    return find_boundaries(labels, mode="inner")


def _grey_rgb(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    lo, hi = np.percentile(img, (0.5, 99.5))
    g = np.clip((img - lo) / max(hi - lo, 1e-9), 0, 1)
    return np.repeat((g * 255).astype(np.uint8)[..., None], 3, axis=2)


def write_overlays(
    report: Path, image: np.ndarray, truth: np.ndarray, pred: np.ndarray, crop: int = 256
) -> dict[str, Path]:
    """``overlay.png`` (whole large image: truth outlines green, prediction magenta, overlap white)
    and ``overlay_zoom.png`` (a crop ×2: image | truth instances | predicted instances, merged cells
    outlined red).

    Args:
        image: ``(H, W)`` image; truth, pred: ``(H, W)`` instance ids.
    """
    from PIL import Image

    from ..evaluation.contingency import contingency

    rgb = _grey_rgb(image)
    t_out, p_out = _outlines(truth), _outlines(pred)
    full = rgb.copy()
    full[t_out] = (60, 220, 60)
    full[p_out] = (230, 60, 230)
    full[t_out & p_out] = (255, 255, 255)
    paths = {"overlay": report / "overlay.png", "overlay_zoom": report / "overlay_zoom.png"}
    Image.fromarray(full).save(paths["overlay"])

    # merged cells: truth cells whose majority lies in an instance that holds another truth cell's majority
    c = contingency(truth.astype(np.int64), pred.astype(np.int64))
    keep = (c.truth_ids[c.rows] != 0) & (c.pred_ids[c.cols] != 0)
    rows, cols, counts = c.rows[keep], c.cols[keep], c.counts[keep]
    major = counts / c.truth_sizes[rows] > 0.5
    per_owner = np.bincount(cols[major], minlength=c.pred_ids.size)
    merged_pred = c.pred_ids[np.flatnonzero(per_owner >= 2)]

    h, w = truth.shape
    ch, cw = min(crop, h), min(crop, w)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    win = (slice(y0, y0 + ch), slice(x0, x0 + cw))
    t_col = _colour_labels(truth, 1)[win]
    p_col = _colour_labels(pred, 2)[win]
    merged = _outlines(np.where(np.isin(pred, merged_pred), pred, 0))[win]
    p_col[merged] = (255, 0, 0)
    gap = np.full((ch, 4, 3), 255, np.uint8)
    panel = np.concatenate([rgb[win], gap, t_col, gap, p_col], axis=1)
    Image.fromarray(panel).resize((panel.shape[1] * 2, panel.shape[0] * 2), Image.NEAREST).save(
        paths["overlay_zoom"]
    )
    return paths


def write_weight_map_figure(
    path: Path, image: np.ndarray, instances: np.ndarray, w0: float, sigma: float, crop: int = 160
) -> dict[str, float]:
    """``weight_map.png``: a training image, its mask and the paper's border weight map (colour-mapped).

    Returns:
        ``{"max", "mean_gap", "mean_cell", "mean_background"}``: the map's maximum and its mean on
        the 1-px gaps between touching cells, inside cells, and on the other background.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import ndimage

    from ..data.weightmap import border_weight_map

    semantic = (instances > 0).astype(np.int64)
    weight = border_weight_map(semantic, instances=instances.astype(np.int64), w0=w0, sigma=sigma)
    # the gaps: background pixels with two different cells among their 8 neighbours
    near = ndimage.maximum_filter(instances, size=3)
    near_min = ndimage.minimum_filter(
        np.where(instances > 0, instances, np.iinfo(np.int32).max).astype(np.int64), size=3
    )
    gap = (instances == 0) & (near > 0) & (near_min < near)
    stats = {
        "max": float(weight.max()),
        "mean_gap": float(weight[gap].mean()) if gap.any() else float("nan"),
        "mean_cell": float(weight[instances > 0].mean()),
        "mean_background": float(weight[(instances == 0) & ~gap].mean()),
    }
    h, w = instances.shape
    ch, cw = min(crop, h), min(crop, w)
    win = (slice((h - ch) // 2, (h - ch) // 2 + ch), slice((w - cw) // 2, (w - cw) // 2 + cw))
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2))
    axes[0].imshow(image[win], cmap="gray")
    axes[0].set_title("training image")
    axes[1].imshow(_colour_labels(instances)[win])
    axes[1].set_title("instance mask (1-px gaps)")
    im = axes[2].imshow(weight[win], cmap="magma")
    axes[2].set_title(f"border weight map (w0 {w0:g}, σ {sigma:g})")
    fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.04)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return stats


METRIC_ROWS = (
    ("obj_f1", "object F1 at IoU 0.5", "{:.3f}"),
    ("obj_precision", "object precision at IoU 0.5", "{:.3f}"),
    ("obj_recall", "object recall at IoU 0.5", "{:.3f}"),
    ("ap50", "AP at IoU 0.5", "{:.3f}"),
    ("ap75", "AP at IoU 0.75", "{:.3f}"),
    ("map", "AP averaged over IoU 0.5:0.95", "{:.3f}"),
    ("dice", "pixel Dice (cells)", "{:.4f}"),
    ("iou", "pixel IoU (cells)", "{:.4f}"),
    ("pixel_error", "pixel error", "{:.4f}"),
    ("rand_error", "Rand error (adapted)", "{:.4f}"),
    ("n_true", "cells in the truth", "{:.0f}"),
    ("n_pred", "cells predicted", "{:.0f}"),
    ("merged", "truth cells merged with a neighbour", "{:.0f}"),
    ("split", "truth cells split", "{:.0f}"),
)


def metrics_table(
    metrics: dict, baseline: Optional[dict] = None, names: tuple = ("watershed", "components")
) -> str:
    """Markdown table of the metrics (a second column for ``baseline`` when given)."""
    head = f"| metric | {names[0]} |" + (f" {names[1]} |" if baseline else "")
    rule = "|---|---:|" + ("---:|" if baseline else "")
    lines = [head, rule]
    for key, label, fmt in METRIC_ROWS:
        if key not in metrics:
            continue
        row = f"| {label} | {fmt.format(metrics[key])} |"
        if baseline:
            row += f" {fmt.format(baseline[key])} |"
        lines.append(row)
    return "\n".join(lines) + "\n"


def write_report(report: Path, result: DemoResult, components: dict) -> None:
    """``metrics.json``, ``metrics.md`` and ``README.md`` of the report folder."""
    info, m, t = result.info, result.metrics, result.timings
    payload = {
        "metrics": m,
        "metrics_connected_components": components,
        "timings_s": t,
        "info": info,
        "data": result.data.stats,
    }
    (report / "metrics.json").write_text(json.dumps(payload, indent=2, default=_json_default))
    table = metrics_table(m, components, ("watershed instances", "connected components"))
    (report / "metrics.md").write_text("# Metrics of the large image\n\n" + table)
    stats = result.data.stats
    lg = stats["large"]
    wm = info.get("weight_map_stats")
    loss = (
        f" weighted by the border weight map (w0 {info['w0']:g}, σ {info['sigma']:g})"
        if info["weight_map"]
        else " (unweighted: the ablation)"
    )
    lines = [
        "# unetkit demo report",
        "",
        f"Seed {stats['seed']}; {'with' if info['weight_map'] else '**without**'} the border weight map"
        f"{' (the ablation)' if not info['weight_map'] else ''}; {'quick' if info['quick'] else 'full'} preset; "
        f"finished in {t['total']:.0f} s.",
        "",
        "## Data",
        f"- Synthetic microscopy (`data/`): {stats['train']['images']} training and "
        f"{stats.get('val', {}).get('images', 0)} validation images of {stats['train']['shape'][0]}×"
        f"{stats['train']['shape'][1]} px; a large image of {lg['shape'][0]}×{lg['shape'][1]} px with "
        f"{lg['cells']} cells.",
        f"- {100 * stats['touching_fraction']:.1f} % of all cells touch another cell (within 2 px, i.e. across the "
        "1-px line cut between them in the truth).",
        "",
        "## Training",
        f"- Model: `unet-original`, {info['base_features']} features wide, depth {info['depth']} "
        f"({info['parameters']:,} parameters), valid convolutions: input {_size(info['patch_input'])} → "
        f"output {_size(info['patch_label'])} px per training patch, batch {info['batch_size']}.",
        f"- Loss: cross-entropy{loss}; "
        f"default augmentation with elastic deformation; AdamW, lr {info['lr']:g}, poly schedule run on "
        f"the clock over the {info['train_minutes']:g}-minute budget.",
        f"- {info['epochs']} epochs in {t['train']:.0f} s ({info['stop_reason']}; median speed "
        f"{info['images_per_s']:.1f} patches/s); highest validation Dice {info['best_val_dice']:.4f} at epoch "
        f"{info['best_epoch']}. Curves: ![curves](curves.png)",
        f"- Model used: `{info['checkpoint']}` (epoch {info['checkpoint_epoch']}), the candidate with the higher "
        "mean AP on the validation images ("
        + ", ".join(
            f"`{n}` epoch {c['epoch']}: {c['val_map']:.3f}" for n, c in info["candidates"].items()
        )
        + ").",
        "",
        "## Large image: overlap-tile prediction",
        f"- Tiles of {_size(info['tile_in'])} px → {_size(info['tile_out'])} px ({info['tiles']} tiles; the output "
        f"tiles abut, the context beyond the image border is mirrored), {t['predict']:.1f} s.",
        f"- Instances: seeded watershed on the predicted background probability (seeds where it is ≤ "
        f"{info['separation']['seed_threshold']:g}), objects under 20 px dropped, each grown by "
        f"{info['separation']['expand']} px; both settings chosen on the validation images (mean AP "
        f"{info['separation']['val_map']:.3f} there).",
        "",
        "## Metrics",
        "",
        table,
        "The second column takes the connected components of the predicted cell mask as the instances, with no "
        "watershed: what the network separates on its own.",
        "",
        "## Pictures",
        "- `overlay.png`: the whole large image, truth outlines green, predicted outlines magenta (white where "
        "they agree).",
        "- `overlay_zoom.png`: a crop ×2: image | truth instances | predicted instances (merged cells outlined "
        "red). ![zoom](overlay_zoom.png)",
        "- `probability.png`: the predicted cell probability of the large image.",
        "- `weight_map.png`: a training image, its mask and its border weight map"
        + (
            f" (maximum {wm['max']:.1f}; mean {wm['mean_gap']:.1f} on the gaps between touching cells, "
            f"{wm['mean_cell']:.2f} inside cells)."
            if wm
            else "."
        ),
        "",
    ]
    (report / "README.md").write_text("\n".join(lines))


def _size(sizes) -> str:
    return "×".join(str(int(v)) for v in sizes) if sizes else "?"


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# ------------------------------------------------------------------------------------------ main
def run_demo(
    options: Optional[DemoOptions] = None, style: Optional[CellStyle] = None, log=print
) -> DemoResult:
    """Run the whole demo (module docstring) and return its :class:`DemoResult`.

    Args:
        options: the :class:`DemoOptions` (default: the full demo into ``demo_out/``).
        style: how the synthetic cells look (default :class:`CellStyle`).
        log: where the step lines go (``print``; ``None`` for silence).
    """
    from PIL import Image

    from ..checkpoint import build_model, load_checkpoint
    from ..inference.postprocess import connected_components
    from ..io import read_image

    options = options or DemoOptions()
    say = log or (lambda *a, **k: None)
    preset = options.preset()
    t_start = time.monotonic()
    timings: dict[str, float] = {}
    out = prepare_out_dir(options.out_dir)
    report = out / "report"
    report.mkdir(parents=True)

    say(f"[1/5] synthetic data → {out / 'data'}", flush=True)
    t0 = time.monotonic()
    data = generate_data(out, options, style)
    timings["data"] = time.monotonic() - t0
    st = data.stats
    say(
        f"      {st['train']['images']} train + {st.get('val', {}).get('images', 0)} val images, large image "
        f"{st['large']['shape'][0]}×{st['large']['shape'][1]} with {st['large']['cells']} cells; "
        f"{100 * st['touching_fraction']:.1f} % of cells touch another ({timings['data']:.1f} s)",
        flush=True,
    )

    say(
        f"[2/5] training unet-original ({'with' if options.weight_map else 'without'} the border weight map, "
        f"{preset['train_minutes']:g} min budget) → {out / 'run'}",
        flush=True,
    )
    config = build_config(data, options)
    t0 = time.monotonic()
    result = train(config, out / "run", options)
    timings["train"] = time.monotonic() - t0

    say("[3/5] checkpoint and watershed settings chosen on the validation images", flush=True)
    t0 = time.monotonic()
    choice = choose_checkpoint(result.run_dir, data.val_dir, options.out_tile, options.threads)
    tuned = choice["separation"]
    ckpt = load_checkpoint(choice["path"])
    model = build_model(ckpt)
    timings["select"] = time.monotonic() - t0

    say(
        f"[4/5] overlap-tile prediction of the large image ({st['large']['shape'][0]}×{st['large']['shape'][1]}), "
        f"instances, evaluation",
        flush=True,
    )
    image, _ = read_image(data.large_image)
    truth = read_image(data.large_mask)[0][0].astype(np.int64)
    t0 = time.monotonic()
    predictor = overlap_tile_predictor(choice["path"], options.out_tile, options.threads)
    probs, plan = predict_large(predictor, image)
    timings["predict"] = time.monotonic() - t0
    t0 = time.monotonic()
    pred = separate(probs, tuned["seed_threshold"], tuned["expand"])
    metrics = evaluate(pred, truth)
    components = evaluate(connected_components(probs[1] >= 0.5), truth)
    timings["evaluate"] = time.monotonic() - t0

    say(f"[5/5] report → {report}", flush=True)
    t0 = time.monotonic()
    if (result.run_dir / "curves.png").is_file():
        shutil.copyfile(result.run_dir / "curves.png", report / "curves.png")
    write_overlays(report, image[0], truth, pred)
    Image.fromarray((np.clip(probs[1], 0, 1) * 255).astype(np.uint8)).save(
        report / "probability.png"
    )
    train_img = read_image(sorted((data.train_dir / "images").iterdir())[0])[0][0]
    train_ids = read_image(sorted((data.train_dir / "masks").iterdir())[0])[0][0].astype(np.int64)
    wm_stats = write_weight_map_figure(
        report / "weight_map.png", train_img, train_ids, options.w0, options.sigma
    )
    best = result.best or {}
    label_size = ckpt.get("extra", {}).get("label_size")
    info = {
        "quick": options.quick,
        "weight_map": options.weight_map,
        "base_features": options.base_features,
        "depth": options.depth,
        "parameters": int(model.num_parameters()),
        "lr": options.lr,
        "batch_size": options.batch_size,
        "w0": options.w0,
        "sigma": options.sigma,
        "train_minutes": preset["train_minutes"],
        "patch_input": list(ckpt.get("patch_size") or []),
        "patch_label": list(label_size or []),
        "epochs": result.epochs_completed,
        "stop_reason": result.stop_reason,
        "images_per_s": float(np.median([r.get("images_per_s", np.nan) for r in result.history]))
        if result.history
        else float("nan"),
        "best_epoch": best.get("epoch"),
        "best_val_dice": best.get("value", float("nan")),
        "tile_in": plan["in_tile"],
        "tile_out": plan["out_tile"],
        "tiles": plan["tiles"],
        "weight_map_stats": wm_stats,
        "run_dir": str(result.run_dir),
        "separation": tuned,
        "checkpoint": choice["name"],
        "checkpoint_epoch": choice["epoch"],
        "candidates": choice["candidates"],
    }
    timings["report"] = time.monotonic() - t0
    timings["total"] = time.monotonic() - t_start
    demo = DemoResult(report, metrics, timings, result.run_dir, data, info)
    write_report(report, demo, components)
    timings["total"] = time.monotonic() - t_start
    say(summary_text(demo), flush=True)
    return demo


def summary_text(result: DemoResult) -> str:
    """The short summary printed at the end."""
    m, t, i, st = result.metrics, result.timings, result.info, result.data.stats
    mins, secs = divmod(int(round(t["total"])), 60)
    return "\n".join(
        [
            f"unetkit demo: done in {mins} min {secs:02d} s "
            f"({'with' if i['weight_map'] else 'WITHOUT'} the border weight map)",
            f"  data     {st['large']['cells']} cells in the large image, {100 * st['touching_fraction']:.1f} % "
            "of cells touch another",
            f"  training {i['epochs']} epochs in {t['train']:.0f} s ({i['images_per_s']:.1f} patches/s); using "
            f"{i['checkpoint']} (epoch {i['checkpoint_epoch']}); {i['parameters']:,} parameters",
            f"  predict  {i['tiles']} overlap tiles {_size(i['tile_in'])} → {_size(i['tile_out'])} px in "
            f"{t['predict']:.1f} s",
            f"  objects  F1@0.5 {m['obj_f1']:.3f}  AP@0.5 {m['ap50']:.3f}  AP@0.5:0.95 {m['map']:.3f}  "
            f"({m['n_pred']:.0f} predicted / {m['n_true']:.0f} true, {m['merged']} merged)",
            f"  pixels   Dice {m['dice']:.4f}  pixel error {m['pixel_error']:.4f}  Rand error {m['rand_error']:.4f}",
            f"  report   {result.report_dir / 'README.md'}",
        ]
    )


__all__ = [
    "DemoOptions",
    "DemoResult",
    "PRESETS",
    "BudgetSchedule",
    "build_config",
    "evaluate",
    "generate_data",
    "choose_checkpoint",
    "merge_split_counts",
    "metrics_table",
    "overlap_tile_predictor",
    "overlap_tile_size",
    "predict_large",
    "prepare_out_dir",
    "run_demo",
    "separate",
    "summary_text",
    "train",
    "tune_separation",
    "write_overlays",
    "write_report",
    "write_weight_map_figure",
]

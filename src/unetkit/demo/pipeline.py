"""The main job end to end, as the U-Net paper did it: ``unetkit demo`` / ``make demo``.

This module is orchestration only; every step calls the library:

    generate_data()      seeded synthetic microscopy of touching cells (train, val, one large image)
    build_config()       the original valid-padding U-Net, narrow; elastic augmentation; the paper's
                         weighted cross-entropy with the border weight map (w0 10, σ 5)
    train()              Trainer.fit() within a time budget; the poly learning-rate schedule runs on
                         the clock (scheduler: budget, i.e. BudgetSchedule)
    choose_checkpoint()  best.pt (validation Dice) or last.pt, and the watershed settings
                         (evaluation.instances.tune_separation), by the mean AP on the validation images
    predict_mosaic()     Predictor.from_checkpoint(...): overlap-tile over the large image
    instances            inference.postprocess.instances_from_probabilities: seeded watershed on the
                         predicted background/border probability
    metrics              evaluation.instances.instance_scores: pixel metrics (Dice, pixel error), Rand
                         error, object metrics (F1 at IoU 0.5, AP 0.5:0.95), merged / split cells
    write_demo_report()  report/: curves, overlays and weight map (evaluation.report), metrics
                         table, README

:func:`run_demo` runs them in order and returns a :class:`DemoResult`; every step is a plain
function a notebook can call on its own.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np

from ..errors import ConfigError, DataError
from .report import summary_text, write_demo_report
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
                "postprocess": "none",  # the demo separates cells itself (tune_separation)
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
    return int(model.size_rule().input_for_output(out_tile)[0])


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


def predict_mosaic(predictor, image: np.ndarray) -> tuple[np.ndarray, dict]:
    """Class probabilities of a large image by overlap-tile: a mosaic of abutting output tiles.

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
    return probs, {
        "in_tile": list(plan.in_tile),
        "out_tile": list(plan.out_tile),
        "tiles": len(plan.grid().tiles),
        "seconds": seconds,
    }


def validation_cases(predictor, val_dir: PathLike) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(probs, truth)`` of every validation image (:func:`predict_mosaic`), for
    :func:`~unetkit.evaluation.instances.tune_separation`.

    Args:
        predictor: from :func:`overlap_tile_predictor`.
        val_dir: a folder with ``images/`` and ``masks/`` (instance masks).

    Raises:
        DataError: no validation images.
    """
    from ..io import read_image

    val_dir = Path(val_dir)
    images = sorted((val_dir / "images").iterdir()) if (val_dir / "images").is_dir() else []
    cases = []
    for path in images:
        image, _ = read_image(path)
        truth = read_image(val_dir / "masks" / path.name)[0][0].astype(np.int64)
        cases.append((predict_mosaic(predictor, image)[0], truth))
    if not cases:
        raise DataError(
            "no validation images to tune the instance separation on", val_dir / "images"
        )
    return cases


def choose_checkpoint(
    run_dir: PathLike, val_dir: PathLike, out_tile: int = 388, threads: Optional[int] = None
) -> dict:
    """The checkpoint and the instance separation settings with the best mean AP (IoU 0.5:0.95) on
    the validation images.

    The candidates are ``best.pt`` (highest validation Dice: a pixel score, which the border-weighted
    loss trades for thin gaps) and ``last.pt`` (the end of the schedule); each gets its own
    :func:`~unetkit.evaluation.instances.tune_separation` on :func:`validation_cases`. On a tie
    ``last.pt`` wins.

    Returns:
        ``{"name", "path", "epoch", "separation", "candidates": {name: {"epoch", "val_map"}}}``.
    """
    from ..checkpoint import load_checkpoint
    from ..evaluation.instances import tune_separation

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
        predictor = overlap_tile_predictor(path, out_tile, threads)
        tuned = tune_separation(validation_cases(predictor, val_dir))
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


# ------------------------------------------------------------------------------------------ main
def export_demo_package(checkpoint, path: Path, image: np.ndarray) -> dict:
    """The demo model as a bioimage.io package (Fiji/deepImageJ, ilastik, QuPath), checked by
    bioimageio.core's own test; without the ``bioimageio`` extra the demo goes on and says why."""
    from ..errors import ConfigError
    from ..inference.bioimageio import export_bioimageio
    from ..inference.export import ExportCheckError

    try:
        rep = export_bioimageio(
            checkpoint,
            path,
            authors=["unetkit demo"],
            name="unetkit demo - touching synthetic cells",
            sample=image,
        )
    except (ConfigError, ExportCheckError) as exc:
        return {"path": None, "status": "not written", "line": f"not written: {exc}"}
    details = getattr(rep.test_summary, "details", None) or []
    line = (
        f"{rep.path.name}, {rep.file_size / 2**20:.1f} MB, TorchScript + ONNX; bioimageio.core "
        f"test_model: {rep.test_status} ({len(details)} checks)"
    )
    return {"path": str(rep.path), "status": rep.test_status, "checks": len(details), "line": line}


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
    from ..evaluation.instances import instance_scores
    from ..evaluation.report import write_instance_overlays, write_weight_map_figure
    from ..inference.postprocess import connected_components, instances_from_probabilities
    from ..io import read_image

    options = options or DemoOptions()
    say = log or (lambda *a, **k: None)
    preset = options.preset()
    t_start = time.monotonic()
    timings: dict[str, float] = {}
    out = prepare_out_dir(options.out_dir)
    report = out / "report"
    report.mkdir(parents=True)

    say(f"[1/6] synthetic data → {out / 'data'}", flush=True)
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
        f"[2/6] training unet-original ({'with' if options.weight_map else 'without'} the border weight map, "
        f"{preset['train_minutes']:g} min budget) → {out / 'run'}",
        flush=True,
    )
    config = build_config(data, options)
    t0 = time.monotonic()
    result = train(config, out / "run", options)
    timings["train"] = time.monotonic() - t0

    say("[3/6] checkpoint and watershed settings chosen on the validation images", flush=True)
    t0 = time.monotonic()
    choice = choose_checkpoint(result.run_dir, data.val_dir, options.out_tile, options.threads)
    tuned = choice["separation"]
    ckpt = load_checkpoint(choice["path"])
    model = build_model(ckpt)
    timings["select"] = time.monotonic() - t0

    say(
        f"[4/6] overlap-tile prediction of the large image ({st['large']['shape'][0]}×{st['large']['shape'][1]}), "
        f"instances, evaluation",
        flush=True,
    )
    image, _ = read_image(data.large_image)
    truth = read_image(data.large_mask)[0][0].astype(np.int64)
    t0 = time.monotonic()
    predictor = overlap_tile_predictor(choice["path"], options.out_tile, options.threads)
    probs, plan = predict_mosaic(predictor, image)
    timings["predict"] = time.monotonic() - t0
    t0 = time.monotonic()
    pred = instances_from_probabilities(probs, tuned["seed_threshold"], tuned["expand"])
    metrics = instance_scores(pred, truth)
    components = instance_scores(connected_components(probs[1] >= 0.5), truth)
    timings["evaluate"] = time.monotonic() - t0

    say(
        f"[5/6] bioimage.io package of {choice['name']} → {out / 'model.bioimageio.zip'}",
        flush=True,
    )
    t0 = time.monotonic()
    package = export_demo_package(choice["path"], out / "model.bioimageio.zip", image)
    timings["package"] = time.monotonic() - t0
    say(f"      {package['line']}", flush=True)

    say(f"[6/6] report → {report}", flush=True)
    t0 = time.monotonic()
    if (result.run_dir / "curves.png").is_file():
        shutil.copyfile(result.run_dir / "curves.png", report / "curves.png")
    write_instance_overlays(report, image[0], truth, pred)
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
        "bioimageio": package,
    }
    timings["report"] = time.monotonic() - t0
    timings["total"] = time.monotonic() - t_start
    demo = DemoResult(report, metrics, timings, result.run_dir, data, info)
    write_demo_report(report, demo, components)
    timings["total"] = time.monotonic() - t_start
    say(summary_text(demo), flush=True)
    return demo


__all__ = [
    "DemoOptions",
    "DemoResult",
    "PRESETS",
    "BudgetSchedule",
    "build_config",
    "generate_data",
    "choose_checkpoint",
    "export_demo_package",
    "overlap_tile_predictor",
    "overlap_tile_size",
    "predict_mosaic",
    "prepare_out_dir",
    "run_demo",
    "summary_text",
    "train",
    "validation_cases",
    "write_demo_report",
]

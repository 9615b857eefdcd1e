"""The work the napari widgets run in a worker thread, without Qt: load a model, segment an image
with tile progress and a cancel, train from layers. The widgets only collect inputs, start these
and show what they return, so this is what the tests of the plugin's logic call.

Models and runs are built by the command-line code itself: a model path goes through ``unetkit
predict``'s :func:`~unetkit.commands.predict.build_predictor` (a checkpoint, a run folder, several
joined by commas, an exported ``.onnx``: whatever the CLI accepts), and a training run through
``unetkit train``'s :func:`~unetkit.commands.train.configure_new_run` (the plan from the data and
the time budget, ``--init-from`` fine-tuning, extra flags), so the widgets behave as the commands do.
"""

from __future__ import annotations

import shlex
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..commands.parsing import command_args
from ..errors import ConfigError, DataError
from .layers import TrainingPair, image_for_model, labels_dtype, where, write_training_folder

Report = Callable[[Any], None]


class Cancelled(Exception):
    """The user cancelled the job; what it had made is removed."""


# -- command lines -------------------------------------------------------------------------------


def split_flags(text: str) -> list[str]:
    """Extra command-line flags typed in a widget, split as a shell would."""
    try:
        return shlex.split(text or "")
    except ValueError as exc:
        raise ConfigError(f"extra flags {text!r}: {exc}") from None


# -- predict -------------------------------------------------------------------------------------
def load_predictor(model: Optional[str], tile: int = 0, tta: bool = False):
    """The predictor of ``unetkit predict MODEL [--tile N] [--tta]``: one model, or the mean of a
    ``--folds`` run's or of comma-joined checkpoints.

    Raises:
        DataError: no model chosen, or a file that is missing or not a model, naming it.
    """
    from ..commands.predict import build_predictor

    if model is None or not str(model).strip() or str(model) == ".":
        raise DataError("choose a checkpoint (.pt), a run folder or an exported .onnx", "model")
    flags = ["predict", str(model), "<viewer>", "--output", "<viewer>"]
    flags += ["--tile", str(int(tile))] if tile else []
    flags += ["--tta"] if tta else []
    return build_predictor(command_args(flags))


@dataclass
class Segmentation:
    """What Predict adds to the viewer.

    Attributes:
        labels: ``(*spatial)`` class indices (0 = background) after the checkpoint's
            post-processing, in the smallest unsigned type that holds them.
        probabilities: float32 probabilities of the classes 1 … K − 1 (the background's is one
            minus their sum): ``(*spatial)`` for a two-class model, ``(K − 1, *spatial)`` for
            more; ``None`` when not asked for.
        class_values: the mask value of each class in the training data (the label map), so a
            user can map indices back to their own values; ``None`` when the model has no map.
        class_names: a name per class (the label map's names, else ``class K``).
        objects: ``(*spatial)`` instance ids 1 … N of the labels' objects (0 = background), as
            ``unetkit predict --instances`` numbers them; ``None`` when not asked for.
    """

    labels: np.ndarray
    probabilities: Optional[np.ndarray]
    class_values: Optional[list]
    class_names: list
    objects: Optional[np.ndarray] = None


def segment(
    predictor,
    data: np.ndarray,
    rgb: bool,
    name: str,
    with_probabilities: bool = False,
    progress: Optional[Callable[[int, int], None]] = None,
    spacing: Optional[tuple] = None,
    unit: Optional[str] = None,
    objects: Optional[str] = None,
) -> Segmentation:
    """Segment one Image layer's pixels as ``unetkit predict`` does, in class indices.

    The labels are the argmax of the logits (:meth:`Predictor.predict`) with the checkpoint's
    post-processing applied (none for most short runs and for exports); an ensemble's are the
    argmax of its mean probabilities.

    Args:
        predictor: from :func:`load_predictor`.
        data, rgb, name: the layer's pixels, its ``rgb`` flag and its name (for messages).
        with_probabilities: also return the class probabilities.
        progress: ``(tiles done, tiles in all)`` after each batch of tiles; raising
            :class:`Cancelled` from it stops the prediction.
        spacing: the layer's voxel size (its ``scale``), for a model trained at a target spacing
            or far from the layer's voxel size; ``None``: the layer is taken to be on the model's
            grid.
        unit: the unit of ``spacing`` (``"um"``; the layer's ``units``), converted to the unit
            of the model's training files; ``None``: taken to be that unit.
        objects: also number the objects of the labels: ``components`` (connected objects of
            each class) or ``watershed`` (touching ones split too), as ``predict --instances``.

    Raises:
        DataError: the layer does not fit the model (dimensionality, channel count, NaN/inf
            values), naming the layer; the model turns volumes to an orientation, which a layer
            does not state.
    """
    import torch

    from ..data.reading import is_grey_as_colour
    from ..inference.batch import check_image
    from ..inference.ensemble import EnsemblePredictor
    from ..inference.predictor import labels_from_logits, probabilities, spacing_for_model

    if getattr(predictor, "orientation", None) or any(
        getattr(m, "orientation", None) for m in getattr(predictor, "members", ())
    ):
        raise DataError(
            "the model turns volumes to one orientation before predicting, and a napari layer "
            "does not state its own; predict the file with unetkit predict instead",
            where(name),
        )
    image = image_for_model(data, rgb, predictor.spatial_dims, name)
    in_ch = getattr(predictor.model, "in_channels", None)
    stack = predictor.spatial_dims == 2 and not rgb and np.ndim(data) == 3
    grey = in_ch == 1 and is_grey_as_colour(image)  # check_image reads those as grey
    if stack and image.shape[0] != in_ch and not grey:
        raise DataError(
            f"has shape {tuple(np.shape(data))}: a stack of {image.shape[0]} planes (or "
            f"channels), and the model is 2D and takes {in_ch} channel(s); predict one plane "
            "(Layers ▸ Split stack, or a 2D layer), or use a 3D model for a volume",
            where(name),
        )
    image = check_image(image, predictor, where(name))
    spacing = spacing_for_model(predictor, spacing, unit, where(name))
    if isinstance(predictor, EnsemblePredictor):  # the mean of its members' probabilities
        probs = predictor.predict_proba(image, progress=progress, spacing=spacing)
        indices = probs.argmax(axis=0)
        probs = probs if with_probabilities else None
    else:
        logits = torch.from_numpy(
            predictor.predict_logits(image, progress=progress, spacing=spacing)
        )
        indices = labels_from_logits(logits).numpy()
        probs = probabilities(logits).numpy() if with_probabilities else None
    if probs is not None:
        probs = probs[1] if probs.shape[0] == 2 else probs[1:]
    indices = predictor.postprocess.apply(indices, spacing)
    numbered = None
    if objects is not None:
        from ..inference.postprocess import INSTANCE_METHODS, instance_image, label_instances

        if objects not in INSTANCE_METHODS:
            raise ConfigError(
                f"objects must be one of {', '.join(INSTANCE_METHODS)}, got {objects!r}"
            )
        numbered = instance_image(label_instances(indices, objects))[0]
    label_map = predictor.label_map
    classes = label_map.num_classes if label_map is not None else int(indices.max()) + 1
    names = list(getattr(label_map, "names", None) or [f"class {k}" for k in range(classes)])
    values = [v if isinstance(v, int) else list(v) for v in label_map.values] if label_map else None
    return Segmentation(indices.astype(labels_dtype(classes)), probs, values, names, numbered)


# -- train ---------------------------------------------------------------------------------------
@dataclass
class TrainProgress:
    """Where a training run is: one report per batch, and one per epoch with its scores.
    ``epochs`` is 0 when the run's length is set by its time budget alone (``train.scheduler:
    budget``, what a plan chooses), where the configured epochs are only an upper bound."""

    stage: str
    epoch: int = 0
    epochs: int = 0
    batch: int = 0
    batches: int = 0
    loss: float = float("nan")
    elapsed_s: float = 0.0
    budget_s: Optional[float] = None
    scores: dict = field(default_factory=dict)

    def fraction(self) -> float:
        """Done so far, 0 … 1: the larger of the epochs' and the time budget's share (a run with
        both ends with whichever comes first)."""
        if self.stage != "training":
            return 0.0
        by_epochs = 0.0
        if self.epochs:
            by_epochs = (self.epoch - 1 + self.batch / max(self.batches, 1)) / self.epochs
        by_time = self.elapsed_s / self.budget_s if self.budget_s else 0.0
        return float(min(max(by_epochs, by_time), 1.0))

    def describe(self) -> str:
        """One line for the widget: ``epoch 2/10 · batch 5/20 · loss 0.4123 · 42 of 120 s``."""
        if self.stage != "training":
            return self.stage
        line = f"epoch {self.epoch}{f'/{self.epochs}' if self.epochs else ''}"
        line += f" · batch {self.batch}/{self.batches} · loss {self.loss:.4f}"
        dice = self.scores.get("val_dice")
        if dice is not None and np.isfinite(dice):
            line += f" · val dice {dice:.3f}"
        if self.budget_s:
            line += f" · {self.elapsed_s:.0f} of {self.budget_s:.0f} s"
        return line


@dataclass
class TrainOutcome:
    """A finished run: its folder, the checkpoint to predict with (``best.pt``, else
    ``last.pt``), why it stopped, the epochs done, the best validation record and what the run
    told the probe's cache (a line, or ``None``)."""

    run_dir: Path
    checkpoint: Path
    stop_reason: str
    epochs: int
    best: Optional[dict]
    probe_note: Optional[str] = None

    def describe(self) -> str:
        best = self.best
        score = (
            f"; best {best['metric']} {best['value']:.3f} at epoch {best['epoch']}" if best else ""
        )
        line = f"{self.stop_reason} after {self.epochs} epoch(s){score}: {self.checkpoint}"
        return f"{line}; {self.probe_note}" if self.probe_note else line


def _progress_callback(report: Report, stop: threading.Event):
    """A trainer callback that reports each batch and epoch and passes a stop request on."""
    from ..training.callbacks import Callback

    class Relay(Callback):
        def __init__(self):
            self.t0 = time.monotonic()
            self.last_scores: dict = {}
            self.batch = 0

        def state(self, trainer, batch: int, loss: float) -> TrainProgress:
            cfg = trainer.config.train
            budget = cfg.time_budget_minutes
            return TrainProgress(
                "training",
                trainer.epoch,
                0 if cfg.scheduler == "budget" else cfg.epochs,
                batch,
                cfg.iters_per_epoch,
                loss,
                time.monotonic() - self.t0,
                budget * 60 if budget else None,
                self.last_scores,
            )

        def on_train_start(self, trainer):
            self.t0 = time.monotonic()

        def on_batch_end(self, trainer, batch, loss):
            self.batch = batch
            report(self.state(trainer, batch, loss))
            if stop.is_set():
                trainer.request_stop("stopped by the user")

        def on_epoch_end(self, trainer, history):
            row = history[-1]
            self.last_scores = {k: v for k, v in row.items() if k.startswith("val_")}
            report(self.state(trainer, self.batch, row["train_loss"]))

    return Relay()


#: ``unetkit train`` flags the widget sets itself: a new run folder under its output folder
WIDGET_FLAGS = ("--resume", "--run-dir", "--output")


def new_run_dir(output_dir: Path) -> Path:
    """A fresh run folder ``OUTPUT/napari-YYYYmmdd-HHMMSS`` (``-2``, ``-3`` … if taken)."""
    base = Path(output_dir) / f"napari-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir, n = base, 1
    while run_dir.exists():
        n += 1
        run_dir = base.with_name(f"{base.name}-{n}")
    return run_dir


#: ``mask_kind`` of Labels layers painted in part: each class in strokes (background too), the
#: pixels left at 0 unlabelled (napari's unpainted value), as ilastik's pixel classification
PARTIAL = "partial"


def train_from_layers(
    pairs: Sequence[TrainingPair],
    output_dir: Path,
    budget_minutes: float,
    init_from: Optional[str] = None,
    extra_flags: str = "",
    report: Optional[Report] = None,
    stop: Optional[threading.Event] = None,
    mask_kind: str = "auto",
) -> TrainOutcome:
    """Train one model on cases taken from the viewer: ``unetkit train RUN/data --time-budget B
    [--init-from C] [--mask-kind K] EXTRA`` into a new run folder under ``output_dir``.
    ``mask_kind``: what the Labels layers hold (``unetkit train --mask-kind``): ``auto``,
    ``labels`` (a value per class), :data:`PARTIAL` (classes painted in strokes, 0 left
    unlabelled: ``--mask-kind labels --ignore-value 0``) or ``instances`` (a value per object).

    The cases are written to ``RUN/data/{images,masks}`` (:func:`~.layers.write_training_folder`),
    the layout unetkit reads: the simplest correct way to reuse the planner, the readers and the
    trainer unchanged, and the run folder alone then reproduces the run. With one case the image
    is also the validation image (a hold-out needs two), so ``best.pt`` is chosen on the training
    image; with more, unetkit's seeded hold-out applies. ``stop`` ends the run after the current
    batch and keeps the model trained so far (:meth:`Trainer.request_stop`); set before training
    starts, it cancels (:class:`Cancelled`). A run that fails or is cancelled before its first
    checkpoint leaves no folder behind.

    Raises:
        ConfigError, DataError, OutputError: bad flags, layers or output folder, in one line.
        Cancelled: stopped before training began.
    """
    from ..commands.train import configure_new_run
    from ..planning.feedback import check_the_probe
    from ..training import Trainer
    from ..utils import check_output_dir

    report = report or (lambda _: None)
    stop = stop or threading.Event()
    if not budget_minutes or budget_minutes <= 0:
        raise ConfigError(f"the time budget must be > 0 minutes, got {budget_minutes}")
    check_output_dir(output_dir)
    run_dir = new_run_dir(output_dir)
    data = run_dir / "data"
    argv = ["train", str(data), "--run-dir", str(run_dir), "--time-budget", f"{budget_minutes:g}"]
    argv += ["--folds", "1", "--no-progress"] + (["--val", str(data)] if len(pairs) == 1 else [])
    argv += ["--init-from", str(init_from)] if init_from else []
    if mask_kind == PARTIAL:  # strokes of each class; unpainted pixels are no class
        argv += ["--mask-kind", "labels", "--ignore-value", "0"]
    elif mask_kind and mask_kind != "auto":
        argv += ["--mask-kind", mask_kind]
    extra = split_flags(extra_flags)
    taken = sorted({a.split("=")[0] for a in extra} & set(WIDGET_FLAGS))
    if taken:
        raise ConfigError(
            f"extra flags: {taken[0]} is the widget's to set (it trains a new run in the output "
            "folder); drop it"
        )
    args = command_args(argv + extra)
    try:
        report(TrainProgress("writing the layers"))
        write_training_folder(pairs, data)
        report(TrainProgress("planning (data fingerprint and a short speed probe)"))
        config, plan = configure_new_run(args, configure=lambda config: None)
        if config.train.folds > 1:
            raise ConfigError("the widget trains one model: drop --folds (or set --folds 1)")
        if stop.is_set():
            raise Cancelled("cancelled before training began")
        trainer = Trainer(
            config,
            run_dir=run_dir,
            progress=False,
            callbacks=[_progress_callback(report, stop)],
            plan=plan.to_dict() if plan is not None else None,
        )
        result = trainer.fit()
    except BaseException:
        if not any((run_dir / "checkpoints").glob("*.pt")):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    best = run_dir / "checkpoints" / "best.pt"
    checkpoint = best if best.is_file() else run_dir / "checkpoints" / "last.pt"
    return TrainOutcome(
        run_dir,
        checkpoint,
        result.stop_reason,
        result.epochs_completed,
        result.best,
        check_the_probe(trainer),  # a cached timing this run beat by far is forgotten
    )


__all__ = [
    "PARTIAL",
    "Cancelled",
    "Segmentation",
    "TrainOutcome",
    "TrainProgress",
    "command_args",
    "load_predictor",
    "new_run_dir",
    "segment",
    "split_flags",
    "train_from_layers",
]

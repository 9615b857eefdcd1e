"""The **Train / fine-tune** widget: a short training run on Image + Labels layers.

The chosen layers are paired by name (``cells labels`` goes with ``cells``), else by shape, else
in the order the widget lists them, and the status line names the pairs (one Labels layer per
Image layer, same height and width; pixels left at 0 are background, or unlabelled with "labels are:
classes painted in part"), written to ``RUN/data/`` and
trained on with ``unetkit train``'s own plan for the time budget, optionally starting from a
checkpoint (``--init-from``: fine-tuning). Training runs in a worker thread; the widget shows epoch, batch and
loss. **Stop** ends the run after the current batch and keeps the model trained so far. When the
run ends, its ``best.pt`` is loaded into the Predict widget (opened if needed). See
:func:`~unetkit.napari.jobs.train_from_layers` for the run folder and the validation image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import napari
import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    Select,
)
from napari.layers import Image, Labels

from ..errors import UnetkitError
from . import jobs
from .layers import (
    check_label_axes,
    check_painted_classes,
    layer_array,
    layer_spacing,
    numbered_objects_hint,
    pair_layers,
    pairing_line,
    placement_warning,
    training_pair,
)
from .tasks import BackgroundTask, Outcome, one_line, tell

DEFAULT_BUDGET_MINUTES = 2.0
#: the shortest budget offered: the trainer keeps some seconds of any budget for saving and choosing
#: the post-processing (training.trainer.end_reserve_fixed_s), so shorter runs would train for a few
MIN_BUDGET_MINUTES = 0.5
#: what the Labels layers hold (``unetkit train --mask-kind``), as (shown, value)
MASK_KIND_CHOICES = [
    ("found from the data", "auto"),
    ("classes (a value per class)", "labels"),
    ("classes painted in part (0 = not painted)", jobs.PARTIAL),
    ("objects (a value per object)", "instances"),
]
DEFAULT_OUTPUT = Path.home() / "unetkit-runs"
PROGRESS_STEPS = 1000


class TrainWidget(Container):
    """Image + Labels layers → a run folder and a model for Predict (module docstring).

    Args:
        napari_viewer: the viewer (napari passes it when it docks the widget).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.images = Select(label="images", choices=self._layers_of(Image))
        self.labels = Select(label="labels", choices=self._layers_of(Labels))
        self.budget = FloatSpinBox(
            label="time budget (min)",
            value=DEFAULT_BUDGET_MINUTES,
            min=MIN_BUDGET_MINUTES,
            max=24 * 60,
            step=0.5,
            tooltip="planning, training and validation together stop within this time",
        )
        self.mask_kind = ComboBox(
            label="labels are",
            choices=MASK_KIND_CHOICES,
            value="auto",
            tooltip=(
                "classes: each value a class (1 = nucleus, 2 = membrane …); classes painted in "
                "part: strokes of each class, background included (1 = background, 2 = nucleus "
                "…), pixels left at 0 unlabelled and learnt from nothing; objects: each value "
                "one object (napari's 'new label' per cell), trained as one foreground class "
                "with the gaps between touching objects; found from the data: objects where each "
                "value is one region and there are over 32 of them, or several layers number "
                "their objects 1 … n with n varying; else classes"
            ),
        )
        self.init_from = FileEdit(
            label="start from",
            mode="r",
            filter="unetkit checkpoints (*.pt);;all files (*)",
            nullable=True,
            tooltip="optional: fine-tune this checkpoint instead of training from scratch",
        )
        self.output = FileEdit(label="output folder", mode="d", value=DEFAULT_OUTPUT)
        self.extra_flags = LineEdit(
            label="extra flags",
            tooltip="more 'unetkit train' flags, e.g. --epochs 20 --model unet-residual",
        )
        self.train_button = PushButton(text="Train")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.progress = ProgressBar(label="progress", min=0, max=PROGRESS_STEPS, value=0)
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        self.extend(
            [
                self.images,
                self.labels,
                self.budget,
                self.mask_kind,
                self.init_from,
                self.output,
                self.extra_flags,
                Container(widgets=[self.train_button, self.stop_button], layout="horizontal"),
                self.progress,
                self.status,
            ]
        )
        self.train_button.changed.connect(self.run)
        self.stop_button.changed.connect(self.stop)
        self.task = BackgroundTask(self._show_progress, self._finish, owner=self.native)
        #: the last finished run (for scripts and tests)
        self.outcome: Optional[jobs.TrainOutcome] = None

    def _layers_of(self, kind: type):
        def choices(_widget) -> list:
            return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, kind)]

        return choices

    # -- actions -----------------------------------------------------------------------------
    def run(self) -> None:
        """Train on the chosen layers in a worker thread."""
        if self.task.busy:
            return
        try:
            layers = pair_layers(self.images.value, self.labels.value)
            pairs, warnings = [], []
            for image, labels in layers:
                painted = np.array(layer_array(labels))  # copies: painting goes on while it trains
                check_label_axes(image, painted, labels.name)
                warnings.extend(filter(None, [placement_warning(image, labels)]))
                pairs.append(
                    training_pair(
                        np.array(layer_array(image)),
                        bool(image.rgb),
                        painted,
                        image.name,
                        labels.name,
                        *layer_spacing(image, painted.ndim),
                        class_values=(labels.metadata.get("unetkit") or {}).get("class_values"),
                        partial=str(self.mask_kind.value) == jobs.PARTIAL,
                    )
                )
            if str(self.mask_kind.value) == jobs.PARTIAL:
                check_painted_classes(pairs, [labels.name for _, labels in layers])
        except UnetkitError as exc:
            self._say(one_line(exc), error=True)
            return
        output = Path(self.output.value or DEFAULT_OUTPUT).expanduser()
        init_from = self.init_from.value
        init_from = str(init_from) if init_from is not None and str(init_from) != "." else None
        budget, extra = float(self.budget.value), str(self.extra_flags.value or "")
        mask_kind = str(self.mask_kind.value)

        def job(report, cancelled):
            return jobs.train_from_layers(
                pairs, output, budget, init_from, extra, report, cancelled, mask_kind
            )

        from napari.utils.notifications import show_warning

        for warning in [*warnings, numbered_objects_hint(pairs, mask_kind)]:
            if warning:
                show_warning(warning)
        self.progress.value = 0
        self._busy(True)
        self._say(
            f"training on {len(pairs)} image(s) ({pairing_line(layers)}) for at most {budget:g} "
            "min …"
        )
        self.task.start(job)

    def stop(self) -> None:
        """End the run after the current batch, keeping the model trained so far."""
        if self.task.busy:
            self.task.cancel()
            self._say("stopping after this batch …")

    @property
    def busy(self) -> bool:
        return self.task.busy

    # -- main thread ---------------------------------------------------------------------------
    def _show_progress(self, state: jobs.TrainProgress) -> None:
        self.progress.value = int(round(state.fraction() * PROGRESS_STEPS))
        if not self.task.cancelled.is_set():
            self.status.value = state.describe()

    def _finish(self, outcome: Outcome) -> None:
        self._busy(False)
        if outcome.error or outcome.cancelled:
            self._say(outcome.error or outcome.cancelled, error=bool(outcome.error))
            return
        self.outcome = result = outcome.result
        self.progress.value = PROGRESS_STEPS
        predict = self._predict_widget()
        if predict is not None:
            predict.model.value = result.checkpoint
        where = "loaded into Predict" if predict is not None else "open it in Predict"
        self._say(f"{result.describe()} ({where})")

    def _predict_widget(self):
        """The viewer's Predict widget: one already docked, else the plugin's (docked now), else
        ``None`` when the plugin is not registered with napari."""
        from .predict_widget import PredictWidget

        window = self.viewer.window
        for widget in getattr(window, "dock_widgets", {}).values():
            if isinstance(widget, PredictWidget):
                return widget
        try:
            return window.add_plugin_dock_widget("unetkit", "Predict")[1]
        except (KeyError, ValueError, LookupError):
            return None

    def _busy(self, busy: bool) -> None:
        self.train_button.enabled = not busy
        self.stop_button.enabled = busy

    def _say(self, message: str, error: bool = False) -> None:
        tell(self.status, message, error)


__all__ = ["TrainWidget"]

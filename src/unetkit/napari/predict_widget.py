"""The **Predict** widget: segment an Image layer with a unetkit model in a worker thread.

It adds a Labels layer ``<image> labels`` holding **class indices** (0 = background, shown
transparent; 1, 2 … the classes in the order of the model's label map) placed with the image's
scale and translation, and optionally an Image layer ``<image> probabilities``: the foreground
probability of a two-class model, or a stack ``(K − 1, *spatial)`` of the classes 1 … K − 1 (one
plane per class, chosen with the viewer's slider). Indices rather than the training masks' own values (0/255 …) because napari
colours and paints labels by index: the layer can be corrected with the brush and given to the Train
widget as it is. The label map's values are kept in the layer's ``metadata["unetkit"]``.
A new run never overwrites an earlier layer (napari numbers the new name).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
    create_widget,
)
from napari.layers import Image

from . import jobs
from .layers import image_for_model, layer_array, layer_spacing, placement
from .tasks import BackgroundTask, Outcome, tell

MODEL_FILTER = "unetkit models (*.pt *.onnx);;all files (*)"
#: the "objects" choices: none, or how ``unetkit predict --instances`` numbers them
OBJECT_CHOICES = [
    ("none", None),
    ("connected objects", "components"),
    ("split touching (watershed)", "watershed"),
]


class PredictWidget(Container):
    """Image layer + model file → ``<image> labels`` (module docstring).

    Args:
        napari_viewer: the viewer (napari passes it when it docks the widget).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.image = create_widget(annotation=Image, label="image")
        self.model = FileEdit(
            label="model",
            mode="r",
            filter=MODEL_FILTER,
            nullable=True,
            tooltip="a checkpoint (.pt), an exported .onnx, or a run folder (type or paste it)",
        )
        self.tile = SpinBox(
            label="tile",
            value=0,
            min=0,
            max=8192,
            step=32,
            tooltip="input tile size in pixels; 0 plans the tiles per image",
        )
        self.tta = CheckBox(text="test-time augmentation (flips, rotations)")
        self.with_probabilities = CheckBox(text="add probabilities")
        self.objects = ComboBox(
            label="objects",
            choices=OBJECT_CHOICES,
            value=None,
            tooltip="also add a Labels layer numbering each object (unetkit predict --instances)",
        )
        self.run_button = PushButton(text="Predict")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="tiles", min=0, max=1, value=0)
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        self.extend(
            [
                self.image,
                self.model,
                self.tile,
                self.tta,
                self.with_probabilities,
                self.objects,
                Container(widgets=[self.run_button, self.cancel_button], layout="horizontal"),
                self.progress,
                self.status,
            ]
        )
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.task = BackgroundTask(self._show_progress, self._finish, owner=self.native)
        self._cached: tuple[Optional[tuple], Any] = (None, None)
        self._target: Optional[dict] = None

    # -- actions -----------------------------------------------------------------------------
    def run(self) -> None:
        """Segment the chosen layer with the chosen model in a worker thread."""
        if self.task.busy:
            return
        layer = self.image.value
        if layer is None:
            self._say("choose an Image layer to segment", error=True)
            return
        data, rgb, name = layer_array(layer), bool(layer.rgb), layer.name
        self._target = {"name": name, "layer": layer}
        model, tile, tta = self.model.value, int(self.tile.value), bool(self.tta.value)
        with_probabilities = bool(self.with_probabilities.value)
        objects = self.objects.value

        def job(report, cancelled):
            predictor = self._predictor(model, tile, tta)

            def progress(done: int, total: int) -> None:
                report((done, total))
                if cancelled.is_set():
                    raise jobs.Cancelled("prediction cancelled")

            # the layer's axes first (a 2D layer for a 3D model: the refusal that says so), then
            # its scale as its voxel size (in its units) unless napari's default of 1 pixel
            # says nothing
            image_for_model(data, rgb, predictor.spatial_dims, name)
            spacing, unit = layer_spacing(layer, predictor.spatial_dims)
            seg = jobs.segment(
                predictor, data, rgb, name, with_probabilities, progress, spacing, unit, objects
            )
            return seg, predictor.spatial_dims, str(model)

        self.progress.value = 0
        self._busy(True)
        self._say(f"predicting {name!r} …")
        self.task.start(job)

    def cancel(self) -> None:
        """Stop the running prediction after its current batch of tiles."""
        if self.task.busy:
            self.task.cancel()
            self._say("cancelling …")

    @property
    def busy(self) -> bool:
        return self.task.busy

    # -- worker side ---------------------------------------------------------------------------
    def _predictor(self, model, tile: int, tta: bool):
        """The predictor for these settings, kept while they and the model file stay the same."""
        path = Path(str(model)) if model is not None else None
        stamp = path.stat().st_mtime_ns if path is not None and path.is_file() else None
        key = (str(model), tile, tta, stamp)
        if self._cached[0] != key:
            self._cached = (key, jobs.load_predictor(model, tile, tta))
        return self._cached[1]

    # -- main thread ---------------------------------------------------------------------------
    def _show_progress(self, value: tuple[int, int]) -> None:
        done, total = value
        self.progress.max = max(int(total), 1)
        self.progress.value = int(done)

    def _finish(self, outcome: Outcome) -> None:
        self._busy(False)
        target, self._target = self._target or {}, None
        if outcome.error or outcome.cancelled:
            self._say(outcome.error or outcome.cancelled, error=bool(outcome.error))
            return
        seg, dims, model = outcome.result
        layer = target["layer"]
        if layer not in self.viewer.layers:  # removed while it was predicted: nothing to lay over
            self._say(f"{target['name']!r} was removed from the viewer: its labels were not added")
            return
        where = placement(layer, dims)
        meta = {"model": model, "class_values": seg.class_values, "class_names": seg.class_names}
        labels = self.viewer.add_labels(
            seg.labels,
            name=f"{target['name']} labels",
            metadata={"unetkit": meta},
            **where.kwargs(),
        )
        if seg.probabilities is not None:
            stack = where if seg.probabilities.ndim == dims else where.with_leading_axis()
            self.viewer.add_image(
                seg.probabilities,
                name=f"{target['name']} probabilities",
                **stack.kwargs(),
                colormap="magma",
                contrast_limits=(0.0, 1.0),
                blending="additive",
                metadata={"unetkit": meta},
            )
        if seg.objects is not None:
            self.viewer.add_labels(  # ids, not classes: no class values to train them back to
                seg.objects,
                name=f"{target['name']} objects",
                metadata={"unetkit": {"model": model, "objects": True}},
                **where.kwargs(),
            )
        found = ", ".join(
            f"{n} {np.count_nonzero(seg.labels == k)} px"
            for k, n in enumerate(seg.class_names)
            if k > 0
        )
        if seg.objects is not None:
            found += f"; {int(seg.objects.max())} objects"
        self._say(f"added {labels.name!r}: {found}")

    def _busy(self, busy: bool) -> None:
        self.run_button.enabled = not busy
        self.cancel_button.enabled = busy

    def _say(self, message: str, error: bool = False) -> None:
        tell(self.status, message, error)


__all__ = ["PredictWidget"]

"""Drive the napari plugin in a real viewer (run under ``xvfb-run -a``; tests/test_napari_plugin.py
starts it in a subprocess so that Qt never enters the pytest process).

    python tests/napari_driver.py OUT_DIR

It registers the plugin's manifest with npe2 (unless the installed package already did), docks
both widgets the way the Plugins menu does (``add_plugin_dock_widget``), clicks their buttons and
waits for their worker threads with the Qt event loop. Every check is an ``assert`` with a message;
the screenshot goes to ``OUT_DIR/napari.png`` (and to ``$UNETKIT_SCREENSHOT_DIR`` when set).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

TIMEOUT_S = 120.0  # a generous bound for a hung worker; the checks never depend on timing


def tiny_checkpoint(path: Path) -> Path:
    """A small untrained U-Net with a 0/255 label map, as tests/test_predict.py makes one."""
    from unetkit import create_model
    from unetkit.checkpoint import save_checkpoint
    from unetkit.data import LabelMap, create_normalizer

    torch.manual_seed(0)
    model = create_model("unet", base_features=4, depth=2, norm="instance")
    return save_checkpoint(
        path,
        model,
        normalization=create_normalizer("zscore").to_dict(),
        label_map=LabelMap([0, 255]).to_dict(),
        patch_size=[32, 32],
    )


def tiny_volume_checkpoint(path: Path) -> Path:
    """A small untrained 3D U-Net (for a 2D layer: the refusal that names the model's 3D)."""
    from unetkit import create_model
    from unetkit.checkpoint import save_checkpoint
    from unetkit.data import LabelMap, create_normalizer

    torch.manual_seed(0)
    model = create_model("unet", spatial_dims=3, base_features=2, depth=2, norm="instance")
    return save_checkpoint(
        path,
        model,
        normalization=create_normalizer("zscore").to_dict(),
        label_map=LabelMap([0, 1]).to_dict(),
        patch_size=[16, 32, 32],
    )


def cells(shape=(96, 80), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Bright discs on a noisy background: a uint8 image and its 0/1 mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = np.zeros(shape, bool)
    for _ in range(6):
        cy, cx, r = rng.integers(10, shape[0] - 10), rng.integers(10, shape[1] - 10), 7
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    image = np.clip(mask * 120 + 60 + rng.normal(0, 15, shape), 0, 255).astype(np.uint8)
    return image, mask.astype(np.uint8)


def wait_until(done, what: str) -> None:
    """Run the Qt event loop until ``done()`` (worker outcomes arrive through it)."""
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + TIMEOUT_S
    while not done():
        QApplication.processEvents()
        assert time.monotonic() < deadline, f"{what}: no result within {TIMEOUT_S:g} s"
        time.sleep(0.01)
    QApplication.processEvents()


def register_plugin() -> None:
    """Make the manifest known to napari: from the installed entry point, else from the file."""
    from npe2 import PluginManager

    from unetkit.napari import MANIFEST

    pm = PluginManager.instance()
    pm.discover()
    if "unetkit" not in {m.name for m in pm.iter_manifests()}:
        pm.register(str(MANIFEST))


def last_error() -> str:
    from napari.utils.notifications import NotificationSeverity, notification_manager

    errors = [
        n.message for n in notification_manager.records if n.severity == NotificationSeverity.ERROR
    ]
    return errors[-1] if errors else ""


def main(out: Path) -> None:
    import napari

    from unetkit.inference.predictor import Predictor

    out.mkdir(parents=True, exist_ok=True)
    register_plugin()
    ckpt = tiny_checkpoint(out / "tiny.pt")
    image, mask = cells()
    viewer = napari.Viewer(show=False)
    layer = viewer.add_image(image, name="cells", scale=(0.5, 0.5), translate=(10.0, 20.0))
    _, predict = viewer.window.add_plugin_dock_widget("unetkit", "Predict")

    # 1. predict: labels equal Predictor.predict exactly, probabilities equal predict_proba
    predict.image.value = layer
    predict.model.value = ckpt
    predict.tile.value = 64  # several tiles: the bar counts them
    predict.with_probabilities.value = True
    predict.run_button.native.click()
    wait_until(lambda: not predict.busy, "predict")
    assert "cells labels" in viewer.layers, f"no labels layer; status: {predict.status.value}"
    labels = viewer.layers["cells labels"]
    reference = Predictor.from_checkpoint(ckpt, tile=64)
    expected = reference.predict(image[None])
    assert labels.data.shape == image.shape and np.array_equal(labels.data, expected), (
        "the Labels layer differs from Predictor.predict"
    )
    assert tuple(labels.scale) == (0.5, 0.5) and tuple(labels.translate) == (10.0, 20.0)
    assert labels.metadata["unetkit"]["class_values"] == [0, 255]
    probs = viewer.layers["cells probabilities"]  # two classes: the foreground's
    assert np.array_equal(probs.data, reference.predict_proba(image[None])[1])
    assert tuple(probs.scale) == (0.5, 0.5)
    assert "cells objects" not in viewer.layers  # not asked for
    tiles = len(reference.plan(image.shape).grid().tiles)
    assert tiles > 1 and predict.progress.max == tiles and predict.progress.value == tiles

    # 2. cancel: clicked before the worker reaches its first progress report, nothing is added
    n_layers = len(viewer.layers)
    predict.tile.value = 32  # another predictor to load: the cancel lands long before a tile
    predict.run_button.native.click()
    predict.cancel_button.native.click()
    wait_until(lambda: not predict.busy, "cancelled predict")
    assert len(viewer.layers) == n_layers, "a cancelled prediction added a layer"
    assert predict.status.value == "prediction cancelled", predict.status.value

    # 3. bad input: one line in the widget and as an error notification, no layer
    colour = np.random.default_rng(1).integers(0, 255, (*image.shape, 3), dtype=np.uint8)
    viewer.add_image(colour, rgb=True, name="colour")
    predict.image.value = viewer.layers["colour"]
    predict.run_button.native.click()
    wait_until(lambda: not predict.busy, "predict on a colour image")
    message = predict.status.value
    assert "colour labels" not in viewer.layers, "a layer was added for a refused image"
    assert "layer 'colour'" in message and "expects 1 channel(s), the image has 3" in message
    assert "\n" not in message and last_error() == message, (message, last_error())
    (out / "not_a_model.pt").write_text("hello")
    predict.image.value = layer
    predict.model.value = out / "not_a_model.pt"
    predict.run_button.native.click()
    wait_until(lambda: not predict.busy, "predict with a bad model file")
    assert "not_a_model.pt" in predict.status.value and "\n" not in predict.status.value
    assert last_error() == predict.status.value
    # an unexpected failure (a bug, memory): shown once, not also as napari's traceback dialog
    from napari.utils.notifications import NotificationSeverity, notification_manager

    from unetkit.napari import jobs

    def fails(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    real, jobs.segment = jobs.segment, fails
    before = len(notification_manager.records)
    predict.model.value = ckpt
    predict.run_button.native.click()
    wait_until(lambda: not predict.busy, "predict that fails")
    jobs.segment = real
    new = notification_manager.records[before:]
    errors = [n for n in new if n.severity == NotificationSeverity.ERROR]
    assert predict.status.value == "RuntimeError: boom", predict.status.value
    assert [n.message for n in errors] == ["RuntimeError: boom"], [n.message for n in new]
    # a 2D layer for a 3D model: the refusal that says so (was an IndexError from its scale)
    predict.model.value = tiny_volume_checkpoint(out / "tiny3d.pt")
    predict.run_button.native.click()
    wait_until(lambda: not predict.busy, "predict a 2D layer with a 3D model")
    message = predict.status.value
    assert "layer 'cells'" in message and "the model is 3D" in message, message
    assert "\n" not in message and last_error() == message
    predict.model.value = ckpt
    print("predict: ok", flush=True)

    # 4. train / fine-tune: a few steps from the tiny checkpoint; the model lands in Predict
    truth = viewer.add_labels(mask, name="cells truth", scale=(0.5, 0.5), translate=(10.0, 20.0))
    _, train = viewer.window.add_plugin_dock_widget("unetkit", "Train / fine-tune")
    train.reset_choices()
    train.images.value = [layer]
    train.labels.value = [truth]
    train.init_from.value = ckpt
    train.output.value = out / "runs"
    train.budget.value = 5
    train.extra_flags.value = (
        "--no-plan --epochs 2 --iters-per-epoch 2 --batch-size 2 --patch-size 32 --seed 3 "
        "--precision fp32 --set train.postprocess=none"
    )
    # labels of a z-stack over a 2D image: refused naming both layers
    stack = viewer.add_labels(np.zeros((3, *mask.shape), np.uint8), name="stack labels")
    train.reset_choices()
    train.labels.value = [stack]
    train.train_button.native.click()
    message = train.status.value
    assert not train.busy and "layer 'stack labels': has 3 axes" in message, message
    assert "its image 'cells' has 2" in message and last_error() == message
    viewer.layers.remove(stack)
    train.reset_choices()
    train.labels.value = [truth]
    train.train_button.native.click()
    assert "('cells' ↔ 'cells truth')" in train.status.value, train.status.value
    wait_until(lambda: not train.busy, "train")
    outcome = train.outcome
    assert outcome is not None, f"training failed: {train.status.value}"
    assert outcome.checkpoint.is_file() and outcome.epochs == 2, outcome
    assert (outcome.run_dir / "data" / "images").is_dir()
    assert Path(predict.model.value) == outcome.checkpoint, predict.model.value
    assert train.progress.value == train.progress.max
    print(f"train: ok ({train.status.value})", flush=True)

    # 5. the trained model, as loaded, predicts from the widget (a new layer: nothing overwritten),
    # with its objects numbered as predict --instances numbers them
    from scipy import ndimage

    predict.with_probabilities.value = False
    predict.objects.value = "components"
    predict.run_button.native.click()
    wait_until(lambda: not predict.busy, "predict with the trained model")
    after = Predictor.from_checkpoint(outcome.checkpoint, tile=32).predict(image[None])
    assert np.array_equal(viewer.layers["cells labels [1]"].data, after), (
        "the trained model's labels differ from Predictor.predict"
    )
    assert np.array_equal(viewer.layers["cells labels"].data, expected)
    objects = viewer.layers["cells objects"]
    _, count = ndimage.label(after == 1)
    assert objects.data.max() == count and np.array_equal(objects.data > 0, after == 1)
    assert tuple(objects.scale) == (0.5, 0.5) and f"; {count} objects" in predict.status.value

    # 6. a Train dock closed while it trains: the run stops after its batch (not after its
    # thousands of epochs), nothing is reported to the widgets that are gone
    dock, leaving = viewer.window.add_plugin_dock_widget("unetkit", "Train / fine-tune")
    leaving.reset_choices()
    leaving.images.value = [layer]
    leaving.labels.value = [truth]
    leaving.output.value = out / "closed"
    leaving.budget.value = 60
    leaving.extra_flags.value = (
        "--no-plan --epochs 100000 --iters-per-epoch 2 --batch-size 2 --patch-size 32 --seed 3 "
        "--precision fp32 --set train.postprocess=none"
    )
    leaving.train_button.native.click()
    task = leaving.task
    wait_until(lambda: any((out / "closed").rglob("last.pt")), "the first epoch of a long run")
    viewer.window.remove_dock_widget(dock)
    from qtpy.QtCore import QCoreApplication, QEvent

    # the dock is deleted later, as napari's own event loop would do it between two events
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    wait_until(lambda: task.worker is None, "a run whose dock was closed")
    assert task.closed and task.cancelled.is_set()
    (last,) = (out / "closed").rglob("last.pt")
    assert torch.load(last, weights_only=False)["epoch"] < 100000
    # the same widget docked again trains and reports as before
    viewer.window.add_dock_widget(leaving, name="Train again")
    leaving.extra_flags.value = train.extra_flags.value
    leaving.train_button.native.click()
    wait_until(lambda: not leaving.busy, "a re-docked widget's run")
    assert leaving.outcome is not None and leaving.outcome.epochs == 2, leaving.status.value
    print("closed dock: ok", flush=True)

    # 7. screenshot of the whole window: the new labels over the image, both widgets docked
    for name in ("colour", "cells probabilities", "cells truth", "cells labels", "cells objects"):
        viewer.layers[name].visible = False
    viewer.layers.selection.active = viewer.layers["cells labels [1]"]
    viewer.window.resize(1400, 900)
    viewer.reset_view()
    shot = out / "napari.png"
    viewer.screenshot(path=str(shot), canvas_only=False)
    if os.environ.get("UNETKIT_SCREENSHOT_DIR"):
        keep = Path(os.environ["UNETKIT_SCREENSHOT_DIR"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, keep / "napari_plugin.png")
    viewer.close()
    print("screenshot: ok", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))

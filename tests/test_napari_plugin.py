"""The napari plugin.

* In this process, without Qt: the layer rules (channel axis, pairing, the training folder unetkit
  reads back), the jobs the widgets run (segment = ``Predictor.predict``, cancel, train / stop /
  refuse) and the manifest (``npe2 validate --imports``).
* In a real viewer: ``tests/napari_driver.py`` run under ``xvfb-run -a`` in a subprocess (Qt never
  enters the pytest process), which docks both widgets from the manifest, clicks them and checks
  layers, notifications and a screenshot (kept in ``$UNETKIT_SCREENSHOT_DIR`` when set).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import unetkit
from unetkit import create_model
from unetkit.checkpoint import load_checkpoint, save_checkpoint
from unetkit.data import LabelMap, create_normalizer
from unetkit.data.discovery import find_cases
from unetkit.errors import ConfigError, DataError
from unetkit.inference.ensemble import EnsemblePredictor
from unetkit.inference.predictor import Predictor
from unetkit.io import read_image
from unetkit.napari import MANIFEST, jobs, layers

DRIVER = Path(__file__).with_name("napari_driver.py")
TINY_TRAIN = (
    "--no-plan --epochs 3 --iters-per-epoch 2 --batch-size 2 --patch-size 32 --seed 3 "
    "--precision fp32 --set train.postprocess=none"
)


def _missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _gui_missing() -> str:
    """Why a real viewer cannot run here ('' when it can)."""
    missing = _missing("napari", "magicgui", "npe2", "superqt")
    if missing:
        return f"{', '.join(missing)} not installed (pip install -e '.[dev]')"
    if not any(importlib.util.find_spec(q) for q in ("PyQt5", "PyQt6", "PySide2", "PySide6")):
        return "no Qt binding installed (pip install pyqt5)"
    if shutil.which("xvfb-run") is None:
        return (
            "xvfb-run not found (Debian/Ubuntu: apt-get install xvfb): a viewer needs an X display"
        )
    return ""


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    model = create_model("unet", base_features=4, depth=2, norm="instance")
    return save_checkpoint(
        tmp_path / "model.pt",
        model,
        normalization=create_normalizer("zscore").to_dict(),
        label_map=LabelMap([0, 255]).to_dict(),
        patch_size=[32, 32],
    )


def _cells(shape=(64, 48), seed=0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = np.zeros(shape, np.uint8)
    for _ in range(4):
        cy, cx = rng.integers(8, shape[0] - 8), rng.integers(8, shape[1] - 8)
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= 36] = 1
    image = np.clip(mask * 120 + 60 + rng.normal(0, 15, shape), 0, 255).astype(np.uint8)
    return image, mask


# -- layer data ------------------------------------------------------------------------------------
def test_image_layers_become_channel_first_arrays():
    grey = np.zeros((30, 40), np.uint8)
    assert layers.image_for_model(grey, False, 2, "g").shape == (1, 30, 40)
    assert layers.image_for_model(np.zeros((30, 40, 3)), True, 2, "c").shape == (3, 30, 40)
    assert layers.image_for_model(np.zeros((2, 30, 40)), False, 2, "s").shape == (2, 30, 40)
    assert layers.image_for_model(np.zeros((5, 30, 40)), False, 3, "v").shape == (1, 5, 30, 40)
    with pytest.raises(DataError, match=r"^layer 'flat': has shape \(30, 40\); the model is 3D"):
        layers.image_for_model(grey, False, 3, "flat")


def test_training_pairs_take_the_labels_shape_and_refuse_what_cannot_train():
    image, mask = _cells()
    assert layers.training_pair(image, False, mask, "a", "b").image.shape == (1, 64, 48)
    rgb = np.stack([image] * 3, axis=-1)
    assert layers.training_pair(rgb, True, mask, "a", "b").image.shape == (3, 64, 48)
    two = np.stack([image, image])
    assert layers.training_pair(two, False, mask, "a", "b").image.shape == (2, 64, 48)
    with pytest.raises(DataError, match=r"^layer 'a': has shape \(64, 40\) but its labels"):
        layers.training_pair(image[:, :40], False, mask, "a", "b")
    with pytest.raises(DataError, match=r"^layer 'b': holds only the value 0; paint the objects"):
        layers.training_pair(image, False, np.zeros_like(mask), "a", "b")
    with pytest.raises(DataError, match=r"^layer 'b': holds float32 values"):
        layers.training_pair(image, False, mask.astype(np.float32), "a", "b")


def test_layers_are_paired_by_name_else_in_order_one_labels_layer_per_image():
    class Layer:
        def __init__(self, name):
            self.name = name

    a, b, la = Layer("a"), Layer("b"), Layer("a labels")
    assert layers.pair_layers([a], [la]) == [(a, la)]
    # listed in the viewer's order, not the order painted: paired by name where names say it
    lb = Layer("b labels")
    assert layers.pair_layers([a, b], [lb, la]) == [(a, la), (b, lb)]
    assert layers.pairing_line([(a, la), (b, lb)]) == "'a' ↔ 'a labels', 'b' ↔ 'b labels'"
    img1, img10 = Layer("img1"), Layer("img10")
    l10, l1 = Layer("img10 labels"), Layer("img1_mask")
    assert layers.pair_layers([img1, img10], [l10, l1]) == [(img1, l1), (img10, l10)]
    # napari's own names ("Labels", "Labels [1]") say nothing: the order given
    n0, n1 = Layer("Labels"), Layer("Labels [1]")
    assert layers.pair_layers([a, b], [n0, n1]) == [(a, n0), (b, n1)]
    # one name says it: kept, and the rest follows (not the order, which would contradict it)
    named = Layer("a - Labels")
    assert layers.pair_layers([a, b], [n0, named]) == [(a, named), (b, n0)]
    with pytest.raises(DataError, match=r"2 Image layer\(s\) \('a', 'b'\) but 1 Labels layer"):
        layers.pair_layers([a, b], [la])
    with pytest.raises(DataError, match="choose at least one Image layer"):
        layers.pair_layers([], [])


def test_a_label_per_cell_found_from_the_data_gets_the_objects_hint():
    image, mask = _cells()
    ids = layers.training_pair(image, False, _numbered(mask), "a", "a labels")
    hint = layers.numbered_objects_hint([ids], "auto")
    n = int(_numbered(mask).max())  # the discs that do not overlap
    assert hint is not None and f"they train as {n} classes besides the background" in hint
    assert "choose 'labels are: objects (a value per object)'" in hint
    assert layers.numbered_objects_hint([ids], "instances") is None  # the user said so
    one = layers.training_pair(image, False, mask, "a", "a labels")  # one class: no doubt
    assert layers.numbered_objects_hint([one], "auto") is None
    # layers numbered 1 … n with n varying: the data's own reading takes them for objects already
    more = np.zeros_like(mask)
    for k in range(n + 2):
        more[2 + 6 * k : 5 + 6 * k, 2:5] = k + 1
    other = layers.training_pair(image, False, more, "b", "b labels")
    assert layers.numbered_objects_hint([ids, other], "auto") is None


def test_classes_painted_in_part_need_two_painted_classes_said_naming_the_layers():
    image, mask = _cells()
    with pytest.raises(DataError, match=r"^layer 'b': has nothing painted; with 'classes painted"):
        layers.training_pair(image, False, np.zeros_like(mask), "a", "b", partial=True)
    strokes = layers.training_pair(image, False, mask, "a", "b", partial=True)  # 1 only
    with pytest.raises(DataError, match=r"^layer 'b': only the value 1 is painted; .*background"):
        layers.check_painted_classes([strokes], ["b"])
    two = mask.copy()
    two[:2] = 2  # a background stroke (2 here) beside the cells' 1
    background = layers.training_pair(image, False, two, "a", "c", partial=True)
    layers.check_painted_classes([strokes, background], ["b", "c"])  # two classes together


def test_labels_shown_elsewhere_than_their_image_are_warned_of():
    class Layer:
        def __init__(self, name, data, scale, translate=(0.0, 0.0)):
            self.name, self.data, self.rgb = name, data, False
            self.scale, self.translate = np.array(scale), np.array(translate)

    image, mask = _cells()
    img = Layer("cells", image, (0.5, 0.5), (10.0, 20.0))
    assert layers.placement_warning(img, Layer("ok", mask, (0.5, 0.5), (10.0, 20.0))) is None
    line = layers.placement_warning(img, Layer("painted", mask, (1.0, 1.0)))
    assert line.startswith("layer 'painted' is shown at scale (1.0, 1.0), translate (0.0, 0.0)")
    assert "its image 'cells' at (0.5, 0.5), (10.0, 20.0): they train pixel for pixel" in line


def _numbered(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.label(mask)[0].astype(np.uint8)


def test_layers_of_different_shapes_are_paired_by_shape():
    class Layer:
        def __init__(self, name, shape, rgb=False):
            self.name, self.data, self.rgb = name, np.zeros(shape, np.uint8), rgb

    a, b = Layer("a", (40, 30)), Layer("b", (20, 50, 3), rgb=True)
    first, second = Layer("Labels", (20, 50)), Layer("Labels [1]", (40, 30))
    assert layers.pair_layers([a, b], [first, second]) == [(a, second), (b, first)]
    # a volume fits its own 3D labels exactly, before a plane's 2D labels of its last axes
    vol, plane = Layer("v", (5, 40, 30)), Layer("p", (40, 30))
    flat, deep = Layer("Labels", (40, 30)), Layer("Labels [1]", (5, 40, 30))
    assert layers.pair_layers([vol, plane], [flat, deep]) == [(vol, deep), (plane, flat)]
    with pytest.raises(DataError, match=r"layer 'Labels': has 3 axes \(2, 40, 30\) but its image"):
        layers.check_label_axes(a, np.zeros((2, 40, 30)), "Labels")
    layers.check_label_axes(b, np.zeros((20, 50)), "Labels")  # RGB: its colour axis is no axis


def test_the_training_folder_reads_back_as_written(tmp_path):
    image, mask = _cells()
    volume = np.random.default_rng(1).integers(0, 255, (6, 20, 24), dtype=np.uint16)
    pairs = [
        layers.training_pair(image, False, mask, "cells 1/2", "m"),
        layers.training_pair(np.stack([image, 255 - image]), False, mask * 3, "two", "m"),
    ]
    folder = layers.write_training_folder(pairs, tmp_path / "data")
    cases = find_cases(folder)
    assert [c.case_id for c in cases] == ["00_cells_1_2", "01_two"]
    for case, pair in zip(cases, pairs):
        np.testing.assert_array_equal(read_image(case.images[0])[0], pair.image)
        np.testing.assert_array_equal(read_image(case.mask)[0][0], pair.mask)
    vol = layers.training_pair(volume, False, (volume > 100).astype(np.uint8), "v", "m")
    case = find_cases(layers.write_training_folder([vol], tmp_path / "vol"))[0]
    assert read_image(case.images[0])[0].shape == (1, 6, 20, 24)
    assert read_image(case.mask)[0].shape == (1, 6, 20, 24)


@pytest.mark.skipif(bool(_missing("napari")), reason="napari not installed")
def test_results_are_placed_exactly_over_a_turned_or_sheared_image():
    """A result layer maps every pixel to the world point of the image pixel it was predicted
    from: scale, translation, rotation, shear and affine of the image's spatial axes (napari's
    own transforms compared, no Qt)."""
    from napari.layers import Image as ImageLayer
    from napari.layers import Labels as LabelsLayer

    shear = np.array([0.2, 0.1, 0.3])
    images = [
        (ImageLayer(np.zeros((40, 50)), rotate=30, shear=[0.2], translate=(3, 4)), 2),
        (ImageLayer(np.zeros((40, 50, 3)), rgb=True, rotate=-15, scale=(0.5, 0.25)), 2),
        (ImageLayer(np.zeros((3, 40, 50)), rotate=30, scale=(1, 2, 2)), 2),  # channel stack
        (ImageLayer(np.zeros((5, 40, 50)), rotate=(10, 20, 30), shear=shear, scale=(3, 1, 1)), 3),
    ]
    points = np.array([[0, 0, 0], [5, 5, 5], [7, 3, 1], [39, 2, 49]], float)
    for image, dims in images:
        where = layers.placement(image, dims)
        result = LabelsLayer(
            np.zeros((40, 50)[-dims:] if dims == 2 else (5, 40, 50), np.uint8), **where.kwargs()
        )
        lead = image.ndim - dims
        for p in points[:, -dims:]:
            expected = image.data_to_world(np.concatenate([np.zeros(lead), p]))[-dims:]
            np.testing.assert_allclose(result.data_to_world(p), expected, atol=1e-9)
        stacked = ImageLayer(
            np.zeros((2, *result.data.shape)), **where.with_leading_axis().kwargs()
        )
        for p in points[:, -dims:]:
            np.testing.assert_allclose(
                stacked.data_to_world(np.concatenate([[1.0], p]))[1:], result.data_to_world(p)
            )
    assert layers.placement(images[0][0], 2).rotate.shape == (2, 2)


def test_a_layers_scale_and_units_are_its_voxel_size(tmp_path):
    from types import SimpleNamespace

    def layer(scale, units):
        return SimpleNamespace(scale=scale, translate=(0.0,) * len(scale), units=units)

    assert layers.layer_spacing(layer((1.0, 1.0), ("pixel", "pixel")), 2) == (None, None)
    assert layers.layer_spacing(layer((0.5, 0.5), ("pixel", "pixel")), 2) == ((0.5, 0.5), None)
    stack = layer((2.0, 0.5, 0.5), ("micrometer",) * 3)
    assert layers.layer_spacing(stack, 3) == ((2.0, 0.5, 0.5), "um")
    assert layers.layer_spacing(layer((1.0, 1.0), ("millimeter",) * 2), 2) == ((1.0, 1.0), "mm")

    # a calibrated layer is written as a calibrated TIFF: the plan reads its voxel size
    volume = np.random.default_rng(1).integers(0, 255, (6, 20, 24), dtype=np.uint16)
    labels = (volume > 100).astype(np.int32)  # napari's default labels type
    pair = layers.training_pair(volume, False, labels, "v", "m", (2.0, 0.5, 0.5), "um")
    case = find_cases(layers.write_training_folder([pair], tmp_path / "vol"))[0]
    image, meta = read_image(case.images[0])
    assert case.images[0].suffix == ".tif" and image.shape == (1, 6, 20, 24)
    assert meta.spacing == pytest.approx((2.0, 0.5, 0.5)) and meta.spacing_unit == "um"
    mask, mask_meta = read_image(case.mask)
    np.testing.assert_array_equal(mask[0], labels)
    assert mask_meta.spacing == pytest.approx((2.0, 0.5, 0.5))


def test_segment_takes_the_layers_unit_and_refuses_a_wrong_one(checkpoint):
    """A layer calibrated in mm for a model of µm files is converted, not resampled 1000-fold;
    a scale far from the model's in the model's unit is refused in one line."""
    ckpt = load_checkpoint(checkpoint)
    from unetkit.checkpoint import build_model

    predictor = Predictor(
        build_model(ckpt, checkpoint),
        precision="fp32",
        tile=32,
        normalizer=create_normalizer("zscore"),
        trained_spacing=[0.5, 0.5],
        spacing_unit="um",
    )
    image, _ = _cells()
    as_stored = jobs.segment(predictor, image, False, "cells", spacing=(0.5, 0.5), unit="um")
    in_mm = jobs.segment(predictor, image, False, "cells", spacing=(5e-4, 5e-4), unit="mm")
    np.testing.assert_array_equal(in_mm.labels, as_stored.labels)
    np.testing.assert_array_equal(as_stored.labels, predictor.predict(image[None]))
    with pytest.raises(
        DataError, match=r"layer 'cells'.*1,000× coarser than the model's 0.5×0.5 um"
    ):
        jobs.segment(predictor, image, False, "cells", spacing=(500.0, 500.0))
    # twice the model's voxel size: resampled (a real difference, not a unit slip)
    twice = jobs.segment(predictor, image, False, "cells", spacing=(1.0, 1.0), unit="um")
    assert twice.labels.shape == image.shape


# -- the jobs the widgets run ----------------------------------------------------------------------
def test_segment_gives_predictors_labels_and_stops_when_cancelled(checkpoint):
    image, _ = _cells()
    predictor = jobs.load_predictor(str(checkpoint), tile=32)
    reference = Predictor.from_checkpoint(checkpoint, tile=32)
    seg = jobs.segment(predictor, image, False, "cells", with_probabilities=True)
    assert seg.labels.dtype == np.uint8
    np.testing.assert_array_equal(seg.labels, reference.predict(image[None]))
    np.testing.assert_array_equal(seg.probabilities, reference.predict_proba(image[None])[1])
    assert seg.class_values == [0, 255] and seg.class_names == ["class 0", "class 1"]
    grey_as_rgb = jobs.segment(predictor, np.stack([image] * 3, -1), True, "rgb")
    np.testing.assert_array_equal(grey_as_rgb.labels, seg.labels)  # read as grey, as on the CLI

    calls = []

    def cancel(done, total):
        calls.append(done)
        raise jobs.Cancelled("prediction cancelled")

    with pytest.raises(jobs.Cancelled):
        jobs.segment(predictor, image, False, "cells", progress=cancel)
    assert calls == [1]
    colour = np.random.default_rng(0).integers(0, 255, (64, 48, 3), dtype=np.uint8)
    with pytest.raises(DataError, match=r"^layer 'colour': the model expects 1 channel\(s\)"):
        jobs.segment(predictor, colour, True, "colour")
    stack = np.random.default_rng(0).integers(0, 255, (20, 64, 48), dtype=np.uint8)
    with pytest.raises(
        DataError, match=r"^layer 'z': has shape \(20, 64, 48\): a stack of 20 planes"
    ):
        jobs.segment(predictor, stack, False, "z")
    from scipy import ndimage

    numbered = jobs.segment(predictor, image, False, "cells", objects="components")
    np.testing.assert_array_equal(numbered.labels, seg.labels)
    assert numbered.objects.max() == ndimage.label(seg.labels > 0)[1]
    np.testing.assert_array_equal(numbered.objects > 0, seg.labels > 0)
    assert seg.objects is None
    with pytest.raises(ConfigError, match="objects must be one of components, watershed"):
        jobs.segment(predictor, image, False, "cells", objects="stardist")
    grey_stack = jobs.segment(predictor, np.stack([image] * 3), False, "grey planes")
    np.testing.assert_array_equal(grey_stack.labels, seg.labels)  # equal planes: grey, as RGB


def test_model_choices_go_through_the_predict_commands_own_loader(checkpoint, tmp_path):
    predictor = jobs.load_predictor(str(checkpoint), tile=64, tta=True)
    assert predictor.tile == [64, 64] and predictor.tta == "d4"
    other = tmp_path / "other.pt"
    save_checkpoint(
        other,
        create_model("unet", base_features=4, depth=2, norm="instance"),
        normalization=create_normalizer("zscore").to_dict(),
        label_map=LabelMap([0, 255]).to_dict(),
        patch_size=[32, 32],
    )
    ensemble = jobs.load_predictor(f"{checkpoint},{other}", tile=32)  # as unetkit predict a,b
    assert isinstance(ensemble, EnsemblePredictor) and len(ensemble.members) == 2
    image, _ = _cells()
    seen = []
    seg = jobs.segment(ensemble, image, False, "cells", progress=lambda d, t: seen.append(t))
    np.testing.assert_array_equal(seg.labels, ensemble.predict(image[None]))
    assert seen and set(seen) == {2 * len(ensemble.members[0].plan(image.shape).grid().tiles)}
    with pytest.raises(DataError, match="^model: choose a checkpoint"):
        jobs.load_predictor(None)
    with pytest.raises(DataError, match="nope.pt: checkpoint not found"):
        jobs.load_predictor(str(tmp_path / "nope.pt"))
    with pytest.raises(ConfigError, match="unrecognized arguments: --bogus"):
        jobs.command_args(["train", "x", "--bogus"])
    with pytest.raises(ConfigError, match="not available here"):
        jobs.command_args(["train", "--help"])


def test_training_from_layers_stop_and_refusals(checkpoint, tmp_path):
    image, mask = _cells()
    pairs = [layers.training_pair(image, False, mask, "cells", "truth")]
    out = tmp_path / "runs"

    # a stop before training begins cancels, and leaves no run folder
    stop = threading.Event()
    stop.set()
    with pytest.raises(jobs.Cancelled):
        jobs.train_from_layers(pairs, out, 1.0, str(checkpoint), TINY_TRAIN, stop=stop)
    assert list(out.iterdir()) == []

    # a stop during training ends the run after that batch and keeps the model trained so far
    stop, seen = threading.Event(), []

    def report(state: jobs.TrainProgress) -> None:
        seen.append(state)
        if state.stage == "training":
            stop.set()

    result = jobs.train_from_layers(pairs, out, 1.0, str(checkpoint), TINY_TRAIN, report, stop)
    assert result.stop_reason == "stopped by the user" and result.epochs == 1
    assert result.checkpoint == result.run_dir / "checkpoints" / "best.pt"
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt["config"]["train"]["init_from"] == str(checkpoint)
    assert ckpt["config"]["data"]["val_dir"] == str(result.run_dir / "data")  # one image
    assert Predictor.from_checkpoint(result.checkpoint).predict(image[None]).shape == image.shape
    assert [s.stage for s in seen[:2]] == ["writing the layers", seen[1].stage]
    assert seen[-1].describe().startswith("epoch 1/3 · batch 1/2 · loss ")  # --epochs: a count

    # flags the widget owns, and bad flags: one line, nothing written
    before = sorted(out.iterdir())
    with pytest.raises(ConfigError, match="--run-dir is the widget's to set"):
        jobs.train_from_layers(pairs, out, 1.0, extra_flags="--run-dir elsewhere")
    with pytest.raises(ConfigError, match="unrecognized arguments: --nope"):
        jobs.train_from_layers(pairs, out, 1.0, extra_flags="--nope")
    with pytest.raises(ConfigError, match="the time budget must be > 0 minutes"):
        jobs.train_from_layers(pairs, out, 0)
    assert sorted(out.iterdir()) == before


def test_objects_numbered_in_one_layer_train_as_objects_when_told(tmp_path):
    """One Labels layer with an id per object: 'labels are: objects' trains one foreground class
    (the data alone cannot say so: one layer, a fixed count); the predicted layer's class values
    turn a corrected layer back into the model's own mask values."""
    image, mask = _cells()
    from scipy import ndimage

    ids, n = ndimage.label(mask)
    assert n >= 2  # read as classes 0, 1 … n without being told
    pairs = [layers.training_pair(image, False, ids, "cells", "objects")]
    result = jobs.train_from_layers(
        pairs, tmp_path / "runs", 1.0, extra_flags=TINY_TRAIN, mask_kind="instances"
    )
    label_map = load_checkpoint(result.checkpoint)["label_map"]
    assert LabelMap.from_dict(label_map).num_classes == 2
    assert load_checkpoint(result.checkpoint)["config"]["data"]["mask_kind"] == "instances"

    # a layer Predict added (indices 0/1, the model's values 0/255 in its metadata)
    corrected = layers.training_pair(image, False, mask, "cells", "fixed", class_values=[0, 255])
    assert set(np.unique(corrected.mask)) == {0, 255}
    # a new index painted past the model's classes: kept as painted
    mask2 = mask.copy()
    mask2[:2, :2] = 2
    assert set(
        np.unique(layers.training_pair(image, False, mask2, "c", "m", class_values=[0, 255]).mask)
    ) == {0, 1, 2}


def test_classes_painted_in_part_train_with_the_unpainted_pixels_unlabelled(tmp_path):
    """'labels are: classes painted in part': strokes of background (1) and cells (2), the rest
    left at 0, which is no class (--ignore-value 0): the model labels every pixel 1 or 2."""
    image, mask = _cells()
    painted = np.zeros(mask.shape, np.uint8)
    painted[::6] = np.where(mask[::6] > 0, 2, 1)  # every 6th row painted
    pairs = [layers.training_pair(image, False, painted, "cells", "strokes")]
    result = jobs.train_from_layers(
        pairs, tmp_path / "runs", 1.0, extra_flags=TINY_TRAIN, mask_kind=jobs.PARTIAL
    )
    ckpt = load_checkpoint(result.checkpoint)
    label_map = LabelMap.from_dict(ckpt["label_map"])
    assert label_map.values == (1, 2) and label_map.ignore == 0
    assert ckpt["config"]["data"]["ignore_value"] == 0
    labels = Predictor.from_checkpoint(result.checkpoint).predict(image[None])
    assert set(np.unique(label_map.decode(labels))) <= {1, 2}


def test_training_progress_fraction_and_line():
    state = jobs.TrainProgress("training", 2, 4, 5, 10, 0.25, elapsed_s=6, budget_s=60)
    assert state.fraction() == pytest.approx(0.375)  # 1.5 of 4 epochs beats 10 % of the time
    state.scores = {"val_dice": 0.8}
    assert state.describe() == "epoch 2/4 · batch 5/10 · loss 0.2500 · val dice 0.800 · 6 of 60 s"
    by_clock = jobs.TrainProgress("training", 3, 0, 1, 10, 0.5, elapsed_s=30, budget_s=120)
    assert by_clock.fraction() == 0.25 and by_clock.describe().startswith("epoch 3 · batch 1/10")
    assert jobs.TrainProgress("planning").fraction() == 0.0


# -- the manifest and a real viewer ----------------------------------------------------------------
def _env() -> dict:
    """This process's environment, with the unetkit under test first on the path."""
    src = str(Path(unetkit.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, path] if path else [src])}


def test_manifest_validates_with_its_imports():
    if _missing("napari", "magicgui", "npe2", "superqt"):
        pytest.skip(f"{', '.join(_missing('napari', 'magicgui', 'npe2', 'superqt'))} not installed")
    res = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", str(MANIFEST), "--imports"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert res.returncode == 0 and "valid" in res.stdout, res.stdout + res.stderr


def test_widgets_in_a_real_viewer(tmp_path):
    """tests/napari_driver.py: predict (labels == Predictor.predict, scale and translation,
    probabilities, tile progress), cancel, a colour image and a bad model file refused in one line,
    fine-tuning from the layers with the model loaded into Predict, and a screenshot."""
    reason = _gui_missing()
    if reason:
        pytest.skip(f"napari plugin in a real viewer: {reason}")
    xvfb = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24"]
    res = subprocess.run(
        [*xvfb, sys.executable, str(DRIVER), str(tmp_path)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    tail = (res.stdout[-4000:] + "\n" + res.stderr[-4000:]).strip()
    assert res.returncode == 0, tail
    assert "predict: ok" in res.stdout and "train: ok" in res.stdout, tail
    shot = np.asarray(Image.open(tmp_path / "napari.png").convert("RGB"))
    assert shot.shape[0] >= 600 and shot.shape[1] >= 1000, shot.shape
    colours = np.unique(shot.reshape(-1, 3), axis=0)
    assert shot.std() > 10 and len(colours) > 100, "the screenshot is blank"
    keep = os.environ.get("UNETKIT_SCREENSHOT_DIR")
    if keep:
        assert (Path(keep) / "napari_plugin.png").is_file()

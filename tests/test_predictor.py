"""Predictor: whole images of any size through a model, from a checkpoint alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetkit import create_model
from unetkit.checkpoint import save_checkpoint
from unetkit.data import LabelMap, create_normalizer
from unetkit.errors import ConfigError
from unetkit.inference.predictor import Predictor, labels_from_logits, probabilities


def test_same_padding_prediction_equals_one_forward_when_one_tile_covers(tmp_path):
    model = create_model("unet", base_features=4, depth=2, norm="instance").eval()
    image = np.random.default_rng(0).normal(size=(1, 40, 56)).astype(np.float32)
    pred = Predictor(model, precision="fp32", tile=64)
    with torch.no_grad():
        full = model(torch.from_numpy(image)[None])[0].numpy()
    np.testing.assert_allclose(pred.predict_logits(image), full, atol=1e-5)


def test_valid_padding_prediction_covers_any_image_size():
    model = create_model("unet-original", base_features=2, depth=2, init="torch").eval()
    image = np.random.default_rng(1).normal(size=(1, 37, 83)).astype(np.float32)
    logits = Predictor(model, precision="fp32", tile=60).predict_logits(image)
    assert logits.shape == (2, 37, 83) and np.isfinite(logits).all()


def test_from_checkpoint_applies_training_normalisation_and_label_map(tmp_path):
    model = create_model("unet", base_features=4, depth=2, norm="instance")
    norm = create_normalizer("fixed", low=0, high=255)
    labels = LabelMap([0, 255])
    path = save_checkpoint(
        tmp_path / "m.pt",
        model,
        normalization=norm.to_dict(),
        label_map=labels.to_dict(),
        patch_size=[32, 32],
    )
    pred = Predictor.from_checkpoint(path, precision="fp32", tile=32)
    raw = np.random.default_rng(2).integers(0, 255, (1, 30, 45)).astype(np.uint8)
    manual = Predictor(model.eval(), precision="fp32", tile=32).predict_logits(norm(raw))
    np.testing.assert_allclose(pred.predict_logits(raw), manual, atol=1e-5)
    assert pred.label_map.values == (0, 255)
    assert set(np.unique(pred.label_map.decode(pred.predict(raw)))) <= {0, 255}


def test_progress_counts_the_tiles_and_an_exception_from_it_stops_the_prediction():
    """The hook a GUI uses: ``(done, total)`` after each batch of tiles; raising from it cancels."""
    model = create_model("unet", base_features=4, depth=2, norm="instance")
    pred = Predictor(model, precision="fp32", tile=32, batch_size=2)
    image = np.random.default_rng(3).normal(size=(1, 70, 50)).astype(np.float32)
    total = len(pred.plan(image.shape[1:]).grid().tiles)
    seen = []
    logits = pred.predict_logits(image, progress=lambda done, n: seen.append((done, n)))
    assert total > 2 and seen == [(min(d, total), total) for d in range(2, total + 2, 2)]
    np.testing.assert_array_equal(logits, pred.predict_logits(image))  # the hook changes nothing

    class Stop(Exception):
        pass

    def cancel(done, n):
        seen.append(done)
        raise Stop

    seen.clear()
    with pytest.raises(Stop):
        pred.predict_proba(image, progress=cancel)
    assert seen == [2]  # stopped after the first batch


def test_probabilities_and_labels_for_one_and_many_channels():
    one = torch.tensor([[[-2.0, 3.0]]])
    np.testing.assert_allclose(probabilities(one)[1].numpy(), torch.sigmoid(one)[0].numpy())
    assert labels_from_logits(one).tolist() == [[0, 1]]
    many = torch.tensor([[[1.0, 0.0]], [[0.0, 2.0]], [[0.5, 0.1]]])
    assert labels_from_logits(many).tolist() == [[0, 1]]
    torch.testing.assert_close(probabilities(many).sum(0), torch.ones(1, 2))


def test_tile_plan_uses_few_equal_tiles():
    from unetkit.inference.predictor import plan_axis

    assert plan_axis(2048, 768, 128, 16) == (768, 640)  # 3 tiles: 0, 640, 1280
    assert plan_axis(2048, 640, 128, 16) == (608, 480)  # 4 tiles: 0, 480, 960, 1440
    assert plan_axis(512, 768, 128, 16) == (512, 512)  # one tile
    assert plan_axis(37, 768, 128, 16) == (37, 37)  # one tile: the axis as it is
    model = create_model("unet", base_features=4, depth=4)
    plan = Predictor(model, precision="fp32").plan((2048, 37))
    assert plan.tile == (608, 37) and plan.mode == "sliding-window" and plan.align == (16, 16)
    assert plan.blend == "crop" and plan.out_tile == plan.in_tile
    from unetkit.inference.tiling import window_starts

    assert window_starts((2048, 37), plan.tile, plan.overlap, plan.align)[0] == [
        0,
        480,
        960,
        1440,
    ]


@pytest.mark.parametrize("multiple", [1, 8, 16])
def test_tile_plan_steps_on_the_pooling_grid_and_keeps_the_overlap(multiple):
    from unetkit.inference.predictor import plan_axis

    for size in range(641, 6000, 97):
        tile, step = plan_axis(size, 640, 128, multiple)
        starts = list(range(0, size - tile, step)) + [size - tile]
        assert tile % multiple == 0 and step % multiple == 0
        assert tile - step >= 128  # every overlap at least min_overlap
        assert starts[-1] + tile == size and all(b - a <= step for a, b in zip(starts, starts[1:]))
        assert (
            tile <= 640 + multiple
        )  # rounding up to the grid may pass max_tile by less than one period
        assert len(starts) == -(-(size - 128) // (640 - 128))  # the fewest tiles


def test_default_prediction_equals_the_whole_image_forward_where_tiles_overlap_enough():
    # depth-2 net (receptive radius < 32 px), batch norm in eval mode: crop-stitched tiles on the
    # pooling grid with half-overlaps of 32 px reproduce one forward pass over the whole image
    torch.manual_seed(0)
    model = create_model("unet", base_features=4, depth=2, init="torch").eval()
    image = np.random.default_rng(5).normal(size=(1, 200, 232)).astype(np.float32)
    pred = Predictor(model, precision="fp32", max_tile=96, min_overlap=64)
    assert pred.plan(image.shape[1:]).tile[0] < 200  # really tiled
    with torch.no_grad():
        full = model(torch.from_numpy(image)[None])[0].numpy()
    assert np.abs(pred.predict_logits(image) - full).max() < 1e-4
    blended = Predictor(model, precision="fp32", max_tile=96, min_overlap=64, blend="gaussian")
    assert np.abs(blended.predict_logits(image) - full).max() > 1e-3


def test_tta_averages_probabilities_of_transformed_copies():
    # a model that is not flip-equivariant: TTA output equals the manual mean over the 8 d4 versions
    model = create_model("unet", base_features=4, depth=2, norm="none").eval()
    image = np.random.default_rng(3).normal(size=(1, 32, 32)).astype(np.float32)
    plain = Predictor(model, precision="fp32", tile=32)
    tta = Predictor(model, precision="fp32", tile=32, tta=True)
    probs = []
    for flip in (False, True):
        for k in range(4):
            x = np.flip(image, 2) if flip else image
            x = np.ascontiguousarray(np.rot90(x, k, axes=(1, 2)))
            p = plain.predict_proba(x)
            p = np.rot90(p, -k, axes=(1, 2))
            probs.append(np.flip(p, 2) if flip else p)
    np.testing.assert_allclose(tta.predict_proba(image), np.mean(probs, axis=0), atol=1e-5)
    assert not np.allclose(plain.predict_proba(image), tta.predict_proba(image), atol=1e-4)


def test_fast_path_is_used_for_the_tile_shape_and_matches_eager():
    model = create_model("unet", base_features=4, depth=2).eval()
    image = np.random.default_rng(4).normal(size=(1, 64, 96)).astype(np.float32)
    eager = Predictor(model, precision="fp32", tile=32, overlap=0.25, fast="eager")
    jit = Predictor(model, precision="fp32", tile=32, overlap=0.25, fast="jit")
    np.testing.assert_allclose(jit.predict_logits(image), eager.predict_logits(image), atol=1e-4)
    assert list(jit._fast_forward) == [(1, 32, 32)] and eager._fast_forward == {}
    assert "fast path jit" in jit.describe() and "fast path auto" not in jit.describe()
    auto = Predictor(model, precision="fp32", tile=32)
    assert auto.describe().endswith("fast path auto")  # nothing ran yet
    auto.predict_logits(image)
    assert auto._fast_forward == {}  # fp32 on CPU: auto stays eager
    assert auto.describe().endswith("fast path auto → eager")  # what ran, for benchmark tables


@pytest.mark.parametrize("preset", ["unet", "unet3plus-ds-cgm"])
@pytest.mark.parametrize("fast", ["eager", "jit"])
def test_a_model_returning_every_output_keeps_its_flag_and_predicts_its_main_logits(preset, fast):
    """The predictor never flips ``outputs`` on the caller's model, not even during a forward pass,
    and predicts what the same net built for logits alone predicts (the CGM gate included)."""
    import copy

    model = create_model(preset, base_features=4, depth=2, deep_supervision=True).eval()
    assert model.outputs == "all"
    logits_only = copy.deepcopy(model)
    logits_only.outputs = "logits"
    image = np.random.default_rng(5).normal(size=(1, 48, 72)).astype(np.float32)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(model.outputs))
    kwargs = dict(precision="fp32", tile=32, overlap=0.25, fast=fast)
    got = Predictor(model, **kwargs).predict_logits(image)
    np.testing.assert_array_equal(got, Predictor(logits_only, **kwargs).predict_logits(image))
    assert model.outputs == "all" and set(seen) == {"all"}


def test_a_model_registered_in_the_registry_loads_from_a_checkpoint(tmp_path, monkeypatch):
    """The checkpoint loader knows the model classes through ``unetkit.models.MODELS``, not a list of its own."""
    from unetkit.checkpoint import build_model, load_checkpoint
    from unetkit.errors import DataError
    from unetkit.models import MODELS, UNet

    class NarrowUNet(UNet):
        pass

    path = save_checkpoint(tmp_path / "m.pt", NarrowUNet(base_features=4, depth=2, norm="instance"))
    with pytest.raises(
        DataError, match=r"class 'NarrowUNet' is unknown to this unetkit \(known: UNet, UNet3Plus, "
    ):
        build_model(load_checkpoint(path))
    monkeypatch.setattr(MODELS, "_entries", dict(MODELS._entries))  # registered for this test only
    MODELS.register("unet-narrow", NarrowUNet)
    model = build_model(load_checkpoint(path))
    assert type(model) is NarrowUNet and model.init_kwargs["base_features"] == 4


def test_arrays_from_python_are_checked_as_files_are_with_the_fix_in_one_line(tmp_path):
    """A notebook's arrays meet the checks files meet: a NaN pixel (all-NaN logits, an
    all-background answer before), grey stored as RGB, paths, empty and complex arrays, and a
    channels-last array each get one DataError line; a one-channel model takes (H, W)."""
    from unetkit.errors import DataError

    model = create_model("unet", base_features=4, depth=2, norm="instance").eval()
    pred = Predictor(model, precision="fp32", tile=32)
    grey = np.random.default_rng(4).integers(0, 255, (1, 24, 40)).astype(np.float32)
    want = pred.predict(grey)
    assert want.shape == (24, 40)
    np.testing.assert_array_equal(pred.predict(grey[0]), want)  # no channel axis: one channel
    np.testing.assert_array_equal(pred.predict(np.repeat(grey, 3, axis=0)), want)  # grey as RGB
    np.testing.assert_array_equal(pred.predict(torch.from_numpy(grey)), want)
    nan = grey.copy()
    nan[0, 3, 3] = np.nan
    colour = np.random.default_rng(5).integers(0, 255, (24, 40, 3))
    cases = [
        (nan, r"^image contains NaN or infinite values \(1 NaN, 0 infinite\); replace them"),
        ("x.png", r"^expected an image array \(C, H, W\), got str 'x.png': read the file first"),
        (None, r"^expected an image array \(C, H, W\), got NoneType None"),
        (np.zeros((1, 0, 10)), r"^the image is empty \(shape \(1, 0, 10\)\)$"),
        (grey.astype(complex), r"of real numbers, got complex; give its magnitude"),
        (
            colour,
            r"the image has 24 \(shape \(24, 40, 3\)\); it looks channels-last \(3 .*"
            r"numpy.moveaxis\(image, -1, 0\)",
        ),
        (np.zeros((2, 1, 24, 40)), r"^the model is 2D and expects a 2D image \(H, W\) per channel"),
    ]
    for image, message in cases:
        with pytest.raises(DataError, match=message):
            pred.predict(image)
    with pytest.raises(DataError, match=r"^spacing \(1.0,\) has 1 value\(s\) for a 2D image"):
        pred.predict(grey, spacing=(1.0,))
    with pytest.raises(ConfigError, match=r"got str 'm.pt': for a checkpoint file use Predictor"):
        Predictor("m.pt")
    colour_model = create_model("unet", in_channels=3, base_features=4, depth=2, norm="instance")
    with pytest.raises(
        DataError,
        match=r"the model expects 3 channel\(s\), the image has 2 .*"
        r"convert it \(e.g. to 3 channels\)",
    ):
        Predictor(colour_model.eval(), precision="fp32").predict(np.zeros((2, 24, 40)))
    volume_model = create_model("unet", spatial_dims=3, base_features=4, depth=2, norm="instance")
    volumes = Predictor(volume_model.eval(), precision="fp32")
    assert volumes.predict(np.zeros((8, 16, 16), np.float32)).shape == (8, 16, 16)
    with pytest.raises(DataError, match=r"the model is 3D and expects a 3D volume \(D, H, W\)"):
        volumes.predict(np.zeros((1, 24, 40)))  # a 2D image, not a one-slice volume
    path = save_checkpoint(tmp_path / "m.pt", model, patch_size=[32, 32])
    with pytest.raises(ConfigError, match=r"unknown setting 'tiel' \(did you mean 'tile'\?\)"):
        Predictor.from_checkpoint(path, tiel=32)


def test_a_tiff_hyperstack_of_other_channels_gets_the_fiji_fix(tmp_path):
    """A 2-channel z-stack given to a 1-channel 3D model: the fix is a TIFF of its channel (it
    was nnU-Net's "one file per channel: CASE_0000"); an RGB picture still reads "greyscale"."""
    from pathlib import Path

    from unetkit.errors import DataError
    from unetkit.inference.predictor import check_image

    model = create_model("unet", spatial_dims=3, base_features=4, depth=2, norm="instance")
    pred = Predictor(model.eval(), precision="fp32")
    with pytest.raises(
        DataError,
        match=r"has 2 \(shape \(2, 4, 8, 8\)\); save a TIFF of the 1 "
        r"channel\(s\) the model was trained on, in their order \(Fiji: Image ▸ ",
    ):
        check_image(np.zeros((2, 4, 8, 8)), pred, Path("stack.tif"))
    flat = Predictor(create_model("unet", base_features=4, depth=2).eval(), precision="fp32")
    colour = np.stack([np.zeros((8, 8)), np.ones((8, 8)), np.zeros((8, 8))])
    with pytest.raises(DataError, match=r"convert it \(e.g. to greyscale\)"):
        check_image(colour, flat, Path("photo.tif"))


def test_a_checkpoint_of_another_version_is_not_called_damaged_alone(tmp_path):
    """Statistics this version does not know (written by another one) cannot be rebuilt: the
    message says which version can read it; a (H, W, 2) array is named channels-last."""
    from unetkit.errors import DataError

    model = create_model("unet", in_channels=3, base_features=4, depth=2, norm="instance")
    unknown = {"name": "zscore", "params": {"per_image": True}, "stats": {"min_std": [1.0]}}
    path = save_checkpoint(tmp_path / "m.pt", model, normalization=unknown, patch_size=[32, 32])
    with pytest.raises(
        DataError,
        match=r"cannot be rebuilt \(.*\): a checkpoint of another "
        r"unetkit version, or a damaged one; load it with the version that wrote",
    ):
        Predictor.from_checkpoint(path)
    pred = Predictor(model.eval(), precision="fp32")
    with pytest.raises(DataError, match=r"it looks channels-last \(2 channel\(s\) on its last"):
        pred.predict(np.zeros((24, 40, 2)))

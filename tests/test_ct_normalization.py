"""nnU-Net's CT normalisation (foreground statistics of the training set), the per-channel
composite, the choice by channel names (``dataset.json``, ``--channel-names``) and how it reaches
prepare_data, the planner, the checkpoint and the CLI."""

from __future__ import annotations

import argparse
import json

import nibabel as nib
import numpy as np
import pytest
import torch

from unetkit import cli
from unetkit.commands.parsing import channel_names as parse_channel_names
from unetkit.config import RunConfig
from unetkit.data import normalization as norm_module
from unetkit.data import prepare_data
from unetkit.data.normalization import (
    Normalizer,
    choose_normalization,
    create_normalizer,
    normalization_for_channel_names,
)
from unetkit.errors import ConfigError
from unetkit.planning import make_plan

from .test_planner import FakeFingerprint, speed


def _ct_cases(n=3, shape=(6, 7, 8), channels=1, seed=0):
    """Images in HU-like ranges (air around, tissue inside) and label maps with classes 0, 1, 2."""
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for i in range(n):
        image = rng.normal(-800, 150, size=(channels, *shape))
        mask = np.zeros(shape, np.int64)
        mask[1:4, 2:6, 1 + i : 6] = 1
        mask[4:5, 1:3, 2:4] = 2
        image[:, mask > 0] = rng.normal(40, 30, size=(channels, int((mask > 0).sum())))
        images.append(image.astype(np.float32))
        masks.append(mask)
    return images, masks


def _numpy_ct(images, masks, lower=0.5, upper=99.5):
    """Independent computation: all foreground voxels pooled, per channel."""
    pooled = np.concatenate(
        [im.reshape(im.shape[0], -1)[:, m.reshape(-1) > 0] for im, m in zip(images, masks)], axis=1
    ).astype(np.float64)
    low, high = np.percentile(pooled, [lower, upper], axis=1)
    return low, high, pooled.mean(axis=1), pooled.std(axis=1)


def _apply_ct(image, low, high, mean, std):
    c = (slice(None),) + (None,) * (image.ndim - 1)
    return (np.clip(image, low[c], high[c]) - mean[c]) / std[c]


# -------------------------------------------------------------------------------- the ct scheme
def test_ct_statistics_equal_numpy_on_the_foreground():
    images, masks = _ct_cases(channels=2)
    norm = create_normalizer("ct").fit(iter(images), iter(masks))  # generators: one pass
    low, high, mean, std = _numpy_ct(images, masks)
    stats = norm.to_dict()["stats"]
    for key, want in zip(("low", "high", "mean", "std"), (low, high, mean, std)):
        np.testing.assert_allclose(stats[key], want, rtol=1e-12)
    # the statistics are the foreground's (tissue near 40 HU), not the air's
    assert 0 < stats["mean"][0] < 80 and stats["low"][0] > -200
    # mean and std are those before clipping (nnU-Net): not the clipped values' mean
    fg = images[0][0][masks[0] > 0]
    assert not np.isclose(stats["mean"][0], np.clip(fg, low[0], high[0]).mean(), rtol=1e-12)
    out = norm(images[1])
    assert out.dtype == np.float32 and out.shape == images[1].shape
    np.testing.assert_allclose(
        out, _apply_ct(images[1], low, high, mean, std), rtol=1e-5, atol=1e-5
    )
    # other percentiles
    other = create_normalizer("ct", lower=5, upper=95).fit(images, masks)
    np.testing.assert_allclose(
        other.to_dict()["stats"]["low"], _numpy_ct(images, masks, 5, 95)[0], rtol=1e-12
    )


def test_ct_samples_at_most_max_samples_per_case_seeded(monkeypatch):
    images, masks = _ct_cases(n=2, shape=(10, 12, 14))
    a = create_normalizer("ct", max_samples=50, seed=3).fit(images, masks)
    b = create_normalizer("ct", max_samples=50, seed=3).fit(images, masks)
    c = create_normalizer("ct", max_samples=50, seed=4).fit(images, masks)
    assert a == b and a != c
    # the sample: 50 voxels of each case's foreground, drawn without replacement
    state = create_normalizer("ct", max_samples=50, seed=3)._accumulate(None, images[0], masks[0])
    (pooled,) = state["pooled"]
    fg_values = images[0][0][masks[0] > 0]
    assert pooled.shape == (1, 50) and np.isin(pooled[0], fg_values).all()
    assert len(np.unique(pooled[0])) == 50
    # the chunked search for the drawn voxels equals the plain one (chunks of 64 voxels here)
    mask = masks[0]
    fg = np.flatnonzero(mask.reshape(-1) > 0)
    monkeypatch.setattr(norm_module, "_CHUNK", 64)
    got = norm_module._foreground_sample(mask, 50, np.random.default_rng([3, 0]))
    ranks = np.sort(np.random.default_rng([3, 0]).choice(fg.size, size=50, replace=False))
    np.testing.assert_array_equal(got, fg[ranks])
    # fewer foreground voxels than the cap: all of them, in order
    np.testing.assert_array_equal(
        norm_module._foreground_sample(mask, 10**6, np.random.default_rng(0)), fg
    )


def test_ct_round_trip_and_given_statistics():
    images, masks = _ct_cases()
    norm = create_normalizer("ct").fit(images, masks)
    saved = json.loads(json.dumps(norm.to_dict()))
    back = Normalizer.from_dict(saved)
    assert back == norm and back.fitted
    np.testing.assert_array_equal(back(images[0]), norm(images[0]))
    # a pre-fitted one from given statistics applies the same rule without fit
    given = create_normalizer("ct", **{k: v[0] for k, v in saved["stats"].items()})
    assert given.fitted and given == norm
    np.testing.assert_array_equal(given(images[2]), norm(images[2]))
    # the config form is checked and built like the other schemes
    cfg = RunConfig.from_dict(
        {"data": {"normalization": {"name": "ct", "low": -100, "high": 200, "mean": 40, "std": 50}}}
    )
    one = Normalizer.from_dict(
        {
            "name": "ct",
            "params": {},
            "stats": {"low": [-100], "high": [200], "mean": [40], "std": [50]},
        }
    )
    x = np.array([[[-1000.0, 40.0, 90.0, 500.0]]], np.float32)
    np.testing.assert_allclose(one(x), [[[-2.8, 0.0, 1.0, 3.2]]], rtol=1e-6)
    assert cfg.data.normalization["mean"] == 40


def test_ct_error_paths():
    images, masks = _ct_cases()
    with pytest.raises(ConfigError, match="ct normalisation needs labelled foreground"):
        create_normalizer("ct").fit(images)
    empty = [np.zeros_like(m) for m in masks]
    with pytest.raises(
        ConfigError, match=r"needs labelled foreground \(label > 0\): the 3 training mask"
    ):
        create_normalizer("ct").fit(images, empty)
    with pytest.raises(ConfigError, match="got more images than masks"):
        create_normalizer("ct").fit(images, masks[:2])
    with pytest.raises(ConfigError, match=r"a mask of shape \(6, 7\) for an image of spatial"):
        create_normalizer("ct").fit(images, [m[..., 0] for m in masks])
    with pytest.raises(ConfigError, match="call fit"):
        create_normalizer("ct")(images[0])
    with pytest.raises(ConfigError, match="ct statistics need low, high, mean and std"):
        create_normalizer("ct", mean=0.0, std=1.0)
    with pytest.raises(ConfigError, match="need high >= low"):
        create_normalizer("ct", low=10, high=0, mean=0, std=1)
    with pytest.raises(ConfigError, match=r"0 <= lower < upper <= 100 \(percentiles\)"):
        create_normalizer("ct", lower=99.5, upper=0.5)


# --------------------------------------------------------------------------------- per channel
def test_per_channel_applies_each_channels_rule():
    ct_images, masks = _ct_cases()
    rng = np.random.default_rng(1)
    mr = [rng.gamma(2.0, 300.0, size=(1, *m.shape)).astype(np.float32) for m in masks]
    images = [np.concatenate([c, m]) for c, m in zip(ct_images, mr)]
    spec = {"name": "per_channel", "channels": [{"name": "ct"}, {"name": "zscore"}]}
    norm = create_normalizer(**spec).fit(iter(images), iter(masks))
    assert norm.needs_masks and norm.per_image and norm.fitted
    low, high, mean, std = _numpy_ct(ct_images, masks)
    out = norm(images[2])
    assert out.shape == images[2].shape and out.dtype == np.float32
    np.testing.assert_allclose(
        out[:1], _apply_ct(ct_images[2], low, high, mean, std), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        out[1], (mr[2][0] - mr[2][0].mean()) / mr[2][0].std(), rtol=1e-5, atol=1e-5
    )
    # nested to_dict / from_dict
    saved = json.loads(json.dumps(norm.to_dict()))
    assert [c["name"] for c in saved["params"]["channels"]] == ["ct", "zscore"]
    back = Normalizer.from_dict(saved)
    assert back == norm
    np.testing.assert_array_equal(back(images[0]), norm(images[0]))
    # a dataset z-score child is fitted in the same pass, on its channel only
    pooled = create_normalizer(
        "per-channel", channels=[{"name": "ct"}, {"name": "zscore", "per_image": False}]
    ).fit(images, masks)
    all_mr = np.concatenate([m.reshape(-1) for m in mr]).astype(np.float64)
    child = pooled.to_dict()["stats"]["channels"][1]
    np.testing.assert_allclose(child["mean"], [all_mr.mean()], rtol=1e-10)
    np.testing.assert_allclose(child["std"], [all_mr.std()], rtol=1e-10)


def test_per_channel_frozen_uses_the_whole_images_statistics():
    """Band-by-band prediction: the per-image child gets the whole image's mean and std from
    chunks, the fitted ct child keeps its statistics."""
    from unetkit.inference.large import freeze_normalizer

    ct_images, masks = _ct_cases()
    rng = np.random.default_rng(2)
    image = np.concatenate([ct_images[0], rng.normal(5, 3, size=(1, 6, 7, 8))]).astype(np.float32)
    norm = create_normalizer("per-channel", channels=[{"name": "ct"}, {"name": "zscore"}]).fit(
        [image], masks[:1]
    )
    frozen = freeze_normalizer(norm, image)
    assert not frozen.per_image
    np.testing.assert_allclose(frozen(image), norm(image), rtol=1e-5, atol=1e-5)
    band = image[:, :2]
    np.testing.assert_allclose(frozen(band), norm(image)[:, :2], rtol=1e-5, atol=1e-5)
    # a scheme without statistics is frozen as it is (it used to fail band by band)
    plain = create_normalizer("none")
    assert freeze_normalizer(plain, image) is plain


def test_per_channel_errors():
    images, masks = _ct_cases()
    norm = create_normalizer("per-channel", channels=[{"name": "ct"}, {"name": "zscore"}]).fit(
        [np.concatenate([im, im]) for im in images], masks
    )
    with pytest.raises(
        ConfigError,
        match=r"has 2 channel scheme\(s\) \(ct, zscore\), the image has 3 channel\(s\)",
    ):
        norm(np.concatenate([images[0]] * 3))
    with pytest.raises(ConfigError, match=r"the image has 1 channel\(s\)"):
        norm.fit(images, masks)
    with pytest.raises(ConfigError, match=r"needs labelled foreground"):
        create_normalizer("per-channel", channels=[{"name": "ct"}]).fit(images)
    with pytest.raises(ConfigError, match=r"channels\[1\]: unknown normalization 'zscor'"):
        create_normalizer("per-channel", channels=[{"name": "ct"}, {"name": "zscor"}])
    bad = {"name": "per_channel", "channels": [{"name": "ct"}, {"name": "zscor"}]}
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict({"data": {"normalization": bad}})
    message = str(err.value)
    assert "\n" not in message and message.startswith("data.normalization.channels[1].name:")
    assert "Did you mean 'zscore'" in message and "Valid names: ct, fixed, minmax" in message
    for spec, text in (
        ({"name": "per-channel"}, "data.normalization.channels is required"),
        (
            {"name": "per-channel", "channels": [{"name": "ct", "lower": "low"}]},
            r"data.normalization.channels\[0\].lower must be a number",
        ),
        (
            {"name": "per-channel", "channels": [{"name": "auto"}]},
            r"data.normalization.channels\[0\].name: 'auto' chooses for all channels",
        ),
        ({"name": "auto", "per_image": False}, "'auto' .* takes no options, got per_image"),
    ):
        with pytest.raises(ConfigError, match=text):
            RunConfig.from_dict({"data": {"normalization": spec}})


# ------------------------------------------------------------------------------- channel names
def test_channel_names_choose_nnunets_scheme():
    assert normalization_for_channel_names({"0": "CT"}) == {"name": "ct"}
    assert normalization_for_channel_names({"1": "T2", "0": "ct"}) == {
        "name": "per-channel",
        "channels": [{"name": "ct"}, {"name": "zscore"}],
    }
    assert normalization_for_channel_names(["T1", "T2", "FLAIR"]) == {"name": "zscore"}
    assert normalization_for_channel_names(["noNorm"]) == {"name": "none"}
    assert normalization_for_channel_names(["rescale_to_0_1"]) == {"name": "minmax"}
    assert normalization_for_channel_names(["RGB_to_0_1"]) == {
        "name": "fixed",
        "low": 0,
        "high": 255,
    }
    for bad in ({"0": "CT", "2": "T2"}, {"a": "CT"}, ["CT", ""], "CT"):
        with pytest.raises(ConfigError, match="channel names must"):
            normalization_for_channel_names(bad)
    # precedence: a named scheme > the user's names > dataset.json > zscore per image
    ds = {"channel_names": {"0": "CT"}}
    assert choose_normalization({"name": "minmax"}, ["CT"], ds)[0] == {"name": "minmax"}
    assert choose_normalization({"name": "auto"}, ["T2"], ds)[0] == {"name": "zscore"}
    spec, why = choose_normalization(None, None, ds)
    assert spec == {"name": "ct"} and why.startswith("dataset.json channel_names CT")
    assert choose_normalization(None, None, {"modality": {"0": "CT"}})[0] == {"name": "ct"}
    spec, why = choose_normalization(None, None, {"labels": {}})
    assert spec == {"name": "zscore"} and "no channel names" in why


# --------------------------------------------------------------------------- nnU-Net folders
def _write_nnunet_ct(root, n=3, names=None):
    """A tiny nnU-Net raw folder of 3D CT cases; returns the (image, label) arrays written."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    images, masks = _ct_cases(n=n, shape=(8, 9, 10))
    for i, (image, mask) in enumerate(zip(images, masks)):
        nib.save(nib.Nifti1Image(image[0], np.eye(4)), root / "imagesTr" / f"ct{i}_0000.nii.gz")
        nib.save(
            nib.Nifti1Image(mask.astype(np.uint8), np.eye(4)), root / "labelsTr" / f"ct{i}.nii.gz"
        )
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": names or {"0": "CT"},
                "labels": {"background": 0, "organ": 1, "vessel": 2},
                "numTraining": n,
                "file_ending": ".nii.gz",
            }
        )
    )
    return images, masks


def test_prepare_data_fits_ct_on_the_training_foreground(tmp_path):
    images, masks = _write_nnunet_ct(tmp_path / "ds")
    data = prepare_data(tmp_path / "ds", val_fraction=0)
    assert data.normalizer.name == "ct" and data.normalizer.fitted
    low, high, mean, std = _numpy_ct(images, masks)
    stats = data.normalizer.to_dict()["stats"]
    for key, want in zip(("low", "high", "mean", "std"), (low, high, mean, std)):
        np.testing.assert_allclose(stats[key], want, rtol=1e-9)
    # the loaded cases are normalised with it (the reader may order the axes its own way)
    expected = _apply_ct(images[0], low, high, mean, std)
    np.testing.assert_allclose(
        np.sort(data.train[0].image.ravel()), np.sort(expected.ravel()), rtol=1e-5, atol=1e-5
    )
    # with a hold-out, only the training cases' foreground counts
    held = prepare_data(tmp_path / "ds", val_fraction=0.34, seed=0)
    train = [int(c[2:]) for c in held.splits["train"]]
    assert len(train) == 2
    want = _numpy_ct([images[i] for i in train], [masks[i] for i in train])
    np.testing.assert_allclose(held.normalizer.to_dict()["stats"]["mean"], want[2], rtol=1e-9)
    # a named scheme wins over dataset.json, and so do the user's channel names
    assert (
        prepare_data(
            tmp_path / "ds", val_fraction=0, normalization={"name": "minmax"}
        ).normalizer.name
        == "minmax"
    )
    assert (
        prepare_data(tmp_path / "ds", val_fraction=0, channel_names=["T2"]).normalizer.name
        == "zscore"
    )
    with pytest.raises(
        ConfigError, match=r"give 2 name\(s\) \(CT, T2\) but the images have 1 channel"
    ):
        prepare_data(tmp_path / "ds", val_fraction=0, channel_names=["CT", "T2"])


def test_train_cli_saves_the_fitted_ct_normaliser(tmp_path, capsys):
    images, masks = _write_nnunet_ct(tmp_path / "ds")
    run = tmp_path / "run"
    args = ["train", str(tmp_path / "ds"), "--no-plan", "--val-fraction", "0", "--epochs", "1"]
    args += ["--iters-per-epoch", "1", "--batch-size", "1", "--patch-size", "8", "--threads", "1"]
    args += ["--set", "model.options.base_features=2", "--set", "model.options.depth=1"]
    assert cli.main([*args, "--no-progress", "--run-dir", str(run)]) == 0
    assert "normalisation ct" in capsys.readouterr().out
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    low, high, mean, std = _numpy_ct(images, masks)
    assert ckpt["normalization"]["name"] == "ct"
    np.testing.assert_allclose(ckpt["normalization"]["stats"]["mean"], mean, rtol=1e-9)
    np.testing.assert_allclose(ckpt["normalization"]["stats"]["high"], high, rtol=1e-9)
    assert RunConfig.from_yaml(run / "config.yaml").data.normalization == {"name": "auto"}
    # --channel-names: one per image channel, else one line and exit status 2, before training
    assert cli.main([*args, "--channel-names", "CT,T2", "--run-dir", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "give 2 name(s) (CT, T2) but the images have 1 channel(s)" in err[0]
    assert not (tmp_path / "r2").exists()


def test_channel_names_flag_parsing_and_the_plan(tmp_path, capsys):
    assert parse_channel_names("CT, T2") == ["CT", "T2"]
    with pytest.raises(argparse.ArgumentTypeError, match="e.g. CT or CT,T2"):
        parse_channel_names("CT,,T2")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", str(tmp_path), "--channel-names", "CT,"])
    assert exit_.value.code == 2
    capsys.readouterr()
    _write_nnunet_ct(tmp_path / "ds", n=2)
    code = cli.main(
        [
            "plan",
            str(tmp_path / "ds"),
            "--channel-names",
            "CT,T2",
            "--output",
            str(tmp_path / "p.json"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "--channel-names gives 2 name(s) (CT, T2) but the images have 1 channel(s)" in err[0]


def test_the_plan_records_the_normalisation_and_why():
    fp = FakeFingerprint()
    plan = make_plan(fp, 5, "cpu", timer=speed(), dataset_json={"channel_names": {"0": "CT"}})
    (d,) = [d for d in plan.decisions if d.name == "normalization"]
    assert d.value == "ct" and d.reason.startswith("dataset.json channel_names CT")
    assert "0.5/99.5 percentiles of the training foreground" in d.reason
    assert "data.normalization" not in plan.config and "data.channel_names" not in plan.config
    assert "normalization" in plan.table()
    # the user's names are planned (a saved plan carries them to train) and win over dataset.json
    plan = make_plan(
        FakeFingerprint(channels=2),
        5,
        "cpu",
        timer=speed(),
        channel_names=["CT", "T2"],
        dataset_json={"channel_names": {"0": "T1", "1": "T2"}},
    )
    (d,) = [d for d in plan.decisions if d.name == "normalization"]
    assert d.value == "per-channel (ct, zscore)" and d.reason.startswith("--channel-names")
    assert plan.config["data.channel_names"] == ["CT", "T2"]
    assert RunConfig().override(plan.config).data.channel_names == ["CT", "T2"]
    (d,) = [
        d for d in make_plan(fp, 5, "cpu", timer=speed()).decisions if d.name == "normalization"
    ]
    assert d.value == "zscore" and "no channel names" in d.reason

"""Normalisation schemes: exact values, dataset statistics, saving/loading, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from unetkit.data.normalization import Normalizer, create_normalizer, list_normalizers
from unetkit.errors import ConfigError


def _images(seed=0, n=3, channels=2):
    rng = np.random.default_rng(seed)
    return [
        (rng.normal(size=(channels, 8 + i, 9)) * [[[3.0]], [[0.5]]][:channels] + 10 * i).astype(
            np.float32
        )
        for i in range(n)
    ]


def test_names():
    assert list_normalizers() == [
        "ct",
        "fixed",
        "minmax",
        "none",
        "per-channel",
        "percentile",
        "zscore",
    ]


def test_zscore_per_image_per_channel():
    img = np.stack([np.arange(12.0).reshape(3, 4), 100 + 5 * np.arange(12.0).reshape(3, 4)]).astype(
        np.float32
    )
    out = create_normalizer("zscore")(img)
    assert out.dtype == np.float32 and out.shape == img.shape
    for c in range(2):
        expected = (img[c] - img[c].mean()) / img[c].std()
        np.testing.assert_allclose(out[c], expected, rtol=1e-6)
    # both channels are the same ramp up to an affine map, so they normalise to the same values
    np.testing.assert_allclose(out[0], out[1], atol=1e-6)


def test_zscore_dataset_statistics_equal_pooled_numpy():
    imgs = _images()
    norm = create_normalizer("zscore", per_image=False).fit(iter(imgs))
    pooled = np.concatenate([im.reshape(2, -1) for im in imgs], axis=1).astype(np.float64)
    stats = norm.to_dict()["stats"]
    np.testing.assert_allclose(stats["mean"], pooled.mean(axis=1), rtol=1e-10)
    np.testing.assert_allclose(stats["std"], pooled.std(axis=1), rtol=1e-10)
    out = norm(imgs[1])
    expected = (imgs[1] - pooled.mean(axis=1)[:, None, None]) / pooled.std(axis=1)[:, None, None]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_zscore_given_statistics():
    img = np.full((1, 2, 2), 7.0, np.float32)
    np.testing.assert_array_equal(
        create_normalizer("zscore", mean=5.0, std=4.0)(img), np.full((1, 2, 2), 0.5)
    )


def test_percentile_per_image_hand_values():
    img = np.arange(1001, dtype=np.float32).reshape(1, 7, 143)
    out = create_normalizer("percentile")(img).ravel()
    lo, hi = 10.0, 998.0  # 1st and 99.8th percentiles of 0..1000 (linear interpolation)
    assert out[0] == 0.0 and out[5] == 0.0 and out[-1] == 1.0 and out[999] == 1.0
    np.testing.assert_allclose(out[500], (500 - lo) / (hi - lo), rtol=1e-6)
    out2 = create_normalizer("percentile", lower=0, upper=100)(img).ravel()
    np.testing.assert_allclose(out2, np.arange(1001) / 1000, rtol=1e-6)


def test_percentile_dataset_fit_equals_pooled_percentiles():
    imgs = _images(channels=1)
    norm = create_normalizer("percentile", lower=5, upper=95, per_image=False).fit(imgs)
    pooled = np.concatenate([im.ravel() for im in imgs]).astype(np.float64)
    lo, hi = np.percentile(pooled, [5, 95])
    stats = norm.to_dict()["stats"]
    np.testing.assert_allclose([stats["low"][0], stats["high"][0]], [lo, hi])
    out = norm(imgs[0])
    np.testing.assert_allclose(
        out, (np.clip(imgs[0], lo, hi) - lo) / (hi - lo), rtol=1e-5, atol=1e-6
    )


def test_percentile_fit_subsamples_deterministically():
    img = np.arange(10_000, dtype=np.float32).reshape(1, 100, 100)
    a = create_normalizer("percentile", per_image=False, max_samples=100).fit([img])
    b = create_normalizer("percentile", per_image=False, max_samples=100).fit([img])
    assert a == b
    # every 100th pixel: 0, 100, ..., 9900
    np.testing.assert_allclose(
        a.to_dict()["stats"]["high"], [np.percentile(np.arange(0, 10_000, 100), 99.8)]
    )


def test_minmax_per_image_and_dataset():
    a = np.array([[[2.0, 4.0], [6.0, 10.0]]], np.float32)
    b = np.array([[[0.0, 1.0], [1.0, 20.0]]], np.float32)
    np.testing.assert_allclose(create_normalizer("minmax")(a), [[[0.0, 0.25], [0.5, 1.0]]])
    norm = create_normalizer("minmax", per_image=False).fit([a, b])
    np.testing.assert_allclose(norm(a), a / 20.0)


def test_fixed_ct_window_and_per_channel():
    img = np.array([[[-2000.0, -1000.0, -300.0, 400.0, 3000.0]]], np.float32)
    out = create_normalizer("fixed", low=-1000, high=400)(img)
    np.testing.assert_allclose(out, [[[0.0, 0.0, 0.5, 1.0, 1.0]]])
    two = np.array([[[0.0, 255.0]], [[0.0, 255.0]]], np.float32)
    out = create_normalizer("fixed", low=[0, 0], high=[255, 510])(two)
    np.testing.assert_allclose(out, [[[0.0, 1.0]], [[0.0, 0.5]]])


def test_none_only_casts():
    img = np.array([[[0, 255], [3, 7]]], np.uint8)
    out = create_normalizer("none")(img)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, img.astype(np.float32))


@pytest.mark.parametrize(
    "name,params",
    [
        ("zscore", {}),
        ("zscore", {"per_image": False}),
        ("percentile", {}),
        ("percentile", {"per_image": False}),
        ("minmax", {}),
        ("minmax", {"per_image": False}),
        ("fixed", {"low": 3, "high": 9}),
    ],
)
def test_constant_image_gives_no_nan(name, params):
    img = np.full((2, 5, 6), 3.0, np.float32)
    norm = create_normalizer(name, **params).fit([img])
    out = norm(img)
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out, np.zeros_like(img))


def test_input_not_modified():
    img = _images()[0]
    before = img.copy()
    for name in ("zscore", "percentile", "minmax"):
        create_normalizer(name)(img)
    np.testing.assert_array_equal(img, before)


@pytest.mark.parametrize(
    "name,params",
    [
        ("zscore", {"per_image": False}),
        ("percentile", {"per_image": False}),
        ("minmax", {"per_image": False}),
        ("zscore", {}),
        ("fixed", {"low": [-1, 0], "high": [5, 6]}),
        ("none", {}),
    ],
)
def test_round_trip_through_json(name, params):
    imgs = _images()
    norm = create_normalizer(name, **params).fit(imgs)
    d = json.loads(json.dumps(norm.to_dict()))
    again = Normalizer.from_dict(d)
    assert again == norm and type(again) is type(norm)
    np.testing.assert_array_equal(again(imgs[2]), norm(imgs[2]))


def test_saved_statistics_are_used_not_recomputed():
    imgs = _images()
    norm = create_normalizer("zscore", per_image=False).fit(imgs[:1])
    again = Normalizer.from_dict(norm.to_dict())
    # the statistics of image 0 are applied to image 2 (not image 2's own statistics)
    np.testing.assert_array_equal(again(imgs[2]), norm(imgs[2]))
    assert abs(float(again(imgs[2]).mean())) > 1.0


def test_error_unknown_name_lists_valid():
    with pytest.raises(
        ConfigError, match="unknown normalization 'zscor'.*Did you mean 'zscore'.*Valid names"
    ):
        create_normalizer("zscor")


def test_error_unknown_parameter():
    with pytest.raises(ConfigError, match="has no option.*lowr.*valid options"):
        create_normalizer("percentile", lowr=2)


def test_error_percentile_bounds():
    with pytest.raises(ConfigError, match="0 <= lower < upper <= 100"):
        create_normalizer("percentile", lower=50, upper=10)


def test_error_fixed_needs_range():
    with pytest.raises(ConfigError, match="fixed normalisation needs low and high"):
        create_normalizer("fixed")
    with pytest.raises(ConfigError, match="need high > low"):
        create_normalizer("fixed", low=5, high=5)


def test_error_not_fitted():
    with pytest.raises(ConfigError, match="call fit"):
        create_normalizer("minmax", per_image=False)(np.zeros((1, 2, 2)))


def test_error_channel_mismatch():
    norm = create_normalizer("zscore", per_image=False).fit(_images(channels=2))
    with pytest.raises(ConfigError, match="2 values but the image has 3 channel"):
        norm(np.zeros((3, 4, 4), np.float32))


def test_error_fit_without_images():
    with pytest.raises(ConfigError, match="got no images"):
        create_normalizer("zscore", per_image=False).fit([])


def test_error_not_an_image():
    with pytest.raises(ConfigError, match=r"expects an image \(C, \*spatial\)"):
        create_normalizer("none")(np.zeros(5))


def test_error_bad_saved_dict():
    with pytest.raises(ConfigError, match="must be a dict with a 'name'"):
        Normalizer.from_dict({"params": {}})
    with pytest.raises(ConfigError, match="need 'mean' and 'std'"):
        Normalizer.from_dict(
            {"name": "zscore", "params": {"per_image": False}, "stats": {"mean": [1.0]}}
        )

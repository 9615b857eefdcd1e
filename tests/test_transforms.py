"""Augmentation: co-registration of image and labels, seeding, identity, geometry, elastic statistics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from unetkit.data.transforms import (
    DEFAULT_AUGMENTATION,
    Compose,
    RandomBrightnessContrast,
    RandomFlip,
    RandomGamma,
    RandomGaussianBlur,
    RandomGaussianNoise,
    RandomRot90,
    SpatialTransform,
    apply_coordinates,
    build_augmentation,
    dense_displacement,
    random_coarse_displacement,
)
from unetkit.errors import ConfigError

ALL_ON = {
    "flip": {"prob": 1.0},
    "rot90": {"prob": 1.0},
    "spatial": {"p_rotation": 1.0, "p_scale": 1.0, "p_shift": 1.0, "shift": 5.0, "p_elastic": 1.0},
    "gamma": {"prob": 1.0},
    "brightness_contrast": {"prob": 1.0},
    "blur": {"prob": 1.0},
    "noise": {"prob": 1.0},
}
ALL_OFF = {
    name: {k: 0.0 for k in params if k == "prob" or k.startswith("p_")}
    for name, params in DEFAULT_AUGMENTATION.items()
}


def blob_sample(shape=(96, 112), seed=0, classes=2):
    """A smooth image in [0, 1] whose mask is derivable from it: mask = image > 0.5 (or 3 levels)."""
    rng = np.random.default_rng(seed)
    img = np.zeros(shape)
    grids = np.indices(shape)
    for _ in range(5):
        centre = rng.uniform(0.2, 0.8, size=len(shape)) * shape
        r2 = sum((g - c) ** 2 for g, c in zip(grids, centre))
        img += np.exp(-r2 / (2 * (min(shape) / 7) ** 2))
    img = (img / img.max()).astype(np.float32)
    mask = (
        (img > 0.5).astype(np.int64)
        if classes == 2
        else np.digitize(img, [0.3, 0.6]).astype(np.int64)
    )
    return {
        "image": img[None],
        "mask": mask,
        "weight": img.copy(),
        "instances": mask * 7,
        "name": "blob",
    }


def agreement(sample):
    return float(np.mean((sample["image"][0] > 0.5) == (sample["mask"] > 0)))


SPATIAL = {
    "flip": RandomFlip(prob=1.0),
    "rot90": RandomRot90(prob=1.0),
    "rotation": SpatialTransform(rotation=40, p_rotation=1.0),
    "scale": SpatialTransform(scale=(0.7, 1.4), p_scale=1.0),
    "anisotropic_scale": SpatialTransform(scale=(0.7, 1.4), p_scale=1.0, isotropic_scale=False),
    "shift": SpatialTransform(shift=12.5, p_shift=1.0),
    "elastic": SpatialTransform(p_elastic=1.0),
    "elastic_cubic": SpatialTransform(p_elastic=1.0, elastic_sigma=15.0, image_order=3),
    "combined": SpatialTransform(p_rotation=1.0, p_scale=1.0, p_shift=1.0, shift=8, p_elastic=1.0),
}


@pytest.mark.parametrize("name", list(SPATIAL))
def test_spatial_transforms_keep_image_and_labels_aligned(name):
    t = SPATIAL[name]
    for seed in range(4):
        s = blob_sample(seed=seed)
        out = t(s, np.random.default_rng(seed))
        assert out["image"].shape == s["image"].shape and out["image"].dtype == np.float32
        assert agreement(out) >= 0.99, (name, seed, agreement(out))
        # weight (= image, order 1) and instances (= 7·mask, order 0) are moved exactly like image and mask
        if name != "elastic_cubic":
            np.testing.assert_array_equal(out["weight"], out["image"][0])
        np.testing.assert_array_equal(out["instances"], out["mask"] * 7)
        assert out["name"] == "blob"
    if name not in (
        "flip",
        "rot90",
    ):  # the transform moved something: the unmoved mask no longer fits
        assert not np.array_equal(out["mask"], s["mask"])
        assert agreement({"image": out["image"], "mask": s["mask"]}) < 0.99


def test_mask_dtype_and_values_stay_in_the_label_set():
    s = blob_sample(classes=3)
    assert set(np.unique(s["mask"])) == {0, 1, 2}
    aug = build_augmentation(ALL_ON, 2)
    for seed in range(5):
        out = aug(s, np.random.default_rng(seed))
        assert out["mask"].dtype == np.int64 and out["instances"].dtype == np.int64
        assert set(np.unique(out["mask"])) <= {0, 1, 2}
        assert out["weight"].dtype == np.float32


def test_same_seed_same_result_different_seed_different():
    s = blob_sample()
    aug = build_augmentation(ALL_ON, 2)
    a = aug(s, np.random.default_rng(123))
    b = aug(s, np.random.default_rng(123))
    c = aug(s, np.random.default_rng(124))
    for key in ("image", "mask", "weight", "instances"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["image"], c["image"])
    assert not np.array_equal(a["mask"], c["mask"])


def test_caller_arrays_are_untouched():
    s = blob_sample()
    before = {k: v.copy() for k, v in s.items() if isinstance(v, np.ndarray)}
    keys = set(s)
    aug = build_augmentation(ALL_ON, 2)
    for seed in range(3):
        out = aug(s, np.random.default_rng(seed))
        out["image"] += 1  # the result owns its arrays
        out["mask"][:] = 0
    assert set(s) == keys
    for k, v in before.items():
        np.testing.assert_array_equal(s[k], v)


def test_identity_settings_give_identity_exactly():
    s = blob_sample()
    t = SpatialTransform(
        rotation=(0, 0),
        p_rotation=1,
        scale=(1, 1),
        p_scale=1,
        shift=0,
        p_shift=1,
        elastic_sigma=0,
        p_elastic=1,
    )
    out = t(s, np.random.default_rng(0))
    for key in ("image", "mask", "weight", "instances"):
        np.testing.assert_array_equal(out[key], s[key])
    aug = build_augmentation(ALL_OFF, 2)
    assert len(aug) == len(DEFAULT_AUGMENTATION)
    out = aug(s, np.random.default_rng(0))
    for key in ("image", "mask", "weight", "instances"):
        np.testing.assert_array_equal(out[key], s[key])
    intensity_identity = Compose(
        [
            RandomGamma((1, 1), 1),
            RandomBrightnessContrast((1, 1), (1, 1), (0, 0), 1),
            RandomGaussianNoise((0, 0), 1),
            RandomGaussianBlur((0, 0), 1),
        ]
    )
    np.testing.assert_array_equal(
        intensity_identity(s, np.random.default_rng(0))["image"], s["image"]
    )


def test_resampling_at_the_pixel_grid_is_exact():
    s = blob_sample(shape=(20, 24))
    out = apply_coordinates(s, np.indices((20, 24)).astype(np.float64))
    for key in ("image", "mask", "weight", "instances"):
        np.testing.assert_array_equal(out[key], s[key])


def test_rotation_by_90_degrees_matches_rot90():
    img = np.random.default_rng(0).random((2, 17, 17)).astype(np.float32)
    out = SpatialTransform(rotation=(90, 90), p_rotation=1)(
        {"image": img}, np.random.default_rng(0)
    )
    candidates = [np.rot90(img, k, axes=(1, 2)) for k in (1, 3)]
    errors = [np.abs(out["image"] - c).max() for c in candidates]
    assert min(errors) < 1e-5, errors


def test_shift_is_a_pure_translation():
    img = np.random.default_rng(0).random((1, 30, 40)).astype(np.float32)
    t = SpatialTransform(shift=(3, 5), p_shift=1)
    coords = t.draw((30, 40), np.random.default_rng(7))
    shift = coords[:, 0, 0] - 0.0
    np.testing.assert_allclose(
        coords - np.indices((30, 40)), np.broadcast_to(shift[:, None, None], coords.shape)
    )
    assert abs(shift[0]) <= 3 and abs(shift[1]) <= 5 and np.all(shift != 0)
    out = t({"image": img}, np.random.default_rng(7))["image"]
    np.testing.assert_allclose(
        out[0], ndimage.shift(img[0], -shift, order=1, mode="mirror"), atol=1e-5
    )


def test_zoom_keeps_the_centre_and_magnifies():
    shape = (41, 41)
    img = np.zeros((1,) + shape, np.float32)
    img[0, 20, 20 + 4] = 1.0  # a dot 4 px right of the centre
    out = SpatialTransform(scale=(2, 2), p_scale=1)({"image": img}, np.random.default_rng(0))[
        "image"
    ][0]
    assert np.unravel_index(np.argmax(out), shape) == (20, 28)  # 8 px right of the centre


def test_rot90_non_square_keeps_shape():
    s = blob_sample(shape=(40, 56))
    for seed in range(4):
        out = RandomRot90(prob=1.0)(s, np.random.default_rng(seed))
        assert out["image"].shape == (1, 40, 56)
        np.testing.assert_array_equal(out["mask"], s["mask"][::-1, ::-1])


def test_3d_pipeline():
    s = blob_sample(shape=(20, 40, 36))
    aug = build_augmentation(ALL_ON, 3)
    geo = build_augmentation(
        {**ALL_ON, **{k: False for k in ("gamma", "brightness_contrast", "blur", "noise")}}, 3
    )
    for seed in range(2):
        out = aug(s, np.random.default_rng(seed))
        assert out["image"].shape == (1, 20, 40, 36) and out["mask"].shape == (20, 40, 36)
        assert out["mask"].dtype == np.int64
        g = geo(s, np.random.default_rng(seed))
        assert agreement(g) >= 0.99
        np.testing.assert_array_equal(g["instances"], g["mask"] * 7)
    # default rot90 plane in 3D is in-plane (1, 2): the slice axis never moves
    out = RandomRot90(prob=1.0)(s, np.random.default_rng(0))
    np.testing.assert_array_equal(out["mask"].sum(axis=(1, 2)), s["mask"].sum(axis=(1, 2)))


def test_3d_rotation_plane_choice():
    img = np.random.default_rng(0).random((1, 9, 9, 9)).astype(np.float32)
    out = SpatialTransform(rotation=(90, 90), p_rotation=1, planes=[(0, 1)])(
        {"image": img}, np.random.default_rng(0)
    )
    errors = [np.abs(out["image"] - np.rot90(img, k, axes=(1, 2))).max() for k in (1, 3)]
    assert min(errors) < 1e-5


def test_coarse_displacement_statistics():
    rng = np.random.default_rng(0)
    draws = np.stack([random_coarse_displacement(rng, 2) for _ in range(2000)])
    assert draws.shape == (2000, 2, 3, 3)
    assert abs(draws.std() - 10.0) < 0.2  # 36 000 values: relative standard error ≈ 0.4 %
    assert abs(draws.mean()) < 0.2
    per_axis = random_coarse_displacement(rng, 3, grid=(2, 3, 4), sigma=(0, 5, 5))
    assert per_axis.shape == (3, 2, 3, 4) and np.all(per_axis[0] == 0) and per_axis[1:].std() > 0


def test_dense_displacement_interpolates_the_coarse_grid():
    rng = np.random.default_rng(1)
    coarse = random_coarse_displacement(rng, 2)
    field = dense_displacement(coarse, (101, 61))
    assert field.shape == (2, 101, 61)
    # exact at the nodes (first, middle, last pixel of each axis)
    nodes = np.ix_([0, 50, 100], [0, 30, 60])
    np.testing.assert_allclose(field[(slice(None),) + nodes], coarse, atol=1e-10)
    # equals cubic-spline interpolation by map_coordinates on the coarse grid
    q = np.meshgrid(np.arange(101) * 2 / 100, np.arange(61) * 2 / 60, indexing="ij")
    ref = np.stack(
        [ndimage.map_coordinates(coarse[i], q, order=3, mode="mirror") for i in range(2)]
    )
    np.testing.assert_allclose(field, ref, atol=1e-10)
    # smooth: neighbouring pixels move by much less than a pixel
    assert np.abs(np.diff(field, axis=1)).max() < 2.0 and np.abs(np.diff(field, axis=2)).max() < 2.0


def test_intensity_transforms_formulas_and_image_only():
    s = blob_sample()
    x = s["image"]
    rng = np.random.default_rng(0)
    out = RandomGamma(gamma=(2, 2), prob=1)(s, rng)
    lo, hi = x.min(), x.max()
    np.testing.assert_allclose(
        out["image"], ((x - lo) / (hi - lo)) ** 2 * (hi - lo) + lo, rtol=1e-6
    )
    assert out["mask"] is s["mask"]
    out = RandomBrightnessContrast(
        contrast=(2, 2), multiplier=(0.5, 0.5), offset=(0.25, 0.25), prob=1
    )(s, rng)
    np.testing.assert_allclose(
        out["image"], ((x - x.mean()) * 2 + x.mean()) * 0.5 + 0.25, rtol=1e-5, atol=1e-6
    )
    out = RandomGaussianBlur(sigma=(1.5, 1.5), prob=1)(s, rng)
    np.testing.assert_allclose(
        out["image"][0], ndimage.gaussian_filter(x[0], 1.5, mode="mirror"), atol=1e-6
    )
    out = RandomGaussianNoise(std=(0.1, 0.1), prob=1)(s, rng)
    assert out["image"].dtype == np.float32
    assert abs(float((out["image"] - x).std()) - 0.1) < 0.005
    np.testing.assert_array_equal(out["mask"], s["mask"])


@pytest.mark.parametrize("per_channel", [False, True])
def test_brightness_contrast_per_channel_draws(per_channel):
    # a colour image: per channel, each channel gets its own (c, b, o), a shift of colour balance
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(3, 16, 16)) + np.array([0.0, 1.0, 2.0])[:, None, None]).astype(np.float32)
    t = RandomBrightnessContrast(
        contrast=(0.5, 1.5),
        multiplier=(0.5, 1.5),
        offset=(-0.5, 0.5),
        prob=1,
        per_channel=per_channel,
    )
    out = t({"image": x}, np.random.default_rng(7))["image"]
    # the same draws, in the same order, from an identical generator
    replay = np.random.default_rng(7)
    replay.random()
    n = 3 if per_channel else 1
    c, b, o = (replay.uniform(lo, hi, size=n) for lo, hi in ((0.5, 1.5), (0.5, 1.5), (-0.5, 0.5)))
    c, b, o = (np.broadcast_to(v, 3) for v in (c, b, o))
    assert out.dtype == np.float32
    for k in range(3):
        m = x[k].astype(np.float64).mean()
        np.testing.assert_allclose(
            out[k], ((x[k] - m) * c[k] + m) * b[k] + o[k], rtol=1e-5, atol=1e-5
        )
    # the gain of each channel about its mean: one value for all channels, or three different ones
    gains = [np.std(out[k]) / np.std(x[k]) for k in range(3)]
    assert len(set(np.round(gains, 4))) == (3 if per_channel else 1)


def test_brightness_contrast_per_channel_must_be_a_bool():
    with pytest.raises(ConfigError, match="per_channel must be true or false"):
        RandomBrightnessContrast(per_channel="yes")
    aug = build_augmentation({"brightness_contrast": {"per_channel": True}}, spatial_dims=2)
    (bc,) = [t for t in aug.transforms if isinstance(t, RandomBrightnessContrast)]
    assert bc.per_channel is True


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.float16])
def test_intensity_transforms_on_integer_and_half_images(dtype):
    # uint8 near the top of its range: a cast back would wrap 255 + x around or truncate the fraction
    x = np.array([[[250, 251], [252, 255]]]).astype(dtype)
    xf = x.astype(np.float64)
    want = np.float16 if dtype == np.float16 else np.float32
    s = {"image": x}
    rng = np.random.default_rng(0)
    out = RandomGamma(gamma=(2, 2), prob=1)(s, rng)["image"]
    assert out.dtype == want
    np.testing.assert_allclose(
        out, ((xf - 250) / 5) ** 2 * 5 + 250, rtol=1e-3
    )  # 250, 250.2, 250.8, 255
    out = RandomBrightnessContrast(contrast=(1, 1), multiplier=(1.1, 1.1), offset=(0, 0), prob=1)(
        s, rng
    )["image"]
    assert out.dtype == want and out.max() > 280  # 255 · 1.1 = 280.5, not wrapped to 24
    np.testing.assert_allclose(out, xf * 1.1, rtol=1e-3)
    out = RandomGaussianNoise(std=(0.5, 0.5), prob=1)(s, rng)["image"]
    assert out.dtype == want and np.any(out != np.round(out))  # not truncated to whole numbers
    assert np.abs(out - xf).max() < 5
    out = RandomGaussianBlur(sigma=(1, 1), prob=1)(s, rng)["image"]
    assert out.dtype == want
    np.testing.assert_allclose(
        out[0], ndimage.gaussian_filter(xf[0], 1.0, mode="mirror"), rtol=1e-3
    )
    out = SpatialTransform(rotation=(90, 90), p_rotation=1)(s, rng)[
        "image"
    ]  # resampling: same rule
    assert out.dtype == want
    assert (
        min(np.abs(out - np.rot90(xf, k, axes=(1, 2))).max() for k in (1, 3)) < 0.2
    )  # float16 rounding
    assert x[0, 1, 1] == 255  # the caller's array is untouched


def test_per_axis_elastic_sigma_keeps_3d_slices_in_place():
    img = np.random.default_rng(0).random((1, 4, 20, 20)).astype(np.float32)
    t = SpatialTransform(p_elastic=1.0, elastic_sigma=(0, 10, 10))
    coords = t.draw(img.shape[1:], np.random.default_rng(1))
    depth = np.arange(4, dtype=np.float64)[:, None, None]
    np.testing.assert_array_equal(
        coords[0], np.broadcast_to(depth, (4, 20, 20))
    )  # no move along depth
    assert np.abs(coords[1] - np.arange(20)[None, :, None]).max() > 1  # in-plane deformation
    default = SpatialTransform(p_elastic=1.0).draw(img.shape[1:], np.random.default_rng(1))
    assert np.abs(default[0] - depth).max() > 1  # the default sigma 10 moves along depth too
    aug = build_augmentation({"spatial": {"elastic_sigma": [0, 10, 10], "p_elastic": 1.0}}, 3)
    assert aug.transforms[2].elastic_sigma == [0, 10, 10]
    with pytest.raises(
        ConfigError,
        match=r"'spatial': elastic_sigma \(0, 10\) must be one number or one per "
        r"spatial axis \(3\)",
    ):
        build_augmentation({"spatial": {"elastic_sigma": (0, 10)}}, 3)


def test_probability_is_respected():
    s = {"image": np.zeros((1, 4, 4), np.float32)}
    t = RandomGaussianNoise(std=(1, 1), prob=0.3)
    rng = np.random.default_rng(0)
    hits = sum(not np.array_equal(t(s, rng)["image"], s["image"]) for _ in range(2000))
    assert abs(hits / 2000 - 0.3) < 0.04


def test_build_defaults_and_overrides():
    aug = build_augmentation(None, 2)
    assert [type(t).__name__ for t in aug.transforms] == [
        "RandomFlip",
        "RandomRot90",
        "SpatialTransform",
        "RandomGamma",
        "RandomBrightnessContrast",
        "RandomGaussianBlur",
        "RandomGaussianNoise",
    ]
    sp = aug.transforms[2]
    assert (
        sp.elastic_sigma == 10.0
        and sp.elastic_grid == 3
        and sp.p_elastic == 0.5
        and sp.image_order == 1
    )
    aug = build_augmentation({"spatial": {"p_elastic": 1.0, "image_order": 3}, "noise": False}, 2)
    assert (
        len(aug) == 6 and aug.transforms[2].p_elastic == 1.0 and aug.transforms[2].p_rotation == 0.2
    )
    assert len(build_augmentation(False, 3)) == 0


def test_error_unknown_augmentation():
    with pytest.raises(ConfigError, match="unknown augmentation.*'elastic'.*valid names: flip"):
        build_augmentation({"elastic": {}}, 2)


def test_error_unknown_parameter():
    with pytest.raises(ConfigError, match="augmentation 'spatial' has no parameter.*sigma.*valid:"):
        build_augmentation({"spatial": {"sigma": 3}}, 2)


def test_error_bad_probability():
    with pytest.raises(ConfigError, match=r"p_elastic must be in \[0, 1\]"):
        build_augmentation({"spatial": {"p_elastic": 2}}, 2)


def test_error_plane_beyond_dims():
    with pytest.raises(ConfigError, match="name an axis >= spatial_dims"):
        build_augmentation({"rot90": {"planes": [(0, 2)]}}, 2)


def test_error_spatial_dims():
    with pytest.raises(ConfigError, match="spatial_dims must be 2 or 3"):
        build_augmentation(None, 4)


def test_error_sample_dims_mismatch():
    with pytest.raises(ConfigError, match="built for 3D got a sample"):
        build_augmentation(None, 3)(blob_sample(), np.random.default_rng(0))


def test_error_bad_sample():
    with pytest.raises(ConfigError, match="must be a dict with an 'image'"):
        RandomFlip()({"mask": np.zeros((3, 3))}, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="'mask' has shape"):
        RandomFlip()(
            {"image": np.zeros((1, 4, 4)), "mask": np.zeros((4, 5))}, np.random.default_rng(0)
        )


def test_error_bad_ranges():
    with pytest.raises(ConfigError, match="scale must be > 0"):
        SpatialTransform(scale=(0, 1))
    with pytest.raises(ConfigError, match="low <= high"):
        RandomGamma(gamma=(2, 1))
    with pytest.raises(ConfigError, match="elastic_grid must be an integer >= 2"):
        SpatialTransform(elastic_grid=1)
    with pytest.raises(ConfigError, match="image_order must be 0, 1 or 3"):
        SpatialTransform(image_order=2)

"""Patch sampling: mirrored crops, label/input centring, foreground oversampling rate, padding, 3D."""

from __future__ import annotations

import numpy as np
import pytest

from unetkit.data.sampling import (
    PAD_MODE,
    PatchSampler,
    center_crop,
    crop_with_mirror,
    foreground_locations,
    mirror_indices,
)
from unetkit.errors import ConfigError


def coordinate_sample(shape):
    """Image channels hold each pixel's coordinates; the mask holds its flat index."""
    image = np.indices(shape).astype(np.float32)
    mask = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    return image, mask


def test_mirror_indices_by_hand():
    np.testing.assert_array_equal(mirror_indices(-3, 10, 4), [3, 2, 1, 0, 1, 2, 3, 2, 1, 0])
    np.testing.assert_array_equal(mirror_indices(-2, 4, 1), [0, 0, 0, 0])


@pytest.mark.parametrize(
    "shape,pad", [((5, 7), 2), ((5, 7), 13), ((4, 6, 3), 4), ((1, 6), 3), ((2, 3), 9)]
)
def test_mirrored_border_equals_np_pad_reflect(shape, pad):
    a = np.random.default_rng(0).random((3,) + shape)
    crop = crop_with_mirror(a, (-pad,) * len(shape), [n + 2 * pad for n in shape])
    np.testing.assert_array_equal(
        crop, np.pad(a, [(0, 0)] + [(pad, pad)] * len(shape), mode=PAD_MODE)
    )


def test_asymmetric_crop_equals_np_pad_slice():
    a = np.random.default_rng(1).random((9, 11))
    padded = np.pad(a, 20, mode="reflect")
    for start, size in [
        ((-5, 3), (10, 12)),
        ((4, 8), (12, 9)),
        ((-20, -20), (5, 5)),
        ((25, 26), (4, 4)),
    ]:
        expected = padded[
            start[0] + 20 : start[0] + 20 + size[0], start[1] + 20 : start[1] + 20 + size[1]
        ]
        np.testing.assert_array_equal(crop_with_mirror(a, start, size), expected)


def test_inside_crop_is_a_copy():
    a = np.arange(20.0).reshape(4, 5)
    crop = crop_with_mirror(a, (1, 1), (2, 3))
    np.testing.assert_array_equal(crop, a[1:3, 1:4])
    crop[:] = -1
    assert a.min() == 0


def test_label_and_input_crops_are_centred_on_each_other():
    shape = (64, 50)
    image, mask = coordinate_sample(shape)
    sampler = PatchSampler(label_size=(20, 16), input_size=(40, 44), fg_fraction=0.0)
    for seed in range(20):
        p = sampler.sample(image, mask, np.random.default_rng(seed))
        assert p["image"].shape == (2, 40, 44) and p["mask"].shape == (20, 16)
        ls, ins = np.array(p["label_start"]), np.array(p["input_start"])
        np.testing.assert_array_equal(ls - ins, [10, 14])
        # the label crop holds exactly the pixels whose coordinates sit at the centre of the input crop
        centre = p["image"][:, 10:30, 14:30]
        rows, cols = np.unravel_index(p["mask"], shape)
        np.testing.assert_array_equal(centre[0], rows)
        np.testing.assert_array_equal(centre[1], cols)
        # centres coincide: mean coordinate of the label crop == centre of the input crop region
        np.testing.assert_allclose([rows.mean(), cols.mean()], ins + (np.array([40, 44]) - 1) / 2)
        # the input's context outside the image is mirrored
        np.testing.assert_array_equal(p["image"], crop_with_mirror(image, ins, (40, 44)))


def test_full_context_then_crop_labels_equals_direct():
    image, mask = coordinate_sample((30, 34))
    weight = np.random.default_rng(0).random((30, 34)).astype(np.float32)
    sampler = PatchSampler(label_size=12, input_size=20, fg_fraction=0.5)
    for seed in range(5):
        direct = sampler.sample(image, mask, np.random.default_rng(seed), weight=weight)
        full = sampler.sample(
            image, mask, np.random.default_rng(seed), weight=weight, full_context=True
        )
        assert full["mask"].shape == (20, 20)
        cropped = sampler.crop_labels(full)
        for key in ("image", "mask", "weight"):
            np.testing.assert_array_equal(cropped[key], direct[key])


def test_label_region_stays_inside_a_large_enough_image():
    image, mask = coordinate_sample((40, 40))
    mask = (mask % 7 == 0).astype(np.int64)
    sampler = PatchSampler(label_size=16, input_size=32, fg_fraction=0.5)
    for seed in range(200):
        ls = sampler.sample(image, mask, np.random.default_rng(seed))["label_start"]
        assert all(0 <= s <= 40 - 16 for s in ls)


def test_foreground_oversampling_rate():
    shape, label = (64, 64), 16
    image = np.zeros((1,) + shape, np.float32)
    mask = np.zeros(shape, np.int64)
    fg = (40, 9)
    mask[fg] = 1
    sampler = PatchSampler(label_size=label, fg_fraction=0.33)
    rng = np.random.default_rng(0)
    n, contains, centred = 3000, 0, 0
    for _ in range(n):
        p = sampler.sample(image, mask, rng)
        r, c = (f - s for f, s in zip(fg, p["label_start"]))
        contains += bool(0 <= r < label and 0 <= c < label)
        centred += p["fg_centred"]
        if p["fg_centred"]:
            assert p["mask"].sum() == 1
    # uniform starts: 49 per axis; the pixel is covered by starts 25..40 (rows) and 0..9 (cols)
    p_uniform = (16 / 49) * (10 / 49)
    expected = 0.33 + 0.67 * p_uniform
    tol = 4 * np.sqrt(expected * (1 - expected) / n)
    assert abs(contains / n - expected) < tol
    assert abs(centred / n - 0.33) < 4 * np.sqrt(0.33 * 0.67 / n)


def test_fg_classes_oversample_class_zero_at_the_requested_rate():
    # ISBI-like: class 1 everywhere, a single pixel of class 0 (the membrane) to oversample
    shape, label = (64, 64), 16
    image = np.zeros((1,) + shape, np.float32)
    mask = np.ones(shape, np.int64)
    target = (40, 9)
    mask[target] = 0
    sampler = PatchSampler(label_size=label, fg_fraction=0.33, fg_classes=[0])
    rng = np.random.default_rng(0)
    n, contains, centred = 3000, 0, 0
    for _ in range(n):
        p = sampler.sample(image, mask, rng)
        contains += bool((p["mask"] == 0).any())
        centred += p["fg_centred"]
        if p["fg_centred"]:
            assert (p["mask"] == 0).sum() == 1
    p_uniform = (16 / 49) * (10 / 49)  # as in test_foreground_oversampling_rate
    expected = 0.33 + 0.67 * p_uniform
    assert abs(contains / n - expected) < 4 * np.sqrt(expected * (1 - expected) / n)
    assert abs(centred / n - 0.33) < 4 * np.sqrt(0.33 * 0.67 / n)
    # the precomputed locations give the same patches
    locs = foreground_locations(mask, classes=[0])
    assert list(locs) == [0] and locs[0].tolist() == [40 * 64 + 9]
    for seed in range(20):
        a = sampler.sample(image, mask, np.random.default_rng(seed))
        b = sampler.sample(image, mask, np.random.default_rng(seed), fg_locations=locs)
        assert a["label_start"] == b["label_start"]
    # default (every class > 0): the single class 1 covers everything, class 0 is rarely seen
    default = PatchSampler(label_size=label, fg_fraction=1.0)
    assert (
        np.mean([(default.sample(image, mask, rng)["mask"] == 0).any() for _ in range(300)]) < 0.2
    )


def test_class_mode_balances_rare_classes():
    shape = (80, 80)
    image = np.zeros((1,) + shape, np.float32)
    mask = np.zeros(shape, np.int64)
    mask[:20, :20] = 1  # common class, far from the rare pixel
    mask[70, 70] = 2  # rare class: one pixel
    rng = np.random.default_rng(0)
    by_class = PatchSampler(label_size=10, fg_fraction=1.0, fg_mode="class")
    rare = np.mean([(by_class.sample(image, mask, rng)["mask"] == 2).any() for _ in range(1000)])
    assert abs(rare - 0.5) < 0.07
    any_pixel = PatchSampler(label_size=10, fg_fraction=1.0, fg_mode="any")
    rare = np.mean([(any_pixel.sample(image, mask, rng)["mask"] == 2).any() for _ in range(1000)])
    assert rare < 0.01


def test_no_foreground_falls_back_to_uniform():
    image, _ = coordinate_sample((20, 20))
    p = PatchSampler(8, fg_fraction=1.0).sample(
        image, np.zeros((20, 20), np.int64), np.random.default_rng(0)
    )
    assert p["fg_centred"] is False and p["mask"].shape == (8, 8)


def test_deterministic_with_seed():
    image, mask = coordinate_sample((50, 60))
    mask = (mask % 11 == 0).astype(np.int64)
    sampler = PatchSampler(label_size=(12, 20), input_size=(20, 28))
    a = sampler.sample(image, mask, np.random.default_rng(5))
    b = sampler.sample(image, mask, np.random.default_rng(5))
    for key in ("image", "mask", "label_start", "fg_centred"):
        np.testing.assert_array_equal(a[key], b[key])
    starts = {
        sampler.sample(image, mask, np.random.default_rng(s))["label_start"] for s in range(10)
    }
    assert len(starts) > 5


def test_3d_centring():
    shape = (12, 20, 18)
    image, mask = coordinate_sample(shape)
    sampler = PatchSampler(label_size=(4, 8, 8), input_size=(8, 16, 12), fg_fraction=0.0)
    for seed in range(5):
        p = sampler.sample(image, mask, np.random.default_rng(seed))
        assert p["image"].shape == (3, 8, 16, 12) and p["mask"].shape == (4, 8, 8)
        idx = np.unravel_index(p["mask"], shape)
        for ax in range(3):
            np.testing.assert_array_equal(p["image"][ax, 2:6, 4:12, 2:10], idx[ax])


def test_image_smaller_than_patch_is_mirrored_by_default():
    image, mask = coordinate_sample((6, 9))
    p = PatchSampler(label_size=(10, 12), fg_fraction=0.0).sample(
        image, mask, np.random.default_rng(3)
    )
    ls = p["label_start"]
    assert ls[0] <= 0 and ls[0] + 10 >= 6 and ls[1] <= 0 and ls[1] + 12 >= 9
    np.testing.assert_array_equal(p["mask"], crop_with_mirror(mask, ls, (10, 12)))
    rows, cols = np.unravel_index(p["mask"], (6, 9))  # labels follow the mirrored image exactly
    np.testing.assert_array_equal(p["image"][0], rows)
    np.testing.assert_array_equal(p["image"][1], cols)


def test_mask_pad_value_marks_padding_and_zeroes_weights():
    image, mask = coordinate_sample((6, 9))
    weight = np.ones((6, 9), np.float32)
    sampler = PatchSampler(label_size=(10, 9), fg_fraction=0.0, mask_pad_value=-100)
    p = sampler.sample(image, mask, np.random.default_rng(0), weight=weight)
    r0 = -p["label_start"][0]
    inside = np.zeros((10, 9), bool)
    inside[r0 : r0 + 6] = True
    assert np.all(p["mask"][~inside] == -100) and np.all(p["weight"][~inside] == 0)
    np.testing.assert_array_equal(p["mask"][inside].reshape(6, 9), mask)
    np.testing.assert_array_equal(p["weight"][inside], 1)


def test_foreground_locations_by_hand():
    mask = np.array([[0, 2, 1], [1, 0, 2]])
    locs = foreground_locations(mask)
    assert list(locs) == [1, 2]
    np.testing.assert_array_equal(locs[1], [2, 3])
    np.testing.assert_array_equal(locs[2], [1, 5])
    assert foreground_locations(np.zeros((3, 3), int)) == {}
    assert len(foreground_locations(np.ones((10, 10), int), max_per_class=7)[1]) == 7


def test_center_crop():
    a = np.arange(36).reshape(6, 6)
    np.testing.assert_array_equal(center_crop(a, (2, 4)), a[2:4, 1:5])
    with pytest.raises(ConfigError, match="each difference must be even"):
        center_crop(a, (3, 3))


def test_error_input_smaller_than_label():
    with pytest.raises(ConfigError, match="must be >= label_size"):
        PatchSampler(label_size=64, input_size=32)


def test_error_odd_border():
    with pytest.raises(ConfigError, match="even difference"):
        PatchSampler(label_size=64, input_size=67)


def test_error_bad_size():
    with pytest.raises(ConfigError, match="label_size must be a positive integer"):
        PatchSampler(label_size=0)
    with pytest.raises(ConfigError, match=r"one per spatial axis \(2\)"):
        PatchSampler(label_size=(8, 8, 8)).sample(
            np.zeros((1, 9, 9)), np.zeros((9, 9), int), np.random.default_rng(0)
        )


def test_error_bad_fg_options():
    with pytest.raises(ConfigError, match=r"fg_fraction must be in \[0, 1\]"):
        PatchSampler(8, fg_fraction=1.5)
    with pytest.raises(ConfigError, match="fg_mode must be"):
        PatchSampler(8, fg_mode="rare")
    for bad in ([], [-1], [0.5]):
        with pytest.raises(
            ConfigError, match=r"fg_classes must be a non-empty list of class indices >= 0"
        ):
            PatchSampler(8, fg_classes=bad)
    assert PatchSampler(8, fg_classes=(2, 0, 2)).fg_classes == [0, 2]


def test_error_image_mask_mismatch():
    with pytest.raises(ConfigError, match=r"do not match: expected image \(C, \*spatial\)"):
        PatchSampler(8).sample(np.zeros((1, 9, 9)), np.zeros((9, 8), int), np.random.default_rng(0))
    with pytest.raises(ConfigError, match="weight has shape"):
        PatchSampler(8).sample(
            np.zeros((1, 9, 9)),
            np.zeros((9, 9), int),
            np.random.default_rng(0),
            weight=np.zeros((8, 9)),
        )

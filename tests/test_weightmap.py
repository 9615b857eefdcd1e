"""The U-Net border weight map: hand-computed values, brute-force equality, class weights, 3D."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from unetkit.data.weightmap import (
    border_weight_map,
    class_weight_map,
    instance_labels,
    two_nearest_distances,
)
from unetkit.errors import ConfigError


def two_rectangles():
    """20×30 mask: A = rows 5–14 × cols 3–9, B = rows 5–14 × cols 14–20, a 4-pixel gap (cols 10–13)."""
    mask = np.zeros((20, 30), np.int64)
    mask[5:15, 3:10] = 1
    mask[5:15, 14:21] = 1
    return mask


def term(d1, d2, w0=10.0, sigma=5.0):
    return w0 * math.exp(-((d1 + d2) ** 2) / (2 * sigma**2))


def brute_force(mask, instances, w0=10.0, sigma=5.0, spacing=None):
    """Per-object distance transform over the whole image, two smallest per pixel, balanced w_c."""
    ids = [i for i in np.unique(instances) if i > 0]
    w = np.zeros(mask.shape)
    classes, counts = np.unique(mask, return_counts=True)
    for c, n in zip(classes, counts):
        w[mask == c] = mask.size / (len(classes) * n)
    if len(ids) >= 2:
        d = np.sort(
            np.stack(
                [ndimage.distance_transform_edt(instances != i, sampling=spacing) for i in ids]
            ),
            axis=0,
        )
        bg = (instances == 0) & (mask == 0)
        w[bg] += w0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * sigma**2))[bg]
    return w


def test_hand_computed_values_two_rectangles():
    mask = two_rectangles()
    w = border_weight_map(mask)
    assert w.dtype == np.float32 and w.shape == mask.shape
    w_bg, w_fg = 600 / (2 * 460), 600 / (2 * 140)
    expected = {
        (10, 11): w_bg + term(2, 3),  # in the gap: 2 px from A, 3 px from B
        (10, 12): w_bg + term(3, 2),
        (2, 11): w_bg
        + term(math.sqrt(13), math.sqrt(18)),  # above the gap: to corners (5, 9) and (5, 14)
        (10, 1): w_bg + term(2, 13),  # left of A
        (10, 5): w_fg,  # inside A: no border term
        (12, 17): w_fg,
    }
    for (r, c), value in expected.items():
        assert w[r, c] == pytest.approx(value, rel=1e-6, abs=1e-6), (r, c)


def test_hand_values_agree_with_explicit_loops():
    mask = two_rectangles()
    w = border_weight_map(mask)
    objects = [np.argwhere(ndimage.label(mask)[0] == k) for k in (1, 2)]
    w_bg = 600 / (2 * 460)
    for r in range(0, 20, 3):
        for c in range(0, 30, 4):
            if mask[r, c]:
                continue
            d = sorted(min(math.hypot(r - y, c - x) for y, x in obj) for obj in objects)
            assert w[r, c] == pytest.approx(w_bg + term(d[0], d[1]), abs=2e-6), (r, c)


def test_spacing_scales_distances():
    mask = two_rectangles()
    w = border_weight_map(mask, spacing=(1.0, 2.0))
    assert w[10, 11] == pytest.approx(600 / 920 + term(4, 6), rel=1e-6)
    assert w[2, 11] == pytest.approx(
        600 / 920 + term(math.sqrt(9 + 16), math.sqrt(9 + 36)), rel=1e-6
    )


@pytest.mark.parametrize("seed", range(5))
def test_equals_brute_force_on_random_images(seed):
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random((48, 56)), 2.0)
    mask = (field > np.quantile(field, 0.7)).astype(np.int64)
    instances = ndimage.label(mask)[0]
    assert instances.max() >= 3
    ref = brute_force(mask, instances)
    np.testing.assert_allclose(border_weight_map(mask), ref, rtol=1e-6, atol=2e-6)
    np.testing.assert_allclose(border_weight_map(mask, tolerance=0), ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        border_weight_map(mask, sigma=2.0, w0=3.0, tolerance=1e-3),
        brute_force(mask, instances, w0=3.0, sigma=2.0),
        rtol=1e-6,
        atol=1e-3,
    )


def test_equals_brute_force_semantic_mask_and_anisotropic_3d():
    rng = np.random.default_rng(7)
    field = ndimage.gaussian_filter(rng.random((10, 24, 20)), 1.5)
    mask = np.digitize(field, np.quantile(field, [0.6, 0.8])).astype(np.int64)  # classes 0, 1, 2
    inst = instance_labels(mask)
    # components are labelled class by class: no object mixes classes
    for k in range(1, inst.max() + 1):
        assert len(np.unique(mask[inst == k])) == 1
    ref = brute_force(mask, inst, spacing=(2.0, 1.0, 1.0))
    np.testing.assert_allclose(
        border_weight_map(mask, spacing=(2.0, 1.0, 1.0)), ref, rtol=1e-6, atol=2e-6
    )


def test_3d_exact_tiny_case():
    mask = np.zeros((4, 5, 10), np.int64)
    mask[1:3, 1:4, 1:3] = 1  # A: 2×3×2 box
    mask[1:3, 1:4, 6:8] = 1  # B: 2×3×2 box, gap along the last axis (cols 3–5)
    w = border_weight_map(mask)
    w_bg, w_fg = 200 / (2 * 176), 200 / (2 * 24)
    assert w[1, 2, 4] == pytest.approx(w_bg + term(2, 2), rel=1e-6)
    assert w[0, 0, 4] == pytest.approx(w_bg + term(math.sqrt(6), math.sqrt(6)), rel=1e-6)
    assert w[2, 3, 7] == pytest.approx(w_fg, rel=1e-6)


def test_no_border_term_with_one_object_or_none():
    mask = np.zeros((20, 20), np.int64)
    np.testing.assert_array_equal(border_weight_map(mask), np.ones((20, 20), np.float32))
    mask[5:10, 5:12] = 1
    np.testing.assert_array_equal(border_weight_map(mask), class_weight_map(mask))


def test_touching_objects_need_instances():
    mask = np.zeros((20, 20), np.int64)
    mask[5:15, 3:10] = 1
    mask[5:15, 10:17] = 1  # touches the first box: one connected component
    np.testing.assert_array_equal(border_weight_map(mask), class_weight_map(mask))
    instances = np.zeros_like(mask)
    instances[5:15, 3:10] = 1
    instances[5:15, 10:17] = 2
    w = border_weight_map(mask, instances=instances)
    # 2 px above the junction: d1 = 2 (to (5, 9) or (5, 10)), d2 = sqrt(4 + 1)
    assert w[3, 9] == pytest.approx(class_weight_map(mask)[3, 9] + term(2, math.sqrt(5)), rel=1e-6)
    assert np.all(w[mask > 0] == class_weight_map(mask)[mask > 0])


def test_sparse_instance_ids_give_the_same_map():
    mask = two_rectangles()
    inst = ndimage.label(mask)[0]
    sparse = np.where(inst == 1, 1_000_000, np.where(inst == 2, 5, 0))
    np.testing.assert_array_equal(
        border_weight_map(mask, instances=sparse), border_weight_map(mask, instances=inst)
    )


def test_two_nearest_distances_by_hand():
    inst = np.zeros((1, 9), np.int64)
    inst[0, 0], inst[0, 4], inst[0, 8] = 1, 2, 3
    d1, d2 = two_nearest_distances(inst)
    np.testing.assert_array_equal(d1[0], [0, 1, 2, 1, 0, 1, 2, 1, 0])
    np.testing.assert_array_equal(d2[0], [4, 3, 2, 3, 4, 3, 2, 3, 4])


def test_balanced_class_weights_on_a_known_ratio():
    mask = np.zeros((10, 10), np.int64)
    mask[:2] = 1  # 20 % foreground
    w = class_weight_map(mask)
    assert set(np.unique(w)) == {np.float32(0.625), np.float32(2.5)}
    assert w.mean() == pytest.approx(1.0)
    three = np.zeros((10, 10), np.int64)
    three[:5], three[5:9] = 1, 2  # 10 % / 50 % / 40 %
    w = class_weight_map(three)
    np.testing.assert_allclose(
        [w[9, 0], w[0, 0], w[5, 0]], [100 / 30, 100 / 150, 100 / 120], rtol=1e-6
    )
    assert w.mean() == pytest.approx(1.0)


def test_class_weights_none_and_sequence():
    mask = two_rectangles()
    np.testing.assert_array_equal(class_weight_map(mask, None), np.ones(mask.shape, np.float32))
    w = border_weight_map(mask, class_weights=[0.5, 3.0])
    assert w[10, 5] == pytest.approx(3.0) and w[10, 11] == pytest.approx(0.5 + term(2, 3), rel=1e-6)


def test_negative_mask_values_are_ignored():
    mask = two_rectangles()
    mask[0, :] = -1
    w = border_weight_map(mask)
    assert np.all(w[0] == 0)
    n_bg, n_fg = 600 - 30 - 140, 140
    assert w[10, 5] == pytest.approx(570 / (2 * n_fg), rel=1e-6)
    assert w[19, 0] == pytest.approx(
        570 / (2 * n_bg) + term(math.sqrt(25 + 9), math.sqrt(25 + 196)), rel=1e-6
    )


def test_error_float_mask():
    with pytest.raises(ConfigError, match="mask must hold integer class indices"):
        border_weight_map(np.zeros((4, 4), np.float32))


def test_error_bad_parameters():
    mask = two_rectangles()
    with pytest.raises(ConfigError, match="sigma must be > 0"):
        border_weight_map(mask, sigma=0)
    with pytest.raises(ConfigError, match="w0 must be a number >= 0"):
        border_weight_map(mask, w0=-1)
    with pytest.raises(ConfigError, match="class_weights must be 'balanced', None or a list"):
        border_weight_map(mask, class_weights="median")
    with pytest.raises(
        ConfigError, match="class_weights has 1 entries but the mask contains class 1"
    ):
        border_weight_map(mask, class_weights=[1.0])
    with pytest.raises(
        ConfigError, match=r"spacing needs 2 value\(s\), one per spatial axis; got \[1, 1, 1\]"
    ):
        border_weight_map(mask, spacing=(1, 1, 1))


def test_error_instances_shape():
    with pytest.raises(ConfigError, match="instances must be an integer array of the mask's shape"):
        border_weight_map(two_rectangles(), instances=np.zeros((20, 29), np.int64))

"""``io.display``: the one grey-value stretch (percentiles 1 and 99.5) and the label drawing helpers."""

from __future__ import annotations

import numpy as np
import pytest

from unetkit.io.display import (
    LOWER_PERCENTILE,
    UPPER_PERCENTILE,
    colour_labels,
    outlines,
    stretch,
    to_display_rgb,
)


def test_stretch_maps_the_percentiles_to_black_and_white():
    assert (LOWER_PERCENTILE, UPPER_PERCENTILE) == (1.0, 99.5)
    rng = np.random.default_rng(0)
    img = rng.normal(100, 10, (1, 40, 50))
    img[0, 0, :5] = 1e6  # hot pixels do not grey out the picture
    lo, hi = np.percentile(img.astype(np.float32), [1, 99.5])
    rgb = stretch(img)
    assert rgb.shape == (40, 50, 3) and rgb.dtype.kind == "f"
    assert np.array_equal(rgb[..., 0], rgb[..., 2])  # grey → RGB
    expected = np.clip((img[0].astype(np.float32) - lo) / (hi - lo), 0, 1)
    np.testing.assert_allclose(rgb[..., 1], expected, atol=1e-6)
    assert (rgb[img[0] <= lo] == 0).all() and (rgb[img[0] >= hi] == 1).all()


def test_grey_2d_equals_one_channel_and_rgb_keeps_three_channels():
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 4096, (30, 20)).astype(np.uint16)
    assert np.array_equal(to_display_rgb(grey), to_display_rgb(grey[None]))
    assert np.array_equal(to_display_rgb(np.stack([grey, grey * 2])), to_display_rgb(grey))
    rgba = rng.random((4, 30, 20))
    out = to_display_rgb(rgba)
    assert out.shape == (30, 20, 3) and out.dtype == np.uint8
    assert np.array_equal(out, to_display_rgb(rgba[:3]))  # alpha is not shown


def test_to_display_rgb_truncates_and_a_constant_image_is_black():
    img = np.linspace(0, 1, 200).reshape(1, 10, 20)
    out = to_display_rgb(img)
    assert out.min() == 0 and out.max() == 255
    assert np.array_equal(out, (stretch(img) * 255).astype(np.uint8))
    assert not to_display_rgb(np.full((1, 5, 5), 7.0)).any()
    # other percentiles on request
    assert (
        to_display_rgb(img, 0, 100)[0, 0, 0] == 0 and to_display_rgb(img, 0, 100)[-1, -1, 0] == 255
    )


def test_colour_labels_are_seeded_bright_with_a_black_background():
    labels = np.array([[0, 1, 1], [2, 2, 0], [3, 0, 0]])
    a, b = colour_labels(labels, 1), colour_labels(labels, 1)
    assert a.shape == (3, 3, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert not a[labels == 0].any() and (a[labels > 0] >= 60).all()
    assert np.array_equal(a[0, 1], a[0, 2])  # one colour per id
    assert not np.array_equal(colour_labels(labels, 2), a)


@pytest.mark.parametrize("shape", [(7, 9), (5, 7, 9)])
def test_outlines_are_the_inner_boundary(shape):
    labels = np.zeros(shape, int)
    labels[(Ellipsis, slice(1, 6), slice(1, 4))] = 1
    labels[(Ellipsis, slice(1, 6), slice(4, 8))] = 2
    edge = outlines(labels)
    assert edge.dtype == bool and not edge[labels == 0].any()
    mid = edge[(shape[0] // 2,) if len(shape) == 3 else ()]
    lab = labels[(shape[0] // 2,) if len(shape) == 3 else ()]
    assert mid[3, 3] and mid[3, 4]  # both sides of the line between 1 and 2
    assert not mid[3, 2] and lab[3, 2] == 1  # the inside of 1 is not an outline

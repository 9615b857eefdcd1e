"""Tiling maths: grids, mirror padding, blend weights, stitching, tiled prediction.

The prediction tests use functions whose whole-image output is known (MONAI's ``x + 1`` trick):
the stitched result must equal it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from unetkit.errors import ConfigError
from unetkit.inference import (
    Stitcher,
    choose_overlap_tile,
    constant_weights,
    gaussian_weights,
    mirror_indices,
    mirror_pad,
    overlap_tile_grid,
    predict_overlap_tile,
    predict_tiled,
    sliding_window_grid,
    tile_alignment,
    tile_starts,
)
from unetkit.models import create_model
from unetkit.models.geometry import SizeRule, size_rule_of


def plus_one(x: torch.Tensor) -> torch.Tensor:
    return x + 1


def conv_fn(weight: torch.Tensor, padding: int = 0):
    """A fixed convolution (2D or 3D by the weight's rank) as a tile function."""
    conv = F.conv2d if weight.dim() == 4 else F.conv3d
    return lambda x: conv(x, weight, padding=padding)


def valid_stack(w1: torch.Tensor, w2: torch.Tensor):
    """Two 3×3 valid convolutions with a ReLU: a "valid net" losing 2 pixels per side."""
    return lambda x: F.conv2d(torch.relu(F.conv2d(x, w1)), w2)


def coverage(shape, slices_list):
    count = np.zeros(shape, dtype=np.int64)
    for sl in slices_list:
        count[sl] += 1
    return count


# -- tile_starts --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "n, t, s, expected",
    [
        (10, 4, 4, [0, 4, 6]),
        (8, 4, 4, [0, 4]),
        (9, 8, 4, [0, 1]),
        (8, 8, 4, [0]),
        (3, 8, 4, [0]),  # image smaller than the tile: one tile, padded
        (7, 3, 1, [0, 1, 2, 3, 4]),
        (10, 4, 3, [0, 3, 6]),  # 6 + 4 == 10: the flush tile is not duplicated
    ],
)
def test_tile_starts_hand_cases(n, t, s, expected):
    assert tile_starts(n, t, s) == expected


def test_tile_starts_cover_every_pixel_without_duplicates():
    for n in range(1, 40):
        for t in range(1, 12):
            for s in range(1, t + 1):
                starts = tile_starts(n, t, s)
                assert starts == sorted(set(starts))
                assert starts[0] == 0 and starts[-1] + t == max(n, t)
                covered = np.zeros(max(n, t), bool)
                for a in starts:
                    covered[a : a + t] = True
                assert covered.all()
                assert all(b - a <= s for a, b in zip(starts, starts[1:]))


def test_tile_starts_rejects_gapping_step():
    with pytest.raises(ConfigError, match="larger step leaves gaps"):
        tile_starts(10, 4, 5)


def test_tile_starts_rejects_empty_sizes():
    with pytest.raises(ConfigError, match="must be ≥ 1"):
        tile_starts(0, 4, 2)


# -- sliding_window_grid ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "shape, tile, overlap",
    [
        ((37, 23), 8, 0.5),
        ((37, 23), (5, 7), 0.25),
        ((16, 16), 8, 0.0),
        ((9, 10, 11), (4, 8, 6), 0.5),
    ],
)
def test_sliding_window_grid_covers_image(shape, tile, overlap):
    grid = sliding_window_grid(shape, tile, overlap)
    tiles = (tile,) * len(shape) if isinstance(tile, int) else tile
    for sl in grid:
        assert all(
            s.start >= 0 and s.stop <= n and s.stop - s.start == t
            for s, n, t in zip(sl, shape, tiles)
        )
    assert len({tuple((x.start, x.stop) for x in sl) for sl in grid}) == len(grid)
    count = coverage(shape, grid)
    assert count.min() >= 1
    if overlap == 0.0 and all(n % t == 0 for n, t in zip(shape, tiles)):
        assert count.max() == 1


def test_sliding_window_grid_count_and_step():
    grid = sliding_window_grid((37, 23), 8, 0.5)  # step 4: 0,4,...,28,29 and 0,4,...,12,15
    assert len(grid) == 9 * 5
    assert grid[0] == (slice(0, 8), slice(0, 8)) and grid[-1] == (slice(29, 37), slice(15, 23))


def test_sliding_window_grid_small_image_gives_one_padded_tile():
    assert sliding_window_grid((5, 20), 8, 0.5) == [
        (slice(0, 8), slice(s, s + 8)) for s in (0, 4, 8, 12)
    ]


def test_sliding_window_grid_rejects_bad_overlap():
    with pytest.raises(ConfigError, match="overlap must be in"):
        sliding_window_grid((10, 10), 4, 1.0)


def test_tile_shape_length_is_checked():
    with pytest.raises(ConfigError, match="tile_shape needs 2 value"):
        sliding_window_grid((10, 10), (4, 4, 4))


# -- overlap_tile_grid --------------------------------------------------------------------------
def test_overlap_tile_grid_hand_case_1d():
    g = overlap_tile_grid((10,), 4, [(1, 2)])
    assert g.pad_before == (1,) and g.pad_after == (2,)
    assert [t.input for t in g.tiles] == [(slice(0, 7),), (slice(4, 11),), (slice(6, 13),)]
    assert [t.output for t in g.tiles] == [(slice(0, 4),), (slice(4, 8),), (slice(8, 10),)]
    assert [t.crop for t in g.tiles] == [
        (slice(0, 4),),
        (slice(0, 4),),
        (slice(2, 4),),
    ]  # flush tile cropped


def test_overlap_tile_grid_aligned_hand_case():
    g = overlap_tile_grid((11,), 6, 3, align=4)  # step 4: starts 0, 4, 8; last reaches 14
    assert [t.input[0].start for t in g.tiles] == [0, 4, 8]
    assert [t.output for t in g.tiles] == [(slice(0, 6),), (slice(6, 10),), (slice(10, 11),)]
    assert [t.crop for t in g.tiles] == [(slice(0, 6),), (slice(2, 6),), (slice(2, 3),)]
    assert g.pad_before == (3,) and g.pad_after == (3 + 3,)


@pytest.mark.parametrize(
    "shape, out, border, align",
    [
        ((23, 31), 8, 2, 1),
        ((23, 31), (8, 5), ((1, 2), (0, 3)), 1),
        ((50, 70), 8, 20, 4),
        ((5, 6), 8, 3, 1),
        ((7, 9, 10), (4, 3, 8), (1, (2, 1), 0), 1),
        ((3000, 7), 8, 1, 1),
        ((29, 13), 12, 2, 8),
    ],
)
def test_overlap_tile_outputs_partition_the_image(shape, out, border, align):
    g = overlap_tile_grid(shape, out, border, align)
    count = coverage(shape, [t.output for t in g.tiles])
    assert (count == 1).all()
    padded = tuple(n + b + a for n, b, a in zip(shape, g.pad_before, g.pad_after))
    outs = (out,) * len(shape) if isinstance(out, int) else out
    aligns = (align,) * len(shape)
    for t in g.tiles:
        for i, o, c, p, ot, al in zip(t.input, t.output, t.crop, padded, outs, aligns):
            assert c.stop - c.start == o.stop - o.start and c.start >= 0 and c.stop <= ot
            assert (
                i.start == o.start - c.start
            )  # the input tile starts where its output tile does (padded frame)
            assert i.start % al == 0
            assert i.start >= 0 and i.stop <= p


def test_overlap_tile_input_size_is_out_plus_border():
    g = overlap_tile_grid((23, 31), (8, 5), ((1, 2), (0, 3)))
    assert {tuple(s.stop - s.start for s in t.input) for t in g.tiles} == {(11, 8)}


def test_overlap_tile_grid_rejects_tile_smaller_than_align():
    with pytest.raises(ConfigError, match="smaller than align"):
        overlap_tile_grid((40,), 4, 10, align=16)


def test_overlap_tile_grid_rejects_bad_border_entry():
    with pytest.raises(ConfigError, match=r"\(before, after\) pair"):
        overlap_tile_grid((40, 40), 4, [(1, 2, 3), 1])


def test_negative_border_is_rejected():
    with pytest.raises(ConfigError, match="border values must be ≥ 0"):
        overlap_tile_grid((40,), 4, -1)


# -- mirror_pad ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["reflect", "symmetric"])
def test_mirror_pad_equals_np_pad_for_small_pads(mode):
    img = np.random.rand(2, 9, 11, 7)
    got = mirror_pad(img, (3, 0, 6), (8, 2, 1), mode)
    np.testing.assert_array_equal(got, np.pad(img, [(0, 0), (3, 8), (0, 2), (6, 1)], mode))


def test_mirror_pad_large_pad_hand_case():
    np.testing.assert_array_equal(
        mirror_pad(np.array([1, 2, 3]), 5, 6), [2, 1, 2, 3, 2, 1, 2, 3, 2, 1, 2, 3, 2, 1]
    )
    np.testing.assert_array_equal(
        mirror_pad(np.array([1, 2, 3]), 4, 4, "symmetric"), [3, 3, 2, 1, 1, 2, 3, 3, 2, 1, 1]
    )
    np.testing.assert_array_equal(
        mirror_pad(np.array([[7]]), 2, 1), np.full((4, 4), 7)
    )  # size 1: repeat


def test_mirror_pad_larger_than_image_equals_iterated_reflection():
    img = np.arange(6.0).reshape(1, 2, 3)
    got = mirror_pad(img, (7, 5), (4, 9))
    ref = img  # independent: reflect by at most size − 1 pixels per step, growing the array
    for axis, (b, a) in ((1, (7, 4)), (2, (5, 9))):
        while b or a:
            n = ref.shape[axis] - 1
            pb, pa = min(b, n), min(a, n)
            widths = [(0, 0)] * 3
            widths[axis] = (pb, pa)
            ref = np.pad(ref, widths, "reflect")
            b, a = b - pb, a - pa
    np.testing.assert_array_equal(got, ref)
    assert got.shape == (1, 13, 17) and set(np.unique(got)) <= set(img.ravel())


def test_mirror_pad_returns_a_copy_and_pads_last_axes_only():
    img = np.zeros((3, 4, 5))
    out = mirror_pad(img, 0, 0)
    out[...] = 1
    assert img.sum() == 0
    assert mirror_pad(img, [1], [2]).shape == (3, 4, 8)


def test_mirror_indices_rejects_unknown_mode():
    with pytest.raises(ConfigError, match="mirror mode must be one of"):
        mirror_indices(5, 1, 1, "wrap")


@pytest.mark.parametrize("mode", ["reflect", "symmetric"])
def test_inference_and_training_mirror_indices_are_one_fold(mode):
    from unetkit.data.sampling import mirror_indices as patch_indices

    for n in (1, 2, 5, 8):
        for before, after in ((0, 0), (3, 1), (2, 17), (19, 4)):
            tile = mirror_indices(n, before, after, mode)
            np.testing.assert_array_equal(tile, patch_indices(-before, n + before + after, n, mode))
            np.testing.assert_array_equal(
                np.arange(n)[tile], np.pad(np.arange(n), (before, after), mode=mode)
            )


@pytest.mark.parametrize(
    "shape,out,border,align",
    [
        ((37, 50), 8, 10, 1),
        ((5, 9), (4, 6), ((3, 4), (7, 2)), 1),
        ((1, 12), 6, 5, 4),
        ((9, 7, 6), 4, 3, 2),
    ],
)
def test_inference_tiles_mirror_exactly_as_training_patches(shape, out, border, align):
    """Each overlap-tile input tile (mirror-padded image, as predict) equals the training patch
    (``crop_with_mirror``, as the patch sampler) cut at the same place, context beyond the image included."""
    from unetkit.data.sampling import crop_with_mirror

    image = np.random.default_rng(3).random((2, *shape)).astype(np.float32)
    grid = overlap_tile_grid(shape, out, border, align)
    padded = mirror_pad(image, grid.pad_before, grid.pad_after)
    for t in grid.tiles:
        start = [s.start - b for s, b in zip(t.input, grid.pad_before)]
        size = [s.stop - s.start for s in t.input]
        np.testing.assert_array_equal(
            padded[(slice(None), *t.input)], crop_with_mirror(image, start, size)
        )


def test_mirror_pad_rejects_too_many_axes():
    with pytest.raises(ConfigError, match="3 padded axes requested"):
        mirror_pad(np.zeros((4, 4)), (1, 1, 1), (1, 1, 1))


# -- blend weights ------------------------------------------------------------------------------
def test_gaussian_weights_hand_values_1d():
    w = gaussian_weights((5,), sigma_scale=0.125)  # σ = 0.625, 2σ² = 0.78125
    np.testing.assert_allclose(w, np.exp(-np.array([4, 1, 0, 1, 4]) / 0.78125), rtol=1e-6)


def test_gaussian_weights_match_filtered_delta_and_are_separable():
    w = gaussian_weights((9, 13), sigma_scale=(0.25, 0.125), min_weight=1e-9)
    delta = np.zeros((9, 13))
    delta[4, 6] = 1
    ref = ndimage.gaussian_filter(delta, sigma=(9 * 0.25, 13 * 0.125), mode="constant", truncate=20)
    np.testing.assert_allclose(w, ref / ref.max(), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(w, np.outer(w[:, 6], w[4, :]), rtol=1e-6)


def test_gaussian_weights_even_tile_symmetric_and_clamped():
    w = gaussian_weights((32, 32, 32), min_weight=1e-3)  # corner: exp(-3·15.5²/32) ≪ 1e-3
    assert w.dtype == np.float32 and w.shape == (32, 32, 32)
    np.testing.assert_array_equal(w, w[::-1, ::-1, ::-1])
    assert w.max() == 1.0 and (w == 1.0).sum() == 8  # the 2×2×2 centre pixels, each ±0.5 off-centre
    assert w.min() == pytest.approx(1e-3) and w[0, 0, 0] == pytest.approx(1e-3)


def test_gaussian_weights_rejects_zero_min_weight():
    with pytest.raises(ConfigError, match="min_weight must be in"):
        gaussian_weights(8, min_weight=0)


def test_gaussian_weights_rejects_bad_sigma_scale():
    with pytest.raises(ConfigError, match="sigma_scale must be > 0"):
        gaussian_weights(8, sigma_scale=0)


def test_constant_weights():
    np.testing.assert_array_equal(constant_weights(3, ndim=3), np.ones((3, 3, 3), np.float32))


# -- Stitcher -----------------------------------------------------------------------------------
def test_stitcher_weighted_average_hand_case():
    st = Stitcher((1, 4))
    st.add(np.ones((1, 3)), (slice(0, 3),), weights=np.array([1.0, 1.0, 3.0]))
    st.add(5 * np.ones((1, 3)), (slice(1, 4),), weights=np.array([1.0, 1.0, 1.0]))
    # pixel 1: (1·1 + 5·1)/2 = 3; pixel 2: (1·3 + 5·1)/4 = 2
    np.testing.assert_allclose(st.result(), [[1.0, 3.0, 2.0, 5.0]])


def test_stitcher_clips_tiles_reaching_past_the_ends():
    st = Stitcher((2, 3, 3))
    tile = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    st.add(tile, (slice(-1, 3), slice(1, 5)))
    st.add(np.zeros((2, 3, 1)), (slice(0, 3), slice(0, 1)))
    np.testing.assert_array_equal(st.result()[:, :, 1:], tile[:, 1:, :2])


def test_stitcher_reports_uncovered_pixels():
    st = Stitcher((1, 4, 5))
    st.add(np.ones((1, 4, 3)), (slice(0, 4), slice(0, 3)))
    with pytest.raises(
        ConfigError, match=r"8 of 20 pixels received no weight \(first at \(0, 3\)\)"
    ):
        st.result()


def test_stitcher_zero_weights_count_as_uncovered():
    st = Stitcher((1, 3))
    st.add(np.ones((1, 3)), (slice(0, 3),), weights=np.array([1.0, 0.0, 1.0]))
    with pytest.raises(ConfigError, match="1 of 3 pixels received no weight"):
        st.result()


def _fill(st: Stitcher) -> None:
    rng = np.random.default_rng(1)
    for sl in sliding_window_grid((130, 9), 8, 0.5):
        st.add(rng.random((3, 8, 8)), sl, gaussian_weights(8))


def test_stitcher_memmap_and_torch_buffers_match_numpy(tmp_path):
    ref = Stitcher((3, 130, 9))
    _fill(ref)
    expected = ref.result().copy()
    mm = np.lib.format.open_memmap(
        tmp_path / "out.npy", mode="w+", dtype=np.float32, shape=(3, 130, 9)
    )
    wm = np.lib.format.open_memmap(tmp_path / "w.npy", mode="w+", dtype=np.float32, shape=(130, 9))
    st = Stitcher((3, 130, 9), out=mm, weight_out=wm)
    _fill(st)
    assert st.result(chunk=7) is mm
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)
    tt = Stitcher(
        (3, 130, 9), out=torch.full((3, 130, 9), 9.0)
    )  # supplied buffers are zeroed first
    _fill(tt)
    np.testing.assert_allclose(tt.result().numpy(), expected, rtol=1e-6)
    assert tt.result() is tt.out  # a second call does not divide again
    np.testing.assert_allclose(tt.out.numpy(), expected, rtol=1e-6)


def test_stitcher_rejects_wrong_buffer_shape():
    with pytest.raises(ConfigError, match=r"out has shape \(2, 4\), expected \(1, 4\)"):
        Stitcher((1, 4), out=np.zeros((2, 4)))


def test_stitcher_rejects_tile_of_wrong_channels():
    with pytest.raises(ConfigError, match="does not fit a result of shape"):
        Stitcher((2, 4)).add(np.ones((3, 2)), (slice(0, 2),))


def test_stitcher_rejects_slices_of_wrong_length():
    with pytest.raises(ConfigError, match="do not match the tile's spatial shape"):
        Stitcher((1, 4)).add(np.ones((1, 2)), (slice(0, 3),))


def test_stitcher_rejects_weights_of_wrong_shape():
    with pytest.raises(ConfigError, match="weights of shape"):
        Stitcher((1, 4)).add(np.ones((1, 2)), (slice(0, 2),), np.ones(3))


def test_stitcher_rejects_add_after_result():
    st = Stitcher((1, 2))
    st.add(np.ones((1, 2)), (slice(0, 2),))
    st.result()
    with pytest.raises(ConfigError, match="already called"):
        st.add(np.ones((1, 2)), (slice(0, 2),))


# -- predict_tiled (same-padding) -------------------------------------------------------------
@pytest.mark.parametrize(
    "shape, tile, overlap, mode",
    [
        ((2, 37, 53), 16, 0.5, "gaussian"),
        ((2, 37, 53), (8, 12), 0.25, "constant"),
        ((1, 5, 7), 16, 0.5, "gaussian"),  # smaller than a tile
        ((1, 40, 3), (16, 8), 0.75, "gaussian"),  # smaller along one axis only
        ((2, 9, 10, 11), (4, 8, 6), 0.5, "gaussian"),  # 3D
        ((1, 9, 10, 11), 16, 0.5, "constant"),  # 3D smaller than a tile
    ],
)
def test_predict_tiled_plus_one_is_exact(shape, tile, overlap, mode):
    img = np.random.rand(*shape).astype(np.float32)
    got = predict_tiled(plus_one, img, tile, overlap, mode=mode, batch_size=3)
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_allclose(got, img + 1, rtol=0, atol=1e-6)


def test_predict_tiled_zero_padding_of_small_images_is_cropped():
    img = np.random.rand(1, 5, 7).astype(np.float32)
    np.testing.assert_allclose(
        predict_tiled(plus_one, img, 16, pad_mode="constant"), img + 1, atol=1e-6
    )


def test_predict_tiled_huge_tile_count():
    img = np.random.rand(1, 3000, 7).astype(np.float32)
    calls = []

    def fn(x):
        calls.append(x.shape[0])
        return x + 1

    got = predict_tiled(fn, img, 8, 0.5, batch_size=64)
    np.testing.assert_allclose(got, img + 1, atol=1e-6)
    assert (
        sum(calls) == len(sliding_window_grid((3000, 8), 8, 0.5)) == 749
    )  # 0, 4, …, 2992; padded 7 → 8: one tile across
    assert max(calls) == 64


@pytest.mark.parametrize("spatial", [(33, 45), (7, 12, 10)])
def test_predict_tiled_pointwise_conv_changes_channels(spatial):
    nd = len(spatial)
    w = torch.randn(4, 3, *([1] * nd))
    img = np.random.rand(3, *spatial).astype(np.float32)
    fn = conv_fn(w)
    got = predict_tiled(fn, img, 8, 0.5)
    whole = fn(torch.from_numpy(img)[None])[0].numpy()
    assert got.shape == (4, *spatial)
    np.testing.assert_allclose(got, whole, rtol=1e-5, atol=1e-5)


def test_predict_tiled_zero_padded_conv_is_exact_where_no_tile_edge_contributes():
    img = np.random.rand(1, 37, 29).astype(np.float32)
    fn = conv_fn(torch.randn(2, 1, 3, 3), padding=1)
    got = predict_tiled(fn, img, 8, 0.5, mode="gaussian")
    whole = fn(torch.from_numpy(img)[None])[0].numpy()
    dirty = np.zeros(
        img.shape[1:], bool
    )  # pixels on a tile's rim inside the image (zeros seen, not neighbours)
    for sl in sliding_window_grid(img.shape[1:], 8, 0.5):
        rim = np.zeros((8, 8), bool)
        for ax, (s, n) in enumerate(
            zip(sl, img.shape[1:])
        ):  # a rim on the image border sees the same zeros
            if s.start > 0:
                rim[(slice(None),) * ax + (0,)] = True
            if s.stop < n:
                rim[(slice(None),) * ax + (-1,)] = True
        dirty[sl] |= rim
    clean = ~dirty
    assert clean.mean() > 0.2
    np.testing.assert_allclose(got[:, clean], whole[:, clean], rtol=1e-5, atol=1e-5)
    assert np.abs(got[:, dirty] - whole[:, dirty]).max() > 1e-3  # the check can fail


def test_predict_tiled_batch_size_does_not_change_the_result():
    img = np.random.rand(2, 21, 19).astype(np.float32)
    fn = conv_fn(torch.randn(3, 2, 3, 3), padding=1)
    a = predict_tiled(fn, img, 8, 0.5, batch_size=1)
    b = predict_tiled(fn, img, 8, 0.5, batch_size=100)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_predict_tiled_weight_array_and_memmap_out(tmp_path):
    img = np.random.rand(1, 20, 30).astype(np.float32)
    out = np.lib.format.open_memmap(
        tmp_path / "p.npy", mode="w+", dtype=np.float32, shape=(1, 20, 30)
    )
    weights = np.random.rand(8, 8).astype(np.float32) + 0.1
    assert predict_tiled(plus_one, img, 8, 0.5, mode=weights, out=out) is out
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), img + 1, atol=1e-6)


def test_predict_tiled_rejects_valid_fn():
    with pytest.raises(
        ConfigError, match=r"fn returned shape \(2, 1, 6, 6\).*use predict_overlap_tile"
    ):
        predict_tiled(
            lambda x: x[:, :, 1:-1, 1:-1], np.zeros((1, 20, 20), np.float32), 8, batch_size=2
        )


def test_predict_tiled_rejects_unknown_mode():
    with pytest.raises(ConfigError, match="mode must be one of"):
        predict_tiled(plus_one, np.zeros((1, 8, 8), np.float32), 4, mode="linear")


def test_predict_tiled_rejects_bad_weight_array():
    with pytest.raises(ConfigError, match="weight array must have the tile shape"):
        predict_tiled(plus_one, np.zeros((1, 8, 8), np.float32), 4, mode=np.ones((3, 3)))


def test_predict_tiled_rejects_image_without_channel_axis():
    with pytest.raises(ConfigError, match=r"image must be \(C, \*spatial\)"):
        predict_tiled(plus_one, np.zeros(8, np.float32), 4)


def test_predict_tiled_rejects_bad_pad_mode():
    with pytest.raises(ConfigError, match="pad_mode must be"):
        predict_tiled(plus_one, np.zeros((1, 8, 8), np.float32), 4, pad_mode="edge")


def test_predict_tiled_rejects_zero_batch():
    with pytest.raises(ConfigError, match="batch_size must be ≥ 1"):
        predict_tiled(plus_one, np.zeros((1, 8, 8), np.float32), 4, batch_size=0)


# -- predict_overlap_tile (valid-padding) -------------------------------------------------------
@pytest.mark.parametrize(
    "spatial, in_tile", [((23, 31), 12), ((5, 6), 12), ((300, 7), (10, 6)), ((40, 41), 12)]
)
def test_overlap_tile_valid_conv_stack_equals_whole_padded_forward(spatial, in_tile):
    w1, w2 = torch.randn(4, 2, 3, 3), torch.randn(3, 4, 3, 3)
    fn = valid_stack(w1, w2)
    img = np.random.rand(2, *spatial).astype(np.float32)
    out_tile = tuple(t - 4 for t in ((in_tile,) * 2 if isinstance(in_tile, int) else in_tile))
    got = predict_overlap_tile(fn, img, in_tile, out_tile, batch_size=5)
    whole = fn(torch.from_numpy(mirror_pad(img, (2, 2), (2, 2)))[None])[0].numpy()
    assert got.shape == (3, *spatial) and got.dtype == np.float32
    np.testing.assert_allclose(got, whole, rtol=1e-5, atol=1e-5)


def test_overlap_tile_asymmetric_border_4x4_conv():
    w = torch.randn(1, 1, 4, 4)  # output i sees input i − 1 … i + 2: border (1, 2)
    img = np.random.rand(1, 19, 22).astype(np.float32)
    got = predict_overlap_tile(conv_fn(w), img, 9, 6)
    whole = conv_fn(w)(torch.from_numpy(mirror_pad(img, (1, 1), (2, 2)))[None])[0].numpy()
    np.testing.assert_allclose(got, whole, rtol=1e-5, atol=1e-5)


def test_overlap_tile_explicit_border_is_honoured_3d():
    img = np.random.rand(2, 9, 10, 7).astype(np.float32)
    crop = lambda x: x[:, :, 1:-3, 2:-1, 0:-2]  # border ((1, 3), (2, 1), (0, 2)): the identity net
    got = predict_overlap_tile(crop, img, (8, 7, 6), (4, 4, 4), border=((1, 3), (2, 1), (0, 2)))
    np.testing.assert_array_equal(got, img)
    shifted = predict_overlap_tile(
        crop, img, (8, 7, 6), (4, 4, 4)
    )  # default centred border is wrong here
    assert not np.array_equal(shifted, img)


def test_overlap_tile_valid_conv_3d():
    w = torch.randn(2, 1, 3, 3, 3)
    img = np.random.rand(1, 9, 10, 11).astype(np.float32)
    got = predict_overlap_tile(conv_fn(w), img, (6, 5, 7), (4, 3, 5))
    whole = conv_fn(w)(torch.from_numpy(mirror_pad(img, (1, 1, 1), (1, 1, 1)))[None])[0].numpy()
    np.testing.assert_allclose(got, whole, rtol=1e-5, atol=1e-5)


def test_overlap_tile_tiny_unet_equals_one_forward_on_the_padded_image():
    net = create_model("unet-original", base_features=2, depth=2, init="torch").eval()
    spec = choose_overlap_tile(net, 48)
    assert spec == ((48, 48), (8, 8), ((20, 20), (20, 20)))
    align = tile_alignment(net, spec.in_tile)
    assert align == (4, 4)
    img = np.random.rand(1, 50, 70).astype(np.float32)
    got = predict_overlap_tile(net, img, spec.in_tile, spec.out_tile, align=align, batch_size=16)
    grid = overlap_tile_grid((50, 70), spec.out_tile, spec.border, align)
    padded = mirror_pad(img, grid.pad_before, grid.pad_after)
    assert padded.shape == (1, 96, 112) and net.is_valid_input_size(padded.shape[1:])
    with torch.no_grad():
        whole = net(torch.from_numpy(padded)[None])[0].numpy()
    assert whole.shape == (2, 56, 72)
    np.testing.assert_allclose(got, whole[:, :50, :70], rtol=1e-5, atol=1e-5)


def test_overlap_tile_rejects_in_smaller_than_out():
    with pytest.raises(ConfigError, match="must be ≥ out_tile"):
        predict_overlap_tile(plus_one, np.zeros((1, 8, 8), np.float32), 4, 6)


def test_overlap_tile_rejects_inconsistent_border():
    with pytest.raises(ConfigError, match=r"must equal out_tile .* \+ border"):
        predict_overlap_tile(plus_one, np.zeros((1, 8, 8), np.float32), 8, 4, border=1)


def test_overlap_tile_rejects_wrong_fn_output():
    with pytest.raises(ConfigError, match=r"fn returned shape \(1, 1, 8, 8\).*valid fn"):
        predict_overlap_tile(plus_one, np.zeros((1, 8, 8), np.float32), 8, 4, batch_size=1)


# -- choosing tiles for a model -----------------------------------------------------------------
def test_choose_overlap_tile_for_the_original_unet():
    net = create_model("unet-original", base_features=2)  # sizes do not depend on widths
    assert choose_overlap_tile(net, 572) == ((572, 572), (388, 388), ((92, 92), (92, 92)))
    assert choose_overlap_tile(net, 512).in_tile == (524, 524)  # 16·29 + 60
    assert choose_overlap_tile(net, (512, 600), round="down") == (
        (508, 588),
        (324, 404),
        ((92, 92), (92, 92)),
    )
    assert choose_overlap_tile(net, 100, round="down").in_tile == (
        188,
        188,
    )  # none below: the smallest above
    assert tile_alignment(net, 572) == (16, 16)


def test_choose_overlap_tile_same_padding_net_has_no_border():
    net = create_model("unet", base_features=2, depth=2)
    assert choose_overlap_tile(net, 30) == ((30, 30), (30, 30), ((0, 0), (0, 0)))
    assert tile_alignment(net) == (4, 4)  # the pooling period, whatever the tile


#: even sizes ≥ 10, output = input − 5 (odd border), shifts by 2 keep the grid
ODD_RULE = SizeRule("valid", (10,) * 3, (2,) * 3, (5,) * 3, (2,) * 3)


def test_choose_overlap_tile_odd_border_is_split_before_after():
    spec = choose_overlap_tile(ODD_RULE, 11)
    assert spec == ((12, 12, 12), (7, 7, 7), ((2, 3),) * 3)
    assert tile_alignment(ODD_RULE) == (2, 2, 2)


def test_choose_overlap_tile_rejects_bad_round():
    with pytest.raises(ConfigError, match="round must be 'up' or 'down'"):
        choose_overlap_tile(ODD_RULE, 11, round="nearest")


def test_size_rule_of_refuses_a_model_with_size_methods_but_no_rule():
    class Probed:
        spatial_dims = 2

        def is_valid_input_size(self, s):
            return s % 2 == 0

    with pytest.raises(ConfigError, match="Probed restricts its input sizes but has no size_rule"):
        choose_overlap_tile(Probed(), 11)
    with pytest.raises(ConfigError, match="has no size rule; pass a SizeRule or give spatial_dims"):
        choose_overlap_tile(lambda x: x, 11)
    # a plain function with known dims accepts every size (no border, no grid)
    assert size_rule_of(lambda x: x, spatial_dims=2) == SizeRule.any_size(2)


def test_crop_ranges_hand_cases():
    from unetkit.inference.tiling import crop_ranges

    assert crop_ranges([0, 6, 12], 8) == [(0, 7), (1, 7), (1, 8)]  # overlaps of 2 split 1 | 1
    assert crop_ranges([0], 5) == [(0, 5)]
    assert crop_ranges([0, 3], 8) == [
        (0, 5),
        (2, 8),
    ]  # overlap 5: 0..4 from the first, 5..10 from the second


@pytest.mark.parametrize(
    "size, tile, overlap, align", [(100, 32, 0.5, 1), (2048, 768, 0.17, 16), (37, 8, 0.75, 2)]
)
def test_crop_ranges_partition_the_axis_with_half_overlap_margins(size, tile, overlap, align):
    from unetkit.inference.tiling import crop_ranges, window_starts

    starts = window_starts((size,), tile, overlap, align)[0]
    owner = np.full(max(size, tile), -1)
    for j, (s, (lo, hi)) in enumerate(zip(starts, crop_ranges(starts, tile))):
        assert (owner[s + lo : s + hi] == -1).all()  # no pixel kept twice
        owner[s + lo : s + hi] = j
        if j > 0:
            assert lo >= (starts[j - 1] + tile - s) // 2  # half the overlap with the previous tile
        if j < len(starts) - 1:
            assert tile - hi >= (s + tile - starts[j + 1]) // 2
    assert (owner[:size] >= 0).all()


def test_window_starts_are_multiples_of_align():
    from unetkit.inference.tiling import window_starts

    starts = window_starts((2048, 1000), (768, 256), 0.3, 16)
    assert starts[0] == [0, 528, 1056, 1280] and all(s % 16 == 0 for s in starts[0])
    assert all(s % 16 == 0 for s in starts[1][:-1]) and starts[1][-1] == 1000 - 256


@pytest.mark.parametrize(
    "shape, tile, overlap, align",
    [
        ((2, 37, 53), 16, 0.5, 1),
        ((1, 40, 3), (16, 8), 0.75, 4),
        ((2, 9, 10, 11), (4, 8, 6), 0.5, 2),
    ],
)
def test_predict_tiled_crop_plus_one_is_exact(shape, tile, overlap, align):
    img = np.random.rand(*shape).astype(np.float32)
    got = predict_tiled(plus_one, img, tile, overlap, mode="crop", batch_size=3, align=align)
    np.testing.assert_allclose(got, img + 1, rtol=0, atol=1e-6)


def _local_unet():
    """A same-padding U-Net whose output depends only on a bounded neighbourhood (no instance norm;
    batch norm in eval mode is a per-pixel affine map): depth 2, receptive radius < 32 px."""
    torch.manual_seed(0)
    model = create_model("unet", base_features=4, depth=2, norm="batch", init="torch").eval()
    for m in model.modules():  # non-trivial running statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model


def _net_fn(model):
    def fn(x):
        with torch.no_grad():
            return model(x)

    return fn


def test_crop_stitching_on_the_pooling_grid_equals_the_whole_image_forward():
    model = _local_unet()
    img = np.random.default_rng(0).normal(size=(1, 160, 224)).astype(np.float32)
    whole = _net_fn(model)(torch.from_numpy(img)[None])[0].numpy()
    # tiles of 96 at step 32: every kept pixel lies ≥ 32 px from an inner tile edge
    crop = predict_tiled(_net_fn(model), img, 96, 2 / 3, mode="crop", align=4)
    assert np.abs(crop - whole).max() < 1e-5  # float rounding only
    # the same tiles blended (Gaussian) mix in predictions from near tile edges: not exact
    blend = predict_tiled(_net_fn(model), img, 96, 2 / 3, mode="gaussian", align=4)
    assert np.abs(blend - whole).max() > 1e-3
    # off the pooling grid (steps of 30, not multiples of 4), cropping is not exact either
    off = predict_tiled(_net_fn(model), img, 96, 1 - 30.5 / 96, mode="crop")
    assert np.abs(off - whole).max() > 1e-4


def test_crop_stitching_pads_unaligned_sizes_at_the_end():
    model = _local_unet()
    img = np.random.default_rng(1).normal(size=(1, 150, 203)).astype(np.float32)
    padded = mirror_pad(img, (0, 0), (2, 1))  # to 152 × 204, multiples of 4
    whole = _net_fn(model)(torch.from_numpy(padded)[None])[0].numpy()[:, :150, :203]
    crop = predict_tiled(_net_fn(model), img, 96, 2 / 3, mode="crop", align=4)
    assert crop.shape == (2, 150, 203)
    assert np.abs(crop - whole).max() < 1e-5


@pytest.mark.parametrize("shape", [(70, 90), (20, 37, 41)])
def test_crop_stitched_grids_hold_no_weight_arrays_and_sum_as_the_0_1_weights_do(shape):
    """A crop-stitched tile gives only its crop, unweighted: the same sums, bit for bit, as the
    full tile with crop_weights, and no tile-sized array per tile (memory for huge images)."""
    from unetkit.inference.tiling import (
        Stitcher,
        crop_weights,
        grid_from_starts,
        sliding_window_tiles,
        window_starts,
    )

    tile = (16,) * len(shape)
    grid = sliding_window_tiles(shape, tile, 0.25, 8, "crop")
    assert all(t.weights is None for t in grid.tiles)
    cover = np.zeros(shape, int)
    for t in grid.tiles:
        cover[tuple(slice(max(s.start, 0), s.stop) for s in t.output)] += 1
    assert (cover == 1).all()  # each pixel from exactly one tile
    padded = tuple(n + b + a for n, b, a in zip(shape, grid.pad_before, grid.pad_after))
    starts = window_starts(padded, tile, 0.25, (8,) * len(shape))
    assert [t.input for t in grid.tiles] == grid_from_starts(starts, tile)

    def net(sl):  # a prediction per tile, the same for both ways of stitching
        seed = abs(hash(tuple(s.start for s in sl))) % 2**32
        return np.random.default_rng(seed).standard_normal((2, *tile)).astype(np.float32)

    new, old = Stitcher((2, *shape)), Stitcher((2, *shape))
    for t in grid.tiles:
        p = net(t.input)
        new.add(p[(slice(None), *t.crop)], t.output)
        full = tuple(slice(s.start - b, s.stop - b) for s, b in zip(t.input, grid.pad_before))
        old.add(p, full, crop_weights(t.input, starts, tile))
    np.testing.assert_array_equal(new.result(), old.result())

"""Boundary metrics cross-checked with brute-force pairwise distances and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from unetkit.errors import ConfigError
from unetkit.evaluation.boundary import (
    EMPTY_POLICY,
    boundary_scores,
    image_diagonal,
    surface,
    surface_distances,
)


def _surface_by_shifts(mask: np.ndarray) -> np.ndarray:
    """Independent surface: a mask pixel with a face neighbour outside the mask (or the image)."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = np.ones_like(mask, dtype=bool)
    for axis in range(mask.ndim):
        for step in (-1, 1):
            shifted = np.roll(padded, step, axis=axis)[
                tuple(slice(1, -1) for _ in range(mask.ndim))
            ]
            inner &= shifted
    return mask & ~inner


def _brute(pred, truth, spacing):
    sp = np.argwhere(_surface_by_shifts(pred)) * np.asarray(spacing)
    st = np.argwhere(_surface_by_shifts(truth)) * np.asarray(spacing)
    d = cdist(sp, st)
    d_pred, d_truth = d.min(axis=1), d.min(axis=0)
    return {
        "hd": max(d_pred.max(), d_truth.max()),
        "hd95": max(np.percentile(d_pred, 95), np.percentile(d_truth, 95)),
        "assd": (d_pred.sum() + d_truth.sum()) / (d_pred.size + d_truth.size),
    }


def _blobs(shape, seed, level=0.6):
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.random(shape), 2.0)
    return smooth > np.quantile(smooth, level)


@pytest.mark.parametrize(
    "shape,spacing",
    [((40, 48), (1.0, 1.0)), ((40, 48), (2.5, 0.7)), ((12, 20, 18), (3.0, 1.0, 0.5))],
)
def test_matches_brute_force_pairwise_distances(shape, spacing):
    truth = _blobs(shape, 1)
    pred = _blobs(shape, 2)
    got = boundary_scores(pred, truth, spacing)
    want = _brute(pred, truth, spacing)
    for key in ("hd", "hd95", "assd"):
        assert got[key] == pytest.approx(want[key], rel=1e-12), key


def test_surface_matches_an_independent_definition():
    mask = _blobs((30, 31), 5)
    assert np.array_equal(surface(mask), _surface_by_shifts(mask))
    vol = _blobs((9, 10, 11), 6)
    assert np.array_equal(surface(vol), _surface_by_shifts(vol))


def test_hand_cases():
    a = np.zeros((5, 5), bool)
    b = np.zeros((5, 5), bool)
    a[1, 1] = True
    b[1, 4] = True
    assert boundary_scores(a, b) == {"hd": 3.0, "hd95": 3.0, "assd": 3.0, "nsd": 0.0}
    # spacing scales each axis: 2 rows apart at 2.5 units per row
    c = np.zeros((5, 5), bool)
    c[3, 1] = True
    assert boundary_scores(a, c, spacing=(2.5, 1.0))["hd"] == 5.0
    # identical masks: every distance 0
    assert boundary_scores(a | b, a | b) == {"hd": 0.0, "hd95": 0.0, "assd": 0.0, "nsd": 1.0}


def test_square_inside_larger_square():
    big = np.zeros((20, 20), bool)
    big[2:18, 2:18] = True  # surface: a 16×16 ring of 60 pixels
    small = np.zeros((20, 20), bool)
    small[4:16, 4:16] = True  # surface: a 12×12 ring of 44 pixels
    d_small, d_big = surface_distances(small, big)
    assert d_small.size == 44 and d_big.size == 60
    assert np.all(d_small == 2.0)  # every small-ring pixel is 2 from the big ring (straight across)
    s = boundary_scores(small, big)
    assert s["hd"] == pytest.approx(d_big.max()) and d_big.max() == pytest.approx(math.hypot(2, 2))
    assert s["assd"] == pytest.approx((d_small.sum() + d_big.sum()) / 104)


def test_empty_policy():
    empty = np.zeros((30, 40), bool)
    full = np.zeros((30, 40), bool)
    full[5:9, 5:9] = True
    both = boundary_scores(empty, empty)
    assert all(math.isnan(v) for v in both.values())
    one = boundary_scores(empty, full)
    assert one == {"hd": 50.0, "hd95": 50.0, "assd": 50.0, "nsd": 0.0}  # diagonal of 30×40
    assert boundary_scores(full, empty, spacing=(2.0, 1.0))["hd95"] == pytest.approx(
        math.hypot(60, 40)
    )
    assert "image diagonal" in EMPTY_POLICY


def test_image_diagonal_brats_convention():
    assert image_diagonal((155, 240, 240)) == pytest.approx(373.13, abs=0.01)


def test_errors():
    a = np.ones((4, 4), bool)
    with pytest.raises(
        ConfigError, match=r"prediction shape \(4, 4\) differs from truth shape \(4, 5\)"
    ):
        boundary_scores(a, np.ones((4, 5), bool))
    with pytest.raises(
        ConfigError, match=r"spacing must hold positive numbers, got \[1\.0, 0\.0\]"
    ):
        boundary_scores(a, a, spacing=(1.0, 0.0))
    with pytest.raises(ConfigError, match="percentile must lie in"):
        boundary_scores(a, a, percentile=101)
    with pytest.raises(ConfigError, match="two non-empty masks"):
        surface_distances(a, np.zeros((4, 4), bool))


def test_512_image_matches_a_kd_tree_over_the_surfaces():
    """At full image size, against an independent nearest-neighbour search (speed: benchmarks/)."""
    from scipy.spatial import cKDTree

    truth = _blobs((512, 512), 3)
    pred = ndimage.binary_erosion(ndimage.binary_dilation(truth, iterations=3), iterations=5)
    got = boundary_scores(pred, truth)
    sp, st = np.argwhere(_surface_by_shifts(pred)), np.argwhere(_surface_by_shifts(truth))
    d = np.concatenate([cKDTree(st).query(sp)[0], cKDTree(sp).query(st)[0]])
    assert got["hd"] == pytest.approx(d.max())
    assert got["assd"] == pytest.approx(d.mean())


@pytest.mark.parametrize(
    "shape,spacing",
    [((40, 48), (2.5, 0.7)), ((14, 24, 22), (3.0, 1.0, 1.0)), ((12, 20, 18), (5.0, 0.8, 0.6))],
)
def test_hd_and_hd95_match_monai_on_anisotropic_grids(shape, spacing):
    """HD and HD95 in physical units against MONAI's ``compute_hausdorff_distance`` (same surface
    by face erosion, Euclidean distance transform with the spacing, max of both directions)."""
    import warnings

    import torch
    from monai.metrics import compute_hausdorff_distance

    def onehot(mask):
        m = torch.as_tensor(mask)
        return torch.stack([~m, m]).float()[None]  # (B=1, C=2, *spatial)

    for seed in range(3):
        truth, pred = _blobs(shape, 2 * seed + 1), _blobs(shape, 2 * seed + 2)
        ours = boundary_scores(pred, truth, spacing)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for key, percentile in (("hd", None), ("hd95", 95)):
                theirs = compute_hausdorff_distance(
                    onehot(pred), onehot(truth), percentile=percentile, spacing=list(spacing)
                )
                assert ours[key] == pytest.approx(float(theirs[0, 0]), rel=1e-5), key

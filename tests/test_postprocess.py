"""Post-processing: thresholds, clean-ups and instance separation on hand-made masks."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import label as sk_label

from unetkit.errors import ConfigError
from unetkit.inference.postprocess import (
    argmax,
    clean_labels,
    connected_components,
    fill_holes,
    instance_image,
    instances_from_probabilities,
    keep_largest_component,
    label_instances,
    remove_small_objects,
    threshold,
    watershed_split,
)
from unetkit.io import read_image, write_image


def _discs(shape, centres, radius):
    grid = np.indices(shape)
    out = np.zeros(shape, bool)
    for c in centres:
        out |= sum((g - v) ** 2 for g, v in zip(grid, c)) < radius**2
    return out


def test_threshold_and_argmax():
    prob = np.array([[0.2, 0.5], [0.7, 0.49]])
    assert threshold(prob).tolist() == [[0, 1], [1, 0]]
    assert threshold(prob, 0.6).dtype == np.int64
    probs = np.stack([1 - prob, prob, np.full_like(prob, 0.6)])
    assert argmax(probs).tolist() == [[0, 2], [1, 2]]
    assert argmax(np.full((3, 1, 2), 0.3)).tolist() == [[0, 0]]  # ties go to the lower class
    assert argmax(prob[None]).tolist() == [[0, 1], [1, 0]]  # one sigmoid channel: thresholded
    with pytest.raises(ConfigError, match=r"channel-first \(K, \*spatial\)"):
        argmax(np.zeros(3))


def test_remove_small_objects():
    mask = np.zeros((6, 8), bool)
    mask[0, 0] = True  # 1 px
    mask[2:4, 2:4] = True  # 4 px
    mask[5, 5:8] = True  # 3 px
    kept = remove_small_objects(mask, 3)
    assert kept.sum() == 7 and not kept[0, 0]
    assert remove_small_objects(mask, 5).sum() == 0
    assert np.array_equal(remove_small_objects(mask, 1), mask)
    diag = np.eye(3, dtype=bool)  # three 1-px objects, or one of 3 px with full connectivity
    assert remove_small_objects(diag, 2).sum() == 0
    assert remove_small_objects(diag, 2, connectivity=2).sum() == 3


def test_fill_holes():
    ring = np.zeros((7, 7), bool)
    ring[1:6, 1:6] = True
    ring[2:5, 2:5] = False  # a 9-px hole
    ring[3, 3] = True  # leaves an 8-px hole
    assert fill_holes(ring).sum() == 25
    assert np.array_equal(fill_holes(ring, max_size=5), ring)
    assert fill_holes(ring, max_size=8).sum() == 25
    open_ring = ring.copy()
    open_ring[1, 3] = False  # the hole now reaches the outside: not a hole
    assert np.array_equal(fill_holes(open_ring), open_ring)


def test_keep_largest_component():
    mask = np.zeros((5, 9), bool)
    mask[0:2, 0:2] = True
    mask[3:5, 3:9] = True
    largest = keep_largest_component(mask)
    assert largest.sum() == 12 and not largest[0, 0]
    assert keep_largest_component(np.zeros((3, 3), bool)).sum() == 0


def test_clean_labels_per_class_keeps_other_classes_in_holes():
    labels = np.zeros((9, 9), np.int64)
    labels[1:8, 1:8] = 1
    labels[3:6, 3:6] = 0  # hole in class 1 ...
    labels[4, 4] = 2  # ... holding a pixel of class 2
    labels[0, 8] = 2  # a stray 1-px class-2 object
    out = clean_labels(labels, fill_holes=True)
    assert out[4, 4] == 2 and (out[3:6, 3:6] == 1).sum() == 8
    out = clean_labels(labels, min_size=2, classes=[2])
    assert out[0, 8] == 0 and out[4, 4] == 0 and (out == 1).sum() == (labels == 1).sum()
    two = np.zeros((4, 10), np.int64)
    two[0:2, 0:2] = 1
    two[0:3, 5:9] = 1
    assert (clean_labels(two, keep_largest=True) == 1).sum() == 12
    with pytest.raises(ConfigError, match="class 0 is the background class"):
        clean_labels(labels, classes=[0])


def test_connected_components_match_skimage():
    rng = np.random.default_rng(2)
    mask = rng.random((30, 30)) < 0.45
    ours = connected_components(mask)
    ref = sk_label(mask, connectivity=1)
    assert ours.dtype == np.int32 and ours.max() == ref.max()
    pairs = set(zip(ours[mask].tolist(), ref[mask].tolist()))
    assert len(pairs) == ref.max()  # the same partition, numbered alike or not


def test_watershed_splits_two_touching_discs_2d_and_3d():
    two = _discs((30, 50), [(15, 15), (15, 32)], 10)
    assert connected_components(two).max() == 1
    inst = watershed_split(two)
    assert inst.max() == 2 and np.array_equal(inst > 0, two)
    assert inst[15, 15] != inst[15, 32]
    assert abs((inst == 1).sum() - (inst == 2).sum()) <= 0.1 * two.sum()
    assert watershed_split(_discs((30, 30), [(15, 15)], 10)).max() == 1
    balls = _discs((20, 20, 36), [(10, 10, 10), (10, 10, 24)], 8)
    inst3 = watershed_split(balls, spacing=(1.0, 1.0, 1.0))
    assert inst3.max() == 2 and np.array_equal(inst3 > 0, balls)


def test_watershed_from_border_probability():
    mask = np.zeros((10, 21), bool)
    mask[1:9, 1:20] = True  # one blob: two cells with a faint seam at column 10
    border = np.where(mask, 0.05, 1.0)
    border[:, 9:12] = [0.4, 0.9, 0.4]
    inst = watershed_split(mask, border)
    assert inst.max() == 2
    assert set(np.unique(inst[1:9, 1:10]).tolist()) == {1} and set(
        np.unique(inst[1:9, 11:20]).tolist()
    ) == {2}
    assert np.array_equal(inst > 0, mask)
    with pytest.raises(ConfigError, match="border_prob shape"):
        watershed_split(mask, border[:, :5])


def test_instances_from_probabilities_split_at_the_predicted_gap_and_grow():
    p_cell = np.zeros((20, 30))
    p_cell[4:16, 3:27] = 0.95  # one connected blob …
    p_cell[4:16, 15] = 0.55  # … with a weak gap: still cell (≥ 0.5), but no seed there
    p_cell[18:20, 0:3] = 0.9  # a 6-px speck: dropped (min_size 20)
    probs = np.stack([1 - p_cell, p_cell])
    lab = instances_from_probabilities(probs, seed_threshold=0.3)
    assert lab.dtype == np.int32 and np.array_equal(np.unique(lab), [0, 1, 2])
    assert (lab[4:16, 3:15] == 1).all() and (lab[4:16, 16:27] == 2).all()  # split at the gap
    assert lab[18:20, 0:3].max() == 0
    grown = instances_from_probabilities(probs, seed_threshold=0.3, expand=1)
    assert (grown > 0).sum() == (lab > 0).sum() + 2 * (12 + 24)  # one ring around the blob
    assert np.array_equal(np.unique(grown), [0, 1, 2])
    # the same as the one watershed called directly
    direct = watershed_split(
        p_cell >= 0.5, p_cell * 0 + (1 - p_cell), seed_threshold=0.3, min_seed_size=4, min_size=20
    )
    assert np.array_equal(lab, direct)
    assert instances_from_probabilities(probs, min_size=0)[18:20, 0:3].max() == 3  # speck kept
    with pytest.raises(ConfigError, match=r"probs must be \(2, \*spatial\)"):
        instances_from_probabilities(probs[:1])


def test_watershed_min_size_renumbers_in_order():
    mask = np.zeros((10, 30), bool)
    mask[1:4, 1:4] = True  # 9 px
    mask[1:9, 10:18] = True  # 64 px
    mask[6:8, 25:27] = True  # 4 px
    inst = watershed_split(mask, h=1.0, min_size=5)
    assert np.array_equal(np.unique(inst), [0, 1, 2]) and inst[6:8, 25:27].max() == 0
    assert inst[2, 2] == 1 and inst[5, 12] == 2
    assert watershed_split(mask, h=1.0, min_size=10).max() == 1


def test_watershed_keeps_objects_without_a_seed():
    mask = _discs((30, 40), [(15, 12)], 9)
    mask[2, 35] = True  # a 1-px object: its distance maximum (1) is below h
    inst = watershed_split(mask, h=3.0)
    assert inst.max() == 2 and np.array_equal(inst > 0, mask)
    assert inst[2, 35] == 1  # raster order: the dot comes first


def test_instance_image_round_trip(tmp_path):
    inst = watershed_split(_discs((30, 50), [(15, 15), (15, 32)], 10))
    img = instance_image(inst)
    assert img.shape == (1, 30, 50) and img.dtype == np.uint16
    write_image(tmp_path / "inst.png", img)
    back, _ = read_image(tmp_path / "inst.png")
    assert np.array_equal(back[0], inst)
    assert instance_image(np.array([[0, 70000]])).dtype == np.uint32
    with pytest.raises(ConfigError, match="non-negative integers"):
        instance_image(np.array([[-1, 2]]))


@pytest.mark.parametrize("angle", range(0, 180, 15))
def test_a_slanted_elongated_object_is_one_watershed_seed(angle):
    # its ridge's equal peaks lie a few hundredths apart on the pixel grid: one object, not 3–7
    yy, xx = np.mgrid[0:60, 0:60] - 30
    th = np.deg2rad(angle)
    u, v = xx * np.cos(th) + yy * np.sin(th), -xx * np.sin(th) + yy * np.cos(th)
    for a, b in ((20, 6), (18, 4), (15, 8), (25, 3)):
        ellipse = (u / a) ** 2 + (v / b) ** 2 <= 1
        assert label_instances(ellipse.astype(np.uint8), "watershed").max() == 1, (a, b)
        assert watershed_split(ellipse, h=4).max() == 1


def test_a_neck_exactly_h_deep_still_splits():
    yy, xx = np.mgrid[:20, :40]
    two = ((yy - 10) ** 2 + (xx - 12) ** 2 < 64) | ((yy - 10) ** 2 + (xx - 26) ** 2 < 64)
    # peaks 8 px from the background, the neck 4: a dynamic of exactly 4
    assert [watershed_split(two, h=h).max() for h in (2, 4, 4.5)] == [2, 2, 1]


@pytest.mark.slow
def test_watershed_recovers_monusegs_touching_nuclei_from_its_binary_masks(shared_data):
    """MoNuSeg val: the watershed split of each binary mask (whose touching nuclei merge) against
    the instance ids beside it. Measured F1@0.5 0.976 at h = 2 and 0.960 at h = 4 (2,408 nuclei;
    skimage's h_maxima seeds gave 0.868 / 0.855, over-splitting slanted nuclei: 2,876 objects)."""
    from unetkit.evaluation.objects import match_objects

    root = shared_data / "monuseg" / "val"
    if not root.is_dir():
        pytest.skip(f"MoNuSeg not found at {root}")
    for h, least in ((2.0, 0.96), (4.0, 0.94)):
        tp = fp = fn = 0
        for path in sorted((root / "instances").glob("*.png")):
            ids = read_image(path)[0][0].astype(np.int64)
            m = match_objects(ids, watershed_split(ids > 0, h=h), (0.5,))
            tp, fp, fn = tp + int(m.tp[0]), fp + int(m.fp[0]), fn + int(m.fn[0])
        assert 2 * tp / (2 * tp + fp + fn) >= least, (h, tp, fp, fn)


def test_objects_touching_at_a_corner_stay_two_instances():
    # their seeds are 8-connected while the objects are face-connected: one marker would join them
    m = np.zeros((10, 10), bool)
    m[1:4, 1:4] = m[4:7, 4:7] = True
    assert watershed_split(m, h=2).max() == 2
    assert label_instances(m.astype(np.uint8), "watershed").max() == 2
    assert watershed_split(m, h=1e-7).max() == 2  # any h > 0 is taken


def test_compact_argmax_is_numpys_argmax_in_one_byte_a_pixel():
    from unetkit.inference.postprocess import compact_argmax

    rng = np.random.default_rng(0)
    probs = rng.random((3, 700, 50)).astype(np.float32)
    probs[:, :5] = 0.5  # ties: the lower class, as NumPy's
    got = compact_argmax(probs)
    assert got.dtype == np.uint8 and np.array_equal(got, probs.argmax(axis=0))
    volume = rng.random((2, 5, 300, 7)).astype(np.float32)
    assert np.array_equal(compact_argmax(volume, rows=2), volume.argmax(axis=0))
    assert compact_argmax(np.zeros((300, 4, 4), np.float32)).dtype == np.uint16


def test_raster_renumbering_matches_first_pixel_order_on_random_labels():
    """Instance ids 1 … n in raster order of each object's first pixel (found in its bounding
    box), checked against the order NumPy's unique(return_index) gives, 1D to 3D, with gaps."""
    from scipy import ndimage

    from unetkit.inference.postprocess import _relabel_raster

    def reference(labels):
        ids, first = np.unique(labels.ravel(), return_index=True)
        fg = ids != 0
        order = ids[fg][np.argsort(first[fg], kind="stable")]
        lut = np.zeros(int(ids.max()) + 1, np.int32)
        lut[order] = np.arange(1, order.size + 1)
        return lut[labels]

    rng = np.random.default_rng(0)
    for trial in range(60):
        shape = tuple(rng.integers(1, 25, rng.integers(1, 4)))
        labels = rng.integers(0, rng.integers(2, 30), shape)
        if trial % 3 == 0:  # connected objects, numbered in another order
            labels = ndimage.label(rng.random(shape) > 0.6)[0] * 3
        labels[labels == 2] = 0  # a gap in the ids
        got = _relabel_raster(labels)
        assert got.dtype == np.int32 and np.array_equal(got, reference(labels)), (trial, shape)
    assert _relabel_raster(np.zeros((4, 4), int)).max() == 0

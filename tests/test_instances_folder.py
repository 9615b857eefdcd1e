"""Instance ids beside class masks (an ``instances/`` folder, as MoNuSeg ships them): read with the
mask, counted by the fingerprint one object at a time, and carved into separation gaps for
training (``data.separate_objects``, :func:`unetkit.data.objects.contact_pixels`)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage

from unetkit.data import fingerprint_dataset, load_case, prepare_data
from unetkit.data.discovery import scan_dataset
from unetkit.data.labels import LabelMap
from unetkit.data.objects import contact_pixels
from unetkit.data.reading import read_case_mask
from unetkit.errors import DataError
from unetkit.io import write_image


def touching_ids(shape=(24, 32)) -> np.ndarray:
    """Objects 7 and 9 meet along a column (x 11 | 12, rows 4–11); object 3 stands alone."""
    ids = np.zeros(shape, np.uint16)
    ids[4:12, 4:12] = 7
    ids[4:12, 12:20] = 9
    ids[16:20, 24:28] = 3
    return ids


def write_set(root, ids_per_case, classes=None, seed=0, instances=True):
    """One grey image, a {0, 255} mask (the objects merged) and, with ``instances``, the ids."""
    rng = np.random.default_rng(seed)
    for k, ids in enumerate(ids_per_case):
        mask = (ids > 0).astype(np.uint8) * 255 if classes is None else classes[k]
        write_image(
            root / "images" / f"{k:02d}.png", rng.integers(0, 256, (1, *ids.shape), np.uint8)
        )
        write_image(root / "masks" / f"{k:02d}.png", mask[None])
        if instances:
            write_image(root / "instances" / f"{k:02d}.png", ids[None])
    return root


def brute_force_contacts(ids: np.ndarray) -> np.ndarray:
    """Object pixels with another object's pixel among their 3^N − 1 neighbours, by shifting."""
    padded = np.pad(ids, 1)
    out = np.zeros(ids.shape, bool)
    core = tuple(slice(1, 1 + n) for n in ids.shape)
    for shift in itertools.product((-1, 0, 1), repeat=ids.ndim):
        view = padded[tuple(slice(1 + d, 1 + d + n) for d, n in zip(shift, ids.shape))]
        out |= (view > 0) & (view != padded[core])
    return out & (ids > 0)


def test_contact_pixels_by_hand_and_against_brute_force_in_2d_and_3d():
    ids = touching_ids()
    gap = contact_pixels(ids)
    expected = np.zeros(ids.shape, bool)
    expected[4:12, 11:13] = True
    np.testing.assert_array_equal(gap, expected)
    assert not contact_pixels((ids > 0).astype(np.int64)).any()  # one object never meets itself
    rng = np.random.default_rng(3)
    for shape in [(40, 50), (12, 16, 18)]:
        seeds = np.zeros(shape, np.int64)
        seeds[tuple(rng.integers(0, n, 25) for n in shape)] = np.arange(1, 26)
        # grow the seeds into touching regions, then cut some background in
        _, nearest = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
        grown = seeds[tuple(nearest)] * (rng.random(shape) > 0.2)
        np.testing.assert_array_equal(contact_pixels(grown), brute_force_contacts(grown))
        assert contact_pixels(grown).any()


def test_contact_pixels_take_any_integer_ids():
    ids = touching_ids().astype(np.uint16)
    ids[ids == 9] = 65535  # the dtype's largest id
    assert contact_pixels(ids).sum() == 16
    assert contact_pixels(ids.astype(np.int32)).sum() == 16


def test_read_case_mask_takes_the_ids_from_the_instances_folder(tmp_path):
    ids = touching_ids()
    ids[0, 0] = 5  # an id on a pixel the mask calls background: dropped
    mask = (touching_ids() > 0).astype(np.uint8) * 255
    write_set(tmp_path, [ids], classes=[mask])
    (case,) = scan_dataset(tmp_path).cases
    classes, instances = read_case_mask(case, LabelMap(values=(0, 255)), ids.shape)
    np.testing.assert_array_equal(classes, mask // 255)
    np.testing.assert_array_equal(instances, touching_ids())
    assert ndimage.label(classes)[1] == 2  # the binary mask merges 7 and 9


def test_an_instance_file_of_another_size_is_one_error_naming_it(tmp_path):
    write_set(tmp_path, [touching_ids()])
    write_image(tmp_path / "instances" / "00.png", touching_ids((20, 32))[None])
    (case,) = scan_dataset(tmp_path).cases
    with pytest.raises(DataError) as err:
        read_case_mask(case, LabelMap(values=(0, 255)), (24, 32))
    assert "instance file size (20, 32)" in str(err.value)
    assert "instances/00.png" in str(err.value).replace("\\", "/")


def test_training_masks_get_the_gap_and_validation_masks_stay_as_drawn(tmp_path):
    train = write_set(tmp_path / "train", [touching_ids(), touching_ids()])
    val = write_set(tmp_path / "val", [touching_ids()], seed=1)
    gap = contact_pixels(touching_ids())
    carved = prepare_data(str(train), str(val), separate_objects=True)
    for case in carved.train:
        np.testing.assert_array_equal(case.mask, (touching_ids() > 0) & ~gap)
        np.testing.assert_array_equal(case.instances, np.where(gap, 0, touching_ids()))
        assert ndimage.label(case.mask)[1] == 3  # 7 and 9 now apart
    (v,) = carved.val
    np.testing.assert_array_equal(v.mask, touching_ids() > 0)
    np.testing.assert_array_equal(v.instances, touching_ids())  # validation scores these objects
    plain = prepare_data(str(train), str(val))
    np.testing.assert_array_equal(plain.train[0].mask, touching_ids() > 0)


def test_the_weight_map_weighs_the_carved_gap(tmp_path):
    write_set(tmp_path, [touching_ids()])
    (case,) = scan_dataset(tmp_path).cases
    loaded = load_case(
        case, LabelMap(values=(0, 255)), None, {"w0": 10, "sigma": 5}, separate_objects=True
    )
    gap = contact_pixels(touching_ids())
    far = np.zeros(gap.shape, bool)
    far[0, -1] = True  # a background corner far from the pair
    # the gap pixels lie between the two nearest objects: w0·exp(−(d1 + d2)²/2σ²) ≥ 10·e^(−9/50)
    assert loaded.weight[gap].min() > loaded.weight[far].max() + 8


def test_resampled_class_masks_keep_their_classes_with_instance_ids(tmp_path):
    ids = touching_ids()
    classes = np.where(ids == 9, 2, (ids > 0).astype(np.uint8))  # object 9 is of class 2
    write_set(tmp_path, [ids], classes=[classes])
    (case,) = scan_dataset(tmp_path).cases
    loaded = load_case(case, LabelMap(values=(0, 1, 2)), None, scale=[2.0, 2.0])
    assert loaded.mask.shape == (48, 64) and set(np.unique(loaded.mask)) == {0, 1, 2}
    assert set(np.unique(loaded.instances)) == {0, 3, 7, 9}
    np.testing.assert_array_equal(loaded.instances > 0, loaded.mask > 0)


def test_the_fingerprint_counts_objects_by_their_ids(tmp_path):
    write_set(tmp_path / "ids", [touching_ids(), touching_ids()])
    fp = fingerprint_dataset(tmp_path / "ids")
    assert fp.instance_ids and fp.objects["1"]["count"] == 6
    assert fp.touching_fraction == pytest.approx(4 / 6)
    assert any("(instance ids)" in line for line in fp.describe())
    write_set(tmp_path / "binary", [touching_ids(), touching_ids()], instances=False)
    merged = fingerprint_dataset(tmp_path / "binary")
    assert not merged.instance_ids and merged.objects["1"]["count"] == 4  # 7 + 9 one component
    assert merged.touching_fraction == 0.0

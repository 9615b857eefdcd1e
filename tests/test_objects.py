"""Objects in masks (``unetkit.data.objects``): touching pairs and objects, sizes, diameters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unetkit.data.objects import (
    equivalent_diameter,
    object_sizes,
    touching_fraction,
    touching_objects,
    touching_pairs,
)
from unetkit.errors import ConfigError


def test_touching_fraction_and_pairs_by_hand():
    lab = np.zeros((5, 13), int)
    lab[1:4, 1:4] = 1
    lab[1:4, 5:8] = 2  # one pixel column between 1 and 2
    lab[1:4, 11:13] = 3  # three columns from 2
    assert touching_pairs(lab).tolist() == [[1, 2]]
    assert touching_objects(lab).tolist() == [1, 2]
    assert touching_fraction(lab) == pytest.approx(2 / 3)
    assert touching_fraction(lab, max_gap=1) == 0.0
    assert touching_pairs(lab, max_gap=4).tolist() == [[1, 2], [2, 3]]
    assert touching_objects(lab, max_gap=4).tolist() == [1, 2, 3]
    assert math.isnan(touching_fraction(np.zeros((4, 4), int)))
    with pytest.raises(ConfigError, match="max_gap must be >= 1"):
        touching_pairs(lab, 0)
    with pytest.raises(ConfigError, match=r"instances must be 2D \(H, W\) or 3D"):
        touching_objects(np.zeros(5, int))
    with pytest.raises(ConfigError, match="integer ids"):
        touching_fraction(lab.astype(float))


def test_diagonal_and_3d_neighbours():
    lab = np.zeros((4, 4), int)
    lab[0, 0], lab[1, 1] = 1, 2  # corner to corner: distance 1
    assert touching_pairs(lab, max_gap=1).tolist() == [[1, 2]]
    vol = np.zeros((5, 4, 4), int)
    vol[0, 0, 0], vol[2, 2, 2], vol[4, 0, 3] = (
        4,
        7,
        9,
    )  # 4–7: 2 apart on every axis; 9: 3 from 7 along x
    assert touching_pairs(vol).tolist() == [[4, 7], [7, 9]]
    assert touching_pairs(vol, max_gap=1).size == 0
    assert touching_objects(vol).tolist() == [4, 7, 9]


@pytest.mark.parametrize(
    "shape, gap, density", [((60, 70), 1, 0.05), ((60, 70), 2, 0.02), ((12, 14, 16), 2, 0.005)]
)
def test_touching_objects_equal_the_ids_of_touching_pairs(shape, gap, density):
    rng = np.random.default_rng(3)
    lab = np.zeros(shape, np.int64)
    spots = rng.random(shape) < density
    lab[spots] = rng.permutation(int(spots.sum())) * 3 + 1  # one pixel each, ids not consecutive
    lab[tuple(slice(0, 3) for _ in shape)] = 5  # and one bigger object
    n = np.unique(lab).size - 1
    want = np.unique(touching_pairs(lab, gap))
    assert 2 < want.size < n
    assert touching_objects(lab, gap).tolist() == want.tolist()


def test_object_sizes_and_equivalent_diameter():
    lab = np.zeros((10, 10), int)
    lab[0:2, 0:3] = 5
    lab[5:9, 5:9] = 2
    assert object_sizes(lab).tolist() == [16, 6]  # id order: 2, then 5
    assert object_sizes(np.zeros((3, 3), np.uint8)).size == 0
    assert equivalent_diameter([16], 2)[0] == pytest.approx(2 * math.sqrt(16 / math.pi))
    assert equivalent_diameter([4 / 3 * math.pi * 27], 3)[0] == pytest.approx(6.0)
    with pytest.raises(ConfigError, match="spatial_dims must be 2 or 3"):
        equivalent_diameter([1], 4)


def test_object_extents_are_the_longest_bounding_box_side():
    from unetkit.data.objects import object_extents

    lab = np.zeros((6, 12), np.int32)
    lab[1, 1:11] = 3  # a 10-px line
    lab[3:6, 2:4] = 7  # 3 × 2 block
    assert object_extents(lab).tolist() == [10, 3]
    assert object_extents(np.zeros((4, 4), np.int32)).tolist() == []
    vol = np.zeros((5, 4, 4), np.int32)
    vol[0:5, 1, 1] = 1
    assert object_extents(vol).tolist() == [5]


def test_touching_in_an_anisotropic_volume_is_measured_alike_on_every_axis():
    """Nuclei two slices apart in z, slices five times the pixel size: 2 µm apart, not touching;
    two pixels apart in x: 0.4 µm, touching (both counted as touching before, in voxels)."""
    from unetkit.data.objects import gaps_per_axis, touching_objects

    vol = np.zeros((10, 12, 20), np.int32)
    vol[1:4, 2:6, 2:6] = 1
    vol[5:8, 2:6, 2:6] = 2  # one slice of background between 1 and 2: 2 slices (2 µm) apart
    vol[1:4, 2:6, 7:11] = 3  # one column between 1 and 3: 2 px (0.4 µm) apart
    gaps = gaps_per_axis(2, (1.0, 0.2, 0.2), 3)
    assert gaps == [1, 2, 2]
    assert touching_objects(vol, gaps).tolist() == [1, 3]
    assert touching_objects(vol, 2).tolist() == [1, 2, 3]  # in voxels alone
    assert gaps_per_axis(2, None, 3) == [2, 2, 2] and gaps_per_axis(2, (0.5, 1.0), 2) == [2, 2]
    assert gaps_per_axis(2, (0.5, 1.0, 1.0), 3) == [4, 2, 2]  # finer slices: x and y keep 2 px
    assert gaps_per_axis(2, (3.0, 0.8, 0.8), 3) == [1, 2, 2]  # a CT of 3-mm slices
    assert touching_objects(vol, np.array([1, 2, 2])).tolist() == [1, 3]
    for wrong in ([1, 2], []):
        with pytest.raises(ConfigError, match="max_gap per axis must be 3 integers"):
            touching_objects(vol, wrong)

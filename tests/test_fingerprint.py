"""The dataset fingerprint (``unetkit.data.fingerprint``) on hand-made data, and on MoNuSeg (slow)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from unetkit.data import Fingerprint, LabelMap, fingerprint_dataset
from unetkit.errors import ConfigError, DataError
from unetkit.io import write_image
from unetkit.io.readers import ImageMeta


def square_diameter(side: int) -> float:
    return 2 * math.sqrt(side * side / math.pi)


def write_case(
    root: Path, name: str, image: np.ndarray, mask: np.ndarray, ext: str = "png", meta=None
):
    """``image`` (C, *spatial) and ``mask`` (*spatial) as root/images/<name> and root/masks/<name>."""
    write_image(root / "images" / f"{name}.{ext}", image, meta)
    write_image(root / "masks" / f"{name}.{ext}", mask[None], meta)


def three_cases(root: Path, rng: np.random.Generator, dtype=np.uint8) -> list:
    """Three grey cases of different sizes with {0, 255} masks; returns [(image, mask), ...]."""
    out = []
    m = np.zeros((20, 30), np.uint8)
    m[2:6, 2:6] = m[2:6, 7:11] = 255  # side 4, one background column apart: touching
    m[12:16, 20:24] = 255  # side 4, far away
    out.append(m)
    m = np.zeros((24, 26), np.uint8)
    m[5:10, 5:10] = 255  # side 5
    out.append(m)
    m = np.zeros((30, 20), np.uint8)
    m[1:4, 1:4] = m[20:23, 10:13] = 255  # side 3, far apart
    out.append(m)
    cases = []
    for k, mask in enumerate(out):
        if dtype == np.uint8:
            image = rng.integers(0, 256, (1, *mask.shape), dtype=np.uint8)
            ext = "png"
        else:
            image = rng.normal(100, 20, (1, *mask.shape)).astype(dtype)
            ext = "tif"
        write_image(root / "images" / f"{k:02d}.{ext}", image)
        write_image(root / "masks" / f"{k:02d}.png", mask[None])
        cases.append((image, mask))
    return cases


def test_counts_sizes_diameters_and_touching_by_hand(tmp_path):
    three_cases(tmp_path, np.random.default_rng(0))
    fp = fingerprint_dataset(tmp_path)
    assert (fp.cases, fp.cases_found, fp.spatial_dims, fp.channels) == (3, 3, 2, 1)
    assert fp.sizes == {"median": [24.0, 26.0], "min": [20, 20], "p10": [20, 20], "max": [30, 30]}
    assert fp.spacing is None and not fp.grey_as_colour and fp.mask_kind == "labels"
    assert fp.label_values == [0, 255]
    obj = fp.objects["1"]
    assert obj["count"] == 6 and obj["per_case_median"] == 2.0  # 3, 1 and 2 objects
    diameters = [square_diameter(s) for s in (4, 4, 4, 5, 3, 3)]
    assert obj["diameter_px"]["median"] == pytest.approx(np.median(diameters))
    assert obj["diameter_px"]["p10"] == pytest.approx(np.percentile(diameters, 10))
    assert obj["diameter_px"]["p90"] == pytest.approx(np.percentile(diameters, 90))
    assert obj["touching_fraction"] == pytest.approx(2 / 6)
    assert fp.touching_fraction == pytest.approx(2 / 6)
    lines = fp.describe()
    assert lines[0].startswith("3 cases, 2D, sizes median 24×26 (min 20×20 … max 30×30 per axis)")
    assert "objects: median 2 per image" in lines[-2] and "33 % touch another" in lines[-2]


def test_touching_fraction_of_three_squares_is_two_thirds(tmp_path):
    mask = np.zeros((20, 30), np.uint8)
    mask[2:6, 2:6] = mask[2:6, 7:11] = mask[12:16, 20:24] = 1
    write_case(tmp_path, "a", np.full((1, 20, 30), 7, np.uint8), mask)
    fp = fingerprint_dataset(tmp_path)
    assert fp.objects["1"]["count"] == 3
    assert fp.objects["1"]["diameter_px"]["median"] == pytest.approx(square_diameter(4))
    assert fp.touching_fraction == pytest.approx(2 / 3)
    # width on the medial axis, 2·d − 1: 3 for 4-px squares (the two that touch are measured apart)
    assert fp.objects["1"]["width_px"]["median"] == 3.0
    assert "width median 3 px" in fp.describe()[-2]


def test_corner_contacts_stay_separate_objects(tmp_path):
    mask = np.zeros((8, 8), np.uint8)
    mask[1:3, 1:3] = mask[3:5, 3:5] = 1  # meet at a corner only: two objects (4-connectivity)
    write_case(tmp_path, "a", np.zeros((1, 8, 8), np.uint8), mask)
    fp = fingerprint_dataset(tmp_path)
    assert fp.objects["1"]["count"] == 2 and fp.touching_fraction == 1.0


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_foreground_intensity_equals_numpy_on_the_same_pixels(tmp_path, dtype):
    cases = three_cases(tmp_path, np.random.default_rng(1), dtype)
    values = np.concatenate([img[0][mask > 0] for img, mask in cases]).astype(np.float64)
    fp = fingerprint_dataset(tmp_path)
    (s,) = fp.intensity
    assert s["pixels"] == values.size
    assert s["mean"] == pytest.approx(values.mean(), rel=1e-9)
    assert s["std"] == pytest.approx(values.std(), rel=1e-9)
    assert s["p0_5"] == pytest.approx(np.percentile(values, 0.5, method="inverted_cdf"))
    assert s["p99_5"] == pytest.approx(np.percentile(values, 99.5, method="inverted_cdf"))


def test_class_fractions_match_bincount_and_sum_to_one(tmp_path):
    rng = np.random.default_rng(2)
    masks = [
        rng.choice([0, 3, 7], size=shape, p=[0.6, 0.3, 0.1]).astype(np.uint8)
        for shape in ((16, 18), (20, 12))
    ]
    for k, mask in enumerate(masks):
        write_case(tmp_path, f"{k}", rng.integers(0, 255, (1, *mask.shape), dtype=np.uint8), mask)
    fp = fingerprint_dataset(tmp_path)
    assert fp.label_values == [0, 3, 7]
    classes = np.concatenate([np.searchsorted([0, 3, 7], m.ravel()) for m in masks])
    want = np.bincount(classes, minlength=3) / classes.size
    assert fp.class_fraction == pytest.approx(want.tolist())
    assert sum(fp.class_fraction) == pytest.approx(1.0)
    assert set(fp.objects) == {"1", "2"}
    # a label map given by the user numbers the classes its way
    fp2 = fingerprint_dataset(tmp_path, label_map=LabelMap([7, 3, 0]))
    assert fp2.label_values == [7, 3, 0] and fp2.class_fraction == pytest.approx(
        want[::-1].tolist()
    )


def test_grey_stored_as_rgb_is_detected_and_colour_is_not(tmp_path):
    rng = np.random.default_rng(3)
    mask = np.zeros((12, 14), np.uint8)
    mask[3:8, 3:8] = 255
    grey = rng.integers(0, 256, (1, 12, 14), dtype=np.uint8)
    write_case(tmp_path / "grey", "a", np.repeat(grey, 3, axis=0), mask)
    write_case(tmp_path / "grey", "b", np.repeat(grey[:, ::-1], 3, axis=0), mask)
    fp = fingerprint_dataset(tmp_path / "grey")
    assert fp.channels == 3 and fp.grey_as_colour and fp.effective_channels == 1
    assert "channels: 3 stored, grey (identical channels) → 1" in fp.describe()
    colour = np.repeat(grey, 3, axis=0)
    colour[1, 0, 0] ^= 1  # one pixel differs in one channel
    write_case(tmp_path / "colour", "a", np.repeat(grey, 3, axis=0), mask)
    write_case(tmp_path / "colour", "b", colour, mask)
    fp = fingerprint_dataset(tmp_path / "colour")
    assert fp.channels == 3 and not fp.grey_as_colour and fp.effective_channels == 3
    assert len(fp.intensity) == 3


def test_3d_tiff_with_spacing(tmp_path):
    meta = ImageMeta(spacing=(2.0, 0.5, 0.25), spacing_unit="um")
    image = np.random.default_rng(4).integers(0, 4000, (1, 6, 10, 12), dtype=np.uint16)
    mask = np.zeros((6, 10, 12), np.uint8)
    mask[1:3, 1:3, 1:3] = 1  # a 2×2×2 cube
    mask[1:3, 1:3, 4:6] = 1  # another, one voxel apart: touching
    mask[4:6, 6:9, 8:11] = 1  # 2×3×3, far away
    write_case(tmp_path, "v", image, mask, ext="tif", meta=meta)
    fp = fingerprint_dataset(tmp_path)
    assert fp.spatial_dims == 3 and fp.sizes["median"] == [6.0, 10.0, 12.0]
    assert fp.spacing == [2.0, 0.5, 0.25] and fp.spacing_unit == "um"
    obj = fp.objects["1"]
    assert obj["count"] == 3
    assert obj["diameter_px"]["median"] == pytest.approx((6 * 8 / math.pi) ** (1 / 3))
    assert fp.touching_fraction == pytest.approx(2 / 3)
    assert fp.describe()[0].endswith("(D×H×W), spacing 2×0.5×0.25 um")


def test_instance_masks_use_the_ids(tmp_path):
    inst = np.zeros((10, 16), np.uint16)
    inst[2:6, 2:6], inst[2:6, 6:10] = 4, 9  # two instances side by side: one blob as labels
    inst[7:9, 13:15] = 2
    write_case(tmp_path, "a", np.zeros((1, 10, 16), np.uint8), inst)
    write_case(tmp_path, "b", np.zeros((1, 10, 16), np.uint8), np.zeros_like(inst))
    fp = fingerprint_dataset(tmp_path, mask_kind="instances")
    assert fp.mask_kind == "instances" and fp.label_values == [0, 1]
    assert fp.objects["1"]["count"] == 3 and fp.objects["1"]["per_case_median"] == 1.5
    assert fp.touching_fraction == pytest.approx(2 / 3)
    assert fp.class_fraction[1] == pytest.approx(36 / 320)


def test_colour_coded_instance_masks_fingerprint_as_their_ids(tmp_path):
    """The same objects saved as uint16 ids and as one RGB colour per object (recognised with no
    flag) give the same object counts, sizes and touching fraction."""
    from tests.test_labels import _colour_coded
    from unetkit.demo.synthetic import synthetic_cells

    for name in ("ids", "rgb"):
        for k in range(2):
            image, ids = synthetic_cells((160, 200), seed=k)
            mask = ids.astype(np.uint16)[None] if name == "ids" else _colour_coded(ids, seed=k)
            write_image(tmp_path / name / "images" / f"{k}.png", image[None])
            write_image(tmp_path / name / "masks" / f"{k}.png", mask)
    by_ids = fingerprint_dataset(tmp_path / "ids")
    by_rgb = fingerprint_dataset(tmp_path / "rgb")
    assert by_ids.mask_kind == by_rgb.mask_kind == "instances"
    assert by_rgb.objects == by_ids.objects and by_ids.objects["1"]["count"] > 40
    assert by_rgb.touching_fraction == by_ids.touching_fraction
    assert by_rgb.class_fraction == by_ids.class_fraction


def test_a_seeded_subset_of_many_cases(tmp_path):
    rng = np.random.default_rng(5)
    for k in range(6):
        mask = np.zeros((8, 8 + k), np.uint8)
        mask[2:5, 2:5] = 255
        write_case(tmp_path, f"{k}", rng.integers(0, 255, (1, *mask.shape), dtype=np.uint8), mask)
    seen = []
    fp = fingerprint_dataset(
        tmp_path, max_cases=3, seed=1, progress=lambda d, n: seen.append((d, n))
    )
    assert (fp.cases, fp.cases_found, fp.sampled) == (3, 6, True)
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert "3 cases (a seeded sample of 6)" in fp.describe()[0]
    again = fingerprint_dataset(tmp_path, max_cases=3, seed=1)
    assert again.sizes == fp.sizes and again.intensity == fp.intensity


def test_round_trip_through_json(tmp_path):
    three_cases(tmp_path, np.random.default_rng(6))
    fp = fingerprint_dataset(tmp_path)
    text = json.dumps(fp.to_dict(), allow_nan=False)
    back = Fingerprint.from_dict(json.loads(text))
    assert back == fp and back.to_dict() == fp.to_dict()
    assert isinstance(back.sizes["median"][0], float) and isinstance(back.touching_fraction, float)
    with pytest.raises(ConfigError, match="fingerprint dict lacks cases"):
        Fingerprint.from_dict({k: v for k, v in fp.to_dict().items() if k != "cases"})


def test_bad_inputs_name_the_folder_or_file(tmp_path):
    write_image(tmp_path / "nomasks" / "images" / "a.png", np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(DataError, match=r"nomasks.*no masks/ folder"):
        fingerprint_dataset(tmp_path / "nomasks")
    mask = np.zeros((6, 6), np.uint8)
    mask[1:3, 1:3] = 255
    write_case(tmp_path / "broken", "a", np.zeros((1, 6, 6), np.uint8), mask)
    (tmp_path / "broken" / "images" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    write_image(tmp_path / "broken" / "masks" / "b.png", mask[None])
    with pytest.raises(DataError, match=r"b\.png"):
        fingerprint_dataset(tmp_path / "broken", label_map=LabelMap([0, 255]))
    with pytest.raises(ConfigError, match="max_cases must be an integer >= 1"):
        fingerprint_dataset(tmp_path / "broken", max_cases=0)
    with pytest.raises(ConfigError, match="unknown mask kind"):
        fingerprint_dataset(tmp_path / "broken", mask_kind="blobs")


@pytest.mark.slow
def test_monuseg_train(shared_data):
    root = shared_data / "monuseg" / "train"
    if not root.is_dir():
        pytest.skip(f"MoNuSeg not found at {root}")
    fp = fingerprint_dataset(root)
    print(f"\nMoNuSeg train fingerprint: {fp.seconds:.2f} s\n" + "\n".join(fp.describe()))
    assert fp.cases == 16 and fp.spatial_dims == 2 and fp.sizes["median"] == [1000.0, 1000.0]
    assert fp.channels == 3 and not fp.grey_as_colour  # H&E colour
    assert fp.label_values == [0, 255]
    assert 0.10 < fp.class_fraction[1] < 0.40  # 10.9–39.7 % nucleus per image (data README)
    obj = fp.objects["1"]
    # the instances/ folder beside the binary masks: every nucleus counts, merged blobs or not
    from PIL import Image

    ids = [np.asarray(Image.open(p)) for p in sorted((root / "instances").glob("*.png"))]
    assert fp.instance_ids and obj["count"] == sum(np.unique(i[i > 0]).size for i in ids)
    assert 10 < obj["diameter_px"]["median"] < 40
    assert fp.touching_fraction > 0.3  # 38 %: many nuclei meet another


def test_an_image_with_nan_is_refused_before_any_plan_is_made(tmp_path):
    """train printed the whole fingerprint and plan before refusing a NaN image; the fingerprint
    refuses it as it reads it."""
    cases = three_cases(tmp_path, np.random.default_rng(0), dtype=np.float32)
    image = cases[1][0].copy()
    image[0, 2, 3] = np.nan
    write_image(tmp_path / "images" / "01.tif", image)
    with pytest.raises(DataError, match=r"01\.tif: image contains NaN or infinite values \(1 NaN"):
        fingerprint_dataset(tmp_path)


def test_a_few_extreme_pixels_are_hot_and_bright_objects_are_not(tmp_path):
    """Five pixels of 1e6 in a 0…1 float image carry its std (a z-score would divide the signal
    by it); bright objects covering a fifth of an image, dim spots, a flat image are no hot
    pixels. The fingerprint names the images that have them."""
    from unetkit.data.fingerprint import has_hot_pixels

    rng = np.random.default_rng(0)
    image = rng.random((1, 150, 150)).astype(np.float32)
    clean = image.copy()
    image[0, rng.integers(0, 150, 5), rng.integers(0, 150, 5)] = 1e6
    assert has_hot_pixels(image) and not has_hot_pixels(clean)
    nuclei = np.zeros((1, 150, 150), np.uint16)
    nuclei[0, 20:80, 30:90] = 3000
    nuclei += rng.integers(0, 50, nuclei.shape, dtype=np.uint16)
    assert not has_hot_pixels(nuclei)
    assert not has_hot_pixels(np.full((2, 8, 8), 7, np.uint8))
    assert has_hot_pixels(np.stack([clean[0], image[0]]))  # any channel
    # sparse spots of several pixels on noise are signal; three spots on 0 have no spread
    spots = (100 + rng.normal(0, 5, (1, 512, 512))).astype(np.uint16)
    for y, x in ((50, 60), (300, 200), (400, 450)):
        spots[0, y : y + 5, x : x + 5] = 3000
    assert not has_hot_pixels(spots)
    assert not has_hot_pixels(np.where(spots > 1000, spots, 0))
    mask = np.zeros((150, 150), np.uint8)
    mask[40:60, 40:60] = 255
    write_case(tmp_path, "hot", image, mask, "tif")
    write_case(tmp_path, "clean", clean, mask, "tif")
    fp = fingerprint_dataset(tmp_path)
    assert fp.hot_pixel_cases == ["hot.tif"]
    assert Fingerprint.from_dict(json.loads(json.dumps(fp.to_dict()))).hot_pixel_cases == [
        "hot.tif"
    ]


def test_a_fingerprint_saved_before_hot_pixels_were_measured_still_loads(tmp_path):
    rng = np.random.default_rng(1)
    three_cases(tmp_path, rng)
    old = fingerprint_dataset(tmp_path).to_dict()
    del old["hot_pixel_cases"]
    assert Fingerprint.from_dict(old).hot_pixel_cases == []

"""Label maps: encode/decode round trips, inference per mask kind, read_mask, error messages."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from unetkit.data import INSTANCE_LABEL_MAP, LabelMap, infer_label_map, read_mask
from unetkit.errors import ConfigError, DataError
from unetkit.io import read_image, write_image


def test_binary_0_255_encode_decode():
    lm = LabelMap([0, 255])
    mask = np.array([[[0, 255, 255], [0, 0, 255]]], np.uint8)
    idx = lm.encode(mask)
    assert idx.dtype == np.int64 and idx.shape == (2, 3)
    assert idx.tolist() == [[0, 1, 1], [0, 0, 1]]
    back = lm.decode(idx)
    assert back.dtype == np.uint8 and back.shape == (1, 2, 3)
    np.testing.assert_array_equal(back, mask)
    assert lm.num_classes == 2


def test_user_order_is_kept():
    lm = LabelMap([255, 0], names=["interior", "membrane"])  # ISBI numbered with membrane = class 1
    assert lm.encode(np.array([[[0, 255]]], np.uint8)).tolist() == [[1, 0]]


def test_integer_labels_uint16_and_int32_paths():
    lm = LabelMap([0, 3, 1000])
    m16 = np.array([[[0, 1000, 3]]], np.uint16)
    assert lm.encode(m16).tolist() == [[0, 2, 1]]
    m32 = m16.astype(np.int32)
    assert lm.encode(m32).tolist() == [[0, 2, 1]]
    assert lm.dtype == "uint16"
    np.testing.assert_array_equal(lm.decode(np.array([[0, 2, 1]])), m16)


def test_float_mask_with_whole_numbers():
    lm = LabelMap([0, 1, 2])
    assert lm.encode(np.array([[[2.0, 0.0, 1.0]]], np.float32)).tolist() == [[2, 0, 1]]
    with pytest.raises(DataError) as err:
        lm.encode(np.array([[[0.5, 1.0, 0.25]]], np.float32), path="p.tif")
    assert str(err.value) == (
        "p.tif: mask holds 2 non-integer value(s) (e.g. 0.5): masks hold class numbers (0, 1, …); "
        "a probability map or an image given as a mask? Threshold it, or save it as integers"
    )
    with pytest.raises(DataError, match=r"p\.tif: mask holds 1 NaN/inf value\(s\); masks hold"):
        lm.encode(np.array([[[np.nan, 1.0]]], np.float32), path="p.tif")


def test_unexpected_values_named_with_file():
    lm = LabelMap([0, 255])
    mask = np.array([[[0, 128, 255, 7]]], np.uint8)
    with pytest.raises(
        DataError,
        match=r"^masks/03\.png: unexpected label values 7, 128 \(the label map has 0, 255\)$",
    ):
        lm.encode(mask, path="masks/03.png")
    with pytest.raises(DataError, match=r"^unexpected label values 7, 128"):
        lm.encode(mask)


def test_encode_needs_channel_first():
    with pytest.raises(
        DataError, match=r"mask of shape \(2, 3\) is not channel-first with 1 channel"
    ):
        LabelMap([0, 1]).encode(np.zeros((2, 3), np.uint8))


def test_colour_map_encode_decode():
    lm = LabelMap([(0, 0, 0), (255, 0, 0), (0, 255, 0)], kind="colors")
    rgb = np.zeros((3, 2, 2), np.uint8)
    rgb[0, 0, 0] = 255  # red
    rgb[1, 1, 1] = 255  # green
    idx = lm.encode(rgb)
    assert idx.tolist() == [[1, 0], [0, 2]]
    np.testing.assert_array_equal(lm.decode(idx), rgb)
    rgb[2, 0, 1] = 9
    with pytest.raises(DataError, match=r"unexpected label values \(0, 0, 9\)"):
        lm.encode(rgb)


def test_decode_out_of_range():
    with pytest.raises(ConfigError, match=r"class indices must lie in 0\.\.1, got 0\.\.2"):
        LabelMap([0, 255]).decode(np.array([0, 2]))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"values": [0]}, "at least 2 classes"),
        ({"values": [0, 1, 0]}, "class values repeat: 0, 1, 0"),
        ({"values": [0, 1.5]}, "class values must be integers"),
        ({"values": [0, 1], "names": ["a"]}, "1 class names for 2 class values"),
        ({"values": [(0, 0), (1, 1)], "kind": "colors"}, r"\(r, g, b\) triples"),
        ({"values": [0, 1], "kind": "blobs"}, "unknown label map kind 'blobs'"),
        ({"values": [0, 2], "kind": "instances"}, r"values \(0, 1\)"),
    ],
)
def test_label_map_argument_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        LabelMap(**kwargs)


@pytest.mark.parametrize(
    "lm",
    [
        LabelMap([0, 255], names=["bg", "fg"]),
        LabelMap([(0, 0, 0), (10, 20, 30)], kind="colors"),
        LabelMap([0, 1, 2], palette=[0, 0, 0, 255, 0, 0, 0, 0, 255]),
        INSTANCE_LABEL_MAP,
    ],
)
def test_to_dict_json_round_trip(lm):
    assert LabelMap.from_dict(json.loads(json.dumps(lm.to_dict()))) == lm


def test_from_nnunet_v1_and_v2():
    v2 = LabelMap.from_nnunet({"background": 0, "liver": 1, "tumour": 2})
    v1 = LabelMap.from_nnunet({"0": "background", "2": "tumour", "1": "liver"})
    assert v2 == v1 and v2.names == ("background", "liver", "tumour")
    with pytest.raises(ConfigError, match="region-based"):
        LabelMap.from_nnunet({"background": 0, "whole": [1, 2]})


# --------------------------------------------------------------------------------- inference
def test_infer_binary_masks_both_conventions():
    a = np.array([[[0, 255]]], np.uint8)
    assert infer_label_map([a]).values == (0, 255)
    assert infer_label_map([np.array([[[1, 0]]], np.uint8)]).values == (0, 1)
    # union over masks, one of which is empty
    assert infer_label_map([np.zeros((1, 2, 2), np.uint8), a]).values == (0, 255)


def test_infer_integer_labels_from_files(tmp_path):
    for i, vals in enumerate(([0, 1], [0, 2], [3, 0])):
        write_image(tmp_path / f"{i}.png", np.array([[vals]], np.uint8))
    lm = infer_label_map(sorted(tmp_path.glob("*.png")))
    assert lm.values == (0, 1, 2, 3) and lm.kind == "labels" and lm.dtype == "uint8"


def test_infer_rgb_colours():
    rgb = np.zeros((3, 2, 2), np.uint8)
    rgb[:, 0, 0] = (255, 0, 0)
    rgb[:, 1, 1] = (0, 0, 255)
    lm = infer_label_map([rgb])
    assert lm.kind == "colors" and lm.values == ((0, 0, 0), (0, 0, 255), (255, 0, 0))


def test_infer_palette_mask_keeps_palette(tmp_path):
    im = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8))
    im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0])
    im.save(tmp_path / "voc.png")
    lm = infer_label_map([tmp_path / "voc.png"])
    assert lm.values == (0, 1, 2) and lm.palette[:9] == (0, 0, 0, 128, 0, 0, 0, 128, 0)


def test_auto_refuses_many_values_and_suggests_instances(tmp_path):
    inst = np.arange(40, dtype=np.uint16).reshape(1, 5, 8)
    write_image(tmp_path / "inst.png", inst)
    with pytest.raises(
        DataError, match=r"inst\.png: 40 distinct mask values .* use --mask-kind instances"
    ):
        infer_label_map([tmp_path / "inst.png"])
    assert infer_label_map([tmp_path / "inst.png"], kind="labels").num_classes == 40
    assert infer_label_map([tmp_path / "inst.png"], kind="instances") is INSTANCE_LABEL_MAP


def test_auto_reads_instance_label_images_as_instances(tmp_path):
    """Instance ids (each object one region of its own value, many objects) are read as instances
    with no flag, also when the first masks hold few objects; grey levels, JPEG-like noise, 3D
    volumes and class masks with few values are not."""
    from skimage.measure import label as components

    from unetkit.data.labels import looks_like_instances
    from unetkit.demo.synthetic import synthetic_cells

    _, ids = synthetic_cells((160, 200), seed=3)
    assert ids.max() > 40 and looks_like_instances(ids)
    few = np.zeros((1, 40, 40), np.uint16)
    few[0, 5:10, 5:10], few[0, 20:30, 20:25] = 1, 2  # an image with two objects comes first
    write_image(tmp_path / "a.png", few)
    write_image(tmp_path / "b.png", ids[None].astype(np.uint16))
    assert infer_label_map([tmp_path / "a.png", tmp_path / "b.png"]) is INSTANCE_LABEL_MAP
    assert infer_label_map([tmp_path / "b.png"], kind="labels").num_classes == ids.max() + 1

    rng = np.random.default_rng(0)
    grey = np.clip(rng.normal(120, 40, (80, 80)), 0, 255).astype(np.uint8)
    assert not looks_like_instances(grey)  # each grey value scattered over many regions
    binary = (components(ids > 0) > 0).astype(np.int16) * 255
    noisy = np.clip(binary + rng.integers(-3, 4, binary.shape), 0, 255)  # JPEG-like artefacts
    assert not looks_like_instances(noisy.astype(np.uint8))
    assert not looks_like_instances(np.stack([ids, ids]))  # 3D: organ atlases, never guessed
    assert not looks_like_instances(np.minimum(ids, 30))  # ≤ 32 values: class masks
    write_image(tmp_path / "grey.png", grey[None])
    with pytest.raises(DataError, match="distinct mask values"):
        infer_label_map([tmp_path / "grey.png"])


def _colour_coded(ids: np.ndarray, seed: int = 0) -> np.ndarray:
    """``(3, H, W)`` uint8: black background, a distinct random colour per object id (an overlay
    saved with Fiji's glasbey LUT)."""
    rng = np.random.default_rng(seed)
    colours = rng.choice(2**24 - 1, size=int(ids.max()), replace=False) + 1  # never black
    packed = np.concatenate([[0], colours])[ids]
    return np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255]).astype(np.uint8)


def test_colour_coded_instance_masks(tmp_path):
    """An RGB mask with one colour per object on black is read as instances with no flag (and with
    kind="instances"): ids 1..n that partition the image as the colours do."""
    from skimage.measure import label as components

    from unetkit.data.labels import instance_ids
    from unetkit.demo.synthetic import synthetic_cells

    _, ids = synthetic_cells((160, 200), seed=3)
    rgb = _colour_coded(ids)
    got = instance_ids(rgb)
    assert got.dtype == np.int64 and got.min() == 0 and got.max() == ids.max()
    assert sorted(np.unique(got)) == list(range(ids.max() + 1))  # compact ids, black = 0
    assert np.array_equal(got == 0, ids == 0)
    pairs = np.unique(
        np.stack([got.ravel(), ids.ravel()]), axis=1
    )  # one id per colour: a bijection
    assert pairs.shape[1] == ids.max() + 1

    write_image(tmp_path / "few.png", _colour_coded(np.minimum(ids, 2), seed=1))  # 2 objects first
    write_image(tmp_path / "many.png", rgb)
    masks = [tmp_path / "few.png", tmp_path / "many.png"]
    assert infer_label_map(masks) is INSTANCE_LABEL_MAP
    assert infer_label_map(masks, kind="instances") is INSTANCE_LABEL_MAP
    classes, inst, _ = read_mask(tmp_path / "many.png", INSTANCE_LABEL_MAP)
    assert np.array_equal(classes, (ids > 0).astype(np.int64))
    assert np.array_equal(inst, got)
    assert len(np.unique(inst)) - 1 == components(ids, connectivity=2).max()  # each id one object

    # a few colours stay colour classes; colours scattered like JPEG noise are still an error
    assert infer_label_map([tmp_path / "few.png"]).kind == "colors"
    noisy = rgb.astype(np.int16) + np.random.default_rng(0).integers(-2, 3, rgb.shape)
    write_image(tmp_path / "jpeg.png", np.clip(noisy, 0, 255).astype(np.uint8))
    with pytest.raises(DataError, match=r"jpeg\.png: .* distinct mask values"):
        infer_label_map([tmp_path / "jpeg.png"])
    with pytest.raises(DataError, match="colour-coded instance mask must be uint8"):
        instance_ids(rgb.astype(np.uint16))
    with pytest.raises(DataError, match=r"1 channel \(ids\) or 3 \(one colour per object\)"):
        infer_label_map([np.zeros((2, 4, 4), np.uint8)], kind="instances")


def _blobs(shape=(120, 160)) -> np.ndarray:
    """``(H, W)`` uint8 0/255: two ellipses, a polyp-like mask."""
    from skimage.draw import ellipse

    mask = np.zeros(shape, np.uint8)
    mask[ellipse(60, 90, 35, 50, shape, rotation=0.4)] = 255
    mask[ellipse(25, 25, 10, 14, shape)] = 255
    return mask


def _jpeg(path, array: np.ndarray, quality: int = 75) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, quality=quality)


def test_jpeg_masks_are_read_as_binary_at_mid_grey(tmp_path):
    """JPEG masks (grey or grey saved as RGB, as Kvasir-SEG ships them) hold many values around 0
    and 255; with no flag the set is binary at grey 128, which recovers the drawn mask, and the map
    says so in checkpoints."""
    mask = _blobs()
    _jpeg(tmp_path / "a.jpg", np.stack([mask] * 3, -1), quality=60)
    _jpeg(tmp_path / "b.jpg", mask, quality=90)
    assert len(np.unique(read_image(tmp_path / "a.jpg")[0])) > 16  # lossy: no exact values
    lm = infer_label_map([tmp_path / "a.jpg", tmp_path / "b.jpg"])
    assert lm.values == (0, 255) and lm.threshold == 128 and lm.dtype == "uint8"
    assert LabelMap.from_dict(json.loads(json.dumps(lm.to_dict()))) == lm
    for name in ("a.jpg", "b.jpg"):
        classes, _, _ = read_mask(tmp_path / name, lm)
        assert classes.shape == mask.shape and np.mean(classes == (mask > 0)) > 0.999
    assert lm.decode(np.array([[0, 1]])).tolist() == [[[0, 255]]]
    write_image(tmp_path / "c.png", mask[None])  # a lossless 0/255 mask beside them is fine
    assert infer_label_map([tmp_path / "a.jpg", tmp_path / "c.png"]) == lm
    assert infer_label_map([tmp_path / "c.png"]).threshold is None  # exact values: no threshold


def test_jpeg_masks_that_are_not_binary_ask_for_lossless_files(tmp_path):
    mask = _blobs()
    colour = np.zeros((*mask.shape, 3), np.uint8)
    colour[..., 0] = mask  # red objects: a colour class mask
    colour[:40, :, 1] = 200
    _jpeg(tmp_path / "colour.jpg", colour)
    with pytest.raises(DataError, match=r"colour\.jpg: a JPEG mask in colour: .* \(PNG\)"):
        infer_label_map([tmp_path / "colour.jpg"])
    three = np.where(mask > 0, 255, 0).astype(np.uint8)
    three[:, :60] = np.where(three[:, :60] > 0, 128, 0)  # a second class at grey 128
    three[90:, 100:] = 128
    _jpeg(tmp_path / "three.jpg", three)
    with pytest.raises(DataError, match=r"three\.jpg: a JPEG mask with .* % of its pixels between"):
        infer_label_map([tmp_path / "three.jpg"])
    _jpeg(tmp_path / "ok.jpg", mask)
    write_image(tmp_path / "ones.png", (mask[None] > 0).astype(np.uint8))  # 0/1, not 0/255
    with pytest.raises(DataError, match=r"ones\.png: mask values 0, 1 beside JPEG masks"):
        infer_label_map([tmp_path / "ok.jpg", tmp_path / "ones.png"])
    _jpeg(tmp_path / "black.jpg", np.zeros_like(mask))
    with pytest.raises(DataError, match=r"black\.jpg: no JPEG mask has a pixel of grey 128"):
        infer_label_map([tmp_path / "black.jpg"])
    with pytest.raises(ConfigError, match="a threshold .* needs 2 label values"):
        LabelMap([0, 1, 2], threshold=128)


def test_infer_single_value_is_an_error(tmp_path):
    write_image(tmp_path / "e.png", np.zeros((1, 2, 2), np.uint8))
    with pytest.raises(DataError, match=r"e\.png: every mask \(1\) holds the single value 0"):
        infer_label_map([tmp_path / "e.png"])
    write_image(tmp_path / "f.png", np.zeros((1, 2, 2), np.uint8))
    with pytest.raises(DataError, match=r"\d: every mask \(2\) holds the single value 0: nothing"):
        infer_label_map([tmp_path / "e.png", tmp_path / "f.png"])  # the folder is named


def test_grey_masks_saved_as_rgb_mix_with_grey_and_colour_masks(tmp_path):
    """Image editors save grey masks as RGB (or RGBA): such a mask reads as its grey channel, so a
    set mixing them with grey masks is a grey set, and predictions come back grey; an 8-bit grey
    mask in a colour-coded set is the grey colour (v, v, v)."""
    from PIL import Image

    from unetkit.data.labels import read_mask

    mask = np.zeros((6, 8), np.uint8)
    mask[1:4, 2:6] = 255
    Image.fromarray(mask).save(tmp_path / "grey.png")
    Image.fromarray(np.stack([mask] * 3, -1)).save(tmp_path / "rgb.png")
    Image.fromarray(np.stack([mask] * 3 + [np.full_like(mask, 255)], -1)).save(tmp_path / "a.png")
    paths = [tmp_path / n for n in ("rgb.png", "grey.png", "a.png")]
    lm = infer_label_map(paths)
    assert lm.kind == "labels" and lm.values == (0, 255) and lm.mask_channels == 1
    for path in paths:
        classes, _, meta = read_mask(path, lm)
        np.testing.assert_array_equal(classes, mask // 255)
        assert meta.shape == (1, 6, 8)
    # a colour-coded set: red objects on black, and one mask with only white ones saved as grey
    red = np.zeros((3, 6, 8), np.uint8)
    red[0, 1:4, 2:6] = 255
    write_image(tmp_path / "red.png", red)
    lm = infer_label_map([tmp_path / "red.png", tmp_path / "grey.png"])
    assert lm.kind == "colors" and lm.values == ((0, 0, 0), (255, 0, 0), (255, 255, 255))
    np.testing.assert_array_equal(read_mask(tmp_path / "grey.png", lm)[0], (mask > 0) * 2)
    np.testing.assert_array_equal(read_mask(tmp_path / "red.png", lm)[0], (red[0] > 0) * 1)
    assert infer_label_map([tmp_path / "grey.png"], kind="colors").values == (
        (0, 0, 0),
        (255, 255, 255),
    )


def _few_objects(tmp_path, counts, numbered=True):
    """One 2D mask per count, ``count`` discs numbered 1 … count (or ``count`` × 10 apart)."""
    yy, xx = np.mgrid[:64, :64]
    paths = []
    for i, count in enumerate(counts):
        mask = np.zeros((64, 64), np.uint16)
        for k in range(count):
            cy, cx = 4 + 9 * (k // 6), 4 + 11 * (k % 6)
            mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= 9] = k + 1 if numbered else 10 * (k + 1)
        write_image(tmp_path / f"m{i}.png", mask[None])
        paths.append(tmp_path / f"m{i}.png")
    return paths


def test_ids_of_a_few_objects_per_image_are_instances(tmp_path):
    """Masks numbered 1 … n per image (n varying, up to at least FEW_IDS_MIN), every number one
    region, are instance ids even with far fewer than INSTANCE_GUESS_MIN_IDS objects; class masks
    (the same classes in every image, classes missing in between, or split regions) are not."""
    from unetkit.data.labels import FEW_IDS_MIN, INSTANCE_LABEL_MAP, numbered_per_mask

    few = _few_objects(tmp_path / "few", [3, 5, 2, 6, 4, 0])
    assert infer_label_map(few) == INSTANCE_LABEL_MAP
    assert infer_label_map(few, kind="labels").values == tuple(range(7))  # the flag still rules
    same = _few_objects(tmp_path / "same", [5, 5, 5])  # every image has classes 1 … 5
    assert infer_label_map(same).kind == "labels"
    gaps = _few_objects(tmp_path / "gaps", [3, 5, 2], numbered=False)  # 0, 10, 20 …
    assert infer_label_map(gaps).kind == "labels"
    small = _few_objects(tmp_path / "small", [1, 2, FEW_IDS_MIN - 1])  # 3 classes at most
    assert infer_label_map(small).kind == "labels"
    # 17–32 objects per image: past max_classes, still numbered per image (check-data agrees)
    many = _few_objects(tmp_path / "many", [18, 25, 20, 12])
    assert infer_label_map(many) == INSTANCE_LABEL_MAP
    # a class in two places of one mask is a class, not an object
    assert not numbered_per_mask([{0, 1, 2}, {0, 1, 2, 3, 4}], [True, False])
    assert numbered_per_mask([{0, 1, 2}, {0, 1, 2, 3, 4}], [True, True])
    assert not numbered_per_mask([{0, 1, 3}, {0, 1, 2, 3, 4}], [True, True])


def test_binary_masks_saved_both_as_0_1_and_0_255_are_refused_with_the_fix(tmp_path):
    """Read as they are, 1 and 255 would be two classes never seen together: the mask of the
    fewer kind is named with the fix; --mask-kind labels keeps them apart; a mask holding 1 and
    255 together is a class mask."""
    mask = np.zeros((1, 8, 8), np.uint8)
    mask[0, 2:5, 2:5] = 1
    for i in range(3):
        write_image(tmp_path / f"full{i}.png", mask * 255)
    write_image(tmp_path / "ones.png", mask)
    paths = sorted(tmp_path.glob("*.png"))
    with pytest.raises(
        DataError, match=r"ones\.png: mask values 0/1 while 3 of the 4 masks hold 0/255"
    ):
        infer_label_map(paths)
    assert infer_label_map(paths, kind="labels").values == (0, 1, 255)
    both = mask * 255
    both[0, 6, 6] = 1
    write_image(tmp_path / "full0.png", both)
    assert infer_label_map(paths).values == (0, 1, 255)


def test_infer_mixed_channel_counts(tmp_path):
    """Labels of 16 bits beside colour masks cannot be colours: the odd one out is named."""
    red = np.zeros((3, 2, 2), np.uint8)
    red[0, 0, 0] = 255
    write_image(tmp_path / "rgb.png", red)
    write_image(tmp_path / "big.tif", np.array([[[0, 1], [300, 0]]], np.uint16))
    with pytest.raises(
        DataError, match=r"rgb\.png: mask has 3 channel\(s\) \(RGB colours\) but the label map is"
    ):
        infer_label_map([tmp_path / "big.tif", tmp_path / "rgb.png"], kind="labels")
    for paths in (
        [tmp_path / "big.tif", tmp_path / "rgb.png"],
        [tmp_path / "rgb.png", tmp_path / "big.tif"],
    ):
        with pytest.raises(
            DataError, match=r"big\.tif: mask has 1 channel\(s\) \(labels\) but 1 of the 2 masks"
        ):
            infer_label_map(paths)
    with pytest.raises(
        DataError, match=r"big\.tif: mask values up to 300 are no 8-bit grey colours"
    ):
        infer_label_map([tmp_path / "big.tif"], kind="colors")


def test_infer_bad_kind_and_channels():
    with pytest.raises(ConfigError, match="unknown mask kind 'semantic'"):
        infer_label_map([], kind="semantic")
    with pytest.raises(
        DataError, match=r"1 channel \(labels\) or 3 \(RGB colours\), got shape \(2, 2, 2\)"
    ):
        infer_label_map([np.zeros((2, 2, 2), np.uint8)])


# --------------------------------------------------------------------------------- read_mask
def test_read_mask_isbi_convention(tmp_path):
    # ISBI 2012: 255 = cell interior, 0 = membrane -> class 0 = membrane, 1 = interior
    mask = np.array([[[255, 0, 255]]], np.uint8)
    write_image(tmp_path / "m.png", mask)
    lm = infer_label_map([tmp_path / "m.png"])
    classes, instances, meta = read_mask(tmp_path / "m.png", lm)
    assert classes.tolist() == [[1, 0, 1]] and instances is None and meta.mode == "L"
    np.testing.assert_array_equal(lm.decode(classes), read_image(tmp_path / "m.png")[0])


def test_read_mask_instances(tmp_path):
    ids = np.array([[[0, 5, 5], [7, 0, 9]]], np.uint16)
    write_image(tmp_path / "i.tif", ids)
    classes, instances, _ = read_mask(tmp_path / "i.tif", kind="instances")
    assert classes.tolist() == [[0, 1, 1], [1, 0, 1]]
    assert instances.dtype == np.int64 and instances.tolist() == [[0, 5, 5], [7, 0, 9]]


def test_read_mask_3d(tmp_path):
    vol = np.zeros((1, 2, 3, 4), np.uint8)
    vol[0, 1, 2, 3] = 2
    write_image(tmp_path / "v.nii.gz", vol)
    classes, _, _ = read_mask(tmp_path / "v.nii.gz", LabelMap([0, 2]))
    assert classes.shape == (2, 3, 4) and classes.sum() == 1 and classes[1, 2, 3] == 1


def test_read_mask_errors(tmp_path):
    with pytest.raises(ConfigError, match="read_mask needs the dataset's LabelMap"):
        read_mask(tmp_path / "m.png")
    write_image(tmp_path / "m.png", np.array([[[0, 3]]], np.uint8))
    with pytest.raises(
        DataError, match=r"m\.png: unexpected label values 3 \(the label map has 0, 255\)"
    ):
        read_mask(tmp_path / "m.png", LabelMap([0, 255]))
    with pytest.raises(
        ConfigError, match="kind='instances' contradicts the label map's kind 'labels'"
    ):
        read_mask(tmp_path / "m.png", LabelMap([0, 3]), kind="instances")


def test_a_stray_value_in_one_mask_is_named_before_it_trains_as_a_class(tmp_path, capsys):
    """A 2×2 brush slip of 128 in one 0/255 mask trains as a class of its own: the user is told,
    naming the mask (check-data refuses it); a rare value that other masks share says nothing."""
    from unetkit.data.labels import LONE_VALUE_SHARE

    masks = []
    for i in range(3):
        m = np.zeros((1, 60, 80), np.uint8)
        m[0, 10:30, 10 + 5 * i : 40] = 255
        masks.append(m)
    slip = masks[1].copy()
    slip[0, 50:52, 50:52] = 128  # 4 px of 4800: 0.08 %
    assert LONE_VALUE_SHARE * slip.size > 4
    path = tmp_path / "m1.png"
    Image.fromarray(slip[0]).save(path)
    files = []
    for i, m in enumerate((masks[0], None, masks[2])):
        if m is None:
            files.append(path)
            continue
        files.append(tmp_path / f"m{i}.png")
        Image.fromarray(m[0]).save(files[-1])
    assert infer_label_map(files).values == (0, 128, 255)  # not asked: evaluation, a sample
    assert capsys.readouterr().err == ""
    assert infer_label_map(files, warn_lone=True).values == (0, 128, 255)
    err = capsys.readouterr().err
    assert f"warning: {path}: label value(s) 128 are in no other mask and cover under 0.1 %" in err
    assert infer_label_map(files, kind="labels").values == (0, 128, 255)
    assert capsys.readouterr().err == ""  # the values are the classes: nothing to say
    shared = masks[2].copy()
    shared[0, 0:2, 0:2] = 128  # the same rare value in a second mask: a class
    Image.fromarray(shared[0]).save(files[2])
    assert infer_label_map(files, warn_lone=True).values == (0, 128, 255)
    assert capsys.readouterr().err == ""
    # an anti-aliased edge: 128 around the 255 block, far over 0.1 % of the mask, all on borders
    edged = masks[1].copy()
    edged[0, 9, 9:41] = edged[0, 30, 9:41] = edged[0, 9:31, 9] = edged[0, 9:31, 40] = 128
    assert (edged == 128).sum() > 20 * LONE_VALUE_SHARE * edged.size
    path = files[1] = tmp_path / "edged.png"  # warned once per mask and values: another file
    Image.fromarray(edged[0]).save(path)
    Image.fromarray(masks[2][0]).save(files[2])
    assert infer_label_map(files, warn_lone=True).values == (0, 128, 255)
    assert capsys.readouterr().err.strip() == (
        f"warning: {path}: label value(s) 128 are in no other mask and lie on region borders "
        "between its other values, as an anti-aliased drawing leaves them (the others use 0, 255); "
        "trained as class(es) of their own. If they are slips, correct the mask ('unetkit "
        "check-data' lists such values)"
    )
    # a real third class (a filled region, not an edge) in one mask only: no warning
    region = masks[1].copy()
    region[0, 40:55, 5:30] = 128
    path = files[1] = tmp_path / "region.png"
    Image.fromarray(region[0]).save(path)
    assert infer_label_map(files, warn_lone=True).values == (0, 128, 255)
    assert capsys.readouterr().err == ""


def test_class_masks_saved_as_numbers_and_spread_over_255_are_refused_with_the_fix(tmp_path):
    """0/1/2/3 beside 0/85/170/255 (an editor's grey steps) would train 6 classes instead of 3;
    0/1/2 beside 0/127/255 (cut, not rounded) too; a real 7-class set is not touched."""
    from unetkit.data.labels import two_codings

    mask = np.zeros((1, 12, 12), np.uint8)
    mask[0, 1:4, 1:4], mask[0, 5:8, 5:8], mask[0, 9:11, 9:11] = 1, 2, 3
    for i in range(2):
        write_image(tmp_path / f"n{i}.png", mask)
    for i in range(3):
        write_image(tmp_path / f"s{i}.png", mask * 85)
    with pytest.raises(
        DataError,
        match=r"n0\.png: mask values 0/1/2/3 while 3 of the 5 masks hold 0/85/170/255: label "
        r"masks saved two ways would train 6 foreground classes instead of 3; save every mask as "
        r"0/85/170/255",
    ):
        infer_label_map(sorted(tmp_path.glob("*.png")))
    three = {"a": {0, 1, 2}, "b": {0, 127, 255}, "c": {0, 127}}
    assert two_codings(three)[1].startswith(
        "mask values 0/1/2 while 2 of the 3 masks hold 0/127/255"
    )
    assert two_codings({"a": {0, 1, 2, 3}, "b": {0, 1, 85, 170, 255}}) is None  # one mask, both
    assert two_codings({"a": {0, 1, 2, 3}, "b": {0, 2, 3}}) is None
    assert two_codings({"a": {0, 1}, "b": {0, 255}})[1].startswith("mask values 0/1 while 1 of")


def test_masks_resized_with_interpolation_get_that_fix_not_the_instance_hint(tmp_path):
    """Colour masks of three classes, resized bilinearly as an editor might: dozens of blended
    colours along the edges. The error says so (before: "an instance mask?")."""
    from PIL import Image

    from unetkit.data.labels import smoothed_edges_hint

    yy, xx = np.mgrid[:60, :60]
    mask = np.zeros((60, 60, 3), np.uint8)
    mask[(yy - 20) ** 2 + (xx - 20) ** 2 < 150] = (255, 0, 0)
    mask[35:55, 30:58] = (0, 0, 255)
    mask[5:15, 40:55] = (0, 255, 0)
    smooth = np.asarray(Image.fromarray(mask).resize((97, 97), Image.BILINEAR))
    write_image(tmp_path / "a.png", smooth.transpose(2, 0, 1))
    with pytest.raises(
        DataError,
        match=r"along the edges between regions: a mask resized with "
        r"interpolation or drawn with smoothed \(anti-aliased\) edges\?",
    ):
        infer_label_map([tmp_path / "a.png"])
    assert smoothed_edges_hint(mask.transpose(2, 0, 1)) is None  # four colours: nothing to say
    ids = np.arange(64, dtype=np.uint16).reshape(8, 8).repeat(8, 0).repeat(8, 1)
    assert smoothed_edges_hint(ids[None]) is None  # 64 objects of 64 px each: not edges


def test_binary_masks_beside_class_numbers_are_not_taken_for_grey_steps():
    """0/255 masks beside 0/1/2 ones hold no grey step (128): not "saved two ways" as 3 classes."""
    from unetkit.data.labels import two_codings

    assert two_codings({"a": {0, 255}, "b": {0, 1, 2}}) is None
    assert two_codings({"a": {0, 128, 255}, "b": {0, 1, 2}}) is not None

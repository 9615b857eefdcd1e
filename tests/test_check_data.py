"""check-data: statistics cross-checked with numpy, one test per problem, the CLI as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unetkit.cli import main
from unetkit.data import LabelMap, check_dataset
from unetkit.errors import ConfigError
from unetkit.io import ImageMeta, write_image

RNG = np.random.default_rng(5)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "unetkit", "check-data", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def make_clean(root: Path, n: int = 4, channels: int = 3, shape=(4, 6)) -> tuple[list, list]:
    """n RGB uint8 images (H=4, W=6) and {0, 255} masks; returns the arrays written."""
    images, masks = [], []
    for i in range(n):
        im = RNG.integers(0, 256, (channels, *shape)).astype(np.uint8)
        m = np.zeros((1, *shape), np.uint8)
        m[0, : i + 1, :2] = 255
        write_image(root / "images" / f"{i:02d}.png", im)
        write_image(root / "masks" / f"{i:02d}.png", m)
        images.append(im)
        masks.append(m)
    return images, masks


def one_problem(report, needle: str) -> str:
    hits = [p for p in report.problems if needle in p]
    assert len(hits) == 1, report.problems
    assert "\n" not in hits[0]
    return hits[0]


# ------------------------------------------------------------------------------------ summary
def test_clean_dataset_statistics_match_numpy(tmp_path):
    images, masks = make_clean(tmp_path)
    report = check_dataset(tmp_path)
    assert report.ok and report.problems == []
    assert (report.num_pairs, report.num_images, report.layout) == (4, 4, "images/masks")
    assert (
        report.sizes == {"4×6": 4} and report.channels == {3: 4} and report.dtypes == {"uint8": 4}
    )
    assert report.label_values == [0, 255] and report.mask_kind == "labels"
    fg = sum(int((m == 255).sum()) for m in masks) / sum(m.size for m in masks) * 100
    assert report.class_frequencies == pytest.approx([100 - fg, fg])
    stacked = np.stack(images).astype(np.float64)
    for c, stats in enumerate(report.intensity):
        v = stacked[:, c].ravel()
        assert stats["min"] == v.min() and stats["max"] == v.max()
        assert stats["mean"] == pytest.approx(v.mean()) and stats["std"] == pytest.approx(v.std())
        assert stats["p1"] == np.percentile(v, 1, method="inverted_cdf")
        assert stats["p99"] == np.percentile(v, 99, method="inverted_cdf")
        assert stats["percentiles_exact"] is True
    assert report.label_map() == LabelMap([0, 255])
    text = report.format()
    assert (
        "pairs: 4 (4 image(s))" in text
        and "image sizes (H×W): 4×6 (4)" in text
        and "no problems found: OK" in text
    )
    assert json.loads(json.dumps(report.to_dict()))["ok"] is True


def test_float_volume_statistics_and_nan(tmp_path):
    vols = [RNG.normal(size=(1, 3, 4, 5)).astype(np.float32) for _ in range(2)]
    vols[1][0, 0, 0, 0] = np.nan
    vols[1][0, 1, 1, 1] = np.inf
    for i, v in enumerate(vols):
        write_image(tmp_path / "images" / f"v{i}.nii.gz", v)
        write_image(tmp_path / "masks" / f"v{i}.nii.gz", (v > 0).astype(np.uint8))
    report = check_dataset(tmp_path)
    assert report.sizes == {"3×4×5": 2} and (report.nan_count, report.inf_count) == (1, 1)
    line = one_problem(report, "NaN")
    assert line == f"{tmp_path / 'images' / 'v1.nii.gz'}: 1 NaN and 1 inf value(s) in the image"
    finite = np.concatenate([v.ravel() for v in vols]).astype(np.float64)
    finite = finite[np.isfinite(finite)]
    s = report.intensity[0]
    assert s["pixels"] == finite.size and s["mean"] == pytest.approx(finite.mean())
    assert s["std"] == pytest.approx(finite.std()) and s["percentiles_exact"] is False
    assert s["p1"] == np.percentile(finite, 1, method="inverted_cdf")  # all pixels sampled (< 50k)


# ----------------------------------------------------------------------------------- problems
def test_problem_truncated_image(tmp_path):
    make_clean(tmp_path)
    p = tmp_path / "images" / "01.png"
    p.write_bytes(p.read_bytes()[:-30])  # IDAT cut short
    assert one_problem(check_dataset(tmp_path), "01.png").startswith(
        f"{p}: unreadable or truncated PNG file"
    )


def test_problem_zero_byte_mask(tmp_path):
    make_clean(tmp_path)
    (tmp_path / "masks" / "02.png").write_bytes(b"")
    assert (
        one_problem(check_dataset(tmp_path), "02.png")
        == f"{tmp_path / 'masks' / '02.png'}: empty file (0 bytes)"
    )


def test_problem_size_mismatch(tmp_path):
    make_clean(tmp_path)
    write_image(tmp_path / "masks" / "00.png", np.zeros((1, 5, 6), np.uint8))
    line = one_problem(check_dataset(tmp_path), "mismatch")
    assert (
        line
        == f"{tmp_path / 'masks' / '00.png'}: image/mask size mismatch: mask 5×6, image 4×6 (00.png)"
    )


def test_problem_image_without_mask_and_mask_without_image(tmp_path):
    make_clean(tmp_path)
    (tmp_path / "masks" / "03.png").rename(tmp_path / "masks" / "13.png")
    report = check_dataset(tmp_path)
    assert (
        one_problem(report, "no mask")
        == f"{tmp_path / 'images' / '03.png'}: no mask in masks/ (expected masks/03.*)"
    )
    assert (
        one_problem(report, "no image")
        == f"{tmp_path / 'masks' / '13.png'}: no image in images/ with the stem '13'; add the image or "
        "move the mask out of masks/"
    )


def test_problem_unexpected_label_value(tmp_path):
    make_clean(tmp_path)
    m = np.zeros((1, 4, 6), np.uint8)
    m[0, 0, 0] = 128
    m[0, 1, 1] = 255
    write_image(tmp_path / "masks" / "02.png", m)
    report = check_dataset(tmp_path)
    assert one_problem(report, "unexpected") == (
        f"{tmp_path / 'masks' / '02.png'}: unexpected label values 128: in no other mask and on region borders "
        "between the other values, as anti-aliasing leaves them (the others use 0, 255; --labels states the classes)"
    )
    with_map = check_dataset(tmp_path, label_map=LabelMap([0, 255]))
    assert one_problem(with_map, "unexpected").endswith(
        "unexpected label values 128 (not in the label map)"
    )


def _blob_masks(root, n, rare=None, size=(40, 50)):
    """n {0, 255} masks; mask ``rare[0]`` also holds the value ``rare[1]`` in the box ``rare[2]``."""
    for i in range(n):
        m = np.zeros((1, *size), np.uint8)
        m[0, 5:20, 5 + i : 25 + i] = 255
        if rare is not None and rare[0] == i:
            m[(0, *rare[2])] = rare[1]
        write_image(root / "images" / f"{i:02d}.png", np.full((1, *size), i, np.uint8))
        write_image(root / "masks" / f"{i:02d}.png", m)


def test_rare_class_in_one_mask_is_not_unexpected(tmp_path):
    # a real class (a 10x10 region of 128, 5 % of the mask) in one of 3 masks, and in one of 2 masks
    for n in (3, 2):
        root = tmp_path / f"n{n}"
        _blob_masks(root, n, rare=(1, 128, (slice(25, 35), slice(30, 40))))
        report = check_dataset(root)
        assert report.ok, report.problems
        assert report.label_values == [0, 128, 255]
        # --labels decides when given
        stated = check_dataset(root, label_map=LabelMap([0, 255]))
        assert (
            one_problem(stated, "unexpected")
            == f"{root / 'masks' / '01.png'}: unexpected label values 128 (not in the label map)"
        )
        assert report.expected_labels == [] and stated.expected_labels == [0, 255]
        assert stated.labels_from == "label map"


def test_tiny_lone_value_is_reported_with_two_masks(tmp_path):
    # one pixel of 7 (0.05 % of a 40x50 mask), not between the other values' borders: tiny is enough
    _blob_masks(tmp_path, 2, rare=(0, 7, (30, 40)))
    assert one_problem(check_dataset(tmp_path), "unexpected") == (
        f"{tmp_path / 'masks' / '00.png'}: unexpected label values 7: in no other mask and covering under 0.1 % "
        "of this mask (the others use 0, 255; --labels states the classes)"
    )


def test_anti_aliased_value_on_borders_is_reported(tmp_path):
    # a 1-pixel rim of 128 around the 255 box of mask 2: 4 % of the pixels, all on region borders
    _blob_masks(tmp_path, 3)
    m = np.zeros((1, 40, 50), np.uint8)
    m[0, 4:21, 6:28] = 128
    m[0, 5:20, 7:27] = 255
    write_image(tmp_path / "masks" / "02.png", m)
    line = one_problem(check_dataset(tmp_path), "unexpected")
    assert line.startswith(
        f"{tmp_path / 'masks' / '02.png'}: unexpected label values 128: in no other mask and "
        "on region borders"
    )


def _nnunet(root, labels, values=(0, 1)):
    (root / "imagesTr").mkdir(parents=True)
    for i, v in enumerate(values):
        write_image(root / "imagesTr" / f"c{i}_0000.nii.gz", np.full((1, 2, 4, 6), i, np.float32))
        m = np.zeros((1, 2, 4, 6), np.uint8)
        m[0, 0] = v
        write_image(root / "labelsTr" / f"c{i}.nii.gz", m)
    (root / "dataset.json").write_text(
        json.dumps({"channel_names": {"0": "CT"}, "labels": labels, "file_ending": ".nii.gz"})
    )
    return root


def test_nnunet_dataset_json_labels_are_the_expected_values(tmp_path):
    root = _nnunet(tmp_path / "ok", {"background": 0, "liver": 1, "tumour": 2})
    report = check_dataset(root)
    assert (
        report.ok and report.expected_labels == [0, 1, 2] and report.labels_from == "dataset.json"
    )
    assert "  expected labels (dataset.json): 0, 1, 2" in report.format().splitlines()
    bad = _nnunet(tmp_path / "bad", {"background": 0, "liver": 1}, values=(1, 1, 3))
    assert (
        one_problem(check_dataset(bad), "unexpected")
        == f"{bad / 'labelsTr' / 'c2.nii.gz'}: unexpected label values 3 (not in dataset.json 'labels')"
    )
    # an explicit label map wins over dataset.json
    assert check_dataset(bad, label_map=LabelMap([0, 1, 3])).ok


def test_nnunet_missing_channel_is_one_line(tmp_path):
    root = _nnunet(tmp_path, {"background": 0, "liver": 1}, values=(0, 1, 1))
    (root / "dataset.json").write_text(
        json.dumps(
            {"channel_names": {"0": "CT", "1": "PET"}, "labels": {"background": 0, "liver": 1}}
        )
    )
    for i in (0, 2):
        write_image(root / "imagesTr" / f"c{i}_0001.nii.gz", np.zeros((1, 2, 4, 6), np.float32))
    report = check_dataset(root)
    assert report.problems == [
        f"{root / 'imagesTr' / 'c1_0001.nii.gz'}: channel file missing (case 'c1': "
        "dataset.json lists 2 channel(s), found c1_0000.nii.gz)"
    ]
    assert report.channels == {2: 2}
    # no case complete: no mask read, the expected labels still shown (this crashed format())
    (root / "imagesTr" / "c0_0001.nii.gz").unlink()
    (root / "imagesTr" / "c2_0001.nii.gz").unlink()
    text = check_dataset(root).format()
    assert "  expected labels (dataset.json): 0, 1" in text.splitlines()
    assert "channel file missing" in text


def test_dangling_symlink_is_one_line(tmp_path):
    make_clean(tmp_path)
    (tmp_path / "images" / "04.png").symlink_to(tmp_path / "elsewhere.png")
    write_image(tmp_path / "masks" / "04.png", np.zeros((1, 4, 6), np.uint8))
    assert check_dataset(tmp_path).problems == [
        f"{tmp_path / 'images' / '04.png'}: broken symbolic link (its target {tmp_path / 'elsewhere.png'} "
        "does not exist)"
    ]


def test_label_values_line_is_shortened(tmp_path):
    make_clean(tmp_path, n=3)
    write_image(tmp_path / "masks" / "01.png", np.arange(24, dtype=np.uint8).reshape(1, 4, 6))
    lines = check_dataset(tmp_path, mask_kind="labels").format().splitlines()
    values = [ln for ln in lines if ln.startswith("  label values")]
    assert values == [
        "  label values (labels): 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, … (25 in all) -> classes 0..24"
    ]
    freqs = [ln for ln in lines if ln.startswith("  class frequencies")][0]
    assert freqs.endswith(", … (25 in all)") and freqs.count("%") == 10


def test_in_channels_below_one_rejected(tmp_path):
    make_clean(tmp_path)
    with pytest.raises(ConfigError, match=r"in_channels must be an integer >= 1, got 0"):
        check_dataset(tmp_path, in_channels=0)


def test_cli_labels_and_in_channels_in_process(tmp_path, capsys):
    make_clean(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(["check-data", str(tmp_path), "--in-channels", "0"])
    assert (
        stop.value.code == 2
        and "argument --in-channels: must be >= 1, got 0" in capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        main(["check-data", str(tmp_path), "--labels", "0,x"])
    assert "expected integer class values separated by commas" in capsys.readouterr().err
    assert main(["check-data", str(tmp_path), "--labels", "0,255"]) == 0
    assert "expected labels (label map): 0, 255" in capsys.readouterr().out
    assert main(["check-data", str(tmp_path), "--labels", "0,1"]) == 2
    out = capsys.readouterr().out
    assert (
        f"{tmp_path / 'masks' / '00.png'}: unexpected label values 255 (not in the label map)"
        in out
    )
    assert main(["check-data", str(tmp_path), "--labels", "0,255", "--mask-kind", "colors"]) == 2
    assert (
        "--labels lists integer class values; it does not apply to --mask-kind colors"
        in capsys.readouterr().err
    )


def test_problem_too_many_label_values(tmp_path):
    make_clean(tmp_path, n=3)
    write_image(
        tmp_path / "masks" / "01.png", np.arange(24, dtype=np.uint8).reshape(1, 4, 6)
    )  # + 255 elsewhere
    line = one_problem(check_dataset(tmp_path), "distinct")  # one mask holds them all: it is named
    assert line.startswith(
        f"{tmp_path / 'masks' / '01.png'}: 24 distinct mask values in this mask (more than "
        "max_classes=16)"
    )
    spread = [0, 255] + [
        10 * i for i in range(1, 16)
    ]  # 17 values, no mask with more than 16: the folder is named
    for i, extra in enumerate((spread[2:10], spread[10:])):
        write_image(
            tmp_path / "masks" / f"0{i}.png",
            np.array([0, 255, *extra] + [0] * (24 - 2 - len(extra)), dtype=np.uint8).reshape(
                1, 4, 6
            ),
        )
    line = one_problem(check_dataset(tmp_path, max_classes=16), "distinct")
    assert line.startswith(
        f"{tmp_path / 'masks'}: 17 distinct mask values over all masks (more than max_classes=16)"
    )
    assert check_dataset(tmp_path, mask_kind="instances").ok


def test_instance_label_images_pass_the_check_with_no_flag(tmp_path):
    """A nuclei set stored as instance label images (ids per object) is instances, as training
    reads it, including the masks with few objects; not a list of too many classes."""
    from unetkit.demo.synthetic import synthetic_cells

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(3):
        image, ids = synthetic_cells((120, 150), seed=i)
        if i == 0:
            ids = np.where(ids == ids.max(), 1, 0).astype(ids.dtype)  # one object only
        write_image(tmp_path / "images" / f"c{i}.png", image[None])
        write_image(tmp_path / "masks" / f"c{i}.png", ids[None].astype(np.uint16))
    report = check_dataset(tmp_path)
    assert report.ok, report.problems
    assert report.mask_kind == "instances"
    objects = 1 + sum(len(np.unique(synthetic_cells((120, 150), seed=i)[1])) - 1 for i in (1, 2))
    assert report.num_objects == objects  # each mask's ids apart, not the distinct ids of all
    assert f"mask kind: instances, {objects} object(s) in 3 mask(s)" in report.format()


def test_ids_of_a_few_objects_per_image_are_checked_as_instances(tmp_path):
    """Masks numbered 1 … n per image with n small and varying are instances, as training reads
    them (labels.numbered_per_mask), not 7 classes."""
    from tests.test_labels import _few_objects

    masks = _few_objects(tmp_path / "masks", [3, 5, 2, 6])
    for path in masks:
        write_image(
            tmp_path / "images" / path.name, RNG.integers(0, 255, (1, 64, 64)).astype(np.uint8)
        )
    report = check_dataset(tmp_path)
    assert report.ok, report.problems
    assert report.mask_kind == "instances" and report.num_objects == 16
    assert report.to_dict()["num_objects"] == 16
    assert report.notes == [  # the other reading named, as plan names it
        "every mask is numbered 0 … n (n from 2 to 6), each number one connected region: read as "
        "object ids; if the numbers are classes, pass --mask-kind labels"
    ]
    # the same n in every mask: classes or objects, the data cannot say; read as classes, noted
    same = tmp_path / "same"
    for path in _few_objects(same / "masks", [5, 5, 5]):
        write_image(same / "images" / path.name, RNG.integers(0, 255, (1, 64, 64)).astype(np.uint8))
    report = check_dataset(same)
    assert report.ok and report.mask_kind == "labels"
    assert report.notes == [
        "every mask is numbered 0 … 5, each number one connected region: read as 5 classes; if "
        "they are object ids, pass --mask-kind instances"
    ]
    assert f"note: {report.notes[0]}" in report.format().splitlines()
    assert report.to_dict()["notes"] == report.notes


def test_binary_masks_saved_two_ways_are_one_problem(tmp_path):
    make_clean(tmp_path)
    one = np.zeros((1, 4, 6), np.uint8)
    one[0, :2, :2] = 1
    write_image(tmp_path / "masks" / "02.png", one)
    problem = one_problem(check_dataset(tmp_path), "saved two ways")
    assert problem.startswith(f"{tmp_path / 'masks' / '02.png'}: mask values 0/1 while 3 of the 4")


def test_colour_coded_instance_masks_pass_the_check_with_no_flag(tmp_path):
    """RGB masks with one colour per object on black are instances, as training reads them."""
    from tests.test_labels import _colour_coded
    from unetkit.demo.synthetic import synthetic_cells

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(2):
        image, ids = synthetic_cells((120, 150), seed=i)
        write_image(tmp_path / "images" / f"c{i}.png", image[None])
        write_image(tmp_path / "masks" / f"c{i}.png", _colour_coded(ids, seed=i))
    report = check_dataset(tmp_path)
    assert report.ok, report.problems
    assert report.mask_kind == "instances"
    assert check_dataset(tmp_path, mask_kind="instances").ok
    assert check_dataset(tmp_path, mask_kind="colors").mask_kind == "colors"  # a flag never guesses


def test_jpeg_masks_are_checked_as_training_reads_them(tmp_path):
    """A set with JPEG masks is binary at mid grey, as training reads it: no problem, the report
    says so; a coloured JPEG mask is one problem naming it."""
    from tests.test_labels import _blobs, _jpeg

    mask = _blobs()
    for i in range(2):
        write_image(tmp_path / "images" / f"c{i}.png", np.stack([mask // 2] * 3))
        _jpeg(tmp_path / "masks" / f"c{i}.jpg", np.stack([mask] * 3, -1), quality=60 + 30 * i)
    report = check_dataset(tmp_path)
    assert report.ok, report.problems
    assert report.lossy_masks == 2 and report.label_values == [0, 255]
    assert report.class_frequencies[1] == pytest.approx(100 * np.mean(mask > 0), abs=0.1)
    assert "JPEG masks: 2, read as binary (grey ≥ 128 = foreground)" in report.format()
    colour = np.zeros((*mask.shape, 3), np.uint8)
    colour[..., 0] = mask
    _jpeg(tmp_path / "masks" / "c1.jpg", colour)
    line = one_problem(check_dataset(tmp_path), "colour")
    assert line.startswith(f"{tmp_path / 'masks' / 'c1.jpg'}: a JPEG mask in colour")


def test_problem_wrong_channel_count(tmp_path):
    make_clean(tmp_path)
    report = check_dataset(tmp_path, in_channels=1)
    assert len(report.problems) == 4
    assert (
        report.problems[0]
        == f"{tmp_path / 'images' / '00.png'}: 3 channel(s), expected --in-channels 1"
    )


def test_problem_channel_count_differs_from_the_others(tmp_path):
    make_clean(tmp_path)
    write_image(tmp_path / "images" / "02.png", np.zeros((1, 4, 6), np.uint8))
    assert (
        one_problem(check_dataset(tmp_path), "channel")
        == f"{tmp_path / 'images' / '02.png'}: 1 channel(s), while 3 other image(s) have 3"
    )


def test_grey_masks_saved_as_rgb_are_grey_and_a_16_bit_one_among_colours_is_named(tmp_path):
    """As training reads them (labels.infer_label_map): R = G = B masks are grey; an 8-bit grey
    mask among colour masks is the grey colour; 16-bit labels among colour masks are named."""
    _, masks = make_clean(tmp_path)
    write_image(tmp_path / "masks" / "01.png", np.repeat(masks[1], 3, axis=0))  # saved as RGB
    report = check_dataset(tmp_path)
    assert report.problems == [] and report.mask_kind == "labels"
    assert report.label_values == [0, 255]
    red = np.zeros((3, 4, 6), np.uint8)
    red[0, :2, :2] = 255
    for i in (0, 1):
        write_image(tmp_path / "masks" / f"0{i}.png", red)
    report = check_dataset(tmp_path)
    assert report.problems == [] and report.mask_kind == "colors"
    assert report.label_values == [[0, 0, 0], [255, 0, 0], [255, 255, 255]]
    write_image(tmp_path / "masks" / "03.tif", np.full((1, 4, 6), 300, np.uint16))
    (tmp_path / "masks" / "03.png").unlink()
    problem = one_problem(check_dataset(tmp_path), "03.tif")
    assert problem.endswith(
        "a labels mask among 3 colors masks (1 vs 3 channels); store every mask the same way"
    )


def test_problem_a_2d_image_among_volumes(tmp_path):
    """Training refuses 2D and 3D images mixed: check-data names the odd one too."""
    for i in range(3):
        write_image(
            tmp_path / "images" / f"v{i}.nii.gz", RNG.random((1, 4, 8, 8)).astype(np.float32)
        )
        write_image(tmp_path / "masks" / f"v{i}.nii.gz", np.ones((1, 4, 8, 8), np.uint8) * (i % 2))
    write_image(tmp_path / "images" / "v1.nii.gz", RNG.random((1, 8, 8)).astype(np.float32))
    write_image(tmp_path / "masks" / "v1.nii.gz", np.ones((1, 8, 8), np.uint8))
    assert one_problem(check_dataset(tmp_path), "mixed") == (
        f"{tmp_path / 'images' / 'v1.nii.gz'}: a 2D image, while 2 other image(s) are 3D: 2D and "
        "3D images are mixed; keep the 3D ones"
    )


def test_a_volume_mask_elsewhere_in_the_world_than_its_image_is_named(tmp_path):
    """A mask resampled, shifted or flipped by another tool keeps its size but not its image's
    grid: check-data and training name it (nnU-Net's integrity check does the same); a header
    written in float32 by one tool and float64 by another is no problem."""
    pytest.importorskip("SimpleITK")
    from unetkit.data import find_cases, infer_label_map
    from unetkit.data.dataset import load_case
    from unetkit.errors import DataError
    from unetkit.io import ImageMeta

    geometry = dict(spacing=(3.0, 0.8, 0.8), origin=(-10.0, 5.0, 2.0), direction=np.eye(3))
    changed = {
        "ok": dict(spacing=(3.0000001, 0.8, 0.8)),
        "spacing": dict(spacing=(1.5, 0.8, 0.8)),
        "origin": dict(origin=(-10.0, 25.0, 2.0)),
        "direction": dict(direction=np.diag([-1.0, 1.0, 1.0])),
    }
    for name, change in changed.items():
        image = RNG.normal(0, 1, (1, 6, 10, 12)).astype(np.float32)
        mask = np.zeros((1, 6, 10, 12), np.uint8)
        mask[0, 2:4, 3:7, 3:8] = 1
        write_image(tmp_path / "images" / f"{name}.nrrd", image, ImageMeta(**geometry))
        write_image(tmp_path / "masks" / f"{name}.nrrd", mask, ImageMeta(**{**geometry, **change}))
    report = check_dataset(tmp_path)
    assert sorted(report.problems) == sorted(
        f"{tmp_path / 'masks' / f'{name}.nrrd'}: mask {what} differs from its image's"
        f"{detail} ({lps}{name}.nrrd): its size matches, so fix its header to the image's (or "
        "resample it onto the image)"
        for name, what, detail, lps in [
            ("spacing", "voxel size 1.5×0.8×0.8", " 3×0.8×0.8", ""),
            ("origin", "origin -10×25×2", " -10×5×2", "x×y×z in ITK's LPS mm; "),
            ("direction", "direction", "", ""),
        ]
    )
    (spacing,) = report.spacings  # the images' voxel sizes, reported (text and JSON)
    assert report.to_dict()["spacings"] == report.spacings
    assert spacing.startswith("3×0.8×0.8") and report.spacings[spacing] == 4
    assert f"  voxel sizes (array order: z, y, x): {spacing} (4)" in report.format().splitlines()
    cases = {c.case_id: c for c in find_cases(tmp_path)}
    label_map = infer_label_map([c.mask for c in cases.values()])
    assert load_case(cases["ok"], label_map, None).mask.sum() > 0
    with pytest.raises(DataError, match=r"spacing\.nrrd: mask voxel size 1\.5×0\.8×0\.8 differs"):
        load_case(cases["spacing"], label_map, None)


def test_channel_files_elsewhere_in_the_world_than_the_first_are_named(tmp_path):
    """nnU-Net's channel files of one case must share one grid, as its mask must: a T2 written
    at another voxel size than the T1 (same array size) would pair different anatomy voxel by
    voxel. check-data lists it; training, planning and predict refuse it."""
    pytest.importorskip("SimpleITK")
    from unetkit.data import find_cases
    from unetkit.data.reading import read_case_image
    from unetkit.errors import DataError

    geometry = dict(spacing=(3.0, 0.8, 0.8), origin=(-10.0, 5.0, 2.0), direction=np.eye(3))
    mask = np.zeros((1, 6, 10, 12), np.uint8)
    mask[0, 2:4, 3:7, 3:8] = 1
    for case, second in (("a", (3.0, 0.8, 0.8)), ("b", (3.0, 1.0, 1.0))):
        for ch, spacing in enumerate([(3.0, 0.8, 0.8), second]):
            write_image(
                tmp_path / "imagesTr" / f"{case}_{ch:04d}.nrrd",
                RNG.normal(0, 1, (1, 6, 10, 12)).astype(np.float32),
                ImageMeta(**{**geometry, "spacing": spacing}),
            )
        write_image(tmp_path / "labelsTr" / f"{case}.nrrd", mask, ImageMeta(**geometry))
    dataset = {
        "channel_names": {"0": "T1", "1": "T2"},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": 2,
        "file_ending": ".nrrd",
    }
    (tmp_path / "dataset.json").write_text(json.dumps(dataset))
    message = (
        "channel file voxel size 3×1×1 differs from its first channel's 3×0.8×0.8 (b_0000.nrrd): "
        "its size matches, so fix its header to the first channel's (or resample it onto the "
        "first channel)"
    )
    assert check_dataset(tmp_path).problems == [
        f"{tmp_path / 'imagesTr' / 'b_0001.nrrd'}: {message}"
    ]
    # another size and voxel size: the size is named, not a header to fix
    write_image(
        tmp_path / "imagesTr" / "b_0001.nrrd",
        RNG.normal(0, 1, (1, 3, 5, 6)).astype(np.float32),
        ImageMeta(**{**geometry, "spacing": (6.0, 1.6, 1.6)}),
    )
    (problem,) = check_dataset(tmp_path).problems
    assert (
        problem
        == f"{tmp_path / 'imagesTr' / 'b_0001.nrrd'}: channel file size 3×5×6 differs from b_0000.nrrd (6×10×12)"
    )
    write_image(
        tmp_path / "imagesTr" / "b_0001.nrrd",
        RNG.normal(0, 1, (1, 6, 10, 12)).astype(np.float32),
        ImageMeta(**{**geometry, "spacing": (3.0, 1.0, 1.0)}),
    )
    cases = {c.case_id: c for c in find_cases(tmp_path)}
    assert read_case_image(cases["a"])[0].shape == (2, 6, 10, 12)
    with pytest.raises(DataError) as caught:
        read_case_image(cases["b"])
    assert str(caught.value) == f"{tmp_path / 'imagesTr' / 'b_0001.nrrd'}: {message}"


def test_a_nifti_mask_flipped_or_shifted_against_its_image_is_named(tmp_path):
    """NIfTI states its geometry in its affine: a mask mirrored or moved against its image (same
    size, same voxel size) is caught as an NRRD one is, and a NIfTI mask beside an NRRD image is
    compared in one frame (LPS) with it: the right one passes, one 30 mm off is named."""
    nib = pytest.importorskip("nibabel")
    pytest.importorskip("SimpleITK")
    from unetkit.io import ImageMeta
    from unetkit.io.itk import nifti_affine

    affine = np.array([[-0.8, 0, 0, 16.0], [0, 0.8, 0, -20.0], [0, 0, 3.0, -100.0], [0, 0, 0, 1]])
    image = RNG.normal(0, 1, (12, 10, 6)).astype(np.float32)  # nibabel's (x, y, z)
    mask = np.zeros((12, 10, 6), np.uint8)
    mask[2:5, 3:7, 2:4] = 1
    flipped = affine.copy()
    flipped[:3, 0] *= -1  # x runs the other way from the same corner
    shifted = affine.copy()
    shifted[2, 3] += 30.0
    for name, mask_affine in (("ok", affine), ("flipped", flipped), ("shifted", shifted)):
        for folder, data, a in (("images", image, affine), ("masks", mask, mask_affine)):
            (tmp_path / folder).mkdir(exist_ok=True)
            nib.save(nib.Nifti1Image(data, a), tmp_path / folder / f"{name}.nii.gz")
    # an NRRD image with the NIfTI masks' geometry in ITK's terms
    geometry = dict(
        spacing=(3.0, 0.8, 0.8), origin=(-16.0, 20.0, -100.0), direction=np.diag([1.0, -1, 1])
    )
    assert np.allclose(nifti_affine(**geometry), affine)
    for name, mask_affine in (("nrrd_ok", affine), ("nrrd_shifted", shifted)):
        write_image(tmp_path / "images" / f"{name}.nrrd", image.T[None], ImageMeta(**geometry))
        nib.save(nib.Nifti1Image(mask, mask_affine), tmp_path / "masks" / f"{name}.nii.gz")
    # a mask that states no geometry (qform and sform codes 0: nibabel makes one up) is not compared
    bare = nib.Nifti1Image(mask, affine)
    bare.set_qform(None, code=0)
    bare.set_sform(None, code=0)
    nib.save(bare, tmp_path / "masks" / "ok.nii.gz")
    assert nib.load(tmp_path / "masks" / "ok.nii.gz").header["qform_code"] == 0
    fix = "its size matches, so fix its header to the image's (or resample it onto the image)"
    assert sorted(check_dataset(tmp_path).problems) == [
        f"{tmp_path / 'masks' / 'flipped.nii.gz'}: mask direction differs from its image's "
        f"(flipped.nii.gz): {fix}",
        f"{tmp_path / 'masks' / 'nrrd_shifted.nii.gz'}: mask origin -16×20×-70 differs from its "
        f"image's -16×20×-100 (x×y×z in ITK's LPS mm; nrrd_shifted.nrrd): {fix}",
        f"{tmp_path / 'masks' / 'shifted.nii.gz'}: mask origin -16×20×-70 differs from its "
        f"image's -16×20×-100 (x×y×z in ITK's LPS mm; shifted.nii.gz): {fix}",
    ]


def test_problem_non_image_file_and_empty_folder(tmp_path):
    make_clean(tmp_path)
    (tmp_path / "images" / "README.txt").write_text("notes")
    assert one_problem(check_dataset(tmp_path), "README").startswith(
        f"{tmp_path / 'images' / 'README.txt'}: not an image file (suffix .txt)"
    )
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    report = check_dataset(empty)
    assert report.problems == [
        f"{empty / 'images'}: no image files in the folder (supported: .nii.gz, .nii, "
        ".ome.tiff, .ome.tif, .tiff, .tif, .png, .jpg, .jpeg, .bmp, .gif, .npy, .ome.zarr, .zarr, "
        ".nrrd, .nhdr, .mha, .mhd)",
        f"{empty / 'masks'}: no image files in the folder (supported: .nii.gz, .nii, "
        ".ome.tiff, .ome.tif, .tiff, .tif, .png, .jpg, .jpeg, .bmp, .gif, .npy, .ome.zarr, .zarr, "
        ".nrrd, .nhdr, .mha, .mhd)",
    ]


def test_problem_extra_folder_size(tmp_path):
    make_clean(tmp_path)
    for i in range(4):
        write_image(
            tmp_path / "fov" / f"{i:02d}.png", np.zeros((1, 4, 6) if i else (1, 3, 3), np.uint8)
        )
    report = check_dataset(tmp_path)
    assert report.extra_folders == ["fov"]
    assert (
        one_problem(report, "fov")
        == f"{tmp_path / 'fov' / '00.png'}: size 3×3 differs from its image (4×6) (fov/)"
    )


# ------------------------------------------------------------------------------------------ CLI
def test_cli_clean_exit_0_and_json(tmp_path):
    make_clean(tmp_path)
    done = cli(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "pairs: 4 (4 image(s))" in done.stdout and "no problems found: OK" in done.stdout
    done = cli(tmp_path, "--json")
    data = json.loads(done.stdout)
    assert done.returncode == 0 and data["ok"] is True and data["sizes"] == {"4×6": 4}


def test_cli_problems_exit_2_one_line_each(tmp_path):
    make_clean(tmp_path)
    (tmp_path / "masks" / "00.png").write_bytes(b"")
    (tmp_path / "images" / "03.png").write_text("text, not a png")
    (tmp_path / "images" / "notes.txt").write_text("x")
    done = cli(tmp_path, "--in-channels", "3")
    assert done.returncode == 2
    assert "Traceback" not in done.stdout + done.stderr
    problems = done.stdout.split("problems (3):\n")[1].splitlines()
    assert sorted(line.strip().split(": ")[0] for line in problems) == sorted(
        str(tmp_path / p) for p in ("masks/00.png", "images/03.png", "images/notes.txt")
    )


def test_cli_missing_folder_and_help(tmp_path):
    done = cli(tmp_path / "absent")
    assert (
        done.returncode == 2 and f"{tmp_path / 'absent'}: dataset folder not found" in done.stdout
    )
    assert "Traceback" not in done.stderr
    helped = cli("--help")
    assert (
        helped.returncode == 0
        and "--mask-suffix" in helped.stdout
        and "--in-channels" in helped.stdout
    )


# ------------------------------------------------------------------------------------ real data
def test_real_datasets(shared_data):
    done = cli(shared_data / "isbi2012" / "train", "--json")
    isbi = json.loads(done.stdout)
    assert done.returncode == 0, isbi["problems"]
    assert (
        isbi["num_pairs"] == 22
        and isbi["sizes"] == {"512×512": 22}
        and isbi["channels"] == {"1": 22}
    )
    assert isbi["label_values"] == [0, 255] and isbi["dtypes"] == {"uint8": 22}
    assert (
        73 <= isbi["class_frequencies"][1] <= 82
    )  # README: white (interior) covers 73-82 % per slice
    done = cli(shared_data / "drive" / "train", "--json")
    drive = json.loads(done.stdout)
    assert done.returncode == 0, drive["problems"]
    assert (
        drive["num_pairs"] == 26
        and drive["sizes"] == {"584×565": 26}
        and drive["channels"] == {"3": 26}
    )
    assert drive["extra_folders"] == ["fov"] and drive["label_values"] == [0, 255]
    assert 6 <= drive["class_frequencies"][1] <= 12  # README: 6-12 % vessel


def test_negative_mask_values_are_noted_as_classes_of_their_own(tmp_path):
    """-1 often marks unlabelled or padded pixels; read as a class it makes background class 1:
    check-data says so (a note: it trains) and names the flag that leaves it out."""
    for i in range(3):
        image = RNG.integers(0, 255, (1, 12, 14)).astype(np.uint8)
        mask = np.zeros((1, 12, 14), np.int16)
        mask[0, 3:7, 4:9] = 1
        if i == 0:
            mask[0, :2] = -1
        write_image(tmp_path / "images" / f"{i}.tif", image)
        write_image(tmp_path / "masks" / f"{i}.tif", mask)
    report = check_dataset(tmp_path)
    assert report.problems == [] and report.label_values == [-1, 0, 1]
    assert report.notes == [
        "mask value -1 in the masks is below every class value: if it marks unlabelled pixels (a "
        "partial annotation), pass --ignore-value -1; as it is, it trains as a class"
    ]
    for i in range(3):  # two negative values: --ignore-value takes one
        mask = np.zeros((1, 12, 14), np.int16)
        mask[0, 3:7, 4:9], mask[0, :2], mask[0, -1] = 1, -1, -2
        write_image(tmp_path / "masks" / f"{i}.tif", mask)
    assert check_dataset(tmp_path).notes == [
        "mask value(s) -2, -1 in 3 mask(s) are read as classes of their own (0 becomes class 2); "
        "if they mark unlabelled or padded pixels, give them one value and pass it as "
        "--ignore-value"
    ]


def test_channels_stored_as_unlabelled_tiff_pages_get_the_fix(tmp_path):
    """tifffile.imwrite of a (2, H, W) array writes two pages that name no axis: read as a
    2-slice stack (as ImageJ does), its 2D mask does not fit. The problem says how to store the
    pages as channels; a TIFF so saved is fine."""
    import tifffile

    from unetkit.data.dataset import load_case
    from unetkit.data.discovery import find_cases
    from unetkit.errors import DataError

    image = RNG.integers(0, 255, (2, 12, 14)).astype(np.uint8)
    mask = np.zeros((1, 12, 14), np.uint8)
    mask[0, 3:7, 4:9] = 1
    (tmp_path / "images").mkdir()
    tifffile.imwrite(tmp_path / "images" / "a.tif", image)
    write_image(tmp_path / "masks" / "a.png", mask)
    hint = (
        "; the TIFF's 2 pages were read as z-slices (its metadata names no channel axis): if they "
        "are channels, save it with tifffile.imwrite(path, array, metadata={'axes': 'CYX'}) or "
        "as an ImageJ hyperstack with channels"
    )
    assert check_dataset(tmp_path).problems == [
        f"{tmp_path / 'masks' / 'a.png'}: image/mask size mismatch: mask 12×14, image 2×12×14 "
        f"(a.tif){hint}"
    ]
    (case,) = find_cases(tmp_path)
    with pytest.raises(DataError) as err:
        load_case(case, LabelMap([0, 1]), None)
    assert str(err.value).endswith(f"differs from image size (2, 12, 14) (a.tif){hint}")
    tifffile.imwrite(tmp_path / "images" / "a.tif", image, metadata={"axes": "CYX"})
    assert check_dataset(tmp_path).problems == []


def test_an_instances_folder_that_lacks_a_file_is_named(tmp_path):
    """Instance ids are used only when every case has them: one missing file quietly turned off
    the separation of touching objects. check-data names the folder and the case."""
    for i in range(3):
        ids = np.zeros((1, 12, 14), np.uint16)
        ids[0, 2:6, 2:6], ids[0, 2:6, 6:10] = 1, 2
        write_image(
            tmp_path / "images" / f"{i}.png", RNG.integers(0, 255, (1, 12, 14)).astype(np.uint8)
        )
        write_image(tmp_path / "masks" / f"{i}.png", ((ids > 0) * 255).astype(np.uint8))
        if i != 1:
            write_image(tmp_path / "instances" / f"{i}.png", ids)
    assert check_dataset(tmp_path).problems == [
        f"{tmp_path / 'instances'}: no instance file for 1 of 3 case(s) (1): the plan separates "
        "touching objects only when every case has ids; add the missing files or remove the folder"
    ]


def test_grey_stored_as_rgb_is_noted(tmp_path):
    for i in range(2):
        grey = RNG.integers(0, 255, (1, 12, 14)).astype(np.uint8)
        mask = np.zeros((1, 12, 14), np.uint8)
        mask[0, 3:7, 4:9] = 1
        write_image(tmp_path / "images" / f"{i}.png", np.concatenate([grey] * 3))
        write_image(tmp_path / "masks" / f"{i}.png", mask)
    report = check_dataset(tmp_path)
    assert report.channels == {3: 2} and report.problems == []
    assert report.notes == [
        "every image is grey stored as RGB(A) (its colour channels are equal): a planned model of "
        "them also takes grey images"
    ]


def test_empty_and_full_masks_get_a_note_and_the_folders_read_are_named(tmp_path):
    """Background-only masks (negative controls, or a mask exported empty) and masks without any
    background (inverted, another image's) train, so they are notes, with the files named; a mask
    folder found under another name is named in the layout line."""
    for i in range(5):
        mask = np.zeros((1, 8, 8), np.uint8)
        mask[0, 2:5, 2:5] = 255 if i >= 2 else 0
        mask[0] = 255 if i == 4 else mask[0]
        write_image(tmp_path / "Images" / f"{i}.png", RNG.integers(0, 256, (1, 8, 8), np.uint8))
        write_image(tmp_path / "ground_truth" / f"{i}.png", mask)
    report = check_dataset(tmp_path)
    assert report.ok and report.folders == ["Images", "ground_truth"]
    assert report.notes == [
        "2 of 5 mask(s) hold background (0) only (0.png, 1.png): images without objects teach "
        "the model that empty fields hold nothing; if they should hold objects, check how the "
        "masks were exported",
        "1 of 5 mask(s) hold no background (0) at all (4.png): every pixel is foreground; if the "
        "mask is inverted or another image's, fix it, since the model learns its whole field as "
        "the object",
    ]
    assert "  layout: images/masks (read from Images/, ground_truth/)\n" in report.format()


def test_masks_named_with_several_suffixes_are_one_problem_first(tmp_path):
    """a_mask.png beside b_label.png: pairing reads one suffix, so every other file is a problem
    of its own; one line first says why (train shows only the first)."""
    from unetkit.data.discovery import find_cases
    from unetkit.errors import DataError

    for i, suffix in enumerate(["_label", "_seg", "_mask"] * 2 + ["_mask"]):
        write_image(tmp_path / "images" / f"im{i}.png", np.zeros((1, 4, 4), np.uint8))
        mask = np.zeros((1, 4, 4), np.uint8)
        mask[0, :2] = 255
        write_image(tmp_path / "masks" / f"im{i}{suffix}.png", mask)
    report = check_dataset(tmp_path)
    assert report.problems[0] == (
        f"{tmp_path / 'masks'}: mask names add 3 different suffixes to their images' names "
        "('_mask' 3, '_label' 2, '_seg' 2): masks are paired by one suffix, so name every mask as "
        "its image plus the same suffix (e.g. STEM_mask.png) or as its image"
    )
    assert len(report.problems) == 1 + 4 + 4  # 4 images unpaired, 4 masks without the suffix
    with pytest.raises(
        DataError, match=r"masks: mask names add 3 different suffixes .* \(and 8 more problem"
    ):
        find_cases(tmp_path)


def _nuclei_volume(n: int, seed: int) -> np.ndarray:
    """A (12, 24, 24) volume of ``n`` separate boxes numbered 1 … n (nuclei ids)."""
    vol = np.zeros((12, 24, 24), np.uint8)
    for k in range(n):
        y, x = 2 + 5 * (k // 4), 2 + 5 * (k % 4)
        vol[3 + seed % 3 : 8, y : y + 3, x : x + 3] = k + 1
    return vol


def test_volumes_numbered_per_mask_get_a_note_and_training_a_warning(tmp_path, capsys):
    """Nuclei stacks numbered 1 … n per volume (n differing), each number one region: 2D masks
    like these are read as instances; volumes are not (an organ label map looks alike), so
    check-data notes it and reading the label map for training warns, naming the flag. A 2D
    mask beside a calibrated volume is one size problem (the voxel-size check crashed)."""
    from unetkit.data.labels import infer_label_map

    for i, n in enumerate((5, 7, 6)):
        write_image(
            tmp_path / "images" / f"v{i}.tif", RNG.integers(0, 99, (1, 12, 24, 24), np.uint8)
        )
        write_image(tmp_path / "masks" / f"v{i}.tif", _nuclei_volume(n, i)[None])
    report = check_dataset(tmp_path)
    note = (
        "the 3 mask volumes are each numbered 0 … n (n from 5 to 7), every number one connected "
        "region: trained as 7 classes; if the numbers are objects (nuclei, cells), pass "
        "--mask-kind instances"
    )
    assert report.ok and note in report.notes and report.mask_kind == "labels"
    masks = sorted((tmp_path / "masks").iterdir())
    assert infer_label_map(masks, warn_lone=True).num_classes == 8  # as stored: classes
    assert capsys.readouterr().err.count(f"warning: {note}") == 1
    flat = tmp_path / "flat"
    meta = ImageMeta(spacing=(2.0, 0.5, 0.5), spacing_unit="um")
    write_image(flat / "images" / "a.tif", np.zeros((1, 12, 24, 24), np.uint8), meta)
    write_image(
        flat / "masks" / "a.tif",
        np.ones((1, 24, 24), np.uint8),
        ImageMeta(spacing=(0.5, 0.5), spacing_unit="um"),
    )
    assert check_dataset(flat).problems == [
        f"{flat / 'masks' / 'a.tif'}: image/mask size mismatch: mask 24×24, image 12×24×24 (a.tif)"
    ]


def test_a_set_of_which_some_files_state_a_voxel_size_gets_a_note(tmp_path):
    """Half the stacks calibrated, half saved without metadata: the plan trains all as stored,
    so check-data says which state none (it listed the stated sizes only); a 2D set's sizes are
    in y, x order."""
    for i in range(4):
        meta = ImageMeta(spacing=(1.0, 0.2, 0.2), spacing_unit="um") if i % 2 else None
        write_image(tmp_path / "images" / f"s{i}.tif", np.zeros((1, 6, 8, 8), np.uint8), meta)
        mask = np.zeros((1, 6, 8, 8), np.uint8)
        mask[0, 2:4, 2:5, 2:5] = 1
        write_image(tmp_path / "masks" / f"s{i}.tif", mask, meta)
    report = check_dataset(tmp_path)
    assert report.notes == [
        "only 2 of 4 images state a voxel size (s0.tif, s2.tif state none): the plan trains "
        "every image as stored, without resampling; give every file its calibration to train at "
        "one voxel size"
    ]
    flat = tmp_path / "flat"
    for i in range(2):
        meta = ImageMeta(spacing=(0.5, 0.5), spacing_unit="um")
        write_image(flat / "images" / f"a{i}.tif", np.zeros((1, 8, 8), np.uint8), meta)
        write_image(flat / "masks" / f"a{i}.tif", np.eye(8, dtype=np.uint8)[None], meta)
    assert "  voxel sizes (array order: y, x): 0.5×0.5 um (2)" in check_dataset(flat).format()


def test_a_stack_saved_as_imagej_channels_gets_the_axes_fix(tmp_path):
    """tifffile's ImageJ writer stores a (24, H, W) stack without axes as 24 channels: the mask
    problem says how to save z-slices (it said only "24 channel(s), expected 1 or 3")."""
    import tifffile

    stack = np.zeros((24, 16, 16), np.uint8)
    stack[5:9, 4:8, 4:8] = 1
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
        tifffile.imwrite(tmp_path / folder / "a.tif", stack, imagej=True)
    fix = (
        "the TIFF's metadata names 24 channels: if they are z-slices, save it with axes ZYX "
        "(tifffile.imwrite(path, stack, imagej=True, metadata={'axes': 'ZYX'}), or in Fiji "
        "Image ▸ Properties: slices, not channels)"
    )
    zyx = tmp_path / "zyx"  # the image saved so, its mask as a stack: the size problem says it
    (zyx / "masks").mkdir(parents=True)
    (zyx / "images").mkdir()
    tifffile.imwrite(zyx / "images" / "a.tif", stack, imagej=True)
    tifffile.imwrite(zyx / "masks" / "a.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    assert check_dataset(zyx).problems == [
        f"{zyx / 'masks' / 'a.tif'}: image/mask size mismatch: mask 24×16×16, image 16×16 "
        f"(a.tif); {fix}"
    ]
    assert check_dataset(tmp_path).problems == [
        f"{tmp_path / 'masks' / 'a.tif'}: mask has 24 channel(s), expected 1 or 3; the TIFF's "
        "metadata names 24 channels: if they are z-slices, save it with axes ZYX "
        "(tifffile.imwrite(path, stack, imagej=True, metadata={'axes': 'ZYX'}), or in Fiji "
        "Image ▸ Properties: slices, not channels)"
    ]


def test_a_two_channel_image_saved_channels_last_gets_the_fix(tmp_path):
    """tifffile.imwrite of an (H, W, 2) array is read as H slices of W×2: the size mismatch with
    its 2D mask says how to save it."""
    import tifffile

    (tmp_path / "masks").mkdir()
    (tmp_path / "images").mkdir()
    tifffile.imwrite(tmp_path / "images" / "a.tif", RNG.integers(0, 255, (30, 40, 2), np.uint8))
    write_image(tmp_path / "masks" / "a.png", np.zeros((1, 30, 40), np.uint8))
    problem = one_problem(check_dataset(tmp_path), "size mismatch")
    assert problem.endswith(
        "the image was read as 30 slices of 40×2: a 30×40 image of 2 channels saved "
        "channels-last? save it channels-first ((C, H, W): numpy.moveaxis(array, -1, 0)) or with "
        "its axes named (tifffile.imwrite(path, array, metadata={'axes': 'YXC'}))"
    )
    np.save(tmp_path / "b.npy", np.zeros((30, 40, 2), np.float32))
    from unetkit.errors import DataError
    from unetkit.io import read_image

    with pytest.raises(DataError, match=r"looks like \(H, W, C\): save it channel first"):
        read_image(tmp_path / "b.npy")

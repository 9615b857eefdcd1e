"""check-data: statistics cross-checked with numpy, one test per problem, the CLI as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unetkit.data import LabelMap, check_dataset
from unetkit.io import write_image

RNG = np.random.default_rng(5)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unetkit", "check-data", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


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
    assert report.sizes == {"6x4": 4} and report.channels == {3: 4} and report.dtypes == {"uint8": 4}
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
    assert "pairs: 4 (4 image(s))" in text and "6x4 (4)" in text and "no problems found: OK" in text
    assert json.loads(json.dumps(report.to_dict()))["ok"] is True


def test_float_volume_statistics_and_nan(tmp_path):
    vols = [RNG.normal(size=(1, 3, 4, 5)).astype(np.float32) for _ in range(2)]
    vols[1][0, 0, 0, 0] = np.nan
    vols[1][0, 1, 1, 1] = np.inf
    for i, v in enumerate(vols):
        write_image(tmp_path / "images" / f"v{i}.nii.gz", v)
        write_image(tmp_path / "masks" / f"v{i}.nii.gz", (v > 0).astype(np.uint8))
    report = check_dataset(tmp_path)
    assert report.sizes == {"5x4x3": 2} and (report.nan_count, report.inf_count) == (1, 1)
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
    assert one_problem(check_dataset(tmp_path), "01.png").startswith(f"{p}: unreadable or truncated PNG file")


def test_problem_zero_byte_mask(tmp_path):
    make_clean(tmp_path)
    (tmp_path / "masks" / "02.png").write_bytes(b"")
    assert one_problem(check_dataset(tmp_path), "02.png") == f"{tmp_path / 'masks' / '02.png'}: empty file (0 bytes)"


def test_problem_size_mismatch(tmp_path):
    make_clean(tmp_path)
    write_image(tmp_path / "masks" / "00.png", np.zeros((1, 5, 6), np.uint8))
    line = one_problem(check_dataset(tmp_path), "mismatch")
    assert line == f"{tmp_path / 'masks' / '00.png'}: image/mask size mismatch: mask 6x5, image 6x4 (00.png)"


def test_problem_image_without_mask_and_mask_without_image(tmp_path):
    make_clean(tmp_path)
    (tmp_path / "masks" / "03.png").rename(tmp_path / "masks" / "13.png")
    report = check_dataset(tmp_path)
    assert one_problem(report, "no mask") == \
        f"{tmp_path / 'images' / '03.png'}: no mask in masks/ (expected masks/03.*)"
    assert one_problem(report, "no image") == \
        f"{tmp_path / 'masks' / '13.png'}: no image in images/ with the stem '13'"


def test_problem_unexpected_label_value(tmp_path):
    make_clean(tmp_path)
    m = np.zeros((1, 4, 6), np.uint8)
    m[0, 0, 0] = 128
    m[0, 1, 1] = 255
    write_image(tmp_path / "masks" / "02.png", m)
    report = check_dataset(tmp_path)
    assert one_problem(report, "unexpected") == (f"{tmp_path / 'masks' / '02.png'}: unexpected label values 128 "
                                                 "(in no other mask; the others use 0, 255)")
    with_map = check_dataset(tmp_path, label_map=LabelMap([0, 255]))
    assert one_problem(with_map, "unexpected").endswith("unexpected label values 128 (not in the label map)")


def test_problem_too_many_label_values(tmp_path):
    make_clean(tmp_path, n=3)
    write_image(tmp_path / "masks" / "01.png", np.arange(24, dtype=np.uint8).reshape(1, 4, 6))  # + 255 elsewhere
    line = one_problem(check_dataset(tmp_path), "distinct")
    assert line.startswith(f"{tmp_path / 'masks'}: 25 distinct mask values over all masks (more than max_classes=16)")
    assert check_dataset(tmp_path, mask_kind="instances").ok


def test_problem_wrong_channel_count(tmp_path):
    make_clean(tmp_path)
    report = check_dataset(tmp_path, in_channels=1)
    assert len(report.problems) == 4
    assert report.problems[0] == f"{tmp_path / 'images' / '00.png'}: 3 channel(s), expected --in-channels 1"


def test_problem_channel_count_differs_from_the_others(tmp_path):
    make_clean(tmp_path)
    write_image(tmp_path / "images" / "02.png", np.zeros((1, 4, 6), np.uint8))
    assert one_problem(check_dataset(tmp_path), "channel") == \
        f"{tmp_path / 'images' / '02.png'}: 1 channel(s), while 3 other image(s) have 3"


def test_problem_non_image_file_and_empty_folder(tmp_path):
    make_clean(tmp_path)
    (tmp_path / "images" / "README.txt").write_text("notes")
    assert one_problem(check_dataset(tmp_path), "README").startswith(
        f"{tmp_path / 'images' / 'README.txt'}: not an image file (suffix .txt)")
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    report = check_dataset(empty)
    assert report.problems == [f"{empty / 'images'}: no image files in the folder (supported: .nii.gz, .nii, "
                               ".ome.tiff, .ome.tif, .tiff, .tif, .png, .jpg, .jpeg, .bmp, .gif)",
                               f"{empty / 'masks'}: no image files in the folder (supported: .nii.gz, .nii, "
                               ".ome.tiff, .ome.tif, .tiff, .tif, .png, .jpg, .jpeg, .bmp, .gif)"]


def test_problem_extra_folder_size(tmp_path):
    make_clean(tmp_path)
    for i in range(4):
        write_image(tmp_path / "fov" / f"{i:02d}.png", np.zeros((1, 4, 6) if i else (1, 3, 3), np.uint8))
    report = check_dataset(tmp_path)
    assert report.extra_folders == ["fov"]
    assert one_problem(report, "fov") == f"{tmp_path / 'fov' / '00.png'}: size 3x3 differs from its image (6x4) (fov/)"


# ------------------------------------------------------------------------------------------ CLI
def test_cli_clean_exit_0_and_json(tmp_path):
    make_clean(tmp_path)
    done = cli(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "pairs: 4 (4 image(s))" in done.stdout and "no problems found: OK" in done.stdout
    done = cli(tmp_path, "--json")
    data = json.loads(done.stdout)
    assert done.returncode == 0 and data["ok"] is True and data["sizes"] == {"6x4": 4}


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
        str(tmp_path / p) for p in ("masks/00.png", "images/03.png", "images/notes.txt"))


def test_cli_missing_folder_and_help(tmp_path):
    done = cli(tmp_path / "absent")
    assert done.returncode == 2 and f"{tmp_path / 'absent'}: dataset folder not found" in done.stdout
    assert "Traceback" not in done.stderr
    helped = cli("--help")
    assert helped.returncode == 0 and "--mask-suffix" in helped.stdout and "--in-channels" in helped.stdout


# ------------------------------------------------------------------------------------ real data
def test_real_datasets(shared_data):
    done = cli(shared_data / "isbi2012" / "train", "--json")
    isbi = json.loads(done.stdout)
    assert done.returncode == 0, isbi["problems"]
    assert isbi["num_pairs"] == 22 and isbi["sizes"] == {"512x512": 22} and isbi["channels"] == {"1": 22}
    assert isbi["label_values"] == [0, 255] and isbi["dtypes"] == {"uint8": 22}
    assert 73 <= isbi["class_frequencies"][1] <= 82  # README: white (interior) covers 73-82 % per slice
    done = cli(shared_data / "drive" / "train", "--json")
    drive = json.loads(done.stdout)
    assert done.returncode == 0, drive["problems"]
    assert drive["num_pairs"] == 26 and drive["sizes"] == {"565x584": 26} and drive["channels"] == {"3": 26}
    assert drive["extra_folders"] == ["fov"] and drive["label_values"] == [0, 255]
    assert 6 <= drive["class_frequencies"][1] <= 12  # README: 6-12 % vessel

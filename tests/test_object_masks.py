"""Per-object mask folders (one binary file per object, the 2018 Data Science Bowl layout): reading,
discovery of case folders, label inference, check-data, predict's inputs and evaluate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetkit.data import check_dataset, find_cases, infer_label_map, scan_dataset
from unetkit.data.labels import read_mask
from unetkit.data.object_masks import is_object_mask_folder, read_object_masks
from unetkit.data.reading import read_case_mask
from unetkit.errors import DataError
from unetkit.evaluation import evaluate_folders
from unetkit.inference.batch import collect_inputs
from unetkit.io import read_image, write_image

SHAPE = (24, 30)


def disc(cy: int, cx: int, r: int, shape=SHAPE) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def write_objects(folder: Path, objects: list, value: int = 255, suffix: str = ".png") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k, obj in enumerate(objects):
        arr = (obj * value).astype(np.uint8)
        if suffix == ".jpg":  # as such sets ship them: lossy, written with Pillow
            Image.fromarray(arr).save(folder / f"obj{k:02d}.jpg", quality=75)
        else:
            write_image(folder / f"obj{k:02d}{suffix}", arr[None])


def make_case(root: Path, name: str, objects: list, image_ext: str = ".png") -> Path:
    """``root/name/images/name.png`` (grey stored as RGB) and ``root/name/masks/objNN.png``."""
    rng = np.random.default_rng(len(name) + len(objects))
    grey = rng.integers(0, 40, SHAPE).astype(np.uint8)
    for obj in objects:
        grey[obj] = 200
    write_image(root / name / "images" / f"{name}{image_ext}", np.stack([grey] * 3))
    write_objects(root / name / "masks", objects)
    return root / name


def make_set(root: Path, n: int = 3) -> Path:
    for i in range(n):
        objects = [disc(6, 6 + 8 * k, 3) for k in range(i + 1)] + [disc(17, 15, 5)]
        make_case(root, f"c{i}", objects)
    return root


# --------------------------------------------------------------------------------------- reading
def test_objects_numbered_in_file_order_overlap_keeps_the_first(tmp_path):
    a, b, c = disc(8, 8, 4), disc(8, 14, 4), disc(18, 22, 3)  # a and b overlap
    empty = np.zeros(SHAPE, bool)
    write_objects(tmp_path / "m", [a, empty, b, c])
    ids, meta = read_object_masks(tmp_path / "m")
    assert ids.shape == (1, *SHAPE) and ids.dtype == np.uint16
    assert meta.format == "objects" and meta.path == str(tmp_path / "m")
    expected = np.zeros(SHAPE, np.uint16)  # the empty file is skipped: ids 1, 2, 3
    expected[c] = 3
    expected[b] = 2
    expected[a] = 1
    np.testing.assert_array_equal(ids[0], expected)
    assert (a & b).sum() > 0 and (ids[0][a & b] == 1).all()


def test_jpeg_object_masks_are_thresholded(tmp_path):
    a = disc(10, 10, 6)
    folder = tmp_path / "m"
    write_objects(folder, [a], suffix=".jpg")
    ids, _ = read_object_masks(folder)
    # JPEG ringing does not add pixels far from the object; the object is (almost) all found
    assert set(np.unique(ids).tolist()) == {0, 1}
    assert abs(int((ids[0] == 1).sum()) - int(a.sum())) <= 0.1 * a.sum()


@pytest.mark.parametrize(
    "bad, message",
    [
        ("size", "object mask size (20, 30) differs from obj00.png's (24, 30)"),
        ("values", "an object mask with several non-zero values"),
        ("text", "not an image file in a per-object mask folder"),
    ],
)
def test_bad_object_folders_name_the_file(tmp_path, bad, message):
    folder = tmp_path / "m"
    write_objects(folder, [disc(8, 8, 4)])
    culprit = folder / "obj01.png"
    if bad == "size":
        write_image(culprit, np.full((1, 20, 30), 255, np.uint8))
    elif bad == "values":
        labels = np.zeros((1, *SHAPE), np.uint8)
        labels[0, :5] = 1
        labels[0, 10:] = 2
        write_image(culprit, labels)
    else:
        culprit = folder / "notes.txt"
        culprit.write_text("x")
    assert is_object_mask_folder(folder) is (bad != "text")
    with pytest.raises(DataError) as err:
        read_object_masks(folder)
    assert message in str(err.value) and str(culprit) in str(err.value)


def test_empty_mask_folder_asks_for_a_black_file(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(DataError, match="empty mask folder: an image without objects needs"):
        read_object_masks(tmp_path / "m")


# ------------------------------------------------------------------------------------- discovery
def test_case_folders_are_found_with_their_object_folders(tmp_path):
    root = make_set(tmp_path / "train", n=3)
    found = scan_dataset(root)
    assert found.problems == [] and found.layout == "case folders"
    assert [c.case_id for c in found.cases] == ["c0", "c1", "c2"]
    case = found.cases[1]
    assert case.images == [root / "c1" / "images" / "c1.png"]
    assert case.mask == root / "c1" / "masks"
    label_map = infer_label_map([c.mask for c in found.cases])
    assert label_map.kind == "instances"
    classes, ids = read_case_mask(case, label_map, SHAPE)
    assert ids.max() == 3 and len(np.unique(ids)) == 4  # c1: two small discs and a big one
    np.testing.assert_array_equal(classes, (ids > 0).astype(classes.dtype))


def test_a_case_folder_without_objects_asks_for_a_black_file_and_reads_it(tmp_path):
    root = make_set(tmp_path / "train", n=2)
    blank = root / "c1" / "masks"
    for f in blank.iterdir():
        f.unlink()
    problems = [str(p) for p in scan_dataset(root).problems]
    assert problems == [f"{blank}: empty mask folder: an image without objects needs one all-black mask file of the image's size"]  # fmt: skip
    write_image(blank / "none.png", np.zeros((1, *SHAPE), np.uint8))
    found = scan_dataset(root)
    assert found.problems == []
    classes, ids = read_case_mask(
        found.cases[1], infer_label_map([c.mask for c in found.cases]), SHAPE
    )
    assert not ids.any() and not classes.any()  # a blank field: no object


def test_object_folders_inside_masks_beside_images(tmp_path):
    """The other common form: ``images/01.png`` and ``masks/01/`` with one file per object."""
    objects = [disc(6, 6, 3), disc(17, 15, 5)]
    for stem in ("01", "02"):
        write_image(tmp_path / "images" / f"{stem}.png", np.zeros((1, *SHAPE), np.uint8))
        write_objects(tmp_path / "masks" / stem, objects)
    cases = find_cases(tmp_path)
    assert [c.mask for c in cases] == [tmp_path / "masks" / "01", tmp_path / "masks" / "02"]
    classes, ids, _ = read_mask(cases[0].mask, infer_label_map([c.mask for c in cases]))
    assert ids.max() == 2 and int((ids == 2).sum()) == int(objects[1].sum())


def test_split_folders_are_not_case_folders(tmp_path):
    """``train/`` and ``val/`` hold many images each: the root is a parent of splits, as before."""
    for split in ("train", "val"):
        for stem in ("01", "02"):
            write_image(tmp_path / split / "images" / f"{stem}.png", np.zeros((1, 4, 4), np.uint8))
            write_image(tmp_path / split / "masks" / f"{stem}.png", np.zeros((1, 4, 4), np.uint8))
    found = scan_dataset(tmp_path)
    assert found.layout == "" and "it holds split folders (train, val): pass one" in str(
        found.problems[0]
    )


def test_broken_case_folders_are_problems(tmp_path):
    root = make_set(tmp_path / "train", n=4)
    extra = root / "c1" / "images" / "other.png"
    write_image(extra, np.zeros((1, *SHAPE), np.uint8))
    for f in (root / "c2" / "masks").iterdir():
        f.unlink()
    (root / "c2" / "masks").rmdir()
    found = scan_dataset(root)
    assert found.layout == "case folders"
    messages = [str(p) for p in found.problems]
    assert len(messages) == 2
    assert messages[0].startswith(f"{root / 'c1' / 'images'}: 2 images in a case folder's images/")
    assert messages[1] == (
        f"{root / 'c2' / 'images' / 'c2.png'}: no masks/ folder in the case folder c2/ "
        "(expected c2/masks/ with one binary file per object; an image without objects: one "
        "all-black file)"
    )
    with pytest.raises(DataError, match="2 images in a case folder"):
        find_cases(root)
    extra.unlink()
    cases = find_cases(root, require_masks=False)  # as predict reads a folder: masks optional
    assert [c.case_id for c in cases if c.mask is None] == ["c2"]


def test_labels_kind_refuses_object_folders(tmp_path):
    root = make_set(tmp_path / "train", n=2)
    with pytest.raises(DataError, match="holds instances, not labels: use --mask-kind auto"):
        infer_label_map([c.mask for c in find_cases(root)], kind="labels")


# ---------------------------------------------------------------------------- check-data, predict
def test_check_data_reads_object_folders_as_instances(tmp_path):
    root = make_set(tmp_path / "train", n=3)
    report = check_dataset(root)
    assert report.problems == []
    assert report.layout == "case folders" and report.num_pairs == 3
    assert report.mask_kind == "instances"
    assert report.label_values == [0, 1, 2, 3, 4]  # c2 has 4 objects: ids 1..4
    report = check_dataset(root, mask_kind="labels")
    assert len(report.problems) == 3
    assert "a per-object mask folder holds instances, not labels" in report.problems[0]


def test_check_data_cli_names_a_bad_object_file(tmp_path):
    root = make_set(tmp_path / "train", n=2)
    bad = root / "c1" / "masks" / "obj00.png"
    labels = np.zeros((1, *SHAPE), np.uint8)
    labels[0, :5], labels[0, 10:] = 1, 2
    write_image(bad, labels)
    proc = subprocess.run(
        [sys.executable, "-m", "unetkit", "check-data", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert f"{bad}: an object mask with several non-zero values" in proc.stdout + proc.stderr


def test_predict_inputs_and_evaluate_on_case_folders(tmp_path):
    root = make_set(tmp_path / "val", n=3)
    cases = collect_inputs([root])
    assert [(c.case_id, c.images[0].name) for c in cases] == [
        ("c0", "c0.png"),
        ("c1", "c1.png"),
        ("c2", "c2.png"),
    ]
    preds = tmp_path / "pred"
    for case in find_cases(root):  # a 0/255 prediction that misses the last object of each image
        ids, _ = read_object_masks(case.mask)
        pred = ((ids[0] > 0) & (ids[0] < ids.max())).astype(np.uint8)
        write_image(preds / f"{case.case_id}.png", pred[None] * 255)
    result = evaluate_folders(preds, root, tmp_path / "report", metrics=["dice", "obj_f1"])
    assert len(result.rows) == 3  # one row per case: the object class
    # the overlay is drawn over the case's own image (case/images/), not a flat grey
    picture, _ = read_image(result.files["overlay_worst"])
    truth, _ = read_object_masks(root / result.summary["worst_case"] / "masks")
    assert picture[:, truth[0] == 0].std() > 1
    rows = {r["case"]: r for r in result.rows}
    # c0: 2 objects, 1 found → F1 = 2·1/(2+1); c1: 3, 2 found → 4/5; c2: 4, 3 found → 6/7 (the
    # binary prediction's objects are its components, not one object of value 255)
    assert rows["c0"]["obj_f1"] == pytest.approx(2 / 3)
    assert rows["c1"]["obj_f1"] == pytest.approx(4 / 5)
    assert rows["c2"]["obj_f1"] == pytest.approx(6 / 7)


def test_a_case_folder_with_one_label_image_reads_it_as_a_mask_file(tmp_path):
    """``P1/masks/P1.png`` (one label image, not one object) is the case's mask file: two blobs
    stay two classes' pixels, not one object."""
    for name in ("p1", "p2"):
        write_image(tmp_path / name / "images" / f"{name}.png", np.zeros((1, *SHAPE), np.uint8))
        labels = np.zeros((1, *SHAPE), np.uint8)
        labels[0, :5], labels[0, 10:15] = 1, 2
        write_image(tmp_path / name / "masks" / f"{name}_mask.png", labels)
    cases = find_cases(tmp_path)
    assert [c.mask for c in cases] == [
        tmp_path / "p1" / "masks" / "p1_mask.png",
        tmp_path / "p2" / "masks" / "p2_mask.png",
    ]
    assert infer_label_map([c.mask for c in cases]).values == (0, 1, 2)


def test_split_roots_with_single_image_splits_are_not_case_folders(tmp_path):
    """``train/`` with four images and ``val/``, ``test/`` with one each: split folders (their one
    image is not named after the folder), so the split hint stays."""
    for split, stems in (("train", ("01", "02", "03", "04")), ("val", ("05",)), ("test", ("06",))):
        for stem in stems:
            write_image(tmp_path / split / "images" / f"{stem}.png", np.zeros((1, 4, 4), np.uint8))
    found = scan_dataset(tmp_path)
    assert found.layout == "" and "it holds split folders (test, train, val)" in str(
        found.problems[0]
    )


def test_evaluate_object_folders_inside_masks_and_case_ids_in_messages(tmp_path):
    objects = [disc(6, 6, 3), disc(17, 15, 5)]
    for stem in ("01", "02"):
        write_image(tmp_path / "set" / "images" / f"{stem}.png", np.zeros((1, *SHAPE), np.uint8))
        write_objects(tmp_path / "set" / "masks" / stem, objects)
    write_image(
        tmp_path / "pred" / "01.png", (255 * (objects[0] | objects[1]))[None].astype(np.uint8)
    )
    with pytest.raises(DataError, match=r"no prediction for 1 of 2 truth mask\(s\) of .*: 02 "):
        evaluate_folders(tmp_path / "pred", tmp_path / "set", metrics=["obj_f1"])
    write_image(tmp_path / "pred" / "02.png", (255 * objects[1])[None].astype(np.uint8))
    rows = evaluate_folders(tmp_path / "pred", tmp_path / "set", metrics=["obj_f1"]).rows
    assert [r["obj_f1"] for r in rows] == [1.0, pytest.approx(2 / 3)]
    root = make_set(tmp_path / "cases", n=2)
    with pytest.raises(DataError, match=r"truth mask\(s\) of .*: c0/masks, c1/masks"):
        evaluate_folders(tmp_path / "pred", root, metrics=["obj_f1"])


def test_instances_flag_scores_a_binary_prediction_by_components(tmp_path):
    root = make_set(tmp_path / "val", n=1)
    ids, _ = read_object_masks(root / "c0" / "masks")
    write_image(tmp_path / "pred" / "c0.png", ((ids[0] > 0) * 255)[None].astype(np.uint8))
    row = evaluate_folders(tmp_path / "pred", root, metrics=["obj_f1"], instances=True).rows[0]
    assert row["obj_f1"] == 1.0  # two objects, both found (not one object of value 255)


def test_a_stray_file_in_an_object_folder_is_named(tmp_path):
    root = make_set(tmp_path / "train", n=2)
    stray = root / "c1" / "masks" / "notes.txt"
    stray.write_text("x")
    report = check_dataset(root)
    assert any(p.startswith(f"{stray}: not an image file") for p in report.problems), (
        report.problems
    )


def test_broken_object_folders_inside_masks_are_named(tmp_path):
    """``masks/01/`` empty and ``masks/02/`` with a stray file: each one problem naming the culprit."""
    objects = [disc(6, 6, 3)]
    for stem in ("01", "02", "03"):
        write_image(tmp_path / "images" / f"{stem}.png", np.zeros((1, *SHAPE), np.uint8))
    (tmp_path / "masks" / "01").mkdir(parents=True)
    write_objects(tmp_path / "masks" / "02", objects)
    (tmp_path / "masks" / "02" / "readme.txt").write_text("x")
    write_objects(tmp_path / "masks" / "03", objects)
    found = scan_dataset(tmp_path)
    messages = [str(p) for p in found.problems if p.kind == "non-image"]
    assert messages == [
        f"{tmp_path / 'masks' / '01'}: empty mask folder: an image without objects needs one "
        "all-black mask file",
        f"{tmp_path / 'masks' / '02' / 'readme.txt'}: not an image file in a per-object mask "
        "folder (one binary image per object); move it out",
    ]

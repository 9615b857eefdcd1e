"""Case discovery: both layouts, suffix detection, extra folders, one test per error message."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from unetkit.data import Case, find_cases, scan_dataset
from unetkit.errors import DataError
from unetkit.io import write_image

#: the fix the "no image" problem names for a mask file
FIX = "; add the image or move the mask out of masks/"


def img(path: Path, value: int = 0, shape=(1, 4, 5)):
    write_image(path, np.full(shape, value, np.uint8))


def make(
    root: Path,
    images=("01", "02", "03"),
    masks=None,
    mask_suffix="",
    extra=None,
    img_dir="images",
    mask_dir="masks",
    ext=".png",
):
    (root / img_dir).mkdir(parents=True, exist_ok=True)
    for stem in images:
        img(root / img_dir / f"{stem}{ext}")
    if masks is not False:
        (root / mask_dir).mkdir(parents=True, exist_ok=True)
        for stem in images if masks is None else masks:
            img(root / mask_dir / f"{stem}{mask_suffix}.png")
    for name, stems in (extra or {}).items():
        (root / name).mkdir()
        for stem in stems:
            img(root / name / f"{stem}.png")
    return root


def test_images_masks_layout_sorted_with_extra(tmp_path):
    root = make(tmp_path, images=("10", "02", "01"), extra={"fov": ("01", "02", "10"), "notes": ()})
    cases = find_cases(root)
    assert [c.case_id for c in cases] == ["01", "02", "10"]
    c = cases[0]
    assert isinstance(c, Case)
    assert c.images == [root / "images" / "01.png"] and c.mask == root / "masks" / "01.png"
    assert c.extra == {"fov": root / "fov" / "01.png"}
    found = scan_dataset(root)
    assert (
        found.layout == "images/masks"
        and found.extra_dirs == {"fov": root / "fov"}
        and not found.problems
    )
    assert c.to_dict()["extra"] == {"fov": str(root / "fov" / "01.png")}


def test_mask_suffix_detected_and_explicit(tmp_path):
    root = make(tmp_path, images=("1", "11", "2"), mask_suffix="_mask")
    found = scan_dataset(root)
    assert found.mask_suffix == "_mask" and not found.problems
    cases = find_cases(root)
    assert [c.mask.name for c in cases] == ["1_mask.png", "11_mask.png", "2_mask.png"]
    assert [c.mask.name for c in find_cases(root, mask_suffix="_mask")] == [
        "1_mask.png",
        "11_mask.png",
        "2_mask.png",
    ]


def test_suffix_not_detected_when_not_common(tmp_path):
    root = make(tmp_path, images=("01", "02"), masks=())
    img(root / "masks" / "01_mask.png")
    img(root / "masks" / "02_label.png")
    found = scan_dataset(root)
    assert found.mask_suffix == ""
    kinds = sorted(p.kind for p in found.problems)
    assert kinds == ["layout", "no-image", "no-image", "no-mask", "no-mask"]
    assert "mask names add 2 different suffixes" in found.problems[0].message


def test_a_missing_numbered_image_is_no_second_mask_suffix(tmp_path):
    """Mask 10_mask of a missing image 10 starts with image 1's name: its "0_mask" is no suffix."""
    stems = [str(i) for i in range(1, 13) if i != 10]
    root = make(tmp_path, images=stems, mask_suffix="_mask")
    img(root / "masks" / "10_mask.png")
    found = scan_dataset(root)
    assert found.mask_suffix == "_mask"
    assert [p.kind for p in found.problems] == ["no-image"]


def test_suffix_detected_by_majority_despite_a_stray_mask(tmp_path):
    root = make(tmp_path, images=("01", "02", "03", "04"), mask_suffix="_mask")
    img(root / "masks" / "99_mask.png")  # a stray mask without image
    img(root / "masks" / "03.png")  # and one without the suffix
    found = scan_dataset(root)
    assert found.mask_suffix == "_mask"
    assert [c.mask.name for c in found.cases] == [
        "01_mask.png",
        "02_mask.png",
        "03_mask.png",
        "04_mask.png",
    ]
    assert [str(p) for p in found.problems] == [
        f"{root / 'masks' / '03.png'}: mask name lacks the mask suffix '_mask'; rename it to "
        "STEM_mask.png or move it out of masks/",
        f"{root / 'masks' / '99_mask.png'}: no image in images/ with the stem '99'{FIX}",
    ]
    # the stems shared with the images win the vote the same way
    root2 = make(tmp_path / "b", images=("01", "02", "03"))
    img(root2 / "masks" / "01_old.png")
    found2 = scan_dataset(root2)
    assert found2.mask_suffix == "" and [str(p) for p in found2.problems] == [
        f"{root2 / 'masks' / '01_old.png'}: no image in images/ with the stem '01_old'{FIX}"
    ]


def test_mask_lacking_explicit_suffix(tmp_path):
    root = make(tmp_path, images=("01",), mask_suffix="_mask")
    img(root / "masks" / "02.png")
    with pytest.raises(DataError, match=r"02\.png: mask name lacks the mask suffix '_mask'"):
        find_cases(root, mask_suffix="_mask")


def test_folder_aliases_and_mixed_formats(tmp_path):
    root = make(tmp_path, images=("0", "1"), img_dir="image", mask_dir="label", ext=".tif")
    cases = find_cases(root)
    assert [c.images[0].name for c in cases] == ["0.tif", "1.tif"]
    assert [c.mask.name for c in cases] == ["0.png", "1.png"]


def test_hidden_files_skipped(tmp_path):
    root = make(tmp_path, images=("01",))
    (root / "images" / ".DS_Store").write_bytes(b"\0\1")
    (root / "images" / "._01.png").write_bytes(b"junk")
    (root / "masks" / "Thumbs.db").write_bytes(b"junk")
    assert [c.case_id for c in find_cases(root)] == ["01"]


def test_require_masks_false(tmp_path):
    root = make(tmp_path, images=("01", "02"), masks=False)
    cases = find_cases(root, require_masks=False)
    assert [c.mask for c in cases] == [None, None]
    root2 = make(tmp_path / "b", images=("01", "02"), masks=("01",))
    assert [c.mask is None for c in find_cases(root2, require_masks=False)] == [False, True]


# ------------------------------------------------------------------------------------- nnU-Net
def test_nnunet_channels_labels_and_dataset_json(tmp_path):
    root = tmp_path / "Dataset001_X"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for case in ("case_b", "case_a"):
        for ch in (1, 0):
            write_image(
                root / "imagesTr" / f"{case}_{ch:04d}.nii.gz", np.zeros((1, 2, 3, 4), np.int16)
            )
        write_image(root / "labelsTr" / f"{case}.nii.gz", np.zeros((1, 2, 3, 4), np.uint8))
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "T1", "1": "T2"},
                "labels": {"background": 0, "tumour": 1},
                "file_ending": ".nii.gz",
            }
        )
    )
    found = scan_dataset(root)
    assert found.layout == "nnunet" and not found.problems
    assert found.dataset_json["channel_names"] == {"0": "T1", "1": "T2"}
    cases = found.cases
    assert [c.case_id for c in cases] == ["case_a", "case_b"]
    assert [p.name for p in cases[0].images] == ["case_a_0000.nii.gz", "case_a_0001.nii.gz"]
    assert cases[0].mask.name == "case_a.nii.gz"


def test_nnunet_missing_channel_file(tmp_path):
    root = tmp_path / "ds"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "A", "1": "B"}}))
    for name in ("x_0000", "x_0001", "y_0000"):
        write_image(root / "imagesTr" / f"{name}.nii.gz", np.zeros((1, 2, 2, 2), np.uint8))
    for name in ("x", "y"):
        write_image(root / "labelsTr" / f"{name}.nii.gz", np.zeros((1, 2, 2, 2), np.uint8))
    found = scan_dataset(root)
    assert found.incomplete == {"y"} and [str(p) for p in found.problems] == [
        f"{root / 'imagesTr' / 'y_0001.nii.gz'}: channel file missing (case 'y': dataset.json lists 2 channel(s), "
        "found y_0000.nii.gz)"
    ]
    with pytest.raises(
        DataError, match=r"imagesTr/y_0001\.nii\.gz: channel file missing \(case 'y'"
    ):
        find_cases(root)


def test_nnunet_unexpected_channel_file(tmp_path):
    root = tmp_path / "ds"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "A"}}))
    for name in ("x_0000", "y_0000", "y_0001"):
        write_image(root / "imagesTr" / f"{name}.nii.gz", np.zeros((1, 2, 2, 2), np.uint8))
    for name in ("x", "y"):
        write_image(root / "labelsTr" / f"{name}.nii.gz", np.zeros((1, 2, 2, 2), np.uint8))
    assert [str(p) for p in scan_dataset(root).problems] == [
        f"{root / 'imagesTr' / 'y_0001.nii.gz'}: unexpected channel file(s) y_0001.nii.gz of case 'y' "
        "(dataset.json lists 1 channel(s))"
    ]


def test_nnunet_one_file_per_case_msd_style(tmp_path):
    root = tmp_path / "Task01"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for name in ("BRATS_001", "BRATS_002"):
        write_image(root / "imagesTr" / f"{name}.nii.gz", np.zeros((4, 2, 2, 2), np.int16))
        write_image(root / "labelsTr" / f"{name}.nii.gz", np.zeros((1, 2, 2, 2), np.uint8))
    cases = find_cases(root)
    assert [(c.case_id, len(c.images)) for c in cases] == [("BRATS_001", 1), ("BRATS_002", 1)]


def test_nnunet_bad_dataset_json(tmp_path):
    root = tmp_path / "ds"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    write_image(root / "imagesTr" / "a_0000.nii.gz", np.zeros((1, 2, 2, 2), np.uint8))
    write_image(root / "labelsTr" / "a.nii.gz", np.zeros((1, 2, 2, 2), np.uint8))
    (root / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match=r"dataset\.json: unreadable dataset\.json"):
        find_cases(root)


# -------------------------------------------------------------------------------------- errors
def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match=r"nowhere: dataset folder not found"):
        find_cases(tmp_path / "nowhere")


def test_root_is_a_file(tmp_path):
    (tmp_path / "f.png").write_bytes(b"x")
    with pytest.raises(DataError, match=r"f\.png: is a file; expected a dataset folder"):
        find_cases(tmp_path / "f.png")


def test_dataset_root_with_split_folders(tmp_path):
    make(tmp_path / "train")
    make(tmp_path / "val")
    with pytest.raises(
        DataError, match=r"no images/ folder; it holds split folders \(train, val\): pass one"
    ):
        find_cases(tmp_path)


def test_no_layout(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(
        DataError,
        match=r"no images/ folder \(also looked for .*\); expected root/images/ \+ root/masks/",
    ):
        find_cases(tmp_path)


def test_empty_images_folder(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match=r"images: no image files in the folder"):
        find_cases(tmp_path)


def test_no_masks_folder(tmp_path):
    make(tmp_path, masks=False)
    with pytest.raises(DataError, match=r"no masks/ folder beside images/"):
        find_cases(tmp_path)


def test_images_without_masks_listed_with_count(tmp_path):
    stems = [f"{i:02d}" for i in range(9)]
    root = make(tmp_path, images=stems, masks=("00", "01"))
    with pytest.raises(DataError) as err:
        find_cases(root)
    msg = str(err.value)
    assert msg.startswith(
        f"{root / 'masks'}: 7 image(s) have no mask in masks/: 02.png, 03.png, 04.png, 05.png, "
        "06.png and 2 more"
    )
    assert "\n" not in msg


def test_mask_without_image(tmp_path):
    root = make(tmp_path, images=("01",), masks=("01", "07"))
    with pytest.raises(DataError, match=r"07\.png: no image in images/ with the stem '07'; add"):
        find_cases(root)


def test_backup_folder_in_masks_is_named_with_the_fix(tmp_path):
    """A sub-folder of masks/ is read as one image's per-object masks (DSB's masks/CASE/): a backup
    copy of the masks there is one problem naming the folder and saying to move it."""
    root = make(tmp_path, images=("01", "02"), masks=("01", "02"))
    (root / "masks" / "old").mkdir()
    for stem in ("01", "02"):
        img(root / "masks" / "old" / f"{stem}.png")
    found = scan_dataset(root)
    assert [c.case_id for c in found.cases] == ["01", "02"]
    assert [str(p) for p in found.problems] == [
        f"{root / 'masks' / 'old'}: no image in images/ with the stem 'old'; a folder in masks/ is "
        "read as one image's masks, one file per object: move it out of masks/ (a backup?) or add "
        "the image"
    ]


def test_duplicate_stems(tmp_path):
    root = make(tmp_path, images=("01",))
    img(root / "images" / "01.tif")
    with pytest.raises(
        DataError, match=r"images: 2 files with the stem '01': 01\.png, 01\.tif; keep one"
    ):
        find_cases(root)


def test_non_image_file_is_an_error(tmp_path):
    root = make(tmp_path, images=("01",))
    (root / "images" / "README.txt").write_text("about")
    with pytest.raises(DataError, match=r"README\.txt: not an image file \(suffix \.txt\)"):
        find_cases(root)


def test_subfolder_in_images_is_an_error(tmp_path):
    root = make(tmp_path, images=("01",))
    (root / "images" / "old").mkdir()
    with pytest.raises(DataError, match=r"old: is a folder inside images/"):
        find_cases(root)


def test_two_image_folders(tmp_path):
    root = make(tmp_path, images=("01",))
    (root / "image").mkdir()
    with pytest.raises(DataError, match=r"both images/ and image/ exist; keep one"):
        find_cases(root)


def test_scan_collects_all_problems_and_find_cases_counts_them(tmp_path):
    root = make(tmp_path, images=("01", "02"), masks=("01", "09"))
    (root / "images" / "notes.md").write_text("x")
    found = scan_dataset(root)
    assert sorted(p.kind for p in found.problems) == ["no-image", "no-mask", "non-image"]
    assert all(str(p).startswith(str(root)) for p in found.problems)
    with pytest.raises(DataError, match=r"\(and 2 more problem\(s\); run 'unetkit check-data"):
        find_cases(root)


def test_folder_aliases_ignore_case_spaces_and_hyphens(tmp_path):
    """``Images/`` + ``Ground Truth/`` (as CVC-ClinicDB-like sets name them) pair like images/masks."""
    make(tmp_path, images=("01", "02"), img_dir="Images", mask_dir="Ground Truth")
    found = scan_dataset(tmp_path)
    assert found.problems == [] and found.layout == "images/masks"
    assert found.image_dir == tmp_path / "Images" and found.mask_dir == tmp_path / "Ground Truth"
    assert [c.mask.name for c in found.cases] == ["01.png", "02.png"]
    other = make(tmp_path / "b", images=("01",), img_dir="img", mask_dir="GT")
    assert find_cases(other)[0].mask == other / "GT" / "01.png"
    # CVC-ClinicDB ships Original/ + Ground Truth/; many cell sets raw/ + labels/
    cvc = make(tmp_path / "c", images=("7",), img_dir="Original", mask_dir="Ground Truth")
    assert find_cases(cvc)[0].images == [cvc / "Original" / "7.png"]
    raw = make(tmp_path / "d", images=("7",), img_dir="raw", mask_dir="labels")
    assert find_cases(raw)[0].mask == raw / "labels" / "7.png"


def test_backup_folder_beside_suffixed_masks_is_named_with_the_fix(tmp_path):
    """With masks named 01_mask.png, a masks/old/ folder lacks the suffix too: the problem says it is
    a folder read as per-object masks, not that its name lacks the suffix."""
    root = make(tmp_path, images=("01", "02"), mask_suffix="_mask")
    (root / "masks" / "old").mkdir()
    img(root / "masks" / "old" / "01_mask.png")
    found = scan_dataset(root)
    assert found.mask_suffix == "_mask" and [c.mask.name for c in found.cases] == [
        "01_mask.png",
        "02_mask.png",
    ]
    assert [str(p) for p in found.problems] == [
        f"{root / 'masks' / 'old'}: a folder in masks/ is read as one image's masks, one file per "
        "object: move it out of masks/ (a backup?)"
    ]


def test_raw_beside_images_is_an_extra_folder_not_a_second_image_folder(tmp_path):
    """raw/ and original/ name the image folder only where no other image folder name is there:
    beside images/ the raw microscope files are an extra folder, as any sibling folder is; two
    fallback names without images/ are still ambiguous."""
    root = make(tmp_path, images=("01", "02"))
    (root / "raw").mkdir()
    for stem in ("01", "02"):
        img(root / "raw" / f"{stem}.png", value=7)
    found = scan_dataset(root)
    assert found.problems == [] and found.image_dir == root / "images"
    assert [c.extra for c in found.cases] == [
        {"raw": root / "raw" / f"{s}.png"} for s in ("01", "02")
    ]
    both = make(tmp_path / "b", images=("01",), img_dir="raw")
    (both / "original").mkdir()
    with pytest.raises(DataError, match=r"both original/ and raw/ exist; keep one"):
        find_cases(both)


def test_no_image_folder_lists_every_alias(tmp_path):
    (tmp_path / "pictures").mkdir()
    img(tmp_path / "pictures" / "01.png")
    found = scan_dataset(tmp_path)
    (problem,) = found.problems
    assert "no images/ folder (also looked for image, imgs, img, original, raw/)" in str(problem)


def test_two_mask_folder_aliases_are_one_problem(tmp_path):
    make(tmp_path, images=("01",))
    (tmp_path / "ground-truth").mkdir()
    img(tmp_path / "ground-truth" / "01.png")
    with pytest.raises(DataError, match=r"both masks/ and ground-truth/ exist; keep one"):
        find_cases(tmp_path)


def test_no_mask_folder_lists_every_alias(tmp_path):
    make(tmp_path, images=("01",), masks=False)
    with pytest.raises(DataError) as err:
        find_cases(tmp_path)
    assert "also looked for mask, labels, label, gt, ground_truth, groundtruth/" in str(err.value)


def test_channel_files_in_an_images_folder_get_the_layout_that_groups_them(tmp_path):
    from PIL import Image

    from unetkit.data.discovery import scan_dataset

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for case in ("a", "b"):
        for ch in (0, 1):
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(
                tmp_path / "images" / f"{case}_000{ch}.png"
            )
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "masks" / f"{case}.png")
    message = str(scan_dataset(tmp_path).error())
    assert "4 image(s) have no mask in masks/: a_0000.png, a_0001.png" in message
    assert "grouped into cases in the nnU-Net layout only: put them in imagesTr/" in message


def test_frames_numbered_with_four_digits_are_not_taken_for_channel_files(tmp_path):
    from PIL import Image

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for k in range(1, 4):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "images" / f"frame_{k:04d}.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "masks" / f"frame{k:04d}.png")
    assert "nnU-Net layout" not in str(scan_dataset(tmp_path).error())

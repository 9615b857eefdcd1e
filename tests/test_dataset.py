"""The data pipeline glue: prepare_data (split, label map, normalisation, weight maps) and the
reproducible PatchDataset, including valid-padding geometry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from unetkit import create_model
from unetkit.data import (
    LabelMap,
    PatchDataset,
    PatchSampler,
    border_weight_map,
    build_augmentation,
    kfold_splits,
    load_splits,
    patch_geometry,
    prepare_data,
)
from unetkit.data import dataset as dataset_module
from unetkit.data.dataset import weight_map_key
from unetkit.errors import ConfigError, DataError
from unetkit.io import write_image


def _write_dataset(root, n=6, size=(40, 52), rgb_case=None, nan_case=None):
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        mask = np.zeros(size, np.uint8)
        y, x = rng.integers(5, size[0] - 15), rng.integers(5, size[1] - 15)
        mask[y : y + 10, x : x + 12] = 255
        img = (mask // 2 + rng.integers(0, 60, size)).astype(np.uint8)
        if i == rgb_case:
            Image.fromarray(np.stack([img] * 3, -1)).save(root / "images" / f"{i:02d}.png")
        else:
            Image.fromarray(img).save(root / "images" / f"{i:02d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:02d}.png")
    if nan_case is not None:
        import tifffile

        (root / "images" / f"{nan_case:02d}.png").unlink()
        arr = np.ones(size, np.float32)
        arr[0, 0] = np.nan
        tifffile.imwrite(root / "images" / f"{nan_case:02d}.tif", arr)
    return root


def test_prepare_data_splits_labels_and_normalises(tmp_path):
    root = _write_dataset(tmp_path / "ds")
    data = prepare_data(
        root,
        val_fraction=0.34,
        seed=3,
        weight_map={"w0": 10.0, "sigma": 5.0},
        run_dir=tmp_path / "run",
    )
    assert len(data.train) == 4 and len(data.val) == 2
    assert data.label_map.values == (0, 255) and data.in_channels == 1 and data.spatial_dims == 2
    saved = json.loads((tmp_path / "run" / "splits.json").read_text())
    assert saved == data.splits
    case = data.train[0]
    assert case.image.dtype == np.float32 and case.image.shape == (1, 40, 52)
    assert abs(case.image.mean()) < 1e-4 and abs(case.image.std() - 1) < 1e-3  # per-image z-score
    assert set(np.unique(case.mask)) == {0, 1}
    assert case.weight.shape == (40, 52) and case.weight.max() > case.weight.min() > 0
    assert data.val[0].weight is None  # weight maps only where the loss uses them
    again = prepare_data(root, val_fraction=0.34, seed=3)
    assert again.splits["val"] == data.splits["val"]


def test_prepare_data_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match=r"02\.png: holds grey stored as RGB\(A\) \(3 equal"):
        prepare_data(_write_dataset(tmp_path / "a", rgb_case=2), val_fraction=0)
    # grey stored as RGB(A) among grey images: that file is named, whether it comes first or not
    from unetkit.data.reading import same_layout

    grey = np.zeros((1, 4, 5), np.uint8)
    rgba = np.concatenate([grey] * 3 + [np.full_like(grey, 255)])
    for order in (["g.png", "rgba.png"], ["rgba.png", "g.png"]):
        arrays = {"g.png": grey, "rgba.png": rgba}
        with pytest.raises(DataError) as err:
            list(same_layout((name, arrays[name]) for name in order))
        other = "g.png"
        assert str(err.value) == (
            f"rgba.png: holds grey stored as RGB(A) (4 equal channels), while {other} and maybe "
            "others are grey (1 channel): save it as a grey image"
        )
    colour = np.random.default_rng(0).integers(0, 255, (3, 4, 5)).astype(np.uint8)
    with pytest.raises(DataError, match=r"c\.png: different channel counts: 3 here, 1 in g\.png"):
        list(same_layout([("g.png", grey), ("c.png", colour)]))
    with pytest.raises(DataError, match=r"03\.tif: image contains NaN"):
        prepare_data(_write_dataset(tmp_path / "b", nan_case=3), val_fraction=0)
    single = _write_dataset(tmp_path / "c", n=1)
    with pytest.raises(ConfigError, match="cannot be split into train and validation"):
        prepare_data(single)


def test_patch_dataset_is_a_pure_function_of_seed_epoch_index(tmp_path):
    data = prepare_data(_write_dataset(tmp_path / "ds"), val_fraction=0)
    ds = PatchDataset(
        data.train, PatchSampler([24, 24]), build_augmentation({}, 2), length=8, seed=5
    )
    a, b = ds[3], ds[3]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (
        a["image"].shape == (1, 24, 24)
        and a["mask"].shape == (24, 24)
        and a["mask"].dtype == torch.int64
    )
    ds.set_epoch(1)
    assert not torch.equal(ds[3]["image"], a["image"])
    other = PatchDataset(
        data.train, PatchSampler([24, 24]), build_augmentation({}, 2), length=8, seed=5
    )
    other.set_epoch(1)
    assert torch.equal(other[3]["image"], ds[3]["image"])


def test_valid_padding_geometry_keeps_image_and_label_centred(tmp_path):
    model = create_model("unet-original", base_features=2, depth=2)
    inp, lab = patch_geometry(model, [10, 10])
    assert lab[0] >= 10 and model.output_size(inp[0]) == lab[0]
    assert (
        not model.is_valid_input_size(inp[0] - 1) or model.output_size(inp[0] - 1) < 10
    )  # the smallest such
    # an image whose intensity encodes the mask: after sampling, the label is the centre of the image
    root = _write_dataset(tmp_path / "ds", n=3, size=(60, 60))
    data = prepare_data(root, val_fraction=0, normalization={"name": "none"})
    ds = PatchDataset(data.train, PatchSampler(lab, inp), None, length=6, seed=0)
    border = (inp[0] - lab[0]) // 2
    for i in range(6):
        s = ds[i]
        centre = s["image"][0, border : border + lab[0], border : border + lab[1]]
        assert torch.equal(centre >= 127, s["mask"] == 1)


# ------------------------------------------------------------------------------------- nnU-Net labels
def _write_nnunet(root, labels, mask_values=(1, 1, 1)):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i, v in enumerate(mask_values):
        write_image(
            root / "imagesTr" / f"c{i}_0000.nii.gz",
            np.arange(24, dtype=np.float32).reshape(1, 4, 6) + i,
        )
        m = np.zeros((1, 4, 6), np.uint8)
        m[0, :2] = v
        write_image(root / "labelsTr" / f"c{i}.nii.gz", m)
    (root / "dataset.json").write_text(
        json.dumps({"channel_names": {"0": "CT"}, "labels": labels, "file_ending": ".nii.gz"})
    )
    return root


def test_prepare_data_uses_dataset_json_labels(tmp_path):
    # the masks hold 0 and 1 only; dataset.json names a third class: the net must still get 3 outputs
    root = _write_nnunet(tmp_path / "ds", {"background": 0, "liver": 1, "tumour": 2})
    data = prepare_data(root, val_fraction=0)
    assert data.label_map.values == (0, 1, 2) and data.label_map.names == (
        "background",
        "liver",
        "tumour",
    )
    assert data.label_map.num_classes == 3
    # a value missing from dataset.json is an error naming the mask
    bad = _write_nnunet(tmp_path / "bad", {"background": 0, "liver": 1}, mask_values=(1, 2, 1))
    with pytest.raises(
        DataError,
        match=r"labelsTr/c1\.nii\.gz: unexpected label values 2 \(the label map has 0, 1\)",
    ):
        prepare_data(bad, val_fraction=0)
    # a label map passed in (e.g. from a checkpoint) wins
    assert prepare_data(bad, val_fraction=0, label_map=LabelMap([0, 1, 2])).label_map.values == (
        0,
        1,
        2,
    )
    region = _write_nnunet(tmp_path / "region", {"background": 0, "whole": [1, 2]})
    with pytest.raises(
        DataError, match=r"dataset\.json: unusable 'labels' entry: region-based nnU-Net label"
    ):
        prepare_data(region, val_fraction=0)


# ------------------------------------------------------------------------------------------ k-fold
def test_prepare_data_kfold_saves_all_folds_and_trains_on_one(tmp_path):
    root = _write_dataset(tmp_path / "ds", n=7)
    ids = [f"{i:02d}" for i in range(7)]
    data = prepare_data(root, num_folds=3, fold=1, seed=4, run_dir=tmp_path / "run")
    folds = kfold_splits(ids, 3, 4)
    saved = json.loads((tmp_path / "run" / "splits.json").read_text())
    assert (
        saved == folds and load_splits(tmp_path / "run" / "splits.json") == folds
    )  # splits_final.json format
    assert data.folds == folds and data.fold == 1 and data.splits == folds[1]
    assert [c.case_id for c in data.train] == folds[1]["train"] and [
        c.case_id for c in data.val
    ] == folds[1]["val"]
    assert sorted(v for f in saved for v in f["val"]) == ids  # every case validated exactly once
    assert prepare_data(root, num_folds=3, seed=4).splits == folds[0]  # fold defaults to 0
    plain = prepare_data(root, val_fraction=0.3, seed=4)
    assert plain.folds is None and plain.fold is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_folds": 3, "fold": 3}, r"fold must be an integer in 0\.\.2 for num_folds=3, got 3"),
        (
            {"num_folds": 3, "fold": -1},
            r"fold must be an integer in 0\.\.2 for num_folds=3, got -1",
        ),
        ({"fold": 1}, r"fold=1 needs num_folds"),
        ({"num_folds": 1}, r"num_folds must be an integer >= 2, got 1"),
        ({"num_folds": 9}, r"num_folds=9 needs at least 9 cases, .* has 4"),
        ({"num_folds": 2, "val_dir": "VAL"}, r"num_folds=2 .* and val_dir=.* exclude each other"),
    ],
)
def test_prepare_data_kfold_errors(tmp_path, kwargs, message):
    root = _write_dataset(tmp_path / "ds", n=4)
    if "val_dir" in kwargs:
        kwargs = {**kwargs, "val_dir": str(_write_dataset(tmp_path / "val", n=2))}
    with pytest.raises(ConfigError, match=message):
        prepare_data(root, **kwargs)


# ----------------------------------------------------------------------------------- weight cache
def test_weight_maps_are_cached_on_disk_and_reused(tmp_path, monkeypatch):
    root = _write_dataset(tmp_path / "ds", n=3)
    cache = tmp_path / "cache"
    params = {"w0": 10.0, "sigma": 5.0}
    first = prepare_data(root, val_fraction=0, weight_map=params, cache_dir=cache)
    files = sorted(cache.glob("weightmap-*.npy"))
    assert len(files) == 3 and not list(cache.glob(".*"))  # no temporary files left
    for case in first.train:  # the cached file holds exactly the computed map
        key = weight_map_key(case.mask, None, params)
        np.testing.assert_array_equal(np.load(cache / f"weightmap-{key}.npy"), case.weight)
        np.testing.assert_array_equal(case.weight, border_weight_map(case.mask, w0=10.0, sigma=5.0))

    def fail(*args, **kwargs):
        raise AssertionError("border_weight_map called although the map is cached")

    monkeypatch.setattr(dataset_module, "border_weight_map", fail)
    # same mask and parameters (given with defaults spelled out): read from the cache
    second = prepare_data(
        root,
        val_fraction=0,
        weight_map={"w0": 10, "sigma": 5, "class_weights": "balanced"},
        cache_dir=cache,
    )
    for a, b in zip(first.train, second.train):
        assert b.weight.dtype == np.float32
        np.testing.assert_array_equal(a.weight, b.weight)
    # other parameters are another key: computed (here: the failing function is reached)
    with pytest.raises(AssertionError, match="although the map is cached"):
        prepare_data(root, val_fraction=0, weight_map={"w0": 5.0, "sigma": 5.0}, cache_dir=cache)
    # a damaged cache file is recomputed, not trusted
    monkeypatch.undo()
    files[0].write_bytes(b"not an npy file")
    third = prepare_data(root, val_fraction=0, weight_map=params, cache_dir=cache)
    for a, b in zip(first.train, third.train):
        np.testing.assert_array_equal(a.weight, b.weight)
    assert np.load(files[0]).shape == (40, 52)


# --------------------------------------------------------------------------------- fg_classes
def test_patch_dataset_oversamples_class_zero_with_fg_classes(tmp_path):
    # ISBI-like: 255 (class 1) everywhere except a thin line of 0 (class 0, 1 % of the pixels)
    root = tmp_path / "ds"
    for i in range(2):
        mask = np.full((50, 50), 255, np.uint8)
        mask[:25, 20 + i] = 0
        write_image(root / "images" / f"{i}.png", mask[None] // 2)
        write_image(root / "masks" / f"{i}.png", mask[None])
    data = prepare_data(root, val_fraction=0)
    sampler = PatchSampler([9, 9], fg_fraction=1.0, fg_classes=[0])
    ds = PatchDataset(data.train, sampler, None, length=40, seed=1)
    centres = [int(ds[i]["mask"][4, 4]) for i in range(40)]
    assert centres == [0] * 40  # every patch centred on the membrane class
    default = PatchDataset(
        data.train, PatchSampler([9, 9], fg_fraction=1.0), None, length=40, seed=1
    )
    assert (
        sum(int(default[i]["mask"][4, 4]) == 0 for i in range(40)) < 10
    )  # class 1 is oversampled instead


def test_fixed_validation_folder_may_reuse_file_names(tmp_path):
    train = _write_dataset(tmp_path / "data" / "train", n=3)
    val = _write_dataset(tmp_path / "data" / "val", n=2)  # 00.png, 01.png exist in both folders
    data = prepare_data(train, val, run_dir=tmp_path / "run")
    assert data.splits == {"train": ["00", "01", "02"], "val": ["val/00", "val/01"]}
    assert json.loads((tmp_path / "run" / "splits.json").read_text()) == data.splits

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
    PatchDataset,
    PatchSampler,
    build_augmentation,
    patch_geometry,
    prepare_data,
)
from unetkit.errors import ConfigError, DataError


def _write_dataset(root, n=6, size=(40, 52), rgb_case=None, nan_case=None):
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        mask = np.zeros(size, np.uint8)
        y, x = rng.integers(5, size[0] - 15), rng.integers(5, size[1] - 15)
        mask[y:y + 10, x:x + 12] = 255
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
    data = prepare_data(root, val_fraction=0.34, seed=3, weight_map={"w0": 10.0, "sigma": 5.0}, run_dir=tmp_path / "run")
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
    with pytest.raises(DataError, match="different channel counts"):
        prepare_data(_write_dataset(tmp_path / "a", rgb_case=2), val_fraction=0)
    with pytest.raises(DataError, match=r"03\.tif: image contains NaN"):
        prepare_data(_write_dataset(tmp_path / "b", nan_case=3), val_fraction=0)
    single = _write_dataset(tmp_path / "c", n=1)
    with pytest.raises(ConfigError, match="cannot be split into train and validation"):
        prepare_data(single)


def test_patch_dataset_is_a_pure_function_of_seed_epoch_index(tmp_path):
    data = prepare_data(_write_dataset(tmp_path / "ds"), val_fraction=0)
    ds = PatchDataset(data.train, PatchSampler([24, 24]), build_augmentation({}, 2), length=8, seed=5)
    a, b = ds[3], ds[3]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["image"].shape == (1, 24, 24) and a["mask"].shape == (24, 24) and a["mask"].dtype == torch.int64
    ds.set_epoch(1)
    assert not torch.equal(ds[3]["image"], a["image"])
    other = PatchDataset(data.train, PatchSampler([24, 24]), build_augmentation({}, 2), length=8, seed=5)
    other.set_epoch(1)
    assert torch.equal(other[3]["image"], ds[3]["image"])


def test_valid_padding_geometry_keeps_image_and_label_centred(tmp_path):
    model = create_model("unet-original", base_features=2, depth=2)
    inp, lab = patch_geometry(model, [10, 10])
    assert lab[0] >= 10 and model.output_size(inp[0]) == lab[0]
    assert not model.is_valid_input_size(inp[0] - 1) or model.output_size(inp[0] - 1) < 10  # the smallest such
    # an image whose intensity encodes the mask: after sampling, the label is the centre of the image
    root = _write_dataset(tmp_path / "ds", n=3, size=(60, 60))
    data = prepare_data(root, val_fraction=0, normalization={"name": "none"})
    ds = PatchDataset(data.train, PatchSampler(lab, inp), None, length=6, seed=0)
    border = (inp[0] - lab[0]) // 2
    for i in range(6):
        s = ds[i]
        centre = s["image"][0, border:border + lab[0], border:border + lab[1]]
        assert torch.equal(centre >= 127, s["mask"] == 1)

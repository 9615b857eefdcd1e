"""Data: case discovery, label maps, splits, dataset checks, normalisation, augmentation, patch
sampling, border weight maps and the torch Dataset."""

from __future__ import annotations

import importlib

# Names are imported on first use, so that reading labels or images does not import torch
# (only ``dataset`` needs it).
_LAZY = {
    "LoadedCase": "dataset",
    "PatchDataset": "dataset",
    "PreparedData": "dataset",
    "cached_weight_map": "dataset",
    "load_case": "dataset",
    "patch_geometry": "dataset",
    "prepare_data": "dataset",
    "read_case_image": "reading",
    "Case": "discovery",
    "Compose": "transforms",
    "DEFAULT_AUGMENTATION": "transforms",
    "DatasetReport": "checks",
    "Discovery": "discovery",
    "INSTANCE_LABEL_MAP": "labels",
    "LabelMap": "labels",
    "Normalizer": "normalization",
    "PAD_MODE": "sampling",
    "PatchSampler": "sampling",
    "Problem": "discovery",
    "border_weight_map": "weightmap",
    "build_augmentation": "transforms",
    "check_dataset": "checks",
    "class_weight_map": "weightmap",
    "create_normalizer": "normalization",
    "crop_with_mirror": "sampling",
    "dataset_label_map": "labels",
    "find_cases": "discovery",
    "foreground_locations": "sampling",
    "holdout_split": "splits",
    "infer_label_map": "labels",
    "instance_labels": "weightmap",
    "kfold_splits": "splits",
    "list_normalizers": "normalization",
    "load_splits": "splits",
    "read_mask": "labels",
    "save_splits": "splits",
    "scan_dataset": "discovery",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = sorted(_LAZY)

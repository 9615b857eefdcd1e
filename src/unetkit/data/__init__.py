"""Data: case discovery, label maps, splits, dataset checks, the dataset fingerprint, objects in
masks, normalisation, augmentation, patch sampling, border weight maps and the torch Dataset."""

from __future__ import annotations

import importlib

# Names are imported on first use, so that reading labels or images does not import torch
# (only ``dataset`` needs it).
_LAZY = {
    "Case": "discovery",
    "Compose": "transforms",
    "DEFAULT_AUGMENTATION": "transforms",
    "DatasetReport": "checks",
    "Discovery": "discovery",
    "Fingerprint": "fingerprint",
    "IGNORE_INDEX": "labels",
    "INSTANCE_LABEL_MAP": "labels",
    "LabelMap": "labels",
    "LoadedCase": "dataset",
    "Normalizer": "normalization",
    "PAD_MODE": "sampling",
    "PatchDataset": "dataset",
    "PatchSampler": "sampling",
    "PreparedData": "dataset",
    "Problem": "discovery",
    "border_weight_map": "weightmap",
    "build_augmentation": "transforms",
    "cached_weight_map": "dataset",
    "check_dataset": "checks",
    "class_weight_map": "weightmap",
    "create_normalizer": "normalization",
    "crop_with_mirror": "sampling",
    "dataset_label_map": "labels",
    "equivalent_diameter": "objects",
    "find_cases": "discovery",
    "fingerprint_dataset": "fingerprint",
    "foreground_locations": "sampling",
    "labelled_locations": "sampling",
    "holdout_split": "splits",
    "infer_label_map": "labels",
    "instance_labels": "weightmap",
    "kfold_splits": "splits",
    "list_normalizers": "normalization",
    "load_case": "dataset",
    "load_splits": "splits",
    "object_sizes": "objects",
    "patch_geometry": "dataset",
    "prepare_data": "dataset",
    "read_case_image": "reading",
    "read_case_mask": "reading",
    "read_mask": "labels",
    "same_layout": "reading",
    "save_splits": "splits",
    "scan_dataset": "discovery",
    "touching_fraction": "objects",
    "touching_objects": "objects",
    "touching_pairs": "objects",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = sorted(_LAZY)

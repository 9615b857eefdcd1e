"""Data: case discovery, label maps, splits, dataset checks, normalisation, augmentation, patch
sampling, border weight maps and the torch Dataset."""

from __future__ import annotations

from .checks import DatasetReport, check_dataset
from .dataset import (
    LoadedCase,
    PatchDataset,
    PreparedData,
    cached_weight_map,
    load_case,
    patch_geometry,
    prepare_data,
    read_case_image,
)
from .discovery import Case, Discovery, Problem, find_cases, scan_dataset
from .labels import INSTANCE_LABEL_MAP, LabelMap, infer_label_map, read_mask
from .normalization import Normalizer, create_normalizer, list_normalizers
from .sampling import PAD_MODE, PatchSampler, crop_with_mirror, foreground_locations
from .splits import holdout_split, kfold_splits, load_splits, save_splits
from .transforms import DEFAULT_AUGMENTATION, Compose, build_augmentation
from .weightmap import border_weight_map, class_weight_map, instance_labels

__all__ = [
    "DEFAULT_AUGMENTATION",
    "INSTANCE_LABEL_MAP",
    "PAD_MODE",
    "Case",
    "Compose",
    "DatasetReport",
    "Discovery",
    "LabelMap",
    "LoadedCase",
    "Normalizer",
    "PatchDataset",
    "PatchSampler",
    "PreparedData",
    "Problem",
    "border_weight_map",
    "build_augmentation",
    "cached_weight_map",
    "check_dataset",
    "class_weight_map",
    "create_normalizer",
    "crop_with_mirror",
    "find_cases",
    "foreground_locations",
    "holdout_split",
    "infer_label_map",
    "instance_labels",
    "kfold_splits",
    "list_normalizers",
    "load_case",
    "load_splits",
    "patch_geometry",
    "prepare_data",
    "read_case_image",
    "read_mask",
    "save_splits",
    "scan_dataset",
]

"""From a folder to training samples: load cases once, then random augmented patches as tensors.

:func:`prepare_data` reads a dataset folder (discovery, seeded split or a fixed validation folder,
label map, normalisation fitted on the training cases, border weight maps computed once per mask);
:class:`PatchDataset` turns the training cases into an endless, reproducible stream of patches.
Every sample is a pure function of ``(seed, epoch, index)``: resumed runs and any number of
processes or workers see exactly the same samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..io.readers import ImageMeta, read_image
from .discovery import Case, find_cases
from .labels import LabelMap, infer_label_map, read_mask
from .normalization import Normalizer, create_normalizer
from .sampling import PatchSampler, foreground_locations
from .splits import holdout_split, save_splits
from .transforms import Compose
from .weightmap import border_weight_map


@dataclass
class LoadedCase:
    """One case in memory.

    Attributes:
        image: ``(C, *spatial)`` float32, normalised.
        mask: ``(*spatial)`` int64 class indices (``None`` for unlabelled cases).
        instances: ``(*spatial)`` instance ids for instance masks, else ``None``.
        weight: ``(*spatial)`` float32 border weight map, when requested.
        extra: sibling files by folder name (DRIVE's ``fov``).
    """

    case_id: str
    image: np.ndarray
    mask: Optional[np.ndarray]
    meta: ImageMeta
    instances: Optional[np.ndarray] = None
    weight: Optional[np.ndarray] = None
    extra: dict = field(default_factory=dict)
    fg_locations: Optional[dict] = None


def read_case_image(case: Case) -> tuple[np.ndarray, ImageMeta]:
    """All channel files of a case stacked to ``(C, *spatial)`` (their native dtype kept)."""
    arrays, metas = zip(*(read_image(p) for p in case.images))
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"channel files have different sizes {sorted(shapes)}", case.images[0])
    image = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
    return image, metas[0]


def load_case(case: Case, label_map: Optional[LabelMap], normalizer: Optional[Normalizer],
              weight_map: Optional[dict] = None) -> LoadedCase:
    """Read, check and normalise one case; compute its weight map when ``weight_map`` is given
    (``{"w0": 10, "sigma": 5}``)."""
    image, meta = read_case_image(case)
    if not np.isfinite(image).all():
        raise DataError("image contains NaN or infinite values", case.images[0])
    mask = instances = weight = None
    if case.mask is not None and label_map is not None:
        mask, instances, _ = read_mask(case.mask, label_map)
        if mask.shape != image.shape[1:]:
            raise DataError(f"mask size {mask.shape} differs from image size {image.shape[1:]} "
                            f"({case.images[0].name})", case.mask)
        if weight_map is not None:
            weight = border_weight_map(mask, instances=instances, **weight_map).astype(np.float32)
    img = normalizer(image) if normalizer is not None else image.astype(np.float32)
    return LoadedCase(case.case_id, np.ascontiguousarray(img, dtype=np.float32), mask, meta, instances, weight,
                      dict(case.extra), foreground_locations(mask) if mask is not None else None)


@dataclass
class PreparedData:
    """What :func:`prepare_data` returns: loaded cases plus what travels with the model."""

    train: list[LoadedCase]
    val: list[LoadedCase]
    label_map: LabelMap
    normalizer: Normalizer
    in_channels: int
    spatial_dims: int
    splits: dict


def prepare_data(train_dir: str, val_dir: Optional[str] = None, *, val_fraction: float = 0.2, seed: int = 0,
                 mask_suffix: Optional[str] = None, mask_kind: str = "auto", normalization: Optional[dict] = None,
                 weight_map: Optional[dict] = None, label_map: Optional[LabelMap] = None,
                 normalizer: Optional[Normalizer] = None, run_dir: Optional[Path] = None) -> PreparedData:
    """Discover, split, label, normalise and load a dataset for training.

    Args:
        train_dir: dataset folder (``images/`` + ``masks/`` or nnU-Net raw).
        val_dir: fixed validation folder; else ``val_fraction`` of the training cases, seeded.
        mask_kind: ``auto``, ``labels``, ``colors`` or ``instances`` (see ``infer_label_map``).
        normalization: ``{"name": ..., **params}``; fitted on the training images.
        weight_map: ``{"w0": .., "sigma": ..}`` to compute border weight maps, or ``None``.
        label_map / normalizer: reuse these (e.g. from a checkpoint) instead of inferring/fitting.
        run_dir: when given, the split (case ids of ``train`` and ``val``; the seed and fraction are
            in the run config) is saved there as ``splits.json``.
    """
    train_cases = find_cases(train_dir, mask_suffix=mask_suffix)
    if val_dir is not None:
        val_cases = find_cases(val_dir, mask_suffix=mask_suffix)
        splits = {"train": [c.case_id for c in train_cases], "val": [c.case_id for c in val_cases]}
    elif val_fraction > 0:
        if len(train_cases) < 2:
            raise ConfigError(f"{train_dir}: {len(train_cases)} case(s) cannot be split into train and validation; "
                              f"add cases, give a validation folder, or set val_fraction to 0")
        split = holdout_split([c.case_id for c in train_cases], val_fraction, seed)
        val_ids = set(split["val"])
        val_cases = [c for c in train_cases if c.case_id in val_ids]
        train_cases = [c for c in train_cases if c.case_id not in val_ids]
        splits = {"train": [c.case_id for c in train_cases], "val": [c.case_id for c in val_cases]}
    else:
        val_cases, splits = [], {"train": [c.case_id for c in train_cases], "val": []}
    if run_dir is not None:
        save_splits(Path(run_dir) / "splits.json", splits)
    if label_map is None:
        label_map = infer_label_map([c.mask for c in train_cases + val_cases], kind=mask_kind)
    if normalizer is None:
        normalizer = create_normalizer(**(normalization or {"name": "zscore"}))
        if not normalizer.fitted:
            normalizer.fit(read_case_image(c)[0] for c in train_cases)
    train = [load_case(c, label_map, normalizer, weight_map) for c in train_cases]
    val = [load_case(c, label_map, normalizer, None) for c in val_cases]
    channels = {c.image.shape[0] for c in train + val}
    dims = {c.image.ndim - 1 for c in train + val}
    if len(channels) > 1:
        raise DataError(f"images have different channel counts {sorted(channels)} (e.g. grey and RGB mixed)",
                        train_dir)
    if len(dims) > 1:
        raise DataError("2D and 3D images are mixed", train_dir)
    return PreparedData(train, val, label_map, normalizer, channels.pop(), dims.pop(), splits)


def patch_geometry(model, label_size: Sequence[int]) -> tuple[list[int], list[int]]:
    """Input and label patch sizes for ``model`` and a requested label size per axis.

    Same-padding nets: input = label = the requested size. Valid-padding nets: the smallest valid
    input whose output is at least the requested size; the label patch is that output.
    """
    inputs, labels = [], []
    for s in label_size:
        s = int(s)
        if hasattr(model, "output_size") and model.output_size(model.valid_input_size(s)) != model.valid_input_size(s):
            size = model.valid_input_size(s)
            while model.output_size(size) < s:
                size = model.valid_input_size(size + 1)
            inputs.append(size)
            labels.append(model.output_size(size))
        else:
            if hasattr(model, "is_valid_input_size") and not model.is_valid_input_size(s):
                raise ConfigError(f"patch size {s} is too small for this model; use at least "
                                  f"{model.valid_input_size(s)}")
            inputs.append(s)
            labels.append(s)
    return inputs, labels


class PatchDataset(torch.utils.data.Dataset):
    """An epoch of random patches from the training cases.

    Sample ``i`` of epoch ``e`` is drawn with ``np.random.default_rng([seed, e, i])``: a random case,
    a patch (foreground-oversampled), augmentation. Returns tensors ``image`` (C, *input),
    ``mask`` (*label) int64 and, with weight maps, ``weight`` (*label) float32.

    Args:
        cases: loaded training cases (with masks).
        sampler: the :class:`PatchSampler` (input/label sizes).
        augmentation: a :class:`Compose`, or ``None``.
        length: samples per epoch (iterations × global batch size).
        seed: base seed.
    """

    def __init__(self, cases: list[LoadedCase], sampler: PatchSampler, augmentation: Optional[Compose],
                 length: int, seed: int = 0):
        if not cases:
            raise ConfigError("no training cases to sample from")
        if any(c.mask is None for c in cases):
            raise ConfigError("every training case needs a mask")
        self.cases, self.sampler, self.augmentation = cases, sampler, augmentation
        self.length, self.seed, self.epoch = int(length), int(seed), 0
        self.full_context = sampler.input_size is not None and list(np.atleast_1d(sampler.input_size)) != list(
            np.atleast_1d(sampler.label_size))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        case = self.cases[int(rng.integers(len(self.cases)))]
        sample = self.sampler.sample(case.image, case.mask, rng, weight=case.weight, instances=case.instances,
                                     fg_locations=case.fg_locations, full_context=self.full_context)
        sample = {k: sample[k] for k in ("image", "mask", "weight") if sample.get(k) is not None}
        if self.augmentation is not None:
            sample = self.augmentation(sample, rng)
        if self.full_context:
            sample = self.sampler.crop_labels(sample)
        out = {"image": torch.from_numpy(np.ascontiguousarray(sample["image"], dtype=np.float32)),
               "mask": torch.from_numpy(np.ascontiguousarray(sample["mask"], dtype=np.int64))}
        if "weight" in sample:
            out["weight"] = torch.from_numpy(np.ascontiguousarray(sample["weight"], dtype=np.float32))
        return out

"""From a folder to training samples: load cases once, then random augmented patches as tensors.

:func:`prepare_data` reads a dataset folder (discovery, seeded hold-out split, k-fold split or a
fixed validation folder, label map, normalisation fitted on the training cases, border weight maps
computed once per mask and, with ``cache_dir``, cached on disk across runs);
:class:`PatchDataset` turns the training cases into an endless, reproducible stream of patches.
Every sample is a pure function of ``(seed, epoch, index)``: resumed runs and any number of
processes or workers see exactly the same samples.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..io.orientation import reorient
from ..io.readers import ImageMeta
from ..utils import atomic_path
from . import weightmap as _weightmap
from .discovery import Case, scan_dataset
from .labels import LabelMap, dataset_label_map
from .normalization import Normalizer, choose_normalization, create_normalizer
from .objects import contact_pixels
from .reading import read_case_image, read_case_mask, require_finite, same_layout
from .resample import (
    resample_image,
    resample_instances,
    resample_labels,
    scaled_shape,
    spacing_factors,
)
from .sampling import PatchSampler, foreground_locations, labelled_locations
from .splits import holdout_split, kfold_splits, save_splits
from .transforms import Compose
from .weightmap import border_weight_map

PathLike = Union[str, Path]
#: Version of the weight-map cache key; bump it when :func:`border_weight_map` changes its output.
WEIGHT_CACHE_VERSION = 1


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

    @property
    def spacing(self) -> Optional[tuple]:
        """The case's voxel size per axis (``meta.spacing``, of the turned volume under an
        orientation; ``None`` when the file states none): what prediction resamples a validation
        case by under a target spacing."""
        return getattr(self.meta, "spacing", None)


def weight_map_key(mask: np.ndarray, instances: Optional[np.ndarray], weight_map: dict) -> str:
    """Cache key of a border weight map: SHA-256 of the class-index mask (and instance ids) and of the
    :func:`border_weight_map` parameters, defaults filled in (so ``{"w0": 10}`` and
    ``{"w0": 10.0, "sigma": 5}`` give the same key)."""
    defaults = {
        k: v.default
        for k, v in inspect.signature(_weightmap.border_weight_map).parameters.items()
        if k not in ("mask", "instances")
    }
    unknown = sorted(set(weight_map) - set(defaults))
    if unknown:
        raise ConfigError(
            f"unknown weight map parameter(s) {', '.join(unknown)}; valid: {', '.join(defaults)}"
        )
    params = {**defaults, **weight_map}
    for k in ("w0", "sigma", "tolerance"):
        params[k] = float(params[k])
    for k in ("class_weights", "spacing"):
        if params[k] is not None and not isinstance(params[k], str):
            params[k] = [float(v) for v in np.ravel(params[k])]
    h = hashlib.sha256(
        f"unetkit-weightmap-v{WEIGHT_CACHE_VERSION}|{json.dumps(params, sort_keys=True)}|".encode()
    )
    for arr in (mask, instances):
        if arr is not None:
            arr = np.ascontiguousarray(arr, dtype=np.int64)
            h.update(f"{arr.shape}|".encode())
            h.update(arr.tobytes())
        h.update(b"|")
    return h.hexdigest()


def cached_weight_map(
    mask: np.ndarray,
    instances: Optional[np.ndarray],
    weight_map: dict,
    cache_dir: Optional[PathLike] = None,
) -> np.ndarray:
    """:func:`border_weight_map` of a mask, read from / saved to ``cache_dir`` when given.

    The map is stored as ``<cache_dir>/weightmap-<key>.npy`` (see :func:`weight_map_key`), written
    atomically, so several processes may share the folder. An unreadable or mismatched cache file is
    recomputed and replaced.

    Args:
        mask: ``(*spatial)`` class indices.
        instances: ``(*spatial)`` instance ids, or ``None``.
        weight_map: :func:`border_weight_map` keyword arguments (``{"w0": 10, "sigma": 5}``).
        cache_dir: cache folder (created when missing), or ``None`` to compute without caching.

    Returns:
        ``(*spatial)`` float32 weights.
    """
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"weightmap-{weight_map_key(mask, instances, weight_map)}.npy"
        if path.is_file():
            try:
                cached = np.load(path, allow_pickle=False)
            except (OSError, ValueError, EOFError):
                cached = None
            if cached is not None and cached.shape == mask.shape and cached.dtype == np.float32:
                return cached
    weight = border_weight_map(mask, instances=instances, **weight_map).astype(np.float32)
    if path is not None:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, weight, allow_pickle=False)
    return weight


def load_case(
    case: Case,
    label_map: Optional[LabelMap],
    normalizer: Optional[Normalizer],
    weight_map: Optional[dict] = None,
    *,
    cache_dir: Optional[PathLike] = None,
    scale: Optional[Sequence[float]] = None,
    target_spacing: Optional[Sequence[float]] = None,
    orientation: Optional[str] = None,
    separate_objects: bool = False,
) -> LoadedCase:
    """Read, check and normalise one case; compute its weight map when ``weight_map`` is given
    (``{"w0": 10, "sigma": 5}``), reading it from ``cache_dir`` when cached there before (see
    :func:`cached_weight_map`). With ``orientation`` (a code such as ``"RAS"``, see
    :mod:`unetkit.io.orientation`) a 3D volume with a stated geometry is first turned to it, image
    and masks alike, and ``meta`` describes the turned volume. The image is normalised next (as
    the predictor does, before any resampling). With ``scale`` (one factor per axis,
    see :mod:`unetkit.data.resample`) image and masks are then resampled and the weight map is made
    on the resampled mask; with ``target_spacing`` the factors are the case's own (turned)
    ``spacing / target_spacing`` (:func:`~unetkit.data.resample.spacing_factors`). With
    ``separate_objects`` and instance ids (an instance mask or an ``instances/`` file), the pixels
    where two objects meet become background in mask and ids alike
    (:func:`~unetkit.data.objects.contact_pixels`, after any resampling, before the weight map),
    so the net learns to leave a gap between touching objects."""
    image, meta = read_case_image(case)
    require_finite(image, case.images[0])
    mask = instances = weight = None
    if case.mask is not None and label_map is not None:
        mask, instances = read_case_mask(case, label_map, image.shape[1:], meta)
    if orientation is not None:
        image, meta, turn = reorient(image, meta, orientation)
        mask = turn.apply(mask) if mask is not None else None
        instances = turn.apply(instances) if instances is not None else None
    # normalised before resampling, as the predictor does (CT clipping and per-image statistics
    # do not commute with interpolation: training and prediction must see the same order)
    image = normalizer(image) if normalizer is not None else image.astype(np.float32)
    factors = spacing_factors(getattr(meta, "spacing", None), target_spacing, image.ndim - 1, scale)
    shape = scaled_shape(image.shape[1:], factors)
    if shape != image.shape[1:]:
        image = resample_image(image, shape)
        if instances is not None:
            instances = resample_instances(instances, shape)
        if instances is not None and label_map.kind == "instances":  # one class: the objects
            mask = (instances > 0).astype(np.int64)
        elif mask is not None:
            mask = resample_labels(mask, shape, label_map.num_classes)
            if instances is not None:
                instances[mask <= 0] = 0
    # binary masks only: ids alone cannot tell where objects of two classes meet
    if separate_objects and instances is not None and label_map.num_classes == 2:
        gap = contact_pixels(instances)
        mask[gap] = 0
        instances[gap] = 0
    if mask is not None and weight_map is not None:
        weight = cached_weight_map(mask, instances, weight_map, cache_dir)
    return LoadedCase(
        case.case_id,
        np.ascontiguousarray(image, dtype=np.float32),
        mask,
        meta,
        instances,
        weight,
        dict(case.extra),
        foreground_locations(mask) if mask is not None else None,
    )


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
    folds: Optional[list] = None
    fold: Optional[int] = None


def prepare_data(
    train_dir: str,
    val_dir: Optional[str] = None,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    mask_suffix: Optional[str] = None,
    mask_kind: str = "auto",
    ignore_value: Optional[int] = None,
    normalization: Optional[dict] = None,
    weight_map: Optional[dict] = None,
    label_map: Optional[LabelMap] = None,
    normalizer: Optional[Normalizer] = None,
    run_dir: Optional[Path] = None,
    num_folds: Optional[int] = None,
    fold: Optional[int] = None,
    cache_dir: Optional[Path] = None,
    scale: Optional[Sequence[float]] = None,
    target_spacing: Optional[Sequence[float]] = None,
    channel_names: Optional[Sequence[str]] = None,
    orientation: Optional[str] = None,
    separate_objects: bool = False,
    saved_splits: Optional[Union[dict, list]] = None,
) -> PreparedData:
    """Discover, split, label, normalise and load a dataset for training.

    Args:
        train_dir: dataset folder (``images/`` + ``masks/`` or nnU-Net raw).
        val_dir: fixed validation folder; else ``val_fraction`` of the training cases, seeded (or
            the folds of ``num_folds``).
        mask_kind: ``auto``, ``labels``, ``colors`` or ``instances`` (see ``infer_label_map``).
        ignore_value: the mask value of unlabelled pixels (:attr:`LabelMap.ignore`; their class
            index is :data:`~unetkit.data.labels.IGNORE_INDEX`), or ``None``.
        normalization: ``{"name": ..., **params}``; fitted on the training images (``ct``: on
            their foreground, the masks read once more, one case at a time). ``None`` or
            ``{"name": "auto"}``: chosen from ``channel_names``, else the ``dataset.json``
            ``channel_names`` of an nnU-Net folder, else ``zscore`` per image (see
            :func:`~unetkit.data.normalization.choose_normalization`).
        channel_names: one name per image channel (``["CT", "T2"]``); their count must match the
            images'.
        weight_map: ``{"w0": .., "sigma": ..}`` to compute border weight maps, or ``None``.
        label_map / normalizer: reuse these (e.g. from a checkpoint) instead of inferring/fitting.
            Without ``label_map``, the ``labels`` of an nnU-Net ``dataset.json`` found by the
            discovery are the label map (class ``i`` = the ``i``-th smallest value; a mask value
            missing from them is an error naming the mask); otherwise it is inferred from the masks.
        run_dir: when given, the split is saved there as ``splits.json``: the hold-out split
            (``{"train": [...], "val": [...]}``) or, with ``num_folds``, all folds as a list (the
            format of nnU-Net's ``splits_final.json``).
        num_folds: k-fold cross-validation: split the cases with
            :func:`~unetkit.data.splits.kfold_splits` (seeded by ``seed``; ``val_fraction`` is
            ignored) and train on fold ``fold``. Cannot be combined with ``val_dir``.
        fold: the fold to train on, ``0 … num_folds - 1`` (default 0 with ``num_folds``).
        cache_dir: folder caching the border weight maps across runs (see
            :func:`cached_weight_map`); ``None`` computes them without caching.
        scale: resolution factor per axis for the **training** cases (see
            :mod:`unetkit.data.resample`); validation cases stay at their own size, so validation
            scores what ``predict`` writes.
        target_spacing: resample each **training** case to this voxel size (its own factors; see
            :func:`load_case`); validation cases stay as stored, as with ``scale``.
        orientation: turn every 3D volume with a stated geometry, training **and** validation
            cases, to this orientation code (``"RAS"``; see :mod:`unetkit.io.orientation`), as
            ``predict`` turns each input: validation scores the net on volumes turned as it sees
            them.
        separate_objects: carve a background gap where two objects of the **training** cases
            meet (see :func:`load_case`); validation cases keep their masks, so validation scores
            the objects as drawn.
        saved_splits: the split a run saved (its ``splits.json``; folds: fold ``fold`` of them),
            used instead of splitting again, so a resumed run keeps its validation cases out of
            training even when cases were added to the folder since (those are left out, and
            named); with ``val_dir``, the cases it had of each folder. A case of the split that is
            gone is an error.

    Returns:
        The :class:`PreparedData`; ``splits`` is the split used (with ``num_folds``: fold ``fold``,
        and ``folds`` holds all of them).

    Raises:
        ConfigError: ``fold`` without ``num_folds``, ``fold`` out of range, ``num_folds`` with
            ``val_dir``, too few cases to split.
        DataError: discovery problems, an unusable ``dataset.json`` ``labels`` entry, unreadable
            files, values outside the label map, mixed channel counts or dimensions.
    """
    found = scan_dataset(train_dir, mask_suffix=mask_suffix)
    if found.problems:
        raise found.error()
    train_cases = found.cases
    folds = None
    if isinstance(saved_splits, (dict, list)) and val_dir is None:
        train_cases, val_cases, folds = _cases_of_saved_split(
            train_cases, saved_splits, fold, train_dir
        )
    elif num_folds is not None or fold is not None:
        fold = _check_folds(num_folds, fold, val_dir, len(train_cases), train_dir)
        folds = kfold_splits([c.case_id for c in train_cases], num_folds, seed)
        val_ids = set(folds[fold]["val"])
        val_cases = [c for c in train_cases if c.case_id in val_ids]
        train_cases = [c for c in train_cases if c.case_id not in val_ids]
    elif val_dir is not None:
        found_val = scan_dataset(val_dir, mask_suffix=mask_suffix)
        if found_val.problems:
            raise found_val.error()
        val_cases = found_val.cases
        if isinstance(saved_splits, dict):  # a resumed run: its own cases of both folders
            prefix = f"{Path(val_dir).name}/"
            train_cases, _, _ = _cases_of_saved_split(
                train_cases, {"train": saved_splits["train"], "val": []}, None, train_dir
            )
            saved_val = [
                i[len(prefix) :] if i.startswith(prefix) else i for i in saved_splits["val"]
            ]
            _, val_cases, _ = _cases_of_saved_split(
                val_cases, {"train": [], "val": saved_val}, None, val_dir
            )
    elif val_fraction > 0:
        if len(train_cases) < 2:
            raise ConfigError(
                f"{train_dir}: {len(train_cases)} case(s) cannot be split into train and validation; "
                f"add cases, give a validation folder, or set val_fraction to 0"
            )
        split = holdout_split([c.case_id for c in train_cases], val_fraction, seed)
        val_ids = set(split["val"])
        val_cases = [c for c in train_cases if c.case_id in val_ids]
        train_cases = [c for c in train_cases if c.case_id not in val_ids]
    else:
        val_cases = []
    # cases of a fixed validation folder are named "<folder>/<id>": its files may share names with
    # the training files (data/train/images/01.png and data/val/images/01.png are different cases)
    val_prefix = f"{Path(val_dir).name}/" if val_dir is not None else ""
    splits = {
        "train": [c.case_id for c in train_cases],
        "val": [val_prefix + c.case_id for c in val_cases],
    }
    inferred_map = label_map is None
    if label_map is None:
        label_map = dataset_label_map(
            found,
            [c.mask for c in train_cases + val_cases],
            mask_kind,
            warn_lone=True,
            ignore=ignore_value,
        )
    if channel_names is not None and train_cases:
        _check_channel_names(channel_names, train_cases[0])
    if normalizer is None:
        spec, _ = choose_normalization(normalization, channel_names, found.dataset_json)
        normalizer = create_normalizer(**spec)
        if not normalizer.fitted:
            _fit_normalizer(normalizer, train_cases, label_map)
    train = [
        load_case(
            c,
            label_map,
            normalizer,
            weight_map,
            cache_dir=cache_dir,
            scale=scale,
            target_spacing=target_spacing,
            orientation=orientation,
            separate_objects=separate_objects,
        )
        for c in train_cases
    ]
    val = [load_case(c, label_map, normalizer, None, orientation=orientation) for c in val_cases]
    if val_dir is not None and inferred_map:
        _check_val_classes(train, val, label_map, val_dir)
    cases = train_cases + val_cases
    loaded = list(same_layout((case.images[0], c.image) for case, c in zip(cases, train + val)))
    if (
        run_dir is not None
    ):  # written once everything has been read: a failure leaves no file behind
        save_splits(Path(run_dir) / "splits.json", folds if folds is not None else splits)
    return PreparedData(
        train,
        val,
        label_map,
        normalizer,
        loaded[0].shape[0],
        loaded[0].ndim - 1,
        splits,
        folds,
        fold if folds is not None else None,
    )


def _check_val_classes(train: list, val: list, label_map: LabelMap, val_dir) -> None:
    """Refuse a validation folder whose masks hold classes no training mask has: two folders
    labelled differently (0/255 beside 0/1/2) would train classes that are never seen and score
    validation on them."""
    seen = set()
    for case in train:
        if case.mask is not None:
            seen.update(int(v) for v in np.unique(case.mask) if v >= 0)
    check_val_classes(seen, ((c.case_id, c.mask) for c in val), label_map, val_dir)


def check_val_classes(seen: set, val, label_map: LabelMap, val_dir) -> None:
    """:func:`_check_val_classes` from the classes the training masks hold (``seen``) and the
    validation cases' ``(case id, class indices)`` (the planner checks so before it plans)."""
    only: set = set()
    holders: list = []  # the validation cases holding such values
    for case_id, mask in val:
        if mask is not None:
            unseen = {int(v) for v in np.unique(mask) if v >= 0 and int(v) not in seen}
            if unseen:
                only |= unseen
                holders.append(case_id)
    if only:
        show = ", ".join(str(label_map.values[c]) for c in sorted(only))
        trained = ", ".join(str(label_map.values[c]) for c in sorted(seen))
        cases = ", ".join(holders[:3]) + (" …" if len(holders) > 3 else "")
        raise DataError(
            f"the validation masks of {len(holders)} case(s) ({cases}) hold the value(s) {show}, "
            f"which no training mask has (they hold {trained}): correct those masks, or give both "
            "folders the same values",
            val_dir,
        )


def _cases_of_saved_split(cases: list, saved: Union[dict, list], fold: Optional[int], train_dir):
    """``(train cases, validation cases, folds or None)`` of a run's saved split."""
    import sys

    folds = saved if isinstance(saved, list) else None
    split = saved[fold or 0] if folds is not None else saved
    by_id = {c.case_id: c for c in cases}
    listed = [*split["train"], *split["val"]]
    gone = [i for i in listed if i not in by_id]
    if gone:
        raise DataError(
            f"case {gone[0]!r} of the run's split (splits.json{', and more' if len(gone) > 1 else ''}) "
            "is not in this folder any more; restore it to continue the run, or start a new one",
            train_dir,
        )
    new = sorted(set(by_id) - set(listed))
    if new:
        print(
            f"warning: {train_dir}: {len(new)} case(s) added since the run began "
            f"({', '.join(new[:3])}{' …' if len(new) > 3 else ''}) are left out: the run "
            "continues on its own split",
            file=sys.stderr,
        )
    return [by_id[i] for i in split["train"]], [by_id[i] for i in split["val"]], folds


def _check_channel_names(names: Sequence[str], case: Case) -> None:
    """One channel name per channel of the images (the first training case's)."""
    channels = read_case_image(case)[0].shape[0]
    if len(names) != channels:
        raise ConfigError(
            f"--channel-names / data.channel_names give {len(names)} name(s) ({', '.join(names)}) "
            f"but the images have {channels} channel(s) ({case.images[0].name}); give one name "
            "per channel"
        )


def _fit_normalizer(normalizer: Normalizer, cases: list[Case], label_map: LabelMap) -> None:
    """Fit on the training images, one case at a time; a scheme with foreground statistics
    (``ct``) also gets each case's mask (foreground: class index > 0 after the label map)."""
    images = same_layout((c.images[0], read_case_image(c)[0]) for c in cases)
    if not normalizer.needs_masks:
        normalizer.fit(images)
        return
    pairs = (
        (image, read_case_mask(c, label_map, image.shape[1:])[0] if c.mask else None)
        for c, image in zip(cases, images)
    )
    with_images, with_masks = itertools.tee(pairs)  # read in step: one case in memory at a time
    normalizer.fit((image for image, _ in with_images), (mask for _, mask in with_masks))


def _check_folds(
    num_folds: Optional[int],
    fold: Optional[int],
    val_dir: Optional[str],
    n_cases: int,
    train_dir: str,
) -> int:
    """Validate the k-fold arguments of :func:`prepare_data`; returns the fold (default 0)."""
    if num_folds is None:
        raise ConfigError(f"fold={fold!r} needs num_folds (the number of cross-validation folds)")
    if isinstance(num_folds, bool) or int(num_folds) != num_folds or num_folds < 2:
        raise ConfigError(f"num_folds must be an integer >= 2, got {num_folds!r}")
    if val_dir is not None:
        raise ConfigError(
            f"num_folds={num_folds} (k-fold cross-validation on {train_dir}) and val_dir={val_dir} "
            "(a fixed validation folder) exclude each other; give one of them"
        )
    if num_folds > n_cases:
        raise ConfigError(
            f"num_folds={num_folds} needs at least {num_folds} cases, {train_dir} has {n_cases}"
        )
    fold = 0 if fold is None else fold
    if isinstance(fold, bool) or int(fold) != fold or not 0 <= fold < num_folds:
        raise ConfigError(
            f"fold must be an integer in 0..{int(num_folds) - 1} for num_folds={num_folds}, "
            f"got {fold!r}"
        )
    return int(fold)


def patch_geometry(model, label_size: Sequence[int]) -> tuple[list[int], list[int]]:
    """Input and label patch sizes for ``model`` and a requested label size per axis.

    Same-padding nets: input = label = the requested size. Valid-padding nets: the smallest valid
    input whose output is at least the requested size; the label patch is that output. ``model``
    is anything with ``size_rule()`` (a unetkit model); other modules take any size.
    """
    sizes = [int(s) for s in label_size]
    rule = model.size_rule() if callable(getattr(model, "size_rule", None)) else None
    if rule is None:
        return sizes, sizes
    if rule.is_valid_padding:
        inputs = rule.input_for_output(sizes)
        return list(inputs), list(rule.output_size(inputs))
    for axis, s in enumerate(sizes):
        if not rule.axis_accepts(axis, s):
            raise ConfigError(
                f"patch size {s} is too small for this model; use at least "
                f"{rule.at_least(sizes)[axis]}"
            )
    return sizes, sizes


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

    def __init__(
        self,
        cases: list[LoadedCase],
        sampler: PatchSampler,
        augmentation: Optional[Compose],
        length: int,
        seed: int = 0,
    ):
        if not cases:
            raise ConfigError("no training cases to sample from")
        if any(c.mask is None for c in cases):
            raise ConfigError("every training case needs a mask")
        self.cases, self.sampler, self.augmentation = cases, sampler, augmentation
        self.length, self.seed, self.epoch = int(length), int(seed), 0
        self.full_context = sampler.input_size is not None and list(
            np.atleast_1d(sampler.input_size)
        ) != list(np.atleast_1d(sampler.label_size))
        classes = getattr(sampler, "fg_classes", None)
        # the cases' own fg_locations hold the classes > 0; other classes to oversample are found once here
        self.fg_locations = [
            c.fg_locations if classes is None else foreground_locations(c.mask, classes=classes)
            for c in cases
        ]
        # partially labelled masks: the draws not on foreground are centred on labelled pixels
        self.labelled = [labelled_locations(c.mask) for c in cases]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        k = int(rng.integers(len(self.cases)))
        case = self.cases[k]
        sample = self.sampler.sample(
            case.image,
            case.mask,
            rng,
            weight=case.weight,
            instances=case.instances,
            fg_locations=self.fg_locations[k],
            full_context=self.full_context,
            labelled=self.labelled[k],
        )
        sample = {k: sample[k] for k in ("image", "mask", "weight") if sample.get(k) is not None}
        if self.augmentation is not None:
            sample = self.augmentation(sample, rng)
        if self.full_context:
            sample = self.sampler.crop_labels(sample)
        out = {
            "image": torch.from_numpy(np.ascontiguousarray(sample["image"], dtype=np.float32)),
            "mask": torch.from_numpy(np.ascontiguousarray(sample["mask"], dtype=np.int64)),
        }
        if "weight" in sample:
            out["weight"] = torch.from_numpy(
                np.ascontiguousarray(sample["weight"], dtype=np.float32)
            )
        return out

"""Validate a dataset before training: :func:`check_dataset` → :class:`DatasetReport`.

The report summarises what was found (pairs, image sizes, dtypes, channels, label values and class
frequencies, intensity statistics per channel, NaN/inf counts) and lists every problem, one line
each, naming the file: unreadable/truncated or zero-byte files, non-image files, empty folders,
images without masks and masks without images, image/mask (and extra-folder) size mismatches,
unexpected label values, NaN/inf intensities, a channel count that differs from ``in_channels``
(or from the other images). ``unetkit check-data DIR`` prints it and exits 2 on any problem.

Rules worth knowing:

* *Unexpected label values*: with a ``label_map`` (``--labels 0,255`` on the command line, or
  the ``labels`` of an nnU-Net ``dataset.json``, used when no map is given), every value outside
  it. Without one, the masks are checked against each other (with at least 2 masks): a value
  found in one mask only is reported for that mask when it looks like an accident, not a rare
  class: it covers under 0.1 % of that mask's pixels, or it lies strictly between the values the
  other masks use and at least half of its pixels sit on region borders (an anti-aliased 128 on
  the edges of a {0, 255} mask). A rare class that fills a region of its own is not reported
  (state the classes with ``label_map``/``--labels`` to check it). More than ``max_classes``
  distinct values is one problem per mask that holds that many by itself (a noise or image file
  among the masks), else one problem for the masks folder; it suggests instance masks or lossy files.
* JPEG masks are read as training reads them (:mod:`unetkit.data.labels`): binary at grey
  ``LOSSY_THRESHOLD`` with ``mask_kind="auto"``; a coloured or non-binary JPEG mask, or a lossless
  mask with other values than 0/255 beside JPEG masks, is a problem.
* Percentiles (1 and 99) are exact for 8/16-bit integer data (from a histogram); for other types
  they are estimated from up to 50,000 random pixels per image and channel (seeded).
* Sizes are written in array order, ``H×W`` (2D) or ``D×H×W`` (3D), as the plan writes them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..errors import ConfigError, DataError
from ..io.readers import read_image
from .discovery import is_dir_alias, scan_dataset
from .labels import (
    BLEND_BORDER_SHARE,
    FEW_IDS_MIN,
    INFER_KINDS,
    INSTANCE_GUESS_MIN_IDS,
    LONE_VALUE_SHARE,
    LOSSY_THRESHOLD,
    LabelMap,
    _pack,
    _unpack,
    border_pixels,
    check_ignore_value,
    forgotten_ignore_value,
    instance_ids,
    is_lossy_mask,
    looks_like_instances,
    lossy_mask_grey,
    non_integer_problem,
    numbered_per_mask,
    numbered_regions,
    numbered_volumes_note,
    two_codings,
)
from .object_masks import is_object_source, read_mask_source
from .reading import (
    INSTANCE_DIR_NAMES,
    channel_geometry_problem,
    channels_last_hint,
    geometry_problem,
    is_grey_as_colour,
    odd_voxel_size,
    pages_as_channels_hint,
    slices_as_channels_hint,
)

PathLike = Union[str, Path]
_SAMPLES = 50_000
_HIST_LO, _HIST_HI = -(2**15), 2**16  # histogram range covering int8/int16/uint8/uint16
_SHOW = 10  # values listed in one line before "… (N in all)"
_TINY = LONE_VALUE_SHARE  # a lone mask value under this fraction of the mask's pixels is suspicious
_BORDER = BLEND_BORDER_SHARE  # ... or one with at least this share of its pixels on region borders


def _shorten(items: list, limit: int = _SHOW) -> str:
    """``"a, b, c"``, or the first ``limit`` items then ``"… (N in all)"``."""
    return ", ".join(items[:limit]) + (f", … ({len(items)} in all)" if len(items) > limit else "")


def _size_str(spatial: tuple) -> str:
    """``(H, W)`` → ``"H×W"``, ``(D, H, W)`` → ``"D×H×W"``: array order, as the plan, the voxel
    sizes and the training log write them."""
    return "×".join(str(s) for s in spatial)


class _ChannelStats:
    """Running min/max/mean/std (Chan et al. merge), exact histogram while data is ≤16-bit integer, samples."""

    def __init__(self):
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.lo = np.inf
        self.hi = -np.inf
        self.hist: Optional[np.ndarray] = np.zeros(_HIST_HI - _HIST_LO, dtype=np.int64)
        self.samples: list[np.ndarray] = []

    def add(self, plane: np.ndarray, rng: np.random.Generator) -> None:
        values = plane.ravel()
        if values.dtype.kind == "f":
            values = values[np.isfinite(values)]
        if values.size == 0:
            return
        if self.hist is not None and values.dtype.kind in "biu" and values.dtype.itemsize <= 2:
            self.hist += np.bincount(values.astype(np.int64) - _HIST_LO, minlength=self.hist.size)
        else:
            self.hist = None
        v = values.astype(np.float64)
        n, mean = v.size, float(v.mean())
        m2 = float(((v - mean) ** 2).sum())
        total = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta**2 * self.n * n / total
        self.n = total
        self.lo, self.hi = min(self.lo, float(v.min())), max(self.hi, float(v.max()))
        pick = v if v.size <= _SAMPLES else v[rng.choice(v.size, _SAMPLES, replace=False)]
        self.samples.append(pick)

    def percentile(self, q: float) -> float:
        if self.hist is not None:
            cdf = np.cumsum(self.hist)
            return float(np.searchsorted(cdf, q / 100.0 * cdf[-1]) + _HIST_LO)
        return float(np.percentile(np.concatenate(self.samples), q, method="inverted_cdf"))

    def summary(self) -> dict:
        if self.n == 0:
            return {"pixels": 0}
        return {
            "pixels": self.n,
            "min": self.lo,
            "max": self.hi,
            "mean": self.mean,
            "std": float(np.sqrt(self.m2 / self.n)),
            "p1": self.percentile(1),
            "p99": self.percentile(99),
            "percentiles_exact": self.hist is not None,
        }


@dataclass
class DatasetReport:
    """Summary and problems of one dataset folder; ``ok`` when there are no problems.

    Attributes:
        root: the folder checked.
        layout: ``"images/masks"`` or ``"nnunet"`` (``""`` when none was recognised).
        folders: the image and mask folders' names as found (``["Images", "ground_truth"]``).
        num_images: cases found (with or without mask); ``num_pairs``: those with a mask.
        mask_suffix: the mask suffix used (``""`` when masks share the image stem).
        extra_folders: sibling folders matched to the images (``["fov"]``).
        sizes: ``{"H×W": count}`` of images read; ``channels``: ``{C: count}``; ``dtypes``: ``{name: count}``.
        spacings: ``{"3×0.8×0.8 mm": count}``: the voxel sizes the image files state, in array
            order (z, y, x), with their unit; files that state none are not counted.
        mask_kind: ``"labels"``, ``"colors"`` or ``"instances"``.
        label_values: distinct mask values over all masks (ints, or ``[r, g, b]``), sorted.
        expected_labels: the class values the masks were checked against (from ``label_map``
            or dataset.json), ``[]`` when the masks were checked against each other.
        labels_from: where ``expected_labels`` came from: ``"label map"``, ``"dataset.json"`` or ``""``.
        class_frequencies: percentage of mask pixels per value, same order as ``label_values``.
        intensity: per image channel ``{"min", "max", "mean", "std", "p1", "p99", "pixels", …}``.
        nan_count, inf_count: non-finite image values over the whole dataset.
        lossy_masks: JPEG masks read as binary (grey level ≥ ``LOSSY_THRESHOLD`` = foreground).
        num_objects: with instance masks, the objects of all masks (each mask's ids counted apart).
        ignore_value, unlabelled_percent: the mask value of unlabelled pixels (``--ignore-value``,
            or a dataset.json ``"ignore"`` label) and the share of mask pixels holding it; it is
            not among ``label_values`` and ``class_frequencies`` are of the labelled pixels.
        notes: what may be read otherwise than meant, with the flag that changes it (not problems:
            the check still passes).
        problems: one line each, ``"<path>: <problem>"``.
    """

    root: str
    layout: str = ""
    folders: list = field(default_factory=list)
    num_images: int = 0
    num_pairs: int = 0
    mask_suffix: str = ""
    extra_folders: list = field(default_factory=list)
    sizes: dict = field(default_factory=dict)
    channels: dict = field(default_factory=dict)
    dtypes: dict = field(default_factory=dict)
    spacings: dict = field(default_factory=dict)
    mask_kind: str = ""
    label_values: list = field(default_factory=list)
    expected_labels: list = field(default_factory=list)
    labels_from: str = ""
    class_frequencies: list = field(default_factory=list)
    lossy_masks: int = 0
    intensity: list = field(default_factory=list)
    nan_count: int = 0
    inf_count: int = 0
    num_objects: int = 0
    ignore_value: Optional[int] = None
    unlabelled_percent: Optional[float] = None
    notes: list = field(default_factory=list)
    problems: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def label_map(self) -> Optional[LabelMap]:
        """The label map the found values imply (``None`` with fewer than 2 values)."""
        if len(self.label_values) < 2 or self.mask_kind == "instances":
            return None
        if self.mask_kind == "colors":
            return LabelMap([tuple(v) for v in self.label_values], kind="colors")
        return LabelMap(self.label_values, ignore=self.ignore_value)

    def to_dict(self) -> dict:
        return {
            "root": self.root,
            "ok": self.ok,
            "layout": self.layout,
            "folders": list(self.folders),
            "num_images": self.num_images,
            "num_pairs": self.num_pairs,
            "mask_suffix": self.mask_suffix,
            "extra_folders": list(self.extra_folders),
            "sizes": dict(self.sizes),
            "channels": {str(k): v for k, v in self.channels.items()},
            "dtypes": dict(self.dtypes),
            "spacings": dict(self.spacings),
            "mask_kind": self.mask_kind,
            "num_objects": self.num_objects,
            "ignore_value": self.ignore_value,
            "unlabelled_percent": self.unlabelled_percent,
            "label_values": list(self.label_values),
            "expected_labels": list(self.expected_labels),
            "labels_from": self.labels_from,
            "class_frequencies": list(self.class_frequencies),
            "lossy_masks": self.lossy_masks,
            "intensity": list(self.intensity),
            "nan_count": self.nan_count,
            "inf_count": self.inf_count,
            "notes": list(self.notes),
            "problems": list(self.problems),
        }

    def format(self) -> str:
        """A readable multi-line summary ending with the problems (or ``OK``)."""

        def counts(d: dict) -> str:
            return ", ".join(f"{k} ({v})" for k, v in d.items()) or "-"

        def num(x: float) -> str:
            return f"{x:.6g}"

        lines = [f"dataset: {self.root}"]
        if self.layout:
            extra = (
                f", extra folders: {', '.join(self.extra_folders)}" if self.extra_folders else ""
            )
            suffix = f", mask suffix {self.mask_suffix!r}" if self.mask_suffix else ""
            named = "/".join(self.folders)
            read = f" (read from {', '.join(f + '/' for f in self.folders)})"
            read = read if self.folders and named != self.layout else ""
            lines.append(f"  layout: {self.layout}{read}{suffix}{extra}")
        lines.append(f"  pairs: {self.num_pairs} ({self.num_images} image(s))")
        if self.sizes:
            axes = {k.count("×") for k in self.sizes}
            order = " or ".join(("H×W", "D×H×W")[n - 1] for n in sorted(axes) if n in (1, 2))
            lines.append(f"  image sizes ({order or 'array order'}): {counts(self.sizes)}")
            if self.spacings:
                three = any(k.split(" ")[0].count("×") == 2 for k in self.spacings)
                order = "z, y, x" if three else "y, x"
                lines.append(f"  voxel sizes (array order: {order}): {counts(self.spacings)}")
            lines.append(f"  channels: {counts(self.channels)}")
            lines.append(f"  dtypes: {counts(self.dtypes)}")

        def show(v):
            return f"({v[0]}, {v[1]}, {v[2]})" if isinstance(v, list) else str(v)

        if self.label_values:
            if self.mask_kind == "instances":
                lines.append(
                    f"  mask kind: instances, {self.num_objects} object(s) in {self.num_pairs} "
                    "mask(s)"
                )
            else:
                vals = _shorten([show(v) for v in self.label_values])
                lines.append(
                    f"  label values ({self.mask_kind}): {vals} -> classes 0..{len(self.label_values) - 1}"
                )
                freqs = _shorten(
                    [
                        f"{show(v)}: {f:.2f} %"
                        for v, f in zip(self.label_values, self.class_frequencies)
                    ]
                )
                lines.append(f"  class frequencies: {freqs}")
                if self.ignore_value is not None:
                    lines.append(
                        f"  unlabelled (value {self.ignore_value}): "
                        f"{self.unlabelled_percent or 0:.2f} % of mask pixels, left out of the "
                        "classes and their frequencies"
                    )
        if self.lossy_masks:
            lines.append(
                f"  JPEG masks: {self.lossy_masks}, read as binary (grey ≥ {LOSSY_THRESHOLD} = "
                "foreground): lossy files hold no exact label values"
            )
        if self.expected_labels:
            lines.append(
                f"  expected labels ({self.labels_from}): "
                f"{_shorten([show(v) for v in self.expected_labels])}"
            )
        for c, s in enumerate(self.intensity):
            if s.get("pixels"):
                lines.append(
                    f"  intensity channel {c}: min {num(s['min'])}, max {num(s['max'])}, mean {num(s['mean'])}, "
                    f"std {num(s['std'])}, p1 {num(s['p1'])}, p99 {num(s['p99'])}"
                )
        if self.sizes:
            lines.append(f"  NaN/inf values: {self.nan_count} NaN, {self.inf_count} inf")
        lines.extend(f"note: {n}" for n in self.notes)
        if self.problems:
            lines.append(f"problems ({len(self.problems)}):")
            lines.extend(f"  {p}" for p in self.problems)
        else:
            lines.append("no problems found: OK")
        return "\n".join(lines)


def check_dataset(
    root: PathLike,
    mask_suffix: Optional[str] = None,
    in_channels: Optional[int] = None,
    label_map: Optional[LabelMap] = None,
    mask_kind: str = "auto",
    max_classes: int = 16,
    seed: int = 0,
    ignore_value: Optional[int] = None,
) -> DatasetReport:
    """Check a dataset folder; never raises for a data problem (they go into ``problems``).

    Args:
        root: the dataset folder (see :func:`~unetkit.data.discovery.find_cases` for layouts).
        mask_suffix: suffix of mask stems; ``None`` detects it.
        in_channels: expected image channel count, >= 1 (``None``: images must agree with each other).
        label_map: expected mask values (e.g. ``LabelMap([0, 255])``); ``None`` uses the ``labels`` of
            an nnU-Net ``dataset.json`` when there is one, else checks the masks against each other.
        mask_kind: ``"auto"``, ``"labels"``, ``"colors"`` or ``"instances"``.
        max_classes: with ``"auto"``, more distinct mask values than this is a problem.
        seed: seed of the pixel sampling behind float percentiles.
        ignore_value: the mask value of unlabelled pixels (partial annotations, as training's
            ``--ignore-value``): no class; its share is reported. ``None``: the ``"ignore"``
            label of a dataset.json, if any.

    Returns:
        The :class:`DatasetReport`.

    Example:
        >>> report = check_dataset("data/isbi2012/train")  # doctest: +SKIP
        >>> report.ok, report.num_pairs, report.label_values
        (True, 22, [0, 255])
    """
    if mask_kind not in INFER_KINDS:
        raise ConfigError(f"unknown mask kind {mask_kind!r}; valid: {', '.join(INFER_KINDS)}")
    if ignore_value is not None:
        ignore_value = check_ignore_value(
            ignore_value, "labels" if mask_kind == "auto" else mask_kind
        )
    if in_channels is not None and (
        isinstance(in_channels, bool) or int(in_channels) != in_channels or in_channels < 1
    ):
        raise ConfigError(f"in_channels must be an integer >= 1, got {in_channels!r}")
    found = scan_dataset(root, mask_suffix=mask_suffix, require_masks=True)
    report = DatasetReport(
        root=str(root),
        layout=found.layout,
        folders=[d.name for d in (found.image_dir, found.mask_dir) if d is not None],
        mask_suffix=found.mask_suffix,
        extra_folders=sorted(found.extra_dirs),
        problems=[str(p) for p in found.problems],
    )
    labels_from = "label map" if label_map is not None else ""
    if (
        label_map is None
        and mask_kind in ("auto", "labels")
        and found.dataset_json is not None
        and "labels" in found.dataset_json
    ):
        try:
            label_map = LabelMap.from_nnunet(found.dataset_json["labels"])
            labels_from = "dataset.json"
        except ConfigError as exc:
            report.problems.append(f"{found.root / 'dataset.json'}: {exc}")
    if label_map is not None and ignore_value is None:
        ignore_value = label_map.ignore
    if label_map is not None:
        report.labels_from = labels_from
        report.expected_labels = (
            [list(v) for v in label_map.values]
            if label_map.kind == "colors"
            else list(label_map.values)
        )
    report.num_images = len(found.cases)
    report.num_pairs = sum(c.mask is not None for c in found.cases)
    rng = np.random.default_rng(seed)
    stats: list[_ChannelStats] = []
    sizes, channels, dtypes, spacings = Counter(), Counter(), Counter(), Counter()
    stated: list[tuple] = []  # (image, voxel size, unit) of the cases that state one
    extra_cases: dict[str, tuple] = {}  # extra folder name -> (its path, the cases it has)
    paired: list[str] = []  # the cases with a mask
    grey_as_colour = 0  # images whose colour channels are equal (grey stored as RGB)
    image_channels: dict[Path, int] = {}
    image_dims: dict[Path, int] = {}  # 2 (2D) or 3 (a volume), as training refuses a mix
    mask_values: dict[
        Path, dict[int, int]
    ] = {}  # mask file -> {value (colours packed): pixel count}
    mask_layout: dict[Path, str] = {}
    mask_borders: dict[Path, dict[int, int]] = {}  # mask file -> {value: pixels on a region border}
    # mask file -> 2D labels numbered 0 … n, each one region (labels.numbered_per_mask)
    numbered: dict[Path, bool] = {}
    numbered_volumes: dict[Path, bool] = {}  # the same of 3D masks: a note only
    for case in found.cases:
        if case.case_id in found.incomplete:  # missing channel files: already one problem
            continue
        image = _read_case_image(case.images, report)
        if image is None:
            continue
        arr, first, image_meta = image
        spatial = arr.shape[1:]
        sizes[_size_str(spatial)] += 1
        if getattr(image_meta, "spacing", None) is not None:
            unit = f" {image_meta.spacing_unit}" if image_meta.spacing_unit else ""
            spacings["×".join(f"{float(v):g}" for v in image_meta.spacing) + unit] += 1
            stated.append((first, image_meta.spacing, image_meta.spacing_unit))
        channels[arr.shape[0]] += 1
        grey_as_colour += is_grey_as_colour(arr)
        dtypes[str(arr.dtype)] += 1
        image_channels[first] = arr.shape[0]
        image_dims[first] = len(spatial)
        if arr.dtype.kind == "f":
            nan, inf = int(np.isnan(arr).sum()), int(np.isinf(arr).sum())
            report.nan_count += nan
            report.inf_count += inf
            if nan or inf:
                report.problems.append(f"{first}: {nan} NaN and {inf} inf value(s) in the image")
        while len(stats) < arr.shape[0]:
            stats.append(_ChannelStats())
        for c in range(arr.shape[0]):
            stats[c].add(arr[c], rng)
        if in_channels is not None and arr.shape[0] != in_channels:
            report.problems.append(
                f"{first}: {arr.shape[0]} channel(s), expected --in-channels {in_channels}"
            )
        for name, path in sorted(case.extra.items()):
            _check_extra(path, spatial, name, report)
            extra_cases.setdefault(name, (Path(path).parent, set()))[1].add(case.case_id)
        if case.mask is not None:
            paired.append(case.case_id)
            _check_mask(
                case.mask,
                spatial,
                first,
                mask_kind,
                report,
                mask_values,
                mask_layout,
                mask_borders,
                (numbered, numbered_volumes),
                image_meta,
            )
    odd = odd_voxel_size(stated)
    if odd:
        report.problems.append(f"{odd[0]}: {odd[1]}")
    read = sum(channels.values())
    if stated and len(stated) < read:  # as the plan decides (planning.spacing)
        with_size = {str(p) for p, _, _ in stated}
        silent = sorted(Path(p).name for p in image_channels if str(p) not in with_size)
        report.notes.append(
            f"only {len(stated)} of {read} images state a voxel size ({_shorten(silent)} state "
            "none): the plan trains every image as stored, without resampling; give every file "
            "its calibration to train at one voxel size"
        )
    for name, (folder, has) in sorted(extra_cases.items()):
        lacking = [c for c in paired if c not in has]
        if lacking and is_dir_alias(name, INSTANCE_DIR_NAMES):
            report.problems.append(
                f"{folder}: no instance file for {len(lacking)} of {len(paired)} "
                f"case(s) ({_shorten(lacking)}): the plan separates touching objects only when "
                "every case has ids; add the missing files or remove the folder"
            )
    report.sizes = dict(sizes.most_common())
    report.spacings = dict(spacings.most_common())
    report.channels = dict(channels.most_common())
    if grey_as_colour and grey_as_colour == sum(channels.values()):
        report.notes.append(
            "every image is grey stored as RGB(A) (its colour channels are equal): a planned "
            "model of them also takes grey images"
        )
    report.dtypes = dict(dtypes.most_common())
    report.intensity = [s.summary() for s in stats]
    dims = Counter(image_dims.values())
    if len(dims) > 1:
        usual = dims.most_common(1)[0][0]
        for path, d in image_dims.items():
            if d != usual:
                report.problems.append(
                    f"{path}: a {d}D image, while {dims[usual]} other image(s) are {usual}D: "
                    f"2D and 3D images are mixed; keep the {usual}D ones"
                )
    if in_channels is None and len(channels) > 1:
        usual = channels.most_common(1)[0][0]
        for path, c in image_channels.items():
            if c != usual:
                report.problems.append(
                    f"{path}: {c} channel(s), while {channels[usual]} other image(s) have {usual}"
                )
    if ignore_value is not None:  # unlabelled pixels: no class, their share reported
        report.ignore_value = ignore_value
        unlabelled = total = 0
        for path, values in mask_values.items():
            if mask_layout.get(path) != "labels":
                continue
            total += sum(values.values())
            unlabelled += values.pop(ignore_value, 0)
            mask_borders.get(path, {}).pop(ignore_value, None)
        report.unlabelled_percent = 100.0 * unlabelled / max(total, 1)
        if not unlabelled and total:
            report.notes.append(
                f"no mask holds the ignore value {ignore_value}: every pixel is labelled; check "
                "the value if some were meant to be unlabelled"
            )
    _check_labels(
        report,
        mask_values,
        mask_layout,
        mask_borders,
        numbered,
        numbered_volumes,
        label_map,
        labels_from,
        mask_kind,
        max_classes,
        found.mask_dir,
        ignored=ignore_value is not None,
    )
    return report


def _read_case_image(paths: list, report: DatasetReport) -> Optional[tuple]:
    """The case's channel files read and stacked ``(C, *spatial)``, with the first file's path
    and meta; problems recorded, ``None`` on failure."""
    arrays, first_meta = [], None
    for path in paths:
        try:
            arr, meta = read_image(path)
            first_meta = first_meta if first_meta is not None else meta
        except DataError as exc:
            report.problems.append(str(exc))
            return None
        if arrays and arr.shape[1:] != arrays[0].shape[1:]:
            report.problems.append(
                f"{path}: channel file size {_size_str(arr.shape[1:])} differs from "
                f"{Path(paths[0]).name} ({_size_str(arrays[0].shape[1:])})"
            )
            return None
        problem = channel_geometry_problem([paths[0], path], [first_meta, meta])
        if problem:  # the size matches: the header is what differs
            report.problems.append(f"{problem[1]}: {problem[0]}")
            return None
        arrays.append(arr)
    arr = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
    return arr, Path(paths[0]), first_meta


def _background_notes(files: dict, background, report: DatasetReport) -> None:
    """Notes on masks of background only (negative controls, or a mask exported empty) and masks
    without any background (an inverted or wrong file): both train, neither is an error, and both
    are worth a look before a long run."""
    empty = sorted(p for p, v in files.items() if set(v) == {background})
    full = sorted(p for p, v in files.items() if background not in v)
    if empty:
        names = _shorten([Path(p).name for p in empty])
        report.notes.append(
            f"{len(empty)} of {len(files)} mask(s) hold background ({background}) only ({names}): "
            "images without objects teach the model that empty fields hold nothing; if they "
            "should hold objects, check how the masks were exported"
        )
    if full:
        names = _shorten([Path(p).name for p in full])
        report.notes.append(
            f"{len(full)} of {len(files)} mask(s) hold no background ({background}) at all "
            f"({names}): every pixel is foreground; if the mask is inverted or another image's, "
            "fix it, since the model learns its whole field as the object"
        )


def _check_extra(path: Path, spatial: tuple, name: str, report: DatasetReport) -> None:
    try:
        extra, _ = read_image(path)
    except DataError as exc:
        report.problems.append(str(exc))
        return
    if extra.shape[1:] != spatial:
        report.problems.append(
            f"{path}: size {_size_str(extra.shape[1:])} differs from its image "
            f"({_size_str(spatial)}) ({name}/)"
        )


def _value_counts(plane: np.ndarray) -> dict[int, int]:
    """``{value: pixel count}`` of an integer array."""
    if plane.dtype in (np.uint8, np.uint16, np.bool_):
        counts = np.bincount(plane.ravel())
        nz = np.flatnonzero(counts)
        return dict(zip(nz.tolist(), counts[nz].tolist()))
    u, n = np.unique(plane, return_counts=True)
    return dict(zip(u.tolist(), n.tolist()))


def _check_mask(
    path: Path,
    spatial: tuple,
    image_path: Path,
    mask_kind: str,
    report: DatasetReport,
    mask_values: dict,
    mask_layout: dict,
    mask_borders: dict,
    numbered: tuple,
    image_meta=None,
) -> None:
    try:
        mask, mask_meta = read_mask_source(path)
    except DataError as exc:
        report.problems.append(str(exc))
        return
    problem = geometry_problem(image_meta, mask_meta, image_path.name)
    if problem:  # as training refuses it (reading.read_case_mask)
        report.problems.append(f"{path}: {problem}")
        return
    if mask.shape[1:] != spatial:
        hint = (
            pages_as_channels_hint(spatial, image_path)
            if tuple(spatial[1:]) == mask.shape[1:]
            else slices_as_channels_hint(mask.shape[1], image_path)  # the image's slices as
            if mask.shape[2:] == tuple(spatial)  # its channels: the mask has them as z
            else channels_last_hint(spatial, image_path)  # (H, W, C) read as H slices
            if tuple(spatial[:2]) == mask.shape[1:]
            else ""
        )
        report.problems.append(
            f"{path}: image/mask size mismatch: mask {_size_str(mask.shape[1:])}, image "
            f"{_size_str(spatial)} ({image_path.name}){hint}"
        )
        return
    if mask_kind == "auto" and is_lossy_mask(path):  # read as infer_label_map reads JPEG masks
        try:
            grey = lossy_mask_grey(mask, path)
        except DataError as exc:
            report.problems.append(str(exc))
            return
        report.lossy_masks += 1
        mask_values[path] = _value_counts(
            np.where(grey >= LOSSY_THRESHOLD, 255, 0).astype(np.uint8)
        )
        mask_layout[path] = "labels"
        return
    if is_object_source(path):  # one file per object: instance ids by construction
        if mask_kind in ("labels", "colors"):
            report.problems.append(
                f"{path}: a per-object mask folder holds instances, not {mask_kind}: use "
                "--mask-kind auto or instances"
            )
            return
        mask_values[path] = _value_counts(mask[0])
        mask_layout[path] = "instances"
        return
    if mask.shape[0] == 3 and mask_kind != "labels":
        if mask.dtype != np.uint8:
            report.problems.append(f"{path}: an RGB colour mask must be uint8, got {mask.dtype}")
            return
        if mask_kind == "instances":  # one colour per object (labels.instance_ids)
            plane, layout = instance_ids(mask), "instances"
        else:
            plane, layout = _pack(mask), "colors"
    elif mask.shape[0] == 1 and mask_kind == "colors":  # grey v is the colour (v, v, v)
        plane, layout = mask[0], "labels"
    elif mask.shape[0] == 1:
        plane, layout = mask[0], ("instances" if mask_kind == "instances" else "labels")
    else:
        want = {"colors": "3 (RGB colours)", "labels": "1 (labels)"}.get(mask_kind, "1 or 3")
        hint = slices_as_channels_hint(mask.shape[0], path)
        report.problems.append(
            f"{path}: mask has {mask.shape[0]} channel(s), expected {want}{hint}"
        )
        return
    if plane.dtype.kind == "f":
        problem = non_integer_problem(plane)
        if problem:
            report.problems.append(f"{path}: {problem}")
            return
        plane = plane.astype(np.int64)
    mask_values[path] = _value_counts(plane)
    if mask_kind == "auto" and len(mask_values[path]) > INSTANCE_GUESS_MIN_IDS:
        # instance ids, or one colour per object: infer_label_map reads the whole set as instances
        ids = instance_ids(mask) if layout == "colors" else plane
        if looks_like_instances(ids):
            layout = "instances"
            mask_values[path] = _value_counts(ids)
    mask_layout[path] = layout
    if layout != "instances":
        mask_borders[path] = _value_counts(plane[border_pixels(plane)])
    if layout == "labels" and mask_kind == "auto":
        flag = numbered_regions(plane, set(mask_values[path]))
        numbered[0 if plane.ndim == 2 else 1][path] = flag  # (2D, volumes)


def _grey_as_colours(mask_values: dict, mask_layout: dict, mask_borders: dict) -> None:
    """Grey masks of values 0–255 beside colour ones are grey colours ``(v, v, v)``
    (:func:`~unetkit.data.labels.infer_label_map`); other grey masks stay labels (and are named)."""

    def grey(counts: dict) -> dict:
        return {(v << 16) | (v << 8) | v: n for v, n in counts.items()}

    for path, layout in mask_layout.items():
        if layout == "labels" and all(0 <= v <= 255 for v in mask_values[path]):
            mask_layout[path] = "colors"
            mask_values[path] = grey(mask_values[path])
            if path in mask_borders:
                mask_borders[path] = grey(mask_borders[path])


def _check_labels(
    report: DatasetReport,
    mask_values: dict,
    mask_layout: dict,
    mask_borders: dict,
    numbered: dict,
    numbered_volumes: dict,
    label_map: Optional[LabelMap],
    labels_from: str,
    mask_kind: str,
    max_classes: int,
    mask_dir: Optional[Path],
    ignored: bool = False,
) -> None:
    """The label problems and notes of the masks' values (``ignored``: an ignore value was given
    and taken out of them)."""
    if not mask_values:
        return
    few_ids = (  # instance ids of a few objects per image (labels.numbered_per_mask)
        mask_kind == "auto"
        and label_map is None  # the expected labels (dataset.json) are classes, as training reads
        and len(numbered) == len(mask_layout)
        and numbered_per_mask([set(mask_values[p]) for p in numbered], list(numbered.values()))
    )
    guess = mask_kind == "auto" and label_map is None  # as infer_label_map reads them
    counts = {max(mask_values[p]) for p in numbered} if numbered else set()
    if (
        guess
        and not few_ids
        and len(numbered) == len(mask_layout)
        and all(numbered.values())
        and len(counts) == 1
        and min(counts) >= FEW_IDS_MIN
    ):  # ids numbered 1 … n in every mask, the same n: classes or objects, the data cannot say
        n = min(counts)
        report.notes.append(
            f"every mask is numbered 0 … {n}, each number one connected region: read as {n} "
            "classes; if they are object ids, pass --mask-kind instances"
        )
    if few_ids:  # the other reading of the same doubt: said, as plan says it
        tops = [max(mask_values[p]) for p in numbered]
        report.notes.append(
            f"every mask is numbered 0 … n (n from {min(tops)} to {max(tops)}), each number one "
            "connected region: read as object ids; if the numbers are classes, pass --mask-kind "
            "labels"
        )
    if guess and numbered_volumes and len(numbered_volumes) == len(mask_layout):
        note = numbered_volumes_note(
            [set(mask_values[p]) for p in numbered_volumes], list(numbered_volumes.values())
        )
        if note:  # volumes are not switched to instances: organ maps look alike
            report.notes.append(note)
    if guess and ("instances" in mask_layout.values() or few_ids):
        for path, lay in mask_layout.items():
            if lay in ("labels", "colors"):
                mask_layout[path] = "instances"
    layouts = Counter(mask_layout.values())
    if "colors" in layouts or mask_kind == "colors":
        _grey_as_colours(mask_values, mask_layout, mask_borders)  # as infer_label_map reads them
        layouts = Counter(mask_layout.values())
    kind = layouts.most_common(1)[0][0]
    report.mask_kind = kind
    if len(layouts) > 1:
        for path, lay in mask_layout.items():
            if lay != kind:
                report.problems.append(
                    f"{path}: a {lay} mask among {layouts[kind]} {kind} masks (1 vs 3 channels); "
                    "store every mask the same way"
                )
    files = {p: v for p, v in mask_values.items() if mask_layout[p] == kind}
    total = Counter()
    for v in files.values():
        total.update(v)
    values = sorted(total)
    pixels = sum(total.values())
    report.label_values = [list(_unpack(v)) for v in values] if kind == "colors" else values
    report.class_frequencies = [100.0 * total[v] / pixels for v in values]

    def show(vs):
        return _shorten([str(_unpack(v)) if kind == "colors" else str(v) for v in vs])

    if kind == "instances":
        report.num_objects = sum(len(v) - (0 in v) for v in files.values())
        return
    if kind == "labels" and len(values) > 1:  # background: 0, else the lowest value
        _background_notes(files, 0 if 0 in values else values[0], report)
    negative = [v for v in values if v < 0] if kind == "labels" else []
    if len(negative) > 1:  # often "unlabelled" or padding: --ignore-value takes one value
        holding = sum(any(x < 0 for x in v) for v in files.values())
        report.notes.append(
            f"mask value(s) {show(negative)} in {holding} mask(s) are read as classes of their own "
            f"(0 becomes class {len(negative)}); if they mark unlabelled or padded pixels, give "
            "them one value and pass it as --ignore-value"
        )
    if kind == "labels" and not ignored and pixels:  # a forgotten --ignore-value (one value)
        forgotten = forgotten_ignore_value({v: total[v] / pixels for v in values})
        if forgotten:
            report.notes.append(forgotten.note)
    if mask_kind == "auto" and kind == "labels" and label_map is None:  # as infer_label_map does
        mixed = two_codings({p: set(v) for p, v in files.items()})
        if mixed is not None:
            report.problems.append(f"{mixed[0]}: {mixed[1]}")
    if report.lossy_masks:  # a binary set (labels._lossy_binary_map): lossless masks hold 0/255
        for path, v in files.items():
            if not is_lossy_mask(path) and not set(v) <= {0, 255}:
                report.problems.append(
                    f"{path}: mask values {show(sorted(v))} beside JPEG masks, which are read as "
                    "binary 0/255: store every mask the same way"
                )
    if label_map is not None:
        if (label_map.kind == "colors") != (kind == "colors"):
            where = mask_dir if mask_dir is not None else report.root
            report.problems.append(
                f"{where}: the masks are {kind} ({'3' if kind == 'colors' else '1'} channel(s)) "
                f"but the expected labels ({labels_from}) are {label_map.kind}"
            )
            return
        if label_map.kind == "colors":
            allowed = {(r << 16) | (g << 8) | b for r, g, b in label_map.values}
        else:
            allowed = set(label_map.values)
        for path, v in files.items():
            bad = sorted(set(v) - allowed)
            if bad:
                where = (
                    "dataset.json 'labels'" if labels_from == "dataset.json" else "the label map"
                )
                report.problems.append(
                    f"{path}: unexpected label values {show(bad)} (not in {where})"
                )
        return
    where = mask_dir if mask_dir is not None else report.root
    if mask_kind == "auto" and len(values) > max_classes:
        hint = (
            "instance masks? use --mask-kind instances; masks resized with interpolation or drawn "
            "with smoothed edges? resize them with nearest-neighbour; lossy (JPEG) masks or images "
            "in masks/? masks must be lossless label images"
        )
        many = [
            p for p, v in files.items() if len(v) > max_classes
        ]  # the culprits, when single files are
        for path in many:
            report.problems.append(
                f"{path}: {len(files[path])} distinct mask values in this mask (more than "
                f"max_classes={max_classes}): {hint}"
            )
        if not many:
            report.problems.append(
                f"{where}: {len(values)} distinct mask values over all masks (more than "
                f"max_classes={max_classes}): {hint}"
            )
        return
    if len(values) < 2:
        report.problems.append(
            f"{where}: every mask holds the single value {show(values)}; nothing to learn"
        )
        return
    if len(files) < 2:
        return
    seen_in = Counter()
    for v in files.values():
        seen_in.update(set(v))
    for path, v in files.items():
        lone = sorted(x for x in v if seen_in[x] == 1)
        if not lone:
            continue
        rest = sorted(
            x for x in total if seen_in[x] > 1 or x not in v
        )  # the values the other masks use
        pixels_here = sum(v.values())
        borders = mask_borders.get(path, {})
        tiny = [x for x in lone if v[x] < _TINY * pixels_here]
        blended = [
            x
            for x in lone
            if x not in tiny and _between(x, rest, kind) and borders.get(x, 0) >= _BORDER * v[x]
        ]
        if not tiny and not blended:
            continue
        why = (
            "covering under 0.1 % of this mask"
            if not blended
            else "on region borders between the other values, as anti-aliasing leaves them"
            if not tiny
            else "each covering under 0.1 % of this mask or on region borders (anti-aliasing)"
        )
        report.problems.append(
            f"{path}: unexpected label values {show(sorted(tiny + blended))}: in no other mask "
            f"and {why} (the others use {show(rest)}; --labels states the classes)"
        )


def _between(value: int, others: list, kind: str) -> bool:
    """``value`` lies strictly between the smallest and largest of ``others`` (colours: within their
    range in every channel, as a blend of two colours does)."""
    if len(others) < 2:
        return False
    if kind == "colors":
        rgb = np.array([_unpack(o) for o in others])
        v = np.array(_unpack(value))
        return bool(np.all(rgb.min(axis=0) <= v) and np.all(v <= rgb.max(axis=0)))
    return min(others) < value < max(others)

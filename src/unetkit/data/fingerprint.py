"""The dataset fingerprint: what a planner needs to know about a dataset before choosing a network,
a patch, a batch, a precision and a schedule (nnU-Net's "dataset fingerprint").

:func:`fingerprint_dataset` reads the training cases once, the way training reads them (the same
discovery, the same label map: ``label_map``, else an nnU-Net ``dataset.json``'s ``labels``, else
inferred from the masks), and returns a :class:`Fingerprint`: sizes and spacing, channels (and
whether a colour file only holds grey), foreground intensities, class fractions, object counts and
sizes, and how many objects touch another.

Definitions:

* **Foreground** is every pixel whose class index (after the label map) is > 0.
* **Intensity** per channel over the foreground pixels of all cases read: mean and standard
  deviation are exact; the 0.5 and 99.5 percentiles are exact for 8/16-bit integer images (from a
  histogram) and otherwise taken from up to 50,000 foreground pixels per case and channel, drawn
  with a generator seeded by ``seed`` (the statistics of :mod:`unetkit.data.checks`, percentiles
  by the inverted CDF).
* **Objects** of a foreground class are its connected components with face connectivity
  (4-neighbours in 2D, 6 in 3D, as :func:`~unetkit.data.weightmap.instance_labels`), so objects
  that meet only at a corner or are separated by a 1-px background line stay separate; with
  instance ids (an instance mask, ``mask_kind="instances"``, or an ``instances/`` folder beside the
  class masks, see :func:`~unetkit.data.reading.read_case_mask`) they are the instance ids of the
  class's pixels, so touching objects that a binary mask merges count one by one. The **diameter** of an
  object is that of the disc (2D) or ball (3D) with its pixel count, in pixels (how thick it is);
  its **extent** is the longest side of its bounding box (how far it reaches: long for vessels);
  its **width** is its thickness, the diameter of the largest disc that fits inside it
  (:func:`~unetkit.data.objects.object_thickness`: a vessel tree is wide in diameter but a few
  px thick); its percentiles weigh each object by its pixels (the p10 width: 10 % of the
  foreground lies in objects this thin or thinner; specks do not count for much).
* **Touching**: an object touches when another object *of the same class* lies within 2 px of it
  (Chebyshev distance, :func:`~unetkit.data.objects.touching_objects`): across a 1-px background
  line, as the cells of the U-Net paper; in a volume of known voxel size, the same length on
  every axis (:func:`~unetkit.data.objects.gaps_per_axis`: at least one slice). Many touching
  objects call for the border weight map.

With more than ``max_cases`` cases a seeded random subset is read (:attr:`Fingerprint.cases_found`
says how many there were); the label map is then inferred from that subset's masks.

Example:
    >>> fp = fingerprint_dataset("data/monuseg/train")  # doctest: +SKIP
    >>> print("\\n".join(fp.describe()))  # doctest: +SKIP
    16 cases, 2D, sizes median 1000×1000 (min 1000×1000 … max 1000×1000 per axis) (H×W)
    ...
"""

from __future__ import annotations

import time
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
from scipy import ndimage

from ..errors import ConfigError, DataError
from ..io.orientation import reorient
from ..utils import jsonable
from .checks import _ChannelStats
from .discovery import scan_dataset
from .labels import INFER_KINDS, LabelMap, dataset_label_map, forgotten_ignore_value
from .objects import (
    equivalent_diameter,
    gaps_per_axis,
    object_extents,
    object_sizes,
    object_thickness,
    touching_objects,
)
from .reading import (
    odd_voxel_size,
    read_case_image,
    read_case_mask,
    require_finite,
    same_layout,
)

PathLike = Union[str, Path]
#: Objects with another object of their class within this many pixels touch it.
TOUCH_GAP = 2


@dataclass
class Fingerprint:
    """What :func:`fingerprint_dataset` measured (see the module docstring for the definitions).

    Attributes:
        cases: training cases read (each with its mask).
        spatial_dims: 2 or 3.
        sizes: ``{"median": [...], "min": [...], "p10": [...], "max": [...]}``, per spatial axis in
            array order (``(H, W)`` or ``(D, H, W)``); medians are floats, the others ints
            (``p10``: the 10th percentile over the cases, per axis: along each axis some case's size).
        spacing: median physical pixel size per spatial axis (array order) over the files that
            state one, else ``None``; :attr:`spacing_unit` its unit when the files say.
        channels: image channels as read (after the reader drops an alpha channel).
        grey_as_colour: every image has several channels and they are identical (grey stored as
            RGB): effectively 1 channel (:attr:`effective_channels`).
        intensity: per channel ``{"mean", "std", "p0_5", "p99_5", "pixels"}`` over the foreground
            (values ``None`` when there is no foreground).
        label_values: the user's mask values in label-map order (class ``i`` = ``label_values[i]``;
            ``[r, g, b]`` lists for colour masks; ``[0, 1]`` for instance masks).
        class_fraction: pixel fraction of each class index over all cases read (sums to 1).
        objects: per foreground class index (``"1"``, ``"2"`` …) ``{"per_case_median": float,
            "count": int, "diameter_px": {"median", "p10", "p90"}, "extent_px": {…},
            "touching_fraction": float}`` (``None`` values without objects).
        touching_fraction: share of all foreground objects that touch another of their class
            (0.0 without objects).
        seconds: the time :func:`fingerprint_dataset` took.
        cases_found: cases in the training folder (more than ``cases`` when a subset was read).
        mask_kind: the label map's kind: ``"labels"``, ``"colors"`` or ``"instances"``.
        ignore_value, unlabelled_fraction: the mask value of unlabelled pixels
            (:attr:`~unetkit.data.labels.LabelMap.ignore`, or ``None``) and their share of all
            pixels read; :attr:`class_fraction` is of the labelled pixels, and the objects are
            those wholly bordered by labelled pixels (:func:`whole_objects`).
        instance_ids: the objects were counted from instance ids (an instance mask or an
            ``instances/`` folder) in every case read, not from connected components: touching
            objects are known one by one (what carving separation gaps needs).
        cases_with_ids: how many of the cases read had instance ids (fewer than :attr:`cases`
            with an ``instances/`` folder that lacks some files: then no :attr:`instance_ids`).
        hot_pixel_cases: the images (file names) in which a few pixels lie far outside the rest
            (:func:`has_hot_pixels`): a per-image z-score would squeeze their signal to nothing.
        spacing_unit: unit of :attr:`spacing` (``"um"``, ``"mm"`` …) or ``None``.
        spacing_spread: how the files' spacings spread per axis, ``{"min": [...], "p10": [...],
            "max": [...], "files": n, "units": [...], "extent": {"median", "min", "p10", "max"}}``
            (``files``: how many of the cases read state a spacing; ``units``: the distinct units
            the files name; ``extent``: their physical sizes per axis, size × spacing; ``None``
            when no file states a spacing): what the target-spacing rule
            (:mod:`unetkit.planning.spacing`) reads.
    """

    cases: int
    spatial_dims: int
    sizes: dict
    spacing: Optional[list]
    channels: int
    grey_as_colour: bool
    intensity: list
    label_values: list
    class_fraction: list
    objects: dict
    touching_fraction: float
    seconds: float
    cases_found: int = 0
    mask_kind: str = "labels"
    spacing_unit: Optional[str] = None
    spacing_spread: Optional[dict] = None
    instance_ids: bool = False
    cases_with_ids: int = 0
    hot_pixel_cases: list = field(default_factory=list)
    ignore_value: Optional[int] = None
    unlabelled_fraction: float = 0.0
    #: with partial masks, the median longest side of the labelled regions (px): no object larger
    #: than them lies whole inside one, so objects near this size are sized too small
    labelled_extent: Optional[float] = None

    @property
    def effective_channels(self) -> int:
        """1 for grey stored as colour, else :attr:`channels`."""
        return 1 if self.grey_as_colour else self.channels

    @property
    def sampled(self) -> bool:
        """A seeded subset of the cases was read."""
        return self.cases_found > self.cases

    def to_dict(self) -> dict:
        """JSON-ready (plain lists, floats, ``None`` for NaN); :meth:`from_dict` inverts it."""
        return jsonable({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def from_dict(cls, data: dict) -> Fingerprint:
        if not isinstance(data, dict):
            raise ConfigError(f"a fingerprint must be a dict, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        missing = [
            f.name
            for f in fields(cls)
            if f.default is MISSING and f.default_factory is MISSING and f.name not in data
        ]
        if missing:
            raise ConfigError(f"fingerprint dict lacks {', '.join(missing)}")
        values = {n: data[n] for n in names if n in data}
        if values.get("touching_fraction") is None:
            values["touching_fraction"] = 0.0
        return cls(**values)

    def describe(self) -> list[str]:
        """A few readable lines (sizes, channels, intensity, foreground classes and objects)."""
        axes = "H×W" if self.spatial_dims == 2 else "D×H×W"

        def size(v):
            return "×".join(f"{x:g}" for x in v)

        sample = f" (a seeded sample of {self.cases_found})" if self.sampled else ""
        line = (
            f"{self.cases} cases{sample}, {self.spatial_dims}D, sizes median {size(self.sizes['median'])} "
            f"(min {size(self.sizes['min'])} … max {size(self.sizes['max'])} per axis) ({axes})"
        )
        if self.spacing is not None:
            line += f", spacing {size(self.spacing)}" + (
                f" {self.spacing_unit}" if self.spacing_unit else ""
            )
            spread = self.spacing_spread or {}
            if spread.get("min") and spread["min"] != spread["max"]:
                line += f" (min {size(spread['min'])} … max {size(spread['max'])})"
            if spread.get("files", self.cases) < self.cases:
                line += f" stated by {spread['files']} of {self.cases} files"

        lines = [line]
        if self.grey_as_colour:
            lines.append(f"channels: {self.channels} stored, grey (identical channels) → 1")
        else:
            lines.append(f"channels: {self.channels}")
        for c, s in enumerate(self.intensity[: self.effective_channels]):
            if s.get("mean") is not None:
                lines.append(
                    f"foreground intensity{'' if self.effective_channels == 1 else f' channel {c}'}: "
                    f"mean {s['mean']:.4g}, std {s['std']:.4g}, p0.5 {s['p0_5']:.4g}, "
                    f"p99.5 {s['p99_5']:.4g}"
                )
        if self.hot_pixel_cases:
            shown = ", ".join(self.hot_pixel_cases[:3])
            lines.append(
                f"hot pixels: {len(self.hot_pixel_cases)} image(s) hold a few pixels far outside "
                f"the rest ({shown}{' …' if len(self.hot_pixel_cases) > 3 else ''})"
            )
        if self.mask_kind == "instances":  # guessed with no flag, often: say how to undo it
            lines.append(
                "masks: instance ids, each non-zero value one object (--mask-kind labels reads "
                "the values as classes)"
            )
        if self.ignore_value is not None:
            lines.append(
                f"unlabelled: value {self.ignore_value}, {100 * self.unlabelled_fraction:.1f} % of "
                "pixels (left out: the class shares below are of the labelled pixels, the objects "
                "those that touch no unlabelled pixel)"
                + (
                    f"; labelled regions {self.labelled_extent:.0f} px across (median)"
                    if self.labelled_extent
                    else ""
                )
            )
        if self.ignore_value is None and self.mask_kind == "labels":
            forgotten = forgotten_ignore_value(
                dict(zip(self.label_values, self.class_fraction)), where="the mask pixels"
            )
            if forgotten:
                lines.append(f"note: {forgotten.note}")
        for k in range(1, len(self.label_values)):
            obj = self.objects.get(str(k), {})
            value = self.label_values[k]
            shown = "" if self.mask_kind == "instances" else f" ({_show(value)})"
            line = f"foreground: class {k}{shown} {100 * self.class_fraction[k]:.1f} % of pixels"
            if obj.get("count"):
                d = obj["diameter_px"]
                unit = "image" if self.spatial_dims == 2 else "volume"
                line += (
                    f"; objects: median {obj['per_case_median']:g} per {unit}, diameter median "
                    f"{d['median']:.0f} px (p10 {d['p10']:.0f}, p90 {d['p90']:.0f}), extent p90 "
                    f"{obj['extent_px']['p90']:.0f} px, width median "
                    f"{(obj.get('width_px') or {}).get('median') or 0:.0f} px; "
                    f"{100 * obj['touching_fraction']:.0f} % touch another"
                    + (
                        " (instance ids)"
                        if self.instance_ids and self.mask_kind != "instances"
                        else ""
                    )
                )
            else:
                line += "; no objects"
            lines.append(line)
        lines.append(f"measured in {self.seconds:.1f} s")
        return lines


def whole_objects(labels: np.ndarray, unlabelled: np.ndarray) -> np.ndarray:
    """``labels`` (object ids) without the objects that touch an unlabelled pixel (face
    neighbours): where annotation stops, an object may go on, so only objects wholly bordered by
    labelled pixels say how large this data's objects are (strokes inside objects give none,
    and the plan sizes its patch by the images then)."""
    cut = np.unique(labels[ndimage.binary_dilation(unlabelled) & (labels > 0)])
    return np.where(np.isin(labels, cut), 0, labels) if cut.size else labels


#: a pixel is extreme this many times the spread of the image's 0.1 … 99.9th percentiles beyond
#: them; an image has hot pixels where a few such pixels stand alone (a saturated detector pixel,
#: a stray 1e6 in float data): a per-image z-score divides the signal by the std they make
HOT_PIXEL_SPREADS = 20.0
#: at most this share of an image's pixels may be extreme (more is a bright structure)
HOT_PIXEL_MAX_SHARE = 1e-3
#: the plan sets per-image percentiles where at least this share of the images read have them
HOT_PIXEL_MIN_IMAGES = 0.1


def has_hot_pixels(image: np.ndarray, max_samples: int = 200_000) -> bool:
    """Whether a channel of ``(C, *spatial)`` ``image`` holds a few isolated extreme pixels:
    beyond its 0.1/99.9th percentiles (of a strided sample) by :data:`HOT_PIXEL_SPREADS` times
    their spread, at most :data:`HOT_PIXEL_MAX_SHARE` of the pixels, and mostly without an extreme
    face neighbour. Bright spots of several pixels (sparse fluorescence signal) are objects, not
    hot pixels: per-image percentiles would clip them to the noise's top; an image of one value
    nearly everywhere (a label-like or blank image) has no spread to judge by."""
    for channel in np.asarray(image):
        flat = channel.ravel()
        sample = flat[:: max(1, flat.size // max_samples)].astype(np.float64)
        lo, hi = np.percentile(sample, [0.1, 99.9])
        spread = hi - lo
        if not np.isfinite(spread) or spread <= 0:
            continue
        extreme = (channel > hi + HOT_PIXEL_SPREADS * spread) | (
            channel < lo - HOT_PIXEL_SPREADS * spread
        )
        count = int(np.count_nonzero(extreme))
        if count == 0 or count > HOT_PIXEL_MAX_SHARE * channel.size:
            continue
        where = np.nonzero(extreme)
        picks = range(0, count, max(1, count // 2000))  # at most ~2000 looked at
        alone = 0
        for k in picks:
            point = tuple(int(w[k]) for w in where)
            neighbours = 0
            for axis in range(channel.ndim):
                for step in (-1, 1):
                    q = list(point)
                    q[axis] += step
                    if 0 <= q[axis] < channel.shape[axis]:
                        neighbours += bool(extreme[tuple(q)])
            alone += neighbours == 0
        if alone * 2 >= len(picks):
            return True
    return False


def _show(value) -> str:
    return (
        f"({value[0]}, {value[1]}, {value[2]})" if isinstance(value, (list, tuple)) else str(value)
    )


def _weighted_percentiles(values: np.ndarray, weights: np.ndarray, qs) -> list[float]:
    """Percentiles of ``values`` where each counts ``weights`` times (inverted CDF)."""
    order = np.argsort(values, kind="stable")
    cdf = np.cumsum(weights[order], dtype=np.float64)
    picks = np.searchsorted(cdf, np.asarray(qs, np.float64) / 100 * cdf[-1], side="left")
    return [float(values[order][min(i, len(order) - 1)]) for i in picks]


class _ClassObjects:
    """Object counts, sizes and touching counts of one foreground class over the cases."""

    def __init__(self):
        self.per_case: list[int] = []
        self.sizes: list[np.ndarray] = []
        self.extents: list[np.ndarray] = []
        self.widths: list[np.ndarray] = []
        self.touching = 0

    def add(self, labels: Optional[np.ndarray], spacing=None) -> None:
        """One case's objects of the class (``None``: absent); ``spacing``: its voxel size, so
        that touching is measured alike on every axis (:func:`~unetkit.data.objects.gaps_per_axis`)."""
        if labels is None:  # the class is absent from this case
            self.per_case.append(0)
            return
        sizes = object_sizes(labels)
        self.per_case.append(int(sizes.size))
        self.sizes.append(sizes)
        self.extents.append(object_extents(labels))
        self.widths.append(object_thickness(labels))
        if sizes.size > 1:
            gaps = gaps_per_axis(TOUCH_GAP, spacing, labels.ndim)
            self.touching += int(touching_objects(labels, gaps).size)

    def summary(self, spatial_dims: int) -> dict:
        sizes = np.concatenate(self.sizes) if self.sizes else np.zeros(0, np.int64)
        count = int(sizes.size)
        if count:
            d = equivalent_diameter(sizes, spatial_dims)
            p10, med, p90 = (float(v) for v in np.percentile(d, [10, 50, 90]))
            diameter = {"median": med, "p10": p10, "p90": p90}
            e10, emed, e90 = (
                float(v) for v in np.percentile(np.concatenate(self.extents), [10, 50, 90])
            )
            extent = {"median": emed, "p10": e10, "p90": e90}
            width = dict(
                zip(
                    ("p10", "median", "p90"),
                    _weighted_percentiles(np.concatenate(self.widths), sizes, (10, 50, 90)),
                )
            )
        else:
            diameter = {"median": None, "p10": None, "p90": None}
            extent, width = dict(diameter), dict(diameter)
        return {
            "per_case_median": float(np.median(self.per_case)) if self.per_case else 0.0,
            "count": count,
            "diameter_px": diameter,
            "extent_px": extent,
            "width_px": width,
            "touching_fraction": self.touching / count if count else 0.0,
        }


def fingerprint_dataset(
    train_dir: PathLike,
    val_dir: Optional[PathLike] = None,
    *,
    mask_suffix: Optional[str] = None,
    mask_kind: str = "auto",
    label_map: Optional[LabelMap] = None,
    max_cases: int = 200,
    seed: int = 0,
    progress: Optional[Callable[[int, int], None]] = None,
    orientation: Optional[str] = None,
    ignore_value: Optional[int] = None,
) -> Fingerprint:
    """Measure a training folder (see the module docstring for what and how).

    Args:
        train_dir: dataset folder (``images/`` + ``masks/`` or nnU-Net raw), as for training.
        val_dir: a fixed validation folder; as in training, its masks count when the label map is
            inferred (its cases are not measured).
        mask_suffix: suffix of mask stems; ``None`` detects it.
        mask_kind: ``"auto"``, ``"labels"``, ``"colors"`` or ``"instances"``.
        label_map: the label map to use instead of finding it.
        max_cases: read at most this many cases (a seeded random subset of a larger folder).
        seed: seed of the subset and of the pixel sampling.
        progress: called as ``progress(done, total)`` after each case read.
        orientation: measure 3D volumes turned to this orientation code, as training turns them
            (``data.orientation``; :mod:`unetkit.io.orientation`), so sizes and spacings are per
            axis of the arrays the net sees.

    Returns:
        The :class:`Fingerprint`.

    Raises:
        ConfigError: an unknown ``mask_kind`` or ``max_cases < 1``.
        DataError: discovery problems (no masks folder, an image without mask …), an unreadable
            file, values outside the label map, an image/mask size mismatch, mixed channel counts or
            dimensions: one line naming the file or folder.

    Example:
        >>> fp = fingerprint_dataset("data/isbi2012/train")  # doctest: +SKIP
        >>> fp.cases, fp.sizes["median"], fp.class_fraction
        (22, [512.0, 512.0], [0.22, 0.78])
    """
    start = time.perf_counter()
    if mask_kind not in INFER_KINDS:
        raise ConfigError(f"unknown mask kind {mask_kind!r}; valid: {', '.join(INFER_KINDS)}")
    if isinstance(max_cases, bool) or int(max_cases) != max_cases or max_cases < 1:
        raise ConfigError(f"max_cases must be an integer >= 1, got {max_cases!r}")
    found = scan_dataset(train_dir, mask_suffix=mask_suffix)
    if found.problems:
        raise found.error()
    rng = np.random.default_rng(seed)
    cases = found.cases
    if len(cases) > max_cases:
        pick = np.sort(rng.choice(len(cases), int(max_cases), replace=False))
        cases = [cases[i] for i in pick]
    found_val = None
    if label_map is None:
        masks = [c.mask for c in cases]
        if val_dir is not None:
            found_val = scan_dataset(val_dir, mask_suffix=mask_suffix)
            if found_val.problems:
                raise found_val.error()
            masks += [c.mask for c in found_val.cases]
        label_map = dataset_label_map(found, masks, mask_kind, ignore=ignore_value)
    num_classes = label_map.num_classes

    shapes, spacings, extents, units, stated = [], [], [], set(), []
    grey = True
    stats: list[_ChannelStats] = []
    class_pixels = np.zeros(num_classes, dtype=np.int64)
    per_class = {k: _ClassObjects() for k in range(1, num_classes)}
    read: list = []
    with_ids = 0
    hot: list = []  # the images with a few extreme pixels (has_hot_pixels)
    unlabelled = 0  # pixels of the ignore value
    labelled_extents: list = []  # the longest sides of the labelled regions (partial masks)

    def images():
        for case in cases:
            image, stored = read_case_image(case)
            require_finite(image, case.images[0])  # before the plan, not after it is printed
            image, meta, turn = reorient(image, stored, orientation)
            read.append((case, meta, turn, stored))
            yield case.images[0], image

    for done, image in enumerate(same_layout(images()), 1):
        case, meta, turn, stored = read[-1]
        spatial = image.shape[1:]
        classes, instances = read_case_mask(case, label_map, turn.shape or spatial, stored)
        classes = turn.apply(classes)
        instances = turn.apply(instances) if instances is not None else None
        shapes.append(spatial)
        if has_hot_pixels(image):
            hot.append(Path(case.images[0]).name)
        if meta.spacing is not None:
            stated.append((case.images[0], meta.spacing, meta.spacing_unit))
            spacings.append(meta.spacing)
            extents.append([n * s for n, s in zip(spatial, meta.spacing)])
            if meta.spacing_unit:
                units.add(meta.spacing_unit)
        grey = (
            grey
            and image.shape[0] > 1
            and all(np.array_equal(image[0], image[c]) for c in range(1, image.shape[0]))
        )
        labelled = classes[classes >= 0] if label_map.ignore is not None else classes.ravel()
        class_pixels += np.bincount(labelled, minlength=num_classes)[:num_classes]
        unlabelled += classes.size - labelled.size
        fg = classes > 0
        if not stats:
            stats = [_ChannelStats() for _ in range(image.shape[0])]
        if fg.any():
            for c in range(image.shape[0]):
                stats[c].add(image[c][fg], rng)
        with_ids += instances is not None
        unlabelled_here = classes < 0 if label_map.ignore is not None else None
        if unlabelled_here is not None:
            regions = ndimage.label(~unlabelled_here)[0]
            if regions.any():
                labelled_extents.append(object_extents(regions))
        for k, objects in per_class.items():
            if instances is not None:  # instance ids: the objects, each class's its own
                here = np.where(classes == k, instances, 0)
            else:
                here = ndimage.label(classes == k)[0]
            if unlabelled_here is not None and unlabelled_here.any():
                here = whole_objects(here, unlabelled_here)
            objects.add(here if here.any() else None, meta.spacing)
        if progress is not None:
            progress(done, len(cases))

    if found_val is not None and len(cases) == len(found.cases):
        # as training refuses it, before a plan is written: classes only validation masks hold
        from .dataset import check_val_classes
        from .labels import read_mask

        seen = {k for k in range(num_classes) if class_pixels[k]}
        val = ((c.case_id, read_mask(c.mask, label_map)[0]) for c in found_val.cases)
        check_val_classes(seen, val, label_map, val_dir)
    # refused where the voxel sizes are used (every case states one, in one unit: the plan
    # resamples to their median); elsewhere check-data lists it as a problem
    odd = odd_voxel_size(stated) if len(stated) == len(cases) and len(units) <= 1 else None
    if odd:
        raise DataError(odd[1], odd[0])
    dims = len(shapes[0])
    arr = np.array(shapes)
    sizes = {
        "median": [float(v) for v in np.median(arr, axis=0)],
        "min": [int(v) for v in arr.min(axis=0)],
        # one image in ten may be smaller: the planner fits the patch to this, not to the smallest
        "p10": [int(v) for v in np.percentile(arr, 10, axis=0, method="lower")],
        "max": [int(v) for v in arr.max(axis=0)],
    }
    spacing = spread = None
    if spacings:
        sp = np.array(spacings, dtype=np.float64)
        spacing = [float(v) for v in np.median(sp, axis=0)]
        spread = {
            "min": [float(v) for v in sp.min(axis=0)],
            "p10": [float(v) for v in np.percentile(sp, 10, axis=0)],
            "max": [float(v) for v in sp.max(axis=0)],
            "files": len(spacings),
            "units": sorted(units),
            "extent": {
                k: [float(v) for v in f(np.array(extents, dtype=np.float64), axis=0)]
                for k, f in (
                    ("median", np.median),
                    ("min", np.min),
                    ("p10", lambda a, axis: np.percentile(a, 10, axis=axis, method="lower")),
                    ("max", np.max),
                )
            },
        }
    intensity = []
    for s in stats:
        if s.n:
            summary = s.summary()
            intensity.append(
                {
                    "mean": summary["mean"],
                    "std": summary["std"],
                    "p0_5": s.percentile(0.5),
                    "p99_5": s.percentile(99.5),
                    "pixels": int(s.n),
                }
            )
        else:
            intensity.append({"mean": None, "std": None, "p0_5": None, "p99_5": None, "pixels": 0})
    objects = {str(k): o.summary(dims) for k, o in per_class.items()}
    total = sum(o["count"] for o in objects.values())
    touching = sum(o.touching for o in per_class.values())
    values = (
        [list(v) for v in label_map.values]
        if label_map.kind == "colors"
        else list(label_map.values)
    )
    return Fingerprint(
        cases=len(cases),
        spatial_dims=dims,
        sizes=sizes,
        spacing=spacing,
        channels=len(stats),
        grey_as_colour=bool(grey),
        intensity=intensity,
        label_values=values,
        class_fraction=[float(v) for v in class_pixels / max(int(class_pixels.sum()), 1)],
        objects=objects,
        touching_fraction=float(touching / total) if total else 0.0,
        seconds=time.perf_counter() - start,
        cases_found=len(found.cases),
        mask_kind=label_map.kind,
        spacing_unit=units.pop() if len(units) == 1 else None,
        spacing_spread=spread,
        instance_ids=with_ids == len(cases),
        cases_with_ids=with_ids,
        hot_pixel_cases=hot,
        ignore_value=label_map.ignore,
        unlabelled_fraction=float(unlabelled / max(unlabelled + int(class_pixels.sum()), 1)),
        labelled_extent=(
            float(np.median(np.concatenate(labelled_extents))) if labelled_extents else None
        ),
    )

"""From a dataset fingerprint, a time budget and this machine's measured speed to a training plan.

nnU-Net's lesson is that settings derived from the data beat hand-tuned recipes; its blind spot is
time. Here every decision is a small rule with its reason written next to it, and the rules that
depend on speed read the machine probe (:mod:`unetkit.planning.probe`), so the same data gets a
wider net on a fast GPU and a narrower one on a 2-core CPU without bf16 — always the plan that this
machine can train within the budget.

The rules, in order (constants below):

* **spacing**: where the cases' voxel sizes differ, every case is resampled to one target spacing
  (nnU-Net's median rule, with its anisotropy exception; :mod:`unetkit.planning.spacing`); the
  sizes the later rules read are then those on the target grid.
* **resolution**: when even the largest patch cannot hold ``SCALED_CONTEXT`` × the large objects'
  extent (polyps, organs), the net trains and predicts at a reduced scale that makes it fit — never
  below ``MIN_SCALE``, and never so low that the thin objects (10th percentile of thickness) drop
  under ``MIN_WIDTH`` px (thin vessels and membranes keep their resolution).
* **patch**: at least ``CONTEXT`` × the large (90th percentile) object extent, clamped to the
  dimension's limits, no larger than nine images in ten (the 10th percentile of the sizes: the
  sampler mirrors the smaller ones to fill it), a multiple of the pooling period.
* **depth**: pool while the bottleneck keeps ≥ ``MIN_BOTTLENECK`` px per axis (2 … 4 poolings).
* **batch**: about ``PIXELS_PER_BATCH`` pixels per batch (4 × 256² in 2D), at least 2; in a short
  run (fewer than ``SHORT_RUN_STEPS`` steps of that batch for the chosen width) halved, down to
  ``MIN_BATCH``: twice the optimiser steps over the same pixels learn more when the net is far from
  converged.
* **width**: every candidate width is timed; the widest one whose step count in the budget reaches
  its minimum (``MIN_STEPS``) wins: a wider net learns more per step but needs more steps than a
  short budget gives. When even the narrowest gets fewer than ``FEW_STEPS`` steps, smaller patches
  are tried.
* **loss**: Dice + cross-entropy; the U-Net paper's border weight map where objects touch (its border
  term only: class weights would move the decision toward the rarer class).
* **sampling**: foreground oversampling 0.33 (nnU-Net), 0.5 when a class is rare.
* **normalisation**: by the channel names (``--channel-names``, else ``dataset.json``), nnU-Net's
  rule (CT: foreground percentiles, mean and std of the training set; other channels: z-score
  per image); without names, z-score per image. A scheme the user names wins.
* **folds**: ``K`` cross-validation folds in the one budget (``train.folds``) only for small data
  (≤ ``FOLD_MAX_CASES`` cases, where a 20 % hold-out wastes cases) when each fold still gets
  ``FOLD_MIN_STEPS`` steps and the chosen width's ``MIN_STEPS``; never with a validation folder.
* **augmentation**: a model that gets fewer than ``FULL_AUGMENTATION_STEPS`` steps has not yet fit
  the data as it is: it gets only the exact symmetries (flips, 90° rotations); the deformations
  and intensity changes that keep a long run from over-fitting (the U-Net paper, nnU-Net) come
  with more steps. Judged on each fold's steps.
* **schedule**: poly learning rate on the clock over the budget (``scheduler: budget``), epochs
  sized so that validations take at most ``VALIDATION_SHARE`` of the time (per fold).
"""

from __future__ import annotations

import functools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch

from .. import runtime
from ..data.fingerprint import HOT_PIXEL_MIN_IMAGES
from ..data.normalization import choose_normalization, describe_normalization
from ..errors import ConfigError, DataError
from ..utils import atomic_write_text, json_default
from .probe import Candidate, Estimate, Measurement, machine_key, measure
from .spacing import on_target_grid, plan_target_spacing

PLAN_VERSION = 1
DEFAULT_BUDGET_MINUTES = 10.0
MODEL = "unet"
#: patch limits per axis (min, max) by dimensionality and device type
#: (the lower limit keeps context and a usable receptive field even for tiny objects)
PATCH_LIMITS = {
    ("cpu", 2): (128, 256),
    ("cuda", 2): (128, 512),
    ("cpu", 3): (48, 96),
    ("cuda", 3): (48, 128),
}
CONTEXT = 3
#: reduced resolution: the patch holds this many large-object extents (object plus half a one
#: around it), at no less than MIN_SCALE, keeping the thin objects at least MIN_WIDTH px thick
SCALED_CONTEXT = 2
MIN_SCALE = 0.25
MIN_WIDTH = 8
#: a scale this close to 1 is not worth the resampling
MAX_SCALE = 0.8
MIN_BOTTLENECK = 12
PIXELS_PER_BATCH = {2: 4 * 256 * 256, 3: 2 * 96**3}
WIDTHS = (16, 32, 64)
#: a wider net only pays when the budget gives it at least this many optimiser steps
MIN_STEPS = {16: 0, 32: 300, 64: 1200}
FEW_STEPS = 150
#: a run of fewer steps than this at the planned batch gets its batch halved (not below MIN_BATCH)
#: and twice the steps. At 5 minutes, halving 16 × 128² to 8 gave DRIVE 0.769 → 0.784 vessel Dice
#: (fp32, 309 steps) and 0.804 → 0.809 (bf16, 381), MoNuSeg 0.786 / 0.716 → 0.790 / 0.766 Dice /
#: object F1 (fp32) and 0.804 / 0.797 → 0.810 / 0.800 (bf16), at about the same pixels per second
#: (BENCHMARKS.md, "Smaller batches for short runs"). ISBI's batch 2 instead of 4 was within noise
#: (0.810 → 0.815) and batch norm over 2 samples is a risk, so MIN_BATCH stays 4
SHORT_RUN_STEPS = 600
MIN_BATCH = 4
#: shares of the budget not spent on training steps: setup (reading, weight maps) and validation
SETUP_SHARE = 0.08
VALIDATION_SHARE = 0.12
#: ... but a budget shorter than that still plans some steps
MIN_TRAIN_SHARE = 0.2
TARGET_VALIDATIONS = 10
#: at least this many epochs however costly validation is (then not every epoch is validated): the
#: clock schedule adapts its rate once per epoch, so a few long epochs follow the budget coarsely
MIN_EPOCHS = 8
#: the machine probe may spend at most this share of the budget timing candidates (cached after)
PROBE_SHARE = 0.03
#: a whole-image forward pass costs about this fraction of a training step per pixel (no backward)
INFERENCE_COST = 0.4
TOUCHING_WEIGHT_MAP = 0.25
#: with partial masks, whole objects whose 90th-percentile extent reaches this share of the
#: labelled regions' median size are a sample cut short (only the smaller ones fit whole)
TRUNCATED_SHARE = 0.5
#: with instance ids, objects touching this often get a background gap carved where they meet
SEPARATE_TOUCHING = 0.02
#: objects thinner than this (px) are pieces of thin structures (vessels), not cells to separate
BLOB_DIAMETER = 8
RARE_CLASS = 0.01
#: below this many steps per model, augmentation is the exact symmetries only. In 4–5-minute budgets
#: (309–800 steps, BENCHMARKS.md) they beat the full set on ISBI 2012 (membrane Dice 0.811 → 0.824),
#: DRIVE (0.798 → 0.805), MoNuSeg (Dice level, object F1 0.762 → 0.796 over two runs) and grey
#: nuclei (object F1 0.699 → 0.710); at about 1,600 steps (ISBI 2012, 8 minutes, width 16) still
#: 0.815 → 0.828. Runs of more steps were not measured against it: they keep the full set, which
#: keeps the paper's and nnU-Net's long runs from over-fitting
FULL_AUGMENTATION_STEPS = 2000
#: AdamW's peak learning rate: the common 1e-3 (MONAI's recipes, the popular U-Net repos), and
#: three times it for a model that gets fewer than ``FULL_AUGMENTATION_STEPS`` steps. In
#: 5-minute budgets (270–830 steps; BENCHMARKS.md, "A higher rate for short runs") 3e-3 raised
#: DRIVE's vessel Dice 0.784 → 0.797 on the fp32 path (width 16) and MoNuSeg's Dice / object F1
#: 0.810 / 0.799 → 0.816 / 0.805 on the bf16 path (width 32) and the grey nuclei's object F1
#: 0.722 → 0.742 (fp32), and was level elsewhere (ISBI, DRIVE bf16, MoNuSeg fp32: within
#: ±0.004); at 10 minutes (MoNuSeg bf16, 763 steps of 16) and at ≈ 1,175 steps (ISBI bf16, width
#: 16) level too. The rate decays on the clock either way. Runs of 2000 steps and more keep
#: 1e-3: they were not measured with 3e-3. Plans at a reduced resolution keep 1e-3 too: on the
#: large low-contrast objects of the endoscopy-like set (BENCHMARKS.md, "A third CPU") 3e-3 gave
#: polyp Dice 0.827, 0.847 (AVX2, width 16) and 0.725 (bf16, width 32), 1e-3 0.868, 0.860, 0.873; and
#: the validation Dice swung by ±0.04 between epochs at 3e-3
LR = 1e-3
SHORT_RUN_LR = 3e-3
#: what the exact symmetries leave out: every resampling and every change of intensity
LIGHT_AUGMENTATION = {
    "data.augmentation.spatial": False,
    "data.augmentation.gamma": False,
    "data.augmentation.brightness_contrast": False,
    "data.augmentation.blur": False,
    "data.augmentation.noise": False,
}
#: cross-validation folds tried, most first (2 would train each model on half the cases: fewer than
#: the 80 % a hold-out gives one model), the most cases that still count as small data, and the
#: fewest steps worth a fold
FOLD_CHOICES = (5, 4, 3)
FOLD_MAX_CASES = 40
FOLD_MIN_STEPS = 600


@dataclass
class Decision:
    """One planned value and why."""

    name: str
    value: Any
    reason: str


@dataclass
class Plan:
    """What the planner decided, why, and the config values it sets.

    Attributes:
        budget_minutes: the time budget the plan fits.
        machine: device, precision path and threads the speeds were measured on.
        fingerprint: the dataset fingerprint (``Fingerprint.to_dict()``).
        decisions: one :class:`Decision` per planned value, in the order they were made.
        config: dotted config values (``{"model.options.base_features": 16, …}``) to apply.
        measurements: every candidate timed (``Measurement.to_dict()``).
        model_steps: the training steps the budget gives each model (each fold), which the
            augmentation was judged on (``None`` in plans written before it was saved); counted
            at the batch of ``PIXELS_PER_BATCH`` pixels, before a short run's batch is halved, as
            the rules that read steps (width, folds, augmentation) were measured.
        full_batch: that batch of ``PIXELS_PER_BATCH`` pixels, so that a saved plan followed
            with another budget can judge the short-run halving again (``None`` in older plans).
    """

    budget_minutes: float
    machine: dict
    fingerprint: dict
    decisions: list[Decision] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    measurements: list[dict] = field(default_factory=list)
    model_steps: Optional[int] = None
    full_batch: Optional[int] = None

    def decide(self, name: str, value: Any, reason: str, **config: Any) -> None:
        self.decisions.append(Decision(name, value, reason))
        self.config.update(config)

    def to_dict(self) -> dict:
        return {
            "version": PLAN_VERSION,
            "budget_minutes": self.budget_minutes,
            "machine": self.machine,
            "decisions": [vars(d) for d in self.decisions],
            "config": self.config,
            "measurements": self.measurements,
            "model_steps": self.model_steps,
            "full_batch": self.full_batch,
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Plan:
        try:
            return cls(
                float(data["budget_minutes"]),
                dict(data["machine"]),
                dict(data["fingerprint"]),
                [Decision(**d) for d in data["decisions"]],
                dict(data["config"]),
                list(data.get("measurements", [])),
                data.get("model_steps"),
                data.get("full_batch"),
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"not a unetkit plan ({type(exc).__name__}: {exc})") from None

    def save(self, path: Union[str, Path]) -> Path:
        """Write ``plan.json`` atomically."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, default=json_default) + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: Union[str, Path]) -> Plan:
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read the plan ({exc})", path) from None

    def timed_widths(self) -> list[Measurement]:
        """The probe's timings at the planned patch and full batch, one per width it timed (the
        probe times one depth per patch: a 3D topology may plan another depth after it)."""
        patch = list(self.config.get("data.patch_size") or [])
        out = []
        for m in self.measurements:
            width, seconds = m.get("base_features"), m.get("seconds_per_step") or 0
            if (
                list(m.get("patch") or []) == patch
                and m.get("batch_size") == self.full_batch
                and isinstance(width, int)
                and width > 0
                and seconds > 0
            ):
                depth = m.get("depth", 0)
                cand = Candidate(m.get("model", MODEL), width, depth, tuple(patch), self.full_batch)
                out.append(Measurement(cand, float(seconds), cached=True))
        return out

    def step_seconds(self, width: int) -> Optional[tuple[float, bool]]:
        """Seconds per training step of a ``width``-wide net at the planned patch and full batch,
        and whether the probe measured it: a width it did not time is estimated from the
        nearest one it did (a convolution's FLOPs grow with the width squared). ``None`` where the
        plan holds no measurement at its patch (plans saved before ``full_batch``)."""
        timed = self.timed_widths()
        if not timed or not isinstance(width, int) or width <= 0:
            return None
        for m in timed:
            if m.candidate.base_features == width:
                return m.seconds_per_step, True
        near = min(timed, key=lambda m: abs(math.log(m.candidate.base_features / width)))
        return near.seconds_per_step * (width / near.candidate.base_features) ** 2, False

    def table(self) -> str:
        """The decisions as an aligned text table: name, value, reason."""
        rows = [(d.name, show_value(d.value), d.reason) for d in self.decisions]
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        head = (
            f"plan for a {self.budget_minutes:g}-minute budget on {self.machine['device']} "
            f"({self.machine['precision']}, {self.machine['threads']} threads)"
        )
        lines = [head, ""] + [f"  {a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
        return "\n".join(lines)


def show_value(value: Any) -> str:
    """A planned value as the plan table writes it (a patch as 128×128, 10.0 as 10)."""
    if isinstance(value, (list, tuple)):
        return "×".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _round_down(v: float, m: int) -> int:
    return max(m, int(v) // m * m)


def _round_up(v: float, m: int) -> int:
    return int(math.ceil(v / m) * m)


def _fragments_only(fp, o: dict) -> bool:
    """With partial masks (an ignore value), whether a class's whole objects (those wholly inside
    the labelled pixels) are no objects: most images hold none, so what lies whole is pieces of
    scribbles."""
    return getattr(fp, "ignore_value", None) is not None and not o.get("per_case_median")


def _cut_short(fp, o: dict) -> bool:
    """With partial masks, whether a class's whole objects reach :data:`TRUNCATED_SHARE` of the
    labelled regions' size: boxes hold whole only the objects smaller than a box, so the large
    ones go unmeasured and the class's objects are at least as large as the regions."""
    region = getattr(fp, "labelled_extent", None)
    extent = (o.get("extent_px") or {}).get("p90")
    return bool(
        getattr(fp, "ignore_value", None) is not None
        and region
        and extent
        and extent >= TRUNCATED_SHARE * region
    )


def _sizing_objects(fp) -> list[dict]:
    """The classes' object summaries that size the patch and the loss: those with objects, but
    not the fragments of partial masks (:func:`_fragments_only`)."""
    return [o for o in (fp.objects or {}).values() if o.get("count") and not _fragments_only(fp, o)]


def _only_fragments(fp) -> bool:
    """Partial masks whose whole objects are all fragments (:func:`_sizing_objects`)."""
    return any(o.get("count") for o in (fp.objects or {}).values()) and not _sizing_objects(fp)


def _large_object(fp) -> Optional[float]:
    """How far the large objects reach (px): the 90th-percentile bounding-box extent of the class
    with the largest objects (the equivalent diameter where a fingerprint has no extents); for a
    class partial masks cut short (:func:`_cut_short`), at least the labelled regions' size."""
    sizes = []
    for o in _sizing_objects(fp):
        size = (o.get("extent_px") or {}).get("p90") or (o.get("diameter_px") or {}).get("p90")
        if size:
            sizes.append(max(float(size), fp.labelled_extent) if _cut_short(fp, o) else float(size))
    return max(sizes) if sizes else None


def _sized_by_regions(fp) -> bool:
    """Whether :func:`_large_object` is the labelled regions' size (partial masks cut short)."""
    obj = _large_object(fp)
    return any(_cut_short(fp, o) and obj == fp.labelled_extent for o in _sizing_objects(fp))


def _typical_diameter(fp) -> float:
    """The median object thickness (px) over the classes, weighted by object count."""
    pairs = [
        (o["diameter_px"]["median"], o["count"])
        for o in _sizing_objects(fp)
        if (o.get("diameter_px") or {}).get("median")
    ]
    total = sum(c for _, c in pairs)
    return sum(d * c for d, c in pairs) / total if total else 0.0


def _thin_objects(fp) -> Optional[float]:
    """How thick the thin objects are (px): the smallest 10th percentile of object thickness over
    the foreground classes (``None``: unknown)."""
    widths = [
        float(o["width_px"]["p10"])
        for o in _sizing_objects(fp)
        if (o.get("width_px") or {}).get("p10")
    ]
    return min(widths) if widths else None


def _small_images(fp) -> tuple[list, bool]:
    """The image size per axis the patch must fit, and whether smaller images exist: the 10th
    percentile over the cases (nine images in ten hold the patch whole; the sampler mirrors the
    others to fill it), so one thumbnail among large images does not cut every patch (and the
    net's depth) to its size. The smallest size for fingerprints made before the percentile."""
    small = fp.sizes.get("p10") or fp.sizes["min"]
    return list(small), list(small) != list(fp.sizes["min"])


def _cut_to(smaller: bool) -> str:
    return "cut to the smaller images" if smaller else "cut to the smallest image"


def _check_target_spacing(target: list, fp) -> None:
    """A ``--target-spacing`` far from every case's voxel size (:func:`~unetkit.io.meta.far_off`
    from their median) is a value in another unit, not a plan: one line instead of a patch of one
    voxel, or a resampled volume that fills the memory."""
    from ..io.meta import far_off, spacing_ratio

    median = getattr(fp, "spacing", None)
    if not median or len(median) != len(target):
        return
    off = far_off(spacing_ratio(target, median))
    if off:
        unit = f" {fp.spacing_unit}" if getattr(fp, "spacing_unit", None) else ""
        shown = "×".join(f"{v:g}" for v in target)
        raise ConfigError(
            f"--target-spacing {shown} is {off} than the cases' median voxel size "
            f"{'×'.join(f'{v:g}' for v in median)}{unit}: give it in the files' unit and axis "
            "order (z, y, x)"
        )
    swapped = _swapped_axes(target, median)
    if swapped is not None:
        i, j = swapped
        names = "zyx"[-len(target) :]
        shown = "×".join(f"{v:g}" for v in target)
        raise ConfigError(
            f"--target-spacing {shown} makes axis {names[i]} finer than {names[j]}, but the "
            f"cases' median voxel size {'×'.join(f'{v:g}' for v in median)} has it "
            f"{median[i] / median[j]:.3g}× coarser: give it in the files' axis order (z, y, x), "
            f"e.g. {','.join(f'{v:g}' for v in reversed(target))}"
        )


#: an axis this much coarser than another in the data but this much finer in a target spacing
#: is a target given in another axis order (x, y, z)
SWAPPED_RATIO = 1.5


def _swapped_axes(target: list, median: list) -> Optional[tuple[int, int]]:
    """Axes ``(i, j)`` that a target voxel size orders the other way round from the data (``i``
    coarser than ``j`` by :data:`SWAPPED_RATIO` in the data, finer by as much in the target), or
    ``None``: resampling to it would upsample the coarse axis and throw away the fine one."""
    for i, (mi, ti) in enumerate(zip(median, target)):
        for j, (mj, tj) in enumerate(zip(median, target)):
            if mi >= SWAPPED_RATIO * mj and tj >= SWAPPED_RATIO * ti:
                return i, j
    return None


def plan_scale(fp, device_type: str) -> tuple[float, str]:
    """The resolution factor to train and predict at (1.0: as stored) and the reason."""
    dims = fp.spatial_dims
    lo, hi = PATCH_LIMITS[(device_type if device_type == "cuda" else "cpu", dims)]
    obj = _large_object(fp)
    if not obj or SCALED_CONTEXT * obj <= hi:
        return 1.0, "as stored: the patch holds the large objects with context"
    want = hi / (SCALED_CONTEXT * obj)
    width = _thin_objects(fp)
    floor = max(MIN_SCALE, MIN_WIDTH / width if width else 1.0)
    small, smaller = _small_images(fp)
    floor = max(floor, lo / max(min(small), 1) / 2)  # keep images ≥ half a patch
    scale = round(max(want, floor), 2)
    if scale > MAX_SCALE and width is None:
        return 1.0, "as stored: the objects' thickness is unknown (a fingerprint without widths)"
    if scale > MAX_SCALE:
        return 1.0, (
            f"as stored: the large objects ({obj:.0f} px) exceed a {hi}-px patch, but reducing "
            f"the resolution would make the thin objects ({width or 0:.0f} px thick, 10th "
            f"percentile) thinner than {MIN_WIDTH} px"
        )
    # the patch side on the shortest axis, as plan_patch will cut it to the small images
    period = 16 if dims == 2 else 8
    shortest = min(small) * scale
    side = hi if shortest >= hi else max(period, _round_down(shortest, period))
    cut = f" ({_cut_to(smaller)})" if side < hi else ""
    return scale, (
        f"the large objects reach {obj:.0f} px (90th percentile): at {scale:g} of the resolution "
        f"a {side}-px patch{cut} holds {side / (obj * scale):.1f} of them, the thin objects stay "
        f"{(width or 0) * scale:.0f} px thick; predict resamples each image and the result back"
    )


def axis_ratios(spacing: Optional[list], dims: int) -> list[float]:
    """Per axis, the finest spacing over this axis's (1 on the finest axes, and everywhere in 2D
    or without a spacing): a 3D patch spans ``want × ratio`` voxels per axis, the same physical
    length on every axis (nnU-Net's patch shape for anisotropic volumes)."""
    if dims != 3 or not spacing:
        return [1.0] * dims
    return [min(spacing) / s for s in spacing]


def patch_floors(lo: int, ratios: list[float], period: int) -> list[int]:
    """The smallest patch per axis: ``lo`` scaled like the patch (at least one period)."""
    return [max(period, _round_down(lo * r, period)) for r in ratios]


def plan_patch(
    fp, device_type: str, scale: float = 1.0, spacing: Optional[list] = None
) -> tuple[list[int], str]:
    """Patch size per axis and the reason (before the speed-dependent steps); with ``scale``, in
    pixels of the resampled images; with an anisotropic 3D ``spacing`` (the voxel size trained
    at), the same physical length on every axis (:func:`axis_ratios`)."""
    dims = fp.spatial_dims
    lo, hi = PATCH_LIMITS[(device_type if device_type == "cuda" else "cpu", dims)]
    obj = _large_object(fp)
    obj = obj * scale if obj else obj
    want = CONTEXT * obj if obj else hi
    want = min(max(want, lo), hi)
    small, smaller = _small_images(fp)
    smallest = [max(1, int(round(s * scale))) for s in small]
    period = 16 if dims == 2 else 8
    ratios = axis_ratios(spacing, dims)
    median = [max(1, int(round(s * scale))) for s in fp.sizes.get("median") or small]
    patch, cut, held = [], False, False
    for s, m, r, floor in zip(smallest, median, ratios, patch_floors(lo, ratios, period)):
        p = uncut = max(floor, _round_up(want * r, period))
        if p > s:
            p, cut = max(_round_down(s, period), min(s, period)), True
            # thumbnails smaller than an object hold none whole: the patch still holds the
            # large objects where the typical image does (a 16-px patch for 22-px nuclei did not),
            # within the patch the limits allow
            whole = min(_round_up(obj * r, period), _round_down(m, period), uncut) if obj else 0
            if whole > p:
                p, held = whole, True
        patch.append(int(p))
    why = (
        f"≥ {CONTEXT}× the extent of the large objects (at least the labelled regions' {obj:.0f} "
        f"px{' after resampling' if scale != 1 else ''}: partial masks hold whole only the objects "
        "smaller than them) for context"
        if obj and _sized_by_regions(fp)
        else f"≥ {CONTEXT}× the extent of the large objects ({obj:.0f} px, 90th percentile"
        f"{' after resampling' if scale != 1 else ''}) for context"
        if obj
        else "the objects wholly inside the labelled pixels (partial masks) are pieces of "
        "scribbles, too few to size it by: the largest patch"
        if _only_fragments(fp)
        else "no objects to size it by: the largest patch"
    )
    # the limits, unless the images cut the patch below them (said next)
    why += f", within {lo}…{hi} px" if not cut or min(patch) >= lo else f", at most {hi} px"
    if any(r != 1.0 for r in ratios):
        why += (
            ", the same physical length on every axis ("
            + "×".join(f"{r:.2g}" for r in ratios)
            + " of the finest axis's voxels)"
        )
    if cut:
        size = "×".join(map(str, smallest))
        why += f", {_cut_to(smaller)} ({'10th percentile ' if smaller else ''}{size}"
        why += "; smaller ones are mirrored to fill it)" if smaller else ")"
    if held:
        short = min(patch) < obj  # the limits or the typical image stop it short of one object
        why += (
            f", but as near one large object ({obj:.0f} px) as the typical image "
            f"({'×'.join(map(str, median))}) and the limits allow"
            if short
            else f", but not below one large object ({obj:.0f} px), which the typical image "
            f"({'×'.join(map(str, median))}) holds"
        )
    return patch, why


def plan_depth(patch: list[int]) -> int:
    """Poolings while the bottleneck keeps ≥ ``MIN_BOTTLENECK`` px on the shortest axis (2 … 4)."""
    return int(min(4, max(2, math.floor(math.log2(max(min(patch), 1) / MIN_BOTTLENECK)))))


def plan_topology(spacing: Optional[list], patch: list[int]) -> Optional[tuple]:
    """``(strides, kernel_sizes, depth, reason)`` for anisotropic 3D voxels (nnU-Net's rule,
    :func:`~unetkit.planning.topology.anisotropic_topology`, at most 4 poolings, feature maps of
    ≥ 4 voxels), or ``None`` when the rule gives the plain net (every stride 2, every kernel 3)."""
    if not spacing or max(spacing) < 2 * min(spacing):
        return None
    from .topology import anisotropic_topology, pooling_period

    try:
        strides, kernels, depth = anisotropic_topology(spacing, patch, max_depth=4, min_size=4)
    except ConfigError:
        return None
    if all(s == 2 for st in strides for s in st) and all(k == 3 for ks in kernels for k in ks):
        return None
    flat = sum(1 for ks in kernels if min(ks) == 1)
    why = (
        f"voxels {'×'.join(f'{s:g}' for s in spacing)}: the coarse axis pools only once the others "
        f"have caught up (strides {' '.join(''.join(map(str, st)) for st in strides)}, pooling "
        f"period {'×'.join(map(str, pooling_period(strides)))}), "
        f"{flat} stage(s) with 1×3×3-type kernels (nnU-Net's rule)"
    )
    return strides, kernels, depth, why


def plan_batch(patch: list[int], dims: int) -> int:
    return int(max(2, min(32, round(PIXELS_PER_BATCH[dims] / math.prod(patch)))))


def short_run_batch(batch: int, steps: int) -> tuple[int, int]:
    """The batch to train with when the budget gives ``steps`` steps of ``batch``, and its steps:
    halved while the run is short (under ``SHORT_RUN_STEPS`` steps) and the half is at least
    ``MIN_BATCH``. The pixels per second stay about the same, so the steps grow as the batch
    shrinks."""
    while steps < SHORT_RUN_STEPS and batch // 2 >= MIN_BATCH:
        steps = steps * batch // (batch // 2)
        batch //= 2
    return batch, steps


def _fp32_reason(dev: torch.device, dims: int) -> str:
    """Why ``auto`` trains in fp32 here."""
    if dev.type != "cpu":
        return "fp32"
    if dims == 3 and runtime.resolve_precision("auto", dev) == torch.bfloat16:
        return (
            "fp32: 3D nets train in fp32 on CPU (oneDNN's bf16 weight gradient of shallow 3D "
            "inputs is unreliable in this torch)"
        )
    return "fp32: no native bf16 here, emulated bf16 would be slower"


def _halved(batch: int, smaller: int) -> str:
    """ "halved", "halved twice", … for a batch halved from ``batch`` to ``smaller``."""
    times = round(math.log2(batch / smaller))
    return "halved" + {1: "", 2: " twice"}.get(times, f" {times} times")


def _ordinal(n: int) -> str:
    """2 → "2nd", 3 → "3rd", 4 → "4th", 11 → "11th", 21 → "21st"."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def train_seconds(budget_minutes: float) -> float:
    """The part of the budget planned for training steps (the rest: setup and validation), and
    never the seconds the trainer keeps at the end of a budget however short
    (:func:`~unetkit.training.trainer.end_reserve_fixed_s`; at 5 minutes and more the shares hold
    more than that)."""
    from ..training.trainer import end_reserve_fixed_s

    total = budget_minutes * 60
    kept = max(total * (SETUP_SHARE + VALIDATION_SHARE), end_reserve_fixed_s(total))
    return max(total - kept, total * MIN_TRAIN_SHARE)


def choose_width(
    measurements: list[Measurement], budget_minutes: float
) -> tuple[Measurement, int, str]:
    """The widest candidate whose steps in the budget reach ``MIN_STEPS`` for its width."""
    seconds = train_seconds(budget_minutes)
    ok = [
        m
        for m in measurements
        if seconds / m.seconds_per_step >= MIN_STEPS.get(m.candidate.base_features, 0)
    ]
    pool = ok or [min(measurements, key=lambda m: m.seconds_per_step)]
    best = max(pool, key=lambda m: (m.candidate.base_features, -m.seconds_per_step))
    steps = int(seconds / best.seconds_per_step)
    others = ", ".join(
        f"{m.candidate.base_features}: {int(seconds / m.seconds_per_step)} steps"
        for m in measurements
        if m is not best
    )
    reason = (
        f"{steps} steps of {best.seconds_per_step:.2f} s fit the budget"
        + (f" ({others})" if others else "")
        + f"; wider nets need ≥ {', '.join(f'{MIN_STEPS[w]} (width {w})' for w in WIDTHS[1:])} steps"
    )
    return best, steps, reason


def plan_augmentation(steps: int) -> tuple[str, str, dict]:
    """The augmentation for a model that gets ``steps`` steps: what, why, and the config values
    that make it (none for the full default set)."""
    if steps < FULL_AUGMENTATION_STEPS:
        return (
            "flips, 90° rotations",
            f"{steps} steps: too few for deformations and intensity changes to pay (they slow "
            f"the fit), so the exact symmetries only; the full set from {FULL_AUGMENTATION_STEPS} "
            "steps",
            dict(LIGHT_AUGMENTATION),
        )
    return (
        "default",
        f"{steps} steps: flips, rotations, scaling, elastic deformation, intensity (the U-Net "
        "paper, nnU-Net)",
        {},
    )


def plan_lr(steps: int, scale=1.0) -> tuple[float, str]:
    """AdamW's peak learning rate for a model that gets ``steps`` steps at resolution ``scale``
    (a factor or one per axis), and why."""
    factors = scale if isinstance(scale, (list, tuple)) else [scale]
    if any(float(f) < 1 for f in factors):
        return LR, (
            f"AdamW lr {LR:g} (at a reduced resolution the higher rate of short runs was "
            "unstable on large objects)"
        )
    if steps < FULL_AUGMENTATION_STEPS:
        return SHORT_RUN_LR, (
            f"AdamW lr {SHORT_RUN_LR:g} ({steps} steps: a short run learns more at a higher rate; "
            f"{LR:g} from {FULL_AUGMENTATION_STEPS} steps)"
        )
    return LR, f"AdamW lr {LR:g}"


def plan_folds(
    cases: int, steps: int, width: int, budget_minutes: float, fixed_val: bool
) -> tuple[int, str]:
    """How many cross-validation folds pay (1 = one model) and why: small data, and each of the
    ``K`` folds still gets ``steps / K`` ≥ ``FOLD_MIN_STEPS`` and ≥ the width's ``MIN_STEPS``."""
    if fixed_val:
        return 1, "a validation folder is given: one model, validated on it"
    if cases > FOLD_MAX_CASES:
        return 1, (
            f"{cases} cases: a 20 % hold-out costs little data; one model gets all {steps} steps"
        )
    need = max(FOLD_MIN_STEPS, MIN_STEPS.get(width, 0))
    fits = [k for k in FOLD_CHOICES if k <= cases]
    if not fits:
        return 1, f"{cases} cases are too few for {FOLD_CHOICES[-1]} folds"
    for k in fits:
        if steps // k >= need:
            return k, (
                f"only {cases} cases: a 20 % hold-out wastes data; {k} folds of {steps // k} steps "
                f"(≥ {need}) each train on every case, and predict averages them"
            )
    k = fits[-1]
    return 1, (
        f"a {budget_minutes:g}-minute budget on this machine gives one model {steps} steps; {k} "
        f"folds would get {steps // k} each (fewer than {need} at width {width})"
    )


def _scaled_timing(timed: Sequence[Measurement], cand: Candidate) -> Optional[Estimate]:
    """A step of ``cand`` estimated from a timed (not estimated) step of the same width and batch
    on another patch, in proportion to the voxels (a convolution's cost); ``None`` without one."""
    for m in timed:
        c = m.candidate
        if not m.estimated and (c.base_features, c.batch_size) == (
            cand.base_features,
            cand.batch_size,
        ):
            factor = math.prod(cand.patch) / math.prod(c.patch)
            return Estimate(m.seconds_per_step * factor, m.entry, factor)
    return None


def _check_rgb_range(fp, channel_names) -> None:
    """A channel the user names ``rgb_to_0_1`` (``--channel-names``: 0 … 255 to [0, 1],
    nnU-Net's scheme for 8-bit colour) whose foreground reaches past 255 would be clipped flat
    (16-bit data trained at Dice 0.01): refused, naming the channel and its range, as nnU-Net
    asserts it. A dataset.json's names are not refused here: ``--normalization`` overrides them."""
    from ..data.normalization import channel_name_list

    names = channel_names
    if not names:
        return
    for c, name in enumerate(channel_name_list(names)):
        stats = fp.intensity[c] if c < len(getattr(fp, "intensity", []) or []) else {}
        top = (stats or {}).get("p99_5")
        if name.lower() == "rgb_to_0_1" and top is not None and top > 255:
            raise ConfigError(
                f"channel {c} is named rgb_to_0_1 (0 … 255 to [0, 1]) but its foreground reaches "
                f"{top:.4g} (99.5th percentile): it would be clipped at 255; name it zscore (or "
                "give 8-bit images)"
            )


def make_plan(
    fp,
    budget_minutes: Optional[float] = None,
    device: str = "auto",
    val_cases: Optional[int] = None,
    val_sizes: Optional[Sequence[Sequence[int]]] = None,
    timer: Optional[Callable[[Candidate], float]] = None,
    progress: Optional[Callable[[str], None]] = None,
    scale: Optional[float] = None,
    channel_names: Optional[list] = None,
    dataset_json: Optional[dict] = None,
    target_spacing: Optional[list] = None,
    precision: str = "auto",
) -> Plan:
    """Plan a training run for the dataset ``fp`` (a :class:`~unetkit.data.fingerprint.Fingerprint`).

    Args:
        budget_minutes: the time budget (default :data:`DEFAULT_BUDGET_MINUTES`).
        device: where training will run (``auto``, ``cpu``, ``cuda`` …): the probe measures there.
        val_cases: validation images (default: the hold-out, 20 % of the cases).
        val_sizes: the spatial size of each validation image (a ``--val`` folder's), so that the
            time of a validation counts its pixels rather than the training images' median
            (one 4000² validation image beside 300² training images takes 5 s, not 1).
        timer: replaces the probe's timing (``Candidate → seconds per step``), for tests.
        progress: receives one line per candidate being timed.
        scale: the resolution the user fixed (``--scale``): patch, batch and schedule are planned
            for it instead of the planned one.
        target_spacing: the voxel size the user fixed (``--target-spacing``): planned for it
            instead of the rule's.
        channel_names / dataset_json: the user's channel names (``--channel-names``; the plan
            sets ``data.channel_names``) and the dataset's nnU-Net ``dataset.json``, whose
            ``channel_names`` choose the normalisation (see
            :func:`~unetkit.data.normalization.choose_normalization`).
        precision: the training precision (``auto``, ``bf16``, ``fp16``, ``fp32``): the probe
            times the candidates in it, so a run the user keeps in fp32 on a bf16 CPU is planned
            for fp32 steps (2–3× slower), not for the ones it will not take.
    """
    budget = float(DEFAULT_BUDGET_MINUTES if budget_minutes is None else budget_minutes)
    if not budget > 0:
        raise ConfigError(f"the time budget must be > 0 minutes, got {budget_minutes}")
    dev = runtime.resolve_device(device)
    dims = int(fp.spatial_dims)
    asked = precision
    dtype = runtime.training_precision(asked, dev, dims)
    precision = (
        "bf16" if dtype == torch.bfloat16 else ("fp16" if dtype == torch.float16 else "fp32")
    )
    plan = Plan(
        budget,
        {
            "device": str(dev) if dev.type != "cpu" else f"cpu ({runtime.cpu_info().model})",
            "precision": precision,
            "threads": torch.get_num_threads(),
            "key": machine_key(dev, dtype),
        },
        fp.to_dict(),
    )
    in_channels = int(fp.channels)
    num_classes = max(2, len(fp.label_values))

    # -- precision and input -----------------------------------------------------------------------
    why = {
        "bf16": "bf16 autocast: this device computes bf16 natively",
        "fp16": "fp16 autocast with a gradient scaler (CUDA)",
        "fp32": _fp32_reason(dev, dims),
    }[precision]
    if asked != "auto":
        why = "set by the user (--precision / train.precision): the probe timed it"
    # asked for: kept in the plan, so that train --plan trains in what the probe timed
    plan.decide(
        "precision", precision, why, **({"train.precision": asked} if asked != "auto" else {})
    )
    if fp.grey_as_colour and in_channels > 1:
        plan.decide(
            "channels",
            in_channels,
            "grey images stored as colour (identical channels): kept as read; only the first "
            "layer pays for the copies",
        )

    # -- voxel size, resolution, patch, depth, batch, width (measured) ---------------------------------
    if target_spacing is not None:
        from ..utils import per_axis

        target = list(per_axis(target_spacing, dims, "target_spacing", kind=float, positive=True))
        target_why = "set by the user (--target-spacing / data.target_spacing)"
        _check_target_spacing(target, fp)
    elif scale is None:
        target, target_why = plan_target_spacing(fp)
    else:
        target, target_why = None, "as stored: the user fixed the resolution (--scale / data.scale)"
    # voxels on the target grid per stored voxel (the --val images' sizes are as stored)
    grid = 1.0
    if target is not None and getattr(fp, "spacing", None):
        grid = math.prod(s / t for s, t in zip(fp.spacing, target))
        fp = on_target_grid(fp, target)
    if scale is None and target_spacing is not None:
        scale, scale_why = 1.0, "as the voxel size the user set (--target-spacing)"
    elif scale is None:
        scale, scale_why = plan_scale(fp, dev.type)
    else:
        scale, scale_why = float(scale), "set by the user (--scale / data.scale)"
    if target is not None:
        # a reduced resolution on top of a target spacing is a coarser target spacing
        target = [round(t / scale, 6) for t in target]
        plan.decide("spacing", target, target_why, **{"data.target_spacing": target})
    else:
        plan.decide("spacing", "as stored", target_why)
    if scale != 1.0:
        plan.decide(
            "resolution",
            scale,
            scale_why,
            **({} if target is not None else {"data.scale": [scale] * dims}),
        )
    else:
        plan.decide("resolution", 1, scale_why)
    # the voxel size the net will see (3D: anisotropic voxels shape the patch and the topology)
    voxel = (
        target
        if target is not None
        else ([s / scale for s in fp.spacing] if getattr(fp, "spacing", None) else None)
    )
    patch, patch_why = plan_patch(fp, dev.type, scale, voxel)
    floors = patch_floors(
        PATCH_LIMITS[(dev.type if dev.type == "cuda" else "cpu", dims)][0],
        axis_ratios(voxel, dims),
        16 if dims == 2 else 8,
    )
    candidates_tried: list[Measurement] = []
    batch = plan_batch(patch, dims)  # kept when the patch shrinks: smaller steps, more of them
    planned_patch = list(patch)
    # the probe's share of the budget holds for all the patches tried, not for each
    probe_until = time.perf_counter() + PROBE_SHARE * budget * 60
    for attempt in range(3):
        depth = plan_depth(patch)
        widths = WIDTHS if dev.type == "cuda" else WIDTHS[:2] if budget < 30 else WIDTHS
        cands = [Candidate(MODEL, w, depth, tuple(patch), batch) for w in widths]
        measured = measure(
            cands,
            in_channels,
            num_classes,
            dims,
            dev,
            dtype,
            timer,
            progress,
            max_seconds=max(0.0, probe_until - time.perf_counter()),
            estimate=functools.partial(_scaled_timing, candidates_tried),
        )
        candidates_tried += measured
        best, steps, width_why = choose_width(measured, budget)
        if best.estimated:
            width_why += (
                "; estimated from the larger patch's timing (per voxel), the probe having used its "
                f"{100 * PROBE_SHARE:g} % of the budget"
            )
        if len(measured) < len(cands):
            timed = {m.candidate for m in measured}
            untimed = [c.base_features for c in cands if c not in timed]
            width_why += (
                f"; width {', '.join(map(str, untimed))} not timed: the probe had used its "
                f"{100 * PROBE_SHARE:g} % of the budget (a wider net is slower still)"
            )
        if steps >= FEW_STEPS or any(p <= f for p, f in zip(patch, floors)) or attempt == 2:
            break
        patch = [
            max(f, _round_down(p * 0.75, 16 if dims == 2 else 8)) for p, f in zip(patch, floors)
        ]
    if patch != planned_patch:  # one line however many times it shrank
        patch_why += (
            f"; reduced to {'×'.join(map(str, patch))} px: larger patches left under "
            f"{FEW_STEPS} steps"
        )
    plan.measurements = [m.to_dict() for m in candidates_tried]
    plan.decide("patch", patch, patch_why, **{"data.patch_size": patch})
    plan.decide(
        "model",
        MODEL,
        "the same-padding U-Net: whole images of any size, tiles on its pooling grid",
        **{"model.name": MODEL},
    )
    topology = plan_topology(voxel, patch) if dims == 3 else None
    if topology is None:
        bottleneck = min(patch) // 2**depth
        plan.decide(
            "depth",
            depth,
            f"poolings while the bottleneck keeps ≥ {MIN_BOTTLENECK} px "
            f"({bottleneck} px at {min(patch)})"
            if bottleneck >= MIN_BOTTLENECK
            else f"the fewest poolings a plan uses ({bottleneck} px bottleneck at {min(patch)}; "
            f"one of {MIN_BOTTLENECK} px needs a patch of {MIN_BOTTLENECK * 4} px or more)",
            **{"model.options.depth": depth},
        )
    else:
        strides, kernels, depth, why = topology
        plan.decide(
            "depth",
            depth,
            why,
            **{
                "model.options.depth": depth,
                "model.options.spatial_dims": dims,  # per-axis lists are checked for 3 axes
                "model.options.strides": strides,
                "model.options.kernel_sizes": kernels,
            },
        )
    plan.decide(
        "width",
        best.candidate.base_features,
        width_why,
        **{"model.options.base_features": best.candidate.base_features},
    )
    train_batch, batch_steps = short_run_batch(batch, steps)
    plan.full_batch = batch
    pixels, wanted = batch * math.prod(best.candidate.patch), PIXELS_PER_BATCH[dims]
    why = f"≈ {wanted:,} pixels per batch"
    if pixels < 0.75 * wanted:  # the batch of the first patch tried, kept as the patch shrank
        why = f"{pixels:,} pixels per batch: " + (
            "at most 32 images"
            if batch >= 32
            else f"the batch of ≈ {wanted:,} pixels at the first patch tried, kept as the "
            "patch shrank (more, smaller steps)"
        )
    if train_batch != batch:
        why = (
            f"{batch} ({why}) {_halved(batch, train_batch)} to {train_batch}: {steps} steps are a "
            "short run (under "
            f"{SHORT_RUN_STEPS}); {batch_steps} smaller steps over the same pixels learn more"
        )
    plan.decide("batch", train_batch, why, **{"train.batch_size": train_batch})

    # -- loss and sampling -----------------------------------------------------------------------
    touching = float(fp.touching_fraction or 0.0)
    thickness = _typical_diameter(fp)
    weight_map = touching >= TOUCHING_WEIGHT_MAP and thickness >= BLOB_DIAMETER
    if weight_map:
        why = (
            f"{100 * touching:.0f} % of the objects lie within 2 px of another: the U-Net paper's "
            "border weight map makes the net learn the gaps (its border term only: Dice already "
            "balances the classes, and class weights would make the net over-segment)"
        )
    elif touching >= TOUCHING_WEIGHT_MAP:
        why = (
            f"Dice + cross-entropy; objects touch ({100 * touching:.0f} %) but are thin "
            f"({thickness:.0f} px): pieces of one structure, not cells to separate"
        )
    else:
        why = (
            f"Dice + cross-entropy (nnU-Net); {100 * touching:.1f} % of the objects touch, under "
            f"the {100 * TOUCHING_WEIGHT_MAP:g} % that pays for a border weight map"
        )
    plan.decide(
        "loss",
        "dice_ce" + (" + border weight map" if weight_map else ""),
        why,
        **{
            "loss.name": "dice_ce",
            "data.weight_map": weight_map,
            **({"data.class_balance": False} if weight_map else {}),
        },
    )
    separate = (
        bool(fp.instance_ids) and touching >= SEPARATE_TOUCHING and thickness >= BLOB_DIAMETER
    )
    if separate:
        why = (
            f"{100 * touching:.0f} % of the objects touch another and the instance ids say where: "
            "a 2-px background gap is carved where they meet (the U-Net paper), so the predicted "
            "components are the objects"
        )
    elif fp.instance_ids and touching < SEPARATE_TOUCHING:
        why = (
            f"{100 * touching:.1f} % of the objects touch, under {100 * SEPARATE_TOUCHING:g} %: "
            "masks as drawn"
        )
    elif fp.instance_ids:
        why = (
            f"objects touch ({100 * touching:.1f} %) but are thin ({thickness:.0f} px): pieces "
            "of one structure, masks as drawn"
        )
    elif 0 < getattr(fp, "cases_with_ids", 0) < fp.cases:
        why = (
            f"instance ids for only {fp.cases_with_ids} of the {fp.cases} cases read (the "
            "instances/ folder lacks some: 'unetkit check-data' names them): touching objects "
            "are not told apart, masks as drawn"
        )
    else:
        why = (
            "no instance ids (an instance mask or an instances/ folder beside masks/): touching "
            "objects cannot be told apart, masks as drawn"
        )
    plan.decide(
        "separate touching objects",
        "yes" if separate else "no",
        why,
        **{"data.separate_objects": separate},
    )
    fg = [f for f in fp.class_fraction[1:]] if fp.class_fraction else []
    rare = bool(fg) and min(fg) < RARE_CLASS
    fg_fraction = 0.5 if rare else 0.33
    plan.decide(
        "foreground sampling",
        fg_fraction,
        (
            f"a class covers {100 * min(fg):.2f} % of the pixels: half the patches centred on it"
            if rare
            else "a third of the patches centred on foreground (nnU-Net)"
        ),
        **{"data.fg_fraction": fg_fraction},
    )
    if len(fp.class_fraction) == 2 and fp.class_fraction[1] > 0.5:
        plan.decide(
            "model selection",
            "val_dice_c0",
            f"the mask's foreground value covers {100 * fp.class_fraction[1]:.0f} % of the pixels: "
            "the rarer class 0 is the structure of interest (membranes between cells), so best.pt "
            "is chosen by its Dice",
            **{"train.select_metric": "val_dice_c0"},
        )
    else:
        plan.decide(
            "model selection",
            "val_dice",
            "best.pt by the mean foreground Dice on the validation images",
            **{"train.select_metric": "val_dice"},
        )
    _check_rgb_range(fp, channel_names)
    hot = list(getattr(fp, "hot_pixel_cases", None) or [])
    if len(hot) < HOT_PIXEL_MIN_IMAGES * max(int(getattr(fp, "cases", 1) or 1), 1):
        hot = []  # one image in many: not worth another input for every image
    norm, why = choose_normalization(None, channel_names, dataset_json, hot)
    chosen: dict = {"data.channel_names": list(channel_names)} if channel_names else {}
    if hot and norm.get("name") == "percentile":  # what training would not choose by itself
        chosen["data.normalization"] = dict(norm)
    plan.decide("normalization", describe_normalization(norm), why, **chosen)

    # -- cross-validation folds --------------------------------------------------------------------
    width = best.candidate.base_features
    # a sampled fingerprint read some of the cases: the split and the folds are of all of them
    cases = int(max(fp.cases, getattr(fp, "cases_found", 0) or 0))
    folds, why = plan_folds(cases, steps, width, budget, val_cases is not None)
    plan.decide("folds", folds, why, **{"train.folds": folds})
    plan.model_steps = steps // folds
    augmentation, why, values = plan_augmentation(plan.model_steps)
    plan.decide("augmentation", augmentation, why, **values)

    # -- schedule (of each fold) -------------------------------------------------------------------
    n_val = (
        val_cases
        if val_cases is not None
        else max(1, round(cases * (1 / folds if folds > 1 else 0.2)))
    )
    val_pixels = (
        sum(math.prod(s) for s in val_sizes) * grid * scale**dims
        if val_sizes and all(len(s) == dims for s in val_sizes)
        else n_val * math.prod(fp.sizes["median"]) * scale**dims
    )
    px_seconds = best.seconds_per_step / (batch * math.prod(patch))
    val_seconds = max(1.0, val_pixels * px_seconds * INFERENCE_COST)
    fold_budget = budget / folds
    validations = int(
        max(2, min(TARGET_VALIDATIONS, fold_budget * 60 * VALIDATION_SHARE / val_seconds))
    )
    epochs = max(validations, MIN_EPOCHS)
    fold_steps = batch_steps // folds
    iters = int(max(5, fold_steps // epochs))
    if iters * epochs > fold_steps:  # too few steps for that many epochs of 5: fewer epochs
        epochs = max(1, fold_steps // iters)
        validations = min(validations, epochs)
    val_every = max(1, epochs // validations)
    cadence = (
        "each followed by a validation"
        if val_every == 1
        else f"every {_ordinal(val_every)} followed by a validation"
    )
    lr, lr_why = plan_lr(plan.model_steps, scale)
    plan.decide(
        "schedule",
        f"{budget:g} min",
        f"{lr_why}, poly decay on the clock over the budget"
        + (f" of each fold ({fold_budget:.3g} min)" if folds > 1 else "")
        + f"; about {epochs} epoch{'s' if epochs != 1 else ''} of {iters} steps, {cadence} of "
        f"{n_val} image(s) "
        f"(≈ {val_seconds:.0f} s)",
        **{
            "train.optimizer": "adamw",
            "train.lr": lr,
            "train.scheduler": "budget",
            "train.time_budget_minutes": budget,
            "train.epochs": 1000,
            "train.iters_per_epoch": iters,
            "train.val_every": val_every,
        },
    )
    return plan


#: the config keys a plan's schedule sets (dropped when the user fixes the number of epochs)
SCHEDULE_KEYS = (
    "train.scheduler",
    "train.time_budget_minutes",
    "train.epochs",
    "train.iters_per_epoch",
)


__all__ = [
    "DEFAULT_BUDGET_MINUTES",
    "Decision",
    "Plan",
    "SCHEDULE_KEYS",
    "choose_width",
    "make_plan",
    "plan_batch",
    "plan_folds",
    "plan_lr",
    "plan_depth",
    "plan_patch",
    "plan_scale",
]

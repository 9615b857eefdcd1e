"""The post-processing a run keeps: each candidate step tried on the validation images, kept only
where it improves the run's validation metric (nnU-Net chooses its keep-largest-component step
this way).

The metric is the Dice the run selects ``best.pt`` by, computed as the trainer's validation does
(per class, averaged over cases with undefined scores left out, then over the classes): the Dice
of class ``k`` for ``train.select_metric: val_dice_c<k>``, else the mean foreground Dice
(:func:`dice_classes`). Candidates are tried greedily, each on top of the steps kept before it,
class by class (foreground classes only) in the order of
:data:`~unetkit.inference.postprocess.STEP_NAMES`:

* ``remove_small``: objects under a size taken from the truth's own objects of the class
  (:data:`SIZE_RULES`: fractions of its smallest and small percentiles); the best size is kept
  when it raises the Dice by at least ``margin``. Where the truth names its objects (instance ids
  of a two-class problem: nuclei, cells), it is judged as the split is, on object F1 first: specks
  of a few pixels barely move the Dice but each is a false object, and whether they are removed
  decided object F1 by ±0.1 between two runs of one set (kept for its Dice alone only when the
  object F1 does not fall);
  where no size is kept so, objects under a quarter of the smallest true object are removed when
  that costs neither Dice nor object F1, changing nothing included (:data:`GUARD_RULE`);
* ``fill_holes`` and ``keep_largest``: kept when they raise the Dice by at least ``margin``;
* ``split_touching`` (a watershed gap between touching objects, heights :data:`SPLIT_HEIGHTS`):
  judged on the object F1 at IoU 0.5 of the class's connected components against the truth's
  objects (its instance ids where the masks are instance masks, else its connected components),
  pooled over the cases; kept when the F1 rises by at least ``margin`` and the Dice drops by no
  more than ``dice_tolerance`` (the gap costs a few pixels).

Where the validation masks leave pixels unlabelled (:attr:`~unetkit.data.labels.LabelMap.ignore`),
the Dice counts the labelled pixels only, the steps judged on objects (the split, the
removal judged on object F1 and the guard) are not tried (the truth's objects there are
fragments of the real ones), and a step that changes any unlabelled pixel is not kept: nothing
judges what it does there (a removal that deletes one false object on labelled background
would delete every real object nobody outlined).

A candidate that changes no pixel is not kept (it cannot improve anything), the guarding removal
of specks aside. Every candidate tried
is a row of :attr:`PostProcessingChoice.candidates`, for the run's ``postprocess.json``.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from ..errors import DataError
from .metrics import confusion_matrix, overlap_scores
from .objects import label_objects, match_objects

#: Least gain of the metric for a step to be kept (a no-op never gains).
MARGIN = 0.001
#: How much Dice a step judged on objects may cost when it raises object F1: the watershed split
#: (it draws background gaps) and, where the truth has instance ids, the removal of small objects.
DICE_TOLERANCE = 0.005
#: ``(percentile, fraction)``: the ``remove_small`` sizes tried, as a fraction of a percentile of the
#: truth's object sizes of the class (the smallest object, the 5th and 10th percentiles).
SIZE_RULES = ((0, 0.5), (0, 1.0), (5, 1.0), (10, 1.0))
#: ``(percentile, fraction)`` of the guard against specks: where no ``remove_small`` size is
#: kept, objects under a quarter of the smallest true object are removed when that costs neither
#: Dice nor object F1 on the validation images, changing nothing included. Such objects are no
#: object of this data's, and images unlike the validation ones have them: a nuclei model trained
#: without empty fields predicted 376–405 one- and two-pixel objects in each noise-only field; its
#: validation images, all with nuclei, had none to remove, so the search kept no removal.
GUARD_RULE = ((0, 0.25),)
GUARD_NOTE = "kept: costs nothing here, and removes specks from images unlike these"
#: The h-maxima the watershed split tries (distance-transform seeds, pixels), the cautious one
#: first: on a tie the larger h (fewer splits) wins. Each costs one watershed per validation image
#: (≈ 0.4 s for a 512² ISBI image on a 2-core CPU), the largest share of the choice's time.
SPLIT_HEIGHTS = (4.0, 2.0)


def dice_classes(select_metric: str, num_classes: int) -> tuple[str, list[int]]:
    """The metric's name and the classes whose mean Dice judges a post-processing.

    Args:
        select_metric: ``train.select_metric`` (``val_dice_c<k>`` → class ``k``; any other name →
            the foreground classes ``1 … K−1``).
        num_classes: K.

    Example:
        >>> dice_classes("val_dice_c0", 2), dice_classes("val_loss", 3)
        (('val_dice_c0', [0]), ('val_dice', [1, 2]))
    """
    m = re.fullmatch(r"val_dice_c(\d+)", select_metric)
    if m and int(m[1]) < num_classes:
        return select_metric, [int(m[1])]
    return "val_dice", list(range(1, num_classes)) if num_classes > 1 else [0]


def held_classes(truths: Sequence[np.ndarray], classes: Sequence[int]) -> list[int]:
    """The ``classes`` some truth holds (all of ``classes`` where none does). Validation cannot
    judge a class that no validation image has: its Dice is 0 wherever it is predicted and
    undefined elsewhere, so a mean with it prefers the model, or the clean-up, that never
    predicts it (the trainer and the post-processing choice leave such classes out)."""
    held = [c for c in classes if any((np.asarray(t) == c).any() for t in truths)]
    return held or list(classes)


def mean_dice(
    preds: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    num_classes: int,
    classes: Sequence[int],
) -> float:
    """The validation Dice as the trainer computes it: per class the mean over the cases where it is
    defined, then the mean over ``classes`` (NaN when none is defined). Unlabelled truth pixels
    (negative: :data:`~unetkit.data.labels.IGNORE_INDEX`) are left out."""
    per_case = np.stack(
        [
            overlap_scores(confusion_matrix(p, t, num_classes, mask=_labelled(t)))["dice"]
            for p, t in zip(preds, truths)
        ]
    )[:, list(classes)]
    with warnings.catch_warnings():  # "mean of empty slice": an undefined class is NaN by policy
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(np.nanmean(per_case, axis=0)))


#: the note of a candidate not kept because it changes unlabelled pixels
UNJUDGED_NOTE = "changes unlabelled pixels, which nothing judges"


def _changes_unlabelled(
    outputs: Sequence[np.ndarray], before: Sequence[np.ndarray], truths: Sequence[np.ndarray]
) -> bool:
    """Whether a step changed a pixel the truth leaves unlabelled, in any case."""
    return any(((a != b) & (np.asarray(t) < 0)).any() for a, b, t in zip(outputs, before, truths))


def _labelled(truth: np.ndarray) -> Optional[np.ndarray]:
    """Where ``truth`` is labelled (``None``: everywhere)."""
    truth = np.asarray(truth)
    return truth >= 0 if truth.dtype.kind == "i" and truth.size and truth.min() < 0 else None


def object_f1(
    preds: Sequence[np.ndarray],
    truth_objects: Sequence[np.ndarray],
    label: int,
    connectivity: int = 1,
) -> float:
    """Object F1 at IoU 0.5 of the connected components of class ``label``, pooled over the cases
    (matches, false and missed objects summed before the ratio; NaN when there is no object)."""
    tp = fp = fn = 0
    for pred, truth in zip(preds, truth_objects):
        m = match_objects(truth, label_objects(pred == label, connectivity), (0.5,))
        tp, fp, fn = tp + int(m.tp[0]), fp + int(m.fp[0]), fn + int(m.fn[0])
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")


@dataclass(frozen=True)
class PostProcessingChoice:
    """What :func:`choose_postprocessing` returns.

    Attributes:
        postprocessing: the chosen :class:`~unetkit.inference.postprocess.PostProcessing`.
        metric: the metric's name (``val_dice`` or ``val_dice_c<k>``).
        baseline: the metric of the raw argmax; ``final``: with the chosen post-processing.
        candidates: one row per candidate tried: ``step`` (the step's ``to_dict()``), ``describe``,
            ``dice`` (the metric with it), ``obj_f1`` (candidates judged on objects: object F1
            with it, and ``obj_f1_before``), ``before`` (the metric before it), ``kept`` and a ``note``.
        stopped: why not every candidate was tried (``""`` when all were).
        unit, dims: the voxel sizes' unit and the images' dimensionality (the sizes' words).
    """

    postprocessing: object
    metric: str
    baseline: float
    final: float
    candidates: tuple = ()
    stopped: str = ""
    #: the unit of the validation images' voxel sizes and their dimensionality, for the words
    unit: Optional[str] = None
    dims: Optional[int] = None

    def describe(self) -> list[str]:
        """Log lines: one per kept step (the metric before → after), or one saying nothing helped."""
        kept = [row for row in self.candidates if row["kept"]]
        lines = [
            f"post-processing: kept '{row['describe']}' ({self.metric} {row['before']:.4f} → "
            f"{row['dice']:.4f}"
            + (
                f", object F1 {row['obj_f1_before']:.3f} → {row['obj_f1']:.3f})"
                if "obj_f1" in row
                else ")"
            )
            + (": it costs nothing here and removes specks" if row["note"] == GUARD_NOTE else "")
            for row in kept
        ]
        if not kept and not self.candidates and self.stopped:
            return [f"post-processing: none chosen, no candidate tried ({self.stopped})"]
        if not kept:
            lines.append(
                f"post-processing: none kept ({len(self.candidates)} candidates tried, none raised "
                f"{self.metric} {self.baseline:.4f} by {MARGIN:g})"
            )
        if self.stopped:
            lines.append(f"post-processing: stopped early ({self.stopped})")
        return lines

    def to_dict(self) -> dict:
        return {
            "postprocess": self.postprocessing.to_dict(),
            "describe": self.postprocessing.describe(self.unit, self.dims),
            "metric": self.metric,
            "baseline": self.baseline,
            "final": self.final,
            "stopped": self.stopped,
            "candidates": list(self.candidates),
        }


def _size_candidates(
    truths: Sequence[np.ndarray], label: int, connectivity: int, rules=SIZE_RULES
) -> list[int]:
    sizes = np.concatenate(
        [np.bincount(label_objects(t == label, connectivity).ravel())[1:] for t in truths]
    )
    if sizes.size == 0:
        return []
    out = {int(round(f * np.percentile(sizes, p))) for p, f in rules}
    return sorted(s for s in out if s >= 2)


def _remove_small_steps(
    truths: Sequence[np.ndarray],
    label: int,
    connectivity: int,
    spacings: Optional[Sequence[Sequence[float]]],
    rules=SIZE_RULES,
) -> list:
    """The ``remove_small`` steps tried for class ``label``: sizes from the truth's objects
    (``rules``, :data:`SIZE_RULES` or :data:`GUARD_RULE`), in pixels, or, where every validation
    image's spacing is known, as volumes
    (:attr:`~unetkit.inference.postprocess.PostStep.min_volume`), so that images of another voxel
    size get the same physical threshold."""
    from ..inference.postprocess import PostStep

    if not spacings:
        return [
            PostStep("remove_small", label, min_size=s)
            for s in _size_candidates(truths, label, connectivity, rules)
        ]
    voxels = [float(np.prod(sp)) for sp in spacings]
    volumes = np.concatenate(
        [
            np.bincount(label_objects(t == label, connectivity).ravel())[1:] * v
            for t, v in zip(truths, voxels)
        ]
    )
    if volumes.size == 0:
        return []
    typical = float(np.median(voxels))
    out = {float(f * np.percentile(volumes, p)) for p, f in rules}
    return [
        PostStep("remove_small", label, min_size=round(v / typical), min_volume=v)
        for v in sorted(out)
        if round(v / typical) >= 2
    ]


def _known_spacings(
    spacings: Optional[Sequence[Optional[Sequence[float]]]], truths: Sequence[np.ndarray]
) -> Optional[list]:
    """Every case's voxel size, when each is known and fits its truth's dimensions, else ``None``
    (then sizes are pixel counts)."""
    if spacings is None or len(spacings) != len(truths):
        return None
    out = []
    for sp, t in zip(spacings, truths):
        if sp is None or len(sp) != t.ndim or not all(float(v) > 0 for v in sp):
            return None
        out.append([float(v) for v in sp])
    return out


def choose_postprocessing(
    predictions: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    num_classes: int,
    *,
    select_metric: str = "val_dice",
    truth_instances: Optional[Sequence[Optional[np.ndarray]]] = None,
    connectivity: int = 1,
    margin: float = MARGIN,
    dice_tolerance: float = DICE_TOLERANCE,
    split_heights: Sequence[float] = SPLIT_HEIGHTS,
    out_of_time: Optional[Callable[[], bool]] = None,
    spacings: Optional[Sequence[Optional[Sequence[float]]]] = None,
    unit: Optional[str] = None,
) -> PostProcessingChoice:
    """Choose the post-processing of a model on its validation cases (module docstring).

    Args:
        predictions: per case ``(*spatial)`` integer class indices, or ``(K, *spatial)`` float
            probabilities (turned into indices by argmax).
        truths: per case the ``(*spatial)`` truth class indices.
        num_classes: K.
        select_metric: ``train.select_metric``; :func:`dice_classes` turns it into the Dice judged.
        truth_instances: per case the truth's instance ids (``None`` for a case, or for all: the
            truth's connected components are its objects). Used for the foreground class of a
            two-class problem.
        connectivity: what counts as one object (1: face neighbours).
        margin: least gain for a step to be kept; dice_tolerance: the Dice a step judged on
            objects (the split; the removal where the truth has instance ids) may cost.
        split_heights: the watershed h-maxima tried.
        out_of_time: called before each candidate; ``True`` stops the search (the best of the
            candidates tried is still kept; :attr:`PostProcessingChoice.stopped` says so).
        spacings: per case its voxel size (``None`` where unknown): with every one known, the
            small-object sizes are volumes, each case judged at its own voxel size.
        unit: the unit of those voxel sizes (``"um"``, ``"mm"``), for the sizes' descriptions.

    Returns:
        A :class:`PostProcessingChoice`.

    Raises:
        DataError: no cases, or a prediction and its truth differ in shape.
    """
    from ..inference.postprocess import PostProcessing, PostStep, argmax

    preds = [np.asarray(p) for p in predictions]
    preds = [argmax(p) if p.dtype.kind == "f" else p for p in preds]
    truths = [np.asarray(t) for t in truths]
    if not preds or len(preds) != len(truths):
        raise DataError(
            f"choosing a post-processing needs validation cases: got {len(preds)} predictions "
            f"and {len(truths)} truths"
        )
    for i, (p, t) in enumerate(zip(preds, truths)):
        if p.shape != t.shape:
            raise DataError(f"validation case {i}: prediction shape {p.shape} ≠ truth {t.shape}")
    metric, judged = dice_classes(select_metric, num_classes)
    if metric == "val_dice":  # as the trainer's val_dice: classes no validation image has are out
        judged = held_classes(truths, judged)
    instances = list(truth_instances) if truth_instances is not None else [None] * len(truths)

    chosen = PostProcessing(connectivity=connectivity)
    current = preds
    dice = baseline = mean_dice(current, truths, num_classes, judged)
    rows: list[dict] = []
    stopped = ""

    known = _known_spacings(spacings, truths)
    per_case = known if known is not None else [None] * len(truths)

    def trial(step: PostStep) -> tuple[list[np.ndarray], bool]:
        out = [step.apply(p, connectivity, sp) for p, sp in zip(current, per_case)]
        return out, any(not np.array_equal(a, b) for a, b in zip(out, current))

    def row(step, value, kept, note="", **more) -> dict:
        return {
            "step": step.to_dict(),
            "describe": step.describe(unit, truths[0].ndim),
            "dice": value,
            "before": dice,
            **more,
            "kept": kept,
            "note": note,
        }

    # a class no validation truth holds cannot be judged: clean-ups of it are not tried
    present = [c for c in range(1, num_classes) if any((t == c).any() for t in truths)]
    plan: list[tuple[str, int, list[PostStep]]] = []
    for name in ("remove_small", "fill_holes", "keep_largest", "split_touching"):
        for c in present:
            if name == "remove_small":
                steps = _remove_small_steps(truths, c, connectivity, known)
            elif name == "split_touching":
                steps = [PostStep(name, c, h=h) for h in split_heights]
            else:
                steps = [PostStep(name, c)]
            plan.append((name, c, steps))

    # partial truth (unlabelled pixels): its objects are fragments; no step judged on objects
    partial = any(_labelled(t) is not None for t in truths)
    if partial:
        plan = [(name, c, steps) for name, c, steps in plan if name != "split_touching"]
    # the truth names its objects: object F1 judges removing specks as it judges splitting
    by_objects = num_classes == 2 and any(inst is not None for inst in instances) and not partial
    for name, c, steps in plan:
        if stopped:
            break
        judge_f1 = name == "split_touching" or (name == "remove_small" and by_objects)
        if judge_f1:
            objects = [
                inst
                if inst is not None and num_classes == 2
                else label_objects(t == c, connectivity)
                for t, inst in zip(truths, instances)
            ]
            f1_before = object_f1(current, objects, c, connectivity)
        best = None  # (score, outputs, dice, row index)
        for step in steps:
            if out_of_time is not None and out_of_time():
                stopped = "time budget"
                break
            out, changed = trial(step)
            value = mean_dice(out, truths, num_classes, judged) if changed else dice
            unjudged = partial and changed and _changes_unlabelled(out, current, truths)
            if judge_f1:
                f1 = object_f1(out, objects, c, connectivity) if changed else f1_before
                extra = {"obj_f1": f1, "obj_f1_before": f1_before}
                # a removal may also be kept for its Dice, as long as no object is lost
                better = f1 >= f1_before + margin or (
                    name == "remove_small" and value >= dice + margin and f1 >= f1_before
                )
                ok = changed and value >= dice - dice_tolerance and better
                score = (f1, value)
            else:
                extra = {}
                ok = changed and value >= dice + margin and not unjudged
                score = (value,)
            note = "no change" if not changed else UNJUDGED_NOTE if unjudged else ""
            rows.append(row(step, value, False, note, **extra))
            if ok and (best is None or score > best[0]):
                best = (score, out, value, len(rows) - 1)
        if best is None and name == "remove_small" and not stopped and not partial:
            for step in _remove_small_steps(truths, c, connectivity, known, GUARD_RULE):
                if out_of_time is not None and out_of_time():
                    stopped = "time budget"
                    break
                out, changed = trial(step)  # the guard against specks (GUARD_RULE)
                value = mean_dice(out, truths, num_classes, judged) if changed else dice
                f1 = None
                if judge_f1:
                    f1 = object_f1(out, objects, c, connectivity) if changed else f1_before
                # free: nothing judged falls, nor the class's own Dice (judged or not)
                own = not changed or mean_dice(out, truths, num_classes, [c]) >= mean_dice(
                    current, truths, num_classes, [c]
                )
                free = value >= dice and own and (f1 is None or f1 >= f1_before)
                extra = {"obj_f1": f1, "obj_f1_before": f1_before} if judge_f1 else {}
                rows.append(row(step, value, False, GUARD_NOTE if free else "", **extra))
                if free:
                    best = (None, out, value, len(rows) - 1)
        if best is not None:
            _, current, dice, index = best
            rows[index]["kept"] = True
            chosen = chosen.then(PostStep.from_dict(rows[index]["step"]))
    return PostProcessingChoice(
        chosen, metric, baseline, dice, tuple(rows), stopped, unit, truths[0].ndim
    )


__all__ = [
    "DICE_TOLERANCE",
    "GUARD_RULE",
    "MARGIN",
    "SIZE_RULES",
    "SPLIT_HEIGHTS",
    "PostProcessingChoice",
    "choose_postprocessing",
    "dice_classes",
    "held_classes",
    "mean_dice",
    "object_f1",
]

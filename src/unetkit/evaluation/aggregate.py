"""Aggregate statistics of per-case scores (the per-class tables of ``summary.json``) that say what
they left out.

Every statistic is computed over the **defined** values only; NaN (undefined: e.g. Dice of a class
absent from truth and prediction) is counted in ``undefined``, never turned into 0 or 1. Distance
metrics of a case where exactly one side is empty hold the image-diagonal penalty (see
:mod:`unetkit.evaluation.boundary`), and object scores there are 0 (precision where nothing is
predicted, recall where the truth has no object: :data:`~unetkit.evaluation.objects.EMPTY_POLICY`);
those values *are* included and counted in ``penalized``, so a missed (or a false) object moves
the mean instead of vanishing from it. ``std`` is the population
standard deviation (``ddof=0``, as nnU-Net and MONAI report).
"""

from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence

import numpy as np

from .boundary import DISTANCE_METRICS
from .objects import OBJECT_METRICS

STAT_KEYS = ("mean", "median", "std", "min", "max", "n", "undefined", "penalized")


def describe(values: Iterable[float], penalized: int = 0) -> dict[str, float]:
    """``{"mean", "median", "std", "min", "max", "n", "undefined", "penalized"}`` of ``values``.

    Args:
        values: scores, NaN = undefined (left out and counted); +inf is kept (and makes the mean
            inf: nothing is dropped silently).
        penalized: how many of the values are empty-case penalties (reported as given).

    Example:
        >>> describe([1.0, float("nan"), 0.5])["mean"], describe([1.0, float("nan")])["undefined"]
        (0.75, 1)
    """
    arr = np.asarray(list(values), dtype=np.float64)
    defined = arr[~np.isnan(arr)]
    nan = float("nan")
    if defined.size == 0:
        stats = {"mean": nan, "median": nan, "std": nan, "min": nan, "max": nan}
    else:
        with np.errstate(invalid="ignore"):
            stats = {
                "mean": float(defined.mean()),
                "median": float(np.median(defined)),
                "std": float(defined.std()),
                "min": float(defined.min()),
                "max": float(defined.max()),
            }
    return {
        **stats,
        "n": int(defined.size),
        "undefined": int(arr.size - defined.size),
        "penalized": int(penalized),
    }


#: the object scores the empty policy sets to 0 where one side has no object (counts are no score)
PENALIZED_OBJECT_METRICS = tuple(m for m in OBJECT_METRICS if not m.startswith("n_"))


def _penalized(rows: Sequence[dict], metric: str) -> int:
    if metric not in DISTANCE_METRICS and metric not in PENALIZED_OBJECT_METRICS:
        return 0
    return sum(1 for r in rows if (r["truth_pixels"] == 0) != (r["pred_pixels"] == 0))


def summarize_rows(
    rows: Sequence[dict],
    metrics: Sequence[str],
    classes: Sequence[str],
    case_metrics: Sequence[str] = (),
) -> dict:
    """Per-class statistics, the mean over classes and the case-level statistics.

    Args:
        rows: one dict per (case, class) with ``"case"``, ``"class"``, ``"truth_pixels"``,
            ``"pred_pixels"`` and a value per metric.
        metrics: the per-class metric names to summarise.
        classes: class names, in order.
        case_metrics: metrics with one value per case (repeated in each of its rows), e.g.
            ``"pixel_error"``.

    Returns:
        ``{"per_class": {class: {metric: stats}}, "mean_over_classes": {metric: float},
        "case": {metric: stats}}``: ``mean_over_classes`` is the mean of the per-class means that
        are defined (macro average; equal to the class mean for a binary task).
    """
    per_class: dict = {}
    for name in classes:
        sel = [r for r in rows if r["class"] == name]
        per_class[name] = {m: describe([r[m] for r in sel], _penalized(sel, m)) for m in metrics}
    macro = {}
    for m in metrics:
        means = [
            per_class[c][m]["mean"] for c in classes if not math.isnan(per_class[c][m]["mean"])
        ]
        macro[m] = float(np.mean(means)) if means else float("nan")
    case: dict = {}
    for m in case_metrics:
        seen: dict = {}
        for r in rows:
            seen.setdefault(r["case"], r[m])
        case[m] = describe(seen.values())
    return {"per_class": per_class, "mean_over_classes": macro, "case": case}


def pooled_objects(rows: Sequence[dict], classes: Sequence[str]) -> dict:
    """Per class, the object matches at IoU 0.5 pooled over the images (StarDist's
    ``matching_dataset(by_image=False)``): precision, recall and F1 of the summed true positives,
    true and predicted objects, and the objects predicted in images without true ones. The
    per-image means weigh a blank field of 6 false objects and one of 800 alike (F1 0 each);
    pooled, the 800 count. ``{}`` where the object metrics were not computed."""
    out: dict = {}
    for name in classes:
        sel = [r for r in rows if r["class"] == name and "n_true" in r and "obj_recall" in r]
        if not sel:
            continue
        tp = sum(int(round(r["obj_recall"] * r["n_true"])) for r in sel if r["n_true"] > 0)
        n_true = int(sum(r["n_true"] for r in sel))
        n_pred = int(sum(r["n_pred"] for r in sel))
        empty = [r for r in sel if r["n_true"] == 0]
        out[name] = {
            "images": len(sel),
            "tp": tp,
            "n_true": n_true,
            "n_pred": n_pred,
            "obj_precision": tp / n_pred if n_pred else float("nan"),
            "obj_recall": tp / n_true if n_true else float("nan"),
            "obj_f1": 2 * tp / (n_true + n_pred) if n_true + n_pred else float("nan"),
            "images_without_objects": len(empty),
            "predicted_there": int(sum(r["n_pred"] for r in empty)),
        }
    return out


def case_score(rows: Sequence[dict], metric: str = "dice") -> dict[str, float]:
    """Per case, the mean of ``metric`` over its classes (NaN when none is defined)."""
    out: dict[str, list] = {}
    for r in rows:
        out.setdefault(r["case"], []).append(r.get(metric, float("nan")))
    return {
        case: (float(np.nanmean(v)) if not all(math.isnan(x) for x in v) else float("nan"))
        for case, v in out.items()
    }


def best_and_worst(scores: dict[str, float]) -> tuple[Optional[str], Optional[str]]:
    """The cases with the highest and the lowest defined score (``None`` when none is defined)."""
    defined = [(v, c) for c, v in scores.items() if not math.isnan(v)]
    if not defined:
        return None, None
    best = max(defined, key=lambda t: t[0])[1]
    worst = min(defined, key=lambda t: t[0])[1]
    return best, worst

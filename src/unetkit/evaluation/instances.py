"""Instance predictions (one id per cell) scored, and their separation tuned on validation images.

:func:`instance_scores` is :func:`~unetkit.evaluation.evaluate.evaluate_case` with the instance ids
as the regions, plus the merged / split counts of :func:`~unetkit.evaluation.objects.merge_split_counts`.
:func:`tune_separation` picks the settings of
:func:`~unetkit.inference.postprocess.instances_from_probabilities` (seed threshold, expansion) with
the best mean AP over IoU 0.5:0.95 on validation cases; ``unetkit demo`` uses both.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from ..errors import DataError
from .evaluate import evaluate_case
from .objects import OBJECT_METRICS, merge_split_counts

#: The keys of :func:`instance_scores` (besides ``merged`` and ``split``), in report order.
INSTANCE_METRICS = ("dice", "iou", "pixel_error", "rand_error", *OBJECT_METRICS)
#: The seed thresholds and expansions (pixels) :func:`tune_separation` tries by default.
SEED_THRESHOLDS = (0.1, 0.2, 0.3, 0.5)
EXPANSIONS = (0, 1, 2)


def instance_scores(
    pred_instances: np.ndarray, truth_instances: np.ndarray, merges: bool = True
) -> dict[str, float]:
    """Pixel, connectomics and object metrics of an instance prediction.

    Args:
        pred_instances, truth_instances: ``(*spatial)`` instance ids (0 = background).
        merges: also count merged and split truth objects.

    Returns:
        ``dice``, ``iou``, ``pixel_error`` (cell vs background), ``rand_error``, ``obj_f1`` /
        ``obj_precision`` / ``obj_recall`` (IoU ≥ 0.5), ``ap50``, ``ap75``, ``map`` (AP over IoU
        0.5:0.95), ``n_true``, ``n_pred`` as floats (:data:`INSTANCE_METRICS`); plus ``merged`` and
        ``split`` (ints, :func:`~unetkit.evaluation.objects.merge_split_counts`) when ``merges``.
    """
    truth_instances = np.asarray(truth_instances).astype(np.int64)
    pred_instances = np.asarray(pred_instances).astype(np.int64)
    row = evaluate_case(
        (pred_instances > 0).astype(np.int64),
        (truth_instances > 0).astype(np.int64),
        2,
        metrics=["overlap", "connectomics", "objects"],
        truth_instances=truth_instances,
        pred_instances=pred_instances,
    )[0]
    out = {k: float(row[k]) for k in INSTANCE_METRICS}
    if merges:
        out.update(merge_split_counts(truth_instances, pred_instances))
    return out


def tune_separation(
    cases: Iterable[tuple[np.ndarray, np.ndarray]],
    seed_thresholds: Sequence[float] = SEED_THRESHOLDS,
    expansions: Sequence[int] = EXPANSIONS,
) -> dict:
    """The seed threshold and expansion of
    :func:`~unetkit.inference.postprocess.instances_from_probabilities` that maximise the mean AP
    over IoU 0.5:0.95 on ``cases`` (validation images: never the image that is evaluated).

    Args:
        cases: ``(probs, truth)`` pairs: ``(2, *spatial)`` predicted probabilities (background,
            cell) and the ``(*spatial)`` truth instance ids.
        seed_thresholds, expansions: the grid tried (on a tie the first in grid order wins).

    Returns:
        ``{"seed_threshold", "expand", "val_map", "grid": {"<threshold>/<expand>": mean AP}}``.

    Raises:
        DataError: no cases.
    """
    from ..inference.postprocess import instances_from_probabilities

    cases = list(cases)
    if not cases:
        raise DataError("no validation cases to tune the instance separation on")
    grid = {}
    for thr in seed_thresholds:
        for grow in expansions:
            scores = [
                instance_scores(instances_from_probabilities(probs, thr, grow), truth, False)["map"]
                for probs, truth in cases
            ]
            grid[f"{thr:g}/{grow}"] = float(np.nanmean(scores))
    best = max(grid, key=lambda k: grid[k])
    thr, grow = best.split("/")
    return {"seed_threshold": float(thr), "expand": int(grow), "val_map": grid[best], "grid": grid}


__all__ = [
    "EXPANSIONS",
    "INSTANCE_METRICS",
    "SEED_THRESHOLDS",
    "instance_scores",
    "tune_separation",
]

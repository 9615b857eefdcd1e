"""Metrics (per case, per class) and reports (CSV + JSON + Markdown + plots).

Overlap (:mod:`.metrics`), boundary distances (:mod:`.boundary`), connectomics Rand/VOI
(:mod:`.connectomics`), object matching (:mod:`.objects`), ROC AUC (:mod:`.roc`), each with a
documented empty-truth / empty-prediction policy (:data:`POLICIES`); :func:`evaluate_folders` scores
a prediction folder against a truth folder and writes the report (:mod:`.report`), with the
statistics of :mod:`.aggregate`. Instance predictions: :func:`instance_scores` and
:func:`tune_separation` (:mod:`.instances`).
"""

from .aggregate import describe
from .boundary import boundary_scores, image_diagonal, surface_distances
from .connectomics import adapted_rand, connectomics_scores, variation_of_information
from .evaluate import (
    METRIC_GROUPS,
    POLICIES,
    EvaluationResult,
    evaluate_case,
    evaluate_folders,
    resolve_metrics,
)
from .instances import instance_scores, tune_separation
from .metrics import EMPTY_POLICY, confusion_matrix, overlap_scores, summarize_scores
from .objects import (
    IOU_THRESHOLDS,
    label_objects,
    match_objects,
    merge_split_counts,
    object_scores,
)
from .roc import roc_auc, roc_curve

__all__ = [
    "EMPTY_POLICY",
    "IOU_THRESHOLDS",
    "METRIC_GROUPS",
    "POLICIES",
    "EvaluationResult",
    "adapted_rand",
    "boundary_scores",
    "confusion_matrix",
    "connectomics_scores",
    "describe",
    "evaluate_case",
    "evaluate_folders",
    "image_diagonal",
    "instance_scores",
    "label_objects",
    "match_objects",
    "merge_split_counts",
    "object_scores",
    "overlap_scores",
    "resolve_metrics",
    "roc_auc",
    "roc_curve",
    "summarize_scores",
    "surface_distances",
    "tune_separation",
    "variation_of_information",
]

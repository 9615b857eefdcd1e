"""Metrics and reports (per case, per class)."""

from .metrics import EMPTY_POLICY, confusion_matrix, overlap_scores, summarize_scores

__all__ = ["EMPTY_POLICY", "confusion_matrix", "overlap_scores", "summarize_scores"]

"""The overlap (contingency) table of two label images, shared by the object and connectomics metrics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class Contingency:
    """Sparse overlap counts of two label images.

    Attributes:
        truth_ids: ``(R,)`` the distinct truth labels (sorted, background 0 included if present).
        pred_ids: ``(S,)`` the distinct predicted labels.
        rows, cols, counts: ``(M,)`` each: the pixel count ``counts[m]`` shared by truth label
            ``truth_ids[rows[m]]`` and predicted label ``pred_ids[cols[m]]`` (non-zero entries only).
        truth_sizes: ``(R,)`` pixels per truth label; ``pred_sizes``: ``(S,)`` per predicted label.
    """

    truth_ids: np.ndarray
    pred_ids: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    counts: np.ndarray
    truth_sizes: np.ndarray
    pred_sizes: np.ndarray


def _compact(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids, index image): ``labels == ids[index]`` with ``index`` in ``0 … len(ids)-1``."""
    lo, hi = (int(labels.min()), int(labels.max())) if labels.size else (0, 0)
    if lo >= 0 and hi < max(4 * labels.size, 1024):  # small non-negative ids: a bincount is enough
        present = np.flatnonzero(np.bincount(labels, minlength=hi + 1))
        lut = np.zeros(hi + 1, dtype=np.int64)
        lut[present] = np.arange(present.size)
        return present, lut[labels]
    ids, index = np.unique(labels, return_inverse=True)
    return ids, index.reshape(-1)


def contingency(truth: np.ndarray, pred: np.ndarray) -> Contingency:
    """Overlap counts of every (truth label, predicted label) pair that shares a pixel.

    Args:
        truth, pred: ``(*spatial)`` integer label images of one shape.

    Raises:
        ConfigError: shapes differ or the images are not integer.
    """
    truth = np.asarray(truth)
    pred = np.asarray(pred)
    if truth.shape != pred.shape:
        raise ConfigError(f"prediction shape {pred.shape} differs from truth shape {truth.shape}")
    for name, a in (("truth", truth), ("prediction", pred)):
        if a.dtype.kind not in "biu":
            raise ConfigError(f"{name} labels must be integers, got dtype {a.dtype}")
    t_ids, t_idx = _compact(truth.reshape(-1).astype(np.int64))
    p_ids, p_idx = _compact(pred.reshape(-1).astype(np.int64))
    key = t_idx * max(p_ids.size, 1) + p_idx
    if t_ids.size * p_ids.size <= max(4 * key.size, 1 << 16):
        table = np.bincount(key, minlength=t_ids.size * p_ids.size)
        keys = np.flatnonzero(table)
        counts = table[keys]
    else:
        keys, counts = np.unique(key, return_counts=True)
    rows, cols = np.divmod(keys, max(p_ids.size, 1))
    return Contingency(
        t_ids,
        p_ids,
        rows,
        cols,
        counts.astype(np.int64),
        np.bincount(t_idx, minlength=t_ids.size),
        np.bincount(p_idx, minlength=p_ids.size),
    )

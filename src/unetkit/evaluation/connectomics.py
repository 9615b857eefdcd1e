"""Connectomics metrics (ISBI 2012 / SNEMI3D): adapted Rand error and variation of information.

Both compare two *region* label images: the cells. For a semantic mask the cells are the connected
components of the foreground (ISBI 2012: value 255 = cell interior, 0 = membrane); instance masks
give them directly. Scoring is **foreground-restricted**, as in the challenges:

* pixels whose *truth* label is 0 (membrane / background) are not scored;
* a scored pixel that the *prediction* labels 0 (predicted membrane inside a true cell) is, by
  default, its **own singleton segment** (``pred_background="singletons"``, the convention of the
  SNEMI3D/CREMI ``adapted_rand``): it can only cause splits. With ``"segment"`` all such pixels
  form one segment, which is what scikit-image's ``adapted_rand_error`` and
  ``variation_of_information`` do on the raw label images; that convention gives an empty
  prediction of a one-cell truth a perfect score, hence not the default.

With ``n_ij`` the pixels shared by truth cell ``i`` and predicted segment ``j`` (scored pixels only),
``a_i = Σ_j n_ij``, ``b_j = Σ_i n_ij`` and pairs of distinct pixels counted as in scikit-image:

* Rand precision ``P = Σ n_ij(n_ij−1) / Σ b_j(b_j−1)`` (pairs together in the prediction that are
  together in the truth), Rand recall ``R = Σ n_ij(n_ij−1) / Σ a_i(a_i−1)``, **adapted Rand error**
  ``1 − 2PR/(P+R)``. (scikit-image returns the same error but swaps the names of its precision and
  recall.)
* **VOI split** ``H(pred | truth)`` (over-segmentation), **VOI merge** ``H(truth | pred)``
  (under-segmentation), in bits, and ``voi`` = their sum.

Empty policy (:data:`EMPTY_POLICY`): no scored pixel (the truth has no cell) → every score NaN;
no pair of scored pixels in one truth cell nor in one predicted segment → Rand scores NaN; Rand
precision is 0 when the prediction puts no pair together but the truth does (recall 0 likewise).
An empty prediction of a non-empty truth scores a Rand error of 1.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .contingency import contingency

EMPTY_POLICY = (
    "Rand/VOI: pixels of truth label 0 are not scored; a truth with no cell gives NaN (undefined); "
    "predicted background inside a true cell counts as singleton segments, so an empty prediction "
    "scores a Rand error of 1"
)

CONNECTOMICS_METRICS = (
    "rand_error",
    "rand_precision",
    "rand_recall",
    "voi_split",
    "voi_merge",
    "voi",
)
PRED_BACKGROUND = ("singletons", "segment")


def _table(truth: np.ndarray, pred: np.ndarray, pred_background: str):
    """Scored overlap counts: (n_ij of multi-pixel segments, truth sizes a_i, segment sizes b_j,
    singleton counts per truth row, n)."""
    if pred_background not in PRED_BACKGROUND:
        raise ConfigError(
            f"pred_background must be one of {', '.join(PRED_BACKGROUND)}, got {pred_background!r}"
        )
    c = contingency(truth, pred)
    keep = c.truth_ids[c.rows] != 0
    rows, cols, n_ij = c.rows[keep], c.cols[keep], c.counts[keep].astype(np.float64)
    a = np.bincount(rows, weights=n_ij, minlength=c.truth_ids.size)
    singles = np.zeros_like(a)
    if pred_background == "singletons":
        bg = c.pred_ids[cols] == 0
        singles = np.bincount(rows[bg], weights=n_ij[bg], minlength=c.truth_ids.size)
        rows, cols, n_ij = rows[~bg], cols[~bg], n_ij[~bg]
    b = np.bincount(cols, weights=n_ij, minlength=c.pred_ids.size)
    return n_ij, rows, cols, a, b, singles, float(a.sum())


def adapted_rand(
    truth: np.ndarray, pred: np.ndarray, pred_background: str = "singletons"
) -> dict[str, float]:
    """Adapted Rand error, precision and recall (see the module doc).

    Args:
        truth, pred: ``(*spatial)`` integer region labels (0 = membrane / background).
        pred_background: ``"singletons"`` or ``"segment"``.

    Returns:
        ``{"rand_error", "rand_precision", "rand_recall"}`` floats.
    """
    n_ij, _, _, a, b, _, n = _table(np.asarray(truth), np.asarray(pred), pred_background)
    nan = float("nan")
    if n == 0:
        return {"rand_error": nan, "rand_precision": nan, "rand_recall": nan}
    both = float(n_ij @ n_ij - n_ij.sum())  # singletons add 0 pairs
    in_truth = float(a @ a - a.sum())
    in_pred = float(b @ b - b.sum())
    if in_truth == 0 and in_pred == 0:
        return {"rand_error": nan, "rand_precision": nan, "rand_recall": nan}
    precision = both / in_pred if in_pred else 0.0
    recall = both / in_truth if in_truth else 0.0
    fscore = 2 * both / (in_pred + in_truth)
    return {"rand_error": 1.0 - fscore, "rand_precision": precision, "rand_recall": recall}


def _xlog2(x: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x, dtype=np.float64)
    nz = x > 0
    out[nz] = x[nz] * np.log2(x[nz])
    return out


def variation_of_information(
    truth: np.ndarray, pred: np.ndarray, pred_background: str = "singletons"
) -> dict[str, float]:
    """VOI split ``H(pred|truth)``, merge ``H(truth|pred)`` and their sum, in bits.

    Args:
        truth, pred: ``(*spatial)`` integer region labels (0 = membrane / background).
        pred_background: ``"singletons"`` or ``"segment"``.

    Returns:
        ``{"voi_split", "voi_merge", "voi"}`` floats (NaN when the truth has no cell).
    """
    n_ij, rows, cols, a, b, singles, n = _table(
        np.asarray(truth), np.asarray(pred), pred_background
    )
    if n == 0:
        nan = float("nan")
        return {"voi_split": nan, "voi_merge": nan, "voi": nan}
    p = n_ij / n
    # H(pred|truth) = -Σ p_ij log(p_ij / p_i); H(truth|pred) = -Σ p_ij log(p_ij / q_j)
    split = -float((_xlog2(p) - p * np.log2(a[rows] / n)).sum())
    merge = -float((_xlog2(p) - p * np.log2(b[cols] / n)).sum())
    # a singleton (i, s) has p = 1/n: it adds (1/n)·log2(a_i) to the split and 0 to the merge
    has = singles > 0
    split += float((singles[has] * np.log2(a[has])).sum() / n)
    split, merge = (v if v > 0 else 0.0 for v in (split, merge))  # no -0.0 from rounding
    return {"voi_split": split, "voi_merge": merge, "voi": split + merge}


def connectomics_scores(
    truth: np.ndarray, pred: np.ndarray, pred_background: str = "singletons"
) -> dict[str, float]:
    """:func:`adapted_rand` and :func:`variation_of_information` together (keys of
    :data:`CONNECTOMICS_METRICS`)."""
    return {
        **adapted_rand(truth, pred, pred_background),
        **variation_of_information(truth, pred, pred_background),
    }

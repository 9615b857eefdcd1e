"""Deterministic, seeded train/validation splits of case ids, saved as JSON.

The ids are sorted before shuffling, so the result depends only on the *set* of ids and the
seed, never on the order a folder listing returned them. Within each split the ids are sorted.
The saved format of :func:`kfold_splits` is nnU-Net's ``splits_final.json``: a list of
``{"train": [...], "val": [...]}`` objects; a hold-out split is one such object.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from ..errors import ConfigError, DataError
from ..io.writers import atomic_write

PathLike = Union[str, Path]
Split = dict  # {"train": [ids], "val": [ids]}


def _check_ids(case_ids: Sequence[str], minimum: int) -> list[str]:
    ids = [str(c) for c in case_ids]
    if len(set(ids)) != len(ids):
        dups = sorted({c for c in ids if ids.count(c) > 1})
        raise ConfigError(f"case ids repeat: {', '.join(dups[:5])}")
    if len(ids) < minimum:
        raise ConfigError(f"need at least {minimum} cases to split, got {len(ids)}")
    return sorted(ids)


def holdout_split(case_ids: Sequence[str], val_fraction: float = 0.2, seed: int = 0) -> Split:
    """One random train/validation split.

    Args:
        case_ids: unique case ids (any order).
        val_fraction: fraction of cases for validation, in (0, 1); the count is rounded and
            kept between 1 and ``len(case_ids) - 1``.
        seed: random seed; the same ids and seed always give the same split.

    Returns:
        ``{"train": [...], "val": [...]}``, each list sorted, disjoint, together all ids.

    Raises:
        ConfigError: ``val_fraction`` outside (0, 1), fewer than 2 ids, or repeated ids.

    Example:
        >>> s = holdout_split([f"{i:02d}" for i in range(10)], 0.2, seed=0)
        >>> len(s["train"]), len(s["val"])
        (8, 2)
    """
    if not 0.0 < float(val_fraction) < 1.0:
        raise ConfigError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    ids = _check_ids(case_ids, 2)
    n_val = min(max(int(round(len(ids) * float(val_fraction))), 1), len(ids) - 1)
    perm = np.random.default_rng(int(seed)).permutation(len(ids))
    val = {ids[i] for i in perm[:n_val]}
    return {"train": [c for c in ids if c not in val], "val": sorted(val)}


def kfold_splits(case_ids: Sequence[str], k: int = 5, seed: int = 0) -> list[Split]:
    """``k`` folds: each case is in exactly one fold's validation set.

    Args:
        case_ids: unique case ids (any order).
        k: number of folds, 2 ≤ k ≤ ``len(case_ids)``. Validation sizes differ by at most one.
        seed: random seed.

    Returns:
        ``k`` dicts ``{"train": [...], "val": [...]}`` (sorted lists).

    Raises:
        ConfigError: ``k`` out of range or repeated ids.
    """
    if int(k) != k or k < 2:
        raise ConfigError(f"k must be an integer ≥ 2, got {k}")
    k = int(k)
    ids = _check_ids(case_ids, 2)
    if k > len(ids):
        raise ConfigError(f"k={k} folds need at least {k} cases, got {len(ids)}")
    perm = np.random.default_rng(int(seed)).permutation(len(ids))
    folds = []
    for part in np.array_split(perm, k):
        val = {ids[i] for i in part}
        folds.append({"train": [c for c in ids if c not in val], "val": sorted(val)})
    return folds


def save_splits(path: PathLike, splits: Union[Split, list]) -> Path:
    """Write a split (dict) or folds (list of dicts) as JSON, atomically.

    Raises:
        ConfigError: ``splits`` is not a split or a list of splits.
    """
    _validate(splits, ConfigError, None)
    path = Path(path)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(splits, indent=2) + "\n", encoding="utf-8")
    return path


def load_splits(path: PathLike) -> Union[Split, list]:
    """Read what :func:`save_splits` wrote (also nnU-Net's ``splits_final.json``).

    Raises:
        DataError: missing or unreadable file, invalid JSON, or not a split / list of splits.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError("splits file not found", path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"unreadable splits file ({' '.join(str(exc).split())})", path) from None
    _validate(data, DataError, path)
    return data


def _validate(splits, error, path) -> None:
    def fail(msg: str):
        return error(msg, path) if error is DataError else error(msg)

    items = splits if isinstance(splits, list) else [splits]
    if not items:
        raise fail("splits must hold at least one split")
    for i, split in enumerate(items):
        where = f"split {i}" if isinstance(splits, list) else "split"
        if not isinstance(split, dict) or set(split) != {"train", "val"}:
            raise fail(f"{where} must be an object with exactly the keys 'train' and 'val'")
        for key in ("train", "val"):
            if not isinstance(split[key], list) or not all(isinstance(c, str) for c in split[key]):
                raise fail(f"{where}: '{key}' must be a list of case id strings")
        overlap = sorted(set(split["train"]) & set(split["val"]))
        if overlap:
            raise fail(f"{where}: cases in both train and val: {', '.join(overlap[:5])}")

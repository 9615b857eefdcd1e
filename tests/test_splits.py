"""Seeded splits: reproducible, disjoint, complete; JSON save/load with validation."""

from __future__ import annotations

import json
import os

import pytest

from unetkit.data import holdout_split, kfold_splits, load_splits, save_splits
from unetkit.errors import ConfigError, DataError

IDS = [f"case_{i:02d}" for i in range(23)]


def test_holdout_reproducible_disjoint_complete():
    a = holdout_split(IDS, 0.2, seed=7)
    b = holdout_split(list(reversed(IDS)), 0.2, seed=7)  # input order does not matter
    assert a == b
    assert len(a["val"]) == 5 and len(a["train"]) == 18  # round(23 * 0.2) = 5
    assert not set(a["train"]) & set(a["val"]) and sorted(a["train"] + a["val"]) == IDS
    assert a["train"] == sorted(a["train"]) and a["val"] == sorted(a["val"])
    assert holdout_split(IDS, 0.2, seed=8) != a


def test_holdout_counts_clamped():
    assert len(holdout_split(["a", "b"], 0.01)["val"]) == 1
    assert len(holdout_split(["a", "b", "c"], 0.99)["train"]) == 1


def test_kfold_partition():
    folds = kfold_splits(IDS, k=5, seed=3)
    assert folds == kfold_splits(sorted(IDS, reverse=True), k=5, seed=3)
    vals = [f["val"] for f in folds]
    assert sorted(len(v) for v in vals) == [4, 4, 5, 5, 5]
    assert sorted(c for v in vals for c in v) == IDS  # each case validated exactly once
    for f in folds:
        assert not set(f["train"]) & set(f["val"]) and sorted(f["train"] + f["val"]) == IDS
    assert kfold_splits(IDS, k=5, seed=4) != folds


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: holdout_split(IDS, 0.0), r"val_fraction must lie in \(0, 1\), got 0\.0"),
        (lambda: holdout_split(IDS, 1.0), r"val_fraction must lie in \(0, 1\), got 1\.0"),
        (lambda: holdout_split(["a"], 0.5), "need at least 2 cases to split, got 1"),
        (lambda: holdout_split(["a", "b", "a"], 0.5), "case ids repeat: a"),
        (lambda: kfold_splits(IDS, k=1), "k must be an integer ≥ 2, got 1"),
        (lambda: kfold_splits(IDS[:3], k=4), "k=4 folds need at least 4 cases, got 3"),
    ],
)
def test_split_argument_errors(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


def test_save_load_round_trip_atomic(tmp_path):
    folds = kfold_splits(IDS, k=3, seed=0)
    save_splits(tmp_path / "splits.json", folds)
    assert load_splits(tmp_path / "splits.json") == folds
    hold = holdout_split(IDS, 0.3, seed=1)
    save_splits(tmp_path / "splits.json", hold)
    assert load_splits(tmp_path / "splits.json") == hold
    assert os.listdir(tmp_path) == ["splits.json"]
    # nnU-Net's splits_final.json format
    assert json.loads((tmp_path / "splits.json").read_text()).keys() == {"train", "val"}


def test_save_refuses_bad_splits_and_keeps_file(tmp_path):
    save_splits(tmp_path / "s.json", {"train": ["a"], "val": ["b"]})
    with pytest.raises(ConfigError, match=r"split: cases in both train and val: a"):
        save_splits(tmp_path / "s.json", {"train": ["a"], "val": ["a"]})
    assert load_splits(tmp_path / "s.json") == {"train": ["a"], "val": ["b"]}


@pytest.mark.parametrize(
    "text,message",
    [
        ("{oops", r"bad\.json: unreadable splits file"),
        (
            '{"train": ["a"]}',
            r"bad\.json: split must be an object with exactly the keys 'train' and 'val'",
        ),
        (
            '[{"train": ["a"], "val": [1]}]',
            r"bad\.json: split 0: 'val' must be a list of case id strings",
        ),
        ("[]", r"bad\.json: splits must hold at least one split"),
    ],
)
def test_load_errors(tmp_path, text, message):
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(DataError, match=message):
        load_splits(tmp_path / "bad.json")


def test_load_missing(tmp_path):
    with pytest.raises(DataError, match=r"none\.json: splits file not found"):
        load_splits(tmp_path / "none.json")

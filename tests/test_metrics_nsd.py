"""Normalised surface Dice: a hand-computed case, MONAI's compute_surface_dice on random blobs (2D,
3D, anisotropic spacing, several tolerances, empty masks), the tolerance default and errors, and the
evaluate API and CLI."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from unetkit import cli
from unetkit.errors import ConfigError
from unetkit.evaluation import evaluate_folders
from unetkit.evaluation.boundary import EMPTY_POLICY, boundary_scores
from unetkit.evaluation.evaluate import evaluate_case


def _blobs(shape, seed, level=0.6):
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.random(shape), 2.0)
    return smooth > np.quantile(smooth, level)


def _squares_offset_by_one_column():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[2:6, 2:6] = True
    b[2:6, 3:7] = True
    return a, b


def test_two_squares_one_pixel_apart_by_hand():
    """Each 4×4 square has a 12-pixel surface; 6 of A's lie on B's surface (top and bottom rows
    shared), the other 6 are 1 pixel away (the left column: 1 along x; the right column's middle
    two: 1 along y or x). By symmetry the same for B."""
    a, b = _squares_offset_by_one_column()
    assert boundary_scores(a, b, nsd_tolerance=0)["nsd"] == 0.5  # (6 + 6) / (12 + 12)
    assert boundary_scores(a, b, nsd_tolerance=1)["nsd"] == 1.0
    assert boundary_scores(a, b)["nsd"] == 1.0  # default: one pixel
    # x twice as coarse: the left column moves 2 units away, the right column's middle stays 1 (y)
    assert boundary_scores(a, b, spacing=(1.0, 2.0), nsd_tolerance=1)["nsd"] == 16 / 24
    assert boundary_scores(a, b, spacing=(1.0, 2.0))["nsd"] == 16 / 24  # default: min(spacing)
    assert boundary_scores(a, b, spacing=(1.0, 2.0), nsd_tolerance=2)["nsd"] == 1.0
    assert boundary_scores(a, b, spacing=(1.0, 2.0), nsd_tolerance=1.999)["nsd"] == 16 / 24


def _monai_nsd(pred, truth, tolerance, spacing):
    import torch
    from monai.metrics import compute_surface_dice

    def onehot(mask):
        m = torch.as_tensor(mask)
        return torch.stack([~m, m]).float()[None]  # (B=1, C=2, *spatial)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns about empty masks
        nsd = compute_surface_dice(
            onehot(pred),
            onehot(truth),
            class_thresholds=[tolerance],
            include_background=False,
            spacing=list(spacing),
            use_subvoxels=False,
        )
    return float(nsd[0, 0])


@pytest.mark.parametrize(
    "shape, spacing",
    [((48, 40), (1.0, 1.0)), ((48, 40), (0.5, 1.5)), ((14, 24, 22), (3.0, 1.0, 1.0))],
)
def test_matches_monai_compute_surface_dice(shape, spacing):
    """Same surface (face erosion, image edge outside) and distances as MONAI without subvoxels, so
    the scores agree to MONAI's float32 precision, at tolerances from 0 to beyond the largest
    distance; the tolerances include distances that occur exactly (1, 3 = one and one z step)."""
    checked = 0
    for seed in (1, 2):
        truth, pred = _blobs(shape, seed), _blobs(shape, seed + 10)
        pred |= ndimage.binary_dilation(truth, iterations=1) & _blobs(shape, seed + 20, 0.3)
        hd = boundary_scores(pred, truth, spacing)["hd"]
        for tolerance in (0.0, 0.5, 1.0, 1.5, 3.0, 4.2, hd):
            ours = boundary_scores(pred, truth, spacing, nsd_tolerance=tolerance)["nsd"]
            assert ours == pytest.approx(_monai_nsd(pred, truth, tolerance, spacing), abs=1e-6)
            checked += 0.0 < ours < 1.0
        assert boundary_scores(pred, truth, spacing, nsd_tolerance=hd)["nsd"] == 1.0
    assert checked >= 4  # the cases are not all trivially 0 or 1


def test_empty_masks_follow_monai():
    empty = np.zeros((12, 14), bool)
    full = np.zeros((12, 14), bool)
    full[3:7, 4:9] = True
    assert math.isnan(boundary_scores(empty, empty)["nsd"])
    assert math.isnan(_monai_nsd(empty, empty, 1.0, (1.0, 1.0)))
    for pred, truth in ((empty, full), (full, empty)):
        assert boundary_scores(pred, truth)["nsd"] == 0.0
        assert _monai_nsd(pred, truth, 1.0, (1.0, 1.0)) == 0.0
    assert "0 for NSD" in EMPTY_POLICY


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_bad_tolerance_is_refused(bad):
    a, b = _squares_offset_by_one_column()
    with pytest.raises(ConfigError, match=r"^nsd_tolerance must be a finite distance >= 0"):
        boundary_scores(a, b, nsd_tolerance=bad)


def test_evaluate_case_and_folders_pass_the_tolerance(tmp_path):
    a, b = _squares_offset_by_one_column()
    rows = evaluate_case(b.astype(int), a.astype(int), 2, metrics=["nsd"], nsd_tolerance=0)
    assert rows[0]["nsd"] == 0.5 and set(rows[0]) == {
        "class_index",
        "truth_pixels",
        "pred_pixels",
        "nsd",
    }
    empty = np.zeros_like(a)
    for folder, masks in (("pred", {"c": b, "e": a}), ("truth", {"c": a, "e": empty})):
        (tmp_path / folder).mkdir()
        for case, mask in masks.items():
            Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / folder / f"{case}.png")
    res = evaluate_folders(tmp_path / "pred", tmp_path / "truth", metrics=["boundary"])
    by_case = {r["case"]: r for r in res.rows}
    assert by_case["c"]["nsd"] == 1.0 and by_case["e"]["nsd"] == 0.0  # e: nothing to find
    stats = res.summary["per_class"][res.summary["classes"][0]]
    assert stats["nsd"]["penalized"] == 0 and stats["hd"]["penalized"] == 1  # 0 is a score
    assert res.summary["nsd_tolerance"] == "one pixel of the finest axis"
    strict = evaluate_folders(
        tmp_path / "pred", tmp_path / "truth", metrics=["nsd"], nsd_tolerance=0
    )
    assert {r["case"]: r["nsd"] for r in strict.rows} == {"c": 0.5, "e": 0.0}
    assert strict.summary["nsd_tolerance"] == 0.0
    with pytest.raises(ConfigError, match="nsd_tolerance must be a finite distance"):
        evaluate_folders(tmp_path / "pred", tmp_path / "truth", nsd_tolerance=-2)


def test_cli_nsd_tolerance(tmp_path, capsys):
    a, b = _squares_offset_by_one_column()
    for folder, mask in (("pred", b), ("truth", a)):
        (tmp_path / folder).mkdir()
        Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / folder / "c.png")
    argv = ["evaluate", str(tmp_path / "pred"), str(tmp_path / "truth"), "--metrics", "nsd"]
    assert cli.main([*argv, "--nsd-tolerance", "0", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["nsd_tolerance"] == 0.0 and summary["metrics"] == ["nsd"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--nsd-tolerance", "-1"])
    assert exit_info.value.code == 2
    assert "--nsd-tolerance: expected a distance >= 0" in capsys.readouterr().err

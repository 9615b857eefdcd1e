"""Soft overlap losses (Dice, IoU, Tversky) and Dice + CE against hand values and explicit numpy loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unetkit.errors import ConfigError
from unetkit.losses import CrossEntropyLoss, DiceCELoss, DiceLoss, IoULoss, TverskyLoss

S = 1e-5  # default smooth_nr = smooth_dr
# 1×2×2×2 case: p(class 1) = 3/4, 1/2, 1/4, 9/10; target 1, 0, 0, 1.
P1 = torch.tensor([[0.75, 0.5], [0.25, 0.9]])
LOGITS = torch.stack([torch.zeros(2, 2), torch.log(P1 / (1 - P1))])[None]
TARGET = torch.tensor([[[1, 0], [0, 1]]])
# Foreground: TP = .75 + .9 = 1.65, Σp = 2.4, Σg = 2 → FP = .75, FN = .35.
# Background: p0 = .25, .5, .75, .1; g0 = 0, 1, 1, 0 → TP = 1.25, Σp = 1.6, Σg = 2.


def test_dice_hand_computed():
    fg = (2 * 1.65 + S) / (2.4 + 2 + S)
    bg = (2 * 1.25 + S) / (1.6 + 2 + S)
    assert fg == pytest.approx(0.75, abs=1e-5) and bg == pytest.approx(2.5 / 3.6, abs=1e-5)
    assert DiceLoss()(LOGITS, TARGET).item() == pytest.approx(1 - fg, rel=1e-5)
    assert DiceLoss(include_background=True)(LOGITS, TARGET).item() == pytest.approx(
        1 - (fg + bg) / 2, rel=1e-5
    )


def test_iou_hand_computed():
    fg = (1.65 + S) / (2.4 + 2 - 1.65 + S)
    assert fg == pytest.approx(0.6, abs=1e-5)
    assert IoULoss()(LOGITS, TARGET).item() == pytest.approx(1 - fg, rel=1e-5)


def test_tversky_hand_computed():
    ti = (1.65 + S) / (1.65 + 0.3 * 0.75 + 0.7 * 0.35 + S)
    assert ti == pytest.approx(1.65 / 2.12, abs=1e-5)
    assert TverskyLoss(alpha=0.3, beta=0.7)(LOGITS, TARGET).item() == pytest.approx(
        1 - ti, rel=1e-5
    )


def np_overlap(
    probs,
    target,
    kind,
    include_background=False,
    batch=False,
    weight=None,
    alpha=0.5,
    beta=0.5,
    smooth=S,
    ignore=None,
):
    """Reference: explicit loops over classes, images and pixels."""
    B, C = probs.shape[:2]
    classes = range(C) if include_background else range(1, C)
    groups = [list(range(B))] if batch else [[b] for b in range(B)]
    scores = []
    for grp in groups:
        for c in classes:
            tp = fp = fn = 0.0
            for b in grp:
                for idx in np.ndindex(*probs.shape[2:]):
                    t = target[(b, *idx)]
                    if ignore is not None and t == ignore:
                        continue
                    p, g = probs[(b, c, *idx)], float(t == c)
                    w = 1.0 if weight is None else weight[(b, *idx)]
                    tp += w * p * g
                    fp += w * p * (1 - g)
                    fn += w * (1 - p) * g
            if kind == "dice":
                scores.append((2 * tp + smooth) / (2 * tp + fp + fn + smooth))
            elif kind == "iou":
                scores.append((tp + smooth) / (tp + fp + fn + smooth))
            else:
                scores.append((tp + smooth) / (tp + alpha * fp + beta * fn + smooth))
    return 1 - float(np.mean(scores))


@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("include_background", [False, True])
def test_overlap_losses_match_numpy_loops(batch, include_background):
    logits = torch.randn(2, 3, 4, 5)
    target = torch.randint(0, 3, (2, 4, 5))
    target[1][target[1] == 2] = 1  # class 2 absent from image 1: per-image and batch dice differ
    probs = logits.softmax(1).numpy().astype(np.float64)
    t = target.numpy()
    kw = dict(include_background=include_background, batch_dice=batch)
    assert DiceLoss(**kw)(logits, target).item() == pytest.approx(
        np_overlap(probs, t, "dice", include_background, batch), rel=1e-5
    )
    assert IoULoss(**kw)(logits, target).item() == pytest.approx(
        np_overlap(probs, t, "iou", include_background, batch), rel=1e-5
    )
    assert TverskyLoss(0.2, 0.8, **kw)(logits, target).item() == pytest.approx(
        np_overlap(probs, t, "tversky", include_background, batch, alpha=0.2, beta=0.8), rel=1e-5
    )


def test_batch_dice_differs_from_per_image():
    logits = torch.randn(2, 3, 4, 5)
    target = torch.randint(0, 3, (2, 4, 5))
    target[1][target[1] == 2] = 1
    assert (
        abs(DiceLoss(batch_dice=True)(logits, target).item() - DiceLoss()(logits, target).item())
        > 1e-3
    )


def test_overlap_weight_map_and_ignore_index_3d():
    logits = torch.randn(2, 3, 3, 4, 3)
    target = torch.randint(0, 3, (2, 3, 4, 3))
    target[0, 0] = 255
    w = torch.rand(2, 3, 4, 3) * 5
    probs = logits.softmax(1).numpy().astype(np.float64)
    t, wn = target.numpy(), w.numpy().astype(np.float64)
    for cls, kind in ((DiceLoss, "dice"), (IoULoss, "iou")):
        got = cls(ignore_index=255)(logits, target, w).item()
        assert got == pytest.approx(np_overlap(probs, t, kind, weight=wn, ignore=255), rel=1e-5)


def test_tversky_special_cases_equal_dice_and_iou():
    logits = torch.randn(2, 4, 6, 6)
    target = torch.randint(0, 4, (2, 6, 6))
    kw = dict(smooth_nr=0.0, smooth_dr=0.0)
    assert TverskyLoss(0.5, 0.5, **kw)(logits, target).item() == pytest.approx(
        DiceLoss(**kw)(logits, target).item(), rel=1e-6
    )
    assert TverskyLoss(1.0, 1.0, **kw)(logits, target).item() == pytest.approx(
        IoULoss(**kw)(logits, target).item(), rel=1e-6
    )


def test_empty_class_with_empty_prediction_costs_nothing():
    # Background-only image, confident background prediction: the smooth terms make Dice = 1, not 0.
    logits = torch.tensor([20.0, -20.0]).view(1, 2, 1, 1).expand(1, 2, 4, 4)
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    assert DiceLoss()(logits, target).item() == pytest.approx(0.0, abs=1e-3)
    assert IoULoss()(logits, target).item() == pytest.approx(0.0, abs=1e-3)
    # With no smoothing in the numerator the same case scores 0 (loss 1): why smooth_nr exists.
    assert DiceLoss(smooth_nr=0.0)(logits, target).item() == pytest.approx(1.0, abs=1e-6)


def test_dice_k1_sigmoid_equals_two_class():
    z = torch.randn(2, 1, 5, 5)
    target = torch.randint(0, 2, (2, 5, 5))
    two = torch.cat([torch.zeros_like(z), z], 1)
    for kw in ({}, {"include_background": True}, {"batch_dice": True}):
        assert DiceLoss(**kw)(z, target).item() == pytest.approx(
            DiceLoss(**kw)(two, target).item(), rel=1e-6
        )
    p = torch.sigmoid(z[:, 0])
    g = target.float()
    per_image = 1 - ((2 * (p * g).sum((1, 2)) + S) / (p.sum((1, 2)) + g.sum((1, 2)) + S)).mean()
    assert DiceLoss()(z, target).item() == pytest.approx(per_image.item(), rel=1e-6)


def test_dice_ce_is_weighted_sum():
    logits = torch.randn(2, 3, 6, 6)
    target = torch.randint(0, 3, (2, 6, 6))
    w = torch.rand(2, 6, 6)
    dice = DiceLoss(batch_dice=True)(logits, target, w)
    ce = CrossEntropyLoss(class_weights=(1, 2, 3))(logits, target, w)
    got = DiceCELoss(dice_weight=0.7, ce_weight=1.3, batch_dice=True, class_weights=(1, 2, 3))(
        logits, target, w
    )
    assert got.item() == pytest.approx(0.7 * dice.item() + 1.3 * ce.item(), rel=1e-6)
    assert DiceCELoss()(LOGITS, TARGET).item() == pytest.approx(
        1 - (2 * 1.65 + S) / (4.4 + S) + (2 * math.log(4 / 3) + math.log(2) + math.log(10 / 9)) / 4,
        rel=1e-5,
    )


def test_overlap_argument_errors():
    with pytest.raises(ConfigError, match="smooth_nr and smooth_dr must be ≥ 0"):
        DiceLoss(smooth_nr=-1)
    with pytest.raises(ConfigError, match="Tversky alpha and beta must be ≥ 0"):
        TverskyLoss(alpha=-0.1)

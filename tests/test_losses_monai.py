"""Optional cross-check against MONAI's losses and MS-SSIM (skipped when MONAI is not installed)."""

from __future__ import annotations

import pytest
import torch

from unetkit.losses import DiceCELoss, DiceLoss, FocalLoss, TverskyLoss, ms_ssim

monai_losses = pytest.importorskip("monai.losses")
monai_regression = pytest.importorskip("monai.metrics.regression")


def case(k, spatial=(6, 7), b=2):
    logits = torch.randn(b, k, *spatial) * 2
    target = torch.randint(0, max(k, 2), (b, *spatial))
    return logits, target


@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("include_background", [False, True])
@pytest.mark.parametrize("spatial", [(6, 7), (4, 5, 6)])
def test_dice_softmax_matches_monai(batch, include_background, spatial):
    logits, target = case(3, spatial)
    ref = monai_losses.DiceLoss(
        include_background=include_background, to_onehot_y=True, softmax=True, batch=batch
    )
    ours = DiceLoss(include_background=include_background, batch_dice=batch)
    assert ours(logits, target).item() == pytest.approx(
        ref(logits, target[:, None]).item(), rel=1e-5
    )


def test_dice_sigmoid_matches_monai():
    logits, target = case(1)
    ref = monai_losses.DiceLoss(sigmoid=True)(logits, target[:, None].float())
    assert DiceLoss()(logits, target).item() == pytest.approx(ref.item(), rel=1e-5)


def test_dice_ce_matches_monai():
    logits, target = case(4)
    ref = monai_losses.DiceCELoss(
        include_background=False, to_onehot_y=True, softmax=True, lambda_dice=0.6, lambda_ce=1.4
    )(logits, target[:, None])
    ours = DiceCELoss(dice_weight=0.6, ce_weight=1.4)(logits, target)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)


@pytest.mark.parametrize("alpha", [None, 0.25])
def test_focal_softmax_matches_monai(alpha):
    logits, target = case(3)
    ref = monai_losses.FocalLoss(to_onehot_y=True, use_softmax=True, gamma=2.0, alpha=alpha)(
        logits, target[:, None]
    )
    # MONAI averages over B × C × pixels; the loss is non-zero only in the true class's channel
    assert FocalLoss(alpha=alpha)(logits, target).item() == pytest.approx(3 * ref.item(), rel=1e-5)


@pytest.mark.parametrize("alpha", [None, 0.25])
def test_focal_sigmoid_matches_monai(alpha):
    logits, target = case(1)
    ref = monai_losses.FocalLoss(gamma=2.0, alpha=alpha)(logits, target[:, None].float())
    assert FocalLoss(alpha=alpha)(logits, target).item() == pytest.approx(ref.item(), rel=1e-5)


@pytest.mark.parametrize("batch", [False, True])
def test_tversky_matches_monai(batch):
    logits, target = case(3, (5, 6, 4))
    ref = monai_losses.TverskyLoss(
        include_background=False, to_onehot_y=True, softmax=True, alpha=0.3, beta=0.7, batch=batch
    )(logits, target[:, None])
    ours = TverskyLoss(alpha=0.3, beta=0.7, batch_dice=batch)(logits, target)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)


def test_ms_ssim_matches_monai_2d_and_3d():
    x = torch.rand(2, 1, 180, 176)
    y = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    ref = monai_regression.compute_ms_ssim(x, y, spatial_dims=2)[:, 0]
    assert torch.allclose(ms_ssim(x, y)[:, 0], ref, atol=1e-5)
    x3 = torch.rand(1, 1, 44, 46, 48)
    y3 = (x3 + 0.2 * torch.randn_like(x3)).clamp(0, 1)
    w = (0.0448, 0.2856, 0.3001)
    ref3 = monai_regression.compute_ms_ssim(x3, y3, spatial_dims=3, weights=w)[:, 0]
    assert torch.allclose(ms_ssim(x3, y3, weights=w)[:, 0], ref3, atol=1e-5)

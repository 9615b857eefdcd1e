"""MS-SSIM (2D/3D) against scikit-image and an independent numpy implementation; the MS-SSIM loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from skimage.metrics import structural_similarity

from unetkit.errors import ConfigError
from unetkit.losses import MS_SSIM_WEIGHTS, MSSSIMLoss, ms_ssim, ms_ssim_plan


def np_window(size=11, sigma=1.5):
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def np_filter(a, g):
    """'valid' separable correlation with numpy sliding windows."""
    for axis in range(a.ndim):
        a = np.tensordot(sliding_window_view(a, len(g), axis=axis), g, axes=([-1], [0]))
    return a


def np_pool(a):
    for axis in range(a.ndim):
        n = a.shape[axis] // 2
        a = np.take(a, np.arange(2 * n), axis=axis)
        a = a.reshape(a.shape[:axis] + (n, 2) + a.shape[axis + 1 :]).mean(axis + 1)
    return a


def np_ms_ssim(x, y, weights, win=11, sigma=1.5, c1=1e-4, c2=9e-4):
    """MS-SSIM of two float64 arrays (any dimension), terms clamped at 0 (pytorch-msssim's ReLU)."""
    g = np_window(win, sigma)
    out = 1.0
    for level, w in enumerate(weights):
        mx, my = np_filter(x, g), np_filter(y, g)
        vx, vy = np_filter(x * x, g) - mx**2, np_filter(y * y, g) - my**2
        cxy = np_filter(x * y, g) - mx * my
        cs = (2 * cxy + c2) / (vx + vy + c2)
        term = cs if level < len(weights) - 1 else (2 * mx * my + c1) / (mx**2 + my**2 + c1) * cs
        out *= max(term.mean(), 0.0) ** w
        x, y = np_pool(x), np_pool(y)
    return out


def pair(shape, noise=0.3):
    x = np.random.rand(*shape)
    y = np.clip(x + noise * np.random.randn(*shape), 0, 1)
    return x, y


def t(a):
    return torch.from_numpy(a).float()[None, None]


@pytest.mark.parametrize(
    "shape, expected",
    [
        ((176, 176), (5, 11)),
        ((175, 300), (4, 11)),
        ((88, 88), (4, 11)),
        ((87, 87), (3, 11)),
        ((44, 50), (3, 11)),
        ((43, 43), (2, 11)),
        ((22, 22), (2, 11)),
        ((21, 21), (1, 11)),
        ((11, 11), (1, 11)),
        ((10, 10), (1, 9)),
        ((8, 30), (1, 7)),
        ((1, 5), (1, 1)),
        ((30, 100, 100), (2, 11)),
        ((200, 200, 200), (5, 11)),
    ],
)
def test_ms_ssim_plan(shape, expected):
    assert ms_ssim_plan(shape) == expected


@pytest.mark.parametrize("shape", [(64, 64), (200, 190), (24, 24, 24), (9, 9)])
def test_ms_ssim_identical_is_one(shape):
    x = torch.rand(2, 3, *shape)
    assert torch.allclose(ms_ssim(x, x), torch.ones(2, 3), atol=1e-5)


@pytest.mark.parametrize("shape", [(40, 37), (15, 16, 17)])
def test_single_scale_equals_skimage_ssim(shape):
    x, y = pair(shape)
    ref = structural_similarity(
        x, y, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ms_ssim(t(x), t(y), weights=(1.0,)).item() == pytest.approx(ref, abs=1e-5)


def test_ms_ssim_five_scales_matches_numpy():
    x, y = pair((176, 181), noise=0.2)
    ref = np_ms_ssim(x, y, MS_SSIM_WEIGHTS)
    assert 0.05 < ref < 0.99
    assert ms_ssim(t(x), t(y)).item() == pytest.approx(ref, abs=2e-5)


@pytest.mark.parametrize("shape", [(50, 61), (24, 26, 29)])
def test_ms_ssim_reduced_scales_matches_numpy(shape):
    x, y = pair(shape, noise=0.2)
    n, win = ms_ssim_plan(shape)
    assert n < 5 and win == 11
    w = np.array(MS_SSIM_WEIGHTS[:n]) / sum(MS_SSIM_WEIGHTS[:n])
    assert ms_ssim(t(x), t(y)).item() == pytest.approx(np_ms_ssim(x, y, w), abs=2e-5)


def test_ms_ssim_on_masks_matches_numpy():
    # the loss compares probability maps with binary masks: check that regime too
    yy, xx = np.mgrid[:60, :60]
    g = ((yy - 30) ** 2 + (xx - 28) ** 2 < 15**2).astype(float)
    p = np.clip(g * 0.8 + 0.1 + 0.05 * np.random.randn(60, 60), 0, 1)
    w = np.array(MS_SSIM_WEIGHTS[:3]) / sum(MS_SSIM_WEIGHTS[:3])
    assert ms_ssim(t(p), t(g)).item() == pytest.approx(np_ms_ssim(p, g, w), abs=2e-5)


def test_negative_terms_are_clamped_not_nan():
    x = torch.rand(1, 1, 48, 48, requires_grad=True)
    val = ms_ssim(x, 1 - x.detach())  # anti-correlated: every cs term ≈ −1
    val.sum().backward()
    assert torch.isfinite(val).all() and torch.isfinite(x.grad).all()
    assert val.item() == pytest.approx(
        1e-4, rel=1e-3
    )  # every term clamped to 1e-4, weights sum to 1
    assert torch.isnan(ms_ssim(x.detach(), 1 - x.detach(), normalize=None)).all()
    simple = ms_ssim(x.detach(), 1 - x.detach(), normalize="simple").item()
    assert 1e-4 <= simple < 0.05


def test_ms_ssim_argument_errors():
    with pytest.raises(ConfigError, match="same shape"):
        ms_ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))
    with pytest.raises(ConfigError, match="1 to 3 spatial axes"):
        ms_ssim(torch.rand(1, 1, 4, 4, 4, 4), torch.rand(1, 1, 4, 4, 4, 4))
    with pytest.raises(ConfigError, match="normalize must be one of"):
        ms_ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), normalize="tanh")
    with pytest.raises(ConfigError, match="weights must be a non-empty list"):
        ms_ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), weights=())
    with pytest.raises(ConfigError, match="win_size must be a positive odd number"):
        MSSSIMLoss(win_size=10)


# -- the loss ---------------------------------------------------------------------------------


def test_loss_is_one_minus_ms_ssim_of_foreground_maps():
    logits = torch.randn(2, 3, 50, 50)
    target = torch.randint(0, 3, (2, 50, 50))
    p = logits.softmax(1)
    g = torch.nn.functional.one_hot(target, 3).movedim(-1, 1).float()
    expected = 1 - ms_ssim(p[:, 1:], g[:, 1:]).mean()
    assert MSSSIMLoss()(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)
    expected_bg = 1 - ms_ssim(p, g).mean()
    assert MSSSIMLoss(include_background=True)(logits, target).item() == pytest.approx(
        expected_bg.item(), rel=1e-6
    )


def test_loss_k1_equals_two_class_and_perfect_is_zero_3d():
    z = torch.randn(1, 1, 12, 23, 24)
    target = torch.randint(0, 2, (1, 12, 23, 24))
    two = torch.cat([torch.zeros_like(z), z], 1)
    assert MSSSIMLoss()(z, target).item() == pytest.approx(
        MSSSIMLoss()(two, target).item(), rel=1e-6
    )
    perfect = (target[:, None].float() * 2 - 1) * 50
    assert MSSSIMLoss()(perfect, target).item() == pytest.approx(0.0, abs=1e-6)


def test_loss_ignore_index_zeroes_both_maps():
    logits = torch.randn(1, 2, 30, 30)
    target = torch.randint(0, 2, (1, 30, 30))
    target[0, :10] = 255
    got = MSSSIMLoss(ignore_index=255)(logits, target)
    p = logits.softmax(1)[:, 1:].clone()
    g = (target == 1).float()[:, None]
    p[..., :10, :] = 0
    assert got.item() == pytest.approx(1 - ms_ssim(p, g).item(), rel=1e-6)

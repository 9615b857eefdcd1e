"""Properties every registered loss must have: minimum 0 at a perfect prediction, finite gradients,
K = 1 ≡ K = 2, 2D and 3D, fp32 results under bf16 autocast."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unetkit.losses import create_loss

NAMES = [
    "ce",
    "dice",
    "dice-ce",
    "focal",
    "iou",
    "tversky",
    "ms-ssim",
    "unet3plus-hybrid",
    "compound",
]


def build(name, **kw):
    if name == "compound":
        kw.setdefault("weights", {"dice": 1.0, "focal": 1.0, "ms-ssim": 0.5})
    return create_loss(name, **kw)


def perfect_logits(target, k, margin=60.0):
    if k == 1:
        return (target[:, None].float() * 2 - 1) * margin
    return (F.one_hot(target, k).movedim(-1, 1).float() * 2 - 1) * margin


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "k, spatial", [(1, (24, 24)), (2, (22, 23)), (3, (24, 24)), (3, (12, 12, 12))]
)
def test_perfect_prediction_reaches_zero(name, k, spatial):
    target = torch.randint(0, max(k, 2), (2, *spatial))
    if k == 3:
        target[0][target[0] == 2] = 1  # a class absent from one image
    logits = perfect_logits(target, k)
    assert build(name)(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    w = torch.rand(2, *spatial) * 10
    assert build(name)(logits, target, w).item() == pytest.approx(0.0, abs=1e-6)
    target_ig = target.clone()
    target_ig[:, :3] = 255
    assert build(name, ignore_index=255)(logits, target_ig).item() == pytest.approx(0.0, abs=1e-6)
    wrong = build(name)(-logits, target).item()
    assert wrong > 0.3


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("spatial", [(24, 24), (6, 24, 24)])
def test_gradients_flow_and_are_finite(name, spatial):
    logits = (torch.randn(2, 3, *spatial) * 3).requires_grad_(True)
    target = torch.randint(0, 3, (2, *spatial))
    loss = build(name)(logits, target, torch.rand(2, *spatial))
    loss.backward()
    assert loss.dtype == torch.float32 and loss.dim() == 0 and torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    # near-perfect predictions (saturated softmax) must not give NaN gradients either
    sat = perfect_logits(target, 3, margin=80.0).requires_grad_(True)
    build(name)(sat, target).backward()
    assert torch.isfinite(sat.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_k1_sigmoid_equals_two_class_softmax(name):
    z = torch.randn(2, 1, 24, 24) * 2
    target = torch.randint(0, 2, (2, 24, 24))
    two = torch.cat([torch.zeros_like(z), z], 1)
    w = torch.rand(2, 24, 24)
    assert build(name)(z, target, w).item() == pytest.approx(
        build(name)(two, target, w).item(), rel=1e-5, abs=1e-6
    )


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast_gives_fp32_close_to_fp32(name):
    conv = torch.nn.Conv2d(4, 3, 3, padding=1)
    x = torch.randn(2, 4, 24, 24)
    target = torch.randint(0, 3, (2, 24, 24))
    loss = build(name)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = conv(x)
        assert logits.dtype == torch.bfloat16
        value = loss(logits, target)
    assert value.dtype == torch.float32
    # computed in fp32 from the bf16 logits (autocast off inside the loss) ...
    assert value.item() == pytest.approx(loss(logits.float(), target).item(), rel=1e-6, abs=1e-7)
    # ... and close to the all-fp32 result
    assert value.item() == pytest.approx(loss(conv(x), target).item(), rel=2e-2, abs=1e-3)

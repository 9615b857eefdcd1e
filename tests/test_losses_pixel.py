"""Pixel-wise losses (cross-entropy / BCE, focal) and the shared input checks, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unetkit.errors import ConfigError
from unetkit.losses import CrossEntropyLoss, FocalLoss, check_inputs

# One 1×2×2×2 case with known probabilities: p(class 1) = 3/4, 1/2, 1/4, 9/10; target 1, 0, 0, 1.
P1 = torch.tensor([[0.75, 0.5], [0.25, 0.9]])
LOGITS = torch.stack([torch.zeros(2, 2), torch.log(P1 / (1 - P1))])[
    None
]  # (1, 2, 2, 2): logits (0, logit p1)
TARGET = torch.tensor([[[1, 0], [0, 1]]])
# −log p_t per pixel: p_t = 3/4, 1/2, 3/4, 9/10.
CE_PIX = [math.log(4 / 3), math.log(2), math.log(4 / 3), math.log(10 / 9)]


def test_ce_hand_computed():
    expected = sum(CE_PIX) / 4
    assert CrossEntropyLoss()(LOGITS, TARGET).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.34346796, rel=1e-7)


def test_ce_weight_map_weighted_mean_and_mean():
    w = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    manual = 1 * CE_PIX[0] + 2 * CE_PIX[1] + 3 * CE_PIX[2] + 4 * CE_PIX[3]
    assert CrossEntropyLoss()(LOGITS, TARGET, w).item() == pytest.approx(manual / 10, rel=1e-6)
    assert CrossEntropyLoss(reduction="mean")(LOGITS, TARGET, w).item() == pytest.approx(
        manual / 4, rel=1e-6
    )
    # (B, 1, *spatial) weight and target are accepted
    assert CrossEntropyLoss()(LOGITS, TARGET[:, None], w[:, None]).item() == pytest.approx(
        manual / 10, rel=1e-6
    )


def test_ce_weight_map_random_manual_sum():
    logits = torch.randn(2, 3, 5, 6)
    target = torch.randint(0, 3, (2, 5, 6))
    w = torch.rand(2, 5, 6) * 10
    lp = logits.log_softmax(1).numpy()
    num = den = 0.0
    for b in range(2):
        for i in range(5):
            for j in range(6):
                num += w[b, i, j].item() * -lp[b, target[b, i, j], i, j]
                den += w[b, i, j].item()
    assert CrossEntropyLoss()(logits, target, w).item() == pytest.approx(num / den, rel=1e-5)
    assert CrossEntropyLoss(reduction="mean")(logits, target, w).item() == pytest.approx(
        num / 60, rel=1e-5
    )


def test_ce_class_weights_hand_and_torch():
    cw = (1.0, 3.0)
    # class weight per pixel: 3, 1, 1, 3
    expected = (3 * CE_PIX[0] + CE_PIX[1] + CE_PIX[2] + 3 * CE_PIX[3]) / 8
    assert CrossEntropyLoss(class_weights=cw)(LOGITS, TARGET).item() == pytest.approx(
        expected, rel=1e-6
    )
    logits = torch.randn(2, 4, 6, 7)
    target = torch.randint(0, 4, (2, 6, 7))
    cw4 = (0.5, 1.0, 2.0, 4.0)
    ref = F.cross_entropy(logits, target, weight=torch.tensor(cw4))
    assert CrossEntropyLoss(class_weights=cw4)(logits, target).item() == pytest.approx(
        ref.item(), rel=1e-6
    )


def test_ce_class_weights_with_weight_map():
    logits = torch.randn(1, 3, 4, 4)
    target = torch.randint(0, 3, (1, 4, 4))
    w = torch.rand(1, 4, 4)
    cw = torch.tensor([1.0, 2.0, 5.0])
    ce = F.cross_entropy(logits, target, reduction="none")
    ww = w * cw[target]
    expected = (ww * ce).sum() / ww.sum()
    assert CrossEntropyLoss(class_weights=cw.tolist())(logits, target, w).item() == pytest.approx(
        expected.item(), rel=1e-6
    )


def test_ce_ignore_index_matches_torch():
    logits = torch.randn(2, 3, 6, 6)
    target = torch.randint(0, 3, (2, 6, 6))
    target[0, :2] = 255
    ref = F.cross_entropy(logits, target, ignore_index=255)
    assert CrossEntropyLoss(ignore_index=255)(logits, target).item() == pytest.approx(
        ref.item(), rel=1e-6
    )
    # an ignored pixel's logits get no gradient
    x = logits.clone().requires_grad_(True)
    CrossEntropyLoss(ignore_index=255)(x, target).backward()
    assert torch.all(x.grad[0, :, :2] == 0) and torch.any(x.grad[1] != 0)


def test_ce_all_ignored_is_zero_not_nan():
    x = torch.randn(1, 2, 3, 3, requires_grad=True)
    loss = CrossEntropyLoss(ignore_index=7)(x, torch.full((1, 3, 3), 7))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(x.grad).all()


def test_bce_k1_equals_torch_and_two_class_ce():
    z = torch.randn(2, 1, 5, 5) * 3
    target = torch.randint(0, 2, (2, 5, 5))
    bce = CrossEntropyLoss()(z, target)
    ref = F.binary_cross_entropy_with_logits(z[:, 0], target.float())
    assert bce.item() == pytest.approx(ref.item(), rel=1e-6)
    two = torch.cat([torch.zeros_like(z), z], 1)
    assert CrossEntropyLoss()(two, target).item() == pytest.approx(bce.item(), rel=1e-6)
    # class weights (background, foreground) on K = 1 equal those on K = 2
    cw = (1.0, 4.0)
    assert CrossEntropyLoss(class_weights=cw)(z, target).item() == pytest.approx(
        CrossEntropyLoss(class_weights=cw)(two, target).item(), rel=1e-6
    )


def test_ce_3d_matches_torch():
    logits = torch.randn(2, 3, 4, 5, 6)
    target = torch.randint(0, 3, (2, 4, 5, 6))
    assert CrossEntropyLoss()(logits, target).item() == pytest.approx(
        F.cross_entropy(logits, target).item(), rel=1e-6
    )


def test_bce_large_logits_stay_finite():
    z = torch.tensor([[[[200.0, -200.0]]]], requires_grad=True)
    loss = CrossEntropyLoss()(z, torch.tensor([[[0, 1]]]))  # both wrong by a margin of 200
    loss.backward()
    assert loss.item() == pytest.approx(200.0, rel=1e-6) and torch.isfinite(z.grad).all()


# -- focal --------------------------------------------------------------------------------


def test_focal_hand_computed():
    pt = [0.75, 0.5, 0.75, 0.9]
    expected = sum((1 - p) ** 2 * -math.log(p) for p in pt) / 4
    assert expected == pytest.approx(0.05257516, rel=1e-6)
    assert FocalLoss()(LOGITS, TARGET).item() == pytest.approx(expected, rel=1e-5)
    expected_g1 = sum((1 - p) * -math.log(p) for p in pt) / 4
    assert FocalLoss(gamma=1)(LOGITS, TARGET).item() == pytest.approx(expected_g1, rel=1e-5)


def test_focal_alpha_scalar_and_per_class():
    pt = [0.75, 0.5, 0.75, 0.9]
    a = [0.25, 0.75, 0.75, 0.25]  # alpha = 0.25: foreground pixels get 0.25, background 0.75
    expected = sum(ai * (1 - p) ** 2 * -math.log(p) for ai, p in zip(a, pt)) / 4
    assert FocalLoss(alpha=0.25)(LOGITS, TARGET).item() == pytest.approx(expected, rel=1e-5)
    assert FocalLoss(alpha=(0.75, 0.25))(LOGITS, TARGET).item() == pytest.approx(expected, rel=1e-5)


def test_focal_gamma0_is_ce_and_binary_matches_torchvision_formula():
    logits = torch.randn(2, 3, 5, 5)
    target = torch.randint(0, 3, (2, 5, 5))
    w = torch.rand(2, 5, 5)
    assert FocalLoss(gamma=0)(logits, target, w).item() == pytest.approx(
        CrossEntropyLoss()(logits, target, w).item(), rel=1e-6
    )
    # binary focal loss as torchvision.ops.sigmoid_focal_loss writes it
    z = torch.randn(2, 1, 5, 5) * 2
    t = torch.randint(0, 2, (2, 5, 5))
    p = torch.sigmoid(z[:, 0])
    ce = F.binary_cross_entropy_with_logits(z[:, 0], t.float(), reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    ref = ce * (1 - p_t) ** 2
    ref = (0.25 * t + 0.75 * (1 - t)) * ref
    assert FocalLoss(alpha=0.25)(z, t).item() == pytest.approx(ref.mean().item(), rel=1e-5)


def test_focal_numpy_loop_multiclass_weight_map_and_ignore():
    logits = torch.randn(1, 3, 4, 5)
    target = torch.randint(0, 3, (1, 4, 5))
    target[0, 0, 0] = 9
    w = torch.rand(1, 4, 5)
    p = logits.softmax(1).numpy()
    num = den = 0.0
    for i in range(4):
        for j in range(5):
            t = int(target[0, i, j])
            if t == 9:
                continue
            num += w[0, i, j].item() * (1 - p[0, t, i, j]) ** 2 * -np.log(p[0, t, i, j])
            den += w[0, i, j].item()
    assert FocalLoss(ignore_index=9)(logits, target, w).item() == pytest.approx(num / den, rel=1e-5)
    assert FocalLoss(ignore_index=9, reduction="mean")(logits, target, w).item() == pytest.approx(
        num / 19, rel=1e-5
    )


def test_focal_argument_errors():
    with pytest.raises(ConfigError, match="gamma must be ≥ 0"):
        FocalLoss(gamma=-1)
    with pytest.raises(ConfigError, match=r"alpha must be in \[0, 1\]"):
        FocalLoss(alpha=1.5)
    with pytest.raises(ConfigError, match="focal alpha has 2 value"):
        FocalLoss(alpha=(0.5, 0.5))(torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))


# -- input checks (one test per message) --------------------------------------------------


def test_error_logits_without_spatial_axis():
    with pytest.raises(ConfigError, match="at least one spatial axis"):
        CrossEntropyLoss()(torch.randn(2, 3), torch.zeros(2, dtype=torch.long))


def test_error_integer_logits():
    with pytest.raises(ConfigError, match="logits must be a float tensor"):
        CrossEntropyLoss()(
            torch.zeros(1, 2, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long)
        )


def test_error_target_shape():
    with pytest.raises(
        ConfigError, match=r"target shape \(1, 3, 3\) does not match logits \(1, 2, 4, 4\)"
    ):
        CrossEntropyLoss()(torch.randn(1, 2, 4, 4), torch.zeros(1, 3, 3, dtype=torch.long))


def test_error_float_target():
    with pytest.raises(ConfigError, match="integer class indices.*float32"):
        CrossEntropyLoss()(torch.randn(1, 2, 4, 4), torch.zeros(1, 4, 4))


def test_error_target_values_out_of_range():
    with pytest.raises(ConfigError, match=r"range over 0..2 but logits have K = 2"):
        CrossEntropyLoss()(torch.randn(1, 2, 2, 2), torch.tensor([[[0, 1], [2, 0]]]))
    with pytest.raises(
        ConfigError, match=r"K = 1 means one sigmoid channel with targets in \{0, 1\}"
    ):
        CrossEntropyLoss()(torch.randn(1, 1, 2, 2), torch.tensor([[[0, 255], [1, 0]]]))


def test_error_weight_map_shape():
    with pytest.raises(
        ConfigError, match=r"weight map shape \(1, 2, 4\) does not match the target \(1, 4, 4\)"
    ):
        CrossEntropyLoss()(
            torch.randn(1, 2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), torch.ones(1, 2, 4)
        )


def test_error_class_weights_length_and_reduction_and_ignore_index():
    with pytest.raises(
        ConfigError, match=r"class_weights has 3 value\(s\) but the logits give 2 classes"
    ):
        CrossEntropyLoss(class_weights=(1, 2, 3))(
            torch.randn(1, 1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long)
        )
    with pytest.raises(ConfigError, match="reduction must be one of"):
        CrossEntropyLoss(reduction="sum")
    with pytest.raises(ConfigError, match="ignore_index must be an int"):
        CrossEntropyLoss(ignore_index=0.5)


def test_check_inputs_masks_ignored_pixels():
    inp = check_inputs(
        torch.randn(1, 3, 2, 2).bfloat16(),
        torch.tensor([[[1, 255], [2, 0]]], dtype=torch.uint8),
        ignore_index=255,
    )
    assert inp.logits.dtype == torch.float32 and inp.target.dtype == torch.int64
    assert inp.target.tolist() == [[[1, 0], [2, 0]]]
    assert inp.valid.tolist() == [[[True, False], [True, True]]]
    assert inp.num_classes == 3 and inp.num_valid().item() == 3

"""Registry, compound losses, the UNet 3+ hybrid loss and deep supervision (weights, resizing, CGM)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unetkit.errors import ConfigError
from unetkit.losses import (
    CompoundLoss,
    CrossEntropyLoss,
    DeepSupervisionLoss,
    DiceCELoss,
    DiceLoss,
    FocalLoss,
    IoULoss,
    MSSSIMLoss,
    UNet3PlusHybridLoss,
    cgm_targets,
    create_loss,
    default_weights,
    downsample_labels,
    downsample_weight,
    list_losses,
)
from unetkit.models import ModelOutput


def test_registry_names_and_create():
    assert list_losses() == [
        "bce",
        "ce",
        "compound",
        "dice",
        "dice-ce",
        "focal",
        "iou",
        "jaccard",
        "ms-ssim",
        "tversky",
        "unet3plus-hybrid",
    ]
    loss = create_loss("focal", gamma=3.0, alpha=None, ignore_index=255)
    assert isinstance(loss, FocalLoss) and loss.gamma == 3.0 and loss.ignore_index == 255
    assert isinstance(create_loss("MS_SSIM"), MSSSIMLoss)


def test_registry_errors():
    with pytest.raises(ConfigError, match="unknown loss 'dise'. Did you mean 'dice'"):
        create_loss("dise")
    with pytest.raises(ConfigError, match="loss 'dice' has no option.*gamma"):
        create_loss("dice", gamma=2)


def test_compound_is_weighted_sum_with_options():
    logits = torch.randn(2, 3, 20, 20)
    target = torch.randint(0, 3, (2, 20, 20))
    w = torch.rand(2, 20, 20)
    loss = create_loss(
        "compound",
        weights={"dice": 0.5, "focal": 2.0, "ce": 0.0},
        options={"focal": {"gamma": 1.0}},
        ignore_index=2,
    )
    expected = 0.5 * DiceLoss(ignore_index=2)(logits, target, w) + 2.0 * FocalLoss(
        1.0, ignore_index=2
    )(logits, target, w)
    assert loss(logits, target, w).item() == pytest.approx(expected.item(), rel=1e-6)
    parts = loss.components(logits, target, w)
    assert sorted(parts) == ["dice", "focal"]  # weight 0 terms are not computed
    assert loss.terms["dice"].ignore_index == 2 and loss.ignore_index == 2


def test_compound_errors():
    with pytest.raises(ConfigError, match="non-empty"):
        CompoundLoss({})
    with pytest.raises(ConfigError, match="weight of 'dice' must be a number ≥ 0"):
        CompoundLoss({"dice": -1})
    with pytest.raises(ConfigError, match="options given for focal"):
        CompoundLoss({"dice": 1}, options={"focal": {"gamma": 2}})
    with pytest.raises(ConfigError, match="unknown loss 'dicee'"):
        CompoundLoss({"dicee": 1})


def test_hybrid_is_focal_plus_ms_ssim_plus_iou():
    logits = torch.randn(2, 1, 48, 48)
    target = torch.randint(0, 2, (2, 48, 48))
    expected = (
        FocalLoss()(logits, target) + MSSSIMLoss()(logits, target) + IoULoss()(logits, target)
    )
    assert UNet3PlusHybridLoss()(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)
    weighted = UNet3PlusHybridLoss(focal_weight=2, ms_ssim_weight=0, iou_weight=0.5, gamma=1.0)(
        logits, target
    )
    assert weighted.item() == pytest.approx(
        2 * FocalLoss(1.0)(logits, target).item() + 0.5 * IoULoss()(logits, target).item(), rel=1e-6
    )


def test_dice_ce_from_registry():
    loss = create_loss("dice-ce", batch_dice=True, ce_weight=0.5)
    assert isinstance(loss, DiceCELoss) and loss.weights == {"dice": 1.0, "ce": 0.5}
    assert loss.terms["dice"].batch_dice is True


# -- deep supervision ---------------------------------------------------------------------


def test_default_weights():
    assert default_weights(1) == [1.0]
    assert default_weights(3) == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    assert sum(default_weights(5)) == pytest.approx(1.0)


def test_downsample_labels_is_torch_nearest():
    target = torch.randint(0, 5, (2, 17, 12))
    for size in [(8, 6), (5, 4), (17, 3)]:
        ref = F.interpolate(target[:, None].float(), size=size, mode="nearest")[:, 0].long()
        assert torch.equal(downsample_labels(target, size), ref)
    t = torch.arange(16).view(1, 4, 4)
    assert downsample_labels(t, (2, 2)).tolist() == [[[0, 2], [8, 10]]]  # every even pixel
    t3 = torch.randint(0, 3, (1, 8, 8, 8))
    assert torch.equal(downsample_labels(t3, (4, 4, 4)), t3[:, ::2, ::2, ::2])


def test_downsample_weight_is_area_mean():
    w = torch.arange(16.0).view(1, 4, 4)
    assert downsample_weight(w, (2, 2)).tolist() == [[[2.5, 4.5], [10.5, 12.5]]]
    assert downsample_weight(w, (4, 4)) is w


def test_deep_supervision_weights_and_resizing():
    ce = CrossEntropyLoss()
    main = torch.randn(2, 3, 16, 16)
    aux1 = torch.randn(2, 3, 8, 8)
    aux2 = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 16, 16))
    w = torch.rand(2, 16, 16) + 0.5
    out = ModelOutput(main, [aux1, aux2], None)
    expected = (
        4 / 7 * ce(main, target, w)
        + 2 / 7 * ce(aux1, target[:, ::2, ::2], F.avg_pool2d(w[:, None], 2)[:, 0])
        + 1 / 7 * ce(aux2, target[:, ::4, ::4], F.avg_pool2d(w[:, None], 4)[:, 0])
    )
    assert DeepSupervisionLoss(ce)(out, target, w).item() == pytest.approx(
        expected.item(), rel=1e-6
    )
    # explicit weights are used as given; a list of tensors works like a ModelOutput
    got = DeepSupervisionLoss(ce, weights=[1, 1, 0])([main, aux1, aux2], target[:, None])
    assert got.item() == pytest.approx(
        (ce(main, target) + ce(aux1, target[:, ::2, ::2])).item(), rel=1e-6
    )
    # a plain tensor is the main output alone
    assert DeepSupervisionLoss(ce)(main, target).item() == pytest.approx(
        ce(main, target).item(), rel=1e-6
    )


def test_deep_supervision_full_size_aux_3d():
    dice = DiceLoss()
    outs = [torch.randn(1, 2, 6, 8, 8) for _ in range(3)]
    target = torch.randint(0, 2, (1, 6, 8, 8))
    got = DeepSupervisionLoss(dice, weights=[1, 1, 1])(ModelOutput(outs[0], outs[1:], None), target)
    assert got.item() == pytest.approx(sum(dice(o, target).item() for o in outs), rel=1e-6)


def test_cgm_targets():
    target = torch.zeros(3, 4, 4, dtype=torch.long)
    target[1, 2, 2] = 2
    target[2, 0, 0] = 255
    assert cgm_targets(target, ignore_index=255).tolist() == [[1, 0], [0, 1], [1, 0]]
    assert cgm_targets(target).tolist() == [[1, 0], [0, 1], [0, 1]]


def test_deep_supervision_adds_cgm_bce():
    ce = CrossEntropyLoss(ignore_index=255)
    main = torch.randn(2, 2, 8, 8)
    target = torch.zeros(2, 8, 8, dtype=torch.long)
    target[1, 3:5, 3:5] = 1
    target[0, 0, 0] = 255
    cls = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    present = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    bce = F.binary_cross_entropy_with_logits(cls, present)
    got = DeepSupervisionLoss(ce, cgm_weight=0.4)(ModelOutput(main, [], cls), target)
    assert got.item() == pytest.approx(ce(main, target).item() + 0.4 * bce.item(), rel=1e-6)
    # by hand: mean of −log σ(2), −log(1 − σ(−1)), −log(1 − σ(.5)), −log σ(.3)
    sig = torch.sigmoid
    hand = (
        -(
            torch.log(sig(torch.tensor(2.0)))
            + torch.log(1 - sig(torch.tensor(-1.0)))
            + torch.log(1 - sig(torch.tensor(0.5)))
            + torch.log(sig(torch.tensor(0.3)))
        )
        / 4
    )
    assert bce.item() == pytest.approx(hand.item(), rel=1e-6)
    no_cgm = DeepSupervisionLoss(ce, cgm_weight=0)(ModelOutput(main, [], cls), target)
    assert no_cgm.item() == pytest.approx(ce(main, target).item(), rel=1e-6)


def test_deep_supervision_with_real_model_outputs():
    from unetkit.models import create_model

    net = create_model("unet3plus-ds-cgm", in_channels=1, num_classes=1, base_features=4)
    out = net(torch.randn(2, 1, 32, 32))
    assert len(out.aux) == 4 and out.cls_logits.shape == (2, 2)
    target = torch.zeros(2, 32, 32, dtype=torch.long)
    target[0, 8:20, 8:20] = 1
    loss = DeepSupervisionLoss(UNet3PlusHybridLoss(), weights=[1] * (1 + len(out.aux)))(out, target)
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert torch.isfinite(loss) and grads and all(torch.isfinite(g).all() for g in grads)
    assert net.cgm_head.conv.weight.grad.abs().sum() > 0  # the CGM term reaches its head


def test_deep_supervision_errors():
    ce = CrossEntropyLoss()
    target = torch.randint(0, 2, (1, 8, 8))
    main = torch.randn(1, 2, 8, 8)
    with pytest.raises(ConfigError, match="2 weight\\(s\\) but the model returned 3 output"):
        DeepSupervisionLoss(ce, weights=[1, 1])([main, main, main], target)
    with pytest.raises(ConfigError, match="not smaller than the target"):
        DeepSupervisionLoss(ce)([main, torch.randn(1, 2, 16, 16)], target)
    with pytest.raises(ConfigError, match="cls_logits must be \\(B, 2\\)"):
        DeepSupervisionLoss(ce)(ModelOutput(main, [], torch.randn(1, 1)), target)
    with pytest.raises(ConfigError, match="expects a ModelOutput"):
        DeepSupervisionLoss(ce)("logits", target)
    with pytest.raises(ConfigError, match="≥ 0 and not all 0"):
        DeepSupervisionLoss(ce, weights=[0, 0])
    with pytest.raises(ConfigError, match="cgm_weight must be ≥ 0"):
        DeepSupervisionLoss(ce, cgm_weight=-1)
    with pytest.raises(ConfigError, match="target shape"):
        DeepSupervisionLoss(ce)(
            torch.randn(1, 2, 4, 4), target
        )  # main output must match the target

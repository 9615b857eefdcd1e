"""Batch-norm folding: the folded net computes what the unfolded one does, with no batch norm left,
and only a predictor that owns its model folds it."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from unetkit import create_model
from unetkit.checkpoint import save_checkpoint
from unetkit.inference.predictor import Predictor
from unetkit.models.fold import fold_batch_norm


def _trained_stats(model: nn.Module, shape, steps: int = 3) -> nn.Module:
    """Give every batch norm non-trivial running statistics and affine parameters."""
    gen = torch.Generator().manual_seed(0)
    model.train()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.3, 0.3, generator=gen)
        for _ in range(steps):
            model(torch.randn(shape, generator=gen) * 3 + 1)
    return model.eval()


def _count(model: nn.Module, kind) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize(
    "name, dims, shape",
    [
        ("unet", 2, (2, 1, 48, 48)),
        ("unet", 3, (2, 1, 16, 24, 24)),
        ("unetpp", 2, (2, 1, 48, 48)),
        ("unet3plus", 2, (2, 1, 48, 48)),
        ("unet-original", 2, (1, 1, 108, 108)),
        ("unet-residual", 2, (2, 1, 48, 48)),
    ],
)
def test_folded_net_equals_unfolded(name, dims, shape):
    opts = dict(in_channels=1, num_classes=3, base_features=4, depth=2, norm="batch")
    if dims == 3:
        opts["spatial_dims"] = 3
    net = _trained_stats(create_model(name, **opts), shape)
    bns = _count(net, nn.modules.batchnorm._BatchNorm)
    folded = copy.deepcopy(net)
    assert fold_batch_norm(folded) == bns > 0
    assert _count(folded, nn.modules.batchnorm._BatchNorm) == 0
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = net(x), folded(x)
    assert want.shape == got.shape
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


def test_fold_refuses_training_mode_and_leaves_other_norms():
    net = create_model("unet", in_channels=1, num_classes=2, base_features=4, depth=2)
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norm(net.train())
    inst = create_model(
        "unet", in_channels=1, num_classes=2, base_features=4, depth=2, norm="instance"
    ).eval()
    before = copy.deepcopy(inst.state_dict())
    assert fold_batch_norm(inst) == 0
    assert all(torch.equal(before[k], v) for k, v in inst.state_dict().items())


def test_from_checkpoint_folds_and_a_callers_model_is_left_alone(tmp_path):
    """``from_checkpoint`` folds (it owns the model); ``Predictor(model)`` keeps the caller's batch
    norms, so the caller can go on training; both predict the same."""
    net = _trained_stats(
        create_model("unet", in_channels=1, num_classes=2, base_features=4, depth=2),
        (2, 1, 48, 48),
    )
    path = save_checkpoint(tmp_path / "m.pt", net, patch_size=[48, 48])
    bns = _count(net, nn.BatchNorm2d)
    plain = Predictor(net, precision="fp32", tile=48)
    assert plain.folded == 0 and _count(net, nn.BatchNorm2d) == bns
    assert "batch norm folded" not in plain.describe()
    owned = Predictor.from_checkpoint(path, precision="fp32", tile=48)
    assert owned.folded == bns and _count(owned.model, nn.BatchNorm2d) == 0
    assert "batch norm folded" in owned.describe()
    image = np.random.default_rng(2).normal(size=(1, 70, 90)).astype(np.float32)
    np.testing.assert_allclose(
        owned.predict_proba(image), plain.predict_proba(image), rtol=0, atol=1e-5
    )
    assert Predictor.from_checkpoint(path, precision="fp32", fold_batch_norm=False).folded == 0

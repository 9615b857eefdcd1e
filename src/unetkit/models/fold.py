"""Batch-norm folding for inference: each ``Conv → BatchNorm`` pair becomes one convolution.

In eval mode a batch norm is a fixed per-channel scale and shift, so it can be merged into the
convolution before it (PyTorch's ``fuse_conv_bn_eval`` does the arithmetic). What that saves on a
CPU is mostly memory, not FLOPs: every unfolded batch norm writes a second activation tensor as
large as the convolution's output, and both are alive at once. For the 64-wide U-Net on a 2048²
image in fp32 (608² tiles, AVX2 CPU) folding lowered the peak RSS from 2.01 to 1.57 GB and the time
from 73.3 to 69.4 s (BENCHMARKS.md, "Memory of the fp32 path"). TorchScript freezing and Inductor freezing fold too
(:mod:`unetkit.inference.fastpath`), so this matters for the eager path, the default for most jobs.

Only pairs that sit next to each other in an ``nn.Sequential`` are folded: that is how every unetkit
block (:class:`~unetkit.models.blocks.ConvNormAct`) is built, and a pair found that way can never
be one whose batch norm also feeds something else.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_PAIRS = ((nn.Conv2d, nn.BatchNorm2d), (nn.Conv3d, nn.BatchNorm3d))


def fold_batch_norm(model: nn.Module) -> int:
    """Fold every ``Conv → BatchNorm`` pair of ``model`` in place; returns how many were folded.

    The model must be in eval mode (the running statistics are what is folded) and must not be
    trained afterwards: the batch norms become ``nn.Identity``. Outputs equal the unfolded model's
    up to float rounding (about 1e-5 relative).

    Raises:
        ValueError: the model is in training mode.
    """
    if model.training:
        raise ValueError("fold_batch_norm needs a model in eval mode (call model.eval() first)")
    folded = 0
    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if any(type(conv) is c and type(bn) is b for c, b in _PAIRS) and _foldable(conv, bn):
                seq[i] = fuse_conv_bn_eval(conv, bn)
                seq[i + 1] = nn.Identity()
                folded += 1
    return folded


def _foldable(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> bool:
    """A batch norm with running statistics over exactly the convolution's output channels."""
    return (
        bn.track_running_stats
        and bn.running_mean is not None
        and bn.running_var is not None
        and bn.num_features == conv.out_channels
    )

"""Per-axis pooling strides and conv kernel sizes for an anisotropic volume (nnU-Net's rule).

A CT with 3 mm slices and 0.8 mm pixels should not halve its slices as often as its pixels: after
two in-plane poolings the pixels are 3.2 mm and only then is the volume close to isotropic. The
rule pools an axis only while its spacing is fine (at most twice the finest) and gives an axis a
kernel of 3 once it is fine (1 before, so coarse slices are not mixed at full resolution). The
result feeds :class:`~unetkit.models.unet.UNet`'s ``strides``, ``kernel_sizes`` and ``depth``.
"""

from __future__ import annotations

import math
from typing import Sequence

from ..errors import ConfigError
from ..utils import per_axis


def anisotropic_topology(
    spacing: Sequence[float],
    patch_size: Sequence[int],
    max_depth: int = 5,
    min_size: int = 4,
) -> tuple[list[list[int]], list[list[int]], int]:
    """Per-stage strides and kernel sizes for a patch of ``patch_size`` voxels of ``spacing``.

    At each stage, with the current spacing (the image spacing times the strides so far) and the
    current feature-map size:

    * an axis is *fine* when its spacing ≤ 2 × the smallest current spacing;
    * the stage's kernel is 3 on every axis that is fine now or was at an earlier stage, else 1;
    * a fine axis is pooled (stride 2) when its size after pooling stays ≥ ``min_size``; the
      others keep stride 1;
    * the net stops when no axis can be pooled or after ``max_depth`` down-samplings; the last
      stage (the bottleneck) gets its kernel by the same rule.

    Isotropic spacing on a cube gives the plain net: stride 2 and kernel 3 on every axis.

    Args:
        spacing: voxel size per axis (any unit, e.g. mm), all > 0.
        patch_size: training patch per axis, in voxels.
        max_depth: the most down-samplings.
        min_size: the smallest feature-map size an axis may be pooled to.

    Returns:
        ``(strides, kernel_sizes, depth)``: ``depth`` lists of per-axis strides (1 or 2),
        ``depth + 1`` lists of per-axis kernel sizes (1 or 3), and ``depth`` — the model options
        ``strides``, ``kernel_sizes`` and ``depth``.

    Raises:
        ConfigError: mismatched lengths, a spacing ≤ 0, or a patch too small to pool any axis.

    Example:
        A 3 mm × 0.8 mm × 0.8 mm CT, patch 32 × 128 × 128. Stage 0: the slices are 3.75× coarser
        than the pixels, so kernel 1 × 3 × 3 and an in-plane pooling only (pixels become 1.6 mm).
        Stage 1: 3.0 ≤ 2 × 1.6, so every axis is fine: kernel 3 and pooling everywhere. From then on
        the volume pools as a cube until the slice axis (32 → 16 → 8 → 4) would drop under 4 at
        stage 4, which pools in-plane only; ``max_depth`` ends the net with a 4 × 4 × 4 bottleneck.
        The pooling period is (8, 32, 32) instead of 32 on every axis:

        >>> strides, kernels, depth = anisotropic_topology((3.0, 0.8, 0.8), (32, 128, 128))
        >>> strides
        [[1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]
        >>> kernels
        [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]
        >>> depth
        5
        >>> pooling_period(strides)
        (8, 32, 32)
    """
    dims = len(patch_size)
    if len(spacing) != dims:
        raise ConfigError(
            f"spacing {tuple(spacing)} has {len(spacing)} axes but patch_size {tuple(patch_size)} "
            f"has {dims}: give one spacing per axis"
        )
    current = list(per_axis(spacing, dims, "spacing", kind=float, positive=True))
    size = list(per_axis(patch_size, dims, "patch_size", minimum=1))
    if int(max_depth) < 1 or int(min_size) < 1:
        raise ConfigError(f"max_depth and min_size must be ≥ 1, got {max_depth} and {min_size}")
    strides: list[list[int]] = []
    kernels: list[list[int]] = []
    wide = [False] * dims  # axes that have had kernel 3 (once 3, always 3)
    while True:
        finest = min(current)
        fine = [sp <= 2 * finest for sp in current]
        wide = [w or f for w, f in zip(wide, fine)]
        kernels.append([3 if w else 1 for w in wide])
        if len(strides) == int(max_depth):
            break
        pool = [f and s // 2 >= min_size for f, s in zip(fine, size)]
        if not any(pool):
            break
        strides.append([2 if p else 1 for p in pool])
        current = [sp * 2 if p else sp for sp, p in zip(current, pool)]
        size = [s // 2 if p else s for s, p in zip(size, pool)]
    if not strides:
        need = 2 * int(min_size)
        raise ConfigError(
            f"patch_size {tuple(patch_size)} cannot be pooled once (a fine axis needs ≥ {need} "
            f"voxels for min_size={min_size}); use a larger patch or a smaller min_size"
        )
    return strides, kernels, len(strides)


def pooling_period(strides: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """Per axis, the product of the strides: patch sizes that are multiples of it pool evenly."""
    return tuple(math.prod(axis) for axis in zip(*strides))


__all__ = ["anisotropic_topology", "pooling_period"]

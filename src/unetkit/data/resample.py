"""Resampling images, label masks and network outputs to another grid (2D and 3D).

A plan may train and predict at a reduced resolution: when the objects are much larger than the
patch a CPU can afford (polyps in endoscopy, organs), a half- or third-resolution patch holds a
whole object with context, and every step sees more of the image. Training cases are resampled
once when loaded; the predictor resamples each image down, predicts, and resamples the logits back
to the image's own grid before the argmax, so labels always come out at the input's size.

A plan may also fix a **target spacing** (``data.target_spacing``, nnU-Net's step for volumes
whose voxel sizes differ between cases, 3 mm slices beside 1 mm ones): each case is then resampled
by its own factors, ``spacing / target_spacing`` per axis (:func:`spacing_factors`), so that one
voxel of the network is the same physical size in every case, and outputs go back to each case's
own grid the same way.

Images go through area averaging when shrinking (an anti-aliased mean, ``adaptive_avg_pool``) and
(bi/tri)linear interpolation when growing; label masks through per-class linear interpolation of
their one-hot planes and an argmax (nnU-Net's choice: thin parts survive better than nearest
neighbour and no class value is invented); instance ids through nearest neighbour. Written on
``torch.nn.functional.interpolate`` because it does all of these in 2D and 3D, in float32, without
another dependency.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..utils import per_axis

Scale = Union[float, Sequence[float]]


def scale_factors(scale: Optional[Scale], spatial_dims: int) -> Optional[tuple[float, ...]]:
    """``scale`` as one factor per axis, or ``None`` when every factor is 1 (nothing to do)."""
    if scale is None:
        return None
    factors = per_axis(scale, spatial_dims, "scale", kind=float, positive=True)
    return None if all(s == 1.0 for s in factors) else factors


def spacing_factors(
    spacing: Optional[Sequence[float]],
    target_spacing: Optional[Sequence[float]],
    spatial_dims: int,
    scale: Optional[Scale] = None,
) -> Optional[tuple[float, ...]]:
    """The resampling factors of one image: ``spacing / target_spacing`` per axis with a target
    spacing, else ``scale``; ``None`` when there is nothing to do. An image whose file states no
    spacing (PNG, ``.npy``, an unscaled napari layer) is taken to be on the target grid already:
    guessing 1 per axis would rescale it by ``1 / target`` without a word.

    Example:
        >>> spacing_factors((3.0, 0.8, 0.8), (1.5, 0.8, 0.8), 3)   # 3 mm slices → 1.5 mm
        (2.0, 1.0, 1.0)
    """
    if target_spacing is None:
        return scale_factors(scale, spatial_dims)
    target = per_axis(target_spacing, spatial_dims, "target_spacing", kind=float, positive=True)
    if spacing is None:
        return None
    own = per_axis(spacing, spatial_dims, "spacing", kind=float, positive=True)
    # factors within 1e-6 of 1 are 1: a spacing read back from a file as float32 is not a reason
    # to interpolate a whole volume
    factors = tuple(1.0 if abs(s / t - 1) < 1e-6 else s / t for s, t in zip(own, target))
    return None if all(f == 1.0 for f in factors) else factors


def scaled_shape(shape: Sequence[int], scale: Optional[Scale]) -> tuple[int, ...]:
    """The grid size of ``shape`` resampled by ``scale`` (rounded, at least 1 per axis)."""
    factors = scale_factors(scale, len(shape))
    if factors is None:
        return tuple(int(s) for s in shape)
    return tuple(max(1, int(round(s * f))) for s, f in zip(shape, factors))


def _mode(spatial_dims: int) -> str:
    return "bilinear" if spatial_dims == 2 else "trilinear"


def _interpolate(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``(N, C, *spatial)`` float → ``(N, C, *shape)``: area mean on shrinking axes' grid, linear
    otherwise (a mixed change — one axis shrinks, another grows — is done in two passes)."""
    src = tuple(x.shape[2:])
    if src == shape:
        return x
    if all(t <= s for s, t in zip(src, shape)):
        return (
            F.adaptive_avg_pool2d(x, shape) if len(shape) == 2 else F.adaptive_avg_pool3d(x, shape)
        )
    if all(t >= s for s, t in zip(src, shape)):
        return F.interpolate(x, size=shape, mode=_mode(len(shape)), align_corners=False)
    down = tuple(min(s, t) for s, t in zip(src, shape))
    return _interpolate(_interpolate(x, down), shape)


def resample_image(image: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``(C, *spatial)`` image → ``(C, *shape)`` float32."""
    shape = tuple(int(s) for s in shape)
    if tuple(image.shape[1:]) == shape:
        return np.asarray(image, dtype=np.float32)
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    return _interpolate(x, shape)[0].numpy()


def resample_logits(logits: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``(K, *spatial)`` float logits → ``(K, *shape)``, linear (logits, not labels, are
    interpolated: the argmax afterwards draws smooth boundaries on the fine grid)."""
    shape = tuple(int(s) for s in shape)
    if tuple(logits.shape[1:]) == shape:
        return logits
    if all(t >= s for s, t in zip(logits.shape[1:], shape)):
        return F.interpolate(
            logits[None].float(), size=shape, mode=_mode(len(shape)), align_corners=False
        )[0]
    return _interpolate(logits[None].float(), shape)[0]


def resample_labels(mask: np.ndarray, shape: Sequence[int], num_classes: int) -> np.ndarray:
    """``(*spatial)`` class indices → ``(*shape)`` int64: each class's one-hot plane resampled
    (area mean / linear), then the argmax. Unlabelled pixels (negative,
    :data:`~unetkit.data.labels.IGNORE_INDEX`) stay unlabelled only where no labelled pixel
    contributes: partial annotations are often strokes thinner than the resampling step, and
    the labels are what training learns from."""
    shape = tuple(int(s) for s in shape)
    if tuple(mask.shape) == shape:
        return np.asarray(mask, dtype=np.int64)
    m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64))
    planes = _interpolate(torch.stack([(m == k).float() for k in range(num_classes)])[None], shape)
    out = planes[0].argmax(0).numpy()
    if bool((m < 0).any()):
        out[planes[0].sum(0).numpy() <= 1e-6] = int(m.min())
    return out


def resample_instances(instances: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``(*spatial)`` instance ids → ``(*shape)``, nearest neighbour (ids are names, not numbers)."""
    shape = tuple(int(s) for s in shape)
    if tuple(instances.shape) == shape:
        return instances
    x = torch.from_numpy(np.ascontiguousarray(instances, dtype=np.float64))[None, None]
    out = F.interpolate(x, size=shape, mode="nearest-exact")[0, 0]
    return out.numpy().astype(instances.dtype)


__all__ = [
    "resample_image",
    "resample_instances",
    "resample_labels",
    "resample_logits",
    "scale_factors",
    "scaled_shape",
    "spacing_factors",
]

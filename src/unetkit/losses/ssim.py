"""Multi-scale structural similarity (Wang et al. 2003) in 2D and 3D, and the MS-SSIM loss of UNet 3+.

The computation follows the reference implementations (Wang's MATLAB code, pytorch-msssim, MONAI):
an 11-tap Gaussian window (σ = 1.5) applied without padding ("valid"), K1 = 0.01, K2 = 0.03,
contrast-structure terms cs at every scale but the last, the full SSIM at the last, a ×2 average
pooling (floor: an odd last row/column is dropped) between scales, and
MS-SSIM = Π_{i<n} cs_i^{w_i} · ssim_n^{w_n}.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .base import LossInput, SegmentationLoss

#: The standard 5-scale weights of Wang et al. (2003).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
NORMALIZE = ("relu", "simple")
#: cs/ssim terms are clamped to at least this before the fractional powers (finite value and gradient).
CLAMP_EPS = 1e-4


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """1D Gaussian window (size,), centred, normalised to sum 1."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).float()


def ms_ssim_plan(
    spatial_shape: Sequence[int], win_size: int = 11, max_scales: int = 5
) -> tuple[int, int]:
    """How many scales and which window size an image of ``spatial_shape`` allows.

    Every scale needs each axis to be at least ``win_size`` long (the window is applied without
    padding), and each scale halves the axes (floor). The number of scales is the largest
    n ≤ ``max_scales`` such that min(shape) // 2^(n−1) ≥ ``win_size``: 5 scales need ≥ 176 px
    (11 · 16), 4 need ≥ 88, 3 need ≥ 44, 2 need ≥ 22. An image smaller than the window gets one
    scale with the window shrunk to the largest odd size ≤ min(shape).

    Returns:
        (number of scales, window size).
    """
    side = min(int(s) for s in spatial_shape)
    if side < 1:
        raise ConfigError(
            f"MS-SSIM needs a non-empty image, got spatial shape {tuple(spatial_shape)}"
        )
    if side < win_size:
        return 1, side if side % 2 else side - 1
    n = 1
    while n < max_scales and side // 2**n >= win_size:
        n += 1
    return n, win_size


def _filter(x: torch.Tensor, window: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """Separable 'valid' filtering of the last ``spatial_dims`` axes of x with a 1D window."""
    kernel = window.to(x).view(1, 1, -1)
    for axis in range(x.dim() - spatial_dims, x.dim()):
        moved = x.movedim(axis, -1)
        shape = moved.shape
        out = F.conv1d(moved.reshape(-1, 1, shape[-1]), kernel)
        x = out.reshape(*shape[:-1], out.shape[-1]).movedim(-1, axis)
    return x


def _pool2(x: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """×2 average pooling of the last ``spatial_dims`` axes; an odd last element is dropped."""
    for axis in range(x.dim() - spatial_dims, x.dim()):
        n = x.shape[axis] // 2
        x = x.narrow(axis, 0, 2 * n).unflatten(axis, (n, 2)).mean(axis + 1)
    return x


def _ssim_cs(
    x: torch.Tensor, y: torch.Tensor, window: torch.Tensor, spatial_dims: int, c1: float, c2: float
):
    """Mean SSIM and mean contrast-structure term over the spatial axes: two (B, C) tensors."""
    stats = _filter(torch.stack([x, y, x * x, y * y, x * y]), window, spatial_dims)
    mu_x, mu_y, exx, eyy, exy = stats.unbind(0)
    var_x, var_y, cov = exx - mu_x**2, eyy - mu_y**2, exy - mu_x * mu_y
    cs_map = (2 * cov + c2) / (var_x + var_y + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs_map
    return ssim_map.flatten(2).mean(-1), cs_map.flatten(2).mean(-1)


def ms_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    win_size: int = 11,
    win_sigma: float = 1.5,
    weights: Sequence[float] = MS_SSIM_WEIGHTS,
    k: tuple[float, float] = (0.01, 0.03),
    normalize: Optional[str] = "relu",
) -> torch.Tensor:
    """MS-SSIM of each image and channel.

    The number of scales is reduced automatically when the image is too small for
    ``len(weights)`` scales (see :func:`ms_ssim_plan`); the weights of the scales used are then
    re-normalised to sum 1 (so the value stays in [0, 1]). With all scales the weights are used as
    given (the standard five sum to 1.0001), as in the reference implementations.

    Args:
        x, y: (B, C, *spatial) with 1 to 3 spatial axes, same shape.
        data_range: max − min of the value range (1 for probabilities).
        win_size, win_sigma: Gaussian window (11, 1.5 as in the paper).
        weights: per-scale exponents (default: the 5 standard ones). One weight gives plain SSIM.
        k: (K1, K2) stability constants.
        normalize: ``relu`` clamps every cs/ssim term to ≥ :data:`CLAMP_EPS` (pytorch-msssim clamps
            at 0 with a ReLU; the small positive floor also keeps the gradient of the fractional
            powers finite); ``simple`` maps each term v to (v + 1) / 2 first (pytorch_msssim's
            ``normalize="simple"``), then clamps the same way; ``None``: no clamping (NaN when a
            term is negative).

    Returns:
        (B, C) MS-SSIM values, 1 for identical images.

    Example:
        >>> x = torch.rand(2, 1, 64, 64)
        >>> ms_ssim(x, x).shape  # 64 px: 3 scales; every value 1
        torch.Size([2, 1])
    """
    if x.shape != y.shape:
        raise ConfigError(
            f"MS-SSIM needs two tensors of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    spatial_dims = x.dim() - 2
    if not 1 <= spatial_dims <= 3:
        raise ConfigError(
            f"MS-SSIM takes (B, C, *spatial) with 1 to 3 spatial axes, got shape {tuple(x.shape)}"
        )
    if normalize not in NORMALIZE + (None,):
        raise ConfigError(f"normalize must be one of {NORMALIZE} or None, got {normalize!r}")
    if len(weights) < 1 or any(w < 0 for w in weights):
        raise ConfigError(
            f"MS-SSIM weights must be a non-empty list of values ≥ 0, got {tuple(weights)}"
        )
    levels, win = ms_ssim_plan(x.shape[2:], win_size, len(weights))
    w = torch.tensor(weights[:levels], dtype=x.dtype, device=x.device)
    if levels < len(weights):
        w = w / w.sum()
    window = gaussian_window(win, win_sigma)
    c1, c2 = (k[0] * data_range) ** 2, (k[1] * data_range) ** 2
    terms = []
    for level in range(levels):
        ssim_val, cs = _ssim_cs(x, y, window, spatial_dims, c1, c2)
        terms.append(cs if level < levels - 1 else ssim_val)
        if level < levels - 1:
            x, y = _pool2(x, spatial_dims), _pool2(y, spatial_dims)
    t = torch.stack(terms)  # (levels, B, C)
    if normalize == "simple":
        t = (t + 1) / 2
    if normalize is not None:
        t = t.clamp_min(CLAMP_EPS)
    return torch.prod(t ** w.view(-1, 1, 1), dim=0)


class MSSSIMLoss(SegmentationLoss):
    """1 − MS-SSIM between the class probability maps and the one-hot target, mean over images and classes.

    The probability maps are softmax channels (K ≥ 2) or σ(z) (K = 1); by default only the
    foreground classes are compared. Ignored pixels are set to 0 in both maps (they then agree).
    The per-pixel ``weight`` map is not used: SSIM compares windows, not pixels. Images smaller
    than 176 px per axis use fewer scales (:func:`ms_ssim_plan`). Minimum 0.

    Args:
        include_background: compare class 0 too.
        win_size, win_sigma, weights, k, normalize: see :func:`ms_ssim`.
        ignore_index: label of pixels left out.
    """

    def __init__(
        self,
        include_background: bool = False,
        win_size: int = 11,
        win_sigma: float = 1.5,
        weights: Sequence[float] = MS_SSIM_WEIGHTS,
        k: tuple[float, float] = (0.01, 0.03),
        normalize: Optional[str] = "relu",
        ignore_index: Optional[int] = None,
    ):
        super().__init__(ignore_index)
        if win_size < 1 or win_size % 2 == 0:
            raise ConfigError(f"MS-SSIM win_size must be a positive odd number, got {win_size}")
        if normalize not in NORMALIZE + (None,):
            raise ConfigError(f"normalize must be one of {NORMALIZE} or None, got {normalize!r}")
        self.include_background = bool(include_background)
        self.win_size = int(win_size)
        self.win_sigma = float(win_sigma)
        self.weights = tuple(float(w) for w in weights)
        self.k = tuple(k)
        self.normalize = normalize

    def compute(self, inp: LossInput) -> torch.Tensor:
        p, g = inp.probs(), inp.one_hot()
        if not self.include_background:
            p, g = p[:, 1:], g[:, 1:]
        if inp.valid is not None:
            v = inp.valid.unsqueeze(1).to(p.dtype)
            p, g = p * v, g * v
        val = ms_ssim(
            p, g, 1.0, self.win_size, self.win_sigma, self.weights, self.k, self.normalize
        )
        return 1.0 - val.mean()

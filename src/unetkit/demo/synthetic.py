"""Seeded synthetic microscopy of touching cells: the problem the U-Net paper was built for.

An image is made in four steps, each seeded from one :class:`numpy.random.Generator`:

1. **Layout** (:func:`cell_layout`): cell centres on a hexagonal lattice (spacing ``spacing`` px)
   with strong jitter; lattice sites inside smooth "empty" blobs (``empty_fraction`` of the area)
   and a few random ones (``dropout``) stay empty. Each cell is a perturbed ellipse: its own
   elongation and orientation, a radius modulated by Fourier harmonics 2–4 (``harmonics``) and a
   reach of ``reach`` × half the spacing, more than half the distance to its neighbours, so
   neighbours collide. Every pixel goes to the cell whose normalised distance ``ρ = |p − c| / R(θ)``
   is smallest (a multiplicatively weighted Voronoi partition: cells squeeze against each other
   along curved contacts) when that ``ρ`` is below a noisy threshold near 1 (ragged outer edges).
2. **Truth** (:func:`separate_instances`): the instance mask, with a 1-pixel background line cut
   between every two cells that touch (the higher id gives up its contact pixels), as the U-Net
   paper's ground truth separates touching cells. No two instances are 8-connected.
3. **Rendering** (:func:`render_cells`): per-cell brightness, fine texture and a nucleus of another
   brightness; a dark rim of random depth and width (``membrane_depth``, ``membrane_width``) along
   each cell's edge, so the contact between two cells is a 1–3 px dark membrane or, where both rims
   are faint, barely more than the change of brightness from one cell to the next; a textured
   background; an uneven illumination field (``illumination``: ±35 % by default, a gradient plus
   large blobs); Gaussian blur (``blur`` px); Poisson photon noise (``photons`` at brightness 1) and
   Gaussian read noise.
4. **Quantisation**: ``uint8`` image (brightness 1.25 → 255), ``uint16`` instance ids ``1 … n``
   (slivers under :data:`MIN_CELL_PIXELS` px, cut by the image edge, become background).

:func:`~unetkit.data.objects.touching_fraction` (re-exported here) measures how crowded the result
is: the share of cells with another cell within ``max_gap`` px (default 2: across the cut line). With the defaults over 99 % of the cells
touch another (a confluent culture with some empty patches). :func:`write_dataset` writes ``train/``, ``val/`` (``images/`` + ``masks/``, PNG)
and ``large/`` (one image several overlap-tile tiles wide, with its mask).

Example:
    >>> image, instances = synthetic_cells((256, 256), seed=0)
    >>> image.dtype, instances.dtype, image.shape
    (dtype('uint8'), dtype('uint16'), (256, 256))
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
from scipy import ndimage
from skimage.segmentation import relabel_sequential

from ..data.objects import touching_fraction, touching_pairs
from ..errors import ConfigError

PathLike = Union[str, Path]

#: Brightness that maps to 255 in the ``uint8`` image.
FULL_SCALE = 1.25
#: Truth cells smaller than this (slivers cut by the image edge) become background.
MIN_CELL_PIXELS = 30


@dataclass(frozen=True)
class CellStyle:
    """How the synthetic cells look; every range ``(lo, hi)`` is drawn uniformly per cell.

    Attributes:
        spacing: distance between neighbouring lattice sites (≈ cell diameter), px.
        jitter: centre jitter, as a fraction of ``spacing`` (uniform in ±jitter).
        reach: cell radius / (spacing / 2); above 1 neighbours collide and share a contact.
        elongation: axis ratio of the underlying ellipse.
        harmonics: amplitude of each of the radius's Fourier harmonics 2, 3, 4 (up to this value).
        edge_noise: amplitude of the smooth noise that makes the outer edges ragged.
        empty_fraction: share of the area in background blobs with no cell.
        dropout: share of the remaining lattice sites left empty at random.
        brightness: cell brightness.
        nucleus: nucleus brightness relative to its cell.
        texture: relative amplitude of the fine texture in cells and background.
        membrane_depth: darkening of a cell's rim (0 = none, 1 = black).
        membrane_width: e-folding width of the rim, px.
        background: background brightness.
        illumination: amplitude of the illumination field (multiplier in ``1 ± illumination``).
        blur: Gaussian blur sigma, px.
        photons: expected photon count at brightness 1 (Poisson noise; lower = noisier).
        read_noise: standard deviation of the additive Gaussian noise.
    """

    spacing: float = 22.0
    jitter: float = 0.28
    reach: tuple = (1.05, 1.35)
    elongation: tuple = (1.0, 1.5)
    harmonics: float = 0.1
    edge_noise: float = 0.06
    empty_fraction: float = 0.22
    dropout: float = 0.06
    brightness: tuple = (0.45, 0.95)
    nucleus: tuple = (0.7, 1.3)
    texture: float = 0.12
    membrane_depth: tuple = (0.15, 0.7)
    membrane_width: tuple = (0.6, 1.6)
    background: float = 0.12
    illumination: float = 0.35
    blur: float = 1.0
    photons: float = 60.0
    read_noise: float = 0.02

    def __post_init__(self):
        if not self.spacing >= 6:
            raise ConfigError(f"CellStyle.spacing must be >= 6 px, got {self.spacing}")
        for name in (
            "reach",
            "elongation",
            "brightness",
            "nucleus",
            "membrane_depth",
            "membrane_width",
        ):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ConfigError(
                    f"CellStyle.{name} must be a range (lo, hi) with 0 <= lo <= hi, got "
                    f"{getattr(self, name)}"
                )
        if not 0 <= self.empty_fraction < 1 or not 0 <= self.dropout < 1:
            raise ConfigError("CellStyle.empty_fraction and dropout must lie in [0, 1)")
        if not self.photons > 0:
            raise ConfigError(f"CellStyle.photons must be > 0, got {self.photons}")


# ---------------------------------------------------------------------------------------- helpers
def smooth_noise(shape: Sequence[int], rng: np.random.Generator, scale: float) -> np.ndarray:
    """Smooth random field of unit standard deviation with features of about ``scale`` px.

    Drawn on a grid ``scale`` times coarser and interpolated (cubic), which costs little even for
    large ``scale``.

    Args:
        shape: ``(H, W)`` of the field.
        rng: the random generator.
        scale: feature size in px (> 0).

    Returns:
        ``(H, W)`` float64, mean ≈ 0, std 1.
    """
    shape = tuple(int(s) for s in shape)
    if scale <= 1.5:
        field = ndimage.gaussian_filter(rng.standard_normal(shape), max(scale, 0.5))
    else:
        coarse = tuple(int(math.ceil(s / scale)) + 4 for s in shape)
        small = rng.standard_normal(coarse)
        field = ndimage.zoom(small, scale, order=3, mode="mirror", grid_mode=True)
        off = [int(scale)] * len(shape)
        field = field[tuple(slice(o, o + s) for o, s in zip(off, shape))]
    field = field - field.mean()
    std = field.std()
    return field / std if std > 0 else field


def _draw(rng: np.random.Generator, bounds: tuple, n: int) -> np.ndarray:
    return rng.uniform(bounds[0], bounds[1], n)


@dataclass
class Layout:
    """What :func:`cell_layout` returns.

    Attributes:
        territories: ``(H, W)`` int32 cell ids ``1 … n`` without separation lines (0 = background).
        rho: ``(H, W)`` float32 normalised distance of each pixel to its cell's centre (1 ≈ the edge).
        centers: ``(n, 2)`` float64 cell centres (row, column), row ``i - 1`` for id ``i``.
    """

    territories: np.ndarray
    rho: np.ndarray
    centers: np.ndarray


def cell_layout(
    shape: Sequence[int], rng: np.random.Generator, style: CellStyle = CellStyle()
) -> Layout:
    """Pack irregular cells so that most collide with a neighbour (see the module docstring, step 1).

    Args:
        shape: ``(H, W)`` of the image.
        rng: the random generator.
        style: the :class:`CellStyle`.

    Returns:
        The :class:`Layout`; cell ids are in raster order of the lattice, consecutive from 1.
    """
    h, w = (int(s) for s in shape)
    d = float(style.spacing)
    dy = d * math.sqrt(3) / 2
    rows = np.arange(-1, int(h / dy) + 2)
    cols = np.arange(-1, int(w / d) + 2)
    cy, cx = np.meshgrid(rows * dy, cols * d, indexing="ij")
    cx = cx + (rows[:, None] % 2) * d / 2
    centers = np.stack([cy.ravel(), cx.ravel()], axis=1)
    centers = centers + rng.uniform(-style.jitter, style.jitter, centers.shape) * d
    empty = smooth_noise((h, w), rng, 3 * d)
    cut = np.quantile(empty, 1 - style.empty_fraction) if style.empty_fraction > 0 else np.inf
    iy = np.clip(np.round(centers[:, 0]).astype(int), 0, h - 1)
    ix = np.clip(np.round(centers[:, 1]).astype(int), 0, w - 1)
    keep = (empty[iy, ix] < cut) & (rng.random(len(centers)) >= style.dropout)
    n_all = len(centers)
    radius = _draw(rng, style.reach, n_all) * d / 2
    elong = _draw(rng, style.elongation, n_all)
    angle = rng.uniform(0, np.pi, n_all)
    amps = rng.uniform(0, style.harmonics, (n_all, 3))
    phases = rng.uniform(0, 2 * np.pi, (n_all, 3))
    centers = centers[keep]
    radius, elong, angle, amps, phases = (a[keep] for a in (radius, elong, angle, amps, phases))
    inside = (
        (centers[:, 0] > -radius)
        & (centers[:, 0] < h + radius)
        & (centers[:, 1] > -radius)
        & (centers[:, 1] < w + radius)
    )
    centers, radius, elong, angle, amps, phases = (
        a[inside] for a in (centers, radius, elong, angle, amps, phases)
    )

    best = np.full((h, w), np.inf, dtype=np.float64)
    owner = np.zeros((h, w), dtype=np.int32)
    for i in range(len(centers)):
        reach = radius[i] * math.sqrt(elong[i]) * (1 + amps[i].sum()) * 1.2 + 2
        y0, y1 = max(0, int(centers[i, 0] - reach)), min(h, int(centers[i, 0] + reach) + 1)
        x0, x1 = max(0, int(centers[i, 1] - reach)), min(w, int(centers[i, 1] + reach) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        py, px = yy - centers[i, 0], xx - centers[i, 1]
        c, s = math.cos(angle[i]), math.sin(angle[i])
        u = (px * c + py * s) / math.sqrt(elong[i])
        v = (-px * s + py * c) * math.sqrt(elong[i])
        theta = np.arctan2(v, u)
        r = radius[i] * (
            1 + sum(amps[i, k] * np.cos((k + 2) * theta + phases[i, k]) for k in range(3))
        )
        rho = np.hypot(u, v) / r
        box = best[y0:y1, x0:x1]
        win = rho < box
        box[win] = rho[win]
        owner[y0:y1, x0:x1][win] = i + 1
    edge = 1 + style.edge_noise * smooth_noise((h, w), rng, 3.0)
    owner[best >= edge] = 0
    # renumber 1..n (cells that lost every pixel vanish), keep their centres
    ids = np.unique(owner)
    ids = ids[ids > 0]
    lut = np.zeros(len(centers) + 1, dtype=np.int32)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
    territories = lut[owner]
    rho = np.where(territories > 0, best, 0).astype(np.float32)
    return Layout(territories, rho, centers[ids - 1])


def separate_instances(territories: np.ndarray) -> np.ndarray:
    """Cut a 1-pixel background line between touching cells (see the module docstring, step 2).

    A pixel of cell ``j`` becomes background when one of its 8 neighbours belongs to a cell
    ``i < j``; afterwards no two cells are 8-connected.

    Args:
        territories: ``(H, W)`` integer cell ids (0 = background).

    Returns:
        ``(H, W)`` array of the same dtype.
    """
    lab = np.asarray(territories)
    if lab.ndim != 2 or lab.dtype.kind not in "iu":
        raise ConfigError(f"territories must be a 2D integer array, got {lab.dtype} {lab.shape}")
    big = np.iinfo(np.int64).max
    other = np.where(lab > 0, lab, big).astype(np.int64)
    lowest = ndimage.minimum_filter(other, size=3, mode="constant", cval=big)
    out = lab.copy()
    out[(lab > 0) & (lowest < lab)] = 0
    return out


def render_cells(
    layout: Layout, rng: np.random.Generator, style: CellStyle = CellStyle()
) -> np.ndarray:
    """Microscope image of a layout (see the module docstring, step 3).

    Args:
        layout: from :func:`cell_layout`.
        rng: the random generator.
        style: the :class:`CellStyle`.

    Returns:
        ``(H, W)`` float64 brightness (≈ 0 … 1.2, noisy).
    """
    lab = layout.territories
    shape = lab.shape
    n = int(lab.max())
    cell_b = np.concatenate([[style.background], _draw(rng, style.brightness, n)])
    nuc_f = np.concatenate([[1.0], _draw(rng, style.nucleus, n)])
    nuc_r = np.concatenate([[0.0], rng.uniform(0.3, 0.5, n)])
    depth = np.concatenate([[0.0], _draw(rng, style.membrane_depth, n)])
    width = np.concatenate([[1.0], _draw(rng, style.membrane_width, n)])

    img = cell_b[lab] * (1 + style.texture * smooth_noise(shape, rng, 1.2))
    nucleus = 1 / (1 + np.exp((layout.rho - nuc_r[lab]) / 0.04))
    img *= 1 + (nuc_f[lab] - 1) * nucleus * (lab > 0)
    # dark rims: distance to the nearest pixel of another label (cell or background)
    border = np.zeros(shape, dtype=bool)
    border[:-1] |= lab[:-1] != lab[1:]
    border[1:] |= lab[1:] != lab[:-1]
    border[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    border[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    border &= lab > 0
    dist = ndimage.distance_transform_edt(~border)
    img *= 1 - depth[lab] * np.exp(-dist / width[lab])
    # uneven illumination: a random gradient plus large blobs, in 1 ± illumination
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]] / max(shape)
    a = rng.uniform(0, 2 * np.pi)
    light = (
        0.6 * (np.cos(a) * yy + np.sin(a) * xx) / 1.0 + 0.4 * smooth_noise(shape, rng, 150.0) / 2.5
    )
    light = (light - light.min()) / max(np.ptp(light), 1e-9) * 2 - 1
    img *= 1 + style.illumination * light
    img = ndimage.gaussian_filter(img, style.blur) if style.blur > 0 else img
    img = rng.poisson(np.clip(img, 0, None) * style.photons) / style.photons
    img = img + rng.normal(0, style.read_noise, shape)
    return img


def synthetic_cells(
    shape: Sequence[int] = (256, 256),
    seed: Union[int, np.random.SeedSequence] = 0,
    style: CellStyle = CellStyle(),
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic microscopy image and its instance truth.

    Args:
        shape: ``(H, W)``.
        seed: an integer or a :class:`numpy.random.SeedSequence`; the same seed gives identical arrays.
        style: the :class:`CellStyle`.

    Returns:
        ``(image, instances)``: ``(H, W)`` ``uint8`` image and ``(H, W)`` ``uint16`` instance ids
        ``1 … n`` (0 = background, touching cells cut apart by a 1-px line, no cell under
        :data:`MIN_CELL_PIXELS` px).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or min(shape) < 16:
        raise ConfigError(f"shape must be (H, W) with both at least 16 px, got {shape}")
    rng = np.random.default_rng(seed)
    layout = cell_layout(shape, rng, style)
    if layout.territories.max() > np.iinfo(np.uint16).max:
        raise ConfigError(
            f"{int(layout.territories.max())} cells do not fit uint16 ids; use a smaller shape"
        )
    image = render_cells(layout, rng, style)
    image8 = np.clip(np.round(image / FULL_SCALE * 255), 0, 255).astype(np.uint8)
    instances = separate_instances(layout.territories)
    small = np.bincount(instances.ravel()) < MIN_CELL_PIXELS
    small[0] = False
    instances = relabel_sequential(np.where(small[instances], 0, instances))[0]
    return image8, instances.astype(np.uint16)


# -------------------------------------------------------------------------------------- data sets
@dataclass
class SyntheticDataset:
    """What :func:`write_dataset` wrote.

    Attributes:
        root: the data set folder.
        train_dir, val_dir: ``images/`` + ``masks/`` folders.
        large_image, large_mask: the large image (``uint8`` PNG) and its instance mask (``uint16`` PNG).
        stats: cell counts and touching fractions (also in ``root/stats.json``).
    """

    root: Path
    train_dir: Path
    val_dir: Path
    large_image: Path
    large_mask: Path
    stats: dict


def write_dataset(
    root: PathLike,
    n_train: int = 12,
    n_val: int = 2,
    size: Sequence[int] = (384, 384),
    large_shape: Sequence[int] = (1024, 1536),
    seed: int = 0,
    style: CellStyle = CellStyle(),
    progress: bool = False,
) -> SyntheticDataset:
    """Write a seeded synthetic data set: ``train/``, ``val/`` and ``large/`` under ``root``.

    Images are ``train_NNN.png`` / ``val_NNN.png`` / ``large.png`` (``uint8``) in ``images/`` and their instance masks, same name, in
    ``masks/`` (``uint16``; 0 = background). Image ``k`` of the training set uses seed
    ``[seed, 0, k]``, validation ``[seed, 1, k]``, the large image ``[seed, 2, 0]``.

    Args:
        root: output folder (created; existing files of the same names are replaced).
        n_train, n_val: image counts (``n_train >= 1``).
        size: ``(H, W)`` of the training and validation images.
        large_shape: ``(H, W)`` of the large image.
        seed: the base seed.
        style: the :class:`CellStyle`.
        progress: show a progress bar (tqdm).

    Returns:
        The :class:`SyntheticDataset`.
    """
    from tqdm import tqdm

    from ..io import write_image
    from ..utils import progress_bars_off

    if n_train < 1 or n_val < 0:
        raise ConfigError(f"need n_train >= 1 and n_val >= 0, got {n_train} and {n_val}")
    root = Path(root)
    stats: dict = {"seed": seed, "style": dataclasses.asdict(style)}
    out: dict = {}
    bar = tqdm(
        total=n_train + n_val + 1,
        desc="synthetic data",
        unit="image",
        leave=False,
        disable=progress_bars_off(progress),
    )
    for split, count, index, shape in (
        ("train", n_train, 0, size),
        ("val", n_val, 1, size),
        ("large", 1, 2, large_shape),
    ):
        cells = touching = 0
        for k in range(count):
            image, instances = synthetic_cells(shape, seed=_seed(seed, index, k), style=style)
            name = "large" if split == "large" else f"{split}_{k:03d}"
            img_path = write_image(root / split / "images" / f"{name}.png", image[None])
            mask_path = write_image(root / split / "masks" / f"{name}.png", instances[None])
            n = int(np.unique(instances).size - (instances == 0).any())
            cells += n
            touching += int(round(touching_fraction(instances) * n)) if n else 0
            out[split] = (img_path, mask_path)
            bar.update()
        if count:
            stats[split] = {
                "images": count,
                "shape": list(shape),
                "cells": cells,
                "touching_fraction": touching / cells if cells else float("nan"),
            }
    bar.close()
    all_cells = sum(stats[s]["cells"] for s in ("train", "val", "large") if s in stats)
    all_touch = sum(
        stats[s]["touching_fraction"] * stats[s]["cells"]
        for s in ("train", "val", "large")
        if s in stats and stats[s]["cells"]
    )
    stats["touching_fraction"] = all_touch / all_cells if all_cells else float("nan")
    (root / "stats.json").write_text(json.dumps(stats, indent=2))
    return SyntheticDataset(
        root, root / "train", root / "val", out["large"][0], out["large"][1], stats
    )


def _seed(seed: int, split: int, k: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed), int(split), int(k)])


__all__ = [
    "CellStyle",
    "Layout",
    "SyntheticDataset",
    "cell_layout",
    "render_cells",
    "separate_instances",
    "smooth_noise",
    "synthetic_cells",
    "touching_fraction",
    "touching_pairs",
    "write_dataset",
]

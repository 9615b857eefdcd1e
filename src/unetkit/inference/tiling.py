"""Pure tiling maths for inference: tile grids, blend weights, mirror padding, stitching.

Two strategies, matching the two kinds of network:

* **Sliding window** (same-padding nets, output size == input size): tiles overlap by a fraction of
  their size and their predictions are blended with weights (a Gaussian by default, as MONAI's
  ``sliding_window_inference``), so tile edges, where the net saw zero padding, count little; or
  they are *crop-stitched*: neighbours split their overlap in the middle and each pixel comes from
  one tile only (:func:`crop_ranges`). With tile steps on the net's pooling grid (``align``) and
  half-overlaps wider than its receptive radius, crop stitching reproduces the whole-image forward.
  :func:`sliding_window_grid`, :func:`gaussian_weights`, :func:`predict_tiled`.
* **Overlap-tile** (valid-padding nets such as the original U-Net, Fig. 2 of the paper): the
  *output* tiles abut and together cover the image; each input tile is its output tile grown by the
  net's border; context missing at the image edges is mirrored (:func:`mirror_pad`). No blending.
  :func:`overlap_tile_grid`, :func:`choose_overlap_tile`, :func:`predict_overlap_tile`.

Everything here is stateless (no model, device or precision logic): ``fn`` is any callable mapping a
CPU batch ``(B, C, *in_tile)`` torch tensor to ``(B, K, *out_tile)``; the predictor wraps the model,
device, precision and test-time augmentation into such a callable.

Shapes: images are ``(C, *spatial)`` numpy arrays, predictions ``(K, *spatial)`` float32; 2D and 3D
(any number of spatial axes, in fact).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch

from ..data.sampling import mirror_indices as _mirror_fold
from ..errors import ConfigError
from ..models.geometry import size_rule_of
from ..utils import per_axis

IntOrSeq = Union[int, Sequence[int]]
Slices = tuple  # tuple[slice, ...], one per spatial axis
BorderSpec = Union[int, Sequence[int], Sequence[Sequence[int]]]
WEIGHT_MODES = ("gaussian", "constant", "crop")


# -- small helpers ------------------------------------------------------------------------------
def _per_axis(value: IntOrSeq, ndim: int, name: str, minimum: int = 1) -> tuple[int, ...]:
    """Whole numbers per spatial axis, each ≥ ``minimum`` (:func:`unetkit.utils.per_axis`)."""
    return per_axis(value, ndim, name, minimum=minimum)


def _borders(border: BorderSpec, ndim: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(before, after)`` per axis from an int, per-axis ints (same both sides) or per-axis pairs."""
    if isinstance(border, (int, np.integer)):
        pairs = [(int(border), int(border))] * ndim
    else:
        border = list(border)
        if len(border) != ndim:
            raise ConfigError(f"border needs {ndim} entries, one per spatial axis; got {border}")
        pairs = []
        for b in border:
            if isinstance(b, (int, np.integer)):
                pairs.append((int(b), int(b)))
            elif len(b) == 2:
                pairs.append((int(b[0]), int(b[1])))
            else:
                raise ConfigError(
                    f"each border entry must be an int or a (before, after) pair, got {b!r}"
                )
    if any(v < 0 for p in pairs for v in p):
        raise ConfigError(f"border values must be ≥ 0, got {pairs}")
    return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float32).numpy()
    return np.asarray(x)


# -- grids --------------------------------------------------------------------------------------
def tile_starts(image_size: int, tile_size: int, step: int) -> list[int]:
    """Start indices of tiles covering one axis: ``0, step, 2·step, …`` and a last one flush with the end.

    Args:
        image_size: axis length (≥ 1).
        tile_size: tile length (≥ 1).
        step: distance between starts, 1 ≤ step ≤ tile_size (a larger step would leave gaps).

    Returns:
        Sorted, distinct starts. The last tile ends exactly at ``image_size`` (it may overlap the
        previous one by more than ``tile_size − step``). When ``image_size ≤ tile_size`` there is one
        tile, ``[0]``, reaching past the end: the caller pads the image.

    Example:
        >>> tile_starts(10, 4, 4)
        [0, 4, 6]
    """
    image_size, tile_size, step = int(image_size), int(tile_size), int(step)
    if image_size < 1 or tile_size < 1:
        raise ConfigError(
            f"image and tile sizes must be ≥ 1, got image {image_size}, tile {tile_size}"
        )
    if not 1 <= step <= tile_size:
        raise ConfigError(
            f"step must be between 1 and the tile size {tile_size} (a larger step leaves gaps), got {step}"
        )
    if image_size <= tile_size:
        return [0]
    return list(range(0, image_size - tile_size, step)) + [image_size - tile_size]


def window_starts(
    image_shape: Sequence[int],
    tile_shape: IntOrSeq,
    overlap: Union[float, Sequence[float]] = 0.5,
    align: IntOrSeq = 1,
) -> list[list[int]]:
    """Per spatial axis, the tile starts of :func:`sliding_window_grid` (same arguments)."""
    image_shape = _per_axis(tuple(image_shape), len(image_shape), "image_shape")
    ndim = len(image_shape)
    tile_shape = _per_axis(tile_shape, ndim, "tile_shape")
    aligns = _per_axis(align, ndim, "align")
    overlaps = (
        (float(overlap),) * ndim
        if isinstance(overlap, (int, float))
        else tuple(float(o) for o in overlap)
    )
    if len(overlaps) != ndim or not all(0.0 <= o < 1.0 for o in overlaps):
        raise ConfigError(
            f"overlap must be in [0, 1), one value or one per spatial axis, got {overlap!r}"
        )
    steps = [max(1, int(math.floor(t * (1.0 - o)))) for t, o in zip(tile_shape, overlaps)]
    steps = [max(a, st // a * a) if a <= t else st for st, a, t in zip(steps, aligns, tile_shape)]
    return [tile_starts(n, t, st) for n, t, st in zip(image_shape, tile_shape, steps)]


def sliding_window_grid(
    image_shape: Sequence[int],
    tile_shape: IntOrSeq,
    overlap: Union[float, Sequence[float]] = 0.5,
    align: IntOrSeq = 1,
) -> list[Slices]:
    """Overlapping tiles covering an image, for same-padding nets (output size == input size).

    The step per axis is ``max(1, floor(tile · (1 − overlap)))`` (MONAI's rule), rounded down to a
    multiple of ``align``; the last tile of each axis is flush with the image end (:func:`tile_starts`).

    Args:
        image_shape: spatial shape ``(*spatial)`` (no channel axis).
        tile_shape: tile size, an int for every axis or one per axis.
        overlap: fraction of a tile shared with its neighbour, in [0, 1), scalar or per axis.
        align: steps are multiples of this (int or per axis): a net that down-samples by ``2**depth``
            sees every tile on the same pooling grid as the whole image when ``align = 2**depth``.

    Returns:
        One tuple of slices per tile (C order: last axis fastest). Along an axis where the image is
        shorter than the tile, the single tile is ``slice(0, tile)`` and reaches past the end: pad the
        image to at least the tile (:func:`predict_tiled` does), or let :class:`Stitcher` clip it.
    """
    tile_shape = _per_axis(tile_shape, len(image_shape), "tile_shape")
    return grid_from_starts(window_starts(image_shape, tile_shape, overlap, align), tile_shape)


def grid_from_starts(starts: Sequence[Sequence[int]], tile_shape: Sequence[int]) -> list[Slices]:
    """Every combination of per-axis tile ``starts`` as slices of ``tile_shape`` (C order)."""
    per_axis = [[slice(s, s + int(t)) for s in axis] for axis, t in zip(starts, tile_shape)]
    return [tuple(combo) for combo in itertools.product(*per_axis)]


def tiled_extent(
    image_shape: Sequence[int], tile_shape: Sequence[int], align: IntOrSeq = 1
) -> tuple[int, ...]:
    """The padded spatial shape :func:`predict_tiled` tiles: an axis shorter than its tile grows to
    the tile, a longer one to the next multiple of ``align``."""
    aligns = _per_axis(align, len(image_shape), "align")
    return tuple(
        int(t) if n <= t else -(-int(n) // a) * a
        for n, t, a in zip(image_shape, tile_shape, aligns)
    )


def crop_ranges(starts: Sequence[int], tile: int) -> list[tuple[int, int]]:
    """Per tile along one axis, the part ``[lo, hi)`` (tile coordinates) kept by crop stitching.

    Neighbouring tiles split their overlap in the middle, so every pixel comes from the tile in which
    it lies farthest from an inner tile edge: at least ``(tile − step) // 2`` pixels from it. Outer
    tile edges (the image border) are kept whole.

    Example:
        >>> crop_ranges([0, 6, 12], 8)  # overlaps of 2 split 1 | 1
        [(0, 7), (1, 7), (1, 8)]
    """
    starts = [int(s) for s in starts]
    cuts = [(a + tile + b) // 2 for a, b in zip(starts[:-1], starts[1:])]  # image coordinates
    lows = [starts[0]] + cuts
    highs = cuts + [starts[-1] + tile]
    return [(lo - s, hi - s) for s, lo, hi in zip(starts, lows, highs)]


def crop_weights(
    slices: Slices, starts: Sequence[Sequence[int]], tile_shape: Sequence[int]
) -> np.ndarray:
    """0/1 weights of the tile at ``slices`` for crop stitching (:func:`crop_ranges` on every axis):
    with them, :class:`Stitcher` takes each pixel from exactly one tile instead of blending."""
    w = np.ones((), dtype=np.float32)
    for sl, axis_starts, t in zip(slices, starts, tile_shape):
        lo, hi = crop_ranges(axis_starts, int(t))[list(axis_starts).index(int(sl.start))]
        v = np.zeros(int(t), dtype=np.float32)
        v[lo:hi] = 1.0
        w = np.multiply.outer(w, v)
    return w


class OverlapTile(NamedTuple):
    """One overlap-tile step (slices over the spatial axes only).

    Attributes:
        input: slices of the mirror-padded image fed to the net (size ``in_tile``).
        output: slices of the image (= of the result) this tile writes; tiles' outputs are disjoint.
        crop: slices of the net's ``out_tile`` output giving exactly that region.
    """

    input: Slices
    output: Slices
    crop: Slices


class OverlapTileGrid(NamedTuple):
    """The overlap-tile plan: pad the image by ``pad_before``/``pad_after`` (mirror), then run ``tiles``."""

    pad_before: tuple[int, ...]
    pad_after: tuple[int, ...]
    tiles: list[OverlapTile]


def overlap_tile_grid(
    image_shape: Sequence[int], out_tile_shape: IntOrSeq, border: BorderSpec, align: IntOrSeq = 1
) -> OverlapTileGrid:
    """Overlap-tile grid (U-Net paper, Fig. 2) for valid-padding nets.

    Output tiles of ``out_tile_shape`` cover the image; the input tile of each is the output tile grown
    by ``border`` (``before``, ``after`` per axis; ``in_tile = out_tile + before + after``). The image is
    mirror-padded by :attr:`OverlapTileGrid.pad_before` / ``pad_after`` so every input tile lies inside
    the padded array; then ``padded[input]`` is the input tile whose net output, cropped by ``crop``,
    goes to ``result[output]``. Every image pixel is written by exactly one tile.

    Placement per axis:
        * ``align == 1`` (default): output tiles at ``0, out, 2·out, …`` abut exactly; the last one is
          flush with the image end. Where it overlaps the previous tile, the overlap is **cropped**
          (written once, by the earlier tile). For a translation-equivariant net (convolutions without
          pooling) the stitched result equals one forward pass on the whole padded image.
        * ``align = a > 1``: starts are multiples of ``step = a · floor(out / a)`` and the last tile may
          reach past the image end (the padding extends the mirror there; the excess is cropped). Nets
          with ×2 poolings are equivariant only to shifts by ``2**depth``; with ``align = 2**depth``
          (:func:`tile_alignment`) the stitched result equals one forward pass on the whole padded
          image, tile seams included. Output tiles overlap by ``out − step`` pixels (cropped).
        * An image shorter than the output tile gets one tile, padded past its end and cropped.

    Args:
        image_shape: spatial shape ``(*spatial)``.
        out_tile_shape: the net's output tile size (int or per axis).
        border: context per side: int, per-axis ints, or per-axis ``(before, after)`` pairs
            (asymmetric when ``in − out`` is odd: before = (in − out) // 2 by convention).
        align: output tile starts are multiples of this (int or per axis), see above.

    Returns:
        :class:`OverlapTileGrid` (tiles in C order).
    """
    image_shape = _per_axis(tuple(image_shape), len(image_shape), "image_shape")
    ndim = len(image_shape)
    out_tile = _per_axis(out_tile_shape, ndim, "out_tile_shape")
    before, after = _borders(border, ndim)
    aligns = _per_axis(align, ndim, "align")
    axes, pad_after = [], []
    for n, out, a, b_after in zip(image_shape, out_tile, aligns, after):
        if out < a:
            raise ConfigError(
                f"out tile {out} is smaller than align={a}: tiles cannot start at multiples of {a} "
                f"and abut; use a larger tile"
            )
        if a == 1:
            starts = tile_starts(n, out, out)
        else:
            step = a * (out // a)
            starts = (
                list(range(0, n - out + step, step)) if n > out else [0]
            )  # last: ceil((n − out) / step)·step
        tiles_axis, covered = [], 0
        for (
            s
        ) in starts:  # each tile writes only what earlier tiles left: outputs partition the axis
            lo, hi = max(s, covered), min(s + out, n)
            tiles_axis.append((s, slice(lo, hi), slice(lo - s, hi - s)))
            covered = hi
        extent = starts[-1] + out  # end of the last output tile, possibly past the image
        pad_after.append(b_after + max(extent - n, 0))
        axes.append(tiles_axis)
    tiles = []
    for combo in itertools.product(*axes):
        tiles.append(
            OverlapTile(
                input=tuple(
                    slice(t[0], t[0] + out + b + a)
                    for t, out, b, a in zip(combo, out_tile, before, after)
                ),
                output=tuple(t[1] for t in combo),
                crop=tuple(t[2] for t in combo),
            )
        )
    return OverlapTileGrid(tuple(before), tuple(pad_after), tiles)


# -- choosing a tile for a model ----------------------------------------------------------------
class OverlapTileSpec(NamedTuple):
    """Tile sizes for overlap-tile prediction: ``in_tile = out_tile + before + after`` per axis."""

    in_tile: tuple[int, ...]
    out_tile: tuple[int, ...]
    border: tuple[tuple[int, int], ...]


def choose_overlap_tile(model: Any, tile_size: IntOrSeq, round: str = "up") -> OverlapTileSpec:
    """Valid input tile near ``tile_size`` for ``model`` and the output tile and border it implies.

    Args:
        model: a :class:`~unetkit.models.geometry.SizeRule` or anything with ``size_rule()``
            (unetkit models, export runners).
        tile_size: wanted input tile size (int or per axis).
        round: ``"up"``: smallest valid size ≥ ``tile_size``; ``"down"``: largest valid size ≤ it
            (to bound memory), else the smallest above.

    Returns:
        :class:`OverlapTileSpec` ``(in_tile, out_tile, border)``; border ``((before, after), …)`` with
        ``before = (in − out) // 2`` (centred, as the U-Net's centre crops).

    Example:
        >>> choose_overlap_tile(create_model("unet-original"), 572)
        OverlapTileSpec(in_tile=(572, 572), out_tile=(388, 388), border=((92, 92), (92, 92)))
    """
    if round not in ("up", "down"):
        raise ConfigError(f"round must be 'up' or 'down', got {round!r}")
    rule = size_rule_of(model)
    sizes = rule.sizes(tile_size, "tile size")
    in_tile = rule.at_most(sizes) if round == "down" else rule.at_least(sizes)
    return OverlapTileSpec(tuple(in_tile), rule.output_size(in_tile), rule.border)


def tile_alignment(model: Any, in_tile: Optional[IntOrSeq] = None) -> tuple[int, ...]:
    """Per axis, the shift period of the net (``2**depth`` for a U-Net; 1 for a net without poolings).

    Tiles placed on multiples of it see the whole image's pooling grid: the ``align`` that makes
    :func:`predict_overlap_tile` equal one forward pass on the whole mirror-padded image.
    ``in_tile`` is accepted for compatibility and not needed.
    """
    return size_rule_of(model).period


# -- mirror padding -----------------------------------------------------------------------------
def mirror_indices(size: int, pad_before: int, pad_after: int, mode: str = "reflect") -> np.ndarray:
    """Source indices of a mirror-padded axis: ``arange(-before, size + after)`` folded into the image.

    ``reflect`` mirrors about the edge pixels (``d c b | a b c d | c b a``, ``np.pad`` "reflect");
    ``symmetric`` repeats them (``c b a | a b c d | d c b``). Pads of any length repeat the reflection
    periodically (``np.pad``'s result too, but torch's reflect padding refuses pads ≥ the size). A
    size-1 axis repeats its pixel. The fold is the training sampler's
    (:func:`unetkit.data.sampling.mirror_indices`), so inference tiles mirror exactly as patches did.
    """
    before = int(pad_before)
    return _mirror_fold(-before, int(size) + before + int(pad_after), int(size), mode)


def mirror_pad(
    array: np.ndarray, pad_before: IntOrSeq, pad_after: IntOrSeq, mode: str = "reflect"
) -> np.ndarray:
    """Mirror-pad the last axes of ``array`` (any pad length, larger than the image too).

    Args:
        array: ``(..., *spatial)``, e.g. an image ``(C, *spatial)``.
        pad_before, pad_after: pixels added before / after each padded axis. Sequences apply to the
            **last** ``len(pad)`` axes (pass spatial pads for an image ``(C, *spatial)``: the channel
            axis stays); when both are ints they apply to **every** axis, as ``np.pad``.
        mode: ``reflect`` (default, about the edge pixels, as ``np.pad``) or ``symmetric``.

    Returns:
        A new array, ``(..., *(spatial + before + after))``.

    Example:
        >>> mirror_pad(np.array([1, 2, 3]), 5, 6)
        array([2, 1, 2, 3, 2, 1, 2, 3, 2, 1, 2, 3, 2, 1])
    """
    array = np.asarray(array)
    if isinstance(pad_before, (int, np.integer)) and isinstance(pad_after, (int, np.integer)):
        ndim = array.ndim
    else:
        ndim = len(pad_before) if not isinstance(pad_before, (int, np.integer)) else len(pad_after)
    if ndim > array.ndim:
        raise ConfigError(f"{ndim} padded axes requested for an array of shape {array.shape}")
    before = _per_axis(pad_before, ndim, "pad_before", minimum=0)
    after = _per_axis(pad_after, ndim, "pad_after", minimum=0)
    lead = array.ndim - ndim
    out = array
    for k, (b, a) in enumerate(zip(before, after)):
        axis = lead + k
        if b == 0 and a == 0:
            continue
        if array.shape[axis] == 0:
            raise ConfigError(f"cannot mirror-pad an empty axis (shape {array.shape})")
        out = np.take(out, mirror_indices(array.shape[axis], b, a, mode), axis=axis)
    return out if out is not array else array.copy()


# -- blend weights ------------------------------------------------------------------------------
def gaussian_weights(
    tile_shape: IntOrSeq,
    sigma_scale: Union[float, Sequence[float]] = 0.125,
    min_weight: float = 1e-3,
    ndim: Optional[int] = None,
) -> np.ndarray:
    """Gaussian blend weights (MONAI's ``importance_map``): high in the tile centre, low at its edges.

    ``w(x) = Π exp(−(x_i − c_i)² / (2 σ_i²))`` with centre ``c_i = (t_i − 1) / 2`` (the map is
    symmetric, for even sizes too) and ``σ_i = t_i · sigma_scale``, normalised to a maximum of 1 and
    clamped below at ``min_weight`` so every pixel of a tile has weight > 0.

    Args:
        tile_shape: tile size (int with ``ndim``, or one per axis).
        sigma_scale: σ as a fraction of the tile size, scalar or per axis (> 0).
        min_weight: lower clamp, in (0, 1].
        ndim: number of axes when ``tile_shape`` is an int (default 2).

    Returns:
        float32 array ``tile_shape``.
    """
    if isinstance(tile_shape, (int, np.integer)):
        tile_shape = (int(tile_shape),) * (2 if ndim is None else int(ndim))
    tile_shape = _per_axis(tuple(tile_shape), len(tile_shape), "tile_shape")
    scales = (
        (sigma_scale,) * len(tile_shape)
        if isinstance(sigma_scale, (int, float))
        else tuple(sigma_scale)
    )
    if len(scales) != len(tile_shape) or not all(s > 0 for s in scales):
        raise ConfigError(
            f"sigma_scale must be > 0, one value or one per axis, got {sigma_scale!r}"
        )
    if not 0.0 < min_weight <= 1.0:
        raise ConfigError(
            f"min_weight must be in (0, 1] so every pixel gets weight, got {min_weight}"
        )
    w = np.ones((), dtype=np.float64)
    for t, s in zip(tile_shape, scales):
        x = np.arange(t, dtype=np.float64) - (t - 1) / 2.0
        g = np.exp(-(x**2) / (2.0 * (t * s) ** 2))
        w = np.multiply.outer(w, g / g.max())
    return np.maximum(w, min_weight).astype(np.float32)


def constant_weights(tile_shape: IntOrSeq, ndim: Optional[int] = None) -> np.ndarray:
    """Uniform blend weights: ones of ``tile_shape`` (float32); overlaps become plain averages."""
    if isinstance(tile_shape, (int, np.integer)):
        tile_shape = (int(tile_shape),) * (2 if ndim is None else int(ndim))
    return np.ones(_per_axis(tuple(tile_shape), len(tile_shape), "tile_shape"), dtype=np.float32)


# -- stitching ----------------------------------------------------------------------------------
class Stitcher:
    """Accumulates weighted tile predictions into a ``(K, *spatial)`` map, then normalises.

    ``result = Σ w·tile / Σ w`` per pixel. Buffers are numpy (default), a caller-supplied array-like
    ``out`` (e.g. an ``np.memmap`` opened with mode ``"w+"`` to bound memory; pair it with a memmap
    ``weight_out``), or torch tensors when ``out`` is a ``torch.Tensor`` (the weight sum then lives on
    its device; tiles are moved there). Supplied buffers are zeroed and overwritten.

    **Band mode** (``band_rows``): the buffers hold only ``band_rows`` rows of the first spatial axis,
    starting at :attr:`start`; :meth:`flush` normalises the rows no later tile will touch and hands
    them to a sink, so memory is independent of the image height (images larger than memory, and
    3D volumes slab by slab). Whole-image and band prediction run the same tiles through the same
    sums, so their results are identical.

    Args:
        shape: ``(K, *spatial)`` of the result.
        out: optional buffer of that shape for the weighted sums, then the result.
        weight_out: optional ``(*spatial)`` buffer for the weight sums.
        band_rows: band mode with this many buffered rows (at least the tiles' output height).
        first_row: band mode: keep rows from this one on (a window of the result, for predicting
            a block of rows on its own: the parts of tiles above it are dropped).
        window: band mode: ``(start, stop)`` per spatial axis after the first; the buffers hold
            only that part of each row (a volume's slab split in y/x, so its memory does not grow
            with the plane) and the parts of tiles outside it are dropped; :meth:`flush` hands
            the window's part of the rows on.

    Example:
        >>> st = Stitcher((1, 4))
        >>> st.add(np.ones((1, 3)), (slice(0, 3),)); st.add(3 * np.ones((1, 3)), (slice(1, 4),))
        >>> st.result()
        array([[1., 2., 2., 3.]], dtype=float32)
    """

    def __init__(
        self,
        shape: Sequence[int],
        out: Any = None,
        weight_out: Any = None,
        band_rows: Optional[int] = None,
        first_row: int = 0,
        window: Optional[Sequence[tuple[int, int]]] = None,
    ):
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) < 2 or min(self.shape) < 1:
            raise ConfigError(
                f"Stitcher shape must be (K, *spatial) with sizes ≥ 1, got {self.shape}"
            )
        self.torch = isinstance(out, torch.Tensor)
        #: band mode: the buffers hold rows ``[start, start + band_rows)`` of the first spatial axis
        self.start = self.first_row = int(first_row)
        self.band_rows = None if band_rows is None else min(int(band_rows), self.shape[1])
        if (self.first_row or window is not None) and self.band_rows is None:
            raise ConfigError("first_row and window are for a band Stitcher (band_rows=…)")
        #: ``(start, stop)`` kept per spatial axis (the whole axis unless a window says otherwise)
        self.window = [(0, n) for n in self.shape[1:]]
        if window is not None:
            if len(window) != len(self.shape) - 2 or not all(
                0 <= int(a) < int(b) <= n for (a, b), n in zip(window, self.shape[2:])
            ):
                raise ConfigError(
                    f"window {window} must give (start, stop) within the result {self.shape} for "
                    "each spatial axis after the first"
                )
            self.window[1:] = [(int(a), int(b)) for a, b in window]
        if self.band_rows is not None:
            if out is not None or weight_out is not None or self.band_rows < 1:
                raise ConfigError("a band Stitcher keeps its own buffers; band_rows must be ≥ 1")
            buffer = (self.shape[0], self.band_rows, *(b - a for a, b in self.window[1:]))
            self.out = np.zeros(buffer, dtype=np.float32)
            self.weight = np.zeros(buffer[1:], dtype=np.float32)
            self._done = False
            return
        for name, buf, want in (
            ("out", out, self.shape),
            ("weight_out", weight_out, self.shape[1:]),
        ):
            if buf is not None and tuple(buf.shape) != want:
                raise ConfigError(f"{name} has shape {tuple(buf.shape)}, expected {want}")
        if self.torch:
            self.out = out
            self.weight = (
                weight_out
                if weight_out is not None
                else torch.zeros(self.shape[1:], dtype=out.dtype, device=out.device)
            )
        else:
            self.out = out if out is not None else np.zeros(self.shape, dtype=np.float32)
            self.weight = (
                weight_out if weight_out is not None else np.zeros(self.shape[1:], dtype=np.float32)
            )
        self.out[...] = 0
        self.weight[...] = 0
        self._done = False

    def _as_buffer(self, x: Any) -> Any:
        if self.torch:
            x = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
            return x.to(device=self.out.device, dtype=self.out.dtype)
        return _to_numpy(x)

    def add(self, tile: Any, slices: Sequence[slice], weights: Any = None) -> None:
        """Add one tile prediction.

        Args:
            tile: ``(K, *tile)`` numpy array or torch tensor.
            slices: where the tile lies, one ``slice(start, stop)`` per spatial axis, in result
                coordinates; ``stop − start`` must equal the tile size. A slice may reach past either
                end (``start < 0`` or ``stop > size``): the part outside is dropped.
            weights: ``(*tile)`` blend weights (≥ 0); ``None`` = 1 everywhere.
        """
        if self._done:
            raise ConfigError(
                "Stitcher.result() was already called; create a new Stitcher for a new image"
            )
        tile = self._as_buffer(tile)
        spatial = self.shape[1:]
        if (
            tile.ndim != len(self.shape)
            or tile.shape[0] != self.shape[0]
            or len(slices) != len(spatial)
        ):
            raise ConfigError(
                f"tile of shape {tuple(tile.shape)} with {len(slices)} slice(s) does not fit a result "
                f"of shape {self.shape} (expected (K={self.shape[0]}, *tile) and one slice per spatial axis)"
            )
        dst, src = [], []
        for axis, (sl, size, t) in enumerate(zip(slices, spatial, tile.shape[1:])):
            start, stop = int(sl.start or 0), int(sl.stop)
            if stop - start != t:
                raise ConfigError(
                    f"slices {tuple(slices)} do not match the tile's spatial shape {tuple(tile.shape[1:])}"
                )
            lo, hi = max(start, 0), min(stop, size)
            if axis == 0:
                lo = max(lo, self.first_row)  # above a block's window: not this block's rows
            else:
                lo, hi = max(lo, self.window[axis][0]), min(hi, self.window[axis][1])
            if hi <= lo:
                return  # entirely outside the result (or the window)
            offset = self.start if axis == 0 else self.window[axis][0]
            if (
                axis == 0
                and self.band_rows is not None
                and (lo < self.start or hi > self.start + self.band_rows)
            ):
                raise ConfigError(
                    f"internal error: rows {lo}..{hi} fall outside the band "
                    f"{self.start}..{self.start + self.band_rows} (flushed too early?)"
                )
            dst.append(slice(lo - offset, hi - offset))
            src.append(slice(lo - start, hi - start))
        dst, src = tuple(dst), tuple(src)
        if weights is None:
            self.out[(slice(None),) + dst] += tile[(slice(None),) + src]
            self.weight[dst] += 1
            return
        weights = self._as_buffer(weights)
        if tuple(weights.shape) != tuple(tile.shape[1:]):
            raise ConfigError(
                f"weights of shape {tuple(weights.shape)} do not match the tile's spatial shape "
                f"{tuple(tile.shape[1:])}"
            )
        w = weights[src]
        self.out[(slice(None),) + dst] += tile[(slice(None),) + src] * w
        self.weight[dst] += w

    def flush(self, until: int, sink: Callable[[int, np.ndarray], None]) -> None:
        """Band mode: normalise rows ``[start, until)`` and call ``sink(start, rows)`` with them
        (``(K, n, *rest)`` float32), then move the band on. Rows before ``until`` must be complete."""
        if self.band_rows is None:
            raise ConfigError("flush() is for a band Stitcher (band_rows=…)")
        n = min(int(until), self.shape[1]) - self.start
        if n <= 0:
            return
        if n > self.band_rows:
            raise ConfigError(f"cannot flush {n} rows from a band of {self.band_rows}")
        w = self.weight[:n]
        if (w <= 0).any():
            first = np.argwhere(w <= 0)[0].tolist()
            at = (first[0] + self.start, *(i + a for i, (a, _) in zip(first[1:], self.window[1:])))
            raise ConfigError(f"pixel {at} received no weight: the tiles do not cover the result")
        sink(self.start, self.out[:, :n] / w)
        self.out[:, :-n], self.weight[:-n] = self.out[:, n:], self.weight[n:]
        self.out[:, -n:], self.weight[-n:] = 0, 0
        self.start += n

    def result(self, chunk: int = 64) -> Any:
        """Divide the sums by the weights (in place, ``chunk`` slices of the first spatial axis at a time).

        Returns:
            The ``(K, *spatial)`` result: ``out`` (the same object when supplied).

        Raises:
            ConfigError: some pixel received no weight (the tiles do not cover the result).
        """
        if self._done:
            return self.out
        n = self.shape[1]
        missing, first = 0, None
        for i in range(0, n, chunk):
            w = self.weight[i : i + chunk]
            bad = w <= 0
            count = int(bad.sum())
            if count and first is None:
                idx = torch.nonzero(bad)[0].tolist() if self.torch else np.argwhere(bad)[0].tolist()
                first = (idx[0] + i,) + tuple(idx[1:])
            missing += count
        if missing:
            raise ConfigError(
                f"{missing} of {math.prod(self.shape[1:])} pixels received no weight (first at "
                f"{first}): the tiles do not cover the result"
            )
        for i in range(0, n, chunk):
            self.out[:, i : i + chunk] /= self.weight[i : i + chunk]
        self._done = True
        if isinstance(self.out, np.memmap):
            self.out.flush()
        return self.out


# -- prediction ---------------------------------------------------------------------------------
def _check_image(image: Any, ndim: Optional[int] = None) -> np.ndarray:
    image = _to_numpy(image)
    if not np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float32)  # integer images: same values, a dtype a net accepts
    if image.ndim < 2 or (ndim is not None and image.ndim != ndim + 1):
        want = (
            f"{ndim + 1}-D (C, *spatial)"
            if ndim is not None
            else "(C, *spatial) with ≥ 1 spatial axis"
        )
        raise ConfigError(f"image must be {want}, got shape {image.shape}")
    if min(image.shape) < 1:
        raise ConfigError(f"image has an empty axis: shape {image.shape}")
    return image


def _run_batch(
    fn: Callable, tiles: list[np.ndarray], out_tile: Sequence[int], hint: str
) -> np.ndarray:
    batch = torch.from_numpy(np.ascontiguousarray(np.stack(tiles)))
    with torch.no_grad():
        pred = fn(batch)
    if not isinstance(pred, torch.Tensor):
        pred = torch.as_tensor(np.asarray(pred))
    want = (len(tiles), None, *out_tile)
    if (
        pred.dim() != len(want)
        or pred.shape[0] != len(tiles)
        or tuple(pred.shape[2:]) != tuple(out_tile)
    ):
        raise ConfigError(
            f"fn returned shape {tuple(pred.shape)} for a batch of shape {tuple(batch.shape)}; "
            f"expected (B={len(tiles)}, K, {', '.join(map(str, out_tile))}){hint}"
        )
    return pred.detach().to("cpu", torch.float32).numpy()


def _blend_weights(
    mode: Union[str, np.ndarray], tile_shape: tuple[int, ...], sigma_scale: float
) -> np.ndarray:
    if isinstance(mode, str):
        if mode == "gaussian":
            return gaussian_weights(tile_shape, sigma_scale)
        if mode == "constant":
            return constant_weights(tile_shape)
        raise ConfigError(f"mode must be one of {WEIGHT_MODES} or a weight array, got {mode!r}")
    weights = np.asarray(mode, dtype=np.float32)
    if weights.shape != tile_shape or (weights < 0).any():
        raise ConfigError(
            f"a weight array must have the tile shape {tile_shape} and values ≥ 0, "
            f"got shape {weights.shape}"
        )
    return weights


# -- one grid for both strategies ----------------------------------------------------------------
class Tile(NamedTuple):
    """One tile of a :class:`TileGrid` (slices over the spatial axes only).

    Attributes:
        input: slices of the padded image fed to the net (size ``in_tile``).
        output: slices of the result that ``prediction[crop]`` is added to (may reach past the
            image: the :class:`Stitcher` drops what lies outside).
        crop: slices of the net's output tile to use.
        weights: blend weights of the cropped part (``None`` = 1).
    """

    input: Slices
    output: Slices
    crop: Slices
    weights: Optional[np.ndarray]


class TileGrid(NamedTuple):
    """Every tile of an image: mirror-pad it by ``pad_before``/``pad_after``, run each tile's input
    through the net, add ``prediction[crop]`` (× weights) at ``output``, divide by the weight sums."""

    pad_before: tuple[int, ...]
    pad_after: tuple[int, ...]
    in_tile: tuple[int, ...]
    out_tile: tuple[int, ...]
    tiles: list[Tile]

    def rows(self) -> list[list[Tile]]:
        """Tiles grouped by where their output starts on the first spatial axis, in order."""
        rows: dict[int, list[Tile]] = {}
        for t in self.tiles:
            rows.setdefault(int(t.output[0].start), []).append(t)
        return [rows[k] for k in sorted(rows)]

    def band_rows(self) -> int:
        """Rows a band :class:`Stitcher` must buffer: the tallest output of one row of tiles,
        from that row's start."""
        tallest = 1
        for row in self.rows():
            start = max(int(row[0].output[0].start), 0)
            tallest = max(tallest, max(int(t.output[0].stop) for t in row) - start)
        return tallest


@dataclass(frozen=True)
class TilePlan:
    """How an image of ``image_shape`` is tiled: the typed result of ``Predictor.plan``.

    Attributes:
        mode: ``"sliding-window"`` (same-padding nets, overlapping tiles blended or crop-stitched)
            or ``"overlap-tile"`` (valid-padding nets, abutting outputs, mirrored context).
        image_shape: the spatial shape planned for.
        in_tile, out_tile: the net's input tile and its output (equal for sliding window).
        border: ``(before, after)`` context per axis (overlap-tile; zeros for sliding window).
        overlap: sliding window: fraction of a tile shared with its neighbour, per axis.
        align: tile starts are multiples of this (the net's pooling period), per axis.
        blend: sliding window: ``gaussian``, ``constant`` or ``crop``; overlap-tile: ``crop``.
    """

    mode: str
    image_shape: tuple[int, ...]
    in_tile: tuple[int, ...]
    out_tile: tuple[int, ...]
    border: tuple[tuple[int, int], ...]
    overlap: tuple[float, ...]
    align: tuple[int, ...]
    blend: str

    @property
    def tile(self) -> tuple[int, ...]:
        """The input tile (what the net is run on)."""
        return self.in_tile

    def grid(self) -> TileGrid:
        """Every tile of the image (:func:`sliding_window_tiles` or :func:`overlap_tiles`)."""
        if self.mode == "overlap-tile":
            return overlap_tiles(self.image_shape, self.out_tile, self.border, self.align)
        return sliding_window_tiles(
            self.image_shape, self.in_tile, self.overlap, self.align, self.blend
        )

    def to_dict(self) -> dict:
        """Plain lists, for logs and JSON reports."""
        return {
            "mode": self.mode,
            "in_tile": list(self.in_tile),
            "out_tile": list(self.out_tile),
            "border": [list(b) for b in self.border],
            "overlap": [round(o, 4) for o in self.overlap],
            "align": list(self.align),
            "blend": self.blend,
        }


def sliding_window_tiles(
    image_shape: Sequence[int],
    tile_shape: IntOrSeq,
    overlap: Union[float, Sequence[float]] = 0.5,
    align: IntOrSeq = 1,
    mode: Union[str, np.ndarray] = "gaussian",
    sigma_scale: float = 0.125,
) -> TileGrid:
    """The :class:`TileGrid` of :func:`predict_tiled` (same arguments): axes shorter than the tile
    or not a multiple of ``align`` are padded (at the end when ``align`` > 1, so tiles stay on the
    pooling grid; else centred), tiles overlap and are blended or crop-stitched."""
    spatial = _per_axis(tuple(image_shape), len(image_shape), "image_shape")
    ndim = len(spatial)
    tile = _per_axis(tile_shape, ndim, "tile_shape")
    aligns = _per_axis(align, ndim, "align")
    crop = isinstance(mode, str) and mode == "crop"
    weights = None if crop else _blend_weights(mode, tile, sigma_scale)
    extra = [p - n for p, n in zip(tiled_extent(spatial, tile, aligns), spatial)]
    before = tuple(0 if a > 1 else e // 2 for e, a in zip(extra, aligns))
    after = tuple(e - b for e, b in zip(extra, before))
    padded = tuple(n + e for n, e in zip(spatial, extra))
    starts = window_starts(padded, tile, overlap, aligns)
    if not crop:
        whole = tuple(slice(0, t) for t in tile)
        tiles = [
            Tile(
                sl,
                tuple(slice(x.start - b, x.stop - b) for x, b in zip(sl, before)),
                whole,
                weights,
            )
            for sl in grid_from_starts(starts, tile)
        ]
        return TileGrid(before, after, tile, tile, tiles)
    # crop stitching: each tile gives only its crop (crop_ranges), unweighted. That is what the
    # 0/1 weights of crop_weights select, without one tile-sized array per tile (605 tiles of
    # 128³ held 4.8 GB): the same sums, and bands need only the crops' height
    ranges = [
        dict(zip(axis_starts, crop_ranges(axis_starts, t))) for axis_starts, t in zip(starts, tile)
    ]
    tiles = []
    for sl in grid_from_starts(starts, tile):
        cuts = [r[int(x.start)] for r, x in zip(ranges, sl)]
        tiles.append(
            Tile(
                sl,
                tuple(
                    slice(x.start - b + lo, x.start - b + hi)
                    for x, b, (lo, hi) in zip(sl, before, cuts)
                ),
                tuple(slice(lo, hi) for lo, hi in cuts),
                None,
            )
        )
    return TileGrid(before, after, tile, tile, tiles)


def overlap_tiles(
    image_shape: Sequence[int], out_tile_shape: IntOrSeq, border: BorderSpec, align: IntOrSeq = 1
) -> TileGrid:
    """The :class:`TileGrid` of :func:`predict_overlap_tile`: :func:`overlap_tile_grid` (same
    arguments), each output written once, unweighted."""
    ndim = len(image_shape)
    out_tile = _per_axis(out_tile_shape, ndim, "out_tile_shape")
    before, after = _borders(border, ndim)
    grid = overlap_tile_grid(image_shape, out_tile, list(zip(before, after)), align)
    in_tile = tuple(o + b + a for o, b, a in zip(out_tile, before, after))
    tiles = [Tile(t.input, t.output, t.crop, None) for t in grid.tiles]
    return TileGrid(grid.pad_before, grid.pad_after, in_tile, out_tile, tiles)


def run_tiles(
    fn: Callable[[torch.Tensor], torch.Tensor],
    grid: TileGrid,
    read: Callable[[Slices], np.ndarray],
    stitcher: Callable[[int], Stitcher],
    batch_size: int,
    hint: str = "",
    row_done: Optional[Callable[[Stitcher, int], None]] = None,
    progress: Optional[Callable[[int, int], None]] = None,
) -> Stitcher:
    """Run every tile of ``grid`` through ``fn`` and add it to a stitcher: the one tile loop of
    whole-image and band-by-band prediction.

    Args:
        fn: ``(B, C, *in_tile)`` CPU batch → ``(B, K, *out_tile)``, called under ``no_grad``.
        read: ``tile.input`` slices (padded-image coordinates) → ``(C, *in_tile)`` array.
        stitcher: ``K → Stitcher``, called once the first batch tells the class count.
        batch_size: tiles per call of ``fn``; with ``row_done``, batches never span two rows.
        row_done: called after each row of tiles with the stitcher and the first output row the
            next row of tiles will touch (the image size after the last row): a band stitcher
            flushes there.
        progress: called after each batch with ``(tiles done, tiles in all)``, for a progress
            bar; an exception it raises (a user's cancel) ends the loop and propagates.

    Returns:
        The stitcher holding every tile.
    """
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size must be ≥ 1, got {batch_size}")
    rows = grid.rows() if row_done is not None else [grid.tiles]
    st, done = None, 0
    for r, row in enumerate(rows):
        for i in range(0, len(row), int(batch_size)):
            chunk = row[i : i + int(batch_size)]
            pred = _run_batch(fn, [read(t.input) for t in chunk], grid.out_tile, hint)
            if st is None:
                st = stitcher(pred.shape[1])
            for p, t in zip(pred, chunk):
                st.add(p[(slice(None),) + t.crop], t.output, t.weights)
            done += len(chunk)
            if progress is not None:
                progress(done, len(grid.tiles))
        if row_done is not None:
            nxt = int(rows[r + 1][0].output[0].start) if r + 1 < len(rows) else None
            row_done(st, max(nxt, 0) if nxt is not None else st.shape[1])
    return st


def _pad_for(image: np.ndarray, grid: TileGrid, mode: str) -> np.ndarray:
    if not any(grid.pad_before) and not any(grid.pad_after):
        return image
    if mode == "constant":
        return np.pad(image, [(0, 0)] + list(zip(grid.pad_before, grid.pad_after)))
    return mirror_pad(image, grid.pad_before, grid.pad_after, mode)


def predict_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    image: Any,
    tile_shape: IntOrSeq,
    overlap: Union[float, Sequence[float]] = 0.5,
    mode: Union[str, np.ndarray] = "gaussian",
    batch_size: int = 4,
    sigma_scale: float = 0.125,
    pad_mode: str = "reflect",
    out: Any = None,
    align: IntOrSeq = 1,
) -> Any:
    """Sliding-window prediction for same-padding nets, blending or crop-stitching overlapping tiles.

    Axes shorter than the tile are padded (mirrored with ``pad_mode="reflect"``, zeros with
    ``"constant"``; centred, or at the end when ``align`` > 1 so tiles stay on the pooling grid) and
    the padding is cropped away afterwards.

    Args:
        fn: maps a float batch ``(B, C, *tile)`` (CPU torch tensor, the image's float dtype; integer
            images become float32) to
            ``(B, K, *tile)``; called under ``torch.no_grad()``.
        image: ``(C, *spatial)`` numpy array (or CPU tensor).
        tile_shape: tile size, int or per spatial axis.
        overlap: fraction of overlap between neighbouring tiles, in [0, 1).
        mode: ``"gaussian"`` (:func:`gaussian_weights`), ``"constant"``, ``"crop"`` (no blending:
            each pixel from the one tile where it lies farthest from an inner edge,
            :func:`crop_ranges`) or a ``(*tile)`` weight array.
        batch_size: tiles per call of ``fn``.
        sigma_scale: Gaussian σ as a fraction of the tile size.
        pad_mode: ``"reflect"`` or ``"constant"`` (zeros), for images smaller than the tile.
        out: optional ``(K, *spatial)`` float32 buffer (e.g. ``np.memmap``) receiving the result.
        align: tile steps are multiples of this (int or per axis); axes are padded at the end to a
            multiple of it. With ``align = 2**depth`` of a same-padding U-Net and ``mode="crop"``,
            the result equals one forward pass over the whole (padded) image wherever the kept part
            of each tile lies farther than the net's receptive radius from the tile's inner edges.

    Returns:
        ``(K, *spatial)`` float32 (``out`` when given).

    Example:
        >>> float(predict_tiled(lambda x: x + 1, np.zeros((1, 100, 70), np.float32), 32).max())
        1.0
    """
    image = _check_image(image)
    if pad_mode not in ("reflect", "constant"):
        raise ConfigError(f"pad_mode must be 'reflect' or 'constant', got {pad_mode!r}")
    grid = sliding_window_tiles(image.shape[1:], tile_shape, overlap, align, mode, sigma_scale)
    return predict_grid(fn, image, grid, batch_size, pad_mode, out)


def predict_overlap_tile(
    fn: Callable[[torch.Tensor], torch.Tensor],
    image: Any,
    in_tile: IntOrSeq,
    out_tile: IntOrSeq,
    border: Optional[BorderSpec] = None,
    align: IntOrSeq = 1,
    batch_size: int = 4,
    mirror_mode: str = "reflect",
    out: Any = None,
) -> Any:
    """Overlap-tile prediction for valid-padding nets (U-Net paper, Fig. 2): no blending.

    The image is mirror-padded once (a padded copy of the input is held in memory), cut into input
    tiles of ``in_tile`` whose outputs ``out_tile`` abut (:func:`overlap_tile_grid`) and written to the
    result. Each pixel is predicted exactly once.

    Args:
        fn: maps a batch ``(B, C, *in_tile)`` (CPU torch tensor) to ``(B, K, *out_tile)``; called
            under ``torch.no_grad()``.
        image: ``(C, *spatial)`` numpy array (or CPU tensor).
        in_tile, out_tile: the net's input tile and the output it gives (int or per axis);
            :func:`choose_overlap_tile` finds valid pairs.
        border: context ``(before, after)`` per axis (default ``before = (in − out) // 2``,
            ``after = in − out − before``); must satisfy ``in = out + before + after``.
        align: tile starts are multiples of this; pass :func:`tile_alignment` (``2**depth``) to make
            the result equal one forward pass over the whole mirror-padded image.
        batch_size: tiles per call of ``fn``.
        mirror_mode: ``"reflect"`` (paper / training sampler) or ``"symmetric"``.
        out: optional ``(K, *spatial)`` float32 buffer (e.g. ``np.memmap``) receiving the result.

    Returns:
        ``(K, *spatial)`` float32 (``out`` when given).
    """
    image = _check_image(image)
    ndim = image.ndim - 1
    in_tile = _per_axis(in_tile, ndim, "in_tile")
    out_tile = _per_axis(out_tile, ndim, "out_tile")
    if border is None:
        if any(i < o for i, o in zip(in_tile, out_tile)):
            raise ConfigError(f"in_tile {in_tile} must be ≥ out_tile {out_tile} on every axis")
        border = [((i - o) // 2, i - o - (i - o) // 2) for i, o in zip(in_tile, out_tile)]
    before, after = _borders(border, ndim)
    if any(o + b + a != i for i, o, b, a in zip(in_tile, out_tile, before, after)):
        raise ConfigError(
            f"in_tile {in_tile} must equal out_tile {out_tile} + border before {before} + after {after}"
        )
    grid = overlap_tiles(image.shape[1:], out_tile, list(zip(before, after)), align)
    return predict_grid(fn, image, grid, batch_size, mirror_mode, out)


def predict_grid(
    fn: Callable[[torch.Tensor], torch.Tensor],
    image: Any,
    grid: TileGrid,
    batch_size: int = 4,
    pad_mode: str = "reflect",
    out: Any = None,
    progress: Optional[Callable[[int, int], None]] = None,
) -> Any:
    """Predict a whole ``(C, *spatial)`` image tile by tile along ``grid`` (either strategy).

    The image is padded once (``reflect``/``symmetric`` mirror, or ``constant`` zeros), the tiles
    run in batches (:func:`run_tiles`, which calls ``progress(done, total)`` after each batch) and
    the stitched ``(K, *spatial)`` float32 result is returned (``out`` when given).
    """
    image = _check_image(image)
    padded = _pad_for(image, grid, pad_mode)
    crop_net = grid.in_tile != grid.out_tile
    hint = (
        " (valid fn: output = input − border)"
        if crop_net
        else " (same-padding fn; use predict_overlap_tile for nets whose output is smaller)"
    )
    st = run_tiles(
        fn,
        grid,
        lambda sl: padded[(slice(None),) + sl],
        lambda k: Stitcher((k, *image.shape[1:]), out=out),
        batch_size,
        hint,
        progress=progress,
    )
    return st.result()


__all__ = [
    "Tile",
    "TilePlan",
    "TileGrid",
    "overlap_tiles",
    "predict_grid",
    "run_tiles",
    "sliding_window_tiles",
    "OverlapTile",
    "OverlapTileGrid",
    "OverlapTileSpec",
    "Stitcher",
    "choose_overlap_tile",
    "constant_weights",
    "gaussian_weights",
    "mirror_indices",
    "mirror_pad",
    "overlap_tile_grid",
    "predict_overlap_tile",
    "predict_tiled",
    "sliding_window_grid",
    "tile_alignment",
    "tile_starts",
    "window_starts",
    "crop_ranges",
    "crop_weights",
    "tiled_extent",
]

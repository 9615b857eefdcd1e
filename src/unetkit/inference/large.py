"""Images far larger than memory: predict band by band and hand finished rows to writers.

For a 20,000 × 20,000 image the input (lazily read, :func:`~unetkit.io.lazy.open_lazy`: memory maps of
``.npy`` and uncompressed TIFF, chunk by chunk from compressed/tiled TIFF and zarr), the
blend accumulators and the outputs are never whole in memory: the tiles of one row of tiles are
predicted and added to a band :class:`~unetkit.inference.tiling.Stitcher` (width × tile height), and
the rows no later tile can touch are normalised, turned into labels / probabilities and written.
Memory is O(width × tile height × classes), independent of the image height. A 3D volume goes the
same way in slabs of slices along its first axis (depth). A band whose buffers would pass
:data:`BAND_BYTES` (a slab of a 1024 × 1024-plane volume) is split across the plane into windows
(:func:`band_windows`) predicted one after the other, each with only the tiles that weigh inside
it, so memory stays bounded by the tile size, not the plane. The tiles, their
mirrored context and the sums are those of whole-image prediction (the same
:func:`~unetkit.inference.tiling.run_tiles` loop over the same :class:`~unetkit.inference.tiling.TileGrid`),
so the result is identical.

Per-image normalisation statistics are computed in a first streaming pass over the image (the
per-image scheme turned into fixed statistics), so every tile sees the same mapping as a whole-image
prediction would.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable, Iterator, Optional, Protocol, runtime_checkable

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..io.memmap import release_pages
from .tiling import Stitcher, mirror_indices, run_tiles

#: Images with more pixels than this are predicted band by band (when the source is lazy); volumes
#: from a quarter of it (:data:`VOLUME_SHARE`): a 3D net holds more activations per voxel (a
#: 256×512×512 volume predicted whole peaked at 3.2 GB with a 3D U-Net of width 8; BENCHMARKS.md).
LARGE_PIXELS = 64 * 2**20
VOLUME_SHARE = 4
#: Bytes the band buffers may take (weighted sums, weights and the normalised rows handed on):
#: above it a band is split across its other axes into windows predicted one after the other (a
#: 1024 × 1024 plane of 128-slice 3D tiles needs 2.5 GB whole, 0.3 GB in 3 × 3 windows)
BAND_BYTES = 512 * 2**20


def _row_chunks(source: np.ndarray, elements: int = 2**24) -> Iterator[np.ndarray]:
    """The source in bands along its first spatial axis of at most ``elements`` values each (rows
    of a 2D image, slices of a volume)."""
    per_row = int(np.prod(source.shape[2:], dtype=np.int64)) * source.shape[0]
    rows = max(1, elements // max(per_row, 1))
    for y in range(0, source.shape[1], rows):
        yield np.asarray(source[:, y : y + rows])


def freeze_normalizer(normalizer, source: np.ndarray):
    """A normaliser whose statistics are those of the whole ``source`` image, computed in one
    streaming pass (per-image schemes only; fixed and dataset schemes are returned unchanged)."""
    if normalizer is None or not getattr(normalizer, "per_image", False):
        return normalizer
    from ..data.normalization import Normalizer

    state = normalizer.to_dict()  # a package's own preprocessing refuses here, saying why
    frozen = Normalizer.from_dict(state).frozen(_row_chunks(source))  # per scheme (per-channel)
    release_pages(source)  # the statistics pass touched every page of a memory-mapped source
    return frozen


def _check_orientation(predictor, source, path: Optional[Path]) -> None:
    """A model trained in an orientation (``data.orientation``) gets no source that would have to
    be turned to it: band by band, the volume is read as stored."""
    from ..io.orientation import axis_codes

    target = getattr(predictor, "orientation", None)
    codes = axis_codes(getattr(source, "meta", None)) if target is not None else None
    if codes is not None and codes != target:
        raise DataError(
            f"the model works on volumes in orientation {target} (data.orientation) and this one "
            f"is stored in {codes}: band-by-band prediction of volumes this large does not turn "
            f"them yet; save it in {target} first, or predict crops of it",
            path if path is not None else "image",
        )


@runtime_checkable
class BandSink(Protocol):
    """Where band-by-band prediction hands finished rows (structural: any object with these).

    ``write(y0, probs)`` receives ``probs`` (K, rows, *rest) float32 for rows ``y0 …`` in order,
    each row exactly once; ``close()`` is called once after the last row (make the output
    complete there, e.g. rename a temporary file). A sink with ``windows = True`` also takes
    ``write(y0, probs, window)``: ``probs`` (K, rows, *window sizes) for the block ``window``
    (``(start, stop)`` per axis after the first) of those rows; the rows then come once per window,
    in order within each window.
    """

    def write(self, y0: int, probs: np.ndarray) -> None: ...

    def close(self) -> None: ...


def check_band_prediction(
    predictor,
    source,
    path: Optional[Path] = None,
    spacing: Optional[tuple] = None,
    unit: Optional[str] = None,
) -> None:
    """Refuse, in one line, what band-by-band prediction cannot do for ``source``: another
    dimensionality, and a model (or any ensemble member) that would have to resample the image
    (``data.scale``, or a ``target_spacing`` the image's voxel size differs from) or turn it
    (``data.orientation``). Called before anything is read or written (the Dask path calls it
    before it creates its output store). ``spacing``, ``unit``: the image's voxel size and its
    unit where ``source`` does not carry them (a memory map has no ``meta``)."""
    from ..data.resample import spacing_factors
    from .predictor import spacing_for_model

    where = path if path is not None else "image"
    if source.ndim != predictor.spatial_dims + 1:
        raise DataError(
            f"the model is {predictor.spatial_dims}D; band-by-band prediction needs a "
            f"{'(C, H, W) image' if predictor.spatial_dims == 2 else '(C, D, H, W) volume'}, got "
            f"shape {tuple(source.shape)}: give {predictor.spatial_dims}D inputs",
            where,
        )
    if spacing is None:
        meta = getattr(source, "meta", None)
        spacing, unit = getattr(meta, "spacing", None), getattr(meta, "spacing_unit", None)
    spacing = spacing_for_model(predictor, spacing, unit, where)
    for model in getattr(predictor, "members", None) or [predictor]:
        if getattr(model, "scale", None) is not None:
            raise DataError(
                f"the model works at {'×'.join(f'{s:g}' for s in model.scale)} of the stored "
                "resolution, which band-by-band prediction of images this large does not do yet; "
                "predict a downsampled copy of the image, or crops of it",
                where,
            )
        target = getattr(model, "target_spacing", None)
        trained = getattr(model, "trained_spacing", None)
        if target is None and trained is not None and model.resampling(spacing) is not None:
            target = trained  # trained as stored, at a voxel size far from this image's
        if target is not None and spacing_factors(spacing, target, model.spatial_dims) is not None:
            raise DataError(
                f"the model works at voxel size {'×'.join(f'{s:g}' for s in target)} and this "
                f"image's is {'×'.join(f'{s:g}' for s in spacing)}: band-by-band prediction of "
                "images this large does not resample yet; resample the image to the model's "
                "spacing first, or predict crops of it",
                where,
            )
        _check_orientation(model, source, path)


def _weighted_extents(tile) -> list[tuple[int, int]]:
    """Per spatial axis, the ``[start, stop)`` where ``tile`` adds weight: its output, narrowed to
    the non-zero blend weights (a crop-stitched tile weighs only its crop)."""
    out = [(int(sl.start), int(sl.stop)) for sl in tile.output]
    if tile.weights is None:
        return out
    nonzero = np.asarray(tile.weights) != 0
    for axis in range(nonzero.ndim):
        hit = np.flatnonzero(nonzero.any(axis=tuple(a for a in range(nonzero.ndim) if a != axis)))
        if hit.size:
            start = out[axis][0]
            out[axis] = (start + int(hit[0]), start + int(hit[-1]) + 1)
    return out


def tiles_in_window(grid, window: tuple) -> list:
    """The tiles of ``grid`` that add weight inside ``window`` (``(start, stop)`` per spatial axis
    after the first): every tile a pixel of the window sums, so a window predicted on its own is
    the whole image's prediction there, bit for bit."""
    kept = []
    for t in grid.tiles:
        ext = _weighted_extents(t)[1:]
        if all(a < w1 and b > w0 for (a, b), (w0, w1) in zip(ext, window)):
            kept.append(t)
    return kept


def band_channels(predictor) -> tuple[int, int]:
    """``(stitched, classes)``: the channels a band sums (the tile function's output: one model's
    logits, or an ensemble's members' log-probabilities stacked, ``M × K'``) and the class
    probabilities it hands on. The band's memory grows with both (:func:`band_windows`)."""
    members = getattr(predictor, "members", None) or [predictor]
    per_member = []
    for member in members:
        logits = int(getattr(getattr(member, "model", None), "num_classes", 2) or 2)
        per_member.append(logits)
    classes = max(max(per_member), 2)
    if len(members) == 1:
        return per_member[0], classes
    return sum(max(k, 2) for k in per_member), classes  # members stack log-probabilities


def band_windows(
    grid,
    shape: tuple,
    classes: int,
    budget: Optional[int] = None,
    stitched: Optional[int] = None,
) -> list:
    """``[None]`` when a band of whole rows fits ``budget`` bytes (default :data:`BAND_BYTES`), else
    the windows (``(start, stop)`` per spatial axis after the first) that split each band so that
    one does.

    A band holds ``stitched`` weighted sums (default ``classes``; an ensemble stitches each
    member's, :func:`band_channels`), the weight sum and the ``classes`` normalised rows it hands
    on: ``(stitched + 1 + classes) × band rows × plane × 4`` bytes. Cuts fall where tiles' weighted
    parts start, so that with crop stitching each tile lies in one window and none is run twice
    (blended tiles that straddle a cut are run once per window they touch)."""
    budget = BAND_BYTES if budget is None else budget
    stitched = classes if stitched is None else stitched
    rows = grid.band_rows()
    need = (stitched + 1 + classes) * rows * float(np.prod(shape[1:])) * 4
    if len(shape) < 2 or need <= budget:
        return [None]
    per_axis = int(np.ceil((need / budget) ** (1.0 / (len(shape) - 1))))
    extents = [_weighted_extents(t) for t in grid.tiles]
    cuts_per_axis = []
    for axis in range(1, len(shape)):
        n = shape[axis]
        starts = sorted({e[axis][0] for e in extents if 0 < e[axis][0] < n})
        target = int(np.ceil(n / per_axis))
        cuts, at = [0], 0
        while at < n:
            reach = [c for c in starts if at < c <= at + target]
            nxt = reach[-1] if reach and at + target < n else n
            if not reach and at + target < n:  # no tile starts within reach: the next start
                later = [c for c in starts if c > at]
                nxt = later[0] if later else n
            cuts.append(nxt)
            at = nxt
        cuts_per_axis.append(list(zip(cuts[:-1], cuts[1:])))
    return [tuple(w) for w in itertools.product(*cuts_per_axis)]


def predict_large(
    predictor,
    source: np.ndarray,
    sink: BandSink,
    progress: Optional[Callable[[int], None]] = None,
    path: Optional[Path] = None,
    rows: Optional[tuple] = None,
    normalizer=None,
    spacing: Optional[tuple] = None,
    unit: Optional[str] = None,
) -> None:
    """Predict a lazily readable ``(C, H, W)`` image (rows) or ``(C, D, H, W)`` volume (slabs of
    slices along D) band by band into ``sink``.

    Uses the predictor's tiling (overlap-tile for valid-padding nets, blended sliding window
    otherwise), test-time augmentation, device and precision; the probabilities handed to the sink
    are the same as :meth:`Predictor.predict_proba` on the whole image would give. Every band read
    is checked for NaN/inf values (a :class:`DataError` naming ``path``, the source file).
    ``predictor`` may be an :class:`~unetkit.inference.ensemble.EnsemblePredictor`: the sink then
    receives the mean of its members' probabilities.

    ``rows = (r0, r1)`` predicts only that block of rows (slices) with the tiles that touch it,
    each pixel the same sum of the same tiles as the whole image gives, so blocks predicted apart
    (on several workers) make exactly the whole image; the sink then gets rows ``r0 … r1``.
    ``normalizer``: the whole image's frozen normaliser (:func:`freeze_normalizer`), so blocks do
    not each read the whole image for its statistics. ``spacing``, ``unit``: the image's voxel size
    and its unit where ``source`` does not carry them (a memory map); see
    :func:`check_band_prediction`.
    """
    from ..data.reading import require_finite
    from .ensemble import EnsemblePredictor
    from .predictor import probabilities

    check_band_prediction(predictor, source, path, spacing, unit)
    shape = source.shape[1:]
    plan = predictor.plan(shape)  # an ensemble whose members tile or normalise apart stops here
    norm = normalizer if normalizer is not None else freeze_normalizer(predictor.normalizer, source)
    to_probabilities = (
        predictor.probabilities if isinstance(predictor, EnsemblePredictor) else probabilities
    )
    grid = plan.grid()
    first_row, last_row = 0, shape[0]
    if rows is not None:
        first_row, last_row = max(0, int(rows[0])), min(shape[0], int(rows[1]))
        if last_row <= first_row:
            raise ConfigError(f"rows {rows} hold no row of an image of {shape[0]}")
        touching = [
            t for t in grid.tiles if t.output[0].start < last_row and t.output[0].stop > first_row
        ]
        grid = grid._replace(tiles=touching)
    fold = [mirror_indices(n, b, a) for n, b, a in zip(shape, grid.pad_before, grid.pad_after)]

    def read(tile: tuple) -> np.ndarray:
        """The tile's part of the (virtually) mirror-padded source, normalised, as float32."""
        index = [f[t] for f, t in zip(fold, tile)]  # source coordinates per axis, mirrored
        lows = [int(i.min()) for i in index]
        # only the tile's box is read: a compressed source decodes the chunks it touches
        box = (slice(None),) + tuple(slice(lo, int(i.max()) + 1) for lo, i in zip(lows, index))
        band = np.asarray(source[box])[
            (slice(None), *np.ix_(*(i - lo for i, lo in zip(index, lows))))
        ]
        require_finite(band, path if path is not None else "image")
        band = norm(band) if norm is not None else band
        return np.ascontiguousarray(band, dtype=np.float32)

    windows = [None]
    if getattr(sink, "windows", False):
        stitched, classes = band_channels(predictor)
        windows = band_windows(grid, shape, classes, stitched=stitched)
    plane = float(np.prod(shape[1:]))
    reported = [0.0, 0]  # rows × window share so far, rows reported

    def emit(y0: int, logits: np.ndarray, window: Optional[tuple]) -> None:
        # row by row: softmax kernels round differently with the array's length (vector tails), so
        # a fixed row shape makes a row's probabilities the same bits in any band, block or window
        rows, probs = torch.from_numpy(logits), None
        for i in range(rows.shape[1]):
            p = to_probabilities(rows[:, i : i + 1]).numpy()
            if probs is None:  # classes, not logit channels (one logit: two classes; ensembles)
                probs = np.empty((p.shape[0], *logits.shape[1:]), dtype=np.float32)
            probs[:, i : i + 1] = p
        if window is None:
            sink.write(y0, probs)
        else:
            sink.write(y0, probs, window)
        if progress:  # rows of the whole plane: a window's rows count by its share of the plane
            share = 1.0 if window is None else float(np.prod(logits.shape[2:])) / plane
            reported[0] += logits.shape[1] * share
            step = int(round(reported[0])) - reported[1]
            if step > 0:
                reported[1] += step
                progress(step)

    predictor.prepare_fast_path(source.shape[0], plan.in_tile, len(grid.tiles))
    for window in windows:
        part = grid if window is None else grid._replace(tiles=tiles_in_window(grid, window))
        run_tiles(
            predictor.tile_function(square=len(set(plan.in_tile)) == 1),
            part,
            read,
            lambda k, part=part, window=window: Stitcher(
                (k, *shape), band_rows=part.band_rows(), first_row=first_row, window=window
            ),
            predictor.batch_size,
            row_done=lambda st, until, window=window: st.flush(
                min(until, last_row), lambda y0, logits: emit(y0, logits, window)
            ),
        )
    sink.close()

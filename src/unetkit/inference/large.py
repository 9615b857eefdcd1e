"""Images far larger than memory: predict band by band and hand finished rows to writers.

For a 20,000 × 20,000 image the input (lazily read: ``.npy`` or uncompressed TIFF memory maps), the
blend accumulators and the outputs are never whole in memory: the tiles of one row of tiles are
predicted, blended into a rolling band buffer (width × tile height), and the rows no later tile can
touch are normalised, turned into labels / probabilities and written. Memory is
O(width × tile height × classes), independent of the image height.

Per-image normalisation statistics are computed in a first streaming pass over the image (the
per-image scheme turned into fixed statistics), so every tile sees the same mapping as a whole-image
prediction would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..io.memmap import release_pages
from .tiling import (
    crop_weights,
    gaussian_weights,
    grid_from_starts,
    mirror_indices,
    overlap_tile_grid,
    sliding_window_grid,
    tile_alignment,
    tiled_extent,
    window_starts,
)

#: Images with more pixels than this are predicted band by band (when the source is lazy).
LARGE_PIXELS = 64 * 2**20


def open_lazy(path) -> np.ndarray:
    """A ``(C, H, W)`` array view that reads from disk on access: ``.npy`` (memory map) or an
    uncompressed TIFF (``tifffile.memmap``). Other files raise :class:`DataError` (use
    :func:`unetkit.io.read_image` for them)."""
    path = Path(path)
    name = path.name.lower()
    try:
        if name.endswith(".npy"):
            arr = np.load(path, mmap_mode="r")
        elif name.endswith((".tif", ".tiff")):
            import tifffile

            arr = tifffile.memmap(path, mode="r")
        else:
            raise DataError("lazy reading needs a .npy or an uncompressed .tif file", path)
    except (ValueError, OSError) as exc:
        raise DataError(
            f"cannot memory-map ({exc}); store the image uncompressed or as .npy", path
        ) from None
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise DataError(f"expected a 2D image (H, W) or (C, H, W), got shape {arr.shape}", path)
    if arr.shape[-1] in (3, 4) and arr.shape[0] > 4:  # (H, W, S) samples-last TIFF
        raise DataError(
            "samples-last (H, W, RGB) images cannot be memory-mapped channel-first; "
            "save the image as (C, H, W) .npy or planar TIFF",
            path,
        )
    return arr


def _row_chunks(source: np.ndarray, rows: int = 256) -> Iterator[np.ndarray]:
    for y in range(0, source.shape[1], rows):
        yield np.asarray(source[:, y : y + rows])


def freeze_normalizer(normalizer, source: np.ndarray):
    """A normaliser whose statistics are those of the whole ``source`` image, computed in one
    streaming pass (per-image schemes only; fixed and dataset schemes are returned unchanged)."""
    if normalizer is None or not getattr(normalizer, "per_image", False):
        return normalizer
    from ..data.normalization import create_normalizer

    state = normalizer.to_dict()
    frozen = create_normalizer(state["name"], **{**state["params"], "per_image": False})
    frozen.fit(_row_chunks(source))
    release_pages(source)  # the statistics pass touched every page of a memory-mapped source
    return frozen


class BandSink:
    """Receives finished rows: ``write(y0, probs)`` with ``probs`` (K, rows, W) float32 in order."""

    def write(self, y0: int, probs: np.ndarray) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


def predict_large(
    predictor,
    source: np.ndarray,
    sink: BandSink,
    progress: Optional[Callable[[int], None]] = None,
    path: Optional[Path] = None,
) -> None:
    """Predict a 2D ``(C, H, W)`` lazily readable ``source`` band by band into ``sink``.

    Uses the predictor's tiling (overlap-tile for valid-padding nets, blended sliding window
    otherwise), test-time augmentation, device and precision; the probabilities handed to the sink
    are the same as :meth:`Predictor.predict_proba` on the whole image would give. Every band read
    is checked for NaN/inf values (a :class:`DataError` naming ``path``, the source file).
    """
    from ..data.dataset import require_finite
    from .predictor import probabilities

    if predictor.spatial_dims != 2 or source.ndim != 3:
        raise ConfigError("band-by-band prediction is for 2D images (C, H, W)")
    norm = freeze_normalizer(predictor.normalizer, source)
    shape = source.shape[1:]
    plan = predictor.plan(shape)
    fn = predictor.tile_function(square=len(set(plan.get("tile", plan.get("in_tile")))) == 1)

    def read(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        lo, hi = int(rows.min()), int(rows.max()) + 1
        band = np.asarray(source[:, lo:hi])[:, rows - lo][:, :, cols]
        require_finite(band, path if path is not None else "image")
        band = norm(band) if norm is not None else band
        return np.ascontiguousarray(band, dtype=np.float32)

    if plan["mode"] == "overlap-tile":
        n_tiles = len(
            overlap_tile_grid(
                shape,
                plan["out_tile"],
                [tuple(b) for b in plan["border"]],
                tile_alignment(predictor.model, plan["in_tile"]),
            ).tiles
        )
        predictor.prepare_fast_path(source.shape[0], plan["in_tile"], n_tiles)
    elif all(t <= n for t, n in zip(plan["tile"], shape)):
        predictor.prepare_fast_path(
            source.shape[0],
            plan["tile"],
            len(sliding_window_grid(shape, plan["tile"], plan["overlap"], plan["align"])),
        )

    def run(tiles: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for i in range(0, len(tiles), predictor.batch_size):
            out += list(fn(torch.from_numpy(np.stack(tiles[i : i + predictor.batch_size]))).numpy())
        return out

    emit = lambda y0, logits: sink.write(y0, probabilities(torch.from_numpy(logits)).numpy())
    if plan["mode"] == "overlap-tile":
        _overlap_tile_bands(predictor, plan, shape, read, run, emit, progress)
    else:
        _sliding_window_bands(plan, shape, read, run, emit, progress)
    sink.close()


def _group_by_row(tiles, key):
    rows: dict[int, list] = {}
    for t in tiles:
        rows.setdefault(key(t), []).append(t)
    return [rows[k] for k in sorted(rows)]


def _overlap_tile_bands(predictor, plan, shape, read, run, emit, progress) -> None:
    border = [tuple(b) for b in plan["border"]]
    align = tile_alignment(predictor.model, plan["in_tile"])
    grid = overlap_tile_grid(shape, plan["out_tile"], border, align=align)
    fold = [mirror_indices(n, b, a) for n, b, a in zip(shape, grid.pad_before, grid.pad_after)]
    for row in _group_by_row(grid.tiles, lambda t: t.output[0].start):
        y = row[0].output[0]
        band = None
        preds = run([read(fold[0][t.input[0]], fold[1][t.input[1]]) for t in row])
        for t, p in zip(row, preds):
            if band is None:
                band = np.zeros((p.shape[0], y.stop - y.start, shape[1]), np.float32)
            band[:, :, t.output[1]] = p[(slice(None), *t.crop)]
        emit(y.start, band)
        if progress:
            progress(y.stop - y.start)


def _sliding_window_bands(plan, shape, read, run, emit, progress) -> None:
    tile, blend = plan["tile"], plan["blend"]
    weights = gaussian_weights(tile) if blend == "gaussian" else np.ones(tile, np.float32)
    extent = tiled_extent(
        shape, tile, plan["align"]
    )  # as predict_tiled: padded (mirrored) at the end
    starts = window_starts(extent, tile, plan["overlap"], plan["align"])
    grid = grid_from_starts(starts, tile)
    rows = _group_by_row(grid, lambda s: s[0].start)
    acc = wsum = None
    buf_start = 0  # image row of the buffers' first row (= the current row of tiles' start)
    H, W = shape
    for r, row in enumerate(rows):
        y0 = row[0][0].start
        tiles = []
        for sl in row:
            ys = np.clip(np.arange(sl[0].start, sl[0].stop), 0, None)
            xs = np.arange(sl[1].start, sl[1].stop)
            tiles.append(
                read(
                    mirror_indices(H, 0, max(0, sl[0].stop - H))[ys],
                    mirror_indices(W, 0, max(0, sl[1].stop - W))[xs],
                )
            )
        preds = run(tiles)
        if acc is None:
            acc = np.zeros((preds[0].shape[0], tile[0], W), np.float32)
            wsum = np.zeros((tile[0], W), np.float32)
        for sl, p in zip(row, preds):
            if blend == "crop":
                weights = crop_weights(sl, starts, tile)
            xs = slice(sl[1].start, min(sl[1].stop, W))
            h = min(sl[0].stop, H) - y0
            acc[:, y0 - buf_start : y0 - buf_start + h, xs] += (p * weights)[
                :, :h, : xs.stop - xs.start
            ]
            wsum[y0 - buf_start : y0 - buf_start + h, xs] += weights[:h, : xs.stop - xs.start]
        done = rows[r + 1][0][0].start if r + 1 < len(rows) else min(y0 + tile[0], H)
        n = done - buf_start  # rows no later tile touches: final
        if (wsum[:n] <= 0).any():
            raise ConfigError("internal error: a pixel received no tile weight")
        emit(buf_start, acc[:, :n] / wsum[:n])
        if progress:
            progress(n)
        acc = np.concatenate([acc[:, n:], np.zeros((acc.shape[0], n, W), np.float32)], axis=1)
        wsum = np.concatenate([wsum[n:], np.zeros((n, W), np.float32)], axis=0)
        buf_start = done

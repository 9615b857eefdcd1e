"""Pyramidal label images: the full-resolution labels plus reduced levels, so that viewers (QuPath,
Fiji/Bio-Formats, napari) show a whole-slide label image zoomed out without reading all of it.

Two containers, both written region by region from an array-like level 0 (a memory map, a zarr
array), so memory is bounded by one row of tiles or one chunk, never the image:

* :func:`write_pyramidal_ome_tiff`: a tiled (256²), zlib-compressed OME-TIFF whose reduced levels
  are SubIFDs of the full-resolution planes, with the pixel size in the OME metadata (and in the
  resolution tags, for plain TIFF readers): the pyramid
  layout Bio-Formats, QuPath and tifffile read as one image (zlib/Deflate is the compression every
  TIFF reader decodes).
* :func:`add_ome_zarr_levels`: reduced levels added to an OME-Zarr image whose level 0 is written,
  listed in its multiscales ``datasets`` with the scale of each (Y and X doubled per level).

**Reduction**: level ``k`` is level 0 ``[..., ::2**k, ::2**k]`` (nearest neighbour, every 2nd pixel of
the level above): a label image must hold only predicted labels, and averaging would invent values
between classes. Sampling pixel ``2i`` puts level ``k``'s pixel centres on level 0's, so a scale
alone places each level (no translation). Only Y and X are halved: a volume keeps its slices at
every level, as slide pyramids do.

**How many levels**: the caller says (predict gives a pyramidal input's labels the input's level
count, so labels and image zoom in the same steps); without one, :func:`default_level_count` halves
until the long side is at most :data:`TOP_SIDE` px, a top level of one or two tiles, what a viewer
shows fully zoomed out.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from ..errors import ConfigError, DataError
from .memmap import release_pages

#: Tile side of the OME-TIFF (a multiple of 16, as TIFF asks; QuPath's and Bio-Formats' usual size).
TILE = 256
#: :func:`default_level_count` halves until the long side is at most this many pixels.
TOP_SIDE = 512
#: TIFF compression of every level: lossless, and decoded by every TIFF reader.
COMPRESSION = "zlib"
#: Bytes of tiles tifffile may hold for its compression threads at once (its default is 512 MiB).
ENCODE_BUFFER = 4 * 2**20
#: unetkit's units → OME's UnitsLength names (a unit OME has no name for: no physical size is
#: written, since OME readers would take a bare size as micrometres).
OME_UNITS = {"um": "µm", "mm": "mm", "nm": "nm", "m": "m", "cm": "cm", "A": "Å", "Å": "Å"}


def default_level_count(shape: Sequence[int], top_side: int = TOP_SIDE) -> int:
    """Levels of a pyramid of ``(…, Y, X)`` ``shape`` whose top level's long side is at most
    ``top_side`` (1: the image is small enough as it is)."""
    long_side, count = max(int(n) for n in shape[-2:]), 1
    while long_side > top_side:
        long_side, count = math.ceil(long_side / 2), count + 1
    return count


def level_shapes(shape: Sequence[int], levels: int) -> list[tuple]:
    """The shape of each of ``levels`` levels of ``(…, Y, X)`` ``shape``: Y and X halved per level,
    rounded up (the length of ``[::2]``), the leading axes kept."""
    shape = tuple(int(n) for n in shape)
    return [(*shape[:-2], *(math.ceil(n / 2**k) for n in shape[-2:])) for k in range(int(levels))]


def _check(shape: tuple, levels: Optional[int], path: Path) -> int:
    """``levels`` (or the default count) after checking the shape, else a one-line error."""
    if len(shape) not in (2, 3) or min(shape, default=0) < 1:
        raise DataError(
            f"a label pyramid is made of a (Y, X) image or a (Z, Y, X) volume, got shape {shape}; "
            "give one label image without a channel axis",
            path,
        )
    if levels is None:
        return default_level_count(shape)
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
        raise ConfigError(
            f"{path}: levels must be a whole number ≥ 1 (1: no pyramid), got {levels!r}"
        )
    return int(levels)


def _tiles(source, level: int, tile: int) -> Iterator[np.ndarray]:
    """The tiles of ``level`` in TIFF order (plane by plane, row by row), read one row of tiles at
    a time from level 0 with a stride of ``2**level``; a memory map's pages are released after each
    row."""
    step = 2**level
    planes = source.shape[0] if source.ndim == 3 else None
    for z in range(planes or 1):
        plane = (z,) if planes is not None else ()
        for y0 in range(0, source.shape[-2], tile * step):
            rows = np.array(
                source[(*plane, slice(y0, y0 + tile * step, step), slice(None, None, step))]
            )
            if rows.dtype == bool:
                rows = rows.astype(np.uint8)
            if isinstance(source, np.ndarray):
                release_pages(source)
            for x0 in range(0, rows.shape[1], tile):
                yield rows[:, x0 : x0 + tile]


def _ome_metadata(shape: tuple, spacing: Optional[Sequence[float]], unit: Optional[str]) -> dict:
    """tifffile's OME metadata: the axes and, with a spacing per axis and a unit OME names, the
    physical size of a pixel (``PhysicalSizeX``/``Y``/``Z`` and their units)."""
    axes = "ZYX"[-len(shape) :]
    metadata: dict = {"axes": axes}
    ome_unit = OME_UNITS.get(unit or "")
    if spacing is not None and len(spacing) == len(shape) and ome_unit is not None:
        for letter, size in zip(axes, spacing):
            if float(size) > 0:
                metadata[f"PhysicalSize{letter}"] = float(size)
                metadata[f"PhysicalSize{letter}Unit"] = ome_unit
    return metadata


#: centimetres per unit: the standard TIFF ResolutionUnit every reader knows is the centimetre
_CM_PER_UNIT = {"nm": 1e-7, "um": 1e-4, "mm": 0.1, "cm": 1.0, "m": 100.0}


def _resolution_tags(
    spacing: Optional[Sequence[float]], unit: Optional[str], factor: float = 1.0
) -> dict:
    """tifffile's ``resolution``/``resolutionunit`` of a level whose pixels are ``factor`` times
    level 0's: pixels per centimetre where the unit is a length, else per pixel with the unit
    NONE. The OME metadata holds the same size; the tags are what a plain TIFF reader (ImageJ's
    own opener, tifffile's ``page.resolution``) sees."""
    if spacing is None or len(spacing) < 2:
        return {}
    dy, dx = float(spacing[-2]) * factor, float(spacing[-1]) * factor
    if dy <= 0 or dx <= 0:
        return {}
    from .tiff_meta import norm_unit

    cm = _CM_PER_UNIT.get(norm_unit(unit)) if unit else None
    if cm is None:
        return {"resolution": (1.0 / dx, 1.0 / dy), "resolutionunit": "NONE"}
    return {"resolution": (1.0 / (dx * cm), 1.0 / (dy * cm)), "resolutionunit": "CENTIMETER"}


def write_pyramidal_ome_tiff(
    path,
    source,
    spacing: Optional[Sequence[float]] = None,
    unit: Optional[str] = None,
    *,
    levels: Optional[int] = None,
    tile: int = TILE,
) -> Path:
    """Write ``source`` as a tiled, compressed, pyramidal OME-TIFF at ``path``, tile by tile.

    Args:
        path: the output (``.ome.tif`` tells Bio-Formats and QuPath to read its OME metadata); it is
            written under a hidden temporary name and renamed when complete.
        source: level 0, a ``(Y, X)`` label image or a ``(Z, Y, X)`` volume: any array-like that
            slices region by region (a NumPy memory map, a zarr array); bool is written as uint8.
        spacing: pixel size per axis (``(dy, dx)`` / ``(dz, dy, dx)``) of level 0; each level's is
            implied by its size, as OME readers take it.
        unit: unetkit's unit of ``spacing`` (``"um"`` …; see :data:`OME_UNITS`).
        levels: how many levels (1: tiled and compressed, no pyramid); default
            :func:`default_level_count`.
        tile: the tile side (a multiple of 16).

    Returns:
        ``path``. Level ``k`` is ``source[..., ::2**k, ::2**k]``; a BigTIFF when the uncompressed
        levels exceed 2 GiB.

    Raises:
        DataError: ``source`` is not 2D or 3D; ConfigError: ``levels`` below 1.
        OutputError: ``path`` cannot be written (nothing is left under its name).
    """
    import tifffile

    from ..utils import atomic_path

    path = Path(path)
    shape = tuple(int(n) for n in source.shape)
    levels = _check(shape, levels, path)
    dtype = np.dtype(np.uint8 if np.dtype(source.dtype) == bool else source.dtype)
    shapes = level_shapes(shape, levels)
    raw_bytes = sum(math.prod(s) for s in shapes) * dtype.itemsize
    options = dict(
        dtype=dtype,
        tile=(tile, tile),
        compression=COMPRESSION,
        photometric="minisblack",
        buffersize=ENCODE_BUFFER,
    )
    with (
        atomic_path(path) as tmp,
        tifffile.TiffWriter(tmp, ome=True, bigtiff=raw_bytes > 2**31) as tw,
    ):
        tw.write(
            _tiles(source, 0, tile),
            shape=shapes[0],
            subifds=levels - 1,
            metadata=_ome_metadata(shape, spacing, unit),
            **_resolution_tags(spacing, unit),
            **options,
        )
        for k in range(1, levels):
            tw.write(
                _tiles(source, k, tile),
                shape=shapes[k],
                subfiletype=1,
                **_resolution_tags(spacing, unit, 2.0**k),
                **options,
            )
    return path


def add_ome_zarr_levels(path, levels: Optional[int] = None) -> None:
    """Add reduced levels ``1 … levels-1`` to the OME-Zarr image (NGFF 0.5) at ``path`` whose level
    0 is written (replacing any there), chunk by chunk, each from the level above
    ``[..., ::2, ::2]``, and list them in its multiscales ``datasets``: level ``k``'s scale is level
    0's with Y and X times ``2**k``. Chunks are :func:`~unetkit.io.ome_zarr.default_chunks`' in
    space, one index along any other axis.

    Raises:
        DataError: ``path`` is no OME-Zarr image ending in ``y``, ``x`` axes with a level-0 scale;
            ConfigError: ``levels`` below 1.
    """
    from .ome_zarr import _zarr, default_chunks

    path = Path(path)
    zarr = _zarr()
    try:
        group = zarr.open_group(str(path), mode="r+")
        ome = dict(group.attrs.get("ome", {}))
        multiscale = dict(ome["multiscales"][0])
        names = [a["name"] for a in multiscale["axes"]]
        first = multiscale["datasets"][0]
        scale = next(t["scale"] for t in first["coordinateTransformations"] if t["type"] == "scale")
        base = group[first["path"]]
    except Exception:  # not a group, no metadata, the wrong metadata: all the same to the user
        base = names = None
    if base is None or names[-2:] != ["y", "x"] or len(names) != base.ndim:
        raise DataError(
            "is not an OME-Zarr image (NGFF 0.5) whose last axes are y, x with a level-0 scale; "
            "write its level 0 with unetkit.io.ome_zarr.create_ome_zarr first",
            path,
        )
    shape = tuple(int(n) for n in base.shape)
    lead = len(names) - (3 if "z" in names else 2)  # t, c: one index per chunk
    levels = _check(shape[lead:], levels, path)
    datasets, above = [first], base
    for k, level_shape in enumerate(level_shapes(shape, levels)[1:], start=1):
        level = group.create_array(
            str(k),
            shape=level_shape,
            chunks=(1,) * lead + default_chunks(level_shape[lead:], channels=False),
            dtype=base.dtype,
            fill_value=0,
            dimension_names=getattr(base.metadata, "dimension_names", None),
            overwrite=True,
        )
        for region in _chunk_regions(level_shape, level.chunks):
            y, x = region[-2:]
            wider = (
                *region[:-2],
                slice(2 * y.start, 2 * y.stop, 2),
                slice(2 * x.start, 2 * x.stop, 2),
            )
            level[region] = above[wider]
        factor = [1.0] * (len(names) - 2) + [2.0**k, 2.0**k]
        datasets.append(
            {
                "path": str(k),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [float(s) * f for s, f in zip(scale, factor)]}
                ],
            }
        )
        above = level
    multiscale["datasets"] = datasets
    ome["multiscales"] = [multiscale, *ome["multiscales"][1:]]
    group.attrs["ome"] = ome


def _chunk_regions(shape: tuple, chunks: tuple) -> Iterator[tuple]:
    """One tuple of slices per chunk of an array of ``shape`` (row-major order)."""
    starts = [range(0, n, c) for n, c in zip(shape, chunks)]
    for corner in itertools.product(*starts):
        yield tuple(slice(a, min(a + c, n)) for a, c, n in zip(corner, chunks, shape))


__all__ = [
    "COMPRESSION",
    "OME_UNITS",
    "TILE",
    "TOP_SIDE",
    "add_ome_zarr_levels",
    "default_level_count",
    "level_shapes",
    "write_pyramidal_ome_tiff",
]

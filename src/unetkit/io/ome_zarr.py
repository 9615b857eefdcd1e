"""Write OME-Zarr (NGFF 0.5, zarr v3) images and label images, whole or band by band.

The layout is the one napari, Fiji (MoBIE/BigDataViewer), QuPath and ``ome-zarr-py`` read: a zarr
group whose ``ome`` attributes hold one ``multiscales`` entry (named axes with units, a ``scale``
transformation per level) and whose array ``0`` holds the full-resolution data (reduced levels
``1``, ``2`` … are added by :func:`unetkit.io.pyramid.add_ome_zarr_levels`). Label images have no
channel axis and carry ``image-label`` metadata, as the NGFF label specification asks. The store is
written under a hidden temporary name beside the target and renamed into place when complete
(:func:`~unetkit.utils.atomic_dir`), so a killed run never leaves a torn store under the final name.

Reading is :func:`unetkit.io.lazy.open_lazy`'s (any NGFF 0.4/0.5 image, any level).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import ConfigError

NGFF_VERSION = "0.5"
#: unetkit's short units → NGFF (UDUNITS-2) names.
NGFF_UNITS = {
    "um": "micrometer",
    "mm": "millimeter",
    "nm": "nanometer",
    "m": "meter",
    "cm": "centimeter",
    "A": "angstrom",
}
#: NGFF (UDUNITS-2) names → unetkit's short units, for reading.
UNITS_FROM_NGFF = {ngff: short for short, ngff in NGFF_UNITS.items()}
#: Chunk side of the written arrays (in-plane; depth chunks are shorter, see :func:`default_chunks`).
CHUNK = 512


def _zarr():
    try:
        import zarr
    except ImportError:
        raise ConfigError(
            "writing OME-Zarr needs the zarr package: pip install 'zarr>=3'"
        ) from None
    return zarr


def default_chunks(shape: Sequence[int], channels: bool) -> tuple:
    """Chunks of at most 512² in-plane, 32 slices deep, one channel each."""
    spatial = list(shape[1:] if channels else shape)
    chunks = [min(n, CHUNK) for n in spatial]
    if len(spatial) == 3:
        chunks[0] = min(spatial[0], 32)
    return ((1,) if channels else ()) + tuple(chunks)


def ngff_metadata(
    spatial_dims: int,
    channels: bool,
    spacing: Optional[Sequence[float]],
    unit: Optional[str],
    label: bool,
    name: str = "",
) -> dict:
    """The ``ome`` attributes of a one-level image: axes (``c``, ``z``, ``y``, ``x``), the scale of
    level 0 (``spacing``, else 1) and, for a label image, ``image-label``."""
    spatial = "zyx"[-spatial_dims:]
    ngff_unit = NGFF_UNITS.get(unit or "")
    axes = [{"name": "c", "type": "channel"}] if channels else []
    for a in spatial:
        axis = {"name": a, "type": "space"}
        if ngff_unit:
            axis["unit"] = ngff_unit
        axes.append(axis)
    scale = [1.0] * spatial_dims
    if spacing is not None and len(spacing) == spatial_dims:
        scale = [float(s) for s in spacing]
    scale = ([1.0] if channels else []) + scale
    multiscale = {
        "axes": axes,
        "datasets": [
            {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        ],
    }
    if name:
        multiscale["name"] = name
    ome: dict = {"version": NGFF_VERSION, "multiscales": [multiscale]}
    if label:
        ome["image-label"] = {}
    return ome


def create_ome_zarr(
    path: Path,
    shape: Sequence[int],
    dtype,
    *,
    channels: bool,
    spacing: Optional[Sequence[float]] = None,
    unit: Optional[str] = None,
    label: bool = False,
    chunks: Optional[Sequence[int]] = None,
):
    """A new OME-Zarr group at ``path`` (which must not exist) with an empty level-0 array of
    ``shape`` (``(C, *spatial)`` with ``channels``, else ``spatial``; ``chunks`` default
    :func:`default_chunks`); returns that array to fill."""
    zarr = _zarr()
    shape = tuple(int(n) for n in shape)
    group = zarr.open_group(str(path), mode="w-", zarr_format=3)
    spatial_dims = len(shape) - (1 if channels else 0)
    array = group.create_array(
        "0",
        shape=shape,
        chunks=tuple(chunks) if chunks is not None else default_chunks(shape, channels),
        dtype=np.dtype(dtype),
        fill_value=0,
        dimension_names=(["c"] if channels else []) + list("zyx"[-spatial_dims:]),  # NGFF 0.5 asks
    )
    group.attrs["ome"] = ngff_metadata(
        spatial_dims, channels, spacing, unit, label, name=Path(path).name.split(".")[0]
    )
    return array


def write_ome_zarr(tmp: Path, array: np.ndarray, meta=None, label: Optional[bool] = None) -> None:
    """Write a channel-first array as an OME-Zarr image at ``tmp`` (a fresh path). A one-channel
    integer array is written as a label image (no channel axis, ``image-label``) unless ``label``
    says otherwise."""
    if label is None:
        label = array.shape[0] == 1 and array.dtype.kind in "biu"
    data = array[0] if label else array
    if data.dtype == bool:
        data = data.astype(np.uint8)
    spacing = getattr(meta, "spacing", None)
    unit = getattr(meta, "spacing_unit", None)
    target = create_ome_zarr(
        tmp, data.shape, data.dtype, channels=not label, spacing=spacing, unit=unit, label=label
    )
    target[...] = data


__all__ = ["create_ome_zarr", "default_chunks", "ngff_metadata", "write_ome_zarr"]

"""Images read on access, not loaded: the sources of band-by-band prediction of huge images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError


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


__all__ = ["open_lazy"]

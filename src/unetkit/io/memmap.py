"""Memory-mapped arrays: keep the resident set bounded while streaming over files larger than memory.

Used on both sides of band-by-band prediction: the lazily read source image
(:func:`unetkit.io.lazy.open_lazy`) and the TIFF memory maps the band sinks write into.
"""

from __future__ import annotations

import mmap

import numpy as np


def release_pages(arr: np.ndarray) -> None:
    """Drop a memory map's pages from this process's resident memory (they stay on disk / in the
    page cache), so streaming over a huge file keeps the resident set bounded."""
    base = arr
    while base is not None and not isinstance(base, np.memmap):
        base = getattr(base, "base", None)
    mm = getattr(base, "_mmap", None)
    if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        mm.flush()
        mm.madvise(mmap.MADV_DONTNEED)

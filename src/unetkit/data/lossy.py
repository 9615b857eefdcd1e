"""JPEG masks: lossy files hold no exact label values, so they are read as binary.

Kvasir-SEG and many Kaggle sets ship masks as JPEG. Compression leaves values near 0 and 255 and
rings along the edges, so a grey level threshold decides foreground. Used by label inference
(:mod:`~unetkit.data.labels`), check-data and per-object mask folders
(:mod:`~unetkit.data.object_masks`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..errors import DataError

PathLike = Union[str, Path]
MaskLike = Union[PathLike, np.ndarray]

#: lossy (JPEG) masks: the suffixes, the grey level from which a pixel is foreground, the largest
#: share of pixels that may lie between black and white (JPEG's ringing along the edges; a class
#: in grey or an image covers far more), and how far R, G and B may differ in a grey mask
LOSSY_SUFFIXES = (".jpg", ".jpeg")
LOSSY_THRESHOLD = 128
LOSSY_MID_SHARE = 0.02
_LOSSY_MID = (64, 192)
_LOSSY_CHANNEL_SPREAD = 48


def is_lossy_mask(mask: MaskLike) -> bool:
    """``mask`` is a JPEG file (its label values are not exact)."""
    return isinstance(mask, (str, Path)) and Path(mask).suffix.lower() in LOSSY_SUFFIXES


def lossy_mask_grey(mask: np.ndarray, path: Optional[PathLike]) -> np.ndarray:
    """``(*spatial)`` grey level of a lossy binary mask: its channel, or the mean of R, G and B of
    one stored as grey colour (JPEG blurs the channels a little).

    Raises:
        DataError: not 8-bit, coloured, or too many pixels between black and white to be binary.
    """
    if mask.dtype != np.uint8 or mask.ndim < 3 or mask.shape[0] not in (1, 3):
        raise DataError(
            f"a JPEG mask must be 8-bit grey or RGB, got {mask.dtype} of shape {tuple(mask.shape)}",
            path,
        )
    if mask.shape[0] == 3:
        spread = mask.max(axis=0).astype(np.int16) - mask.min(axis=0)
        if np.mean(spread > _LOSSY_CHANNEL_SPREAD) > 0.001:
            raise DataError(
                "a JPEG mask in colour: lossy colours cannot be told apart as classes; save the "
                "masks losslessly (PNG)",
                path,
            )
        grey = mask.mean(axis=0)
    else:
        grey = mask[0]
    mid = float(np.mean((grey >= _LOSSY_MID[0]) & (grey < _LOSSY_MID[1])))
    if mid > LOSSY_MID_SHARE:
        raise DataError(
            f"a JPEG mask with {100 * mid:.1f} % of its pixels between black and white: not a "
            "binary mask (JPEG keeps no exact label values); save the masks losslessly (PNG)",
            path,
        )
    return grey

"""Reading a case without torch: the channel files stacked, the mask checked against its image, and
one layout (channel count, dimensionality) for all images.

:mod:`~unetkit.data.dataset` (training) and :mod:`~unetkit.data.fingerprint` (the planner's view of a
dataset) read cases the same way through these functions.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from ..errors import DataError
from ..io.readers import ImageMeta, read_image
from .discovery import Case
from .labels import LabelMap, read_mask


def read_case_image(case: Case) -> tuple[np.ndarray, ImageMeta]:
    """All channel files of a case stacked to ``(C, *spatial)`` (their native dtype kept)."""
    arrays, metas = zip(*(read_image(p) for p in case.images))
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"channel files have different sizes {sorted(shapes)}", case.images[0])
    image = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
    return image, metas[0]


def read_case_mask(
    case: Case, label_map: LabelMap, spatial: Sequence[int]
) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """The case's mask as ``(class indices, instance ids or None)`` (see
    :func:`~unetkit.data.labels.read_mask`), checked to have its image's ``spatial`` size.

    Raises:
        DataError: unreadable mask, values outside the label map, or a size that differs from the
            image's (naming the mask).
    """
    mask, instances, _ = read_mask(case.mask, label_map)
    if mask.shape != tuple(spatial):
        raise DataError(
            f"mask size {mask.shape} differs from image size {tuple(spatial)} "
            f"({case.images[0].name})",
            case.mask,
        )
    return mask, instances


def same_layout(images: Iterable[tuple]) -> Iterator[np.ndarray]:
    """Pass ``(path, (C, *spatial) array)`` pairs on as arrays; a channel count or dimensionality
    that differs from the first image's is a DataError naming both files."""
    first = None
    for path, image in images:
        if first is None:
            first = (path, image.shape[0], image.ndim - 1)
        elif image.shape[0] != first[1]:
            raise DataError(
                f"different channel counts: {image.shape[0]} here, {first[1]} in {first[0]}; all images "
                f"need the same count (grey and RGB mixed?): convert this file",
                path,
            )
        elif image.ndim - 1 != first[2]:
            raise DataError(
                f"a {image.ndim - 1}D image, while {first[0]} is {first[2]}D: 2D and 3D images are mixed",
                path,
            )
        yield image

"""Reading a case without torch: the channel files stacked, the mask checked against its image, and
one layout (channel count, dimensionality) for all images.

:mod:`~unetkit.data.dataset` (training) and :mod:`~unetkit.data.fingerprint` (the planner's view of a
dataset) read cases the same way through these functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from ..errors import DataError
from ..io.readers import ImageMeta, read_image
from .discovery import Case, is_dir_alias
from .labels import LabelMap, read_mask


def read_case_image(case: Case) -> tuple[np.ndarray, ImageMeta]:
    """All channel files of a case stacked to ``(C, *spatial)`` (their native dtype kept)."""
    arrays, metas = zip(*(read_image(p) for p in case.images))
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"channel files have different sizes {sorted(shapes)}", case.images[0])
    image = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
    return image, metas[0]


#: sibling folders whose files (same stems as the images) hold instance ids for the masks' objects,
#: as MoNuSeg's ``instances/`` beside its binary ``masks/``
INSTANCE_DIR_NAMES = ("instances", "instance")


def case_instance_file(case: Case) -> Optional[Path]:
    """The case's instance-id file from a sibling ``instances/`` folder (any case: ``Instances/``),
    or ``None``."""
    for name, path in sorted(case.extra.items()):
        if is_dir_alias(name, INSTANCE_DIR_NAMES):
            return Path(path)
    return None


def read_case_mask(
    case: Case, label_map: LabelMap, spatial: Sequence[int]
) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """The case's mask as ``(class indices, instance ids or None)`` (see
    :func:`~unetkit.data.labels.read_mask`), checked to have its image's ``spatial`` size.

    Instance ids come from the mask itself (instance masks) or, for class masks, from a sibling
    ``instances/`` folder (:data:`INSTANCE_DIR_NAMES`): binary masks merge touching objects into
    one component, their instance ids keep them apart (for the fingerprint's object counts, the
    border weight map, carving separation gaps and scoring objects on validation). Ids on pixels
    the mask calls background are dropped.

    Raises:
        DataError: unreadable mask or instance file, values outside the label map, non-integer
            ids, or a size that differs from the image's (naming the file).
    """
    mask, instances, _ = read_mask(case.mask, label_map)
    _check_size(mask, spatial, case.mask, case)
    source = case_instance_file(case) if instances is None else None
    if source is not None:
        _, instances, _ = read_mask(source, kind="instances")
        _check_size(instances, spatial, source, case)
        instances[mask <= 0] = 0
    return mask, instances


def _check_size(arr: np.ndarray, spatial: Sequence[int], path: Path, case: Case) -> None:
    if arr.shape != tuple(spatial):
        raise DataError(
            f"{'mask' if path == case.mask else 'instance file'} size {arr.shape} differs from "
            f"image size {tuple(spatial)} ({case.images[0].name})",
            path,
        )


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

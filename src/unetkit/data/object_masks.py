"""Per-object mask folders: one binary file per object, read as one instance-id mask.

The 2018 Data Science Bowl nuclei set and the many sets derived from it store each image's objects
as separate binary files (``<case>/masks/<object>.png``) rather than one label image. Reading such a
folder as an instance-id image lets everything that knows instance masks (the border weight map,
object metrics, the planner's object counts and sizes) use it unchanged. No imaging library reads
this layout, so it is written here: a loop over the files, each one an object.

Rules, so that the result does not depend on how the files were made:

* every non-hidden entry of the folder is an image file of the same spatial size (a folder with
  anything else is not an object-mask folder);
* a pixel is part of the object where any channel is non-zero (JPEG files: where the grey level is
  at least :data:`~unetkit.data.lossy.LOSSY_THRESHOLD`, so compression noise is not an object);
* objects are numbered ``1 … n`` in file-name order; an empty file (no object pixel) is skipped;
* every object pixel of a lossless file has the same value (a file with several non-zero values is
  a label image of many objects, which belongs in ``masks/`` beside ``images/``, not here);
* where objects overlap, the pixel keeps the first object in file-name order (one label image
  cannot hold two ids).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..errors import DataError
from ..io.meta import ImageMeta
from ..io.readers import JUNK_NAMES, is_image_file, read_image
from .lossy import LOSSY_THRESHOLD, is_lossy_mask, lossy_mask_grey

PathLike = Union[str, Path]

#: :attr:`ImageMeta.format` of a mask read from a per-object folder
OBJECTS_FORMAT = "objects"
EMPTY_MESSAGE = "empty mask folder: an image without objects needs one all-black mask file"
STRAY_MESSAGE = (
    "not an image file in a per-object mask folder (one binary image per object); move it out"
)


def _entries(folder: Path) -> list[Path]:
    return [
        e
        for e in sorted(folder.iterdir())
        if not e.name.startswith(".") and e.name not in JUNK_NAMES
    ]


def is_object_mask_folder(path: PathLike) -> bool:
    """Whether ``path`` is a folder holding only image files (at least one), none of them a folder
    itself: a per-object mask folder. (A DICOM series or zarr store is a folder too; neither holds
    only image files with image suffixes.)"""
    path = Path(path)
    if not path.is_dir() or path.suffix.lower() == ".zarr":
        return False
    try:
        entries = _entries(path)
    except OSError:
        return False
    return bool(entries) and all(e.is_file() and is_image_file(e) for e in entries)


def object_folder_problem(folder: PathLike) -> Optional[tuple[Path, str]]:
    """Why a sub-folder of a mask folder is not a usable per-object mask folder, as ``(path,
    message)`` naming the culprit: it is empty, or it mixes object files with something else.
    ``None`` when it is one, or when it holds no image file at all (not meant as one)."""
    folder = Path(folder)
    if not folder.is_dir() or is_object_mask_folder(folder):
        return None
    entries = _entries(folder)
    if not entries:
        return folder, EMPTY_MESSAGE
    if not any(e.is_file() and is_image_file(e) for e in entries):
        return None
    stray = next(e for e in entries if not (e.is_file() and is_image_file(e)))
    return stray, STRAY_MESSAGE


def _foreground(arr: np.ndarray, path: Path) -> np.ndarray:
    """``(*spatial)`` bool object pixels of one object file (see the module doc)."""
    if is_lossy_mask(path):
        return lossy_mask_grey(arr, path) >= LOSSY_THRESHOLD
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DataError("object mask holds NaN/inf values", path)
    fg = (arr != 0).any(axis=0)
    values = arr[:, fg]
    if values.size and not (values == values[:, :1]).all():
        raise DataError(
            "an object mask with several non-zero values: a per-object file is binary (one object); "
            "a label image of all objects goes in masks/ beside images/ instead",
            path,
        )
    return fg


def read_object_masks(folder: PathLike) -> tuple[np.ndarray, ImageMeta]:
    """The objects of a per-object mask folder as one ``(1, *spatial)`` instance-id mask.

    Returns:
        ``(ids, meta)``: ``uint16`` ids (``uint32`` past 65,535 objects), 0 = background; ``meta``
        is the first file's, with ``format`` :data:`OBJECTS_FORMAT` and ``path`` the folder.

    Raises:
        DataError: the folder is empty or holds something other than image files, a file is
            unreadable, or its size differs from the first file's (naming it).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("per-object mask folder not found", folder)
    entries = _entries(folder)
    if not entries:
        raise DataError(EMPTY_MESSAGE, folder)
    for entry in entries:
        if not (entry.is_file() and is_image_file(entry)):
            raise DataError(STRAY_MESSAGE, entry)
    ids = None
    meta = None
    count = 0
    for entry in entries:
        arr, this = read_image(entry)
        if ids is None:
            meta, spatial = this, arr.shape[1:]
            ids = np.zeros(spatial, dtype=np.uint32)
        elif arr.shape[1:] != ids.shape:
            raise DataError(
                f"object mask size {arr.shape[1:]} differs from {entries[0].name}'s {ids.shape}; "
                "all masks of an image have its size",
                entry,
            )
        fg = _foreground(arr, entry)
        if not fg.any():
            continue
        count += 1
        ids[fg & (ids == 0)] = count
    dtype = np.uint16 if count <= np.iinfo(np.uint16).max else np.uint32
    out = ids.astype(dtype)[None]
    meta = dataclasses.replace(
        meta,
        path=str(folder),
        format=OBJECTS_FORMAT,
        dtype=str(out.dtype),
        shape=tuple(int(s) for s in out.shape),
        mode=None,
        palette=None,
        channel_axis=None,
    )
    return out, meta


def read_mask_source(path: PathLike) -> tuple[np.ndarray, ImageMeta]:
    """A mask file with :func:`~unetkit.io.read_image`, or a per-object mask folder with
    :func:`read_object_masks`: how every mask reader opens a case's mask. A grey mask stored as
    RGB (:func:`grey_if_equal_channels`) comes back as its one channel."""
    from ..io.itk import is_dicom_folder

    path = Path(path)
    if path.is_dir() and path.suffix.lower() != ".zarr" and not is_dicom_folder(path):
        return read_object_masks(path)  # its errors name the stray or broken file
    arr, meta = read_image(path)
    grey = grey_if_equal_channels(arr)
    if grey is not arr:
        mode = "L" if meta.mode in ("RGB", "RGBA") else meta.mode
        meta = dataclasses.replace(meta, shape=tuple(int(s) for s in grey.shape), mode=mode)
    return grey, meta


def grey_if_equal_channels(mask: np.ndarray) -> np.ndarray:
    """``mask[:1]`` when it is an 8-bit RGB mask whose three channels are equal everywhere: a grey
    mask that an image editor saved as RGB (or RGBA, whose opaque alpha the reader drops). Read as
    the grey labels it holds, it mixes with masks saved as grey, and predictions come back grey;
    ``mask`` itself otherwise."""
    if (
        mask.ndim >= 3
        and mask.shape[0] == 3
        and mask.dtype == np.uint8
        and np.array_equal(mask[0], mask[1])
        and np.array_equal(mask[0], mask[2])
    ):
        return mask[:1]
    return mask


def is_object_source(path) -> bool:
    """``path`` names a per-object mask folder (its ids are instances, whatever ``--mask-kind``)."""
    return isinstance(path, (str, Path)) and is_object_mask_folder(path)

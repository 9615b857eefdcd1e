"""Files in, files out: ``read_image(path) -> (array (C, *spatial), ImageMeta)`` and its inverse.

Readers fix the axis order once (channel-first, original dtype); writers are atomic and keep
spacing, affine, ITK origin/direction and palette where the format allows. See :mod:`unetkit.io.readers` for the axis
rules of each format, :mod:`unetkit.io.writers` for what each format can store and
:mod:`unetkit.io.itk` for NRRD, MetaImage and DICOM series and their geometry.
"""

from __future__ import annotations

from .readers import (
    FORMATS,
    SUPPORTED_SUFFIXES,
    ImageMeta,
    image_format,
    is_image_file,
    list_images,
    read_image,
    split_suffix,
)
from .writers import atomic_write, write_image

__all__ = [
    "FORMATS",
    "SUPPORTED_SUFFIXES",
    "ImageMeta",
    "atomic_write",
    "image_format",
    "is_image_file",
    "list_images",
    "read_image",
    "split_suffix",
    "write_image",
]

"""What a TIFF file says besides its pixels: pixel size and unit (unetkit's, ImageJ's, OME's or the
resolution tags) and which extra samples are alpha.

Shared by the whole-file reader (:mod:`unetkit.io.readers`) and the region-by-region one
(:mod:`unetkit.io.lazy`), which must agree on both.
"""

from __future__ import annotations

import re
from typing import Any, Optional

import numpy as np


def _tiff_alpha_samples(tf: Any, data: np.ndarray, axes: str) -> list[int]:
    """Indices along the ``S`` axis of the samples the ``ExtraSamples`` tag marks as alpha
    (1 = associated, 2 = unassociated; 0 = unspecified is not alpha). In a file tifffile wrote
    from an array (its "shaped" description: tifffile.imwrite, scikit-image, imageio) a marked
    sample is alpha only where it is fully opaque everywhere (:func:`opaque`): tifffile marks the
    4th sample of any 4-channel array as alpha, and microscopy channels (DAPI/GFP/RFP/Cy5) saved
    so are data (the 4th was silently dropped: a model of the first three)."""
    marked = _tiff_alpha_samples_of(tf, data.shape, axes, shaped_too=True)
    if not marked or not getattr(tf, "is_shaped", False):
        return marked
    s = axes.index("S")
    return [i for i in marked if opaque(np.take(data, i, axis=s))]


def opaque(plane: np.ndarray) -> bool:
    """Whether an alpha ``plane`` is fully opaque everywhere (the dtype's maximum; 1.0 for
    floats): then it tells nothing and is no channel."""
    kind = plane.dtype.kind
    top = 1.0 if kind == "f" else True if kind == "b" else np.iinfo(plane.dtype).max
    return bool(plane.size) and bool(np.all(plane == top))


def _tiff_alpha_samples_of(tf: Any, shape: tuple, axes: str, shaped_too: bool = False) -> list[int]:
    """:func:`_tiff_alpha_samples` for data of ``shape`` (not read yet): the marked samples,
    none in a tifffile-written file unless ``shaped_too`` (the caller then judges them)."""
    if "S" not in axes or (getattr(tf, "is_shaped", False) and not shaped_too):
        return []
    page = tf.pages.first if hasattr(tf.pages, "first") else tf.pages[0]
    extras = tuple(getattr(page, "extrasamples", ()) or ())
    samples = int(getattr(page, "samplesperpixel", 1))
    if not extras or shape[axes.index("S")] != samples:
        return []
    base = samples - len(extras)
    return [base + i for i, kind in enumerate(extras) if int(kind) in (1, 2)]


def _tiff_spacing(tf: Any, spatial: str) -> tuple[Optional[tuple], Optional[str]]:
    """Spacing per spatial axis (order of ``spatial``, e.g. ``"ZYX"``) and its unit, or ``(None, None)``."""
    shaped = tf.shaped_metadata[0] if tf.shaped_metadata else None
    if shaped and shaped.get("spacing") is not None and len(shaped["spacing"]) == len(spatial):
        return tuple(float(s) for s in shaped["spacing"]), shaped.get("spacing_unit")
    page = tf.pages.first if hasattr(tf.pages, "first") else tf.pages[0]
    xy = _resolution_spacing(page)
    if tf.is_imagej and tf.imagej_metadata is not None:
        ij = tf.imagej_metadata
        unit = ij.get("unit")
        unit = None if unit in (None, "", "pixel") else norm_unit(_unescape(str(unit)))
        if "unit" not in ij and "spacing" not in ij and xy in (None, (1.0, 1.0)):
            return None, None  # uncalibrated (a pixel size in pixels says unit=pixel)
        if xy is None:
            xy = (1.0, 1.0)
        z = (float(ij.get("spacing", 1.0)),) if "Z" in spatial else ()
        return z + xy, unit
    if tf.is_ome and tf.ome_metadata:
        ome = _ome_spacing(tf.ome_metadata, spatial)
        if ome[0] is not None:
            return ome
    return _tag_spacing(page, xy, spatial)


def _ome_spacing(xml: str, spatial: str) -> tuple[Optional[tuple], Optional[str]]:
    """The first image's OME pixel sizes per axis, each in its own unit
    (``PhysicalSizeZUnit="nm"`` beside µm in x and y) and given in the x axis's unit; an axis
    that states no unit is in µm, as OME defines, except y, which takes x's (a pixel is as wide
    as it is high; tifffile writes a unit given for x only); ``(None, None)`` without
    ``PhysicalSizeX`` (the resolution tags may still say)."""
    from .meta import METRES_PER_UNIT

    first = re.search(r"<(?:\w+:)?Pixels\b[^>]*>", xml)  # the first image's, not a later series'
    xml = first.group(0) if first else xml
    sizes, units = {}, {}
    for letter in spatial:
        m = re.search(rf'PhysicalSize{letter}="([^"]+)"', xml)
        if m:
            sizes[letter] = float(m.group(1))
            u = re.search(rf'PhysicalSize{letter}Unit="([^"]+)"', xml)
            units[letter] = norm_unit(_unescape(u.group(1))) if u else None
    if "X" not in sizes:
        return None, None
    sizes.setdefault("Y", sizes["X"])
    unit = units["X"] or "um"
    units = {letter: u or (unit if letter == "Y" else "um") for letter, u in units.items()}
    units.setdefault("Y", unit)

    def metres(u: str):
        return METRES_PER_UNIT.get("A" if u in ("Å", "\u212b", "angstrom") else u)

    for letter, size in sizes.items():
        a, b = metres(units[letter]), metres(unit)
        if a is not None and b is not None and a != b:
            sizes[letter] = float(f"{size * a / b:.12g}")  # 1000 nm is 1 µm, not 1.0000000000000002
    return tuple(sizes.get(a, 1.0) for a in spatial), unit


def _tag_spacing(page: Any, xy, spatial: str) -> tuple[Optional[tuple], Optional[str]]:
    """The pixel size from the resolution tags in a physical ResolutionUnit, else none."""
    unit_tag = page.tags.get("ResolutionUnit")
    microns = _MICRONS_PER_RESOLUTION_UNIT.get(int(unit_tag.value)) if unit_tag else None
    if xy is not None and microns is not None:
        xy = (xy[0] * microns, xy[1] * microns)
        return ((1.0,) if "Z" in spatial else ()) + xy, "um"
    return None, None


#: TIFF ResolutionUnit codes read as a pixel size, in µm per unit: 3 centimetre (the standard's),
#: 4 millimetre and 5 micrometre (tifffile's extensions). 2 (inch) is not: it is the dots per inch
#: of photo and scanner software (72, 300 dpi), rarely a physical pixel size, and read as one it
#: would have a model resample such images by a made-up voxel size.
_MICRONS_PER_RESOLUTION_UNIT = {3: 1e4, 4: 1e3, 5: 1.0}


def _resolution_spacing(page: Any) -> Optional[tuple[float, float]]:
    """``(dy, dx)`` from the Y/XResolution tags (pixels per unit), or ``None``."""

    def one(name: str) -> Optional[float]:
        tag = page.tags.get(name)
        if tag is None:
            return None
        num, den = tag.value if isinstance(tag.value, tuple) else (tag.value, 1)
        return float(den) / float(num) if num else None

    x, y = one("XResolution"), one("YResolution")
    if x is None:
        return None
    return (y if y is not None else x, x)


#: Spellings of the micrometre in files (Latin-1 micro sign, Greek mu, ImageJ's and OME's words).
_MICRON = ("micron", "microns", "micrometer", "micrometre", "\u00b5m", "\u03bcm", "\\u00B5m")


def norm_unit(unit: str) -> str:
    """unetkit's name of a length unit read from a file: ``um`` for the micrometre's spellings."""
    return "um" if unit in _MICRON else unit


def _unescape(text: str) -> str:
    """Decode the ``\\uXXXX`` escapes ImageJ writes for non-ASCII characters (``\\u00B5m`` = µm)."""
    return re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)

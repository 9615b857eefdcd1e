"""Instance label images → outlines → ImageJ ROI zips (Fiji) and GeoJSON (QuPath).

:func:`instance_polygons` traces the outline of every instance of a 2D instance image
(:class:`InstancePolygon`); :func:`write_imagej_rois` stores them as one polygon ROI each in a zip
the ImageJ ROI Manager opens (written with ``roifile``); :func:`write_geojson` as a GeoJSON
``FeatureCollection`` of detections that QuPath imports (File > Import objects).
:func:`rasterize_polygon` fills an outline back into pixels by ImageJ's rule (the tests' check).

Pixel convention (ImageJ's and QuPath's): the pixel at row ``r``, column ``c`` is the unit square
from ``(x, y) = (c, r)`` to ``(c + 1, r + 1)``; x is the column, y the row, the origin the image's
top-left corner. A pixel belongs to a polygon when its centre ``(c + 0.5, r + 0.5)`` lies inside
(ImageJ's ``PolygonFiller``). Outlines run along pixel edges through pixel corners (integer
vertices), so the filled outline is exactly the object's pixels and the polygon's area is its
pixel count.

Only the **outer** boundary is traced: a hole in an object (and anything inside it, another object
included) lies inside its polygon. An instance must be one connected piece under face connectivity
(what :func:`~unetkit.inference.postprocess.label_instances` makes); one whose pieces need several
outlines is refused (a piece inside another's hole needs none of its own).

Why a hand-written pixel-edge tracer rather than :func:`skimage.measure.find_contours`: contours
at level 0.5 pass through the midpoints between pixel centres and cut every corner, so a one-pixel
line becomes a chain of diamonds, each polygon covers about half a pixel less than its object per
unit of perimeter (QuPath's area would be short) and the vertices are fractions. The edge tracer
gives the integer outline ImageJ's wand tool gives (a "traced" ROI), whose area and filled pixels
are the object's own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
from scipy import ndimage

from ..errors import ConfigError
from ..utils import atomic_path

PathLike = Union[str, Path]

#: Face neighbours in 2D: what makes an instance one piece (and a hole, for the background).
_FACE = ndimage.generate_binary_structure(2, 1)
#: The GeoJSON measurement that holds an instance's pixel count.
AREA_MEASUREMENT = "Area (pixels)"


@dataclass(frozen=True, eq=False)
class InstancePolygon:
    """The outline of one instance.

    Attributes:
        id: the instance's value in the instance image (``1 … n``).
        label: its class index.
        class_name: its class's name (:func:`class_name`).
        area: its pixel count (holes not counted, unlike the polygon's area).
        points: ``(n, 2)`` int64 ``(x, y)`` pixel corners, counter-clockwise (a positive signed
            area with x and y taken as numbers; on screen, where y points down, it turns
            clockwise), not closed (the first point is not repeated), no two consecutive edges
            collinear.
    """

    id: int
    label: int
    class_name: str
    area: int
    points: np.ndarray

    @property
    def name(self) -> str:
        """``<class name>-<id>``, e.g. ``nucleus-12``: the ROI's and the detection's name."""
        return f"{self.class_name}-{self.id}"


def class_name(label: int, names: Optional[Sequence[str]] = None) -> str:
    """``names[label]`` (a label map's class names), else ``"class <label>"``."""
    if names is not None and 0 <= label < len(names) and names[label]:
        return str(names[label])
    return f"class {label}"


def trace_outline(mask: np.ndarray) -> np.ndarray:
    """The outer boundary of one object, along pixel edges.

    Args:
        mask: ``(H, W)`` binary mask holding one object, connected under face connectivity.

    Returns:
        ``(n, 2)`` int64 ``(x, y)`` corners, counter-clockwise (see :class:`InstancePolygon`).

    Raises:
        ConfigError: the mask is not 2D, is empty, or holds several pieces.

    Example:
        >>> trace_outline(np.array([[0, 1, 1], [0, 1, 0]])).tolist()
        [[1, 0], [3, 0], [3, 1], [2, 1], [2, 2], [1, 2]]
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype.kind not in "biu":
        raise ConfigError(
            f"trace_outline needs a 2D binary mask, got {mask.dtype} of shape {mask.shape}"
        )
    if not mask.any():
        raise ConfigError("trace_outline needs a mask holding an object, this one is empty")
    points = _trace(mask.astype(bool))
    if points is None:
        raise ConfigError(
            "trace_outline needs one connected object, the mask holds several pieces; label them "
            "(postprocess.connected_components) and trace each"
        )
    return points


def _trace(mask: np.ndarray) -> Optional[np.ndarray]:
    """:func:`trace_outline` of a non-empty bool mask; ``None`` when its outer boundary is not one
    loop (the mask holds several pieces).

    Holes are filled first (background that no face-connected path links to the outside). For one
    face-connected piece no 2×2 block is then a diagonal pair (such a pair of object pixels, joined
    through the object, would enclose one of the two background pixels), so each pixel corner
    starts at most one boundary edge and the edges form one loop, walked from the top-left corner
    of the first pixel. Several pieces leave edges the walk does not reach.
    """
    rows, cols = mask.shape
    filled = np.zeros((rows + 2, cols + 2), bool)
    filled[1:-1, 1:-1] = ndimage.binary_fill_holes(mask, _FACE)
    inner = filled[1:-1, 1:-1]
    width = cols + 1  # vertex (x, y) of the image's pixel corners is number y * width + x
    starts, ends = [], []
    # each boundary edge with the object on its left, x right and y down read as numbers
    # (counter-clockwise): (background neighbour, edge start, edge end) relative to the pixel
    for outside, (x0, y0), (x1, y1) in (
        (filled[:-2, 1:-1], (0, 0), (1, 0)),  # above: the top edge, left to right
        (filled[1:-1, 2:], (1, 0), (1, 1)),  # right: the right edge, downwards
        (filled[2:, 1:-1], (1, 1), (0, 1)),  # below: the bottom edge, right to left
        (filled[1:-1, :-2], (0, 1), (0, 0)),  # left: the left edge, upwards
    ):
        r, c = np.nonzero(inner & ~outside)
        starts.append((r + y0) * width + c + x0)
        ends.append((r + y1) * width + c + x1)
    start, end = np.concatenate(starts), np.concatenate(ends)
    # edges sorted by their start; the edge after edge k starts where k ends (memory grows with
    # the outline, not with the object's bounding box)
    order = np.argsort(start, kind="stable")
    start, end = start[order], end[order]
    following = np.minimum(np.searchsorted(start, end), start.size - 1).tolist()
    count = start.size
    loop = [0]  # from the top-left corner of the first pixel (the smallest start)
    k = following[0]
    while k != 0 and len(loop) <= count:
        loop.append(k)
        k = following[k]
    if len(loop) != count:
        return None
    corners = start[loop]
    points = np.stack([corners % width, corners // width], axis=1)
    step = np.roll(points, -1, axis=0) - points
    corner = np.any(step != np.roll(step, 1, axis=0), axis=1)
    return points[corner]


def instance_polygons(
    instances: np.ndarray,
    classes: Optional[np.ndarray] = None,
    class_names: Optional[Sequence[str]] = None,
) -> list[InstancePolygon]:
    """The outline of every instance of a 2D instance image, in id order.

    Args:
        instances: ``(H, W)`` non-negative integer instance ids (0 = background), each instance
            one face-connected piece.
        classes: ``(H, W)`` class indices; an instance's class is the one at its first pixel
            (instances of :func:`~unetkit.inference.postprocess.label_instances` have one class).
            ``None``: class 1 for all.
        class_names: names by class index (a label map's ``names``), see :func:`class_name`.

    Returns:
        One :class:`InstancePolygon` per id present.

    Raises:
        ConfigError: ``instances`` is not a 2D integer image, ``classes`` has another shape, or an
            instance has several pieces (named by its id).
    """
    instances = np.asarray(instances)
    if instances.ndim != 2 or instances.dtype.kind not in "biu":
        raise ConfigError(
            "instance outlines (ImageJ ROIs, GeoJSON) are made from 2D integer instance images, "
            f"got {instances.dtype} of shape {instances.shape}"
        )
    if instances.size and instances.min() < 0:
        raise ConfigError("instance ids must be non-negative (0 = background)")
    if classes is not None and np.shape(classes) != instances.shape:
        raise ConfigError(
            f"classes shape {np.shape(classes)} differs from instances shape {instances.shape}"
        )
    out = []
    for index, box in enumerate(ndimage.find_objects(instances)):
        if box is None:
            continue
        ident = index + 1
        crop = instances[box] == ident
        points = _trace(crop)
        if points is None:
            pieces = ndimage.label(crop, _FACE)[1]
            raise ConfigError(
                f"instance {ident} has {pieces} separate pieces; outlines need connected "
                "instances (label them with postprocess.label_instances)"
            )
        label = int(np.asarray(classes)[box][crop][0]) if classes is not None else 1
        offset = np.array([box[1].start, box[0].start], np.int64)
        out.append(
            InstancePolygon(
                ident, label, class_name(label, class_names), int(crop.sum()), points + offset
            )
        )
    return out


def rasterize_polygon(points: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Fill a polygon by ImageJ's rule: the pixels whose centre lies inside.

    Args:
        points: ``(n, 2)`` ``(x, y)`` vertices in pixel coordinates (see the module docstring).
        shape: ``(H, W)`` of the image.

    Returns:
        ``(H, W)`` bool.

    Example:
        >>> rasterize_polygon(np.array([[1, 0], [3, 0], [3, 1], [1, 1]]), (2, 4)).astype(int).tolist()
        [[0, 1, 1, 0], [0, 0, 0, 0]]
    """
    from skimage.draw import polygon

    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ConfigError(f"points must be (n, 2) x, y vertices, got shape {points.shape}")
    mask = np.zeros(tuple(shape), bool)
    # skimage tests integer (row, col) points; ImageJ pixel centres sit at +0.5
    rr, cc = polygon(points[:, 1] - 0.5, points[:, 0] - 0.5, mask.shape)
    mask[rr, cc] = True
    return mask


# ------------------------------------------------------------------------------- ImageJ / Fiji
def imagej_rois(polygons: Sequence[InstancePolygon]) -> list:
    """One ``roifile.ImagejRoi`` per outline: a traced polygon (ImageJ's wand-tool type) named
    :attr:`InstancePolygon.name`."""
    from roifile import ROI_TYPE, ImagejRoi

    rois = []
    for p in polygons:
        roi = ImagejRoi.frompoints(p.points.astype(np.int32), name=p.name)
        roi.roitype = ROI_TYPE.TRACED
        # ImageJ's bounds of a polygon through pixel corners: its extreme corners
        roi.right = int(p.points[:, 0].max())
        roi.bottom = int(p.points[:, 1].max())
        rois.append(roi)
    return rois


def write_imagej_rois(path: PathLike, polygons: Sequence[InstancePolygon]) -> Path:
    """Write the outlines as an ImageJ ROI zip (Fiji: ROI Manager > More > Open), atomically.

    No outlines give an empty zip, so a rerun sees the case as done.
    """
    import roifile

    path = Path(path)
    rois = imagej_rois(polygons)
    with atomic_path(path) as tmp:
        roifile.roiwrite(tmp, rois)  # a new file: written as a zip from scratch
    return path


# ------------------------------------------------------------------------------------ QuPath
def feature_collection(polygons: Sequence[InstancePolygon]) -> dict:
    """A GeoJSON ``FeatureCollection`` with one QuPath detection per outline.

    Each feature has a ``Polygon`` geometry (one closed exterior ring, counter-clockwise as RFC 7946
    asks, in pixel coordinates) and ``properties``: ``objectType: "detection"``, ``name``
    (:attr:`InstancePolygon.name`), ``classification: {"name": <class name>}`` and
    ``measurements: {"Area (pixels)": <pixel count>}``.

    Example:
        >>> ring = np.array([[0, 0], [2, 0], [2, 1], [0, 1]])
        >>> feature_collection([InstancePolygon(1, 1, "cell", 2, ring)])["features"][0]["geometry"]
        {'type': 'Polygon', 'coordinates': [[[0, 0], [2, 0], [2, 1], [0, 1], [0, 0]]]}
    """
    features = []
    for p in polygons:
        ring = p.points.tolist()
        ring.append(ring[0])
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "objectType": "detection",
                    "name": p.name,
                    "classification": {"name": p.class_name},
                    "measurements": {AREA_MEASUREMENT: p.area},
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: PathLike, polygons: Sequence[InstancePolygon]) -> Path:
    """Write :func:`feature_collection` to ``path`` (QuPath: File > Import objects), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(feature_collection(polygons), fh)
    return path


__all__ = [
    "AREA_MEASUREMENT",
    "InstancePolygon",
    "class_name",
    "feature_collection",
    "imagej_rois",
    "instance_polygons",
    "rasterize_polygon",
    "trace_outline",
    "write_geojson",
    "write_imagej_rois",
]

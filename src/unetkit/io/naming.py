"""What ``unetkit predict`` names its files, and how ``unetkit evaluate`` finds them again.

For an input ``<stem>.<ext>`` predict writes into its output folder (:func:`prediction_paths`):

* ``<stem><label suffix>``: the label image, in the input's format where that format holds labels
  losslessly (:data:`LABEL_SUFFIX`: JPEG/BMP/GIF → PNG, ``.npy`` → TIFF); the pyramidal labels of a
  pyramidal TIFF predicted band by band are an OME-TIFF, ``<stem>.ome.tif``
  (:data:`PYRAMID_TIFF_SUFFIX`);
* ``<stem>_prob.tif`` or ``<stem>_prob.npz`` (the array :data:`NPZ_KEY`): the probabilities, on
  request;
* ``<stem>_overlay.png``: the prediction drawn on the image, on request;
* ``<stem>_instances.tif``: the instance label image (each object its own id), on request;
* ``<stem>_rois.zip`` (ImageJ ROIs) and ``<stem>.geojson`` (QuPath detections): the objects'
  outlines, on request (2D only).

Evaluate reads a prediction folder by the same names: the probability map of case ``c`` is
:func:`probability_stem` ``(c)``, and the side files beside a case's own prediction are left out
(:func:`is_side_file`), so ``prob_dir`` may be the prediction folder itself. The GeoJSON file
shares the case's stem but is no image, so evaluate never lists it. This module is the one
place those names are written down; both sides import it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Collection, Optional

#: Input suffix → label output suffix (formats that cannot hold labels losslessly become PNG).
LABEL_SUFFIX = {
    ".png": ".png",
    ".bmp": ".png",
    ".jpg": ".png",
    ".jpeg": ".png",
    ".gif": ".png",
    ".tif": ".tif",
    ".tiff": ".tif",
    ".nii": ".nii.gz",
    ".nii.gz": ".nii.gz",
    ".npy": ".tif",
    ".zarr": ".ome.zarr",
    ".ome.zarr": ".ome.zarr",
    ".nrrd": ".nrrd",
    ".nhdr": ".nrrd",  # .nhdr/.mhd keep their data in a second file: written as one file
    ".mha": ".mha",
    ".mhd": ".mha",
    "": ".nrrd",  # a DICOM series folder (a folder has no suffix); unetkit writes no DICOM
}
#: Label suffix of an input suffix not in :data:`LABEL_SUFFIX`.
DEFAULT_LABEL_SUFFIX = ".tif"
#: Label suffix of pyramidal TIFF labels (:func:`~unetkit.io.pyramid.write_pyramidal_ome_tiff`).
PYRAMID_TIFF_SUFFIX = ".ome.tif"
#: Stem suffix of the probability map: ``<stem>_prob.tif`` / ``<stem>_prob.npz``.
PROBABILITY_SUFFIX = "_prob"
#: Stem suffix of the overlay picture: ``<stem>_overlay.png``.
OVERLAY_SUFFIX = "_overlay"
#: Stem suffix of the instance label image: ``<stem>_instances.tif``.
INSTANCES_SUFFIX = "_instances"
#: Stem suffix of the ImageJ ROI zip: ``<stem>_rois.zip``.
ROIS_SUFFIX = "_rois"
#: Suffix of the QuPath GeoJSON file: ``<stem>.geojson`` (no stem suffix).
GEOJSON_SUFFIX = ".geojson"
#: The side files predict writes beside a label image (evaluate does not take them for predictions).
SIDE_SUFFIXES = (PROBABILITY_SUFFIX, OVERLAY_SUFFIX, INSTANCES_SUFFIX, ROIS_SUFFIX)
#: The array name of the probabilities in a ``.npz`` file.
NPZ_KEY = "probabilities"


def label_suffix(input_suffix: str) -> str:
    """The suffix of the label image predicted from an input with ``input_suffix`` (``".jpg"`` → ``".png"``)."""
    return LABEL_SUFFIX.get(input_suffix.lower(), DEFAULT_LABEL_SUFFIX)


def probability_stem(stem: str) -> str:
    """``"22"`` → ``"22_prob"``: the stem of the probability map of case ``stem``."""
    return stem + PROBABILITY_SUFFIX


def overlay_stem(stem: str) -> str:
    """``"22"`` → ``"22_overlay"``: the stem of the overlay picture of case ``stem``."""
    return stem + OVERLAY_SUFFIX


def prediction_paths(
    out_dir: Path,
    stem: str,
    input_suffix: str,
    probabilities: Optional[str] = None,
    overlay: bool = False,
    instances: bool = False,
    rois: bool = False,
    geojson: bool = False,
    pyramidal: bool = False,
) -> dict[str, Path]:
    """The files one input produces: ``labels`` always, the others on request.

    Args:
        out_dir: the output folder.
        stem: the input's case id (its file name without the suffix).
        input_suffix: the input's suffix (``".png"``, ``".nii.gz"`` …), see :func:`label_suffix`.
        probabilities: ``"tiff"`` → ``<stem>_prob.tif``; ``"npz"`` (any other true value) →
            ``<stem>_prob.npz``; ``None`` → none.
        overlay: also ``<stem>_overlay.png``.
        instances: also ``<stem>_instances.tif``.
        rois: also ``<stem>_rois.zip``.
        geojson: also ``<stem>.geojson``.
        pyramidal: the labels are a pyramid: a TIFF label image becomes ``<stem>.ome.tif``
            (OME-Zarr labels hold their levels under the same name).

    Returns:
        ``{"labels": path, "probabilities": path, "overlay": path, "instances": path, "rois": path,
        "geojson": path}`` (the keys asked for).

    Example:
        >>> sorted(p.name for p in prediction_paths(Path("out"), "22", ".jpg", "npz", True).values())
        ['22.png', '22_overlay.png', '22_prob.npz']
    """
    out_dir = Path(out_dir)
    suffix = label_suffix(input_suffix)
    if pyramidal and suffix == ".tif":
        suffix = PYRAMID_TIFF_SUFFIX
    paths = {"labels": out_dir / f"{stem}{suffix}"}
    if probabilities:
        suffix = ".tif" if probabilities == "tiff" else ".npz"
        paths["probabilities"] = out_dir / f"{probability_stem(stem)}{suffix}"
    if overlay:
        paths["overlay"] = out_dir / f"{overlay_stem(stem)}.png"
    if instances:
        paths["instances"] = out_dir / f"{stem}{INSTANCES_SUFFIX}.tif"
    if rois:
        paths["rois"] = out_dir / f"{stem}{ROIS_SUFFIX}.zip"
    if geojson:
        paths["geojson"] = out_dir / f"{stem}{GEOJSON_SUFFIX}"
    return paths


def is_side_file(stem: str, cases: Collection[str]) -> bool:
    """Whether ``stem`` names a side file of one of ``cases`` rather than a prediction of its own:
    ``<case><side suffix>`` where ``<case>`` is in ``cases`` (the cases that have their own
    prediction file) and the suffix is one :func:`prediction_paths` writes (``_prob``,
    ``_overlay``, ``_instances``, ``_rois``: :data:`SIDE_SUFFIXES`). Any other ``<case>_…`` file
    (``img_2`` beside ``img``, ``a_pred`` beside ``a``) is a prediction, so one without a truth
    mask is named, not silently left out. A stem that is itself a case is never a side file.

    Example:
        >>> [is_side_file(s, {"22", "a_b"}) for s in ("22_prob", "22", "a_b", "a_b_overlay", "23_prob", "22_2")]
        [True, False, False, True, False, False]
    """
    if stem in cases:
        return False
    return any(stem.endswith(s) and stem[: -len(s)] in cases for s in SIDE_SUFFIXES)


__all__ = [
    "DEFAULT_LABEL_SUFFIX",
    "GEOJSON_SUFFIX",
    "INSTANCES_SUFFIX",
    "LABEL_SUFFIX",
    "NPZ_KEY",
    "OVERLAY_SUFFIX",
    "PROBABILITY_SUFFIX",
    "PYRAMID_TIFF_SUFFIX",
    "ROIS_SUFFIX",
    "SIDE_SUFFIXES",
    "is_side_file",
    "label_suffix",
    "overlay_stem",
    "prediction_paths",
    "probability_stem",
]

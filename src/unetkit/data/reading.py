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
from ..io.itk import geometry_from_affine
from ..io.readers import ImageMeta, read_image
from .discovery import Case, is_dir_alias
from .labels import LabelMap, read_mask


def is_grey_as_colour(image: np.ndarray) -> bool:
    """Whether a 2D ``(3|4, H, W)`` image is grey saved as RGB(A): its red, green and blue planes
    are equal (a one-channel model reads its first plane, as ``predict`` does). A volume's channels
    are never colours: three equal volumes of a 4D NIfTI are three time points or echoes."""
    image = np.asarray(image)
    return (
        image.ndim == 3
        and image.shape[0] in (3, 4)
        and all(np.array_equal(image[0], image[c]) for c in (1, 2))
    )


def require_finite(image: np.ndarray, path) -> None:
    """Refuse an image holding NaN or infinite values (float images only), naming the file and the
    counts: a network turns them into NaN logits, i.e. a silently wrong prediction or loss."""
    if image.dtype.kind not in "fc":
        return
    finite = np.isfinite(image)
    if not finite.all():
        nan = int(np.isnan(image).sum())
        raise DataError(
            f"image contains NaN or infinite values ({nan} NaN, {int((~finite).sum()) - nan} infinite); "
            "replace them (e.g. numpy.nan_to_num) or mask them out (unetkit check-data lists such "
            "files)",
            path,
        )


def read_case_image(case: Case) -> tuple[np.ndarray, ImageMeta]:
    """All channel files of a case stacked to ``(C, *spatial)`` (their native dtype kept)."""
    arrays, metas = zip(*(read_image(p) for p in case.images))
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"channel files have different sizes {sorted(shapes)}", case.images[0])
    problem = channel_geometry_problem(case.images, metas)
    if problem:
        raise DataError(*problem)
    image = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
    return image, metas[0]


def channel_geometry_problem(paths: Sequence, metas: Sequence) -> Optional[tuple[str, Path]]:
    """``(message, file)`` where a volume's channel files (nnU-Net's ``CASE_0000``, ``_0001`` …)
    do not lie in one place (another voxel size, origin or direction than the first channel's:
    the same voxel indices would be different anatomy), else ``None``."""
    for path, meta in zip(paths[1:], metas[1:]):
        problem = geometry_problem(
            metas[0], meta, Path(paths[0]).name, what="channel file", of="first channel"
        )
        if problem:
            return problem, Path(path)
    return None


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
    case: Case, label_map: LabelMap, spatial: Sequence[int], image_meta=None
) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """The case's mask as ``(class indices, instance ids or None)`` (see
    :func:`~unetkit.data.labels.read_mask`), checked to have its image's ``spatial`` size.

    Instance ids come from the mask itself (instance masks) or, for class masks, from a sibling
    ``instances/`` folder (:data:`INSTANCE_DIR_NAMES`): binary masks merge touching objects into
    one component, their instance ids keep them apart (for the fingerprint's object counts, the
    border weight map, carving separation gaps and scoring objects on validation). Ids on pixels
    the mask calls background are dropped.

    ``image_meta`` (the image's, as read): a volume's mask must lie where its image lies
    (:func:`geometry_problem`).

    Raises:
        DataError: unreadable mask or instance file, values outside the label map, non-integer
            ids, a size that differs from the image's, or a volume's mask whose spacing, origin
            or direction differ from its image's (naming the file).
    """
    mask, instances, mask_meta = read_mask(case.mask, label_map)
    _check_size(mask, spatial, case.mask, case)
    problem = geometry_problem(image_meta, mask_meta, case.images[0].name)
    if problem:
        raise DataError(problem, case.mask)
    source = case_instance_file(case) if instances is None else None
    if source is not None:
        _, instances, _ = read_mask(source, kind="instances")
        _check_size(instances, spatial, source, case)
        instances[mask <= 0] = 0
    return mask, instances


#: a volume's mask lies where its image lies when their voxel sizes agree to this share, their
#: origins to this share of a voxel and their direction cosines to this much (headers written as
#: float32 by one tool and float64 by another still agree; a resampled or shifted mask does not)
GEOMETRY_TOLERANCE = 1e-3


def geometry_problem(
    image_meta, mask_meta, image_name: str, what: str = "mask", of: str = "image"
) -> Optional[str]:
    """What is wrong, in one line, when a 3D mask's header puts it elsewhere in the world than its
    image's (another voxel size, origin or direction: a header rewritten by another tool, or a
    mask flipped or shifted), else ``None``. Checked only where both files state the value (NRRD,
    MetaImage and DICOM state all three, NIfTI its affine: :func:`world_geometry`), and only for
    volumes (2D images and masks often come from tools that keep no calibration). ``what`` and
    ``of`` name the two files in the message (``evaluate`` compares a prediction with its truth)."""
    if image_meta is None or mask_meta is None:
        return None
    spacing, other = getattr(image_meta, "spacing", None), getattr(mask_meta, "spacing", None)
    if spacing is None or len(spacing) != 3 or (other is not None and len(other) != 3):
        return None  # a 2D file beside a volume: the size check says so
    tol = GEOMETRY_TOLERANCE
    fix = f"its size matches, so fix its header to the {of}'s (or resample it onto the {of})"
    if other is not None and not np.allclose(other, spacing, rtol=tol, atol=0):
        return (
            f"{what} voxel size {_shown(other)} differs from its {of}'s {_shown(spacing)} "
            f"({image_name}): {fix}"
        )
    (origin, direction), (o2, d2) = world_geometry(image_meta), world_geometry(mask_meta)
    if (
        origin is not None
        and o2 is not None
        and len(origin) == len(o2)
        and not np.allclose(o2, origin, rtol=0, atol=tol * max(spacing))
    ):
        return (
            f"{what} origin {_shown(o2)} differs from its {of}'s {_shown(origin)} (x×y×z in "
            f"ITK's LPS mm; {image_name}): {fix}"
        )
    if direction is not None and d2 is not None:
        a, b = np.asarray(direction, float), np.asarray(d2, float)
        if a.shape == b.shape and not np.allclose(a, b, rtol=0, atol=tol):
            return f"{what} direction differs from its {of}'s ({image_name}): {fix}"
    return None


def world_geometry(meta) -> tuple[Optional[tuple], Optional[list]]:
    """A volume's ``(origin, direction)`` in ITK's terms (LPS, direction 3×3 rows): as the file
    states them (NRRD, MetaImage, DICOM), or from a NIfTI affine, so that a NIfTI mask flipped or
    shifted against its image is caught as an NRRD one is, and a NIfTI mask beside an NRRD image
    is compared in one frame. ``(None, None)`` where the file states neither."""
    origin, direction = getattr(meta, "origin", None), getattr(meta, "direction", None)
    affine = getattr(meta, "affine", None)
    if tuple(getattr(meta, "nifti_codes", None) or (1, 1)) == (0, 0):
        return None, None  # no qform or sform: nibabel's affine is made up (centred), not stated
    if origin is None and direction is None and affine is not None and np.shape(affine) == (4, 4):
        origin, direction, _ = geometry_from_affine(affine)
    return origin, direction


def odd_voxel_size(stated: Sequence[tuple]) -> Optional[tuple[Path, str]]:
    """The case whose voxel size is far from the others' and what is wrong, in one line, else
    ``None``. ``stated``: ``(path, spacing, unit)`` of every case that states a voxel size.

    A case more than :data:`~unetkit.io.meta.SPACING_RATIO_LIMIT` × finer or coarser than the
    median of all on some axis (each converted to the most common unit where both are known) is
    almost always a header in another unit (metres for mm) or a lost calibration: resampled to the
    median it would become one voxel, or millions, and the plan would fit the patch to it. Of two
    cases (whose median is their mean) neither is blamed: the message names both."""
    from collections import Counter

    from ..io.meta import convert_spacing, far_off, spacing_ratio

    if len(stated) < 2:
        return None
    units = Counter(u for _, _, u in stated if u)
    unit = units.most_common(1)[0][0] if units else None
    sizes = [convert_spacing(tuple(s), u, unit) for _, s, u in stated]
    if len({len(s) for s in sizes}) > 1:
        return None  # 2D beside 3D: refused elsewhere
    shown = f" {unit}" if unit else ""
    if len(stated) == 2:  # the median of two is their mean: neither is known to be the odd one
        off = far_off(spacing_ratio(sizes[1], sizes[0]))
        if off is None:
            return None
        return stated[1][0], (
            f"voxel size {_shown(sizes[1])}{shown} is {off} than {_shown(sizes[0])}{shown} of "
            f"the other case ({Path(str(stated[0][0])).name}) on some axis: most likely another "
            "unit or a lost calibration in one of their headers; correct it, or leave a case out"
        )
    median = np.median(np.asarray(sizes, dtype=float), axis=0)
    ratios = [spacing_ratio(s, median) for s in sizes]
    worst = max(range(len(ratios)), key=lambda i: max(ratios[i], 1 / ratios[i]))
    off = far_off(ratios[worst])
    if off is None:
        return None
    return stated[worst][0], (
        f"voxel size {_shown(sizes[worst])}{shown} is {off} than the median of the "
        f"{len(stated)} cases ({_shown(median)}{shown}) on some axis: most likely another unit "
        "or a lost calibration in its header; correct it, or leave the case out"
    )


def _shown(values) -> str:
    return "×".join(f"{float(v):g}" for v in values)


#: a stack read as a volume with at most this many planes may be channels stored as pages
STACK_AS_CHANNELS_MAX = 4


def is_tiff(path) -> bool:
    """Whether ``path`` names a TIFF file (``.tif``/``.tiff``, any case; ``None``: no)."""
    return path is not None and Path(str(path)).suffix.lower() in (".tif", ".tiff")


def pages_as_channels_hint(image_shape: Sequence[int], image_path) -> str:
    """The fix when a 2D mask or model meets an image read as a short stack (``(D, H, W)``, D ≤
    :data:`STACK_AS_CHANNELS_MAX`): a TIFF whose pages hold channels but whose metadata does not
    say so (``tifffile.imwrite(path, array)`` of a ``(2, H, W)`` array) is read as a z-stack,
    as ImageJ reads it too; else ``""``."""
    if len(image_shape) != 3 or not 1 < image_shape[0] <= STACK_AS_CHANNELS_MAX:
        return ""
    if not is_tiff(image_path):
        return ""
    return (
        f"; the TIFF's {image_shape[0]} pages were read as z-slices (its metadata names no "
        "channel axis): if they are channels, save it with "
        "tifffile.imwrite(path, array, metadata={'axes': 'CYX'}) or as an ImageJ hyperstack "
        "with channels"
    )


def channels_last_hint(image_shape: Sequence[int], image_path) -> str:
    """The fix when a 2D image saved channels-last without axes (``(H, W, C)``, C ≤
    :data:`STACK_AS_CHANNELS_MAX`) was read as ``H`` slices of ``W × C`` (TIFF pages of one row
    set each, or a ``.npy`` array); else ``""``."""
    if len(image_shape) != 3 or not 1 < image_shape[-1] <= STACK_AS_CHANNELS_MAX:
        return ""
    h, w, c = image_shape
    return (
        f"; the image was read as {h} slices of {w}×{c}: a {h}×{w} image of {c} channels saved "
        "channels-last? save it channels-first ((C, H, W): numpy.moveaxis(array, -1, 0)) or "
        "with its axes named (tifffile.imwrite(path, array, metadata={'axes': 'YXC'}))"
    )


def slices_as_channels_hint(channels: int, path) -> str:
    """The fix when a TIFF was read as ``channels`` > :data:`STACK_AS_CHANNELS_MAX` channels of one
    plane where a z-stack was meant (an ImageJ file whose metadata calls its slices channels, as
    ``tifffile.imwrite(path, stack, imagej=True)`` without axes writes it); else ``""``."""
    if channels <= STACK_AS_CHANNELS_MAX or not is_tiff(path):
        return ""
    return (
        f"; the TIFF's metadata names {channels} channels: if they are z-slices, save it with "
        "axes ZYX (tifffile.imwrite(path, stack, imagej=True, metadata={'axes': 'ZYX'}), or in "
        "Fiji Image ▸ Properties: slices, not channels)"
    )


def _check_size(arr: np.ndarray, spatial: Sequence[int], path: Path, case: Case) -> None:
    if arr.shape != tuple(spatial):
        hint = (
            pages_as_channels_hint(spatial, case.images[0])
            if tuple(spatial[1:]) == arr.shape
            else channels_last_hint(spatial, case.images[0])
            if tuple(spatial[:2]) == arr.shape
            else ": it must cover its image pixel for pixel; crop it, or resample it onto the "
            "image (nearest-neighbour for masks)"
        )
        raise DataError(
            f"{'mask' if path == case.mask else 'instance file'} size {arr.shape} differs from "
            f"image size {tuple(spatial)} ({case.images[0].name}){hint}",
            path,
        )


def same_layout(images: Iterable[tuple]) -> Iterator[np.ndarray]:
    """Pass ``(path, (C, *spatial) array)`` pairs on as arrays; a channel count or dimensionality
    that differs from the first image's is a DataError naming both files. Where one of the two is
    grey stored as RGB(A) beside a grey one, that is the file to convert (whichever came first);
    else neither is known to be the odd one, and ``check-data`` counts them all."""
    first = None
    for path, image in images:
        if first is None:
            first = (path, image.shape[0], image.ndim - 1, is_grey_as_colour(image))
        elif image.shape[0] != first[1]:
            if first[3] and image.shape[0] == 1:
                raise DataError(
                    f"holds grey stored as RGB(A) ({first[1]} equal channels), while {path} and "
                    "maybe others are grey (1 channel): save it as a grey image",
                    first[0],
                )
            if first[1] == 1 and is_grey_as_colour(image):
                raise DataError(
                    f"holds grey stored as RGB(A) ({image.shape[0]} equal channels), while "
                    f"{first[0]} and maybe others are grey (1 channel): save it as a grey image",
                    path,
                )
            why = (
                "a 4D file's volumes are read as channels: split it, or give every case the same "
                "channels"
                if image.ndim == 4
                else "grey and RGB mixed?"
            )
            raise DataError(
                f"different channel counts: {image.shape[0]} here, {first[1]} in {first[0]}; all "
                f"images need the same count ({why}): 'unetkit check-data' counts them, convert "
                "the odd ones",
                path,
            )
        elif image.ndim - 1 != first[2]:
            raise DataError(
                f"a {image.ndim - 1}D image, while {first[0]} is {first[2]}D: 2D and 3D images are "
                f"mixed; keep the {first[2]}D ones (move the others out of the folder)",
                path,
            )
        yield image

"""Predict files and folders: the Python function behind ``unetkit predict``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np

from ..errors import ConfigError, DataError
from ..io.lazy import is_zarr_path, level_count, open_lazy
from ..io.meta import convert_spacing
from ..io.naming import prediction_paths
from ..io.orientation import reorient, restore
from .large import LARGE_PIXELS, VOLUME_SHARE, check_band_prediction, predict_large
from .outputs import (
    TiffBandSink,
    decode_labels,
    write_labels,
    write_overlay,
    write_probabilities,
)
from .postprocess import INSTANCE_METHODS, compact_argmax, instance_image, label_instances
from .predictor import check_image, spacing_for_model


@dataclass
class PredictedFile:
    """One input and what became of it: ``status`` is ``written`` or ``skipped`` (outputs existed).
    ``spacing``: the voxel size it was predicted at, in the model's unit (``None``: it states none,
    or it was not read here: skipped, or predicted band by band)."""

    case_id: str
    inputs: list
    outputs: dict
    status: str
    mode: str = "in-memory"
    spacing: Optional[tuple] = None


def collect_inputs(paths: Sequence[Union[str, Path]], channels: Optional[int] = None):
    """Files and folders → :class:`~unetkit.data.Case` list (no masks needed).

    A folder with ``images/`` (or nnU-Net ``imagesTr``/``imagesTs``), or one of case folders
    (``case/images/<image>``), is read as a dataset (multi-file channels grouped); a zarr store or a
    DICOM series folder is one image; any other folder contributes every image file in it, its
    nnU-Net channel files grouped into cases where the names say so (:func:`group_channel_files`,
    for a model of ``channels`` input channels), as are the files given one by one. Stems must be
    unique.
    """
    from ..data.discovery import (
        IMAGE_DIR_NAMES,
        Case,
        alias_dirs,
        find_cases,
        is_case_folder_dataset,
    )
    from ..io.itk import is_dicom_folder
    from ..io.readers import list_images, split_suffix

    cases: list = []
    given: dict = {}  # files named one by one: grouped as a folder's are, where the names say so
    for p in map(Path, paths):
        if p.is_dir() and (is_zarr_path(p) or is_dicom_folder(p)):  # one image (zarr, DICOM)
            cases.append(Case(split_suffix(p)[0], [p]))
        elif p.is_dir():
            dataset = bool(alias_dirs(p, IMAGE_DIR_NAMES)) or any(
                (p / d).is_dir() for d in ("imagesTr", "imagesTs")
            )
            if dataset or is_case_folder_dataset(p):  # case folders: case/images/<one image>
                cases += find_cases(p, require_masks=False)
            else:
                files = list_images(p).by_stem  # duplicate stems are refused below, naming both
                if not files:
                    raise DataError("no image files in this folder", p)
                grouped = group_channel_files(files, channels)
                if grouped is not None:
                    cases += [Case(case_id, images) for case_id, images in grouped.items()]
                else:
                    cases += [Case(stem, [f]) for stem, paths in files.items() for f in paths]
        elif p.is_file():
            given.setdefault(split_suffix(p)[0], []).append(p)
            cases.append(p)  # a place held in input order, filled below
        else:
            raise DataError("input not found", p)
    grouped = group_channel_files(given, channels)
    if grouped is not None:  # each case where its first channel file was given
        firsts = {images[0]: Case(case_id, images) for case_id, images in grouped.items()}
        cases = [firsts.get(c) if isinstance(c, Path) else c for c in cases]
        cases = [c for c in cases if c is not None]
    else:
        cases = [Case(split_suffix(c)[0], [c]) if isinstance(c, Path) else c for c in cases]
    seen: dict = {}
    for c in cases:
        if c.case_id in seen:
            raise DataError(
                f"two inputs are named {c.case_id!r} (also {seen[c.case_id]}); outputs would collide",
                c.images[0],
            )
        seen[c.case_id] = c.images[0]
    return cases


def group_channel_files(files: dict, channels: Optional[int]) -> Optional[dict]:
    """A plain folder of nnU-Net-named files (``CASE_0000.nii.gz``, ``CASE_0001.nii.gz``, …: one
    file per channel, as nnU-Net's own ``imagesTs`` and its ``predict -i`` take them) → ``{case:
    [channel files in order]}``, or ``None`` where the names do not say so.

    Grouped only when every file name ends in ``_NNNN`` and every case has exactly the channels
    ``0000`` … of the model's count: a folder of numbered frames (``frame_0000.png``,
    ``frame_0001.png``, …) for a 1-channel model stays one image per file. The case id drops the
    suffix, so outputs are named as nnU-Net names them (``CASE.nii.gz``)."""
    from ..data.discovery import channel_suffix

    if not channels or not files or any(len(paths) != 1 for paths in files.values()):
        return None
    per_case: dict = {}
    for stem, (path,) in files.items():
        split = channel_suffix(stem)
        if split is None:
            return None
        case_id, channel = split
        per_case.setdefault(case_id, {})[channel] = path
    if any(sorted(ch) != list(range(channels)) for ch in per_case.values()):
        _check_channel_count(per_case, channels)
        return None
    return {case_id: [ch[i] for i in range(channels)] for case_id, ch in per_case.items()}


#: at most this many ``_NNNN`` files per case read as channels of one image (more are frames)
MAX_CHANNEL_FILES = 16


#: the formats nnU-Net's channel files come in (one volume per channel); numbered 2D files are
#: as often the frames of a series, each its own image
_VOLUME_FORMATS = ("nifti", "nrrd", "metaimage")


def _check_channel_count(per_case: dict, channels: int) -> None:
    """Refuse nnU-Net channel files of another channel count than the model's: volumes, every one
    of two or more cases holding the files ``_0000`` … ``_000k`` (k ≤ :data:`MAX_CHANNEL_FILES`),
    which would otherwise be predicted one channel at a time, as separate images. Numbered 2D files
    (``pos1_0000.tif`` … of a time series) stay one image each."""
    from ..io.readers import FORMATS, split_suffix

    sets = [sorted(ch) for ch in per_case.values()]
    k = len(sets[0])
    if len(sets) < 2 or not 1 < k <= MAX_CHANNEL_FILES or any(s != list(range(k)) for s in sets):
        return
    files = [path for ch in per_case.values() for path in ch.values()]
    if not all(FORMATS.get(split_suffix(path)[1]) in _VOLUME_FORMATS for path in files):
        return
    first = sorted(per_case)[0]
    raise DataError(
        f"these are nnU-Net channel files, {k} per case ({first}_0000 … {first}_{k - 1:04d}), "
        f"but the model takes {channels} channel(s): predict with a model trained on {k}-channel "
        "images (or give only the channel files it was trained on)",
        per_case[first][0],
    )


def _is_large(path: Path, level: int = 0) -> bool:
    """More than :data:`LARGE_PIXELS` pixels (a volume: a :data:`VOLUME_SHARE`-th of it) in a file
    that can be read region by region (at pyramid ``level``)."""
    if not is_zarr_path(path) and path.suffix.lower() not in (".npy", ".tif", ".tiff"):
        return False
    try:
        arr = open_lazy(path, level)
    except DataError:
        return False
    try:
        limit = LARGE_PIXELS if len(arr.shape) <= 3 else LARGE_PIXELS // VOLUME_SHARE
        return int(np.prod(arr.shape[1:])) > limit
    finally:
        if hasattr(arr, "close") and not isinstance(arr, np.ndarray):
            arr.close()


def check_channels(predictor, source, path: Path) -> None:
    """A lazily read image has the model's channel count, or a one-line :class:`DataError`."""
    in_ch = getattr(predictor.model, "in_channels", source.shape[0])
    if source.shape[0] != in_ch:
        raise DataError(
            f"the model expects {in_ch} channel(s), the image has {source.shape[0]} (shape "
            f"{tuple(source.shape)}); convert it or use a model trained on such images",
            path,
        )


def is_blockwise(case, probabilities=None, overlay=False, instances=None, level=0, **_) -> bool:
    """A case a cluster predicts by blocks of rows: one huge image (zarr, TIFF or ``.npy``) whose
    only output is its labels (filled by several workers at once in an OME-Zarr store, then
    copied into a TIFF for TIFF and ``.npy`` inputs)."""
    first = case.images[0]
    return (
        len(case.images) == 1
        and _is_large(first, level)
        and not (probabilities or overlay or instances)
    )


def band_labels_path(out_dir: Path, case, level: int = 0) -> Path:
    """Where the labels of a huge image predicted band by band (or by blocks) go: an OME-Zarr store
    for a zarr input, else a TIFF (``<stem>.ome.tif`` with a pyramidal input's levels)."""
    from ..io.readers import split_suffix

    first = case.images[0]
    levels = max(1, level_count(first) - level)
    path = prediction_paths(out_dir, case.case_id, split_suffix(first)[1], pyramidal=levels > 1)[
        "labels"
    ]
    if not path.name.lower().endswith((".zarr", ".tif")):
        path = path.with_suffix(".tif")
    return path


def check_level(cases, level: int) -> None:
    """Every case can be read at pyramid ``level``, or one line naming the first that cannot;
    level 0 (full resolution) is every image's."""
    if not isinstance(level, int) or isinstance(level, bool) or level < 0:
        raise ConfigError(f"level must be an integer ≥ 0 (0 = full resolution), got {level!r}")
    if level == 0:
        return
    for case in cases:
        path = case.images[0]
        if len(case.images) > 1 or not (
            is_zarr_path(path) or path.suffix.lower() in (".tif", ".tiff")
        ):
            raise DataError(
                f"has no pyramid levels; --level {level} needs pyramidal TIFF/OME-TIFF or "
                "OME-Zarr inputs (predict it without --level)",
                path,
            )
        source = open_lazy(path, level)  # a level the image lacks: one line naming its levels
        if hasattr(source, "close") and not isinstance(source, np.ndarray):
            source.close()


def predict_files(
    predictor,
    inputs: Sequence[Union[str, Path]],
    out_dir: Union[str, Path],
    probabilities: Optional[str] = None,
    overlay: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    *,
    instances: Optional[str] = None,
    rois: bool = False,
    geojson: bool = False,
    part: Optional[tuple] = None,
    level: int = 0,
    model_id: Optional[str] = None,
    say: Optional[Callable[[str], None]] = None,
) -> list[PredictedFile]:
    """Predict every input and write its outputs to ``out_dir``.

    Args:
        predictor: a :class:`~unetkit.inference.Predictor` (usually ``from_checkpoint``).
        inputs: image files and/or folders (one path alone is taken as a list of one).
        probabilities: ``"tiff"`` (float32, calibrated) or ``"npz"`` to also write probability maps.
        overlay: also write ``<stem>_overlay.png`` (prediction outlined on the image).
        overwrite: recompute inputs whose outputs exist (default: skip them, so a rerun resumes).
        instances: ``"components"`` or ``"watershed"`` (:data:`~unetkit.inference.postprocess.
            INSTANCE_METHODS`): also write ``<stem>_instances.tif``, each object of the written
            labels numbered (:func:`~unetkit.inference.postprocess.label_instances`).
        rois: also write the objects' outlines as an ImageJ ROI zip, ``<stem>_rois.zip`` (2D).
        geojson: also write them as QuPath detections, ``<stem>.geojson`` (2D). ``rois`` and
            ``geojson`` make instances (``"components"`` unless ``instances`` says otherwise).
        part: ``(i, k)``: predict only the ``i``-th of ``k`` disjoint shares of the cases
            (:func:`plan_cases`).
        level: pyramid level to predict of pyramidal TIFF/OME-TIFF and OME-Zarr inputs (0 = full
            resolution); the outputs have that level's size and pixel size.
        model_id: what identifies the model (:func:`~unetkit.run_folder.model_digest` of its
            files); kept in ``out_dir`` (:data:`MODEL_RECORD`), so that a rerun with another model
            does not skip this one's outputs as done (:func:`check_model_record`). ``None`` keeps
            no record.
        say: receives the lines worth telling before predicting (inputs resampled to the model's
            voxel size, inputs that state none: :func:`check_inputs`); ``None`` keeps quiet.

    Returns:
        One :class:`PredictedFile` per input. Labels are written in the label map's values
        (e.g. 0/255), in the input's format (JPEG/BMP → PNG; .npy → TIFF), after the
        post-processing validation chose (``predictor.postprocess``, read from the checkpoint:
        ``predictor.postprocess.apply`` of the argmax; the overlay shows the same labels, the
        probabilities are the network's). Images predicted band by band (``mode`` ``band-by-band``)
        get no post-processing: its steps need whole objects, which span bands.

    Raises:
        ConfigError: ``instances`` is no method, or ``rois``/``geojson`` with a 3D model; raised
            before anything is predicted.
        DataError: an input is missing or unusable (wrong channel count or dimensionality,
            NaN/inf values; see :func:`check_image`), naming the file: every input is read and
            checked before the first output is written (:func:`check_inputs`); ``out_dir`` holds
            another model's outputs that would be skipped (:func:`check_model_record`). With instance outputs, an image that would be
            predicted band by band is refused before anything is predicted: its objects span bands,
            and an output left out would make every rerun predict the image again.
        OutputError: ``out_dir`` or an output file cannot be written (a file in the way, no
            permission, disk full). A folder this call created is removed again if it is empty.

    The temporary files a killed earlier run left in ``out_dir`` (``.<name>.<id>.tmp<suffix>``) are
    deleted first.
    """
    from tqdm import tqdm

    from ..utils import output_folder, progress_bars_off, remove_stale_temp_files

    out_dir = Path(out_dir)
    cases, options = plan_cases(
        predictor,
        inputs,
        probabilities=probabilities,
        overlay=overlay,
        overwrite=overwrite,
        instances=instances,
        rois=rois,
        geojson=geojson,
        part=part,
        level=level,
    )
    check_model_record(out_dir, model_id, cases, options)
    check_outputs_apart(out_dir, cases, options)
    for line in check_inputs(predictor, cases, out_dir, options):
        if say is not None:
            say(line)
    results = []
    with output_folder(out_dir):
        remove_stale_temp_files(out_dir)
        # a folder without a record gets it with its first output (so a run killed later leaves
        # it); one holding another model's record gets this one's once every output is this
        # model's (a run killed before that keeps the old note, and its rerun asks for
        # --overwrite). A run that only skipped outputs of an unknown model writes no record.
        recorded = (out_dir / MODEL_RECORD).is_file()
        bar = tqdm(cases, desc="predict", unit="image", disable=progress_bars_off(progress))
        for case in bar:
            bar.set_postfix_str(case.case_id)
            results.append(predict_case(predictor, case, out_dir, **options))
            if not recorded and results[-1].status == "written":
                if all(r.status == "written" for r in results):  # no older output beside it
                    write_model_record(out_dir, model_id)
                recorded = True
        if (out_dir / MODEL_RECORD).is_file():
            write_model_record(out_dir, model_id)
    return results


def plan_cases(
    predictor,
    inputs: Sequence[Union[str, Path]],
    *,
    probabilities: Optional[str] = None,
    overlay: bool = False,
    overwrite: bool = False,
    instances: Optional[str] = None,
    rois: bool = False,
    geojson: bool = False,
    part: Optional[tuple] = None,
    level: int = 0,
) -> tuple[list, dict]:
    """The cases to predict (this ``part``'s share) and the keyword arguments of
    :func:`predict_case` for each (the instance method resolved), after every check that can fail
    before anything is predicted; the outputs are :func:`predict_files`'s.

    ``part = (i, k)``: the ``i``-th of ``k`` disjoint shares that together hold every case (every
    ``k``-th case from the ``i``-th), for splitting one job over scheduler array tasks.
    """
    method = _instance_method(predictor, instances, rois, geojson)
    if level and (rois or geojson):
        # outlines are in the pixels predicted; Fiji and QuPath place them on the full resolution
        raise ConfigError(
            "ImageJ ROIs and GeoJSON outline objects in the pixels of the level predicted, which "
            "Fiji and QuPath would lay on the full-resolution image at that level's smaller "
            f"scale: drop --rois/--geojson with --level {level} (the instance image keeps that "
            "level's pixel size), or predict the full resolution"
        )
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]  # one folder or file, not a sequence of characters
    cases = collect_inputs(inputs, getattr(predictor.model, "in_channels", None))
    if part is not None:
        i, k = part
        if not (isinstance(k, int) and k >= 1 and isinstance(i, int) and 0 <= i < k):
            raise ConfigError(
                f"part {i} of {k}: the part id must be 0…{max(k, 1) - 1} and the number of parts ≥ 1"
            )
        cases = cases[i::k]
    check_level(cases, level)
    if method is not None:
        for case in cases:
            if len(case.images) == 1 and _is_large(case.images[0], level):
                raise DataError(
                    f"is predicted band by band (over {LARGE_PIXELS // 2**20} Mpx) and objects span "
                    "bands, so instances, ROIs and GeoJSON cannot be made; crop it into smaller "
                    "images or drop --instances/--rois/--geojson",
                    case.images[0],
                )
    options = dict(
        probabilities=probabilities,
        overlay=overlay,
        overwrite=overwrite,
        instances=method,
        rois=rois,
        geojson=geojson,
        level=level,
    )
    return cases, options


def _case_outputs(
    case,
    out_dir: Path,
    probabilities: Optional[str] = None,
    overlay: bool = False,
    instances: Optional[str] = None,
    rois: bool = False,
    geojson: bool = False,
    level: int = 0,
) -> tuple[dict, bool, int]:
    """The output paths of ``case``, whether it is predicted band by band, and the pyramid levels
    of its labels (a pyramid's labels predicted band by band are a pyramid too)."""
    from ..io.readers import split_suffix

    first = case.images[0]
    band = len(case.images) == 1 and _is_large(first, level)
    levels = max(1, level_count(first) - level) if band else 1
    paths = prediction_paths(
        out_dir,
        case.case_id,
        split_suffix(first)[1],
        probabilities,
        overlay,
        instances=instances is not None,
        rois=rois,
        geojson=geojson,
        pyramidal=levels > 1,
    )
    return paths, band, levels


def _outputs_with(case, out_dir: Path, options: dict) -> tuple[dict, bool, int]:
    """:func:`_case_outputs` with :func:`plan_cases`' options."""
    return _case_outputs(
        case,
        out_dir,
        options.get("probabilities"),
        options.get("overlay", False),
        options.get("instances"),
        options.get("rois", False),
        options.get("geojson", False),
        options.get("level", 0),
    )


def _done(paths: dict) -> bool:
    return all(p.exists() for p in paths.values())


def check_inputs(predictor, cases: list, out_dir: Path, options: dict) -> list[str]:
    """Read and check every input that will be predicted (:func:`check_image`), before the first
    output is written: a corrupt file, an empty one or an image of the wrong channel count among
    many stops the run with nothing written, not after the outputs of the files before it. An
    input predicted band by band is opened and its channels checked (reading it whole is what band
    by band avoids). Inputs whose outputs exist (and are kept) are not read.

    Returns:
        Lines for the user on the voxel sizes of a model trained at one (:func:`_spacing_notes`):
        which inputs are resampled to it, which state none and are predicted as stored.
    """
    from ..data.dataset import read_case_image

    sizes: list = []  # (input, its voxel size in the model's unit, or None)
    banded: list = []  # the inputs predicted band by band, which get no post-processing
    for case in cases:
        paths, band, _ = _outputs_with(case, out_dir, options)
        if not options.get("overwrite") and _done(paths):
            continue
        first, level = case.images[0], options.get("level", 0)
        if band:
            from ..io.readers import read_spacing

            banded.append(Path(first).name)

            source = open_lazy(first, level)
            try:
                check_channels(predictor, source, first)
                meta = getattr(source, "meta", None)
                spacing, unit = (meta.spacing, meta.spacing_unit) if meta else read_spacing(first)
                check_band_prediction(predictor, source, first, spacing, unit)
            finally:
                if not isinstance(source, np.ndarray):
                    source.close()
            continue
        image, meta = read_case_image(case) if level == 0 else _read_level(first, level)
        image = check_image(image, predictor, first)
        _, turned_meta, _ = reorient(image, meta, getattr(predictor, "orientation", None))
        spacing = spacing_for_model(
            predictor,
            getattr(turned_meta, "spacing", None),
            getattr(turned_meta, "spacing_unit", None),
            first,
        )
        sizes.append((first, spacing))
    return _banded_note(predictor, banded) + _spacing_notes(predictor, sizes)


def _some(names: list) -> str:
    """Up to five names, then how many more: ``a.tif, b.tif and 3 more``."""
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _banded_note(predictor, banded: list) -> list[str]:
    """The inputs predicted band by band, where the model has a post-processing: objects span
    bands, so they get the raw labels (said, as the post-processing line names the steps)."""
    post = getattr(predictor, "postprocess", None)
    if not banded or post is None or not getattr(post, "steps", None):
        return []
    names = _some(banded)
    return [
        f"{len(banded)} input(s) over {LARGE_PIXELS // 2**20} Mpx (volumes over "
        f"{LARGE_PIXELS // VOLUME_SHARE // 2**20} M voxels) ({names}) are predicted band by band "
        "(slab by slab) and get no post-processing (objects span bands): their labels are the "
        "raw argmax"
    ]


def spacing_notes_of(predictor, results: list) -> list[str]:
    """:func:`_spacing_notes` told after a job whose inputs were read elsewhere (a Dask cluster's
    workers): from the voxel sizes its written, in-memory :class:`PredictedFile` results record."""
    done = [r for r in results if r.status == "written" and r.mode == "in-memory"]
    return _spacing_notes(predictor, [(r.inputs[0], r.spacing) for r in done])


def _spacing_notes(predictor, sizes: list) -> list[str]:
    """For a model that knows its voxel size: how many inputs are resampled to it (and back), and
    which state no voxel size and are predicted as stored; nothing for a model of uncalibrated
    images. ``sizes``: ``(input, voxel size or None)`` of each input read."""
    model = getattr(predictor, "target_spacing", None) or getattr(
        predictor, "trained_spacing", None
    )
    if model is None or not sizes or getattr(predictor, "scale", None) is not None:
        return []  # a model of a resolution factor (data.scale) scales every image alike
    unit = f" {predictor.spacing_unit}" if getattr(predictor, "spacing_unit", None) else ""
    shown = "×".join(f"{float(v):g}" for v in model) + unit
    notes = []
    silent = [Path(p).name for p, sp in sizes if sp is None]
    if silent:
        names = _some(silent)
        notes.append(
            f"{len(silent)} of {len(sizes)} input(s) state no voxel size ({names}): predicted as "
            f"stored, as if at the model's {shown}"
        )
    resampling = getattr(predictor, "resampling", None)
    if resampling is not None:
        moved = [(p, sp) for p, sp in sizes if sp is not None and resampling(sp) is not None]
        if moved:
            p, sp = moved[0]
            first = f"{Path(p).name}: {'×'.join(f'{float(v):g}' for v in sp)}{unit}"
            notes.append(
                f"{len(moved)} of {len(sizes)} input(s) resampled to the model's voxel size "
                f"{shown} and back ({first})"
            )
    return notes


#: the file in a prediction folder that says which model wrote its outputs (hidden: no reader of
#: the folder's images lists it)
MODEL_RECORD = ".unetkit-model.json"


def check_model_record(out_dir: Path, model_id: Optional[str], cases: list, options: dict) -> None:
    """Refuse to keep (skip) outputs that another model wrote: a rerun after retraining would
    otherwise report them as done. ``model_id`` ``None`` (a Python caller that does not say) and a
    folder without a record (written before records were kept) skip as before."""
    record = Path(out_dir) / MODEL_RECORD
    if model_id is None or options.get("overwrite") or not record.is_file():
        return
    if _recorded_model(out_dir) == model_id:
        return
    kept = [c.case_id for c in cases if _done(_outputs_with(c, Path(out_dir), options)[0])]
    if kept:
        raise DataError(
            f"holds the outputs of {len(kept)} input(s) ({', '.join(kept[:3])}"
            f"{' …' if len(kept) > 3 else ''}) from another model (or pyramid level, --tta, "
            "--postprocess or --instances method) than this one; pass --overwrite to predict "
            "them again, or choose another --output",
            out_dir,
        )


def check_outputs_apart(out_dir: Path, cases: list, options: dict) -> None:
    """Refuse an output folder that holds the inputs themselves: outputs named like their inputs
    (PNG → PNG, TIFF → TIFF, a zarr store's labels) would replace them with ``--overwrite``, be
    skipped as done without it, and be read as inputs by the next run.

    Raises:
        DataError: naming ``out_dir`` and one input in it.
    """
    out = Path(out_dir).resolve()
    for case in cases:
        paths, _, _ = _outputs_with(case, Path(out_dir), options)
        targets = {p.resolve() for p in paths.values()}
        for image in case.images:
            image = Path(image).resolve()
            if image.parent == out or image in targets or image == out or image in out.parents:
                raise DataError(
                    f"is where the inputs are (e.g. {image.name}); the outputs would mix with or "
                    "replace them: choose another --output folder",
                    out_dir,
                )


def claim_empty_folder(out_dir: Path, model_id: Optional[str], cases: list, options: dict) -> None:
    """Record ``model_id`` in ``out_dir`` before anything is written when none of the cases'
    outputs exist yet, so a job stopped at any point leaves outputs its rerun can tell apart
    (:func:`check_model_record`)."""
    if not any(_done(_outputs_with(c, Path(out_dir), options)[0]) for c in cases):
        write_model_record(out_dir, model_id)


def adopt_record(out_dir: Path, former_id: str, model_id: str) -> None:
    """A folder whose record names this model the way an earlier version named it
    (``former_id``) is recorded under ``model_id``, so a rerun keeps its outputs."""
    if former_id != model_id and _recorded_model(out_dir) == former_id:
        write_model_record(out_dir, model_id)


def write_model_record(out_dir: Path, model_id: Optional[str]) -> None:
    """Note in ``out_dir`` which model wrote its outputs (:func:`check_model_record`)."""
    import json

    from ..utils import atomic_write_text

    if model_id is None or _recorded_model(out_dir) == model_id:
        return
    atomic_write_text(Path(out_dir) / MODEL_RECORD, json.dumps({"model": model_id}) + "\n")


def _recorded_model(out_dir: Path) -> Optional[str]:
    """The model ``out_dir``'s record names (``None``: no record, or an unreadable one)."""
    import json

    try:
        written_by = json.loads((Path(out_dir) / MODEL_RECORD).read_text()).get("model")
    except (OSError, ValueError, AttributeError):
        return None
    return written_by if isinstance(written_by, str) else None


def predict_case(
    predictor,
    case,
    out_dir: Path,
    *,
    probabilities: Optional[str] = None,
    overlay: bool = False,
    overwrite: bool = False,
    instances: Optional[str] = None,
    rois: bool = False,
    geojson: bool = False,
    level: int = 0,
) -> PredictedFile:
    """Predict one case of :func:`plan_cases` into ``out_dir`` (which exists) and write its outputs;
    skipped when they all exist and not ``overwrite``. ``instances`` is the resolved method;
    ``level`` the pyramid level read (:func:`check_level` has checked it).

    A model trained in an orientation (``predictor.orientation``) gets a 3D input with a stated
    geometry turned to it (:func:`~unetkit.io.orientation.reorient`, its spacing with it); labels
    and probabilities are turned back (:func:`~unetkit.io.orientation.restore`) and written with
    the input's own geometry.

    The labels of a pyramidal input (TIFF/OME-TIFF, multi-level OME-Zarr) predicted band by band
    are a pyramid with as many levels (:mod:`unetkit.io.pyramid`): an OME-Zarr label image, or a
    tiled, compressed OME-TIFF ``<stem>.ome.tif``; other inputs' outputs are as without pyramids."""
    from ..data.dataset import read_case_image
    from ..io.readers import read_spacing

    first = case.images[0]
    paths, band, levels = _case_outputs(
        case, out_dir, probabilities, overlay, instances, rois, geojson, level
    )
    if not overwrite and _done(paths):
        return PredictedFile(case.case_id, case.images, paths, "skipped")
    if band:
        source = open_lazy(first, level)
        check_channels(predictor, source, first)
        # band by band, labels go into a TIFF memory map or, for zarr inputs, an OME-Zarr store;
        # a pyramidal input's labels get its number of levels (io.pyramid)
        labels_path = band_labels_path(out_dir, case, level)  # what a cluster's blocks write too
        meta = getattr(source, "meta", None)  # a LazyImage knows; for memory maps read the tags
        spacing, unit = (meta.spacing, meta.spacing_unit) if meta else read_spacing(first)
        check_band_prediction(predictor, source, first, spacing, unit)  # before any output exists
        sink = TiffBandSink(
            source.shape[1:],
            getattr(predictor.model, "num_classes", 2),
            predictor.label_map,
            labels_path,
            paths.get("probabilities"),
            source=source,
            spacing=spacing,
            spacing_unit=unit,
            levels=levels,
        )
        try:
            predict_large(predictor, source, sink, path=first, spacing=spacing, unit=unit)
        except BaseException:
            sink.abort()
            raise
        finally:
            if not isinstance(source, np.ndarray):
                source.close()
        paths["labels"] = labels_path
        return PredictedFile(case.case_id, case.images, paths, "written", "band-by-band")
    image, meta = read_case_image(case) if level == 0 else _read_level(first, level)
    image = check_image(image, predictor, first)
    # the model's orientation (data.orientation): turned in, turned back out, so the outputs are
    # written with the input's own meta and overlay it exactly
    # voxel sizes in the unit of the model's training files (a µm file for a mm model)
    turned, turned_meta, turn = reorient(image, meta, getattr(predictor, "orientation", None))
    spacing = spacing_for_model(
        predictor,
        getattr(turned_meta, "spacing", None),
        getattr(turned_meta, "spacing_unit", None),
        first,
    )
    probs = predictor.predict_proba(turned, spacing=spacing)
    probs = restore(probs, turn)
    own = convert_spacing(
        getattr(meta, "spacing", None),
        getattr(meta, "spacing_unit", None),
        getattr(predictor, "spacing_unit", None),
    )
    indices = predictor.postprocess.apply(compact_argmax(probs), own)
    label_map = predictor.label_map
    write_labels(
        paths["labels"],
        decode_labels(indices, label_map),
        meta,
        palette=getattr(label_map, "palette", None),
    )
    if "probabilities" in paths:
        write_probabilities(paths["probabilities"], probs, meta, label_map)
    if "overlay" in paths:
        write_overlay(paths["overlay"], image, indices)
    if instances is not None:
        _write_instances(paths, indices, instances, meta, predictor.label_map)
    spacing = None if spacing is None else tuple(float(v) for v in spacing)
    return PredictedFile(case.case_id, case.images, paths, "written", spacing=spacing)


def _read_level(path: Path, level: int) -> tuple:
    """The whole image at pyramid ``level`` and its meta (that level's pixel size)."""
    source = open_lazy(path, level)
    try:
        return np.asarray(source[...]), source.meta
    finally:
        source.close()


def _instance_method(predictor, instances: Optional[str], rois: bool, geojson: bool):
    """The instance method the requested outputs need (``None``: no instance outputs), or a
    :class:`ConfigError` before anything is predicted."""
    if instances is not None and instances not in INSTANCE_METHODS:
        raise ConfigError(
            f"instances must be one of {', '.join(INSTANCE_METHODS)}, got {instances!r}"
        )
    if (rois or geojson) and predictor.spatial_dims != 2:
        raise ConfigError(
            f"ImageJ ROIs and GeoJSON (--rois, --geojson) outline objects in 2D images, the model "
            f"is {predictor.spatial_dims}D; drop them (--instances alone writes the instance image)"
        )
    return instances or ("components" if rois or geojson else None)


def _write_instances(paths: dict, indices: np.ndarray, method: str, meta, label_map) -> None:
    """The instance image of the written labels (uint16, uint32 above 65535 objects; the input's
    pixel size kept) and, where ``paths`` asks, the objects' outlines as ImageJ ROIs and GeoJSON,
    named by the label map's class names, else by the values the label image holds ("class 200"
    for a mask value of 200, as evaluate and the written labels name it, not its index)."""
    from ..io import write_image
    from ..io.instance_shapes import instance_polygons, write_geojson, write_imagej_rois

    objects = label_instances(indices, method)
    write_image(paths["instances"], instance_image(objects), meta)
    if "rois" in paths or "geojson" in paths:
        names = getattr(label_map, "names", None)
        if names is None and label_map is not None:
            names = [
                f"class ({v[0]}, {v[1]}, {v[2]})" if isinstance(v, tuple) else f"class {v}"
                for v in label_map.values
            ]
        polygons = instance_polygons(objects, indices, names)
        if "rois" in paths:
            write_imagej_rois(paths["rois"], polygons)
        if "geojson" in paths:
            write_geojson(paths["geojson"], polygons)

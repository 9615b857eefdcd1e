"""Predict files and folders: the Python function behind ``unetkit predict``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..errors import DataError
from .large import LARGE_PIXELS, open_lazy, predict_large
from .outputs import (
    TiffBandSink,
    decode_labels,
    output_paths,
    write_labels,
    write_overlay,
    write_probabilities,
)


@dataclass
class PredictedFile:
    """One input and what became of it: ``status`` is ``written`` or ``skipped`` (outputs existed)."""

    case_id: str
    inputs: list
    outputs: dict
    status: str
    mode: str = "in-memory"


def collect_inputs(paths: Sequence[Union[str, Path]]):
    """Files and folders → :class:`~unetkit.data.Case` list (no masks needed).

    A folder with ``images/`` (or nnU-Net ``imagesTr``/``imagesTs``) is read as a dataset (multi-file
    channels grouped); any other folder contributes every image file in it. Stems must be unique.
    """
    from ..data.discovery import Case, find_cases
    from ..io.readers import is_image_file, split_suffix

    cases: list = []
    for p in map(Path, paths):
        if p.is_dir():
            if any((p / d).is_dir() for d in ("images", "imagesTr", "imagesTs")):
                cases += find_cases(p, require_masks=False)
            else:
                files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                               and is_image_file(f))
                if not files:
                    raise DataError("no image files in this folder", p)
                cases += [Case(split_suffix(f)[0], [f]) for f in files]
        elif p.is_file():
            cases.append(Case(split_suffix(p)[0], [p]))
        else:
            raise DataError("input not found", p)
    seen: dict = {}
    for c in cases:
        if c.case_id in seen:
            raise DataError(f"two inputs are named {c.case_id!r} (also {seen[c.case_id]}); outputs would collide",
                            c.images[0])
        seen[c.case_id] = c.images[0]
    return cases


def _is_large(path: Path) -> bool:
    if path.suffix.lower() not in (".npy", ".tif", ".tiff"):
        return False
    try:
        arr = open_lazy(path)
    except DataError:
        return False
    return int(np.prod(arr.shape[1:])) > LARGE_PIXELS


def predict_files(predictor, inputs: Sequence[Union[str, Path]], out_dir: Union[str, Path],
                  probabilities: Optional[str] = None, overlay: bool = False, overwrite: bool = False,
                  progress: bool = True) -> list[PredictedFile]:
    """Predict every input and write its outputs to ``out_dir``.

    Args:
        predictor: a :class:`~unetkit.inference.Predictor` (usually ``from_checkpoint``).
        inputs: image files and/or folders.
        probabilities: ``"tiff"`` (float16, planar) or ``"npz"`` to also write probability maps.
        overlay: also write ``<stem>_overlay.png`` (prediction outlined on the image).
        overwrite: recompute inputs whose outputs exist (default: skip them, so a rerun resumes).

    Returns:
        One :class:`PredictedFile` per input. Labels are written in the label map's values
        (e.g. 0/255), in the input's format (JPEG/BMP → PNG; .npy → TIFF).
    """
    from tqdm import tqdm

    from ..data.dataset import read_case_image
    from ..io.readers import split_suffix

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cases = collect_inputs(inputs)
    results = []
    bar = tqdm(cases, desc="predict", unit="image", disable=not progress)
    for case in bar:
        first = case.images[0]
        paths = output_paths(out_dir, case.case_id, split_suffix(first)[1], probabilities, overlay)
        if not overwrite and all(p.exists() for p in paths.values()):
            results.append(PredictedFile(case.case_id, case.images, paths, "skipped"))
            continue
        bar.set_postfix_str(case.case_id)
        if len(case.images) == 1 and _is_large(first):
            source = open_lazy(first)
            sink = TiffBandSink(source.shape[1:], getattr(predictor.model, "num_classes", 2), predictor.label_map,
                                paths["labels"].with_suffix(".tif"), paths.get("probabilities"), source=source)
            predict_large(predictor, source, sink)
            paths["labels"] = paths["labels"].with_suffix(".tif")
            results.append(PredictedFile(case.case_id, case.images, paths, "written", "band-by-band"))
            continue
        image, meta = read_case_image(case)
        probs = predictor.predict_proba(image)
        indices = probs.argmax(axis=0)
        write_labels(paths["labels"], decode_labels(indices, predictor.label_map), meta)
        if "probabilities" in paths:
            write_probabilities(paths["probabilities"], probs)
        if "overlay" in paths:
            write_overlay(paths["overlay"], image, indices)
        results.append(PredictedFile(case.case_id, case.images, paths, "written"))
    return results

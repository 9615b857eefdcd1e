"""Int8 copies of exported ONNX models, offered only where their labels agree with fp32.

Why: on a CPU without bf16 (AVX2, no AVX-512) inference runs in fp32. ONNX Runtime's int8
convolutions (u8 activations × s8 weights, ``VPMADDUBSW`` on AVX2) run a U-Net markedly faster
there, but 8-bit activations can move the argmax of pixels near a class boundary. So an int8 file is
written only after it has been checked on the run's validation images: it is kept when its labels
agree with the fp32 model's on at least :data:`AGREEMENT_THRESHOLD` of the pixels, and refused with
a one-line reason otherwise. The check is part of writing the file, never a separate step, and its
result travels in the file's metadata.

How (:func:`quantize_int8`):

1. The fp32 export is pre-processed (``quant_pre_process``: ONNX Runtime's graph optimisations
   and shape inference, as ONNX Runtime advises before quantising) and quantised with
   ``quantize_static``: QDQ format, uint8 activations, int8 weights per output channel (U8S8, ONNX
   Runtime's recommended data types for CNNs on x86-64), min-max calibration, and
   ``reduce_range``: 7-bit weights. Without it, AVX2's ``VPMADDUBSW`` adds two u8 × s8 products
   in int16 and saturates (255·127·2 > 32767): a trained tiny U-Net's logits moved by up to 14 and
   1.5 % of its labels flipped; with 7-bit weights the sum fits, the logits moved by < 0.8 and no
   label flipped. CPUs with VNNI accumulate in int32 and lose only a bit of weight precision, so a
   file checked here is safe on them too. Measured on the 64-wide U-Net here, QDQ and QOperator
   run at the same speed and U8U8 (no saturation either) is hardly faster than fp32.
2. Calibration: :data:`CALIBRATION_TILES` tiles at the model's tile size cut at seeded random
   places from the **training** images, normalised (and resampled) exactly as the predictor does;
   one tile at a time (``CalibStridedMinMax``), so the memory of the intermediate tensors stays
   that of one tile.
3. Agreement: every **validation** image is predicted by the fp32 and the int8 file through the
   same :class:`~unetkit.inference.predictor.Predictor` tiling (:meth:`OnnxRunner.predictor`);
   the share of pixels whose argmax labels are equal decides (:func:`label_agreement`).
4. Speed: both files run the same tile (a calibration tile) in one process, the median of
   ``timing_runs`` runs after a warm-up each; the ratio fp32 / int8 is reported and stored even
   when int8 is not faster, which is possible on CPUs without VNNI.

The int8 file holds the fp32 file's unetkit metadata plus ``precision`` (``"int8"``),
``int8_agreement``, ``int8_validation_images``, ``int8_validation_pixels``, ``int8_speedup`` and
``int8_quantization`` (format, types, calibration, timing), so :class:`OnnxRunner`, ``unetkit
predict model.int8.onnx`` and every reader of the metadata use it as they use the fp32 file. It is
written atomically; a refused or failed quantisation leaves no file.

Example:
    >>> report = quantize_int8("best.onnx", "best.int8.onnx", train_images, val_images)
    >>> print(report.describe())     # illustrative; timings of a 2-core AVX2 EPYC  # doctest: +SKIP
    wrote best.int8.onnx (29.7 MB, int8 QDQ U8S8, 7-bit per-channel weights, calibrated on 16 training tiles)
    labels agree with fp32 on 99.97 % of 3 validation image(s) (786,432 pixels; needs 99.9 %)
    speed on a 512×512 tile: fp32 6.3 s, int8 3.44 s (int8 1.83× faster)
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from ..errors import ConfigError, DataError, UnetkitError
from ..utils import atomic_path, check_output_file
from .export import OnnxRunner, encode_metadata, require

#: Least share of validation pixels whose int8 labels must equal the fp32 labels.
AGREEMENT_THRESHOLD = 0.999
#: Training tiles the activation ranges are calibrated on.
CALIBRATION_TILES = 16
#: Seed of the calibration tiles' places.
CALIBRATION_SEED = 0
#: Timed runs per file (after one warm-up); the median is reported.
TIMING_RUNS = 5
#: What the int8 files are: ONNX Runtime's format and data types (module docstring).
QUANTIZATION = {
    "format": "QDQ",
    "activations": "uint8",
    "weights": "int8",
    "per_channel": True,
    "reduce_range": True,
    "calibration": "minmax",
}

Image = Union[np.ndarray, tuple]  # (C, *spatial) raw image, or (image, spacing)
PathLike = Union[str, Path]


class Int8Refused(UnetkitError, ValueError):
    """The int8 labels agree with fp32 on fewer validation pixels than required; no file written.

    ``report`` holds the numbers (agreement, pixels, timings).
    """

    def __init__(self, message: str, report: Int8Report):
        super().__init__(message)
        self.report = report


@dataclass
class Int8Report:
    """What :func:`quantize_int8` measured and wrote.

    Attributes:
        path: the int8 file (``None`` when refused).
        source: the fp32 file it was made from.
        agreement: share of validation pixels whose labels are equal (0 … 1).
        pixels: validation pixels compared.
        images: validation images compared.
        calibration_tiles: training tiles calibrated on.
        tile: spatial size of the calibration and timing tiles.
        fp32_seconds, int8_seconds: median time of one forward pass over the timing tile.
        threads: onnxruntime threads used (``None`` = its default).
        threshold: the agreement needed.
        file_size: bytes of the int8 file (0 when refused).
    """

    source: Path
    agreement: float
    pixels: int
    images: int
    calibration_tiles: int
    tile: tuple
    fp32_seconds: float
    int8_seconds: float
    threads: Optional[int]
    threshold: float = AGREEMENT_THRESHOLD
    path: Optional[Path] = None
    file_size: int = 0

    @property
    def speedup(self) -> float:
        """fp32 time / int8 time (> 1: int8 is faster)."""
        return self.fp32_seconds / self.int8_seconds if self.int8_seconds > 0 else float("nan")

    @property
    def accepted(self) -> bool:
        return self.agreement >= self.threshold

    def refusal(self) -> str:
        """The one-line reason an int8 file is not offered."""
        return (
            f"int8 refused: labels agree with fp32 on {_percent(self.agreement)} % of the "
            f"validation pixels (needs {_percent(self.threshold)} %); {self.source} stays the "
            f"model to use"
        )

    def speed_line(self) -> str:
        size = "×".join(str(s) for s in self.tile)
        ratio = self.speedup
        verdict = (
            f"int8 {ratio:.2f}× faster"
            if ratio > 1.05
            else f"int8 not faster than fp32 on this CPU: {ratio:.2f}×"
        )
        return (
            f"speed on a {size} tile: fp32 {self.fp32_seconds:.3g} s, int8 "
            f"{self.int8_seconds:.3g} s ({verdict})"
        )

    def describe(self) -> str:
        """A few lines for the CLI: file, agreement, speed."""
        fmt = QUANTIZATION
        lines = []
        if self.path is not None:
            lines.append(
                f"wrote {self.path} ({self.file_size / 2**20:.1f} MB, int8 {fmt['format']} "
                f"U8S8, 7-bit per-channel weights, calibrated on {self.calibration_tiles} training tiles)"
            )
        lines.append(
            f"labels agree with fp32 on {_percent(self.agreement)} % of {self.images} validation "
            f"image(s) ({self.pixels:,} pixels; needs {_percent(self.threshold)} %)"
        )
        lines.append(self.speed_line())
        return "\n".join(lines)


def _percent(share: float) -> str:
    """0.99962 → ``"99.96"``, 0.999 → ``"99.9"``: rounded down, so a share below the threshold
    never prints as the threshold."""
    value = np.floor(share * 1e4 + 1e-6) / 1e2
    return f"{value:.2f}".rstrip("0").rstrip(".")


# -- images ---------------------------------------------------------------------------------------
def _pairs(images: Sequence[Image], what: str) -> list[tuple[np.ndarray, Optional[tuple]]]:
    out = []
    for item in images:
        image, spacing = item if isinstance(item, tuple) else (item, None)
        out.append((np.asarray(image), spacing))
    if not out:
        raise ConfigError(f"int8 quantisation needs at least one {what} image")
    return out


def calibration_tiles(
    predictor, images: Sequence[Image], tile: Sequence[int], count: int, seed: int
) -> list[np.ndarray]:
    """``count`` tiles ``(1, C, *tile)`` float32 cut at seeded random places from ``images``.

    Each image is normalised and resampled as ``predictor`` does before tiling
    (:meth:`Predictor.prepare`, :meth:`Predictor.resampling`); images smaller than the tile are
    mirror-padded. Tile ``i`` comes from image ``i mod len(images)``, so every image contributes.
    """
    from ..data.resample import resample_image, scaled_shape
    from .tiling import mirror_pad

    rng = np.random.default_rng(seed)
    prepared = []
    for image, spacing in _pairs(images, "calibration"):
        x = predictor.prepare(image)
        shape = scaled_shape(x.shape[1:], predictor.resampling(spacing))
        if shape != x.shape[1:]:
            x = resample_image(x, shape)
        short = [max(t - s, 0) for t, s in zip(tile, x.shape[1:])]
        if any(short):
            x = mirror_pad(x, [k // 2 for k in short], [k - k // 2 for k in short])
        prepared.append(x)
    tiles = []
    for i in range(int(count)):
        x = prepared[i % len(prepared)]
        starts = [int(rng.integers(0, s - t + 1)) for s, t in zip(x.shape[1:], tile)]
        window = tuple(slice(a, a + t) for a, t in zip(starts, tile))
        tiles.append(np.ascontiguousarray(x[(slice(None), *window)][None], dtype=np.float32))
    return tiles


def _data_reader(tiles: list[np.ndarray], input_name: str):
    """An onnxruntime ``CalibrationDataReader`` over ``tiles`` that also serves index ranges
    (``set_range``), which ``CalibStridedMinMax`` uses to calibrate a few tiles at a time."""
    quant = require("onnxruntime.quantization")

    class TileReader(quant.CalibrationDataReader):
        def __init__(self):
            self.set_range(0, len(tiles))

        def get_next(self):
            return next(self._items, None)

        def __len__(self):
            return len(tiles)

        def set_range(self, start_index: int, end_index: int):
            self._items = iter({input_name: t} for t in tiles[start_index:end_index])

    return TileReader()


# -- agreement and speed ---------------------------------------------------------------------
def label_agreement(fp32, int8, images: Sequence[Image]) -> tuple[int, int]:
    """(equal pixels, pixels) of the labels two predictors give ``images`` (each image predicted
    whole, with its spacing where given)."""
    equal = total = 0
    for image, spacing in _pairs(images, "validation"):
        a = fp32.predict(image, spacing=spacing)
        b = int8.predict(image, spacing=spacing)
        equal += int(np.count_nonzero(a == b))
        total += int(a.size)
    return equal, total


def median_seconds(runner: OnnxRunner, tile: np.ndarray, runs: int) -> float:
    """Median wall time of ``runs`` forward passes of ``tile`` after one warm-up."""
    x = torch.from_numpy(tile)
    runner(x)
    times = []
    for _ in range(max(int(runs), 1)):
        t0 = time.perf_counter()
        runner(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


@contextlib.contextmanager
def _quiet_quantizer():
    """The quantiser logs advice through the root logger (pre-processing, which is done here)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def _quantize(src: Path, dst: Path, tiles: list[np.ndarray], input_name: str, work: Path) -> None:
    quant = require("onnxruntime.quantization")
    pre = work / "preprocessed.onnx"
    with _quiet_quantizer():
        # symbolic shape inference cannot follow the traced decoder's shape arithmetic; ONNX
        # shape inference and the graph optimisations run all the same
        quant.quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quant.quantize_static(
            str(pre),
            str(dst),
            _data_reader(tiles, input_name),
            quant_format=quant.QuantFormat.QDQ,
            activation_type=quant.QuantType.QUInt8,
            weight_type=quant.QuantType.QInt8,
            per_channel=True,
            reduce_range=True,  # 7-bit weights: no int16 saturation on AVX2 (module docstring)
            calibrate_method=quant.CalibrationMethod.MinMax,
            extra_options={"CalibStridedMinMax": 1},
        )


def _with_metadata(path: Path, meta: dict) -> None:
    onnx = require("onnx")
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in encode_metadata(meta).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


# -- where the images come from --------------------------------------------------------------------
@dataclass
class ImageSources:
    """The cases :func:`quantize_int8` calibrates on and checks on, and where they were found."""

    calibration: list
    validation: list
    origin: str

    def read(self, orientation: Optional[str] = None) -> tuple[list, list]:
        """``(calibration, validation)`` as ``(image, spacing)`` pairs, read from disk (volumes
        turned to the model's ``orientation``, as ``predict`` turns them)."""
        return read_images(self.calibration, orientation), read_images(self.validation, orientation)

    def describe(self) -> str:
        return (
            f"int8: calibrating on {len(self.calibration)} training image(s), checking labels on "
            f"{len(self.validation)} validation image(s) ({self.origin})"
        )


def read_images(
    cases: Sequence, orientation: Optional[str] = None
) -> list[tuple[np.ndarray, Optional[tuple]]]:
    """Each case's image ``(C, *spatial)`` with its spacing, turned to ``orientation`` first when
    the model was trained in one (``data.orientation``), as stored otherwise."""
    from ..data.reading import read_case_image
    from ..io.orientation import reorient

    out = []
    for case in cases:
        image, meta = read_case_image(case)
        if orientation is not None:
            image, meta, _ = reorient(image, meta, orientation)
        out.append((image, getattr(meta, "spacing", None)))
    return out


def folder_cases(folder: PathLike, what: str) -> list:
    """The images of ``folder``: a dataset folder (``images/`` [+ ``masks/``], nnU-Net raw) or a
    plain folder of image files.

    Raises:
        DataError: the folder is missing, holds no images, or its dataset layout has problems.
    """
    from ..data.discovery import Case, scan_dataset
    from ..io.readers import list_images

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{what} folder not found", folder)
    found = scan_dataset(folder, require_masks=False)
    if found.layout:
        if found.problems:
            raise found.error()
        cases = found.cases
    else:
        cases = [Case(stem, [paths[0]]) for stem, paths in list_images(folder).by_stem.items()]
    if not cases:
        raise DataError(f"no images in this {what} folder", folder)
    return cases


def run_images(
    checkpoint: PathLike,
    calibration: Optional[PathLike] = None,
    validation: Optional[PathLike] = None,
) -> ImageSources:
    """The training and validation images of the run that wrote ``checkpoint``.

    ``calibration`` / ``validation`` folders (see :func:`folder_cases`) replace the run's own.
    Otherwise the run folder (``RUN/checkpoints/best.pt`` → ``RUN``) must still hold
    ``config.yaml`` and ``splits.json``, and the data they name must still be there: calibration
    uses the training cases of the split, validation the validation cases (``data.val_dir`` when
    the run had a fixed validation folder; fold ``data.fold`` of a k-fold run).

    Raises:
        DataError: something needed is missing; the one-line message names it and the option
            that replaces it.
    """
    from ..config import RunConfig
    from ..data.discovery import scan_dataset
    from ..data.splits import load_splits

    calib = folder_cases(calibration, "calibration") if calibration is not None else None
    valid = folder_cases(validation, "validation") if validation is not None else None
    if calib is not None and valid is not None:
        return ImageSources(calib, valid, f"{calibration}, {validation}")
    checkpoint = Path(checkpoint)
    need = " and ".join(
        opt
        for opt, have in (("--calibration DIR", calib), ("--validation DIR", valid))
        if have is None
    )
    run = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    if not (run / "config.yaml").is_file():
        raise DataError(
            f"no config.yaml in the checkpoint's run folder {run} to find the training and "
            f"validation images; give {need}",
            checkpoint,
        )
    data = RunConfig.from_yaml(run / "config.yaml").data
    where = f"data.train_dir of {run / 'config.yaml'}"
    if data.train_dir is None or not Path(data.train_dir).is_dir():
        raise DataError(f"the run's training data ({where}) is not there any more; give {need}")
    found = scan_dataset(data.train_dir, mask_suffix=data.mask_suffix, require_masks=False)
    if found.problems:
        raise found.error()
    by_id = {c.case_id: c for c in found.cases}
    split = None
    if (run / "splits.json").is_file():
        split = load_splits(run / "splits.json")
        if isinstance(split, list):
            split = split[data.fold or 0]

    def pick(ids: Sequence[str], what: str) -> list:
        lost = [i for i in ids if i not in by_id]
        if lost:
            raise DataError(
                f"{len(lost)} {what} case(s) of {run / 'splits.json'} are no longer in "
                f"{data.train_dir} (e.g. {lost[0]}); give {need}"
            )
        return [by_id[i] for i in ids]

    if calib is None:
        calib = pick(split["train"], "training") if split is not None else list(found.cases)
    if valid is None:
        if data.val_dir is not None:
            valid = folder_cases(data.val_dir, "validation (data.val_dir of the run)")
        elif split is None:
            raise DataError(
                f"no splits.json in the run folder {run} to find the validation images; "
                f"give --validation DIR"
            )
        elif not split["val"]:
            raise DataError(
                f"the run {run} had no validation images (val_fraction 0); give --validation DIR"
            )
        else:
            valid = pick(split["val"], "validation")
    if not calib:
        raise DataError(f"the run {run} has no training images to calibrate on; give {need}")
    return ImageSources(calib, valid, f"the run's split, {run}")


# -- the whole step ---------------------------------------------------------------------------
def quantize_int8(
    fp32_path: PathLike,
    path: PathLike,
    calibration: Sequence[Image],
    validation: Sequence[Image],
    *,
    threshold: Optional[float] = None,
    tiles: int = CALIBRATION_TILES,
    seed: int = CALIBRATION_SEED,
    threads: Optional[int] = None,
    timing_runs: int = TIMING_RUNS,
) -> Int8Report:
    """Write an int8 copy of an exported unetkit ONNX model when its labels agree with fp32.

    Args:
        fp32_path: an ``.onnx`` file written by :func:`~unetkit.inference.export.export_onnx`.
        path: the int8 file to write (atomically), conventionally ``<name>.int8.onnx``.
        calibration: training images ``(C, *spatial)`` as stored (raw values), or
            ``(image, spacing)`` pairs; tiles of them calibrate the activation ranges.
        validation: validation images, likewise; their labels decide.
        threshold: the agreement needed (default :data:`AGREEMENT_THRESHOLD`).
        tiles: calibration tiles (at the model's tile size).
        seed: seed of the tiles' places.
        threads: onnxruntime intra-op threads (``None`` = its default).
        timing_runs: timed runs per file for the speed ratio (median).

    Returns:
        The :class:`Int8Report` of the written file.

    Raises:
        Int8Refused: the labels agree on fewer pixels than ``threshold``; nothing is written (the
            exception's ``report`` holds the numbers, its message the one-line reason).
        ConfigError: no images, a bad argument, or ``fp32_path`` is already an int8 file.
        DataError: unreadable model; OutputError: ``path`` cannot be written.
        MissingDependencyError: onnx or onnxruntime is not installed.
    """
    threshold = AGREEMENT_THRESHOLD if threshold is None else float(threshold)
    if not 0 < threshold <= 1:
        raise ConfigError(f"the agreement threshold must lie in (0, 1], got {threshold}")
    if int(tiles) < 1:
        raise ConfigError(f"calibration tiles must be ≥ 1, got {tiles}")
    fp32_path, path = Path(fp32_path), Path(path)
    if path.resolve() == fp32_path.resolve():
        raise ConfigError(f"the int8 file {path} would overwrite the fp32 model; choose another")
    check_output_file(path)
    fp32 = OnnxRunner(fp32_path, threads=threads)
    if fp32.metadata.get("precision", "fp32") != "fp32":
        raise ConfigError(
            f"{fp32_path} is already a {fp32.metadata['precision']} model; quantise the fp32 export"
        )
    calibration, validation = _pairs(calibration, "calibration"), _pairs(validation, "validation")
    fp32_predictor = fp32.predictor()
    tile = list(fp32.predictor_kwargs()["tile"])
    cut = calibration_tiles(fp32_predictor, calibration, tile, tiles, seed)
    with tempfile.TemporaryDirectory(prefix="unetkit-int8-") as work:
        tmp = Path(work) / "int8.onnx"
        _quantize(fp32_path, tmp, cut, fp32.input_name, Path(work))
        meta = dict(fp32.metadata, precision="int8")
        _with_metadata(tmp, meta)
        int8 = OnnxRunner(tmp, threads=threads)
        equal, total = label_agreement(fp32_predictor, int8.predictor(), validation)
        report = Int8Report(
            source=fp32_path,
            agreement=equal / total if total else 0.0,
            pixels=total,
            images=len(validation),
            calibration_tiles=len(cut),
            tile=tuple(tile),
            fp32_seconds=median_seconds(fp32, cut[0], timing_runs),
            int8_seconds=median_seconds(int8, cut[0], timing_runs),
            threads=threads,
            threshold=threshold,
        )
        if not report.accepted:
            raise Int8Refused(report.refusal(), report)
        meta.update(
            int8_agreement=report.agreement,
            int8_validation_images=report.images,
            int8_validation_pixels=report.pixels,
            int8_speedup=report.speedup,
            int8_quantization=dict(
                QUANTIZATION,
                calibration_tiles=report.calibration_tiles,
                calibration_seed=int(seed),
                tile=list(tile),
                fp32_seconds=report.fp32_seconds,
                int8_seconds=report.int8_seconds,
                threads=threads,
                threshold=threshold,
            ),
        )
        _with_metadata(tmp, meta)
        with atomic_path(path) as out:
            out.write_bytes(tmp.read_bytes())
    report.path, report.file_size = path, path.stat().st_size
    return report


__all__ = [
    "AGREEMENT_THRESHOLD",
    "CALIBRATION_TILES",
    "Int8Refused",
    "Int8Report",
    "ImageSources",
    "calibration_tiles",
    "folder_cases",
    "label_agreement",
    "median_seconds",
    "quantize_int8",
    "read_images",
    "run_images",
]

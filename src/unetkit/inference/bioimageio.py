"""bioimage.io model packages: write one from a checkpoint, and run one with unetkit's tiling.

A bioimage.io package (a ``.zip`` holding ``rdf.yaml``, weights, test tensors, a cover and a README,
spec 0.5) is how Fiji/deepImageJ, ilastik, QuPath and napari run a trained model.

**Writing** (:func:`export_bioimageio`): the checkpoint's net is exported twice by
:mod:`unetkit.inference.export` (TorchScript and ONNX, each checked against PyTorch there) and
described as one input ``raw`` ``(batch, channel, [z,] y, x)`` and one output ``probabilities``
``(batch, class, [z,] y, x)``:

* sizes from the exported graph's :class:`~unetkit.models.geometry.SizeRule`: the input axes are
  ``ParameterizedSize(min, step)`` (a fixed int for a graph traced at one size); the output axes
  are ``SizeReference`` to the input with ``offset = −shrink`` (valid padding: the paper's U-Net
  returns 388² for 572²). Same-padding nets get no halo: a halo makes bioimage.io pad the input and
  crop the output even for a whole image, which would change the predictions at the border;
* the training normalisation as bioimage.io preprocessing (:func:`preprocessing_for`; a scheme
  bioimage.io cannot express is refused, never approximated), softmax over the class axis as
  postprocessing (sigmoid for a one-channel net);
* test tensors: a seeded sample (or the caller's image) through unetkit's own normaliser and the
  exported TorchScript graph, so that bioimage.io's test, which recomputes them with its own
  preprocessing, checks the preprocessing mapping as well as the weights;
* a cover (the sample and its predicted labels side by side), a README (what the model is, its
  training data fingerprint, how to open it in Fiji/deepImageJ, ilastik and QuPath), the papers
  of the architecture, and ``config.unetkit``: the export metadata (model spec, label map,
  normalisation, size rule) plus the post-processing validation chose, from which
  :func:`load_package` rebuilds what ``unetkit predict`` needs.

The package is validated with ``bioimageio.spec`` and, with ``check=True``, tested with
``bioimageio.core.test_model`` (test tensors reproduced by both weight formats, then the
parametrised sizes) before it is renamed into place: a failure leaves no file.

**Reading** (:func:`load_package`, :func:`package_predictor`): any package whose one input is
``(batch, channel, space…)`` and whose one output is class scores followed by a softmax over its
channels (or a sigmoid of one channel) runs through :class:`PackageRunner` — bioimage.io's own
model adapter (TorchScript, ONNX or any other weight format the package holds) — as the network
of a :class:`~unetkit.inference.predictor.Predictor`, so zoo models get unetkit's tiling, TTA,
label files and metrics. A unetkit package is normalised by unetkit's normaliser (from
``config.unetkit``) and keeps its label map and post-processing; a foreign one is normalised by
bioimage.io's implementation of its own preprocessing, applied to the whole image before tiling.

**Offline**: nothing here needs the network. The packages written hold no URLs (citations by DOI
only), so the validator's URL checks (done when ``perform_io_checks`` is on, which
``test_model`` forces) have nothing to fetch; packages are read with ``perform_io_checks=False``
(a foreign package's URLs are not visited; its files are read when its weights load).

Example:
    >>> report = export_bioimageio("runs/unet/checkpoints/best.pt", "unet.zip", authors=["Ada"])
    >>> predictor = package_predictor("unet.zip")
    >>> labels = predictor.predict(image)           # (C, H, W) → (H, W) class indices
"""

from __future__ import annotations

import contextlib
import getpass
import importlib
import json
import math
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from ..errors import ConfigError, DataError, UnetkitError
from ..models.geometry import SizeRule
from ..utils import atomic_path, check_output_file, json_default, jsonable
from .export import ExportCheckError, export_onnx, export_torchscript, load_torchscript

INSTALL_HINT = "pip install 'unetkit[bioimageio]'"
#: ``config.unetkit.format`` of the packages written here, and its version.
PACKAGE_FORMAT = "unetkit-bioimageio"
PACKAGE_FORMAT_VERSION = 1
INPUT_ID = "raw"
OUTPUT_ID = "probabilities"
#: bioimage.io model zoo's usual licence for trained weights (unetkit's own MIT covers its code).
DEFAULT_LICENSE = "CC-BY-4.0"
#: Seed of the default sample image (test tensors and cover).
SAMPLE_SEED = 0
#: Largest side of the test tensors of a graph that accepts any size (keeps the package small).
TEST_SIZE_CAP = {2: 256, 3: 64}
#: Names a package's description file may have (``bioimageio.yaml`` is the newer one).
RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
TORCHSCRIPT_FILE = "weights.torchscript.pt"
ONNX_FILE = "weights.onnx"

U_NET = ("Ronneberger, Fischer, Brox (2015). U-Net: Convolutional Networks for Biomedical Image "
         "Segmentation. MICCAI 2015", "10.1007/978-3-319-24574-4_28")  # fmt: skip
U_NET_3D = ("Çiçek et al. (2016). 3D U-Net: Learning Dense Volumetric Segmentation from Sparse "
            "Annotation. MICCAI 2016", "10.1007/978-3-319-46723-8_49")  # fmt: skip
UNET_PP = ("Zhou et al. (2018). UNet++: A Nested U-Net Architecture for Medical Image "
           "Segmentation. DLMIA 2018", "10.1007/978-3-030-00889-5_1")  # fmt: skip
UNET_3PLUS = ("Huang et al. (2020). UNet 3+: A Full-Scale Connected UNet for Medical Image "
              "Segmentation. ICASSP 2020", "10.1109/ICASSP40776.2020.9053405")  # fmt: skip


# -- the optional dependency ---------------------------------------------------------------------
def require_bioimageio(*modules: str) -> Any:
    """Import ``bioimageio.spec`` (and ``modules``: ``bioimageio.core``, ``onnx`` …) or raise a
    one-line :class:`ConfigError` with the install command; returns ``bioimageio.spec``."""
    for name in ("bioimageio.spec", *modules):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(
                f"bioimage.io packages need the '{name}' package, which is not importable "
                f"({exc}); install it with: {INSTALL_HINT}"
            ) from None
    _serialise_with_this_pydantic()
    return importlib.import_module("bioimageio.spec")


def _serialise_with_this_pydantic() -> None:
    """Refuse, in one line, a pydantic that this bioimageio.spec cannot serialise weights with.

    bioimageio.spec 0.5.12 (the version bioimageio.core 0.11 pins) calls pydantic's serialiser
    handler as ``handler(value, info)``; pydantic-core 2.50 (pydantic 2.14) takes an int or str
    ``index_key`` there and raises, so no model description with weights could be validated, saved
    or loaded. The ``bioimageio`` extra pins ``pydantic<2.13`` (tested with 2.12); this probe says
    what to do where another install brought a newer one.
    """
    from bioimageio.spec.model import v0_5

    probe = v0_5.TorchscriptWeightsDescr.model_construct(
        source=Path("probe.pt"), sha256=None, pytorch_version=v0_5.Version("2.0")
    )
    try:
        probe.model_dump(mode="json")
    except Exception as exc:  # pydantic's PydanticSerializationError
        if "index_key" in str(exc):
            import pydantic

            raise ConfigError(
                f"bioimageio.spec cannot write model descriptions with pydantic "
                f"{pydantic.VERSION}; install a compatible one: pip install 'pydantic<2.13'"
            ) from None


# -- normalisation → preprocessing ---------------------------------------------------------------
def spatial_axis_ids(dims: int) -> list[str]:
    """``["y", "x"]`` or ``["z", "y", "x"]``: the space axes of the package's tensors."""
    if dims not in (2, 3):
        raise ConfigError(f"bioimage.io export is for 2D and 3D models, got spatial_dims={dims}")
    return ["y", "x"] if dims == 2 else ["z", "y", "x"]


def _vector(values: Any, channels: int, what: str) -> np.ndarray:
    vec = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if vec.ndim != 1 or vec.size not in (1, channels) or not np.all(np.isfinite(vec)):
        raise ConfigError(
            f"normalisation {what} must be one finite value or one per channel ({channels}), "
            f"got {values!r}"
        )
    return vec


def _spread(x: np.ndarray) -> np.ndarray:
    """unetkit's rule for a std or range: values ≤ 1e-8 count as 1 (a constant channel maps to 0)."""
    from ..data.normalization import EPS

    return np.where(x > EPS, x, 1.0)


def _scale_linear(gain: np.ndarray, offset: np.ndarray) -> list[dict]:
    """``x · gain + offset`` per channel (scalars when every channel shares them); none when it is
    the identity (the spec refuses a redundant scale_linear)."""
    gain, offset = np.broadcast_arrays(gain, offset)
    if np.all(gain == 1.0) and np.all(offset == 0.0):
        return []
    if np.all(gain == gain[0]) and np.all(offset == offset[0]):
        kwargs = {"gain": float(gain[0]), "offset": float(offset[0])}
    else:
        kwargs = {"axis": "channel", "gain": gain.tolist(), "offset": offset.tolist()}
    return [{"id": "scale_linear", "kwargs": kwargs}]


def _range_to_unit(low: np.ndarray, high: np.ndarray) -> list[dict]:
    """unetkit's ``(clip(x, low, high) − low) / (high − low)`` as scale_linear then clip to [0, 1]
    (this order takes per-channel ranges; the spec's clip takes scalars only)."""
    gain = 1.0 / _spread(high - low)
    return [*_scale_linear(gain, -low * gain), {"id": "clip", "kwargs": {"min": 0.0, "max": 1.0}}]


def preprocessing_for(normalization: Optional[dict], channels: int, dims: int) -> list[dict]:
    """The bioimage.io preprocessing (``rdf.yaml`` form) that computes unetkit's normalisation.

    ===========================  ==========================================================
    unetkit                      bioimage.io (per channel)
    ===========================  ==========================================================
    ``zscore``, per image        ``zero_mean_unit_variance`` over the sample's space axes
    ``zscore``, dataset stats    ``scale_linear`` (gain 1/std, offset −mean/std)
    ``percentile``, per image    ``scale_range`` (the percentiles) then ``clip`` [0, 1]
    ``minmax``, per image        ``scale_range`` (percentiles 0 and 100)
    dataset ranges, ``fixed``    ``scale_linear`` onto [0, 1] then ``clip`` [0, 1]
    ``ct`` (one window)          ``scale_linear`` (1/std, −mean/std) then ``clip`` to the
                                 scaled window
    ``none``                     nothing
    ===========================  ==========================================================

    bioimage.io adds ε = 10⁻⁶ to the std / the range of the per-sample steps (unetkit adds nothing
    and replaces a spread ≤ 10⁻⁸ by 1): a relative difference of 10⁻⁶/std, below float32 noise
    for any image with contrast. Per-image percentiles are linear-interpolated in both.
    ``fixed_zero_mean_unit_variance`` is not used because it adds the same ε to a *fixed* std,
    where ``scale_linear`` is exact.

    Args:
        normalization: the checkpoint's ``Normalizer.to_dict()`` (``None``: images come
            normalised, no preprocessing).
        channels: input channels (statistics must have 1 or this many values).
        dims: 2 or 3.

    Raises:
        ConfigError: a scheme or parameter bioimage.io cannot express exactly (named), or dataset
            statistics that were never fitted.
    """
    space = spatial_axis_ids(dims)
    if normalization is None:
        return []
    if not isinstance(normalization, dict) or "name" not in normalization:
        raise ConfigError(f"a saved normalisation is a dict with a 'name', got {normalization!r}")
    name = normalization["name"]
    params = normalization.get("params") or {}
    stats = normalization.get("stats") or {}
    per_image = bool(params.get("per_image", True)) and not stats  # the schemes' default
    if name == "none":
        return []
    if name == "zscore":
        if per_image:
            return [{"id": "zero_mean_unit_variance", "kwargs": {"axes": space}}]
        if "mean" not in stats or "std" not in stats:
            raise ConfigError("zscore normalisation with dataset statistics was never fitted")
        std = _spread(_vector(stats["std"], channels, "std"))
        mean = _vector(stats["mean"], channels, "mean")
        return _scale_linear(1.0 / std, -mean / std)
    if name == "percentile" and per_image:
        lower, upper = float(params.get("lower", 1.0)), float(params.get("upper", 99.8))
        if upper <= 1.0:
            raise ConfigError(
                f"percentile normalisation with upper percentile {upper:g}: bioimage.io's "
                "scale_range takes an upper percentile above 1 only; export refused"
            )
        kwargs = {"axes": space, "min_percentile": lower, "max_percentile": upper}
        return [
            {"id": "scale_range", "kwargs": kwargs},
            {"id": "clip", "kwargs": {"min": 0.0, "max": 1.0}},
        ]
    if name == "minmax" and per_image:
        kwargs = {"axes": space, "min_percentile": 0.0, "max_percentile": 100.0}
        return [{"id": "scale_range", "kwargs": kwargs}]
    if name in ("percentile", "minmax", "fixed"):
        source = stats if name != "fixed" else params
        if source.get("low") is None or source.get("high") is None:
            raise ConfigError(f"{name} normalisation with dataset statistics was never fitted")
        low = _vector(source["low"], channels, "low")
        high = _vector(source["high"], channels, "high")
        return _range_to_unit(*np.broadcast_arrays(low, high))
    if name == "ct":
        return _ct_steps(stats, channels)
    raise ConfigError(
        f"normalisation {name!r} has no exact bioimage.io preprocessing (zscore, percentile, "
        "minmax, fixed, ct (one window) and none have); export refused so that the package cannot "
        "predict differently from unetkit"
    )


def _ct_steps(stats: dict, channels: int) -> list[dict]:
    """nnU-Net's CT scheme ``(clip(x, low, high) − mean) / std`` as ``scale_linear`` then ``clip``
    to the scaled window (the same numbers: the scaling is increasing). The spec's clip takes one
    window for all channels, so channels whose scaled windows differ are refused."""
    if any(stats.get(k) is None for k in ("low", "high", "mean", "std")):
        raise ConfigError("ct normalisation was never fitted (no low, high, mean, std)")
    mean = _vector(stats["mean"], channels, "mean")
    std = _spread(_vector(stats["std"], channels, "std"))
    low = (_vector(stats["low"], channels, "low") - mean) / std
    high = (_vector(stats["high"], channels, "high") - mean) / std
    low, high = np.broadcast_arrays(low, high)
    if not (
        np.allclose(low, low[0], rtol=0, atol=1e-9)
        and np.allclose(high, high[0], rtol=0, atol=1e-9)
    ):
        raise ConfigError(
            "ct normalisation whose channels have different windows has no exact bioimage.io "
            "preprocessing (its clip takes one window); export refused"
        )
    clip = {"id": "clip", "kwargs": {"min": float(low[0]), "max": float(high[0])}}
    return [*_scale_linear(1.0 / std, -mean / std), clip]


def postprocessing_for(num_classes: int) -> list[dict]:
    """Softmax over the class axis (K ≥ 2 logits), or a sigmoid (one logit channel)."""
    if num_classes == 1:
        return [{"id": "sigmoid"}]
    return [{"id": "softmax", "kwargs": {"axis": "channel"}}]


# -- tensors and sizes -----------------------------------------------------------------------------
def _pixel_size(spacing: Optional[Sequence[float]], unit: Optional[str], dims: int) -> list[dict]:
    """Per space axis, the ``scale`` and ``unit`` fields of a model trained at one voxel size in a
    named length unit (what a consumer should give it); ``{}`` each where that is not known."""
    from ..io.ome_zarr import NGFF_UNITS

    named = NGFF_UNITS.get(unit or "")
    if spacing is None or named is None or len(spacing) != dims:
        return [{} for _ in range(dims)]
    return [{"scale": float(s), "unit": named} for s in spacing]


def input_axes(
    rule: SizeRule,
    channels: int,
    dynamic_batch: bool = True,
    spacing: Optional[Sequence[float]] = None,
    unit: Optional[str] = None,
) -> list[dict]:
    """``(batch, channel, [z,] y, x)`` with each space axis ``min + k·step`` (or fixed), and the
    voxel size the model was trained at (``spacing`` in ``unit``) where it is known."""
    names = ["raw"] if channels == 1 else [f"channel{c}" for c in range(channels)]
    axes: list[dict] = [{"type": "batch"} if dynamic_batch else {"type": "batch", "size": 1}]
    axes.append({"type": "channel", "channel_names": names})
    sizes = _pixel_size(spacing, unit, rule.spatial_dims)
    for axis, lo, step, px in zip(spatial_axis_ids(rule.spatial_dims), rule.min, rule.step, sizes):
        size = {"min": int(lo), "step": int(step)} if step else int(lo)
        axes.append({"type": "space", "id": axis, "size": size, **px})
    return axes


def output_axes(
    rule: SizeRule,
    class_names: Sequence[str],
    dynamic_batch: bool = True,
    spacing: Optional[Sequence[float]] = None,
    unit: Optional[str] = None,
) -> list:
    """``(batch, channel, [z,] y, x)`` sized as the input minus the rule's shrink per axis, on the
    input's voxel size."""
    axes: list[dict] = [{"type": "batch"} if dynamic_batch else {"type": "batch", "size": 1}]
    axes.append({"type": "channel", "channel_names": list(class_names)})
    sizes = _pixel_size(spacing, unit, rule.spatial_dims)
    for axis, shrink, px in zip(spatial_axis_ids(rule.spatial_dims), rule.shrink, sizes):
        ref = {"tensor_id": INPUT_ID, "axis_id": axis, "offset": -int(shrink)}
        axes.append({"type": "space", "id": axis, "size": ref, **px})
    return axes


def class_names(label_map: Optional[dict], num_classes: int) -> list[str]:
    """One name per output channel: the label map's names, else ``class<k>`` (value)."""
    names = list((label_map or {}).get("names") or [])
    values = list((label_map or {}).get("values") or [])
    k = max(num_classes, 1)
    out = []
    for c in range(k):
        cls = c + 1 if num_classes == 1 else c  # a sigmoid channel is the foreground class 1
        if cls < len(names):
            out.append(str(names[cls]))
        elif cls < len(values):
            out.append(f"class{cls} (value {values[cls]})")
        else:
            out.append(f"class{cls}")
    return out


def citations(preset: Optional[str], class_name: str, dims: int) -> list[dict]:
    """The papers of the architecture, by DOI: the U-Net always; 3D U-Net, UNet++, UNet 3+ by
    preset or class."""
    entries = [U_NET]
    if dims == 3:
        entries.append(U_NET_3D)
    key = f"{preset or ''} {class_name}".lower()
    if "unetpp" in key or "plusplus" in key:
        entries.append(UNET_PP)
    if "unet3plus" in key:
        entries.append(UNET_3PLUS)
    return [{"text": text, "doi": doi} for text, doi in entries]


# -- the sample, its prediction, the cover --------------------------------------------------------
def seeded_sample(shape: Sequence[int], channels: int, normalization: Optional[dict], seed: int):
    """A smooth seeded random image ``(C, *shape)`` float32 in the value range the normalisation
    expects (its window or statistics; 0…255 for per-image schemes)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    sigma = max(1.0, min(shape) / 12)
    base = np.stack(
        [ndimage.gaussian_filter(rng.standard_normal(tuple(shape)), sigma) for _ in range(channels)]
    )
    base = (base - base.min()) / max(float(np.ptp(base)), 1e-12)
    base = np.clip(base + 0.05 * rng.standard_normal(base.shape), 0, 1)
    norm = normalization or {}
    stats, params = norm.get("stats") or {}, norm.get("params") or {}
    column = (channels,) + (1,) * len(shape)
    if norm.get("name") == "zscore" and stats:
        mean = np.broadcast_to(np.asarray(stats["mean"], np.float64), (channels,))
        std = np.broadcast_to(np.asarray(stats["std"], np.float64), (channels,))
        image = mean.reshape(column) + std.reshape(column) * (base - 0.5) * 4
    elif (stats or params).get("low") is not None and (stats or params).get("high") is not None:
        src = stats if stats else params
        low = np.broadcast_to(np.asarray(src["low"], np.float64), (channels,)).reshape(column)
        high = np.broadcast_to(np.asarray(src["high"], np.float64), (channels,)).reshape(column)
        image = low + base * (high - low)
    else:
        image = base * 255
    return image.astype(np.float32)


def _centre_crop(image: np.ndarray, size: Sequence[int], path: Any) -> np.ndarray:
    shape = image.shape[1:]
    if any(s < t for s, t in zip(shape, size)):
        raise DataError(
            f"the sample image {'×'.join(map(str, shape))} is smaller than the test size "
            f"{'×'.join(map(str, size))} this model needs; give a larger sample",
            path,
        )
    starts = [(s - t) // 2 for s, t in zip(shape, size)]
    return image[(slice(None), *(slice(a, a + t) for a, t in zip(starts, size)))]


#: ``sample`` value that takes the sample from the run's own images (:func:`run_sample`)
RUN_SAMPLE = "run"
#: run images tried for that sample (the first that fits is taken)
RUN_SAMPLES_TRIED = 20


def run_sample(checkpoint: Any, size: Sequence[int], channels: int) -> Optional[np.ndarray]:
    """The first of the run's own validation (then training) images with the model's channels
    and at least ``size`` on every axis, for the package's test tensors and cover: a real image
    shows what the model does, where a random one shows noise. Only when asked for
    (``sample="run"``): a package for public upload would otherwise carry a crop of the user's
    data (a patient's scan) unasked. ``None`` when the checkpoint is not in its run folder any
    more, or no image fits."""
    from ..data.reading import is_grey_as_colour, read_case_image
    from .quantize import run_images

    if not isinstance(checkpoint, (str, Path)):
        return None
    try:
        sources = run_images(checkpoint)
    except UnetkitError:
        return None
    for case in [*sources.validation, *sources.calibration][:RUN_SAMPLES_TRIED]:
        try:
            image = read_case_image(case)[0]
        except UnetkitError:
            continue
        if channels == 1 and is_grey_as_colour(image):
            image = image[:1]  # grey saved as RGB, as predict reads it
        fits = image.ndim == len(size) + 1 and image.shape[0] == channels
        if fits and all(s >= t for s, t in zip(image.shape[1:], size)):
            return image
    return None


def _sample_image(
    sample, size, channels: int, normalization: Optional[dict], seed: int, checkpoint: Any = None
):
    """The test input ``(C, *size)`` float32: the caller's image (array or file, centre-cropped),
    one of the run's images for ``"run"`` (:func:`run_sample`), else :func:`seeded_sample`."""
    if sample is None:
        return seeded_sample(size, channels, normalization, seed)
    if isinstance(sample, str) and sample == RUN_SAMPLE:
        sample = run_sample(checkpoint, size, channels)
        if sample is None:
            raise DataError(
                f"--sample run: no image of the run has {channels} channel(s) and at least "
                f"{'×'.join(map(str, size))} pixels, or the run folder (config.yaml, splits.json) "
                "and its data are not beside the checkpoint; give --sample IMAGE",
                checkpoint if isinstance(checkpoint, (str, Path)) else "checkpoint",
            )
    where: Any = "sample"
    if isinstance(sample, (str, Path)):
        from ..io import read_image

        where, sample = sample, read_image(sample)[0]
    image = np.asarray(sample, dtype=np.float32)
    if image.ndim != len(size) + 1 or image.shape[0] != channels:
        raise DataError(
            f"the sample must be an image ({channels}, {', '.join('…' * len(size))}) for this "
            f"{len(size)}D model with {channels} channel(s), got shape {image.shape}",
            where,
        )
    return np.ascontiguousarray(_centre_crop(image, size, where))


def _probabilities(module, normalizer, raw: np.ndarray, num_classes: int) -> np.ndarray:
    """What the package promises for ``raw`` ``(C, *S)``: unetkit's normaliser, the traced graph,
    then softmax over classes (sigmoid for one channel): ``(K, *out)`` float32."""
    x = normalizer(raw) if normalizer is not None else raw
    with torch.inference_mode():
        logits = module(torch.from_numpy(np.ascontiguousarray(x, np.float32))[None]).float()[0]
    probs = torch.sigmoid(logits) if num_classes == 1 else torch.softmax(logits, dim=0)
    return probs.numpy().astype(np.float32)


def cover_image(raw: np.ndarray, labels: np.ndarray, min_height: int = 256) -> np.ndarray:
    """The sample and its predicted labels side by side: ``(H, 2W, 3)`` uint8 (3D: middle slice),
    enlarged by a whole factor to at least ``min_height`` rows (pixels kept sharp)."""
    from ..io.display import to_display_rgb
    from .outputs import overlay_image

    if labels.ndim == 3:
        mid = labels.shape[0] // 2
        raw, labels = raw[:, mid], labels[mid]
    if raw.shape[1:] != labels.shape:  # valid padding: the labels cover the centre only
        top = [(s - t) // 2 for s, t in zip(raw.shape[1:], labels.shape)]
        raw = raw[:, top[0] : top[0] + labels.shape[0], top[1] : top[1] + labels.shape[1]]
    picture = np.concatenate([to_display_rgb(raw), overlay_image(raw, labels)], axis=1)
    factor = max(1, math.ceil(min_height / picture.shape[0]))
    return np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1)


# -- the README ---------------------------------------------------------------------------------
def _describe_preprocessing(steps: list[dict]) -> str:
    if not steps:
        return "none (the model takes the image values as they are)"
    parts = []
    for s in steps:
        kw = s.get("kwargs", {})
        if s["id"] == "zero_mean_unit_variance":
            parts.append("zero mean, unit variance per channel over each image")
        elif s["id"] == "scale_range":
            parts.append(
                f"percentiles {kw['min_percentile']:g} … {kw['max_percentile']:g} of each image "
                "per channel → 0 … 1"
            )
        elif s["id"] == "scale_linear":
            parts.append(f"x · {kw['gain']} + {kw['offset']}")
        elif s["id"] == "clip":
            parts.append(f"clip to [{kw['min']:g}, {kw['max']:g}]")
    return "; then ".join(parts)


def _readme(
    *,
    name,
    description,
    meta,
    rule,
    class_names,
    preprocessing,
    opset,
    training,
    cite,
    sample_origin="a seeded synthetic sample image",
) -> str:
    """The package's documentation (markdown): what, trained on what, how to use, how validated."""
    lines = [f"# {name}", "", description, "", "## Model", ""]
    model = meta["model"]
    lines += [
        f"- Architecture: `{model.get('preset') or model.get('class')}` ({model.get('class')}, "
        f"{meta['spatial_dims']}D), trained with unetkit {meta['unetkit_version']}.",
        f"- Input `{INPUT_ID}`: {meta['in_channels']} channel(s), float32; spatial size "
        f"{rule.describe()}.",
        f"- Output `{OUTPUT_ID}`: one channel per class ({', '.join(class_names)}), "
        + (
            "the same size as the input."
            if not any(rule.shrink)
            else f"smaller than the input by {'×'.join(map(str, rule.shrink))} px (valid "
            "convolutions: the output covers the input's centre; pad the image by half of that "
            "on each side, mirrored, to predict it whole)."
        ),
        f"- Preprocessing: {_describe_preprocessing(preprocessing)}.",
        "- Postprocessing: "
        + (
            "sigmoid (probability of the foreground)."
            if meta["num_classes"] == 1
            else "softmax over the classes; the label of a pixel is its most probable class."
        ),
        f"- Weights: TorchScript (traced, PyTorch {torch.__version__}) and ONNX (opset "
        f"{opset}), checked against the PyTorch model when exported.",
    ]
    label_map = meta.get("label_map") or {}
    if label_map.get("values"):
        pairs = ", ".join(
            f"class {k} → {v}" for k, v in enumerate(label_map["values"][: meta["num_classes"]])
        )
        lines.append(f"- Label map (class → mask value): {pairs}.")
    lines += ["", "## Training data", ""]
    lines += [f"- {line}" for line in training] or ["- Not recorded in the checkpoint."]
    lines += [
        "",
        "## How to use",
        "",
        "Fiji / deepImageJ: install the zip with *Plugins › DeepImageJ › DeepImageJ Install Model* "
        "(from a file), then open an image and run *DeepImageJ Run*; deepImageJ runs the "
        "TorchScript weights. Give a tile size the model accepts (above).",
        "",
        "ilastik: the *Neural Network Classification* workflow loads bioimage.io models (ilastik "
        "1.4 or later); choose this zip.",
        "",
        "QuPath: with the Deep Java Library and Bioimage Model Zoo extensions, *Extensions › "
        "Bioimage Model Zoo › Create pixel classifier* and choose the unzipped `rdf.yaml` "
        "(TorchScript weights). QuPath tiles large images and computes per-image statistics per "
        "tile, so models normalised per image can differ there; dataset statistics or a fixed "
        "window do not.",
        "",
        "Python: `bioimageio.core.predict(model='this.zip', inputs=image)` for one image, or "
        "`unetkit predict this.zip images/ --output preds` for tiled prediction of any size "
        "with label files in the training masks' values.",
        "",
        "## Validation",
        "",
        f"The test tensors hold {sample_origin} and this model's output for it, computed "
        "with unetkit's own normalisation; `bioimageio.core.test_model` recomputed them from the "
        "package (both weight formats) when the package was written. To validate on your data: "
        "`unetkit predict this.zip images/ --output preds --truth masks/` (Dice, IoU and more "
        "per class).",
        "",
        "## Citations",
        "",
        *[f"- {c['text']}. doi:{c['doi']}" for c in cite],
        "",
    ]
    return "\n".join(lines)


def _training_lines(ckpt: dict) -> list[str]:
    """The data fingerprint (when the run was planned) and the best validation record."""
    extra = ckpt.get("extra") if isinstance(ckpt.get("extra"), dict) else {}
    lines: list[str] = []
    fingerprint = ((extra.get("plan") or {}) if isinstance(extra.get("plan"), dict) else {}).get(
        "fingerprint"
    )
    if fingerprint:
        from ..data.fingerprint import Fingerprint

        with contextlib.suppress(UnetkitError, TypeError, KeyError, ValueError):
            lines += Fingerprint.from_dict(fingerprint).describe()
    best = extra.get("best") if isinstance(extra.get("best"), dict) else None
    if best and best.get("value") is not None:
        lines.append(
            f"best validation {best.get('metric', 'value')} {best['value']:.4g} at epoch "
            f"{best.get('epoch')}"
        )
    return lines


# -- export ------------------------------------------------------------------------------------
@dataclass
class BioimageioReport:
    """What :func:`export_bioimageio` wrote.

    Attributes:
        path: the package (``.zip``).
        file_size: bytes.
        rdf: the description as written (``rdf.yaml`` content, before the spec library adds its
            ``ensure_dtype`` steps and the files' sha256).
        rule: the exported graph's size rule (the input axes' ``min + k·step``).
        test_shape: input test tensor shape ``(1, C, *S)``.
        checks: ``(format, export.SizeCheck)``: the two exports compared with PyTorch.
        test_status: ``passed`` / ``failed`` from ``bioimageio.core.test_model`` (``None``
            without ``check``).
        test_summary: that test's ``ValidationSummary`` (its ``details`` name each subtest).
        notes: remarks worth printing.
    """

    path: Path
    file_size: int
    rdf: dict
    rule: SizeRule
    test_shape: tuple
    checks: list = field(default_factory=list)
    test_status: Optional[str] = None
    test_summary: Any = None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """A few lines for the CLI."""
        inp, out = self.rdf["inputs"][0], self.rdf["outputs"][0]
        space = [a["id"] for a in inp["axes"] if a["type"] == "space"]
        steps = [p["id"] for p in inp["preprocessing"]] or ["none"]
        lines = [
            f"wrote {self.path} ({self.file_size / 1024:.1f} KB, bioimage.io model "
            f"{self.rdf['format_version']}: TorchScript + ONNX weights)",
            f"input  {INPUT_ID}: (batch, {len(inp['axes'][1]['channel_names'])}, "
            f"{', '.join(space)}) float32, sizes {self.rule.describe()}; preprocessing: "
            f"{', '.join(steps)}",
            f"output {OUTPUT_ID}: (batch, {len(out['axes'][1]['channel_names'])}, "
            f"{', '.join(space)}) = input size"
            + (f" − {'×'.join(map(str, self.rule.shrink))}" if any(self.rule.shrink) else "")
            + f"; postprocessing: {out['postprocessing'][0]['id']}",
            f"test tensors {'×'.join(map(str, self.test_shape))}, cover, README.md, "
            f"{len(self.rdf['cite'])} citation(s), license {self.rdf['license']}, authors "
            f"{', '.join(a['name'] for a in self.rdf['authors'])}",
        ]
        for fmt, c in self.checks:
            lines.append(f"check {fmt} vs PyTorch (fp32), {c.describe()}")
        if self.test_status is None:
            lines.append("bioimage.io test skipped (--no-check)")
        else:
            lines.append(f"bioimageio.core test_model: {self.test_status} (torchscript, onnx)")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _checked_authors(authors: Optional[Sequence[str]]) -> list[dict]:
    if authors is None:
        try:
            authors = [getpass.getuser()]
        except Exception:  # no login name in this environment
            authors = ["unknown"]
    out = []
    for name in authors:
        name = str(name).strip()
        if not name or "/" in name:
            raise ConfigError(f"author {name!r}: give a name without '/' (e.g. 'Ada Lovelace')")
        out.append({"name": name})
    if not out:
        raise ConfigError("give at least one author")
    return out


def _checked_license(license: str) -> str:
    from bioimageio.spec.model.v0_5 import LicenseId

    try:
        LicenseId(license)
    except Exception:
        raise ConfigError(
            f"license {license!r} is not an SPDX identifier bioimage.io accepts (e.g. CC-BY-4.0, "
            "MIT, BSD-3-Clause, Apache-2.0)"
        ) from None
    return license


def _checked_name(name: str) -> str:
    import string

    allowed = set(string.ascii_letters + string.digits + "_+- ()")
    if not 5 <= len(name) <= 128 or not set(name) <= allowed:
        raise ConfigError(
            f"model name {name!r}: 5 to 128 letters, digits, spaces and _+-() only "
            "(bioimage.io's rule)"
        )
    return name


def _export_both(model, folder: Path, input_size, opset, check, threads, meta, output):
    """The TorchScript and ONNX exports of ``model`` (each checked against PyTorch unless ``check``
    is off); a model either exporter cannot trace is refused with one line."""
    exporters = {
        "TorchScript": lambda: export_torchscript(
            model, folder / TORCHSCRIPT_FILE, input_size, check, metadata=meta
        ),
        "ONNX": lambda: export_onnx(
            model,
            folder / ONNX_FILE,
            input_size,
            opset,
            check=check,
            metadata=meta,
            threads=threads,
        ),
    }
    reports = {}
    for fmt, export in exporters.items():
        try:
            reports[fmt] = export()
        except ExportCheckError as exc:
            detail = str(exc).split(": ", 1)[-1].replace("; the file was not written", "")
            raise ExportCheckError(f"{output}: {detail}; nothing was written") from None
        except UnetkitError:
            raise
        except Exception as exc:  # tracing or the ONNX exporter failing on an operation
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            name = getattr(model, "preset", None) or type(model).__name__
            raise ConfigError(
                f"{name} cannot be exported to {fmt} ({type(exc).__name__}: {first}); a bioimage.io "
                "package needs both TorchScript and ONNX weights"
            ) from None
    return reports["TorchScript"], reports["ONNX"]


def _test_size(rule: SizeRule, dynamic: bool, example: Sequence[int]) -> tuple[int, ...]:
    if not dynamic:
        return tuple(example)
    cap = TEST_SIZE_CAP[rule.spatial_dims]
    return rule.at_most([min(int(e), cap) for e in example])


def _first_problem(summary) -> str:
    """The first error of a bioimage.io validation summary, on one line."""
    for detail in summary.details:
        for err in detail.errors:
            loc = ".".join(str(p) for p in err.loc)
            msg = " ".join(str(err.msg).split())[:300]
            return f"{detail.name}: {loc + ': ' if loc else ''}{msg}"
    return f"status {summary.status}"


@contextlib.contextmanager
def _keep_global_state():
    """bioimageio.core's test seeds numpy and torch and sets torch's determinism flag; put the
    caller's back afterwards."""
    from ..checkpoint import rng_state, set_rng_state

    state = rng_state()
    flags = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    try:
        yield
    finally:
        set_rng_state(state)
        now = (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        )
        if now != flags:
            torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])


def test_package(path: Union[str, Path], weight_format: Optional[str] = None):
    """``bioimageio.core.test_model`` on a package (offline; the caller's RNG and torch flags are
    restored): the validation summary (``.status`` is ``passed`` or ``failed``)."""
    require_bioimageio("bioimageio.core")
    from bioimageio.core import test_model

    with _keep_global_state():
        return test_model(str(path), weight_format=weight_format)


test_package.__test__ = False  # a library function, not a pytest test


def _refuse_resampling(data: dict) -> None:
    """A bioimage.io package runs the network on the image as it comes: a model that resamples
    (``data.scale``, ``data.target_spacing``) or turns (``data.orientation``) its inputs first is
    refused, in one line saying what to do instead."""
    scale, target, orientation = (
        data.get("scale"),
        data.get("target_spacing"),
        data.get("orientation"),
    )
    if scale is not None and any(float(s) != 1.0 for s in np.atleast_1d(scale)):
        raise ConfigError(
            f"the model works at {scale} of the stored resolution (data.scale); a bioimage.io "
            "package cannot resample its input, so export is refused (retrain with data.scale "
            "unset, or resample the images before using the model)"
        )
    if target is not None:
        raise ConfigError(
            f"the model works at voxel size {target} (data.target_spacing) and resamples each image "
            "to it; a bioimage.io package cannot resample its input, so export is refused (export "
            "ONNX instead: unetkit predict model.onnx resamples)"
        )
    if orientation is not None:
        raise ConfigError(
            f"the model works on volumes turned to orientation {orientation} (data.orientation); "
            "a bioimage.io package cannot turn its input, so export is refused (export ONNX "
            "instead, whose predictor turns each volume and its outputs back)"
        )


def export_bioimageio(
    checkpoint: Union[str, Path, dict],
    output: Union[str, Path],
    *,
    input_size=None,
    authors: Optional[Sequence[str]] = None,
    license: str = DEFAULT_LICENSE,
    name: Optional[str] = None,
    description: Optional[str] = None,
    tags: Sequence[str] = (),
    sample: Union[np.ndarray, str, Path, None] = None,
    opset: int = 17,
    check: bool = True,
    threads: Optional[int] = None,
    seed: int = SAMPLE_SEED,
) -> BioimageioReport:
    """Write a checkpoint as a bioimage.io model package (spec 0.5, TorchScript + ONNX weights).

    Args:
        checkpoint: a unetkit checkpoint path or a loaded checkpoint dict.
        output: the ``.zip`` to write (atomically: a failure leaves no file).
        input_size: spatial size the weights are traced at (int or one per axis; default the
            training patch size, rounded down to an exportable size); also the test tensors' size
            for a graph fixed to it, else at most 256 (2D) / 64 (3D) per axis.
        authors: author names (default: the login name).
        license: SPDX identifier of the weights' licence (default ``CC-BY-4.0``).
        name, description, tags: shown on bioimage.io (defaults describe the model).
        sample: an image ``(C, *spatial)`` or an image file for the test tensors and the cover
            (centre-cropped to the test size); default the first of the run's validation (then
            training) images large enough for ``"run"`` (:func:`run_sample`); default a smooth
            seeded random image in the normalisation's range.
        opset: ONNX opset.
        check: compare each export with PyTorch (as ``unetkit export`` does) and run
            ``bioimageio.core.test_model`` on the package before it is renamed into place.
        threads: onnxruntime threads for the ONNX check.
        seed: seed of the default sample.

    Returns:
        A :class:`BioimageioReport`.

    Raises:
        ConfigError: bioimageio is not installed; a normalisation, resolution change or model the
            format cannot express; a bad name, author or licence.
        DataError: the checkpoint is missing or damaged; the sample is too small.
        ExportCheckError: an export differs from PyTorch or the bioimage.io test failed.
        OutputError: ``output`` cannot be written.
    """
    from ..checkpoint import build_model, load_checkpoint
    from ..data.normalization import Normalizer
    from .predictor import _spacing_unit, _trained_spacing

    spec = require_bioimageio("bioimageio.core", "onnx", "onnxruntime")
    output = Path(output)
    if output.suffix.lower() != ".zip":
        raise ConfigError(f"a bioimage.io package is a .zip file, got {output}")
    check_output_file(output)
    authors_rdf = _checked_authors(authors)
    license = _checked_license(license)
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    _refuse_resampling((ckpt.get("config") or {}).get("data") or {})
    model = build_model(ckpt, None if isinstance(checkpoint, dict) else checkpoint)
    dims, channels = int(model.spatial_dims), int(model.in_channels)
    num_classes = int(model.num_classes)
    preprocessing = preprocessing_for(ckpt.get("normalization"), channels, dims)
    preset = getattr(model, "preset", None) or (ckpt.get("model") or {}).get("preset")
    label = preset or type(model).__name__
    name = _checked_name(name or f"unetkit {label} {dims}D {max(num_classes, 2)} classes")
    meta_in = {
        "label_map": ckpt.get("label_map"),
        "normalization": ckpt.get("normalization"),
        "patch_size": ckpt.get("patch_size"),
        # the voxel size a model trained as stored was trained at: unetkit predict resamples
        # images far from it, and the axes state it for other consumers
        "trained_spacing": _trained_spacing(ckpt),
        "spacing_unit": _spacing_unit(ckpt),
        "postprocess": (ckpt.get("extra") or {}).get("postprocess"),
    }
    with tempfile.TemporaryDirectory(prefix="unetkit-bioimageio-") as folder:
        tmp = Path(folder)
        ts, ox = _export_both(model, tmp, input_size, opset, check, threads, meta_in, output)
        meta = json.loads(json.dumps(ox.metadata, default=json_default))
        dynamic = ts.dynamic_spatial and ox.dynamic_spatial
        dynamic_batch = ts.dynamic_batch and ox.dynamic_batch
        rule = SizeRule.from_dict(meta["valid_input_size"], dims)
        if not dynamic:
            rule = rule.fixed(ox.example_size)
        size = _test_size(rule, dynamic, ox.example_size)
        raw = _sample_image(sample, size, channels, ckpt.get("normalization"), seed, checkpoint)
        normalizer = (
            Normalizer.from_dict(ckpt["normalization"]) if ckpt.get("normalization") else None
        )
        module, _ = load_torchscript(ts.path)
        probs = _probabilities(module, normalizer, raw, num_classes)
        labels = (probs[0] > 0.5).astype(np.int64) if num_classes == 1 else probs.argmax(0)
        names = class_names(meta.get("label_map"), num_classes)
        cite = citations(preset, type(model).__name__, dims)
        description = description or (
            f"{label} ({dims}D) semantic segmentation into {max(num_classes, 2)} classes "
            f"({', '.join(class_names(meta.get('label_map'), max(num_classes, 2)))}), trained "
            "with unetkit."
        )
        _write_files(tmp, raw, probs, labels)
        postprocess = (ckpt.get("extra") or {}).get("postprocess")
        config = {
            **meta,
            "format": PACKAGE_FORMAT,
            "format_version": PACKAGE_FORMAT_VERSION,
            "postprocess": postprocess,
        }
        rdf = _rdf(
            name=name,
            description=description,
            authors=authors_rdf,
            cite=cite,
            license=license,
            tags=["unet", "pytorch", f"{dims}d", "semantic-segmentation", "unetkit", *tags],
            inputs=input_axes(
                rule, channels, dynamic_batch, meta_in["trained_spacing"], meta_in["spacing_unit"]
            ),
            outputs=output_axes(
                rule, names, dynamic_batch, meta_in["trained_spacing"], meta_in["spacing_unit"]
            ),
            preprocessing=preprocessing,
            postprocessing=postprocessing_for(num_classes),
            opset=opset,
            config=config,
        )
        readme = _readme(
            name=name,
            description=description,
            meta=meta,
            rule=rule,
            class_names=names,
            preprocessing=preprocessing,
            opset=opset,
            training=_training_lines(ckpt),
            cite=cite,
            sample_origin=(
                "a seeded synthetic sample image"
                if sample is None
                else "a crop of one of the training run's own images"
                if isinstance(sample, str) and sample == RUN_SAMPLE
                else "a crop of an image given at export"
            ),
        )
        (tmp / "README.md").write_text(readme, encoding="utf-8")
        descr = _validated(rdf, tmp, output)
        with atomic_path(output) as tmp_zip:
            spec.save_bioimageio_package(descr, output_path=tmp_zip)
            summary = None
            if check:
                summary = test_package(tmp_zip)
                if summary.status != "passed":
                    raise ExportCheckError(
                        f"{output}: bioimageio.core test_model failed ({_first_problem(summary)}); "
                        "nothing was written"
                    )
    notes = []
    if authors is None:
        notes.append(f"author defaults to the login name {authors_rdf[0]['name']!r}; give --author")
    return BioimageioReport(
        path=output,
        file_size=output.stat().st_size,
        rdf=rdf,
        rule=rule,
        test_shape=(1, *raw.shape),
        checks=[("TorchScript", c) for c in ts.checks] + [("ONNX", c) for c in ox.checks],
        test_status=None if summary is None else summary.status,
        test_summary=summary,
        notes=notes,
    )


def _rdf(*, tags, inputs, outputs, preprocessing, postprocessing, opset, config, **fields) -> dict:
    """The ``rdf.yaml`` content (file names as :func:`_write_files` writes them); ``fields``:
    name, description, authors, cite, license."""
    from bioimageio.spec.model.v0_5 import ModelDescr

    return {
        "format_version": ModelDescr.implemented_format_version,
        "type": "model",
        **fields,
        "tags": list(dict.fromkeys(tags)),
        "documentation": {"source": "README.md"},
        "covers": [{"source": "cover.png"}],
        "inputs": [
            {
                "id": INPUT_ID,
                "axes": inputs,
                "test_tensor": {"source": "test_input.npy"},
                "sample_tensor": {"source": "sample_input.tif"},
                "preprocessing": preprocessing,
            }
        ],
        "outputs": [
            {
                "id": OUTPUT_ID,
                "axes": outputs,
                "test_tensor": {"source": "test_output.npy"},
                "sample_tensor": {"source": "sample_output.tif"},
                "postprocessing": postprocessing,
            }
        ],
        "weights": {
            "torchscript": {
                "source": TORCHSCRIPT_FILE,
                "pytorch_version": str(torch.__version__).split("+")[0],
                "comment": "traced with torch.jit.trace (unetkit export)",
            },
            "onnx": {
                "source": ONNX_FILE,
                "opset_version": int(opset),
                "parent": "torchscript",
                "comment": "exported from the same PyTorch model (torch.onnx.export)",
            },
        },
        "config": {"unetkit": jsonable(config)},
    }


def _write_files(folder: Path, raw: np.ndarray, probs: np.ndarray, labels: np.ndarray) -> None:
    """Test tensors (``.npy``, with the batch axis), sample tensors (TIFF) and the cover (PNG)."""
    import tifffile
    from PIL import Image

    np.save(folder / "test_input.npy", raw[None].astype(np.float32))
    np.save(folder / "test_output.npy", probs[None].astype(np.float32))
    for name, array in (("sample_input.tif", raw), ("sample_output.tif", probs)):
        array = array[0] if array.shape[0] == 1 else array
        tifffile.imwrite(folder / name, array, photometric="minisblack")
    Image.fromarray(cover_image(raw, labels)).save(folder / "cover.png")


def _validated(rdf: dict, folder: Path, output: Path):
    """The description built and validated by bioimageio.spec (files read from ``folder``)."""
    from bioimageio.spec import ValidationContext, build_description

    context = ValidationContext(root=folder, perform_io_checks=True)
    descr = build_description(json.loads(json.dumps(rdf)), context=context)
    if descr.validation_summary.status == "failed" or type(descr).__name__ == "InvalidDescr":
        raise ExportCheckError(
            f"{output}: the bioimage.io description does not validate "
            f"({_first_problem(descr.validation_summary)}); nothing was written"
        )
    return descr


# -- reading a package ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Package:
    """A bioimage.io model package that unetkit can run, as read by :func:`load_package`.

    Attributes:
        path: the ``.zip``.
        descr: the bioimageio.spec model description (converted to the latest format).
        config: ``config.unetkit`` of a package unetkit wrote (``None`` for a foreign one).
        input_axes, output_axes: the tensors' axis ids in order (batch, channel, space…).
        in_channels, num_classes: channel counts of the input and the output.
        rule: the accepted spatial input sizes and the output shrink, from the axes.
        dynamic_batch: whether the batch axis takes any size.
        halo: pixels the package says to crop from each side of an output tile (0: none).
        activation: ``softmax`` or ``sigmoid`` (the output postprocessing, applied by unetkit).
    """

    path: Path
    descr: Any
    config: Optional[dict]
    input_axes: tuple
    output_axes: tuple
    in_channels: int
    num_classes: int
    rule: SizeRule
    dynamic_batch: bool
    halo: int
    activation: str

    @property
    def ours(self) -> bool:
        """Written by unetkit (its ``config.unetkit`` rebuilds normalisation and label map)."""
        return self.config is not None

    @property
    def spatial_dims(self) -> int:
        return self.rule.spatial_dims


def check_package_file(path: Union[str, Path]) -> Path:
    """Standard-library checks of a package file: it exists, is a zip, holds an ``rdf.yaml``.

    Raises:
        DataError: naming the file and what is wrong with it.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            "bioimage.io package not found" if not path.exists() else "is not a file", path
        )
    hint = "give the .zip of a bioimage.io model ('unetkit export --format bioimageio' writes one)"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        reason = "not a zip file" if isinstance(exc, zipfile.BadZipFile) else str(exc)
        raise DataError(f"not a bioimage.io package ({reason}); {hint}", path) from None
    if not any(n in RDF_NAMES or n.endswith(".bioimageio.yaml") for n in names):
        raise DataError(
            f"not a bioimage.io package: the zip holds no rdf.yaml (nor bioimageio.yaml); {hint}",
            path,
        )
    return path


def _tensor_layout(tensor, path: Path, what: str) -> tuple[tuple, list]:
    """Axis ids and the space axes of a (batch, channel, space…) tensor, else a DataError."""
    axes = list(tensor.axes)
    kinds = [a.type for a in axes]
    space = kinds[2:]
    if kinds[:2] != ["batch", "channel"] or set(space) != {"space"} or len(space) not in (2, 3):
        raise DataError(
            f"the {what} '{tensor.id}' has axes ({', '.join(f'{a.id}:{a.type}' for a in axes)}); "
            "unetkit tiles (batch, channel, y, x) or (batch, channel, z, y, x) tensors only",
            path,
        )
    return tuple(str(a.id) for a in axes), axes[2:]


def _activation(output, num_classes: int, path: Path) -> str:
    from bioimageio.spec.model import v0_5

    steps = [p for p in output.postprocessing if not isinstance(p, v0_5.EnsureDtypeDescr)]
    if len(steps) == 1 and isinstance(steps[0], v0_5.SoftmaxDescr) and num_classes >= 2:
        channel = next(a.id for a in output.axes if a.type == "channel")
        if steps[0].kwargs.axis == channel:
            return "softmax"
    if len(steps) == 1 and isinstance(steps[0], v0_5.SigmoidDescr) and num_classes == 1:
        return "sigmoid"
    found = ", ".join(p.id for p in steps) or "none"
    raise DataError(
        f"the output's postprocessing is [{found}] over {num_classes} channel(s); unetkit runs "
        "packages whose output is class scores followed by a softmax over the channels, or a "
        "sigmoid of one channel",
        path,
    )


def _rule_from_axes(in_space: list, out_space: list, input_id: str, path: Path):
    """(SizeRule, halo) from the space axes: input ``min + k·step`` (or fixed), output = input +
    offset (shrink = −offset) at the same scale."""
    from bioimageio.spec.model import v0_5

    mins, steps, shrinks, halos = [], [], [], []
    for a_in, a_out in zip(in_space, out_space):
        size = a_in.size
        if isinstance(size, int):
            lo, step = int(size), 0
        elif isinstance(size, v0_5.ParameterizedSize):
            lo, step = int(size.min), int(size.step)
        else:
            raise DataError(
                f"input axis {a_in.id} is sized by another tensor; unetkit tiles axes of a fixed "
                "or parameterised size only",
                path,
            )
        ref = a_out.size
        if isinstance(ref, v0_5.SizeReference):
            same = str(ref.tensor_id) == input_id and str(ref.axis_id) == str(a_in.id)
            if not same or a_out.scale != a_in.scale or ref.offset > 0:
                raise DataError(
                    f"output axis {a_out.id} is not the input axis {a_in.id} minus a border "
                    f"({ref.tensor_id}.{ref.axis_id}, offset {ref.offset}, scale {a_out.scale}); "
                    "unetkit tiles outputs that cover the input pixel for pixel",
                    path,
                )
            shrink = -int(ref.offset)
        elif isinstance(ref, int) and step == 0 and ref <= lo:
            shrink = lo - int(ref)
        else:
            raise DataError(f"output axis {a_out.id} has size {ref!r}, not the input's", path)
        mins.append(lo)
        steps.append(step)
        shrinks.append(shrink)
        halos.append(int(getattr(a_out, "halo", 0) or 0))
    padding = "valid" if any(shrinks) else "same"
    periods = [max(s, 1) for s in steps]
    return SizeRule(padding, tuple(mins), tuple(steps), tuple(shrinks), tuple(periods)), max(halos)


def load_package(path: Union[str, Path]) -> Package:
    """Read a bioimage.io model package for :func:`package_predictor` (no weights loaded yet).

    The description is read offline (``perform_io_checks=False``: no URL is visited and no file
    hashed; the weights are read when :class:`PackageRunner` loads them); older format versions are
    converted to the latest.

    Raises:
        DataError: not a zip, no ``rdf.yaml``, an invalid description, not a model, or a model
            unetkit cannot tile (several inputs/outputs, other axes, another output activation);
            one line naming the file.
        ConfigError: bioimageio.spec is not installed.
    """
    path = check_package_file(path)
    require_bioimageio()
    from bioimageio.spec import load_description

    try:
        descr = load_description(path, format_version="latest", perform_io_checks=False)
    except Exception as exc:  # the spec library raises many types on a damaged archive
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise DataError(
            f"unreadable bioimage.io package ({type(exc).__name__}: {first})", path
        ) from None
    if descr.validation_summary.status == "failed" or type(descr).__name__ == "InvalidDescr":
        raise DataError(
            f"invalid bioimage.io package ({_first_problem(descr.validation_summary)})", path
        )
    if getattr(descr, "type", None) != "model":
        raise DataError(f"is a bioimage.io {getattr(descr, 'type', '?')}, not a model", path)
    if len(descr.inputs) != 1 or len(descr.outputs) != 1:
        raise DataError(
            f"the model has {len(descr.inputs)} inputs and {len(descr.outputs)} outputs; unetkit "
            "runs models with one input image and one output",
            path,
        )
    inp, out = descr.inputs[0], descr.outputs[0]
    input_axes, in_space = _tensor_layout(inp, path, "input")
    output_axes, out_space = _tensor_layout(out, path, "output")
    if len(in_space) != len(out_space):
        raise DataError("the input and the output have different space axes", path)
    rule, halo = _rule_from_axes(in_space, out_space, str(inp.id), path)
    num_classes = len(out.axes[1].channel_names)
    config = (getattr(descr.config, "model_extra", None) or {}).get("unetkit")
    if not (isinstance(config, dict) and config.get("format") == PACKAGE_FORMAT):
        config = None
    elif int(config.get("format_version", 0)) > PACKAGE_FORMAT_VERSION:
        raise DataError("written by a newer unetkit; upgrade unetkit to read it", path)
    return Package(
        path=path,
        descr=descr,
        config=config,
        input_axes=input_axes,
        output_axes=output_axes,
        in_channels=len(inp.axes[1].channel_names),
        num_classes=num_classes,
        rule=rule,
        dynamic_batch=getattr(inp.axes[0], "size", None) is None,
        halo=halo,
        activation=_activation(out, num_classes, path),
    )


#: Weight formats tried per ``--backend``, in order. ``pytorch_state_dict`` weights are never run:
#: loading them imports Python code shipped in the package (unetkit loads no code from model files).
BACKEND_WEIGHTS = {"torch": ("torchscript", "onnx"), "onnxruntime": ("onnx",)}


class PackageRunner:
    """A package's network (no pre- or postprocessing) as a :class:`Predictor` backend.

    Runs bioimageio.core's model adapter for the first weight format of ``BACKEND_WEIGHTS[backend]``
    the package holds: ``(B, C, *tile)`` float batch in, ``(B, K, *out)`` CPU float32 scores out.
    Like :class:`~unetkit.inference.export.OnnxRunner` it answers :meth:`size_rule`, so the tiler
    plans tiles the package accepts.

    Raises:
        DataError: the package holds no weights for ``backend``, or they fail to load.
        ConfigError: a device the backend cannot use.
    """

    def __init__(self, package: Package, backend: str = "torch", device: str = "auto"):
        from .. import runtime

        require_bioimageio("bioimageio.core")
        from bioimageio.core import create_model_adapter
        from bioimageio.core.digest_spec import get_member_id

        if backend not in BACKEND_WEIGHTS:
            raise ConfigError(
                f"backend must be one of {', '.join(BACKEND_WEIGHTS)}, got {backend!r}"
            )
        self.package, self.path = package, package.path
        present = [w for w in BACKEND_WEIGHTS[backend] if getattr(package.descr.weights, w, None)]
        if not present:
            held = [w for w, entry in package.descr.weights if entry is not None]
            raise DataError(
                f"holds {', '.join(held)} weights, none of which the {backend} backend runs "
                f"({', '.join(BACKEND_WEIGHTS[backend])})",
                self.path,
            )
        if backend == "onnxruntime":
            if device not in (None, "auto", "cpu"):
                raise ConfigError(f"--device {device} cannot be chosen for the onnxruntime backend")
            self.device, devices = torch.device("cpu"), ["CPUExecutionProvider"]
        else:
            self.device = runtime.resolve_device(device)
            devices = [str(self.device)]
        try:
            self.adapter = create_model_adapter(
                package.descr, devices=devices, weight_format_priority_order=present
            )
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise DataError(
                f"cannot load its {'/'.join(present)} weights ({type(exc).__name__}: {first})",
                self.path,
            ) from None
        adapter_name = type(self.adapter).__name__.lower()
        self.weights = next((w for w in present if w.split("_")[0] in adapter_name), present[0])
        self.input_member = get_member_id(package.descr.inputs[0])
        self.output_member = get_member_id(package.descr.outputs[0])
        self.spatial_dims = package.spatial_dims
        self.in_channels = package.in_channels
        self.num_classes = package.num_classes
        self.backend_name = (
            f"bioimage.io package, {self.weights} weights via bioimageio.core ({self.device})"
        )

    def eval(self) -> PackageRunner:
        """No-op, so a Predictor can hold the runner as its model."""
        return self

    def size_rule(self) -> SizeRule:
        return self.package.rule

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """``(B, C, *spatial)`` float batch → ``(B, K, *out)`` CPU float32 scores."""
        from bioimageio.core import Tensor

        if batch.dim() != self.spatial_dims + 2 or batch.shape[1] != self.in_channels:
            raise ConfigError(
                f"{self.path}: expected a batch (B, {self.in_channels}, *{self.spatial_dims} "
                f"spatial), got shape {tuple(batch.shape)}"
            )
        self.package.rule.check(list(batch.shape[2:]), what="this package", prefix=f"{self.path}: ")
        if not self.package.dynamic_batch and batch.shape[0] != 1:
            return torch.cat([self(batch[i : i + 1]) for i in range(batch.shape[0])])
        x = batch.detach().to("cpu", torch.float32).contiguous().numpy()
        try:
            out = self.adapter.forward(
                {self.input_member: Tensor.from_numpy(x, dims=self.package.input_axes)}
            )[self.output_member]
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise DataError(
                f"the package's network failed on input shape {tuple(x.shape)} "
                f"({type(exc).__name__}: {first})",
                self.path,
            ) from None
        y = out.transpose(list(self.package.output_axes)).to_numpy()
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))

    def __repr__(self) -> str:
        return f"PackageRunner({str(self.path)!r}, {self.weights}, sizes {self.package.rule.describe()})"


class PackagePreprocessing:
    """A foreign package's own preprocessing, computed by bioimageio.core on a whole image.

    It is the predictor's normaliser: applied before tiling, so per-image statistics (percentiles,
    mean and std) are those of the whole image, as bioimage.io computes them for a whole sample.
    Dataset statistics a package does not store are accumulated over the images seen
    (bioimageio.core's behaviour).
    """

    name = "bioimageio"

    def __init__(self, package: Package):
        require_bioimageio("bioimageio.core")
        from bioimageio.core.digest_spec import get_member_id
        from bioimageio.core.proc_setup import get_pre_and_postprocessing
        from bioimageio.core.stat_measures import SampleMeasureBase

        self.package = package
        descr = package.descr
        self.member = get_member_id(descr.inputs[0])
        self.steps = [p.id for p in descr.inputs[0].preprocessing if p.id != "ensure_dtype"]
        try:
            self._pre = get_pre_and_postprocessing(descr, dataset_for_initial_statistics=[]).pre
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise DataError(
                f"cannot set up its preprocessing {self.steps} ({type(exc).__name__}: {first})",
                package.path,
            ) from None
        from bioimageio.core.proc_setup import get_requried_measures

        self.per_image = any(
            isinstance(m, SampleMeasureBase) for m in get_requried_measures(descr).pre
        )

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """``(C, *spatial)`` raw image → ``(C, *spatial)`` float32, as the package preprocesses it."""
        from bioimageio.core import Sample, Tensor

        tensor = Tensor.from_numpy(np.asarray(image)[None], dims=self.package.input_axes)
        sample = Sample(members={self.member: tensor}, stat={}, id="image")
        self._pre(sample)
        out = sample.members[self.member].transpose(list(self.package.input_axes)).to_numpy()
        return np.asarray(out[0], dtype=np.float32)

    def to_dict(self) -> dict:
        """Refused: the preprocessing lives in the package, not in a unetkit scheme."""
        raise DataError(
            f"its preprocessing ({', '.join(self.steps) or 'none'}) is bioimage.io's own; images "
            "predicted band by band (over 64 Mpx) and ensembles need a unetkit normalisation, "
            "so predict such a package alone and on crops",
            self.package.path,
        )

    def __repr__(self) -> str:
        return f"PackagePreprocessing({', '.join(self.steps) or 'none'})"


def package_predictor(
    path: Union[str, Path],
    backend: str = "torch",
    device: str = "auto",
    precision: str = "auto",
    **kwargs,
):
    """A :class:`~unetkit.inference.predictor.Predictor` that runs a bioimage.io package.

    A unetkit package brings its normalisation, label map and post-processing (``config.unetkit``);
    a foreign one its own preprocessing (:class:`PackagePreprocessing`), class indices as labels and
    no post-processing. The network runs in fp32 (:class:`PackageRunner`); an output halo raises
    the tiles' least overlap to twice the halo. Keyword arguments go to ``Predictor`` (``tile``,
    ``tta``, ``postprocess`` …).

    Raises:
        DataError: a package that is unreadable or cannot be tiled (see :func:`load_package`).
        ConfigError: bioimageio is not installed, or a precision other than fp32.
    """
    from ..data.labels import LabelMap
    from ..data.normalization import Normalizer
    from .postprocess import PostProcessing
    from .predictor import DEFAULT_MIN_OVERLAP, Predictor

    if precision not in (None, "auto", "fp32"):
        raise ConfigError(
            f"a bioimage.io package runs in fp32; --precision {precision} is not available"
        )
    package = load_package(path)
    runner = PackageRunner(package, backend, device)
    if package.ours:
        cfg = package.config
        try:
            normalizer = (
                Normalizer.from_dict(cfg["normalization"]) if cfg.get("normalization") else None
            )
            label_map = LabelMap.from_dict(cfg["label_map"]) if cfg.get("label_map") else None
            postprocess = PostProcessing.from_dict(cfg.get("postprocess"))
        except (UnetkitError, TypeError, ValueError, KeyError) as exc:
            raise DataError(
                f"damaged config.unetkit ({exc}); export the package again", package.path
            ) from None
        kwargs.setdefault("trained_spacing", cfg.get("trained_spacing"))
        kwargs.setdefault("spacing_unit", cfg.get("spacing_unit"))
    else:
        normalizer, label_map, postprocess = PackagePreprocessing(package), None, PostProcessing()
    kwargs.setdefault("postprocess", postprocess)
    if package.halo and kwargs.get("min_overlap") is None:
        kwargs["min_overlap"] = max(DEFAULT_MIN_OVERLAP[package.spatial_dims], 2 * package.halo)
    return Predictor(
        runner,
        device=runner.device,
        precision="fp32",
        channels_last=False,
        runner=runner,
        normalizer=normalizer,
        label_map=label_map,
        **kwargs,
    )


__all__ = [
    "BioimageioReport",
    "Package",
    "PackagePreprocessing",
    "PackageRunner",
    "check_package_file",
    "export_bioimageio",
    "load_package",
    "package_predictor",
    "postprocessing_for",
    "RUN_SAMPLE",
    "preprocessing_for",
    "require_bioimageio",
    "test_package",
]

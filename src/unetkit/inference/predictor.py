"""The stateful half of inference: a model on a device at a precision, predicting whole images.

Tiling maths lives in :mod:`unetkit.inference.tiling`; this class decides how a batch of tiles goes
through the model (device, autocast dtype, memory format, test-time augmentation, backend) and which
tiling a model needs: overlap-tile (abutting output tiles, mirrored context) for valid-padding nets,
a sliding window for same-padding nets.

Tile plan (``tile=None``): per axis the fewest tiles of at most ``max_tile`` pixels that overlap by
at least ``min_overlap`` pixels, all of equal size, with tile sizes and steps multiples of the net's
pooling period (``2**depth``, the ``period`` of its :class:`~unetkit.models.geometry.SizeRule`) so
that every tile sees the pooling grid of the whole image. A 2048² image gets 4 × 4 tiles of 608² (1.41× the pixels of the image) instead of
7 × 7 tiles of 512² at 50 % overlap (3.1×); an image no larger than ``max_tile`` is one tile.
``max_tile`` 640 keeps a 64-wide U-Net's activations of one tile under ~0.4 GB on CPU even in fp32
(the decoder drops each map once used when autograd is off, :class:`~unetkit.models.decoders.unet.UNetDecoder`): larger
tiles repeat less of the overlap but hold more activations at once, so a 2048² image in 3 × 3 tiles
of 768² runs a little faster than in 4 × 4 of 608² at a markedly higher peak memory (BENCHMARKS.md,
"The tile plan's max_tile").

Stitching (``blend``): ``crop`` (default) takes each pixel from the one tile where it lies farthest
from an inner tile edge (≥ ``min_overlap / 2``), so where that margin exceeds the net's receptive
radius (94 px for a depth-4 U-Net) the result equals one forward pass over the whole image;
``gaussian`` blends as MONAI's ``sliding_window_inference`` does (σ = tile / 8); ``constant`` averages.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .. import runtime
from ..data.resample import (
    resample_image,
    resample_logits,
    scale_factors,
    scaled_shape,
    spacing_factors,
)
from ..errors import ConfigError, DataError, UnetkitError
from ..io.orientation import check_orientation
from ..models.fold import fold_batch_norm as fold_batch_norm_in_place
from ..models.geometry import SizeRule, size_rule_of
from ..utils import check_tile_settings, per_axis
from .postprocess import PostProcessing
from .tiling import TilePlan, choose_overlap_tile, predict_grid
from .tta import tta_transforms, with_tta

DEFAULT_MAX_TILE = {2: 640, 3: 128}
#: Valid-padding nets lose a 184 px border per tile (depth 4): larger tiles waste less of it.
DEFAULT_MAX_TILE_VALID = {2: 768, 3: 128}
DEFAULT_MIN_OVERLAP = {2: 128, 3: 32}
BLEND_MODES = ("crop", "gaussian", "constant")


def is_valid_padding(model: nn.Module) -> bool:
    """Whether the model's output is smaller than its input (the original U-Net)."""
    return size_rule_of(model, getattr(model, "spatial_dims", 2)).is_valid_padding


def plan_axis(size: int, max_tile: int, min_overlap: int, multiple: int = 1) -> tuple[int, int]:
    """``(tile, step)`` covering an axis of ``size`` with the fewest equal tiles of about ``max_tile``
    overlapping by ≥ ``min_overlap``; tile and step are multiples of ``multiple`` (the net's pooling
    period, so that every tile sees the whole image's pooling grid)."""

    def up(v: int) -> int:
        return int(math.ceil(v / multiple) * multiple)

    if size <= max_tile:
        return size, size  # one tile: the whole axis, as it is
    if min_overlap >= max_tile:
        raise ConfigError(f"min_overlap {min_overlap} must be smaller than the tile {max_tile}")
    n = math.ceil((size - min_overlap) / (max_tile - min_overlap))
    tile = up(math.ceil((size + (n - 1) * min_overlap) / n))
    while True:
        step = up(math.ceil((size - tile) / (n - 1)))
        if step <= tile - min_overlap:
            return tile, step
        tile += multiple


#: an image within this of the training images' voxel size on every axis is predicted as stored
#: (the plan trains cases within 10 % of their median as stored: planning.spacing.SPREAD)
TRAINED_SPACING_SPREAD = 0.1


def _fingerprint(ckpt: dict) -> Optional[dict]:
    """The data fingerprint of the plan a checkpoint keeps (``extra.plan.fingerprint``), or
    ``None``."""
    extra = ckpt.get("extra")
    plan = extra.get("plan") if isinstance(extra, dict) else None
    fp = plan.get("fingerprint") if isinstance(plan, dict) else None
    return fp if isinstance(fp, dict) else None


def _spacing_unit(ckpt: dict) -> Optional[str]:
    """The unit the training files stated their voxel size in (the plan's fingerprint, else the
    trainer's record of the cases' one unit), or ``None``: no unit stated, or several."""
    extra = ckpt.get("extra") if isinstance(ckpt.get("extra"), dict) else {}
    unit = (_fingerprint(ckpt) or {}).get("spacing_unit") or extra.get("spacing_unit")
    return unit if isinstance(unit, str) and unit else None


def spacing_for_model(
    predictor, spacing: Optional[Sequence[float]], unit: Optional[str], where=None
) -> Optional[tuple]:
    """An image's voxel size ``spacing`` (stated in ``unit``) as the model measures it: in the unit
    of its training files where both units are known (:func:`~unetkit.io.meta.convert_spacing`),
    so a scan in µm given to a model of mm-calibrated files is resampled by the true ratio.

    Raises:
        DataError: naming ``where``, when the voxel size differs from the model's (its target
            spacing, else the one it was trained at as stored) by more than
            :data:`~unetkit.io.meta.SPACING_RATIO_LIMIT` on some axis: almost always a wrong unit or calibration.
    """
    from ..io.meta import convert_spacing, far_off, spacing_ratio

    if spacing is None:
        return None
    spacing = convert_spacing(tuple(float(s) for s in spacing), unit, predictor.spacing_unit)
    model = predictor.target_spacing or getattr(predictor, "trained_spacing", None)
    if model is None or len(model) != len(spacing):
        return spacing
    off = far_off(spacing_ratio(spacing, model))
    if off:
        known = predictor.spacing_unit
        raise DataError(
            f"voxel size {'×'.join(f'{v:g}' for v in spacing)}{f' {known}' if known else ''} is "
            f"{off} than the model's {'×'.join(f'{v:g}' for v in model)}{f' {known}' if known else ''}: most "
            "likely a wrong unit or calibration in the file (or a napari layer's scale); correct "
            "it, or resample the image yourself",
            where,
        )
    return spacing


def _trained_spacing(ckpt: dict) -> Optional[list]:
    """The training images' voxel size from the plan a checkpoint keeps (its fingerprint), where
    the plan trained them as stored because they all lay within 10 % of it: every file stated a
    spacing, in one unit (named, in 2D), the smallest and largest within
    :data:`TRAINED_SPACING_SPREAD` of the median (planning.spacing's rule). ``None`` otherwise (no
    plan; files without a spacing or in mixed units, which the plan left as stored for that)."""
    fp = _fingerprint(ckpt)
    if fp is None:
        return None
    spacing, spread = fp.get("spacing"), fp.get("spacing_spread")
    if not isinstance(spacing, (list, tuple)) or not isinstance(spread, dict):
        return None
    try:
        spacing = [float(v) for v in spacing]
        low, high = [float(v) for v in spread["min"]], [float(v) for v in spread["max"]]
        every_file = int(spread["files"]) == int(fp["cases"])
    except (KeyError, TypeError, ValueError):
        return None
    units = spread.get("units") or []
    if not every_file or len(units) > 1 or (len(spacing) == 2 and not units):
        return None
    if not all(s > 0 for s in spacing) or len(low) != len(spacing) or len(high) != len(spacing):
        return None
    near = all(
        abs(v / s - 1) <= TRAINED_SPACING_SPREAD
        for lo, hi, s in zip(low, high, spacing)
        for v in (lo, hi)
    )
    return spacing if near else None


def check_image(image, predictor, path: Optional[Path] = None) -> np.ndarray:
    """The image the model can take, or a one-line :class:`DataError` (naming ``path`` when the
    image came from a file) that says the fix.

    Checked: an array at all (a path string gets "read it first"), not empty, real numbers, the
    model's dimensionality (a 2D ``(H, W)`` array or 3D ``(D, H, W)`` one given to a one-channel
    model gets its channel axis; a channels-last array is named as one), the channel count, and
    finite float values (a NaN pixel makes every logit NaN: an all-background answer). A grey image
    stored as RGB(A) (all colour channels equal) given to a 1-channel model is read as its first
    channel, the grey values, and a grey image given to a model trained on grey stored as RGB is
    copied into its three channels; a real colour image is refused."""
    from ..data.reading import is_grey_as_colour, require_finite

    model = predictor.model
    dims, in_ch = predictor.spatial_dims, getattr(model, "in_channels", None)
    image = _as_array(image, dims, path)
    if image.ndim == dims and in_ch == 1 and path is None and (dims == 2 or image.shape[0] > 1):
        image = image[None]  # an array without its channel axis: one channel is unambiguous
        # (not a (1, H, W) for a 3D model: a 2D image, far likelier than a one-slice volume)
    if image.ndim != dims + 1:
        from ..data.reading import (
            channels_last_hint,
            pages_as_channels_hint,
            slices_as_channels_hint,
        )

        want = "a 2D image (H, W)" if dims == 2 else "a 3D volume (D, H, W)"
        if path is not None:
            hint = (
                (
                    pages_as_channels_hint(image.shape[1:], path)
                    or (channels_last_hint(image.shape[1:], path) if dims == 2 else "")
                )
                if image.shape[0] == 1
                else slices_as_channels_hint(image.shape[0], path)
                if image.ndim == dims
                else ""
            )
        else:
            hint = f" (here: an array of shape (C, {'D, ' if dims == 3 else ''}H, W))"
        raise DataError(
            f"the model is {dims}D and expects {want} per channel, got an array of shape "
            f"{tuple(image.shape)} (channels first); give {dims}D inputs{hint}",
            path,
        )
    if in_ch is not None and image.shape[0] != in_ch:
        if in_ch == 1 and is_grey_as_colour(image):
            return image[:1]  # grey saved as RGB: every colour channel holds the grey value
        if in_ch == 3 and image.shape[0] == 1 and getattr(predictor, "grey_as_colour", False):
            return np.repeat(image, 3, axis=0)  # a model of grey-as-RGB images: the same planes
        last = image.shape[-1]
        if path is None and last <= 4 < image.shape[0]:  # (H, W, C): few channels at the end
            fix = (
                f"it looks channels-last ({last} channel(s) on its last axis): give "
                "numpy.moveaxis(image, -1, 0)"
            )
        else:
            fix = _channel_fix(in_ch, path, dims, image.shape[0])
        raise DataError(
            f"the model expects {in_ch} channel(s), the image has {image.shape[0]} (shape "
            f"{tuple(image.shape)}); {fix}",
            path,
        )
    require_finite(image, path)
    return image


def _as_array(image, dims: int, path: Optional[Path]) -> np.ndarray:
    """``image`` as a numpy array of real numbers, or a :class:`DataError` saying what it is."""
    shape = "(C, D, H, W)" if dims == 3 else "(C, H, W)"
    if image is None or isinstance(image, (str, bytes, os.PathLike)):
        raise DataError(
            f"expected an image array {shape}, got {type(image).__name__} {image!r}: read the "
            "file first (unetkit.io.read_image) or give files to predict_files",
            path,
        )
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    try:
        image = np.asarray(image)
    except (TypeError, ValueError) as exc:  # ragged nested lists
        raise DataError(
            f"expected an image array {shape}, got {type(image).__name__} ({exc})", path
        ) from None
    if image.dtype.kind not in "biuf":
        what = "complex" if image.dtype.kind == "c" else f"{image.dtype} (not numbers)"
        fix = "; give its magnitude (numpy.abs) or real part" if image.dtype.kind == "c" else ""
        raise DataError(f"expected an image array {shape} of real numbers, got {what}{fix}", path)
    if image.size == 0:
        raise DataError(f"the image is empty (shape {tuple(image.shape)})", path)
    return image


def _channel_fix(in_ch: int, path: Path, dims: int = 2, channels: int = 0) -> str:
    """The fix for an image of the wrong channel count; for an nnU-Net channel file, why it was not
    grouped with its case's other channels; for a volume (a 4D file's volumes are its channels),
    one volume per file."""
    from ..data.discovery import channel_suffix
    from ..io.readers import split_suffix

    if in_ch > 1 and path is not None and channel_suffix(split_suffix(path)[0]) is not None:
        last = f"{in_ch - 1:04d}"
        return (
            f"nnU-Net channel files are read as one case when every file in the folder (or every "
            f"file given) is named CASE_0000 … CASE_{last}, exactly the {in_ch} channels the "
            "model takes for each case: add the missing ones, or move others out"
        )
    from ..data.reading import is_tiff

    tiff = is_tiff(path)
    hyperstack = dims == 3 or channels not in (3, 4)  # not an RGB(A) picture
    if tiff and hyperstack and channels and channels != in_ch:  # as Fiji and microscopes save
        return (
            f"save a TIFF of the {in_ch} channel(s) the model was trained on, in their order "
            "(Fiji: Image ▸ Color ▸ Split Channels, then Merge Channels), or use a model "
            f"trained on {channels}-channel images"
        )
    if dims == 3 and channels > in_ch:
        return (
            f"a 4D file's volumes are read as channels: save the {in_ch} volume(s) the model was "
            "trained on (one file per channel: CASE_0000, CASE_0001 …), or use a model trained "
            "on such volumes"
        )
    target = "greyscale" if in_ch == 1 else f"{in_ch} channels"
    return f"convert it (e.g. to {target}) or use a model trained on such images"


class Predictor:
    """Predict logits / probabilities / labels of whole images of any size.

    Args:
        model: a unetkit model. It is moved to ``device`` and the memory format and put in eval
            mode; its ``outputs`` flag is left as it is (the predictor reads the main logits
            through a shallow copy whose ``outputs`` is ``"logits"``, taken here: flags the
            caller changes later do not reach it, weights do).
        device: ``auto``, ``cpu``, ``cuda`` …
        precision: ``auto`` (bf16 where supported), ``bf16``, ``fp16`` (CUDA), ``fp32``.
        tile: input tile size (int or per axis). ``None`` plans tiles per image (module docstring).
        overlap: sliding-window overlap fraction when ``tile`` is given (default 0.5).
        max_tile, min_overlap: the tile plan's limits in pixels (defaults 640 / 128 in 2D,
            128 / 32 in 3D; valid-padding nets: input tiles up to 768 in 2D).
        blend: how same-padding tiles are stitched: ``crop`` (module docstring), ``gaussian``
            (σ = tile/8) or ``constant`` blending.
        tta: ``none``, ``flip`` (all axis flips) or ``d4`` (2D: 4 rotations × flip, 8 versions, as
            the U-Net paper); ``True`` means ``d4`` in 2D and ``flip`` in 3D.
        batch_size: tiles per forward pass (default: 1 on CPU, where batching buys no speed and
            multiplies activation memory; 4 on GPU).
        threads: the CPU threads the caller means to run with, recorded as :attr:`threads`. The
            predictor changes nothing process-wide: call
            :func:`unetkit.runtime.configure_process` (``unetkit predict`` does), which also keeps
            freed activations for reuse on CPU; :meth:`describe` reports the threads torch uses.
        channels_last: memory format (``None`` = automatic: on for batch-norm nets on CPU).
        normalizer: applied to every image first (raw images in); ``None`` = images come
            normalised. :meth:`from_checkpoint` sets the one the model was trained with.
        label_map: the dataset's :class:`~unetkit.data.LabelMap` (to write labels in the user's values).
        runner: alternative backend, a callable with the contract of :meth:`forward_batch`
            (e.g. an ONNX Runtime session wrapper); the model is then used for sizes only.
        fast: ``auto`` (default), ``eager``, ``jit`` or ``compile``: graph capture and freezing for
            the tile shape (:mod:`unetkit.inference.fastpath`); ``auto`` builds one only when the
            image has enough tiles to repay the build (bf16 on CPU, 2D).
        scale: the resolution factor per axis the model was trained at (``data.scale``;
            :meth:`from_checkpoint` sets it): each image is resampled by it before tiling and the
            logits back to the image's own size, so outputs always match the input.
        target_spacing: the voxel size the model was trained at (``data.target_spacing``;
            :meth:`from_checkpoint` sets it): each image is resampled by its own ``spacing /
            target_spacing`` (the ``spacing`` passed to :meth:`predict_logits`; an image without
            one is taken as on the target grid) and the logits back to its own grid, so outputs
            match the input.
        trained_spacing: the voxel size of the training images where the model has neither a
            ``target_spacing`` nor a ``scale`` (they all lay within 10 % of it, so the plan trained
            them as stored; :meth:`from_checkpoint` reads it from the plan): an image whose own
            voxel size is more than 10 % away from it on some axis (a 1.5 mm scan for a model of
            3 mm ones) is resampled to it and back, as a target spacing would; nearer ones are
            predicted as stored, as training read them.
        spacing_unit: the length unit of ``target_spacing``/``trained_spacing``, the one the
            training files stated (:meth:`from_checkpoint` reads it from the plan); images in
            another unit are converted to it (:func:`spacing_for_model`). ``None``: unknown, the
            numbers are compared as they are.
        orientation: the orientation code the model was trained in (``data.orientation``, e.g.
            ``"RAS"``; :meth:`from_checkpoint` sets it), kept as :attr:`orientation`. The arrays
            given to :meth:`predict_logits` carry no geometry, so the predictor does not turn them:
            :func:`~unetkit.inference.batch.predict_files` turns each 3D input with a stated
            geometry to it and the outputs back (:mod:`unetkit.io.orientation`). ``None``: as
            stored.
        postprocess: the :class:`~unetkit.inference.postprocess.PostProcessing` validation chose
            (:meth:`from_checkpoint` reads it from the checkpoint), kept as :attr:`postprocess`;
            :func:`~unetkit.inference.batch.predict_files` applies it to the labels it writes,
            :meth:`predict` gives the raw argmax. ``None``: none.
        fold_batch_norm: merge each conv → batch-norm pair into one convolution, **changing
            ``model`` in place** (it can no longer be trained): same outputs up to float rounding,
            much less activation memory (:mod:`unetkit.models.fold`). :meth:`from_checkpoint`,
            whose model nobody else holds, turns it on; off by default because a caller's model
            may still be trained.

    Attributes:
        grey_as_colour: the model was trained on grey images stored as RGB (its plan's
            fingerprint says so; :meth:`from_checkpoint` sets it): a grey image given to its
            three inputs is copied into each (:func:`check_image`).
    """

    grey_as_colour: bool = False

    def __init__(
        self,
        model: nn.Module,
        device: Union[str, torch.device] = "auto",
        precision: str = "auto",
        tile: Optional[Union[int, Sequence[int]]] = None,
        overlap: Optional[float] = None,
        max_tile: Optional[int] = None,
        min_overlap: Optional[int] = None,
        blend: str = "crop",
        tta: Union[bool, str] = "none",
        batch_size: Optional[int] = None,
        threads: Optional[int] = None,
        channels_last: Optional[bool] = None,
        normalizer=None,
        label_map=None,
        runner: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        fast: str = "auto",
        scale: Optional[Union[float, Sequence[float]]] = None,
        postprocess: Optional[PostProcessing] = None,
        target_spacing: Optional[Sequence[float]] = None,
        trained_spacing: Optional[Sequence[float]] = None,
        orientation: Optional[str] = None,
        fold_batch_norm: bool = False,
        spacing_unit: Optional[str] = None,
    ):
        if model is None or isinstance(model, (str, bytes, os.PathLike)):  # runners are models too
            raise ConfigError(
                f"Predictor takes a model (a torch.nn.Module), got {type(model).__name__} "
                f"{model!r}: for a checkpoint file use Predictor.from_checkpoint(path)"
            )
        check_tile_settings(tile, overlap, max_tile, min_overlap, batch_size, threads)
        if postprocess is not None and not isinstance(postprocess, PostProcessing):
            raise ConfigError(
                f"postprocess must be a PostProcessing, got {type(postprocess).__name__}"
            )
        self.postprocess = postprocess if postprocess is not None else PostProcessing()
        self.threads = threads  # recorded only: the process's threads are the entry point's
        if fast not in ("auto", "eager", "jit", "compile"):
            raise ConfigError(f"fast must be auto, eager, jit or compile, got {fast!r}")
        self.fast = fast
        self._fast_forward: dict = {}
        self._modes_run: set = set()  # the modes `auto` resolved to, for describe()
        self.normalizer, self.label_map, self.runner = normalizer, label_map, runner
        self.folded = 0
        self.device = device if isinstance(device, torch.device) else runtime.resolve_device(device)
        self.dtype = runtime.resolve_precision(precision, self.device)
        self.spatial_dims = getattr(model, "spatial_dims", 2)
        self.scale = scale_factors(scale, self.spatial_dims)
        if scale is not None and target_spacing is not None:
            raise ConfigError("give the predictor a scale or a target_spacing, not both")
        self.target_spacing = (
            None
            if target_spacing is None
            else per_axis(
                target_spacing, self.spatial_dims, "target_spacing", kind=float, positive=True
            )
        )
        self.trained_spacing = (
            None
            if trained_spacing is None or len(trained_spacing) != self.spatial_dims
            else [float(v) for v in trained_spacing]
        )
        self.spacing_unit = spacing_unit
        self.orientation = check_orientation(orientation)
        self.channels_last = runtime.use_channels_last(model, self.device, channels_last)
        self.memory_format = runtime.memory_format(self.spatial_dims, self.channels_last)
        if runner is not None:
            self.model = model.eval()
        else:
            self.model = model.to(self.device).eval()
            #: conv → batch-norm pairs merged into one convolution (``fold_batch_norm``)
            self.folded = fold_batch_norm_in_place(self.model) if fold_batch_norm else 0
            self.model = self.model.to(memory_format=self.memory_format)
        # What forward_batch calls: the caller's model returning the main logits. A model built to
        # return every output (``outputs="all"``, as in training) gets a shallow copy whose flag
        # alone is "logits": modules, weights and hooks stay shared, the caller's flag untouched.
        self._net = self.model
        if runner is None and getattr(model, "outputs", "logits") != "logits":
            self._net = copy.copy(self.model)
            self._net.outputs = "logits"
        #: what the tiling needs to know about the model (accepted sizes, border, pooling period)
        self.rule: SizeRule = size_rule_of(model, self.spatial_dims)
        self.tile = None if tile is None else list(per_axis(tile, self.spatial_dims, "tile"))
        self.overlap = 0.5 if overlap is None else float(overlap)
        valid = self.rule.is_valid_padding
        self.max_tile = int(
            max_tile or (DEFAULT_MAX_TILE_VALID if valid else DEFAULT_MAX_TILE)[self.spatial_dims]
        )
        self.min_overlap = int(
            DEFAULT_MIN_OVERLAP[self.spatial_dims] if min_overlap is None else min_overlap
        )
        if blend not in BLEND_MODES:
            raise ConfigError(f"blend must be one of {', '.join(BLEND_MODES)}, got {blend!r}")
        self.blend = blend
        self.batch_size = (
            int(batch_size) if batch_size else (4 if self.device.type == "cuda" else 1)
        )
        self.tta = (
            ("d4" if self.spatial_dims == 2 else "flip")
            if tta is True
            else ("none" if tta is False else tta)
        )
        tta_transforms(self.tta, self.spatial_dims)  # validates the name

    @classmethod
    def from_checkpoint(cls, path, **kwargs) -> Predictor:
        """Rebuild model, normalisation, label map and the chosen post-processing
        (``extra["postprocess"]``) from a checkpoint alone; keyword arguments override the predictor
        settings (``device``, ``precision``, ``tile``, ``tta``, ``postprocess`` …)."""
        import difflib
        import inspect

        from ..checkpoint import build_model, load_checkpoint
        from ..data.labels import LabelMap
        from ..data.normalization import Normalizer

        settings = set(inspect.signature(cls.__init__).parameters) - {"self", "model"}
        settings -= {"normalizer", "label_map"}  # the checkpoint's own
        for name in sorted(set(kwargs) - settings):
            close = difflib.get_close_matches(name, settings, n=1)
            raise ConfigError(
                f"Predictor.from_checkpoint got an unknown setting {name!r}"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + f"; settings: {', '.join(sorted(settings))}"
            )
        ckpt = load_checkpoint(path)
        model = build_model(ckpt, path)
        try:
            norm = (
                Normalizer.from_dict(ckpt["normalization"]) if ckpt.get("normalization") else None
            )
            labels = LabelMap.from_dict(ckpt["label_map"]) if ckpt.get("label_map") else None
        except (UnetkitError, TypeError, ValueError, KeyError) as exc:
            raise DataError(
                f"its normalisation or label map cannot be rebuilt ({exc}): a checkpoint of "
                "another unetkit version, or a damaged one; load it with the version that wrote "
                "it, or train again",
                path,
            ) from None
        data_cfg = (ckpt.get("config") or {}).get("data") or {}
        kwargs.setdefault("scale", data_cfg.get("scale"))
        kwargs.setdefault("target_spacing", data_cfg.get("target_spacing"))
        kwargs.setdefault("orientation", data_cfg.get("orientation"))
        if kwargs.get("scale") is None and kwargs.get("target_spacing") is None:
            kwargs.setdefault("trained_spacing", _trained_spacing(ckpt))
        kwargs.setdefault("spacing_unit", _spacing_unit(ckpt))
        if "postprocess" not in kwargs:
            extra = ckpt.get("extra")
            try:
                kwargs["postprocess"] = PostProcessing.from_dict(
                    extra.get("postprocess") if isinstance(extra, dict) else None
                )
            except UnetkitError as exc:
                raise DataError(
                    f"damaged checkpoint: its post-processing cannot be read ({exc}); predict with "
                    "--postprocess none or re-save it with unetkit",
                    path,
                ) from None
        kwargs.setdefault("fold_batch_norm", True)  # the model is this predictor's alone
        predictor = cls(model, normalizer=norm, label_map=labels, **kwargs)
        predictor.grey_as_colour = bool((_fingerprint(ckpt) or {}).get("grey_as_colour"))
        return predictor

    def describe(self) -> str:
        """One line naming the compute path: device and ISA, precision, layout, threads, fast path."""
        if self.runner is not None:
            name = getattr(self.runner, "backend_name", type(self.runner).__name__)
            return f"compute path: {name}, {getattr(self.runner, 'precision', 'fp32')}"
        ran = sorted(self._modes_run)
        fast = self.fast if ran in ([], [self.fast]) else f"{self.fast} → {', '.join(ran)}"
        return runtime.describe_path(
            self.device,
            self.dtype,
            self.channels_last,
            mode=f"fast path {fast}" + (", batch norm folded" if self.folded else ""),
        )

    # -- one batch ---------------------------------------------------------------------------
    def forward_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """CPU float batch (B, C, *tile) → CPU float32 logits (B, K, *out_tile), on the device at
        the predictor's precision (no test-time augmentation)."""
        if self.runner is not None:
            return self.runner(batch).float()
        x = batch.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        fast = self._fast_forward.get(tuple(batch.shape[1:]))
        if fast is not None:
            return fast(x).float().cpu()
        with torch.inference_mode(), runtime.autocast(self.device, self.dtype):
            y = self._net(x)
        return y.float().cpu()

    def tile_function(self, square: bool = True) -> Callable[[torch.Tensor], torch.Tensor]:
        """The function the tiler calls: :meth:`forward_batch`, wrapped in test-time augmentation."""
        return with_tta(self.forward_batch, tta_transforms(self.tta, self.spatial_dims, square))

    # -- whole images --------------------------------------------------------------------------
    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Check the image (:func:`check_image`: shape, channels, finite values; a grey image
        stored as RGB for a grey model) and apply the normaliser: ``(C, *spatial)`` float32."""
        image = check_image(image, self)
        image = self.normalizer(image) if self.normalizer is not None else image
        return np.asarray(image, dtype=np.float32)

    def plan(self, spatial_shape: Sequence[int]) -> TilePlan:
        """How an image of ``spatial_shape`` will be tiled (module docstring; for logs and tests)."""
        rule, shape = self.rule, tuple(int(s) for s in spatial_shape)
        if rule.is_valid_padding:
            want = self.tile or [
                min(self.max_tile, t)
                for t in rule.at_least([s + k for s, k in zip(shape, rule.shrink)])
            ]
            spec = choose_overlap_tile(rule, want, round="down")
            return TilePlan(
                "overlap-tile",
                shape,
                spec.in_tile,
                spec.out_tile,
                spec.border,
                (0.0,) * len(shape),
                rule.period,
                "crop",
            )
        align = rule.period
        if self.tile is not None:
            tiles = [min(-(-t // a) * a, s) for t, a, s in zip(self.tile, align, shape)]
            overlap = (self.overlap,) * len(shape)
        else:
            tiles, steps = zip(
                *(plan_axis(s, self.max_tile, self.min_overlap, a) for s, a in zip(shape, align))
            )
            overlap = tuple(
                0.0 if t >= s else 1 - (st + 0.5) / t for t, st, s in zip(tiles, steps, shape)
            )
        tiles = rule.at_least(tiles)  # a runner's graph may need multiples of its period
        border = ((0, 0),) * len(shape)
        return TilePlan("sliding-window", shape, tiles, tiles, border, overlap, align, self.blend)

    def prepare_fast_path(self, channels: int, tile: Sequence[int], n_tiles: int) -> None:
        """Build (once per tile shape) the fast forward that :attr:`fast` asks for."""
        key = (channels, *[int(t) for t in tile])
        if self.runner is not None or self.fast == "eager" or key in self._fast_forward:
            return
        from .fastpath import choose_mode, optimize_for_inference

        n = n_tiles * len(tta_transforms(self.tta, self.spatial_dims))
        mode = (
            choose_mode(self.model, self.device, self.dtype, n)
            if self.fast == "auto"
            else self.fast
        )
        if mode == "eager":
            self._modes_run.add(mode)
        else:
            self._fast_forward[key] = optimize_for_inference(
                self.model,
                (self.batch_size, *key),
                self.device,
                self.dtype,
                self.channels_last,
                mode=mode,
                expected_tiles=n,
            )
            self._modes_run.add(self._fast_forward[key].mode)  # eager after a failed build

    def resampling(self, spacing: Optional[Sequence[float]] = None) -> Optional[tuple]:
        """The factors per axis by which an image of voxel size ``spacing`` is resampled before
        tiling (:attr:`scale`, or ``spacing / target_spacing``, or ``spacing / trained_spacing``
        where that is more than 10 % from 1 on some axis); ``None`` when it is not."""
        factors = spacing_factors(spacing, self.target_spacing, self.spatial_dims, self.scale)
        if factors is not None or self.target_spacing is not None or self.scale is not None:
            return factors
        if self.trained_spacing is None or spacing is None:
            return None
        far = spacing_factors(spacing, self.trained_spacing, self.spatial_dims)
        if far is None or all(abs(f - 1) <= TRAINED_SPACING_SPREAD for f in far):
            return None
        return far

    def predict_logits(
        self,
        image: np.ndarray,
        out: Optional[np.ndarray] = None,
        progress: Optional[Callable[[int, int], None]] = None,
        spacing: Optional[Sequence[float]] = None,
    ) -> np.ndarray:
        """``(C, *spatial)`` image → ``(K, *spatial)`` float32 logits (normalised first when the
        predictor has a normaliser; with TTA, the log of the averaged probabilities; with
        :attr:`scale` or :attr:`target_spacing`, predicted on the resampled image and resampled
        back).

        ``progress(tiles done, tiles in all)`` is called after each batch of tiles (a GUI's
        progress bar); an exception it raises, such as a user's cancel, stops the prediction.
        ``spacing``: the image's voxel size per axis (``meta.spacing``), used with a
        :attr:`target_spacing`."""
        image = self.prepare(image)
        size = image.shape[1:]
        if spacing is not None and len(spacing) != len(size):
            raise DataError(
                f"spacing {tuple(spacing)} has {len(spacing)} value(s) for a {len(size)}D image "
                f"of shape {tuple(size)}: give one voxel size per spatial axis, in array order"
            )
        shape = scaled_shape(size, self.resampling(spacing))
        if shape != size:
            image = resample_image(image, shape)
        plan = self.plan(image.shape[1:])
        grid = plan.grid()
        self.prepare_fast_path(image.shape[0], plan.in_tile, len(grid.tiles))
        square = len(set(plan.in_tile)) == 1
        run = self.tile_function(square)
        if shape == size:
            return predict_grid(
                run, image, grid, batch_size=self.batch_size, out=out, progress=progress
            )
        logits = predict_grid(run, image, grid, batch_size=self.batch_size, progress=progress)
        back = resample_logits(torch.from_numpy(logits), size).numpy()
        if out is None:
            return back
        out[...] = back
        return out

    def predict_proba(
        self,
        image: np.ndarray,
        progress: Optional[Callable[[int, int], None]] = None,
        spacing: Optional[Sequence[float]] = None,
    ) -> np.ndarray:
        """Class probabilities ``(K', *spatial)``: softmax, or for one sigmoid channel (1 − p, p).
        ``progress`` and ``spacing`` as in :meth:`predict_logits`."""
        logits = self.predict_logits(image, progress=progress, spacing=spacing)
        return probabilities(torch.from_numpy(logits)).numpy()

    def predict(self, image: np.ndarray, spacing: Optional[Sequence[float]] = None) -> np.ndarray:
        """Class indices ``(*spatial)`` int64 (``spacing`` as in :meth:`predict_logits`)."""
        logits = self.predict_logits(image, spacing=spacing)
        return labels_from_logits(torch.from_numpy(logits)).numpy()


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """``(K, …)`` logits → class probabilities; one channel means (1 − σ(z), σ(z))."""
    if logits.shape[0] == 1:
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], dim=0)
    return torch.softmax(logits, dim=0)


def labels_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """``(K, …)`` logits → class indices (argmax; one channel: logit > 0)."""
    if logits.shape[0] == 1:
        return (logits[0] > 0).long()
    return logits.argmax(dim=0)

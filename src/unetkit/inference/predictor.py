"""The stateful half of inference: a model on a device at a precision, predicting whole images.

Tiling maths lives in :mod:`unetkit.inference.tiling`; this class only decides how a batch of tiles
goes through the model (device, autocast dtype, memory format) and which tiling a model needs
(overlap-tile for valid-padding nets, Gaussian-blended sliding window for same-padding nets).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .. import runtime
from ..errors import ConfigError
from .tiling import choose_overlap_tile, predict_overlap_tile, predict_tiled, tile_alignment


def is_valid_padding(model: nn.Module) -> bool:
    """Whether the model's output is smaller than its input (the original U-Net)."""
    return getattr(getattr(model, "encoder", None), "padding", "same") == "valid"


class Predictor:
    """Predict logits / probabilities / labels of whole images of any size.

    Args:
        model: a unetkit model (returns logits).
        device: ``auto``, ``cpu``, ``cuda`` …
        precision: ``auto`` (bf16 where supported), ``bf16``, ``fp16`` (CUDA), ``fp32``.
        tile: input tile size per axis (default 512² / 128³; valid-padding nets: the nearest valid
            size).
        overlap: sliding-window overlap for same-padding nets.
        blend: ``gaussian`` or ``constant`` blending for same-padding nets.
        batch_size: tiles per forward pass.
        channels_last: memory format (``None`` = automatic).
        normalizer: applied to every image first (raw images in); ``None`` = images come
            normalised. :meth:`from_checkpoint` sets the one the model was trained with.
        label_map: the dataset's :class:`~unetkit.data.LabelMap` (to write labels in the user's values).
    """

    def __init__(self, model: nn.Module, device: Union[str, torch.device] = "auto", precision: str = "auto",
                 tile: Optional[Union[int, Sequence[int]]] = None, overlap: float = 0.5, blend: str = "gaussian",
                 batch_size: int = 4, channels_last: Optional[bool] = None, normalizer=None, label_map=None):
        self.normalizer, self.label_map = normalizer, label_map
        self.device = device if isinstance(device, torch.device) else runtime.resolve_device(device)
        self.dtype = runtime.resolve_precision(precision, self.device)
        self.model = model.to(self.device).eval()
        self.spatial_dims = getattr(model, "spatial_dims", 2)
        self.channels_last = runtime.use_channels_last(model, self.device, channels_last)
        self.memory_format = runtime.memory_format(self.spatial_dims, self.channels_last)
        self.model = self.model.to(memory_format=self.memory_format)
        default = 512 if self.spatial_dims == 2 else 128
        tile = tile if tile is not None else default
        self.tile = [int(tile)] * self.spatial_dims if isinstance(tile, (int, np.integer)) else [int(t) for t in tile]
        if len(self.tile) != self.spatial_dims:
            raise ConfigError(f"tile needs {self.spatial_dims} sizes, got {self.tile}")
        if blend not in ("gaussian", "constant"):
            raise ConfigError(f"blend must be 'gaussian' or 'constant', got {blend!r}")
        self.overlap, self.blend, self.batch_size = float(overlap), blend, int(batch_size)

    @classmethod
    def from_checkpoint(cls, path, **kwargs) -> Predictor:
        """Rebuild model, normalisation, label map and tile size from a checkpoint alone.

        Keyword arguments override the predictor settings (``device``, ``precision``, ``tile`` …);
        the default tile is the training patch (input) size.
        """
        from ..data.labels import LabelMap
        from ..data.normalization import Normalizer
        from ..training.checkpoint import build_model, load_checkpoint

        ckpt = load_checkpoint(path)
        model = build_model(ckpt)
        kwargs.setdefault("tile", ckpt.get("patch_size"))
        norm = Normalizer.from_dict(ckpt["normalization"]) if ckpt.get("normalization") else None
        labels = LabelMap.from_dict(ckpt["label_map"]) if ckpt.get("label_map") else None
        return cls(model, normalizer=norm, label_map=labels, **kwargs)

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        outputs = getattr(self.model, "outputs", None)
        if outputs is not None:
            self.model.outputs = "logits"
        try:
            with torch.inference_mode(), runtime.autocast(self.device, self.dtype):
                y = self.model(x)
        finally:
            if outputs is not None:
                self.model.outputs = outputs
        return y.float().cpu()

    def predict_logits(self, image: np.ndarray) -> np.ndarray:
        """``(C, *spatial)`` image → ``(K, *spatial)`` float32 logits (normalised first when the
        predictor has a normaliser)."""
        image = self.normalizer(np.asarray(image)) if self.normalizer is not None else image
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != self.spatial_dims + 1:
            raise ConfigError(f"expected a (C, {'D, ' if self.spatial_dims == 3 else ''}H, W) image, got shape "
                              f"{image.shape}")
        if is_valid_padding(self.model):
            spec = choose_overlap_tile(self.model, self.tile, round="down")
            align = tile_alignment(self.model, spec.in_tile)
            return predict_overlap_tile(self._forward, image, spec.in_tile, spec.out_tile, spec.border, align=align,
                                        batch_size=self.batch_size)
        tile = [min(t, s) for t, s in zip(self.tile, image.shape[1:])]
        tile = [self.model.valid_input_size(t) if hasattr(self.model, "valid_input_size") else t for t in tile]
        return predict_tiled(self._forward, image, tile, overlap=self.overlap, mode=self.blend,
                             batch_size=self.batch_size)

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        """Class probabilities ``(K, *spatial)``: softmax, or for one channel σ as (1 − p, p)."""
        logits = torch.from_numpy(self.predict_logits(image))
        return probabilities(logits).numpy()

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Class indices ``(*spatial)`` int64."""
        return labels_from_logits(torch.from_numpy(self.predict_logits(image))).numpy()


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

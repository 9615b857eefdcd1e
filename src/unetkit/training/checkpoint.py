"""Self-describing, atomically written checkpoints.

A checkpoint holds everything needed to rebuild and use the model with nothing else at hand (the
model's preset, class and constructor arguments, label map, normalisation, tile size, the run config)
and everything needed to resume training exactly (epoch, optimiser / scheduler / grad-scaler state,
RNG states, history). Files are written to a temp file and renamed, so a crash never leaves a torn
checkpoint, and loaded with ``torch.load(weights_only=True)``: no pickled code runs on load.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from ..errors import DataError
from ..utils import atomic_path

FORMAT = "unetkit-checkpoint"
FORMAT_VERSION = 1


def rng_state() -> dict:
    """Python, NumPy (global) and torch RNG states, in a ``weights_only``-loadable form."""
    state = {
        "python": random.getstate(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state() -> dict:
    state = np.random.get_state(legacy=False)  # the key array becomes a list: weights_only loads lists
    return {**state, "state": {"key": state["state"]["key"].tolist(), "pos": int(state["state"]["pos"])}}


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = dict(state["numpy"])
    np_state["state"] = {"key": np.asarray(np_state["state"]["key"], dtype=np.uint32), "pos": np_state["state"]["pos"]}
    np.random.set_state(np_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def model_spec(model: nn.Module) -> dict:
    """How to rebuild ``model``: its preset (if built by ``create_model``), class and kwargs."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    kwargs = dict(getattr(model, "init_kwargs", {}))
    return {"preset": getattr(model, "preset", None), "class": type(model).__name__, "kwargs": kwargs}


def save_checkpoint(path: Union[str, Path], model: nn.Module, *, epoch: int = 0,
                    optimizer: Optional[torch.optim.Optimizer] = None, scheduler: Any = None,
                    scaler: Any = None, config: Optional[dict] = None, label_map: Optional[dict] = None,
                    normalization: Optional[dict] = None, patch_size: Optional[list] = None,
                    metrics: Optional[dict] = None, history: Optional[list] = None,
                    extra: Optional[dict] = None, with_rng: bool = True) -> Path:
    """Write a checkpoint atomically and return its path (see the module docstring for contents)."""
    import unetkit

    bare = getattr(model, "module", model)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "unetkit_version": unetkit.__version__,
        "torch_version": str(torch.__version__),
        "model": model_spec(bare),
        "state_dict": {k: v.detach().cpu() for k, v in bare.state_dict().items()},
        "spatial_dims": getattr(bare, "spatial_dims", None),
        "in_channels": getattr(bare, "in_channels", None),
        "num_classes": getattr(bare, "num_classes", None),
        "label_map": label_map,
        "normalization": normalization,
        "patch_size": list(patch_size) if patch_size is not None else None,
        "config": config or {},
        "epoch": int(epoch),
        "metrics": metrics or {},
        "history": history or [],
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_state() if with_rng else None,
        "extra": extra or {},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises:
        DataError: the file is missing, unreadable, truncated or not a unetkit checkpoint, or was
            written by a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("checkpoint not found", path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "Unpickler error" in ln), lines[0] if lines else "")
        raise DataError(f"cannot read checkpoint, truncated or not a checkpoint ({type(exc).__name__}: {detail[:200]})",
                        path) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DataError("not a unetkit checkpoint (no 'format' marker)", path)
    if int(ckpt.get("format_version", 0)) > FORMAT_VERSION:
        raise DataError(f"checkpoint format {ckpt['format_version']} is newer than this unetkit "
                        f"({FORMAT_VERSION}); upgrade unetkit", path)
    return ckpt


def build_model(ckpt: dict) -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights (strict)."""
    from ..models import MODELS, UNet, UNet3Plus, UNetPlusPlus

    spec = ckpt["model"]
    classes = {c.__name__: c for c in (UNet, UNet3Plus, UNetPlusPlus)}
    if spec.get("class") not in classes:
        raise DataError(f"checkpoint model class {spec.get('class')!r} is unknown to this unetkit")
    model = classes[spec["class"]](**{**spec["kwargs"], "init": "torch"})
    if spec.get("preset") in MODELS.names():
        model.preset = spec["preset"]
    model.load_state_dict(ckpt["state_dict"])
    return model

"""Self-describing, atomically written checkpoints.

A checkpoint holds everything needed to rebuild and use the model with nothing else at hand (the
model's preset, class and constructor arguments, its size rule (accepted input sizes, border, pooling period), label map, normalisation, tile size, the run config)
and everything needed to resume training exactly (epoch, optimiser / scheduler / grad-scaler state,
RNG states, history). Files are written to a temp file and renamed, so a crash never leaves a torn
checkpoint, and loaded with ``torch.load(weights_only=True)``: no pickled code runs on load.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from .errors import DataError
from .utils import atomic_path

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
    state = np.random.get_state(
        legacy=False
    )  # the key array becomes a list: weights_only loads lists
    return {
        **state,
        "state": {"key": state["state"]["key"].tolist(), "pos": int(state["state"]["pos"])},
    }


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = dict(state["numpy"])
    np_state["state"] = {
        "key": np.asarray(np_state["state"]["key"], dtype=np.uint32),
        "pos": np_state["state"]["pos"],
    }
    np.random.set_state(np_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def model_spec(model: nn.Module) -> dict:
    """How to rebuild ``model``: its preset (if built by ``create_model``), class and kwargs."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    kwargs = dict(getattr(model, "init_kwargs", {}))
    return {
        "preset": getattr(model, "preset", None),
        "class": type(model).__name__,
        "kwargs": kwargs,
    }


def save_checkpoint(
    path: Union[str, Path],
    model: nn.Module,
    *,
    epoch: int = 0,
    optimizer: Optional[torch.optim.Optimizer] = None,
    scheduler: Any = None,
    scaler: Any = None,
    config: Optional[dict] = None,
    label_map: Optional[dict] = None,
    normalization: Optional[dict] = None,
    patch_size: Optional[list] = None,
    metrics: Optional[dict] = None,
    history: Optional[list] = None,
    extra: Optional[dict] = None,
    with_rng: bool = True,
) -> Path:
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
        "size_rule": bare.size_rule().to_dict() if hasattr(bare, "size_rule") else None,
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
    return write_checkpoint(path, payload)


def write_checkpoint(path: Union[str, Path], ckpt: dict) -> Path:
    """Write a checkpoint dict (:func:`save_checkpoint`'s, or one :func:`load_checkpoint` read and
    changed, e.g. an entry added to ``extra``) atomically and return its path."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        try:
            torch.save(ckpt, fh)  # a Python file, so that a full disk raises OSError …
        except RuntimeError as exc:
            # … which torch's archive writer turns into a RuntimeError when it closes the archive
            # ("unexpected pos"), as it does a Ctrl-C mid-write: the cause is raised, an OSError
            # named as atomic_path names it
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, (OSError, KeyboardInterrupt)):  # Ctrl-C, SIGTERM mid-write too
                raise cause from None
            raise
    return Path(path)


def _describe_zip(path: Path) -> Optional[str]:
    """What is wrong with a zip file given as a checkpoint (``None``: a readable PyTorch archive,
    or one too damaged to open, which ``torch.load`` then names).

    ``torch.load`` does not check the archive's CRCs, so a file with flipped bits would load
    changed weights without a word; every entry's CRC is checked here (one read of the file). A
    TorchScript export (it holds the module's ``code/`` and ``constants.pkl``, which
    ``torch.save`` never writes) and a bioimage.io package (``rdf.yaml``) are named with the
    file to give instead."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if "rdf.yaml" in names or any(n.endswith("/rdf.yaml") for n in names):
                return (
                    "is a bioimage.io package, not a checkpoint; predict with it as it is "
                    "(unetkit predict model.zip …), or give the .pt checkpoint it was exported from"
                )
            if any(n.endswith("/constants.pkl") for n in names) and any(
                "/code/" in n for n in names
            ):
                return (
                    "is a TorchScript export (for tools that run TorchScript), not a checkpoint; "
                    "give the .pt checkpoint it was exported from, or an ONNX export (.onnx)"
                )
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return None
    if bad is not None:
        return (
            f"damaged checkpoint: the entry {bad} fails its checksum (bits changed on disk or in "
            "a copy); copy it again from its source, or use another checkpoint of the run"
        )
    return None


def _describe_foreign_file(path: Path) -> Optional[str]:
    """What ``path`` is when it is plainly not a PyTorch file (``None`` when it might be one)."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head:
        return "empty file (0 bytes), not a checkpoint"
    if head.startswith(b"PK\x03\x04"):  # torch's zip format (or another zip)
        return _describe_zip(path)
    if head[:1] == b"\x80":  # a legacy pickle
        return None
    known = {
        b"\x89PNG": "a PNG image",
        b"II*\x00": "a TIFF image",
        b"MM\x00*": "a TIFF image",
        b"\xff\xd8\xff": "a JPEG image",
        b"\x93NUMPY": "a NumPy .npy array",
        b"\x1f\x8b": "a gzip file",
    }
    kind = next((name for magic, name in known.items() if head.startswith(magic)), None)
    if kind is None:
        try:
            head.decode("utf-8")
            kind = "a text file"
        except UnicodeDecodeError:
            kind = "not a PyTorch file"
    return f"not a unetkit checkpoint ({kind}); give the .pt file that 'unetkit train' wrote"


def load_checkpoint(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises:
        DataError: the file is missing, unreadable, truncated or not a unetkit checkpoint, holds
            Python objects that ``weights_only`` refuses, has entries of the wrong type (see
            :func:`check_checkpoint`), or was written by a newer format version.
    """
    path = Path(path)
    if path.is_dir():
        from .run_folder import folder_not_file

        raise DataError(folder_not_file(path), path)
    if not path.is_file():
        raise DataError("checkpoint not found", path)
    try:
        foreign = _describe_foreign_file(path)
    except OSError as exc:
        raise DataError(f"cannot read the checkpoint ({exc.strerror or exc})", path) from None
    if foreign:
        raise DataError(foreign, path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        text = " ".join(str(exc).split())
        unsafe = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text) or (
            "WeightsUnpickler" in text and re.search(r"GLOBAL ([\w.]+)", text)
        )
        if unsafe:
            raise DataError(
                f"holds Python objects that are not allowed to load safely (GLOBAL {unsafe.group(1)}); "
                "unetkit loads checkpoints with torch.load(weights_only=True) so that no code in a file "
                "runs. Re-save it with unetkit (save_checkpoint) holding only tensors, numbers, strings, "
                "lists and dicts, or, if you trust the file, load it with weights_only=False and save "
                "it again that way",
                path,
            ) from None
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "Unpickler error" in ln), lines[0] if lines else "")
        if len(detail) > 160:  # torch's long advice, cut at a word, not mid-sentence
            detail = detail[:160].rsplit(" ", 1)[0] + " …"
        raise DataError(
            f"cannot read checkpoint, truncated or not a checkpoint ({type(exc).__name__}: "
            f"{detail}); copy it again, or give the .pt file that 'unetkit train' wrote",
            path,
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DataError(
            "not a unetkit checkpoint (no 'format' marker); give the .pt file that 'unetkit train' "
            "wrote",
            path,
        )
    version = ckpt.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise DataError(
            f"damaged checkpoint: 'format_version' is {version!r}, expected an integer", path
        )
    if version > FORMAT_VERSION:
        raise DataError(
            f"checkpoint format {version} is newer than this unetkit "
            f"({FORMAT_VERSION}); upgrade unetkit",
            path,
        )
    check_checkpoint(ckpt, path)
    return ckpt


#: The entries inference and export read, and the types they must have (``None`` is allowed).
_ENTRY_TYPES = {
    "model": dict,
    "state_dict": dict,
    "spatial_dims": int,
    "in_channels": int,
    "num_classes": int,
    "label_map": dict,
    "normalization": dict,
    "patch_size": list,
    "config": dict,
}


def _type_name(value: Any) -> str:
    return type(value).__name__


def check_checkpoint(ckpt: dict, path: Optional[Union[str, Path]] = None) -> None:
    """Check the types of the entries a checkpoint is used by (model description, weights,
    inference metadata), so a damaged file is named with what is wrong instead of failing later.

    Raises:
        DataError: naming ``path``, the entry, what it holds and what it should.
    """
    hint = "the file is damaged or was not written by unetkit; re-save it with unetkit (save_checkpoint)"
    if "model" not in ckpt:
        raise DataError(
            f"has no 'model' entry (the description of the model: preset, class and constructor "
            f"arguments); {hint}",
            path,
        )
    if "state_dict" not in ckpt:
        raise DataError(f"has no 'state_dict' entry (the weights); {hint}", path)
    for key, kind in _ENTRY_TYPES.items():
        value = ckpt.get(key)
        if value is None and key not in ("model", "state_dict"):
            continue
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise DataError(
                f"entry '{key}' is {_type_name(value)} {_short(value)}, expected {kind.__name__}; {hint}",
                path,
            )
    spec = ckpt["model"]
    if not isinstance(spec.get("class"), str) or not isinstance(spec.get("kwargs"), dict):
        raise DataError(
            f"the model description needs a 'class' name and a 'kwargs' dict, got class "
            f"{_short(spec.get('class'))} and kwargs {_short(spec.get('kwargs'))}; {hint}",
            path,
        )
    for name, value in ckpt["state_dict"].items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise DataError(
                f"weight {name!r} is {_type_name(value)}, expected a tensor; {hint}", path
            )
    patch = ckpt.get("patch_size")
    if patch is not None and not all(
        isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in patch
    ):
        raise DataError(
            f"entry 'patch_size' is {patch!r}, expected positive integers; {hint}", path
        )


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shape(t: torch.Tensor) -> str:
    return "(" + ",".join(str(s) for s in t.shape) + ")"


def model_classes() -> dict[str, type]:
    """Class name → class of every model in the registry (``unetkit.models.MODELS``): a checkpoint
    names its model's class, so any class registered there can be rebuilt from one."""
    from .models import MODELS

    return {b.__name__: b for b in MODELS.builders() if isinstance(b, type)}


def build_model(ckpt: dict, path: Optional[Union[str, Path]] = None) -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights (strict).

    ``path`` (the checkpoint file) is only used to name it in error messages.

    Raises:
        DataError: the model description cannot be rebuilt, or the weights do not match it
            (missing, unexpected or wrong-shaped tensors); the message names the first mismatch.
    """
    from .models import MODELS

    check_checkpoint(ckpt, path)
    spec = ckpt["model"]
    classes = model_classes()
    name = spec.get("preset") or spec["class"]
    if spec["class"] not in classes:
        raise DataError(
            f"checkpoint model class {spec['class']!r} is unknown to this unetkit "
            f"(known: {', '.join(classes)}); upgrade unetkit or re-export the model",
            path,
        )
    try:
        model = classes[spec["class"]](**{**spec["kwargs"], "init": "torch"})
    except (
        Exception
    ) as exc:  # the constructors raise ConfigError, TypeError, ValueError … on bad arguments
        detail = " ".join(str(exc).split())[:200]
        raise DataError(
            f"cannot rebuild the model {name!r} from its description ({type(exc).__name__}: {detail}); "
            "the file is damaged or was written by an incompatible unetkit",
            path,
        ) from None
    if spec.get("preset") in MODELS.names():
        model.preset = spec["preset"]
    expected, state = model.state_dict(), ckpt["state_dict"]
    mismatch = "the file does not match its own model description"
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if wrong:
        k = wrong[0]
        more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
        raise DataError(
            f"weight '{k}' has shape {_shape(state[k])} but the model {name!r} expects "
            f"{_shape(expected[k])}{more}; {mismatch}",
            path,
        )
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(
            f"weight '{missing[0]}' of the model {name!r} is missing from the checkpoint{more}; "
            f"{mismatch}",
            path,
        )
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise DataError(
            f"weight '{unexpected[0]}' is not part of the model {name!r}{more}; {mismatch}", path
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # e.g. a dtype torch cannot copy
        detail = " ".join(str(exc).split())[:200]
        raise DataError(
            f"cannot load the weights into the model {name!r} ({detail}); {mismatch}", path
        ) from None
    saved = ckpt.get("size_rule")
    if saved and hasattr(model, "size_rule") and model.size_rule().to_dict() != saved:
        raise DataError(
            f"the rebuilt model {name!r} accepts sizes {model.size_rule().describe()} but the "
            f"checkpoint recorded {saved}; it was written by an incompatible unetkit",
            path,
        )
    return model

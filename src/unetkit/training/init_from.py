"""Fine-tuning: start a run from the weights of an earlier model (``train.init_from``).

The source is a unetkit checkpoint, which describes itself. It offers the run config defaults
(:func:`inherited_values`: its model preset and options, its normalisation scheme and parameters);
the ``train`` command applies them below the user's own values (:func:`defaults_left_open`) and
above a plan's model choices. The trainer then loads every tensor whose name and shape fit
(:func:`load_matching_weights`). Only what the new data changes may differ: the input conv when the
images have other channels, the output heads (deep-supervision heads too) when the masks have other
classes; those stay freshly initialised and one printed line names them. Anything else that differs
is another architecture: a :class:`~unetkit.errors.ConfigError` naming the first layer and shapes.

Nothing else comes from the checkpoint: not the optimiser, the schedule or the epoch (continuing a
run is ``Trainer.resume``), nor the label map (the new data's).

Example:
    >>> source = read_source("runs/unet-old/checkpoints/best.pt")  # doctest: +SKIP
    >>> cfg = RunConfig().override({**inherited_values(source), "train.init_from": "..."})  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Optional, Union

import torch

from ..checkpoint import load_checkpoint
from ..errors import ConfigError, DataError

#: Model arguments the data decides (not inherited): the images' channels and dimensionality, the
#: masks' classes (a one-channel sigmoid head, ``num_classes=1``, is an architecture: inherited).
DATA_DECIDES = ("in_channels", "num_classes", "spatial_dims", "outputs")

HINT = (
    "--init-from (train.init_from) takes a checkpoint file written by 'unetkit train', "
    "e.g. runs/RUN/checkpoints/best.pt"
)


def read_source(path: Union[str, Path]) -> dict:
    """The checkpoint at ``path`` (:func:`~unetkit.checkpoint.load_checkpoint`), with the fix named.

    Raises:
        DataError: naming ``path``: missing, a run folder instead of its checkpoint, or not a unetkit
            checkpoint (unreadable, foreign, damaged).
    """
    path = Path(path)
    if path.is_dir() and (path / "checkpoints").is_dir():
        raise DataError(
            f"is a run folder; give one of its checkpoints, e.g. {path / 'checkpoints' / 'best.pt'}",
            path,
        )
    if not path.exists():
        raise DataError(f"checkpoint not found; {HINT}", path)
    return load_checkpoint(path)  # its messages name what to give


def _same(a: Any, b: Any) -> bool:
    """Equal, a tuple and a list with the same items too (a saved default against a YAML list)."""
    return (list(a) if isinstance(a, tuple) else a) == (list(b) if isinstance(b, tuple) else b)


def _options_for(name: str, kwargs: dict) -> dict:
    """The constructor arguments ``kwargs`` as options of preset ``name``: those it takes that differ
    from its defaults, without the ones the data decides (``num_classes=1`` kept)."""
    from ..models import MODELS

    entry, params = MODELS.get(name), MODELS.options(name)
    out = {}
    for key, value in kwargs.items():
        if key not in params or (key in DATA_DECIDES and not (key == "num_classes" and value == 1)):
            continue
        default = entry.defaults.get(key, params[key].default)
        if not _same(value, default):
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


def source_model(ckpt: dict, path: Union[str, Path, None] = None) -> tuple[str, dict]:
    """The checkpoint's model as ``(preset, options)`` for ``model.name`` / ``model.options``.

    A checkpoint names its preset when ``create_model`` built the model; otherwise (a model built
    from its class) the preset of that class needing the fewest options is used: the checkpoint's
    arguments are complete, so every preset of the class gives the same model.

    Raises:
        DataError: the model class is not a registered unetkit model.
    """
    from ..models import MODELS

    spec = ckpt["model"]
    kwargs = dict(spec.get("kwargs") or {})
    preset = spec.get("preset")
    if preset not in MODELS.names():
        names = [
            n
            for n in MODELS.names()
            if getattr(MODELS.get(n).builder, "__name__", "") == spec["class"]
        ]
        if not names:
            raise DataError(
                f"its model class {spec['class']!r} is not a unetkit model this version knows "
                f"({', '.join(sorted({b.__name__ for b in MODELS.builders()}))}); fine-tune from a "
                "checkpoint of one of them",
                path,
            )
        preset = min(names, key=lambda n: (len(_options_for(n, kwargs)), n))
    return preset, _options_for(preset, kwargs)


def inherited_values(ckpt: dict, path: Union[str, Path, None] = None) -> dict:
    """Dotted config values the checkpoint offers as defaults: ``model.name``, each
    ``model.options.<k>`` (see :func:`source_model`), ``data.normalization`` (the scheme and its
    parameters, not statistics fitted on the old data: a dataset-level scheme is fitted again) and
    ``data.ignore_value`` where the checkpoint's masks left pixels unlabelled (more strokes
    painted the same way are the usual way to fine-tune such a model)."""
    name, options = source_model(ckpt, path)
    values: dict = {"model.name": name}
    values.update({f"model.options.{k}": v for k, v in options.items()})
    norm = ckpt.get("normalization")
    if isinstance(norm, dict) and isinstance(norm.get("name"), str):
        values["data.normalization"] = {"name": norm["name"], **dict(norm.get("params") or {})}
    ignore = (ckpt.get("label_map") or {}).get("ignore")
    if ignore is not None:
        values["data.ignore_value"] = int(ignore)
    return values


def defaults_left_open(inherited: dict, explicit: dict) -> dict:
    """The ``inherited`` values (:func:`inherited_values`) that the user's own leave open.

    Args:
        inherited: dotted values from the checkpoint.
        explicit: the user's dotted values (flags, ``--set``, the leaves of ``--config``).

    A user value covers the inherited value of the same key, above or below it
    (``data.normalization.lower`` covers ``data.normalization``). A ``model.name`` other than the
    checkpoint's keeps the inherited options that preset takes (the weights must then still fit).
    """
    from ..models import MODELS

    def covered(key: str) -> bool:
        return any(e == key or e.startswith(key + ".") or key.startswith(e + ".") for e in explicit)

    out = {k: v for k, v in inherited.items() if not covered(k)}
    name = explicit.get("model.name")
    other = name is not None and "model.name" in inherited
    if other and MODELS.get(str(name)) is not MODELS.get(inherited["model.name"]):
        accepted = MODELS.options(str(name))
        out = {
            k: v
            for k, v in out.items()
            if not k.startswith("model.options.") or k.split(".", 2)[2] in accepted
        }
    return out


def describe_inherited(values: dict, path: Union[str, Path]) -> str:
    """One line saying what the run takes from the checkpoint at ``path``."""
    parts = []
    if "model.name" in values or any(k.startswith("model.options.") for k in values):
        opts = ", ".join(
            f"{k.split('.', 2)[2]}={v}" for k, v in values.items() if k.startswith("model.options.")
        )
        if "model.name" in values:
            parts.append(f"model {values['model.name']}" + (f" ({opts})" if opts else ""))
        else:
            parts.append(f"model options ({opts})")
    if "data.normalization" in values:
        norm = dict(values["data.normalization"])
        scheme = norm.pop("name")
        params = ", ".join(f"{k}={v}" for k, v in norm.items())
        parts.append(f"normalisation {scheme}" + (f" ({params})" if params else ""))
    if values.get("data.ignore_value") is not None:
        v = values["data.ignore_value"]
        parts.append(
            f"unlabelled mask value {v} (--set data.ignore_value=null reads {v} as a class)"
        )
    taken = (
        " and ".join(parts)
        if parts
        else "weights only (your flags set the model and normalisation)"
    )
    return f"init-from: {path}: {taken}"


def file_digest(path: Union[str, Path]) -> str:
    """SHA-256 of a file (hex), read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _shape(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _source_number(ckpt: dict, key: str) -> Any:
    value = ckpt.get(key)
    return value if value is not None else (ckpt["model"].get("kwargs") or {}).get(key)


def _reference_shapes(name: str, options: dict, in_channels, num_classes, dims) -> dict:
    """Tensor name → shape of model ``name`` with ``options`` built for the checkpoint's channels
    and classes (on the meta device: no memory, no weights)."""
    from ..models import MODELS, create_model

    opts = {**options, "in_channels": in_channels, "num_classes": num_classes, "spatial_dims": dims}
    if "init" in MODELS.options(name):
        opts["init"] = "torch"
    try:
        with torch.device("meta"):
            ref = create_model(name, **opts)
    except (RuntimeError, NotImplementedError):  # an operation meta tensors lack
        ref = create_model(name, **opts)
    return {k: tuple(v.shape) for k, v in ref.state_dict().items()}


def check_architecture(
    ckpt: dict, path, name: str, options: dict, spatial_dims: Optional[int] = None
) -> None:
    """Model ``name`` with ``options`` must be the checkpoint's architecture: built for the
    checkpoint's channels and classes, every tensor has the checkpoint's name and shape.
    ``spatial_dims``: the images' (``None``: the checkpoint's, before any image is read).

    Raises:
        ConfigError: one line naming the first layer that differs, both shapes and the checkpoint's
            own model, and the fix.
    """
    dims = _source_number(ckpt, "spatial_dims")
    if spatial_dims is None:
        spatial_dims = int(dims) if dims is not None else 2
    if dims is not None and int(dims) != spatial_dims:
        raise ConfigError(
            f"train.init_from {path}: the checkpoint holds a {dims}D model but the images are "
            f"{spatial_dims}D; fine-tune from a {spatial_dims}D checkpoint"
        )
    state = ckpt["state_dict"]
    ref = _reference_shapes(
        name,
        options,
        _source_number(ckpt, "in_channels"),
        _source_number(ckpt, "num_classes"),
        spatial_dims,
    )
    src_name, src_opts = source_model(ckpt, path)
    theirs = f"{src_name}" + (
        f" with {', '.join(f'{k}={v}' for k, v in src_opts.items())}" if src_opts else ""
    )
    fix = (
        f"the architecture must be the checkpoint's ({theirs}): drop the --model / "
        "model.options values that differ"
    )
    where = f"train.init_from {path}: the weights do not fit model {name!r}"
    for key, shape in ref.items():
        if key not in state:
            raise ConfigError(
                f"{where}: its layer {key!r} {_shape(shape)} is not in the checkpoint; {fix}"
            )
        if tuple(state[key].shape) != shape:
            raise ConfigError(
                f"{where}: layer {key!r} is {_shape(shape)} here but "
                f"{_shape(state[key].shape)} in the checkpoint; {fix}"
            )
    extra = [k for k in state if k not in ref]
    if extra:
        raise ConfigError(
            f"{where}: the checkpoint's layer {extra[0]!r} {_shape(state[extra[0]].shape)} is not "
            f"part of it; {fix}"
        )


def _layer(tensor_name: str) -> str:
    return tensor_name.rsplit(".", 1)[0]


def load_matching_weights(
    model: torch.nn.Module, ckpt: dict, path: Union[str, Path], name: str, options: dict
) -> tuple[dict, str]:
    """Load the checkpoint's tensors into ``model`` where names and shapes fit.

    Args:
        model: the new model (built for the new data's channels and classes), on any device.
        ckpt: the source checkpoint (:func:`read_source`).
        path: its file (recorded and named in messages).
        name, options: the model preset and options ``model`` was built from (``config.model``).

    Returns:
        ``(record, line)``: what was done, for the checkpoints' ``extra["init_from"]`` (``path``,
        ``sha256``, ``epoch``, ``layers_loaded``, ``layers_new``, ``reason``, tensor counts), and
        the one line to print.

    Raises:
        ConfigError: the architecture is not the checkpoint's (see :func:`check_architecture`).
    """
    model = getattr(model, "module", model)
    check_architecture(ckpt, path, name, options, model.spatial_dims)
    state, own = ckpt["state_dict"], model.state_dict()
    take = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    model.load_state_dict(take, strict=False)
    new_tensors = [k for k in own if k not in take]
    layers_new = list(dict.fromkeys(_layer(k) for k in new_tensors))
    layers_loaded = [
        layer for layer in dict.fromkeys(_layer(k) for k in own) if layer not in layers_new
    ]
    src_c, src_k = _source_number(ckpt, "in_channels"), _source_number(ckpt, "num_classes")
    reasons = []
    if src_c is not None and src_c != model.in_channels:
        reasons.append(f"{model.in_channels} input channel(s) here, {src_c} in the checkpoint")
    if src_k is not None and src_k != model.num_classes:
        reasons.append(f"{model.num_classes} classes here, {src_k} in the checkpoint")
    reason = "; ".join(reasons)
    epoch = ckpt.get("epoch")
    record = {
        "path": str(Path(path).resolve()),
        "sha256": file_digest(path),
        "epoch": epoch,
        "tensors_loaded": len(take),
        "tensors_total": len(own),
        "layers_loaded": layers_loaded,
        "layers_new": layers_new,
        "reason": reason,
    }
    source = f"{path}" + (f" (epoch {epoch})" if epoch is not None else "")
    if new_tensors:
        line = (
            f"init-from: {len(take)} of {len(own)} weight tensors from {source}; kept new: "
            f"{', '.join(layers_new)} ({reason})"
        )
    else:
        line = f"init-from: all {len(own)} weight tensors from {source}"
    line += "; optimiser, schedule and epoch start fresh"
    return record, line


__all__ = [
    "DATA_DECIDES",
    "check_architecture",
    "defaults_left_open",
    "describe_inherited",
    "file_digest",
    "inherited_values",
    "load_matching_weights",
    "read_source",
    "source_model",
]

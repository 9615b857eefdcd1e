"""Typed run configuration: dataclasses validated on build, YAML in and out, saved with every run.

Every number the trainer uses comes from here; the resolved config is written into the run folder and
into each checkpoint, so the run folder alone reproduces the run.

Validation checks every field against its annotation and the bounds in its ``metadata`` (one generic
:func:`check_value`), then what only the builders know: the model preset and ``model.options`` (the
model is built on the meta device, no memory), the loss and its options, the normalisation and the
augmentation settings, and the name of ``train.select_metric``. Each problem is one
:class:`~unetkit.errors.ConfigError` naming the dotted field (``train.epochs must be an integer ≥ 1,
got 'ten'``). Integers are accepted where a number is expected; a numeric string (``"1e-3"``, which
YAML 1.1 reads as a string when the mantissa has no dot) is accepted for a number and converted to
float; booleans are never accepted as numbers.

Example:
    >>> cfg = RunConfig.from_dict({"model": {"name": "unet-original"}, "train": {"epochs": 5}})
    >>> cfg.train.optimizer
    'adamw'
"""

from __future__ import annotations

import collections.abc
import dataclasses
import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from .errors import ConfigError

# --------------------------------------------------------------------------------- type checks
_NONE = type(None)
_SEQUENCES = (list, tuple, collections.abc.Sequence)
_MAPPINGS = (dict, collections.abc.Mapping)


def _f(
    default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, **rules: Any
) -> Any:
    """A dataclass field whose ``metadata`` holds its value rules for :func:`check_value`:
    bounds ``ge``/``gt``/``le``/``lt`` (on the items, for a list), ``items`` (the list item type),
    ``choices`` (allowed strings), ``path`` (a non-empty path string), ``scalar`` (one bare item is
    accepted for a list and wrapped)."""
    return field(default=default, default_factory=factory, metadata=rules)


def _bounds(rules: dict) -> str:
    """The bounds of ``rules`` in words: ``" ≥ 1"``, ``" in [0, 1)"`` (``""`` without bounds)."""
    lo = ("[", rules["ge"]) if "ge" in rules else ("(", rules["gt"]) if "gt" in rules else None
    hi = ("]", rules["le"]) if "le" in rules else (")", rules["lt"]) if "lt" in rules else None
    if lo and hi:
        return f" in {lo[0]}{lo[1]}, {hi[1]}{hi[0]}"
    if lo:
        return f" {'≥' if lo[0] == '[' else '>'} {lo[1]}"
    if hi:
        return f" {'≤' if hi[0] == ']' else '<'} {hi[1]}"
    return ""


def _union_args(tp: Any) -> tuple:
    """The members of a ``Union``/``Optional`` annotation, ``()`` for any other annotation."""
    return typing.get_args(tp) if typing.get_origin(tp) is Union else ()


def describe(tp: Any, rules: Optional[dict] = None, plural: bool = False) -> str:
    """What a value of annotation ``tp`` under ``rules`` must be, in words (``"an integer ≥ 1"``)."""
    rules = rules or {}
    args = _union_args(tp)
    if args:
        words = [describe(a, rules, plural) for a in args if a is not _NONE]
        return " or ".join(words) + (" or null" if _NONE in args else "")
    origin = typing.get_origin(tp) or tp
    if tp is bool:
        return "true/false values" if plural else "true or false"
    if tp is int:
        return ("integers" if plural else "an integer") + _bounds(rules)
    if tp is float:
        return ("numbers" if plural else "a number") + _bounds(rules)
    if tp is str:
        if rules.get("choices"):
            return f"one of {', '.join(rules['choices'])}"
        return (
            ("paths" if plural else "a non-empty path")
            if rules.get("path")
            else ("strings" if plural else "a string")
        )
    if origin in _SEQUENCES:
        item = rules.get("items") or next(iter(typing.get_args(tp)), None)
        text = "lists" if plural else "a list"
        if item is not None and item is not Ellipsis:
            text += f" of {describe(item, rules, plural=True)}"
        if rules.get("scalar") and item is not None:
            text += f" (or one {describe(item, rules).split(' ', 1)[1]})"
        return text
    if origin in _MAPPINGS:
        return "mappings" if plural else "a mapping"
    return getattr(tp, "__name__", str(tp))


def _in_bounds(value: float, rules: dict) -> bool:
    """Whether ``value`` satisfies the ``ge``/``gt``/``le``/``lt`` bounds of ``rules``."""
    return not (
        ("ge" in rules and value < rules["ge"])
        or ("gt" in rules and value <= rules["gt"])
        or ("le" in rules and value > rules["le"])
        or ("lt" in rules and value >= rules["lt"])
    )


def _match(value: Any, tp: Any, rules: dict) -> tuple[bool, Any]:
    """``(True, value)`` when ``value`` fits ``tp`` and ``rules`` (converted: numeric string → float,
    path → str, tuple → list), else ``(False, None)``."""
    args = _union_args(tp)
    if args:
        if value is None:
            return _NONE in args, None
        for arg in args:
            if arg is not _NONE:
                ok, out = _match(value, arg, rules)
                if ok:
                    return True, out
        return False, None
    origin = typing.get_origin(tp) or tp
    if tp is Any or tp is object:
        return True, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool) and _in_bounds(
            value, rules
        ), value
    if tp is float:
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                return False, None
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            return False, None
        return math.isfinite(value) and _in_bounds(value, rules), value
    if tp is str:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            return False, None
        if rules.get("choices") and value not in rules["choices"]:
            return False, None
        return not (rules.get("path") and not value.strip()), value
    if origin in _SEQUENCES:
        item_args = typing.get_args(tp)
        item = rules.get("items") or (item_args[0] if item_args else None)
        if rules.get("scalar") and not isinstance(value, (list, tuple)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            return False, None
        if (
            origin is tuple
            and item_args
            and Ellipsis not in item_args
            and len(value) != len(item_args)
        ):
            return False, None
        if item is None or item is Ellipsis:
            return True, list(value)
        out = []
        for v in value:
            ok, v = _match(v, item, rules)
            if not ok:
                return False, None
            out.append(v)
        return True, out
    if origin in _MAPPINGS:
        if not isinstance(value, dict):
            return False, None
        vt = typing.get_args(tp)[1] if len(typing.get_args(tp)) == 2 else None
        if vt is None:
            return True, value
        out = {}
        for k, v in value.items():
            ok, out[k] = _match(v, vt, {})
            if not ok:
                return False, None
        return True, out
    if isinstance(tp, type):
        return isinstance(value, tp), value
    return True, value  # an annotation this checker does not understand: the builder decides


def check_value(value: Any, tp: Any, name: str, rules: Optional[dict] = None) -> Any:
    """``value`` checked against the annotation ``tp`` and ``rules`` (see :func:`_f`); returns it
    converted (numeric string → float, path → str, tuple → list).

    Raises:
        ConfigError: ``"<name> must be <what>, got <value>"``.
    """
    ok, out = _match(value, tp, rules or {})
    if not ok:
        raise ConfigError(f"{name} must be {describe(tp, rules)}, got {value!r}")
    return out


def _check_fields(section: Any, prefix: str) -> None:
    """Check (and normalise in place) every field of a config dataclass against its annotation."""
    hints = typing.get_type_hints(type(section))
    for f in dataclasses.fields(section):
        name = f"{prefix}.{f.name}" if prefix else f.name
        setattr(
            section,
            f.name,
            check_value(getattr(section, f.name), hints[f.name], name, dict(f.metadata)),
        )


def check_options(registry: Any, name: str, options: dict, where: str, name_field: str) -> dict:
    """Check ``options`` for the builder ``name`` of ``registry`` (a :class:`~unetkit.registry.Registry`):
    unknown names, values against the builder's annotations, required ones missing. Returns them
    converted (see :func:`check_value`); ``where`` is the dotted prefix of messages (``model.options``),
    ``name_field`` the field holding ``name`` (``model.name``).

    Raises:
        ConfigError: naming ``<where>.<option>`` (or ``name_field`` for an unknown name).
    """
    try:
        entry = registry.get(str(name))
    except ConfigError as exc:  # the registry's message lists the valid names
        raise ConfigError(f"{name_field}: {exc}") from None
    params = registry.options(name)
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ConfigError(
            f"{where}.{unknown[0]} is not an option of {registry.kind} {name!r}; valid options: "
            f"{', '.join(params)}"
        )
    builder = entry.builder.__init__ if isinstance(entry.builder, type) else entry.builder
    try:
        hints = typing.get_type_hints(builder)
    except Exception:  # an annotation that does not resolve: leave the values to the builder
        hints = {}
    out = {}
    for key, value in options.items():
        out[key] = (
            value
            if value is None or key not in hints
            else check_value(value, hints[key], f"{where}.{key}")
        )
    missing = [
        k
        for k, p in params.items()
        if p.default is p.empty and k not in out and k not in entry.defaults
    ]
    if missing:
        raise ConfigError(f"{where}.{missing[0]} is required by {registry.kind} {name!r}")
    return out


def _built(what: str, build: Any) -> Any:
    """Call ``build()``; a ``TypeError``/``ValueError`` it raises becomes a ConfigError starting with ``what``."""
    try:
        return build()
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"{what}: {exc}") from None


def _check_normalization(spec: Any, where: str, channel: bool = False) -> dict:
    """A ``data.normalization`` spec checked (options converted) and built once; a
    ``per-channel`` one's schemes each at ``<where>.channels[i]``; ``auto`` takes no options."""
    from .data.normalization import AUTO, NORMALIZERS

    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(f"{where} must be a mapping with a 'name', e.g. {{name: zscore}}")
    norm = dict(spec)
    name = norm.pop("name")
    if name == AUTO:
        if channel:
            raise ConfigError(
                f"{where}.name: 'auto' chooses for all channels; name this channel's scheme "
                "(e.g. ct or zscore)"
            )
        if norm:
            raise ConfigError(
                f"{where}: 'auto' (chosen from the channel names) takes no options, got "
                f"{', '.join(map(str, norm))}; name the scheme instead, e.g. "
                "{name: zscore, per_image: false}"
            )
        return {"name": AUTO}
    out = {"name": name, **check_options(NORMALIZERS, name, norm, where, f"{where}.name")}
    if str(name).lower().replace("_", "-") == "per-channel" and isinstance(
        out.get("channels"), list
    ):
        out["channels"] = [
            _check_normalization(child, f"{where}.channels[{i}]", channel=True)
            for i, child in enumerate(out["channels"])
        ]
    _built(f"{where} {out}", lambda: NORMALIZERS.create(**out))
    return out


#: ``train.select_metric`` values the trainer's validation produces (``<k>``: a class index).
SELECT_METRICS = ("val_loss", "val_dice", "val_iou", "val_pixel_error", "val_dice_c<k>")
_SELECT_RE = re.compile(r"val_(loss|dice|iou|pixel_error|dice_c\d+)")


@dataclass
class DataConfig:
    """Where the images are and how samples are made.

    Attributes:
        train_dir: folder with ``images/`` + ``masks/`` (or an nnU-Net raw folder).
        val_dir: fixed validation folder; when unset, ``val_fraction`` of the training cases is held
            out (seeded) and the split is saved in the run folder.
        mask_suffix: suffix of mask stems (``_mask``); auto-detected when unset.
        mask_kind: ``auto``, ``labels``, ``colors`` (RGB masks) or ``instances`` (see
            :func:`~unetkit.data.infer_label_map`).
        ignore_value: the grey mask value of unlabelled pixels (partial annotations: scribbles,
            regions nobody annotated). It is no class: the loss, the validation scores and the
            post-processing choice leave those pixels out, patches are drawn where pixels are
            labelled, and predictions label every pixel. ``None`` (default): every mask value is
            a class (an nnU-Net ``dataset.json``'s ``"ignore"`` label is read as this).
        val_fraction: hold-out fraction when there is no ``val_dir``.
        num_folds, fold: k-fold cross-validation instead of a hold-out: all folds are saved in
            ``splits.json`` and fold ``fold`` is trained.
        normalization: scheme name and parameters, e.g. ``{"name": "percentile", "lower": 1}``;
            ``{"name": "per-channel", "channels": [{"name": "ct"}, {"name": "zscore"}]}`` for one
            scheme per channel. The default ``{"name": "auto"}`` chooses from the channel names
            (``channel_names``, else an nnU-Net ``dataset.json``'s) by nnU-Net's rule, else
            ``zscore`` per image (see :func:`~unetkit.data.normalization.choose_normalization`).
        channel_names: one name per image channel (``["CT", "T2"]``), choosing the normalisation
            when ``normalization`` is ``auto``; overrides the ``dataset.json`` names.
        patch_size: training patch (label) size per axis; unset = the smaller of the smallest image
            and 256 per axis in 2D (96 in 3D), unless a plan chose one.
            With ``scale``, in pixels of the resampled images.
        scale: resolution factor per axis (one number for all) at which the net trains and
            predicts: ``0.5`` halves every side of the training images; ``predict`` resamples each
            image the same way and the logits back to the image's own size. ``None`` = as stored.
        target_spacing: physical voxel size per axis (array order, the files' unit) to which every
            case is resampled for training and prediction (each by its own ``spacing /
            target_spacing``); outputs come back on each input's own grid. For data whose spacing
            differs between cases (medical volumes); cannot be combined with ``scale`` (a coarser
            target spacing is a lower scale). ``None`` = as stored.
        orientation: 3D volumes with a stated geometry (NIfTI, NRRD, MetaImage, DICOM) are turned
            to this orientation code (``"RAS"``, ``"LPS"``: one letter of each pair R/L, A/P, S/I,
            in the files' (x, y, z) axis order; see :mod:`unetkit.io.orientation`) before training
            and prediction, by permuting and flipping axes, before any resampling; ``predict``
            turns its outputs back to each input's stored orientation. ``None`` = as stored.
        fg_fraction: share of patches centred on foreground (nnU-Net uses 0.33).
        fg_classes: the classes to oversample (default every class > 0; ISBI membranes: ``[0]``).
        augmentation: augmentation settings (``{}`` = defaults, ``None`` = off).
        weight_map: use the U-Net paper's border weight map in the loss (``w0``, ``sigma``).
        class_balance: the weight map's class term ``w_c``: ``True`` balances the class frequencies
            as the paper does (80 % background / 20 % foreground → weights 0.625 / 2.5); ``False``
            keeps 1 everywhere and only the border term. Balancing moves the cross-entropy's
            decision toward the rarer class (it predicts foreground from p ≈ 0.2 in that example), so
            a Dice + CE loss, which copes with imbalance through Dice, is better off without it.
        separate_objects: where two objects of a training mask meet, make the pixels of the contact
            background (a 2-px gap, the U-Net paper's separating background between touching
            cells; binary masks only), so the connected components of the prediction are the objects. Needs instance
            ids: an instance mask or an ``instances/`` folder beside ``masks/`` (same stems);
            without them it changes nothing. The planner turns it on when objects touch.
        cache_dir: folder caching the weight maps across runs (keyed by mask and parameters).
        num_workers: DataLoader worker processes (0 = in the main process).
    """

    train_dir: Optional[str] = _f(None, path=True)
    val_dir: Optional[str] = _f(None, path=True)
    mask_suffix: Optional[str] = None
    mask_kind: str = _f("auto", choices=("auto", "labels", "colors", "instances"))
    ignore_value: Optional[int] = None
    val_fraction: float = _f(0.2, ge=0, lt=1)
    num_folds: Optional[int] = _f(None, ge=2)
    fold: Optional[int] = _f(None, ge=0)
    normalization: dict = _f(factory=lambda: {"name": "auto"})
    channel_names: Optional[list] = _f(None, items=str)
    patch_size: Optional[list] = _f(None, items=int, ge=1, scalar=True)
    scale: Optional[list] = _f(None, items=float, gt=0, le=4, scalar=True)
    target_spacing: Optional[list] = _f(None, items=float, gt=0, scalar=True)
    orientation: Optional[str] = None
    fg_fraction: float = _f(0.33, ge=0, le=1)
    fg_classes: Optional[list] = _f(None, items=int, ge=0)
    augmentation: Optional[dict] = _f(factory=dict)
    weight_map: bool = False
    class_balance: bool = True
    separate_objects: bool = False
    w0: float = _f(10.0, ge=0)
    sigma: float = _f(5.0, gt=0)
    cache_dir: Optional[str] = _f(None, path=True)
    num_workers: int = _f(0, ge=0)

    def validate(self) -> None:
        """Types and ranges of every field, then the normalisation and augmentation settings (built)."""
        _check_fields(self, "data")
        if self.fold is not None and self.num_folds is None:
            raise ConfigError(
                f"data.fold={self.fold} (--fold) needs data.num_folds (--num-folds: the number of "
                "cross-validation folds)"
            )
        if self.fold is not None and self.fold >= self.num_folds:
            raise ConfigError(
                f"data.fold (--fold) must be in 0..{self.num_folds - 1} for data.num_folds="
                f"{self.num_folds} (--num-folds), "
                f"got {self.fold}"
            )
        if self.ignore_value is not None and self.mask_kind in ("colors", "instances"):
            raise ConfigError(
                f"data.ignore_value={self.ignore_value} needs grey class masks, but data.mask_kind "
                f"is {self.mask_kind!r}: unlabelled pixels are one grey value beside the classes"
            )
        if self.scale is not None and self.target_spacing is not None:
            raise ConfigError(
                f"data.scale={self.scale} and data.target_spacing={self.target_spacing} are both "
                "set: give one (a target spacing twice as coarse is scale 0.5)"
            )
        from .io.orientation import check_orientation

        self.orientation = check_orientation(self.orientation, "data.orientation")
        self.normalization = _check_normalization(self.normalization, "data.normalization")
        if self.channel_names is not None and not all(n.strip() for n in self.channel_names):
            raise ConfigError(
                f"data.channel_names must be non-empty names, got {self.channel_names!r}"
            )
        if self.augmentation is not None:
            self._check_augmentation()

    def _check_augmentation(self) -> None:
        """Each transform's parameters against its constructor, then the pipeline built for 2D, else
        3D (the data decides later): unknown names, parameters and bad values fail here, before any
        data is read."""
        from .data.transforms import TRANSFORMS, build_augmentation

        self.augmentation = {
            n: dict(p) if isinstance(p, dict) else p for n, p in self.augmentation.items()
        }
        for name, params in self.augmentation.items():
            if name not in TRANSFORMS or not isinstance(params, dict):
                continue  # build_augmentation names the problem below
            hints = typing.get_type_hints(TRANSFORMS[name].__init__)
            for key, value in params.items():
                if key in hints:
                    params[key] = check_value(value, hints[key], f"data.augmentation.{name}.{key}")
        errors = []
        for dims in (2, 3):
            try:
                build_augmentation(self.augmentation, dims)
                return
            except (TypeError, ValueError, KeyError) as exc:
                errors.append(exc)
        only = [
            n
            for n in self.augmentation
            if n in TRANSFORMS and self.augmentation[n] not in (False, None)
        ]
        for name in only:  # which transform: build it alone
            try:
                build_augmentation(
                    {n: (self.augmentation[name] if n == name else False) for n in TRANSFORMS}, 2
                )
            except (TypeError, ValueError, KeyError) as exc:
                if str(exc) == str(errors[0]):
                    raise ConfigError(f"data.augmentation.{name}: {exc}") from None
        raise ConfigError(f"data.augmentation: {errors[0]}")


@dataclass
class ModelConfig:
    """Which model: a preset name of ``create_model`` and options overriding it.

    ``in_channels`` and ``num_classes`` are filled in from the data unless given here.
    """

    name: str = "unet"
    options: dict = _f(factory=dict)

    def validate(self) -> None:
        """The preset exists and accepts ``options``: each is type-checked against the model's
        constructor, then the model is built on the meta device (no memory, no weights) so that the
        constructor's own checks run now."""
        import torch

        from .models import MODELS

        _check_fields(self, "model")
        self.options = check_options(MODELS, self.name, self.options, "model.options", "model.name")
        opts = {k: v for k, v in self.options.items() if v is not None}
        init = opts.pop("init", None)
        if "init" in MODELS.options(self.name):
            opts["init"] = (
                "torch"  # He initialisation on meta tensors is slow to start; the layout is the same
            )

        def build():
            with torch.device("meta"):
                try:
                    model = MODELS.create(self.name, **opts)
                except (
                    RuntimeError,
                    NotImplementedError,
                ):  # an operation meta tensors lack: the trainer's build decides
                    return
                if init not in (None, "he", "torch"):
                    model.initialise(init)  # raises the model's message

        shown = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        _built(f"model {self.name!r}" + (f" with model.options {shown}" if shown else ""), build)


@dataclass
class LossConfig:
    """Which loss (a name of ``create_loss``) with its options; deep-supervision and CGM weights."""

    name: str = "dice_ce"
    options: dict = _f(factory=dict)
    deep_supervision_weights: Optional[list] = _f(None, items=float, ge=0)
    cgm_weight: float = _f(1.0, ge=0)

    def validate(self) -> None:
        """Types and ranges, then the loss is built (it is small) so that its own checks run now."""
        from .losses import LOSSES

        _check_fields(self, "loss")
        self.options = check_options(LOSSES, self.name, self.options, "loss.options", "loss.name")
        if self.options.get("ignore_index") is not None:
            # the losses can leave a label out, but a run reads every mask value as a class and
            # validates, samples, post-processes and predicts all of them: half an ignore label
            raise ConfigError(
                f"loss.options.ignore_index={self.options['ignore_index']!r}: name the mask value "
                "of unlabelled pixels with data.ignore_value (--ignore-value) instead, so that "
                "sampling, validation and post-processing leave them out as the loss does"
            )
        shown = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        _built(
            f"loss {self.name!r}" + (f" with loss.options {shown}" if shown else ""),
            lambda: LOSSES.create(self.name, **self.options),
        )


OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("poly", "cosine", "plateau", "budget", "none")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
POSTPROCESS_MODES = ("auto", "none")


@dataclass
class TrainConfig:
    """The training loop's numbers.

    Attributes:
        epochs: number of epochs; ``iters_per_epoch`` batches each (an epoch is a fixed number of
            random patches, as in nnU-Net, not a pass over the files).
        batch_size: global batch size (split across processes under torchrun).
        optimizer: ``sgd`` (Nesterov off, ``momentum`` 0.99 as the paper), ``adam``, ``adamw``.
        scheduler: ``poly`` (nnU-Net, power 0.9, per epoch over ``epochs``), ``cosine``, ``plateau``,
            ``budget`` (poly on the clock over ``time_budget_minutes``: the rate falls steadily and
            epochs start until the trainer's end-of-run reserve is reached; ``epochs`` is then only
            an upper bound; see :class:`~unetkit.training.callbacks.BudgetSchedule`) or ``none``.
        grad_clip: max gradient norm (``None`` = off).
        precision: ``auto`` (bf16 autocast where the CPU/GPU supports it, else fp32; 3D nets on CPU
            train in fp32, see :func:`unetkit.runtime.training_precision`), ``bf16``, ``fp16``
            (CUDA only), ``fp32``.
        channels_last: memory format; ``None`` = automatic (on for batch-norm nets on CPU).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        val_every: validate every N epochs.
        early_stopping: stop after this many validations without improvement (``None`` = off).
        time_budget_minutes: stop cleanly when the time is up (the best checkpoint is kept).
        select_metric: validation value that picks ``best.pt`` and drives early stopping and the
            plateau schedule: ``val_dice`` (mean foreground Dice), ``val_dice_c<k>`` (one class, e.g.
            ``val_dice_c0`` for ISBI's membranes), ``val_iou``, or ``val_loss`` / ``val_pixel_error``
            (minimised; every other name is maximised).
        postprocess: ``auto`` (after training, try the clean-ups of
            :mod:`unetkit.evaluation.postprocess_choice` on the validation images with ``best.pt``
            and keep those that improve the validation images: a higher Dice, or, for the steps
            judged on objects, a higher object F1 at a Dice cost within the tolerance; written to
            ``postprocess.json`` and into
            ``best.pt``, which ``unetkit predict`` applies) or ``none``.
        folds: train this many cross-validation folds one after the other (``unetkit train
            --folds K``), each a run folder ``fold_<i>`` with ``data.num_folds = K``, the time budget
            shared out as they go, and ``ensemble.json`` at the end (:mod:`unetkit.run_folder`);
            1 (default) trains one model. Excludes ``data.val_dir`` and ``data.num_folds``.
        threads: torch CPU threads (``None`` = torch's default). Set by ``unetkit train`` through
            :func:`unetkit.runtime.configure_process`; the :class:`~unetkit.training.Trainer` itself
            changes nothing process-wide (a notebook calls ``configure_process`` itself).
        init_from: a checkpoint whose weights start the run (fine-tuning; ``None`` = fresh
            weights). Tensors whose names and shapes fit are loaded; an input conv or output heads
            that differ because the data has other channels or classes stay new. The optimiser,
            schedule and epoch start fresh (``Trainer.resume`` continues a run instead); see
            :mod:`unetkit.training.init_from`.
    """

    epochs: int = _f(50, ge=1)
    iters_per_epoch: int = _f(50, ge=1)
    batch_size: int = _f(4, ge=1)
    optimizer: str = _f("adamw", choices=OPTIMIZERS)
    lr: float = _f(1e-3, gt=0)
    momentum: float = _f(0.99, ge=0, lt=1)
    weight_decay: float = _f(1e-4, ge=0)
    scheduler: str = _f("poly", choices=SCHEDULERS)
    grad_clip: Optional[float] = _f(12.0, ge=0)
    precision: str = _f("auto", choices=PRECISIONS)
    channels_last: Optional[bool] = None
    device: str = "auto"
    seed: int = _f(0, ge=0, le=2**32 - 1)
    val_every: int = _f(1, ge=1)
    early_stopping: Optional[int] = _f(None, ge=1)
    time_budget_minutes: Optional[float] = _f(None, gt=0)
    select_metric: str = "val_dice"
    postprocess: str = _f("auto", choices=POSTPROCESS_MODES)
    folds: int = _f(1, ge=1)
    threads: Optional[int] = _f(None, ge=1)
    init_from: Optional[str] = _f(None, path=True)

    def validate(self) -> None:
        """Types, ranges and names of every field; the device name is parsed (not looked for)."""
        _check_fields(self, "train")
        if self.device != "auto":
            import torch

            try:
                torch.device(self.device)
            except (RuntimeError, ValueError):
                raise ConfigError(
                    f"train.device must be auto, cpu, cuda or cuda:N, got {self.device!r}"
                ) from None
        if not _SELECT_RE.fullmatch(self.select_metric):
            raise ConfigError(
                f"train.select_metric {self.select_metric!r} is not among the validation values "
                f"{', '.join(SELECT_METRICS)} (<k>: a class index)"
            )
        if self.scheduler == "budget" and self.time_budget_minutes is None:
            raise ConfigError(
                "train.scheduler budget runs the learning-rate schedule on the clock and needs a "
                "time budget: set train.time_budget_minutes (--time-budget MINUTES)"
            )


@dataclass
class RunConfig:
    """A whole training run: data, model, loss, training loop and where it is written."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output_dir: str = _f("runs", path=True)

    def validate(self) -> RunConfig:
        """Check every section (see the module docstring); returns ``self``."""
        for name, cls in _SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(
                    f"{name} must be a mapping of {cls.__name__} fields, got {getattr(self, name)!r}"
                )
        self.output_dir = check_value(self.output_dir, str, "output_dir", {"path": True})
        for section in (self.data, self.model, self.loss, self.train):
            section.validate()
        if self.train.folds > 1 and (self.data.val_dir is not None or self.data.num_folds):
            given = (
                f"data.val_dir={self.data.val_dir} (--val: a fixed validation folder)"
                if self.data.val_dir is not None
                else f"data.num_folds={self.data.num_folds} (--num-folds: one fold of a split)"
            )
            raise ConfigError(
                f"train.folds={self.train.folds} (--folds: every fold of a cross-validation "
                f"split) and {given} exclude each other; give one of them"
            )
        return self

    # -- conversion ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Optional[dict], source: str = "config") -> RunConfig:
        """Build and validate from nested mappings; unknown keys raise, naming the valid ones."""
        raw = dict(raw or {})
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in raw:
                continue
            value = raw.pop(f.name)
            section_cls = _SECTIONS.get(f.name)
            kwargs[f.name] = (
                _section(section_cls, value, f"{source}: {f.name}") if section_cls else value
            )
        if raw:
            valid = ", ".join(f.name for f in dataclasses.fields(cls))
            raise ConfigError(
                f"{source}: unknown section(s) {', '.join(sorted(raw))}; valid: {valid}"
            )
        return cls(**kwargs).validate()

    @classmethod
    def from_yaml(cls, path: Union[str, Path]) -> RunConfig:
        import yaml

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(raw, dict):
            raise ConfigError(
                f"{path}: the config must be a mapping of sections (data, model, loss, train)"
            )
        try:
            return cls.from_dict(raw, source=str(path))
        except ConfigError as exc:  # name the file in every message
            raise (
                exc if str(exc).startswith(str(path)) else ConfigError(f"{path}: {exc}")
            ) from None

    def to_yaml(self, path: Optional[Union[str, Path]] = None) -> str:
        """The config as YAML; also written atomically to ``path`` when given."""
        import yaml

        text = yaml.safe_dump(_plain(self.to_dict()), sort_keys=False)
        if path is not None:
            from .utils import atomic_write_text

            atomic_write_text(path, text)
        return text

    def override(self, dotted: dict) -> RunConfig:
        """Return a copy with ``{"train.lr": 0.01, "model.options.depth": 3, ...}`` applied (``None``
        values are skipped); see :func:`set_dotted`."""
        raw = self.to_dict()
        for key, value in dotted.items():
            if value is not None:
                set_dotted(raw, key, value)
        return RunConfig.from_dict(raw)


def set_dotted(raw: dict, key: str, value: Any) -> None:
    """Set ``key`` (``"train.lr"``, ``"model.options.base_features"``, ``"output_dir"``) in the nested
    dict of a config (:meth:`RunConfig.to_dict`) in place.

    The first two levels must exist (a section and one of its fields); below a field that holds a
    mapping (``model.options``, ``data.normalization``, ``data.augmentation``) keys are created. A
    parameter of an augmentation that is switched on or off (``data.augmentation.spatial: false``)
    switches it on with that parameter; below augmentation that is off (``None``/``False``,
    ``--no-augment``) the transform named is the only one switched on.

    Raises:
        ConfigError: an empty or malformed key, an unknown section or field, or a key below a
            value that is not a mapping; the message names ``key``.
    """
    parts = str(key).split(".")
    sections = ", ".join(f.name for f in dataclasses.fields(RunConfig))
    if not all(p.strip() for p in parts):
        raise ConfigError(
            f"cannot set {key!r}: a key is section.name (e.g. train.lr or model.options.depth), "
            f"with sections {sections}"
        )
    parts = [p.strip() for p in parts]
    if parts[0] not in raw:
        raise ConfigError(f"cannot set {key!r}: unknown section {parts[0]!r}; valid: {sections}")
    if (
        len(parts) >= 2
        and isinstance(raw[parts[0]], dict)
        and parts[0] in _SECTIONS
        and parts[1] not in raw[parts[0]]
    ):
        valid = ", ".join(f.name for f in dataclasses.fields(_SECTIONS[parts[0]]))
        raise ConfigError(
            f"cannot set {key!r}: unknown key(s) {parts[1]} in section {parts[0]}; valid: {valid}"
        )
    node = raw
    for depth, part in enumerate(parts[:-1]):
        if not isinstance(node, dict):
            raise ConfigError(
                f"cannot set {key!r}: {'.'.join(parts[:depth])} is {node!r}, not a mapping"
            )
        if parts[: depth + 1] == ["data", "augmentation"] and node.get(part) in (None, False):
            # augmentation off (--no-augment): naming a transform switches on that one only, not
            # the whole default set
            from .data.transforms import TRANSFORMS

            node[part] = dict.fromkeys(TRANSFORMS, False)
        elif node.get(part) is None:  # an unset mapping (a new option group)
            node[part] = {}
        elif isinstance(node[part], bool) and parts[:depth] == ["data", "augmentation"]:
            # a transform switched on or off (True = its defaults): a parameter of it switches it
            # on with that parameter (a planned run's "spatial: false" and p_elastic=0.5)
            node[part] = {}
        node = node[part]
    if not isinstance(node, dict):
        raise ConfigError(f"cannot set {key!r}: {'.'.join(parts[:-1])} is {node!r}, not a mapping")
    node[parts[-1]] = value


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig, "train": TrainConfig}


def _section(cls, value: Any, where: str):
    if value is None:
        return cls()
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}"
        )
    return cls(**value)


def _plain(value: Any) -> Any:
    """Tuples → lists (YAML safe_dump cannot write tuples)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value

"""``unetkit train DATA_DIR``: train a model; flags override the config file; ``--resume`` continues."""

from __future__ import annotations

import argparse
import math
import os
import time
from typing import Optional, Sequence

from .parsing import (
    CHANNEL_NAMES_HELP,
    IGNORE_VALUE_HELP,
    MASK_KIND_HELP,
    MASK_KINDS,
    channel_names,
)

EPILOG = """\
examples:
  unetkit train data/train --val data/val --time-budget 10   # planned from the data and this machine
  unetkit train data/train --model unet --epochs 50 --patch-size 256 --val data/val
  unetkit train data/train --config examples/isbi2012.yaml --time-budget 10
  unetkit train data/train --model unet-original --weight-map --optimizer sgd --lr 0.01 \\
      --set model.options.base_features=16 --set data.w0=10
  unetkit train data/train --folds 5 --time-budget 30       # 5 cross-validation folds, one budget
  unetkit train --resume runs/unet-20261122-101500          # continue exactly where it stopped
  unetkit train data/new --init-from runs/unet-20261122-101500/checkpoints/best.pt --epochs 20
                                                            # fine-tune an earlier model on new data
  unetkit plan data/train --output plan.json                # multi-process (DDP): one saved plan
  torchrun --nproc_per_node=2 -m unetkit train data/train --plan plan.json --batch-size 8

Without --config, the run follows a plan (see 'unetkit plan'): the data's fingerprint and this
machine's measured speed choose patch, depth, width, batch, loss, sampling, augmentation and a
schedule that fits the time budget (default 10 minutes). Every flag overrides the planned value (and
the planned values above and below it: --set data.augmentation.spatial=true brings back a transform
the plan left out); --epochs replaces the planned schedule (--time-budget then only stops the run);
the augmentation is judged on the steps each model gets (flips and 90° rotations only under 2000);
--no-plan keeps the plain defaults.

--init-from CHECKPOINT fine-tunes: the run starts from that model's weights and takes its
architecture (model and options, instead of the planned ones) and its normalisation unless you set
them (--model, --set model.options.*, --normalization, --config; the weights must then still fit).
Where the new images have other channels or the masks other classes, the input conv or the output
heads start new. The optimiser, schedule and epoch start fresh: --resume continues a run instead.

Normalisation (fitted on the training cases, saved with the model), first that applies:
--normalization / data.normalization (a scheme you name), else --channel-names, else the
channel_names of an nnU-Net dataset.json, else z-score per image. Channel names follow nnU-Net:
CT -> 'ct' (clip to the 0.5/99.5 percentiles of the training foreground, label > 0, then subtract
its mean and divide by its std), noNorm -> none, rescale_to_0_1 -> min-max, rgb_to_0_1 -> 0..255,
any other name (MR, microscopy) -> z-score per image; mixed channels get one scheme each:
  --set 'data.normalization={name: per-channel, channels: [{name: ct}, {name: zscore}]}'

A run folder (config.yaml, plan.json, splits.json, metrics.csv, curves.png, train.log,
postprocess.json, checkpoints/last.pt and best.pt) is written under --output (default runs/).

--folds K trains the K folds of a seeded k-fold split one after the other into RUN_DIR/fold_0 …
fold_{K-1} (each a run folder as above), sharing the time budget out as they go (each fold gets
what is left divided by the folds left), then writes RUN_DIR/ensemble.json with every fold's best
score and their mean; 'unetkit predict RUN_DIR …' averages the folds' probabilities. The plan
chooses K > 1 itself only for small data (≤ 40 cases) when every fold still gets enough steps,
and never with --val or a fixed --epochs; a saved plan followed with another --time-budget
judges its folds again on that budget's steps.
"""

# flag → dotted config key
FLAG_KEYS = {
    "val": "data.val_dir",
    "patch_size": "data.patch_size",
    "scale": "data.scale",
    "target_spacing": "data.target_spacing",
    "orientation": "data.orientation",
    "mask_suffix": "data.mask_suffix",
    "mask_kind": "data.mask_kind",
    "ignore_value": "data.ignore_value",
    "val_fraction": "data.val_fraction",
    "normalization": "data.normalization",
    "channel_names": "data.channel_names",
    "workers": "data.num_workers",
    "num_folds": "data.num_folds",
    "fold": "data.fold",
    "folds": "train.folds",
    "model": "model.name",
    "loss": "loss.name",
    "epochs": "train.epochs",
    "iters_per_epoch": "train.iters_per_epoch",
    "batch_size": "train.batch_size",
    "lr": "train.lr",
    "optimizer": "train.optimizer",
    "scheduler": "train.scheduler",
    "precision": "train.precision",
    "device": "train.device",
    "seed": "train.seed",
    "time_budget": "train.time_budget_minutes",
    "early_stopping": "train.early_stopping",
    "threads": "train.threads",
    "select_metric": "train.select_metric",
    "init_from": "train.init_from",
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model on a folder of images and masks",
        description="Train a U-Net family model. Every flag overrides the config file "
        "(--config), which overrides the defaults.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "data_dir",
        nargs="?",
        help="training folder: images/ + masks/, case folders (CASE/images/ + CASE/masks/, one "
        "file per object) or nnU-Net imagesTr/ + labelsTr/",
    )
    p.add_argument("--config", help="YAML run config (sections data, model, loss, train)")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its last checkpoint, with its own config and split "
        "and what is left of its time budget; only --epochs, --time-budget (a new budget: M "
        "minutes more), --device, --threads and --precision may change",
    )
    p.add_argument(
        "--init-from",
        metavar="CHECKPOINT",
        help="fine-tune: start from this checkpoint's weights, architecture and normalisation "
        "(new input conv / output heads where the channels or classes differ); the optimiser, "
        "schedule and epoch start fresh (--resume continues a run)",
    )
    p.add_argument(
        "--plan", metavar="PLAN_JSON", help="follow a plan written by 'unetkit plan' (no new probe)"
    )
    p.add_argument(
        "--no-plan",
        action="store_true",
        help="do not plan: the plain defaults (and --config) decide what flags leave open",
    )
    p.add_argument("--output", help="folder that receives the run folder (default runs/)")
    p.add_argument(
        "--run-dir",
        help="exact run folder to write (default OUTPUT/MODEL-TIMESTAMP); one holding a trained "
        "run is refused",
    )
    g = p.add_argument_group("data")
    g.add_argument(
        "--val", metavar="VAL_DIR", help="fixed validation folder (default: a seeded hold-out)"
    )
    g.add_argument(
        "--val-fraction", type=float, help="hold-out fraction without --val (default 0.2)"
    )
    g.add_argument(
        "--num-folds", type=int, help="k-fold cross-validation: number of folds (all saved)"
    )
    g.add_argument("--fold", type=int, help="with --num-folds: the fold to train (default 0)")
    g.add_argument(
        "--folds",
        type=int,
        metavar="K",
        help="train all K folds one after the other in one budget: RUN_DIR/fold_i + ensemble.json "
        "(default: planned; 1 = one model)",
    )
    g.add_argument("--patch-size", help="training patch (label) size: 256 or 96,128,128")
    g.add_argument(
        "--scale",
        help="train and predict at this fraction of the stored resolution: 0.5 or 1,0.5,0.5 "
        "(default: planned from the objects' size; 1 = as stored)",
    )
    g.add_argument(
        "--target-spacing",
        help="resample every case to this voxel size, in the files' unit and array order: 1 or "
        "3,0.8,0.8 (default: planned where the cases' voxel sizes differ; predict resamples each "
        "image the same way and writes the result on its own grid)",
    )
    g.add_argument(
        "--orientation",
        metavar="CODE",
        help="turn every 3D volume with a stated geometry to this orientation before training: "
        "RAS, LPS … (one letter of each pair R/L, A/P, S/I, in the files' x, y, z axis order; "
        "axes permuted and flipped, no interpolation; default: as stored); predict turns each "
        "input the same way and its outputs back to the input's orientation",
    )
    g.add_argument("--mask-suffix", help="mask file suffix such as _mask (default: detected)")
    g.add_argument("--mask-kind", choices=MASK_KINDS, help=MASK_KIND_HELP)
    g.add_argument("--ignore-value", type=int, metavar="V", help=IGNORE_VALUE_HELP)
    g.add_argument(
        "--normalization",
        help="auto (the default: by the channel names, else zscore per image), zscore, "
        "percentile, minmax, fixed, none or ct (nnU-Net's CT scheme); per-channel schemes via "
        "--config or --set data.normalization=... (see below)",
    )
    g.add_argument("--channel-names", type=channel_names, metavar="NAMES", help=CHANNEL_NAMES_HELP)
    g.add_argument(
        "--weight-map",
        action="store_true",
        default=None,
        help="weight the loss with the U-Net paper's border weight map (w0 10, sigma 5)",
    )
    g.add_argument(
        "--no-augment",
        action="store_true",
        help="switch augmentation off (with --set data.augmentation.NAME=true: only that transform)",
    )
    g.add_argument("--workers", type=int, help="DataLoader worker processes (default 0)")
    g = p.add_argument_group("model and loss")
    g.add_argument(
        "--model",
        help="model preset (see 'unetkit summary --list'; default: planned, unet with --no-plan)",
    )
    g.add_argument(
        "--loss",
        help="loss name, e.g. dice-ce (the default), ce, focal, unet3plus-hybrid (default: planned)",
    )
    g = p.add_argument_group("training")
    g.add_argument(
        "--epochs",
        type=int,
        help="a fixed number of epochs instead of the planned schedule (default: planned from "
        "the time budget; 50 with --no-plan)",
    )
    g.add_argument(
        "--iters-per-epoch",
        type=int,
        help="batches per epoch (default: planned; 50 with --no-plan)",
    )
    g.add_argument(
        "--batch-size", type=int, help="global batch size (default: planned; 4 with --no-plan)"
    )
    g.add_argument(
        "--lr", type=float, help="peak learning rate (default: planned; 0.001 with --no-plan)"
    )
    g.add_argument(
        "--optimizer", choices=("sgd", "adam", "adamw"), help="optimiser (default adamw)"
    )
    g.add_argument(
        "--scheduler",
        choices=("poly", "cosine", "plateau", "budget", "none"),
        help="learning-rate schedule (default: budget when planned, poly with --no-plan); "
        "budget: poly on the clock over --time-budget",
    )
    g.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp16", "fp32"),
        help="auto (the default): bf16 autocast where the device computes it natively, else fp32 "
        "(3D nets train in fp32 on CPU)",
    )
    g.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    g.add_argument(
        "--seed", type=int, help="seed of the split, the sampling and the weights (default 0)"
    )
    g.add_argument(
        "--time-budget", type=float, metavar="MINUTES", help="stop cleanly when the time is up"
    )
    g.add_argument(
        "--early-stopping",
        type=int,
        metavar="N",
        help="stop after N validations without improvement",
    )
    g.add_argument(
        "--select-metric",
        metavar="NAME",
        help="validation value choosing best.pt: val_dice (default), val_dice_c0, val_iou, val_loss, ...",
    )
    g.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any config value, e.g. --set model.options.base_features=16 --set train.grad_clip=1",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (epoch lines only)")
    p.set_defaults(run=run)


def collect_overrides(args) -> dict:
    """Flags and ``--set`` pairs as ``{"section.key": value}`` (unset flags are left out)."""
    from ..errors import ConfigError
    from .parsing import parse_value

    out: dict = {}
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        if flag in ("patch_size", "scale", "target_spacing"):
            value = parse_value(value)
            value = list(value) if isinstance(value, (tuple, list)) else [value]
        if flag == "normalization":
            value = {"name": value}
        out[key] = value
    if args.weight_map:
        out["data.weight_map"] = True
    if args.no_augment:
        out["data.augmentation"] = None
    if args.data_dir:
        out["data.train_dir"] = args.data_dir
    if args.output:
        out["output_dir"] = args.output
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set needs KEY=VALUE (e.g. --set train.lr=0.01), got {item!r}")
        key, value = item.split("=", 1)
        if not key.strip():
            raise ConfigError(
                f"--set {item!r}: the key before '=' is empty; write KEY=VALUE, e.g. --set train.lr=0.01"
            )
        value = parse_value(value.strip())
        if key.strip() == "data.normalization" and isinstance(value, str):
            value = {"name": value}  # a scheme's name alone, as --normalization takes it
        out[key.strip()] = value
    return out


def apply_overrides(config, overrides: dict):
    """Apply dotted overrides, including nested ones such as ``model.options.base_features``
    (see :func:`unetkit.config.set_dotted`), and validate the result."""
    from ..config import RunConfig, set_dotted

    raw = config.to_dict()
    for key, value in overrides.items():
        set_dotted(raw, key, value)
    return RunConfig.from_dict(raw)


#: flags that fix the validation cases themselves: planned folds do not apply
FOLD_KEYS = {"data.val_dir", "data.num_folds", "data.fold"}


def planned_values(plan, overrides: dict) -> dict:
    """The plan's config values that the user's flags leave open.

    A flag replaces the planned value it names and any planned value above or below it in the
    config tree. The planned augmentation and learning rate are judged again on the steps each
    model gets (see :func:`_rejudge_short_run`), and so is a short run's halved batch where a
    saved plan is followed with another ``--time-budget`` or the user sets the width
    (:func:`_rejudge_batch`). ``--epochs`` replaces the planned schedule (a fixed number of epochs
    with the default schedule; a ``--time-budget`` given too only stops the run) and the planned
    folds (folds share a budget; with fixed epochs they would multiply the run: ``--folds`` still
    asks for them); a model preset other than the planned one keeps the planned width and depth
    only where that preset takes them; planned folds (``train.folds``) give way to a validation
    folder, a chosen fold (``--num-folds/--fold``) and torchrun, are judged again on the run's
    steps for another budget or width (:func:`_rejudge_folds`), and folds other than the planned
    ones scale the planned epoch length (each fold's share of the steps).
    """
    from ..models import MODELS
    from ..planning.planner import SCHEDULE_KEYS

    # a key the user sets, or one above or below it (``data.augmentation`` by ``--no-augment``,
    # ``data.augmentation.spatial`` by ``--set data.augmentation.spatial.p_elastic=0.5``)
    values = {
        k: v
        for k, v in plan.config.items()
        if not any(k == o or k.startswith(o + ".") or o.startswith(k + ".") for o in overrides)
    }
    # the two ways of resampling exclude each other: the user's choice replaces the planned one;
    # channel names choose the normalisation, so the user's replace a planned scheme too
    for mine, planned_key in (
        ("data.scale", "data.target_spacing"),
        ("data.target_spacing", "data.scale"),
        ("data.channel_names", "data.normalization"),
    ):
        if mine in overrides:
            values.pop(planned_key, None)
    # a depth, widths or topology of the user's own: the planned per-axis topology no longer fits
    if any(
        f"model.options.{k}" in overrides for k in ("depth", "features", "strides", "kernel_sizes")
    ):
        for k in ("strides", "kernel_sizes", "spatial_dims"):
            values.pop(f"model.options.{k}", None)
    if FOLD_KEYS & set(overrides) or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        values.pop("train.folds", None)
    if "train.epochs" in overrides:  # a fixed number of epochs: not the planned clock schedule,
        values = {k: v for k, v in values.items() if k not in SCHEDULE_KEYS}
        values.pop("train.folds", None)  # nor planned folds (K folds would run K times as long)
    _rejudge_folds(plan, overrides, values)
    planned, folds = plan.config.get("train.folds", 1), _run_folds(plan, overrides, values)
    if folds != planned and "train.iters_per_epoch" in values:
        # the planned epochs cut each fold's share of the steps: other folds, other shares
        values["train.iters_per_epoch"] = max(1, values["train.iters_per_epoch"] * planned // folds)
    speed = _width_speed(plan, overrides)
    if speed != 1.0 and "train.iters_per_epoch" in values:
        # a width of the user's own steps faster or slower: as many epochs (validations) as planned
        values["train.iters_per_epoch"] = max(1, round(values["train.iters_per_epoch"] * speed))
    _rejudge_short_run(plan, overrides, values, folds)
    _rejudge_batch(plan, overrides, values)
    name = overrides.get("model.name")
    if name and name != plan.config.get("model.name") and name in MODELS.names():
        accepted = dict(MODELS.options(name))
        if MODELS.get(name).builder.__name__ == "UNet3Plus":  # no anisotropic topology there
            accepted.pop("strides", None)
            accepted.pop("kernel_sizes", None)
        values = {
            k: v
            for k, v in values.items()
            if not k.startswith("model.options.") or k.split(".")[-1] in accepted
        }
    return values


def _run_folds(plan, overrides: dict, values: dict) -> int:
    """The folds the run trains: the planned ones while ``values`` keeps them (as judged again
    for this run's steps, :func:`_rejudge_folds`; the plan's where the user's are no count: the
    config check names them), else the user's (1 without ``--folds``)."""
    folds = overrides.get("train.folds", 1)
    if "train.folds" in values:
        return values["train.folds"]
    if not isinstance(folds, int) or folds < 1:
        return plan.config.get("train.folds", 1)
    return folds


def _rejudge_folds(plan, overrides: dict, values: dict) -> None:
    """Judge the planned folds again, in ``values``, where a saved plan is followed with another
    ``--time-budget`` or the user sets the width: K folds share the run's steps, so a plan made
    for 30 minutes with 5 folds, followed for 5, would give each fold a sixth of the steps the
    plan found enough (:func:`plan_folds`, on the steps of the whole run, :func:`_budget_steps`).
    This run's folds are judged, not the plan's: the run has no validation folder (one given
    drops the planned folds). Folds of the user's own, a fixed ``--epochs`` and plans saved
    before their steps were keep what they have."""
    from ..planning.planner import plan_folds

    steps = _budget_steps(plan, overrides)
    cases = plan.fingerprint.get("cases")
    if "train.folds" not in values or steps is None or not isinstance(cases, int):
        return
    cases = max(cases, int(plan.fingerprint.get("cases_found") or 0))  # a sample read: all
    if round(steps) == plan.model_steps * plan.config.get("train.folds", 1):
        return  # the plan's own steps: its own decision stands
    width = overrides.get("model.options.base_features")
    if _width_speed(plan, overrides) == 1.0:
        width = plan.config.get("model.options.base_features")
    budget = overrides.get("train.time_budget_minutes") or plan.budget_minutes
    values["train.folds"] = plan_folds(cases, int(steps), width, budget, False)[0]


def _folds_note(plan, planned: dict, chosen: dict):
    """One line where :func:`_rejudge_folds` changed the planned folds (``None`` otherwise)."""
    folds, theirs = planned.get("train.folds"), plan.config.get("train.folds", 1)
    if folds is None or folds == theirs:
        return None
    steps = int(_budget_steps(plan, chosen))
    on = []
    if _width_speed(plan, chosen) != 1.0:
        on.append(f"width {chosen['model.options.base_features']}")
    budget = chosen.get("train.time_budget_minutes") or plan.budget_minutes
    if budget != plan.budget_minutes:
        on.append(f"{budget:g} minutes")
    each = f"{folds} folds of {steps // folds} steps each" if folds > 1 else "one model"
    return (
        f"plan: {each}, not the plan's {theirs} fold{'s' if theirs > 1 else ''}: this run "
        f"({', '.join(on)}) has {steps} steps in all, the plan {plan.model_steps * theirs}; "
        "--folds K to choose"
    )


def _yours_note(plan, chosen: dict):
    """One line naming the planned values that the user's own replace (``None`` if none do).

    The plan table above it shows what the planner chose; without this line a user who passed
    ``--set train.lr=0.001`` reads "lr 0.003" there and cannot tell which one trains. ``chosen``
    are the flags (and, with ``--plan``, the config file's values), compared as the table writes
    them (a tuple equals its list, 10 equals 10.0)."""
    from ..data.normalization import describe_normalization
    from ..errors import ConfigError
    from ..planning.planner import show_value

    def planned(key: str, value) -> str:
        if key == "train.epochs" and plan.config.get("train.scheduler") == "budget":
            return "as many as the budget allows"  # the plan's 1000 is only a ceiling
        return show_value(value)

    replaced = [
        f"{key} {show_value(value)} (planned {planned(key, plan.config[key])})"
        for key, value in chosen.items()
        if key in plan.config and show_value(value) != show_value(plan.config[key])
    ]
    # the normalisation is chosen when the run starts (from channel names), not a config value
    decided = {d.name: d.value for d in plan.decisions}
    norm = {k: v for k, v in chosen.items() if k.split(".")[:2] == ["data", "normalization"]}
    if norm and "normalization" in decided:
        spec = dict(norm.get("data.normalization") or {})  # a config file's leaves come apart
        spec.update({k.split(".", 2)[2]: v for k, v in norm.items() if k.count(".") >= 2})
        spec.setdefault("name", str(decided["normalization"]).split(" ")[0])
        try:
            yours = describe_normalization(spec)
        except (ConfigError, KeyError, TypeError, AttributeError):  # refused later: as given
            yours = ", ".join(f"{k} {show_value(v)}" for k, v in norm.items())
        if yours != decided["normalization"]:
            replaced.append(f"normalization {yours} (planned {decided['normalization']})")
    return f"plan: yours, not the plan's: {'; '.join(replaced)}" if replaced else None


def _rejudge_short_run(plan, overrides: dict, values: dict, folds: int) -> None:
    """Judge the planned augmentation and learning rate again on the steps each model now gets,
    in ``values``.

    The plan judged them on the budget's steps per model (``Plan.model_steps``); other folds, a
    fixed ``--epochs`` (its epochs × iterations per epoch), another ``--time-budget`` for a saved
    plan or a width of the user's own (:func:`_budget_steps`) change them. Values of the user's
    own are left alone (they are not in ``values``); plans saved before their steps were keep
    theirs.
    """
    from ..config import TrainConfig
    from ..planning.planner import plan_augmentation, plan_lr

    if "train.epochs" in overrides:
        iters = overrides.get("train.iters_per_epoch", TrainConfig().iters_per_epoch)
        steps = overrides["train.epochs"] * iters
    else:
        steps = _budget_steps(plan, overrides)
        if steps is None:
            return
    steps = int(steps // max(folds, 1))
    if not any(k == "data.augmentation" or k.startswith("data.augmentation.") for k in overrides):
        for key in [k for k in values if k.startswith("data.augmentation.")]:
            del values[key]
        values.update(plan_augmentation(steps)[2])
    if "train.lr" in values:
        scale = overrides.get("data.scale", plan.config.get("data.scale", 1.0))
        values["train.lr"] = plan_lr(steps, 1.0 if scale is None else scale)[0]


def _budget_steps(plan, overrides: dict):
    """The steps of the whole run (every fold) at the plan's full batch under the user's budget
    and width: the plan's own, scaled by ``--time-budget`` over the planned budget and by the
    planned width's seconds per step over the user's (:meth:`Plan.step_seconds`). ``None`` for
    plans saved before their steps were."""
    if plan.model_steps is None:
        return None
    budget = overrides.get("train.time_budget_minutes") or plan.budget_minutes
    steps = plan.model_steps * plan.config.get("train.folds", 1) * budget / plan.budget_minutes
    return steps * _width_speed(plan, overrides)


def _width_speed(plan, overrides: dict) -> float:
    """How many times faster a step of the user's width (``model.options.base_features``) is
    than one of the planned width; 1 without a width of the user's own or the plan's timings, and
    for another model or widths given otherwise (``features``, ``feature_scale``), whose first
    width ``base_features`` does not say."""
    width, planned = (
        overrides.get("model.options.base_features"),
        plan.config.get("model.options.base_features"),
    )
    other = overrides.get("model.name", plan.config.get("model.name")) != plan.config.get(
        "model.name"
    ) or any(f"model.options.{k}" in overrides for k in ("features", "feature_scale"))
    if other or isinstance(width, bool) or not isinstance(width, int) or width == planned:
        return 1.0
    mine, theirs = plan.step_seconds(width), plan.step_seconds(planned)
    return theirs[0] / mine[0] if mine and theirs else 1.0


def _width_note(plan, overrides: dict, folds: int):
    """One line for a width of the user's own that changes the steps the short-run rules read
    (``None`` otherwise, and under ``--epochs``: its steps are epochs × iterations)."""
    if "train.epochs" in overrides or plan.model_steps is None:
        return None
    ratio = _width_speed(plan, overrides)
    if ratio == 1.0:
        return None
    width = overrides["model.options.base_features"]
    budget = _budget_steps(plan, overrides) / ratio  # the planned width's steps in this budget
    how = "measured" if plan.step_seconds(width)[1] else "estimated from the widths timed"
    return (
        f"plan: width {width} gets ≈ {int(budget * ratio // folds)} steps per model (the planned "
        f"width {plan.config['model.options.base_features']}: {int(budget // folds)}; {how}): "
        "the short-run rules are judged on them"
    )


def _width_hint(plan, overrides: dict):
    """One line where a saved plan is followed with a budget whose steps would choose another
    width than the plan's (the widths the probe timed, :func:`choose_width`'s rule), naming the
    two ways to get it; ``None`` otherwise. The width is not changed: a plan fixes the net."""
    from ..planning.planner import choose_width

    budget = overrides.get("train.time_budget_minutes")
    planned = plan.config.get("model.options.base_features")
    if (
        not budget
        or budget == plan.budget_minutes
        or "train.epochs" in overrides
        or any(k == "model" or k.startswith("model.") for k in overrides)
        or not plan.timed_widths()
    ):
        return None
    best, steps, _ = choose_width(plan.timed_widths(), budget)  # as the planner chooses
    width = best.candidate.base_features
    if width == planned:
        return None
    return (
        f"plan: width {width} would suit this run's {budget:g} minutes better than the plan's "
        f"{planned} (made for {plan.budget_minutes:g}; {steps} steps of it in the budget): plan "
        f"again ('unetkit plan DATA --time-budget {budget:g}') or add --set "
        f"model.options.base_features={width}"
    )


def _rejudge_batch(plan, overrides: dict, values: dict) -> None:
    """Judge the short-run halving of the planned batch again, in ``values``, for another budget,
    width or patch.

    A saved plan (``--plan``) made for 5 minutes halves its batch; followed with ``--time-budget
    60`` the run is no longer short and trains at the full batch (and the other way round), and a
    narrower net of the user's own may fit enough steps not to be short either. A patch of the
    user's own starts from the batch of the planned pixels (:func:`_full_batch`). The planned
    epoch length is scaled so that an epoch covers the same pixels. A batch of the user's own, a
    fixed ``--epochs`` and plans saved without ``full_batch`` keep the batch as it is.
    """
    from ..planning.planner import short_run_batch

    steps = _budget_steps(plan, overrides)
    planned = values.get("train.batch_size")
    if (
        "train.epochs" in overrides
        or steps is None
        or plan.full_batch is None
        or not isinstance(planned, int)
    ):
        return
    full, patch = _full_batch(plan, overrides)
    batch = short_run_batch(full, int(steps))[0]
    planned_patch = list(plan.config.get("data.patch_size") or patch)
    if batch != planned or patch != planned_patch:
        values["train.batch_size"] = batch
        if "train.iters_per_epoch" in values:  # an epoch of the planned pixels (and time)
            ratio = planned * math.prod(planned_patch) / (batch * math.prod(patch))
            values["train.iters_per_epoch"] = max(1, round(values["train.iters_per_epoch"] * ratio))


def _full_batch(plan, overrides: dict) -> tuple[int, list]:
    """The batch before a short run's halving, and the patch it is for: the plan's, or for a
    patch of the user's own (``data.patch_size``) the batch of the planner's pixels per batch
    (:func:`~unetkit.planning.planner.plan_batch`), so a 256² patch in a plan made for 16 × 128²
    trains 4 images a step, not 16 (four times the memory and the step time the plan counted)."""
    from ..planning.planner import plan_batch

    planned = list(plan.config.get("data.patch_size") or [])
    mine = overrides.get("data.patch_size")
    dims = int(plan.fingerprint.get("spatial_dims") or len(planned) or 2)
    sizes = list(mine) if isinstance(mine, (list, tuple)) else [mine] * dims
    if (
        mine is None
        or len(sizes) != dims
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sizes)
        or sizes == planned
    ):
        return plan.full_batch, planned
    return plan_batch(sizes, dims), sizes


def _plan(args, config, overrides: dict):
    """The saved plan (``--plan``) or a new one for this data, budget and device."""
    from ..planning import Plan
    from .plan import make_plan_for

    if args.plan:
        plan = Plan.load(args.plan)
        print(f"plan: {args.plan}")
    else:
        plan = make_plan_for(
            config.data.train_dir,
            config.data.val_dir,
            config.train.time_budget_minutes,
            config.train.device,
            config.data.mask_suffix,
            config.data.mask_kind,
            ignore_value=config.data.ignore_value,
            scale=overrides.get("data.scale"),
            channel_names=config.data.channel_names,
            orientation=config.data.orientation,
            target_spacing=overrides.get("data.target_spacing"),
            precision=config.train.precision,
        )
        if config.train.time_budget_minutes is None:
            print(
                f"plan: no --time-budget given: planned for {plan.budget_minutes:g} minutes "
                "(--time-budget MINUTES to change)"
            )
    print(plan.table())
    return plan


def _timed_elsewhere(plan, config) -> Optional[str]:
    """A line saying that a saved plan's probe timed another CPU or GPU, precision or CPU thread
    count than this run trains with (its width, batch and step counts were chosen for that speed;
    the schedule follows the clock either way), or ``None``."""
    import warnings

    from .. import runtime
    from ..planning.probe import key_differences, machine_key

    if not plan.machine.get("key"):
        return None
    device = runtime.resolve_device(config.train.device)
    dims = int(plan.fingerprint.get("spatial_dims") or 2)
    with warnings.catch_warnings():  # the trainer warns about 3D bf16 itself
        warnings.simplefilter("ignore")
        dtype = runtime.training_precision(config.train.precision, device, dims)
    differ = key_differences(plan.machine["key"], machine_key(device, dtype))
    if not differ:
        return None
    return (
        f"plan: its probe timed {'; '.join(differ)}: the width, batch and step counts were "
        "chosen for that speed (the schedule follows the clock); 'unetkit plan' with this run's "
        "device, precision and threads times them here"
    )


def _init_from_defaults(args, base, config, overrides: dict) -> dict:
    """With ``train.init_from``: the checkpoint's model and normalisation (dotted values) that the
    flags and ``--config`` leave open. The checkpoint is read and the model the run will build is
    checked against its weights now: a bad path or architecture fails before planning and data."""
    path = config.train.init_from
    if not path:
        return {}
    from ..training import init_from

    source = init_from.read_source(path)
    explicit = {**(_config_leaves(args.config) if args.config else {}), **overrides}
    values = init_from.defaults_left_open(init_from.inherited_values(source, path), explicit)
    model = apply_overrides(base, {**values, **overrides}).model  # a plan's model.* are dropped
    init_from.check_architecture(source, path, model.name, model.options)
    return values


def _config_leaves(path) -> dict:
    """The values a YAML config file sets, as dotted keys down to its leaves
    (``{"model.options.depth": 3}``; the file is already checked by :meth:`RunConfig.from_yaml`).

    An empty or blank section (``model:``, ``data: {}``) sets nothing; an empty mapping deeper down
    is a value (``augmentation: {}``: the default transforms).
    """
    from pathlib import Path

    import yaml

    out: dict = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict) and (value or not prefix):
                walk(value, f"{prefix}{key}.")
            elif prefix:
                out[f"{prefix}{key}"] = value
            elif value is not None:  # a top-level scalar (output_dir: runs)
                out[key] = value

    walk(yaml.safe_load(Path(path).read_text()) or {}, "")
    return out


def _configure(config) -> None:
    """The process is the command's: its threads, and on CPU freed activations kept for the next step."""
    from .. import runtime

    runtime.configure_process(
        config.train.threads,
        reuse_freed_memory=runtime.resolve_device(config.train.device).type == "cpu",
    )


def plan_training(
    train_dir,
    val_dir=None,
    time_budget: Optional[float] = None,
    flags: Sequence[str] = (),
):
    """What ``unetkit train TRAIN_DIR [--val VAL_DIR] [--time-budget M] [FLAGS]`` would train, for
    Python callers (a notebook): the config, the plan's values under the flags', and the plan.
    ``Trainer(config, run_dir=..., plan=plan).fit()`` then trains that run; the plan table is
    printed as the command prints it.

    One model is planned (``--folds 1``) unless ``flags`` ask for folds: a ``--folds K`` config is
    trained by :func:`unetkit.training.folds.train_folds`. The process's threads are left as the
    caller set them (:func:`unetkit.runtime.configure_process` sets them, as the command does).

    Args:
        train_dir / val_dir: the training folder and an optional validation folder.
        time_budget: minutes (default: the planner's).
        flags: more ``unetkit train`` flags, e.g. ``["--model", "unet-small", "--seed", "1"]``.

    Returns:
        ``(RunConfig, plan as a dict, or None with --no-plan)``.

    Raises:
        ConfigError / DataError: a bad flag or data set, in one line, as the command says it.
    """
    from .parsing import command_args

    flags = [str(f) for f in flags]
    argv = ["train", str(train_dir)] + (["--val", str(val_dir)] if val_dir is not None else [])
    argv += ["--time-budget", f"{time_budget:g}"] if time_budget is not None else []
    argv += [] if any(f.split("=")[0] == "--folds" for f in flags) else ["--folds", "1"]
    config, plan = configure_new_run(command_args(argv + flags), configure=lambda config: None)
    return config, (plan.to_dict() if plan is not None else None)


def configure_new_run(args, configure=_configure):
    """A new run's config and plan from the parsed ``train`` arguments: flags over ``--config``
    over the defaults, the plan (unless ``--config``/``--no-plan``) for what they leave open, and a
    checkpoint's architecture and normalisation with ``--init-from``. The napari plugin builds its
    runs here too, so a run started there is ``unetkit train`` with the same flags.

    Args:
        configure: called with the config before the plan's probe (``unetkit train`` sets the
            process's threads and allocator there; a GUI inside another program passes a no-op).

    Returns:
        ``(RunConfig, Plan or None)``.
    """
    from ..config import RunConfig
    from ..errors import ConfigError
    from ..run_folder import check_new_run_dir

    overrides = collect_overrides(args)
    if getattr(args, "run_dir", None):
        check_new_run_dir(args.run_dir)
    base = RunConfig.from_yaml(args.config) if args.config else RunConfig()
    config = apply_overrides(base, overrides)  # bad flags fail before any data is read
    if config.data.train_dir is None:
        raise ConfigError(
            "give the training folder: unetkit train DATA_DIR (or data.train_dir in --config)"
        )
    inherited = _init_from_defaults(args, base, config, overrides)  # {} without --init-from
    configure(config)  # before the probe: it measures with the run's threads
    plan = None
    if args.plan or not (args.config or args.no_plan):
        from .. import runtime

        # a precision the device cannot run fails before the data is read and timed
        runtime.resolve_precision(
            config.train.precision, runtime.resolve_device(config.train.device)
        )
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not args.plan:
            raise ConfigError(
                "under torchrun every process must follow the same plan: run 'unetkit plan "
                "DATA_DIR' first and pass --plan plan.json (or --no-plan)"
            )
        t0 = time.monotonic()
        plan = _plan(args, config, overrides)
        # with --plan and --config, the config file's values count as the user's, as flags do
        chosen = {**(_config_leaves(args.config) if args.config else {}), **overrides}
        # with --init-from the checkpoint's net trains: its width decides the steps
        chosen_net = {**{k: v for k, v in inherited.items() if k.startswith("model.")}, **chosen}
        planned = planned_values(plan, chosen_net)
        note = _width_note(plan, chosen_net, _run_folds(plan, chosen_net, planned))
        notes = (_yours_note(plan, chosen), note, _width_hint(plan, chosen_net))
        for line in (*notes, _folds_note(plan, planned, chosen_net)):
            if line:
                print(line)
        if planned.get("train.batch_size", plan.config.get("train.batch_size")) != (
            plan.config.get("train.batch_size")
        ):
            budget = chosen.get("train.time_budget_minutes") or plan.budget_minutes
            on = [f"width {chosen_net['model.options.base_features']}'s steps"] if note else []
            full, patch = _full_batch(plan, chosen_net)
            if full != plan.full_batch:
                from ..planning.planner import PIXELS_PER_BATCH

                size = "×".join(map(str, patch))
                on.insert(
                    0, f"your {size} patch (≈ {PIXELS_PER_BATCH[len(patch)]:,} pixels a batch)"
                )
            if budget != plan.budget_minutes:
                on.append(f"this run's {budget:g} minutes (the plan's {plan.budget_minutes:g})")
            print(
                f"plan: batch {planned['train.batch_size']}, not the planned "
                f"{plan.config['train.batch_size']}: a short run's batch is judged on "
                + (" and ".join(on) or "this run's steps")
            )
        if config.train.init_from:  # the architecture is the checkpoint's, not the planned one
            from ..planning.planner import LR

            planned = {k: v for k, v in planned.items() if not k.startswith("model.")}
            # fine-tuning starts from learnt features: not a short run's higher rate from scratch
            if planned.get("train.lr", LR) > LR:
                planned["train.lr"] = LR
        config = apply_overrides(base, {**planned, **inherited, **overrides})
        elsewhere = _timed_elsewhere(plan, config) if args.plan else None
        if elsewhere and int(os.environ.get("RANK", "0")) == 0:  # once under torchrun
            print(elsewhere)
        spent = time.monotonic() - t0
        budget = config.train.time_budget_minutes
        if budget is not None and not args.plan and spent > 1:
            # the budget is the whole command's: planning took part of it
            left, line = budget_left_after_plan(budget, spent)
            print(line)
            config = config.override({"train.time_budget_minutes": round(left, 3)})
    elif inherited:
        config = apply_overrides(base, {**inherited, **overrides})
    if config.train.init_from:
        from ..training.init_from import describe_inherited

        lowered = (
            plan is not None
            and "train.lr" not in overrides
            and plan.config.get("train.lr", config.train.lr) > config.train.lr
        )
        print(
            describe_inherited(inherited, config.train.init_from)
            + (" (not the planned model: the table's model rows do not apply)" if plan else "")
            + (
                f"; lr {config.train.lr:g}, not the planned {plan.config['train.lr']:g}: "
                "fine-tuning starts from learnt features"
                if lowered
                else ""
            )
        )
    return config, plan


def run(args) -> int:
    from ..errors import ConfigError
    from ..training import Trainer

    budget = args.time_budget
    if budget is not None and not 0 < budget < math.inf:  # as plan says it, not as the config key
        raise ConfigError(f"--time-budget must be > 0 minutes, got {budget:g}")
    if args.resume:
        if args.config or args.data_dir or args.plan or args.init_from:
            raise ConfigError(
                "--resume continues a run with its own config, plan, data and weights; drop "
                "DATA_DIR/--config/--plan/--init-from"
            )
        if args.run_dir is not None:
            raise ConfigError(
                f"--resume continues the run in its own folder ({args.resume}); drop --run-dir"
            )
        if args.folds is not None:
            raise ConfigError(
                "--resume continues one run (one fold of a --folds run: --resume RUN_DIR/fold_i); "
                "drop --folds"
            )
        trainer = Trainer.resume(args.resume, progress=not args.no_progress)
        changed = apply_overrides(trainer.config, collect_overrides(args))
        check_resume_changes(trainer.config, changed, args.resume)
        trainer.config = changed
        trainer.restart_budget = args.time_budget is not None  # else the rest of its own
        _configure(trainer.config)
    else:
        config, plan = configure_new_run(args)
        if config.train.folds > 1:
            from ..training.folds import train_folds

            train_folds(
                config,
                run_dir=args.run_dir,
                progress=not args.no_progress,
                plan=plan.to_dict() if plan is not None else None,
                after_fold=_tell_the_probe,
            )
            return 0
        trainer = Trainer(
            config,
            run_dir=args.run_dir,
            progress=not args.no_progress,
            plan=plan.to_dict() if plan is not None else None,
        )
    result = trainer.fit()
    best = result.best
    if trainer.dist.is_main:
        _tell_the_probe(trainer)
        best_txt = (
            f"best {best['metric']} {best['value']:.4f} at epoch {best['epoch']}"
            if best
            else "no validation"
        )
        print(
            f"done: {result.stop_reason} after epoch {result.epochs_completed}; {best_txt}; "
            f"checkpoints in {result.run_dir / 'checkpoints'}"
        )
    return 0


MIN_TRAIN_MINUTES = 0.1


def budget_left_after_plan(budget: float, spent: float) -> tuple[float, str]:
    """Minutes left to train once planning took ``spent`` seconds of the command's budget, and the
    line that says so. A budget the plan used up still trains ``MIN_TRAIN_MINUTES`` (the trainer
    saves a checkpoint however short its training, so the run has a model to predict with), and the
    line says so rather than "0.1 of 1e-09 minutes left".
    """
    left = budget - spent / 60
    if left >= MIN_TRAIN_MINUTES:
        return left, f"plan: made in {spent:.0f} s; {left:.1f} of {budget:g} minutes left to train"
    return MIN_TRAIN_MINUTES, (
        f"plan: made in {spent:.0f} s, more than the {budget:g}-minute budget leaves to train: "
        f"training for {MIN_TRAIN_MINUTES:g} minutes (a first model)"
    )


def check_resume_changes(saved, changed, run_dir) -> None:
    """Refuse, in one line, a ``--resume`` whose flags change what the run is
    (:data:`~unetkit.training.trainer.RESUME_MAY_CHANGE` lists what they may change).

    Raises:
        ConfigError: naming the first setting changed, its old and new value, and what to do.
    """
    from ..errors import ConfigError
    from ..training.trainer import first_resume_change

    change = first_resume_change(saved, changed)
    if change is not None:
        key, old, new = change
        raise ConfigError(
            f"--resume continues {run_dir} as it was set up; {key} would change from "
            f"{old!r} to {new!r}. Only the length (--epochs, --time-budget) and where it runs "
            "may change: to change more, start a new run from its weights (--init-from "
            f"{run_dir}/checkpoints/last.pt)"
        )


def _tell_the_probe(trainer) -> None:
    """After a planned run (or fold): a cached probe timing the run beat by far is forgotten,
    and the user is told (:func:`unetkit.planning.feedback.check_the_probe`)."""
    from ..planning.feedback import check_the_probe

    note = check_the_probe(trainer)
    if note:
        print(note)

"""``unetkit summary MODEL``: the per-layer table, parameter counts, FLOPs and memory of a model."""

from __future__ import annotations

import argparse

from .parsing import parse_value

EPILOG = """\
Any model option can be given as --name value, e.g.
  unetkit summary unet-original --input-size 572
  unetkit summary unet3plus --in-channels 3 --num-classes 1 --deep-supervision true
  unetkit summary unet --spatial-dims 3 --features 16,32,64,128 --input-size 64,128,128
  unetkit summary runs/unet-20261122-101500/checkpoints/best.pt   # a trained model (or its run folder)
  unetkit summary --list
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "summary",
        help="print a model's layers, parameters, FLOPs and memory",
        description="Print a model's per-layer table, parameter counts, FLOPs and an "
        "activation-memory estimate (traced on the meta device: instant).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "model",
        nargs="?",
        help="model preset name (see --list), or a checkpoint or run folder: the trained model, at "
        "its training patch unless --input-size is given",
    )
    p.add_argument("--list", action="store_true", help="list the model presets and exit")
    p.add_argument(
        "--input-size",
        help="spatial size: one number for every axis or one per axis "
        "(e.g. 572 or 64,128,128); default 512 (2D) / 128 (3D), "
        "572 / 132 for valid-padding nets (raised to the next size the net accepts)",
    )
    p.add_argument("--batch-size", type=int, default=1, help="batch size B (default 1)")
    p.add_argument(
        "--depth",
        type=int,
        default=2,
        help="nesting depth of the rows (1 = encoder/decoder, 2 = stages and blocks; 0 = every layer)",
    )
    p.set_defaults(run=run, accepts_extra=True)


def parse_model_options(extra: list[str]) -> dict:
    """``["--num-classes", "3", "--residual", "true"]`` → ``{"num_classes": 3, "residual": True}``."""
    from ..errors import ConfigError

    opts: dict = {}
    i = 0
    while i < len(extra):
        key = extra[i]
        if not key.startswith("--") or len(key) < 3:
            raise ConfigError(f"expected a model option like --num-classes 3, got {key!r}")
        key = key[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        elif i + 1 < len(extra) and not extra[i + 1].startswith("--"):
            value = extra[i + 1]
            i += 2
        else:
            value = "true"
            i += 1
        opts[key.replace("-", "_")] = parse_value(value)
    return opts


def _is_model_path(name: str) -> bool:
    """Whether ``name`` is a file or folder (a checkpoint or a run folder) rather than a preset."""
    from pathlib import Path

    return Path(name).exists() or name.endswith(".pt") or "/" in name


def _trained_model(path: str, extra: list[str]):
    """The model a checkpoint (or a run folder's first checkpoint) holds and its training patch;
    model options cannot be changed on it."""
    from ..checkpoint import build_model, load_checkpoint
    from ..errors import ConfigError
    from ..run_folder import model_files

    if extra:
        raise ConfigError(
            f"a trained model's options are its checkpoint's; drop {' '.join(extra)} (or name a "
            "preset to try options)"
        )
    first = model_files(path)[0]
    if first.suffix.lower() != ".pt":
        raise ConfigError(
            f"summary reads unetkit checkpoints (.pt), not {first.name}; give the checkpoint it "
            "was exported from"
        )
    ckpt = load_checkpoint(first)
    patch = ckpt.get("patch_size")
    return build_model(ckpt, first), (list(patch) if patch else None)


def run(args) -> int:
    from ..errors import ConfigError
    from ..models import MODELS, create_model, summary

    if args.list or not args.model:
        if not args.list:
            raise ConfigError(
                "name a model, e.g. 'unetkit summary unet' (see 'unetkit summary --list')"
            )
        width = max(len(n) for n in MODELS.names())
        for name in MODELS.names():
            print(f"{name.ljust(width)}  {MODELS.get(name).description}")
        return 0
    size = parse_value(args.input_size) if args.input_size else None
    if args.model not in MODELS.names() and _is_model_path(args.model):
        model, patch = _trained_model(args.model, args.extra)
        size = size if size is not None else patch
    else:
        from ..config import check_options

        options = parse_model_options(args.extra)
        # checked as train checks them, so a wrong type is one line naming model.options.<name>
        options = check_options(MODELS, args.model, options, "model.options", "model")
        model = create_model(args.model, **options)
    if isinstance(size, (str, float, bool)):
        raise ConfigError(
            f"--input-size must be integers like 572 or 64,128,128, got {args.input_size!r}"
        )
    print(summary(model, size, batch_size=args.batch_size, depth=args.depth or None))
    return 0

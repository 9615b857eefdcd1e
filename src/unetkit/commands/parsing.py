"""Parsers of command-line values shared by several sub-commands (one home, so ``train``,
``predict``, ``export`` and ``summary`` read ``512``, ``96,128,128`` or ``[1, 2]`` the same way).

Standard library only at import time, like every module under ``commands/``.
"""

from __future__ import annotations

import argparse
from typing import Optional, Sequence


def parse_value(text: str):
    """CLI text → int, float, bool, ``None`` (``null``, as YAML and the config's errors spell it),
    tuple (comma-separated) or, for ``[…]``/``{…}``, the YAML value; anything else stays a string
    (``none`` too: it names a normalisation and a scheduler)."""
    if text[:1] in "[{":
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            return text
    if "," in text:
        return tuple(parse_value(t) for t in text.split(",") if t)
    low = text.lower()
    if low == "null":
        return None
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


#: ``--help`` text of ``--channel-names`` (``train`` and ``plan``).
CHANNEL_NAMES_HELP = (
    "one name per image channel, e.g. CT or CT,T2: chooses the normalisation by nnU-Net's rule "
    "(CT: clip to the 0.5/99.5 percentiles of the training foreground, then its mean and std; "
    "noNorm: none; rescale_to_0_1: min-max; rgb_to_0_1: 0..255; any other name: z-score per "
    "image). Precedence: --normalization (data.normalization) > --channel-names > an nnU-Net "
    "dataset.json's channel_names > z-score per image"
)


#: the choices and ``--help`` text of ``--mask-kind`` (``train``, ``plan`` and ``check-data``)
MASK_KINDS = ("auto", "labels", "colors", "instances")
MASK_KIND_HELP = (
    "how to read masks. auto (default): 1 channel = class values, 3 = RGB colour classes; a 2D "
    "mask of more than 32 values (or colours), 0 (black) among them, each one connected region, "
    "is read as instance ids and so is the whole set, as are 2D masks numbered 0, 1 … n per image "
    "(n varying, up to 4 or more), each number one region. labels: class values, no limit, no guess. "
    "colors: RGB colour classes. instances: each non-zero id (or non-black colour) is one object"
)


#: the ``--help`` text of ``--ignore-value`` (``train``, ``plan`` and ``check-data``)
IGNORE_VALUE_HELP = (
    "the grey mask value of unlabelled pixels (partial annotations: scribbles, a few outlined "
    "objects, regions nobody annotated), e.g. 0 when 1, 2 … are the classes or 255 beside 0/1. "
    "Those pixels count in no loss, score or choice, and predictions label every pixel. Default: "
    'every value is a class (an nnU-Net dataset.json\'s "ignore" label is read as this)'
)


def channel_names(text: str) -> list:
    """``"CT,T2"`` → ``["CT", "T2"]`` (the ``--channel-names`` option of train and plan)."""
    names = [t.strip() for t in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(
            f"expected channel names separated by commas (e.g. CT or CT,T2), got {text!r}"
        )
    return names


def label_values(text: str) -> list:
    """``"0,255"`` → ``[0, 255]`` (the ``--labels`` option of check-data and evaluate)."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        values = [int(t) for t in items]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integer class values separated by commas (e.g. 0,255), got {text!r}"
        ) from None
    if len(values) < 2 or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(
            f"expected at least 2 different class values (e.g. 0,255), got {text!r}"
        )
    return values


class RaisingParser(argparse.ArgumentParser):
    """An argument parser whose errors are :class:`ConfigError` lines instead of an exit."""

    def error(self, message: str):
        from ..errors import ConfigError

        raise ConfigError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: Optional[str] = None):
        from ..errors import ConfigError

        raise ConfigError(f"{self.prog}: {message or 'help and version are not available here'}")


def command_args(argv: Sequence[str]) -> argparse.Namespace:
    """A ``unetkit`` sub-command line (``["train", DIR, "--epochs", "3"]``) parsed by that
    command's own parser, so every option keeps its CLI default.

    Raises:
        ConfigError: an unknown flag or a bad value, in one line.
    """
    import importlib

    parser = RaisingParser(prog="unetkit")
    sub = parser.add_subparsers(dest="command")
    importlib.import_module(f"unetkit.commands.{argv[0]}").add_parser(sub)
    return parser.parse_args(list(argv))

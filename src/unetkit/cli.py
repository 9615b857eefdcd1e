"""The ``unetkit`` command line: a thin layer over the Python API.

Each sub-command lives in ``unetkit.commands.<name>`` and exposes ``add_parser(subparsers)`` and
``run(args) -> int``. Those modules import only the standard library at import time (heavy imports
happen inside ``run``), so ``unetkit --help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from . import __version__

#: Sub-command modules, in the order ``--help`` lists them.
COMMANDS = ("plan", "train", "predict", "evaluate", "summary", "check_data", "export", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unetkit",
        description="Train, run and trust U-Net family segmentation models (U-Net, UNet 3+, UNet++).",
        epilog="Run 'unetkit COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"unetkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"unetkit.commands.{name}").add_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``unetkit`` script. Returns the exit status (2 on a user error)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    from .errors import UnetkitError

    try:
        return int(args.run(args) or 0)
    except UnetkitError as exc:
        print(f"unetkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"unetkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The ``unetkit`` command line: a thin layer over the Python API.

Each sub-command lives in ``unetkit.commands.<name>`` and exposes ``add_parser(subparsers)`` and
``run(args) -> int``. Those modules import only the standard library at import time (heavy imports
happen inside ``run``), so ``unetkit --help`` answers at once.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from typing import Optional, Sequence

from . import __version__

#: Sub-command modules, in the order ``--help`` lists them.
COMMANDS = ("plan", "train", "predict", "evaluate", "summary", "check_data", "export", "demo")


class OneLineErrors(argparse.ArgumentParser):
    """argparse's parser whose errors are one line, as every other error of unetkit: argparse
    prints the whole usage block first (twenty lines for ``train``), which buries the line that
    says what is wrong. The line names the ``--help`` to read instead; exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(
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
        prog = f"unetkit {args.command}"
        print(
            f"{prog}: error: unrecognized arguments: {' '.join(extra)} (see '{prog} --help')",
            file=sys.stderr,
        )
        return 2
    args.extra = extra
    from .errors import UnetkitError

    threads = _torch_threads()
    stdout = sys.stdout
    sys.stdout = _Stdout(stdout)
    term = _stop_on_sigterm()
    try:
        return int(args.run(args) or 0)
    except _StdoutClosed:  # `unetkit check-data DIR | head`: the reader has what it wanted
        _silence_stdout(stdout)
        return 141  # as a command stopped by SIGPIPE ends
    except UnetkitError as exc:
        print(f"unetkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"unetkit {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return 143  # as a command killed by SIGTERM ends
    except KeyboardInterrupt:
        print(f"unetkit {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if isinstance(sys.stdout, _Stdout):
            sys.stdout = stdout
        _restore_threads(threads)
        _restore_sigterm(term)


class Terminated(KeyboardInterrupt):
    """SIGTERM (what ``kill``, SLURM at a job's time limit and container stops send), raised where
    the command is, as Ctrl-C is: a run ends as an interrupted one (its last epoch saved, the log
    saying how to resume it) and outputs being written are removed, where the signal's default
    would kill the process mid-write."""

    unetkit_ending = "terminated (SIGTERM)"  # how train.log says the run ended


def _stop_on_sigterm():
    """Raise :class:`Terminated` on SIGTERM while a command runs, where SIGTERM has its default
    action (main thread only; a caller that ignores it or handles it keeps that); returns the
    handler to restore, or ``None`` where none was set."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None  # ignored, or the caller's own handler (Python's or C's): theirs to keep

    def handler(signum, frame):
        raise Terminated()

    try:
        return signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):
        return None


def _restore_sigterm(previous) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


class _StdoutClosed(Exception):
    """The reader of the command's standard output went away (a closed pipe)."""

    unetkit_ending = "its output was closed"  # how train.log says the run ended


class _Stdout:
    """The command's standard output, telling a closed pipe there apart from a broken pipe
    anywhere else (a worker's, a socket's), which stays an error of its own."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except BrokenPipeError as exc:
            raise _StdoutClosed() from exc

    def flush(self):
        try:
            return self._stream.flush()
        except BrokenPipeError as exc:
            raise _StdoutClosed() from exc

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _silence_stdout(stream) -> None:
    """Point the closed stdout at the null device, so that the interpreter's last flush into the
    pipe does not print a second traceback (Python's documented way out of a SIGPIPE)."""
    import os

    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())


def _torch_threads() -> Optional[int]:
    """torch's CPU threads now, or ``None`` while torch is not imported (``--help`` stays fast)."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def _restore_threads(before: Optional[int]) -> None:
    """Give back the thread count the caller had: a command's ``--threads`` is its own, so a
    notebook that runs ``main([..., "--threads", "1"])`` keeps its threads afterwards. Without
    torch loaded before, that is the count torch chose when unetkit first imported it. (The
    allocator setting of :func:`unetkit.runtime.configure_process` stays: it cannot be undone.)"""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    if before is None:
        runtime = sys.modules.get("unetkit.runtime")
        before = getattr(runtime, "THREADS_AT_IMPORT", None)
    if before and torch.get_num_threads() != before:
        torch.set_num_threads(before)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

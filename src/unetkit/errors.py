"""Exceptions that carry a message meant for the user.

The CLI prints the message of a :class:`UnetkitError` as one line and exits with status 2 instead
of showing a traceback. Each subclass also derives from the built-in exception a Python user would
expect (``ValueError`` for bad values and data, ``OSError`` for outputs that cannot be written), so
``except ValueError`` keeps working.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union


class UnetkitError(Exception):
    """Base class of the errors unetkit raises on purpose (bad input, bad configuration)."""


class ConfigError(UnetkitError, ValueError):
    """An argument or configuration value is invalid; the message says which and how to fix it."""


class DataError(UnetkitError, ValueError):
    """A data file or folder is unusable. ``path`` names it; the message starts with it."""

    def __init__(self, message: str, path: Optional[Union[str, Path]] = None):
        self.path = Path(path) if path is not None else None
        super().__init__(f"{path}: {message}" if path is not None else message)


class OutputError(UnetkitError, OSError):
    """An output file or folder cannot be written (a file in the way, no permission, disk full).

    ``path`` names the output; the message starts with it and says the cause and what to do.
    ``errno`` is the operating system's error number when one caused it.
    """

    def __init__(
        self, message: str, path: Optional[Union[str, Path]] = None, errno: Optional[int] = None
    ):
        self.path = Path(path) if path is not None else None
        super().__init__(f"{path}: {message}" if path is not None else message)
        self.errno = errno

"""Small helpers used across unetkit: atomic file writing, output locations, tile settings, JSON.

Every file unetkit writes goes through :func:`atomic_path` and every output folder through
:func:`ensure_output_dir` (or :func:`output_folder`), so an output location that cannot be written
(a file in the way, no permission, a read-only or full disk) is reported in one place, as one
:class:`~unetkit.errors.OutputError` that names the path, the cause and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import math
import numbers
import os
import re
import uuid
from pathlib import Path, PurePath
from typing import Any, Iterator, Optional, Union

from .errors import ConfigError, DataError, OutputError

PathLike = Union[str, Path]
_DOUBLE_SUFFIXES = (".nii.gz", ".ome.tif", ".ome.tiff", ".ome.zarr", ".tar.gz")
#: Names :func:`temp_path` makes: ``.<stem>.<12 hex digits>.tmp<suffix>``.
TEMP_NAME = re.compile(
    r"^\..+\.[0-9a-f]{12}\.tmp("
    + "|".join(re.escape(d) for d in _DOUBLE_SUFFIXES)
    + r"|\.[^.]*)?$",
    re.IGNORECASE,
)
_CHOOSE = "choose another output location"


def _split_suffix(path: Path) -> tuple[str, str]:
    name = path.name
    for double in _DOUBLE_SUFFIXES:
        if name.lower().endswith(double):
            return name[: -len(double)], name[-len(double) :]
    return path.stem, path.suffix


def temp_path(path: PathLike) -> Path:
    """A fresh hidden temporary name beside ``path`` that keeps its suffix:
    ``out/.img.<12 hex>.tmp.png`` for ``out/img.png`` (see :data:`TEMP_NAME`)."""
    path = Path(path)
    stem, suffix = _split_suffix(path)
    return path.parent / f".{stem}.{uuid.uuid4().hex[:12]}.tmp{suffix}"


def _file_in_the_way(path: Path, folder: bool) -> Optional[Path]:
    """The nearest existing non-folder among ``path``'s parents (and ``path`` itself when it should
    be a folder): what makes creating ``path`` impossible."""
    candidates = ([path] if folder else []) + list(path.parents)
    for p in candidates:
        if os.path.lexists(p):
            return None if p.is_dir() else p
    return None


def output_error(exc: OSError, path: PathLike, folder: bool = False) -> OutputError:
    """Turn an :class:`OSError` raised while creating or writing ``path`` into an
    :class:`~unetkit.errors.OutputError` that names ``path`` and says why and what to do."""
    path = Path(path)
    code = getattr(exc, "errno", None)
    blocker = _file_in_the_way(path, folder)
    if blocker == path:
        message = f"exists and is a file, not a folder; {_CHOOSE} or remove the file"
    elif blocker is not None:
        message = f"cannot create it: {blocker} is a file, not a folder; {_CHOOSE}"
    elif code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        message = f"no space left on the device (disk full or quota reached); free some space or {_CHOOSE}"
    elif code in (errno.EACCES, errno.EPERM):
        message = f"permission denied; {_CHOOSE} (a folder you can write to)"
    elif code == errno.EROFS:
        message = f"read-only file system; {_CHOOSE}"
    elif code == errno.EISDIR:
        message = "is a folder; give a file name"
    elif code == errno.ENOENT:
        message = f"cannot create it there ({exc.strerror or exc}); {_CHOOSE}"
    else:
        message = f"cannot write it ({exc.strerror or exc}); {_CHOOSE}"
    return OutputError(message, path, code)


def ensure_output_dir(path: PathLike) -> list[Path]:
    """Create the folder ``path`` (and its parents) and return the folders that were created,
    outermost first (empty when it existed), so a caller that fails can remove them again.

    Raises:
        OutputError: ``path`` or one of its parents is a file, or the folder cannot be created
            (permission, read-only file system …); nothing is created then.
    """
    path = Path(path)
    missing = []
    p = path
    while not p.is_dir():
        if os.path.lexists(p):
            raise output_error(
                NotADirectoryError(errno.ENOTDIR, "Not a directory"), path, folder=True
            )
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    missing.reverse()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        remove_empty_dirs(missing)
        raise output_error(exc, path, folder=True) from exc
    return missing


def remove_empty_dirs(created: list[Path]) -> None:
    """Remove the folders :func:`ensure_output_dir` created, innermost first, as long as they are empty."""
    for d in reversed(created):
        try:
            d.rmdir()
        except OSError:
            break


@contextlib.contextmanager
def output_folder(path: PathLike) -> Iterator[Path]:
    """``ensure_output_dir(path)`` for the body; if the body fails, the folders it created are
    removed again when they are still empty (a failed command leaves nothing behind)."""
    created = ensure_output_dir(path)
    try:
        yield Path(path)
    except BaseException:
        remove_empty_dirs(created)
        raise


def check_output_file(path: PathLike) -> None:
    """Refuse early (before a long computation) an output file that could never be written:
    ``path`` is a folder, one of its parents is a file, or the nearest existing parent folder is
    not writable. Creates nothing; the write itself still reports what only it can find out
    (a full disk).

    Raises:
        OutputError: naming ``path`` and the cause.
    """
    path = Path(path)
    if path.is_dir():
        raise output_error(IsADirectoryError(errno.EISDIR, "Is a directory"), path)
    blocker = _file_in_the_way(path, folder=False)
    if blocker is not None:
        raise output_error(NotADirectoryError(errno.ENOTDIR, "Not a directory"), path)
    parent = next((p for p in path.parents if p.is_dir()), None)
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        read_only = hasattr(os, "statvfs") and bool(
            os.statvfs(parent).f_flag & getattr(os, "ST_RDONLY", 1)
        )
        code = errno.EROFS if read_only else errno.EACCES
        raise output_error(OSError(code, os.strerror(code)), path)


def check_output_dir(path: PathLike) -> None:
    """Refuse early an output folder that could never be created: ``path`` or one of its parents
    is a file. Creates nothing.

    Raises:
        OutputError: naming ``path`` and the file in the way.
    """
    if _file_in_the_way(Path(path), folder=True) is not None:
        raise output_error(NotADirectoryError(errno.ENOTDIR, "Not a directory"), path, folder=True)


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    The temporary name keeps the suffix of ``path`` (``.nii.gz``, ``.png`` …) so libraries that
    choose the format from the name write the right one. The file is synced to disk before the
    rename, so a crash (even SIGKILL or power loss) leaves either the old ``path`` or the new one,
    never a half-written ``path``; at worst a stray ``.<name>.<id>.tmp<suffix>`` file that
    :func:`remove_stale_temp_files` clears. On an exception the temporary file is removed and
    ``path`` is left as it was. Missing parent folders are created (and removed again when the
    write fails).

    Raises:
        OutputError: any :class:`OSError` while creating the folder or writing, syncing or renaming
            the file (a file in the way, permission, read-only or full disk), naming ``path``.
    """
    path = Path(path)
    created = ensure_output_dir(path.parent)
    tmp = temp_path(path)
    ok = False
    try:
        try:
            yield tmp
            if not tmp.exists():
                raise DataError("the writer produced no file", path)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            ok = True
        except OutputError:
            raise
        except OSError as exc:
            raise output_error(exc, path) from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if not ok:
            remove_empty_dirs(created)


@contextlib.contextmanager
def atomic_dir(path: PathLike) -> Iterator[Path]:
    """:func:`atomic_path` for outputs that are folders (a zarr store): yield a temporary folder
    name beside ``path`` (not created); when the block succeeds it replaces ``path`` (an existing
    ``path`` is moved aside first and deleted after), otherwise it is deleted and ``path`` stays."""
    import shutil

    path = Path(path)
    created = ensure_output_dir(path.parent)
    tmp = temp_path(path)
    ok = False
    try:
        try:
            yield tmp
            if not tmp.exists():
                raise DataError("the writer produced nothing", path)
            old = temp_path(path) if path.exists() else None
            if old is not None:
                os.replace(path, old)
            os.replace(tmp, path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
            ok = True
        except OutputError:
            raise
        except OSError as exc:
            raise output_error(exc, path) from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if not ok:
            remove_empty_dirs(created)


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def remove_stale_temp_files(folder: PathLike) -> list[Path]:
    """Delete the temporary files a killed process left in ``folder`` (only names that
    :func:`temp_path` makes, see :data:`TEMP_NAME`); return them. Not for a folder another process
    is writing to at the same time: its temporary files would go too."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    import shutil

    stale = [p for p in folder.iterdir() if TEMP_NAME.match(p.name) and not p.is_symlink()]
    for p in stale:
        if p.is_dir():  # an unfinished zarr store
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return stale


def per_axis(
    value,
    ndim: int,
    name: str,
    *,
    kind: type = int,
    minimum: Optional[float] = None,
    positive: bool = False,
) -> tuple:
    """``value`` as one number per spatial axis: a number applies to every axis, a sequence must
    hold 1 or ``ndim`` of them. The one place unetkit expands sizes, borders, sigmas and spacings.

    Args:
        kind: ``int`` (sizes: floats that are not whole numbers are refused) or ``float``.
        minimum: lower bound for every value (inclusive); ``positive``: every value > 0 and finite.

    Raises:
        ConfigError: naming ``name``, the expected count and the value given.
    """
    import math

    scalar = isinstance(value, numbers.Number) and not isinstance(value, bool)
    try:
        values = [value] if scalar else list(value)
    except TypeError:
        raise ConfigError(
            f"{name} must be a number or {ndim} numbers (one per spatial axis), got {value!r}"
        ) from None
    values = [v.item() if hasattr(v, "item") and not isinstance(v, bool) else v for v in values]
    if len(values) == 1:
        values = values * ndim
    if len(values) != ndim:
        raise ConfigError(f"{name} needs {ndim} value(s), one per spatial axis; got {list(values)}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise ConfigError(f"{name} must hold numbers, got {list(values)}")
        if kind is int:
            if not math.isfinite(float(v)) or float(v) != int(v):
                raise ConfigError(f"{name} must hold whole numbers, got {list(values)}")
            v = int(v)
        else:
            v = float(v)
        out.append(v)
    if positive and not all(math.isfinite(v) and v > 0 for v in out):
        raise ConfigError(f"{name} must hold positive numbers, got {out}")
    if minimum is not None and any(v < minimum for v in out):
        raise ConfigError(f"{name} values must be ≥ {minimum}, got {out}")
    return tuple(out)


def _positive_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def check_tile_settings(
    tile=None, overlap=None, max_tile=None, min_overlap=None, batch_size=None, threads=None
) -> None:
    """Refuse prediction settings that would be silently ignored or fail deep in the tiler
    (``--tile 0``, ``--batch-size 0``, an overlap outside [0, 1) …), naming the option and the value.
    Standard library only, so the CLI can check them before importing torch.

    Raises:
        ConfigError: the first bad setting.
    """
    if tile is not None:
        sizes = [tile] if isinstance(tile, (numbers.Number, str)) else list(tile)
        if not sizes or not all(_positive_int(t) for t in sizes):
            raise ConfigError(
                f"tile (--tile) must be positive integers like 512 or 96,128,128, got {tile!r}"
            )
    if overlap is not None and not (isinstance(overlap, numbers.Real) and 0.0 <= overlap < 1.0):
        raise ConfigError(
            f"overlap (--overlap) must be a fraction in [0, 1), e.g. 0.5, got {overlap!r}"
        )
    for name, flag, value in (
        ("max_tile", "--max-tile", max_tile),
        ("batch_size", "--batch-size", batch_size),
        ("threads", "--threads", threads),
    ):
        if value is not None and not _positive_int(value):
            raise ConfigError(f"{name} ({flag}) must be a positive integer, got {value!r}")
    if min_overlap is not None and not (
        isinstance(min_overlap, numbers.Integral) and min_overlap >= 0
    ):
        raise ConfigError(
            f"min_overlap (--min-overlap) must be an integer >= 0 (pixels), got {min_overlap!r}"
        )
    if max_tile is not None and min_overlap is not None and min_overlap >= max_tile:
        raise ConfigError(
            f"min_overlap (--min-overlap) {min_overlap} must be smaller than max_tile (--max-tile) "
            f"{max_tile}"
        )


def json_default(value: Any) -> Any:
    """The ``default=`` of every ``json.dumps`` in unetkit (export metadata, the demo's
    ``metrics.json``): what :mod:`json` cannot write by itself, as JSON types.

    numpy scalars and arrays and torch tensors (anything with ``tolist()``) → Python numbers and
    lists; paths → strings; tuples → lists; sets → sorted lists. Standard library only (no numpy or
    torch import). NaN and infinity stay floats (``json.dumps`` writes ``NaN`` / ``Infinity``);
    :func:`jsonable` makes strict JSON.

    Raises:
        TypeError: anything else (as :mod:`json` expects from ``default``).

    Example:
        >>> import json, numpy as np
        >>> json.dumps({"n": np.int64(3), "a": np.arange(2), "p": Path("x"), "s": {2, 1}}, default=json_default)
        '{"n": 3, "a": [0, 1], "p": "x", "s": [1, 2]}'
    """
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def jsonable(x: Any) -> Any:
    """``x`` with strict JSON types only (``summary.json`` of ``unetkit evaluate``): dict keys →
    strings, tuples → lists, NaN → ``None``, ±inf → ``"inf"`` / ``"-inf"``, numpy scalars → Python
    numbers, and what :func:`json_default` converts; anything else is returned as it is.

    Example:
        >>> jsonable({1: (float("nan"), float("-inf"), True)})
        {'1': [None, '-inf', True]}
    """
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if x is None or isinstance(x, (str, bool)):
        return x
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real):
        x = float(x)
        return None if math.isnan(x) else (str(x) if math.isinf(x) else x)
    try:
        return jsonable(json_default(x))
    except TypeError:
        return x


def progress_bars_off(progress: bool) -> bool:
    """tqdm's ``disable`` for a caller that asked for ``progress``: on where someone watches (a
    terminal, a Jupyter kernel), off where the output is a pipe or a log file, whose readers got
    tens of kB of carriage-return updates per epoch (the line each epoch or image prints stays)."""
    import sys

    if not progress:
        return True
    stream = sys.stderr
    watched = bool(getattr(stream, "isatty", lambda: False)()) or "ipykernel" in sys.modules
    return not watched

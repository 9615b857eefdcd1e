"""Small helpers used across unetkit: atomic file writing."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterator, Union

from .errors import DataError

PathLike = Union[str, Path]
_DOUBLE_SUFFIXES = (".nii.gz", ".ome.tif", ".ome.tiff", ".tar.gz")


def _split_suffix(path: Path) -> tuple[str, str]:
    name = path.name
    for double in _DOUBLE_SUFFIXES:
        if name.lower().endswith(double):
            return name[: -len(double)], name[-len(double):]
    return path.stem, path.suffix


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    The temporary name keeps the suffix of ``path`` (``.nii.gz``, ``.png`` …) so libraries that
    choose the format from the name write the right one. The file is synced to disk before the
    rename, so a crash (even SIGKILL or power loss) leaves either the old ``path`` or the new one,
    never a half-written ``path``; at worst a stray ``.<name>.<id>.tmp<suffix>`` file that
    :func:`remove_stale_temp_files` clears. On an exception the temporary file is removed and
    ``path`` is left as it was. Missing parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stem, suffix = _split_suffix(path)
    tmp = path.parent / f".{stem}.{uuid.uuid4().hex[:12]}.tmp{suffix}"
    try:
        yield tmp
        if not tmp.exists():
            raise DataError("the writer produced no file", path)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def remove_stale_temp_files(folder: PathLike) -> list[Path]:
    """Delete temporary files a killed process left behind by :func:`atomic_path`; return them."""
    stale = [p for p in Path(folder).glob(".*.tmp*") if p.is_file() and ".tmp" in p.name]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale

"""Packaging facts that users and tools rely on: one version, a licence, type information."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import unetkit

from .conftest import REPO


def test_version_has_one_source():
    """pyproject reads the version from ``unetkit.__version__``; the installed metadata agrees."""
    assert importlib.metadata.version("unetkit") == unetkit.__version__
    assert 'dynamic = ["version"]' in (REPO / "pyproject.toml").read_text()


def test_licence_and_py_typed_ship():
    assert "MIT License" in (REPO / "LICENSE").read_text()
    assert importlib.metadata.metadata("unetkit")["License-Expression"] == "MIT"
    assert (Path(unetkit.__file__).parent / "py.typed").is_file()

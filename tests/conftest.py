"""Shared fixtures: seeded randomness and the real data sets beside the repository."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
#: The shared real data sets (ISBI 2012, DRIVE); absent on a user's machine.
SHARED_DATA = Path(os.environ.get("UNETKIT_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True, scope="session")
def _probe_cache(tmp_path_factory):
    """The planner's machine-probe cache lives in a session folder: tests never read or write the
    user's ~/.cache, and a candidate timed once is reused by every later test (subprocesses too)."""
    previous = os.environ.get("UNETKIT_CACHE_DIR")
    os.environ["UNETKIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("unetkit-cache"))
    yield
    if previous is None:
        os.environ.pop("UNETKIT_CACHE_DIR", None)
    else:
        os.environ["UNETKIT_CACHE_DIR"] = previous


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def shared_data() -> Path:
    """Path of ../shared/data; skips the test with a reason when it is absent."""
    if not (SHARED_DATA / "isbi2012").is_dir():
        pytest.skip(
            f"real data sets not found at {SHARED_DATA} (set UNETKIT_SHARED_DATA to their folder)"
        )
    return SHARED_DATA

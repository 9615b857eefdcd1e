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

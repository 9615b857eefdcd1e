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


#: The process-wide thread settings a test may change without meaning to: torch's intra-op threads
#: (an in-process ``unetkit train --threads 1``) and the thread variables of the environment (a Dask
#: ``LocalCluster`` writes its workers' OMP/MKL/OpenBLAS/malloc settings into ``os.environ``).
_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MALLOC_TRIM_THRESHOLD_",
)


@pytest.fixture(scope="session")
def _session_threads():
    return torch.get_num_threads(), {name: os.environ.get(name) for name in _THREAD_VARIABLES}


@pytest.fixture(autouse=True, scope="module")
def _threads_restored(_session_threads):
    """Every test module starts and ends with the session's threads. Without this, one in-process
    CLI test with ``--threads 1`` left every later module, the real-data tests included, on one of
    the two cores (ISBI's slow test: 451 s in CI against 267 s alone), and subprocesses started
    after the Dask tests inherited ``OMP_NUM_THREADS=1``. Per module, not per test, so that a
    module may run all its tests on one thread on purpose (its own module fixture)."""
    _restore_threads(*_session_threads)
    yield
    _restore_threads(*_session_threads)


def _restore_threads(threads: int, variables: dict) -> None:
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    for name, value in variables.items():
        if value is None:
            os.environ.pop(name, None)
        elif os.environ.get(name) != value:
            os.environ[name] = value


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

"""Predict many images on a Dask cluster: one task per case, one model per worker, loaded once.

``unetkit predict ... --dask local:N`` starts a ``distributed.LocalCluster`` of N worker processes on
this machine; ``--dask tcp://host:8786`` joins a running scheduler. Dask schedules, retries the tasks
of a worker that dies and reports progress; unetkit only says what a task is: :func:`predict_case`,
the very function a single process runs, so the outputs are the same files, byte for byte. Workers
write straight into the output folder (shared storage on a real cluster), each file atomically, so a
rerun skips finished cases and a killed worker never leaves a torn file.

Each worker builds its predictor once from a picklable ``factory`` (for the CLI:
``commands.predict.build_predictor`` with the command's arguments) and keeps it for every case it
gets, so a model is loaded once per worker, not once per image.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from ..errors import ConfigError, DataError

#: Per worker process: factory token → predictor (a model loaded once per worker).
_PREDICTORS: dict = {}


def _worker_predictor(factory: Callable, token: str, threads: Optional[int]):
    if token not in _PREDICTORS:
        from .. import runtime

        predictor = factory()
        runtime.configure_process(threads, reuse_freed_memory=predictor.device.type == "cpu")
        _PREDICTORS[token] = predictor
    return _PREDICTORS[token]


def _predict_case_task(factory, token, threads, case, out_dir, options):
    """One case on a worker (what a Dask task runs)."""
    from .batch import predict_case

    return predict_case(_worker_predictor(factory, token, threads), case, Path(out_dir), **options)


def _worker_ready() -> str:
    """Run on every worker before the job: unpickling this function imports unetkit there."""
    import unetkit

    return unetkit.__version__


def connect(address: str, threads: Optional[int] = None, timeout: str = "10s"):
    """A ``distributed.Client`` for ``address``: ``local:N`` (a LocalCluster of N one-thread worker
    processes here) or a scheduler address (``tcp://host:8786``). Returns ``(client, threads per
    worker)``; closing the client closes a local cluster too."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("--dask needs dask.distributed: pip install 'unetkit[dask]'") from None
    if address.startswith("local"):
        n = address.partition(":")[2] or "2"
        if not n.isdigit() or int(n) < 1:
            raise ConfigError(f"--dask {address!r}: write local:N with N ≥ 1 workers, e.g. local:2")
        n = int(n)
        per_worker = threads or max(1, (os.cpu_count() or 1) // n)
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,  # one task at a time per worker: its torch threads are the cores
            processes=True,
            dashboard_address=None,
        )
        return Client(cluster, set_as_default=False), per_worker
    if "://" not in address:
        raise ConfigError(
            f"--dask {address!r}: give local:N or a scheduler address like tcp://host:8786"
        )
    try:
        return Client(address, timeout=timeout, set_as_default=False), threads
    except (OSError, TimeoutError) as exc:
        raise DataError(
            f"cannot reach the Dask scheduler ({type(exc).__name__}); is it running and reachable "
            "from here?",
            address,
        ) from None


def close(client) -> None:
    """Close ``client`` and the local cluster :func:`connect` started for it, if any."""
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


def predict_files_dask(
    factory: Callable,
    inputs: Sequence[Union[str, Path]],
    out_dir: Union[str, Path],
    client,
    threads: Optional[int] = None,
    progress: bool = True,
    probabilities: Optional[str] = None,
    overlay: bool = False,
    overwrite: bool = False,
    instances: Optional[str] = None,
    rois: bool = False,
    geojson: bool = False,
    part: Optional[tuple] = None,
    predictor=None,
) -> list:
    """:func:`~unetkit.inference.batch.predict_files` with the cases spread over a Dask ``client``'s
    workers.

    Args:
        factory: a picklable callable without arguments that returns the predictor (each worker
            calls it once).
        client: a ``distributed.Client`` (:func:`connect`).
        threads: torch threads per worker (default: the worker's own setting).
        predictor: the predictor here (default ``factory()``), used for the checks before the job.
        The other arguments are :func:`~unetkit.inference.batch.predict_files`'s.

    Returns:
        One :class:`~unetkit.inference.batch.PredictedFile` per case, in input order.

    Raises:
        DataError: an unusable input (naming it; outputs finished before it stay), or a worker that
            cannot import unetkit (naming the worker).
    """
    from distributed import as_completed
    from tqdm import tqdm

    from ..utils import output_folder, remove_stale_temp_files
    from .batch import plan_cases

    out_dir = Path(out_dir)
    predictor = predictor if predictor is not None else factory()
    cases, method = plan_cases(predictor, inputs, instances, rois, geojson, part)
    _check_workers(client)
    options = dict(
        probabilities=probabilities,
        overlay=overlay,
        overwrite=overwrite,
        instances=method,
        rois=rois,
        geojson=geojson,
    )
    token = f"{id(factory)}-{os.getpid()}"
    results: list = [None] * len(cases)
    with output_folder(out_dir), client.as_current():
        remove_stale_temp_files(out_dir)
        futures = {
            client.submit(
                _predict_case_task,
                factory,
                token,
                threads,
                case,
                str(out_dir),
                options,
                key=f"unetkit-predict-{token}-{i}",
                pure=False,
            ): i
            for i, case in enumerate(cases)
        }
        bar = tqdm(total=len(cases), desc="predict", unit="image", disable=not progress)
        try:
            for future in as_completed(futures):
                results[futures[future]] = future.result()  # a task's DataError is raised here
                bar.update()
        except BaseException:
            client.cancel(list(futures))
            raise
        finally:
            bar.close()
    return results


def _check_workers(client) -> None:
    """Every worker can import unetkit, or one line naming the worker that cannot."""
    try:
        client.wait_for_workers(1, timeout="60s")
    except TimeoutError:
        raise DataError("no Dask worker joined within 60 s", client.scheduler.address) from None
    try:
        client.run(_worker_ready)
    except Exception as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(
            f"a Dask worker cannot run unetkit ({type(exc).__name__}: {detail}); install unetkit "
            "(same version) in the workers' environment",
            client.scheduler.address,
        ) from None


__all__ = ["close", "connect", "predict_files_dask"]

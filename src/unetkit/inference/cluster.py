"""Predict many images on a Dask cluster: one task per case, one model per worker, loaded once.

``unetkit predict ... --dask local:N`` starts a ``distributed.LocalCluster`` of N worker processes on
this machine; ``--dask tcp://host:8786`` joins a running scheduler. Dask schedules, retries the tasks
of a worker that dies and reports progress; unetkit only says what a task is: :func:`predict_case`,
the very function a single process runs, so the outputs are the same files, byte for byte. Workers
write straight into the output folder (shared storage on a real cluster), each file atomically, so a
rerun skips finished cases and a killed worker never leaves a torn file.

One huge image (zarr, TIFF or ``.npy`` above 64 Mpx, labels only) is spread over the workers by
blocks of rows instead (:func:`predict_image_blocks`): each block is predicted with the tiles that
touch it and written into its own chunks of one OME-Zarr label image, which equals one process's
band-by-band result exactly; finished blocks are marked, so a rerun does only the missing ones. A
TIFF or ``.npy`` input's labels are then copied into the TIFF one process writes.

Each worker builds its predictor once from a picklable ``factory`` (for the CLI:
``commands.predict.build_predictor`` with the command's arguments) and keeps it for every case it
gets, so a model is loaded once per worker, not once per image.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np

from ..errors import ConfigError, DataError

#: Per worker process: factory token → predictor (a model loaded once per worker).
_PREDICTORS: dict = {}


def worker_gpu(name, count: int) -> Optional[int]:
    """The GPU a worker named ``name`` uses on a machine with ``count`` GPUs: one worker per
    device, by the worker's number (a ``LocalCluster`` names its workers 0, 1, …); ``None`` with
    fewer than two GPUs or a worker without a number (a cluster that gives each worker its own
    devices, as dask-cuda does with ``CUDA_VISIBLE_DEVICES``, leaves one visible)."""
    if count < 2 or isinstance(name, bool) or not isinstance(name, int):
        return None
    return name % count


def _pin_gpu() -> None:
    """Make this worker's GPU (:func:`worker_gpu`) torch's current device, so ``cuda`` means it."""
    import torch
    from distributed import get_worker

    if os.environ.get("CUDA_VISIBLE_DEVICES"):  # the cluster chose this worker's devices
        return
    try:
        name = get_worker().name
    except ValueError:  # not on a worker (a direct call)
        return
    gpu = worker_gpu(name, torch.cuda.device_count())
    if gpu is not None:
        torch.cuda.set_device(gpu)


def _worker_predictor(factory: Callable, token: str, threads: Optional[int], gpus: bool = False):
    if token not in _PREDICTORS:
        from .. import runtime

        if gpus:  # before the model is built: it goes onto this worker's device
            _pin_gpu()
        predictor = factory()
        runtime.configure_process(threads, reuse_freed_memory=predictor.device.type == "cpu")
        _PREDICTORS[token] = predictor
    return _PREDICTORS[token]


def _predict_case_task(factory, token, threads, case, out_dir, options, gpus=False):
    """One case on a worker (what a Dask task runs). A bad input (:class:`UnetkitError`) comes
    back as a :class:`_BadInput` rather than raised: a raised one would be logged with its
    traceback by the worker and the scheduler, where the user needs one line (which the client
    raises)."""
    from ..errors import UnetkitError
    from .batch import predict_case

    predictor = _worker_predictor(factory, token, threads, gpus)
    try:
        return predict_case(predictor, case, Path(out_dir), **options)
    except UnetkitError as exc:
        return _BadInput(exc)


class _BadInput:
    """A task's bad-input error, carried back to the client to be raised there."""

    def __init__(self, error: BaseException):
        self.error = error


class _LabelRowsSink:
    """Band sink of one block: the labels of the rows it receives, into a shared zarr array (the
    block's rows are whole chunks, so no two workers write the same chunk). It takes windows
    (``predict_large`` splits a band wider than its memory budget across the plane; the windows of
    one block are written one after the other by the same worker)."""

    windows = True

    def __init__(self, array, label_map):
        self.array, self.label_map = array, label_map

    def write(self, y0: int, probs, window=None) -> None:
        from .outputs import decode_labels

        values = decode_labels(probs.argmax(axis=0), self.label_map)[0]
        across = () if window is None else tuple(slice(a, b) for a, b in window)
        self.array[(slice(y0, y0 + values.shape[0]), *across)] = values

    def close(self) -> None:
        pass


def _predict_block_task(
    factory, token, threads, source_path, store, r0, r1, normalizer, level=0, gpus=False
):
    """Rows ``r0 … r1`` of one huge image (at pyramid ``level``) into the shared output store (what
    a block task runs); a marker file says the block is done, so a rerun skips it."""
    import zarr

    from ..io.lazy import open_lazy
    from .large import predict_large

    predictor = _worker_predictor(factory, token, threads, gpus)
    source = open_lazy(source_path, level)
    try:
        array = zarr.open_group(store, mode="r+")["0"]
        sink = _LabelRowsSink(array, predictor.label_map)
        predict_large(predictor, source, sink, rows=(r0, r1), normalizer=normalizer)
    finally:
        if hasattr(source, "close") and not hasattr(source, "flush"):
            source.close()
    (Path(store) / _BLOCKS_DIR / f"{r0}-{r1}.done").touch()
    return r1 - r0


#: Folder inside an unfinished block-wise output store that holds one marker per finished block.
_BLOCKS_DIR = "unetkit-blocks-done"
#: the file in it naming the job whose blocks they are (model, level, shape, block rows)
_IDENTITY = "job.json"


def _store_identity(done_dir: Path) -> Optional[dict]:
    """The job a block store's finished blocks belong to (``None``: unreadable or none)."""
    try:
        found = json.loads((done_dir / _IDENTITY).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def block_rows(shape: tuple, out_tile_rows: int, workers: int, chunk: int) -> int:
    """Rows per block of a huge image: a whole number of output chunks (no two blocks share one),
    at least 4 tile outputs high (a block boundary recomputes one row of tiles) and about
    ``2 × workers`` blocks where the image is tall enough."""
    want = max(4 * out_tile_rows, -(-shape[0] // max(2 * workers, 1)), 1)
    return max(chunk, -(-want // chunk) * chunk)


def predict_image_blocks(
    factory: Callable,
    case,
    out_path: Path,
    client,
    predictor,
    threads: Optional[int] = None,
    rows_per_block: Optional[int] = None,
    progress: bool = True,
    level: int = 0,
    model_id: Optional[str] = None,
):
    """One huge image (zarr, TIFF or ``.npy``) spread over the workers by blocks of rows, into one
    label image at ``out_path`` (OME-Zarr for a ``.zarr`` path, else TIFF): the labels of one
    process's band-by-band prediction, exactly (:func:`~unetkit.inference.large.predict_large`
    ``rows=``).

    The output is filled in a hidden store beside ``out_path`` (``.<name>.blocks.ome.zarr``) whose
    finished blocks are marked, so a rerun after a failure predicts only the missing blocks (of the
    same ``model_id``, level and block size; other blocks are discarded). When
    every block is done it is renamed to ``out_path`` after the reduced levels of a pyramidal
    input's labels (:func:`~unetkit.io.pyramid.add_ome_zarr_levels`), or copied into the TIFF at
    ``out_path`` and deleted.
    """
    import shutil

    from distributed import as_completed
    from tqdm import tqdm

    from ..io.lazy import is_zarr_path, level_count, open_lazy
    from ..io.ome_zarr import create_ome_zarr
    from ..io.pyramid import add_ome_zarr_levels
    from ..utils import progress_bars_off
    from .batch import PredictedFile, check_channels
    from .large import check_band_prediction, freeze_normalizer

    source_path = case.images[0]
    source = open_lazy(source_path, level)
    try:
        check_channels(predictor, source, source_path)
        check_band_prediction(predictor, source, source_path)  # before the output store exists
        shape = tuple(source.shape[1:])
        grid = predictor.plan(shape).grid()
        frozen = freeze_normalizer(predictor.normalizer, source)
        meta = getattr(source, "meta", None)
    finally:
        if hasattr(source, "close") and not hasattr(source, "flush"):
            source.close()
    workers = max(1, len(client.scheduler_info()["workers"]))
    step = rows_per_block or block_rows(
        shape, grid.out_tile[0], workers, 512 if len(shape) == 2 else 32
    )
    dtype = np.dtype(predictor.label_map.dtype) if predictor.label_map is not None else np.uint8
    store = out_path.parent / f".{out_path.name.split('.')[0]}.blocks.ome.zarr"
    done_dir = store / _BLOCKS_DIR
    # the finished blocks are kept for a rerun only if that rerun makes the same labels: the same
    # model, level, image size and blocks (else a resumed job would mix two models' labels)
    identity = {"model": model_id, "level": level, "shape": list(shape), "step": step}
    if store.exists() and _store_identity(done_dir) != identity:
        shutil.rmtree(store)  # another job's blocks, or not a block store unetkit left
    if not store.exists():
        create_ome_zarr(
            store,
            shape,
            dtype,
            channels=False,
            spacing=getattr(meta, "spacing", None),
            unit=getattr(meta, "spacing_unit", None),
            label=True,
            chunks=(step, *[min(n, 512) for n in shape[1:]]),
        )
        done_dir.mkdir()
        (done_dir / _IDENTITY).write_text(json.dumps(identity))
    blocks = [(r, min(r + step, shape[0])) for r in range(0, shape[0], step)]
    todo = [b for b in blocks if not (done_dir / f"{b[0]}-{b[1]}.done").exists()]
    token = f"{id(factory)}-{os.getpid()}"
    futures = [
        client.submit(
            _predict_block_task,
            factory,
            token,
            threads,
            str(source_path),
            str(store),
            r0,
            r1,
            frozen,
            level,
            gpus=uses_gpu(predictor),
            key=f"unetkit-block-{token}-{case.case_id}-{r0}",
            pure=False,
        )
        for r0, r1 in todo
    ]
    bar = tqdm(
        total=shape[0],
        initial=shape[0] - sum(b - a for a, b in todo),
        desc=case.case_id,
        unit="row",
        disable=progress_bars_off(progress),
    )
    try:
        with client.as_current():
            for future in as_completed(futures):
                bar.update(future.result())
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        bar.close()
    levels = level_count(source_path) - level
    if not is_zarr_path(out_path):  # a TIFF (or .npy) input: its labels are a TIFF, as one
        _copy_store_to_tiff(store, out_path, predictor.label_map, meta, levels, step)
        shutil.rmtree(store)  # process writes them
        return PredictedFile(case.case_id, case.images, {"labels": out_path}, "written", "blocks")
    if levels > 1:  # a pyramidal input's labels are a pyramid, as one process writes them
        add_ome_zarr_levels(store, levels)
    shutil.rmtree(done_dir)
    if out_path.exists():
        shutil.rmtree(out_path)
    os.replace(store, out_path)
    return PredictedFile(case.case_id, case.images, {"labels": out_path}, "written", "blocks")


def _copy_store_to_tiff(store: Path, out_path: Path, label_map, meta, levels: int, step: int):
    """The finished block store's labels into the TIFF one process would write at ``out_path``
    (calibrated like the input, a tiled pyramidal OME-TIFF for a pyramidal input), block by block,
    atomically. Workers cannot share one TIFF as they share a zarr store (a compressed TIFF cannot
    be written in parallel; an uncompressed one only where blocks fill whole pages), so they fill
    the store and this process copies it."""
    import zarr

    from .outputs import TiffBandSink

    array = zarr.open_group(str(store), mode="r")["0"]
    sink = TiffBandSink(
        array.shape,
        2,
        label_map,
        out_path,
        spacing=getattr(meta, "spacing", None),
        spacing_unit=getattr(meta, "spacing_unit", None),
        levels=max(1, levels),
    )
    try:
        for r0 in range(0, array.shape[0], step):
            sink.write_labels(r0, np.asarray(array[r0 : r0 + step]))
        sink.close()
    except BaseException:
        sink.abort()
        raise


def _worker_ready() -> str:
    """Run on every worker before the job: unpickling this function imports unetkit there."""
    import unetkit

    return unetkit.__version__


def uses_gpu(predictor) -> bool:
    """The predictor (or an ensemble's first member) runs on a CUDA device."""
    member = (getattr(predictor, "members", None) or [predictor])[0]
    return getattr(getattr(member, "device", None), "type", "cpu") == "cuda"


def connect(address: str, threads: Optional[int] = None, timeout: str = "10s", gpus: bool = False):
    """A ``distributed.Client`` for ``address``: ``local:N`` (a LocalCluster of N one-thread worker
    processes here) or a scheduler address (``tcp://host:8786``). Returns ``(client, threads per
    worker)``; closing the client closes a local cluster too. ``local`` without N starts 2 workers,
    or with ``gpus`` one per GPU here (each worker then predicts on its own device)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("--dask needs dask.distributed: pip install 'unetkit[dask]'") from None
    if address.startswith("local"):
        default = "2"
        if gpus:
            import torch

            default = str(max(1, torch.cuda.device_count()))
        n = address.partition(":")[2] or default
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
    level: int = 0,
    model_id: Optional[str] = None,
    say: Optional[Callable[[str], None]] = None,
) -> list:
    """:func:`~unetkit.inference.batch.predict_files` with the cases spread over a Dask ``client``'s
    workers. The inputs are checked as the workers read them (reading every one here first would
    undo the spreading): an unusable one stops the job, and the outputs finished before it stay.

    Args:
        factory: a picklable callable without arguments that returns the predictor (each worker
            calls it once).
        client: a ``distributed.Client`` (:func:`connect`).
        threads: torch threads per worker (default: the worker's own setting).
        predictor: the predictor here (default ``factory()``), used for the checks before the job.
        say: receives predict_files's lines on voxel sizes (inputs resampled to the model's, inputs
            that state none), told after the job: the workers read the inputs.
        The other arguments are :func:`~unetkit.inference.batch.predict_files`'s.

    Returns:
        One :class:`~unetkit.inference.batch.PredictedFile` per case, in input order.

    Raises:
        DataError: an unusable input (naming it; outputs finished before it stay), or a worker that
            cannot import unetkit (naming the worker).
    """
    from distributed import as_completed
    from tqdm import tqdm

    from ..utils import output_folder, progress_bars_off, remove_stale_temp_files
    from .batch import (
        MODEL_RECORD,
        PredictedFile,
        band_labels_path,
        check_model_record,
        check_outputs_apart,
        claim_empty_folder,
        is_blockwise,
        plan_cases,
        spacing_notes_of,
        write_model_record,
    )

    out_dir = Path(out_dir)
    predictor = predictor if predictor is not None else factory()
    cases, options = plan_cases(
        predictor,
        inputs,
        probabilities=probabilities,
        overlay=overlay,
        overwrite=overwrite,
        instances=instances,
        rois=rois,
        geojson=geojson,
        part=part,
        level=level,
    )
    check_model_record(out_dir, model_id, cases, options)
    check_outputs_apart(out_dir, cases, options)
    _check_workers(client)
    token = f"{id(factory)}-{os.getpid()}"
    results: list = [None] * len(cases)
    blockwise = [i for i, case in enumerate(cases) if is_blockwise(case, **options)]
    with output_folder(out_dir), client.as_current():
        remove_stale_temp_files(out_dir)
        # the workers write in any order and a job may be stopped at any point, so a folder with
        # no outputs yet is this model's before the first is written
        claim_empty_folder(out_dir, model_id, cases, options)
        for i in blockwise:  # huge zarr images: each spread over the workers by blocks of rows
            case = cases[i]
            labels = band_labels_path(out_dir, case, options["level"])
            if labels.exists() and not overwrite:
                results[i] = PredictedFile(case.case_id, case.images, {"labels": labels}, "skipped")
                continue
            results[i] = predict_image_blocks(
                factory,
                case,
                labels,
                client,
                predictor,
                threads,
                progress=progress,
                level=options["level"],
                model_id=model_id,
            )
        futures = {
            client.submit(
                _predict_case_task,
                factory,
                token,
                threads,
                case,
                str(out_dir),
                options,
                gpus=uses_gpu(predictor),
                key=f"unetkit-predict-{token}-{i}",
                pure=False,
            ): i
            for i, case in enumerate(cases)
            if i not in blockwise
        }
        bar = tqdm(
            total=len(futures), desc="predict", unit="image", disable=progress_bars_off(progress)
        )
        try:
            for future in as_completed(futures):
                result = future.result()
                if isinstance(result, _BadInput):  # a task's DataError, raised here in one line
                    raise result.error
                results[futures[future]] = result
                bar.update()
        except BaseException:
            client.cancel(list(futures))
            raise
        finally:
            bar.close()
        # as predict_files: outputs of an unknown model beside these are not claimed for it
        if (out_dir / MODEL_RECORD).is_file() or all(r.status == "written" for r in results):
            write_model_record(out_dir, model_id)
    for line in spacing_notes_of(predictor, results) if say is not None else ():
        say(line)
    return results


def _check_workers(client) -> None:
    """Every worker imports the unetkit this process runs, or one line naming the first worker
    that cannot (and how many more) before any output is written: a worker without unetkit would
    otherwise fail each task it is given, after the job has started."""
    import unetkit

    try:
        client.wait_for_workers(1, timeout="60s")
    except TimeoutError:
        raise DataError("no Dask worker joined within 60 s", client.scheduler.address) from None
    answers = client.run(_worker_ready, on_error="return")
    failed = {a: r for a, r in answers.items() if isinstance(r, BaseException)}
    if failed:
        address, exc = sorted(failed.items())[0]
        detail = " ".join(str(exc).split()) or type(exc).__name__
        if type(exc) is not Exception:  # a plain Exception wraps the worker's: its text says which
            detail = f"{type(exc).__name__}: {detail}"
        more = f" (and {len(failed) - 1} more of {len(answers)} workers)" if len(failed) > 1 else ""
        raise DataError(
            f"this Dask worker cannot import unetkit ({detail}){more}; "
            f"install unetkit {unetkit.__version__} in the workers' environment",
            address,
        )
    other = {a: v for a, v in answers.items() if v != unetkit.__version__}
    if other:
        address, version = sorted(other.items())[0]
        raise DataError(
            f"this Dask worker runs unetkit {version}, this process {unetkit.__version__}; "
            f"install unetkit {unetkit.__version__} in the workers' environment",
            address,
        )


__all__ = ["close", "connect", "predict_files_dask"]

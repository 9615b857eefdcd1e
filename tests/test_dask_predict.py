"""Prediction spread over a real Dask LocalCluster (two worker processes): the same files, byte for
byte, as one process; a worker killed mid-job is replaced and the job completes identically; job
array shares are disjoint and complete."""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from unetkit import create_model
from unetkit.checkpoint import save_checkpoint
from unetkit.data import LabelMap, create_normalizer
from unetkit.errors import ConfigError, DataError
from unetkit.inference.batch import plan_cases, predict_files
from unetkit.inference.predictor import Predictor

distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the plugin below, on the workers


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A tiny checkpoint and a folder of 8 images of different sizes."""
    root = tmp_path_factory.mktemp("dask")
    model = create_model("unet", base_features=4, depth=2, norm="instance")
    ckpt = save_checkpoint(
        root / "model.pt",
        model,
        normalization=create_normalizer("zscore").to_dict(),
        label_map=LabelMap([0, 255]).to_dict(),
        patch_size=[32, 32],
    )
    rng = np.random.default_rng(0)
    images = root / "images"
    images.mkdir()
    for i in range(8):
        shape = (40 + 4 * i, 50 + 3 * i)
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(images / f"im{i}.png")
    factory = functools.partial(Predictor.from_checkpoint, ckpt, precision="fp32")
    single = root / "single"
    with one_thread():  # as each worker runs: convolutions sum in the same order, same bits
        predict_files(factory(), [images], single, probabilities="tiff", progress=False)
    return root, ckpt, images, factory, single


@contextlib.contextmanager
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    c = distributed.Client(cluster, set_as_default=False)
    yield c
    c.close()
    cluster.close()


def _same_files(a, b) -> list:
    """The outputs in ``a`` and ``b``, byte for byte (the record of the model that wrote them,
    which only the command keeps, aside)."""
    from unetkit.inference.batch import MODEL_RECORD

    names = sorted(p.name for p in a.iterdir() if p.name != MODEL_RECORD)
    assert names == sorted(p.name for p in b.iterdir() if p.name != MODEL_RECORD)
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    return names


def test_dask_outputs_equal_one_process_byte_for_byte(job, client, tmp_path):
    from unetkit.inference.cluster import predict_files_dask

    _, _, images, factory, single = job
    out = tmp_path / "dask"
    res = predict_files_dask(
        factory, [images], out, client, threads=1, probabilities="tiff", progress=False
    )
    assert [r.case_id for r in res] == [f"im{i}" for i in range(8)]  # input order kept
    assert {r.status for r in res} == {"written"}
    assert len(_same_files(single, out)) == 16  # labels + probabilities of 8 images
    # both workers took part: each has its own model loaded once
    loaded = client.run(
        lambda: len(__import__("unetkit.inference.cluster").inference.cluster._PREDICTORS)
    )
    assert sorted(loaded.values()) == [1, 1]
    again = predict_files_dask(factory, [images], out, client, probabilities="tiff", progress=False)
    assert {r.status for r in again} == {"skipped"}  # a rerun skips finished cases


class _DieOnce(distributed.WorkerPlugin):
    """Kills the first worker that starts a prediction task (only one: an exclusive marker file)."""

    def __init__(self, marker: str, prefix: str = "unetkit-predict"):
        self.marker, self.prefix = marker, prefix

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and str(key).startswith(self.prefix):
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return
            os._exit(1)  # as a crash or an OOM kill would: no clean-up


def test_a_worker_killed_mid_job_is_replaced_and_the_output_is_identical(job, tmp_path):
    from unetkit.inference.cluster import predict_files_dask

    _, _, images, factory, single = job
    marker = tmp_path / "died"
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with distributed.Client(cluster, set_as_default=False) as c:
        c.register_plugin(_DieOnce(str(marker)))
        out = tmp_path / "dask"
        res = predict_files_dask(
            factory, [images], out, c, threads=1, probabilities="tiff", progress=False
        )
    cluster.close()
    assert marker.exists()  # a worker really died
    assert len(res) == 8 and {r.status for r in res} == {"written"}
    _same_files(single, out)
    assert not list(out.glob(".*"))  # no temporary file left behind


def test_job_array_shares_are_disjoint_and_complete(job):
    _, _, images, factory, _ = job
    pred = factory()
    shares = [[c.case_id for c in plan_cases(pred, [images], part=(i, 3))[0]] for i in range(3)]
    flat = sorted(sum(shares, []))
    assert flat == [f"im{i}" for i in range(8)] and len(set(flat)) == 8
    assert [len(s) for s in shares] == [3, 3, 2]
    with pytest.raises(ConfigError, match="part id must be"):
        plan_cases(pred, [images], part=(3, 3))


def test_shares_predicted_apart_make_the_whole_job(job, tmp_path):
    _, _, images, factory, single = job
    pred = factory()
    for i in range(3):
        with one_thread():
            predict_files(
                pred, [images], tmp_path / "p", probabilities="tiff", progress=False, part=(i, 3)
            )
    _same_files(single, tmp_path / "p")


def test_cli_dask_and_part_errors(job, tmp_path):
    root, ckpt, images, _, single = job
    cmd = [
        sys.executable,
        "-m",
        "unetkit",
        "predict",
        str(ckpt),
        str(images),
        "--probabilities",
        "--no-progress",
        "--precision",
        "fp32",
    ]
    res = subprocess.run(
        [*cmd, "-o", str(tmp_path / "d"), "--dask", "local:2"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert "Dask: 2 worker(s)" in res.stdout
    _same_files(single, tmp_path / "d")
    res = subprocess.run(
        [*cmd, "-o", str(tmp_path / "x"), "--part-id", "1"], capture_output=True, text=True
    )
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "--num-parts and --part-id go together" in res.stderr
    assert not (tmp_path / "x").exists()


def test_bad_addresses_are_one_line_errors():
    from unetkit.inference.cluster import connect

    with pytest.raises(ConfigError, match="local:N with N ≥ 1"):
        connect("local:zero")
    with pytest.raises(ConfigError, match="scheduler address like tcp://host:8786"):
        connect("myhost:8786")
    with pytest.raises(DataError, match=r"tcp://127\.0\.0\.1:9: cannot reach the Dask scheduler"):
        connect("tcp://127.0.0.1:9", timeout="1s")


def test_one_huge_zarr_image_by_blocks_equals_one_process(job, client, tmp_path, monkeypatch):
    """A zarr image predicted by blocks of rows on two workers (one worker killed in its first
    block) gives the labels one process writes band by band, exactly, with the input's two levels;
    the output is valid OME-Zarr with the input's pixel size."""
    from unetkit.data.discovery import Case
    from unetkit.inference import batch as batch_mod
    from unetkit.inference.cluster import predict_files_dask, predict_image_blocks
    from unetkit.io import read_image

    zarr = pytest.importorskip("zarr")
    _, ckpt, _, factory, _ = job
    image = (np.random.default_rng(3).random((1, 301, 157)) * 255).astype(np.uint8)
    path = tmp_path / "big.ome.zarr"
    group = zarr.open_group(str(path), mode="w")
    group.create_array("0", shape=image.shape, chunks=(1, 64, 64), dtype=image.dtype)[...] = image
    low = image[:, ::2, ::2]
    group.create_array("1", shape=low.shape, chunks=(1, 64, 64), dtype=image.dtype)[...] = low
    axes = [{"name": "c", "type": "channel"}] + [
        {"name": a, "type": "space", "unit": "micrometer"} for a in "yx"
    ]
    scales = [[{"type": "scale", "scale": [1.0, 0.5 * f, 0.5 * f]}] for f in (1, 2)]
    group.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [
            {
                "axes": axes,
                "datasets": [
                    {"path": str(k), "coordinateTransformations": scale}
                    for k, scale in enumerate(scales)
                ],
            }
        ],
    }
    monkeypatch.setattr(batch_mod, "LARGE_PIXELS", 1000)
    with one_thread():
        single = predict_files(factory(), [path], tmp_path / "single", progress=False)
    assert single[0].mode == "band-by-band"
    expected, _ = read_image(single[0].outputs["labels"])

    marker = tmp_path / "died"
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with distributed.Client(cluster, set_as_default=False) as c:
        c.register_plugin(_DieOnce(str(marker), prefix="unetkit-block"))
        out = tmp_path / "blocks" / "big.ome.zarr"
        out.parent.mkdir()
        res = predict_image_blocks(
            factory,
            Case("big", [path]),
            out,
            c,
            factory(),
            threads=1,
            rows_per_block=64,
            progress=False,
        )
    cluster.close()
    assert marker.exists() and res.mode == "blocks"
    labels, meta = read_image(out)
    np.testing.assert_array_equal(labels, expected)
    assert meta.spacing == (0.5, 0.5)
    assert sorted(p.name for p in out.parent.iterdir()) == ["big.ome.zarr"]  # no partial store
    reduced = [
        zarr.open_group(str(p), mode="r")["1"][...] for p in (out, single[0].outputs["labels"])
    ]
    np.testing.assert_array_equal(reduced[0], expected[0, ::2, ::2])
    np.testing.assert_array_equal(reduced[1], reduced[0])
    # through predict_files_dask: a huge zarr image goes by blocks, the others by case
    res = predict_files_dask(factory, [path], tmp_path / "routed", client, progress=False)
    assert res[0].mode == "blocks"
    np.testing.assert_array_equal(read_image(res[0].outputs["labels"])[0], expected)


@contextlib.contextmanager
def foreign_worker(setup: str):
    """A scheduler with one worker process (no nanny) that runs ``setup`` before it starts: a worker
    whose environment differs from this one. Yields the scheduler's and the worker's addresses."""
    cluster = distributed.LocalCluster(n_workers=0, processes=True, dashboard_address=None)
    boot = (
        f"import sys; {setup}; "
        f"sys.argv = ['dask-worker', {cluster.scheduler_address!r}, '--nthreads', '1', "
        "'--no-nanny', '--no-dashboard', '--host', '127.0.0.1']; "
        "from distributed.cli.dask_worker import main; main()"
    )
    worker = subprocess.Popen([sys.executable, "-c", boot], stderr=subprocess.DEVNULL)
    try:
        with distributed.Client(cluster.scheduler_address, set_as_default=False) as c:
            c.wait_for_workers(1, timeout="60s")
            (address,) = c.scheduler_info()["workers"]
        yield cluster.scheduler_address, address
    finally:
        worker.kill()
        worker.wait()
        cluster.close()


@pytest.mark.parametrize(
    "setup, message",
    [
        ("sys.modules['unetkit'] = None", "this Dask worker cannot import unetkit (ModuleNotFound"),
        (
            "import unetkit; unetkit.__version__ = '0.0.1'",
            "this Dask worker runs unetkit 0.0.1, this process",
        ),
    ],
    ids=["no-unetkit", "other-version"],
)
def test_a_worker_without_this_unetkit_is_one_error_naming_it(job, tmp_path, setup, message):
    from unetkit.inference.cluster import close, connect, predict_files_dask

    _, _, images, factory, _ = job
    with foreign_worker(setup) as (scheduler, worker):
        client, threads = connect(scheduler)
        try:
            with pytest.raises(DataError) as err:
                predict_files_dask(factory, [images], tmp_path / "out", client, progress=False)
        finally:
            close(client)
    line = str(err.value)
    assert line.startswith(f"{worker}: {message}") and "\n" not in line
    assert "install unetkit" in line
    assert not (tmp_path / "out").exists()  # checked before anything is written


def test_one_worker_per_gpu(monkeypatch):
    """GPUs: a local cluster starts one worker per device and each worker predicts on its own
    (its number modulo the GPUs), set before its model is built; tried without a GPU by standing
    in for torch.cuda."""
    import torch

    from unetkit.inference import cluster

    assert [cluster.worker_gpu(i, 2) for i in range(4)] == [0, 1, 0, 1]
    assert cluster.worker_gpu(0, 1) is None  # one visible device (dask-cuda pins each worker)
    assert cluster.worker_gpu("tcp://a:1", 4) is None  # unnamed remote workers keep theirs

    chosen = []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(distributed, "get_worker", lambda: type("W", (), {"name": 3})())
    from unetkit import runtime

    monkeypatch.setattr(runtime, "configure_process", lambda *a, **k: None)  # this process's
    built = []
    monkeypatch.setattr(cluster, "_PREDICTORS", {})
    factory = lambda: (
        built.append(list(chosen)) or Predictor(create_model("unet", base_features=2, depth=1))
    )  # noqa: E731
    predictor = cluster._worker_predictor(factory, "t", None, gpus=True)
    assert chosen == [1] and built == [[1]]  # the device was set before the model was built
    assert cluster._worker_predictor(factory, "t", None, gpus=True) is predictor  # once per worker
    assert not cluster.uses_gpu(predictor)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")  # dask-cuda's rotation: device 0 is its own
    cluster._pin_gpu()
    assert chosen == [1]  # left as the cluster set it

    client, threads = cluster.connect("local", gpus=True)
    try:
        assert len(client.scheduler_info()["workers"]) == 2  # one per (stand-in) GPU
    finally:
        cluster.close(client)


@pytest.mark.parametrize("dims", [2, 3])
def test_a_block_split_into_windows_writes_the_whole_rows_labels(tmp_path, monkeypatch, dims):
    """A block whose band passes the memory budget is cut into windows across the plane; its
    labels in the shared zarr array are the whole image's (a block task's sink, run in-process)."""
    zarr = pytest.importorskip("zarr")
    from unetkit.inference import large
    from unetkit.inference.cluster import _LabelRowsSink

    rng = np.random.default_rng(5)
    shape = (1, 40, 36, 50) if dims == 3 else (1, 130, 170)
    image = rng.normal(size=shape).astype(np.float32)
    model = create_model("unet", spatial_dims=dims, base_features=2, depth=2, norm="none")
    pred = Predictor(model, precision="fp32", max_tile=16 if dims == 3 else 40, min_overlap=8)
    pred.normalizer, pred.label_map = create_normalizer("zscore"), LabelMap([0, 255])
    expected = np.where(pred.predict(image) == 1, 255, 0)

    grid = pred.plan(shape[1:]).grid()
    monkeypatch.setattr(large, "BAND_BYTES", 5 * grid.band_rows() * int(np.prod(shape[2:])))
    assert len(large.band_windows(grid, shape[1:], 2)) >= 4
    out = zarr.open_array(str(tmp_path / "labels.zarr"), mode="w", shape=shape[1:], dtype="uint8")
    frozen = large.freeze_normalizer(pred.normalizer, image)
    half = shape[1] // 2
    for rows in [(0, half), (half, shape[1])]:  # two blocks, as two workers would
        large.predict_large(
            pred, image, _LabelRowsSink(out, pred.label_map), rows=rows, normalizer=frozen
        )
    np.testing.assert_array_equal(out[...], expected)


def test_one_huge_tiff_by_blocks_writes_the_tiff_one_process_writes(
    job, client, tmp_path, monkeypatch
):
    """A huge pyramidal OME-TIFF goes over the workers by blocks too: the labels are the pyramidal
    OME-TIFF one process writes band by band (same levels, same values, same pixel size), and no
    block store is left behind."""
    import tifffile

    from unetkit.data.discovery import Case
    from unetkit.inference import batch as batch_mod
    from unetkit.inference.cluster import predict_files_dask, predict_image_blocks
    from unetkit.io import read_image

    _, _, _, factory, _ = job
    image = (np.random.default_rng(4).random((1, 301, 157)) * 255).astype(np.uint8)
    path = tmp_path / "big.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tw:
        meta = {"axes": "CYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5}
        tw.write(image, tile=(64, 64), compression="zlib", subifds=1, metadata=meta)
        tw.write(image[:, ::2, ::2], tile=(64, 64), compression="zlib", subfiletype=1)
    monkeypatch.setattr(batch_mod, "LARGE_PIXELS", 1000)
    with one_thread():
        single = predict_files(factory(), [path], tmp_path / "single", progress=False)
    assert single[0].mode == "band-by-band"
    res = predict_files_dask(factory, [path], tmp_path / "routed", client, progress=False)
    assert res[0].mode == "blocks" and res[0].outputs["labels"].name == "big.ome.tif"
    np.testing.assert_array_equal(
        read_image(res[0].outputs["labels"])[0], read_image(single[0].outputs["labels"])[0]
    )
    (tmp_path / "blocks").mkdir()
    res = [  # five blocks of 64 rows
        predict_image_blocks(
            factory,
            Case("big", [path]),
            tmp_path / "blocks" / "big.ome.tif",
            client,
            factory(),
            threads=1,
            rows_per_block=64,
            progress=False,
        )
    ]
    out, expected = res[0].outputs["labels"], single[0].outputs["labels"]
    assert out.name == expected.name == "big.ome.tif"
    assert sorted(p.name for p in out.parent.iterdir()) == ["big.ome.tif"]  # no block store left
    labels, meta = read_image(out)
    np.testing.assert_array_equal(labels, read_image(expected)[0])
    assert set(np.unique(labels)) <= {0, 255} and meta.spacing == (0.5, 0.5)
    with tifffile.TiffFile(out) as a, tifffile.TiffFile(expected) as b:
        assert len(a.series[0].levels) == len(b.series[0].levels) == 2
        np.testing.assert_array_equal(
            a.series[0].levels[1].asarray(), b.series[0].levels[1].asarray()
        )


def test_a_stopped_job_leaves_a_folder_its_rerun_can_tell_apart(job, client, tmp_path):
    """The workers write in any order and a job can stop anywhere (here at a corrupt input), so the
    folder names its model before the first output: a rerun with another model is refused, not
    mixed with the outputs already there. An output folder that holds the inputs is refused before
    anything is written."""
    import shutil

    from unetkit.inference.batch import MODEL_RECORD, _recorded_model, check_model_record
    from unetkit.inference.cluster import predict_files_dask

    _, _, images, factory, _ = job
    folder = tmp_path / "in"
    shutil.copytree(images, folder)
    (folder / "im9.png").write_bytes((folder / "im0.png").read_bytes()[:60])  # cut short
    out = tmp_path / "out"
    with pytest.raises(DataError, match="im9.png"):
        predict_files_dask(factory, [folder], out, client, progress=False, model_id="model A")
    assert (out / MODEL_RECORD).is_file() and _recorded_model(out) == "model A"
    (folder / "im9.png").unlink()
    cases, options = plan_cases(factory(), [folder])
    if not (out / "im0.png").exists():  # as if the workers had got as far as im0
        (out / "im0.png").write_bytes((folder / "im0.png").read_bytes())
    with pytest.raises(DataError, match="from another model"):
        check_model_record(out, "model B", cases, options)

    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    for overwrite in (False, True):
        with pytest.raises(DataError, match=r"in: is where the inputs are \(e\.g\. im0\.png\)"):
            predict_files_dask(
                factory, [folder], folder, client, overwrite=overwrite, progress=False
            )
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_blocks_left_by_a_stopped_job_are_reused_only_by_the_same_job(job, client, tmp_path):
    """A huge image's finished blocks are kept for a rerun of the same model, level and block
    size, and discarded for any other: a rerun with another model writes its own labels only."""
    import shutil

    from unetkit.data.discovery import Case
    from unetkit.inference.cluster import _BLOCKS_DIR, _IDENTITY, predict_image_blocks
    from unetkit.io import read_image

    zarr = pytest.importorskip("zarr")
    _, _, _, factory, _ = job
    image = (np.random.default_rng(5).random((1, 200, 96)) * 255).astype(np.uint8)
    path = tmp_path / "big.zarr"
    zarr.open_array(str(path), mode="w", shape=image.shape, chunks=(1, 64, 64), dtype="uint8")[
        ...
    ] = image

    def run(out, model_id):
        return predict_image_blocks(
            factory,
            Case("big", [path]),
            out,
            client,
            factory(),
            threads=1,
            rows_per_block=64,
            progress=False,
            model_id=model_id,
        )

    first = tmp_path / "a" / "big.ome.zarr"
    first.parent.mkdir()
    expected, _ = read_image(run(first, "model A").outputs["labels"])

    def leave_blocks(out, model_id):
        """The store a job of ``model_id`` stopped after all its blocks leaves: here every label
        set to 7, so a reuse shows."""
        store = out.parent / ".big.blocks.ome.zarr"
        shutil.copytree(first, store)
        zarr.open_group(str(store), mode="r+")["0"][...] = 7
        done = store / _BLOCKS_DIR
        done.mkdir()
        identity = {"model": model_id, "level": 0, "shape": [200, 96], "step": 64}
        (done / _IDENTITY).write_text(__import__("json").dumps(identity))
        for r0 in range(0, 200, 64):
            (done / f"{r0}-{min(r0 + 64, 200)}.done").touch()

    same = tmp_path / "same" / "big.ome.zarr"
    same.parent.mkdir()
    leave_blocks(same, "model A")
    labels, _ = read_image(run(same, "model A").outputs["labels"])
    assert np.all(labels == 7)  # the same job: its finished blocks are kept
    other = tmp_path / "other" / "big.ome.zarr"
    other.parent.mkdir()
    leave_blocks(other, "model A")
    labels, _ = read_image(run(other, "model B").outputs["labels"])
    np.testing.assert_array_equal(labels, expected)  # another model: none of A's blocks


def test_dask_tells_the_voxel_size_notes_one_process_tells(job, client, tmp_path):
    """A model trained at a voxel size: the job on the cluster says, as one process says before
    predicting, which inputs were resampled to it and which state none (it said nothing before)."""
    import tifffile

    from unetkit.inference.cluster import predict_files_dask

    _, ckpt, images, _, _ = job
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("im0.png", "im1.png"):
        (mixed / name).write_bytes((images / name).read_bytes())
    fine = np.asarray(Image.open(images / "im2.png"))
    tifffile.imwrite(
        mixed / "fine.tif", fine, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "um"}
    )
    factory = functools.partial(
        Predictor.from_checkpoint, ckpt, precision="fp32", trained_spacing=[1.0, 1.0]
    )
    factory = functools.partial(factory, spacing_unit="µm")
    here, there = [], []
    predict_files(factory(), [mixed], tmp_path / "one", progress=False, say=here.append)
    res = predict_files_dask(
        factory, [mixed], tmp_path / "dask", client, threads=1, progress=False, say=there.append
    )
    assert (
        there
        == here
        == [
            "2 of 3 input(s) state no voxel size (im0.png, im1.png): predicted as stored, as if at "
            "the model's 1×1 µm",
            "1 of 3 input(s) resampled to the model's voxel size 1×1 µm and back (fine.tif: 0.5×0.5 µm)",
        ]
    )
    assert [(r.case_id, r.spacing) for r in res] == [
        ("fine", (0.5, 0.5)),
        ("im0", None),
        ("im1", None),
    ]
    again = predict_files_dask(factory, [mixed], tmp_path / "dask", client, say=there.append)
    assert {r.status for r in again} == {"skipped"} and len(there) == 2  # nothing read, no note

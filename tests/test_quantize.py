"""Int8 ONNX copies: written only where their labels agree with fp32 on the validation images.

A tiny same-padding U-Net trained for a few seconds on seeded synthetic discs agrees (its logits have
margins); the same net with its random initial weights has logits near zero everywhere and is
refused. The CLI runs on a hand-made run folder (config.yaml, splits.json, checkpoint, data) so no
trainer run is needed; the trainer's run folder layout is tested in test_training.py.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unetkit.cli import main
from unetkit.errors import ConfigError, DataError


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


pytestmark = pytest.mark.skipif(
    not (_importable("onnx") and _importable("onnxruntime.quantization")),
    reason="onnx/onnxruntime not installed (pip install unetkit[export])",
)

SIZE = 64
NORM = {"name": "zscore", "params": {"per_image": False}, "stats": {"mean": [100.0], "std": [50.0]}}
LABELS = {"kind": "labels", "values": [0, 255], "names": None, "dtype": "uint8", "palette": None}
TINY = dict(base_features=8, depth=2, norm="none")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny convs: one thread is much faster than two fighting other test processes for 2 cores
    (module scope: set before the module's fixtures train and export)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def discs(n: int, size: int = SIZE, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` (image (1, H, W) uint8 50/150, mask (H, W) 0/1) pairs of bright discs, seeded."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for _ in range(n):
        mask = np.zeros((size, size), bool)
        for _ in range(4):
            cy, cx = rng.integers(8, size - 8, 2)
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= int(rng.integers(4, 9)) ** 2
        out.append(((mask * 100 + 50).astype(np.uint8)[None], mask.astype(np.int64)))
    return out


DATA = discs(6)
TRAIN = [img for img, _ in DATA[:4]]
VAL = [img for img, _ in DATA[4:]]


def trained_net() -> torch.nn.Module:
    from unetkit.models import create_model

    torch.manual_seed(0)
    net = create_model("unet", **TINY)
    x = torch.from_numpy(np.stack([(img - 100.0) / 50.0 for img, _ in DATA]).astype(np.float32))
    y = torch.from_numpy(np.stack([mask for _, mask in DATA]))
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


def random_net() -> torch.nn.Module:
    from unetkit.models import create_model

    torch.manual_seed(1)
    return create_model("unet", **TINY).eval()


def export(net, path: Path) -> Path:
    from unetkit.inference.export import export_onnx

    meta = {"normalization": NORM, "label_map": LABELS, "patch_size": [32, 32]}
    export_onnx(net, path, input_size=32, threads=1, metadata=meta)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    net = trained_net()
    return net, export(net, tmp_path_factory.mktemp("trained") / "m.onnx")


@pytest.fixture(scope="module")
def untrained(tmp_path_factory) -> Path:
    return export(random_net(), tmp_path_factory.mktemp("random") / "m.onnx")


def quantize(src: Path, dst: Path, **kw):
    from unetkit.inference.quantize import quantize_int8

    return quantize_int8(src, dst, TRAIN, VAL, threads=1, timing_runs=1, **kw)


# -- the API -----------------------------------------------------------------------------------------
def test_agreeing_model_is_written_with_metadata_and_predicts_like_fp32(trained, tmp_path):
    from unetkit.inference.export import OnnxRunner, read_onnx_metadata

    _, fp32_path = trained
    out = tmp_path / "m.int8.onnx"
    report = quantize(fp32_path, out)
    assert report.accepted and report.path == out and out.is_file()
    assert report.agreement >= 0.999 and report.images == 2 and report.pixels == 2 * SIZE * SIZE
    assert report.calibration_tiles == 16 and report.tile == (32, 32)
    meta, fp32_meta = read_onnx_metadata(out), read_onnx_metadata(fp32_path)
    assert meta["precision"] == "int8"
    assert meta["int8_agreement"] == report.agreement
    assert meta["int8_validation_images"] == 2
    assert meta["int8_speedup"] == pytest.approx(report.fp32_seconds / report.int8_seconds)
    assert meta["int8_quantization"]["format"] == "QDQ"
    assert meta["int8_quantization"]["reduce_range"] is True
    for key, value in fp32_meta.items():  # everything a reader of the fp32 file uses is kept
        assert meta[key] == value
    lines = report.describe().splitlines()
    assert lines[0].startswith(f"wrote {out}") and "speed on a 32×32 tile" in lines[-1]
    print(report.describe())  # the timings, for the log; never asserted

    runner = OnnxRunner(out, threads=1)
    assert runner.precision == "int8"
    predictor = runner.predictor()
    assert predictor.describe().endswith("int8")
    fp32 = OnnxRunner(fp32_path, threads=1).predictor()
    image = discs(1, size=80, seed=5)[0][0][:, :, :72]  # another size: dynamic axes, several tiles
    labels = predictor.predict(image)
    assert labels.shape == (80, 72)
    assert np.mean(labels == fp32.predict(image)) >= 0.999


def test_disagreeing_model_is_refused_with_one_line_and_leaves_nothing(untrained, tmp_path):
    from unetkit.inference.quantize import AGREEMENT_THRESHOLD, Int8Refused

    out = tmp_path / "out" / "m.int8.onnx"
    with pytest.raises(Int8Refused) as info:
        quantize(untrained, out)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("int8 refused: labels agree with fp32 on ")
    assert "needs 99.9 %" in message
    report = info.value.report
    assert report.agreement < AGREEMENT_THRESHOLD and report.path is None
    shown = float(message.split(" on ")[1].split(" %")[0])
    assert shown == pytest.approx(np.floor(report.agreement * 1e4) / 1e2)  # rounded down
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())  # no temp file either


def test_refusal_threshold_is_the_constant(trained, tmp_path, monkeypatch):
    """The rule lives in one constant: set to this model's own agreement it passes, set above it
    the model is refused. The agreement itself depends on the CPU's int8 kernels (100 % on AVX2
    and AMX machines, 99.98 % on an AVX-512 VNNI one without AMX), so it is measured first."""
    from unetkit.inference import quantize as q

    _, fp32_path = trained
    agreement = quantize(fp32_path, tmp_path / "probe.int8.onnx", threshold=0.5).agreement
    monkeypatch.setattr(q, "AGREEMENT_THRESHOLD", agreement)
    report = quantize(fp32_path, tmp_path / "a.int8.onnx")  # exactly at the constant: kept
    assert report.agreement == agreement and report.threshold == agreement
    monkeypatch.setattr(q, "AGREEMENT_THRESHOLD", 1.0)
    if agreement == 1.0:  # 100 % still passes 1.0
        assert quantize(fp32_path, tmp_path / "c.int8.onnx").threshold == 1.0
    else:
        with pytest.raises(q.Int8Refused, match="needs 100 %"):
            quantize(fp32_path, tmp_path / "c.int8.onnx")
        assert not (tmp_path / "c.int8.onnx").exists()
    with pytest.raises(ConfigError, match="threshold"):
        quantize(fp32_path, tmp_path / "b.int8.onnx", threshold=1.5)
    assert not (tmp_path / "b.int8.onnx").exists()


def test_agreement_matches_a_direct_numpy_comparison(untrained, tmp_path):
    """A low threshold keeps a disagreeing int8 file; its agreement is recomputed by hand: both
    sessions run the whole normalised image (one tile) and the argmaxes are compared in numpy."""
    import onnxruntime as ort

    report = quantize(untrained, tmp_path / "m.int8.onnx", threshold=0.5)
    assert 0.5 < report.agreement < 0.999
    sessions = [
        ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        for p in (untrained, report.path)
    ]
    equal = total = 0
    for image in VAL:
        x = ((image.astype(np.float32) - 100.0) / 50.0)[None]
        a, b = (np.argmax(s.run(None, {"image": x})[0][0], axis=0) for s in sessions)
        equal += int((a == b).sum())
        total += a.size
    assert total == report.pixels
    assert equal / total == pytest.approx(report.agreement, abs=1e-12)


def test_calibration_tiles_are_seeded_normalised_and_padded(trained):
    from unetkit.inference.export import OnnxRunner
    from unetkit.inference.quantize import calibration_tiles

    predictor = OnnxRunner(trained[1], threads=1).predictor()
    small = (np.full((1, 20, 24), 150, np.uint8), None)  # smaller than the tile: mirror-padded
    a = calibration_tiles(predictor, [*TRAIN, small], [32, 32], 10, seed=3)
    b = calibration_tiles(predictor, [*TRAIN, small], [32, 32], 10, seed=3)
    c = calibration_tiles(predictor, [*TRAIN, small], [32, 32], 10, seed=4)
    assert len(a) == 10 and all(t.shape == (1, 1, 32, 32) and t.dtype == np.float32 for t in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    assert set(np.unique(np.concatenate(a[:4]))) <= {-1.0, 1.0}  # (50|150 − 100) / 50
    assert np.all(a[4] == 1.0)  # tile 4 from the small image, padded by mirroring


def test_bad_arguments(trained, tmp_path):
    from unetkit.inference.quantize import quantize_int8

    _, fp32_path = trained
    with pytest.raises(ConfigError, match="at least one validation image"):
        quantize_int8(fp32_path, tmp_path / "x.onnx", TRAIN, [])
    with pytest.raises(ConfigError, match="overwrite the fp32 model"):
        quantize_int8(fp32_path, fp32_path, TRAIN, VAL)
    int8 = quantize(fp32_path, tmp_path / "m.int8.onnx").path
    with pytest.raises(ConfigError, match="already a int8 model"):
        quantize_int8(int8, tmp_path / "again.onnx", TRAIN, VAL)


# -- the CLI -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, trained) -> Path:
    """RUN/config.yaml, RUN/splits.json, RUN/checkpoints/best.pt and the dataset they name."""
    from unetkit.checkpoint import save_checkpoint
    from unetkit.config import RunConfig
    from unetkit.data.splits import save_splits

    root = tmp_path_factory.mktemp("cli")
    data = root / "data"
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True)
    for i, (image, mask) in enumerate(DATA):
        Image.fromarray(image[0]).save(data / "images" / f"{i:02d}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(data / "masks" / f"{i:02d}.png")
    run = root / "run"
    config = RunConfig.from_dict({"data": {"train_dir": str(data), "patch_size": [32]}})
    (run / "checkpoints").mkdir(parents=True)
    config.to_yaml(run / "config.yaml")
    save_splits(run / "splits.json", {"train": ["00", "01", "02", "03"], "val": ["04", "05"]})
    save_checkpoint(
        run / "checkpoints" / "best.pt",
        trained[0],
        config=config.to_dict(),
        label_map=LABELS,
        normalization=NORM,
        patch_size=[32, 32],
        with_rng=False,
    )
    return run


def test_cli_int8_uses_the_runs_split_and_predict_reads_the_file(run_folder, tmp_path, capsys):
    from unetkit.inference.export import read_onnx_metadata

    ckpt = run_folder / "checkpoints" / "best.pt"
    assert main(["export", str(ckpt), "--int8", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    int8 = run_folder / "checkpoints" / "best.int8.onnx"
    assert int8.is_file() and (run_folder / "checkpoints" / "best.onnx").is_file()
    assert "calibrating on 4 training image(s), checking labels on 2 validation image(s)" in out
    assert f"wrote {int8}" in out and "speed on a 32×32 tile" in out
    meta = read_onnx_metadata(int8)
    assert meta["precision"] == "int8" and meta["int8_validation_images"] == 2
    assert meta["int8_agreement"] >= 0.999

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(VAL[0][0]).save(images / "a.png")
    assert (
        main(["predict", str(int8), str(images), "-o", str(tmp_path / "p"), "--threads", "1"]) == 0
    )
    assert "onnxruntime (CPU execution provider), int8" in capsys.readouterr().out
    written = np.asarray(Image.open(tmp_path / "p" / "a.png"))
    assert written.shape == (SIZE, SIZE) and set(np.unique(written)) <= {0, 255}


def test_cli_int8_errors_are_one_line(run_folder, tmp_path, capsys):
    ckpt = run_folder / "checkpoints" / "best.pt"
    out = tmp_path / "m.torchscript.pt"
    assert main(["export", str(ckpt), "--int8", "--format", "torchscript", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--int8 applies to --format onnx only" in err
    assert not out.exists()
    assert main(["export", str(ckpt), "--validation", str(tmp_path)]) == 2
    assert "go with --int8" in capsys.readouterr().err

    # a checkpoint outside its run folder: nothing to find the images with, nothing written
    alone = tmp_path / "alone" / "best.pt"
    alone.parent.mkdir()
    alone.write_bytes(ckpt.read_bytes())
    assert main(["export", str(alone), "--int8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "give --calibration DIR and --validation DIR" in err
    assert sorted(p.name for p in alone.parent.iterdir()) == ["best.pt"]
    # a missing folder is named
    missing = tmp_path / "nope"
    assert main(["export", str(alone), "--int8", "--calibration", str(missing)]) == 2
    assert f"{missing}: calibration folder not found" in capsys.readouterr().err


def test_cli_int8_refusal_writes_neither_file(run_folder, tmp_path, capsys, monkeypatch):
    """Exit 2 means nothing written: a refused int8 copy takes the staged fp32 file with it."""
    from unetkit.inference import quantize as q

    monkeypatch.setattr(q, "label_agreement", lambda *a, **k: (900, 1000))  # 90 % agree
    ckpt = run_folder / "checkpoints" / "best.pt"
    out = tmp_path / "exports" / "m.onnx"
    assert main(["export", str(ckpt), "--int8", "--threads", "1", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert (
        "int8 refused: labels agree with fp32 on 90 % of the validation pixels (needs 99.9 %)"
        in err
    )
    assert err.endswith("nothing was written (export without --int8 for the fp32 model)")
    assert not out.parent.exists() or sorted(out.parent.iterdir()) == []


def test_run_images_follow_the_split_and_explicit_folders(run_folder, tmp_path):
    from unetkit.inference.quantize import run_images

    ckpt = run_folder / "checkpoints" / "best.pt"
    sources = run_images(ckpt)
    assert [c.case_id for c in sources.calibration] == ["00", "01", "02", "03"]
    assert [c.case_id for c in sources.validation] == ["04", "05"]
    plain = tmp_path / "plain"  # a folder of images, no images/ sub-folder
    plain.mkdir()
    Image.fromarray(VAL[1][0]).save(plain / "z.png")
    sources = run_images(ckpt, validation=plain)
    assert [c.case_id for c in sources.validation] == ["z"] and len(sources.calibration) == 4
    calibration, validation = sources.read()
    assert validation[0][0].shape == (1, SIZE, SIZE)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images in this calibration folder"):
        run_images(ckpt, calibration=tmp_path / "empty")

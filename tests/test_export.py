"""ONNX / TorchScript export: dynamic axes, agreement with PyTorch, metadata, OnnxRunner, the CLI."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from unetkit.cli import main
from unetkit.errors import ConfigError, DataError
from unetkit.inference import export as ex
from unetkit.inference.tiling import choose_overlap_tile
from unetkit.models import create_model
from unetkit.models.heads import CGM_SUPPRESSED_LOGIT


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


HAS_ORT = _importable("onnx") and _importable("onnxruntime")
needs_ort = pytest.mark.skipif(
    not HAS_ORT, reason="onnx/onnxruntime not installed (pip install unetkit[export])"
)
needs_onnx = pytest.mark.skipif(
    not _importable("onnx"), reason="onnx not installed (pip install unetkit[export])"
)
TOL = 1e-4
TINY = dict(features=(4, 8, 16), init="torch")
LABELS = {
    "kind": "labels",
    "values": [0, 128, 255],
    "names": ["bg", "a", "b"],
    "dtype": "uint8",
    "palette": None,
}
NORM = {"name": "zscore", "params": {"per_image": False}, "stats": {"mean": [10.5], "std": [2.0]}}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny convs: one thread is ~100× faster than two fighting other test processes for 2 cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def eager(model, x):
    model = model.eval()
    with torch.no_grad():
        return model(x)


def tiny(name, **kw):
    model = create_model(name, **{**TINY, **kw}).eval()
    model.outputs = "logits"
    return model


@pytest.fixture
def checkpoint(tmp_path):
    from unetkit.checkpoint import save_checkpoint

    model = create_model("unet", features=(4, 8, 16), num_classes=3)
    return save_checkpoint(
        tmp_path / "ck.pt",
        model,
        label_map=LABELS,
        normalization=NORM,
        patch_size=[48, 40],
        with_rng=False,
    )


# -- dynamic models: ONNX ------------------------------------------------------------------------
# (preset, options, example size, expected second check size, a third size checked with OnnxRunner,
#  hand-computed rule). Second size: about half the example, one step less per axis, or above the
#  example when half is too small.
DYNAMIC = [
    ("unet", {}, 32, (16, 12), (20, 36), {"min": [4, 4], "step": [4, 4], "shrink": [0, 0]}),
    # valid convs, depth 2: 44 → 40 → 20 → 16 → 8 → 4 → up 8 → 4 → up 8 → 4: output = input − 40
    (
        "unet-original",
        {},
        44,
        (48, 52),
        (60, 56),
        {"min": [44, 44], "step": [4, 4], "shrink": [40, 40]},
    ),
    (
        "unet",
        {"spatial_dims": 3, "features": (4, 8)},
        16,
        (8, 6, 4),
        (6, 10, 8),
        {"min": [2, 2, 2], "step": [2, 2, 2], "shrink": [0, 0, 0]},
    ),
]


@needs_ort
@pytest.mark.parametrize(
    "name, opts, size, second, third, rule", DYNAMIC, ids=["unet", "unet-original", "unet3d"]
)
def test_onnx_dynamic_export_matches_pytorch_at_three_sizes(
    tmp_path, name, opts, size, second, third, rule
):
    model = tiny(name, **opts)
    dims = model.spatial_dims
    report = ex.export_onnx(model, tmp_path / "m.onnx", input_size=size, threads=1)
    assert report.dynamic_batch and report.dynamic_spatial
    axes = {
        0: "batch",
        **{
            2 + i: n
            for i, n in enumerate(
                ["height", "width"] if dims == 2 else ["depth", "height", "width"]
            )
        },
    }
    assert report.dynamic_axes == {"image": axes, "logits": axes}
    assert [c.input_shape for c in report.checks] == [(1, 1, *[size] * dims), (2, 1, *second)]
    assert [c.output_shape[2:] for c in report.checks] == [
        tuple(s - k for s, k in zip(sz, rule["shrink"])) for sz in ([size] * dims, second)
    ]
    assert all(c.max_abs_diff <= TOL for c in report.checks)
    saved = report.metadata["valid_input_size"]
    assert {k: saved[k] for k in rule} == rule
    assert (
        model.output_size(rule["min"][0]) == rule["min"][0] - rule["shrink"][0]
    )  # the model agrees
    runner = ex.OnnxRunner(report.path, threads=1)
    x = torch.randn(3, 1, *third)
    y = runner(x)
    ref = eager(model, x)
    assert y.shape == ref.shape == (3, 2, *[s - k for s, k in zip(third, rule["shrink"])])
    assert float((y - ref).abs().max()) <= TOL


@needs_ort
def test_onnx_unet3plus_cgm_gates_like_pytorch(tmp_path):
    model = tiny("unet3plus-ds-cgm", num_classes=2)
    x = torch.randn(2, 1, 32, 32)
    model.outputs = "all"
    with torch.no_grad():
        cls = model(x).cls_logits
        margin = cls[:, 1] - cls[:, 0]
        model.cgm_head.conv.bias[1] -= margin.mean()  # image 0 and 1 now fall on opposite sides
    model.outputs = "logits"
    ref = eager(model, x)
    suppressed = [bool((ref[i, 1] == CGM_SUPPRESSED_LOGIT).all()) for i in range(2)]
    assert sorted(suppressed) == [False, True]
    assert not (ref[:, 0] == CGM_SUPPRESSED_LOGIT).any()  # background is never gated

    report = ex.export_onnx(model, tmp_path / "m.onnx", input_size=32, threads=1)
    assert model.outputs == "logits" and not model.training  # the caller's model is untouched
    runner = ex.OnnxRunner(report.path, threads=1)
    y = runner(x)
    assert torch.equal(y[:, 1] == CGM_SUPPRESSED_LOGIT, ref[:, 1] == CGM_SUPPRESSED_LOGIT)
    assert float((y - ref).abs().max()) <= TOL
    assert report.dynamic_batch and all(c.max_abs_diff <= TOL for c in report.checks)
    x48 = torch.randn(1, 1, 48, 48)
    if report.dynamic_spatial:  # once models.layers.resize_to keeps traced sizes symbolic
        assert float((runner(x48) - eager(model, x48)).abs().max()) <= TOL
    else:  # today: resize targets are Python ints, so the graph is fixed at 32×32
        assert report.dynamic_axes == {"image": {0: "batch"}, "logits": {0: "batch"}}
        assert report.metadata["valid_input_size"]["min"] == [32, 32]
        assert report.metadata["valid_input_size"]["step"] == [0, 0]
        assert [c.input_shape for c in report.checks] == [(1, 1, 32, 32), (2, 1, 32, 32)]
        assert any("specialised to its traced spatial size 32×32" in n for n in report.notes)
        with pytest.raises(
            ConfigError, match=r"input size 48 on spatial axis 0 is not accepted .* use 32$"
        ):
            runner(x48)


@needs_ort
def test_static_onnx_export_has_fixed_axes_and_runner_loops_over_the_batch(tmp_path):
    onnx = pytest.importorskip("onnx")
    model = tiny("unet")
    report = ex.export_onnx(model, tmp_path / "s.onnx", input_size=16, dynamic=False, threads=1)
    assert report.dynamic_axes == {} and not report.dynamic_batch and not report.dynamic_spatial
    assert len(report.checks) == 1
    dims = [
        d.dim_value for d in onnx.load(str(report.path)).graph.input[0].type.tensor_type.shape.dim
    ]
    assert dims == [1, 1, 16, 16]
    x = torch.randn(3, 1, 16, 16)
    assert float((ex.OnnxRunner(report.path, threads=1)(x) - eager(model, x)).abs().max()) <= TOL


# -- TorchScript ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, opts, size",
    [
        ("unet", {}, 32),
        ("unet-original", {}, 44),
        ("unet", {"spatial_dims": 3, "features": (4, 8)}, 16),
        ("unet3plus-ds-cgm", {}, 32),
    ],
    ids=["unet", "unet-original", "unet3d", "unet3plus-ds-cgm"],
)
def test_torchscript_export_matches_pytorch(tmp_path, name, opts, size):
    model = tiny(name, **opts)
    report = ex.export_torchscript(model, tmp_path / "m.torchscript.pt", input_size=size)
    assert all(c.max_abs_diff <= TOL for c in report.checks) and len(report.checks) == 2
    module, meta = ex.load_torchscript(report.path)
    assert meta == json.loads(json.dumps(report.metadata))
    second = report.checks[1].input_shape
    x = torch.randn(*second)
    with torch.no_grad():
        assert float((module(x) - eager(model, x)).abs().max()) <= TOL
    # the traced graph generalises to another size exactly when the export says so
    other = torch.randn(1, 1, *[s + 8 for s in report.example_size])  # valid for every model here
    with torch.no_grad():
        try:
            same = float((module(other) - eager(model, other)).abs().max()) <= TOL
        except Exception:
            same = False
    assert same == report.dynamic_spatial
    if (
        name != "unet3plus-ds-cgm"
    ):  # UNet 3+ is fixed-size until models.layers.resize_to traces sizes
        assert report.dynamic_spatial and report.dynamic_batch


# -- metadata and OnnxRunner ---------------------------------------------------------------------
@needs_ort
def test_checkpoint_metadata_round_trip_and_predictor_kwargs(tmp_path, checkpoint):
    onnx = pytest.importorskip("onnx")
    from unetkit.data.labels import LabelMap
    from unetkit.data.normalization import Normalizer

    report = ex.export_onnx(checkpoint, tmp_path / "m.onnx", threads=1)
    assert report.example_size == (48, 40)  # the checkpoint's patch size
    props = {p.key: p.value for p in onnx.load(str(report.path)).metadata_props}
    decoded = {k: json.loads(v) for k, v in props.items()}  # every value is a JSON string
    assert decoded == ex.read_onnx_metadata(report.path) == json.loads(json.dumps(report.metadata))
    assert decoded["label_map"] == LABELS and decoded["normalization"] == NORM
    assert decoded["patch_size"] == [48, 40]
    assert (decoded["spatial_dims"], decoded["in_channels"], decoded["num_classes"]) == (2, 1, 3)
    assert decoded["model"]["preset"] == "unet" and decoded["model"]["kwargs"]["features"] == [
        4,
        8,
        16,
    ]
    assert decoded["format"] == "unetkit-export" and decoded["activation"] == "softmax"
    runner = ex.OnnxRunner(report.path, threads=1)
    assert runner.metadata == decoded
    kw = runner.predictor_kwargs()
    assert kw == {"tile": [48, 40], "normalization": NORM, "label_map": LABELS}
    assert LabelMap.from_dict(kw["label_map"]).to_dict() == LABELS
    assert Normalizer.from_dict(kw["normalization"]).to_dict() == NORM
    assert decoded["trained_spacing"] is None and runner.predictor().trained_spacing is None


@needs_ort
def test_a_model_trained_as_stored_keeps_its_voxel_size_in_onnx(tmp_path):
    """The ONNX file carries the voxel size a model trained as stored was trained at, so
    ``predict model.onnx`` resamples an image far from it as ``predict model.pt`` does."""
    from unetkit.checkpoint import save_checkpoint
    from unetkit.inference.predictor import Predictor

    spread = {"min": [0.5, 0.5], "max": [0.52, 0.5], "files": 3, "units": ["um"]}
    plan = {"fingerprint": {"cases": 3, "spacing": [0.5, 0.5], "spacing_spread": spread}}
    plan["fingerprint"]["spacing_unit"] = "um"
    post = {"steps": [{"name": "remove_small", "label": 1, "min_size": 9}], "connectivity": 1}
    model = create_model("unet", features=(4, 8, 16), num_classes=3)
    ckpt = save_checkpoint(
        tmp_path / "ck.pt",
        model,
        patch_size=[32, 32],
        extra={"plan": plan, "postprocess": post},
        with_rng=False,
    )
    report = ex.export_onnx(ckpt, tmp_path / "m.onnx", threads=1)
    assert report.metadata["trained_spacing"] == [0.5, 0.5]
    onnx_predictor = ex.OnnxRunner(report.path, threads=1).predictor()
    torch_predictor = Predictor.from_checkpoint(ckpt, precision="fp32")
    assert onnx_predictor.trained_spacing == torch_predictor.trained_spacing == [0.5, 0.5]
    assert onnx_predictor.resampling((1.0, 1.0)) == torch_predictor.resampling((1.0, 1.0))
    # the unit of that voxel size, and the clean-ups validation chose, travel with it
    assert onnx_predictor.spacing_unit == torch_predictor.spacing_unit == "um"
    assert onnx_predictor.postprocess == torch_predictor.postprocess
    assert onnx_predictor.postprocess.describe() == "remove class 1 objects under 9 px"
    # the command line: an upper-case suffix is still ONNX; GPU or bf16 asks are refused, not
    # silently run on the CPU in fp32
    upper = tmp_path / "M.ONNX"
    upper.write_bytes(report.path.read_bytes())
    img = tmp_path / "im.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(img)
    assert main(["predict", str(upper), str(img), "-o", str(tmp_path / "p"), "--threads", "1"]) == 0
    assert (tmp_path / "p" / "im.png").is_file()
    for flags in (["--device", "cuda"], ["--precision", "bf16"]):
        assert main(["predict", str(upper), str(img), "-o", str(tmp_path / "q"), *flags]) == 2
    assert not (tmp_path / "q").exists()


@needs_ort
def test_onnx_runner_contract_and_size_api(tmp_path):
    model = tiny("unet-original")
    path = ex.export_onnx(model, tmp_path / "v.onnx", input_size=44, check=False).path
    runner = ex.OnnxRunner(path, threads=1)
    x = torch.randn(2, 1, 48, 52, dtype=torch.float64)
    y = runner(x)
    assert y.dtype == torch.float32 and y.device.type == "cpu" and y.shape == (2, 2, 8, 12)
    assert float((y - eager(model, x.float())).abs().max()) <= TOL
    # the size rule read from the file is the model's, so the overlap-tile maths accept the runner
    rule = runner.size_rule()
    assert rule == model.size_rule()
    for s in (40, 44, 45, 48, 60):
        assert rule.accepts(s) == model.is_valid_input_size(s)
    assert rule.at_least(45) == (model.valid_input_size(45),) * 2 == (48, 48)
    assert rule.output_size(60) == (model.output_size(60),) * 2 == (20, 20)
    assert rule.nearest(0, 50) == model.nearest_valid_sizes(50) == (48, 52)
    assert choose_overlap_tile(runner, 70, round="down") == choose_overlap_tile(
        model, 70, round="down"
    )
    with pytest.raises(
        ConfigError, match=r"expected a batch \(B, 1, height, width\), got shape \(2, 3, 48, 48\)"
    ):
        runner(torch.zeros(2, 3, 48, 48))
    with pytest.raises(
        ConfigError, match=r"input size 50 on spatial axis 1 .* 44 \+ 4·k .*; use 48 or 52$"
    ):
        runner(torch.zeros(1, 1, 48, 50))
    with pytest.raises(ConfigError, match="expected a float torch tensor batch, got torch.int64"):
        runner(torch.zeros(1, 1, 48, 48, dtype=torch.int64))


@needs_ort
def test_onnx_runner_file_errors(tmp_path):
    with pytest.raises(DataError, match=r"missing\.onnx: ONNX model not found"):
        ex.OnnxRunner(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(DataError, match=r"bad\.onnx: cannot read ONNX model"):
        ex.OnnxRunner(bad)
    plain = tmp_path / "plain.onnx"
    with ex._quiet_tracing():
        torch.onnx.export(
            torch.nn.Conv2d(1, 2, 3), (torch.zeros(1, 1, 8, 8),), str(plain), dynamo=False
        )
    with pytest.raises(
        DataError, match=r"plain\.onnx: not a unetkit export \(no unetkit metadata in the file\)"
    ):
        ex.OnnxRunner(plain)
    with pytest.raises(DataError, match=r"plain\.onnx: not a unetkit export"):
        ex.read_onnx_metadata(plain)


# -- errors and atomicity ------------------------------------------------------------------------
@needs_ort
def test_failed_check_writes_nothing(tmp_path):
    model = create_model("unet", features=(4, 8, 16))  # He init: fp32 differences ~1e-6, not 0
    with pytest.raises(
        ex.ExportCheckError,
        match=r"m\.onnx: the ONNX export differs from PyTorch by .*"
        r"the file was not written",
    ):
        ex.export_onnx(model, tmp_path / "m.onnx", input_size=16, rtol=1e-12, threads=1)
    assert list(tmp_path.iterdir()) == []


def test_argument_errors(tmp_path):
    model = tiny("unet")
    with pytest.raises(
        ConfigError,
        match=r"input size 30 on spatial axis 0 is not accepted by an export of this model "
        r"\(valid: multiples of 4 on every axis\); use 28 or 32",
    ):
        ex.export_torchscript(model, tmp_path / "m.pt", input_size=30)
    with pytest.raises(
        ConfigError,
        match=r"input_size needs 2 value\(s\), one per spatial axis; got \[16, 16, 16\]",
    ):
        ex.export_torchscript(model, tmp_path / "m.pt", input_size=(16, 16, 16))
    with pytest.raises(
        ConfigError, match=r"unknown metadata key 'tile'; use \['label_map', 'normalization'"
    ):
        ex.export_torchscript(model, tmp_path / "m.pt", input_size=16, metadata={"tile": [16, 16]})
    with pytest.raises(ConfigError, match="export needs a unetkit model .* got Conv2d"):
        ex.export_torchscript(torch.nn.Conv2d(1, 2, 3), tmp_path / "m.pt")
    with pytest.raises(DataError, match=r"nope\.pt: checkpoint not found"):
        ex.export_torchscript(tmp_path / "nope.pt", tmp_path / "m.pt")
    with pytest.raises(DataError, match=r"x\.pt: TorchScript model not found"):
        ex.load_torchscript(tmp_path / "x.pt")
    assert not (tmp_path / "m.pt").exists()


@needs_onnx
def test_missing_onnxruntime_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    with pytest.raises(
        ex.MissingDependencyError,
        match=r"needs the 'onnxruntime' package.*"
        r"install it with: pip install unetkit\[export\]",
    ):
        ex.export_onnx(tiny("unet"), tmp_path / "m.onnx", input_size=16)
    with pytest.raises(ex.MissingDependencyError, match="onnxruntime"):
        ex.OnnxRunner(tmp_path / "m.onnx")


# -- CLI ---------------------------------------------------------------------------------------
def run_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "unetkit", "export", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


@needs_ort
def test_cli_export_onnx(tmp_path, checkpoint):
    res = run_cli(checkpoint, "--threads", "1")
    assert res.returncode == 0, res.stderr
    out_path = tmp_path / "ck.onnx"
    lines = res.stdout.splitlines()
    assert lines[0].startswith(f"wrote {out_path} (") and lines[0].endswith("KB, ONNX opset 17)")
    assert f"{out_path.stat().st_size / 1024:.1f} KB" in lines[0]
    assert "input  image: (batch, 1, height, width) float32" in lines
    assert "output logits: (batch, 3, height, width) float32" in lines
    assert (
        "dynamic axes: batch, height, width; valid spatial sizes: multiples of 4 on every axis"
        in lines
    )
    checks = [ln for ln in lines if ln.startswith("check vs PyTorch (fp32), input ")]
    assert [c.split(":")[0] for c in checks] == [
        "check vs PyTorch (fp32), input 1×1×48×40",
        "check vs PyTorch (fp32), input 2×1×24×16",
    ]
    assert all(float(c.split("max abs diff ")[1].split()[0]) <= 1e-3 for c in checks)
    assert ex.OnnxRunner(out_path, threads=1).metadata["label_map"] == LABELS


def test_cli_export_torchscript_and_errors(tmp_path, checkpoint, capsys):
    out = tmp_path / "net.ts.pt"
    assert (
        main(
            [
                "export",
                str(checkpoint),
                "--format",
                "torchscript",
                "--output",
                str(out),
                "--input-size",
                "32,24",
                "--no-check",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert (
        text.startswith(f"wrote {out} (")
        and "TorchScript (traced)" in text
        and "check skipped" in text
    )
    assert ex.read_torchscript_metadata(out)["valid_input_size"]["example"] == [32, 24]
    # given where a checkpoint goes (it ends in .pt): one line saying what it is and what to give
    img = tmp_path / "im.png"
    Image.fromarray(np.zeros((24, 32), np.uint8)).save(img)
    assert main(["predict", str(out), str(img), "--output", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert f"{out}: is a TorchScript export" in err and "or an ONNX export (.onnx)" in err
    assert err.count("\n") == 1 and not (tmp_path / "p").exists()

    assert main(["export", str(checkpoint), "--input-size", "big"]) == 2
    assert capsys.readouterr().err == (
        "unetkit export: error: --input-size must be integers like 256 or 64,128,128, got 'big'\n"
    )
    assert main(["export", str(checkpoint), "--output", str(checkpoint)]) == 2
    assert "would overwrite the checkpoint" in capsys.readouterr().err
    other = tmp_path / "last.pt"  # another checkpoint of the run: not replaced by an export
    other.write_bytes(checkpoint.read_bytes())
    assert main(["export", str(checkpoint), "--format", "torchscript", "-o", str(other)]) == 2
    assert f"--output {other} is a PyTorch checkpoint" in capsys.readouterr().err
    assert other.read_bytes() == checkpoint.read_bytes()
    legacy = tmp_path / "legacy.pt"  # torch.save's old pickle format is a checkpoint too
    torch.save({"state_dict": {}}, legacy, _use_new_zipfile_serialization=False)
    assert main(["export", str(checkpoint), "--format", "torchscript", "-o", str(legacy)]) == 2
    assert f"--output {legacy} is a PyTorch checkpoint" in capsys.readouterr().err
    # an earlier TorchScript export is replaced, as any export file is
    assert main(["export", str(checkpoint), "--format", "torchscript", "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["export", str(checkpoint), "--format", "torchscript", "--static"]) == 2
    assert "--static applies to ONNX only" in capsys.readouterr().err

    res = run_cli(tmp_path / "missing.pt")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr == f"unetkit export: error: {tmp_path / 'missing.pt'}: checkpoint not found\n"


@needs_onnx
def test_cli_without_onnxruntime(tmp_path, checkpoint, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    assert main(["export", str(checkpoint)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "unetkit export: error: this needs the 'onnxruntime' package, which is not importable ("
    )
    assert (
        err.endswith("); install it with: pip install unetkit[export]\n") and err.count("\n") == 1
    )
    assert not (tmp_path / "ck.onnx").exists()
    assert (
        main(["export", str(checkpoint), "--no-check", "--input-size", "16"]) == 0
    )  # checking needs it, export not
    assert (
        tmp_path / "ck.onnx"
    ).exists() and "check skipped (--no-check)" in capsys.readouterr().out


# -- as a Predictor backend ----------------------------------------------------------------------
@needs_ort
@pytest.mark.parametrize(
    "name, size, tile", [("unet", 32, 32), ("unet-original", 44, 56)], ids=["same", "valid"]
)
def test_onnx_backed_predictor_matches_torch_predictor(tmp_path, name, size, tile):
    from unetkit.inference.predictor import Predictor

    model = tiny(name)
    path = ex.export_onnx(model, tmp_path / "m.onnx", input_size=size, check=False).path
    image = torch.randn(1, 50, 70).numpy()
    onnx_pred = ex.OnnxRunner(path, threads=1).predictor(tile=tile, threads=1)
    torch_pred = Predictor(model, device="cpu", precision="fp32", tile=tile, threads=1)
    assert onnx_pred.plan(image.shape[1:]) == torch_pred.plan(image.shape[1:])
    a, b = onnx_pred.predict_logits(image), torch_pred.predict_logits(image)
    assert a.shape == b.shape == (2, 50, 70)
    assert float(abs(a - b).max()) <= TOL


@needs_ort
def test_fixed_size_export_predictor_uses_the_traced_size(tmp_path):
    model = tiny("unet3plus-ds-cgm", num_classes=2)
    report = ex.export_onnx(
        model,
        tmp_path / "m.onnx",
        input_size=16,
        check=False,
        metadata={"label_map": LABELS, "normalization": NORM},
    )
    pred = ex.OnnxRunner(report.path, threads=1).predictor(threads=1)
    assert pred.label_map.to_dict() == LABELS and pred.normalizer.to_dict() == NORM
    if not report.dynamic_spatial:
        assert pred.tile == [16, 16]
        assert pred.plan((12, 40)).tile == (16, 16)  # never a size the graph rejects
    assert pred.predict(torch.randn(1, 12, 40).numpy() * 2 + 10.5).shape == (12, 40)
    with pytest.raises(ConfigError, match="device cannot be chosen for the onnxruntime backend"):
        ex.OnnxRunner(report.path).predictor(device="cuda")

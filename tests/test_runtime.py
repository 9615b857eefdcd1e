"""Runtime choices made once per process: the CPU allocator setting."""

from __future__ import annotations


def test_keep_freed_memory_is_on_on_linux_glibc_and_off_by_environment(monkeypatch):
    import sys

    from unetkit import runtime

    monkeypatch.setattr(runtime, "_allocator_state", {})
    monkeypatch.setenv("UNETKIT_KEEP_FREED_MEMORY", "0")
    assert runtime.keep_freed_memory() is False
    assert runtime.keep_freed_memory() is False  # decided once per process
    monkeypatch.setattr(runtime, "_allocator_state", {})
    monkeypatch.delenv("UNETKIT_KEEP_FREED_MEMORY")
    on = runtime.keep_freed_memory()
    import platform

    assert on is (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc")


def test_training_precision_keeps_3d_cpu_training_in_fp32_unless_asked():
    import pytest
    import torch

    from unetkit import runtime

    cpu = torch.device("cpu")
    assert runtime.training_precision("auto", cpu, 3) is None
    assert runtime.training_precision("fp32", cpu, 3) is None
    with pytest.warns(RuntimeWarning, match="bf16 training of 3D nets on CPU"):
        assert runtime.training_precision("bf16", cpu, 3) is torch.bfloat16
    assert runtime.training_precision("auto", cpu, 2) is runtime.resolve_precision("auto", cpu)


# -- the CPU precision path and its switch ----------------------------------------------------------
def test_cpu_bf16_switch_forces_either_path_and_auto_follows_the_probe(monkeypatch):
    import pytest
    import torch

    from unetkit import runtime
    from unetkit.errors import ConfigError

    cpu = torch.device("cpu")
    monkeypatch.setenv(runtime.CPU_BF16_ENV, "0")
    assert runtime.cpu_supports_bf16() is False
    assert runtime.resolve_precision("auto", cpu) is None  # the fp32 path, whatever the CPU
    monkeypatch.setenv(runtime.CPU_BF16_ENV, "1")
    assert runtime.cpu_supports_bf16() is True
    assert runtime.resolve_precision("auto", cpu) is torch.bfloat16
    assert runtime.resolve_precision("fp32", cpu) is None  # an explicit choice wins over the switch
    for auto in ("auto", ""):
        monkeypatch.setenv(runtime.CPU_BF16_ENV, auto)
        assert runtime.cpu_supports_bf16() is runtime.native_cpu_bf16()
    monkeypatch.delenv(runtime.CPU_BF16_ENV)
    assert runtime.cpu_supports_bf16() is runtime.native_cpu_bf16()
    monkeypatch.setenv(runtime.CPU_BF16_ENV, "yes")
    with pytest.raises(ConfigError, match="UNETKIT_CPU_BF16='yes': use 0"):
        runtime.cpu_supports_bf16()


def test_native_bf16_probe_agrees_with_the_cpu_flags():
    """oneDNN's probe and /proc/cpuinfo tell the same story (Linux x86-64; skipped elsewhere)."""
    import platform

    import pytest

    from unetkit import runtime

    if platform.machine() not in ("x86_64", "AMD64") or not runtime.cpu_info().flags:
        pytest.skip("needs /proc/cpuinfo flags of an x86-64 CPU")
    info = runtime.cpu_info()
    has_bf16_flag = bool({"avx512_bf16", "amx_bf16"} & set(info.flags))
    assert info.native_bf16 == runtime.native_cpu_bf16()
    if has_bf16_flag:
        assert info.native_bf16  # AVX-512 BF16 or AMX: oneDNN must see it
    if "avx512f" not in info.flags and "avx_vnni" not in info.flags:
        assert not info.native_bf16  # an AVX2-only CPU cannot have native bf16
    assert info.isa in info.describe() and info.model in info.describe()
    assert info.family.startswith("family ") and info.family in info.describe()  # x86 Linux


def test_describe_path_names_isa_precision_layout_threads(monkeypatch):
    import torch

    from unetkit import runtime

    monkeypatch.setenv(runtime.CPU_BF16_ENV, "0")
    line = runtime.describe_path(torch.device("cpu"), None, True)
    isa = runtime.cpu_info().isa
    assert line.startswith(f"compute path: cpu {isa} (")
    assert f"UNETKIT_CPU_BF16=0), {torch.get_num_threads()} threads, fp32, channels-last" in line
    monkeypatch.delenv(runtime.CPU_BF16_ENV)
    line = runtime.describe_path(torch.device("cpu"), torch.bfloat16, False)
    assert "UNETKIT_CPU_BF16" not in line and line.endswith("bf16, contiguous layout")


def test_channels_last_is_automatic_for_batch_norm_on_cpu_except_fp32_training():
    import torch

    from unetkit import create_model, runtime

    cpu, bn = (
        torch.device("cpu"),
        create_model("unet", in_channels=1, num_classes=2, base_features=4, depth=2),
    )
    inorm = create_model(
        "unet", in_channels=1, num_classes=2, base_features=4, depth=2, norm="instance"
    )
    assert runtime.use_channels_last(bn, cpu, None) is True  # fp32 inference
    assert runtime.use_channels_last(bn, cpu, None, dtype=torch.bfloat16, training=True) is True
    assert (
        runtime.use_channels_last(bn, cpu, None, dtype=None, training=True) is False
    )  # fp32 training
    assert runtime.use_channels_last(inorm, cpu, None) is False
    assert runtime.use_channels_last(bn, torch.device("cuda"), None) is False
    assert (
        runtime.use_channels_last(bn, cpu, True, dtype=None, training=True) is True
    )  # asked for: kept


def test_trainer_layout_follows_the_precision_path(tmp_path, monkeypatch):
    """fp32 path (UNETKIT_CPU_BF16=0): contiguous training; bf16 path: channels-last."""
    import numpy as np
    from PIL import Image

    from unetkit.config import RunConfig
    from unetkit.training import Trainer

    for sub in ("images", "masks"):
        (tmp_path / "d" / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        mask = np.zeros((32, 32), np.uint8)
        mask[8:20, 6 + i : 18 + i] = 255
        Image.fromarray((mask // 2 + rng.integers(0, 60, (32, 32))).astype(np.uint8)).save(
            tmp_path / "d/images" / f"{i}.png"
        )
        Image.fromarray(mask).save(tmp_path / "d/masks" / f"{i}.png")
    cfg = RunConfig.from_dict(
        {
            "data": {"train_dir": str(tmp_path / "d"), "patch_size": [32], "val_fraction": 0.34},
            "model": {"name": "unet", "options": {"base_features": 4, "depth": 2}},
            "train": {"epochs": 1, "iters_per_epoch": 1, "batch_size": 2},
        }
    )
    for flag, cl in (("0", False), ("1", True)):
        monkeypatch.setenv("UNETKIT_CPU_BF16", flag)
        trainer = Trainer(cfg, run_dir=tmp_path / f"run{flag}", progress=False)
        trainer.fit()
        assert trainer.channels_last is cl
        assert (trainer.autocast_dtype is None) == (flag == "0")


# -- process-wide settings: made by the entry points, never by a constructor ------------------------
def _other_thread_count(n: int) -> int:
    return 1 if n != 1 else 2


def test_configure_process_sets_threads_and_keeps_freed_memory(monkeypatch):
    import pytest
    import torch

    from unetkit import runtime
    from unetkit.errors import ConfigError

    calls = []
    monkeypatch.setattr(runtime, "keep_freed_memory", lambda: calls.append("kept") or True)
    before = torch.get_num_threads()
    other = _other_thread_count(before)
    try:
        runtime.configure_process(threads=other)
        assert torch.get_num_threads() == other and calls == ["kept"]
        runtime.configure_process(reuse_freed_memory=False)  # threads None: left as they are
        assert torch.get_num_threads() == other and calls == ["kept"]
    finally:
        torch.set_num_threads(before)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ConfigError, match="threads must be an integer ≥ 1 or None"):
            runtime.configure_process(threads=bad)
    assert torch.get_num_threads() == before


def test_predictor_and_trainer_leave_the_process_alone(monkeypatch, tmp_path, capsys):
    """Neither constructor nor predict/fit changes torch's threads or the allocator; the trainer's
    ``compute path:`` line reports the threads torch really uses."""
    import numpy as np
    import torch

    from unetkit import create_model, runtime
    from unetkit.inference.predictor import Predictor
    from unetkit.training import Trainer

    from .test_training import make_cells, tiny_config

    def refuse(*args, **kwargs):
        raise AssertionError("a process-wide setting was made by library code")

    monkeypatch.setattr(runtime, "keep_freed_memory", refuse)
    monkeypatch.setattr(runtime, "set_threads", refuse)
    before = torch.get_num_threads()
    other = _other_thread_count(before)
    try:
        model = create_model("unet", base_features=4, depth=2, norm="instance")
        pred = Predictor(model, device="cpu", precision="fp32", threads=other)
        pred.predict(np.zeros((1, 24, 24), np.float32))
        assert torch.get_num_threads() == before and pred.threads == other
        assert f"{before} threads" in pred.describe()
        cfg = tiny_config(
            make_cells(tmp_path / "cells"), threads=other, epochs=1, iters_per_epoch=1
        )
        Trainer(cfg, run_dir=tmp_path / "run", progress=False).fit()
        assert torch.get_num_threads() == before
        path_line = next(
            ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("compute path:")
        )
        assert f"{before} threads" in path_line
    finally:
        torch.set_num_threads(before)


def test_commands_train_predict_and_demo_configure_the_process(monkeypatch, tmp_path):
    import numpy as np
    from PIL import Image

    from unetkit import cli, create_model, runtime
    from unetkit.checkpoint import save_checkpoint
    from unetkit.data import LabelMap, create_normalizer
    from unetkit.demo import pipeline

    from .test_training import make_cells

    calls = []
    monkeypatch.setattr(
        runtime,
        "configure_process",
        lambda threads=None, reuse_freed_memory=True: calls.append((threads, reuse_freed_memory)),
    )
    ckpt = save_checkpoint(
        tmp_path / "model.pt",
        create_model("unet", base_features=4, depth=2, norm="instance"),
        normalization=create_normalizer("zscore").to_dict(),
        label_map=LabelMap([0, 255]).to_dict(),
    )
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 32), np.uint8)).save(
        images / "a.png"
    )
    predict = ["predict", str(ckpt), str(images), "--output", str(tmp_path / "preds")]
    assert cli.main([*predict, "--threads", "1", "--device", "cpu", "--no-progress"]) == 0
    assert calls == [(1, True)]  # on the CPU: freed activations kept for reuse

    cells = make_cells(tmp_path / "cells")
    train = ["train", str(cells), "--patch-size", "32", "--epochs", "1", "--iters-per-epoch", "1"]
    train += ["--batch-size", "2", "--precision", "fp32", "--device", "cpu", "--no-progress"]
    train += ["--set", "model.options.base_features=4", "--set", "model.options.depth=2"]
    assert cli.main([*train, "--threads", "1", "--run-dir", str(tmp_path / "run")]) == 0
    assert calls[-1] == (1, True)

    monkeypatch.setattr(pipeline, "run_demo", lambda options: calls.append(options.threads))
    assert cli.main(["demo", "--threads", "2", "--out", str(tmp_path / "demo")]) == 0
    assert calls[-2:] == [(2, runtime.resolve_device("auto").type == "cpu"), 2]


def test_a_command_run_in_process_gives_the_callers_threads_back(tmp_path, capsys):
    """``--threads`` is the command's: a notebook running ``cli.main`` keeps its own count, also
    when the command fails (exit 2) and when torch was not loaded before it."""
    import subprocess
    import sys

    import torch

    from unetkit import cli

    from .test_training import make_cells

    before = torch.get_num_threads()
    mine = 3 if before != 3 else 2
    torch.set_num_threads(mine)
    try:
        cells = make_cells(tmp_path / "cells")
        train = ["train", str(cells), "--patch-size", "32", "--epochs", "1", "--iters-per-epoch"]
        train += ["1", "--batch-size", "2", "--precision", "fp32", "--device", "cpu"]
        train += ["--set", "model.options.base_features=4", "--set", "model.options.depth=2"]
        train += ["--no-progress", "--threads", "1", "--run-dir", str(tmp_path / "run")]
        assert cli.main(train) == 0
        assert "1 threads" in capsys.readouterr().out  # the command ran with its own count
        assert torch.get_num_threads() == mine
        bad = ["predict", str(tmp_path / "missing.pt"), str(cells), "-o", str(tmp_path / "p")]
        assert cli.main([*bad, "--threads", "1"]) == 2
        assert torch.get_num_threads() == mine
    finally:
        torch.set_num_threads(before)
    # torch first loaded by the command: its own default comes back
    code = (
        "import sys; from unetkit import cli; assert 'torch' not in sys.modules; "
        "cli.main(sys.argv[1:]); import torch, unetkit.runtime as r; "
        "print(torch.get_num_threads(), r.THREADS_AT_IMPORT)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *train[:-2], "--run-dir", str(tmp_path / "run2")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    fresh = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out[-2:] == fresh * 2  # after a "--threads 1" run: torch's own default

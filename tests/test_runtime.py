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

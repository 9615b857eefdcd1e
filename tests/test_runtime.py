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

"""The fast inference path: every mode gives the eager logits, odd batches work, ``auto`` decides."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from unetkit import runtime
from unetkit.errors import ConfigError
from unetkit.inference.fastpath import (
    COMPILE_MIN_TILES,
    JIT_MIN_TILES,
    choose_mode,
    optimize_for_inference,
)
from unetkit.models import create_model

CPU = torch.device("cpu")
BF16 = torch.bfloat16


def tiny(**kwargs) -> nn.Module:
    kwargs.setdefault("depth", 2)
    net = create_model("unet", in_channels=1, num_classes=3, base_features=4, **kwargs).eval()
    # non-trivial batch-norm statistics, so folding them into the convolutions is really tested
    gen = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
    return net


def reference(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net(x).float()


def reference_bf16(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), torch.autocast("cpu", dtype=BF16):
        return net(x).float()


@pytest.fixture
def bf16_cpu(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: True)


def test_eager_mode_equals_the_model_exactly():
    net = tiny()
    x = torch.randn(2, 1, 32, 32)
    fwd = optimize_for_inference(net, x.shape, mode="eager")
    y = fwd(x)
    assert fwd.mode == "eager"
    assert y.dtype == torch.float32 and y.shape == (2, 3, 32, 32)
    assert torch.equal(y, reference(net, x))


@pytest.mark.parametrize("channels_last", [False, True])
def test_jit_fp32_matches_eager(channels_last):
    net = tiny()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 1, 32, 32).contiguous(memory_format=fmt)
    fwd = optimize_for_inference(net, x.shape, channels_last=channels_last, mode="jit")
    assert fwd.mode == "jit" and fwd.build_seconds > 0
    y = fwd(x)
    assert y.dtype == torch.float32 and y.shape == (2, 3, 32, 32)
    torch.testing.assert_close(y, reference(net, x), atol=1e-4, rtol=1e-4)


def test_jit_3d_matches_eager():
    net = create_model(
        "unet", spatial_dims=3, in_channels=2, num_classes=2, base_features=2, depth=1
    ).eval()
    x = torch.randn(1, 2, 8, 16, 16).contiguous(memory_format=torch.channels_last_3d)
    fwd = optimize_for_inference(net, x.shape, channels_last=True, mode="jit")
    assert fwd.mode == "jit"
    torch.testing.assert_close(fwd(x), reference(net, x), atol=1e-4, rtol=1e-4)


def test_jit_bf16_is_close_to_fp32_and_returns_float32():
    net = tiny()
    x = torch.randn(2, 1, 32, 32).contiguous(memory_format=torch.channels_last)
    fwd = optimize_for_inference(net, x.shape, dtype=BF16, channels_last=True, mode="jit")
    y, ref = fwd(x), reference(net, x)
    assert y.dtype == torch.float32
    # bf16 keeps 8 bits of mantissa: errors of a few % of the logit scale, never more
    assert (y - ref).abs().max() < 0.05 * ref.abs().max()
    assert (y.argmax(1) == ref.argmax(1)).float().mean() > 0.95


def test_smaller_last_batch_is_padded_not_recompiled():
    net = tiny()
    x = torch.randn(4, 1, 32, 32)
    fwd = optimize_for_inference(net, x.shape, mode="jit")
    calls = []
    fast = fwd._fast
    fwd._fast = lambda b: calls.append(tuple(b.shape)) or fast(b)
    y1 = fwd(x[:1])
    y3 = fwd(x[1:])
    assert calls == [(4, 1, 32, 32), (4, 1, 32, 32)]  # both padded to the example batch
    assert y1.shape == (1, 3, 32, 32) and y3.shape == (3, 3, 32, 32)
    torch.testing.assert_close(torch.cat([y1, y3]), reference(net, x), atol=1e-4, rtol=1e-4)


def test_inputs_get_the_example_dtype_and_strides():
    net = tiny()
    fwd = optimize_for_inference(net, (2, 1, 32, 32), channels_last=True, mode="jit")
    seen = []
    fast = fwd._fast
    fwd._fast = lambda b: seen.append((b.dtype, b.stride())) or fast(b)
    # the example is built as the predictor builds batches: C = 1 stays (1024, 1024, 32, 1) when made
    # channels-last; the same values with C stride 1 are equally channels-last but would recompile
    x = torch.empty(2, 1, 32, 32, dtype=torch.float64, memory_format=torch.channels_last)
    x.copy_(torch.randn(2, 1, 32, 32))
    assert x.stride() == (1024, 1, 32, 1)
    y = fwd(x)
    assert seen == [(torch.float32, (1024, 1024, 32, 1))]
    torch.testing.assert_close(y, reference(net, x.float()), atol=1e-4, rtol=1e-4)


def test_other_tile_shape_runs_eager():
    net = tiny()
    fwd = optimize_for_inference(net, (2, 1, 32, 32), mode="jit")
    fwd._fast = lambda b: pytest.fail("the specialised path must not see another tile shape")
    x = torch.randn(1, 1, 24, 40)
    assert torch.equal(fwd(x), reference(net, x))
    x = torch.randn(3, 1, 32, 32)  # a larger batch than the example is another shape too
    assert torch.equal(fwd(x), reference(net, x))


def test_model_is_left_unchanged_and_deep_supervision_gives_logits():
    net = tiny(deep_supervision=True)  # outputs == "all": a ModelOutput
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(1, 1, 32, 32)
    fwd = optimize_for_inference(net, x.shape, dtype=BF16, channels_last=True, mode="jit")
    y = fwd(x)
    assert isinstance(y, torch.Tensor) and y.shape == (1, 3, 32, 32)
    assert net.outputs == "all" and not net.training
    p = next(net.parameters())
    assert p.dtype == torch.float32 and p.is_contiguous()
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    # the fast path holds a snapshot: changing the model afterwards does not reach it
    with torch.no_grad():
        for q in net.parameters():
            q.zero_()
    assert torch.equal(fwd(x), y)


def test_failed_build_falls_back_to_eager(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch.jit, "trace", broken)
    net = tiny()
    x = torch.randn(2, 1, 32, 32)
    with pytest.warns(
        RuntimeWarning,
        match=r"inference mode 'jit' could not be built \(RuntimeError: no C\+\+ "
        r"compiler\); running eager",
    ):
        fwd = optimize_for_inference(net, x.shape, mode="jit")
    assert (fwd.mode, fwd.requested_mode) == ("eager", "jit")
    assert torch.equal(fwd(x), reference(net, x))


def test_failed_compile_falls_back_to_eager(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("inductor unavailable")

    monkeypatch.setattr(torch, "compile", broken)
    net = tiny()
    x = torch.randn(2, 1, 32, 32)
    with pytest.warns(RuntimeWarning, match="inference mode 'compile' could not be built"):
        fwd = optimize_for_inference(net, x.shape, mode="compile")
    assert fwd.mode == "eager"
    assert torch.equal(fwd(x), reference(net, x))


# -- auto -------------------------------------------------------------------------------------
def test_auto_picks_by_job_size(bf16_cpu):
    net = tiny()
    assert choose_mode(net, CPU, BF16, expected_tiles=None) == "eager"
    assert choose_mode(net, CPU, BF16, expected_tiles=1) == "eager"
    assert choose_mode(net, CPU, BF16, expected_tiles=JIT_MIN_TILES - 1) == "eager"
    assert choose_mode(net, CPU, BF16, expected_tiles=JIT_MIN_TILES) == "jit"
    assert choose_mode(net, CPU, BF16, expected_tiles=COMPILE_MIN_TILES - 1) == "jit"
    assert choose_mode(net, CPU, BF16, expected_tiles=COMPILE_MIN_TILES) == "compile"


def test_auto_is_eager_without_bf16(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: False)
    net = tiny()
    assert choose_mode(net, CPU, BF16, expected_tiles=10**6) == "eager"
    fwd = optimize_for_inference(net, (1, 1, 32, 32), dtype=BF16, mode="auto", expected_tiles=10**6)
    assert (fwd.mode, fwd.requested_mode) == ("eager", "auto")


def test_auto_is_eager_for_3d_and_gpu(bf16_cpu):
    net3d = create_model(
        "unet", spatial_dims=3, in_channels=1, num_classes=2, base_features=2, depth=1
    )
    assert choose_mode(net3d, CPU, BF16, expected_tiles=10**6) == "eager"
    assert choose_mode(net3d, CPU, None, expected_tiles=10**6) == "eager"
    assert choose_mode(tiny(), torch.device("cuda"), BF16, expected_tiles=10**6) == "eager"


@pytest.mark.parametrize("bf16_cpu_flag", [False, True])
def test_auto_on_the_fp32_path_compiles_only_large_jobs(monkeypatch, bf16_cpu_flag):
    """fp32 (the path of CPUs without bf16): jit bought nothing there, compile pays for large jobs."""
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: bf16_cpu_flag)
    net = tiny()
    assert choose_mode(net, CPU, None, expected_tiles=None) == "eager"
    assert choose_mode(net, CPU, None, expected_tiles=JIT_MIN_TILES) == "eager"
    assert choose_mode(net, CPU, None, expected_tiles=COMPILE_MIN_TILES - 1) == "eager"
    assert choose_mode(net, CPU, None, expected_tiles=COMPILE_MIN_TILES) == "compile"


def test_auto_builds_the_chosen_mode(bf16_cpu):
    net = tiny()
    x = torch.randn(1, 1, 32, 32).contiguous(memory_format=torch.channels_last)
    small = optimize_for_inference(
        net, x.shape, dtype=BF16, channels_last=True, mode="auto", expected_tiles=3
    )
    assert (small.mode, small.requested_mode) == ("eager", "auto")
    fwd = optimize_for_inference(
        net, x.shape, dtype=BF16, channels_last=True, mode="auto", expected_tiles=JIT_MIN_TILES
    )
    assert (fwd.mode, fwd.requested_mode) == ("jit", "auto")
    ref = reference(net, x)
    assert (fwd(x) - ref).abs().max() < 0.05 * ref.abs().max()
    same_format = copy.deepcopy(net).to(memory_format=torch.channels_last)
    assert torch.equal(small(x), reference_bf16(same_format, x))  # plain autocast, nothing else


# -- errors -----------------------------------------------------------------------------------
def test_unknown_mode_is_rejected():
    with pytest.raises(
        ConfigError, match="unknown inference mode 'fast'; use one of auto, eager, jit, compile"
    ):
        optimize_for_inference(tiny(), (1, 1, 32, 32), mode="fast")


def test_example_shape_must_match_the_net():
    with pytest.raises(
        ConfigError, match=r"example_shape must be \(B, C, H, W\) with sizes ≥ 1, got \[1, 32, 32\]"
    ):
        optimize_for_inference(tiny(), (1, 32, 32), mode="eager")


# -- compile (slow: Inductor's C++ build) -----------------------------------------------------------
def _compiled(dtype):
    """Compile the tiny net for real (no FX graph cache) and return the fast forward and its code."""
    from torch._inductor import config as inductor_config
    from torch._inductor.utils import run_and_get_code

    net = tiny(depth=1)
    x = torch.randn(2, 1, 32, 32).contiguous(memory_format=torch.channels_last)
    before = inductor_config.freezing
    with inductor_config.patch(
        fx_graph_cache=False
    ):  # compile for real, so the generated code is seen
        fwd, code = run_and_get_code(
            optimize_for_inference, net, x.shape, dtype=dtype, channels_last=True, mode="compile"
        )
    assert inductor_config.freezing == before  # not leaked into the global config
    return net, x, fwd, "".join(code)


def _onednn_fusion_expected(dtype) -> str | None:
    """Why Inductor would *not* fuse convolutions into oneDNN kernels on this CPU (None: it should).

    Freezing prepacks convolutions with their ReLU into ``mkldnn._convolution_pointwise`` where oneDNN
    is available; in bf16 only where the CPU has native bf16 (elsewhere Inductor keeps the generic
    convolution, which is correct, just not fused).
    """
    if not torch.backends.mkldnn.is_available():
        return "this PyTorch has no oneDNN"
    if dtype == BF16 and not runtime.native_cpu_bf16():
        return f"no native bf16 on this CPU ({runtime.cpu_info().isa}): Inductor does not fuse bf16 convolutions"
    return None


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [None, BF16], ids=["fp32", "bf16"])
def test_compile_freezes_matches_eager_and_pads_the_last_batch(dtype):
    """On every CPU: batch norm folded, logits equal to eager, a smaller last batch handled."""
    net, x, fwd, code = _compiled(dtype)
    assert fwd.mode == "compile"
    assert "batch_norm" not in code  # freezing folded batch norm into the convolutions
    ref = reference(net, x)
    tol = (1e-4 if dtype is None else 0.05) * float(
        ref.abs().max()
    )  # fp32: folding rounds; bf16: 8-bit mantissa
    y = fwd(x)
    assert y.dtype == torch.float32 and y.shape == (2, 3, 32, 32)
    assert (y - ref).abs().max() <= tol
    torch.testing.assert_close(fwd(x[:1]), y[:1], atol=tol, rtol=0)  # a last batch of one
    other = torch.randn(
        1, 1, 24, 40
    )  # another tile shape: eager on the same (frozen-by-compile) copy
    assert (fwd(other) - reference(net, other)).abs().max() <= tol
    why_not = _onednn_fusion_expected(dtype)
    if why_not is None:  # convolutions prepacked with the ReLU fused (oneDNN)
        assert "mkldnn._convolution_pointwise" in code
    else:
        assert "convolution" in code  # still a real convolution kernel, just not the fused one
        print(f"oneDNN fusion not checked: {why_not}")


@pytest.mark.slow
def test_compile_fuses_bf16_convolutions_with_onednn_where_the_cpu_has_bf16():
    """The speed-up the compile path exists for, checked only where the CPU can give it."""
    why_not = _onednn_fusion_expected(BF16)
    if why_not is not None:
        pytest.skip(why_not)
    _, _, _, code = _compiled(BF16)
    assert "mkldnn._convolution_pointwise" in code

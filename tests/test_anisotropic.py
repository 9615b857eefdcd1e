"""Anisotropic topology: per-axis strides and kernel sizes, the per-axis size rule and pooling grid,
and every consumer of it (tiling, checkpoints, ONNX export), plus nnU-Net's rule that picks them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetkit.checkpoint import build_model, load_checkpoint, save_checkpoint
from unetkit.config import ModelConfig
from unetkit.errors import ConfigError
from unetkit.inference.predictor import Predictor
from unetkit.models import create_model
from unetkit.models.blocks import DOWNSAMPLE_MODES, UPSAMPLE_MODES
from unetkit.models.geometry import SizeRule
from unetkit.planning import anisotropic_topology
from unetkit.planning.topology import pooling_period

# z is pooled once (at the second down-sampling), y and x three times
STRIDES = [[1, 2, 2], [2, 2, 2], [1, 2, 2]]
KERNELS = [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3]]


def _net(**kw):
    torch.manual_seed(0)
    opts = dict(spatial_dims=3, base_features=4, strides=STRIDES, kernel_sizes=KERNELS)
    return create_model(kw.pop("preset", "unet"), **{**opts, **kw}).eval()


def _kernel(module) -> tuple[int, ...]:
    conv = next(m for m in module.modules() if isinstance(m, torch.nn.modules.conv._ConvNd))
    return tuple(conv.kernel_size)


# -- the model ---------------------------------------------------------------------------------
@pytest.mark.parametrize("down", DOWNSAMPLE_MODES)
@pytest.mark.parametrize("up", UPSAMPLE_MODES)
def test_every_sampling_mode_follows_the_per_axis_strides(down, up):
    net = _net(downsample=down, upsample=up)
    x = torch.randn(1, 1, 8, 32, 32)
    with torch.no_grad():
        skips = net.encoder(x)
        out = net(x)
    assert [tuple(s.shape[2:]) for s in skips] == [(8, 32, 32), (8, 16, 16), (4, 8, 8), (4, 4, 4)]
    assert out.shape == (1, 2, 8, 32, 32)
    assert [ks[:1] for ks in net.encoder.kernel_sizes] == [(1,), (1,), (3,), (3,)]
    assert (
        _kernel(net.encoder.stages[0]) == (1, 3, 3) and _kernel(net.encoder.stages[2]) == (3,) * 3
    )
    assert _kernel(net.decoder.blocks[1]) == (1, 3, 3)  # decoder level l uses stage l's kernels
    if down == "conv3":  # a strided conv does not mix the axis it does not pool
        assert _kernel(net.encoder.downsamples[0]) == (1, 3, 3)
    if up in ("transpose", "transpose3"):
        k = 2 if up == "transpose" else 3
        assert _kernel(net.decoder.ups[0]) == (1, k, k)
        assert _kernel(net.decoder.ups[1]) == (k, k, k)


@pytest.mark.parametrize(
    "strides, kernels, shape",
    [
        ([[2, 1, 2], [1, 2, 2], [2, 2, 1]], None, (12, 20, 24)),  # every axis skips a pooling
        ([[1, 1, 2], [1, 2, 2]], [[1, 1, 3], [1, 3, 3], [5, 3, 3]], (5, 10, 16)),  # z never pooled
        ([2, [1, 2, 2]], [3, [1, 3, 3], 3], (7, 9, 11)),  # ints mix with per-axis lists, odd sizes
    ],
)
def test_other_strides_and_kernels_keep_the_input_size(strides, kernels, shape):
    net = _net(strides=strides, kernel_sizes=kernels, downsample="maxpool", upsample="transpose")
    with torch.no_grad():
        assert net(torch.randn(2, 1, *shape)).shape == (2, 2, *shape)
    expected = tuple(
        int(np.prod([s if isinstance(s, int) else s[a] for s in strides])) for a in range(3)
    )
    assert net.pooling_period == net.size_rule().period == expected


def test_a_2d_net_and_unetpp_take_the_options_too():
    net2d = create_model("unet-bilinear", base_features=4, strides=[[1, 2], [2, 2]]).eval()
    with torch.no_grad():
        assert net2d(torch.randn(1, 1, 12, 20)).shape == (1, 2, 12, 20)
    assert net2d.size_rule() == SizeRule("same", (2, 4), (1, 1), (0, 0), (2, 4))
    pp = _net(preset="unetpp", base_features=2)
    with torch.no_grad():
        assert pp(torch.randn(1, 1, 4, 16, 24)).shape == (1, 2, 4, 16, 24)
    assert pp.pooling_period == (2, 8, 8)
    assert _kernel(pp.decoder.nodes["0_1"]) == (1, 3, 3)


def test_the_default_net_is_unchanged_and_explicit_all_2_strides_build_it():
    # parameter and tensor counts of these nets before per-axis strides existed
    before = {("transpose", "maxpool"): (88006, 96), ("transpose3", "conv3"): (109902, 114)}
    for (up, down), (n_params, n_tensors) in before.items():
        torch.manual_seed(1)
        default = create_model(
            "unet", spatial_dims=3, base_features=4, depth=3, upsample=up, downsample=down
        )
        torch.manual_seed(1)
        explicit = create_model(
            "unet",
            spatial_dims=3,
            base_features=4,
            upsample=up,
            downsample=down,
            strides=[2, [2, 2, 2], [2, 2, 2]],
            kernel_sizes=[[3, 3, 3]] * 4,
        )
        a, b = default.state_dict(), explicit.state_dict()
        assert (default.num_parameters(active_only=False), len(a)) == (n_params, n_tensors)
        assert list(a) == list(b)
        assert all(torch.equal(a[k], b[k]) for k in a)  # same layers, same initialisation
        assert default.pooling_period == (8, 8, 8)
        explicit.load_state_dict(a)  # an old checkpoint loads into the explicit net


def test_unet3plus_refuses_anisotropy_and_accepts_the_isotropic_spelling():
    with pytest.raises(ConfigError, match=r"^UNet 3\+ takes no per-axis .*use a 'unet' preset"):
        create_model("unet3plus", spatial_dims=3, base_features=2, depth=2, strides=[[1, 2, 2], 2])
    net = create_model("unet3plus", base_features=2, depth=2, strides=[2, [2, 2]])
    assert net.pooling_period == (4, 4)


# -- size arithmetic ---------------------------------------------------------------------------
def test_the_size_rule_is_per_axis_and_matches_the_arithmetic():
    net = _net(strides=[[1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2]], kernel_sizes=None)
    rule = net.size_rule()
    assert rule == SizeRule("same", (4, 16, 16), (1, 1, 1), (0, 0, 0), (4, 16, 16))
    assert rule.for_export() == SizeRule("same", (4, 16, 16), (4, 16, 16), (0, 0, 0), (4, 16, 16))
    for s in range(1, 40):
        for axis in range(3):
            size = [16, 16, 16]
            size[axis] = s
            assert rule.accepts(size) == net.is_valid_input_size(size) == (s >= rule.min[axis])
    assert net.valid_input_size((3, 3, 3)) == (4, 16, 16)
    assert net.valid_input_size(3) == 16  # an int: the smallest size every axis takes
    assert net.output_size((4, 16, 16)) == (4, 16, 16) and net.output_size(16) == 16
    assert net.nearest_valid_sizes(10, axis=0) == (10, 10)
    assert net.nearest_valid_sizes(10, axis=1) == (None, 16)
    with pytest.raises(
        ConfigError, match=r"input size 3 on spatial axis 0 .*nearest valid sizes: 4"
    ):
        net(torch.zeros(1, 1, 3, 16, 16))
    with pytest.raises(ConfigError, match=r"input size 15 on spatial axis 2 .*: 16 \(output 16\)$"):
        net(torch.zeros(1, 1, 4, 16, 15))
    with pytest.raises(ConfigError, match=r"input size 3 on spatial axis 0 .*any size ≥ 4"):
        rule.check((3, 16, 16))


def test_valid_padding_sizes_follow_each_axis_own_strides_and_kernels():
    net = create_model(
        "unet-original",
        base_features=2,
        strides=[[1, 2], [2, 2]],
        kernel_sizes=[[1, 3], [3, 3], [3, 3]],
        init="torch",
    ).eval()
    rule = net.size_rule()
    assert rule.period == rule.step == (2, 4)
    assert rule.min[0] != rule.min[1] and rule.shrink[0] < rule.shrink[1]  # kernel 1 on axis 0
    for h in range(rule.min[0], rule.min[0] + 2 * rule.step[0] + 1):
        for w in (rule.min[1], rule.min[1] + 4, rule.min[1] + 2):
            if not rule.accepts((h, w)):
                with pytest.raises(ConfigError, match="is not valid for this valid-padding U-Net"):
                    net(torch.zeros(1, 1, h, w))
                continue
            with torch.no_grad():
                out = net(torch.zeros(1, 1, h, w))
            assert tuple(out.shape[2:]) == rule.output_size((h, w)) == net.output_size((h, w))
    image = np.random.default_rng(0).normal(size=(1, 23, 41)).astype(np.float32)
    logits = Predictor(net, precision="fp32", tile=(rule.min[0] + 4, rule.min[1] + 8))
    assert logits.predict_logits(image).shape == (2, 23, 41)


# -- consumers: tiling, checkpoints, export ----------------------------------------------------
def _small_receptive_field_net():
    # one conv per stage and no norm keep the receptive field to z ±3, y/x ±11 voxels
    return _net(
        strides=[[1, 2, 2], [2, 2, 2]],
        kernel_sizes=[[1, 3, 3], [1, 3, 3], [3, 3, 3]],
        n_convs=1,
        norm="none",
    )


def test_tiled_prediction_equals_one_forward_on_the_per_axis_pooling_grid():
    net = _small_receptive_field_net()
    assert net.pooling_period == (2, 4, 4)
    image = np.random.default_rng(0).normal(size=(1, 16, 40, 40)).astype(np.float32)
    pred = Predictor(net, precision="fp32", tile=(12, 36, 36), overlap=0.5, fast="eager")
    plan = pred.plan(image.shape[1:])
    assert plan.align == (2, 4, 4) and plan.tile == (12, 36, 36)
    grid = plan.grid()
    for axis, period in enumerate((2, 4, 4)):
        starts = {t.input[axis].start - grid.pad_before[axis] for t in grid.tiles}
        assert len(starts) >= 2 and all(s % period == 0 for s in starts)  # tiled, on the grid
    with torch.no_grad():
        full = net(torch.from_numpy(image)[None])[0].numpy()
    np.testing.assert_allclose(pred.predict_logits(image), full, atol=1e-5)
    traced = Predictor(net, precision="fp32", tile=(12, 36, 36), overlap=0.5, fast="jit")
    # the frozen graph fuses ops: float rounding on logits of ~15 (no norm) stays under 1e-4
    np.testing.assert_allclose(traced.predict_logits(image), full, atol=1e-4)
    assert list(traced._fast_forward) == [(1, 12, 36, 36)]
    traced = Predictor(net, precision="fp32", tile=(12, 36, 36), overlap=0.5, fast="jit")
    # the frozen graph fuses ops: float rounding on logits of ~15 (no norm) stays under 1e-4
    np.testing.assert_allclose(traced.predict_logits(image), full, atol=1e-4)
    assert list(traced._fast_forward) == [(1, 12, 36, 36)]


def test_the_net_is_equivariant_to_shifts_by_its_period_on_each_axis_only():
    """The independent check behind the tiler's alignment: shifting the input by the axis's period
    (2 on z, 4 on y) shifts the output away from the cut; a shift by half of it does not."""
    net = _small_receptive_field_net()
    x = torch.randn(1, 1, 16, 40, 40)
    with torch.no_grad():
        full = net(x)

        def gap(axis: int, shift: int) -> float:
            cut = [slice(None)] * 5
            cut[2 + axis] = slice(shift, None)
            out = net(x[tuple(cut)])
            keep = [slice(None)] * 5
            keep[2 + axis] = slice(shift + 12, None)  # past the receptive field of the cut
            near = [slice(None)] * 5
            near[2 + axis] = slice(12, None)
            return float((out[tuple(near)] - full[tuple(keep)]).abs().max())

        assert gap(0, 2) < 1e-5 and gap(1, 4) < 1e-5
        assert gap(0, 1) > 1e-3 and gap(1, 2) > 1e-3


def test_checkpoint_round_trip_rebuilds_the_anisotropic_net(tmp_path):
    net = _net()
    path = save_checkpoint(tmp_path / "aniso.pt", net, patch_size=[8, 32, 32])
    ckpt = load_checkpoint(path)
    assert ckpt["model"]["kwargs"]["strides"] == STRIDES
    assert SizeRule.from_dict(ckpt["size_rule"]) == net.size_rule()
    rebuilt = build_model(ckpt, path).eval()
    assert rebuilt.encoder.strides == [(1, 2, 2), (2, 2, 2), (1, 2, 2)]
    x = torch.randn(1, 1, 6, 24, 40)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), net(x))
    pred = Predictor.from_checkpoint(path, precision="fp32")
    assert pred.rule.period == (2, 8, 8)


def test_onnx_export_of_an_anisotropic_net_matches_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from unetkit.inference.export import export_onnx, read_onnx_metadata

    net = _net(base_features=2)
    report = export_onnx(net, tmp_path / "aniso.onnx", input_size=(8, 32, 32), threads=1)
    assert report.dynamic_spatial and report.checks
    meta = read_onnx_metadata(report.path)["valid_input_size"]
    assert (meta["min"], meta["step"], meta["period"]) == ([2, 8, 8], [2, 8, 8], [2, 8, 8])
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 1, 6, 16, 24)  # another size, a multiple of the period on each axis
    (onnx_out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        ref = net(x).numpy()
    np.testing.assert_allclose(onnx_out, ref, atol=1e-4)


# -- configuration -----------------------------------------------------------------------------
def test_model_config_takes_the_options_from_yaml_lists():
    yaml = pytest.importorskip("yaml")
    raw = yaml.safe_load(
        "name: unet3d\n"
        "options:\n"
        "  features: [4, 8, 16, 32]\n"
        "  strides: [[1, 2, 2], [2, 2, 2], 2]\n"
        "  kernel_sizes: [[1, 3, 3], 3, 3, [3, 3, 3]]\n"
    )
    cfg = ModelConfig(**raw)
    cfg.validate()
    assert cfg.options["strides"] == [[1, 2, 2], [2, 2, 2], 2]
    bad = ModelConfig("unet3d", {"features": [4, 8, 16, 32], "strides": [[1, 2, 2]] * 2})
    with pytest.raises(ConfigError, match=r"strides needs one entry per down-sampling \(3\)"):
        bad.validate()


@pytest.mark.parametrize(
    "options, message",
    [
        (
            {"depth": 4, "strides": [[1, 2, 2]] * 3},
            r"strides needs one entry per down-sampling \(4\), got 3 entries",
        ),
        ({"strides": [[1, 3, 2], 2]}, r"strides\[0\] = \[1, 3, 2\]: every stride must be 1 or 2"),
        ({"strides": [[2, 2], 2]}, r"strides\[0\] = \[2, 2\]: give an int or 3 ints"),
        (
            {"depth": 2, "kernel_sizes": [[1, 2, 2], 3, 3]},
            r"kernel_sizes\[0\] = \[1, 2, 2\]: kernel sizes must be odd",
        ),
        (
            {"depth": 2, "kernel_sizes": [3, 3]},
            r"kernel_sizes needs one entry per stage \(3\), got 2",
        ),
        (
            {"depth": 2, "kernel_sizes": [3, 3, 0]},
            r"kernel_sizes\[2\] = 0: kernel sizes must be odd and ≥ 1",
        ),
    ],
)
def test_bad_strides_and_kernel_sizes_are_refused_in_one_line(options, message):
    with pytest.raises(ConfigError, match=message) as err:
        create_model("unet", spatial_dims=3, base_features=2, **options)
    assert "\n" not in str(err.value)


def test_depth_follows_the_strides_when_unset():
    net = create_model("unet", spatial_dims=3, base_features=2, strides=[[1, 2, 2]] * 2)
    assert len(net.encoder.features) == 3 and net.pooling_period == (1, 4, 4)


# -- nnU-Net's rule ----------------------------------------------------------------------------
def test_isotropic_spacing_gives_the_plain_net():
    strides, kernels, depth = anisotropic_topology((1.0, 1.0, 1.0), (64, 64, 64))
    assert (strides, kernels, depth) == ([[2, 2, 2]] * 4, [[3, 3, 3]] * 5, 4)
    torch.manual_seed(0)
    planned = create_model(
        "unet", spatial_dims=3, base_features=2, strides=strides, kernel_sizes=kernels
    )
    torch.manual_seed(0)
    plain = create_model("unet", spatial_dims=3, base_features=2, depth=4)
    a, b = planned.state_dict(), plain.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert anisotropic_topology((0.5, 0.5), (256, 256)) == ([[2, 2]] * 5, [[3, 3]] * 6, 5)


def test_three_to_one_slices_pool_in_plane_first():
    strides, kernels, depth = anisotropic_topology((3.0, 0.8, 0.8), (32, 128, 128))
    assert strides == [[1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]
    assert kernels == [[1, 3, 3]] + [[3, 3, 3]] * 5 and depth == 5
    assert pooling_period(strides) == (8, 32, 32)
    # 3.0 mm slices against 1.0 mm pixels: 3 > 2 × 1 keeps the slices out of stage 0 too
    assert anisotropic_topology((3.0, 1.0, 1.0), (32, 128, 128))[0] == strides


def test_five_to_one_slices_wait_two_stages_and_stop_at_min_size():
    strides, kernels, depth = anisotropic_topology((5.0, 1.0, 1.0), (16, 128, 128))
    # spacing per stage: (5,1,1) → (5,2,2) → (5,4,4): z is fine (5 ≤ 8) only at stage 2; after
    # two z poolings the slice axis is 4 voxels and min_size=4 stops it
    assert strides == [[1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]
    assert kernels == [[1, 3, 3], [1, 3, 3]] + [[3, 3, 3]] * 4 and depth == 5
    net = create_model(
        "unet", spatial_dims=3, base_features=2, strides=strides, kernel_sizes=kernels
    )
    assert net.pooling_period == pooling_period(strides) == (4, 32, 32)
    # a thin patch: z is pooled once, and max_depth caps the net
    strides, kernels, depth = anisotropic_topology((5.0, 1.0, 1.0), (8, 64, 64), max_depth=3)
    assert strides == [[1, 2, 2], [1, 2, 2], [2, 2, 2]] and depth == 3
    assert kernels == [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3]]


def test_an_isotropic_spacing_on_a_flat_patch_stops_pooling_the_short_axis():
    strides, kernels, depth = anisotropic_topology((1.0, 1.0, 1.0), (16, 128, 128))
    # z stops at 4 voxels; y/x go on until their spacing is over twice z's (16 > 2 × 4)
    assert strides == [[2, 2, 2], [2, 2, 2], [1, 2, 2], [1, 2, 2]] and depth == 4
    assert kernels == [[3, 3, 3]] * 5


def test_topology_refuses_bad_input():
    with pytest.raises(ConfigError, match=r"spacing \(1.0, 1.0\) has 2 axes but patch_size"):
        anisotropic_topology((1.0, 1.0), (8, 8, 8))
    with pytest.raises(ConfigError, match="spacing"):
        anisotropic_topology((0.0, 1.0, 1.0), (8, 8, 8))
    with pytest.raises(ConfigError, match=r"cannot be pooled once .*≥ 8 voxels"):
        anisotropic_topology((1.0, 1.0), (6, 7))

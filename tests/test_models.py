"""Model core: exact parameter counts (SPEC.md), size arithmetic, forward/backward in 2D and 3D,
deep-supervision/CGM outputs, checkpoint compatibility, initialisation and error messages."""

from __future__ import annotations

import math

import pytest
import torch

from unetkit.errors import ConfigError
from unetkit.models import ModelOutput, UNet, UNet3Plus, UNetPlusPlus, create_model, list_models
from unetkit.models.heads import CGM_SUPPRESSED_LOGIT, gate_with_cgm


# --- exact parameter counts from SPEC.md -------------------------------------------------------
@pytest.mark.parametrize(
    ("preset", "kwargs", "expected"),
    [
        ("unet-original-bn", dict(in_channels=3, num_classes=21), 31_040_981),
        ("unet-original", dict(in_channels=1, num_classes=2), 31_030_658),
        ("unet", dict(in_channels=3, num_classes=2), 31_037_698),
        ("unet-bilinear", dict(in_channels=3, num_classes=2), 17_263_042),
        ("unet", dict(in_channels=1, num_classes=2), 31_036_546),
        ("unet-bilinear", dict(in_channels=1, num_classes=2), 17_261_890),
        ("unet3plus", dict(in_channels=3, num_classes=1), 26_971_777),
        ("unet3plus-ds", dict(in_channels=3, num_classes=1), 26_989_637),
        ("unet3plus-ds-cgm", dict(in_channels=3, num_classes=1), 26_991_687),
    ],
)
def test_parameter_counts_match_spec(preset, kwargs, expected):
    model = create_model(preset, init="torch", **kwargs)
    assert model.num_parameters() == expected


def test_unet3plus_heads_always_built():
    plain = create_model("unet3plus", in_channels=3, num_classes=1, init="torch")
    assert plain.num_parameters(active_only=False) == 26_991_687
    assert [k for k in plain.state_dict()] == [
        k
        for k in create_model(
            "unet3plus-ds-cgm", in_channels=3, num_classes=1, init="torch"
        ).state_dict()
    ]


def test_feature_scale_divides_widths():
    model = UNet(feature_scale=4)
    assert model.encoder.features == [16, 32, 64, 128, 256]
    with pytest.raises(ConfigError, match="depth=3 contradicts"):
        UNet(features=(8, 16, 32), depth=3)


def test_residual_block_parameter_count_by_hand():
    # 1 stage pair, widths (4, 8), residual, no norm, bias → count every tensor by hand
    model = UNet(
        in_channels=2,
        num_classes=3,
        features=(4, 8),
        residual=True,
        norm="none",
        bias=True,
        init="torch",
    )
    conv = lambda i, o, k=3: i * o * k * k + o  # noqa: E731
    enc = conv(2, 4) + conv(4, 4) + conv(2, 4, 1) + conv(4, 8) + conv(8, 8) + conv(4, 8, 1)
    dec = (8 * 4 * 4 + 4) + conv(8, 4) + conv(4, 4) + conv(8, 4, 1)  # up-conv, block, projection
    head = conv(4, 3, 1)
    assert model.num_parameters() == enc + dec + head


# --- size arithmetic ----------------------------------------------------------------------------
def test_original_unet_tile_arithmetic():
    model = create_model("unet-original", init="torch")
    assert model.output_size(572) == 388
    assert model.output_size((572, 636)) == (388, 452)
    valid = [s for s in range(100, 1200) if model.is_valid_input_size(s)]
    assert valid == [16 * k + 60 for k in range(8, 72)]
    for s in valid:
        assert model.output_size(s) == s - 184


def test_invalid_size_names_nearest_valid_sizes():
    model = create_model("unet-original", init="torch")
    with pytest.raises(
        ConfigError,
        match=r"input size 570 .*nearest valid sizes: 556 \(output 372\) and 572 \(output 388\)",
    ):
        model.output_size(570)
    assert model.valid_input_size(570) == 572
    assert model.nearest_valid_sizes(570) == (556, 572)


def test_valid_forward_matches_arithmetic_and_rejects_bad_size():
    model = create_model("unet-original", base_features=4, init="torch")
    for size in (188, 204):
        out = model(torch.zeros(1, 1, size, size + 16))
        assert out.shape == (1, 2, size - 184, size + 16 - 184)
    with pytest.raises(ConfigError, match="nearest valid sizes: 188 .* and 204"):
        model(torch.zeros(1, 1, 190, 188))


def test_original_572_gives_388_for_real():
    model = create_model("unet-original", feature_scale=16, init="torch")
    assert model(torch.zeros(1, 1, 572, 572)).shape == (1, 2, 388, 388)


# --- forward / backward across the family -------------------------------------------------------
TINY = dict(base_features=4, init="he")
CASES_2D = [
    ("unet", {}),
    ("unet-bilinear", {}),
    ("unet-strided", {}),
    ("unet-residual", {"norm": "group"}),
    (
        "unet",
        {"upsample": "interpolate_conv", "downsample": "avgpool", "norm": "layer", "dropout": 0.2},
    ),
    ("unet", {"downsample": "conv2", "head_convs": 2, "dilation": 2, "double_second_conv": True}),
    ("unet3plus", {}),
    ("unet3plus-ds-cgm", {"residual": True, "downsample": "conv3"}),
    ("unetpp", {}),
    ("unetpp", {"upsample": "transpose"}),
]


def _check_forward_backward(model, x, deep_supervision):
    model.deep_supervision = deep_supervision
    model.outputs = "all"
    out = model(x)
    assert isinstance(out, ModelOutput)
    assert out.logits.shape[:2] == (x.shape[0], model.num_classes)
    if deep_supervision:
        assert len(out.aux) >= 1
        assert all(a.shape[1] == model.num_classes for a in out.aux)
    else:
        assert out.aux == []
    loss = out.logits.float().mean() + sum(a.mean() for a in out.aux)
    if out.cls_logits is not None:
        assert out.cls_logits.shape == (x.shape[0], 2)
        loss = loss + out.cls_logits.mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    return out


@pytest.mark.parametrize("deep_supervision", [False, True])
@pytest.mark.parametrize(
    ("preset", "kwargs"), CASES_2D, ids=[f"{p}-{i}" for i, (p, _) in enumerate(CASES_2D)]
)
def test_forward_backward_2d_odd_sizes(preset, kwargs, deep_supervision):
    model = create_model(preset, in_channels=2, num_classes=3, **TINY, **kwargs)
    x = torch.randn(2, 2, 37, 45)
    out = _check_forward_backward(model, x, deep_supervision)
    assert out.logits.shape == (2, 3, 37, 45)


@pytest.mark.parametrize("deep_supervision", [False, True])
@pytest.mark.parametrize(
    "preset", ["unet", "unet-bilinear", "unet-strided", "unet3plus-ds-cgm", "unetpp"]
)
def test_forward_backward_3d_odd_sizes(preset, deep_supervision):
    model = create_model(
        preset,
        spatial_dims=3,
        in_channels=1,
        num_classes=2,
        base_features=2,
        depth=3,
        norm="instance" if preset == "unet" else None,
    )
    x = torch.randn(1, 1, 11, 17, 13)
    out = _check_forward_backward(model, x, deep_supervision)
    assert out.logits.shape == (1, 2, 11, 17, 13)


@pytest.mark.parametrize("deep_supervision", [False, True])
def test_forward_backward_valid_padding_2d_and_3d(deep_supervision):
    net2 = create_model("unet-original-bn", base_features=2, depth=2)
    assert _check_forward_backward(
        net2, torch.randn(1, 1, 44, 60), deep_supervision
    ).logits.shape == (1, 2, 4, 20)
    net3 = create_model("unet-original", spatial_dims=3, base_features=2, depth=2)
    size = net3.valid_input_size(41)
    out = _check_forward_backward(net3, torch.randn(1, 1, size, size, size), deep_supervision)
    assert out.logits.shape[2:] == (net3.output_size(size),) * 3


def test_unet_deep_supervision_outputs_at_their_level_resolution():
    model = create_model("unet", base_features=4, deep_supervision=True)
    out = model(torch.randn(1, 1, 64, 48))
    assert [tuple(a.shape[2:]) for a in out.aux] == [(32, 24), (16, 12), (8, 6)]


def test_unet3plus_full_scale_deep_supervision_is_full_size():
    model = create_model("unet3plus-ds", base_features=4, num_classes=1)
    out = model(torch.randn(1, 1, 33, 40))
    assert len(out.aux) == 4 and all(tuple(a.shape[2:]) == (33, 40) for a in out.aux)


def test_unetpp_aux_heads_are_top_row_nodes():
    model = create_model("unetpp-ds", base_features=4, depth=3)
    out = model(torch.randn(1, 1, 32, 32))
    assert len(out.aux) == 2 and all(a.shape == out.logits.shape for a in out.aux)


# --- output flags ---------------------------------------------------------------------------------
def test_outputs_flag_not_training_mode_decides_return_type():
    model = create_model("unet", base_features=4, deep_supervision=True)
    assert model.outputs == "all"
    x = torch.randn(1, 1, 32, 32)
    for mode in (model.train, model.eval):
        mode()
        assert isinstance(model(x), ModelOutput)
    model.outputs = "logits"
    for mode in (model.train, model.eval):
        mode()
        assert isinstance(model(x), torch.Tensor)
    with pytest.raises(ConfigError, match="outputs must be one of"):
        model.outputs = "list"


def test_deep_supervision_weights_load_both_ways():
    x = torch.randn(1, 1, 32, 32)
    for preset in ("unet", "unet3plus", "unetpp"):
        with_ds = create_model(
            preset,
            base_features=4,
            deep_supervision=True,
            cgm=True if preset == "unet3plus" else None,
        ).eval()
        without = create_model(preset, base_features=4).eval()
        without.load_state_dict(with_ds.state_dict())  # strict: identical keys
        main = with_ds(x).logits
        torch.testing.assert_close(without(x), main)
        with_ds.load_state_dict(without.state_dict())


def test_cgm_gates_empty_images():
    logits = torch.randn(2, 3, 4, 4)
    cls = torch.tensor([[2.0, -1.0], [-1.0, 2.0]])  # image 0 absent, image 1 present
    gated = gate_with_cgm(logits, cls)
    assert torch.equal(gated[0, 0], logits[0, 0])  # background kept
    assert (gated[0, 1:] == CGM_SUPPRESSED_LOGIT).all()
    assert torch.equal(gated[1], logits[1])
    single = gate_with_cgm(torch.randn(2, 1, 4, 4), cls)
    assert (single[0] == CGM_SUPPRESSED_LOGIT).all()


def test_cgm_model_in_logits_mode_returns_gated_tensor():
    model = create_model("unet3plus-ds-cgm", base_features=4, num_classes=1).eval()
    model.outputs = "all"
    x = torch.randn(2, 1, 32, 32)
    out = model(x)
    model.outputs = "logits"
    torch.testing.assert_close(model(x), gate_with_cgm(out.logits, out.cls_logits))


# --- initialisation ------------------------------------------------------------------------------
def test_he_initialisation_std():
    model = UNet(features=(64, 128), in_channels=1)
    w = model.encoder.stages[1].convs[1][0].weight  # 128 × 128 × 3 × 3
    assert w.std().item() == pytest.approx(math.sqrt(2 / (128 * 9)), rel=0.03)
    assert model.encoder.stages[0].convs[0][0].weight.std().item() == pytest.approx(
        math.sqrt(2 / 9), rel=0.15
    )
    up = model.decoder.ups[
        0
    ].conv.weight  # transposed 2×2 stride 2: each output sees in_channels inputs
    assert up.std().item() == pytest.approx(math.sqrt(2 / 128), rel=0.05)
    assert model.decoder.ups[0].conv.bias.abs().max() == 0


# --- errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(norm="batchnorm"), "unknown norm 'batchnorm'; choose one of batch, instance"),
        (dict(act="swish"), "unknown activation 'swish'"),
        (dict(downsample="stride"), "unknown downsample 'stride'; choose one of maxpool"),
        (dict(upsample="pixelshuffle"), "unknown upsample 'pixelshuffle'"),
        (dict(padding="valid", downsample="conv3"), "downsample='conv3' needs padding='same'"),
        (
            dict(features=(8, 16, 32), n_convs=(2, 2)),
            "n_convs has 2 entries but the model has 3 stages",
        ),
        (dict(spatial_dims=4), "spatial_dims must be 2 or 3"),
        (dict(num_classes=0), "num_classes must be ≥ 1"),
        (dict(features=(8,)), "features needs at least 2 stages"),
        (dict(kernel_size=4), "kernel_size must be odd"),
        (dict(init="xavier"), "init must be 'he' or 'torch'"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        UNet(**{"base_features": 4, **kwargs})


def test_input_checks_name_the_problem():
    model = UNet(base_features=4, in_channels=3)
    with pytest.raises(ConfigError, match=r"expects 3 input channel\(s\), got 1"):
        model(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ConfigError, match=r"expected a 4-D tensor"):
        model(torch.zeros(3, 32, 32))
    with pytest.raises(ConfigError, match="input size 8 on spatial axis 1 is not valid"):
        model(torch.zeros(1, 3, 32, 8))


def test_registry_lists_valid_names_and_options():
    assert {"unet", "unet-original", "unet3plus", "unetpp"} <= set(list_models())
    with pytest.raises(ConfigError, match="unknown model 'unet3pluss'. Did you mean 'unet3plus'"):
        create_model("unet3pluss")
    with pytest.raises(ConfigError, match="has no option.* wdith; valid options: spatial_dims"):
        create_model("unet", wdith=3)
    model = create_model("unet", num_classes=None, base_features=4)  # None keeps the default
    assert model.num_classes == 2 and model.preset == "unet"
    assert model.init_kwargs["base_features"] == 4


def test_unet3plus_and_unetpp_refuse_valid_padding_option():
    with pytest.raises(ConfigError, match="no option.* padding"):
        create_model("unet3plus", padding="valid")
    assert isinstance(create_model("unetpp", base_features=2), UNetPlusPlus)
    assert isinstance(create_model("unet3plus", base_features=2), UNet3Plus)


# --- prediction releases what it no longer needs ------------------------------------------------
@pytest.mark.parametrize(
    ("preset", "kwargs"),
    [
        ("unet", {}),
        ("unet-original-bn", dict(depth=2)),
        ("unet", dict(residual=True)),
        ("unet", dict(deep_supervision=True)),
        ("unetpp-ds", dict(depth=3)),
        ("unet3plus-ds-cgm", dict(depth=3)),
    ],
)
@pytest.mark.parametrize("channels_last", [False, True])
def test_inference_without_autograd_equals_the_autograd_forward(preset, kwargs, channels_last):
    """The no-grad forward drops maps once used and joins skips in place; the numbers and the
    memory format (channels-last, as the CPU predictor runs) must not change."""
    torch.manual_seed(0)
    model = create_model(preset, base_features=4, **kwargs).eval()
    size = model.valid_input_size(60) if preset.startswith("unet-original") else 48
    x = torch.randn(
        2, 1, size, size + 3 * (preset == "unet")
    )  # odd width: the up-sampled map is padded
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.enable_grad():
        ref = model.forward_all(x)
    with torch.inference_mode():
        out = model.forward_all(x)
    torch.testing.assert_close(out.logits, ref.logits.detach(), rtol=0, atol=0)
    assert out.logits.is_contiguous(memory_format=torch.channels_last) == (
        ref.logits.is_contiguous(memory_format=torch.channels_last)
    )
    assert len(out.aux) == len(ref.aux)
    for a, b in zip(out.aux, ref.aux):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=0)


def test_decoder_releases_skips_and_deeper_levels_only_without_autograd():
    model = create_model("unet", base_features=4, depth=3).eval()
    x = torch.randn(1, 1, 32, 32)
    skips = model.encoder(x)
    with torch.enable_grad():
        outs = model.decoder(list(skips))
    assert [tuple(o.shape[1:]) for o in outs] == [(4, 32, 32), (8, 16, 16), (16, 8, 8)]
    held = list(skips)
    with torch.no_grad():
        lean = model.decoder(held, all_levels=False)
    assert held == [None] * 4  # each skip dropped once joined
    assert lean[1:] == [None, None] and torch.equal(lean[0], outs[0].detach())
    kept = list(skips)
    with torch.enable_grad():
        model.decoder(kept)
    assert all(a is b for a, b in zip(kept, skips))  # autograd on: the caller's list untouched


@pytest.mark.parametrize("residual", [False, True])  # the residual shortcut still sees the join
def test_conv_block_joins_a_list_and_empties_it_without_autograd(residual):
    from unetkit.models.blocks import ConvBlock

    block = ConvBlock(2, 6, 4, residual=residual).eval()
    a, b = torch.randn(1, 2, 9, 9), torch.randn(1, 4, 9, 9)
    ref = block(torch.cat([a, b], dim=1))
    parts = [a, b]
    with torch.no_grad():
        out = block(parts)
    assert parts == [] and torch.equal(out, ref.detach())
    parts = [a, b]
    block(parts)
    assert len(parts) == 2  # with autograd the list is left alone


def test_inference_joins_match_torch_cat_under_bf16_autocast():
    """Under autocast the joined map takes the skip's dtype; the block's first conv casts to bf16
    anyway, so the result equals the autograd path's ``torch.cat`` (any CPU runs bf16 autocast)."""
    torch.manual_seed(0)
    model = create_model("unet", base_features=4, depth=3).eval()
    x = torch.randn(1, 1, 40, 36)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.enable_grad():
            ref = model(x)
        with torch.inference_mode():
            out = model(x)
    assert out.dtype == ref.dtype
    torch.testing.assert_close(out, ref.detach(), rtol=0, atol=0)

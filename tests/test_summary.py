"""Model summary: counts agree with the model, shapes and FLOPs with hand computations, CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from unetkit import create_model, summary


def test_summary_of_original_unet_at_572():
    model = create_model("unet-original", init="torch")
    s = summary(model, 572)
    assert s.output_shape == (1, 2, 388, 388)
    assert (
        s.active_params == 31_030_658 < s.total_params
    )  # U-Net builds its deep-supervision heads too
    text = str(s)
    assert "Parameters (in use):    31,030,658" in text
    assert "[1, 2, 388, 388]" in text


def test_summary_flops_of_a_tiny_net_by_hand():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1))
    s = summary(net, (10, 12), depth=None)
    expected = 2 * (8 * 10 * 12) * (3 * 9) + 2 * (2 * 10 * 12) * 8
    assert s.flops == expected
    assert [r.type for r in s.rows] == ["Conv2d", "ReLU", "Conv2d"]
    assert s.activation_bytes == 4 * (8 * 120 + 8 * 120 + 2 * 120)
    assert s.total_params == 3 * 8 * 9 + 8 + 8 * 2 + 2


def test_summary_flops_match_spec_for_unet64_at_512():
    s = summary(create_model("unet", in_channels=1, num_classes=2, init="torch"), 512)
    assert s.flops / 1e9 == pytest.approx(385, rel=0.005)  # SPEC.md §6: 385 GFLOP of convolutions


def test_summary_reports_active_and_built_parameters_3d():
    model = create_model("unet3plus", spatial_dims=3, base_features=4, num_classes=1)
    s = summary(model, (16, 24, 20), depth=1)
    assert s.active_params == model.num_parameters()
    assert s.total_params == model.num_parameters(active_only=False) > s.active_params
    assert s.output_shape == (1, 1, 16, 24, 20)
    assert [r.name for r in s.rows] == ["encoder", "decoder", "head"]
    assert sum(r.params for r in s.rows) == s.active_params
    assert "Parameters (built)" in str(s)


def test_summary_leaves_the_model_untouched():
    model = create_model("unet", base_features=4, deep_supervision=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary(model, 64, device="cpu")
    assert model.outputs == "all" and model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "unetkit", *args], capture_output=True, text=True, timeout=120
    )


def test_help_does_not_import_torch():
    code = "import sys; from unetkit.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False"
    res = _cli("--help")
    assert res.returncode == 0 and "summary" in res.stdout


def test_cli_summary_with_options():
    res = _cli(
        "summary",
        "unet3plus",
        "--in-channels",
        "3",
        "--num-classes",
        "1",
        "--deep-supervision",
        "true",
        "--input-size",
        "64",
        "--depth",
        "1",
    )
    assert res.returncode == 0, res.stderr
    assert "Parameters (in use):    26,989,637" in res.stdout


def test_cli_summary_errors_are_one_line_exit_2():
    res = _cli("summary", "unet-original", "--input-size", "570")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]
    assert "nearest valid sizes: 556 (output 372) and 572 (output 388)" in res.stderr
    res = _cli("summary", "unnet")
    assert res.returncode == 2 and "Did you mean 'unet'" in res.stderr
    res = _cli("summary", "unet", "--input-size", "big")
    assert res.returncode == 2 and "--input-size must be integers" in res.stderr
    res = _cli("summary", "unet", "--base-features", "abc")  # a wrong type, named as train names it
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert (
        res.stderr.strip()
        == "unetkit summary: error: model.options.base_features must be an integer, got 'abc'"
    )
    res = _cli("summary", "--list")
    assert res.returncode == 0 and "unet-original" in res.stdout


def test_summary_of_a_trained_model_reads_its_checkpoint(tmp_path, capsys):
    """A user's natural first try, 'unetkit summary best.pt', named an unknown preset: a checkpoint
    (or its run folder) is summarised at its training patch; options cannot be changed on it."""
    from unetkit import create_model
    from unetkit.checkpoint import save_checkpoint
    from unetkit.cli import main
    from unetkit.data import LabelMap, create_normalizer

    model = create_model("unet", in_channels=2, num_classes=3, base_features=4, depth=2)
    ckpt = save_checkpoint(
        tmp_path / "run" / "checkpoints" / "best.pt",
        model,
        normalization=create_normalizer("zscore").to_dict(),
        label_map=LabelMap([0, 1, 2]).to_dict(),
        patch_size=[48, 64],
    )
    for target in (ckpt, tmp_path / "run"):
        assert main(["summary", str(target)]) == 0
        out = capsys.readouterr().out
        assert "Input shape:            [1, 2, 48, 64]" in out
        assert "Output shape:           [1, 3, 48, 64]" in out
        assert f"Parameters (in use):    {model.num_parameters():,}" in out
    assert main(["summary", str(ckpt), "--input-size", "32"]) == 0
    assert "Input shape:            [1, 2, 32, 32]" in capsys.readouterr().out
    assert main(["summary", str(ckpt), "--num-classes", "5"]) == 2
    assert capsys.readouterr().err.strip() == (
        "unetkit summary: error: a trained model's options are its checkpoint's; drop "
        "--num-classes 5 (or name a preset to try options)"
    )

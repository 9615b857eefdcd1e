"""SizeRule: one value for a model's accepted sizes, border and pooling period, checked against the
models' own size arithmetic (the definition) and carried through checkpoints and exports."""

from __future__ import annotations

import pytest

from unetkit.checkpoint import build_model, load_checkpoint, save_checkpoint
from unetkit.errors import ConfigError, DataError
from unetkit.models import MODELS, create_model
from unetkit.models.geometry import SizeRule, size_rule_of


def _models():
    for name in MODELS.names():
        yield name, create_model(name, base_features=2)
    yield "unet-depth2", create_model("unet", base_features=2, depth=2)
    yield "unet-original-depth3", create_model("unet-original", base_features=2, depth=3)


@pytest.mark.parametrize(
    "name, model", list(_models()), ids=lambda v: v if isinstance(v, str) else ""
)
def test_rule_matches_the_models_size_arithmetic_on_every_size(name, model):
    rule = model.size_rule()
    assert rule.spatial_dims == model.spatial_dims
    assert rule.period == model.pooling_period
    for s in range(1, 700 if model.spatial_dims == 2 else 200):
        assert rule.accepts(s) == model.is_valid_input_size(s), s
        if model.is_valid_input_size(s):
            assert rule.output_size(s) == (model.output_size(s),) * model.spatial_dims
            below, above = model.nearest_valid_sizes(s)
            assert rule.nearest(0, s) == (below, above)


def test_the_papers_unet():
    rule = create_model("unet-original", base_features=2).size_rule()
    assert rule == SizeRule("valid", (188, 188), (16, 16), (184, 184), (16, 16))
    assert rule.output_size(572) == (388, 388)
    assert rule.input_for_output(388) == (572, 572)
    assert rule.input_for_output(389) == (588, 588)
    assert rule.border == ((92, 92), (92, 92))
    assert rule.at_least((500, 189)) == (508, 204)
    assert rule.at_most((500, 100)) == (492, 188)  # none below 188: the smallest
    assert rule.describe() == "188 + 16·k (k ≥ 0) on every axis"
    with pytest.raises(ConfigError, match=r"input size 570 on spatial axis 1 .*; use 556 or 572$"):
        rule.check((572, 570))


def test_same_padding_rule_and_its_export():
    model = create_model("unet", base_features=2, depth=3)
    rule = model.size_rule()
    assert rule == SizeRule("same", (8, 8), (1, 1), (0, 0), (8, 8))
    assert rule.describe() == "any size ≥ 8 on every axis"
    graph = rule.for_export()  # a traced graph needs multiples of the pooling period
    assert graph == SizeRule("same", (8, 8), (8, 8), (0, 0), (8, 8))
    assert graph.describe() == "multiples of 8 on every axis" and not graph.accepts(12)
    fixed = graph.fixed((16, 24))
    assert fixed.describe() == "exactly 16×24" and fixed.accepts((16, 24))
    assert not fixed.accepts((24, 24)) and fixed.at_most(100) == (16, 24)
    with pytest.raises(ConfigError, match="only size 16 is accepted on spatial axis 0"):
        fixed.at_least(17)


def test_dict_round_trip_and_old_export_metadata():
    rule = create_model("unet-original", base_features=2, spatial_dims=3, depth=2).size_rule()
    assert SizeRule.from_dict(rule.to_dict()) == rule
    # exports written before the period was recorded: the graph's step is the period
    old = {"padding": "same", "min": [16, 16], "step": [16, 16], "shrink": [0, 0]}
    assert SizeRule.from_dict(old).period == (16, 16)
    fixed = dict(old, dynamic_spatial=False, min=[64, 48])
    assert SizeRule.from_dict(fixed).step == (0, 0)
    with pytest.raises(ConfigError, match="size rule has 2 axes, expected 3"):
        SizeRule.from_dict(old, dims=3)
    with pytest.raises(ConfigError, match="not a size rule"):
        SizeRule.from_dict({"min": [1]})


def test_rules_refuse_inconsistent_values():
    with pytest.raises(ConfigError, match="padding must be one of"):
        SizeRule("full", (1,), (1,), (0,), (1,))
    with pytest.raises(ConfigError, match="step has 1 values, min has 2"):
        SizeRule("same", (1, 1), (1,), (0, 0), (1, 1))
    with pytest.raises(ConfigError, match="min ≥ 1, step ≥ 0"):
        SizeRule("same", (0, 1), (1, 1), (0, 0), (1, 1))
    rule = SizeRule.any_size(2)
    with pytest.raises(ConfigError, match=r"size needs 2 value\(s\)"):
        rule.sizes((1, 2, 3))


def test_size_rule_of():
    model = create_model("unet", base_features=2)
    assert size_rule_of(model) == model.size_rule()
    assert size_rule_of(model.size_rule()) is not None
    assert size_rule_of(lambda x: x, spatial_dims=3) == SizeRule.any_size(3)


def test_checkpoint_records_the_rule_and_checks_it_on_load(tmp_path):
    model = create_model("unet-original", base_features=2, depth=2)
    path = save_checkpoint(tmp_path / "m.pt", model)
    ckpt = load_checkpoint(path)
    assert ckpt["size_rule"] == model.size_rule().to_dict()
    assert build_model(ckpt).size_rule() == model.size_rule()
    ckpt["size_rule"] = dict(ckpt["size_rule"], shrink=[0, 0])
    with pytest.raises(DataError, match="accepts sizes .* but the checkpoint recorded"):
        build_model(ckpt, path)
    del ckpt["size_rule"]  # checkpoints from before the rule was recorded still load
    assert build_model(ckpt).size_rule() == model.size_rule()

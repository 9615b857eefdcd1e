"""``utils.json_default`` / ``utils.jsonable``: the one JSON encoding of export metadata, the demo's
``metrics.json`` and the evaluation's ``summary.json``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from unetkit.utils import json_default, jsonable


def test_json_default_converts_numpy_torch_paths_tuples_and_sets():
    torch = pytest.importorskip("torch")
    value = {
        "int": np.int64(3),
        "float": np.float32(0.5),
        "bool": np.bool_(True),
        "array": np.arange(4).reshape(2, 2),
        "tensor": torch.tensor([1.5, 2.0]),
        "path": Path("run") / "best.pt",
        "tuple": (np.uint8(1), 2),
        "set": {3, 1, 2},
        "frozen": frozenset({"b", "a"}),
    }
    assert json.loads(json.dumps(value, default=json_default)) == {
        "int": 3,
        "float": 0.5,
        "bool": True,
        "array": [[0, 1], [2, 3]],
        "tensor": [1.5, 2.0],
        "path": str(Path("run") / "best.pt"),
        "tuple": [1, 2],
        "set": [1, 2, 3],
        "frozen": ["a", "b"],
    }
    assert type(json_default(np.float64(0.25))) is float
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        json.dumps({"x": object()}, default=json_default)


def test_json_default_keeps_nan_as_json_writes_it():
    # the demo's metrics.json: NaN and infinity stay (Python's json writes NaN / Infinity)
    text = json.dumps({"a": np.float32("nan"), "b": (float("inf"),)}, default=json_default)
    assert text == '{"a": NaN, "b": [Infinity]}'


def test_jsonable_makes_strict_json():
    value = {
        1: np.float64("nan"),
        "inf": (float("inf"), -math.inf),
        "n": np.int32(7),
        "b": True,
        "nb": np.bool_(False),
        "none": None,
        "s": "x",
        "arr": np.array([1.0, np.nan]),
        "path": Path("p"),
        "nested": [{"x": np.float16(0.5)}],
    }
    out = jsonable(value)
    assert out == {
        "1": None,
        "inf": ["inf", "-inf"],
        "n": 7,
        "b": True,
        "nb": False,
        "none": None,
        "s": "x",
        "arr": [1.0, None],
        "path": "p",
        "nested": [{"x": 0.5}],
    }
    assert type(out["n"]) is int and out["b"] is True
    json.dumps(out, allow_nan=False)  # strict JSON: no NaN left
    marker = object()
    assert jsonable(marker) is marker  # left as it is: json.dumps names it

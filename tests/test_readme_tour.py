"""Every command of the README's 5-minute tour runs, on tiny data (training shortened)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from .conftest import REPO
from .test_training import make_cells

FAST_TRAIN = [
    "--epochs",
    "1",
    "--iters-per-epoch",
    "2",
    "--patch-size",
    "32",
    "--set",
    "model.options.base_features=4",
    "--set",
    "model.options.depth=2",
    "--no-progress",
    "--no-plan",  # the planner's probe is tested in test_planner.py; here only the commands run
]


def tour_commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- tour:start -->\s*```bash\n(.*?)```\s*<!-- tour:end -->", text, re.S)
    assert block, "README.md lost its tour block"
    return [shlex.split(line) for line in block.group(1).strip().splitlines() if line.strip()]


def test_readme_tour_runs(tmp_path):
    pytest.importorskip(
        "onnxruntime",
        reason="the tour's export step needs onnxruntime (pip install unetkit[export])",
    )
    for split, seed in (("train", 0), ("val", 1), ("test", 2)):
        make_cells(tmp_path / "data" / split, n=4, size=48, seed=seed)
    commands = tour_commands()
    assert [c[1] for c in commands] == ["check-data", "train", "predict", "evaluate", "export"]
    for cmd in commands:
        assert cmd[0] == "unetkit"
        args = [sys.executable, "-m", "unetkit", *cmd[1:]] + (
            FAST_TRAIN if cmd[1] == "train" else []
        )
        if cmd[1] == "predict":
            args.append("--no-progress")
        res = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stdout}\n{res.stderr}"
    assert (tmp_path / "preds" / "00.png").is_file() and (
        tmp_path / "preds" / "00_overlay.png"
    ).is_file()
    assert (tmp_path / "preds" / "eval" / "summary.json").is_file()
    assert (tmp_path / "model.onnx").is_file()

"""The example recipes parse, validate and name real presets; the 3D data script works."""

from __future__ import annotations

import subprocess
import sys

import pytest

from unetkit.config import RunConfig

from .conftest import REPO

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_configs_validate(path):
    cfg = RunConfig.from_yaml(path)
    assert cfg.train.time_budget_minutes is not None and cfg.train.time_budget_minutes <= 10
    assert path.read_text().lstrip().startswith("#")  # each says how to run it


def test_synthetic3d_example_trains(tmp_path):
    out = tmp_path / "data3d"
    subprocess.run(
        [sys.executable, str(REPO / "examples" / "make_synthetic3d.py"), str(out), "--cases", "4"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    from unetkit.training import Trainer

    cfg = RunConfig.from_yaml(REPO / "examples" / "synthetic3d.yaml").override(
        {
            "data.train_dir": str(out / "train"),
            "data.val_dir": str(out / "val"),
            "train.epochs": 1,
            "train.iters_per_epoch": 2,
            "data.patch_size": [16, 32, 32],
        }
    )
    result = Trainer(cfg, run_dir=tmp_path / "run", progress=False).fit()
    assert (
        result.epochs_completed == 1
        and result.history[-1]["val_dice"] == result.history[-1]["val_dice"]
    )

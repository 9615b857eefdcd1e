"""``pip install unetkit`` without extras: the core commands work, and each optional feature that
needs an extra says, in one line and with exit status 2, which extra to install.

The test builds a fresh virtual environment, installs torch (the version this environment runs, so
pip takes the wheel it already has) and then this repository *without* extras, as a user would from
PyPI, and runs the README's tour in it. It is slow (about two minutes, most of it pip) and needs the
package index that ``make venv`` used; where pip cannot install torch there, it skips, saying so.
"""

from __future__ import annotations

import json
import os
import subprocess
import venv
from pathlib import Path

import numpy as np
import pytest
import torch

from .conftest import REPO
from .test_readme_tour import FAST_TRAIN, tour_commands
from .test_training import make_cells

pytestmark = pytest.mark.slow

#: optional packages a core install must not have (else the test would prove nothing)
EXTRAS_ONLY = (
    "onnx",
    "onnxruntime",
    "distributed",
    "bioimageio.core",
    "SimpleITK",
    "napari",
    "monai",
)


def _pip(python: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def core_env(tmp_path_factory) -> Path:
    """A fresh venv with torch and unetkit (no extras); returns its ``bin`` folder."""
    root = tmp_path_factory.mktemp("core-venv")
    venv.create(root, with_pip=True)
    python = root / "bin" / "python"
    torch_version = torch.__version__.split("+")[0]
    res = _pip(python, f"torch=={torch_version}")
    if res.returncode != 0:
        pytest.skip(
            f"pip could not install torch=={torch_version} here: {res.stderr.strip()[-300:]}"
        )
    res = _pip(python, str(REPO))  # a regular (non-editable) install, as from a wheel
    assert res.returncode == 0, f"pip install unetkit (no extras) failed:\n{res.stderr[-2000:]}"
    return root / "bin"


def _run(bin_dir: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [str(bin_dir / args[0]), *args[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _one_line_refusal(res: subprocess.CompletedProcess, extra: str) -> str:
    """The refusal: exit 2, one line on stderr naming ``pip install …unetkit[extra]``."""
    assert res.returncode == 2, f"exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{res.stderr}"
    assert f"unetkit[{extra}]" in lines[0], lines[0]
    return lines[0]


def test_core_install_has_no_extras(core_env):
    """The premise: none of the optional packages came in with the core install."""
    code = (
        "import importlib.util, json, unetkit\n"
        "def present(name):\n"
        "    try:\n"
        "        return importlib.util.find_spec(name) is not None\n"
        "    except ModuleNotFoundError:  # the parent package is missing\n"
        "        return False\n"
        f"print(json.dumps([[m for m in {EXTRAS_ONLY!r} if present(m)], unetkit.__file__]))\n"
    )
    res = _run(core_env, ["python", "-c", code], cwd=core_env)
    assert res.returncode == 0, res.stderr
    found, location = json.loads(res.stdout)
    assert found == [], f"a core install pulled in optional packages: {found}"
    assert "site-packages" in location and str(REPO / "src") not in location


def test_readme_tour_without_extras(core_env, tmp_path):
    """check-data, train, predict, evaluate and plan run; export to ONNX names the ``export`` extra."""
    for split, seed in (("train", 0), ("val", 1), ("test", 2)):
        make_cells(tmp_path / "data" / split, n=4, size=48, seed=seed)
    for cmd in tour_commands():
        args = cmd + (FAST_TRAIN if cmd[1] == "train" else [])
        res = _run(core_env, args, cwd=tmp_path)
        if cmd[1] == "export":
            _one_line_refusal(res, "export")
            assert not list(tmp_path.glob("*.onnx")), "a refused export left a file behind"
        else:
            assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stdout}\n{res.stderr}"
    assert (tmp_path / "preds" / "00.png").is_file()
    assert (tmp_path / "preds" / "eval" / "summary.json").is_file()
    res = _run(core_env, ["unetkit", "plan", "data/train", "--time-budget", "1"], cwd=tmp_path)
    assert res.returncode == 0, f"unetkit plan\n{res.stdout}\n{res.stderr}"
    assert "patch" in res.stdout


def test_each_extra_is_named_when_missing(core_env, tmp_path):
    """Dask, bioimage.io and NRRD input each stop with one line naming their extra; nothing is
    written for them."""
    make_cells(tmp_path / "data", n=4, size=48, seed=0)
    res = _run(
        core_env, ["unetkit", "train", "data", "--run-dir", "run", *FAST_TRAIN], cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    ckpt = tmp_path / "run" / "checkpoints" / "best.pt"
    assert ckpt.is_file()
    images = str(tmp_path / "data" / "images")

    res = _run(
        core_env,
        ["unetkit", "predict", str(ckpt), images, "--output", "p1", "--dask", "local:1"],
        cwd=tmp_path,
    )
    _one_line_refusal(res, "dask")
    assert not (tmp_path / "p1").exists() or not any((tmp_path / "p1").iterdir())

    res = _run(
        core_env,
        ["unetkit", "export", str(ckpt), "--format", "bioimageio", "--output", "m.zip"],
        cwd=tmp_path,
    )
    _one_line_refusal(res, "bioimageio")
    assert not (tmp_path / "m.zip").exists()

    # a minimal NRRD (text header + raw bytes): reading it needs SimpleITK, the `medical` extra
    nrrd = tmp_path / "vol" / "img.nrrd"
    nrrd.parent.mkdir()
    header = "NRRD0004\ntype: uint8\ndimension: 2\nsizes: 48 48\nencoding: raw\n\n"
    nrrd.write_bytes(header.encode() + np.zeros((48, 48), np.uint8).tobytes())
    res = _run(
        core_env,
        ["unetkit", "predict", str(ckpt), str(nrrd.parent), "--output", "p2", "--no-progress"],
        cwd=tmp_path,
    )
    _one_line_refusal(res, "medical")
    assert not list(tmp_path.glob("p2/**/img*")), "a refused image left an output behind"


def test_python_api_without_extras(core_env):
    """The library imports and predicts."""
    code = (
        "import numpy as np, unetkit\n"
        "from unetkit import create_model\n"
        "from unetkit.inference.predictor import Predictor\n"
        "net = create_model('unet', in_channels=1, num_classes=2, base_features=4, depth=2)\n"
        "labels = Predictor(net, precision='fp32').predict(np.zeros((1, 40, 40), np.float32))\n"
        "print(labels.shape)\n"
    )
    res = _run(core_env, ["python", "-c", code], cwd=core_env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "(40, 40)"

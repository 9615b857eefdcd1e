"""Every bad input to ``train``, ``check-data`` and the config: exit status 2, one line naming the
file/value/path, no traceback, and nothing left behind (no run folder, no splits.json).

The corpus is built in code (tiny seeded images written with PIL/tifffile/numpy). Each case runs
``python -m unetkit ARGS`` (the ``__main__`` module, through :func:`runpy.run_module`) in its own
folder; the cases share two interpreter processes, one per CPU core, because starting one per case
(importing torch) would cost ~3 s each. The config type checks are also tested directly, without
the CLI.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetkit.config import DataConfig, LossConfig, ModelConfig, RunConfig, TrainConfig, check_value
from unetkit.errors import ConfigError

SIZE = 32


# ------------------------------------------------------------------------------------ the corpus
def _png(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as a PNG (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def clean(root: Path, n: int = 4, rgb: bool = False, seed: int = 0) -> Path:
    """``n`` grey (or RGB) 32×32 images with {0, 255} disc masks under ``root/images``, ``root/masks``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for i in range(n):
        mask = (yy - rng.integers(10, 22)) ** 2 + (xx - rng.integers(10, 22)) ** 2 <= 36
        img = np.clip(mask * 120 + 60 + rng.normal(0, 20, mask.shape), 0, 255).astype(np.uint8)
        _png(root / "images" / f"{i:02d}.png", np.stack([img] * 3, axis=-1) if rgb else img)
        _png(root / "masks" / f"{i:02d}.png", (mask * 255).astype(np.uint8))
    return root


def _garbage(path: Path, data: bytes = b"this is not a PNG file at all") -> Path:
    """Overwrite ``path`` with bytes that are no image."""
    path.write_bytes(data)
    return path


def _yaml(path: Path, text: str) -> Path:
    """Write a YAML config file."""
    path.write_text(textwrap.dedent(text))
    return path


def _train(tmp: Path, *args: str) -> list:
    """``train DATA ...`` with a tiny model, one model (no folds) and one 1-batch epoch, were it to
    start."""
    return [
        "train",
        str(tmp / "data"),
        "--epochs",
        "1",
        "--iters-per-epoch",
        "1",
        "--batch-size",
        "1",
        "--set",
        "model.options.base_features=4",
        "--set",
        "model.options.depth=2",
        "--folds",  # the plan's folds depend on this CPU's speed; the messages must not
        "1",
        "--threads",
        "1",
        "--no-progress",
        *args,
    ]


def case_bad_image(tmp):
    _garbage(clean(tmp / "data") / "images" / "01.png")
    return _train(tmp), str(tmp / "data/images/01.png")


def case_zero_byte_image(tmp):
    _garbage(clean(tmp / "data") / "images" / "02.png", b"")
    return _train(tmp), str(tmp / "data/images/02.png")


def case_bad_mask(tmp):
    _garbage(clean(tmp / "data") / "masks" / "01.png")
    return _train(tmp), str(tmp / "data/masks/01.png")


def case_mask_size_mismatch(tmp):
    _png(clean(tmp / "data") / "masks" / "03.png", np.zeros((16, 16), np.uint8))
    return _train(tmp), (
        f"{tmp / 'data/masks/03.png'}: mask size (16, 16) differs from image size (32, 32) "
        "(03.png): it must cover its image pixel for pixel; crop it, or resample it onto the "
        "image (nearest-neighbour for masks)"
    )


def case_2d_image_among_volumes(tmp):
    rng = np.random.default_rng(4)
    for name in ("images", "masks"):
        (tmp / "data" / name).mkdir(parents=True, exist_ok=True)
    for i in range(3):
        vol = rng.normal(0, 1, (6, 16, 16)).astype(np.float32)
        np.save(tmp / "data" / "images" / f"v{i}.npy", vol[None])
        np.save(tmp / "data" / "masks" / f"v{i}.npy", (vol > 1).astype(np.uint8)[None])
    np.save(tmp / "data" / "images" / "v3.npy", rng.normal(0, 1, (1, 16, 16)).astype(np.float32))
    np.save(tmp / "data" / "masks" / "v3.npy", np.zeros((1, 16, 16), np.uint8))
    return _train(tmp), (
        f"{tmp / 'data/images/v3.npy'}: a 2D image, while {tmp / 'data/images/v0.npy'} is 3D: 2D "
        "and 3D images are mixed; keep the 3D ones (move the others out of the folder)"
    )


def case_noise_mask(tmp):
    rng = np.random.default_rng(1)
    mask = rng.integers(0, 60000, (SIZE, SIZE)).astype(np.uint16)
    tifffile.imwrite(clean(tmp / "data") / "masks" / "02.tif", mask)
    (tmp / "data/masks/02.png").unlink()
    return _train(tmp), str(tmp / "data/masks/02.tif")


def _val_labelled_otherwise(tmp):
    """Training masks 0/255, validation masks 0/1/2 (classes never seen in training), and the
    refusal that names them."""
    clean(tmp / "data")
    val = clean(tmp / "val", n=2, seed=3)
    for name in ("00", "01"):
        mask = (np.asarray(Image.open(val / "masks" / f"{name}.png")) > 0).astype(np.uint8)
        mask[:4] = 2
        _png(val / "masks" / f"{name}.png", mask)
    return val, (
        f"{val}: the validation masks of 2 case(s) (00, 01) hold the value(s) 1, 2, which no "
        "training mask has"
    )


def case_val_folder_labelled_otherwise(tmp):
    val, message = _val_labelled_otherwise(tmp)
    return _train(tmp, "--val", str(val)), message


def case_plan_val_folder_labelled_otherwise(tmp):
    """The same validation folder refused by plan, before a plan.json is written."""
    val, message = _val_labelled_otherwise(tmp)
    return [
        "plan",
        str(tmp / "data"),
        "--val",
        str(val),
        "--output",
        str(tmp / "plan.json"),
    ], message


def case_run_dir_inside_the_data(tmp):
    """Checkpoints and logs among the images: refused before anything is made."""
    clean(tmp / "data")
    return (
        _train(tmp, "--run-dir", str(tmp / "data" / "images" / "run")),
        f"{tmp / 'data' / 'images' / 'run'}: the run would be written into the data folder "
        f"{tmp / 'data' / 'images'}",
    )


def case_output_is_the_mask_folder(tmp):
    clean(tmp / "data")
    return (
        _train(tmp, "--output", str(tmp / "data" / "masks")),
        f"--output {tmp / 'data' / 'masks'}: the run would be written into the data folder "
        f"{tmp / 'data' / 'masks'}",
    )


def case_missing_mask(tmp):
    (clean(tmp / "data") / "masks" / "02.png").unlink()
    return _train(tmp), "02"


def case_rgb_among_grey(tmp):
    data = clean(tmp / "data")
    _png(data / "images" / "03.png", np.zeros((SIZE, SIZE, 3), np.uint8) + 90)
    return _train(tmp), str(data / "images" / "03.png")


def case_rgb_into_one_channel_model(tmp):
    clean(tmp / "data", rgb=True)
    return (
        _train(tmp, "--val-fraction", "0", "--set", "model.options.in_channels=1"),
        f"the images have 3 (e.g. {tmp / 'data/images/00.png'})",
    )


def case_nan_image(tmp):
    data = clean(tmp / "data")
    img = np.random.default_rng(2).random((SIZE, SIZE)).astype(np.float32)
    img[3, 4] = np.nan
    (data / "images" / "01.png").unlink()
    tifffile.imwrite(data / "images" / "01.tif", img)
    return _train(tmp), str(data / "images" / "01.tif")


def case_missing_data_dir(tmp):
    return _train(tmp), str(tmp / "data")


def case_select_metric_class_absent(tmp):
    clean(tmp / "data")
    return _train(tmp, "--select-metric", "val_dice_c5"), "'val_dice_c5' names class 5"


def case_epochs_word(tmp):
    clean(tmp / "data")
    return _train(
        tmp, "--set", "train.epochs=ten"
    ), "train.epochs must be an integer ≥ 1, got 'ten'"


def case_patch_size_word(tmp):
    clean(tmp / "data")
    return _train(tmp, "--patch-size", "abc"), "data.patch_size must be a list of integers ≥ 1"


def case_option_wrong_type(tmp):
    clean(tmp / "data")
    return (
        _train(tmp, "--set", "model.options.base_features=abc"),
        "model.options.base_features must be an integer, got 'abc'",
    )


def case_option_unknown(tmp):
    clean(tmp / "data")
    return _train(
        tmp, "--set", "model.options.widht=8"
    ), "model.options.widht is not an option of model 'unet'"


def case_option_bad_value(tmp):
    clean(tmp / "data")
    return _train(tmp, "--set", "model.options.norm=fancy"), "unknown norm 'fancy'"


def case_loss_unknown(tmp):
    clean(tmp / "data")
    return _train(tmp, "--loss", "dicey"), "loss.name: unknown loss 'dicey'"


def case_loss_option_wrong_type(tmp):
    clean(tmp / "data")
    return _train(
        tmp, "--loss", "focal", "--set", "loss.options.gamma=big"
    ), "loss.options.gamma must be a number"


def case_loss_ignore_index(tmp):
    """The loss's own ignore_index is refused: data.ignore_value is what every part of a run follows."""
    clean(tmp / "data")
    return (
        _train(tmp, "--set", "loss.options.ignore_index=255"),
        "loss.options.ignore_index=255: name the mask value of unlabelled pixels with data.ignore_value (--ignore-value)",
    )


def case_normalization_unknown(tmp):
    clean(tmp / "data")
    return _train(
        tmp, "--normalization", "zscroe"
    ), "data.normalization.name: unknown normalization 'zscroe'"


def case_normalization_param(tmp):
    clean(tmp / "data")
    return (
        _train(tmp, "--normalization", "percentile", "--set", "data.normalization.lower=low"),
        "data.normalization.lower must be a number, got 'low'",
    )


def case_augmentation_unknown(tmp):
    clean(tmp / "data")
    return _train(tmp, "--set", "data.augmentation.flipp=true"), "unknown augmentation(s) 'flipp'"


def case_augmentation_value(tmp):
    clean(tmp / "data")
    return _train(
        tmp, "--set", "data.augmentation.flip.prob=5"
    ), "data.augmentation.flip: prob must be in [0, 1]"


def case_select_metric_name(tmp):
    clean(tmp / "data")
    return _train(tmp, "--select-metric", "val_nope"), "train.select_metric 'val_nope' is not among"


def case_device_name(tmp):
    clean(tmp / "data")
    return _train(
        tmp, "--device", "gpu"
    ), "train.device must be auto, cpu, cuda or cuda:N, got 'gpu'"


def case_yaml_lr_word(tmp):
    clean(tmp / "data")
    cfg = _yaml(tmp / "run.yaml", "train:\n  lr: fast\n")
    return _train(tmp, "--config", str(cfg)), f"{cfg}: train.lr must be a number > 0, got 'fast'"


def case_yaml_patch_size_word(tmp):
    clean(tmp / "data")
    cfg = _yaml(tmp / "run.yaml", "data:\n  patch_size: big\n")
    return _train(tmp, "--config", str(cfg)), "data.patch_size must be a list of integers ≥ 1"


def case_yaml_options_list(tmp):
    clean(tmp / "data")
    cfg = _yaml(tmp / "run.yaml", "model:\n  options: [1, 2]\n")
    return _train(tmp, "--config", str(cfg)), "model.options must be a mapping, got [1, 2]"


def case_yaml_bool_as_int(tmp):
    clean(tmp / "data")
    cfg = _yaml(tmp / "run.yaml", "train:\n  batch_size: true\n")
    return _train(tmp, "--config", str(cfg)), "train.batch_size must be an integer ≥ 1, got True"


def case_yaml_unknown_section(tmp):
    clean(tmp / "data")
    cfg = _yaml(tmp / "run.yaml", "trian:\n  epochs: 3\n")
    return _train(tmp, "--config", str(cfg)), "unknown section(s) trian"


def case_yaml_broken(tmp):
    clean(tmp / "data")
    cfg = _yaml(tmp / "run.yaml", "train: {epochs: [1, \n")
    return _train(tmp, "--config", str(cfg)), f"{cfg}: not valid YAML"


def case_yaml_missing(tmp):
    clean(tmp / "data")
    return _train(
        tmp, "--config", str(tmp / "nope.yaml")
    ), f"{tmp / 'nope.yaml'}: config file not found"


def case_set_empty_key(tmp):
    clean(tmp / "data")
    return _train(tmp, "--set", "=3"), "--set '=3': the key before '=' is empty"


def case_set_no_equals(tmp):
    clean(tmp / "data")
    return _train(
        tmp, "--set", "foo"
    ), "--set needs KEY=VALUE (e.g. --set train.lr=0.01), got 'foo'"


def case_set_unknown_key(tmp):
    clean(tmp / "data")
    return _train(
        tmp, "--set", "train.nope=1"
    ), "cannot set 'train.nope': unknown key(s) nope in section train"


def case_set_unknown_section(tmp):
    clean(tmp / "data")
    return _train(
        tmp, "--set", "nosuchsection.x=1"
    ), "cannot set 'nosuchsection.x': unknown section 'nosuchsection'"


def case_set_below_a_value(tmp):
    clean(tmp / "data")
    return _train(
        tmp, "--set", "train.lr.x=1"
    ), "cannot set 'train.lr.x': train.lr is 0.001, not a mapping"


def case_run_dir_is_a_file(tmp):
    clean(tmp / "data")
    _garbage(tmp / "taken")
    return _train(
        tmp, "--run-dir", str(tmp / "taken")
    ), f"{tmp / 'taken'}: exists and is not a folder"


def case_run_dir_under_a_file(tmp):
    clean(tmp / "data")
    _garbage(tmp / "taken")
    return (
        _train(tmp, "--run-dir", str(tmp / "taken" / "run")),
        f"{tmp / 'taken' / 'run'}: cannot make a run folder here: {tmp / 'taken'} is a file",
    )


def case_output_is_a_file(tmp):
    clean(tmp / "data")
    _garbage(tmp / "runs.txt")
    return _train(
        tmp, "--output", str(tmp / "runs.txt")
    ), f"{tmp / 'runs.txt'}: exists and is not a folder"


def case_fails_after_the_run_folder_is_made(tmp):
    """The loss refuses the class weights only at the first step: the new runs/RUN folder goes again."""
    clean(tmp / "data")
    return (
        _train(tmp, "--loss", "ce", "--set", "loss.options.class_weights=[1, 2, 3]"),
        "class_weights has 3 value(s) but the logits give 2 classes",
    )


def case_existing_run_dir_is_kept_as_it_was(tmp):
    """A --run-dir that existed keeps its files, and only those."""
    clean(tmp / "data")
    (tmp / "mine").mkdir()
    (tmp / "mine" / "notes.txt").write_text("mine")
    return (
        _train(
            tmp,
            "--run-dir",
            str(tmp / "mine"),
            "--loss",
            "ce",
            "--set",
            "loss.options.class_weights=[1, 2, 3]",
        ),
        "class_weights has 3 value(s)",
    )


def case_resume_not_a_run(tmp):
    (tmp / "somewhere").mkdir()
    return [
        "train",
        "--resume",
        str(tmp / "somewhere"),
    ], f"{tmp / 'somewhere'}: not a unetkit run folder"


def case_resume_a_folds_run(tmp):
    for k in (0, 1):
        (tmp / "cv" / f"fold_{k}").mkdir(parents=True)
        (tmp / "cv" / f"fold_{k}" / "config.yaml").write_text("data: {}\n")
    return ["train", "--resume", str(tmp / "cv")], (
        f"{tmp / 'cv'}: is a --folds run: resume one fold at a time (--resume {tmp / 'cv/fold_0'}"
    )


def case_check_noise_mask(tmp):
    data = clean(tmp / "data")
    mask = np.random.default_rng(3).integers(0, 60000, (SIZE, SIZE)).astype(np.uint16)
    (data / "masks" / "01.png").unlink()
    tifffile.imwrite(data / "masks" / "01.tif", mask)
    return ["check-data", str(data)], f"{data / 'masks' / '01.tif'}: "


def case_check_float_noise_mask(tmp):
    data = clean(tmp / "data")
    (data / "masks" / "02.png").unlink()
    tifffile.imwrite(
        data / "masks" / "02.tif", np.random.default_rng(4).random((SIZE, SIZE)).astype(np.float32)
    )
    return ["check-data", str(data)], (
        f"{data / 'masks' / '02.tif'}: mask holds {SIZE * SIZE} non-integer value(s)"
    )


def case_check_rgb_into_one_channel(tmp):
    data = clean(tmp / "data")
    _png(data / "images" / "02.png", np.zeros((SIZE, SIZE, 3), np.uint8) + 50)
    return [
        "check-data",
        str(data),
        "--in-channels",
        "1",
    ], f"{data / 'images' / '02.png'}: 3 channel(s)"


def case_check_bad_image(tmp):
    data = clean(tmp / "data")
    _garbage(data / "images" / "00.png")
    return ["check-data", str(data)], str(data / "images" / "00.png")


def case_check_missing_dir(tmp):
    return ["check-data", str(tmp / "nope")], str(tmp / "nope")


CASES = {name[5:]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}

#: Runs cases in one interpreter: per case chdir into its folder, run ``python -m unetkit`` (runpy)
#: with its argv, capture stdout/stderr; an exception escaping the CLI is printed as a traceback.
DRIVER = r"""
import contextlib, io, json, os, runpy, sys, traceback
results = []
for folder, argv in json.load(sys.stdin):
    os.chdir(folder)
    out, err = io.StringIO(), io.StringIO()
    sys.argv = ["unetkit", *argv]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_module("unetkit", run_name="__main__", alter_sys=False)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
    results.append({"rc": code, "out": out.getvalue(), "err": err.getvalue()})
sys.__stdout__.write(json.dumps(results))
"""


def _tree(root: Path) -> set:
    """Every path under ``root``, relative: compared before and after a case to find leftovers."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Build every case, run them (two driver processes), and return ``{id: (result, expected, before, after)}``."""
    root = tmp_path_factory.mktemp("bad_inputs")
    jobs = {}
    for name, build in CASES.items():
        folder = root / name
        folder.mkdir()
        argv, expected = build(folder)
        jobs[name] = (folder, argv, expected, _tree(folder))
    names = list(jobs)
    halves = [names[0::2], names[1::2]]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", DRIVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in halves
    ]
    results = {}
    for proc, half in zip(procs, halves):
        proc.stdin.write(json.dumps([[str(jobs[n][0]), jobs[n][1]] for n in half]))
        proc.stdin.close()
    for proc, half in zip(procs, halves):
        out = proc.stdout.read()
        proc.wait(timeout=300)
        assert proc.returncode == 0, proc.stderr.read()
        results.update(zip(half, json.loads(out)))
    return {n: (results[n], jobs[n][2], jobs[n][3], _tree(jobs[n][0])) for n in names}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_named_line_and_leaves_nothing(corpus, case):
    result, expected, before, after = corpus[case]
    text = result["out"] + result["err"]
    assert result["rc"] == 2, text
    assert "Traceback" not in text, text
    assert expected in text, text
    if case.startswith("check_"):  # check-data: one line per problem, each naming its file
        assert any(
            line.strip().startswith(expected) or expected in line
            for line in result["out"].splitlines()
        )
    else:
        lines = [line for line in result["err"].splitlines() if line.strip()]
        command = "plan" if case.startswith("plan_") else "train"
        assert len(lines) == 1 and lines[0].startswith(f"unetkit {command}: error: "), result["err"]
    assert after == before, f"left behind: {sorted(after - before)}"


def test_python_m_unetkit_gives_the_same_one_line(tmp_path):
    """One case through a fresh ``python -m unetkit`` process, as a user runs it."""
    argv, expected = case_option_wrong_type(tmp_path)
    before = _tree(tmp_path)
    res = subprocess.run(
        [sys.executable, "-m", "unetkit", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [f"unetkit train: error: {expected}"]
    assert _tree(tmp_path) == before


def test_enough_cases():
    assert len(CASES) >= 25


# ----------------------------------------------------------------------- config type checks, direct
@pytest.mark.parametrize(
    "section, raw, message",
    [
        (
            "data",
            {"patch_size": "big"},
            "data.patch_size must be a list of integers ≥ 1 (or one integer ≥ 1) or null, "
            "got 'big'",
        ),
        ("data", {"patch_size": [64, 0]}, "data.patch_size must be a list of integers ≥ 1"),
        ("data", {"patch_size": [64.5]}, "data.patch_size must be"),
        ("data", {"val_fraction": 1}, "data.val_fraction must be a number in [0, 1), got 1"),
        (
            "data",
            {"val_fraction": "a fifth"},
            "data.val_fraction must be a number in [0, 1), got 'a fifth'",
        ),
        ("data", {"fg_fraction": 1.5}, "data.fg_fraction must be a number in [0, 1], got 1.5"),
        (
            "data",
            {"fg_classes": 0},
            "data.fg_classes must be a list of integers ≥ 0 or null, got 0",
        ),
        ("data", {"num_folds": 1}, "data.num_folds must be an integer ≥ 2 or null, got 1"),
        ("data", {"fold": 2}, "data.fold=2 (--fold) needs data.num_folds (--num-folds"),
        (
            "data",
            {"num_folds": 3, "fold": 3},
            "data.fold (--fold) must be in 0..2 for data.num_folds=3 (--num-folds), got 3",
        ),
        (
            "data",
            {"mask_kind": "rgb"},
            "data.mask_kind must be one of auto, labels, colors, instances, got 'rgb'",
        ),
        ("data", {"weight_map": "yes"}, "data.weight_map must be true or false, got 'yes'"),
        ("data", {"w0": -1}, "data.w0 must be a number ≥ 0, got -1"),
        ("data", {"sigma": 0}, "data.sigma must be a number > 0, got 0"),
        ("data", {"num_workers": 1.0}, "data.num_workers must be an integer ≥ 0, got 1.0"),
        ("data", {"train_dir": ""}, "data.train_dir must be a non-empty path or null, got ''"),
        ("data", {"train_dir": 5}, "data.train_dir must be a non-empty path or null, got 5"),
        ("data", {"normalization": "zscore"}, "data.normalization must be a mapping, got 'zscore'"),
        (
            "data",
            {"normalization": {"per_image": True}},
            "data.normalization must be a mapping with a 'name'",
        ),
        (
            "data",
            {"normalization": {"name": "zscore", "scale": 2}},
            "data.normalization.scale is not an option of normalization 'zscore'",
        ),
        ("data", {"augmentation": [1]}, "data.augmentation must be a mapping or null, got [1]"),
        (
            "data",
            {"augmentation": {"flip": {"prob": "often"}}},
            "data.augmentation.flip.prob must be a number, got 'often'",
        ),
        (
            "data",
            {"augmentation": {"spatial": {"warp": 1}}},
            "augmentation 'spatial' has no parameter(s) warp",
        ),
        ("model", {"name": 3}, "model.name must be a string, got 3"),
        ("model", {"name": "unet4"}, "model.name: unknown model 'unet4'"),
        ("model", {"options": [1, 2]}, "model.options must be a mapping, got [1, 2]"),
        (
            "model",
            {"options": {"depth": "deep"}},
            "model.options.depth must be an integer or null, got 'deep'",
        ),
        (
            "model",
            {"options": {"residual": 1}},
            "model.options.residual must be true or false, got 1",
        ),
        (
            "model",
            {"options": {"features": [8, "x"]}},
            "model.options.features must be a list of integers or null",
        ),
        (
            "model",
            {"options": {"padding": "full"}},
            "model 'unet' with model.options padding='full'",
        ),
        ("model", {"options": {"init": "xavier"}}, "init must be 'he' or 'torch', got 'xavier'"),
        ("loss", {"name": "dicey"}, "loss.name: unknown loss 'dicey'"),
        ("loss", {"name": "compound"}, "loss.options.weights is required by loss 'compound'"),
        (
            "loss",
            {"options": {"gamma": 2}},
            "loss.options.gamma is not an option of loss 'dice_ce'",
        ),
        (
            "loss",
            {"name": "focal", "options": {"gamma": "2x"}},
            "loss.options.gamma must be a number, got '2x'",
        ),
        (
            "loss",
            {"deep_supervision_weights": [1, -1]},
            "loss.deep_supervision_weights must be a list of numbers ≥ 0",
        ),
        ("loss", {"cgm_weight": None}, "loss.cgm_weight must be a number ≥ 0, got None"),
        ("train", {"epochs": "ten"}, "train.epochs must be an integer ≥ 1, got 'ten'"),
        ("train", {"epochs": 0}, "train.epochs must be an integer ≥ 1, got 0"),
        ("train", {"epochs": True}, "train.epochs must be an integer ≥ 1, got True"),
        (
            "train",
            {"iters_per_epoch": 2.0},
            "train.iters_per_epoch must be an integer ≥ 1, got 2.0",
        ),
        ("train", {"batch_size": "4"}, "train.batch_size must be an integer ≥ 1, got '4'"),
        ("train", {"lr": "fast"}, "train.lr must be a number > 0, got 'fast'"),
        ("train", {"lr": 0}, "train.lr must be a number > 0, got 0"),
        ("train", {"lr": float("inf")}, "train.lr must be a number > 0, got inf"),
        ("train", {"lr": False}, "train.lr must be a number > 0, got False"),
        ("train", {"momentum": 1}, "train.momentum must be a number in [0, 1), got 1"),
        ("train", {"weight_decay": -0.1}, "train.weight_decay must be a number ≥ 0, got -0.1"),
        ("train", {"grad_clip": "no"}, "train.grad_clip must be a number ≥ 0 or null, got 'no'"),
        (
            "train",
            {"optimizer": "lbfgs"},
            "train.optimizer must be one of sgd, adam, adamw, got 'lbfgs'",
        ),
        (
            "train",
            {"scheduler": 1},
            "train.scheduler must be one of poly, cosine, plateau, budget, none, got 1",
        ),
        (
            "train",
            {"precision": "fp64"},
            "train.precision must be one of auto, bf16, fp16, fp32, got 'fp64'",
        ),
        (
            "train",
            {"channels_last": "auto"},
            "train.channels_last must be true or false or null, got 'auto'",
        ),
        ("train", {"device": "gpu"}, "train.device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
        ("train", {"seed": -1}, "train.seed must be an integer in [0, 4294967295], got -1"),
        ("train", {"val_every": 0}, "train.val_every must be an integer ≥ 1, got 0"),
        (
            "train",
            {"early_stopping": 0},
            "train.early_stopping must be an integer ≥ 1 or null, got 0",
        ),
        (
            "train",
            {"time_budget_minutes": -5},
            "train.time_budget_minutes must be a number > 0 or null, got -5",
        ),
        (
            "train",
            {"select_metric": "val_nope"},
            "train.select_metric 'val_nope' is not among the validation values",
        ),
        ("train", {"select_metric": "dice"}, "train.select_metric 'dice' is not among"),
        ("train", {"postprocess": "yes"}, "train.postprocess must be one of auto, none, got 'yes'"),
        ("train", {"threads": 0}, "train.threads must be an integer ≥ 1 or null, got 0"),
        ("output_dir", "", "output_dir must be a non-empty path, got ''"),
        ("output_dir", ["runs"], "output_dir must be a non-empty path, got ['runs']"),
    ],
)
def test_config_field_is_checked(section, raw, message):
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict({section: raw})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_config_accepts_and_normalises_good_values(tmp_path):
    cfg = RunConfig.from_dict(
        {
            "data": {
                "patch_size": 64,
                "train_dir": tmp_path,
                "augmentation": {"spatial": {"elastic_sigma": [0, 10, 10]}},
                "normalization": {"name": "percentile", "lower": "0.5"},
            },
            "model": {"options": {"base_features": 8, "feature_scale": 2}},
            "loss": {"deep_supervision_weights": [1, 0.5]},
            "train": {
                "lr": "1e-3",
                "epochs": 3,
                "grad_clip": None,
                "select_metric": "val_dice_c12",
                "device": "cuda:1",
            },
        }
    )
    assert cfg.data.patch_size == [64] and cfg.data.train_dir == str(tmp_path)
    assert cfg.train.lr == 0.001 and cfg.data.normalization == {"name": "percentile", "lower": 0.5}
    assert cfg.model.options == {"base_features": 8, "feature_scale": 2}
    assert RunConfig.from_yaml(_yaml(tmp_path / "c.yaml", "train:\n  lr: 1e-3\n")).train.lr == 0.001


def test_every_field_has_a_check():
    """A field whose annotation the checker would not understand (a new type) fails here, not silently."""
    for cls in (DataConfig, ModelConfig, LossConfig, TrainConfig):
        for name in vars(cls()):
            with pytest.raises(ConfigError, match=rf"\.{name} must be"):
                cls(**{name: object()}).validate()


def test_check_value_words():
    assert check_value(3, float, "x") == 3 and check_value("2.5", float, "x") == 2.5
    assert check_value((1, 2), list, "x") == [1, 2]
    with pytest.raises(ConfigError, match=r"^x must be an integer in \(0, 5\], got 7$"):
        check_value(7, int, "x", {"gt": 0, "le": 5})


def test_override_keys_are_checked():
    cfg = RunConfig()
    assert cfg.override({"model.options.base_features": 8}).model.options == {"base_features": 8}
    assert cfg.override({"output_dir": "elsewhere"}).output_dir == "elsewhere"
    off = cfg.override({"data.augmentation": None})
    assert off.override({"data.augmentation.noise": False}).data.augmentation == {"noise": False}
    for key, message in (
        ("", "cannot set ''"),
        ("train..lr", "cannot set 'train..lr'"),
        ("train.epoch", "unknown key(s) epoch in section train; valid: epochs"),
        ("nosuch.x", "unknown section 'nosuch'"),
        ("train.lr.x", "train.lr is 0.001, not a mapping"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            cfg.override({key: 1})


def test_unwritable_run_folder_is_named(tmp_path, monkeypatch):
    """An existing folder without write permission is refused up front, naming the run folder (os.access
    is patched: the tests may run as root, for whom every folder is writable)."""
    from unetkit.errors import DataError
    from unetkit.training import trainer

    monkeypatch.setattr(trainer.os, "access", lambda path, mode: Path(path) != tmp_path)
    message = f"{tmp_path / 'run'}: cannot make a run folder here: {tmp_path} is not writable"
    with pytest.raises(DataError, match=f"^{re.escape(message)}$"):
        trainer.Trainer(
            RunConfig.from_dict({"data": {"train_dir": str(tmp_path)}}), run_dir=tmp_path / "run"
        )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["train", "data", "--time-budget", "abc"],
            "unetkit train: error: argument --time-budget: invalid float value: 'abc' "
            "(see 'unetkit train --help')",
        ),
        (
            ["train", "data", "--time-budget", "0"],
            "unetkit train: error: --time-budget must be > 0 minutes, got 0",
        ),
        (
            ["train", "data", "--time-budget", "inf"],
            "unetkit train: error: --time-budget must be > 0 minutes, got inf",
        ),
        (
            ["predict", "model.pt", "in"],
            "unetkit predict: error: the following arguments are required: --output/-o "
            "(see 'unetkit predict --help')",
        ),
        (
            ["evaluate", "pred", "truth", "--frob"],
            "unetkit evaluate: error: unrecognized arguments: --frob (see 'unetkit evaluate --help')",
        ),
    ],
)
def test_a_bad_flag_is_one_line_naming_the_help(argv, line, capsys):
    """argparse printed its usage block (20 lines for train) above the line that says what is
    wrong; like every other bad input it is one line now, exit status 2."""
    from unetkit import cli

    try:
        code = cli.main(argv)
    except SystemExit as stop:  # argparse's own errors exit; the command's return
        code = stop.code
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [line]


def test_output_piped_into_a_reader_that_stops_early_ends_quietly(tmp_path, monkeypatch, capsys):
    """``unetkit check-data DIR | head -1``: the pipe closes under the command; it ends with the
    SIGPIPE status and no BrokenPipeError traceback, its stdout pointed at the null device."""
    from unetkit import cli
    from unetkit.demo.synthetic import write_dataset

    data = write_dataset(tmp_path / "d", n_train=3, n_val=0, size=(32, 32), large_shape=(32, 32))
    with open(tmp_path / "stdout", "w") as sink:

        class ClosedPipe:
            def write(self, text):
                raise BrokenPipeError(32, "Broken pipe")

            def flush(self):
                pass

            def fileno(self):
                return sink.fileno()

        monkeypatch.setattr(sys, "stdout", ClosedPipe())
        assert cli.main(["check-data", str(data.train_dir)]) == 141
    assert capsys.readouterr().err == ""
    # a broken pipe elsewhere (a worker's, a socket's) is no reader gone: it is raised on
    monkeypatch.undo()
    import unetkit.commands.check_data as check_data

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe (a worker's)")

    monkeypatch.setattr(check_data, "run", broken)
    with pytest.raises(BrokenPipeError, match="a worker's"):
        cli.main(["check-data", str(data.train_dir)])


def test_progress_bars_only_where_someone_watches(monkeypatch):
    """A terminal or a Jupyter kernel gets bars; a pipe or a log file gets none (tens of kB of
    carriage returns before); progress=False is always off."""
    import io

    from unetkit.utils import progress_bars_off

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert progress_bars_off(True) is False and progress_bars_off(False) is True
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_bars_off(True) is True
    monkeypatch.setitem(sys.modules, "ipykernel", object())
    assert progress_bars_off(True) is False


def test_sigterm_is_turned_into_a_clean_stop_only_where_it_has_its_default_action():
    """A caller that ignores SIGTERM, or handles it, keeps that; with the default action the
    command stops as Ctrl-C stops it (Terminated), and the default is back afterwards."""
    import signal

    from unetkit import cli

    def mine(signum, frame):
        pass

    before = signal.getsignal(signal.SIGTERM)
    try:
        for theirs in (signal.SIG_IGN, mine):
            signal.signal(signal.SIGTERM, theirs)
            assert cli._stop_on_sigterm() is None and signal.getsignal(signal.SIGTERM) is theirs
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        previous = cli._stop_on_sigterm()
        assert previous is signal.SIG_DFL
        with pytest.raises(cli.Terminated):
            signal.raise_signal(signal.SIGTERM)
        cli._restore_sigterm(previous)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert issubclass(cli.Terminated, KeyboardInterrupt)  # stops a run as Ctrl-C does
    finally:
        signal.signal(signal.SIGTERM, before)

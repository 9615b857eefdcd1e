"""Every bad input to ``predict``, ``export`` and ``evaluate``: one line, exit status 2, the file /
value / path named, nothing left behind.

A malformed-input corpus is built in code once per module (a tiny untrained checkpoint written by
the real checkpoint writer, damaged copies of it, seeded images); each case runs the CLI as a
subprocess in its own folder. The cases run concurrently (each costs a Python + torch start-up),
then one parametrized test per case checks its result. The temp-file cleanup on rerun, grey-as-RGB
inputs and a full disk (ENOSPC, monkeypatched in-process) have their own tests.
"""

from __future__ import annotations

import copy
import errno
import os
import pathlib
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from unetkit import cli, create_model
from unetkit.checkpoint import save_checkpoint
from unetkit.data import LabelMap, create_normalizer
from unetkit.errors import OutputError
from unetkit.inference.batch import MODEL_RECORD, predict_files
from unetkit.inference.predictor import Predictor
from unetkit.utils import TEMP_NAME, atomic_path

SRC = Path(__file__).resolve().parents[1] / "src"
FIRST_WEIGHT = "encoder.stages.0.convs.0.0.weight"


# -- the corpus ------------------------------------------------------------------------------------
def _grey(rng, shape=(40, 48)) -> np.ndarray:
    return rng.integers(0, 255, shape, dtype=np.uint8)


def _build_corpus(root: Path) -> None:
    """Checkpoints (good and damaged), images and mask folders under ``root``, all seeded."""
    rng = np.random.default_rng(0)
    root.mkdir()
    model = create_model("unet", base_features=4, depth=2, norm="instance")
    good = save_checkpoint(
        root / "good.pt",
        model,
        normalization=create_normalizer("zscore").to_dict(),
        label_map=LabelMap([0, 255]).to_dict(),
        patch_size=[32, 32],
        with_rng=False,
    )
    ckpt = torch.load(good, weights_only=True)

    def damaged(name: str, change) -> None:
        c = copy.deepcopy(ckpt)
        change(c)
        torch.save(c, root / name)

    damaged("missing_key.pt", lambda c: c["state_dict"].pop(FIRST_WEIGHT))
    damaged(
        "wrong_shape.pt",
        lambda c: c["state_dict"].__setitem__(FIRST_WEIGHT, torch.zeros(2, 1, 3, 3)),
    )
    damaged("no_model.pt", lambda c: c.pop("model"))
    damaged("bad_meta.pt", lambda c: c.__setitem__("normalization", 5))
    damaged("unsafe.pt", lambda c: c["extra"].__setitem__("where", pathlib.PurePosixPath("/x")))
    data = bytearray(good.read_bytes())
    for at in range(len(data) // 3, len(data) // 3 * 2, 997):  # flipped bits inside the weights
        data[at] ^= 0x5A
    (root / "flipped.pt").write_bytes(bytes(data))
    (root / "cut.pt").write_bytes(good.read_bytes()[: len(data) // 2])
    (root / "text.pt").write_text("this is not a checkpoint\n")
    (root / "empty.pt").write_bytes(b"")
    Image.fromarray(_grey(rng, (8, 8))).save(root / "image.pt", format="PNG")

    Image.fromarray(_grey(rng)).save(root / "ok.png")
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / "colour.png")
    nan = rng.random((40, 48)).astype(np.float32)
    nan[3, 4] = np.nan
    tifffile.imwrite(root / "nan.tif", nan)
    inf = rng.random((40, 48)).astype(np.float32)
    inf[5, 6] = np.inf
    tifffile.imwrite(root / "inf.tif", inf)
    mixed = root / "mixed"  # two good images, then a colour one: refused before any output
    mixed.mkdir()
    Image.fromarray(_grey(rng)).save(mixed / "a.png")
    Image.fromarray(_grey(rng)).save(mixed / "b.png")
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(mixed / "c.png")
    cut = root / "cut"  # two good images, then a TIFF whose pixel data is cut short
    cut.mkdir()
    Image.fromarray(_grey(rng)).save(cut / "a.png")
    Image.fromarray(_grey(rng)).save(cut / "b.png")
    tifffile.imwrite(cut / "c.tif", _grey(rng, (400, 480)))
    whole = (cut / "c.tif").read_bytes()
    (cut / "c.tif").write_bytes(whole[: len(whole) // 2])

    for name in ("preds", "truth", "other", "small"):
        (root / name).mkdir()
    for stem in ("01", "02"):
        mask = (rng.random((16, 16)) > 0.5).astype(np.uint8) * 255
        Image.fromarray(mask).save(root / "truth" / f"{stem}.png")
        Image.fromarray(255 - mask).save(root / "preds" / f"{stem}.png")
        Image.fromarray(mask).save(root / "other" / f"x{stem}.png")
    Image.fromarray(np.zeros((8, 16), np.uint8)).save(root / "small" / "01.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "small" / "02.png")


# -- the cases: (id, argv builder, expected substring) -------------------------------------------
# A builder gets (corpus, case folder), may put files into the case folder (a file in the way, a
# copy of a checkpoint whose default export output would land beside it) and returns the argv.
# "{case}" in the expected text stands for the case folder.
def _predict(ckpt: str, inputs: str = "ok.png", out: str = "out", *extra: str):
    return lambda c, d: [
        "predict",
        str(c / ckpt),
        str(c / inputs),
        "--output",
        str(d / out),
        "--no-progress",
        *extra,
    ]


def _file_in_the_way(d: Path, name: str = "blocker") -> Path:
    (d / name).write_text("a file, not a folder\n")
    return d / name


def _copy(c: Path, d: Path, name: str) -> Path:
    return Path(shutil.copy(c / name, d / name))


CASES = [
    # predict: damaged or foreign checkpoints
    (
        "ckpt-missing-key",
        _predict("missing_key.pt"),
        f"missing_key.pt: weight '{FIRST_WEIGHT}' of the model 'unet' "
        "is missing from the checkpoint",
    ),
    (
        "ckpt-wrong-shape",
        _predict("wrong_shape.pt"),
        f"wrong_shape.pt: weight '{FIRST_WEIGHT}' has shape (2,1,3,3) "
        "but the model 'unet' expects (4,1,3,3)",
    ),
    ("ckpt-no-model", _predict("no_model.pt"), "no_model.pt: has no 'model' entry"),
    (
        "ckpt-bad-metadata-type",
        _predict("bad_meta.pt"),
        "bad_meta.pt: entry 'normalization' is int 5, expected dict",
    ),
    (
        "ckpt-unsafe-object",
        _predict("unsafe.pt"),
        "unsafe.pt: holds Python objects that are not allowed to load "
        "safely (GLOBAL pathlib.PurePosixPath)",
    ),
    ("ckpt-text-file", _predict("text.pt"), "text.pt: not a unetkit checkpoint (a text file)"),
    (
        "ckpt-bits-flipped",
        _predict("flipped.pt"),
        "flipped.pt: damaged checkpoint: the entry ",
    ),
    ("ckpt-truncated", _predict("cut.pt"), "cut.pt: cannot read checkpoint, truncated or not"),
    ("ckpt-empty-file", _predict("empty.pt"), "empty.pt: empty file (0 bytes)"),
    ("ckpt-png-file", _predict("image.pt"), "image.pt: not a unetkit checkpoint (a PNG image)"),
    ("ckpt-not-found", _predict("nowhere.pt"), "nowhere.pt: checkpoint not found"),
    ("ckpt-is-folder", _predict("mixed"), "mixed: is a folder, not a checkpoint file"),
    # predict: output locations
    (
        "out-is-a-file",
        lambda c, d: _predict("good.pt", "ok.png", str(_file_in_the_way(d)))(c, d),
        "{case}/blocker: exists and is a file, not a folder",
    ),
    (
        "out-under-a-file",
        lambda c, d: _predict("good.pt", "ok.png", str(_file_in_the_way(d) / "sub"))(c, d),
        "{case}/blocker/sub: cannot create it: {case}/blocker is a file, not a folder",
    ),
    # /proc refuses new entries even for root (tests run as root, so a chmod'ed folder would not do)
    (
        "out-cannot-be-created",
        lambda c, d: _predict("good.pt", "ok.png", "/proc/unetkit-test-out")(c, d),
        "/proc/unetkit-test-out: cannot create it there",
    ),
    # predict: inputs and numeric settings
    (
        "input-nan",
        _predict("good.pt", "nan.tif"),
        "nan.tif: image contains NaN or infinite values (1 NaN, 0 infinite)",
    ),
    (
        "input-inf",
        _predict("good.pt", "inf.tif"),
        "inf.tif: image contains NaN or infinite values (0 NaN, 1 infinite)",
    ),
    (
        "input-rgb-into-grey-model",
        _predict("good.pt", "colour.png"),
        "colour.png: the model expects 1 channel(s), the image has 3",
    ),
    ("input-not-found", _predict("good.pt", "nothing.png"), "nothing.png: input not found"),
    (
        "tile-zero",
        _predict("good.pt", "ok.png", "out", "--tile", "0"),
        "tile (--tile) must be positive integers like 512 or 96,128,128, got 0",
    ),
    (
        "tile-negative",
        _predict("good.pt", "ok.png", "out", "--tile=-16"),
        "(--tile) must be positive integers like 512 or 96,128,128, got -16",
    ),
    (
        "overlap-one-or-more",
        _predict("good.pt", "ok.png", "out", "--tile", "32", "--overlap", "1.5"),
        "overlap (--overlap) must be a fraction in [0, 1), e.g. 0.5, got 1.5",
    ),
    (
        "batch-size-zero",
        _predict("good.pt", "ok.png", "out", "--batch-size", "0"),
        "batch_size (--batch-size) must be a positive integer, got 0",
    ),
    (
        "max-tile-zero",
        _predict("good.pt", "ok.png", "out", "--max-tile", "0"),
        "max_tile (--max-tile) must be a positive integer, got 0",
    ),
    (
        "min-overlap-negative",
        _predict("good.pt", "ok.png", "out", "--min-overlap=-8"),
        "min_overlap (--min-overlap) must be an integer >= 0 (pixels), got -8",
    ),
    # export
    (
        "export-wrong-shape",
        lambda c, d: ["export", str(_copy(c, d, "wrong_shape.pt")), "--no-check"],
        "wrong_shape.pt: weight '" + FIRST_WEIGHT + "' has shape (2,1,3,3)",
    ),
    (
        "export-unsafe-object",
        lambda c, d: ["export", str(_copy(c, d, "unsafe.pt")), "--no-check"],
        "unsafe.pt: holds Python objects that are not allowed to load safely",
    ),
    (
        "export-text-file",
        lambda c, d: ["export", str(_copy(c, d, "text.pt")), "--no-check"],
        "text.pt: not a unetkit checkpoint (a text file)",
    ),
    (
        "export-not-found",
        lambda c, d: ["export", str(d / "gone.pt")],
        "gone.pt: checkpoint not found",
    ),
    (
        "export-bogus-format",
        lambda c, d: ["export", str(_copy(c, d, "good.pt")), "--format", "bogus"],
        "argument --format: invalid choice: 'bogus'",
    ),
    (
        "export-output-under-a-file",
        lambda c, d: [
            "export",
            str(c / "good.pt"),
            "--output",
            str(_file_in_the_way(d) / "m.onnx"),
            "--no-check",
        ],
        "{case}/blocker/m.onnx: cannot create it: {case}/blocker is a file, not a folder",
    ),
    (
        "export-output-is-a-folder",
        lambda c, d: ["export", str(c / "good.pt"), "--output", str(d), "--no-check"],
        "{case}: is a folder; give a file name",
    ),
    # evaluate
    (
        "eval-pred-folder-missing",
        lambda c, d: ["evaluate", str(d / "nopreds"), str(c / "truth"), "--out", str(d / "ev")],
        "{case}/nopreds: prediction folder not found",
    ),
    (
        "eval-truth-folder-missing",
        lambda c, d: ["evaluate", str(c / "preds"), str(d / "notruth"), "--out", str(d / "ev")],
        "{case}/notruth: truth mask folder not found",
    ),
    (
        "eval-no-matching-stems",
        lambda c, d: ["evaluate", str(c / "other"), str(c / "truth"), "--out", str(d / "ev")],
        "no prediction for 2 of 2 truth mask(s)",
    ),
    (
        "eval-size-mismatch",
        lambda c, d: ["evaluate", str(c / "small"), str(c / "truth"), "--out", str(d / "ev")],
        "small/01.png: prediction shape (8, 16) differs from the truth mask 01.png shape (16, 16)",
    ),
    (
        "eval-out-under-a-file",
        lambda c, d: [
            "evaluate",
            str(c / "preds"),
            str(c / "truth"),
            "--out",
            str(_file_in_the_way(d) / "ev"),
        ],
        "{case}/blocker/ev: cannot create it: {case}/blocker is a file, not a folder",
    ),
]

# every input is read and checked before the first output: a bad file after good ones leaves
# nothing either (inference.batch.check_inputs)
CASES += [
    (
        "input-rgb-in-folder",
        _predict("good.pt", "mixed"),
        "mixed/c.png: the model expects 1 channel(s), the image has 3",
    ),
    ("input-truncated-in-folder", _predict("good.pt", "cut"), "cut/c.tif: "),
]


def _snapshot(folder: Path) -> dict:
    """Every file and folder under ``folder`` (hidden ones included) → size and mtime (None: a folder)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(folder))] = None if p.is_dir() else (st.st_size, st.st_mtime_ns)
    return out


def _run_cli(argv: list) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "unetkit", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad_inputs")
    _build_corpus(root / "corpus")
    return root


@pytest.fixture(scope="module")
def results(corpus) -> dict:
    """Run every case (concurrently) and record exit status, stderr and its folder before/after."""
    c = corpus / "corpus"
    jobs = {}
    for case_id, build, _ in CASES:
        d = corpus / "cases" / case_id
        d.mkdir(parents=True)
        jobs[case_id] = (d, build(c, d))
    before = {case_id: _snapshot(d) for case_id, (d, _) in jobs.items()}
    corpus_before = _snapshot(c)
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        procs = dict(zip(jobs, pool.map(_run_cli, [argv for _, argv in jobs.values()])))
    return {
        "corpus_unchanged": _snapshot(c) == corpus_before,
        **{k: (procs[k], before[k], _snapshot(d), d) for k, (d, _) in jobs.items()},
    }


@pytest.mark.parametrize(
    "case_id, expected",
    [(case_id, expected) for case_id, _, expected in CASES],
    ids=[case_id for case_id, _, _ in CASES],
)
def test_bad_input_is_one_line_exit_2_named_and_leaves_nothing(results, case_id, expected):
    """Exit status 2, no traceback, the error on one line naming the file/value/path, no new files."""
    proc, before, after, folder = results[case_id]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1, proc.stderr
    command = case_id.split("-")[0] if case_id.split("-")[0] in ("export", "eval") else "predict"
    assert errors[0].startswith(
        f"unetkit {'evaluate' if command == 'eval' else command}: error: "
    ), errors[0]
    assert expected.replace("{case}", str(folder)) in errors[0]
    assert after == before, sorted(set(after) - set(before))  # nothing new, nothing changed


def test_the_corpus_itself_is_never_written_to(results):
    """No case wrote beside its inputs (export's default output, temp files, evaluation folders)."""
    assert results["corpus_unchanged"]


def test_corpus_has_enough_cases():
    """The issue asks for at least 25 malformed inputs across predict, export and evaluate."""
    kinds = {case_id.split("-")[0] for case_id, _, _ in CASES}
    assert len(CASES) >= 25 and {"export", "eval"} <= kinds


# -- in-process checks ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def predictor(corpus) -> Predictor:
    return Predictor.from_checkpoint(corpus / "corpus" / "good.pt", precision="fp32")


def test_rerun_removes_temp_files_a_killed_run_left(predictor, corpus, tmp_path):
    """A killed folder prediction leaves ``.<name>.<id>.tmp<suffix>`` files; the rerun deletes
    those (and only those: other hidden or ``tmp``-named files stay)."""
    out = tmp_path / "out"
    out.mkdir()
    stale = [
        out / ".a_overlay.0123456789ab.tmp.png",
        out / ".b.fedcba987654.tmp.png",
        out / ".b_prob.00ff00ff00ff.tmp",
    ]
    keep = [out / ".hidden.tmp.png", out / "notes.tmp.txt", out / ".a.0123456789ab.tmp.png.keep-me"]
    for p in stale + keep:
        p.write_bytes(b"half-written")
    res = predict_files(
        predictor, [corpus / "corpus" / "mixed" / "a.png"], out, overlay=True, progress=False
    )
    assert [r.status for r in res] == ["written"]
    assert all(TEMP_NAME.match(p.name) for p in stale) and not any(
        TEMP_NAME.match(p.name) for p in keep
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["a.png", "a_overlay.png", *(p.name for p in keep)]
    )


def test_grey_stored_as_rgb_is_read_as_grey(predictor, corpus, tmp_path):
    """A greyscale image saved as RGB (three equal channels) is predicted as the grey image it is,
    while a real colour image is refused (the corpus case input-rgb-into-grey-model)."""
    grey = np.asarray(Image.open(corpus / "corpus" / "ok.png"))
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(tmp_path / "rgbgrey.png")
    predict_files(
        predictor,
        [tmp_path / "rgbgrey.png", corpus / "corpus" / "ok.png"],
        tmp_path / "out",
        progress=False,
    )
    assert np.array_equal(
        np.asarray(Image.open(tmp_path / "out" / "rgbgrey.png")),
        np.asarray(Image.open(tmp_path / "out" / "ok.png")),
    )


def test_a_rerun_with_another_model_does_not_keep_the_first_models_outputs(
    corpus, tmp_path, capsys
):
    """Outputs are skipped as done only when the model that wrote them predicts again: after
    retraining, a rerun into the same folder is refused (one line, nothing written) until
    --overwrite, which predicts every input again and notes the new model."""
    c = corpus / "corpus"
    other = tmp_path / "other.pt"
    ckpt = torch.load(c / "good.pt", weights_only=True)
    ckpt["state_dict"][FIRST_WEIGHT] = ckpt["state_dict"][FIRST_WEIGHT] + 1.0  # "retrained"
    torch.save(ckpt, other)
    out = tmp_path / "out"

    def predict(model, *flags):
        argv = ["predict", str(model), str(c / "mixed" / "a.png"), str(c / "mixed" / "b.png")]
        argv += ["--output", str(out), "--no-progress", "--precision", "fp32", *flags]
        return cli.main(argv)

    assert predict(c / "good.pt") == 0
    first = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert sorted(first) == [MODEL_RECORD, "a.png", "b.png"]
    assert predict(c / "good.pt") == 0  # the same model: a rerun skips, saying how to redo them
    assert "skipped 2 already done (--overwrite predicts them again)" in (capsys.readouterr().out)
    assert predict(other) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"unetkit predict: error: {out}: holds the outputs of 2 input(s) (a, b) from another "
        "model (or pyramid level, --tta, --postprocess or --instances method) than this one; "
        "pass --overwrite to predict them again, or choose another --output"
    ]
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == first
    # the same model with settings that change the outputs: not "already done" either
    for flags in (["--tta"], ["--postprocess", "none"]):
        assert predict(c / "good.pt", *flags) == 2, flags
        assert "from another model (or pyramid level" in capsys.readouterr().err
    # watershed objects: no instance files yet, so all are predicted; then the components' run
    # would have skipped the watershed's files as done
    assert predict(c / "good.pt", "--instances", "watershed", "--overwrite") == 0
    assert (out / "a_instances.tif").is_file()
    assert predict(c / "good.pt", "--instances") == 2
    assert "from another model (or pyramid level" in capsys.readouterr().err
    first = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    # a --truth folder that is not there is refused before anything is predicted
    assert predict(other, "--overwrite", "--truth", str(tmp_path / "nowhere")) == 2
    assert capsys.readouterr().err.strip() == (
        f"unetkit predict: error: {tmp_path / 'nowhere'}: --truth: mask folder not found"
    )
    assert {p.name for p in out.iterdir()} >= set(first)
    assert (out / "a.png").stat().st_mtime_ns == first["a.png"]
    assert predict(other, "--overwrite") == 0
    assert "predicted 2 image(s), skipped 0 already done;" in capsys.readouterr().out
    assert predict(other) == 0  # now the record names the other model
    assert predict(c / "good.pt") == 2
    # a folder of outputs made before records were kept: skipped, and not claimed for this model
    (out / MODEL_RECORD).unlink()
    assert predict(c / "good.pt") == 0 and not (out / MODEL_RECORD).exists()
    (out / "b.png").unlink()  # one output predicted now beside an older one: still unclaimed
    assert predict(c / "good.pt") == 0 and not (out / MODEL_RECORD).exists()


def test_full_disk_is_one_line_and_keeps_finished_outputs(corpus, tmp_path, monkeypatch, capsys):
    """ENOSPC (simulated: PNG saving writes half a file, then fails as a full disk would) while
    writing the second image's labels: exit 2 with one line naming that file and the cause; the
    first image's outputs stay complete and no temporary file is left."""
    real_save = Image.Image.save
    calls = {"n": 0}

    def full_disk(self, fp, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # a.png, a_overlay.png, then b.png
            Path(fp).write_bytes(b"\x89PNG half")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", full_disk)
    out = tmp_path / "out"
    rc = cli.main(
        [
            "predict",
            str(corpus / "corpus" / "good.pt"),
            str(corpus / "corpus" / "mixed" / "a.png"),
            str(corpus / "corpus" / "mixed" / "b.png"),
            "--output",
            str(out),
            "--overlay",
            "--no-progress",
            "--precision",
            "fp32",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0] == (
        f"unetkit predict: error: {out / 'b.png'}: no space left on the device (disk full or quota "
        "reached); free some space or choose another output location"
    )
    monkeypatch.setattr(Image.Image, "save", real_save)
    # the record of the model that wrote them came with the first output
    assert sorted(p.name for p in out.iterdir()) == [MODEL_RECORD, "a.png", "a_overlay.png"]
    assert set(np.unique(np.asarray(Image.open(out / "a.png")))) <= {0, 255}


def test_atomic_path_reports_a_full_disk_as_output_error(tmp_path):
    """The one place every write goes through turns ENOSPC into an OutputError (also an OSError
    with its errno) naming the target, and removes the temporary file and the folder it created."""
    target = tmp_path / "new" / "x.bin"
    with (
        pytest.raises(OutputError, match=r"x\.bin: no space left on the device") as info,
        atomic_path(target) as tmp,
    ):
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_equal_channels_are_grey_only_in_2d():
    """Grey saved as RGB is read as grey for a one-channel model; three equal volumes of a 4D file
    (time points, echoes) are not a grey image, and the fix names one volume per file."""
    from types import SimpleNamespace

    from unetkit.errors import DataError
    from unetkit.inference.batch import check_image

    def model(dims):
        return SimpleNamespace(model=SimpleNamespace(in_channels=1), spatial_dims=dims)

    plane = np.random.default_rng(0).random((5, 6), dtype=np.float32)
    grey = check_image(np.stack([plane] * 3), model(2), Path("rgb.png"))
    assert grey.shape == (1, 5, 6) and np.array_equal(grey[0], plane)
    volume = np.stack([np.stack([plane] * 4)] * 3)  # (3, D, H, W), the volumes equal
    with pytest.raises(DataError) as err:
        check_image(volume, model(3), Path("four_d.nii.gz"))
    assert str(err.value) == (
        "four_d.nii.gz: the model expects 1 channel(s), the image has 3 (shape (3, 4, 5, 6)); a 4D "
        "file's volumes are read as channels: save the 1 volume(s) the model was trained on (one "
        "file per channel: CASE_0000, CASE_0001 …), or use a model trained on such volumes"
    )


def test_a_model_of_grey_images_stored_as_rgb_takes_grey_images(tmp_path):
    """Trained on grey stored as RGB (its plan's fingerprint says so), a 3-input model takes a
    grey image by copying it into its three channels; a model of real colour images still refuses
    one."""
    from unetkit.errors import DataError
    from unetkit.inference.batch import check_image

    def model(grey):
        path = tmp_path / f"{grey}.pt"
        save_checkpoint(
            path,
            create_model("unet", in_channels=3, base_features=4, depth=2),
            normalization=create_normalizer("zscore").to_dict(),
            label_map=LabelMap([0, 255]).to_dict(),
            extra={"plan": {"fingerprint": {"grey_as_colour": grey, "channels": 3}}},
        )
        return Predictor.from_checkpoint(path, precision="fp32")

    grey = np.random.default_rng(0).random((1, 8, 9), dtype=np.float32)
    rgb = check_image(grey, model(True), Path("g.png"))
    assert rgb.shape == (3, 8, 9) and all(np.array_equal(rgb[c], grey[0]) for c in range(3))
    from unetkit.inference.ensemble import EnsemblePredictor

    folds = EnsemblePredictor([model(True), model(True)])  # a --folds run's members
    assert check_image(grey, folds, Path("g.png")).shape == (3, 8, 9)
    assert not EnsemblePredictor([model(True), model(False)]).grey_as_colour
    with pytest.raises(
        DataError, match=r"g\.png: the model expects 3 channel\(s\), the image has 1"
    ):
        check_image(grey, model(False), Path("g.png"))

"""Predicting files and folders: outputs in the user's values and formats, skip-on-rerun, atomic
outputs, band-by-band prediction of large images equal to whole-image prediction, the CLI."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetkit import create_model
from unetkit.checkpoint import save_checkpoint
from unetkit.data import LabelMap, create_normalizer
from unetkit.errors import DataError
from unetkit.inference import batch as batch_mod
from unetkit.inference.batch import predict_files
from unetkit.inference.predictor import Predictor
from unetkit.io.lazy import open_lazy


@pytest.fixture
def checkpoint(tmp_path):
    model = create_model("unet", base_features=4, depth=2, norm="instance")
    return save_checkpoint(
        tmp_path / "model.pt",
        model,
        normalization=create_normalizer("zscore").to_dict(),
        label_map=LabelMap([0, 255]).to_dict(),
        patch_size=[32, 32],
    )


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 50), dtype=np.uint8)).save(d / f"im{i}.png")
    return d


def test_predict_folder_writes_user_values_and_skips_on_rerun(checkpoint, folder, tmp_path):
    pred = Predictor.from_checkpoint(checkpoint, precision="fp32")
    out = tmp_path / "out"
    res = predict_files(pred, [folder], out, probabilities="npz", overlay=True, progress=False)
    assert [r.status for r in res] == ["written"] * 3
    labels = np.asarray(Image.open(out / "im0.png"))
    assert labels.shape == (40, 50) and set(np.unique(labels)) <= {0, 255}
    probs = np.load(out / "im0_prob.npz")["probabilities"]
    assert probs.shape == (2, 40, 50) and probs.dtype == np.float16
    np.testing.assert_allclose(probs.astype(np.float32).sum(0), 1, atol=2e-3)
    expected = pred.predict(np.asarray(Image.open(folder / "im0.png"))[None])
    assert np.array_equal(labels == 255, expected == 1)
    assert np.asarray(Image.open(out / "im0_overlay.png")).shape == (40, 50, 3)
    again = predict_files(pred, [folder], out, probabilities="npz", overlay=True, progress=False)
    assert [r.status for r in again] == ["skipped"] * 3
    # one folder given as a string is one input (it was read as its characters, "d: not found")
    alone = predict_files(pred, str(folder), out, probabilities="npz", overlay=True, progress=False)
    assert [r.status for r in alone] == ["skipped"] * 3
    (out / "im1_overlay.png").unlink()  # an incomplete set of outputs is recomputed
    third = predict_files(pred, [folder], out, probabilities="npz", overlay=True, progress=False)
    assert [r.status for r in third] == ["skipped", "written", "skipped"]


def test_an_output_folder_holding_the_inputs_is_refused(checkpoint, folder, tmp_path):
    """PNG inputs would be replaced by their labels (--overwrite) or skipped as done: refused in
    one line, every input untouched; a folder beside or above the inputs is fine."""
    pred = Predictor.from_checkpoint(checkpoint, precision="fp32")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    for overwrite in (False, True):
        with pytest.raises(DataError, match=r"imgs: is where the inputs are \(e\.g\. im0\.png\)"):
            predict_files(pred, [folder], folder, overwrite=overwrite, progress=False)
    with pytest.raises(DataError, match="is where the inputs are"):
        predict_files(pred, [folder / "im1.png"], folder, progress=False)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    res = predict_files(pred, [folder], folder.parent, progress=False)  # above the inputs
    assert [r.status for r in res] == ["written"] * 3


def test_failure_mid_run_leaves_no_partial_files(checkpoint, folder, tmp_path, monkeypatch):
    pred = Predictor.from_checkpoint(checkpoint, precision="fp32")
    calls = {"n": 0}
    real = batch_mod.write_probabilities

    def flaky(path, probs, meta=None, label_map=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # like a user's Ctrl-C while writing
        real(path, probs, meta, label_map)

    monkeypatch.setattr(batch_mod, "write_probabilities", flaky)
    with pytest.raises(KeyboardInterrupt):
        predict_files(pred, [folder], tmp_path / "out", probabilities="tiff", progress=False)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["im0.png", "im0_prob.tif", "im1.png"]  # im1's probabilities never appeared
    monkeypatch.setattr(batch_mod, "write_probabilities", real)
    res = predict_files(pred, [folder], tmp_path / "out", probabilities="tiff", progress=False)
    assert [r.status for r in res] == ["skipped", "written", "written"]


def test_small_npy_images_are_read_whole_and_labelled_as_tiff(checkpoint, tmp_path):
    d = tmp_path / "arrays"
    d.mkdir()
    image = np.random.default_rng(4).normal(size=(40, 50)).astype(np.float32)
    np.save(d / "a.npy", image)
    pred = Predictor.from_checkpoint(checkpoint, precision="fp32")
    res = predict_files(pred, [d], tmp_path / "out", progress=False)
    assert res[0].status == "written" and res[0].mode != "band-by-band"
    labels = tifffile.imread(tmp_path / "out" / "a.tif")  # one ImageJ plane, (H, W)
    assert labels.shape == (40, 50)
    assert np.array_equal(labels == 255, pred.predict(image[None]) == 1)


@pytest.mark.parametrize("preset", ["unet", "unet-original"])
def test_band_by_band_equals_whole_image(preset, tmp_path, monkeypatch):
    model = create_model(
        preset, base_features=2, depth=2, init="torch", norm="none" if preset == "unet" else None
    )
    rng = np.random.default_rng(1)
    image = rng.normal(size=(1, 301, 257)).astype(np.float32)
    np.save(tmp_path / "big.npy", image)
    kwargs = dict(
        precision="fp32",
        max_tile=96,
        min_overlap=16,
        normalizer=create_normalizer("zscore"),
        label_map=LabelMap([0, 255]),
        batch_size=3,
    )
    pred = Predictor(model, **kwargs)
    whole = pred.predict_proba(image)
    monkeypatch.setattr(batch_mod, "LARGE_PIXELS", 1000)
    res = predict_files(
        pred, [tmp_path / "big.npy"], tmp_path / "out", probabilities="tiff", progress=False
    )
    assert res[0].mode == "band-by-band"
    probs = tifffile.imread(tmp_path / "out" / "big_prob.tif")
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs, whole, atol=1e-6)
    labels = tifffile.imread(tmp_path / "out" / "big.tif")
    assert np.array_equal(labels == 255, whole.argmax(0) == 1)
    assert not list((tmp_path / "out").glob("*partial*"))
    assert open_lazy(tmp_path / "big.npy").shape == (1, 301, 257)


def test_a_npy_volume_goes_slab_by_slab_for_a_model_with_a_target_spacing(tmp_path, monkeypatch):
    """A .npy file states no voxel size: taken to be on the model's grid, slab by slab, as whole."""
    model = create_model(
        "unet", spatial_dims=3, base_features=2, depth=2, norm="none", init="torch"
    )
    pred = Predictor(
        model,
        precision="fp32",
        normalizer=create_normalizer("zscore"),
        label_map=LabelMap([0, 1]),
        target_spacing=[2.0, 1.0, 1.0],
        spacing_unit="mm",
    )
    volume = np.random.default_rng(6).normal(size=(1, 20, 40, 36)).astype(np.float32)
    np.save(tmp_path / "vol.npy", volume)
    monkeypatch.setattr(batch_mod, "LARGE_PIXELS", 4000)
    res = predict_files(pred, [tmp_path / "vol.npy"], tmp_path / "out", progress=False)
    assert res[0].mode == "band-by-band"
    labels = tifffile.imread(res[0].outputs["labels"])
    assert labels.shape == (20, 40, 36)
    assert np.mean(labels == pred.predict(volume)) > 0.999  # slabs overlap: ties at most


class _MemorySink:
    """A band sink keeping the float32 rows it receives, to compare them exactly."""

    def __init__(self):
        self.rows, self.closed = [], False

    def write(self, y0, probs):
        assert y0 == sum(r.shape[1] for r in self.rows)  # rows arrive in order, none twice
        self.rows.append(np.array(probs))

    def close(self):
        self.closed = True


@pytest.mark.parametrize(
    "preset, blend, shape",
    [
        ("unet", "crop", (301, 257)),
        ("unet", "gaussian", (301, 257)),
        ("unet", "constant", (300, 77)),
        ("unet-original", "crop", (301, 257)),
        ("unet-original", "crop", (333, 50)),
    ],
)
def test_band_stitching_is_exactly_the_whole_image_stitching(preset, blend, shape, monkeypatch):
    # one tile loop and one stitcher for both paths: bit-identical float32 logits
    import unetkit.inference.predictor as predictor_mod
    from unetkit.inference.large import predict_large

    model = create_model(preset, base_features=2, depth=2, init="torch")
    image = np.random.default_rng(3).normal(size=(1, *shape)).astype(np.float32)
    pred = Predictor(model, precision="fp32", max_tile=96, min_overlap=16, blend=blend)
    assert len(pred.plan(shape).grid().rows()) > 1  # really several bands
    sink = _MemorySink()
    predict_large(pred, image, sink)
    assert sink.closed
    # the probabilities agree to float32 rounding (softmax of a band vs of the whole map)
    np.testing.assert_allclose(
        np.concatenate(sink.rows, axis=1), pred.predict_proba(image), rtol=0, atol=1e-6
    )
    monkeypatch.setattr(predictor_mod, "probabilities", lambda logits: logits)
    logits = _MemorySink()
    predict_large(pred, image, logits)
    assert np.array_equal(np.concatenate(logits.rows, axis=1), pred.predict_logits(image))


def test_nifti_volume_keeps_affine(tmp_path):
    import nibabel as nib

    model = create_model("unet", spatial_dims=3, base_features=2, depth=2, norm="instance")
    ckpt = save_checkpoint(
        tmp_path / "m.pt",
        model,
        normalization=create_normalizer("zscore").to_dict(),
        label_map=LabelMap([0, 1]).to_dict(),
    )
    affine = np.diag([0.5, 0.7, 2.0, 1.0])
    vol = np.random.default_rng(2).normal(size=(20, 18, 9)).astype(np.float32)
    scan = nib.Nifti1Image(vol, affine)
    scan.set_qform(affine, code=1)  # scanner coordinates in both, as scanners' converters write
    scan.set_sform(affine, code=1)
    nib.save(scan, tmp_path / "vol.nii.gz")
    res = predict_files(
        Predictor.from_checkpoint(ckpt, precision="fp32"),
        [tmp_path / "vol.nii.gz"],
        tmp_path / "out",
        progress=False,
    )
    out = nib.load(res[0].outputs["labels"])
    assert out.shape == (20, 18, 9) and np.allclose(out.affine, affine)
    # the same coordinate-system codes: viewers and registration tools read the same space
    assert (int(out.header["qform_code"]), int(out.header["sform_code"])) == (1, 1)
    assert np.allclose(out.get_qform(), affine) and np.allclose(out.get_sform(), affine)


def test_plain_folder_of_nnunet_channel_files_is_grouped_into_cases(tmp_path):
    """nnU-Net's imagesTs layout given as a plain folder: CASE_0000/CASE_0001 are the two channels
    of one case, predicted as nnU-Net's own predict does and named without the suffix; numbered
    frames for a 1-channel model stay one image per file."""
    import nibabel as nib

    model = create_model(
        "unet", spatial_dims=3, in_channels=2, base_features=2, depth=2, norm="instance"
    )
    ckpt = save_checkpoint(
        tmp_path / "m.pt",
        model,
        normalization=create_normalizer("zscore").to_dict(),
        label_map=LabelMap([0, 1]).to_dict(),
    )
    rng = np.random.default_rng(3)
    src = tmp_path / "imagesTs"
    src.mkdir()
    vols = {}
    for case in ("ct_01", "ct_02"):
        for ch in range(2):
            vols[case, ch] = rng.normal(size=(16, 12, 8)).astype(np.float32)
            nib.save(nib.Nifti1Image(vols[case, ch], np.eye(4)), src / f"{case}_{ch:04d}.nii.gz")
    pred = Predictor.from_checkpoint(ckpt, precision="fp32")
    res = predict_files(pred, [src], tmp_path / "out", progress=False)
    assert [r.case_id for r in res] == ["ct_01", "ct_02"]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz")) == [
        "ct_01.nii.gz",
        "ct_02.nii.gz",
    ]
    # a case without its second channel: not grouped, and the error says why
    (src / "ct_02_0001.nii.gz").rename(tmp_path / "moved.nii.gz")
    with pytest.raises(DataError, match=r"ct_01_0000.*CASE_0000 … CASE_0001, exactly the 2"):
        predict_files(pred, [src], tmp_path / "out_missing", progress=False)
    assert not (tmp_path / "out_missing").exists()
    (tmp_path / "moved.nii.gz").rename(src / "ct_02_0001.nii.gz")
    # the channel files of one case given one by one: one case, as in a folder
    one = [src / "ct_02_0000.nii.gz", src / "ct_02_0001.nii.gz"]
    (given,) = predict_files(pred, one, tmp_path / "given", progress=False)
    assert given.case_id == "ct_02" and (tmp_path / "given" / "ct_02.nii.gz").is_file()
    got = np.asarray(nib.load(tmp_path / "out" / "ct_02.nii.gz").dataobj)
    # read as (C, z, y, x), written back in the file's (x, y, z)
    stacked = np.stack([vols["ct_02", 0].T, vols["ct_02", 1].T])
    assert np.array_equal(got, pred.predict(stacked).T)

    # frames numbered _0000, _0001 for a 1-channel model: one image each, names kept
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (24, 20), dtype=np.uint8)).save(
            frames / f"f_{i:04d}.png"
        )
    grey = Predictor.from_checkpoint(
        save_checkpoint(
            tmp_path / "g.pt",
            create_model("unet", base_features=2, depth=2, norm="instance"),
            normalization=create_normalizer("zscore").to_dict(),
            label_map=LabelMap([0, 255]).to_dict(),
        ),
        precision="fp32",
    )
    res = predict_files(grey, [frames], tmp_path / "out2", progress=False)
    assert [r.case_id for r in res] == ["f_0000", "f_0001"]
    for i in range(2):  # a second series: numbered 2D files stay frames, one image each
        Image.fromarray(rng.integers(0, 255, (24, 20), dtype=np.uint8)).save(
            frames / f"g_{i:04d}.png"
        )
    res = predict_files(grey, [frames], tmp_path / "out3", progress=False)
    assert [r.case_id for r in res] == ["f_0000", "f_0001", "g_0000", "g_0001"]
    # two cases of two channel files each for a 1-channel model: refused, not one image per file
    with pytest.raises(DataError, match=r"nnU-Net channel files, 2 per case \(ct_01_0000 … "):
        predict_files(grey, [src], tmp_path / "out_grey", progress=False)
    assert not (tmp_path / "out_grey").exists()
    # a whole folder of _0000 files for a 1-channel model: the suffix goes, as in nnU-Net
    single = tmp_path / "single"
    single.mkdir()
    Image.fromarray(rng.integers(0, 255, (24, 20), dtype=np.uint8)).save(single / "a_0000.png")
    Image.fromarray(rng.integers(0, 255, (24, 20), dtype=np.uint8)).save(single / "b_0000.png")
    res = predict_files(grey, [single], tmp_path / "out3", progress=False)
    assert [r.case_id for r in res] == ["a", "b"]
    assert (tmp_path / "out3" / "a.png").is_file()


def test_voxel_sizes_are_compared_in_one_unit_and_a_wrong_unit_is_refused(tmp_path, monkeypatch):
    """A TIFF calibrated in mm for a model of µm files is predicted on its own grid (0.0005 mm is
    the model's 0.5 µm), not shrunk 1000-fold; one whose voxel size is 1000× the model's in its
    own unit is refused before anything is written."""
    from unetkit.io.meta import ImageMeta
    from unetkit.io.writers import write_image

    model = create_model("unet", base_features=4, depth=2, norm="instance")
    pred = Predictor(
        model,
        precision="fp32",
        normalizer=create_normalizer("zscore"),
        label_map=LabelMap([0, 255]),
        trained_spacing=[0.5, 0.5],
        spacing_unit="um",
    )
    image = np.random.default_rng(4).integers(0, 255, (1, 48, 40), dtype=np.uint8)
    src = tmp_path / "in"
    write_image(src / "mm.tif", image, ImageMeta(spacing=(5e-4, 5e-4), spacing_unit="mm"))
    res = predict_files(pred, [src / "mm.tif"], tmp_path / "out", progress=False)
    labels = tifffile.imread(res[0].outputs["labels"])
    assert np.array_equal(labels == 255, pred.predict(image) == 1)

    # the same file predicted band by band: converted there too
    monkeypatch.setattr(batch_mod, "LARGE_PIXELS", 1000)
    res = predict_files(pred, [src / "mm.tif"], tmp_path / "band", progress=False)
    assert res[0].mode == "band-by-band"
    band = tifffile.imread(res[0].outputs["labels"])
    assert np.mean(band == labels) > 0.999  # the band seams differ by ties at most
    monkeypatch.undo()

    write_image(src / "wrong.tif", image, ImageMeta(spacing=(500.0, 500.0), spacing_unit="um"))
    with pytest.raises(DataError, match=r"wrong.tif: voxel size 500×500 um is 1,000× coarser"):
        predict_files(pred, [src], tmp_path / "out2", progress=False)
    assert not (tmp_path / "out2").exists()


def test_cli_predict_and_errors(checkpoint, folder, tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "unetkit",
            "predict",
            str(checkpoint),
            str(folder),
            "--output",
            str(tmp_path / "o"),
            "--tta",
            "--precision",
            "fp32",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "predicted 3 image(s), skipped 0" in res.stdout
    from unetkit.runtime import cpu_info

    path_lines = [ln for ln in res.stdout.splitlines() if ln.startswith("compute path: ")]
    assert len(path_lines) == 1  # said once, with the ISA, the precision asked for and the threads
    assert (
        f"cpu {cpu_info().isa} (" in path_lines[0]
        and ", fp32, " in path_lines[0]
        and " threads" in path_lines[0]
    )
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "unetkit",
            "predict",
            str(tmp_path / "nope.pt"),
            str(folder),
            "--output",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "nope.pt: checkpoint not found" in res.stderr
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "unetkit",
            "predict",
            str(checkpoint),
            str(tmp_path / "missing"),
            "--output",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "missing: input not found" in res.stderr


def test_progress_bars_stay_out_of_a_log_file(checkpoint, folder, tmp_path, capfd):
    """progress=True with stderr not a terminal (a pipe, a log file, CI): no bar is drawn; the
    same call on a terminal draws one (tqdm's carriage returns)."""
    import sys

    pred = Predictor.from_checkpoint(checkpoint, precision="fp32")
    predict_files(pred, [folder], tmp_path / "log", progress=True)
    assert "predict:" not in capfd.readouterr().err

    class Terminal:
        def __init__(self, stream):
            self.stream = stream

        def isatty(self):
            return True

        def __getattr__(self, name):
            return getattr(self.stream, name)

    real = sys.stderr
    sys.stderr = Terminal(real)
    try:
        predict_files(pred, [folder], tmp_path / "tty", progress=True)
    finally:
        sys.stderr = real
    assert "predict:" in capfd.readouterr().err


def test_a_model_of_palette_masks_writes_palette_pngs(tmp_path):
    """Masks drawn as palette (P) PNGs: the labels come back as palette PNGs with the masks'
    colours (before: grey 0 … 3, near-black in a viewer); a TIFF output keeps the indices."""
    palette = [0, 0, 0, 255, 255, 0, 0, 128, 255, 200, 30, 30]
    model = create_model("unet", base_features=4, depth=2, norm="instance", num_classes=4)
    ckpt = save_checkpoint(
        tmp_path / "model.pt",
        model,
        normalization=create_normalizer("zscore").to_dict(),
        label_map=LabelMap([0, 1, 2, 3], palette=palette).to_dict(),
        patch_size=[32, 32],
    )
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    image = rng.integers(0, 255, (40, 44), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "in" / "a.png")
    tifffile.imwrite(tmp_path / "in" / "b.tif", image)
    predictor = Predictor.from_checkpoint(ckpt, precision="fp32")
    predict_files(predictor, [tmp_path / "in"], tmp_path / "out", progress=False)
    with Image.open(tmp_path / "out" / "a.png") as out:
        assert out.mode == "P" and out.getpalette()[: len(palette)] == palette
        indices = np.asarray(out)
    expected = predictor.postprocess.apply(predictor.predict_proba(image[None]).argmax(axis=0))
    assert np.array_equal(indices, expected)
    assert np.array_equal(tifffile.imread(tmp_path / "out" / "b.tif"), expected)


def test_probability_channels_name_their_class_and_mask_value(tmp_path, monkeypatch):
    """Fiji shows which class each probability channel is (ImageJ slice labels), in memory and
    band by band, 2D and 3D; a TIFF too large for ImageJ keeps them in its description."""
    from unetkit.inference.outputs import class_names, write_probabilities
    from unetkit.io.meta import ImageMeta

    lm = LabelMap([0, 85, 170, 255])
    names = [
        "class 0 (value 0)",
        "class 1 (value 85)",
        "class 2 (value 170)",
        "class 3 (value 255)",
    ]
    assert class_names(lm, 4) == names and class_names(None, 2) == ["class 0", "class 1"]
    assert class_names(LabelMap([(0, 0, 0), (0, 0, 255)], kind="colors"), 2)[1] == (
        "class 1 (colour (0, 0, 255))"
    )
    probs = np.random.default_rng(0).random((4, 3, 8, 9)).astype(np.float32)
    write_probabilities(tmp_path / "v.tif", probs, ImageMeta(spacing=(2.0, 1.0, 1.0)), lm)
    with tifffile.TiffFile(tmp_path / "v.tif") as tif:
        assert tif.imagej_metadata["Labels"] == names * 3  # Z × C planes
        assert np.array_equal(tif.asarray(), np.swapaxes(probs, 0, 1))
    model = create_model("unet", base_features=4, depth=2, norm="instance", num_classes=4)
    ckpt = save_checkpoint(
        tmp_path / "model.pt",
        model,
        normalization=create_normalizer("zscore").to_dict(),
        label_map=lm.to_dict(),
        patch_size=[32, 32],
    )
    image = np.random.default_rng(1).integers(0, 255, (300, 260), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "in.tif", image)
    predictor = Predictor.from_checkpoint(ckpt, precision="fp32")
    predict_files(predictor, [tmp_path / "in.tif"], tmp_path / "mem", "tiff", progress=False)
    monkeypatch.setattr(batch_mod, "_is_large", lambda path, level=0: True)  # band by band
    (band,) = predict_files(
        predictor, [tmp_path / "in.tif"], tmp_path / "band", "tiff", progress=False
    )
    assert band.mode == "band-by-band"
    for folder in ("mem", "band"):
        with tifffile.TiffFile(tmp_path / folder / "in_prob.tif") as tif:
            assert tif.imagej_metadata["Labels"] == names, folder

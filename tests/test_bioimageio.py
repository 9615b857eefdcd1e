"""bioimage.io packages: export (spec 0.5, tested offline by bioimageio.core), the normalisation
mapping checked against bioimage.io's own implementation, whole-image predictions of bioimageio.core
and unetkit compared, ``unetkit predict model.zip`` against ``predict best.pt``, and the errors."""

from __future__ import annotations

import gc
import io
import sys
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("bioimageio.core", reason="pip install 'unetkit[bioimageio]'")
pytest.importorskip("onnxruntime", reason="pip install 'unetkit[bioimageio]'")

from unetkit.checkpoint import save_checkpoint  # noqa: E402
from unetkit.cli import main  # noqa: E402
from unetkit.data.normalization import Normalizer  # noqa: E402
from unetkit.errors import ConfigError, DataError  # noqa: E402
from unetkit.inference import bioimageio as bio  # noqa: E402
from unetkit.inference.predictor import Predictor  # noqa: E402
from unetkit.inference.tiling import mirror_pad  # noqa: E402
from unetkit.io import read_image, write_image  # noqa: E402
from unetkit.models import SizeRule, create_model  # noqa: E402

#: bioimageio.core loads TorchScript weights with torch.jit.load, which torch 2.13 marks deprecated
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
TOL = 1e-4
LABELS = {
    "kind": "labels",
    "values": [0, 128, 255],
    "names": ["background", "cell", "edge"],
    "dtype": "uint8",
    "palette": None,
}
PER_IMAGE = {"name": "zscore", "params": {"per_image": True}, "stats": {}}
DATASET = {
    "name": "zscore",
    "params": {"per_image": False},
    "stats": {"mean": [90.0], "std": [30.0]},
}
PERCENTILE = {
    "name": "percentile",
    "params": {"lower": 2.0, "upper": 98.0, "per_image": True, "max_samples": 100000},
    "stats": {},
}
POSTPROCESS = {"steps": [{"name": "remove_small", "label": 1, "min_size": 4}], "connectivity": 1}
FINGERPRINT = {  # what a planned run stores (Fingerprint.to_dict()), reduced to one class
    "cases": 12,
    "spatial_dims": 2,
    "sizes": {"median": [64, 64], "min": [60, 64], "max": [70, 64]},
    "spacing": None,
    "channels": 1,
    "grey_as_colour": False,
    "intensity": [{"mean": 120.0, "std": 40.0, "p0_5": 20.0, "p99_5": 230.0}],
    "label_values": [0, 128, 255],
    "class_fraction": [0.7, 0.2, 0.1],
    "objects": {},
    "touching_fraction": 0.0,
    "seconds": 0.5,
}
EXTRA = {
    "postprocess": POSTPROCESS,
    "plan": {"fingerprint": FINGERPRINT},
    "best": {"epoch": 7, "metric": "val_dice", "value": 0.875},
}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny convs: one thread is far faster than two fighting other test processes for 2 cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", autouse=True)
def _quick_garbage_collection():
    """bioimageio.core runs a full garbage collection whenever it unloads a model (six times per
    test_model); with torch and pydantic loaded each takes ~0.3 s here. The modules are imported
    first (bioimageio.core; torch's compiler stack, which the test's determinism switch loads;
    dask, which xarray loads for the first tensor) and everything alive then is frozen: never
    scanned, freed as usual after ``gc.unfreeze``."""
    bio.require_bioimageio("bioimageio.core")
    from bioimageio.core import Tensor

    Tensor.from_numpy(np.zeros((1, 1), np.float32), dims=("batch", "channel"))
    torch.use_deterministic_algorithms(torch.are_deterministic_algorithms_enabled())
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


def make_checkpoint(path, name, normalization, spatial_dims=2, patch=32, **model_kw):
    """A tiny (widths 4, 8, 16: depth 2) seeded 3-class net with non-trivial random weights."""
    torch.manual_seed(0)
    model = create_model(
        name,
        features=(4, 8, 16),
        num_classes=3,
        spatial_dims=spatial_dims,
        init="torch",
        **model_kw,
    )
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.4)
    return save_checkpoint(
        path,
        model,
        label_map=LABELS,
        normalization=normalization,
        patch_size=[patch] * spatial_dims,
        extra=EXTRA,
        with_rng=False,
    )


def rdf_of(package) -> dict:
    with zipfile.ZipFile(package) as z:
        return yaml.safe_load(z.read("rdf.yaml"))


def steps(tensor: dict, key: str) -> list:
    return [p for p in tensor[key] if p["id"] != "ensure_dtype"]


def core_predict(package, image: np.ndarray) -> np.ndarray:
    """bioimageio.core's own whole-image prediction of ``image`` (C, *S): (K, *out)."""
    from bioimageio.core import predict

    sample = predict(model=str(package), inputs=image[None].astype(np.float32))
    return sample.members["probabilities"].to_numpy()[0]


@pytest.fixture(scope="module")
def same2d(tmp_path_factory):
    """A same-padding 2D U-Net normalised per image, exported with the full check."""
    folder = tmp_path_factory.mktemp("same2d")
    ckpt = make_checkpoint(folder / "best.pt", "unet", PER_IMAGE)
    report = bio.export_bioimageio(ckpt, folder / "model.zip", authors=["Ada Lovelace"])
    return SimpleNamespace(ckpt=ckpt, zip=report.path, report=report, folder=folder)


@pytest.fixture(scope="module")
def valid2d(tmp_path_factory):
    """The original (valid-padding) U-Net with dataset z-score statistics."""
    folder = tmp_path_factory.mktemp("valid2d")
    ckpt = make_checkpoint(folder / "best.pt", "unet-original", DATASET, patch=44)
    report = bio.export_bioimageio(ckpt, folder / "model.zip", authors=["Ada Lovelace"])
    return SimpleNamespace(ckpt=ckpt, zip=report.path, report=report)


# -- the package as written ------------------------------------------------------------------------
def test_same_padding_package_passes_bioimageio_test_and_reads_back(same2d):
    summary = same2d.report.test_summary  # test_model ran on the zip before it was renamed
    assert same2d.report.test_status == summary.status == "passed", bio._first_problem(summary)
    tested = {d.name for d in summary.details if d.status == "passed"}
    assert {
        f"Reproduce test outputs from test inputs ({w})" for w in ("torchscript", "onnx")
    } <= tested

    with zipfile.ZipFile(same2d.zip) as z:
        names = set(z.namelist())
        readme = z.read("README.md").decode()
        test_in = np.load(io.BytesIO(z.read("test_input.npy")))
        test_out = np.load(io.BytesIO(z.read("test_output.npy")))
    assert {"weights.torchscript.pt", "weights.onnx", "cover.png", "README.md"} <= names
    rdf = rdf_of(same2d.zip)
    assert set(rdf["weights"]) == {"torchscript", "onnx"}
    assert rdf["weights"]["onnx"]["opset_version"] == 17
    inp, out = rdf["inputs"][0], rdf["outputs"][0]
    # depth 2 → the exported graph takes multiples of 4 on each axis; the output is the input's size
    assert inp["axes"][:2] == [{"type": "batch"}, {"type": "channel", "channel_names": ["raw"]}]
    assert [a["size"] for a in inp["axes"][2:]] == [{"min": 4, "step": 4}] * 2
    assert [a["size"] for a in out["axes"][2:]] == [
        {"tensor_id": "raw", "axis_id": ax, "offset": 0} for ax in ("y", "x")
    ]
    assert out["axes"][1]["channel_names"] == LABELS["names"]
    assert steps(inp, "preprocessing") == [
        {"id": "zero_mean_unit_variance", "kwargs": {"axes": ["y", "x"]}}
    ]
    assert steps(out, "postprocessing") == [{"id": "softmax", "kwargs": {"axis": "channel"}}]
    assert [c["doi"] for c in rdf["cite"]] == ["10.1007/978-3-319-24574-4_28"]
    assert rdf["authors"] == [{"name": "Ada Lovelace"}] and rdf["license"] == "CC-BY-4.0"
    cfg = rdf["config"]["unetkit"]
    assert cfg["format"] == "unetkit-bioimageio" and cfg["label_map"] == LABELS
    assert cfg["normalization"] == PER_IMAGE and cfg["postprocess"] == POSTPROCESS
    assert "## Validation" in readme and "DeepImageJ" in readme and "QuPath" in readme
    assert "- 12 cases, 2D, sizes median 64×64 (min 60×64 … max 70×64 per axis) (H×W)" in readme
    assert "- best validation val_dice 0.875 at epoch 7" in readme
    # the test output is unetkit's own prediction of the test input (fp32, whole image)
    predictor = Predictor.from_checkpoint(same2d.ckpt, device="cpu", precision="fp32")
    assert test_in.shape == (1, 1, 32, 32) and test_out.shape == (1, 3, 32, 32)
    assert float(np.abs(predictor.predict_proba(test_in[0]) - test_out[0]).max()) <= TOL


def test_a_calibrated_model_states_its_pixel_size_and_resamples_as_its_checkpoint(tmp_path):
    """A model trained on files all at 0.325 µm: the package's axes say so (for Fiji and the other
    consumers), and unetkit predicting the package resamples a 0.65 µm image as the checkpoint
    does."""
    spread = {"min": [0.325, 0.325], "max": [0.33, 0.33], "files": 12, "units": ["um"]}
    fingerprint = {**FINGERPRINT, "spacing": [0.325, 0.325], "spacing_spread": spread}
    fingerprint["spacing_unit"] = "um"
    torch.manual_seed(0)
    model = create_model("unet", features=(4, 8, 16), num_classes=3, init="torch")
    ckpt = save_checkpoint(
        tmp_path / "best.pt",
        model,
        label_map=LABELS,
        normalization=PER_IMAGE,
        patch_size=[32, 32],
        extra={**EXTRA, "plan": {"fingerprint": fingerprint}},
        with_rng=False,
    )
    package = bio.export_bioimageio(ckpt, tmp_path / "m.zip", check=False).path
    rdf = rdf_of(package)
    for tensor in (rdf["inputs"][0], rdf["outputs"][0]):
        space = [a for a in tensor["axes"] if a["type"] == "space"]
        assert [(a["scale"], a["unit"]) for a in space] == [(0.325, "micrometer")] * 2
    assert rdf["config"]["unetkit"]["trained_spacing"] == [0.325, 0.325]
    ours = bio.package_predictor(package, tile=32)
    reference = Predictor.from_checkpoint(ckpt, precision="fp32")
    assert ours.trained_spacing == reference.trained_spacing == [0.325, 0.325]
    assert ours.spacing_unit == "um" and ours.resampling((0.65, 0.65)) == (2.0, 2.0)
    assert ours.postprocess == reference.postprocess


def test_the_test_tensors_and_cover_show_one_of_the_runs_images(tmp_path):
    """Asked for (--sample run), the package's sample is the run's first validation image large
    enough (centre-cropped), not noise, and its README says so; by default the seeded sample (a
    package for upload carries no crop of the user's data unasked)."""
    from PIL import Image

    from unetkit.config import RunConfig
    from unetkit.data.splits import save_splits

    data, run = tmp_path / "data", tmp_path / "run"
    rng = np.random.default_rng(3)
    images = {}
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True)
    for stem, shape in (("a", (70, 80)), ("small", (20, 20)), ("b", (90, 100))):
        images[stem] = rng.integers(0, 255, shape, dtype=np.uint8)
        Image.fromarray(images[stem]).save(data / "images" / f"{stem}.png")
        Image.fromarray((images[stem] > 128).astype(np.uint8) * 255).save(
            data / "masks" / f"{stem}.png"
        )
    config = RunConfig.from_dict({"data": {"train_dir": str(data)}})
    (run / "checkpoints").mkdir(parents=True)
    config.to_yaml(run / "config.yaml")
    save_splits(run / "splits.json", {"train": ["a"], "val": ["small", "b"]})
    ckpt = make_checkpoint(run / "checkpoints" / "best.pt", "unet", PER_IMAGE)
    package = bio.export_bioimageio(
        ckpt, tmp_path / "m.zip", check=False, input_size=32, sample="run"
    ).path
    with zipfile.ZipFile(package) as z:
        test_in = np.load(io.BytesIO(z.read("test_input.npy")))
        readme = z.read("README.md").decode()
    size = test_in.shape[2:]
    top, left = (90 - size[0]) // 2, (100 - size[1]) // 2  # 'small' is too small: 'b' is taken
    expected = images["b"][top : top + size[0], left : left + size[1]]
    np.testing.assert_array_equal(test_in[0, 0], expected.astype(np.float32))
    assert "a crop of one of the training run's own images" in readme

    default = bio.export_bioimageio(ckpt, tmp_path / "d.zip", check=False, input_size=32).path
    with zipfile.ZipFile(default) as z:
        seeded = np.load(io.BytesIO(z.read("test_input.npy")))
        assert "a seeded synthetic sample image" in z.read("README.md").decode()
    assert not np.array_equal(seeded[0, 0], expected.astype(np.float32))

    alone = tmp_path / "alone.pt"
    alone.write_bytes(ckpt.read_bytes())
    assert bio.run_sample(alone, size, 1) is None
    with pytest.raises(DataError, match="alone.pt: --sample run: no image of the run"):
        bio.export_bioimageio(alone, tmp_path / "x.zip", check=False, sample="run")
    assert not (tmp_path / "x.zip").exists()


def test_a_package_given_as_a_checkpoint_is_named(same2d):
    from unetkit.checkpoint import load_checkpoint

    with pytest.raises(DataError, match=r"model\.zip: is a bioimage\.io package, not a checkpoint"):
        load_checkpoint(same2d.zip)


def test_bioimageio_core_predicts_as_unetkit_on_a_fresh_image(same2d):
    image = np.random.default_rng(7).normal(120, 40, (1, 40, 52)).astype(np.float32)
    ours = Predictor.from_checkpoint(same2d.ckpt, device="cpu", precision="fp32")
    assert len(ours.plan(image.shape[1:]).grid().tiles) == 1  # whole image on both sides
    theirs = core_predict(same2d.zip, image)
    expected = ours.predict_proba(image)
    assert theirs.shape == expected.shape == (3, 40, 52)
    assert float(np.abs(theirs - expected).max()) <= TOL
    assert (theirs.argmax(0) != expected.argmax(0)).sum() <= 1  # ties at most


def test_valid_padding_package_has_the_offset_and_predicts_as_unetkit(valid2d):
    assert valid2d.report.test_status == "passed"
    rdf = rdf_of(valid2d.zip)
    inp, out = rdf["inputs"][0], rdf["outputs"][0]
    # valid convs, depth 2: inputs 44 + 4·k, output = input − 40 (two 3×3 convs lose 4 px per level)
    assert [a["size"] for a in inp["axes"][2:]] == [{"min": 44, "step": 4}] * 2
    assert [a["size"]["offset"] for a in out["axes"][2:]] == [-40, -40]
    std = 30.0  # dataset z-score (mean 90, std 30): exact as x · (1/30) − 3
    assert steps(inp, "preprocessing") == [
        {"id": "scale_linear", "kwargs": {"gain": 1 / std, "offset": -90.0 / std}}
    ]
    # bioimage.io sees the mirror-padded image; unetkit pads it itself (one overlap tile)
    image = np.random.default_rng(3).normal(90, 30, (1, 36, 28)).astype(np.float32)
    ours = Predictor.from_checkpoint(valid2d.ckpt, device="cpu", precision="fp32", tile=[76, 68])
    assert len(ours.plan(image.shape[1:]).grid().tiles) == 1
    theirs = core_predict(valid2d.zip, mirror_pad(image, (20, 20), (20, 20)))
    expected = ours.predict_proba(image)
    assert theirs.shape == expected.shape == (3, 36, 28)
    assert float(np.abs(theirs - expected).max()) <= TOL
    # read back: the rule from the axes is the net's own, and unetkit's tiling of the package agrees
    model = create_model("unet-original", features=(4, 8, 16))
    assert bio.load_package(valid2d.zip).rule == model.size_rule()
    packaged = bio.package_predictor(valid2d.zip, backend="onnxruntime", tile=[56, 52], threads=1)
    reference = Predictor.from_checkpoint(
        valid2d.ckpt, device="cpu", precision="fp32", tile=[56, 52]
    )
    assert (
        packaged.plan((36, 28)) == reference.plan((36, 28))
        and len(reference.plan((36, 28)).grid().tiles) > 1
    )
    assert float(np.abs(packaged.predict_proba(image) - expected).max()) <= TOL


def test_3d_package_with_percentile_preprocessing(tmp_path):
    ckpt = make_checkpoint(tmp_path / "best.pt", "unet", PERCENTILE, spatial_dims=3, patch=16)
    report = bio.export_bioimageio(ckpt, tmp_path / "m.zip", authors=["A B"], check=False)
    rdf = rdf_of(report.path)
    inp = rdf["inputs"][0]
    assert [a["id"] for a in inp["axes"][2:]] == ["z", "y", "x"]
    assert [a["size"] for a in inp["axes"][2:]] == [{"min": 4, "step": 4}] * 3
    assert steps(inp, "preprocessing") == [
        {
            "id": "scale_range",
            "kwargs": {"axes": ["z", "y", "x"], "min_percentile": 2.0, "max_percentile": 98.0},
        },
        {"id": "clip", "kwargs": {"min": 0.0, "max": 1.0}},
    ]
    assert "10.1007/978-3-319-46723-8_49" in [c["doi"] for c in rdf["cite"]]  # 3D U-Net
    image = np.random.default_rng(5).gamma(2.0, 50.0, (1, 12, 16, 20)).astype(np.float32)
    expected = Predictor.from_checkpoint(ckpt, device="cpu", precision="fp32").predict_proba(image)
    assert float(np.abs(core_predict(report.path, image) - expected).max()) <= TOL


# -- the normalisation mapping ---------------------------------------------------------------------
def apply_core_preprocessing(preprocessing: list, image: np.ndarray) -> np.ndarray:
    """bioimageio.core's implementation of a preprocessing list on one image (C, *S)."""
    from bioimageio.core import Sample, Tensor
    from bioimageio.core.proc_setup import setup_pre_and_postprocessing
    from bioimageio.spec.model import v0_5

    dims = image.ndim - 1
    rule = SizeRule.uniform(dims, "same", 4, 4, period=4)
    descr = v0_5.InputTensorDescr(
        id="raw", axes=bio.input_axes(rule, image.shape[0]), preprocessing=preprocessing
    )
    ops = setup_pre_and_postprocessing(SimpleNamespace(inputs=[descr], outputs=[]), []).pre
    axes = ["batch", "channel", *bio.spatial_axis_ids(dims)]
    sample = Sample(members={"raw": Tensor.from_numpy(image[None], dims=axes)}, stat={}, id=0)
    for op in ops:
        op(sample)
    return sample.members["raw"].to_numpy()[0]


NORMALIZATIONS = {
    "zscore-per-image": (PER_IMAGE, 1),
    "zscore-dataset": (DATASET, 1),
    "zscore-dataset-2ch": (
        {
            "name": "zscore",
            "params": {"per_image": False},
            "stats": {"mean": [5, -2], "std": [2, 0]},
        },
        2,
    ),
    "percentile-per-image": (PERCENTILE, 1),
    "percentile-dataset-2ch": (
        {
            "name": "percentile",
            "params": {"per_image": False},
            "stats": {"low": [3, 1], "high": [9, 2]},
        },
        2,
    ),
    "minmax-per-image": ({"name": "minmax", "params": {"per_image": True}, "stats": {}}, 1),
    "minmax-dataset": (
        {"name": "minmax", "params": {"per_image": False}, "stats": {"low": [0.5], "high": [7.5]}},
        1,
    ),
    "fixed": ({"name": "fixed", "params": {"low": -1000, "high": 400}, "stats": {}}, 1),
    "fixed-2ch": ({"name": "fixed", "params": {"low": [0, 10], "high": [255, 20]}, "stats": {}}, 2),
    "none": ({"name": "none", "params": {}, "stats": {}}, 1),
    "ct": (
        {
            "name": "ct",
            "params": {"lower": 0.5, "upper": 99.5},
            "stats": {"low": [4.0], "high": [300.0], "mean": [60.0], "std": [45.0]},
        },
        1,
    ),
}


@pytest.mark.parametrize("normalization, channels", NORMALIZATIONS.values(), ids=NORMALIZATIONS)
def test_preprocessing_computes_the_unetkit_normalisation(normalization, channels):
    image = np.random.default_rng(0).normal(5, 4, (channels, 20, 24)).astype(np.float32) ** 2
    image[-1, :3] = 1500.0  # a few bright pixels: clipping and percentiles matter
    steps_ = bio.preprocessing_for(normalization, channels, 2)
    expected = Normalizer.from_dict(normalization)(image)
    got = apply_core_preprocessing(steps_, image)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-5)


def test_preprocessing_refuses_what_it_cannot_express():
    two_windows = {"low": [0, 0], "high": [100, 200], "mean": [50, 50], "std": [10, 10]}
    with pytest.raises(ConfigError, match="channels have different windows"):
        bio.preprocessing_for({"name": "ct", "params": {}, "stats": two_windows}, 2, 2)
    with pytest.raises(ConfigError, match=r"normalisation 'gamma' has no exact bioimage\.io"):
        bio.preprocessing_for({"name": "gamma", "params": {}, "stats": {}}, 1, 2)
    with pytest.raises(ConfigError, match=r"upper percentile 0\.9: .* export refused"):
        bio.preprocessing_for(
            {"name": "percentile", "params": {"lower": 0.1, "upper": 0.9, "per_image": True}}, 1, 2
        )
    with pytest.raises(ConfigError, match="zscore normalisation with dataset statistics was never"):
        bio.preprocessing_for({"name": "zscore", "params": {"per_image": False}, "stats": {}}, 1, 2)
    with pytest.raises(ConfigError, match=r"std must be one finite value or one per channel \(2\)"):
        bio.preprocessing_for(
            {"name": "zscore", "params": {}, "stats": {"mean": [1, 2, 3], "std": [1, 2, 3]}}, 2, 2
        )
    assert bio.preprocessing_for({"name": "fixed", "params": {"low": 0, "high": 1}}, 1, 2) == [
        {"id": "clip", "kwargs": {"min": 0.0, "max": 1.0}}  # identity scaling is left out
    ]


def test_names_citations_and_the_one_channel_output():
    assert bio.class_names(LABELS, 3) == ["background", "cell", "edge"]
    assert bio.class_names({"values": [0, 255]}, 1) == ["class1 (value 255)"]  # the foreground
    assert bio.postprocessing_for(1) == [{"id": "sigmoid"}]
    dois = {
        preset: [c["doi"] for c in bio.citations(preset, cls, 2)]
        for preset, cls in [
            ("unet", "UNet"),
            ("unetpp-ds", "UNetPlusPlus"),
            ("unet3plus", "UNet3Plus"),
        ]
    }
    assert dois == {
        "unet": ["10.1007/978-3-319-24574-4_28"],
        "unetpp-ds": ["10.1007/978-3-319-24574-4_28", "10.1007/978-3-030-00889-5_1"],
        "unet3plus": ["10.1007/978-3-319-24574-4_28", "10.1109/ICASSP40776.2020.9053405"],
    }


# -- predict model.zip -----------------------------------------------------------------------------
def test_cli_predict_package_gives_the_checkpoints_labels(same2d, tmp_path, capsys):
    images = tmp_path / "images"
    rng = np.random.default_rng(11)
    for i, shape in enumerate([(50, 70), (33, 45)]):  # sizes not multiples of the graph's 4
        write_image(images / f"im{i}.tif", rng.normal(120, 40, (1, *shape)).astype(np.float32))
    common = ["--device", "cpu", "--threads", "1", "--no-progress", "--max-tile", "32"]
    common += ["--min-overlap", "8"]  # several tiles per image
    fp32 = ["--precision", "fp32"]  # as the package's TorchScript runs, on either CPU path
    assert (
        main(["predict", str(same2d.ckpt), str(images), "-o", str(tmp_path / "a"), *common, *fp32])
        == 0
    )
    assert main(["predict", str(same2d.zip), str(images), "-o", str(tmp_path / "b"), *common]) == 0
    out = capsys.readouterr().out
    assert "bioimage.io package, torchscript weights via bioimageio.core (cpu)" in out
    assert "post-processing (chosen on validation): remove class 1 objects under 4 px" in out
    for i in range(2):
        a = read_image(tmp_path / "a" / f"im{i}.tif")[0]
        b = read_image(tmp_path / "b" / f"im{i}.tif")[0]
        assert set(np.unique(a)) <= {0, 128, 255}  # written in the label map's values
        assert np.array_equal(a, b)


def test_onnx_weights_and_a_foreign_package_predict_alike(same2d, tmp_path):
    image = np.random.default_rng(2).normal(120, 40, (1, 70, 90)).astype(np.float32)
    kw = dict(max_tile=48, min_overlap=16, threads=1)
    reference = Predictor.from_checkpoint(same2d.ckpt, device="cpu", precision="fp32", **kw)
    expected = reference.predict_proba(image)
    onnx = bio.package_predictor(same2d.zip, backend="onnxruntime", **kw)
    assert onnx.runner.weights == "onnx" and onnx.plan((70, 90)) == reference.plan((70, 90))
    assert float(np.abs(onnx.predict_proba(image) - expected).max()) <= TOL

    # without config.unetkit the package is foreign: bioimage.io's preprocessing, no label map
    foreign = tmp_path / "foreign.zip"
    rdf = rdf_of(same2d.zip)
    del rdf["config"]["unetkit"]
    with zipfile.ZipFile(same2d.zip) as src, zipfile.ZipFile(foreign, "w") as dst:
        for item in src.namelist():
            data = yaml.safe_dump(rdf).encode() if item == "rdf.yaml" else src.read(item)
            dst.writestr(item, data)
    package = bio.load_package(foreign)
    assert not package.ours and package.activation == "softmax"
    assert package.rule == create_model("unet", features=(4, 8, 16)).size_rule().for_export()
    predictor = bio.package_predictor(foreign, **kw)
    assert isinstance(predictor.normalizer, bio.PackagePreprocessing)
    assert predictor.label_map is None and not predictor.postprocess
    assert float(np.abs(predictor.predict_proba(image) - expected).max()) <= TOL
    with pytest.raises(DataError, match="bioimage.io's own; images predicted band by band"):
        predictor.normalizer.to_dict()


# -- errors ----------------------------------------------------------------------------------------
def test_bad_packages_are_one_line_errors(tmp_path, capsys):
    image = tmp_path / "im.tif"
    write_image(image, np.zeros((1, 8, 8), np.float32))
    not_zip = tmp_path / "model.zip"
    not_zip.write_bytes(b"PK but not really a zip")
    no_rdf = tmp_path / "empty.zip"
    with zipfile.ZipFile(no_rdf, "w") as z:
        z.writestr("weights.onnx", b"")
    cases = [
        (not_zip, "not a bioimage.io package (not a zip file); give the .zip of a bioimage.io"),
        (no_rdf, "not a bioimage.io package: the zip holds no rdf.yaml (nor bioimageio.yaml)"),
        (tmp_path / "missing.zip", "bioimage.io package not found"),
    ]
    for path, message in cases:
        assert main(["predict", str(path), str(image), "-o", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"unetkit predict: error: {path}: {message}")
        assert err.count("\n") == 1 and err.endswith("\n")
    bad_axes = tmp_path / "axes.zip"
    with zipfile.ZipFile(bad_axes, "w") as z:
        z.writestr("rdf.yaml", "type: model\nformat_version: 0.5.12\n")
    with pytest.raises(DataError, match=r"axes\.zip: invalid bioimage\.io package \("):
        bio.load_package(bad_axes)


def test_export_refusals(tmp_path, monkeypatch):
    ckpt = make_checkpoint(
        tmp_path / "best.pt", "unet", {"name": "gamma", "params": {}, "stats": {}}
    )
    with pytest.raises(ConfigError, match="normalisation 'gamma' has no exact bioimage.io"):
        bio.export_bioimageio(ckpt, tmp_path / "m.zip", authors=["A B"])
    good = make_checkpoint(tmp_path / "good.pt", "unet", PER_IMAGE)
    with pytest.raises(ConfigError, match="license 'MIT-ish' is not an SPDX identifier"):
        bio.export_bioimageio(good, tmp_path / "m.zip", license="MIT-ish")
    with pytest.raises(ConfigError, match="author 'a/b': give a name without '/'"):
        bio.export_bioimageio(good, tmp_path / "m.zip", authors=["a/b"])
    with pytest.raises(ConfigError, match=r"a bioimage\.io package is a \.zip file"):
        bio.export_bioimageio(good, tmp_path / "m.onnx")
    scaled = torch.load(good, weights_only=True)
    scaled["config"] = {"data": {"scale": 0.5}}
    with pytest.raises(ConfigError, match=r"works at 0\.5 of the stored resolution"):
        bio.export_bioimageio(scaled, tmp_path / "m.zip")
    monkeypatch.setitem(sys.modules, "bioimageio.core", None)  # import now raises ImportError
    with pytest.raises(ConfigError, match=r"install it with: pip install 'unetkit\[bioimageio\]'$"):
        bio.export_bioimageio(good, tmp_path / "m.zip")
    assert not (tmp_path / "m.zip").exists()


def test_export_failures_leave_no_file(tmp_path, monkeypatch):
    ckpt = make_checkpoint(tmp_path / "best.pt", "unet", PER_IMAGE)
    out = tmp_path / "m.zip"

    def untraceable(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::magic' to ONNX is not supported\nmore")

    with monkeypatch.context() as m:
        m.setattr(bio, "export_onnx", untraceable)
        with pytest.raises(
            ConfigError,
            match=r"^unet cannot be exported to ONNX \(RuntimeError: Exporting the operator "
            r"'aten::magic' to ONNX is not supported\); a bioimage\.io package needs both",
        ):
            bio.export_bioimageio(ckpt, out, authors=["A B"])
    failed = SimpleNamespace(
        status="failed",
        details=[
            SimpleNamespace(
                name="Reproduce test outputs from test inputs (onnx)",
                errors=[
                    SimpleNamespace(
                        loc=("weights", "onnx"),
                        msg="Output 'probabilities':\n3 of 3072 elements disagree",
                    )
                ],
            )
        ],
    )
    monkeypatch.setattr(bio, "test_package", lambda path: failed)
    with pytest.raises(
        bio.ExportCheckError,
        match=r"m\.zip: bioimageio\.core test_model failed \(Reproduce test outputs from test "
        r"inputs \(onnx\): weights\.onnx: Output 'probabilities': 3 of 3072 elements disagree\); "
        r"nothing was written$",
    ):
        bio.export_bioimageio(ckpt, out, authors=["A B"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


def test_cli_export_bioimageio(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "best.pt", "unet", DATASET)
    sample = tmp_path / "sample.tif"
    write_image(sample, np.random.default_rng(0).normal(90, 30, (1, 40, 40)).astype(np.float32))
    args = ["export", str(ckpt), "--format", "bioimageio", "--author", "Ada Lovelace"]
    args += ["--author", "Alan Turing", "--license", "MIT", "--tag", "nuclei", "--no-check"]
    assert main([*args, "--sample", str(sample)]) == 0
    out = capsys.readouterr().out
    path = tmp_path / "best.bioimageio.zip"
    assert out.startswith(f"wrote {path} (") and "bioimage.io test skipped (--no-check)" in out
    assert "input  raw: (batch, 1, y, x) float32, sizes multiples of 4 on every axis" in out
    rdf = rdf_of(path)
    assert [a["name"] for a in rdf["authors"]] == ["Ada Lovelace", "Alan Turing"]
    assert rdf["license"] == "MIT" and "nuclei" in rdf["tags"]
    with zipfile.ZipFile(path) as z:  # the sample's centre, the test size (32 = patch size)
        test_in = np.load(io.BytesIO(z.read("test_input.npy")))
    assert np.array_equal(test_in[0], read_image(sample)[0][:, 4:36, 4:36])
    assert main(["export", str(ckpt), "--author", "X"]) == 2
    assert "--author, --name, --tag and --sample apply to --format bioimageio only" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "preset, papers",
    [
        ("unetpp", 2),  # the U-Net and UNet++
        ("unet3plus-ds-cgm", 2),  # the U-Net and UNet 3+ (deep supervision and CGM: training only)
        ("unet-residual", 1),
        ("unet-strided", 1),
    ],
)
def test_every_architecture_packs_and_passes_bioimageio_test(tmp_path, preset, papers):
    """The other presets export too (heads that only training uses are left out of the graph),
    and bioimageio.core reproduces the test outputs from both weight formats."""
    ckpt = make_checkpoint(tmp_path / "best.pt", preset, PER_IMAGE)
    report = bio.export_bioimageio(ckpt, tmp_path / "model.zip", authors=["Ada Lovelace"])
    summary = report.test_summary
    assert report.test_status == summary.status == "passed", bio._first_problem(summary)
    tested = {d.name for d in summary.details if d.status == "passed"}
    assert {
        f"Reproduce test outputs from test inputs ({w})" for w in ("torchscript", "onnx")
    } <= tested
    rdf = rdf_of(report.path)
    assert len(rdf["cite"]) == papers
    assert rdf["outputs"][0]["axes"][1]["channel_names"] == LABELS["names"]

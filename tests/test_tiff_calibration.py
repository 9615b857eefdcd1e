"""TIFF outputs that Fiji opens as they are: ImageJ hyperstacks with the pixel size and unit
(labels, probabilities, the band-by-band sink, predict end to end), the data ImageJ cannot hold kept
in unetkit's layout, and the reader's side of the round trip."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetkit import cli, create_model
from unetkit.checkpoint import save_checkpoint
from unetkit.data import LabelMap, create_normalizer
from unetkit.errors import DataError
from unetkit.inference import batch as batch_mod
from unetkit.inference.batch import predict_files
from unetkit.inference.outputs import TiffBandSink, write_labels, write_probabilities
from unetkit.inference.predictor import Predictor
from unetkit.io import ImageMeta, read_image, write_image
from unetkit.io import writers as writers_mod
from unetkit.io.lazy import open_lazy
from unetkit.io.readers import read_spacing
from unetkit.io.writers import imagej_unit

RNG = np.random.default_rng(7)
SPACING_2D = (0.25, 0.5)  # (dy, dx) in µm
SPACING_3D = (2.0, 0.5, 0.5)  # (dz, dy, dx)


def _tags(path):
    """(imagej metadata, series axes, series dtype, XResolution, YResolution, compression)."""
    with tifffile.TiffFile(path) as tf:
        page = tf.pages[0]
        return (
            tf.imagej_metadata,
            tf.series[0].axes,
            tf.series[0].dtype,
            page.tags["XResolution"].value,
            page.tags["YResolution"].value,
            page.compression,
        )


def _tiff_meta(spacing, unit="um"):
    return ImageMeta(format="tiff", spacing=spacing, spacing_unit=unit)


# ---------------------------------------------------------------------------------------- labels
def test_2d_labels_are_a_calibrated_imagej_image_shown_from_0_to_the_highest_label(tmp_path):
    labels = (RNG.random((1, 12, 10)) > 0.5).astype(np.uint8)  # a 0/1 mask
    write_labels(tmp_path / "m.tif", labels, _tiff_meta(SPACING_2D))
    ij, axes, dtype, xres, yres, compression = _tags(tmp_path / "m.tif")
    assert ij["unit"] == "um" and (ij["min"], ij["max"]) == (0, 1)
    assert axes == "YX" and dtype == np.uint8
    assert xres == (2, 1) and yres == (4, 1)  # pixels per µm: 1 / 0.5, 1 / 0.25
    assert compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    with tifffile.TiffFile(tmp_path / "m.tif") as tf:
        assert tf.pages[0].photometric == tifffile.PHOTOMETRIC.MINISBLACK  # greyscale, not RGB
    arr, meta = read_image(tmp_path / "m.tif")
    np.testing.assert_array_equal(arr, labels)
    assert meta.spacing == SPACING_2D and meta.spacing_unit == "um" and arr.dtype == np.uint8


def test_3d_labels_keep_z_spacing_and_16_bit_values(tmp_path):
    labels = RNG.integers(0, 301, (1, 4, 6, 7)).astype(np.uint16)
    labels[0, 0, 0, 0] = 300
    write_labels(tmp_path / "v.tif", labels, _tiff_meta(SPACING_3D))
    ij, axes, dtype, xres, yres, _ = _tags(tmp_path / "v.tif")
    assert (ij["spacing"], ij["unit"], ij["slices"], ij["max"]) == (2.0, "um", 4, 300)
    assert axes == "ZYX" and dtype == np.uint16 and xres == (2, 1) and yres == (2, 1)
    arr, meta = read_image(tmp_path / "v.tif")
    np.testing.assert_array_equal(arr, labels)
    assert meta.spacing == SPACING_3D and meta.spacing_unit == "um"


def test_empty_labels_and_colour_labels(tmp_path):
    write_labels(tmp_path / "e.tif", np.zeros((1, 5, 6), np.uint8), _tiff_meta(SPACING_2D))
    assert _tags(tmp_path / "e.tif")[0]["max"] == 1  # ImageJ ignores a 0..0 range
    colours = RNG.integers(0, 2, (3, 5, 6)).astype(np.uint8) * 255  # a colour label map's output
    write_labels(tmp_path / "c.tif", colours, _tiff_meta(SPACING_2D))  # from a grey TIFF input
    ij, axes, *_ = _tags(tmp_path / "c.tif")
    assert axes == "YXS" and ij["unit"] == "um"
    np.testing.assert_array_equal(read_image(tmp_path / "c.tif")[0], colours)


# --------------------------------------------------------------------------------- probabilities
@pytest.mark.parametrize(
    "shape, spacing, axes", [((3, 12, 10), SPACING_2D, "CYX"), ((2, 4, 6, 7), SPACING_3D, "ZCYX")]
)
def test_probabilities_are_a_float32_hyperstack_one_channel_per_class(
    tmp_path, shape, spacing, axes
):
    probs = RNG.dirichlet(np.ones(shape[0]), size=shape[1:]).astype(np.float32)
    probs = np.moveaxis(probs, -1, 0)
    meta = ImageMeta(format="png", spacing=spacing, spacing_unit="um")  # any input format
    write_probabilities(tmp_path / "p_prob.tif", probs, meta)
    ij, got_axes, dtype, xres, _, compression = _tags(tmp_path / "p_prob.tif")
    assert got_axes == axes and dtype == np.float32 and ij["channels"] == shape[0]
    assert ij["unit"] == "um" and xres == (2, 1)
    assert ij.get("spacing") == (2.0 if len(spacing) == 3 else None)  # Z spacing of a volume
    assert ij["Ranges"] == (0.0, 1.0) * shape[0] and (ij["min"], ij["max"]) == (0.0, 1.0)
    assert compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    arr, back = read_image(tmp_path / "p_prob.tif")  # what evaluate reads: (K, *spatial)
    assert arr.dtype == np.float32 and back.spacing == spacing
    np.testing.assert_array_equal(arr, probs)


def test_probabilities_without_meta_and_as_npz(tmp_path):
    probs = np.stack([np.full((4, 5), 0.25), np.full((4, 5), 0.75)]).astype(np.float32)
    write_probabilities(tmp_path / "a_prob.tif", probs)
    arr, meta = read_image(tmp_path / "a_prob.tif")
    assert meta.spacing is None and arr.dtype == np.float32
    write_probabilities(tmp_path / "a_prob.npz", probs, _tiff_meta(SPACING_2D))
    with np.load(tmp_path / "a_prob.npz") as data:
        assert data["probabilities"].dtype == np.float16  # npz stays as it was


# ---------------------------------------------------------------------------- write_image rules
@pytest.mark.parametrize(
    "dtype, imagej",
    [
        ("uint8", True),
        ("uint16", True),
        ("float32", True),
        ("int16", False),
        ("int32", False),
        ("uint32", False),
        ("float64", False),
    ],
)
def test_only_data_imagej_holds_is_written_as_imagej(tmp_path, dtype, imagej):
    a = RNG.integers(0, 100, (2, 3, 5, 4)).astype(dtype)
    write_image(tmp_path / "x.tif", a, ImageMeta(spacing=SPACING_3D, spacing_unit="um"))
    with tifffile.TiffFile(tmp_path / "x.tif") as tf:
        assert tf.is_imagej == imagej and tf.series[0].axes == ("ZCYX" if imagej else "CZYX")
        assert bool(tf.shaped_metadata) != imagej  # else unetkit's JSON description
    b, m = read_image(tmp_path / "x.tif")
    np.testing.assert_array_equal(b, a)
    assert b.dtype == a.dtype and m.spacing == SPACING_3D and m.spacing_unit == "um"


def test_rgb_stays_rgb_and_16_bit_rgb_keeps_unetkits_layout(tmp_path):
    rgba = RNG.integers(0, 255, (4, 5, 6)).astype(np.uint8)
    write_image(tmp_path / "a.tif", rgba, ImageMeta(channel_axis="S", spacing=(0.3, 0.3)))
    with tifffile.TiffFile(tmp_path / "a.tif") as tf:
        assert tf.is_imagej and tf.series[0].axes == "YXS"
        assert tf.pages[0].photometric == tifffile.PHOTOMETRIC.RGB
        assert tf.imagej_metadata["unit"] == "pixel"  # a pixel size without a unit
    kept, meta = read_image(tmp_path / "a.tif", keep_alpha=True)
    np.testing.assert_array_equal(kept, rgba)
    assert meta.spacing == (0.3, 0.3) and meta.spacing_unit is None
    rgb16 = RNG.integers(0, 60000, (3, 5, 6)).astype(np.uint16)
    write_image(tmp_path / "b.tif", rgb16, ImageMeta(channel_axis="S"))
    with tifffile.TiffFile(tmp_path / "b.tif") as tf:
        assert not tf.is_imagej and tf.series[0].axes == "YXS"
    np.testing.assert_array_equal(read_image(tmp_path / "b.tif")[0], rgb16)


def test_imagej_above_the_size_limit_falls_back_to_unetkits_layout(tmp_path, monkeypatch):
    monkeypatch.setattr(writers_mod, "IMAGEJ_MAX_BYTES", 100)  # the switch of the BigTIFF path
    a = RNG.integers(0, 9, (1, 12, 10)).astype(np.uint8)
    write_image(tmp_path / "big.tif", a, ImageMeta(spacing=SPACING_2D, spacing_unit="um"))
    with tifffile.TiffFile(tmp_path / "big.tif") as tf:
        assert not tf.is_imagej and tf.shaped_metadata[0]["spacing"] == list(SPACING_2D)
    assert read_image(tmp_path / "big.tif")[1].spacing == SPACING_2D


# ----------------------------------------------------------------------------------------- units
def test_units_map_to_imagej_and_read_back():
    assert [imagej_unit(u) for u in ("um", "micron", "\u00b5m", "mm", "nm", None, "pixel")] == [
        "um",
        "um",
        "um",
        "mm",
        "nm",
        None,
        None,
    ]
    assert imagej_unit("\u00c5") == "\\u00C5"  # escaped as ImageJ writes non-ASCII


@pytest.mark.parametrize("unit", ["nm", "mm", "\u00c5"])
def test_other_units_round_trip(tmp_path, unit):
    write_image(
        tmp_path / "u.tif",
        np.zeros((1, 4, 4), np.uint8),
        ImageMeta(spacing=(2.0, 2.0), spacing_unit=unit),
    )
    assert read_image(tmp_path / "u.tif")[1].spacing_unit == unit


def test_reader_decodes_imagej_escapes_and_knows_uncalibrated_files(tmp_path):
    a = np.zeros((4, 5), np.uint8)
    # ImageJ writes µm escaped; the reader decodes it
    tifffile.imwrite(
        tmp_path / "ij.tif", a, imagej=True, resolution=(4.0, 4.0), metadata={"unit": "\\u00B5m"}
    )
    assert read_image(tmp_path / "ij.tif")[1].spacing_unit == "um"
    # no unit, no spacing, pixel size 1: ImageJ's uncalibrated image; spacing unknown
    tifffile.imwrite(tmp_path / "plain.tif", a, imagej=True)
    assert read_image(tmp_path / "plain.tif")[1].spacing is None
    write_image(tmp_path / "none.tif", a[None])
    assert read_image(tmp_path / "none.tif")[1].spacing is None
    # a pixel size of 1 without a unit is still written and read (ImageJ's unit "pixel")
    write_image(tmp_path / "one.tif", a[None], ImageMeta(spacing=(1.0, 1.0)))
    assert read_image(tmp_path / "one.tif")[1].spacing == (1.0, 1.0)


def test_read_spacing_reads_tags_only(tmp_path):
    write_image(tmp_path / "c.tif", np.zeros((1, 6, 5), np.uint8), _tiff_meta(SPACING_2D))
    assert read_spacing(tmp_path / "c.tif") == (SPACING_2D, "um")
    np.save(tmp_path / "a.npy", np.zeros((6, 5), np.float32))
    assert read_spacing(tmp_path / "a.npy") == (None, None)
    Image.fromarray(np.zeros((6, 5), np.uint8)).save(tmp_path / "p.png")
    assert read_spacing(tmp_path / "p.png") == (None, None)
    (tmp_path / "bad.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(DataError, match=r"bad\.tif: unreadable TIFF file"):
        read_spacing(tmp_path / "bad.tif")


# ------------------------------------------------------------------------------------- band sink
def _fill_sink(sink, probs):
    for y0 in range(0, probs.shape[1], 7):
        sink.write(y0, probs[:, y0 : y0 + 7])
    sink.close()


def test_band_sink_writes_calibrated_uncompressed_imagej_files(tmp_path):
    probs = np.moveaxis(RNG.dirichlet(np.ones(2), size=(20, 9)), -1, 0).astype(np.float32)
    sink = TiffBandSink(
        (20, 9),
        2,
        LabelMap([0, 255]),
        tmp_path / "b.tif",
        tmp_path / "b_prob.tif",
        spacing=SPACING_2D,
        spacing_unit="um",
    )
    _fill_sink(sink, probs)
    ij, axes, dtype, xres, yres, compression = _tags(tmp_path / "b.tif")
    assert (ij["unit"], ij["max"], axes, dtype) == ("um", 255, "YX", np.uint8)
    assert xres == (2, 1) and yres == (4, 1) and compression == tifffile.COMPRESSION.NONE
    ij, axes, dtype, xres, _, compression = _tags(tmp_path / "b_prob.tif")
    assert (ij["unit"], axes, dtype, xres) == ("um", "CYX", np.float32, (2, 1))
    assert ij["Ranges"] == (0.0, 1.0, 0.0, 1.0) and compression == tifffile.COMPRESSION.NONE
    arr, meta = read_image(tmp_path / "b_prob.tif")
    np.testing.assert_array_equal(arr, probs)
    assert meta.spacing == SPACING_2D and meta.spacing_unit == "um"
    labels, meta = read_image(tmp_path / "b.tif")
    np.testing.assert_array_equal(labels[0], np.where(probs.argmax(0) == 1, 255, 0))
    assert meta.spacing == SPACING_2D
    assert open_lazy(tmp_path / "b_prob.tif").shape == (2, 20, 9)  # still memory-mappable


def test_band_sink_over_the_imagej_limit_writes_resolution_tags_and_json(tmp_path, monkeypatch):
    monkeypatch.setattr(writers_mod, "IMAGEJ_MAX_BYTES", 100)
    probs = np.moveaxis(RNG.dirichlet(np.ones(2), size=(20, 9)), -1, 0).astype(np.float32)
    sink = TiffBandSink(
        (20, 9), 2, None, tmp_path / "b.tif", tmp_path / "b_prob.tif", spacing=SPACING_2D
    )
    _fill_sink(sink, probs)
    for name in ("b.tif", "b_prob.tif"):
        with tifffile.TiffFile(tmp_path / name) as tf:
            assert not tf.is_imagej and tf.pages[0].tags["XResolution"].value == (2, 1)
        assert read_image(tmp_path / name)[1].spacing == SPACING_2D
    np.testing.assert_array_equal(read_image(tmp_path / "b_prob.tif")[0], probs)


# --------------------------------------------------------------------------------------- predict
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


def _calibrated_input(path, shape=(40, 50)):
    image = RNG.integers(0, 255, shape).astype(np.uint8)
    tifffile.imwrite(
        path, image, imagej=True, resolution=(1 / 0.5, 1 / 0.25), metadata={"unit": "um"}
    )
    return image


def test_predict_cli_calibrated_input_gives_calibrated_outputs(checkpoint, tmp_path):
    _calibrated_input(tmp_path / "cell.tif")
    out = tmp_path / "out"
    argv = [str(checkpoint), str(tmp_path / "cell.tif"), "-o", str(out), "--no-progress"]
    assert cli.main(["predict", *argv, "--probabilities", "--precision", "fp32"]) == 0
    ij, axes, dtype, xres, yres, _ = _tags(out / "cell.tif")
    assert (ij["unit"], axes, dtype, xres, yres) == ("um", "YX", np.uint8, (2, 1), (4, 1))
    ij, axes, dtype, xres, yres, _ = _tags(out / "cell_prob.tif")
    assert (ij["unit"], axes, dtype, xres, yres) == ("um", "CYX", np.float32, (2, 1), (4, 1))
    for name in ("cell.tif", "cell_prob.tif"):
        meta = read_image(out / name)[1]
        assert meta.spacing == (0.25, 0.5) and meta.spacing_unit == "um"


def test_predict_band_by_band_keeps_the_input_calibration(checkpoint, tmp_path, monkeypatch):
    _calibrated_input(tmp_path / "slide.tif", (70, 60))  # uncompressed: memory-mappable
    monkeypatch.setattr(batch_mod, "LARGE_PIXELS", 1000)
    pred = Predictor.from_checkpoint(checkpoint, precision="fp32")
    res = predict_files(pred, [tmp_path / "slide.tif"], tmp_path / "out", "tiff", progress=False)
    assert res[0].mode == "band-by-band"
    for name in ("slide.tif", "slide_prob.tif"):
        meta = read_image(tmp_path / "out" / name)[1]
        assert meta.spacing == (0.25, 0.5) and meta.spacing_unit == "um"


def test_ome_pixel_sizes_are_read_each_in_its_own_unit(tmp_path):
    """OME states a unit per axis (a z step in nm beside µm in x and y; µm where unstated): each
    is read in its own unit and given in x's (z was read as 1000 µm, every mask "mismatched")."""
    volume = np.zeros((4, 20, 30), np.uint16)
    path = tmp_path / "z_in_nm.ome.tif"
    units = {"PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm", "PhysicalSizeZUnit": "nm"}
    sizes = {"PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2, "PhysicalSizeZ": 1000}
    tifffile.imwrite(path, volume, ome=True, metadata={"axes": "ZYX", **sizes, **units})
    meta = read_image(path)[1]
    assert meta.spacing == (1.0, 0.2, 0.2) and meta.spacing_unit == "um"
    plain = tmp_path / "stated_in_um.ome.tif"
    metadata = {"axes": "ZYX", "PhysicalSizeX": 0.5, "PhysicalSizeZ": 2}
    tifffile.imwrite(plain, volume, ome=True, metadata=metadata)
    meta = read_image(plain)[1]
    assert meta.spacing == (2.0, 0.5, 0.5) and meta.spacing_unit == "um"
    mm = tmp_path / "x_in_mm.ome.tif"
    metadata = {"axes": "ZYX", "PhysicalSizeX": 0.001, "PhysicalSizeXUnit": "mm"}
    metadata.update(PhysicalSizeY=0.001, PhysicalSizeYUnit="mm", PhysicalSizeZ=3.0)  # z in µm
    tifffile.imwrite(mm, volume, ome=True, metadata=metadata)
    meta = read_image(mm)[1]
    assert meta.spacing == (0.003, 0.001, 0.001) and meta.spacing_unit == "mm"


def test_ome_sizes_of_the_first_image_else_the_resolution_tags(tmp_path):
    """A later series' units do not leak into the first image's; y without its own unit takes
    x's (as tifffile writes a unit given for x only), z without one is in µm (OME's default); an
    OME file without PhysicalSizeX keeps the pixel size of its resolution tags."""
    volume = np.zeros((4, 20, 30), np.uint16)
    two = tmp_path / "two.ome.tif"
    with tifffile.TiffWriter(two, ome=True) as tif:
        sizes = {"PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2}
        tif.write(volume, metadata={"axes": "ZYX", **sizes, "PhysicalSizeZ": 1.0})
        later = {"PhysicalSizeZ": 500, "PhysicalSizeZUnit": "nm"}
        tif.write(volume, metadata={"axes": "ZYX", **sizes, **later})
    assert read_image(two)[1].spacing == (1.0, 0.2, 0.2)
    xnm = tmp_path / "x_in_nm.ome.tif"
    metadata = {"axes": "YX", "PhysicalSizeX": 500, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 500}
    tifffile.imwrite(xnm, volume[0], ome=True, metadata=metadata)
    meta = read_image(xnm)[1]
    assert meta.spacing == (500.0, 500.0) and meta.spacing_unit == "nm"
    zum = tmp_path / "z_unstated.ome.tif"  # z states no unit: µm, as OME defines
    metadata = {"axes": "ZYX", "PhysicalSizeX": 200, "PhysicalSizeXUnit": "nm"}
    metadata.update(PhysicalSizeY=200, PhysicalSizeYUnit="nm", PhysicalSizeZ=1.0)
    tifffile.imwrite(zum, volume, ome=True, metadata=metadata)
    assert read_image(zum)[1].spacing == (1000.0, 200.0, 200.0)
    tags = tmp_path / "tags.ome.tif"
    tifffile.imwrite(
        tags,
        volume,
        ome=True,
        metadata={"axes": "ZYX"},
        resolution=(2000, 2000),
        resolutionunit="CENTIMETER",
    )
    meta = read_image(tags)[1]
    assert meta.spacing == (1.0, 5.0, 5.0) and meta.spacing_unit == "um"


def test_a_model_trained_without_a_plan_knows_its_files_unit(tmp_path):
    """A ``--no-plan`` model of µm-calibrated images records µm (no plan fingerprint to say it):
    a post-processing size kept as an area then removes the same objects from the same image
    calibrated in mm (its 0.0005 mm pixels were read as 0.0005 µm: every object removed)."""
    from unetkit.checkpoint import load_checkpoint
    from unetkit.inference.postprocess import PostProcessing, PostStep
    from unetkit.training import Trainer

    from .test_training import tiny_config

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48]
    for i in range(4):
        mask = np.zeros((48, 48), bool)
        for _ in range(3):
            cy, cx = rng.integers(8, 40, 2)
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= 36
        image = np.clip(mask * 120 + 60 + rng.normal(0, 20, mask.shape), 0, 255).astype(np.uint8)
        um = ImageMeta(spacing=(0.5, 0.5), spacing_unit="um")
        write_image(tmp_path / "train" / "images" / f"{i}.tif", image[None], um)
        write_image(
            tmp_path / "train" / "masks" / f"{i}.tif", (mask * 255).astype(np.uint8)[None], um
        )
    result = Trainer(
        tiny_config(tmp_path / "train", epochs=1), run_dir=tmp_path / "run", progress=False
    ).fit()
    best = result.run_dir / "checkpoints" / "best.pt"
    assert load_checkpoint(best)["extra"]["spacing_unit"] == "um"
    pred = Predictor.from_checkpoint(best, precision="fp32")
    assert pred.spacing_unit == "um"
    # objects under 4 µm² (16 px at 0.5 µm) removed, whatever unit the input states
    pred.postprocess = PostProcessing((PostStep("remove_small", 1, min_size=16, min_volume=4.0),))
    image = read_image(tmp_path / "train" / "images" / "0.tif")[0]
    write_image(tmp_path / "in" / "um.tif", image, ImageMeta(spacing=(0.5, 0.5), spacing_unit="um"))
    write_image(
        tmp_path / "in" / "mm.tif", image, ImageMeta(spacing=(5e-4, 5e-4), spacing_unit="mm")
    )
    predict_files(pred, [tmp_path / "in"], tmp_path / "out", progress=False)
    um_labels, mm_labels = (read_image(tmp_path / "out" / f"{u}.tif")[0] for u in ("um", "mm"))
    assert np.array_equal(um_labels, mm_labels) and um_labels.any()

"""Pyramidal label outputs: tiled, compressed OME-TIFF with SubIFD levels and multiscale OME-Zarr
label images, each level every 2nd pixel of the one above; read back with tifffile, zarr,
ome-zarr-models and unetkit's own lazy reader; band-by-band prediction of a pyramidal input writes
one, equal at level 0 to the plain output."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from unetkit.errors import ConfigError, DataError
from unetkit.inference import batch as batch_mod
from unetkit.inference.batch import predict_files
from unetkit.io import read_image
from unetkit.io.lazy import level_count, open_lazy
from unetkit.io.ome_zarr import create_ome_zarr
from unetkit.io.pyramid import (
    add_ome_zarr_levels,
    default_level_count,
    level_shapes,
    write_pyramidal_ome_tiff,
)

from .test_lazy_io import _ome_zarr, band_predictor

zarr = pytest.importorskip("zarr")


def _labels(shape, seed=0, top=4):
    """Blocky labels (runs a stride can hit or miss) with some noise, so a wrong stride shows."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, top, (*shape[:-2], shape[-2] // 7 + 1, shape[-1] // 5 + 1))
    labels = coarse.repeat(7, axis=-2).repeat(5, axis=-1)[..., : shape[-2], : shape[-1]]
    noise = rng.random(shape) < 0.05
    labels[noise] = rng.integers(0, top, int(noise.sum()))
    return labels.astype(np.uint8 if top <= 256 else np.uint16)


def _hidden(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_level_rule_halves_to_a_top_of_at_most_512_px():
    assert default_level_count((512, 100)) == 1
    assert default_level_count((3000, 1000)) == 4  # 3000 → 1500 → 750 → 375
    assert default_level_count((5, 100_000, 80)) == 9  # a volume: the plane's long side counts
    assert level_shapes((3, 701, 530), 3) == [(3, 701, 530), (3, 351, 265), (3, 176, 133)]


def _check_ome_tiff(path, labels, levels, physical):
    """Levels, their shapes and pixels, tiles, compression and OME physical sizes of ``path``."""
    with tifffile.TiffFile(path) as tf:
        assert tf.is_ome
        series = tf.series[0]
        assert len(series.levels) == levels
        for k, level in enumerate(series.levels):
            expected = labels[..., :: 2**k, :: 2**k]
            assert level.shape == expected.shape and level.dtype == labels.dtype
            np.testing.assert_array_equal(level.asarray(), expected)
            page = level.keyframe
            assert page.is_tiled and (page.tilelength, page.tilewidth) == (256, 256)
            assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        for key, value in physical.items():
            assert f'{key}="{value}"' in tf.ome_metadata


def test_pyramidal_ome_tiff_round_trip_2d(tmp_path):
    labels = _labels((701, 530))
    path = tmp_path / "slide.ome.tif"
    write_pyramidal_ome_tiff(path, labels, (0.5, 0.25), "um", levels=3)
    physical = {"PhysicalSizeX": 0.25, "PhysicalSizeY": 0.5, "PhysicalSizeXUnit": "µm"}
    _check_ome_tiff(path, labels, 3, physical)
    assert level_count(path) == 3
    for k in range(3):
        with open_lazy(path, level=k) as lazy:
            np.testing.assert_array_equal(np.asarray(lazy)[0], labels[:: 2**k, :: 2**k])
            assert lazy.meta.spacing_unit == "um"
            # the reader scales by level 0's size over level k's (701 / 351 here, not 2)
            assert lazy.meta.spacing == pytest.approx((0.5 * 2**k, 0.25 * 2**k), rel=0.01)
    whole, meta = read_image(path)  # the whole-file reader takes level 0
    np.testing.assert_array_equal(whole[0], labels)
    assert meta.spacing == (0.5, 0.25) and meta.spacing_unit == "um"
    assert _hidden(tmp_path) == []
    # the resolution tags say the same, for plain TIFF readers (ImageJ's opener): pixels per cm
    with tifffile.TiffFile(path) as tf:
        pages = [tf.pages[0], *tf.pages[0].pages]  # level 0 and its SubIFDs
        for k, page in enumerate(pages):
            assert page.resolutionunit == tifffile.RESUNIT.CENTIMETER
            assert page.resolution == pytest.approx((4e4 / 2**k, 2e4 / 2**k))  # x, y


def test_pyramidal_ome_tiff_of_a_volume_halves_only_the_planes(tmp_path):
    labels = _labels((4, 300, 270), seed=1, top=700)  # 16-bit labels
    path = tmp_path / "vol.ome.tif"
    write_pyramidal_ome_tiff(path, labels, (2.0, 0.5, 0.5), "um", levels=2)
    _check_ome_tiff(path, labels, 2, {"PhysicalSizeZ": 2.0, "PhysicalSizeX": 0.5})
    with open_lazy(path, level=1) as lazy:
        assert lazy.shape == (1, 4, 150, 135)
        np.testing.assert_array_equal(np.asarray(lazy)[0], labels[:, ::2, ::2])
        assert lazy.meta.spacing == pytest.approx((2.0, 1.0, 1.0))


def test_default_levels_and_a_unit_ome_cannot_name(tmp_path):
    labels = _labels((1100, 300), seed=2) > 1  # bool: written as uint8
    path = tmp_path / "mask.ome.tif"
    write_pyramidal_ome_tiff(path, labels, (1.0, 1.0), "parsec")
    _check_ome_tiff(path, labels.astype(np.uint8), 3, {})  # 1100 → 550 → 275
    with tifffile.TiffFile(path) as tf:
        assert "PhysicalSize" not in tf.ome_metadata  # rather none than a size read as µm
        assert tf.pages[0].resolutionunit == tifffile.RESUNIT.NONE


def test_bad_pyramid_requests_are_one_line_errors_and_write_nothing(tmp_path):
    with pytest.raises(DataError, match=r"c\.ome\.tif: a label pyramid is made of a \(Y, X\)"):
        write_pyramidal_ome_tiff(tmp_path / "c.ome.tif", np.zeros((2, 3, 32, 32), np.uint8))
    with pytest.raises(ConfigError, match=r"l\.ome\.tif: levels must be a whole number ≥ 1"):
        write_pyramidal_ome_tiff(tmp_path / "l.ome.tif", np.zeros((32, 32), np.uint8), levels=0)
    zarr.create_array(str(tmp_path / "plain.zarr"), shape=(8, 8), dtype="u1")
    with pytest.raises(DataError, match=r"plain\.zarr: is not an OME-Zarr image"):
        add_ome_zarr_levels(tmp_path / "plain.zarr", 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.zarr"]


@pytest.mark.parametrize(
    "shape, spacing", [((701, 530), (0.5, 0.25)), ((5, 260, 300), (3.0, 0.5, 0.5))]
)
def test_ome_zarr_label_levels_are_valid_ngff_and_read_back(tmp_path, shape, spacing):
    labels = _labels(shape, seed=3)
    path = tmp_path / "labels.ome.zarr"
    array = create_ome_zarr(
        path, shape, labels.dtype, channels=False, spacing=spacing, unit="um", label=True
    )
    array[...] = labels
    add_ome_zarr_levels(path, 3)
    group = zarr.open_group(str(path), mode="r")
    datasets = group.attrs["ome"]["multiscales"][0]["datasets"]
    scales = [d["coordinateTransformations"][0]["scale"] for d in datasets]
    assert [d["path"] for d in datasets] == ["0", "1", "2"]
    assert scales == [[*spacing[:-2], spacing[-2] * 2**k, spacing[-1] * 2**k] for k in range(3)]
    assert "image-label" in group.attrs["ome"]
    models = pytest.importorskip("ome_zarr_models.v05")
    models.ImageLabel.from_zarr(group)
    models.Image.from_zarr(group)
    assert level_count(path) == 3
    for k in range(3):
        lazy = open_lazy(path, level=k)
        np.testing.assert_array_equal(np.asarray(lazy)[0], labels[..., :: 2**k, :: 2**k])
        assert lazy.meta.spacing == pytest.approx(
            (*spacing[:-2], *(s * 2**k for s in spacing[-2:]))
        )
    np.testing.assert_array_equal(read_image(path)[0][0], labels)


def test_ome_tiff_from_a_memory_map_is_written_in_bounded_memory(tmp_path):
    """A 36 MB label memory map becomes a 5-level OME-TIFF while Python holds a fraction of it."""
    import tracemalloc

    source = np.lib.format.open_memmap(
        tmp_path / "big.npy", mode="w+", dtype=np.uint8, shape=(6000, 6000)
    )
    for y0 in range(0, 6000, 500):  # filled band by band, as prediction fills it
        source[y0 : y0 + 500] = _labels((500, 6000), seed=y0)
    source.flush()
    tracemalloc.start()
    try:
        write_pyramidal_ome_tiff(tmp_path / "big.ome.tif", source, levels=5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < source.nbytes / 3, f"peak {peak / 2**20:.1f} MiB"
    with tifffile.TiffFile(tmp_path / "big.ome.tif") as tf:
        levels = tf.series[0].levels
        assert [lv.shape for lv in levels] == level_shapes((6000, 6000), 5)
        np.testing.assert_array_equal(levels[4].asarray(), source[::16, ::16])
        np.testing.assert_array_equal(levels[0].asarray()[2900:3100], source[2900:3100])


def test_band_by_band_labels_of_pyramidal_inputs_are_pyramids(tmp_path, monkeypatch):
    """A pyramidal OME-TIFF and a 3-level OME-Zarr input, predicted band by band: labels with 3
    levels (``p.ome.tif``, ``z.ome.zarr``) whose level 0 is the plain band-by-band output of the
    same image; probabilities as without pyramids; a rerun finds the outputs and skips."""
    image = (np.random.default_rng(5).random((1, 301, 257)) * 1000).astype(np.uint16)
    levels = [image, image[:, ::2, ::2], image[:, ::4, ::4]]
    with tifffile.TiffWriter(tmp_path / "p.ome.tif", ome=True) as tw:
        meta = {"axes": "CYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5}
        tw.write(image, tile=(64, 64), compression="zlib", subifds=2, metadata=meta)
        for level in levels[1:]:
            tw.write(level, tile=(64, 64), compression="zlib", subfiletype=1)
    tifffile.imwrite(
        tmp_path / "plain.tif", image, tile=(64, 64), compression="zlib", metadata={"axes": "CYX"}
    )
    _ome_zarr(tmp_path / "z.ome.zarr", levels, [1.0, 0.5, 0.5], axes="cyx")
    pred = band_predictor()
    monkeypatch.setattr(batch_mod, "LARGE_PIXELS", 1000)
    inputs = [tmp_path / n for n in ("p.ome.tif", "plain.tif", "z.ome.zarr")]
    out = tmp_path / "out"
    res = predict_files(pred, inputs, out, probabilities="tiff", progress=False)
    assert [r.mode for r in res] == ["band-by-band"] * 3
    assert [r.outputs["labels"].name for r in res] == ["p.ome.tif", "plain.tif", "z.ome.zarr"]
    plain = read_image(out / "plain.tif")[0][0]
    np.testing.assert_array_equal(plain == 255, pred.predict(image) == 1)
    _check_ome_tiff(out / "p.ome.tif", plain, 3, {"PhysicalSizeX": 0.5, "PhysicalSizeXUnit": "µm"})
    assert level_count(out / "plain.tif") == 1  # a plain input's labels stay as they were
    group = zarr.open_group(str(out / "z.ome.zarr"), mode="r")
    for k in range(3):
        np.testing.assert_array_equal(group[str(k)][...], plain[:: 2**k, :: 2**k])
    models = pytest.importorskip("ome_zarr_models.v05")
    models.ImageLabel.from_zarr(group)
    probs = [tifffile.imread(out / f"{s}_prob.tif") for s in ("p", "plain", "z")]
    np.testing.assert_array_equal(probs[0], probs[1])
    np.testing.assert_array_equal(probs[2], probs[1])
    assert _hidden(out) == []  # the label memory map was converted and removed
    again = predict_files(pred, inputs, out, probabilities="tiff", progress=False)
    assert [r.status for r in again] == ["skipped"] * 3


def test_a_rerun_at_another_level_is_not_taken_for_done(tmp_path, capsys):
    """Outputs of --level 1 and --level 0 have the same names: a rerun at level 0 into the level-1
    folder is refused (one line, exit 2), not reported as done with the smaller labels kept."""
    from unetkit import create_model
    from unetkit.checkpoint import save_checkpoint
    from unetkit.cli import main
    from unetkit.data import LabelMap, create_normalizer

    ckpt = save_checkpoint(
        tmp_path / "m.pt",
        create_model("unet", base_features=4, depth=2, norm="instance"),
        normalization=create_normalizer("zscore").to_dict(),
        label_map=LabelMap([0, 255]).to_dict(),
        patch_size=[32, 32],
    )
    image = (np.random.default_rng(2).random((1, 96, 80)) * 1000).astype(np.uint16)
    with tifffile.TiffWriter(tmp_path / "p.ome.tif", ome=True) as tw:
        tw.write(image, tile=(32, 32), compression="zlib", subifds=1, metadata={"axes": "CYX"})
        tw.write(image[:, ::2, ::2], tile=(32, 32), compression="zlib", subfiletype=1)
    out = tmp_path / "out"
    argv = ["predict", str(ckpt), str(tmp_path / "p.ome.tif"), "-o", str(out), "--no-progress"]
    assert main([*argv, "--level", "1"]) == 0
    assert read_image(out / "p.tif")[0].shape == (1, 48, 40)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (
        "from another model (or pyramid level, --tta, --postprocess or --instances method) than this one; pass --overwrite"
        in err
    )
    assert read_image(out / "p.tif")[0].shape == (1, 48, 40)
    assert main([*argv, "--overwrite"]) == 0
    assert read_image(out / "p.tif")[0].shape == (1, 96, 80)
    # outlines at a level would land at that level's scale on the full image in Fiji/QuPath
    fresh = tmp_path / "outlines"
    assert main([*argv[:4], str(fresh), "--no-progress", "--level", "1", "--rois"]) == 2
    assert capsys.readouterr().err.strip() == (
        "unetkit predict: error: ImageJ ROIs and GeoJSON outline objects in the pixels of the "
        "level predicted, which Fiji and QuPath would lay on the full-resolution image at that "
        "level's smaller scale: drop --rois/--geojson with --level 1 (the instance image keeps "
        "that level's pixel size), or predict the full resolution"
    )
    assert not fresh.exists()

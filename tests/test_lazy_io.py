"""Reading images region by region: compressed/tiled/pyramidal TIFF and (OME-)zarr give the same
pixels, axes and spacing as the whole-file readers, and band-by-band prediction of them equals the
``.npy`` path exactly."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from unetkit import create_model
from unetkit.data import LabelMap, create_normalizer
from unetkit.errors import ConfigError, DataError
from unetkit.inference import batch as batch_mod
from unetkit.inference.batch import predict_files
from unetkit.inference.predictor import Predictor
from unetkit.io import list_images, read_image
from unetkit.io.lazy import LazyImage, level_count, open_lazy

zarr = pytest.importorskip("zarr")


@pytest.fixture(scope="module")
def image():
    """(2, 300, 260) uint16 with structure (so a wrong axis order cannot go unnoticed)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:300, :260]
    return np.stack([yy * 3 + xx, rng.integers(0, 4000, (300, 260))]).astype(np.uint16)


class _Rows:
    """A band sink keeping ``(first row, float32 rows)`` of every write."""

    def __init__(self):
        self.rows = []

    def write(self, y0, probs):
        self.rows.append((y0, np.array(probs)))

    def close(self):
        pass


def band_predictor() -> Predictor:
    """A tiny seeded fp32 predictor with small tiles, so that band-by-band tests have many tiles
    and bands (also used by test_pyramid_outputs)."""
    model = create_model("unet", base_features=2, depth=2, init="torch", norm="none")
    return Predictor(
        model,
        precision="fp32",
        max_tile=96,
        min_overlap=16,
        normalizer=create_normalizer("zscore"),
        label_map=LabelMap([0, 255]),
    )


def _regions(lazy, reference):
    """Every way the band path and users slice a lazy image, against NumPy on the reference."""
    for key in [
        (slice(None), slice(10, 50), slice(20, 90)),
        (1,),
        (Ellipsis, 5),
        (slice(None), slice(290, 400)),  # past the end, as NumPy clips it
        (slice(0, 1), 7, slice(None)),
    ]:
        np.testing.assert_array_equal(lazy[key], reference[key])
    np.testing.assert_array_equal(np.asarray(lazy), reference)


def test_compressed_tiled_tiff_reads_region_by_region(image, tmp_path):
    path = tmp_path / "lzw.tif"
    tifffile.imwrite(
        path, image, tile=(64, 64), compression="lzw", metadata={"axes": "CYX"}, resolution=(2, 2)
    )
    lazy = open_lazy(path)
    assert isinstance(lazy, LazyImage) and lazy.shape == (2, 300, 260)
    _regions(lazy, image)
    whole, meta = read_image(path)
    np.testing.assert_array_equal(whole, image)
    assert lazy.meta.spacing == meta.spacing
    lazy.close()


def test_uncompressed_tiff_and_npy_stay_memory_maps(image, tmp_path):
    tifffile.imwrite(tmp_path / "raw.tif", image, metadata={"axes": "CYX"})
    np.save(tmp_path / "raw.npy", image)
    for name in ("raw.tif", "raw.npy"):
        lazy = open_lazy(tmp_path / name)
        assert isinstance(lazy, np.memmap)
        np.testing.assert_array_equal(lazy, image)


def test_rgb_samples_last_and_alpha_are_read_channel_first(tmp_path):
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 255, (120, 90, 4), dtype=np.uint8)
    path = tmp_path / "rgba.tif"
    tifffile.imwrite(
        path,
        rgba,
        photometric="rgb",
        extrasamples=("unassalpha",),
        tile=(32, 32),
        compression="zlib",
        metadata=None,  # as an image editor writes it
    )
    lazy = open_lazy(path)
    assert lazy.shape == (3, 120, 90) and lazy.meta.alpha_dropped
    _regions(lazy, np.moveaxis(rgba[..., :3], -1, 0))
    np.testing.assert_array_equal(np.asarray(lazy), read_image(path)[0])


def test_pyramidal_ome_tiff_levels_and_their_spacing(image, tmp_path):
    path = tmp_path / "pyr.ome.tif"
    levels = _pyramid_tiff(path, image)
    for k, expected in enumerate(levels):
        lazy = open_lazy(path, level=k)
        assert lazy.shape == expected.shape
        _regions(lazy, expected)
        assert lazy.meta.spacing == pytest.approx((0.5 * 2**k, 0.5 * 2**k))
        assert lazy.meta.spacing_unit == "um"
        lazy.close()
    with pytest.raises(DataError, match=r"level 3 does not exist: the image has 3 level"):
        open_lazy(path, level=3)


def _ome_zarr(path, levels, scale, axes="tczyx", version="0.5"):
    """A minimal NGFF image group written with zarr itself (independent of the reader)."""
    fmt = 3 if version == "0.5" else 2
    group = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    names = [{"name": a, "type": {"t": "time", "c": "channel"}.get(a, "space")} for a in axes]
    for entry in names:
        if entry["type"] == "space":
            entry["unit"] = "micrometer"
    datasets = []
    for k, data in enumerate(levels):
        arr = group.create_array(
            str(k), shape=data.shape, chunks=(1,) * (data.ndim - 2) + (64, 64), dtype=data.dtype
        )
        arr[...] = data
        factor = [1.0] * (len(axes) - 2) + [2.0**k, 2.0**k]
        datasets.append(
            {
                "path": str(k),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [s * f for s, f in zip(scale, factor)]}
                ],
            }
        )
    ms = (
        [{"version": version, "axes": names, "datasets": datasets}]
        if version == "0.4"
        else [{"axes": names, "datasets": datasets}]
    )
    if version == "0.5":
        group.attrs["ome"] = {"version": "0.5", "multiscales": ms}
    else:
        group.attrs["multiscales"] = ms


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_ome_zarr_image_with_named_axes_levels_and_spacing(image, tmp_path, version):
    path = tmp_path / "img.ome.zarr"
    full = image[None, :, None]  # (t=1, c=2, z=1, y, x): how converters store a 2D image
    _ome_zarr(path, [full, full[..., ::2, ::2]], [1.0, 1.0, 1.0, 0.25, 0.25], version=version)
    lazy = open_lazy(path)
    assert lazy.shape == (2, 300, 260)  # t and the single z dropped: a 2D image
    _regions(lazy, image)
    assert lazy.meta.spacing == (0.25, 0.25) and lazy.meta.spacing_unit == "um"
    low = open_lazy(path, level=1)
    np.testing.assert_array_equal(np.asarray(low), image[:, ::2, ::2])
    assert low.meta.spacing == (0.5, 0.5)
    whole, meta = read_image(path)
    np.testing.assert_array_equal(whole, image)
    assert meta.format == "zarr"


def test_plain_zarr_array_is_channel_first_and_3d_works(tmp_path):
    vol = np.random.default_rng(2).normal(size=(1, 12, 40, 30)).astype(np.float32)
    arr = zarr.create_array(
        str(tmp_path / "vol.zarr"), shape=vol.shape, chunks=(1, 4, 16, 16), dtype=vol.dtype
    )
    arr[...] = vol
    lazy = open_lazy(tmp_path / "vol.zarr")
    assert lazy.shape == (1, 12, 40, 30)
    np.testing.assert_array_equal(lazy[:, 3:9, 5:20, 1:2], vol[:, 3:9, 5:20, 1:2])
    # a folder of zarr stores lists them as images (datasets and predict inputs)
    assert list(list_images(tmp_path).by_stem) == ["vol"]


def test_unusable_stores_are_one_line_errors(image, tmp_path):
    group = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    group.create_array("a", shape=(4, 4), dtype="u1")
    with pytest.raises(
        DataError, match="not an OME-Zarr image.*save the image array as its own .zarr"
    ):
        open_lazy(tmp_path / "plain.zarr")
    movie = np.zeros((3, 1, 1, 32, 32), np.uint8)  # three time points: not one image
    _ome_zarr(tmp_path / "movie.zarr", [movie], [1.0] * 5)
    with pytest.raises(DataError, match=r"more than one image \(T=3\)"):
        open_lazy(tmp_path / "movie.zarr")
    with pytest.raises(DataError, match="cannot read this file type lazily"):
        open_lazy(tmp_path / "plain.zarr" / "zarr.json")
    # a damaged chunk: the read names the store and says what failed
    arr = zarr.create_array(str(tmp_path / "bad.zarr"), shape=(64, 64), chunks=(32, 32), dtype="u2")
    arr[...] = 7
    chunk = next(
        p for p in (tmp_path / "bad.zarr").rglob("*") if p.is_file() and p.name != "zarr.json"
    )
    chunk.write_bytes(b"not a compressed chunk")
    lazy = open_lazy(tmp_path / "bad.zarr")
    with pytest.raises(DataError, match=r"bad\.zarr.*cannot read the region \[0:1, 0:64, 0:64\]"):
        lazy[...]


def test_band_by_band_from_compressed_tiff_and_zarr_equals_npy(tmp_path, monkeypatch):
    """The same image as .npy (memory map), LZW tiled TIFF and OME-Zarr: identical outputs."""
    model = create_model("unet", base_features=2, depth=2, init="torch", norm="none")
    image = (np.random.default_rng(5).random((1, 301, 257)) * 1000).astype(np.uint16)
    np.save(tmp_path / "a.npy", image)
    tifffile.imwrite(
        tmp_path / "b.tif", image, tile=(64, 64), compression="lzw", metadata={"axes": "CYX"}
    )
    _ome_zarr(tmp_path / "c.ome.zarr", [image], [1.0, 1.0], axes="cyx")
    pred = Predictor(
        model,
        precision="fp32",
        max_tile=96,
        min_overlap=16,
        normalizer=create_normalizer("zscore"),
        label_map=LabelMap([0, 255]),
    )
    monkeypatch.setattr(batch_mod, "LARGE_PIXELS", 1000)
    res = predict_files(
        pred,
        [tmp_path / "a.npy", tmp_path / "b.tif", tmp_path / "c.ome.zarr"],
        tmp_path / "out",
        probabilities="tiff",
        progress=False,
    )
    assert [r.mode for r in res] == ["band-by-band"] * 3
    assert res[2].outputs["labels"].name == "c.ome.zarr"  # zarr in, OME-Zarr labels out
    outputs = [read_image(r.outputs["labels"])[0] for r in res]
    probs = [tifffile.imread(tmp_path / "out" / f"{s}_prob.tif") for s in "abc"]
    for labels, p in zip(outputs[1:], probs[1:]):
        np.testing.assert_array_equal(labels, outputs[0])
        np.testing.assert_array_equal(p, probs[0])
    whole = pred.predict(image)
    np.testing.assert_array_equal(outputs[0][0] == 255, whole == 1)


def test_volume_slab_by_slab_equals_the_whole_volume(tmp_path, monkeypatch):
    """A 3D volume stored as zarr and as (C, D, H, W) .npy, predicted in slabs of slices: the same
    probabilities as whole-volume prediction, and the same label files."""
    from unetkit.inference.large import predict_large

    model = create_model(
        "unet", spatial_dims=3, base_features=2, depth=2, init="torch", norm="none"
    )
    vol = (np.random.default_rng(6).random((1, 45, 28, 30)) * 500).astype(np.uint16)
    arr = zarr.create_array(
        str(tmp_path / "v.zarr"), shape=vol.shape, chunks=(1, 8, 16, 16), dtype=vol.dtype
    )
    arr[...] = vol
    np.save(tmp_path / "w.npy", vol)
    pred = Predictor(
        model,
        precision="fp32",
        max_tile=16,
        min_overlap=8,
        normalizer=create_normalizer("zscore"),
        label_map=LabelMap([0, 1]),
    )
    grid = pred.plan(vol.shape[1:]).grid()
    assert len(grid.rows()) > 2  # really several slabs

    sink = _Rows()
    predict_large(pred, open_lazy(tmp_path / "v.zarr"), sink)
    assert [y0 for y0, _ in sink.rows] == list(
        np.cumsum([0] + [p.shape[1] for _, p in sink.rows[:-1]])
    )
    np.testing.assert_allclose(
        np.concatenate([p for _, p in sink.rows], axis=1),
        pred.predict_proba(vol),
        rtol=0,
        atol=1e-6,
    )
    monkeypatch.setattr(batch_mod, "LARGE_PIXELS", 1000)
    res = predict_files(
        pred, [tmp_path / "v.zarr", tmp_path / "w.npy"], tmp_path / "out", progress=False
    )
    assert [r.mode for r in res] == ["band-by-band"] * 2
    labels = [read_image(r.outputs["labels"])[0] for r in res]
    np.testing.assert_array_equal(labels[0], labels[1])
    np.testing.assert_array_equal(labels[0][0], pred.predict(vol))


@pytest.mark.parametrize("dims", [3, 2])
def test_bands_split_into_windows_equal_whole_rows(tmp_path, monkeypatch, dims):
    """Bands over their memory budget are split across the plane (y/x windows of a volume's
    slabs): every tile is run once (crop stitching cuts between tiles), the windows tile the plane,
    and labels and probabilities equal those of whole-row bands."""
    from unetkit.inference import large

    rng = np.random.default_rng(7)
    if dims == 3:
        model = create_model("unet", spatial_dims=3, base_features=2, depth=2, norm="none")
        image = (rng.random((1, 30, 44, 52)) * 500).astype(np.uint16)
        pred = Predictor(model, precision="fp32", max_tile=16, min_overlap=8)
    else:
        model = create_model("unet", base_features=4, depth=2, norm="none")
        image = (rng.random((1, 90, 140)) * 255).astype(np.uint8)
        pred = Predictor(model, precision="fp32", max_tile=32, min_overlap=8)
    pred.normalizer, pred.label_map = create_normalizer("zscore"), LabelMap([0, 1])
    np.save(tmp_path / "v.npy", image)
    grid = pred.plan(image.shape[1:]).grid()
    budget = 5 * grid.band_rows() * int(np.prod(image.shape[2:])) * 4 // 10  # a tenth of a band
    windows = large.band_windows(grid, image.shape[1:], 2, budget)
    assert len(windows) >= 4 and large.band_windows(grid, image.shape[1:], 2) == [None]
    cover = np.zeros(image.shape[2:], int)
    for w in windows:
        cover[tuple(slice(a, b) for a, b in w)] += 1
    assert (cover == 1).all()  # disjoint and complete
    assert sum(len(large.tiles_in_window(grid, w)) for w in windows) == len(grid.tiles)

    monkeypatch.setattr(batch_mod, "LARGE_PIXELS", 1000)
    whole_rows = predict_files(
        pred, [tmp_path / "v.npy"], tmp_path / "rows", probabilities="tiff", progress=False
    )
    monkeypatch.setattr(large, "BAND_BYTES", budget)
    from unetkit.inference import outputs

    written, write = [], outputs.TiffBandSink.write

    def spy(self, y0, probs, window=None):
        written.append(window)
        return write(self, y0, probs, window)

    monkeypatch.setattr(outputs.TiffBandSink, "write", spy)
    windowed = predict_files(
        pred, [tmp_path / "v.npy"], tmp_path / "windows", probabilities="tiff", progress=False
    )
    assert whole_rows[0].mode == windowed[0].mode == "band-by-band"
    assert set(written) == set(windows)  # each window's rows written into its block
    labels = [read_image(r.outputs["labels"])[0] for r in (whole_rows[0], windowed[0])]
    np.testing.assert_array_equal(labels[1], labels[0])
    np.testing.assert_array_equal(labels[1][0] == 1, pred.predict(image) == 1)
    probs = [tifffile.imread(r.outputs["probabilities"]) for r in (whole_rows[0], windowed[0])]
    np.testing.assert_allclose(probs[1], probs[0], rtol=0, atol=1e-6)


def test_ome_zarr_labels_written_whole_and_band_by_band_are_valid_ngff(tmp_path, monkeypatch):
    """Labels of a zarr input come out as an NGFF 0.5 label image (validated with ome-zarr-models
    where installed), read back equal, with the input's pixel size; whole and band by band alike."""
    from unetkit.io import write_image
    from unetkit.io.readers import ImageMeta

    labels = (np.random.default_rng(7).random((1, 70, 90)) * 3).astype(np.uint8)
    meta = ImageMeta(spacing=(0.5, 0.25), spacing_unit="um")
    write_image(tmp_path / "l.ome.zarr", labels, meta)
    back, back_meta = read_image(tmp_path / "l.ome.zarr")
    np.testing.assert_array_equal(back, labels)
    assert back_meta.spacing == (0.5, 0.25) and back_meta.spacing_unit == "um"
    group = zarr.open_group(str(tmp_path / "l.ome.zarr"), mode="r")
    assert group.attrs["ome"]["multiscales"][0]["axes"][0]["name"] == "y"  # no channel axis
    assert "image-label" in group.attrs["ome"]
    write_image(tmp_path / "l.ome.zarr", labels * 0, meta)  # overwrite: replaced whole
    assert read_image(tmp_path / "l.ome.zarr")[0].max() == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    try:
        from ome_zarr_models.v05 import Image, ImageLabel
    except ImportError:
        pass
    else:
        ImageLabel.from_zarr(group)
        Image.from_zarr(group)

    model = create_model("unet", base_features=2, depth=2, init="torch", norm="none")
    pred = Predictor(
        model,
        precision="fp32",
        max_tile=96,
        min_overlap=16,
        normalizer=create_normalizer("zscore"),
        label_map=LabelMap([0, 255]),
    )
    image = (np.random.default_rng(8).random((1, 150, 130)) * 900).astype(np.uint16)
    _ome_zarr(tmp_path / "in.ome.zarr", [image], [1.0, 2.0, 2.0], axes="cyx")
    whole = predict_files(pred, [tmp_path / "in.ome.zarr"], tmp_path / "whole", progress=False)
    monkeypatch.setattr(batch_mod, "LARGE_PIXELS", 1000)
    band = predict_files(pred, [tmp_path / "in.ome.zarr"], tmp_path / "band", progress=False)
    assert (whole[0].mode, band[0].mode) == ("in-memory", "band-by-band")
    a, a_meta = read_image(whole[0].outputs["labels"])
    b, b_meta = read_image(band[0].outputs["labels"])
    np.testing.assert_array_equal(a, b)
    assert a_meta.spacing == b_meta.spacing == (2.0, 2.0)
    np.testing.assert_array_equal(a[0] == 255, pred.predict(image) == 1)


@pytest.mark.parametrize(
    "preset, blend", [("unet", "crop"), ("unet", "gaussian"), ("unet-original", "crop")]
)
def test_blocks_of_rows_predicted_apart_make_the_whole_image_exactly(preset, blend):
    """predict_large(rows=…) of consecutive blocks, each on its own (as Dask workers do), gives the
    whole image's probabilities bit for bit, whatever the blending."""
    from unetkit.inference.large import freeze_normalizer, predict_large

    model = create_model(preset, base_features=2, depth=2, init="torch")
    image = np.random.default_rng(9).normal(size=(1, 301, 157)).astype(np.float32)
    pred = Predictor(
        model,
        precision="fp32",
        max_tile=96,
        min_overlap=16,
        blend=blend,
        normalizer=create_normalizer("zscore"),
    )

    whole = _Rows()
    predict_large(pred, image, whole)
    frozen = freeze_normalizer(pred.normalizer, image)
    blocks = []
    for r0, r1 in [(0, 64), (64, 200), (200, 301)]:
        sink = _Rows()
        predict_large(pred, image, sink, rows=(r0, r1), normalizer=frozen)
        assert sink.rows[0][0] == r0 and sum(p.shape[1] for _, p in sink.rows) == r1 - r0
        blocks += [p for _, p in sink.rows]
    np.testing.assert_array_equal(
        np.concatenate(blocks, axis=1), np.concatenate([p for _, p in whole.rows], axis=1)
    )


class _Windows:
    """A windowed band sink assembling the whole ``(K, H, W)`` result from its windows' writes."""

    windows = True

    def __init__(self, shape):
        self.out = np.full(shape, np.nan, dtype=np.float32)
        self.seen = set()

    def write(self, y0, probs, window=None):
        ((x0, x1),) = window if window is not None else ((0, self.out.shape[2]),)
        assert np.isnan(self.out[:, y0 : y0 + probs.shape[1], x0:x1]).all()  # written once
        self.out[:, y0 : y0 + probs.shape[1], x0:x1] = probs
        self.seen.add(window)

    def close(self):
        pass


@pytest.mark.parametrize("members", [1, 2])
@pytest.mark.parametrize("blend", ["crop", "gaussian"])
def test_windows_with_blending_and_ensembles_equal_whole_rows(monkeypatch, blend, members):
    """Bands cut into windows give the whole rows' probabilities, with Gaussian blending (tiles
    straddling a cut run in both windows) and for an ensemble (the band stitches every member's
    channels, which the window budget counts)."""
    from unetkit.inference import large
    from unetkit.inference.ensemble import EnsemblePredictor

    image = np.random.default_rng(11).normal(size=(1, 150, 230)).astype(np.float32)
    preds = []
    for i in range(members):
        torch.manual_seed(i)
        model = create_model("unet", base_features=2, depth=2, init="torch")
        preds.append(
            Predictor(
                model,
                precision="fp32",
                max_tile=48,
                min_overlap=16,
                blend=blend,
                normalizer=create_normalizer("zscore"),
            )
        )
    pred = preds[0] if members == 1 else EnsemblePredictor(preds)
    assert large.band_channels(pred) == ((2, 2) if members == 1 else (4, 2))
    whole = _Rows()
    large.predict_large(pred, image, whole)
    expected = np.concatenate([p for _, p in whole.rows], axis=1)

    grid = pred.plan(image.shape[1:]).grid()
    one_band = (2 * members + 3) * grid.band_rows() * image.shape[2] * 4
    monkeypatch.setattr(large, "BAND_BYTES", one_band // 3)  # three windows or more
    sink = _Windows(expected.shape)
    large.predict_large(pred, image, sink)
    assert len(sink.seen) >= 3 and None not in sink.seen
    np.testing.assert_allclose(sink.out, expected, rtol=0, atol=1e-6)


def test_a_band_pixel_without_weight_is_named_in_image_coordinates():
    """A window's hole is reported where it is in the image, not in the window's buffer."""
    from unetkit.inference.tiling import Stitcher

    st = Stitcher((1, 10, 40), band_rows=4, window=[(20, 30)])
    st.add(np.ones((1, 4, 10), np.float32), (slice(0, 4), slice(20, 30)))
    st.weight[1, 3] = 0
    with pytest.raises(ConfigError, match=r"pixel \(1, 23\) received no weight"):
        st.flush(4, lambda y0, rows: None)


def _pyramid_tiff(path, image, spacing=0.5):
    """A 3-level pyramidal OME-TIFF of ``image`` (C, Y, X), every level tiled and zlib-compressed."""
    levels = [image, image[:, ::2, ::2], image[:, ::4, ::4]]
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(
            levels[0],
            tile=(64, 64),
            compression="zlib",
            subifds=2,
            metadata={"axes": "CYX", "PhysicalSizeX": spacing, "PhysicalSizeY": spacing},
        )
        for level in levels[1:]:
            tw.write(level, tile=(64, 64), compression="zlib", subfiletype=1)
    return levels


@pytest.mark.parametrize("band", [False, True])
def test_predict_a_pyramid_level_whole_or_band_by_band(tmp_path, monkeypatch, band):
    """``level=1`` predicts the half-resolution level of a pyramidal OME-TIFF and of an OME-Zarr
    image: outputs of that level's size and pixel size, equal to predicting that level's array."""
    pred = band_predictor()
    image = (np.random.default_rng(6).random((1, 288, 256)) * 1000).astype(np.uint16)
    levels = _pyramid_tiff(tmp_path / "a.ome.tif", image)
    _ome_zarr(tmp_path / "b.ome.zarr", levels[:2], [0.5, 0.5], axes="cyx")
    if band:
        monkeypatch.setattr(batch_mod, "LARGE_PIXELS", 1000)
    res = predict_files(
        pred,
        [tmp_path / "a.ome.tif", tmp_path / "b.ome.zarr"],
        tmp_path / "out",
        progress=False,
        level=1,
    )
    assert [r.mode for r in res] == ["band-by-band" if band else "in-memory"] * 2
    if band:  # the labels of a 3-level pyramid predicted at level 1: a pyramid of the 2 below
        assert res[0].outputs["labels"].name == "a.ome.tif"
        assert level_count(res[0].outputs["labels"]) == 2
    want = pred.predict(levels[1])
    for r in res:
        labels, meta = read_image(r.outputs["labels"])
        assert labels.shape == (1, 144, 128)
        np.testing.assert_array_equal(labels[0] == 255, want == 1)
        assert meta.spacing == pytest.approx((1.0, 1.0))


def test_a_level_the_input_lacks_is_one_line_before_anything_is_written(image, tmp_path):
    model = create_model("unet", base_features=2, depth=2, init="torch", norm="none")
    pred = Predictor(model, precision="fp32")
    _pyramid_tiff(tmp_path / "a.ome.tif", image[:1])
    tifffile.imwrite(tmp_path / "flat.tif", image[:1])
    np.save(tmp_path / "c.npy", image[:1])
    for name, match in [
        ("a.ome.tif", r"level 3 does not exist: the image has 3 level"),
        ("flat.tif", r"level 3 does not exist"),
        ("c.npy", r"has no pyramid levels; --level 3 needs pyramidal TIFF"),
    ]:
        with pytest.raises(DataError, match=match) as err:
            predict_files(pred, [tmp_path / name], tmp_path / "out", progress=False, level=3)
        assert name in str(err.value) and "\n" not in str(err.value)
        assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="level must be an integer"):
        predict_files(pred, [tmp_path / "a.ome.tif"], tmp_path / "out", progress=False, level=-1)


def test_spatial_shape_reads_headers(tmp_path):
    """The planner's validation-time estimate reads the sizes of a --val folder's images without
    their pixels (headers, memory maps); an unreadable file gives None."""
    from PIL import Image

    from unetkit.io.readers import spatial_shape

    Image.fromarray(np.zeros((30, 40), np.uint8)).save(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "b.tif", np.zeros((5, 30, 40), np.uint8))
    np.save(tmp_path / "c.npy", np.zeros((2, 30, 40), np.float32))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    assert spatial_shape(tmp_path / "a.png") == (30, 40)
    assert spatial_shape(tmp_path / "b.tif") == (5, 30, 40)
    assert spatial_shape(tmp_path / "c.npy") == (30, 40)  # (C, H, W): channels first
    assert spatial_shape(tmp_path / "bad.png") is None
    nib = pytest.importorskip("nibabel")
    sitk = pytest.importorskip("SimpleITK")
    nib.save(nib.Nifti1Image(np.zeros((10, 12, 7), np.int16), np.eye(4)), tmp_path / "v.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((10, 12, 7, 2), np.int16), np.eye(4)), tmp_path / "c.nii")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((7, 12, 10), np.float32)), tmp_path / "v.nrrd")
    for name in ("v.nii.gz", "c.nii", "v.nrrd"):  # (Z, Y, X) as read_image gives it
        assert spatial_shape(tmp_path / name) == (7, 12, 10), name


def test_inputs_predicted_band_by_band_are_said_to_get_no_post_processing(tmp_path, monkeypatch):
    """Objects span bands, so a huge image gets the raw labels though the model carries a clean-up:
    said in a line naming it (the post-processing line alone claimed the clean-up for every
    input), and its labels are the raw argmax indeed."""
    from unetkit.inference.postprocess import PostProcessing, PostStep

    image = (np.random.default_rng(2).random((1, 120, 100)) * 255).astype(np.uint8)
    np.save(tmp_path / "huge.npy", image)
    np.save(tmp_path / "small.npy", image[:, :20, :20])
    pred = band_predictor()
    pred.postprocess = PostProcessing((PostStep("remove_small", 1, min_size=50),))
    monkeypatch.setattr(batch_mod, "LARGE_PIXELS", 1000)
    said: list = []
    res = predict_files(
        pred,
        [tmp_path / "huge.npy", tmp_path / "small.npy"],
        tmp_path / "out",
        progress=False,
        say=said.append,
    )
    assert [r.mode for r in res] == ["band-by-band", "in-memory"]
    assert said == [
        "1 input(s) over 0 Mpx (volumes over 0 M voxels) (huge.npy) are predicted band by band "
        "(slab by slab) and get no post-processing (objects span bands): their labels are the "
        "raw argmax"
    ]
    raw = pred.label_map.decode(pred.predict(image))  # predict: the argmax, no clean-up
    np.testing.assert_array_equal(read_image(res[0].outputs["labels"])[0], raw)
    pred.postprocess = PostProcessing()  # nothing to leave out: nothing said
    said.clear()
    predict_files(pred, [tmp_path / "huge.npy"], tmp_path / "raw", progress=False, say=said.append)
    assert said == []


def test_a_zarr_folder_that_is_no_store_or_lacks_its_level_says_the_fix(tmp_path):
    import zarr

    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(DataError, match=r"empty\.zarr: not a readable zarr store .*: give a zarr"):
        open_lazy(tmp_path / "empty.zarr")
    group = zarr.open_group(str(tmp_path / "cut.zarr"), mode="w")
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
            "datasets": [
                {"path": p, "coordinateTransformations": [{"type": "scale", "scale": [1, 1]}]}
                for p in ("0", "1")
            ],
        }
    ]
    group.create_array("1", shape=(8, 8), dtype="uint8")
    with pytest.raises(DataError, match=r"names the array '0', which is missing: copy the store"):
        open_lazy(tmp_path / "cut.zarr")
    with pytest.raises(DataError, match=r"level 2 does not exist: the image has 2 level\(s\), 0…1"):
        open_lazy(tmp_path / "cut.zarr", 2)

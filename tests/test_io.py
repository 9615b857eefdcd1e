"""Readers and writers: axis order, dtype and range kept, metadata kept, exact round trips, errors."""

from __future__ import annotations

import json
import os
import struct
import zlib

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from unetkit.errors import DataError
from unetkit.io import ImageMeta, atomic_write, is_image_file, read_image, split_suffix, write_image

RNG = np.random.default_rng(1234)


def rand(shape, dtype, lo=0, hi=255):
    return RNG.integers(lo, hi, size=shape, endpoint=True).astype(dtype)


# --------------------------------------------------------------------------------------- suffixes
def test_split_suffix_multi_part():
    assert split_suffix("a/case_01.nii.gz") == ("case_01", ".nii.gz")
    assert split_suffix("x.OME.TIF") == ("x", ".ome.tif")
    assert split_suffix("README.txt") == ("README", ".txt")
    assert is_image_file("01.PNG") and not is_image_file("notes.txt")


# ---------------------------------------------------------------------------------------- Pillow
def test_png_8bit_grey_is_channel_first(tmp_path):
    a = rand((7, 9), np.uint8)
    Image.fromarray(a).save(tmp_path / "g.png")
    arr, meta = read_image(tmp_path / "g.png")
    assert arr.shape == (1, 7, 9) and arr.dtype == np.uint8
    np.testing.assert_array_equal(arr[0], a)
    assert (meta.format, meta.mode, meta.dtype, meta.axes, meta.channel_axis) == (
        "png",
        "L",
        "uint8",
        "YX",
        None,
    )
    assert (
        meta.shape == (1, 7, 9) and meta.spatial_dims == 2 and meta.path == str(tmp_path / "g.png")
    )


def test_png_16bit_keeps_range(tmp_path):
    a = np.array([[0, 40000, 65535], [1, 255, 256]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "d.png")
    arr, meta = read_image(tmp_path / "d.png")
    assert arr.dtype == np.uint16 and arr[0, 0, 1] == 40000 and arr.max() == 65535
    np.testing.assert_array_equal(arr[0], a)
    assert meta.dtype == "uint16"
    write_image(tmp_path / "d2.png", arr, meta)
    back, _ = read_image(tmp_path / "d2.png")
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, arr)


def test_rgb_png_channels_first(tmp_path):
    a = rand((5, 6, 3), np.uint8)
    Image.fromarray(a).save(tmp_path / "c.png")
    arr, meta = read_image(tmp_path / "c.png")
    assert arr.shape == (3, 5, 6)
    for c in range(3):
        np.testing.assert_array_equal(arr[c], a[..., c])
    assert meta.mode == "RGB" and meta.channel_axis == "S" and meta.axes == "YXS"
    write_image(tmp_path / "c2.png", arr, meta)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "c2.png")), a)


def test_rgba_alpha_dropped_unless_kept(tmp_path):
    a = rand((4, 5, 4), np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    arr, meta = read_image(tmp_path / "a.png")
    assert arr.shape == (3, 4, 5) and meta.alpha_dropped and meta.mode == "RGBA"
    np.testing.assert_array_equal(arr, np.moveaxis(a[..., :3], -1, 0))
    kept, meta4 = read_image(tmp_path / "a.png", keep_alpha=True)
    assert kept.shape == (4, 4, 5) and not meta4.alpha_dropped
    np.testing.assert_array_equal(kept[3], a[..., 3])


def test_la_png_alpha_dropped(tmp_path):
    a = rand((4, 5, 2), np.uint8)
    Image.fromarray(a).save(tmp_path / "la.png")
    arr, meta = read_image(tmp_path / "la.png")
    assert arr.shape == (1, 4, 5) and meta.alpha_dropped
    np.testing.assert_array_equal(arr[0], a[..., 0])


def _png_filter(raw, prior, bpp, kind):
    """PNG row filter ``kind`` (0 none, 1 sub, 2 up, 3 average, 4 Paeth) of one row of bytes."""
    raw, prior = raw.astype(np.int64), prior.astype(np.int64)
    left = np.concatenate([np.zeros(bpp, np.int64), raw[:-bpp]])
    upleft = np.concatenate([np.zeros(bpp, np.int64), prior[:-bpp]])
    if kind == 4:
        p = left + prior - upleft
        pa, pb, pc = abs(p - left), abs(p - prior), abs(p - upleft)
        pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prior, upleft))
    else:
        pred = [0 * raw, left, prior, (left + prior) // 2][kind]
    return ((raw - pred) % 256).astype(np.uint8)


def png16(samples, color_type):
    """A 16-bit PNG written byte by byte: ``samples`` (H, W, S) uint16; every row filter type used."""
    h, w, s = samples.shape
    rows = samples.astype(">u2").reshape(h, w * s).view(np.uint8)
    body, prior = b"", np.zeros(rows.shape[1], np.uint8)
    for y in range(h):
        body += bytes([y % 5]) + _png_filter(rows[y], prior, 2 * s, y % 5).tobytes()
        prior = rows[y]

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(body))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "color_type, samples, rawmode", [(2, 3, "RGB;16B"), (6, 4, "RGBA;16B"), (4, 2, "LA;16B")]
)
def test_png_16bit_colour_read_at_full_depth(tmp_path, color_type, samples, rawmode):
    a = rand((7, 9, samples), np.uint16, 0, 65535)
    a[0, 0] = 0x0102  # high and low byte differ: an 8-bit reduction would give 1
    (tmp_path / "c16.png").write_bytes(png16(a, color_type))
    assert (
        Image.open(tmp_path / "c16.png").tile[0][3] == rawmode
    )  # what Pillow alone reduces to 8 bits
    kept, meta = read_image(tmp_path / "c16.png", keep_alpha=True)
    assert kept.dtype == np.uint16 and kept.shape == (samples, 7, 9) and meta.dtype == "uint16"
    np.testing.assert_array_equal(kept, np.moveaxis(a, -1, 0))
    assert meta.mode == rawmode and meta.channel_axis == "S" and not meta.alpha_dropped
    arr, meta = read_image(tmp_path / "c16.png")
    alpha = color_type in (4, 6)
    assert arr.shape == (samples - alpha, 7, 9) and meta.alpha_dropped == alpha
    np.testing.assert_array_equal(arr, np.moveaxis(a[..., : samples - alpha], -1, 0))
    assert arr[0, 0, 0] == 0x0102


def test_palette_png_keeps_indices_and_palette(tmp_path):
    idx = rand((6, 7), np.uint8, 0, 2)
    im = Image.fromarray(idx)
    palette = [0, 0, 0, 255, 0, 0, 0, 128, 255]
    im.putpalette(palette)
    im.save(tmp_path / "p.png")
    arr, meta = read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(arr[0], idx)
    assert meta.mode == "P" and meta.palette[:9] == palette
    write_image(tmp_path / "p2.png", arr, meta)
    again = Image.open(tmp_path / "p2.png")
    assert again.mode == "P" and again.getpalette()[:9] == palette
    np.testing.assert_array_equal(np.asarray(again), idx)


def test_one_bit_png(tmp_path):
    a = RNG.random((5, 8)) > 0.5
    Image.fromarray(a).save(tmp_path / "b.png")
    arr, meta = read_image(tmp_path / "b.png")
    assert (
        arr.dtype == np.uint8
        and set(np.unique(arr)) <= {0, 1}
        and meta.dtype == "bool"
        and meta.mode == "1"
    )
    np.testing.assert_array_equal(arr[0], a.astype(np.uint8))
    write_image(tmp_path / "b2.png", arr, meta)
    assert Image.open(tmp_path / "b2.png").mode == "1"
    np.testing.assert_array_equal(read_image(tmp_path / "b2.png")[0], arr)


def test_jpeg_and_bmp(tmp_path):
    a = np.full((8, 8, 3), (200, 100, 50), np.uint8)
    Image.fromarray(a).save(tmp_path / "x.jpg", quality=95)
    arr, meta = read_image(tmp_path / "x.jpg")
    assert arr.shape == (3, 8, 8) and meta.format == "jpeg"
    assert np.abs(arr.astype(int) - np.moveaxis(a, -1, 0)).max() <= 3  # lossy
    b = rand((1, 5, 6), np.uint8)
    write_image(tmp_path / "x.bmp", b)
    np.testing.assert_array_equal(read_image(tmp_path / "x.bmp")[0], b)


def test_gif_single_and_animated(tmp_path):
    a = rand((5, 6), np.uint8, 0, 3)
    im = Image.fromarray(a).convert("P")
    im.save(tmp_path / "s.gif")
    arr, meta = read_image(tmp_path / "s.gif")
    assert arr.shape == (1, 5, 6) and meta.mode in ("P", "L")
    frames = [Image.fromarray(rand((5, 6), np.uint8)).convert("P") for _ in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(DataError, match=r"anim\.gif: has 3 frames"):
        read_image(tmp_path / "anim.gif")


# ------------------------------------------------------------------------------------------ TIFF
def test_tiff_16bit_2d(tmp_path):
    a = rand((6, 7), np.uint16, 0, 65535)
    a[0, 0] = 40000
    tifffile.imwrite(tmp_path / "a.tif", a)
    arr, meta = read_image(tmp_path / "a.tif")
    assert arr.shape == (1, 6, 7) and arr.dtype == np.uint16 and arr[0, 0, 0] == 40000
    np.testing.assert_array_equal(arr[0], a)
    assert meta.format == "tiff" and meta.channel_axis is None


def test_multipage_tiff_is_a_3d_stack(tmp_path):
    pages = rand((4, 5, 6), np.uint16, 0, 60000)
    for page in pages:  # plain pages, no metadata: axes "IYX"
        tifffile.imwrite(tmp_path / "stack.tif", page, append=True, metadata=None)
    arr, meta = read_image(tmp_path / "stack.tif")
    assert meta.axes in ("IYX", "QYX") and arr.shape == (1, 4, 5, 6)
    np.testing.assert_array_equal(arr[0], pages)
    # the same file read with an explicit axes override: pages are channels
    chans, meta2 = read_image(tmp_path / "stack.tif", axes="CYX")
    assert chans.shape == (4, 5, 6) and meta2.channel_axis == "C"
    np.testing.assert_array_equal(chans, pages)


def test_rgb_tiff_samples_are_channels(tmp_path):
    a = rand((5, 6, 3), np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", a, photometric="rgb")
    arr, meta = read_image(tmp_path / "rgb.tif")
    assert meta.axes == "YXS" and meta.channel_axis == "S" and arr.shape == (3, 5, 6)
    np.testing.assert_array_equal(arr, np.moveaxis(a, -1, 0))


def test_tiff_alpha_dropped_unless_kept_like_png(tmp_path):
    rgba = rand((5, 6, 4), np.uint8)
    # as an image editor writes it (no tifffile "shaped" description)
    tifffile.imwrite(
        tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=("unassalpha",), metadata=None
    )
    arr, meta = read_image(tmp_path / "rgba.tif")
    assert arr.shape == (3, 5, 6) and meta.alpha_dropped and meta.channel_axis == "S"
    np.testing.assert_array_equal(arr, np.moveaxis(rgba[..., :3], -1, 0))
    kept, meta4 = read_image(tmp_path / "rgba.tif", keep_alpha=True)
    assert kept.shape == (4, 5, 6) and not meta4.alpha_dropped
    np.testing.assert_array_equal(kept, np.moveaxis(rgba, -1, 0))
    # the same PNG gives the same arrays
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png")[0], arr)
    # grey + associated alpha, samples stored as separate planes
    la = rand((2, 5, 6), np.uint16, 0, 60000)
    tifffile.imwrite(
        tmp_path / "la.tif",
        la,
        photometric="minisblack",
        planarconfig="separate",
        extrasamples=("assocalpha",),
        metadata=None,
    )
    grey, meta = read_image(tmp_path / "la.tif")
    assert grey.shape == (1, 5, 6) and meta.alpha_dropped and meta.axes == "SYX"
    np.testing.assert_array_equal(grey[0], la[0])
    # an extra sample of unspecified meaning is data, not alpha: kept
    tifffile.imwrite(
        tmp_path / "x.tif", rgba, photometric="rgb", extrasamples=("unspecified",), metadata=None
    )
    four, meta = read_image(tmp_path / "x.tif")
    assert four.shape == (4, 5, 6) and not meta.alpha_dropped
    # the writer's RGBA output reads back the same way
    write_image(tmp_path / "w.tif", np.moveaxis(rgba, -1, 0), ImageMeta(channel_axis="S"))
    assert read_image(tmp_path / "w.tif")[0].shape == (3, 5, 6)
    np.testing.assert_array_equal(
        read_image(tmp_path / "w.tif", keep_alpha=True)[0], np.moveaxis(rgba, -1, 0)
    )


def test_imagej_hyperstack_channels_depth_and_spacing(tmp_path):
    data = rand((3, 2, 5, 6), np.uint16, 0, 50000)  # Z, C, Y, X
    tifffile.imwrite(
        tmp_path / "ij.tif",
        data,
        imagej=True,
        resolution=(1 / 0.25, 1 / 0.5),
        metadata={"axes": "ZCYX", "spacing": 2.0, "unit": "um"},
    )
    arr, meta = read_image(tmp_path / "ij.tif")
    assert meta.axes == "ZCYX" and meta.channel_axis == "C"
    assert arr.shape == (2, 3, 5, 6)  # (C, D, H, W)
    np.testing.assert_array_equal(arr, np.transpose(data, (1, 0, 2, 3)))
    assert meta.spacing == pytest.approx((2.0, 0.5, 0.25)) and meta.spacing_unit == "um"


def test_ome_tiff_axes_and_physical_size(tmp_path):
    data = rand((2, 3, 4, 5), np.uint16, 0, 1000)  # C, Z, Y, X
    tifffile.imwrite(
        tmp_path / "x.ome.tif",
        data,
        metadata={"axes": "CZYX", "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.4, "PhysicalSizeZ": 1.5},
    )
    arr, meta = read_image(tmp_path / "x.ome.tif")
    assert arr.shape == (2, 3, 4, 5)
    np.testing.assert_array_equal(arr, data)
    assert meta.spacing == pytest.approx((1.5, 0.4, 0.3)) and meta.spacing_unit == "um"


def test_tiff_resolution_tags_centimetre_vs_inch(tmp_path):
    a = rand((4, 4), np.uint8)
    tifffile.imwrite(
        tmp_path / "cm.tif",
        a,
        resolution=(1e4 / 0.5, 1e4 / 0.5),
        resolutionunit="CENTIMETER",
        metadata=None,
    )
    assert read_image(tmp_path / "cm.tif")[1].spacing == pytest.approx((0.5, 0.5))
    tifffile.imwrite(
        tmp_path / "inch.tif", a, resolution=(72, 72), resolutionunit="INCH", metadata=None
    )
    assert read_image(tmp_path / "inch.tif")[1].spacing is None
    for unit, per_unit in (("MILLIMETER", 1e3), ("MICROMETER", 1.0)):  # tifffile's extensions
        tifffile.imwrite(
            tmp_path / f"{unit}.tif",
            a,
            resolution=(per_unit / 0.25, per_unit / 0.25),
            resolutionunit=unit,
            metadata=None,
        )
        meta = read_image(tmp_path / f"{unit}.tif")[1]
        assert meta.spacing == pytest.approx((0.25, 0.25)) and meta.spacing_unit == "um"


def test_tiff_time_axis_refused(tmp_path):
    tifffile.imwrite(
        tmp_path / "t.tif",
        rand((3, 4, 5), np.uint8),
        photometric="minisblack",
        metadata={"axes": "TYX"},
    )
    with pytest.raises(DataError, match=r"t\.tif: .*T=3"):
        read_image(tmp_path / "t.tif")


def test_tiff_float_nan_is_not_an_error(tmp_path):
    a = RNG.normal(size=(1, 4, 5)).astype(np.float32)
    a[0, 1, 1] = np.nan
    a[0, 2, 2] = np.inf
    write_image(tmp_path / "f.tif", a)
    arr, _ = read_image(tmp_path / "f.tif")
    np.testing.assert_array_equal(arr, a)  # NaN == NaN under assert_array_equal


@pytest.mark.parametrize(
    "dtype", ["uint8", "int8", "uint16", "int16", "int32", "uint32", "float32", "float64"]
)
def test_tiff_round_trip_dtypes(tmp_path, dtype):
    a = (
        (RNG.normal(size=(2, 3, 5, 4)) * 50).astype(dtype)
        if dtype.startswith("float")
        else rand((2, 3, 5, 4), dtype, 0, 100)
    )
    meta = ImageMeta(spacing=(2.0, 0.5, 0.25), spacing_unit="um")
    write_image(tmp_path / "r.tif", a, meta)
    b, m = read_image(tmp_path / "r.tif")
    assert b.dtype == a.dtype and b.shape == a.shape
    np.testing.assert_array_equal(b, a)
    assert m.spacing == (2.0, 0.5, 0.25) and m.spacing_unit == "um"
    # resolution tags also carry the pixel size for other software
    with tifffile.TiffFile(tmp_path / "r.tif") as tf:
        assert tf.pages[0].tags["XResolution"].value[0] / tf.pages[0].tags["XResolution"].value[
            1
        ] == pytest.approx(4.0)


def test_tiff_rgb_round_trip_keeps_interleaved_layout(tmp_path):
    a = rand((3, 5, 6), np.uint8)
    write_image(tmp_path / "rgb.tif", a)
    arr, meta = read_image(tmp_path / "rgb.tif")
    assert meta.axes == "YXS"
    np.testing.assert_array_equal(arr, a)


# ----------------------------------------------------------------------------------------- NIfTI
def _affine():
    aff = np.array(
        [[0.0, 0.0, 2.5, -10.0], [0.0, 0.8, 0.0, 5.0], [-0.7, 0.0, 0.0, 3.0], [0, 0, 0, 1]]
    )
    return aff


def test_nifti_3d_axis_order_spacing_affine(tmp_path):
    data = rand((4, 5, 6), np.int16, -100, 100)  # (X, Y, Z) on disk
    nib.save(nib.Nifti1Image(data, _affine()), tmp_path / "v.nii.gz")
    arr, meta = read_image(tmp_path / "v.nii.gz")
    assert arr.shape == (1, 6, 5, 4) and arr.dtype == np.int16  # (1, Z, Y, X)
    x, y, z = 3, 1, 4
    assert arr[0, z, y, x] == data[x, y, z]
    np.testing.assert_array_equal(arr[0], data.transpose(2, 1, 0))
    assert meta.axes == "XYZ" and meta.channel_axis is None
    # zooms (X, Y, Z) = column norms of the affine = (0.7, 0.8, 2.5), reversed
    assert meta.spacing == pytest.approx((2.5, 0.8, 0.7), rel=1e-6)
    np.testing.assert_allclose(meta.affine, _affine(), atol=1e-6)


def test_nifti_round_trip_exact(tmp_path):
    data = RNG.normal(size=(1, 3, 4, 5)).astype(np.float32)
    meta = ImageMeta(affine=_affine().tolist(), spacing_unit="mm")
    write_image(tmp_path / "w.nii.gz", data, meta)
    arr, m = read_image(tmp_path / "w.nii.gz")
    np.testing.assert_array_equal(arr, data)
    np.testing.assert_allclose(m.affine, _affine(), atol=1e-6)
    assert m.spacing_unit == "mm"
    write_image(tmp_path / "w2.nii", arr, m)  # second trip: metadata identical
    arr2, m2 = read_image(tmp_path / "w2.nii")
    np.testing.assert_array_equal(arr2, data)
    assert m2.spacing == m.spacing and m2.affine == m.affine


def test_nifti_spacing_without_affine_and_4d_channels(tmp_path):
    data = rand((2, 3, 4, 5), np.uint16, 0, 60000)
    write_image(tmp_path / "c.nii.gz", data, ImageMeta(spacing=(3.0, 0.5, 0.25)))
    arr, m = read_image(tmp_path / "c.nii.gz")
    np.testing.assert_array_equal(arr, data)
    assert m.axes == "XYZC" and m.channel_axis == "C" and m.spacing == (3.0, 0.5, 0.25)
    on_disk = nib.load(tmp_path / "c.nii.gz")
    assert on_disk.shape == (5, 4, 3, 2)
    np.testing.assert_allclose(np.diag(on_disk.affine), [0.25, 0.5, 3.0, 1.0])


def test_nifti_2d_and_scaled(tmp_path):
    write_image(tmp_path / "p.nii", rand((1, 4, 5), np.uint8))
    arr, m = read_image(tmp_path / "p.nii")
    assert arr.shape == (1, 4, 5) and m.axes == "XY"
    img = nib.Nifti1Image(np.arange(8, dtype=np.int16).reshape(2, 2, 2), np.eye(4))
    img.header.set_slope_inter(0.5, 10.0)
    nib.save(img, tmp_path / "s.nii")
    arr, m = read_image(tmp_path / "s.nii")
    assert arr.dtype == np.float32 and m.dtype == "int16"
    assert arr[0, 0, 0, 1] == pytest.approx(10.0 + 0.5 * 4)  # voxel (x=1, y=0, z=0) holds 4


def test_nifti_single_slice_is_2d_and_round_trips(tmp_path):
    data = rand((5, 4, 1), np.int16, -50, 50)  # (X, Y, 1) on disk: 2D data stored for nnU-Net
    aff = np.diag([0.5, 0.25, 3.0, 1.0])
    nib.save(nib.Nifti1Image(data, aff), tmp_path / "s.nii.gz")
    arr, meta = read_image(tmp_path / "s.nii.gz")
    assert arr.shape == (1, 4, 5) and meta.spatial_dims == 2 and meta.axes == "XYZ"
    np.testing.assert_array_equal(arr[0], data[:, :, 0].T)  # (H, W) = (Y, X)
    assert meta.spacing == (0.25, 0.5)  # (dy, dx)
    np.testing.assert_allclose(meta.affine, aff)
    write_image(tmp_path / "back.nii.gz", arr, meta)
    on_disk = nib.load(tmp_path / "back.nii.gz")
    assert on_disk.shape == (5, 4, 1)
    np.testing.assert_array_equal(np.asarray(on_disk.dataobj), data)
    np.testing.assert_allclose(on_disk.affine, aff)
    # with channels: (X, Y, 1, C) -> (C, H, W) and back
    multi = rand((5, 4, 1, 2), np.uint8)
    nib.save(nib.Nifti1Image(multi, np.eye(4)), tmp_path / "m.nii")
    arr, meta = read_image(tmp_path / "m.nii")
    assert arr.shape == (2, 4, 5) and meta.axes == "XYZC" and meta.channel_axis == "C"
    np.testing.assert_array_equal(arr, np.transpose(multi[:, :, 0], (2, 1, 0)))
    write_image(tmp_path / "m2.nii", arr, meta)
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "m2.nii").dataobj), multi)
    # a plain 2D array without that meta is still written as (X, Y)
    write_image(tmp_path / "p.nii", arr[:1])
    assert nib.load(tmp_path / "p.nii").shape == (5, 4)


# ----------------------------------------------------------------------------------------- meta
def test_nifti_without_a_voxel_size_or_with_a_flat_affine_is_refused(tmp_path, caplog):
    """nibabel takes a pixdim of 0 for 1 (a 0.8 mm case would train as 1 mm thick) and keeps an
    affine with a zero column, which fails only when the prediction is written: both are one line
    when the file is read. A single slice stored (X, Y, 1) needs no z voxel size."""
    data = rand((6, 5, 4), np.int16, 0, 100)
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.0, 1.0])), tmp_path / "zero.nii")
    raw = bytearray((tmp_path / "zero.nii").read_bytes())
    raw[88:92] = struct.pack("<f", 0.0)  # pixdim[3], as a tool writing no z size leaves it
    raw[252:256] = struct.pack("<hh", 0, 0)  # qform_code, sform_code: no affine, pixdim only
    (tmp_path / "zero.nii").write_bytes(bytes(raw))
    with pytest.raises(
        DataError,
        match=r"zero\.nii: the header's voxel size \(pixdim, x y z\) is 0\.8×0\.8×0: one axis",
    ):
        read_image(tmp_path / "zero.nii")
    assert not [r for r in caplog.records if "should be non-zero" in r.getMessage()]  # nibabel's
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.0, 1.0])), tmp_path / "flat.nii")
    raw = bytearray((tmp_path / "flat.nii").read_bytes())
    raw[252:256] = struct.pack("<hh", 0, 1)  # sform only
    raw[312:328] = struct.pack("<4f", 0.0, 0.0, 0.0, 5.0)  # srow_z: z maps nowhere
    (tmp_path / "flat.nii").write_bytes(bytes(raw))
    with pytest.raises(
        DataError, match=r"flat\.nii: the header's sform affine maps the image onto fewer than 3"
    ):
        read_image(tmp_path / "flat.nii")
    # 0.5 µm voxels stated in metres are small numbers, not a flat affine
    tiny = nib.Nifti1Image(data, np.diag([5e-7, 5e-7, 1e-6, 1.0]))
    tiny.header.set_xyzt_units("meter")
    nib.save(tiny, tmp_path / "metres.nii.gz")
    assert read_image(tmp_path / "metres.nii.gz")[1].spacing == pytest.approx((1e-6, 5e-7, 5e-7))
    nib.save(nib.Nifti1Image(data[:, :, :1], np.diag([0.5, 0.25, 1, 1])), tmp_path / "slice.nii")
    raw = bytearray((tmp_path / "slice.nii").read_bytes())
    raw[88:92] = struct.pack("<f", 0.0)
    raw[252:256] = struct.pack("<hh", 0, 0)
    (tmp_path / "slice.nii").write_bytes(bytes(raw))
    arr, meta = read_image(tmp_path / "slice.nii")
    assert arr.shape == (1, 5, 6) and meta.spacing == (0.25, 0.5)


def test_meta_json_round_trip(tmp_path):
    write_image(
        tmp_path / "v.nii.gz", rand((1, 2, 3, 4), np.int16), ImageMeta(affine=_affine().tolist())
    )
    _, meta = read_image(tmp_path / "v.nii.gz")
    text = json.dumps(meta.to_dict())
    back = ImageMeta.from_dict({**json.loads(text), "future_key": 1})
    assert back == meta and isinstance(back.shape, tuple) and isinstance(back.spacing, tuple)


# ---------------------------------------------------------------------------------- atomic write
def test_atomic_write_leaves_no_temp_file(tmp_path):
    write_image(tmp_path / "out" / "a.nii.gz", rand((1, 2, 3, 4), np.uint8))
    assert sorted(os.listdir(tmp_path / "out")) == ["a.nii.gz"]


def test_failed_write_keeps_target_and_removes_temp(tmp_path, monkeypatch):
    target = tmp_path / "t.tif"
    write_image(target, rand((1, 4, 4), np.uint8))
    before = target.read_bytes()

    def broken(file, data, **kwargs):
        with open(file, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", broken)
    with pytest.raises(OSError, match="disk full"):
        write_image(target, rand((1, 4, 4), np.uint8))
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["t.tif"]
    with pytest.raises(DataError, match="cannot store float32"):
        write_image(tmp_path / "t.png", np.zeros((1, 2, 2), np.float32))
    assert sorted(os.listdir(tmp_path)) == ["t.tif"]


def test_atomic_write_context_manager(tmp_path):
    with atomic_write(tmp_path / "x.json") as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".json") and tmp.name.startswith(".x.")
        tmp.write_text("{}")
    assert (tmp_path / "x.json").read_text() == "{}"
    with pytest.raises(RuntimeError), atomic_write(tmp_path / "x.json") as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert (tmp_path / "x.json").read_text() == "{}" and sorted(os.listdir(tmp_path)) == ["x.json"]


# ------------------------------------------------------------------------------ write refusals
@pytest.mark.parametrize(
    "name,array,message",
    [
        (
            "f.png",
            np.zeros((1, 2, 2), np.float32),
            r"f\.png: cannot store float32 .* in a PNG file",
        ),
        (
            "rgb16.png",
            np.zeros((3, 2, 2), np.uint16),
            r"rgb16\.png: cannot store uint16 data with 3 channel",
        ),
        (
            "vol.png",
            np.zeros((1, 2, 2, 2), np.uint8),
            r"vol\.png: cannot store uint8 .* PNG file \(it holds 2D",
        ),
        (
            "x.jpg",
            np.zeros((1, 2, 2), np.uint8),
            r"x\.jpg: unetkit does not write JPEG files \(lossy\)",
        ),
        ("h.nii.gz", np.zeros((1, 2, 2, 2), np.float16), r"h\.nii\.gz: cannot store float16"),
        ("m.nii", np.zeros((3, 2, 2), np.uint8), r"m\.nii: cannot store uint8 data with 3 channel"),
        (
            "flat.tif",
            np.zeros((4, 4), np.uint8),
            r"flat\.tif: cannot write an array of shape \(4, 4\): expected channel-first",
        ),
        ("c.tif", np.zeros((1, 2, 2), np.complex64), r"c\.tif: cannot write complex64 data"),
        ("notes.txt", np.zeros((1, 2, 2), np.uint8), r"notes\.txt: unsupported file type '\.txt'"),
    ],
)
def test_write_refusals(tmp_path, name, array, message):
    with pytest.raises(DataError, match=message):
        write_image(tmp_path / name, array)
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------ bad files
def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.png: file not found"):
        read_image(tmp_path / "nope.png")


def test_broken_symlink_names_the_link_and_its_target(tmp_path):
    (tmp_path / "link.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(DataError) as err:
        read_image(tmp_path / "link.png")
    assert str(err.value) == (
        f"{tmp_path / 'link.png'}: broken symbolic link (its target "
        f"{tmp_path / 'gone.png'} does not exist)"
    )


def test_zero_byte_file(tmp_path):
    (tmp_path / "z.tif").write_bytes(b"")
    with pytest.raises(DataError, match=r"z\.tif: empty file \(0 bytes\)"):
        read_image(tmp_path / "z.tif")


def test_unsupported_suffix(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(
        DataError, match=r"notes\.txt: unsupported file type '\.txt'; supported: \.nii\.gz"
    ):
        read_image(tmp_path / "notes.txt")


def test_text_saved_as_png(tmp_path):
    (tmp_path / "fake.png").write_text("this is not an image\n" * 5)
    with pytest.raises(DataError, match=r"fake\.png: not a PNG image") as err:
        read_image(tmp_path / "fake.png")
    assert "\n" not in str(err.value) and err.value.path == tmp_path / "fake.png"


def test_truncated_png(tmp_path):
    write_image(tmp_path / "t.png", rand((1, 64, 64), np.uint8))
    _truncate(tmp_path / "t.png")
    with pytest.raises(DataError, match=r"t\.png: unreadable or truncated PNG file"):
        read_image(tmp_path / "t.png")


def test_truncated_tiff_is_reported_quietly(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "t.tif", rand((4, 64, 64), np.uint8), photometric="minisblack")
    _truncate(tmp_path / "t.tif")
    with pytest.raises(DataError, match=r"t\.tif: (unreadable|damaged) or truncated TIFF"):
        read_image(tmp_path / "t.tif")
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_text_saved_as_tiff(tmp_path):
    (tmp_path / "x.tif").write_text("hello")
    with pytest.raises(
        DataError, match=r"x\.tif: unreadable or truncated TIFF file \(TiffFileError: not a TIFF"
    ):
        read_image(tmp_path / "x.tif")


@pytest.mark.parametrize("name", ["t.nii.gz", "t.nii"])
def test_truncated_nifti(tmp_path, name):
    write_image(tmp_path / name, rand((1, 8, 16, 16), np.int16))
    _truncate(tmp_path / name)
    with pytest.raises(
        DataError, match=rf"{name.replace('.', '[.]')}: unreadable or truncated NIFTI file"
    ):
        read_image(tmp_path / name)


def test_folder_given_as_file(tmp_path):
    (tmp_path / "d.png").mkdir()
    with pytest.raises(DataError, match=r"d\.png: is a folder"):
        read_image(tmp_path / "d.png")


def test_axes_override_errors(tmp_path):
    write_image(tmp_path / "a.png", rand((1, 3, 3), np.uint8))
    with pytest.raises(DataError, match=r"a\.png: axes='CYX' applies to TIFF files only"):
        read_image(tmp_path / "a.png", axes="CYX")
    tifffile.imwrite(tmp_path / "a.tif", rand((3, 3), np.uint8))
    with pytest.raises(
        DataError, match=r"a\.tif: axes='CYX' has 3 letters but the data has 2 dimensions"
    ):
        read_image(tmp_path / "a.tif", axes="CYX")


# -- NumPy .npy ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "shape, axes", [((7, 9), "YX"), ((2, 7, 9), "CYX"), ((1, 3, 7, 9), "CZYX")]
)
def test_npy_round_trip_channel_first(tmp_path, shape, axes):
    arr = np.random.default_rng(0).integers(0, 4000, shape).astype(np.uint16)
    np.save(tmp_path / "a.npy", arr)
    got, meta = read_image(tmp_path / "a.npy")
    want = arr[None] if arr.ndim == 2 else arr
    assert np.array_equal(got, want) and got.dtype == np.uint16
    assert meta.format == "npy" and meta.axes == axes and meta.shape == want.shape
    write_image(tmp_path / "b.npy", got, meta)
    assert np.array_equal(np.load(tmp_path / "b.npy"), want)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.npy",
        "b.npy",
    ]  # no temp file left, no .npy.npy


def test_npy_refuses_objects_samples_last_and_bad_ranks(tmp_path):
    np.save(tmp_path / "rgb.npy", np.zeros((20, 30, 3), np.uint8))
    with pytest.raises(DataError, match=r"rgb\.npy: shape \(20, 30, 3\) looks like \(H, W, RGB\)"):
        read_image(tmp_path / "rgb.npy")
    np.save(tmp_path / "flat.npy", np.zeros(5, np.float32))
    with pytest.raises(
        DataError,
        match=r"flat\.npy: expected \(H, W\), \(C, H, W\) or \(C, D, H, W\), got shape \(5,\)",
    ):
        read_image(tmp_path / "flat.npy")
    np.save(tmp_path / "text.npy", np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(DataError, match=r"text\.npy: holds <U1 values"):
        read_image(tmp_path / "text.npy")
    np.save(tmp_path / "obj.npy", np.array([[1, None]], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"obj\.npy: unreadable or truncated NPY file"):
        read_image(tmp_path / "obj.npy")


def test_list_images_groups_by_stem_and_sets_the_rest_apart(tmp_path):
    """The one listing discovery, predict and evaluate share: stems, duplicates, strays, hidden files."""
    from unetkit.io import list_images

    for name in (
        "b.png",
        "a.tif",
        "a.png",
        "c.nii.gz",
        "notes.txt",
        ".hidden.png",
        "Thumbs.db",
        "p.npz",
    ):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    listing = list_images(tmp_path)
    assert list(listing.by_stem) == ["a", "b", "c"]
    assert listing.duplicates() == {"a": [tmp_path / "a.png", tmp_path / "a.tif"]}
    assert listing.first()["c"] == tmp_path / "c.nii.gz"
    assert sorted(p.name for p in listing.others) == ["notes.txt", "p.npz", "sub"]
    assert list_images(tmp_path, extra_suffixes=(".npz",)).first()["p"] == tmp_path / "p.npz"


def test_a_tiff_without_pages_is_one_error_without_tifffiles_log_lines(tmp_path, caplog):
    path = tmp_path / "nopages.tif"
    path.write_bytes(b"II*\x00" + struct.pack("<I", 0))  # a header whose first page offset is 0
    with pytest.raises(DataError, match=r"nopages\.tif: "):
        read_image(path)
    with tifffile.TiffFile(path) as tif:  # as predict's checks open it: tifffile logs on open
        assert len(tif.pages) == 0
    assert not [r for r in caplog.records if "contains no pages" in r.getMessage()]


@pytest.mark.parametrize("shape", [(4, 20, 30), (20, 30, 4)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_a_four_channel_array_saved_by_tifffile_keeps_its_fourth_channel(tmp_path, shape, dtype):
    """tifffile marks the 4th sample of any 4-channel array as alpha; microscopy channels saved
    so (DAPI/GFP/RFP/Cy5) are data: all four are read, in memory and lazily."""
    from unetkit.io.lazy import open_lazy

    data = rand(shape, np.uint8).astype(dtype)
    tifffile.imwrite(tmp_path / "c4.tif", data)  # the user's one line
    arr, meta = read_image(tmp_path / "c4.tif")
    channels_first = data if shape[0] == 4 else np.moveaxis(data, -1, 0)
    assert arr.shape == (4, 20, 30) and not meta.alpha_dropped
    np.testing.assert_array_equal(arr, channels_first)
    lazy = open_lazy(tmp_path / "c4.tif")
    assert lazy.shape == (4, 20, 30) and not lazy.meta.alpha_dropped
    # an RGBA image saved so (scikit-image, imageio) with a fully opaque alpha: alpha dropped,
    # as its PNG drops it, in memory and lazily
    top = 1.0 if np.dtype(dtype).kind == "f" else np.iinfo(dtype).max
    rgba = channels_first.copy()
    rgba[3] = top
    tifffile.imwrite(tmp_path / "rgba.tif", rgba if shape[0] == 4 else np.moveaxis(rgba, 0, -1))
    arr, meta = read_image(tmp_path / "rgba.tif")
    assert arr.shape == (3, 20, 30) and meta.alpha_dropped
    lazy = open_lazy(tmp_path / "rgba.tif")
    assert lazy.shape == (3, 20, 30) and lazy.meta.alpha_dropped

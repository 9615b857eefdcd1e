"""NRRD, MetaImage and DICOM series (io/itk.py): exact voxels and geometry both ways, checked against
SimpleITK's own reader; DICOM folder rules; one-line errors; predict keeps the input's geometry."""

from __future__ import annotations

import json
import locale
import re
import sys

import nibabel as nib
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from unetkit.errors import ConfigError, DataError
from unetkit.io import ImageMeta, list_images, read_image, split_suffix, write_image
from unetkit.io.itk import ONE_FILE_SUFFIX

sitk = pytest.importorskip("SimpleITK")

SHAPE = (12, 20, 24)  # (D, H, W) = ITK size (24, 20, 12)
SPACING_XYZ = (0.7, 0.8, 2.5)
ORIGIN = (10.5, -20.25, 30.0)
DIRECTION = Rotation.from_euler("xyz", [10, -20, 30], degrees=True).as_matrix()  # oblique


def volume(dtype, seed=0, shape=SHAPE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.normal(size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -1000), min(info.max, 2000), shape, endpoint=True).astype(
        dtype
    )


def itk_image(array: np.ndarray, vector: bool = False):
    """An image with the test geometry, built with SimpleITK (the independent writer)."""
    image = sitk.GetImageFromArray(array, isVector=vector)
    image.SetSpacing(SPACING_XYZ)
    image.SetOrigin(ORIGIN)
    image.SetDirection(DIRECTION.ravel().tolist())
    return image


def assert_geometry(image, spacing=SPACING_XYZ, origin=ORIGIN, direction=DIRECTION, atol=1e-9):
    np.testing.assert_allclose(image.GetSpacing(), spacing, atol=atol, rtol=0)
    np.testing.assert_allclose(image.GetOrigin(), origin, atol=atol, rtol=0)
    np.testing.assert_allclose(image.GetDirection(), np.ravel(direction), atol=atol, rtol=0)


def assert_meta_geometry(meta: ImageMeta, atol=1e-9):
    np.testing.assert_allclose(meta.spacing, SPACING_XYZ[::-1], atol=atol, rtol=0)
    np.testing.assert_allclose(meta.origin, ORIGIN, atol=atol, rtol=0)
    np.testing.assert_allclose(meta.direction, DIRECTION, atol=atol, rtol=0)
    assert meta.spacing_unit == "mm"


# ------------------------------------------------------------------------------ NRRD, MetaImage
@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32"])
@pytest.mark.parametrize("suffix", [".nrrd", ".nhdr", ".mha", ".mhd"])
def test_round_trip_keeps_voxels_and_oblique_geometry(tmp_path, suffix, dtype):
    vol = volume(dtype)
    source = tmp_path / f"in{suffix}"
    sitk.WriteImage(itk_image(vol), str(source), True)

    arr, meta = read_image(source)
    assert arr.shape == (1, *SHAPE) and arr.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(arr[0], vol)
    assert meta.format == ("nrrd" if suffix in (".nrrd", ".nhdr") else "metaimage")
    assert meta.axes == "XYZ" and meta.channel_axis is None
    assert_meta_geometry(meta)

    out = tmp_path / "out" / f"copy{ONE_FILE_SUFFIX.get(suffix, suffix)}"  # .nhdr/.mhd → one file
    write_image(out, arr, meta)
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temp or data file left
    written = sitk.ReadImage(str(out))  # the independent reader
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), vol)
    assert written.GetPixelID() == sitk.GetImageFromArray(vol).GetPixelID()
    assert_geometry(written)
    again, meta2 = read_image(out)
    np.testing.assert_array_equal(again, arr)
    assert (meta2.spacing, meta2.origin, meta2.direction) == (
        meta.spacing,
        meta.origin,
        meta.direction,
    )


def test_vector_pixels_are_channels_and_2d_files_stay_2d(tmp_path):
    vol = np.stack([volume("float32", 1), volume("float32", 2)], axis=-1)  # ITK (z, y, x, c)
    sitk.WriteImage(itk_image(vol, vector=True), str(tmp_path / "v.nrrd"), True)
    arr, meta = read_image(tmp_path / "v.nrrd")
    assert arr.shape == (2, *SHAPE) and meta.axes == "XYZC" and meta.channel_axis == "C"
    np.testing.assert_array_equal(arr, np.moveaxis(vol, -1, 0))
    write_image(tmp_path / "v2.mha", arr, meta)
    written = sitk.ReadImage(str(tmp_path / "v2.mha"))
    assert written.GetNumberOfComponentsPerPixel() == 2
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), vol)
    assert_geometry(written)

    plane = volume("uint8", 3, shape=(20, 24))
    image = sitk.GetImageFromArray(plane)
    image.SetSpacing((0.5, 0.25))
    image.SetOrigin((1.0, 2.0))
    sitk.WriteImage(image, str(tmp_path / "p.mha"))
    arr, meta = read_image(tmp_path / "p.mha")
    assert arr.shape == (1, 20, 24) and meta.axes == "XY"
    assert meta.spacing == (0.25, 0.5) and meta.origin == (1.0, 2.0)
    assert meta.direction == [[1.0, 0.0], [0.0, 1.0]]


def test_written_files_are_compressed(tmp_path):
    flat = np.zeros((1, *SHAPE), np.int16)
    write_image(tmp_path / "z.nrrd", flat)
    write_image(tmp_path / "z.mha", flat)
    assert b"encoding: gzip" in (tmp_path / "z.nrrd").read_bytes()[:400]
    assert b"CompressedData = True" in (tmp_path / "z.mha").read_bytes()[:400]
    assert (tmp_path / "z.nrrd").stat().st_size < flat.nbytes // 10


def test_meta_geometry_is_json_friendly(tmp_path):
    sitk.WriteImage(itk_image(volume("int16")), str(tmp_path / "a.nrrd"))
    meta = read_image(tmp_path / "a.nrrd")[1]
    back = ImageMeta.from_dict(json.loads(json.dumps(meta.to_dict())))
    assert back == meta and isinstance(back.origin, tuple)


def test_nifti_and_itk_geometry_convert_both_ways(tmp_path):
    """NIfTI (RAS affine, nibabel) ↔ NRRD (LPS origin/direction): each written file has the
    geometry SimpleITK's own NIfTI reader sees in the other."""
    affine = np.eye(4)
    affine[:3, :3] = DIRECTION @ np.diag([0.7, 0.8, 2.5])
    affine[:3, 3] = (5.0, -7.5, 12.0)
    nib.save(nib.Nifti1Image(volume("int16").T, affine), tmp_path / "a.nii.gz")
    reference = sitk.ReadImage(str(tmp_path / "a.nii.gz"))
    arr, meta = read_image(tmp_path / "a.nii.gz")  # nibabel: affine, no origin/direction
    assert meta.origin is None
    write_image(tmp_path / "a.nrrd", arr, meta)
    assert_geometry(
        sitk.ReadImage(str(tmp_path / "a.nrrd")),
        reference.GetSpacing(),
        reference.GetOrigin(),
        reference.GetDirection(),
        atol=1e-5,  # ITK reads NIfTI's float32 sform/qform
    )

    sitk.WriteImage(itk_image(volume("int16")), str(tmp_path / "b.nrrd"))
    arr, meta = read_image(tmp_path / "b.nrrd")
    write_image(tmp_path / "b.nii.gz", arr, meta)
    assert_geometry(sitk.ReadImage(str(tmp_path / "b.nii.gz")), atol=1e-5)
    np.testing.assert_array_equal(read_image(tmp_path / "b.nii.gz")[0], arr)


def test_spacing_in_other_units_is_written_in_mm(tmp_path):
    write_image(
        tmp_path / "um.nrrd",
        np.zeros((1, 2, 3, 4), np.uint8),
        ImageMeta(spacing=(2.0, 0.5, 0.25), spacing_unit="um"),
    )
    np.testing.assert_allclose(
        sitk.ReadImage(str(tmp_path / "um.nrrd")).GetSpacing(), (2.5e-4, 5e-4, 2e-3)
    )


@pytest.mark.parametrize("name", ["cut.nrrd", "cut.mha", "junk.nrrd"])
def test_corrupt_file_is_one_line_naming_it(tmp_path, name):
    sitk.WriteImage(itk_image(volume("int16")), str(tmp_path / f"good{name[-5:]}"), True)
    good = (tmp_path / f"good{name[-5:]}").read_bytes()
    path = tmp_path / name
    path.write_bytes(b"hello, not an image" if name.startswith("junk") else good[: len(good) // 3])
    kind = "NRRD" if name.endswith(".nrrd") else "MetaImage"
    with pytest.raises(
        DataError,
        match=rf"^{path}: unreadable or truncated {kind} file \(.+\): save it again from its "
        "source, or give it the suffix of its real format$",
    ) as e:
        read_image(path)
    assert "\n" not in str(e.value) and "0x" not in str(e.value)


def test_write_refusals(tmp_path):
    arr = np.zeros((1, 2, 3, 4), np.float16)
    with pytest.raises(
        DataError, match=r"x\.mhd: unetkit does not write \.mhd files .*write \.mha"
    ):
        write_image(tmp_path / "x.mhd", arr.astype(np.uint8))
    with pytest.raises(DataError, match=r"x\.nhdr: .*write \.nrrd, the same format in one file"):
        write_image(tmp_path / "x.nhdr", arr.astype(np.uint8))
    with pytest.raises(DataError, match=r"x\.nrrd: cannot store float16 data in a NRRD file"):
        write_image(tmp_path / "x.nrrd", arr)
    with pytest.raises(DataError, match=r"do not fit a 3D image"):
        write_image(tmp_path / "x.mha", arr.astype(np.uint8), ImageMeta(origin=(0.0, 0.0)))
    assert list(tmp_path.iterdir()) == []


def test_4d_file_is_refused(tmp_path):
    sitk.WriteImage(sitk.Image([5, 4, 3, 2], sitk.sitkUInt8), str(tmp_path / "t.nrrd"))
    with pytest.raises(
        DataError, match=r"t\.nrrd: 4D image of size \(5, 4, 3, 2\); unetkit reads 2D"
    ):
        read_image(tmp_path / "t.nrrd")


def test_missing_simpleitk_says_how_to_install(tmp_path, monkeypatch):
    sitk.WriteImage(itk_image(volume("uint8")), str(tmp_path / "a.nrrd"))
    series = write_series(itk_image(volume("int16")), tmp_path / "series")
    monkeypatch.setitem(sys.modules, "SimpleITK", None)  # `import SimpleITK` raises ImportError
    for path in (tmp_path / "a.nrrd", series):
        with pytest.raises(ConfigError, match=r"pip install 'unetkit\[medical\]'$") as e:
            read_image(path)
        assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------------------- DICOM
SERIES_UID = "1.2.826.0.1.3680043.2.1125.7.1"


def write_series(image, folder, series_uid=SERIES_UID, prefix="IM", slices=None):
    """One file per slice with the tags a series reader needs (SimpleITK's DicomSeriesFromArray).

    GDCM's writer leaves the process in the C locale, which would make Python's default text
    encoding ASCII for every later test; the locale is restored. (unetkit only reads DICOM, which
    leaves the locale alone.)
    """
    saved = locale.setlocale(locale.LC_ALL)
    try:
        return _write_series(image, folder, series_uid, prefix, slices)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_series(image, folder, series_uid, prefix, slices):
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    d = image.GetDirection()
    orientation = "\\".join(map(str, (d[0], d[3], d[6], d[1], d[4], d[7])))
    for k in range(image.GetDepth()) if slices is None else slices:
        plane = image[:, :, k]
        for tag, value in (
            ("0008|0060", "CT"),
            ("0020|000d", "1.2.826.0.1.3680043.2.1125.7"),  # study
            ("0020|000e", series_uid),
            ("0008|0018", f"{series_uid}.{prefix}.{k + 1}"),  # SOP instance
            ("0020|0013", str(k + 1)),  # instance number
            ("0020|0037", orientation),  # ImageOrientationPatient
            ("0020|0032", "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, k))))),
            ("0018|0050", str(image.GetSpacing()[2])),  # slice thickness
        ):
            plane.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{prefix}{k:04d}.dcm"))
        writer.Execute(plane)
    return folder


def test_dicom_series_keeps_voxels_and_geometry(tmp_path):
    vol = volume("int16")
    folder = write_series(itk_image(vol), tmp_path / "3.000000-CT chest-90451")
    encoding = locale.getpreferredencoding(False)
    arr, meta = read_image(folder)
    assert locale.getpreferredencoding(False) == encoding  # reading leaves the locale alone
    assert arr.shape == (1, *SHAPE) and arr.dtype == np.int16
    np.testing.assert_array_equal(arr[0], vol)
    assert meta.format == "dicom" and meta.path == str(folder)
    assert_meta_geometry(meta, atol=1e-6)  # DICOM stores decimal strings


def test_dicom_folders_are_cases_named_by_the_folder(tmp_path):
    from unetkit.data.discovery import find_cases

    image = itk_image(volume("int16"))
    folder = write_series(image, tmp_path / "images" / "3.000000-CT-90451")
    (tmp_path / "images" / ".DS_Store").write_text("x")
    write_image(tmp_path / "masks" / "3.000000-CT-90451.nrrd", np.zeros((1, *SHAPE), np.uint8))
    assert split_suffix(folder) == ("3.000000-CT-90451", "")
    assert list_images(tmp_path / "images").first() == {"3.000000-CT-90451": folder}
    (case,) = find_cases(tmp_path)
    assert case.images == [folder] and case.mask == tmp_path / "masks" / "3.000000-CT-90451.nrrd"
    (tmp_path / "images" / "notes").mkdir()  # a folder without DICOM files is still a problem
    with pytest.raises(DataError, match=r"notes: is a folder inside images/; expected image files"):
        find_cases(tmp_path)


def test_dicom_folder_errors_are_one_line(tmp_path):
    image = itk_image(volume("int16"))
    gap = write_series(image, tmp_path / "gap")
    (gap / "IM0006.dcm").unlink()
    two = write_series(image, tmp_path / "two")
    write_series(image, two, series_uid=SERIES_UID + ".2", prefix="B")
    twice = write_series(image, tmp_path / "twice")
    write_series(image, twice, prefix="COPY", slices=[4])
    turned = write_series(image, tmp_path / "turned")
    upright = sitk.Image(image)
    upright.SetDirection(np.eye(3).ravel().tolist())
    write_series(upright, turned, prefix="ROT", slices=[0])
    empty = tmp_path / "junk"
    empty.mkdir()
    (empty / "a.dcm").write_bytes(b"not dicom")
    expected = {
        gap: r"slices are not evenly spaced \(5 mm between IM0005\.dcm and IM0007\.dcm, 2\.5 mm "
        r"elsewhere\): a slice is missing or misplaced; export the complete series again",
        two: rf"2 DICOM series in this folder \(Series Instance UIDs {re.escape(SERIES_UID)}, "
        rf"{re.escape(SERIES_UID)}\.2\); put each series in its own folder",
        twice: r"two slices at the same position \((COPY0004|IM0004)\.dcm and (COPY0004|IM0004)\.dcm\)",
        turned: r"slices with different orientations \(IM0000\.dcm and ROT0000\.dcm, "
        r"ImageOrientationPatient\): the folder mixes scans; put each scan in its own folder",
        empty: r"no DICOM image series in this folder",
    }
    for folder, message in expected.items():
        with pytest.raises(DataError) as e:
            read_image(folder)
        text = str(e.value)
        assert text.startswith(f"{folder}: ") and "\n" not in text
        assert re.search(message, text), text
    with pytest.raises(DataError, match=r"gap: unetkit does not write DICOM; write \.nrrd"):
        write_image(gap, np.zeros((1, 2, 3, 4), np.int16))


# --------------------------------------------------------------------------------------- predict
def test_predict_writes_labels_with_the_input_geometry(tmp_path):
    from unetkit import create_model
    from unetkit.checkpoint import save_checkpoint
    from unetkit.data import LabelMap, create_normalizer
    from unetkit.inference.batch import predict_files
    from unetkit.inference.predictor import Predictor

    model = create_model("unet", spatial_dims=3, base_features=2, depth=2, norm="instance")
    ckpt = save_checkpoint(
        tmp_path / "m.pt",
        model,
        normalization=create_normalizer("zscore").to_dict(),
        label_map=LabelMap([0, 1]).to_dict(),
    )
    sitk.WriteImage(itk_image(volume("float32")), str(tmp_path / "vol.nrrd"), True)
    series = write_series(itk_image(volume("int16")), tmp_path / "1.2.840.10008.5")
    predictor = Predictor.from_checkpoint(ckpt, precision="fp32")
    results = predict_files(
        predictor, [tmp_path / "vol.nrrd", series], tmp_path / "out", progress=False
    )
    assert [r.outputs["labels"].name for r in results] == ["vol.nrrd", "1.2.840.10008.5.nrrd"]
    for result, atol in zip(results, (1e-9, 1e-6)):
        labels = sitk.ReadImage(str(result.outputs["labels"]))
        assert labels.GetSize() == SHAPE[::-1] and labels.GetPixelID() == sitk.sitkUInt8
        assert_geometry(labels, atol=atol)
    again = predict_files(predictor, [series], tmp_path / "out", progress=False)
    assert again[0].status == "skipped"  # the DICOM case finds its .nrrd output by name


def test_predict_a_folder_of_one_series(tmp_path):
    from unetkit.inference.batch import collect_inputs

    series = write_series(itk_image(volume("int16")), tmp_path / "CT.1")
    (case,) = collect_inputs([series])
    assert case.case_id == "CT.1" and case.images == [series]

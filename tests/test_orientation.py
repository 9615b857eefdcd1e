"""Orientation of 3D volumes: axis codes, turning a volume to one orientation by permuting and
flipping (every voxel kept in place), restoring it exactly, and training/prediction in one
orientation with outputs written back in the input's (issue: 3D medical volumes)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import axcodes2ornt, ornt_transform

from unetkit.cli import main
from unetkit.config import RunConfig
from unetkit.data.dataset import load_case
from unetkit.data.discovery import scan_dataset
from unetkit.errors import ConfigError, DataError
from unetkit.inference.large import predict_large
from unetkit.inference.predictor import Predictor
from unetkit.io import read_image, write_image
from unetkit.io.meta import ImageMeta
from unetkit.io.orientation import axis_codes, check_orientation, reorient, restore
from unetkit.models import create_model
from unetkit.training import Trainer

sitk = pytest.importorskip("SimpleITK")

LPS = np.diag([-1.0, -1.0, 1.0])  # RAS world <-> ITK's LPS world
#: a RAS volume's affine: anisotropic voxels (x 1, y 2, z 3 mm), an origin off zero
RAS_AFFINE = np.array(
    [[1.0, 0, 0, -7.0], [0, 2.0, 0, 4.0], [0, 0, 3.0, 11.0], [0, 0, 0, 1.0]], dtype=float
)
STORED = ("RAS", "LPS", "PIL", "SLA", "IRP")


def canonical(seed: int = 0, shape=(7, 6, 5)) -> nib.Nifti1Image:
    """A RAS volume (x, y, z) of distinct values (each voxel recognisable)."""
    data = np.random.default_rng(seed).permutation(np.prod(shape)).reshape(shape).astype(np.float32)
    return nib.Nifti1Image(data, RAS_AFFINE)


def stored_as(img: nib.Nifti1Image, code: str) -> nib.Nifti1Image:
    """The same world content stored in orientation ``code`` (nibabel permutes and flips)."""
    return img.as_reoriented(ornt_transform(axcodes2ornt(("R", "A", "S")), axcodes2ornt(code)))


def write_nifti(img: nib.Nifti1Image, path: Path) -> Path:
    nib.save(img, path)
    return path


def write_itk(img: nib.Nifti1Image, path: Path) -> Path:
    """``img`` written with SimpleITK, its geometry converted to ITK's LPS world by hand."""
    affine = img.affine
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.asarray(img.dataobj).T)  # (x, y, z) -> ITK (z, y, x) array
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(v) for v in LPS @ affine[:3, 3]))
    image.SetDirection(tuple((LPS @ affine[:3, :3] / spacing).ravel().tolist()))
    sitk.WriteImage(image, str(path))
    return path


def affine_of(meta: ImageMeta) -> np.ndarray:
    """The RAS affine of a NIfTI or ITK meta."""
    from unetkit.io.itk import nifti_affine_of

    return np.asarray(meta.affine) if meta.affine is not None else nifti_affine_of(meta, 3)


def world(affine: np.ndarray, zyx: np.ndarray) -> np.ndarray:
    """World positions of array indices ``zyx`` (N, 3)."""
    xyz1 = np.c_[zyx[:, ::-1], np.ones(len(zyx))]
    return (xyz1 @ affine.T)[:, :3]


# -- codes ------------------------------------------------------------------------------------------
def test_axis_codes_of_nifti_affines_and_itk_directions(tmp_path):
    for code in STORED:
        img = stored_as(canonical(), code)
        assert axis_codes(read_image(write_nifti(img, tmp_path / f"{code}.nii.gz"))[1]) == code
        assert axis_codes(read_image(write_itk(img, tmp_path / f"{code}.nrrd"))[1]) == code
    # ITK's identity direction is LPS (its world is LPS); a DICOM-like axial series too
    plain = sitk.GetImageFromArray(np.zeros((3, 4, 5), np.uint8))
    sitk.WriteImage(plain, str(tmp_path / "plain.mha"))
    assert axis_codes(read_image(tmp_path / "plain.mha")[1]) == "LPS"
    # NIfTI's identity affine is RAS; an oblique one gets its closest axes
    tilt = np.eye(4)
    tilt[:2, :2] = [[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]]
    assert axis_codes(ImageMeta(shape=(1, 2, 2, 2), affine=tilt.tolist())) == "RAS"
    # no code: 2D images, files that state no geometry
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 1), np.float32), RAS_AFFINE), tmp_path / "s.nii")
    assert axis_codes(read_image(tmp_path / "s.nii")[1]) is None
    np.save(tmp_path / "v.npy", np.zeros((1, 3, 4, 5), np.float32))
    assert axis_codes(read_image(tmp_path / "v.npy")[1]) is None
    assert axis_codes(None) is None


def test_degenerate_geometry_is_a_data_error():
    flat = np.diag([1.0, 1.0, 0.0, 1.0])
    with pytest.raises(DataError, match="no direction"):
        axis_codes(ImageMeta(path="flat.nii", shape=(1, 2, 2, 2), affine=flat.tolist()))


def test_orientation_codes_are_checked():
    assert check_orientation("ras") == "RAS"
    assert check_orientation(" lps ") == "LPS"
    assert check_orientation(None) is None
    for bad in ("RAA", "RA", "XYZ", "RASL", "", 3):
        with pytest.raises(ConfigError, match="one of each pair R/L, A/P, S/I"):
            check_orientation(bad, "data.orientation")
    assert RunConfig.from_dict({"data": {"orientation": "sla"}}).data.orientation == "SLA"
    with pytest.raises(ConfigError, match=r"data.orientation 'RLS' is not an orientation code"):
        RunConfig.from_dict({"data": {"orientation": "RLS"}})


def test_train_orientation_flag(tmp_path, capsys):
    from unetkit.commands.train import FLAG_KEYS

    assert FLAG_KEYS["orientation"] == "data.orientation"
    code = main(["train", str(tmp_path), "--orientation", "RRS", "--no-plan"])
    assert code == 2
    err = capsys.readouterr().err
    assert "'RRS' is not an orientation code" in err and len(err.strip().splitlines()) == 1


# -- reorient and restore ---------------------------------------------------------------------------
@pytest.mark.parametrize("writer", [write_nifti, write_itk], ids=["nifti", "nrrd"])
def test_one_world_content_stored_any_way_reorients_to_one_array(tmp_path, writer):
    suffix = ".nii.gz" if writer is write_nifti else ".nrrd"
    base = canonical()
    for target in ("RAS", "LPS", "SPL"):
        arrays, affines, spacings = [], [], []
        for code in STORED:
            arr, meta = read_image(writer(stored_as(base, code), tmp_path / f"{code}{suffix}"))
            turned, new, turn = reorient(arr, meta, target)
            assert axis_codes(new) == target and turn.source == code and turn.target == target
            assert turn.is_identity == (code == target)
            arrays.append(turned)
            affines.append(affine_of(new))
            spacings.append(new.spacing)
        for arr, aff, sp in zip(arrays[1:], affines[1:], spacings[1:]):
            np.testing.assert_array_equal(arr, arrays[0])
            np.testing.assert_allclose(aff, affines[0], atol=1e-9)
            assert sp == pytest.approx(spacings[0])
    # in RAS the array is the canonical volume's, axes reversed to (z, y, x)
    arr, meta = read_image(writer(stored_as(base, "PIL"), tmp_path / f"again{suffix}"))
    turned, new, _ = reorient(arr, meta, "RAS")
    np.testing.assert_array_equal(turned[0], np.asarray(base.dataobj).T)
    np.testing.assert_allclose(affine_of(new), RAS_AFFINE, atol=1e-9)
    assert new.spacing == pytest.approx((3.0, 2.0, 1.0))


@pytest.mark.parametrize("writer", [write_nifti, write_itk], ids=["nifti", "nrrd"])
def test_reorient_keeps_every_voxel_in_place(tmp_path, writer):
    suffix = ".nii.gz" if writer is write_nifti else ".nrrd"
    for code in ("LPS", "SLA", "IRP"):
        arr, meta = read_image(writer(stored_as(canonical(), code), tmp_path / f"{code}{suffix}"))
        ids = np.arange(arr.size).reshape(arr.shape[1:])  # each voxel's stored flat index
        for target in ("RAS", "PIL", "ASR"):
            turned, new, turn = reorient(arr, meta, target)
            moved = turn.apply(ids)
            assert new.shape == turned.shape and turned.shape[1:] == moved.shape
            here = np.argwhere(np.ones(moved.shape, bool))
            stored = np.stack(np.unravel_index(moved.ravel(), ids.shape), axis=1)
            np.testing.assert_allclose(
                world(affine_of(new), here), world(affine_of(meta), stored), atol=1e-9
            )
            np.testing.assert_array_equal(turned[0].ravel(), arr[0].ravel()[moved.ravel()])
            # the new meta writes the turned volume in place: read back, same geometry
            out = tmp_path / f"turned_{code}_{target}{suffix}"
            write_image(out, turned, new)
            back, back_meta = read_image(out)
            np.testing.assert_array_equal(back, turned)
            np.testing.assert_allclose(affine_of(back_meta), affine_of(new), atol=1e-5)


def test_restore_undoes_reorient_exactly(tmp_path):
    rng = np.random.default_rng(3)
    arr, meta = read_image(write_itk(stored_as(canonical(), "SLA"), tmp_path / "v.mha"))
    image = np.concatenate([arr, arr * 2], axis=0)  # two channels
    mask = rng.integers(0, 3, arr.shape[1:]).astype(np.uint8)
    for target in ("RAS", "LPS", "PIL", "ILA", "SLA"):
        turned, _, turn = reorient(image, meta, target)
        np.testing.assert_array_equal(restore(turned, turn), image)
        turned_mask, _, same = reorient(mask, meta, target)  # a mask alone, same transform
        assert same == turn
        np.testing.assert_array_equal(turned_mask, turn.apply(mask))
        np.testing.assert_array_equal(restore(turned_mask, turn), mask)
        probs = rng.random((4, *turned.shape[1:])).astype(np.float32)  # K classes, turned
        assert restore(probs, turn).shape == (4, *mask.shape)
        np.testing.assert_array_equal(turn.apply(restore(probs, turn)), probs)
    with pytest.raises(DataError, match="cannot restore"):
        restore(np.zeros((2, 2, 2)), reorient(image, meta, "RAS")[2])


def test_2d_and_geometry_free_images_pass_through(tmp_path):
    image = np.arange(24, dtype=np.float32).reshape(1, 4, 6)
    for meta in (
        ImageMeta(format="png", shape=(1, 4, 6)),
        ImageMeta(format="nifti", shape=(1, 4, 6), spacing=(1.0, 1.0), affine=np.eye(4).tolist()),
        ImageMeta(format="nrrd", shape=(1, 4, 6), origin=(0.0, 0.0), direction=np.eye(2).tolist()),
    ):
        out, new, turn = reorient(image, meta, "LPS")
        assert out is image and new is meta and turn.is_identity and turn.source is None
        assert restore(image, turn) is image
    volume = np.zeros((1, 3, 4, 5), np.float32)
    for meta in (ImageMeta(format="npy", shape=(1, 3, 4, 5)), None):  # no geometry
        out, new, turn = reorient(volume, meta, "RAS")
        assert out is volume and new is meta and turn.is_identity
    arr, meta = read_image(write_nifti(canonical(), tmp_path / "v.nii"))
    out, new, turn = reorient(arr, meta, None)  # no orientation asked
    assert out is arr and new is meta and turn.is_identity


# -- training and prediction ------------------------------------------------------------------------
def blob_case(root: Path, name: str, code: str, seed: int) -> None:
    """A 16³ RAS volume with a bright off-centre box (the mask), stored in orientation ``code``."""
    rng = np.random.default_rng(seed)
    image = rng.normal(0, 0.3, (16, 16, 16)).astype(np.float32)
    mask = np.zeros((16, 16, 16), np.uint8)
    x, y, z = rng.integers(2, 8, 3)
    mask[x : x + 6, y : y + 4, z : z + 5] = 1
    image[mask > 0] += 2.0
    for folder, data in (("images", image), ("masks", mask)):
        img = stored_as(nib.Nifti1Image(data, RAS_AFFINE), code)
        write_nifti(img, root / folder / f"{name}.nii.gz")


def test_train_in_ras_and_predict_a_volume_stored_otherwise(tmp_path):
    train = tmp_path / "train"
    for d in ("images", "masks"):
        (train / d).mkdir(parents=True)
    for i, code in enumerate(("RAS", "LPS", "PIL")):
        blob_case(train, f"c{i}", code, i)
    # load_case turns image and mask before resampling: the target spacing applies to the turned
    # axes (in SLA the array axes (z, y, x) are the RAS volume's y, x, z: 2, 1, 3 mm)
    case = next(c for c in scan_dataset(train).cases if c.case_id == "c2")  # stored PIL
    loaded = load_case(case, None, None, target_spacing=[1.0, 1.0, 1.0], orientation="SLA")
    assert loaded.meta.spacing == pytest.approx((2.0, 1.0, 3.0))
    assert loaded.image.shape == (1, 32, 16, 48)
    assert axis_codes(loaded.meta) == "SLA"

    cfg = RunConfig.from_dict(
        {
            "data": {
                "train_dir": str(train),
                "val_fraction": 0.34,
                "patch_size": [16, 16, 16],
                "augmentation": None,
                "orientation": "RAS",
            },
            "model": {
                "name": "unet",
                "options": {"spatial_dims": 3, "base_features": 4, "depth": 2},
            },
            "train": {"epochs": 1, "iters_per_epoch": 2, "batch_size": 2, "precision": "fp32"},
        }
    )
    trainer = Trainer(cfg, run_dir=tmp_path / "run", progress=False)
    ckpt = trainer.fit().run_dir / "checkpoints" / "best.pt"
    for c in trainer.data.train + trainer.data.val:  # every case turned to RAS, masks with it
        assert axis_codes(c.meta) == "RAS" and c.mask.shape == c.image.shape[1:]
    assert Predictor.from_checkpoint(ckpt, device="cpu").orientation == "RAS"

    test = tmp_path / "test"
    test.mkdir()
    content = nib.Nifti1Image(
        np.random.default_rng(9).normal(0, 1, (16, 12, 14)).astype(np.float32), RAS_AFFINE
    )
    write_nifti(stored_as(content, "SLA"), test / "stored.nii.gz")
    write_nifti(content, test / "ras.nii.gz")
    out = tmp_path / "pred"
    args = ["predict", str(ckpt), str(test), "--output", str(out), "--probabilities", "npz"]
    assert main([*args, "--device", "cpu", "--precision", "fp32"]) == 0

    stored, stored_meta = read_image(test / "stored.nii.gz")
    labels, labels_meta = read_image(out / "stored.nii.gz")
    assert labels.shape == stored.shape == (1, 12, 16, 14)  # RAS (16, 12, 14) stored as SLA
    np.testing.assert_array_equal(labels_meta.affine, stored_meta.affine)
    on_disk = nib.load(out / "stored.nii.gz")
    np.testing.assert_array_equal(on_disk.affine, nib.load(test / "stored.nii.gz").affine)
    # voxel for voxel in world space: the stored input's outputs, turned to RAS, are the RAS copy's
    ras_labels = read_image(out / "ras.nii.gz")[0]
    np.testing.assert_array_equal(reorient(labels, labels_meta, "RAS")[0], ras_labels)
    probs = np.load(out / "stored_prob.npz")["probabilities"]
    ras_probs = np.load(out / "ras_prob.npz")["probabilities"]
    assert probs.shape[1:] == stored.shape[1:] and np.ptp(ras_probs) > 0
    np.testing.assert_array_equal(reorient(probs, stored_meta, "RAS")[0], ras_probs)


def test_band_by_band_refuses_a_volume_to_turn():
    class Source(np.ndarray):
        meta = ImageMeta(path="big.nii", shape=(1, 8, 8, 8), affine=np.diag([-1, -1, 1, 1.0]))

    model = create_model("unet", in_channels=1, num_classes=2, spatial_dims=3, base_features=4)
    predictor = Predictor(model, device="cpu", precision="fp32", orientation="RAS")
    source = np.zeros((1, 8, 8, 8), np.float32).view(Source)
    with pytest.raises(DataError, match="orientation RAS .* stored in LPS"):
        predict_large(predictor, source, sink=None, path=Path("big.nii"))


# -- what travels with the model --------------------------------------------------------------------
@pytest.fixture
def lps_checkpoint(tmp_path) -> Path:
    from unetkit.checkpoint import save_checkpoint

    model = create_model("unet", spatial_dims=3, features=(4, 8), num_classes=2, init="torch")
    return save_checkpoint(
        tmp_path / "ck.pt",
        model,
        config={"data": {"orientation": "LPS"}},
        patch_size=[8, 8, 8],
        with_rng=False,
    )


def test_onnx_export_carries_the_orientation(tmp_path, lps_checkpoint):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from unetkit.inference import export as ex

    report = ex.export_onnx(lps_checkpoint, tmp_path / "m.onnx", threads=1)
    assert ex.read_onnx_metadata(report.path)["orientation"] == "LPS"
    assert ex.OnnxRunner(report.path, threads=1).predictor().orientation == "LPS"
    assert Predictor.from_checkpoint(lps_checkpoint, device="cpu").orientation == "LPS"


def test_bioimageio_export_refuses_an_orientation(tmp_path, lps_checkpoint):
    pytest.importorskip("bioimageio.core")
    from unetkit.inference import bioimageio as bio

    with pytest.raises(
        ConfigError, match=r"orientation LPS \(data.orientation\).*export is refused"
    ):
        bio.export_bioimageio(lps_checkpoint, tmp_path / "m.zip", authors=["A B"])
    assert not (tmp_path / "m.zip").exists()


def test_ensemble_members_share_the_orientation():
    from unetkit.inference.ensemble import EnsemblePredictor

    model = create_model("unet", spatial_dims=3, features=(4, 8), num_classes=2)
    ras = Predictor(model, device="cpu", precision="fp32", orientation="ras")
    assert ras.orientation == "RAS"
    assert EnsemblePredictor([ras, ras]).orientation == "RAS"
    with pytest.raises(ConfigError, match="orientation None differs from RAS"):
        EnsemblePredictor([ras, Predictor(model, device="cpu", precision="fp32")])
    with pytest.raises(ConfigError, match="'up' is not an orientation code"):
        Predictor(model, device="cpu", precision="fp32", orientation="up")


def test_fingerprint_measures_turned_volumes(tmp_path):
    from unetkit.data.fingerprint import fingerprint_dataset

    for d in ("images", "masks"):
        (tmp_path / d).mkdir()
    for i, code in enumerate(("RAS", "PIL")):  # one world layout (x 1, y 2, z 3 mm), stored 2 ways
        blob_case(tmp_path, f"c{i}", code, i)
    as_stored = fingerprint_dataset(tmp_path)
    assert as_stored.spacing_spread["min"] == [1.0, 2.0, 1.0]  # (3, 2, 1) and (1, 3, 2) mixed
    turned = fingerprint_dataset(tmp_path, orientation="LPS")
    assert turned.spacing_spread["min"] == turned.spacing_spread["max"] == [3.0, 2.0, 1.0]
    assert turned.class_fraction == as_stored.class_fraction


def test_plan_cli_keeps_the_orientation_and_refuses_a_bad_code(tmp_path, capsys):
    """``unetkit plan --orientation`` measures turned volumes and writes the code into the plan, so
    ``train --plan`` turns them too; a bad code is one line, exit 2, and no plan file."""
    import json

    from tests.test_spacing import make_set
    from unetkit.cli import main

    data = make_set(tmp_path / "thick", 2, 0, spacings=(4.5,))  # MetaImage, ITK's LPS
    out = tmp_path / "plan.json"
    args = ["plan", str(data), "--time-budget", "0.2", "--output", str(out)]
    assert main([*args, "--orientation", "RAX"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "RAX" in err and not out.exists()
    assert main([*args, "--orientation", "ras"]) == 0
    plan = json.loads(out.read_text())
    assert plan["config"]["data.orientation"] == "RAS"
    # turned to RAS the (z, y, x) arrays of an LPS volume keep their axes: same sizes measured
    assert plan["fingerprint"]["sizes"]["median"] == [11.0, 32.0, 32.0]

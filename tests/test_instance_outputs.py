"""Instances for Fiji and QuPath: the instance image, ImageJ ROI zips and GeoJSON detections that
``unetkit predict --instances/--rois/--geojson`` writes.

The outlines are read back with the libraries the users' tools agree with (``roifile`` for ImageJ
ROIs, ``json`` + ``shapely`` for GeoJSON) and filled by ImageJ's pixel rule; each must give back
its object's pixels.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import roifile
from PIL import Image
from scipy import ndimage
from shapely.geometry import shape
from skimage.draw import disk, ellipse

from unetkit import create_model
from unetkit.checkpoint import save_checkpoint
from unetkit.data import LabelMap, create_normalizer
from unetkit.errors import ConfigError, DataError
from unetkit.inference import batch as batch_mod
from unetkit.inference.batch import predict_files
from unetkit.inference.postprocess import label_instances
from unetkit.inference.predictor import Predictor
from unetkit.io import ImageMeta, read_image, write_image
from unetkit.io.instance_shapes import (
    AREA_MEASUREMENT,
    instance_polygons,
    rasterize_polygon,
    trace_outline,
    write_geojson,
    write_imagej_rois,
)

NAMES = ("background", "nucleus", "debris")


def _objects(seed: int = 0):
    """A 2-class label image of 20 separate objects of varied shapes, and their masks.

    One object per 24×24 cell of a 4×5 grid (a 1-pixel margin keeps them apart): discs and
    rotated ellipses of random size, concave L and C shapes, a ring with a small hole, one-pixel
    lines, a single pixel, a blob with a one-pixel tail, and objects cut by the image border.
    """
    rng = np.random.default_rng(seed)
    h, w = 4 * 24, 5 * 24
    drawn = []

    def cell_mask(i, draw):
        m = np.zeros((h, w), bool)
        r0, c0 = 24 * (i // 5), 24 * (i % 5)
        local = np.zeros((24, 24), bool)
        draw(local)
        m[r0 : r0 + 24, c0 : c0 + 24] = local
        return m

    def disc(m):
        centre = 12 + rng.integers(-1, 2, size=2)
        m[disk(tuple(centre), rng.uniform(4, 8), shape=m.shape)] = True

    def ell(m):
        rr, cc = ellipse(
            12, 12, rng.uniform(3, 6), rng.uniform(7, 10), m.shape, rng.uniform(0, np.pi)
        )
        m[rr, cc] = True

    def l_shape(m):
        m[3:20, 3:8] = True
        m[15:20, 3:20] = True

    def c_shape(m):
        m[3:20, 3:7] = True
        m[3:7, 3:20] = True
        m[16:20, 3:20] = True

    def ring(m):
        m[4:19, 4:19] = True
        m[10:13, 10:13] = False

    def line_h(m):
        m[12, 2:22] = True

    def staircase(m):  # one pixel wide, face-connected
        for k in range(17):
            m[3 + k, 3 + k : 5 + k] = True

    def pixel(m):
        m[11, 13] = True

    def tail(m):
        m[disk((8, 8), 5, shape=m.shape)] = True
        m[8, 8:21] = True
        m[8:21, 20] = True

    shapes = [disc, ell, l_shape, c_shape, ring, line_h, staircase, pixel, tail]
    labels = np.zeros((h, w), np.int64)
    for i in range(20):
        if i in (0, 4, 15, 19):  # corner cells: cut by the border below
            continue
        m = cell_mask(i, shapes[i % len(shapes)] if i not in (9, 10) else disc)
        drawn.append(m)
    # objects cut by the image border, in the corner cells: a disc at the top edge, a bar on the
    # right edge, a rectangle filling the bottom-left corner, a half-ellipse on the bottom edge
    edge = [np.zeros((h, w), bool) for _ in range(4)]
    edge[0][disk((0, 12), 7, shape=(h, w))] = True
    edge[1][3:21, w - 3 :] = True
    edge[2][h - 10 :, :9] = True
    rr, cc = ellipse(h - 1, w - 12, 6, 9, (h, w))
    edge[3][rr, cc] = True
    drawn += edge
    for k, m in enumerate(drawn):
        assert not (labels[m] > 0).any()
        labels[m] = 1 + k % 2  # two classes
    return labels, drawn


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_objects_are_what_label_instances_finds():
    labels, drawn = _objects()
    instances = label_instances(labels)
    assert instances.max() == len(drawn) == 20
    assert sorted(np.bincount(instances.ravel())[1:]) == sorted(int(m.sum()) for m in drawn)
    assert all(len(np.unique(instances[m])) == 1 for m in drawn)
    # numbered 1..n in raster order of each object's first pixel
    firsts = [int(np.flatnonzero((instances == i).ravel())[0]) for i in range(1, 21)]
    assert firsts == sorted(firsts)


def test_imagej_roi_round_trip(tmp_path):
    labels, drawn = _objects()
    instances = label_instances(labels)
    polygons = instance_polygons(instances, labels, NAMES)
    path = write_imagej_rois(tmp_path / "x_rois.zip", polygons)
    rois = roifile.roiread(path)
    assert len(rois) == 20
    for roi, p in zip(rois, polygons):
        assert roi.roitype == roifile.ROI_TYPE.TRACED
        assert roi.name == f"{NAMES[p.label]}-{p.id}"
        filled = rasterize_polygon(roi.coordinates(), labels.shape)
        obj = instances == p.id
        assert _iou(filled, obj) >= 0.95
        assert np.array_equal(filled, ndimage.binary_fill_holes(obj))  # outer boundary only
        assert set(np.unique(labels[obj])) == {p.label}
    hole_free = [
        p
        for p in polygons
        if np.array_equal(ndimage.binary_fill_holes(instances == p.id), instances == p.id)
    ]
    assert len(hole_free) == 19  # the ring is the one with a hole


def test_geojson_round_trip_is_valid_and_counter_clockwise(tmp_path):
    labels, drawn = _objects()
    instances = label_instances(labels)
    polygons = instance_polygons(instances, labels, NAMES)
    data = json.loads(write_geojson(tmp_path / "x.geojson", polygons).read_text())
    assert data["type"] == "FeatureCollection" and len(data["features"]) == 20
    seen = set()
    for feature in data["features"]:
        geom, props = feature["geometry"], feature["properties"]
        assert feature["type"] == "Feature" and geom["type"] == "Polygon"
        ring = geom["coordinates"][0]
        assert len(geom["coordinates"]) == 1 and ring[0] == ring[-1]
        poly = shape(geom)
        assert poly.is_valid and poly.exterior.is_ccw
        ident = int(props["name"].rsplit("-", 1)[1])
        seen.add(ident)
        obj = instances == ident
        label = int(labels[obj][0])
        assert props["objectType"] == "detection"
        assert props["classification"] == {"name": NAMES[label]}
        assert props["measurements"][AREA_MEASUREMENT] == obj.sum()
        filled = ndimage.binary_fill_holes(obj)
        assert poly.area == filled.sum()  # pixel-edge outline: area = pixels (holes filled)
        assert np.array_equal(rasterize_polygon(np.array(ring[:-1]), labels.shape), filled)
    assert seen == set(range(1, 21))
    # the detections do not overlap one another (objects never touch here)
    polys = [shape(f["geometry"]) for f in data["features"]]
    assert sum(a.intersection(b).area for i, a in enumerate(polys) for b in polys[i + 1 :]) == 0


def test_watershed_splits_touching_discs_components_do_not():
    yy, xx = np.mgrid[:30, :50]
    two = ((yy - 15) ** 2 + (xx - 15) ** 2 < 100) | ((yy - 15) ** 2 + (xx - 33) ** 2 < 100)
    labels = two.astype(np.int64)
    assert label_instances(labels, "components").max() == 1
    split = label_instances(labels, "watershed")
    assert split.max() == 2 and np.array_equal(split > 0, two)
    assert {int(split[15, 15]), int(split[15, 33])} == {1, 2}
    polys = [
        shape({"type": "Polygon", "coordinates": [p.points.tolist()]})
        for p in instance_polygons(split)
    ]
    assert all(p.is_valid for p in polys) and polys[0].intersection(polys[1]).area == 0
    assert polys[0].area + polys[1].area == two.sum()


def test_empty_image_gives_empty_but_readable_files(tmp_path):
    polygons = instance_polygons(np.zeros((8, 9), np.uint16))
    assert polygons == []
    assert roifile.roiread(write_imagej_rois(tmp_path / "e_rois.zip", polygons)) == []
    fc = json.loads(write_geojson(tmp_path / "e.geojson", polygons).read_text())
    assert fc == {"type": "FeatureCollection", "features": []}


def test_unusable_instances_are_refused_naming_the_problem():
    two_pieces = np.zeros((5, 5), np.int32)
    two_pieces[0, 0] = two_pieces[1, 1] = 3  # diagonal pixels: not one face-connected piece
    with pytest.raises(ConfigError, match="instance 3 has 2 separate pieces"):
        instance_polygons(two_pieces)
    with pytest.raises(ConfigError, match="one connected object"):
        trace_outline(two_pieces == 3)
    with pytest.raises(ConfigError, match="2D integer instance images"):
        instance_polygons(np.ones((2, 3, 3), np.int32))
    with pytest.raises(ConfigError, match="components, watershed"):
        label_instances(np.ones((3, 3), int), "voronoi")


# -------------------------------------------------------------------------- predict, API and CLI
@pytest.fixture
def checkpoint(tmp_path):
    model = create_model("unet", base_features=4, depth=2, norm="instance")
    return save_checkpoint(
        tmp_path / "model.pt",
        model,
        normalization=create_normalizer("zscore").to_dict(),
        label_map=LabelMap([0, 255], names=NAMES[:2]).to_dict(),
        patch_size=[32, 32],
    )


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(2):
        image = ndimage.gaussian_filter(rng.normal(size=(40, 56)), 2)
        image = (255 * (image - image.min()) / np.ptp(image)).astype(np.uint8)
        Image.fromarray(image).save(d / f"im{i}.png")
    return d


def test_predict_watershed_instances_keep_pixel_size(checkpoint, tmp_path):
    """The instance image is label_instances of the written labels, as uint16 TIFF with the
    input's pixel size."""
    image = ndimage.gaussian_filter(np.random.default_rng(3).normal(size=(40, 56)), 2)
    meta = ImageMeta(format="tiff", spacing=(0.5, 0.25), spacing_unit="um")
    write_image(tmp_path / "cal.tif", image.astype(np.float32)[None], meta)
    pred = Predictor.from_checkpoint(checkpoint, precision="fp32")
    res = predict_files(
        pred, [tmp_path / "cal.tif"], tmp_path / "out", progress=False, instances="watershed"
    )
    assert set(res[0].outputs) == {"labels", "instances"}
    labels = read_image(res[0].outputs["labels"])[0][0]
    inst, inst_meta = read_image(tmp_path / "out" / "cal_instances.tif")
    assert inst.dtype == np.uint16 and inst_meta.spacing == (0.5, 0.25)
    assert inst.max() > 0
    assert np.array_equal(inst[0], label_instances((labels == 255).astype(int), "watershed"))


def test_predict_refuses_band_by_band_images_before_predicting(
    checkpoint, folder, tmp_path, monkeypatch
):
    big = tmp_path / "big.npy"
    np.save(big, np.random.default_rng(1).normal(size=(1, 40, 56)).astype(np.float32))
    monkeypatch.setattr(batch_mod, "LARGE_PIXELS", 2000)
    pred = Predictor.from_checkpoint(checkpoint, precision="fp32")
    with pytest.raises(DataError, match="band by band") as err:
        predict_files(pred, [folder, big], tmp_path / "out", progress=False, geojson=True)
    assert "\n" not in str(err.value) and str(err.value).startswith(str(big))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    # without instance outputs the same image is predicted band by band
    res = predict_files(pred, [big], tmp_path / "out", progress=False)
    assert res[0].mode == "band-by-band"


def _cli(*args):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "unetkit",
            "predict",
            *map(str, args),
            "--precision",
            "fp32",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_writes_instances_rois_geojson_that_agree(checkpoint, folder, tmp_path):
    out = tmp_path / "o"
    res = _cli(
        checkpoint, folder, "--output", out, "--instances", "components", "--rois", "--geojson"
    )
    assert res.returncode == 0, res.stderr
    assert "predicted 2 image(s), skipped 0" in res.stdout
    for stem in ("im0", "im1"):
        labels = np.asarray(Image.open(out / f"{stem}.png"))
        inst = read_image(out / f"{stem}_instances.tif")[0][0]
        assert inst.dtype == np.uint16
        assert np.array_equal(inst, label_instances((labels == 255).astype(int)))
        n = int(inst.max())
        rois = roifile.roiread(out / f"{stem}_rois.zip")
        features = json.loads((out / f"{stem}.geojson").read_text())["features"]
        assert n > 0 and len(rois) == len(features) == n
        assert [r.name for r in rois] == [f["properties"]["name"] for f in features]
        assert [r.name for r in rois] == [f"nucleus-{i}" for i in range(1, n + 1)]
        for r in rois:
            ident = int(r.name.rsplit("-", 1)[1])
            filled = ndimage.binary_fill_holes(inst == ident)
            assert np.array_equal(rasterize_polygon(r.coordinates(), inst.shape), filled)
    # a rerun (here through the API the command calls) skips the finished cases
    pred = Predictor.from_checkpoint(checkpoint, precision="fp32")
    again = predict_files(pred, [folder], out, progress=False, rois=True, geojson=True)
    assert [r.status for r in again] == ["skipped", "skipped"]
    assert set(again[0].outputs) == {"labels", "instances", "rois", "geojson"}


def test_cli_refuses_outlines_of_a_3d_model_in_one_line(tmp_path):
    model = create_model("unet", spatial_dims=3, base_features=2, depth=2, norm="instance")
    ckpt = save_checkpoint(
        tmp_path / "m3.pt",
        model,
        normalization=create_normalizer("zscore").to_dict(),
        label_map=LabelMap([0, 1]).to_dict(),
    )
    vol = tmp_path / "vol.tif"
    write_image(vol, np.random.default_rng(2).normal(size=(1, 8, 16, 16)).astype(np.float32))
    res = _cli(ckpt, vol, "--output", tmp_path / "o3", "--rois")
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0
    assert "outline objects in 2D images, the model is 3D" in res.stderr
    assert not (tmp_path / "o3").exists() or not any((tmp_path / "o3").iterdir())


def test_outlines_of_an_unnamed_map_are_named_by_the_mask_values(tmp_path):
    """A model of masks 0/100/200 names its ROIs and GeoJSON features by those values, as its
    labels and evaluate do ("class 200-1"), not by the class indices ("class 2-1")."""
    from unetkit.data import LabelMap
    from unetkit.inference.batch import _write_instances

    indices = np.zeros((20, 24), np.int64)
    indices[2:8, 2:8] = 1
    indices[10:16, 12:20] = 2
    paths = {
        "instances": tmp_path / "x_instances.tif",
        "rois": tmp_path / "x_rois.zip",
        "geojson": tmp_path / "x.geojson",
    }
    _write_instances(paths, indices, "components", None, LabelMap([0, 100, 200]))
    names = [r.name for r in roifile.roiread(paths["rois"])]
    assert names == ["class 100-1", "class 200-2"]
    features = json.loads(paths["geojson"].read_text())["features"]
    assert [f["properties"]["name"] for f in features] == names

"""QuPath GeoJSON: exact round trips, valid for shapely and the geojson package, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cellseg_bridge.errors import InputError
from cellseg_bridge.io.geojson import geojson_to_labels, labels_to_features, read_geojson, write_geojson
from cellseg_bridge.io.roi_export import labels_to_rois

N_DSB_IMAGES = 10


def sequential(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 1..n in ascending order (a GeoJSON's k-th object becomes label k)."""
    values = np.unique(labels)
    values = values[values > 0]
    lut = np.zeros(int(labels.max()) + 1, np.int64)
    lut[values] = np.arange(1, values.size + 1)
    return lut[labels]


def assert_round_trip(labels: np.ndarray, tmp_path, name: str = "cells") -> list[dict]:
    """labels -> GeoJSON -> labels -> GeoJSON: both steps exact; every geometry valid for shapely and geojson."""
    shapely = pytest.importorskip("shapely")
    geojson = pytest.importorskip("geojson")
    from shapely.geometry import shape

    labels = sequential(labels)
    features = labels_to_features(labels)
    path = write_geojson(features, tmp_path / f"{name}.geojson")
    back, report = geojson_to_labels(path, labels.shape)
    np.testing.assert_array_equal(back, labels)
    assert report.n_labels == labels.max() and not report.skipped and report.overlap_pixels == 0
    again = labels_to_features(back)
    assert again == features  # geometry, names, properties: identical
    text = path.read_text()
    collection = geojson.loads(text)
    assert collection.is_valid, collection.errors()
    counts = np.bincount(labels.ravel())
    for k, feature in enumerate(json.loads(text)["features"], start=1):
        geom = shape(feature["geometry"])
        assert shapely.is_valid(geom), (feature["properties"]["name"], shapely.is_valid_reason(geom))
        assert geom.area == counts[k]
    return features


def test_geojson_stardist_mask_round_trip_exact(shared_data, tmp_path):
    import tifffile

    labels = tifffile.imread(shared_data / "stardist" / "mask2d.tif")
    features = assert_round_trip(labels, tmp_path)
    assert len(features) == 125


def test_geojson_dsb2018_round_trip_exact(shared_data, tmp_path):
    from cellseg_bridge.datasets import dsb2018

    root = shared_data / "dsb2018"
    ids = dsb2018.select(dsb2018.read_split(root), split="test")[:N_DSB_IMAGES]
    assert len(ids) == N_DSB_IMAGES
    n = 0
    for image_id in ids:
        n += len(assert_round_trip(dsb2018.load_labels(root, image_id), tmp_path, image_id[:12]))
    assert n > 300


def test_coordinates_are_those_of_our_imagej_rois():
    labels = np.zeros((12, 12), np.int32)
    labels[2:7, 3:9] = 1
    labels[8:11, 1:4] = 2
    features = labels_to_features(labels)
    rois = labels_to_rois(labels)
    for feature, roi in zip(features, rois):
        ring = np.array(feature["geometry"]["coordinates"][0][:-1])
        assert {tuple(p) for p in ring.tolist()} == {tuple(p) for p in roi.coordinates().astype(int).tolist()}
        assert feature["properties"]["name"] == roi.name


def test_qupath_properties_planes_and_measurements(tmp_path):
    labels = np.zeros((3, 1, 10, 10), np.int32)
    labels[0, 0, 1:4, 1:4] = 1
    labels[2, 0, 5:9, 5:9] = 1
    labels[2, 0, 0:2, 7:9] = 2  # label 2 at t=2
    labels[2, 0, 3, 0] = 2  # ... in two pieces
    meas = {(2, 0, 1): {"Area px": 16, "Mean ch0": float("nan")}}
    features = labels_to_features(labels, axes="TZYX", object_type="annotation", classification="Nucleus",
                                  measurements=meas)
    assert [f["properties"]["name"] for f in features] == ["cell_0001_t001", "cell_0001_t003", "cell_0002_t003"]
    first, second, third = features
    assert "plane" not in first["geometry"]
    assert second["geometry"]["plane"] == {"c": -1, "z": 0, "t": 2}
    assert third["geometry"]["type"] == "MultiPolygon"
    assert second["properties"]["objectType"] == "annotation"
    assert second["properties"]["classification"]["name"] == "Nucleus"
    assert second["properties"]["measurements"] == {"Area px": 16, "Mean ch0": None}
    path = write_geojson(features, tmp_path / "t.geojson")
    geojson = pytest.importorskip("geojson")
    assert geojson.loads(path.read_text()).is_valid  # the QuPath "plane" member is a foreign member
    parsed = read_geojson(path)
    assert [f.plane for f in parsed] == [(0, 0), (0, 2), (0, 2)]
    with pytest.raises(InputError, match="planes"):
        geojson_to_labels(path, (10, 10))
    with pytest.raises(InputError, match="object type"):
        labels_to_features(labels[0, 0], object_type="cell")


def _write(tmp_path, features, name="bad.geojson"):
    path = tmp_path / name
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def _polygon(coords, name="x", kind="Polygon"):
    return {"type": "Feature", "geometry": {"type": kind, "coordinates": coords}, "properties": {"name": name}}


SQUARE = [[[1, 1], [5, 1], [5, 5], [1, 5], [1, 1]]]


def test_self_intersecting_polygon_is_refused(tmp_path):
    bow = [[[0, 0], [6, 6], [6, 0], [0, 6], [0, 0]]]
    path = _write(tmp_path, [_polygon(SQUARE, "ok"), _polygon(bow, "bow tie")])
    with pytest.raises(InputError, match=r"feature 1 \('bow tie'\) is a self-intersecting polygon.*x 3, y 3"):
        geojson_to_labels(path, (10, 10))
    hole_crossing = [[[1, 1], [5, 1], [5, 5], [1, 5], [1, 1]], [[3, 3], [7, 3], [7, 4], [3, 4], [3, 3]]]
    with pytest.raises(InputError, match="self-intersecting"):
        geojson_to_labels(_write(tmp_path, [_polygon(hole_crossing)]), (10, 10))


def test_points_and_lines_only_give_no_label(tmp_path):
    feats = [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [3, 3]}, "properties": {"name": "p"}},
        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[0, 0], [5, 5]]}, "properties": {}},
        {"type": "Feature", "geometry": None, "properties": {}},
    ]
    labels, report = geojson_to_labels(_write(tmp_path, feats), (10, 10))
    assert report.n_labels == 0 and not labels.any()
    assert [s[2] for s in report.skipped] == ["point feature has no area", "line feature has no area",
                                              "empty feature has no area"]


def test_coordinates_outside_the_image(tmp_path):
    overhang = [[[-2, -2], [3, -2], [3, 3], [-2, 3], [-2, -2]]]
    outside = [[[20, 20], [25, 20], [25, 25], [20, 25], [20, 20]]]
    labels, report = geojson_to_labels(_write(tmp_path, [_polygon(overhang), _polygon(outside, "far")]), (10, 10))
    assert report.n_labels == 1 and np.count_nonzero(labels) == 9  # clipped to the image
    assert report.skipped[0][:2] == (1, "far") and "entirely outside" in report.skipped[0][2]
    huge = [[[-5, -5], [5000, -5], [5000, 5000], [-5, 5000], [-5, -5]]]
    with pytest.raises(InputError, match="far beyond"):
        geojson_to_labels(_write(tmp_path, [_polygon(huge)]), (10, 10))


def test_unreadable_files(tmp_path):
    bad = tmp_path / "x.geojson"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not a readable JSON"):
        read_geojson(bad)
    bad.write_text(json.dumps({"type": "Topology"}))
    with pytest.raises(InputError, match="not GeoJSON"):
        read_geojson(bad)
    nan = [[[1, 1], [5, 1], [5, "a"], [1, 5], [1, 1]]]
    with pytest.raises(InputError, match="feature 0"):
        read_geojson(_write(tmp_path, [_polygon(nan)]))
    with pytest.raises(InputError, match="not found"):
        read_geojson(tmp_path / "missing.geojson")


def test_qupath_variants_are_read(tmp_path):
    # a list of features (QuPath without FEATURE_COLLECTION), float coordinates, an unclosed ring
    feats = [_polygon([[[1.5, 1.5], [6.2, 1.5], [6.2, 4.9], [1.5, 4.9]]], "float"),
             _polygon([[[[0, 7], [2, 7], [2, 9], [0, 9]]], [[[7, 7], [9, 7], [9, 9], [7, 9], [7, 7]]]], "multi", "MultiPolygon")]
    path = tmp_path / "list.geojson"
    path.write_text(json.dumps(feats))
    labels, report = geojson_to_labels(path, (10, 10))
    assert report.label_names == ["float", "multi"]
    # pixel centres inside: columns 2..5 and rows 2..4 for the float rectangle
    assert np.array_equal(np.argwhere(labels == 1).min(axis=0), [2, 2])
    assert np.array_equal(np.argwhere(labels == 1).max(axis=0), [4, 5])
    assert np.count_nonzero(labels == 2) == 4 + 4


def imagej_fill(features: list[dict], shape: tuple[int, int]) -> np.ndarray:
    """ImageJ's own rasterisation of GeoJSON features: a Java2D path per feature -> ShapeRoi -> ip.fill."""
    from scyjava import jimport

    path2d = jimport("java.awt.geom.Path2D$Double")
    shape_roi = jimport("ij.gui.ShapeRoi")
    ip = jimport("ij.process.ShortProcessor")(shape[1], shape[0])
    for k, feature in enumerate(features, start=1):
        geometry = feature["geometry"]
        polygons = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
        path = path2d(path2d.WIND_EVEN_ODD)
        for rings in polygons:
            for ring in rings:
                path.moveTo(float(ring[0][0]), float(ring[0][1]))
                for x, y in ring[1:-1]:
                    path.lineTo(float(x), float(y))
                path.closePath()
        ip.setValue(float(k))
        ip.fill(shape_roi(path))
    return np.asarray(ip.getPixels()).view(np.uint16).reshape(shape)


@pytest.mark.imagej
def test_imagej_fills_our_geojson_exactly(ij, shared_data):
    """ImageJ (Java2D paths, as QuPath's shapes) fills every written feature with exactly its cell's pixels."""
    import tifffile

    from tests.core.test_polygons import random_labels, tricky_labels

    cases = [sequential(tifffile.imread(shared_data / "stardist" / "mask2d.tif")), tricky_labels(), random_labels(1)]
    for labels in cases:
        labels = sequential(labels)
        np.testing.assert_array_equal(imagej_fill(labels_to_features(labels), labels.shape), labels)

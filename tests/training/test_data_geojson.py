"""Training pairs from QuPath GeoJSON annotations (``NAME.geojson``, ``NAME_cells.geojson``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from cellseg_bridge.datasets.synthetic import NucleiSpec, synthetic_nuclei
from cellseg_bridge.errors import InputError
from cellseg_bridge.io.geojson import labels_to_features, write_geojson
from cellseg_bridge.io.roi_export import labels_to_rois, write_roi_zip
from cellseg_bridge.training.data import find_pairs, load_pair


@pytest.fixture(scope="module")
def nuc():
    return synthetic_nuclei(NucleiSpec(shape=(64, 80), n_nuclei=6), seed=3)


def test_geojson_annotations_are_training_masks(tmp_path, nuc):
    img, lab = nuc
    tifffile.imwrite(tmp_path / "q.tif", img)
    write_geojson(labels_to_features(lab, object_type="annotation"), tmp_path / "q.geojson")  # QuPath's name
    tifffile.imwrite(tmp_path / "s.tif", img)
    write_geojson(labels_to_features(lab), tmp_path / "s_cells.geojson")  # what segment --save-geojson writes
    tifffile.imwrite(tmp_path / "r.tif", img)
    write_roi_zip(labels_to_rois(lab), tmp_path / "r_RoiSet.zip")
    write_geojson(labels_to_features(lab[:, ::-1]), tmp_path / "r.geojson")  # the RoiSet comes first
    pairs = find_pairs(tmp_path)
    assert [(p.image.name, p.masks.name, p.kind) for p in pairs] == [
        ("q.tif", "q.geojson", "geojson"), ("r.tif", "r_RoiSet.zip", "rois"), ("s.tif", "s_cells.geojson", "geojson")]
    for pair in pairs:
        _, labels = load_pair(pair)
        np.testing.assert_array_equal(labels, lab)  # rasterised with the rule of the ROIs: exact


def test_geojson_that_does_not_fit_or_has_no_area(tmp_path, nuc):
    img, _ = nuc
    tifffile.imwrite(tmp_path / "small.tif", img[:20, :20])
    big = np.zeros((400, 400), np.uint16)
    big[300:320, 300:320] = 1
    big[350:370, 200:220] = 2
    write_geojson(labels_to_features(big), tmp_path / "small.geojson")
    (pair,) = find_pairs(tmp_path)
    with pytest.raises(InputError, match="none of the"):
        load_pair(pair)
    points = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [3, 3]}, "properties": {}}]}
    (tmp_path / "small.geojson").write_text(json.dumps(points))
    with pytest.raises(InputError, match="none of the 1 ROIs"):
        load_pair(pair)

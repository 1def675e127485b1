"""Corrections exported from QuPath as GeoJSON: read, checked against the image, kept by the project."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cellseg_bridge.errors import InputError
from cellseg_bridge.hitl import init_project
from cellseg_bridge.hitl.corrections import read_correction
from cellseg_bridge.io.geojson import labels_to_features, write_geojson


def _labels(shape=(40, 50)):
    lab = np.zeros(shape, np.uint16)
    lab[5:15, 5:15] = 1
    lab[20:30, 30:45] = 2
    lab[24:27, 35:38] = 0  # a hole
    return lab


def _collection(tmp_path, features, name="c.geojson"):
    path = tmp_path / name
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def test_geojson_correction_is_exact(tmp_path):
    lab = _labels()
    path = write_geojson(labels_to_features(lab, object_type="annotation"), tmp_path / "cells.geojson")
    corr = read_correction(path, lab.shape)
    assert (corr.n_rois, corr.n_cells) == (2, 2)
    np.testing.assert_array_equal(corr.labels, lab)


def test_geojson_corrections_bad_input(tmp_path):
    lab = _labels()
    point = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [3, 3]}, "properties": {"name": "p"}}
    with pytest.raises(InputError, match="only points or lines"):
        read_correction(_collection(tmp_path, [point]), lab.shape, image_name="img.tif")
    features = labels_to_features(lab)
    ok = read_correction(_collection(tmp_path, features + [point]), lab.shape)
    assert ok.n_cells == 2 and ok.ignored == ["p: point feature has no area"]
    big = np.zeros((200, 200), np.uint16)
    big[150:170, 150:170] = 1
    with pytest.raises(InputError, match="outside the 50x40 .* image small.tif") as info:
        read_correction(write_geojson(labels_to_features(big), tmp_path / "big.geojson"), lab.shape,
                        image_name="small.tif")
    assert info.value.path == tmp_path / "big.geojson"
    bow = {"type": "Feature", "properties": {"name": "bow"},
           "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [6, 6], [6, 0], [0, 6], [0, 0]]]}}
    with pytest.raises(InputError, match="'bow'.*self-intersecting"):
        read_correction(_collection(tmp_path, [bow]), lab.shape)
    empty = _collection(tmp_path, [])
    with pytest.raises(InputError, match="empty corrections"):
        read_correction(empty, lab.shape)
    assert read_correction(empty, lab.shape, allow_empty=True).n_cells == 0


def test_project_keeps_the_geojson(tmp_path, images, tiny_model):
    proj = init_project(tmp_path / "proj", images[:2], model=tiny_model)
    truth = np.load(images[0].with_name(images[0].stem + "_truth.npy"))
    path = write_geojson(labels_to_features(truth, object_type="annotation"), tmp_path / "nuclei_00.geojson")
    result = proj.add_correction(images[0], path)
    assert result.n_cells == len(np.unique(truth)) - 1
    rec = proj.find_image("nuclei_00")["correction"]
    assert rec["rois"] == "corrections/nuclei_00.geojson"
    assert (proj.directory / rec["rois"]).read_bytes() == path.read_bytes()

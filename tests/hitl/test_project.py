"""HITL project mechanics: init, next, add, status, and the errors users meet (tiny untrained network)."""

import json

import numpy as np
import pytest
import tifffile

from cellseg_bridge.errors import InputError
from cellseg_bridge.hitl import init_project, open_project
from cellseg_bridge.hitl.manifest import manifest_path, sha256_file
from cellseg_bridge.io.roi_export import labels_to_rois, write_roi_zip
from tests.hitl.conftest import FAST_TRAIN, write_images


def _truth_zip(image, tmp_path, name=None):
    labels = np.load(image.with_name(image.stem + "_truth.npy"))
    return write_roi_zip(labels_to_rois(labels), tmp_path / (name or f"{image.stem}_corrected.zip")), labels


def test_init_next_add_status(tmp_path, images, tiny_model):
    before = {p: sha256_file(p) for p in images}
    proj = init_project(tmp_path / "proj", images, model=tiny_model, diameter=16.0, train_options=FAST_TRAIN)
    man = json.loads(manifest_path(proj.directory).read_text())
    assert [r["name"] for r in man["images"]] == [p.name for p in images]
    assert man["images"][0]["file"]["sha256"] == before[images[0]] and man["current_model"] == "initial"

    nxt = proj.next_image()
    assert nxt.image_id == "nuclei_00" and nxt.model == "initial" and not nxt.reused
    assert nxt.rois.is_file() and nxt.labels.is_file()
    assert nxt.rois.parent == proj.directory / "predictions" / "initial"
    again = open_project(proj.directory).next_image()
    assert again.reused and again.rois == nxt.rois

    # corrections of images 0..2 (given by path, by name, by id): the 3rd is held out (every 3rd)
    splits = []
    for i, ref in enumerate([images[0], images[1].name, "nuclei_02"]):
        zp, labels = _truth_zip(images[i], tmp_path)
        res = proj.add_correction(ref, zp)
        assert res.n_cells == len(np.unique(labels)) - 1
        splits.append(res.split)
    assert splits == ["train", "train", "holdout"]
    assert proj.next_image().image_id == "nuclei_03"
    stored = tifffile.imread(proj.directory / proj.find_image("nuclei_00")["correction"]["labels"])
    assert np.array_equal(stored.reshape(96, 96) > 0, np.load(images[0].with_name("nuclei_00_truth.npy")) > 0)
    assert proj.find_image("nuclei_00")["correction"]["changes"] is not None  # it had a prediction

    # replacing corrections keeps the split; --train overrides it
    zp, _ = _truth_zip(images[2], tmp_path, "again.zip")
    res = proj.add_correction("nuclei_02", zp)
    assert res.replaced and res.split == "holdout"
    assert proj.add_correction("nuclei_02", zp, holdout=False).split == "train"
    proj.add_correction("nuclei_02", zp, holdout=True)

    status = proj.status(evaluate=False)
    assert status["counts"] == {"images": 4, "corrected": 3, "train": 2, "holdout": 1, "remaining": 1,
                                "corrected_cells": status["counts"]["corrected_cells"],
                                "train_cells": status["counts"]["train_cells"]}
    assert status["models"][0]["model"] == "initial" and status["models"][0]["holdout_ap50"] is None
    scored = proj.status(evaluate=True)["models"][0]
    assert scored["holdout_images"] == 1 and 0.0 <= scored["holdout_ap50"] <= 1.0
    assert proj.status(evaluate=False)["models"][0]["holdout_ap50"] == scored["holdout_ap50"]  # cached
    assert status["interrupted"] is None and status["next_image"] == "nuclei_03"
    assert {p: sha256_file(p) for p in images} == before  # inputs never modified


def test_bad_input_is_refused_with_clear_errors(tmp_path, images, tiny_model):
    two = write_images(tmp_path / "two", [7], channels=2)
    with pytest.raises(InputError, match="different channel counts"):
        init_project(tmp_path / "mixed", images[:2] + two, model=tiny_model)
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((3, 32, 32), np.uint16), photometric="minisblack", metadata={"axes": "ZYX"})
    with pytest.raises(InputError, match="single 2D images") as info:
        init_project(tmp_path / "z", [stack], model=tiny_model)
    assert info.value.path == stack
    with pytest.raises(InputError, match="image not found"):
        init_project(tmp_path / "missing", [tmp_path / "nope.tif"], model=tiny_model)
    with pytest.raises(InputError, match="set by the project"):
        init_project(tmp_path / "opt", images, model=tiny_model, train_options={"pretrained": "x"})
    assert not (tmp_path / "mixed").exists()

    proj = init_project(tmp_path / "proj", images[:2], model=tiny_model)
    with pytest.raises(InputError, match="already exists"):
        init_project(tmp_path / "proj", images[:2], model=tiny_model)
    zp, _ = _truth_zip(images[0], tmp_path)
    with pytest.raises(InputError, match="not in the HITL project") as info:
        proj.add_correction(images[3], zp)
    assert "nuclei_00.tif" in str(info.value)
    empty = write_roi_zip([], tmp_path / "empty.zip")
    with pytest.raises(InputError, match="empty corrections"):
        proj.add_correction(images[0], empty)
    big = np.zeros((300, 300), np.uint16)
    big[200:220, 200:220] = 1
    with pytest.raises(InputError, match="does not fit"):
        proj.add_correction(images[0], write_roi_zip(labels_to_rois(big), tmp_path / "big.zip"))
    with pytest.raises(InputError, match="no corrected training images"):
        proj.train()
    assert proj.find_image("nuclei_00")["correction"] is None  # nothing was stored

    images[1].write_bytes(images[1].read_bytes()[:-10] + b"0123456789")
    zp1, _ = _truth_zip(images[1], tmp_path)
    with pytest.raises(InputError, match="changed since") as info:
        proj.add_correction(images[1], zp1)
    assert info.value.path == images[1]

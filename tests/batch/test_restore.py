"""restore_files (``cellseg restore``) and segment_files(restore=...) (``cellseg segment --restore``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cellseg_bridge.batch.restore import restore_files
from cellseg_bridge.batch.segment import segment_files
from cellseg_bridge.datasets.synthetic import NucleiSpec, synthetic_nuclei
from cellseg_bridge.io.reader import open_image
from cellseg_bridge.io.writers import write_ome_tiff
from cellseg_bridge.restoration.api import load_restore_model, restore
from cellseg_bridge.segmentation.pipeline import load_model, segment


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    img = synthetic_nuclei(NucleiSpec(shape=(64, 72), n_nuclei=6, diameter=17), seed=5)[0]
    two = np.stack([img, img[::-1]]).astype(np.uint16)
    write_ome_tiff(two, folder / "cells.ome.tif", dims="CYX", channel_names=["DAPI", "GFP"],
                   physical_pixel_sizes={"Z": None, "Y": 0.5, "X": 0.5})
    (folder / "broken.tif").write_bytes(b"not a tiff")
    return folder


def test_restore_files_writes_restored_ome_tiff_and_metadata(inputs, tiny_restore_path, tmp_path):
    before = (inputs / "cells.ome.tif").read_bytes()
    report = restore_files([inputs], tmp_path, model=str(tiny_restore_path), channel="DAPI", device="cpu",
                           quiet=True)
    data = report.to_dict()
    assert not data["ok"]  # the broken file fails, the other is done
    done = [i for i in data["items"] if i["status"] == "done"]
    failed = [i for i in data["items"] if i["status"] == "failed"]
    assert len(done) == 1 and len(failed) == 1 and "broken.tif" in failed[0]["input"]
    out = done[0]["outputs"]
    assert out["restored"].endswith("cells_restored.ome.tif") and out["metadata"].endswith("cells_restored.json")
    img = open_image(out["restored"])
    assert img.attrs["channel_names"] == ["DAPI", "GFP"]
    assert img.attrs["physical_pixel_sizes"]["X"] == pytest.approx(0.5)
    original = open_image(inputs / "cells.ome.tif")
    expected = restore(original, model=load_restore_model(tiny_restore_path, "cpu"), channel="DAPI").image
    np.testing.assert_allclose(np.asarray(img.data, np.float32), expected, atol=1e-5)
    meta = json.loads((tmp_path / "cells_restored.json").read_text())
    assert meta["restored_channels"] == [0] and meta["types"] == ["model"]
    assert (inputs / "cells.ome.tif").read_bytes() == before  # input untouched
    again = restore_files([inputs / "cells.ome.tif"], tmp_path, model=str(tiny_restore_path), channel="DAPI",
                          device="cpu", quiet=True)
    assert again.to_dict()["items"][0]["status"] == "skipped"
    other = restore_files([inputs / "cells.ome.tif"], tmp_path, model=str(tiny_restore_path), channel="GFP",
                          device="cpu", quiet=True)  # other parameters (cellseg_run.json): redone
    assert other.to_dict()["items"][0]["status"] == "done"
    assert json.loads((tmp_path / "cellseg_run.json").read_text())["options"]["channel"] == "GFP"


def test_restore_files_reports_a_missing_model_per_item(inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("CELLSEG_BRIDGE_MODELS", str(tmp_path / "cache"))
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path / "cp"))
    report = restore_files([inputs / "cells.ome.tif"], tmp_path / "out", types="deblur", target="nowhere",
                           device="cpu", quiet=True)
    item = report.to_dict()["items"][0]
    assert item["status"] == "failed" and "deblur_nowhere" in item["reason"]


def test_segment_with_restore_segments_the_restored_image(inputs, tiny_restore_path, tiny_seg_path, tmp_path):
    opts = {"channel": 0, "diameter": 17.0, "cellprob_threshold": -2.0}
    report = segment_files([inputs / "cells.ome.tif"], tmp_path, model=str(tiny_seg_path), restore=str(tiny_restore_path),
                           device="cpu", quiet=True, outputs=["labels"], save_flows=True, **opts)
    assert report.ok, report.failed
    labels = open_image(tmp_path / "cells_labels.ome.tif").values[0, 0, 0]
    cellprob = open_image(tmp_path / "cells_flows.ome.tif").values[0, 2, 0]
    original = open_image(inputs / "cells.ome.tif")
    restored = restore(original, model=load_restore_model(tiny_restore_path, "cpu"), channel=[0], diameter=17.0)
    model = load_model(tiny_seg_path, device="cpu")
    expected = segment(restored.to_dataarray(), model, return_flows=True, **opts)
    np.testing.assert_array_equal(labels, expected.labels[0, 0])
    np.testing.assert_allclose(cellprob, expected.cellprob[0, 0], atol=1e-4)


def test_segment_with_restore_hands_the_restored_channels_to_segment(inputs, tiny_restore_path, tmp_path):
    seen = {}

    def fake_segment(image, model, **options):
        seen["image"], seen["options"] = np.asarray(image.data), options
        raise RuntimeError("stop here")

    report = segment_files([inputs / "cells.ome.tif"], tmp_path, model="unused", restore=[str(tiny_restore_path)],
                           channel="GFP", nuclear_channel="DAPI", device="cpu", quiet=True,
                           segment_fn=fake_segment, load_model_fn=lambda spec, device: object())
    assert not report.ok and "stop here" in report.failed[0][1]
    original = np.asarray(open_image(inputs / "cells.ome.tif").data, np.float32)
    restored = restore(original, model=load_restore_model(tiny_restore_path, "cpu"), axes="TCZYX").image
    np.testing.assert_allclose(seen["image"], restored, atol=1e-5)  # both channels restored
    assert not np.allclose(seen["image"], original)
    assert seen["options"]["channel"] == 1 and seen["options"]["nuclear_channel"] == 0

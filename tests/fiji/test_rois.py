"""ROIs into the real ImageJ 1.53t: ROI Manager (under Xvfb), Overlay + RoiSet.zip (headless), and back."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from cellseg_bridge.fiji import rois as fr
from cellseg_bridge.fiji.imageplus import labels_to_imageplus
from cellseg_bridge.io.reader import open_image
from cellseg_bridge.io.roi_export import labels_to_rois
from cellseg_bridge.io.roi_import import read_rois
from tests.conftest import REPO

MASKS = REPO / "sample_data" / "nuclei_00_masks.ome.tif"


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to a renumbering of the labels."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(pairs[0]) == len(np.unique(a)) == len(np.unique(b)) and np.array_equal(pairs[0] > 0, pairs[1] > 0)


def test_headless_overlay_and_zip_keep_existing_rois_and_match_masks(ij, tmp_path):
    from scyjava import jimport

    labels = open_image(MASKS).values[0, 0, 0]
    imp = labels_to_imageplus(labels)
    overlay = jimport("ij.gui.Overlay")()
    overlay.add(jimport("ij.gui.Roi")(0, 0, 3, 3))  # was there before
    imp.setOverlay(overlay)
    assert not fr.display_available()
    rois = labels_to_rois(labels)
    result = fr.push_rois(rois, imp, zip_path=tmp_path / "RoiSet.zip")
    n_cells = len(np.unique(labels)) - 1
    assert (result.target, result.n_added, result.n_before) == ("overlay", n_cells, 1)
    assert imp.getOverlay().size() == n_cells + 1
    assert [r.name for r in read_rois(tmp_path / "RoiSet.zip")] == [r.name for r in rois]
    measurements = jimport("ij.measure.Measurements")
    counts = np.bincount(labels.ravel())
    for i, roi in enumerate(rois):
        jroi = imp.getOverlay().get(i + 1)
        assert str(jroi.getName()) == roi.name
        imp.setRoi(jroi)
        label = int(roi.name.split("_")[-1])
        assert imp.getStatistics(measurements.AREA).pixelCount == counts[label]
    pulled, report = fr.pull_labels(imp, labels.shape)
    assert report.n_labels == n_cells + 1
    assert np.array_equal(pulled[3:, 3:] > 0, labels[3:, 3:] > 0)
    replaced = fr.push_rois(rois[:2], imp, append=False)
    assert replaced.n_before == 0 and imp.getOverlay().size() == 2
    again, _ = fr.pull_labels(tmp_path / "RoiSet.zip", labels.shape)
    assert _same_partition(again, labels)


def test_java_roi_round_trip_is_byte_exact_geometry(ij):
    stack = np.zeros((2, 20, 20), np.uint16)
    stack[1, 3:9, 4:15] = 7
    stack[1, 5:7, 7:9] = 0  # a hole: composite ROI
    (roi,) = labels_to_rois(stack)
    back = fr.from_java_roi(fr.to_java_roi(roi))
    assert back.name == roi.name == "cell_0007_z002"
    assert back.position == roi.position == 2
    assert np.array_equal(fr.pull_labels([fr.to_java_roi(roi)], stack.shape)[0] > 0, stack > 0)


def test_manager_target_without_display_is_refused(ij):
    from cellseg_bridge.errors import InputError

    with pytest.raises(InputError, match="display"):
        fr.push_rois([], None, target="manager")


@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="xvfb-run not installed (apt-get install xvfb)")
def test_roi_manager_under_xvfb_appends_names_positions_areas(tmp_path):
    script = REPO / "tests" / "fiji" / "roi_manager_check.py"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run(["xvfb-run", "-a", sys.executable, str(script), str(MASKS)], env=env, capture_output=True,
                         text=True, timeout=240, cwd=REPO)
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, run.stdout[-2000:] + run.stderr[-3000:]
    out = json.loads(lines[0][len("RESULT "):])
    labels = open_image(MASKS).values[0, 0, 0]
    rois = labels_to_rois(labels)
    n_cells = len(rois)
    assert out["pushed"] == ["manager", n_cells, 2]
    held = out["held"]
    assert [h["name"] for h in held[:2]] == ["mine_1", "mine_2"]  # the user's ROIs stay, first
    assert [h["name"] for h in held[2:]] == [r.name for r in rois]  # one ROI per cell, our names
    size = out["pixel_size"]
    for h, roi in zip(held[2:], rois):
        label = int(roi.name.split("_")[-1])
        assert h["pixels"] == out["mask_counts"][str(label)]  # ImageJ's measurement == mask pixel count
        assert h["area"] == pytest.approx(h["pixels"] * size * size, rel=1e-6)
        ys, xs = np.nonzero(labels == label)
        assert (h["x"], h["y"]) == (xs.min(), ys.min())
    assert out["pull_labels"] == n_cells + 2
    pulled = np.array(out["pulled"])
    assert _same_partition(np.where(pulled > 2, pulled, 0), labels)  # our ROIs come back as the masks
    assert out["replaced"] == ["manager", 2, 0]
    assert out["stack_held"] == [["cell_0001_z001", 1], ["cell_0002_z003", 3]]

"""``cellseg rois to-zip`` / ``to-labels`` end to end on files."""

import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cellseg_bridge.cli import main
from cellseg_bridge.datasets.synthetic import NucleiSpec, synthetic_nuclei
from cellseg_bridge.io.reader import open_image
from cellseg_bridge.io.roi_import import read_rois
from cellseg_bridge.io.writers import write_labels, write_ome_tiff

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


def test_sample_labels_round_trip_through_cli(tmp_path):
    masks = SAMPLE / "nuclei_00_masks.ome.tif"
    zip_path = tmp_path / "RoiSet.zip"
    runner = CliRunner()
    result = runner.invoke(main, ["rois", "to-zip", str(masks), "--out", str(zip_path)])
    assert result.exit_code == 0, result.output
    truth = open_image(masks).values[0, 0, 0]
    rois = read_rois(zip_path)
    assert len(rois) == truth.max()
    assert rois[0].name == "cell_0001"
    out = tmp_path / "back.ome.tif"
    result = runner.invoke(main, ["rois", "to-labels", str(zip_path), "--like", str(SAMPLE / "nuclei_00.ome.tif"),
                                  "--out", str(out)])
    assert result.exit_code == 0, result.output
    back = open_image(out)
    np.testing.assert_array_equal(back.values[0, 0, 0], truth)
    assert back.attrs["physical_pixel_sizes"]["X"] == pytest.approx(0.65)


def test_stack_labels_get_z_positions_and_come_back(tmp_path):
    _, labels2d = synthetic_nuclei(NucleiSpec(shape=(64, 64), n_nuclei=5), seed=1)
    stack = np.stack([labels2d, np.roll(labels2d, 3, axis=1), np.zeros_like(labels2d)])
    path = tmp_path / "stack_masks.ome.tif"
    write_labels(stack, path, physical_pixel_sizes={"Z": 2.0, "Y": 0.5, "X": 0.5})
    like = tmp_path / "stack.ome.tif"
    write_ome_tiff(stack.astype(np.uint16) * 10, like)
    runner = CliRunner()
    result = runner.invoke(main, ["rois", "to-zip", str(path)])
    assert result.exit_code == 0, result.output
    zip_path = tmp_path / "stack_masks_RoiSet.zip"
    rois = read_rois(zip_path)
    assert {r.position for r in rois} == {1, 2}
    out = tmp_path / "back.ome.tif"
    result = runner.invoke(main, ["rois", "to-labels", str(zip_path), "--like", str(like), "--out", str(out)])
    assert result.exit_code == 0, result.output
    back = open_image(out).values[0, 0]
    # Labels are renumbered in ROI order (one ROI per cell and plane): compare the partition.
    assert back.shape == stack.shape
    np.testing.assert_array_equal(back > 0, stack > 0)
    for z in range(3):
        for lab in np.unique(stack[z])[1:]:
            assert len(np.unique(back[z][stack[z] == lab])) == 1


def test_rewriting_a_zip_needs_overwrite_and_then_replaces_it(tmp_path):
    masks = SAMPLE / "nuclei_01_masks.ome.tif"
    zip_path = tmp_path / "RoiSet.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("old.roi", b"stale")
    before = zip_path.read_bytes()
    result = CliRunner().invoke(main, ["rois", "to-zip", str(masks), "--out", str(zip_path)])
    assert result.exit_code == 1 and "--overwrite" in result.output and "RoiSet.zip" in result.output
    assert zip_path.read_bytes() == before
    result = CliRunner().invoke(main, ["rois", "to-zip", str(masks), "--out", str(zip_path), "--overwrite"])
    assert result.exit_code == 0, result.output
    names = zipfile.ZipFile(zip_path).namelist()
    assert "old.roi" not in names and len(names) == open_image(masks).values.max()


def test_bad_inputs_give_one_line_errors(tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff at all" * 10)
    runner = CliRunner()
    result = runner.invoke(main, ["rois", "to-zip", str(bad)])
    assert result.exit_code == 1
    assert "bad.tif" in result.output and "Traceback" not in result.output
    rgb = tmp_path / "two_channels.ome.tif"
    write_ome_tiff(np.zeros((2, 16, 16), np.uint16), rgb, dims="CYX")
    result = runner.invoke(main, ["rois", "to-zip", str(rgb)])
    assert result.exit_code == 1 and "one channel" in result.output
    garbage_zip = tmp_path / "garbage.zip"
    garbage_zip.write_bytes(b"PK nonsense")
    result = runner.invoke(main, ["rois", "to-labels", str(garbage_zip), "--like", str(SAMPLE / "nuclei_00.ome.tif"),
                                  "--out", str(tmp_path / "x.ome.tif")])
    assert result.exit_code == 1 and "garbage.zip" in result.output
    assert not (tmp_path / "x.ome.tif").exists()

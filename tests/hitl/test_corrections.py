"""Checking corrected RoiSets against their image, and counting the user's changes."""

import zipfile

import numpy as np
import pytest
from roifile import ROI_TYPE, ImagejRoi

from cellseg_bridge.errors import InputError
from cellseg_bridge.hitl.corrections import compare_to_prediction, read_correction
from cellseg_bridge.io.roi_export import labels_to_rois, write_roi_zip


def _labels(shape=(40, 50)):
    lab = np.zeros(shape, np.uint16)
    lab[5:15, 5:15] = 1
    lab[20:30, 30:45] = 2
    return lab


def test_correction_is_rasterised_at_the_image_size(tmp_path):
    lab = _labels()
    zp = write_roi_zip(labels_to_rois(lab), tmp_path / "RoiSet.zip")
    corr = read_correction(zp, lab.shape)
    assert (corr.n_rois, corr.n_cells) == (2, 2)
    assert np.array_equal(corr.labels, lab)


def test_roiset_of_a_larger_image_does_not_fit(tmp_path):
    big = np.zeros((200, 200), np.uint16)
    big[5:15, 5:15] = 1
    big[150:170, 150:170] = 2
    zp = write_roi_zip(labels_to_rois(big), tmp_path / "big_RoiSet.zip")
    with pytest.raises(InputError, match="does not fit") as info:
        read_correction(zp, (40, 50), image_name="small.tif")
    assert info.value.path == zp and "small.tif" in str(info.value) and "cell_0002" in str(info.value)


def test_empty_corrections_are_refused_unless_allowed(tmp_path):
    zp = write_roi_zip([], tmp_path / "empty.zip")
    with pytest.raises(InputError, match="empty corrections"):
        read_correction(zp, (40, 50))
    line = ImagejRoi.frompoints(np.array([[1.0, 1.0], [20.0, 20.0]]))
    line.roitype = ROI_TYPE.POLYLINE  # no area
    zl = write_roi_zip([line], tmp_path / "lines.zip")
    with pytest.raises(InputError, match="none encloses an area"):
        read_correction(zl, (40, 50))
    corr = read_correction(zp, (40, 50), allow_empty=True)
    assert corr.n_cells == 0 and not corr.labels.any()


def test_corrupt_and_wrong_files_are_named(tmp_path):
    lab = _labels()
    zp = write_roi_zip(labels_to_rois(lab), tmp_path / "RoiSet.zip")
    with zipfile.ZipFile(zp, "a") as zf:
        zf.writestr("broken.roi", b"not a roi")
    with pytest.raises(InputError, match="could not be read"):
        read_correction(zp, lab.shape)
    other = tmp_path / "labels.tif"
    other.write_bytes(b"x")
    with pytest.raises(InputError, match="RoiSet .zip"):
        read_correction(other, lab.shape)
    with pytest.raises(InputError, match="not found"):
        read_correction(tmp_path / "missing.zip", lab.shape)


def test_changes_against_the_prediction_are_counted():
    pred = _labels()
    pred[30:38, 2:10] = 3
    corr = pred.copy()
    corr[corr == 3] = 0  # deleted
    corr[20:30, 30:40][corr[20:30, 30:40] == 2] = 2  # unchanged
    corr[5:15, 15:17] = 1  # reshaped: cell 1 grows by 20 px
    corr[32:38, 20:26] = 4  # added
    ch = compare_to_prediction(corr, pred).to_dict()
    assert ch == {"unchanged": 1, "reshaped": 1, "added": 1, "deleted": 1}

"""ImageJ channel labels are channel names (issue 18 defect 3), in either byte order.

The Fiji scripts' side (a TIFF written by ImageJ itself with its preferences loaded) is
tested in ``tests/fiji/test_scripts.py``; here, files in the layout ImageJ writes.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cellseg_bridge.io.reader import open_image


@pytest.mark.parametrize("byteorder", [">", "<"])
def test_imagej_slice_labels_name_the_channels(tmp_path, byteorder):
    path = tmp_path / "two.tif"
    data = np.arange(2 * 3 * 8 * 9, dtype=np.uint16).reshape(3, 2, 8, 9)  # Z C Y X (ImageJ: channel fastest)
    labels = ["DAPI", "GFP"] * 3  # one label per plane; a channel is named by its first plane's
    tifffile.imwrite(path, data, imagej=True, byteorder=byteorder, metadata={"axes": "ZCYX", "Labels": labels})
    image = open_image(path)
    assert image.attrs["channel_names"] == ["DAPI", "GFP"]
    assert np.array_equal(image.sel(C="GFP").values[0], data[:, 1])


def test_label_set_on_the_first_plane_of_each_channel_names_it(tmp_path):
    path = tmp_path / "first.tif"
    data = np.zeros((2, 2, 8, 9), np.uint16)  # Z C Y X
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZCYX", "Labels": ["DAPI", "GFP", "", ""]})
    assert open_image(path).attrs["channel_names"] == ["DAPI", "GFP"]


def test_repeated_or_per_slice_labels_keep_placeholders(tmp_path):
    path = tmp_path / "same.tif"
    data = np.zeros((2, 8, 9), np.uint16)
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "CYX", "Labels": ["x", "x"]})
    assert open_image(path).attrs["channel_names"] == ["Channel:0:0", "Channel:0:1"]
    stack = tmp_path / "stack.tif"  # one channel, a label per slice (e.g. the files a stack was made of)
    tifffile.imwrite(stack, np.zeros((3, 8, 9), np.uint16), imagej=True,
                     metadata={"axes": "ZYX", "Labels": ["a.tif", "b.tif", "c.tif"]})
    assert open_image(stack).attrs["channel_names"] == ["Channel:0:0"]

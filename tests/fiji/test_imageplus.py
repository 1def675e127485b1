"""numpy/xarray -> ImagePlus in the real ImageJ 1.53t (headless JVM of the ``ij`` fixture)."""

import numpy as np
import pytest

from cellseg_bridge.errors import InputError
from cellseg_bridge.fiji.imageplus import imageplus_pixel_sizes, imageplus_to_array, labels_to_imageplus, to_imageplus
from cellseg_bridge.fiji.lut import label_display_range, label_lut
from cellseg_bridge.io.reader import open_image
from tests.conftest import REPO


def test_label_imageplus_has_dimensions_calibration_pixels_and_lut(ij):
    labels = open_image(REPO / "sample_data" / "nuclei_00_masks.ome.tif")
    values = labels.values[0, 0, 0]
    imp = labels_to_imageplus(labels.isel(T=0, C=0, Z=0), "labels")
    assert list(imp.getDimensions()) == [values.shape[1], values.shape[0], 1, 1, 1]
    assert imp.getBitDepth() == 16
    assert np.array_equal(imageplus_to_array(imp)[0, 0, 0], values)
    sizes = labels.attrs["physical_pixel_sizes"]
    assert str(imp.getCalibration().getUnit()) in ("micron", "µm")
    assert imageplus_pixel_sizes(imp)["X"] == pytest.approx(sizes["X"])
    assert imageplus_pixel_sizes(imp)["Y"] == pytest.approx(sizes["Y"])
    lut = imp.getProcessor().getLut()
    expected = label_lut()
    got = np.asarray(lut.getBytes(), dtype=np.int8).view(np.uint8).reshape(3, 256).T  # r..., g..., b...
    assert np.array_equal(got, expected)
    assert (imp.getDisplayRangeMin(), imp.getDisplayRangeMax()) == label_display_range(int(values.max()))


def test_lut_neighbours_are_distinct():
    lut = label_lut().astype(int)
    assert tuple(lut[0]) == (0, 0, 0)
    assert len({tuple(c) for c in lut[1:]}) == 255
    assert np.abs(np.diff(lut[1:], axis=0)).sum(axis=1).min() > 60


def test_hyperstack_order_names_ranges_and_z_calibration(ij):
    data = np.random.default_rng(0).integers(0, 4000, (2, 3, 4, 9, 11)).astype(np.uint16)
    imp = to_imageplus(data, "h", dims="TCZYX", pixel_sizes={"Z": 2.0, "Y": 0.5, "X": 0.25},
                       channel_names=["DAPI", "GFP", "RFP"], display_ranges=[(1, 2), (3, 4), (5, 6)])
    assert list(imp.getDimensions()) == [11, 9, 3, 4, 2] and imp.isComposite()
    assert np.array_equal(imageplus_to_array(imp), data)
    # ImageJ's own plane lookup: channel 2, slice 3, frame 2
    index = imp.getStackIndex(2, 3, 2)
    plane = np.asarray(imp.getStack().getPixels(index), dtype=np.int16).view(np.uint16).reshape(9, 11)
    assert np.array_equal(plane, data[1, 1, 2])
    assert str(imp.getStack().getSliceLabel(index)) == "GFP"
    assert imageplus_pixel_sizes(imp) == {"Z": 2.0, "Y": 0.5, "X": 0.25}
    for c, (lo, hi) in enumerate([(1, 2), (3, 4), (5, 6)]):
        lut = imp.getChannelLut(c + 1)
        assert (lut.min, lut.max) == (lo, hi)


def test_vendor_image_keeps_channel_names(ij, shared_data):
    image = open_image(shared_data / "formats" / "nd2" / "example-pbmc.nd2")
    imp = to_imageplus(image, "pbmc")
    assert list(imp.getDimensions())[2:] == [4, 1, 1]
    labels = [str(imp.getStack().getSliceLabel(c + 1)) for c in range(4)]
    assert labels == [str(n) for n in image.attrs["channel_names"]]
    assert imageplus_pixel_sizes(imp)["X"] == pytest.approx(image.attrs["physical_pixel_sizes"]["X"])
    assert np.array_equal(imageplus_to_array(imp), image.values)


def test_bad_labels_are_refused(ij):
    with pytest.raises(InputError, match="integers"):
        labels_to_imageplus(np.zeros((4, 4), np.float32))
    with pytest.raises(InputError, match="dims"):
        to_imageplus(np.zeros((2, 4, 4)), dims="YX")

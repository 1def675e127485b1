"""ImageJ hyperstack TIFFs: what plain ImageJ 1.x opens (structure, calibration, labels), our reader, refusals."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from cellseg_bridge.errors import InputError
from cellseg_bridge.io.imagej_tiff import write_imagej_tiff
from cellseg_bridge.io.reader import open_image

SIZES = {"Z": 2.0, "Y": 0.5, "X": 0.25}
NAMES = ["DAPI", "GFP", "Cy5"]


def _image(dtype=np.uint16) -> np.ndarray:
    """T C Z Y X with a distinct value in every plane: 100 * t + 10 * c + z."""
    t, c, z = np.meshgrid(np.arange(2), np.arange(3), np.arange(4), indexing="ij")
    planes = (100 * t + 10 * c + z).astype(dtype)
    return np.broadcast_to(planes[..., None, None], (2, 3, 4, 20, 30)).copy()


def test_plain_imagej_opens_a_calibrated_labelled_hyperstack(ij, tmp_path):
    out = write_imagej_tiff(_image(), tmp_path / "stack.tif", physical_pixel_sizes=SIZES, channel_names=NAMES,
                            frame_interval=30.0)
    imp = ij.openImage(str(out))
    assert imp is not None
    assert (imp.getNChannels(), imp.getNSlices(), imp.getNFrames()) == (3, 4, 2) and imp.isHyperStack()
    assert imp.isComposite()
    cal = imp.getCalibration()
    assert (cal.pixelWidth, cal.pixelHeight, cal.pixelDepth) == pytest.approx((0.25, 0.5, 2.0))
    assert str(cal.getUnit()) in ("µm", "micron") and cal.frameInterval == pytest.approx(30.0)
    stack = imp.getStack()
    for c in range(3):
        for z in range(4):
            for t in range(2):
                index = imp.getStackIndex(c + 1, z + 1, t + 1)
                assert str(stack.getSliceLabel(index)) == NAMES[c]  # ImageJ's channel label
                assert stack.getProcessor(index).getPixel(5, 5) == 100 * t + 10 * c + z  # planes in place


def test_our_reader_reads_it_back(tmp_path):
    image = _image(np.float32)
    out = write_imagej_tiff(da.from_array(image, chunks=(1, 1, 2, 20, 30)), tmp_path / "f.tif",
                            physical_pixel_sizes=SIZES, channel_names=NAMES)
    back = open_image(out)
    assert back.sizes == {"T": 2, "C": 3, "Z": 4, "Y": 20, "X": 30}
    np.testing.assert_array_equal(np.asarray(back.data), image)
    assert back.attrs["channel_names"] == NAMES and back.attrs["physical_pixel_sizes"] == SIZES


def test_refusals(tmp_path):
    with pytest.raises(InputError, match="8-bit, 16-bit or 32-bit float pixels, not int32"):
        write_imagej_tiff(_image(np.int32), tmp_path / "i.tif")
    with pytest.raises(InputError, match="2 channel names given for 3 channels"):
        write_imagej_tiff(_image(), tmp_path / "n.tif", channel_names=["a", "b"])
    assert not list(tmp_path.iterdir())
    single = write_imagej_tiff(np.ones((20, 30), bool), tmp_path / "b.tif")
    assert open_image(single).dtype == np.uint8

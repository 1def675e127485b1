"""OME-TIFF and label writers: round trips, plane-by-plane writing, atomicity, ImageJ 1.x."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import dask
import dask.array as da
import numpy as np
import pytest
import tifffile
import xarray as xr

from cellseg_bridge.errors import InputError
from cellseg_bridge.io import writers
from cellseg_bridge.io.writers import write_labels, write_ome_tiff

SIZES = {"Z": 2.0, "Y": 0.5, "X": 0.25}
NAMES = ["DAPI", "GFP", "Cy5"]


def _ome(path):
    """Return (array, pixels element) of an OME-TIFF, read with tifffile."""
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        data = tif.series[0].asarray()
        root = ET.fromstring(tif.ome_metadata)
    ns = {"ome": root.tag.split("}")[0].strip("{")}
    return data, root.find("ome:Image/ome:Pixels", ns), ns


def _image(shape=(2, 3, 4, 32, 40), chunks=(1, 1, 2, 32, 40), dtype=np.uint16):
    rng = np.random.default_rng(0)
    values = rng.integers(0, 4000, size=shape).astype(dtype)
    return values, xr.DataArray(
        da.from_array(values, chunks=chunks),
        dims=list("TCZYX"),
        attrs={"physical_pixel_sizes": dict(SIZES), "channel_names": list(NAMES), "scene": "s0"},
    )


def test_dataarray_round_trip_values_dtype_sizes_names(tmp_path):
    values, image = _image()
    out = write_ome_tiff(image, tmp_path / "a.ome.tif")
    data, pixels, ns = _ome(out)
    assert data.dtype == np.uint16
    np.testing.assert_array_equal(data.reshape(values.shape), values)
    assert pixels.get("DimensionOrder") == "XYZCT"
    assert (pixels.get("SizeT"), pixels.get("SizeC"), pixels.get("SizeZ")) == ("2", "3", "4")
    assert float(pixels.get("PhysicalSizeX")) == 0.25
    assert float(pixels.get("PhysicalSizeY")) == 0.5
    assert float(pixels.get("PhysicalSizeZ")) == 2.0
    assert pixels.get("PhysicalSizeXUnit") == "µm"
    assert [c.get("Name") for c in pixels.findall("ome:Channel", ns)] == NAMES
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert not tif.is_bigtiff
        num, den = page.tags["XResolution"].value
        assert num / den == pytest.approx(1e4 / 0.25)  # pixels per cm, for plain TIFF readers


def test_numpy_input_and_explicit_metadata(tmp_path):
    values = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)  # ZYX by default
    out = write_ome_tiff(
        values, tmp_path / "b.ome.tif", physical_pixel_sizes={"Z": 1.5, "Y": 0.1, "X": 0.1},
        channel_names=["only"], compression="none",
    )
    data, pixels, ns = _ome(out)
    assert data.dtype == np.float32
    np.testing.assert_array_equal(data.reshape(values.shape), values)
    assert (pixels.get("SizeZ"), pixels.get("SizeC")) == ("5", "1")
    assert float(pixels.get("PhysicalSizeZ")) == 1.5
    assert pixels.find("ome:Channel", ns).get("Name") == "only"


def test_missing_pixel_sizes_are_left_out(tmp_path):
    out = write_ome_tiff(np.zeros((8, 9), np.uint8), tmp_path / "c.ome.tif",
                         physical_pixel_sizes={"Z": None, "Y": None, "X": None})
    _, pixels, _ = _ome(out)
    assert pixels.get("PhysicalSizeX") is None
    with tifffile.TiffFile(out) as tif:
        assert "XResolution" not in tif.pages[0].tags or tif.pages[0].tags["ResolutionUnit"].value == 1


def test_dims_are_reordered(tmp_path):
    values = np.random.default_rng(1).integers(0, 255, (3, 2, 10, 12), dtype=np.uint8)  # Z C Y X
    out = write_ome_tiff(values, tmp_path / "d.ome.tif", dims="ZCYX")
    data, pixels, _ = _ome(out)
    np.testing.assert_array_equal(data.reshape(1, 2, 3, 10, 12)[0], values.transpose(1, 0, 2, 3))


def test_dask_is_written_one_chunk_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setattr(writers, "PLANE_BATCH_BYTES", 1)  # one chunk per compute
    values, image = _image(shape=(1, 3, 6, 16, 16), chunks=(1, 1, 2, 16, 16))
    computes = []
    real_compute = dask.compute

    def counting_compute(*args, **kwargs):
        computes.append(len(args))
        return real_compute(*args, **kwargs)

    monkeypatch.setattr(dask, "compute", counting_compute)
    calls = []

    def spy(block, block_info=None):
        calls.append(block_info[0]["chunk-location"])
        return block

    lazy = image.copy(data=image.data.map_blocks(spy, dtype=image.dtype))
    write_ome_tiff(lazy, tmp_path / "e.ome.tif")
    # 3 channels x 3 Z-chunks, each computed exactly once (never the whole array at once)
    assert sorted(calls) == sorted(set(calls)) and len(calls) == 9
    assert computes == [1] * 9  # never more than one chunk in memory
    data, _, _ = _ome(tmp_path / "e.ome.tif")
    np.testing.assert_array_equal(data.reshape(values.shape), values)


def test_dask_chunks_are_grouped_up_to_the_budget(tmp_path, monkeypatch):
    values, image = _image(shape=(1, 3, 6, 16, 16), chunks=(1, 1, 1, 16, 16))
    monkeypatch.setattr(writers, "PLANE_BATCH_BYTES", 4 * 16 * 16 * 2)  # 4 planes of uint16
    computes = []
    real_compute = dask.compute
    monkeypatch.setattr(dask, "compute", lambda *a, **k: computes.append(len(a)) or real_compute(*a, **k))
    write_ome_tiff(image, tmp_path / "g.ome.tif")
    assert computes == [4, 4, 4, 4, 2]
    data, _, _ = _ome(tmp_path / "g.ome.tif")
    np.testing.assert_array_equal(data.reshape(values.shape), values)


def test_bigtiff_above_threshold(tmp_path, monkeypatch):
    monkeypatch.setattr(writers, "BIGTIFF_THRESHOLD", 100)
    out = write_ome_tiff(np.zeros((20, 20), np.uint16), tmp_path / "big.ome.tif")
    with tifffile.TiffFile(out) as tif:
        assert tif.is_bigtiff and tif.is_ome


def test_failed_write_leaves_no_file_and_keeps_old(tmp_path):
    def boom(block):
        raise RuntimeError("disk on fire")

    bad = da.zeros((4, 8, 8), chunks=(1, 8, 8), dtype=np.uint8).map_blocks(boom, dtype=np.uint8)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_ome_tiff(bad, tmp_path / "new.ome.tif")
    assert list(tmp_path.iterdir()) == []
    old = tmp_path / "old.ome.tif"
    old.write_bytes(b"previous content")
    with pytest.raises(RuntimeError):
        write_ome_tiff(bad, old)
    assert old.read_bytes() == b"previous content"
    assert [p.name for p in tmp_path.iterdir()] == ["old.ome.tif"]


def test_bad_inputs_raise_input_error(tmp_path):
    with pytest.raises(InputError, match="channel names"):
        write_ome_tiff(np.zeros((2, 4, 4), np.uint8), tmp_path / "x.ome.tif", dims="CYX", channel_names=["a"])
    with pytest.raises(InputError, match="data type"):
        write_ome_tiff(np.zeros((4, 4), np.int64), tmp_path / "x.ome.tif")
    with pytest.raises(InputError, match="dims"):
        write_ome_tiff(np.zeros((4, 4, 3), np.uint8), tmp_path / "x.ome.tif", dims="YXS")
    assert not (tmp_path / "x.ome.tif").exists()


def test_bool_is_written_as_uint8(tmp_path):
    out = write_ome_tiff(np.eye(5, dtype=bool), tmp_path / "m.ome.tif")
    data, _, _ = _ome(out)
    assert data.dtype == np.uint8 and data.sum() == 5


# ------------------------------------------------------------------ labels


def _labels(top: int) -> np.ndarray:
    labels = np.zeros((40, 50), np.int64)
    labels[5:15, 5:15] = 1
    labels[20:30, 10:20] = 7
    labels[25:35, 30:45] = top
    return labels


def test_labels_uint16_when_max_fits(tmp_path):
    labels = _labels(65535)
    out = write_labels(labels, tmp_path / "l.ome.tif", physical_pixel_sizes={"Y": 0.3, "X": 0.3})
    data, pixels, ns = _ome(out)
    assert data.dtype == np.uint16
    np.testing.assert_array_equal(data.squeeze(), labels)
    assert float(pixels.get("PhysicalSizeX")) == pytest.approx(0.3)
    assert pixels.find("ome:Channel", ns).get("Name") == "labels"


def test_labels_uint32_above_65535(tmp_path):
    labels = _labels(70000)
    out = write_labels(labels, tmp_path / "l.ome.tif")
    data, _, _ = _ome(out)
    assert data.dtype == np.uint32
    np.testing.assert_array_equal(data.squeeze(), labels)


def test_labels_3d_and_dask(tmp_path):
    labels = np.zeros((3, 20, 20), np.uint32)
    labels[1, 5:10, 5:10] = 4
    out = write_labels(da.from_array(labels, chunks=(1, 20, 20)), tmp_path / "l3.ome.tif",
                       physical_pixel_sizes={"Z": 1.0, "Y": 0.2, "X": 0.2})
    data, pixels, _ = _ome(out)
    assert data.dtype == np.uint16 and pixels.get("SizeZ") == "3"
    np.testing.assert_array_equal(data.reshape(labels.shape), labels)


def test_labels_refuse_negative_and_float(tmp_path):
    with pytest.raises(InputError, match=">= 0"):
        write_labels(np.full((4, 4), -1, np.int32), tmp_path / "n.ome.tif")
    with pytest.raises(InputError, match="integers"):
        write_labels(np.zeros((4, 4), np.float32), tmp_path / "n.ome.tif")
    assert not (tmp_path / "n.ome.tif").exists()


def test_round_trip_through_open_image(tmp_path):
    reader = pytest.importorskip("cellseg_bridge.io.reader")
    values, image = _image()
    write_ome_tiff(image, tmp_path / "a.ome.tif")
    back = reader.open_image(tmp_path / "a.ome.tif")
    assert tuple(back.dims) == tuple("TCZYX")
    np.testing.assert_array_equal(np.asarray(back.data), values)
    assert back.dtype == np.uint16
    for axis, size in SIZES.items():
        assert back.attrs["physical_pixel_sizes"][axis] == pytest.approx(size)
    assert [str(n) for n in back.attrs["channel_names"]] == NAMES

    labels = _labels(70000)
    write_labels(labels, tmp_path / "l.ome.tif", physical_pixel_sizes={"Y": 0.3, "X": 0.3})
    back = reader.open_image(tmp_path / "l.ome.tif")
    assert back.dtype == np.uint32
    np.testing.assert_array_equal(np.asarray(back.data).squeeze(), labels)
    assert back.attrs["physical_pixel_sizes"]["X"] == pytest.approx(0.3)


# ------------------------------------------------------------------ ImageJ 1.x


@pytest.mark.imagej
def test_imagej_opens_uint16_labels_exactly(ij, tmp_path):
    labels = _labels(65535)
    out = write_labels(labels, tmp_path / "l16.ome.tif", physical_pixel_sizes={"Y": 0.3, "X": 0.3})
    imp = ij.openImage(str(out))
    assert imp is not None
    assert imp.getBitDepth() == 16
    ip = imp.getProcessor()
    assert ip.getPixelValue(35, 30) == 65535 and ip.getPixelValue(15, 25) == 7
    cal = imp.getCalibration()
    assert cal.pixelWidth == pytest.approx(0.3) and str(cal.getUnit()) in ("µm", "micron", "um")


@pytest.mark.imagej
def test_imagej_opens_uint32_labels_as_float(ij, tmp_path):
    """ImageJ 1.x has no 32-bit integer images: it reads uint32 TIFFs as 32-bit float.

    Labels stay exact up to 2**24; 2**24 + 1 is read as 2**24 (float32 mantissa).
    """
    labels = _labels(70000)
    labels[0, 0] = 2**24
    labels[0, 1] = 2**24 + 1
    out = write_labels(labels, tmp_path / "l32.ome.tif")
    imp = ij.openImage(str(out))
    assert imp is not None
    assert imp.getBitDepth() == 32  # FloatProcessor
    ip = imp.getProcessor()
    assert ip.getPixelValue(35, 30) == 70000.0 and ip.getPixelValue(15, 25) == 7.0
    assert ip.getPixelValue(0, 0) == 2**24
    assert ip.getPixelValue(1, 0) == 2**24  # 2**24 + 1 is not representable: precision loss


@pytest.mark.imagej
def test_imagej_reads_ome_tiff_as_plain_stack(ij, tmp_path):
    _, image = _image()
    out = write_ome_tiff(image, tmp_path / "a.ome.tif")
    imp = ij.openImage(str(out))
    assert imp.getStackSize() == 2 * 3 * 4  # T, C, Z flattened: ImageJ 1.x ignores OME-XML
    assert imp.getCalibration().pixelWidth == pytest.approx(0.25)
    assert imp.getCalibration().pixelHeight == pytest.approx(0.5)

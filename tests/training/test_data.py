"""Training pairs: naming rule, loading (labels, _seg.npy, RoiSet.zip), network input, flows."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cellseg_bridge.core.flows import masks_to_flows
from cellseg_bridge.datasets.synthetic import NucleiSpec, synthetic_nuclei
from cellseg_bridge.errors import InputError
from cellseg_bridge.io.roi_export import labels_to_rois, write_roi_zip
from cellseg_bridge.io.seg_npy import write_seg_npy
from cellseg_bridge.training.data import find_pairs, load_pair, make_sample, median_diameter, network_input


@pytest.fixture(scope="module")
def nuc():
    img, lab = synthetic_nuclei(NucleiSpec(shape=(64, 80), n_nuclei=6), seed=2)
    return img, lab


def test_median_diameter():
    lab = np.zeros((50, 50), np.int32)
    lab[0:10, 0:10] = 1  # area 100
    lab[20:24, 20:24] = 2  # area 16
    lab[30:36, 30:36] = 3  # area 36
    d, n = median_diameter(lab)
    assert n == 3 and d == pytest.approx(6 / (np.sqrt(np.pi) / 2))
    assert median_diameter(np.zeros((4, 4), int)) == (0.0, 0)


def test_network_input_matches_segment(nuc):
    img, _ = nuc
    x = network_input(img, nchan=2)
    assert x.shape == (2, 64, 80) and np.all(x[1] == 0)
    lo, hi = np.percentile(img.astype(np.float32), [1, 99])
    np.testing.assert_allclose(x[0], (img - lo) / (hi - lo), rtol=1e-4, atol=1e-5)
    two = np.stack([img, img[::-1]])
    y = network_input(two, nchan=2, axes="CYX", channel=1, nuclear_channel=0)
    np.testing.assert_allclose(y[0], x[0][::-1], atol=1e-5)
    np.testing.assert_allclose(y[1], x[0], atol=1e-5)
    with pytest.raises(InputError, match="channel"):
        network_input(two, nchan=2, axes="CYX", channel=5)
    with pytest.raises(InputError, match="single 2D planes"):
        network_input(np.stack([img, img]), nchan=2, axes="ZYX")


def test_make_sample_and_flow_cache(nuc, tmp_path):
    img, lab = nuc
    s = make_sample(img, lab, nchan=1, flow_cache=tmp_path)
    np.testing.assert_array_equal(s.flows, masks_to_flows(lab.astype(np.int32)))
    assert s.n_masks == len(np.unique(lab)) - 1 and s.diameter > 0
    cached = list(tmp_path.glob("flows_*.npy"))
    assert len(cached) == 1
    np.save(cached[0], np.full_like(s.flows, 7.0))  # prove the cache is read
    assert np.all(make_sample(img, lab, nchan=1, flow_cache=tmp_path).flows == 7.0)
    with pytest.raises(InputError, match="masks are 64x79"):
        make_sample(img, lab[:, :79], nchan=1, name="a.tif")
    with pytest.raises(InputError, match="negative|integer"):
        make_sample(img, lab.astype(float), nchan=1)


def _folder(tmp_path, nuc):
    img, lab = nuc
    d = tmp_path / "data"
    d.mkdir()
    tifffile.imwrite(d / "a.tif", img)
    tifffile.imwrite(d / "a_masks.tif", lab)
    tifffile.imwrite(d / "b.tif", img)
    write_seg_npy(d / "b_seg.npy", lab, filename=str(d / "b.tif"))
    tifffile.imwrite(d / "c.tif", img)
    write_roi_zip(labels_to_rois(lab), d / "c_RoiSet.zip")
    tifffile.imwrite(d / "d.tif", img)  # no masks: skipped
    return d


def test_find_and_load_pairs(tmp_path, nuc):
    img, lab = nuc
    d = _folder(tmp_path, nuc)
    pairs = find_pairs(d)
    assert [(p.image.name, p.masks.name, p.kind) for p in pairs] == [
        ("a.tif", "a_masks.tif", "labels"),
        ("b.tif", "b_seg.npy", "seg_npy"),
        ("c.tif", "c_RoiSet.zip", "rois"),
    ]
    for p in pairs:
        image, labels = load_pair(p)
        assert image.sizes["Y"] == 64 and image.sizes["X"] == 80
        # same objects whatever the source (ROI labels may be numbered differently)
        assert len(np.unique(labels)) == len(np.unique(lab))
        assert np.array_equal(labels > 0, lab > 0)


def test_masks_dir(tmp_path, nuc):
    img, lab = nuc
    (tmp_path / "im").mkdir()
    (tmp_path / "gt").mkdir()
    tifffile.imwrite(tmp_path / "im" / "x.tif", img)
    tifffile.imwrite(tmp_path / "gt" / "x.tif", lab)
    pairs = find_pairs(tmp_path / "im", masks_dir=tmp_path / "gt")
    assert len(pairs) == 1 and pairs[0].masks == tmp_path / "gt" / "x.tif"
    with pytest.raises(InputError, match="no image/mask pairs"):
        find_pairs(tmp_path / "im")  # masks not beside the images
    with pytest.raises(InputError, match="not found"):
        find_pairs(tmp_path / "missing")


def test_roi_zip_that_does_not_fit(tmp_path, nuc):
    img, lab = nuc
    d = tmp_path / "d"
    d.mkdir()
    tifffile.imwrite(d / "small.tif", img[:20, :20])
    big = np.zeros((400, 400), np.uint16)
    big[300:320, 300:320] = 1
    big[350:370, 200:220] = 2
    write_roi_zip(labels_to_rois(big), d / "small_RoiSet.zip")
    (pair,) = find_pairs(d)
    with pytest.raises(InputError, match="does not fit|none of the"):
        load_pair(pair)


def test_corrupt_roi_entry_is_skipped(tmp_path, nuc):
    import zipfile

    img, lab = nuc
    d = tmp_path / "d"
    d.mkdir()
    tifffile.imwrite(d / "c.tif", img)
    write_roi_zip(labels_to_rois(lab), d / "c_RoiSet.zip")
    with zipfile.ZipFile(d / "c_RoiSet.zip", "a") as z:
        z.writestr("broken.roi", b"not a roi at all")
    (pair,) = find_pairs(d)
    _, labels = load_pair(pair)
    assert len(np.unique(labels)) == len(np.unique(lab))


def test_big_endian_imagej_masks_load_like_images(tmp_path, nuc, monkeypatch):
    """Issue 18 defect 1: masks go through the image reader, so ImageJ's big-endian TIFFs (any Fiji) load.

    ``tifffile.imread`` fails on them where tifffile is held below 2023.3.15 (the aicsimageio
    extra) under numpy 2 (``ndarray.newbyteorder``); it is made to fail so here, as a mask
    reader of its own would. ImageJ itself writing the masks (with Fiji's preferences) is tested
    in tests/fiji/test_scripts.py.
    """

    def old_imread(*args, **kwargs):
        raise AttributeError("'numpy.ndarray' object has no attribute 'newbyteorder'")

    monkeypatch.setattr(tifffile, "imread", old_imread)
    img, lab = nuc
    d = tmp_path / "d"
    d.mkdir()
    tifffile.imwrite(d / "be.tif", img.astype(np.float32), imagej=True, byteorder=">")
    tifffile.imwrite(d / "be_masks.tif", lab.astype(np.uint16), imagej=True, byteorder=">")
    (pair,) = find_pairs(d)
    image, labels = load_pair(pair)
    assert labels.dtype.byteorder in ("=", "|", "<") and np.array_equal(labels, lab)

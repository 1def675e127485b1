"""Tests of the segmentation pipeline (``cellseg_bridge.segmentation.pipeline``)."""

from __future__ import annotations

import dataclasses
import glob
import importlib
import pickle

import numpy as np
import pytest
import torch
import xarray as xr

from cellseg_bridge.config import DEFAULTS
from cellseg_bridge.core.metrics import average_precision
from cellseg_bridge.errors import InputError
from cellseg_bridge.nn import CellposeUNet, save_checkpoint
from cellseg_bridge.nn.size_model import SizeModel, fit_size_model, load_size_model
from cellseg_bridge.segmentation import preprocess
from cellseg_bridge.segmentation.pipeline import SegmentationModel, SegmentResult, load_model, segment

# the module itself (the package attribute ``cellseg_bridge.segmentation.pipeline`` is the function)
seg_mod = importlib.import_module("cellseg_bridge.segmentation.pipeline")

CHECKPOINT = "cellpose3_dsb2018_nuclei.pth"


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_model() -> SegmentationModel:
    torch.manual_seed(0)
    net = CellposeUNet((2, 8, 16, 32), nout=3, diam_mean=17.0).eval()
    return SegmentationModel(net=net, config=net.architecture(), name="tiny")


@pytest.fixture(scope="module")
def real_model(shared_models) -> SegmentationModel:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return load_model(shared_models / CHECKPOINT, "cpu")


def _blobs(shape=(64, 64), centres=((20, 20), (40, 45)), r=6.0, bg=10.0, fg=200.0):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    img = np.full(shape, bg, np.float32)
    for cy, cx in centres:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = fg
    return img


def _dsb(shared_data, kind="fluo", side=256, n=2):
    """The first ``n`` dsb2018 test images of ``kind`` with a ``side`` x ``side`` shape."""
    from PIL import Image

    root = shared_data / "dsb2018"
    rows = [line.split("\t") for line in (root / "split.tsv").read_text().splitlines()[1:]]
    out = []
    for image_id, k, split in rows:
        if k != kind or split != "test":
            continue
        im = np.asarray(Image.open(root / "stage1_train" / image_id / "images" / f"{image_id}.png"))
        gray = im[..., :3].astype(np.float32).mean(-1) if im.ndim == 3 else im.astype(np.float32)
        if gray.shape != (side, side):
            continue
        gt = np.zeros(gray.shape, np.int32)
        for j, f in enumerate(sorted(glob.glob(str(root / "stage1_train" / image_id / "masks" / "*.png")))):
            gt[np.asarray(Image.open(f)) > 0] = j + 1
        out.append((image_id, gray, gt))
        if len(out) == n:
            break
    return out


# ----------------------------------------------------------------------------- real checkpoint


def test_real_checkpoint_dsb2018_ap(real_model, shared_data):
    """Two 256x256 fluorescence test images: AP@0.5 in the range of the peer's (0.69 mean)."""
    images = _dsb(shared_data)
    assert len(images) == 2
    aps = []
    for _, gray, gt in images:
        res = segment(gray, model=real_model, channel=0, diameter=None)
        assert res.labels.shape == (1, 1, 256, 256) and res.labels.dtype == np.uint16
        assert res.diameter == pytest.approx(real_model.diam_labels)  # no size model: diam_labels
        assert res.styles.shape == (1, 1, 256)
        aps.append(average_precision(gt, res.labels[0, 0], 0.5)[0][0])
    # Cellpose 3.1.1.3 with this checkpoint scores 0.958 and 0.857 on these two images
    assert min(aps) > 0.75 and np.mean(aps) > 0.85, aps


def test_invert_segments_dark_nuclei_like_bright_ones(real_model, shared_data):
    """A contrast-inverted fluorescence image, segmented with invert=True, gives the original's masks."""
    _, gray, gt = _dsb(shared_data, n=1)[0]
    dark = gray.min() + gray.max() - gray  # dark nuclei on a bright background
    ref = segment(gray, model=real_model, diameter=None).labels[0, 0]
    back = segment(dark, model=real_model, diameter=None, invert=True).labels[0, 0]
    assert average_precision(ref, back, 0.5)[0][0] >= 0.98
    assert average_precision(gt, back, 0.5)[0][0] >= average_precision(gt, ref, 0.5)[0][0] - 0.02


def test_real_checkpoint_by_path_with_flows(shared_models, shared_data):
    _, gray, _ = _dsb(shared_data, n=1)[0]
    crop = gray[:128, :160]
    res = segment(crop, model=str(shared_models / CHECKPOINT), diameter=24.0, return_flows=True, device="cpu")
    assert res.flows.shape == (1, 2, 1, 128, 160) and res.flows.dtype == np.float32
    assert res.cellprob.shape == (1, 1, 128, 160)
    assert res.diameter == 24.0 and res.model.endswith(CHECKPOINT)
    assert res.options.diameter == 24.0 and res.options.tile_size == DEFAULTS.segment.tile_size


def test_real_checkpoint_3d_on_stardist(real_model, shared_data):
    import tifffile

    vol = tifffile.imread(shared_data / "stardist" / "img3d.tif")[:12, :40, :40].astype(np.float32)
    res = segment(vol, model=real_model, axes="ZYX", do_3d=True, anisotropy=1.0, diameter=17.0, return_flows=True)
    assert res.labels.shape == (1, 12, 40, 40)
    assert res.flows.shape == (1, 3, 12, 40, 40)
    assert res.styles.shape == (1, 12, 256)
    assert res.labels.max() >= 1
    # the 3D objects extend over several planes
    lab = res.labels[0]
    planes_per_label = [np.unique(np.nonzero(lab == k)[0]).size for k in range(1, lab.max() + 1)]
    assert max(planes_per_label) >= 3


def test_plane_by_plane_stitching_one_label_per_object(real_model, shared_data):
    _, gray, _ = _dsb(shared_data, n=1)[0]
    crop = gray[:96, :96]
    stack = np.stack([crop, crop, crop])
    flat = segment(stack, model=real_model, axes="ZYX")
    assert flat.labels.shape == (1, 3, 96, 96)
    stitched = segment(stack, model=real_model, axes="ZYX", stitch_threshold=0.5)
    lab = stitched.labels[0]
    n = int(lab.max())
    assert n >= 3
    for k in range(1, n + 1):  # every object is present, identically, in all 3 planes
        present = [(lab[z] == k).any() for z in range(3)]
        assert all(present)
    np.testing.assert_array_equal(lab[0], lab[1])
    np.testing.assert_array_equal(lab[0], lab[2])


# ----------------------------------------------------------------------------- API with a tiny net


def test_a_model_trained_inverted_inverts_unless_told_otherwise(tiny_model):
    """invert=None (the default) follows the model's config; True/False override it."""
    inverted = SegmentationModel(net=tiny_model.net, config={**tiny_model.config, "invert": True}, name="tiny-inv")
    img = _blobs()
    kw = dict(diameter=17.0, flow_threshold=0.0, return_flows=True)
    auto = segment(img, model=inverted, **kw)
    assert auto.options.invert is True
    np.testing.assert_array_equal(auto.cellprob, segment(img, model=tiny_model, invert=True, **kw).cellprob)
    off = segment(img, model=inverted, invert=False, **kw)
    assert off.options.invert is False and not np.array_equal(off.cellprob, auto.cellprob)
    np.testing.assert_array_equal(off.cellprob, segment(img, model=tiny_model, **kw).cellprob)


def test_result_shapes_and_options(tiny_model):
    img = _blobs()
    res = segment(img, model=tiny_model, tile_size=224, flow_threshold=0.0)
    assert isinstance(res, SegmentResult)
    assert res.labels.shape == (1, 1, 64, 64) and res.labels.dtype == np.uint16
    assert res.flows is None and res.cellprob is None
    assert res.styles.shape == (1, 1, 32)
    assert res.diameter == pytest.approx(17.0)
    assert res.options.tile_size == 224 and res.options.flow_threshold == 0.0
    assert res.model == "tiny"
    assert set(res.timings) == {"network", "masks"}


def test_time_points_are_independent(tiny_model):
    img = np.stack([_blobs(), _blobs(centres=((30, 30),))])
    res = segment(img, model=tiny_model, axes="TYX", diameter=20.0, return_flows=True)
    assert res.labels.shape == (2, 1, 64, 64)
    assert res.flows.shape == (2, 2, 1, 64, 64)
    one = segment(img[1], model=tiny_model, diameter=20.0, return_flows=True)
    np.testing.assert_array_equal(res.labels[1], one.labels[0])
    np.testing.assert_allclose(res.flows[1], one.flows[0], atol=1e-6)
    assert res.diameters == [20.0, 20.0]


def test_channel_by_index_and_name(tiny_model):
    a, b = _blobs(), _blobs(centres=((10, 50),))
    data = np.stack([a, b])[None, :, None]  # T C Z Y X
    arr = xr.DataArray(
        data,
        dims=("T", "C", "Z", "Y", "X"),
        attrs={"channel_names": ["DAPI", "GFP"], "physical_pixel_sizes": {"Z": None, "Y": 0.5, "X": 0.5}},
    )
    by_name = segment(arr, model=tiny_model, channel="GFP", return_flows=True)
    by_index = segment(np.stack([a, b]), model=tiny_model, axes="CYX", channel=1, return_flows=True)
    direct = segment(b, model=tiny_model, return_flows=True)
    np.testing.assert_allclose(by_name.flows, direct.flows, atol=1e-6)
    np.testing.assert_allclose(by_index.flows, direct.flows, atol=1e-6)
    # a nuclear channel fills the second network input instead of zeros
    two = segment(arr, model=tiny_model, channel="GFP", nuclear_channel="DAPI", return_flows=True)
    assert not np.allclose(two.flows, direct.flows)
    with pytest.raises(InputError, match=r"'DAPI'.*'GFP'"):
        segment(arr, model=tiny_model, channel="mCherry")
    with pytest.raises(InputError, match="2 channel"):
        segment(np.stack([a, b]), model=tiny_model, axes="CYX", channel=5)


def test_rgb_yxc_axes(tiny_model):
    rgb = np.stack([_blobs(), _blobs() * 0.5, _blobs() * 0], axis=-1)
    res = segment(rgb, model=tiny_model, axes="YXC", channel=1)
    assert res.labels.shape == (1, 1, 64, 64)


def test_constant_and_empty_images_give_empty_labels(tiny_model):
    for img in (np.zeros((40, 40)), np.full((40, 40), 123.0)):
        res = segment(img, model=tiny_model, cellprob_threshold=1e9)
        assert res.labels.shape == (1, 1, 40, 40) and res.labels.max() == 0
    res = segment(np.full((40, 40), 5.0), model=tiny_model, return_flows=True)
    assert np.isfinite(res.flows).all() and np.isfinite(res.styles).all()


@pytest.mark.parametrize(
    "image, kwargs, match",
    [
        (np.zeros((0, 10)), {}, "empty|at least"),
        (np.zeros((1, 1)), {}, "at least"),
        (np.zeros((3, 40, 40)), {}, "needs axes"),
        (np.zeros((3, 40, 40)), {"axes": "YX"}, "3 dimensions"),
        (np.zeros((40, 40)), {"axes": "YXQ"}, "letters"),
        (np.zeros((40, 40)), {"axes": "YY"}, "distinct"),
        (np.zeros((40, 40), complex), {}, "pixel type"),
        (np.zeros((40, 40)), {"channel": 1}, "does not exist"),
        (np.zeros((40, 40)), {"colour": 1}, "unknown option"),
        (np.zeros((40, 40)), {"diameter": -3}, "diameter"),
        (np.zeros((40, 40)), {"tile_size": -1}, "tile_size"),
        (np.zeros((40, 40)), {"normalize_percentiles": (99, 1)}, "percentiles"),
        (np.zeros((40, 40)), {"device": "tpu"}, "device"),
    ],
)
def test_bad_inputs_raise_input_error(tiny_model, image, kwargs, match):
    model = tiny_model if "device" not in kwargs else None
    if model is None:  # the device is only looked at when a model is loaded
        kwargs = {**kwargs}
        with pytest.raises(InputError, match=match):
            seg_mod.load_model(__file__, kwargs["device"])
        return
    with pytest.raises(InputError, match=match):
        segment(image, model=model, **kwargs)


def test_nan_pixels_are_refused(tiny_model):
    img = _blobs()
    img[3, 4] = np.nan
    with pytest.raises(InputError, match="NaN"):
        segment(img, model=tiny_model)
    img[3, 4] = np.inf
    with pytest.raises(InputError, match="NaN or infinite"):
        segment(img, model=tiny_model)


def test_huge_plane_is_refused(tiny_model, monkeypatch):
    # the input check lives in cellseg_bridge.segmentation.preprocess; segment re-exports the constant
    monkeypatch.setattr(preprocess, "MAX_PLANE_PIXELS", 1000)
    monkeypatch.setattr(seg_mod, "MAX_PLANE_PIXELS", 1000)
    with pytest.raises(InputError, match="larger"):
        segment(np.zeros((40, 40)), model=tiny_model)


def test_missing_model_path_is_an_input_error(tmp_path):
    with pytest.raises(InputError):
        segment(np.zeros((40, 40)), model=tmp_path / "nope.pth")


def test_do_3d_with_tiny_net_and_anisotropy_from_metadata(tiny_model, caplog):
    vol = np.stack([_blobs()] * 6)[None, None]  # T C Z Y X
    arr = xr.DataArray(vol, dims=("T", "C", "Z", "Y", "X"), attrs={"physical_pixel_sizes": {"Z": 2.0, "Y": 1.0, "X": 1.0}})
    with caplog.at_level("INFO", logger="cellseg_bridge.segmentation.pipeline"):
        res = segment(arr, model=tiny_model, do_3d=True, diameter=17.0, return_flows=True)
    assert "anisotropy 2" in caplog.text
    assert res.labels.shape == (1, 6, 64, 64)
    assert res.flows.shape == (1, 3, 6, 64, 64) and res.cellprob.shape == (1, 6, 64, 64)
    assert res.styles.shape == (1, 6, 32)


# ----------------------------------------------------------------------------- models and size models


def test_load_model_finds_size_model_and_estimates_diameter(tmp_path):
    torch.manual_seed(1)
    net = CellposeUNet((2, 8, 16, 32), nout=3, diam_mean=17.0)
    weights = tmp_path / "tiny.pth"
    save_checkpoint(net, weights)
    size = SizeModel(A=np.zeros(32), smean=np.zeros(32), diam_mean=17.0, ymean=np.log(2.0))
    size.save(tmp_path / "size_model.npz")
    model = load_model(weights, "cpu")
    assert model.size_model is not None and model.diam_mean == 17.0
    res = segment(_blobs(), model=model)
    assert res.diameter > 0 and np.isfinite(res.diameter)
    # an explicit diameter skips the estimate
    assert segment(_blobs(), model=model, diameter=11.0).diameter == 11.0


def test_cellpose_size_file_is_read_safely(tmp_path):
    params = {"A": np.ones(256) * 0.1, "smean": np.zeros(256), "diam_mean": 30.0, "ymean": 0.2}
    path = tmp_path / "size_cyto3.npy"
    np.save(path, params, allow_pickle=True)
    sm = load_size_model(path)
    style = np.zeros(256)
    assert sm.predict(style) == pytest.approx(30.0 * np.exp(0.2))
    assert sm.predict(np.full(256, -10.0)) == 5.0  # clipped at 5 px

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil_size.npy"
    np.save(bad, np.array({"A": Evil()}, dtype=object), allow_pickle=True)
    with pytest.raises(InputError):
        load_size_model(bad)
    assert pickle  # (pickle is what np.save used above)


def test_fit_size_model_recovers_linear_relation():
    rng = np.random.default_rng(0)
    styles = rng.normal(size=(200, 8))
    w = rng.normal(size=8) * 0.2
    diam = 17.0 * np.exp(styles @ w + 0.3)
    sm = fit_size_model(styles, diam, lam=1e-6, diam_mean=17.0)
    np.testing.assert_allclose(sm.predict(styles), np.maximum(5, diam), rtol=1e-3)


def test_nuclear_channel_is_ignored_by_a_model_trained_without_one(tiny_model, caplog):
    """Our trainer records nuclear_channel None: such a net's second input saw only zeros (BN variance ~0)."""
    a, b = _blobs(), _blobs(centres=((10, 50),))
    without = dataclasses.replace(tiny_model, config={**tiny_model.config,
                                                       "channels": {"channel": 0, "nuclear_channel": None}})
    direct = segment(b, model=without, return_flows=True)
    with caplog.at_level("WARNING"):
        two = segment(np.stack([b, a]), model=without, axes="CYX", channel=0, nuclear_channel=1, return_flows=True)
    np.testing.assert_allclose(two.flows, direct.flows, atol=1e-6)
    assert "trained without a nuclear channel" in caplog.text
    assert two.options.nuclear_channel is None


def test_chunked_path_ignores_the_nuclear_channel_too(tiny_model, caplog):
    """The chunked path resolves options through the same model method as the whole-image path."""
    from cellseg_bridge.distributed.chunked import segment_large

    a, b = _blobs(), _blobs(centres=((10, 50),))
    without = dataclasses.replace(tiny_model, config={**tiny_model.config,
                                                       "channels": {"channel": 0, "nuclear_channel": None}})
    direct = segment_large(b, without, diameter=17.0)
    with caplog.at_level("WARNING"):
        two = segment_large(np.stack([b, a]), without, axes="CYX", channel=0, nuclear_channel=1, diameter=17.0)
    np.testing.assert_array_equal(two.labels, direct.labels)
    assert "trained without a nuclear channel" in caplog.text

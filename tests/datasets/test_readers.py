"""Readers of the shared datasets: splits, shapes, instance labels, Usiigaci ROIs vs label PNGs, errors."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from cellseg_bridge import datasets
from cellseg_bridge.core.metrics import average_precision
from cellseg_bridge.datasets import common, usiigaci
from cellseg_bridge.errors import InputError


@pytest.fixture(autouse=True)
def _shared(shared_data, monkeypatch):
    monkeypatch.setenv("CELLSEG_SHARED", str(shared_data.parent))


def _check(samples, name):
    for s in samples:
        assert s.dataset == name and s.key == f"{name}/{s.name}"
        assert s.image.dtype == np.float32 and s.image.ndim == 2
        assert s.labels.dtype == np.int32 and s.labels.shape == s.image.shape
        assert s.labels.max() > 0 and s.labels.min() == 0


@pytest.mark.parametrize(
    ("name", "counts"),
    [
        ("usiigaci", {("train", "phase"): 40, ("test", "phase"): 5}),
        ("bbbc030", {("train", "dic"): 20, ("test", "dic"): 20}),
        ("stardist", {("test", "fluo"): 1}),
        ("ecoli", {("extra", "brightfield"): 12}),
    ],
)
def test_splits_and_samples(name, counts):
    samples = datasets.load(name)
    assert Counter((s.split, s.modality) for s in samples) == counts
    _check(samples, name)
    for split in {k[0] for k in counts}:
        assert all(s.split == split for s in datasets.load(name, split))


def test_dsb2018_samples_carry_kind_as_modality():
    test = datasets.load("dsb2018", "test")
    assert Counter(s.modality for s in test) == {"fluo": 24, "color": 8, "bf_gray": 2}
    _check(test[:3], "dsb2018")


def test_usiigaci_test_split_is_set41_to_45():
    assert [s.name for s in datasets.load("usiigaci", "test")] == [f"set{i}" for i in range(41, 46)]


def test_bbbc030_instances_are_connected_components(shared_data):
    import imageio.v3 as iio

    s = datasets.load("bbbc030", "test")[0]
    mask = np.asarray(iio.imread(shared_data / "bbbc030" / "masks" / f"{s.name}.png"))
    mask = (mask[..., 0] if mask.ndim == 3 else mask) > 0
    np.testing.assert_array_equal(s.labels > 0, mask)
    from scipy import ndimage

    assert s.labels.max() == ndimage.label(mask)[1]
    rgb = np.asarray(iio.imread(shared_data / "bbbc030" / "images" / f"{s.name}.png"))
    np.testing.assert_allclose(s.image, rgb[..., 0].astype(np.float32))  # identical channels -> gray


def test_usiigaci_roisets_agree_with_the_label_pngs(shared_data):
    """The Fiji RoiSet.zip, rasterised by our ImageJ-exact code, is the drawn label image (cell for cell)."""
    base = shared_data / "usiigaci"
    folders = [f for f in sorted(base.glob("set*")) if usiigaci.roi_path(f) is not None]
    assert len(folders) == 28
    for folder in folders[:3] + folders[-2:]:
        png = usiigaci.load_labels(folder)
        from_rois = usiigaci.labels_from_rois(folder, png.shape)
        assert len(np.unique(from_rois)) == len(np.unique(png))
        ap, *_ = average_precision(png.astype(np.int64), from_rois.astype(np.int64), thresholds=(0.5, 0.9))
        assert ap[1] == 1.0, folder.name  # every cell matched at IoU >= 0.9
        assert ((png > 0) == (from_rois > 0)).mean() > 0.995


def test_usiigaci_folder_without_roiset_is_an_error(shared_data):
    folder = next(f for f in sorted((shared_data / "usiigaci").glob("set*")) if usiigaci.roi_path(f) is None)
    with pytest.raises(InputError, match="no RoiSet.zip"):
        usiigaci.labels_from_rois(folder, (8, 8))


def test_unknown_and_missing_datasets(tmp_path):
    with pytest.raises(InputError, match="unknown dataset"):
        datasets.load("cyto2")
    with pytest.raises(InputError, match="does not exist") as err:
        datasets.load("bbbc030", root=tmp_path / "nowhere")
    assert "nowhere" in str(err.value)
    (tmp_path / "split.tsv").write_text("wrong\tcolumns\ncho01\ttest\n")
    with pytest.raises(InputError, match="split table"):
        common.read_split_table(tmp_path / "split.tsv", "image")

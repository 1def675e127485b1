"""The ROI-subset rule of ``benchmarks/label_efficiency.py`` (pure helpers only, no training)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import label_efficiency as le  # the repository root is on pytest's pythonpath


def _grid(n_rows: int, n_cols: int, shape=(64, 80), size=6, step=10, offset=2) -> np.ndarray:
    """A label image with ``n_rows x n_cols`` square ROIs (labels 1..n, row-major)."""
    lab = np.zeros(shape, np.int32)
    k = 0
    for r in range(n_rows):
        for c in range(n_cols):
            k += 1
            y, x = offset + r * step, offset + c * step
            lab[y : y + size, x : x + size] = k
    return lab


def _n(lab: np.ndarray) -> int:
    return int(np.unique(lab[lab > 0]).size)


def test_whole_images_in_order_then_an_exact_strip():
    labels = [_grid(2, 3), _grid(4, 5), _grid(3, 3)]  # 6, 20, 9 ROIs
    parts = le.roi_subset(labels, 20, order=[2, 0, 1])
    assert [(p.index, p.side) for p in parts[:2]] == [(2, None), (0, None)]
    assert parts[2] == le.SubsetPart(1, "top", 12, 5)  # the first row of ROIs of the 4x5 grid
    assert len(parts) == 3 and sum(p.n_rois for p in parts) == 20
    assert le.roi_subset(labels, 15, order=[2, 0, 1]) == parts[:2]  # exact fit: no strip
    for p in parts:
        image = np.arange(labels[p.index].size, dtype=np.float32).reshape(labels[p.index].shape)
        img, lab = le.crop_part(image, labels[p.index], p)
        assert img.shape == lab.shape
        assert _n(lab) == p.n_rois  # every counted ROI is in the crop, no other ROI is


def test_strip_keeps_rois_cut_by_its_edge_and_counts_them():
    lab = np.zeros((40, 40), np.int32)
    lab[0:10, 0:10] = 1  # nearest to the top
    lab[5:20, 20:30] = 2  # reaches below row 12: cut by the strip edge, still counted
    lab[12:18, 0:6] = 3  # starts at row 12: the first ROI left out
    lab[30:36, 30:36] = 4
    parts = le.roi_subset([lab], 2, order=[0])
    assert parts == [le.SubsetPart(0, "top", 12, 2)]
    _, crop = le.crop_part(np.zeros((40, 40)), lab, parts[0])
    assert crop.shape == (12, 40)
    assert set(np.unique(crop)) == {0, 1, 2}


def test_ties_on_one_side_use_another_side():
    lab = np.zeros((30, 30), np.int32)
    for k, x in enumerate((0, 10, 20), start=1):  # three ROIs touching the top row: no top strip holds 2
        lab[0 : 5 + 5 * k, x : x + 6] = k
    parts = le.roi_subset([lab], 2, order=[0])
    assert parts[0].side != "top" and parts[0].n_rois == 2
    _, crop = le.crop_part(np.zeros((30, 30)), lab, parts[0])
    assert _n(crop) == 2


def _diagonal(n: int) -> np.ndarray:
    """``n`` 4x4 ROIs on distinct rows and columns (no two equally far from any side)."""
    lab = np.zeros((5 * n + 5, 80), np.int32)
    for k in range(n):
        x = (7 * k) % 76
        lab[5 * k : 5 * k + 4, x : x + 4] = k + 1
    return lab


def test_subsets_of_one_order_are_nested():
    labels = [_diagonal(4), _diagonal(9), _diagonal(10)]  # 23 ROIs
    small = le.roi_subset(labels, 7, order=[0, 1, 2])
    large = le.roi_subset(labels, 11, order=[0, 1, 2])
    assert small == [le.SubsetPart(0, None, 0, 4), le.SubsetPart(1, "top", 15, 3)]
    assert large == [le.SubsetPart(0, None, 0, 4), le.SubsetPart(1, "top", 35, 7)]
    everything = le.roi_subset(labels, 100, order=[2, 1, 0])
    assert sum(p.n_rois for p in everything) == 23 and all(p.side is None for p in everything)


def test_a_count_that_ties_forbid_is_completed_from_the_next_image():
    tied = _grid(2, 2)  # two ROIs at the same distance from every side, twice
    parts = le.roi_subset([tied, _diagonal(5)], 3, order=[0, 1])
    assert parts[0].index == 0 and parts[0].n_rois == 2
    assert parts[1] == le.SubsetPart(1, "top", 5, 1)
    assert le.roi_subset([tied, _diagonal(5)], 1, order=[0, 1]) == [le.SubsetPart(1, "top", 5, 1)]


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_rois"):
        le.roi_subset([_grid(1, 1)], 0, order=[0])
    with pytest.raises(ValueError, match="permutation"):
        le.roi_subset([_grid(1, 1), _grid(1, 1)], 1, order=[0, 0])


def test_invert_is_one_minus_the_normalised_image():
    from cellseg_bridge.core.transforms import normalize_percentile

    img = np.random.default_rng(0).gamma(2.0, 30.0, (40, 50)).astype(np.float32)
    inv = le.invert(img)
    assert inv.dtype == np.float32 and inv.min() == pytest.approx(img.min()) and inv.max() == pytest.approx(img.max())
    a = normalize_percentile(img, 1.0, 99.0)
    b = normalize_percentile(inv, 1.0, 99.0)
    np.testing.assert_allclose(b, 1.0 - a, atol=1e-4)

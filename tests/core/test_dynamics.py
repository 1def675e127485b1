"""Tests of cellseg_bridge.core.dynamics (flows -> masks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cellseg_bridge.core.dynamics import (
    compute_masks,
    fill_holes_and_remove_small_masks,
    flow_error,
    follow_flows,
    get_masks,
    remove_bad_flow_masks,
)
from cellseg_bridge.core.flows import masks_to_flows
from cellseg_bridge.core.metrics import average_precision
from cellseg_bridge.errors import InputError

DSB_IDS = [  # fluorescence images of various sizes and densities
    "0402a81e75262469925ea893b6706183832e85324f7b1e08e634129f5d522cdd",
    "05040e2e959c3f5632558fc9683fec88f0010026c555b499066346f67fdd0e13",
    "01d44a26f6680c42ba94c9bc6339228579a95d0e2695b149b7cc0c9592b21baf",
]


def _disk(shape: tuple[int, ...], centre: tuple[float, ...], radius: float) -> np.ndarray:
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=False)) <= radius**2


def _dsb_labels(root: Path) -> np.ndarray:
    """One label image from the per-nucleus PNGs of a dsb2018 sample."""
    import imageio.v3 as iio

    files = sorted((root / "masks").glob("*.png"))
    labels = None
    for k, f in enumerate(files, start=1):
        m = iio.imread(f)
        m = m[..., 0] if m.ndim == 3 else m
        if labels is None:
            labels = np.zeros(m.shape, np.int32)
        labels[m > 0] = k
    assert labels is not None
    return labels


def _inputs(labels: np.ndarray, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    flows = masks_to_flows(labels)
    dP = (5 * flows + rng.normal(0, noise, flows.shape)).astype(np.float32)
    cellprob = np.where(labels > 0, 5.0, -5.0).astype(np.float32)
    return dP, cellprob


def _euler_reference(dP: np.ndarray, mask: np.ndarray, niter: int) -> np.ndarray:
    """Plain numpy Euler integration with the documented arithmetic, all niter steps."""
    field = (dP.astype(np.float32) * mask) / np.float32(5.0)
    ly, lx = mask.shape
    p = np.array(np.nonzero(mask), np.float32)
    for _ in range(niter):
        iy, ix = p[0].astype(np.int64), p[1].astype(np.int64)
        fy, fx = p[0] - iy.astype(np.float64), p[1] - ix.astype(np.float64)
        y0, x0 = np.minimum(iy, ly - 1), np.minimum(ix, lx - 1)
        y1, x1 = np.minimum(y0 + 1, ly - 1), np.minimum(x0 + 1, lx - 1)
        step = []
        for c in range(2):
            f = field[c].astype(np.float64)
            # Cellpose's mixed precision: products of two float32 values are float32
            f10y = (f[y1, x0] * fy).astype(np.float32).astype(np.float64)
            f11yx = ((f[y1, x1] * fy).astype(np.float32) * fx).astype(np.float32).astype(np.float64)
            v = f[y0, x0] * (1 - fy) * (1 - fx) + f[y0, x1] * (1 - fy) * fx + f10y * (1 - fx) + f11yx
            step.append(v.astype(np.float32))
        p[0] = np.minimum(np.float32(ly - 1), np.maximum(np.float32(0), p[0] + step[0]))
        p[1] = np.minimum(np.float32(lx - 1), np.maximum(np.float32(0), p[1] + step[1]))
    return p


# ----------------------------------------------------------------- reconstruction


@pytest.mark.parametrize("sample", DSB_IDS)
def test_dsb2018_masks_reconstructed_from_their_flows(shared_data: Path, sample: str) -> None:
    labels = _dsb_labels(shared_data / "dsb2018" / "stage1_train" / sample)
    dP, cellprob = _inputs(labels, noise=0.5)
    pred = compute_masks(dP, cellprob)
    assert pred.shape == labels.shape and pred.dtype == np.uint16
    ap, tp, fp, fn = average_precision(labels, pred, thresholds=[0.5])
    assert ap[0] >= 0.99, (tp, fp, fn)


def test_stardist_3d_masks_reconstructed_from_their_flows(shared_data: Path) -> None:
    import tifffile

    labels = tifffile.imread(shared_data / "stardist" / "mask3d.tif").astype(np.int32)
    dP, cellprob = _inputs(labels, noise=0.5)
    pred = compute_masks(dP, cellprob)
    assert pred.shape == labels.shape
    ap, tp, fp, fn = average_precision(labels, pred, thresholds=[0.5])
    assert ap[0] >= 0.99, (tp, fp, fn)


# ----------------------------------------------------------------- dynamics


@pytest.mark.parametrize("niter", [0, 1, 7, 50, 200, 201])
def test_follow_flows_bit_identical_to_plain_euler(niter: int) -> None:
    labels = np.zeros((60, 70), np.int32)
    labels[_disk(labels.shape, (20, 20), 12)] = 1
    labels[_disk(labels.shape, (40, 50), 15)] = 2
    labels[0:6, 55:70] = 3  # at the border: positions get clamped
    dP, _ = _inputs(labels, noise=1.0, seed=3)
    mask = labels > 0
    np.testing.assert_array_equal(follow_flows(dP, mask, niter), _euler_reference(dP, mask, niter))


def test_follow_flows_ignores_non_finite_flows() -> None:
    labels = np.zeros((30, 30), np.int32)
    labels[_disk(labels.shape, (15, 15), 8)] = 1
    dP, cellprob = _inputs(labels, noise=0.0)
    dP[:, 15, 10] = np.nan
    dP[0, 12, 15] = np.inf
    p = follow_flows(dP, cellprob > 0)
    assert np.isfinite(p).all()
    assert compute_masks(dP, cellprob).max() == 1


def test_follow_flows_validates_shapes() -> None:
    with pytest.raises(InputError):
        follow_flows(np.zeros((2, 5, 5), np.float32), np.ones((5, 6), bool))
    with pytest.raises(InputError):
        follow_flows(np.zeros((2, 5, 5), np.float32), np.ones((5, 5), bool), niter=-1)


def test_get_masks_labels_by_first_appearance() -> None:
    labels = np.zeros((40, 40), np.int32)
    labels[_disk(labels.shape, (28, 10), 7)] = 1
    labels[_disk(labels.shape, (10, 28), 7)] = 2
    dP, cellprob = _inputs(labels, noise=0.0)
    mask = cellprob > 0
    pred = get_masks(follow_flows(dP, mask), mask)
    assert pred.dtype == np.int32
    # the mask met first in raster order is numbered 1
    assert pred[10, 28] == 1 and pred[28, 10] == 2


# ----------------------------------------------------------------- flow QC


def _two_disks() -> np.ndarray:
    labels = np.zeros((64, 64), np.int32)
    labels[_disk(labels.shape, (20, 20), 10)] = 1
    labels[_disk(labels.shape, (42, 44), 12)] = 2
    return labels


def _rotate(dP: np.ndarray, region: np.ndarray, degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    out = dP.copy()
    out[0, region] = np.cos(a) * dP[0, region] - np.sin(a) * dP[1, region]
    out[1, region] = np.sin(a) * dP[0, region] + np.cos(a) * dP[1, region]
    return out


def test_flow_error_and_qc_drop_the_scrambled_mask() -> None:
    labels = _two_disks()
    dP, cellprob = _inputs(labels, noise=0.0)
    errors = flow_error(labels, dP)
    assert errors.shape == (2,) and errors.max() < 1e-10
    scrambled = _rotate(dP, labels == 2, 60)  # error = 2 - 2 cos 60 = 1
    errors = flow_error(labels, scrambled)
    assert errors[0] < 1e-10 and errors[1] == pytest.approx(1.0, abs=0.01)  # source pixel: 0
    kept = remove_bad_flow_masks(labels.copy(), scrambled, 0.4)
    assert set(np.unique(kept)) == {0, 1}
    # end to end: the rotated flows still converge (spiral), so QC decides
    with_qc = compute_masks(scrambled, cellprob)
    without_qc = compute_masks(scrambled, cellprob, flow_threshold=0)
    assert with_qc.max() == 1 and np.array_equal(with_qc > 0, labels == 1)
    assert without_qc.max() == 2
    assert compute_masks(scrambled, cellprob, flow_threshold=None).max() == 2


# ----------------------------------------------------------------- size rules


def test_min_size_and_max_size_fraction() -> None:
    labels = np.zeros((50, 50), np.int32)
    labels[5:9, 5:9] = 1  # 16 px
    labels[_disk(labels.shape, (30, 30), 10)] = 2
    dP, cellprob = _inputs(labels, noise=0.0)
    assert compute_masks(dP, cellprob).max() == 2  # default min_size 15 keeps 16 px
    small_gone = compute_masks(dP, cellprob, min_size=20)
    assert small_gone.max() == 1 and small_gone[30, 30] == 1 and small_gone[6, 6] == 0
    # the disk is ~317 px = 12.7 % of the image
    only_small = compute_masks(dP, cellprob, max_size_fraction=0.1)
    assert only_small.max() == 1 and only_small[6, 6] == 1
    assert compute_masks(dP, cellprob, max_size_fraction=0.13).max() == 2


def test_fill_holes_and_remove_small_masks() -> None:
    labels = np.zeros((30, 30), np.int32)
    ring = _disk(labels.shape, (15, 15), 10) & ~_disk(labels.shape, (15, 15), 4)
    labels[ring] = 7
    labels[14:17, 14:17] = 9  # enclosed: the filled hole takes it over
    labels[0:2, 27:30] = 3  # 6 px: too small
    out = fill_holes_and_remove_small_masks(labels, min_size=15)
    assert out.max() == 1
    np.testing.assert_array_equal(out > 0, _disk(labels.shape, (15, 15), 10))
    kept = fill_holes_and_remove_small_masks(labels, min_size=0)
    assert kept.max() == 2  # 3 -> 1 (first in raster order), 7 -> 2, 9 swallowed
    # a diagonal gap does not connect a hole (4-connected background)
    diamond = np.zeros((5, 5), np.int32)
    diamond[1, 2] = diamond[2, 1] = diamond[2, 3] = diamond[3, 2] = 1
    assert fill_holes_and_remove_small_masks(diamond, 0)[2, 2] == 1
    # 3D: a hollow ball is filled in 3D
    ball = _disk((15, 15, 15), (7, 7, 7), 6) & ~_disk((15, 15, 15), (7, 7, 7), 3)
    filled = fill_holes_and_remove_small_masks(ball.astype(np.int32), 15)
    np.testing.assert_array_equal(filled > 0, _disk((15, 15, 15), (7, 7, 7), 6))


# ----------------------------------------------------------------- degenerate input


def test_empty_inputs_give_empty_labels() -> None:
    dP = np.zeros((2, 20, 30), np.float32)
    out = compute_masks(dP, np.full((20, 30), -3.0, np.float32))
    assert out.shape == (20, 30) and out.dtype == np.uint16 and not out.any()
    # cell pixels but no flow: nothing converges, no seeds
    assert not compute_masks(dP, np.ones((20, 30), np.float32)).any()
    out3 = compute_masks(np.zeros((3, 4, 5, 6), np.float32), np.zeros((4, 5, 6), np.float32))
    assert out3.shape == (4, 5, 6) and not out3.any()
    assert not fill_holes_and_remove_small_masks(np.zeros((4, 4), np.int32)).any()
    assert flow_error(np.zeros((4, 4), np.int32), np.zeros((2, 4, 4), np.float32)).size == 0


def test_compute_masks_validates_shapes() -> None:
    with pytest.raises(InputError):
        compute_masks(np.zeros((2, 5, 5), np.float32), np.zeros((5, 6), np.float32))
    with pytest.raises(InputError):
        compute_masks(np.zeros((3, 5, 5), np.float32), np.zeros((5, 5), np.float32))

"""Tests of cellseg_bridge.core.flows (masks -> Cellpose flow fields)."""

from __future__ import annotations

import numpy as np
import pytest

from cellseg_bridge.core.flows import masks_to_flows
from cellseg_bridge.errors import InputError


def _disk(shape: tuple[int, ...], centre: tuple[float, ...], radius: float) -> np.ndarray:
    grid = np.indices(shape)
    d2 = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=False))
    return d2 <= radius**2


def _reference_flows_2d(masks: np.ndarray) -> np.ndarray:
    """Slow, direct transcription of the documented rules (numpy, one mask at a time)."""
    out = np.zeros((2, *masks.shape))
    for lab in np.unique(masks[masks > 0]):
        ys, xs = np.nonzero(masks == lab)
        y0, x0 = ys.min(), xs.min()
        h, w = ys.max() - y0 + 1, xs.max() - x0 + 1
        yy, xx = ys - y0 + 1, xs - x0 + 1  # in the box padded by 1
        k = np.argmin((xx - xx.mean()) ** 2 + (yy - yy.mean()) ** 2)
        heat = np.zeros((h + 2, w + 2))
        for _ in range(2 * (h + 2 + w + 2)):
            heat[yy[k], xx[k]] += 1
            total = heat[yy, xx].copy()
            for a, b in ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)):
                total += heat[yy + a, xx + b]
            heat[yy, xx] = (1 / 9.0) * total
        out[0, ys, xs] = heat[yy + 1, xx] - heat[yy - 1, xx]
        out[1, ys, xs] = heat[yy, xx + 1] - heat[yy, xx - 1]
    return out / (1e-60 + np.sqrt((out**2).sum(0)))


def test_disk_flows_point_to_centre_with_unit_norm_and_zero_outside() -> None:
    shape, centre = (48, 52), (23.0, 26.0)
    masks = _disk(shape, centre, 15).astype(np.int32) * 3
    flows = masks_to_flows(masks)
    assert flows.shape == (2, *shape) and flows.dtype == np.float32
    inside = masks > 0
    assert np.all(flows[:, ~inside] == 0)
    norm = np.sqrt((flows**2).sum(0))
    # every pixel but the source itself has a unit flow
    assert np.sum(np.abs(norm[inside] - 1) > 1e-5) <= 1
    grid = np.indices(shape).astype(float)
    to_centre = np.stack([centre[0] - grid[0], centre[1] - grid[1]])
    dist = np.sqrt((to_centre**2).sum(0))
    far = inside & (dist > 3)
    cos = (flows * to_centre).sum(0)[far] / dist[far]
    assert cos.min() > 0.8
    assert np.median(cos) > 0.99


def test_matches_reference_rules_with_gaps_touching_masks_and_border() -> None:
    masks = np.zeros((40, 50), np.int32)
    masks[_disk(masks.shape, (10, 12), 7)] = 5
    masks[_disk(masks.shape, (20, 30), 9)] = 2  # overlaps/touches label 5's neighbourhood
    masks[30:40, 0:14] = 9  # touches the image border
    masks[2:6, 40:49] = 11  # thin rectangle
    masks[35, 45] = 12  # one pixel: no gradient
    ref = _reference_flows_2d(masks)
    # same operations in the same order: bit-identical in float64
    np.testing.assert_array_equal(masks_to_flows(masks, dtype=np.float64), ref)
    got = masks_to_flows(masks)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, ref.astype(np.float32))
    assert np.all(got[:, 35, 45] == 0)


def test_3d_ball_points_to_centre() -> None:
    shape, centre = (21, 24, 26), (10.0, 11.0, 12.0)
    masks = _disk(shape, centre, 8).astype(np.uint16)
    flows = masks_to_flows(masks)
    assert flows.shape == (3, *shape) and flows.dtype == np.float32
    inside = masks > 0
    assert np.all(flows[:, ~inside] == 0)
    norm = np.sqrt((flows**2).sum(0))
    assert np.sum(np.abs(norm[inside] - 1) > 1e-5) <= 1
    grid = np.indices(shape).astype(float)
    to_centre = np.stack([c - g for c, g in zip(centre, grid, strict=False)])
    dist = np.sqrt((to_centre**2).sum(0))
    far = inside & (dist > 3)
    cos = (flows * to_centre).sum(0)[far] / dist[far]
    assert cos.min() > 0.8


def test_empty_bool_and_sparse_labels() -> None:
    assert not masks_to_flows(np.zeros((8, 9), np.int64)).any()
    disk = _disk((30, 30), (15, 15), 8)
    from_bool = masks_to_flows(disk)
    huge = np.where(disk, 10**12, 0).astype(np.int64)  # renumbered internally
    np.testing.assert_array_equal(masks_to_flows(huge), from_bool)


@pytest.mark.parametrize(
    "bad",
    [np.zeros(5, np.int32), np.zeros((4, 4), np.float32), -np.ones((4, 4), np.int32), np.zeros((2, 2, 2, 2), int)],
)
def test_invalid_input(bad: np.ndarray) -> None:
    with pytest.raises(InputError):
        masks_to_flows(bad)

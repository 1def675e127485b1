"""Labels <-> polygons: exact both ways, simple rings, valid geometries (checked by shapely)."""

from __future__ import annotations

import numpy as np
import pytest

from cellseg_bridge.core.polygons import fill_polygons, find_crossing, label_polygons, split_ring
from cellseg_bridge.errors import InputError


def tricky_labels() -> np.ndarray:
    """Labels with a hole, a hole touching the border of its cell at a corner, a diagonal neck,
    a piece inside the hole of another label's piece, and cells touching the image border."""
    lab = np.zeros((14, 16), np.int32)
    lab[1:6, 1:6] = 1
    lab[3, 3] = 0  # hole
    lab[1:4, 8:11] = 2
    lab[4:7, 11:14] = 2  # diagonal neck at (11, 4)
    lab[8:13, 1:7] = 3
    lab[9:12, 2:6] = 0
    lab[10, 3] = 4  # a cell in the hole of cell 3
    lab[9, 2] = 3  # the hole now touches ... itself diagonally
    lab[8:14, 9:16] = 5
    lab[10, 11] = 0
    lab[11, 12] = 0  # two holes touching at a corner
    lab[0, 0] = 6  # corner pixel of the image
    return lab


def random_labels(seed: int, shape=(40, 48), n=12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.int32)
    for k in range(1, n + 1):
        cy, cx = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        blob = rng.random((9, 9)) < 0.55  # ragged: holes, necks, several pieces
        ys, xs = np.nonzero(blob)
        ys, xs = ys + cy - 4, xs + cx - 4
        ok = (ys >= 0) & (xs >= 0) & (ys < shape[0]) & (xs < shape[1])
        lab[ys[ok], xs[ok]] = k
    return lab


@pytest.mark.parametrize("labels", [tricky_labels()] + [random_labels(s) for s in range(6)],
                         ids=["tricky"] + [f"random{s}" for s in range(6)])
def test_round_trip_exact_and_valid(labels):
    shapely = pytest.importorskip("shapely")
    from shapely.geometry import MultiPolygon, Polygon

    polys = label_polygons(labels)
    present = [int(v) for v in np.unique(labels) if v]
    assert sorted(polys) == present
    dense = np.zeros_like(labels)
    for k, v in enumerate(present, start=1):
        dense[labels == v] = k
    back, pixels, overlap = fill_polygons([polys[v] for v in present], labels.shape)
    np.testing.assert_array_equal(back, dense)
    assert overlap == 0 and pixels == [int(np.count_nonzero(labels == v)) for v in present]
    for v in present:
        geom = MultiPolygon([Polygon(p[0], p[1:]) for p in polys[v]])
        assert shapely.is_valid(geom), (v, shapely.is_valid_reason(geom))
        assert geom.area == np.count_nonzero(labels == v)
        for p in polys[v]:
            for ring in p:
                assert len({tuple(x) for x in ring.tolist()}) == len(ring)  # simple: no repeated vertex
        assert find_crossing(polys[v]) is None


def test_tricky_shapes_become_the_expected_pieces():
    polys = label_polygons(tricky_labels())
    assert [len(p) for p in polys[1]] == [2]  # one polygon with one hole
    assert len(polys[2]) == 2  # the diagonal neck gives two polygons touching at a corner
    assert [len(p) for p in polys[5]] == [3]  # two holes
    assert len(polys[4]) == 1 and len(polys[3]) == 1


def test_split_ring_cuts_at_the_repeated_corner():
    # a figure eight through (2, 2): two unit-ish squares touching at a corner
    loop = np.array([[0, 0], [2, 0], [2, 2], [4, 2], [4, 4], [2, 4], [2, 2], [0, 2]])
    rings = split_ring(loop)
    assert len(rings) == 2
    assert sorted(len(r) for r in rings) == [4, 4]


def test_find_crossing_bow_tie_and_touching():
    bow = [[np.array([[0.0, 0.0], [4.0, 4.0], [4.0, 0.0], [0.0, 4.0]])]]
    assert find_crossing(bow) == pytest.approx((2.0, 2.0))
    touching = [[np.array([[0, 0], [2, 0], [2, 2], [0, 2]])], [np.array([[2, 2], [4, 2], [4, 4], [2, 4]])]]
    assert find_crossing(touching) is None
    overlapping = [[np.array([[0, 0], [3, 0], [3, 3], [0, 3]])], [np.array([[2, 1], [5, 1], [5, 5], [2, 5]])]]
    assert find_crossing(overlapping) is not None


def test_fill_overlap_rules():
    a = [[np.array([[0, 0], [4, 0], [4, 4], [0, 4]])]]
    b = [[np.array([[2, 2], [6, 2], [6, 6], [2, 6]])]]
    last, _, n = fill_polygons([a, b], (8, 8))
    first, _, _ = fill_polygons([a, b], (8, 8), overlap="first")
    assert n == 4 and last[3, 3] == 2 and first[3, 3] == 1
    with pytest.raises(InputError):
        fill_polygons([a], (8, 8), overlap="middle")


def test_fill_clips_to_the_image():
    a = [[np.array([[-3.0, -3.0], [2.0, -3.0], [2.0, 2.0], [-3.0, 2.0]])]]
    lab, pixels, _ = fill_polygons([a], (5, 5))
    assert pixels == [4] and lab[:2, :2].all() and lab.sum() == 4

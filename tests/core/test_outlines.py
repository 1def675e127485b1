"""Pixel-edge outline tracing: exact polygons, corners only, pieces and holes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cellseg_bridge.core.outlines import Outlines, group_pieces, signed_area, trace_outlines
from cellseg_bridge.errors import InputError


def fill_loops(outlines: Outlines, loops, shape) -> np.ndarray:
    """Rasterise loops by the even-odd rule on pixel centres (independent of the tracer).

    A pixel (r, c) is inside when a ray from its centre to the left crosses an odd
    number of vertical sides, i.e. sides at x <= c spanning row r.
    """
    height, width = shape
    crossings = np.zeros((height, width + 1), dtype=np.int64)
    for i in loops:
        v = outlines.loop(int(i))
        w = np.roll(v, -1, axis=0)
        for (x0, y0), (x1, y1) in zip(v, w):
            if x0 == x1:
                lo, hi = sorted((int(y0), int(y1)))
                crossings[lo:hi, x0] += 1
    return (np.cumsum(crossings, axis=1)[:, :width] % 2).astype(bool)


def assert_exact(labels: np.ndarray, connectivity: int = 8) -> Outlines:
    """Every label's loops fill exactly its pixels; areas match; corners only."""
    out = trace_outlines(labels, connectivity=connectivity)
    by_label = out.by_label()
    assert sorted(by_label) == sorted(int(v) for v in np.unique(labels) if v != 0)
    for label, loops in by_label.items():
        mask = labels == label
        np.testing.assert_array_equal(fill_loops(out, loops, labels.shape), mask, err_msg=f"label {label}")
        assert out.areas[loops].sum() == mask.sum()
    for i in range(len(out)):
        v = out.loop(i)
        assert signed_area(v) == out.areas[i]
        assert len(v) >= 4 and len(v) % 2 == 0
        sides = np.roll(v, -1, axis=0) - v
        # every side is axis-parallel and non-empty, and sides alternate: no collinear vertex
        assert np.all((sides[:, 0] == 0) ^ (sides[:, 1] == 0))
        horizontal = sides[:, 1] == 0
        assert np.all(horizontal != np.roll(horizontal, -1))
    return out


def loops_of(out: Outlines, label: int) -> list[list[list[int]]]:
    return [out.loop(int(i)).tolist() for i in out.by_label()[label]]


def test_square():
    labels = np.zeros((6, 7), np.uint16)
    labels[1:4, 2:6] = 5
    out = assert_exact(labels)
    assert loops_of(out, 5) == [[[2, 1], [6, 1], [6, 4], [2, 4]]]
    assert out.areas.tolist() == [12]
    assert out.vertices.dtype == np.int32


def test_single_pixel_and_border():
    labels = np.zeros((3, 3), np.uint8)
    labels[0, 0] = 1
    labels[2, 2] = 2
    out = assert_exact(labels)
    assert loops_of(out, 1) == [[[0, 0], [1, 0], [1, 1], [0, 1]]]
    assert loops_of(out, 2) == [[[2, 2], [3, 2], [3, 3], [2, 3]]]
    full = np.full((4, 5), 7, np.int64)
    out = assert_exact(full)
    assert loops_of(out, 7) == [[[0, 0], [5, 0], [5, 4], [0, 4]]]


def test_l_shape_keeps_only_corners():
    labels = np.zeros((6, 6), np.int32)
    labels[1:5, 1:3] = 1
    labels[3:5, 3:5] = 1
    out = assert_exact(labels)
    assert loops_of(out, 1) == [[[1, 1], [3, 1], [3, 3], [5, 3], [5, 5], [1, 5]]]


def test_ring_has_outer_and_hole():
    labels = np.zeros((7, 7), np.uint8)
    labels[1:6, 1:6] = 3
    labels[2:4, 2:5] = 0
    out = assert_exact(labels)
    loops = out.by_label()[3]
    assert len(loops) == 2
    assert out.areas[loops].tolist() == [25, -6]
    assert out.holes[loops].tolist() == [False, True]
    # the hole runs the other way round (counter-clockwise on screen)
    assert out.loop(int(loops[1])).tolist() == [[2, 4], [5, 4], [5, 2], [2, 2]]


def test_two_pieces_and_touching_labels():
    labels = np.zeros((5, 8), np.uint8)
    labels[0:2, 0:2] = 1
    labels[3:5, 5:8] = 1
    labels[0:2, 2:4] = 2  # touches label 1 along an edge
    out = assert_exact(labels)
    assert len(out.by_label()[1]) == 2
    assert (out.areas[out.by_label()[1]] > 0).all()
    assert len(out.by_label()[2]) == 1


def test_diagonal_pixels_one_piece_with_8_connectivity():
    labels = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.uint8)
    out8 = assert_exact(labels, 8)
    # one loop through the shared corners (touching itself there)
    assert loops_of(out8, 1) == [
        [[0, 0], [1, 0], [1, 1], [2, 1], [2, 2], [3, 2], [3, 3], [2, 3], [2, 2], [1, 2], [1, 1], [0, 1]]
    ]
    out4 = assert_exact(labels, 4)
    assert len(out4.by_label()[1]) == 3
    assert out4.areas.tolist() == [1, 1, 1]


def test_saddle_hole_duality():
    # a ring closed only through diagonal contacts: with 8-connectivity the centre is a hole
    labels = np.array(
        [[0, 1, 0],
         [1, 0, 1],
         [0, 1, 0]], np.uint8)  # fmt: skip
    out8 = assert_exact(labels, 8)
    assert sorted(out8.areas.tolist()) == [-1, 5]
    out4 = assert_exact(labels, 4)
    assert out4.areas.tolist() == [1, 1, 1, 1]


def test_two_labels_crossing_at_a_corner():
    labels = np.array([[1, 2], [2, 1]], np.uint8)
    out = assert_exact(labels)
    assert len(out.by_label()[1]) == 1 and len(out.by_label()[2]) == 1


def test_empty_and_blank_images():
    assert len(trace_outlines(np.zeros((4, 4), np.uint8))) == 0
    assert trace_outlines(np.zeros((4, 4), np.uint8)).by_label() == {}
    assert len(trace_outlines(np.zeros((0, 3), np.int32))) == 0


@pytest.mark.parametrize("connectivity", [8, 4])
def test_random_labels_are_exact_and_pieces_counted(connectivity):
    rng = np.random.default_rng(1)
    structure = np.ones((3, 3)) if connectivity == 8 else None
    for _ in range(30):
        labels = rng.integers(0, 4, size=(rng.integers(1, 14), rng.integers(1, 14))).astype(np.uint8)
        out = assert_exact(labels, connectivity)
        for label, loops in out.by_label().items():
            n_pieces = ndimage.label(labels == label, structure=structure)[1]
            assert np.count_nonzero(out.areas[loops] > 0) == n_pieces


def test_accepts_integral_floats_and_bools():
    out = trace_outlines(np.array([[0.0, 2.0], [2.0, 2.0]], np.float32))
    assert list(out.by_label()) == [2]
    out = trace_outlines(np.array([[True, False]]))
    assert list(out.by_label()) == [1]
    big = np.array([[2**40, 0]], np.uint64)
    assert list(trace_outlines(big).by_label()) == [2**40]


@pytest.mark.parametrize(
    "bad",
    [
        np.array([[0, -1]], np.int16),
        np.array([[0.5, 1.0]]),
        np.array([[np.nan, 1.0]]),
        np.array([["a", "b"]]),
        np.zeros((2, 2, 2), np.uint8),
        np.array([[2**63]], np.uint64),
    ],
)
def test_bad_labels_raise_input_error(bad):
    with pytest.raises(InputError):
        trace_outlines(bad)


def test_bad_connectivity():
    with pytest.raises(InputError):
        trace_outlines(np.zeros((2, 2), np.uint8), connectivity=6)


def test_group_pieces_nested_island_and_holes():
    labels = np.zeros((11, 16), np.uint8)
    labels[0:9, 0:9] = 1
    labels[2:7, 2:7] = 0  # hole of the outer ring
    labels[4, 4] = 1  # island inside that hole (a second piece)
    labels[1:4, 11:15] = 1  # a third piece with its own hole
    labels[2, 12] = 0
    out = assert_exact(labels)
    loops = out.by_label()[1]
    pieces = group_pieces(out, loops)
    assert len(pieces) == 3
    got = {int(out.areas[o]): sorted(int(out.areas[h]) for h in holes) for o, holes in pieces}
    assert got == {81: [-25], 1: [], 12: [-1]}

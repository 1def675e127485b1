"""Tests of stitching 2D label planes into 3D objects."""

from __future__ import annotations

import numpy as np
import pytest

from cellseg_bridge.core.stitch import iou_pairs, stitch_planes


def _disk(shape, cy, cx, r):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_iou_pairs():
    a = np.array([[1, 1, 0], [2, 2, 0]])
    b = np.array([[5, 0, 0], [5, 5, 5]])
    ca, cb, iou = iou_pairs(a, b)
    got = {(int(x), int(y)): v for x, y, v in zip(ca, cb, iou)}
    assert got[(1, 5)] == pytest.approx(1 / 5)
    assert got[(2, 5)] == pytest.approx(2 / 4)
    assert iou_pairs(np.zeros((2, 3)), b)[2].size == 0


def test_stitch_gives_one_label_per_object_across_planes():
    shape = (40, 60)
    stack = np.zeros((5, *shape), np.int32)
    for z in range(5):
        # object A drifts slowly, object B shrinks; labels are numbered differently per plane
        a = _disk(shape, 12, 15 + z, 6)
        b = _disk(shape, 28, 42, 8 - z)
        la, lb = (1, 2) if z % 2 == 0 else (7, 3)
        stack[z][a] = la
        stack[z][b] = lb
    out = stitch_planes(stack, threshold=0.25)
    assert out.dtype == np.uint32
    ids = np.unique(out[out > 0])
    assert ids.size == 2
    for k in ids:
        assert all((out[z] == k).any() for z in range(5))
    assert len({out[z][12, 15 + z] for z in range(5)}) == 1


def test_stitch_threshold_splits_and_new_labels_are_unique():
    shape = (30, 30)
    stack = np.zeros((4, *shape), np.int32)
    stack[0][_disk(shape, 10, 10, 5)] = 1
    stack[1][_disk(shape, 20, 20, 5)] = 1  # no overlap with plane 0: new object
    # plane 2 empty; plane 3 repeats plane 0's object, which must not reuse label of plane 0
    stack[3][_disk(shape, 10, 10, 5)] = 1
    out = stitch_planes(stack, threshold=0.25)
    labels = [set(np.unique(out[z])) - {0} for z in range(4)]
    assert labels[0] != labels[1]
    assert labels[2] == set()
    assert labels[3].isdisjoint(labels[0] | labels[1])


def test_stitch_best_match_wins():
    shape = (20, 40)
    stack = np.zeros((2, *shape), np.int32)
    stack[0][:, :20] = 1
    stack[1][:, :18] = 4  # IoU 0.9 with object 1
    stack[1][:, 18:22] = 5  # IoU 0.1: becomes a new object
    out = stitch_planes(stack, threshold=0.05)
    assert out[1][0, 0] == out[0][0, 0]
    assert out[1][0, 19] not in (0, out[0][0, 0])

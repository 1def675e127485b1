"""Tests of cellseg_bridge.core.metrics (IoU matching, AP, aggregated Jaccard)."""

from __future__ import annotations

import numpy as np
import pytest

from cellseg_bridge.core.metrics import (
    aggregated_jaccard_index,
    average_precision,
    match_labels,
    overlaps,
)
from cellseg_bridge.errors import InputError


def _known_pair() -> tuple[np.ndarray, np.ndarray]:
    true = np.zeros((10, 10), np.int32)
    pred = np.zeros((10, 10), np.int32)
    true[0:4, 0:4] = 1  # 16 px
    pred[0:4, 0:2] = 7  # 8 px inside it: IoU 0.5
    true[5:9, 5:9] = 3
    pred[5:9, 5:9] = 2  # identical: IoU 1
    pred[0, 9] = 5  # a false positive
    return true, pred


def test_known_overlaps() -> None:
    true, pred = _known_pair()
    ov = overlaps(true, pred)
    np.testing.assert_array_equal(ov.true_ids, [1, 3])
    np.testing.assert_array_equal(ov.pred_ids, [2, 5, 7])
    np.testing.assert_array_equal(ov.true_area, [16, 16])
    np.testing.assert_array_equal(ov.pred_area, [16, 1, 8])
    assert sorted(zip(ov.pair_true, ov.pair_pred, ov.pair_iou, strict=False)) == [(0, 2, 0.5), (1, 0, 1.0)]

    t, p, iou = match_labels(true, pred, 0.5)
    np.testing.assert_array_equal(t, [1, 3])
    np.testing.assert_array_equal(p, [7, 2])
    np.testing.assert_allclose(iou, [0.5, 1.0])

    ap, tp, fp, fn = average_precision(true, pred)
    np.testing.assert_array_equal(tp, [2, 1, 1])
    np.testing.assert_array_equal(fp, [1, 2, 2])
    np.testing.assert_array_equal(fn, [0, 1, 1])
    np.testing.assert_allclose(ap, [2 / 3, 1 / 4, 1 / 4])

    # C = 8 + 16, U = 16 + 16 + 1 (the unused prediction)
    assert aggregated_jaccard_index(true, pred) == pytest.approx(24 / 33)


def test_assignment_is_optimal_not_greedy() -> None:
    # t1 = 0..9, t2 = 10..19; p2 = 0..3, p1 = 4..13
    true = np.zeros((1, 20), np.int32)
    pred = np.zeros((1, 20), np.int32)
    true[0, :10], true[0, 10:] = 1, 2
    pred[0, :4], pred[0, 4:14] = 2, 1
    # IoU: (t1, p1) 6/14, (t1, p2) 4/10, (t2, p1) 4/16. Greedy on IoU would take
    # (t1, p1) and leave t2 unmatched; the optimal assignment matches both.
    t, p, _ = match_labels(true, pred, 0.2)
    assert sorted(zip(t.tolist(), p.tolist(), strict=False)) == [(1, 2), (2, 1)]
    assert average_precision(true, pred, 0.2)[1][0] == 2


def test_one_true_two_preds_at_iou_one_half() -> None:
    true = np.zeros((2, 4), np.int32)
    true[:, :2] = 1  # 4 px
    pred = np.zeros((2, 4), np.int32)
    pred[0, :2], pred[1, :2] = 1, 2  # each 2 px: IoU 0.5 with the true mask
    ap, tp, fp, fn = average_precision(true, pred, [0.5])
    assert (tp[0], fp[0], fn[0]) == (1, 1, 0)
    assert ap[0] == pytest.approx(0.5)


def test_invariant_to_label_values_and_works_in_3d() -> None:
    true = np.zeros((6, 20, 20), np.int64)
    true[1:5, 2:8, 2:8] = 4
    true[1:5, 10:18, 10:18] = 900
    pred = np.roll(true, 1, axis=2)
    relabelled = np.where(pred == 4, 10**9, np.where(pred == 900, 2, 0))  # sparse labels
    a = average_precision(true, pred)
    b = average_precision(true, relabelled)
    for x, y in zip(a, b, strict=False):
        np.testing.assert_array_equal(x, y)
    assert aggregated_jaccard_index(true, pred) == pytest.approx(aggregated_jaccard_index(true, relabelled))
    # IoU of a 6x6x4 box shifted by one voxel: 5/7
    np.testing.assert_allclose(match_labels(true, pred)[2], [5 / 7, 7 / 9])


def test_empty_images() -> None:
    empty = np.zeros((5, 5), np.int32)
    one = empty.copy()
    one[1:3, 1:3] = 1
    ap, _, _, _ = average_precision(empty, empty)
    np.testing.assert_array_equal(ap, [1.0, 1.0, 1.0])
    assert average_precision(one, empty)[0][0] == 0.0 and average_precision(one, empty)[3][0] == 1
    assert average_precision(empty, one)[0][0] == 0.0 and average_precision(empty, one)[2][0] == 1
    assert aggregated_jaccard_index(empty, empty) == 1.0
    assert aggregated_jaccard_index(one, empty) == 0.0
    assert match_labels(empty, one)[0].size == 0


def test_identical_images_and_bad_input() -> None:
    labels = np.zeros((30, 30), np.uint16)
    labels[2:10, 2:10], labels[12:20, 3:9], labels[22:29, 20:29] = 1, 2, 3
    ap = average_precision(labels, labels, (0.5, 0.75, 0.9, 1.0))[0]
    np.testing.assert_array_equal(ap, 1.0)
    assert aggregated_jaccard_index(labels, labels) == 1.0
    with pytest.raises(InputError):
        average_precision(labels, labels[:-1])
    with pytest.raises(InputError):
        overlaps(labels.astype(float), labels)

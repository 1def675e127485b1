"""Instance-segmentation metrics: IoU matching, average precision, aggregated Jaccard.

Everything is computed from the sparse overlap table of the two label images
(one pass over the pixels, ``np.unique`` of the label pairs): no per-label
binary masks are built, so the cost is one pass over the image plus the number
of overlapping label pairs, in 2D and 3D alike.

Definitions (as in Cellpose and StarDist):

* a true and a predicted mask *match* at threshold ``t`` when their IoU is
  ``>= t``; the matching is one-to-one and maximises first the number of matches,
  then their total IoU (optimal assignment, ``scipy.optimize.linear_sum_assignment``);
* ``AP(t) = TP / (TP + FP + FN)`` (this "average precision" is the one of the
  Cellpose papers, a.k.a. the critical success index);
* the aggregated Jaccard index (Kumar et al. 2017) pairs each true mask with the
  predicted mask of highest IoU and sums intersections over sums of unions, the
  predicted masks never used being added to the unions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from cellseg_bridge.errors import InputError

__all__ = ["Overlaps", "overlaps", "match_labels", "average_precision", "aggregated_jaccard_index"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Overlaps:
    """Sparse overlap table of two label images.

    Attributes
    ----------
    true_ids, pred_ids : ndarray of int64
        Labels present in the true / predicted image (sorted, without 0).
    true_area, pred_area : ndarray of int64
        Pixel counts of those labels.
    pair_true, pair_pred : ndarray of int64
        For every overlapping pair, the *index* into ``true_ids`` / ``pred_ids``.
    pair_inter : ndarray of int64
        Intersection (pixels) of every pair.
    """

    true_ids: np.ndarray
    pred_ids: np.ndarray
    true_area: np.ndarray
    pred_area: np.ndarray
    pair_true: np.ndarray
    pair_pred: np.ndarray
    pair_inter: np.ndarray

    @property
    def pair_iou(self) -> np.ndarray:
        """IoU of every overlapping pair."""
        union = self.true_area[self.pair_true] + self.pred_area[self.pair_pred] - self.pair_inter
        return self.pair_inter / union


def _as_labels(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool:
        return a.astype(np.int64)
    if not np.issubdtype(a.dtype, np.integer):
        raise InputError(f"{name} must hold integer labels, got dtype {a.dtype}")
    if a.size and a.min() < 0:
        raise InputError(f"{name} has negative labels")
    return a


def overlaps(true: np.ndarray, pred: np.ndarray) -> Overlaps:
    """Compute the sparse overlap table of two label images of the same shape.

    Parameters
    ----------
    true, pred : ndarray of int
        Label images (any dimension, same shape), 0 = background.

    Returns
    -------
    Overlaps
        Labels, areas and the intersection of every overlapping pair.

    Raises
    ------
    InputError
        If the shapes differ or the labels are not non-negative integers.
    """
    true = _as_labels(true, "true")
    pred = _as_labels(pred, "pred")
    if true.shape != pred.shape:
        raise InputError(f"true and pred must have the same shape, got {true.shape} and {pred.shape}")
    t = true.reshape(-1).astype(np.int64, copy=False)
    p = pred.reshape(-1).astype(np.int64, copy=False)
    true_ids, t_lut, true_area = _ids(t)
    pred_ids, p_lut, pred_area = _ids(p)
    npred = max(pred_ids.size, 1)
    both = (t != 0) & (p != 0)
    tb, pb = t[both], p[both]
    ti = t_lut[tb] if t_lut is not None else np.searchsorted(true_ids, tb)
    pi = p_lut[pb] if p_lut is not None else np.searchsorted(pred_ids, pb)
    key = ti * npred + pi
    if true_ids.size * npred <= 4 * t.size + 1024:
        counts = np.bincount(key, minlength=true_ids.size * npred)
        pairs = np.flatnonzero(counts)
        inter = counts[pairs]
    else:
        pairs, inter = np.unique(key, return_counts=True)
    return Overlaps(
        true_ids=true_ids,
        pred_ids=pred_ids,
        true_area=true_area,
        pred_area=pred_area,
        pair_true=pairs // npred,
        pair_pred=pairs % npred,
        pair_inter=inter.astype(np.int64),
    )


def _ids(a: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Non-zero labels of a flat array, a label -> index table (None if too sparse), areas."""
    top = int(a.max()) if a.size else 0
    if top <= 4 * a.size + 1024:
        counts = np.bincount(a, minlength=top + 1)
        ids = np.flatnonzero(counts[1:]) + 1
        lut = np.zeros(top + 1, np.int64)
        lut[ids] = np.arange(ids.size)
        return ids.astype(np.int64), lut, counts[ids].astype(np.int64)
    ids, counts = np.unique(a[a != 0], return_counts=True)
    return ids.astype(np.int64), None, counts.astype(np.int64)


def _match(ov: Overlaps, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matches (indices into ids, IoU) with IoU >= threshold."""
    iou = ov.pair_iou
    keep = iou >= threshold
    ti, pi, iou = ov.pair_true[keep], ov.pair_pred[keep], iou[keep]
    if ti.size == 0:
        return ti, pi, iou
    # pairs whose true and pred each appear once are matched without an assignment
    t_once = np.bincount(ti)[ti] == 1
    p_once = np.bincount(pi)[pi] == 1
    simple = t_once & p_once
    out_t, out_p, out_iou = [ti[simple]], [pi[simple]], [iou[simple]]
    rest = ~simple
    if rest.any():
        rt, rp, riou = ti[rest], pi[rest], iou[rest]
        ut, rt_idx = np.unique(rt, return_inverse=True)
        up, rp_idx = np.unique(rp, return_inverse=True)
        n_min = min(ut.size, up.size)
        # cost: every match (IoU >= t) counts 1, ties broken by IoU (< 1/2 in total)
        cost = np.zeros((ut.size, up.size))
        cost[rt_idx, rp_idx] = -1.0 - riou / (2.0 * n_min)
        rows, cols = linear_sum_assignment(cost)
        ok = cost[rows, cols] < 0
        rows, cols = rows[ok], cols[ok]
        lookup = {(a, b): v for a, b, v in zip(rt_idx, rp_idx, riou, strict=False)}
        out_t.append(ut[rows])
        out_p.append(up[cols])
        out_iou.append(np.array([lookup[(a, b)] for a, b in zip(rows, cols, strict=False)], float))
    return np.concatenate(out_t), np.concatenate(out_p), np.concatenate(out_iou)


def match_labels(
    true: np.ndarray, pred: np.ndarray, threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Match true and predicted masks one-to-one at an IoU threshold.

    Parameters
    ----------
    true, pred : ndarray of int
        Label images of the same shape (2D or 3D), 0 = background.
    threshold : float
        Minimum IoU of a match.

    Returns
    -------
    true_labels, pred_labels : ndarray of int64
        Matched labels (``true_labels[i]`` matches ``pred_labels[i]``), sorted by
        true label.
    iou : ndarray of float64
        IoU of each match.
    """
    ov = overlaps(true, pred)
    ti, pi, iou = _match(ov, threshold)
    order = np.argsort(ti, kind="stable")
    return ov.true_ids[ti[order]], ov.pred_ids[pi[order]], iou[order]


def average_precision(
    true: np.ndarray, pred: np.ndarray, thresholds: tuple[float, ...] | list[float] | float = (0.5, 0.75, 0.9)
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cellpose "average precision" ``TP / (TP + FP + FN)`` at IoU thresholds.

    Parameters
    ----------
    true, pred : ndarray of int
        Label images of the same shape (2D or 3D), 0 = background.
    thresholds : float or sequence of float
        IoU thresholds.

    Returns
    -------
    ap, tp, fp, fn : ndarray, shape (len(thresholds),)
        AP (float64; 1.0 when both images are empty) and the counts (int64).
    """
    th = np.atleast_1d(np.asarray(thresholds, dtype=float))
    ov = overlaps(true, pred)
    n_true, n_pred = ov.true_ids.size, ov.pred_ids.size
    tp = np.array([_match(ov, t)[0].size for t in th], np.int64)
    fp = n_pred - tp
    fn = n_true - tp
    denom = tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(denom > 0, tp / np.maximum(denom, 1), 1.0)
    return ap, tp, fp, fn


def aggregated_jaccard_index(true: np.ndarray, pred: np.ndarray) -> float:
    """Aggregated Jaccard index (Kumar et al. 2017).

    Each true mask is paired with the predicted mask of highest IoU (if any
    overlaps): its intersection is added to ``C`` and its union to ``U``; a true
    mask without overlap adds its area to ``U``. Predicted masks never paired add
    their area to ``U``. ``AJI = C / U``.

    Parameters
    ----------
    true, pred : ndarray of int
        Label images of the same shape (2D or 3D), 0 = background.

    Returns
    -------
    float
        The index in [0, 1]; 1.0 when both images are empty.
    """
    ov = overlaps(true, pred)
    if ov.true_ids.size == 0 and ov.pred_ids.size == 0:
        return 1.0
    iou = ov.pair_iou
    # best pair per true mask: sort by (true, -iou) and take the first of each true
    order = np.lexsort((-iou, ov.pair_true))
    pt, pp, pin = ov.pair_true[order], ov.pair_pred[order], ov.pair_inter[order]
    first = np.ones(pt.size, bool)
    first[1:] = pt[1:] != pt[:-1]
    bt, bp, bi = pt[first], pp[first], pin[first]
    inter_sum = int(bi.sum())
    union_sum = int((ov.true_area[bt] + ov.pred_area[bp] - bi).sum())
    unpaired_true = np.ones(ov.true_ids.size, bool)
    unpaired_true[bt] = False
    union_sum += int(ov.true_area[unpaired_true].sum())
    used = np.zeros(ov.pred_ids.size, bool)
    used[bp] = True
    union_sum += int(ov.pred_area[~used].sum())
    return inter_sum / union_sum if union_sum else 1.0

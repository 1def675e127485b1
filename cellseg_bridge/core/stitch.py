"""Stitch 2D label planes into 3D objects by IoU between consecutive planes.

The rule of Cellpose's ``utils.stitch3D``, walking down the planes: a mask of
plane ``z + 1`` takes the label of the mask of plane ``z`` (already stitched)
with which its IoU is highest, if that IoU is at least ``threshold`` and the
plane-``z`` mask has no other plane-``z+1`` mask with a higher IoU; otherwise it
gets a new label. Unlike Cellpose (whose counter restarts after empty planes),
new labels are always unused ones, so objects in planes separated by an empty
plane never share a label by accident.
"""

from __future__ import annotations

import numpy as np

__all__ = ["stitch_planes", "iou_pairs"]


def iou_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every overlapping pair of labels ``(a_label, b_label, iou)`` (background excluded)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"label images differ in shape: {a.shape} and {b.shape}")
    a = a.ravel().astype(np.int64)
    b = b.ravel().astype(np.int64)
    both = (a > 0) & (b > 0)
    if not both.any():
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0)
    la, ca = np.unique(a[a > 0], return_counts=True)
    lb, cb = np.unique(b[b > 0], return_counts=True)
    pairs, inter = np.unique(np.stack([a[both], b[both]]), axis=1, return_counts=True)
    area_a = ca[np.searchsorted(la, pairs[0])]
    area_b = cb[np.searchsorted(lb, pairs[1])]
    iou = inter / (area_a + area_b - inter)
    return pairs[0], pairs[1], iou


def stitch_planes(labels: np.ndarray, threshold: float = 0.25) -> np.ndarray:
    """Relabel a ``(Z, Y, X)`` stack of independent 2D label planes as 3D objects.

    Parameters
    ----------
    labels : ndarray of int, shape (Z, Y, X)
        Each plane labelled on its own (0 = background).
    threshold : float
        Minimum IoU for a mask to continue an object of the plane above.

    Returns
    -------
    ndarray of uint32, shape (Z, Y, X)
        Labels unique across the stack (not necessarily consecutive).
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be (Z, Y, X), got shape {labels.shape}")
    out = np.zeros(labels.shape, np.uint32)
    next_label = 1
    for z in range(labels.shape[0]):
        cur = labels[z].astype(np.int64)
        ids = np.unique(cur[cur > 0])
        if ids.size == 0:
            continue
        mapping = {}
        if z > 0 and out[z - 1].any():
            ca, pb, iou = iou_pairs(cur, out[z - 1])
            keep = iou >= threshold
            ca, pb, iou = ca[keep], pb[keep], iou[keep]
            if iou.size:
                # for each previous-plane object, only its best current mask(s) may continue it
                best_prev: dict[int, float] = {}
                for _c, p, v in zip(ca, pb, iou):
                    best_prev[p] = max(best_prev.get(p, 0.0), v)
                best_cur: dict[int, tuple[float, int]] = {}
                for c, p, v in zip(ca, pb, iou):
                    if v < best_prev[p]:
                        continue
                    if c not in best_cur or v > best_cur[c][0] or (v == best_cur[c][0] and p < best_cur[c][1]):
                        best_cur[c] = (v, p)
                mapping = {int(c): int(p) for c, (v, p) in best_cur.items()}
        lut = np.zeros(int(ids.max()) + 1, np.uint32)
        for i in ids:
            i = int(i)
            if i in mapping:
                lut[i] = mapping[i]
            else:
                lut[i] = next_label
                next_label += 1
        next_label = max(next_label, int(lut.max()) + 1)
        out[z] = lut[cur]
    return out

"""Link the labels of a time-lapse into tracks by overlap, so that a cell keeps one label over time.

Pure arrays, no I/O (``segment --track`` writes the results, :mod:`cellseg_bridge.batch.scene_outputs`).

The rule (lineage-free: no divisions or merges, every cell belongs to one track):

1. Frame ``t`` is compared with every track still open: seen last in frame ``t - 1``, or up to
   ``max_gap`` frames earlier (a cell the segmentation missed for a while). A track is compared
   through its last mask.
2. The overlap of a track and a cell of frame ``t`` is their IoU (intersection over union of
   pixels, or voxels for 3D labels).
3. Tracks and cells are paired by an optimal assignment that maximises the summed IoU
   (:func:`scipy.optimize.linear_sum_assignment`); a pair below ``iou_threshold`` is not a link.
   When a track from ``t - 1`` and a track seen before a gap overlap a cell equally, the recent one
   wins.
4. A paired cell continues its track; an unpaired cell starts a new one; a track unseen for more
   than ``max_gap`` frames is closed.

Track ids are ``1, 2, ...`` in order of first appearance (then of the cell's label), and the
linked label image holds the track id as every cell's value. IoU linking needs cells to overlap
themselves from frame to frame: cells moving by less than about half their diameter per frame
(IoU of two equal disks half a diameter apart: 0.24; the default threshold is 0.1); across a gap a
cell must still overlap its last mask.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from cellseg_bridge.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["TrackResult", "link_labels", "overlap_iou"]

#: Added to the cost of a pair per frame of gap, so that equal overlaps go to the recent track.
_GAP_PENALTY = 1e-9


@dataclass
class TrackResult:
    """Labels linked over time.

    Attributes
    ----------
    labels : numpy.ndarray
        The input's shape; every cell holds its track id (``uint16``, ``uint32`` beyond 65535 tracks).
    track_of : list of dict of int to int
        Per frame, the track id of each label of the input.
    n_tracks : int
        Number of tracks.
    n_gap_links : int
        Links that skipped at least one frame.
    """

    labels: np.ndarray
    track_of: list[dict[int, int]] = field(default_factory=list)
    n_tracks: int = 0
    n_gap_links: int = 0

    def lengths(self) -> np.ndarray:
        """Number of frames in which each track (1..n_tracks) has a cell."""
        counts = np.zeros(self.n_tracks + 1, np.int64)
        for frame in self.track_of:
            np.add.at(counts, np.fromiter(frame.values(), np.int64, len(frame)), 1)
        return counts[1:]


def overlap_iou(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every label of ``a`` with every label of ``b`` (same shape), as a dense matrix.

    Returns
    -------
    labels_a, labels_b : numpy.ndarray
        The non-zero labels of ``a`` and of ``b``, ascending.
    iou : numpy.ndarray
        ``(len(labels_a), len(labels_b))`` float64.
    """
    la, lb, rows, cols, values = _overlaps(a, b)
    iou = np.zeros((la.size, lb.size), np.float64)
    iou[rows, cols] = values
    return la, lb, iou


def _overlaps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Labels of ``a`` and ``b`` and the IoU of every overlapping pair: (labels_a, labels_b, rows, cols, iou)."""
    a = np.asarray(a).ravel()
    b = np.asarray(b).ravel()
    la, ca = np.unique(a[a > 0], return_counts=True)
    lb, cb = np.unique(b[b > 0], return_counts=True)
    both = (a > 0) & (b > 0)
    if not both.any():
        empty = np.zeros(0, np.int64)
        return la, lb, empty, empty, np.zeros(0, np.float64)
    ia = np.searchsorted(la, a[both]).astype(np.int64)
    ib = np.searchsorted(lb, b[both]).astype(np.int64)
    pairs, inter = np.unique(ia * lb.size + ib, return_counts=True)
    rows, cols = np.divmod(pairs, lb.size)
    return la, lb, rows, cols, inter / (ca[rows] + cb[cols] - inter)


def _assign(tracks: np.ndarray, cells: np.ndarray, cost: np.ndarray) -> list[tuple[int, int]]:
    """Optimal pairs (track index, cell index) of a sparse cost list, one small problem per connected group."""
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if tracks.size == 0:
        return []
    rows, row_of = np.unique(tracks, return_inverse=True)
    cols, col_of = np.unique(cells, return_inverse=True)
    n_r = rows.size
    graph = coo_matrix((np.ones(tracks.size), (row_of, n_r + col_of)), shape=(n_r + cols.size,) * 2)
    _, group = connected_components(graph, directed=False)
    pairs: list[tuple[int, int]] = []
    for g in np.unique(group[row_of]):
        edges = np.flatnonzero(group[row_of] == g)
        r_ids, r_local = np.unique(row_of[edges], return_inverse=True)
        c_ids, c_local = np.unique(col_of[edges], return_inverse=True)
        block = np.zeros((r_ids.size, c_ids.size))  # 0: no link (costs of links are negative)
        block[r_local, c_local] = cost[edges]
        for i, j in zip(*linear_sum_assignment(block)):
            if block[i, j] < 0:
                pairs.append((int(rows[r_ids[i]]), int(cols[c_ids[j]])))
    return pairs


def link_labels(labels: object, *, iou_threshold: float = 0.1, max_gap: int = 1) -> TrackResult:
    """Link labels across the first axis (time) by overlap; see the module notes for the rule.

    Parameters
    ----------
    labels : array_like
        ``(T, ...)`` integer labels per frame (0 = background), e.g. ``(T, Y, X)`` or
        ``(T, Z, Y, X)``; label values need not agree between frames.
    iou_threshold : float
        Smallest IoU of a link, in ``(0, 1]``.
    max_gap : int
        Frames a track may skip, ``>= 0``.

    Returns
    -------
    TrackResult

    Raises
    ------
    InputError
        Not integer labels, fewer than 2 dimensions, or options out of range.
    """
    lab = np.asarray(labels)
    if lab.ndim < 2 or lab.dtype.kind not in "iu":
        raise InputError(f"tracking needs integer labels with a time axis first, got {lab.dtype} {lab.shape}")
    if not 0 < iou_threshold <= 1:
        raise InputError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    if max_gap < 0:
        raise InputError(f"max_gap must be >= 0, got {max_gap}")
    open_tracks: dict[int, tuple[int, int]] = {}  # track -> (last frame, its label there)
    track_of: list[dict[int, int]] = []
    n_tracks = n_gap = 0
    for t in range(lab.shape[0]):
        current = np.unique(lab[t])
        current = current[current > 0]
        open_tracks = {k: v for k, v in open_tracks.items() if t - v[0] - 1 <= max_gap}
        frame_map: dict[int, int] = {}
        if open_tracks and current.size:
            # candidate links (track, cell of this frame, cost = -IoU + gap penalty) at or above the threshold
            t_idx, c_idx, costs = [], [], []
            tracks = sorted(open_tracks)
            for last in sorted({open_tracks[k][0] for k in tracks}):
                group = [k for k in tracks if open_tracks[k][0] == last]
                la, lb, rows, cols, iou = _overlaps(lab[last], lab[t])
                track_at = np.zeros(la.size, np.int64)
                track_at[np.searchsorted(la, [open_tracks[k][1] for k in group])] = group
                keep = (iou >= iou_threshold) & (track_at[rows] > 0)
                t_idx.append(track_at[rows[keep]])
                c_idx.append(np.searchsorted(current, lb[cols[keep]]))
                costs.append(-iou[keep] + _GAP_PENALTY * (t - last - 1))
            for track, j in _assign(np.concatenate(t_idx), np.concatenate(c_idx), np.concatenate(costs)):
                n_gap += int(open_tracks[track][0] < t - 1)
                frame_map[int(current[j])] = track
        for value in current.tolist():
            if value not in frame_map:
                n_tracks += 1
                frame_map[value] = n_tracks
        for value, track in frame_map.items():
            open_tracks[track] = (t, value)
        track_of.append(frame_map)
    out = np.zeros(lab.shape, np.uint16 if n_tracks < 65536 else np.uint32)
    for t, frame_map in enumerate(track_of):
        if frame_map:
            keys = np.fromiter(frame_map.keys(), np.int64, len(frame_map))
            lut = np.zeros(int(keys.max()) + 1, out.dtype)
            lut[keys] = np.fromiter(frame_map.values(), np.int64, len(frame_map))
            out[t] = lut[lab[t]]
    log.debug("%d tracks over %d frames (%d links across gaps)", n_tracks, lab.shape[0], n_gap)
    return TrackResult(labels=out, track_of=track_of, n_tracks=n_tracks, n_gap_links=n_gap)

"""Linking labels over time: synthetic moving cells with known tracks, and the rule's edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from cellseg_bridge.core.tracking import link_labels, overlap_iou
from cellseg_bridge.errors import InputError

BOX = 32  # each cell moves inside its own box of a 4 x 4 grid, so neighbours touch but never overlap
MAX_STEP = 0.45  # step per frame, as a fraction of the cell's diameter (< half a diameter)


def moving_cells(seed: int, n_frames: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Disks wandering by random steps of < 0.45 diameters per frame; some appear, some disappear,
    one is missed in one frame (a gap). Label values are shuffled in every frame.

    Returns the (T, Y, X) labels and the ground truth (T, Y, X) cell ids (0 = background).
    """
    rng = np.random.default_rng(seed)
    grid = 4
    yy, xx = np.mgrid[: grid * BOX, : grid * BOX]
    cells = []
    for k in range(grid * grid):
        start, end = 0, n_frames
        if k in (3, 9):
            start = 5  # appears
        if k in (6, 12):
            end = 12  # disappears
        gap = 8 if k == 0 else None  # missed in one frame
        radius = rng.uniform(5, 8)
        cells.append({"box": divmod(k, grid), "r": radius, "start": start, "end": end, "gap": gap,
                      "pos": rng.uniform(radius, BOX - radius, 2),
                      "step": (0.2 if gap is not None else MAX_STEP) * 2 * radius})
    labels = np.zeros((n_frames, grid * BOX, grid * BOX), np.int32)
    truth = np.zeros_like(labels)
    for t in range(n_frames):
        values = rng.permutation(np.arange(1, 200))
        for k, c in enumerate(cells, start=1):
            if t > 0:  # a random step shorter than the limit, kept inside the box
                angle = rng.uniform(0, 2 * np.pi)
                c["pos"] = np.clip(c["pos"] + rng.uniform(0.3, 1.0) * c["step"] * np.array([np.sin(angle), np.cos(angle)]),
                                   c["r"], BOX - c["r"])
            if not c["start"] <= t < c["end"] or t == c["gap"]:
                continue
            cy, cx = c["pos"] + np.array(c["box"]) * BOX
            disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= c["r"] ** 2
            labels[t][disk] = values[k]
            truth[t][disk] = k
    return labels, truth


def link_scores(result, labels: np.ndarray, truth: np.ndarray) -> tuple[float, float, int]:
    """(fraction of true frame-to-frame pairs linked, fraction of links that are true, number of true pairs).

    A true pair is a cell's appearance and its next appearance (across a gap too).
    """
    def appearances(ids: np.ndarray, other: np.ndarray) -> dict[int, list[tuple[int, int]]]:
        out: dict[int, list[tuple[int, int]]] = {}
        for t in range(ids.shape[0]):
            for v in np.unique(ids[t][ids[t] > 0]).tolist():
                out.setdefault(v, []).append((t, int(np.bincount(other[t][ids[t] == v]).argmax())))
        return out

    true_seq = appearances(truth, labels)  # cell -> [(t, label)]
    track_of = result.track_of
    pairs = [(a, b) for seq in true_seq.values() for a, b in zip(seq, seq[1:])]
    linked = sum(track_of[a[0]][a[1]] == track_of[b[0]][b[1]] for a, b in pairs)
    pred_seq = appearances(result.labels.astype(np.int64), truth)  # track -> [(t, cell)]
    links = [(a, b) for seq in pred_seq.values() for a, b in zip(seq, seq[1:])]
    right = sum(a[1] == b[1] for a, b in links)
    return linked / len(pairs), right / max(len(links), 1), len(pairs)


def test_synthetic_moving_cells_are_linked():
    recall, precision, n_pairs = [], [], 0
    for seed in range(3):
        labels, truth = moving_cells(seed)
        result = link_labels(labels, iou_threshold=0.1, max_gap=1)
        r, p, n = link_scores(result, labels, truth)
        recall.append(r * n)
        precision.append(p)
        n_pairs += n
        assert result.n_gap_links >= 1  # the missed cell continues its track
        # every cell keeps one value: the relabelled frames equal the truth up to one renaming
        assert np.array_equal(result.labels > 0, truth > 0)
    fraction = sum(recall) / n_pairs
    print(f"tracking: {fraction:.4f} of {n_pairs} true frame-to-frame pairs linked; "
          f"precision of links {min(precision):.4f} (worst seed)")
    assert n_pairs > 800
    assert fraction >= 0.98
    assert min(precision) >= 0.98


def test_iou_matrix():
    a = np.zeros((4, 4), np.int32)
    b = np.zeros((4, 4), np.int32)
    a[:2, :2] = 5
    b[:2, 1:3] = 7
    b[3, 3] = 9
    la, lb, iou = overlap_iou(a, b)
    assert la.tolist() == [5] and lb.tolist() == [7, 9]
    assert iou[0].tolist() == [pytest.approx(2 / 6), 0.0]


def test_appear_disappear_gap_and_threshold():
    frames = np.zeros((5, 10, 10), np.int32)
    frames[0, 2:6, 2:6] = 3
    frames[1, 2:6, 3:7] = 8
    # frame 2: missed
    frames[3, 2:6, 3:7] = 1
    frames[3, 7:9, 7:9] = 2  # appears
    frames[4, 7:9, 7:9] = 4
    result = link_labels(frames, max_gap=1)
    assert result.n_tracks == 2 and result.n_gap_links == 1
    assert result.lengths().tolist() == [3, 2]
    assert set(np.unique(result.labels[:4][frames[:4] > 0])) == {1, 2}
    assert result.labels[0, 3, 3] == result.labels[3, 3, 4] == 1
    no_gap = link_labels(frames, max_gap=0)
    assert no_gap.n_tracks == 3
    strict = link_labels(frames, iou_threshold=0.9)  # only identical masks (IoU 1) link
    assert strict.n_tracks == 3 and strict.track_of[3][1] == strict.track_of[1][8] != strict.track_of[0][3]


def test_recent_track_wins_a_tie():
    frames = np.zeros((3, 6, 6), np.int32)
    frames[0, 0:3, 0:3] = 1  # track 1, missed at t=1
    frames[1, 3:6, 3:6] = 2  # track 2
    frames[2, 0:3, 3:6] = 5  # a cell overlapping both last masks by the same amount? no: by none
    frames[2, 0:3, 0:3] = 0
    result = link_labels(frames, max_gap=1)
    assert result.n_tracks == 3
    tie = np.zeros((3, 4, 8), np.int32)
    tie[0, :, 0:4] = 1  # track 1 (last seen at t=0)
    tie[1, :, 4:8] = 2  # track 2 (seen at t=1)
    tie[2, :, 2:6] = 3  # overlaps both last masks with IoU 1/3
    result = link_labels(tie, max_gap=1)
    assert result.track_of[2][3] == 2
    assert link_labels(tie[:1]).n_tracks == 1


def test_bad_input():
    with pytest.raises(InputError):
        link_labels(np.zeros((3, 4, 4), np.float32))
    with pytest.raises(InputError):
        link_labels(np.zeros((3, 4, 4), np.int32), iou_threshold=0)
    with pytest.raises(InputError):
        link_labels(np.zeros((3, 4, 4), np.int32), max_gap=-1)

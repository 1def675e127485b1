"""Seam-free merging of chunk labels: grid, ownership, pasting, split detection."""

from __future__ import annotations

import numpy as np
import pytest

from cellseg_bridge.core.chunk_merge import (
    chunk_grid,
    owned_labels,
    paste_owned,
    split_cells,
    truncated_labels,
)


def _disks(shape=(200, 230), n=60, radius=7, seed=0) -> np.ndarray:
    """Non-overlapping disks labelled 1..k (a stand-in for a perfect segmentation)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.int32)
    k = 0
    for _ in range(n * 4):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        if disk.any() and not labels[disk].any():
            k += 1
            labels[disk] = k
        if k == n:
            break
    return labels


def _relabel(a: np.ndarray) -> np.ndarray:
    _, inv = np.unique(a, return_inverse=True)
    return inv.reshape(a.shape)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to a renumbering of the labels."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return pairs.shape[1] == np.unique(a).size == np.unique(b).size and np.array_equal(a == 0, b == 0)


def test_grid_cores_partition_the_plane_and_regions_add_the_overlap():
    shape = (200, 230)
    chunks = chunk_grid(shape, 64, 10)
    count = np.zeros(shape, int)
    for c in chunks:
        count[c.core] += 1
        (ry, rx), (cy, cx) = c.region, c.core
        assert ry.start == max(0, cy.start - 10) and ry.stop == min(shape[0], cy.stop + 10)
        assert rx.start == max(0, cx.start - 10) and rx.stop == min(shape[1], cx.stop + 10)
        assert cy.stop - cy.start <= 64 and cx.stop - cx.start <= 64
    assert (count == 1).all()
    assert [c.index for c in chunks] == sorted(c.index for c in chunks)  # raster order
    with pytest.raises(ValueError):
        chunk_grid(shape, 0, 10)


def _merge(truth: np.ndarray, chunk_size: int, overlap: int) -> tuple[np.ndarray, int]:
    """Merge 'segmentations' of each chunk that are the truth seen through the chunk (relabelled)."""
    out = np.zeros(truth.shape, np.uint32)
    nxt, dropped = 1, 0
    for c in chunk_grid(truth.shape, chunk_size, overlap):
        local = _relabel(truth[c.region])  # the chunk's own numbering
        region = out[c.region]
        nxt, _, d = paste_owned(region, local, owned_labels(local, c), nxt)
        dropped += d
    return out, nxt - 1


def test_merge_reproduces_every_cell_once_with_no_seam():
    truth = _disks()
    merged, n = _merge(truth, 50, 2 * 15)  # overlap = 2 x diameter
    assert n == truth.max()
    assert _same_partition(truth, merged)
    assert split_cells(truth, merged).size == 0
    assert np.unique(merged[merged > 0]).tolist() == list(range(1, n + 1))  # consecutive labels


def test_cells_crossing_core_borders_are_split_without_ownership():
    """The seam check can fail: pasting each core's own cells (no overlap, no ownership) splits them."""
    truth = _disks()
    naive = np.zeros(truth.shape, np.int64)
    offset = 0
    chunks = chunk_grid(truth.shape, 50, 0)
    for c in chunks:
        local = _relabel(truth[c.core])
        naive[c.core] = np.where(local > 0, local + offset, 0)
        offset += int(local.max())
    split = split_cells(truth, naive)
    touched: dict[int, int] = {}
    for c in chunks:
        for v in np.unique(truth[c.core]):
            touched[int(v)] = touched.get(int(v), 0) + 1
    crossing = {v for v, n in touched.items() if v and n > 1}
    assert split.size > 0
    assert set(split.tolist()) <= crossing


def test_ownership_by_centroid_is_exclusive():
    truth = _disks(seed=3)
    owners = {}
    for c in chunk_grid(truth.shape, 60, 30):
        crop = truth[c.region]
        for lab in owned_labels(crop, c):
            owners.setdefault(int(lab), []).append(c.index)
    # every cell is owned by exactly one chunk (the truth keeps its numbering in every crop)
    assert sorted(owners) == list(range(1, truth.max() + 1))
    assert all(len(v) == 1 for v in owners.values())


def test_paste_drops_duplicates_and_keeps_the_first_cell_on_contested_pixels():
    out = np.zeros((10, 10), np.uint32)
    out[2:6, 2:6] = 7  # a cell pasted before
    labels = np.zeros((10, 10), np.int32)
    labels[2:6, 2:7] = 1  # mostly the same cell: a duplicate
    labels[5:9, 5:9] = 2  # overlaps one pixel of the old cell
    nxt, pasted, dropped = paste_owned(out, labels, np.array([1, 2]), 8)
    assert (nxt, pasted, dropped) == (9, 1, 1)
    assert out[5, 5] == 7  # contested pixel stays with the first cell
    assert (out[5:9, 5:9] == 8).sum() == 15
    assert not (out == 1).any()


def test_truncated_labels_ignore_plane_edges():
    truth = _disks(seed=1)
    c = chunk_grid(truth.shape, 100, 5)[0]  # top-left chunk: its top and left edges are plane edges
    crop = truth[c.region]
    cut = truncated_labels(crop, c, truth.shape)
    expected = set(np.unique(np.concatenate([crop[-1], crop[:, -1]]))) - {0}
    assert set(cut.tolist()) == expected


def test_split_cells_counts_a_cell_cut_in_two():
    ref = np.zeros((6, 8), int)
    ref[1:5, 1:7] = 3
    cand = np.zeros_like(ref)
    cand[1:5, 1:4] = 1
    cand[1:5, 4:7] = 2
    assert split_cells(ref, cand).tolist() == [3]
    assert split_cells(ref, ref).size == 0

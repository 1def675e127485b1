"""Seam-free merging of labels segmented chunk by chunk (pure array algorithms).

A large plane is cut into a grid of *cores* (non-overlapping rectangles that
tile the plane); each chunk is its core grown by ``overlap`` pixels on every
side (clipped to the plane) and is segmented on its own. Merging rule:

1. **Ownership.** A cell found in a chunk is *owned* by that chunk when its
   centroid (mean pixel position, in plane coordinates) lies in the chunk's
   core. The cores partition the plane, so a cell that two chunks found
   identically (the same pixels, hence the same centroid) is owned by exactly
   one of them and is pasted whole, also where it extends into the overlap.
2. **Pasting** (:func:`paste_owned`), chunks in raster order: an owned cell
   whose pixels are already labelled for at least ``duplicate_fraction``
   (0.5) of its area is a duplicate of a cell pasted before and is dropped;
   otherwise it takes the unlabelled pixels only (the cell pasted first keeps
   contested pixels: a deterministic rule that does not depend on which worker
   finished first). New labels are consecutive, in pasting order.
3. **Truncation check** (:func:`truncated_labels`): an owned cell that touches
   an edge of its chunk that is not an edge of the plane was cut by the chunk;
   callers report it (the overlap is too small for such a cell).

With an overlap of at least twice the object diameter, the cells a chunk owns
lie whole inside it, so no cell is split at a core border. :func:`split_cells`
counts cells of a reference segmentation that were split between labels,
the seam check of the tests and benchmarks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Chunk", "chunk_grid", "owned_labels", "paste_owned", "truncated_labels", "split_cells"]


@dataclass(frozen=True)
class Chunk:
    """One chunk of a plane.

    Attributes
    ----------
    index : (int, int)
        Row and column in the grid of cores.
    core : (slice, slice)
        The core (owned region), plane coordinates.
    region : (slice, slice)
        The core grown by the overlap and clipped to the plane: what is segmented.
    """

    index: tuple[int, int]
    core: tuple[slice, slice]
    region: tuple[slice, slice]

    @property
    def origin(self) -> tuple[int, int]:
        """Plane coordinates of the region's first pixel."""
        return self.region[0].start, self.region[1].start

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of the region."""
        return (self.region[0].stop - self.region[0].start, self.region[1].stop - self.region[1].start)


def chunk_grid(shape: tuple[int, int], chunk_size: int | tuple[int, int], overlap: int) -> list[Chunk]:
    """Cut a ``(Y, X)`` plane into cores of at most ``chunk_size`` and chunks with ``overlap``.

    Cores have nearly equal sizes along each axis (``ceil(L / chunk_size)``
    cores of ``L // n`` or ``L // n + 1`` pixels), in raster order.

    Parameters
    ----------
    shape : (int, int)
        Plane size.
    chunk_size : int or (int, int)
        Largest core side.
    overlap : int
        Pixels added on each side of a core (>= 0).

    Returns
    -------
    list of Chunk
    """
    sizes = (chunk_size, chunk_size) if isinstance(chunk_size, (int, np.integer)) else tuple(chunk_size)
    if min(sizes) < 1 or overlap < 0 or min(shape) < 1:
        raise ValueError(f"bad chunk grid: shape {shape}, chunk_size {chunk_size}, overlap {overlap}")
    edges = []
    for length, size in zip(shape, sizes):
        n = max(1, math.ceil(length / int(size)))
        edges.append([length * k // n for k in range(n + 1)])
    chunks = []
    for i in range(len(edges[0]) - 1):
        for j in range(len(edges[1]) - 1):
            core = (slice(edges[0][i], edges[0][i + 1]), slice(edges[1][j], edges[1][j + 1]))
            region = tuple(
                slice(max(0, s.start - overlap), min(length, s.stop + overlap)) for s, length in zip(core, shape)
            )
            chunks.append(Chunk(index=(i, j), core=core, region=region))  # type: ignore[arg-type]
    return chunks


def _centroids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel counts and mean row / column of every label 0..max (NaN where absent)."""
    flat = labels.ravel().astype(np.intp)
    n = int(flat.max()) + 1 if flat.size else 1
    ly, lx = labels.shape
    counts = np.bincount(flat, minlength=n).astype(np.float64)
    rows = np.repeat(np.arange(ly, dtype=np.float64), lx)
    cols = np.tile(np.arange(lx, dtype=np.float64), ly)
    with np.errstate(invalid="ignore", divide="ignore"):
        cy = np.bincount(flat, weights=rows, minlength=n) / counts
        cx = np.bincount(flat, weights=cols, minlength=n) / counts
    return counts, cy, cx


def owned_labels(labels: np.ndarray, chunk: Chunk) -> np.ndarray:
    """Labels of a chunk's segmentation whose centroid lies in the chunk's core.

    Parameters
    ----------
    labels : ndarray of int, shape ``chunk.shape``
        The chunk's labels (0 = background), in region coordinates.
    chunk : Chunk

    Returns
    -------
    ndarray of int64
        Owned label values, ascending.
    """
    if labels.shape != chunk.shape:
        raise ValueError(f"labels of shape {labels.shape} for a chunk of shape {chunk.shape}")
    counts, cy, cx = _centroids(labels)
    oy, ox = chunk.origin
    cy, cx = cy + oy, cx + ox
    (sy, sx) = chunk.core
    ids = np.arange(counts.size)
    keep = (counts > 0) & (ids > 0) & (cy >= sy.start) & (cy < sy.stop) & (cx >= sx.start) & (cx < sx.stop)
    return ids[keep].astype(np.int64)


def truncated_labels(labels: np.ndarray, chunk: Chunk, plane_shape: tuple[int, int]) -> np.ndarray:
    """Labels touching an edge of the chunk's region that is not an edge of the plane."""
    (sy, sx) = chunk.region
    edges = []
    if sy.start > 0:
        edges.append(labels[0, :])
    if sy.stop < plane_shape[0]:
        edges.append(labels[-1, :])
    if sx.start > 0:
        edges.append(labels[:, 0])
    if sx.stop < plane_shape[1]:
        edges.append(labels[:, -1])
    if not edges:
        return np.zeros(0, np.int64)
    found = np.unique(np.concatenate(edges))
    return found[found > 0].astype(np.int64)


def paste_owned(
    out: np.ndarray,
    labels: np.ndarray,
    owned: np.ndarray,
    next_label: int,
    *,
    duplicate_fraction: float = 0.5,
) -> tuple[int, int, int]:
    """Paste owned cells of a chunk into the merged labels of its region (in place).

    Parameters
    ----------
    out : ndarray of uint32, shape of ``labels``
        The merged labels over the chunk's region so far; modified in place.
    labels : ndarray of int
        The chunk's own labels.
    owned : ndarray of int
        Label values to paste (:func:`owned_labels`), in the order they get new labels.
    next_label : int
        First new label value.
    duplicate_fraction : float
        An owned cell with at least this fraction of its pixels already
        labelled in ``out`` is dropped as a duplicate.

    Returns
    -------
    next_label : int
        The next free label value.
    pasted : int
        Cells pasted.
    dropped : int
        Cells dropped as duplicates.
    """
    if out.shape != labels.shape:
        raise ValueError(f"out {out.shape} and labels {labels.shape} differ")
    owned = np.asarray(owned, np.int64)
    if owned.size == 0:
        return next_label, 0, 0
    flat = labels.ravel().astype(np.intp)
    n = int(flat.max()) + 1
    area = np.bincount(flat, minlength=n)
    taken = np.bincount(flat[out.ravel() != 0], minlength=n)
    lut = np.zeros(n, np.uint64)
    keep = owned[taken[owned] < duplicate_fraction * area[owned]]
    lut[keep] = np.arange(next_label, next_label + keep.size, dtype=np.uint64)
    new = lut[flat].reshape(labels.shape)
    free = (out == 0) & (new != 0)
    out[free] = new[free].astype(out.dtype)
    return next_label + int(keep.size), int(keep.size), int(owned.size - keep.size)


def split_cells(reference: np.ndarray, labels: np.ndarray, *, min_fraction: float = 0.2) -> np.ndarray:
    """Reference cells that are split: covered by two or more labels, each on ``min_fraction`` of the cell.

    Parameters
    ----------
    reference, labels : ndarray of int, same shape
        A reference segmentation (e.g. the whole image at once) and the one checked.
    min_fraction : float
        Share of a reference cell a label must cover to count as one of its pieces.

    Returns
    -------
    ndarray of int64
        Reference label values that are split, ascending.
    """
    if reference.shape != labels.shape:
        raise ValueError(f"shapes differ: {reference.shape} and {labels.shape}")
    both = (reference != 0) & (labels != 0)
    ref = reference[both].astype(np.int64)
    lab = labels[both].astype(np.int64)
    if ref.size == 0:
        return np.zeros(0, np.int64)
    pairs, counts = np.unique(np.stack([ref, lab]), axis=1, return_counts=True)
    area = np.bincount(reference.ravel().astype(np.intp))
    big = counts >= min_fraction * area[pairs[0]]
    ids, pieces = np.unique(pairs[0][big], return_counts=True)
    return ids[pieces >= 2].astype(np.int64)

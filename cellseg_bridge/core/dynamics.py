"""Mask reconstruction from flows: follow the flows, cluster end points, clean up.

Long module: one algorithm (Cellpose's ``compute_masks``) whose numba kernels and steps share
its conventions and are tested together; split, its pieces would not be usable alone.

This is the Cellpose 3.1 post-processing (``compute_masks``), re-implemented for
speed with numba. The rules, and where they come from:

1. **Dynamics.** Only pixels with ``cellprob > cellprob_threshold`` move. The
   field they follow is ``dP * (cellprob > threshold) / 5`` (``dP`` is the
   network output, i.e. 5 x the unit flows; the flow is zero outside the cell
   pixels). Each of ``niter`` (200) Euler steps adds the bilinearly (3D:
   trilinearly) interpolated field at the current position and clamps the
   position to the image. In 2D the arithmetic is, operation for operation, the
   one of Cellpose 3.1 on CPU (float32 positions and field, the mixed float32 /
   float64 interpolation its numba code compiles to), so the end points are
   bit-identical to Cellpose's.
2. **Clustering.** End points are truncated to integer bins and histogrammed.
   Seeds are bins with more than 10 end points that equal the maximum of their
   5x5 (3D: 5x5x5) neighbourhood. Each seed grows 5 times by one pixel (3x3 /
   3x3x3 dilation) inside an 11x11 (11x11x11) window around it, keeping only
   bins with more than 2 end points. Seeds are labelled in increasing order of
   their count (ties: raster order), so where grown regions overlap the seed with
   more end points wins. Each moving pixel gets the label of its end bin.
3. Masks larger than ``max_size_fraction`` (0.4) of the image are dropped and
   the labels are renumbered by first appearance in raster order.
4. **Flow QC.** Flows are recomputed from the masks
   (:func:`~cellseg_bridge.core.flows.masks_to_flows`); masks whose mean (over
   their pixels) squared error against ``dP / 5``, summed over the axes, exceeds
   ``flow_threshold`` (0.4) are dropped. Cellpose skips this step in 3D; we run
   it in 2D and 3D.
5. **Clean-up** (Cellpose's ``fill_holes_and_remove_small_masks``): masks with
   fewer than ``min_size`` (15) pixels are dropped; then, in label order, the
   holes of each mask are filled (background not face-connected to the border of
   its bounding box; 3D fill in 3D); masks that became smaller than
   ``min_size`` are dropped; labels are renumbered 1..n by first appearance.

Checked against Cellpose 3.1.1.3 (CPU, numba 0.68) on a 1024x1024 image of 463
dsb2018 nuclei, with its ground-truth flows x 5 and with Gaussian noise (sigma 1)
added: the 2D end points are bit-identical and the masks of ``compute_masks`` +
``fill_holes_and_remove_small_masks`` are identical, flow QC on and off.

Deviations from Cellpose, on purpose:

* flow QC runs in 3D too (Cellpose skips it when ``do_3D``);
* 3D dynamics use trilinear interpolation in pixel coordinates, the exact
  analogue of the 2D rule (Cellpose 3D goes through ``grid_sample`` with a
  slightly inconsistent normalisation);
* Cellpose removes small masks by position in its table of counts, which picks
  the wrong labels when labels have gaps (after flow QC); we remove by label.
* non-finite flow values count as 0 (Cellpose would carry NaN positions).

Speed: the Euler integration advances chunks of pixels together (``prange``
over chunks) and retires a pixel as soon as its exact float32 state repeats (a
fixed point, or a 2-cycle detected against the state two steps back): the step
is a deterministic function of the position, so the state after ``niter`` steps
is then known (for a 2-cycle, from the parity of the remaining steps). End
points are bit-identical to the full ``niter`` steps. In 3D, cycles of any length
are detected with Brent's algorithm.
"""

from __future__ import annotations

import logging

import numpy as np
from numba import njit, prange, set_parallel_chunksize

from cellseg_bridge.core.flows import _flows_into, prepare_labels
from cellseg_bridge.errors import InputError

__all__ = [
    "follow_flows",
    "get_masks",
    "flow_error",
    "remove_bad_flow_masks",
    "fill_holes_and_remove_small_masks",
    "compute_masks",
]

logger = logging.getLogger(__name__)

_SEED_MIN_HITS = 10  # a seed bin needs more than this many end points
_GROW_MIN_HITS = 2  # a grown bin needs more than this many end points
_SEED_WINDOW = 5  # local-maximum neighbourhood of a seed
_GROW_RADIUS = 5  # growth iterations = half-size of the 11-px window


# --------------------------------------------------------------------------- dynamics


@njit(cache=True, inline="always")
def _step2(f, y, x, lx, ly1, lx1, ymax, xmax):
    """One Euler step in 2D on the flat interleaved field ``f`` (Y * X * 2).

    Bilinear interpolation, rounded to float32, added to the float32 position,
    clamped to the image. The interpolation reproduces, operation for operation,
    the mixed precision of Cellpose 3.1's CPU ``map_coordinates`` as numba types
    it: the fractional parts ``y, x`` are float32, ``1 - y`` and ``1 - x`` are
    float64, and a product of two float32 values (``I * y``, ``(I * y) * x``) is
    float32. ``f`` holds float32 values (possibly stored as float64): a product of
    two float32 values is exact in float64, so rounding it once to float32 gives
    the float32 product. Positions are never negative: ``int`` is the floor.
    """
    iy = int(y)
    ix = int(x)
    fy = np.float64(y) - iy  # exact: the float32 fraction
    fx = np.float64(x) - ix
    y0 = iy if iy < ly1 else ly1
    x0 = ix if ix < lx1 else lx1
    o00 = 2 * (y0 * lx + x0)
    o01 = o00 + 2 if x0 < lx1 else o00
    o10 = o00 + 2 * lx if y0 < ly1 else o00
    o11 = o10 + 2 if x0 < lx1 else o10
    gy = 1.0 - fy
    gx = 1.0 - fx
    vy = (np.float64(f[o00]) * gy * gx + np.float64(f[o01]) * gy * fx
          + np.float64(np.float32(np.float64(f[o10]) * fy)) * gx
          + np.float64(np.float32(np.float64(np.float32(np.float64(f[o11]) * fy)) * fx)))
    vx = (np.float64(f[o00 + 1]) * gy * gx + np.float64(f[o01 + 1]) * gy * fx
          + np.float64(np.float32(np.float64(f[o10 + 1]) * fy)) * gx
          + np.float64(np.float32(np.float64(np.float32(np.float64(f[o11 + 1]) * fy)) * fx)))
    ny = y + np.float32(vy)
    nx = x + np.float32(vx)
    if ny < 0:
        ny = np.float32(0.0)
    if ny > ymax:
        ny = ymax
    if nx < 0:
        nx = np.float32(0.0)
    if nx > xmax:
        nx = xmax
    return ny, nx


_CHUNK = 4096  # points per parallel work item
_FLOAT64_FIELD_MAX = 2**26  # pixels up to which the field is held in float64


@njit(cache=True, nogil=True)
def _run_chunk_2d(field, py, px, start, stop, niter):
    """Integrate points ``start:stop`` of ``(py, px)`` in place for ``niter`` steps.

    All points of the chunk advance together (independent steps keep the CPU's
    pipelines busy); the active ones are compacted as they go. A point is retired
    as soon as its exact float32 state repeats: the new state equals the current
    one (fixed point) or the one before (2-cycle). The step is a deterministic
    function of the state, so the state after ``niter`` steps is then known (for a
    2-cycle, from the parity of the remaining steps).
    """
    ly, lx = field.shape[0], field.shape[1]
    f = field.reshape(-1)
    ly1 = ly - 1
    lx1 = lx - 1
    ymax = np.float32(ly1)
    xmax = np.float32(lx1)
    n = stop - start
    idx = np.empty(n, np.int64)
    cy = np.empty(n, np.float32)  # state at step t
    cx = np.empty(n, np.float32)
    qy = np.empty(n, np.float32)  # state at step t - 1
    qx = np.empty(n, np.float32)
    for i in range(n):
        idx[i] = start + i
        cy[i] = py[start + i]
        cx[i] = px[start + i]
        qy[i] = np.nan
        qx[i] = np.nan
    active = n
    for t in range(1, niter + 1):
        w = 0
        for i in range(active):
            y0 = cy[i]
            x0 = cx[i]
            y, x = _step2(f, y0, x0, lx, ly1, lx1, ymax, xmax)
            if y == y0 and x == x0:  # fixed point
                py[idx[i]] = y
                px[idx[i]] = x
            elif y == qy[i] and x == qx[i]:  # 2-cycle: y <-> y0 alternate
                if (niter - t) % 2 == 1:
                    y = y0
                    x = x0
                py[idx[i]] = y
                px[idx[i]] = x
            else:
                idx[w] = idx[i]
                cy[w] = y
                cx[w] = x
                qy[w] = y0
                qx[w] = x0
                w += 1
        active = w
        if active == 0:
            break
    for i in range(active):
        py[idx[i]] = cy[i]
        px[idx[i]] = cx[i]


@njit(cache=True, parallel=True)
def _steps_2d(field, py, px, niter):
    n = py.shape[0]
    nchunk = (n + _CHUNK - 1) // _CHUNK
    for c in prange(nchunk):
        _run_chunk_2d(field, py, px, c * _CHUNK, min(n, (c + 1) * _CHUNK), niter)


@njit(cache=True, inline="always")
def _step3(field, z, y, x, lz, ly, lx, zmax, ymax, xmax):
    iz = int(z)
    iy = int(y)
    ix = int(x)
    fz = np.float64(z) - iz
    fy = np.float64(y) - iy
    fx = np.float64(x) - ix
    z0 = min(lz - 1, max(0, iz))
    y0 = min(ly - 1, max(0, iy))
    x0 = min(lx - 1, max(0, ix))
    z1 = min(lz - 1, z0 + 1)
    y1 = min(ly - 1, y0 + 1)
    x1 = min(lx - 1, x0 + 1)
    gz = 1.0 - fz
    gy = 1.0 - fy
    gx = 1.0 - fx
    w000 = gz * gy * gx
    w001 = gz * gy * fx
    w010 = gz * fy * gx
    w011 = gz * fy * fx
    w100 = fz * gy * gx
    w101 = fz * gy * fx
    w110 = fz * fy * gx
    w111 = fz * fy * fx
    vz = (np.float64(field[z0, y0, x0, 0]) * w000 + np.float64(field[z0, y0, x1, 0]) * w001
          + np.float64(field[z0, y1, x0, 0]) * w010 + np.float64(field[z0, y1, x1, 0]) * w011
          + np.float64(field[z1, y0, x0, 0]) * w100 + np.float64(field[z1, y0, x1, 0]) * w101
          + np.float64(field[z1, y1, x0, 0]) * w110 + np.float64(field[z1, y1, x1, 0]) * w111)
    vy = (np.float64(field[z0, y0, x0, 1]) * w000 + np.float64(field[z0, y0, x1, 1]) * w001
          + np.float64(field[z0, y1, x0, 1]) * w010 + np.float64(field[z0, y1, x1, 1]) * w011
          + np.float64(field[z1, y0, x0, 1]) * w100 + np.float64(field[z1, y0, x1, 1]) * w101
          + np.float64(field[z1, y1, x0, 1]) * w110 + np.float64(field[z1, y1, x1, 1]) * w111)
    vx = (np.float64(field[z0, y0, x0, 2]) * w000 + np.float64(field[z0, y0, x1, 2]) * w001
          + np.float64(field[z0, y1, x0, 2]) * w010 + np.float64(field[z0, y1, x1, 2]) * w011
          + np.float64(field[z1, y0, x0, 2]) * w100 + np.float64(field[z1, y0, x1, 2]) * w101
          + np.float64(field[z1, y1, x0, 2]) * w110 + np.float64(field[z1, y1, x1, 2]) * w111)
    nz = min(zmax, max(np.float32(0.0), z + np.float32(vz)))
    ny = min(ymax, max(np.float32(0.0), y + np.float32(vy)))
    nx = min(xmax, max(np.float32(0.0), x + np.float32(vx)))
    return nz, ny, nx


@njit(cache=True, nogil=True)
def _run_chunk_3d(field, pz, py, px, start, stop, niter):
    """Integrate points ``start:stop`` in 3D; exact cycles (any length) end a trajectory early.

    Brent's algorithm: the state is compared with a checkpoint moved to the
    current state after 1, 2, 4, ... steps; an exact repeat after ``lam`` steps
    means a cycle of length ``lam``, and only ``(niter - t) % lam`` steps remain.
    """
    lz, ly, lx = field.shape[0], field.shape[1], field.shape[2]
    zmax = np.float32(lz - 1)
    ymax = np.float32(ly - 1)
    xmax = np.float32(lx - 1)
    for j in range(start, stop):
        z = pz[j]
        y = py[j]
        x = px[j]
        tz = z
        ty = y
        tx = x
        power = 1
        lam = 0
        t = 0
        while t < niter:
            z, y, x = _step3(field, z, y, x, lz, ly, lx, zmax, ymax, xmax)
            t += 1
            lam += 1
            if z == tz and y == ty and x == tx:
                for _ in range((niter - t) % lam):
                    z, y, x = _step3(field, z, y, x, lz, ly, lx, zmax, ymax, xmax)
                break
            if lam == power:
                tz = z
                ty = y
                tx = x
                power *= 2
                lam = 0
        pz[j] = z
        py[j] = y
        px[j] = x


@njit(cache=True, parallel=True)
def _steps_3d(field, pz, py, px, niter):
    n = py.shape[0]
    nchunk = (n + _CHUNK - 1) // _CHUNK
    for c in prange(nchunk):
        _run_chunk_3d(field, pz, py, px, c * _CHUNK, min(n, (c + 1) * _CHUNK), niter)


@njit(cache=True, parallel=True)
def _make_field(dp, mask, out):
    """``out[i, c] = (dp[c, i] * mask[i]) / 5`` computed in float32.

    Non-finite flows count as 0 (they would make positions NaN, i.e. undefined).
    """
    n = mask.shape[0]
    five = np.float32(5.0)
    nblock = (n + 65535) // 65536
    for b in prange(nblock):
        for i in range(b * 65536, min(n, (b + 1) * 65536)):
            for c in range(dp.shape[0]):
                v = dp[c, i] if mask[i] else np.float32(0.0)
                if not np.isfinite(v):
                    v = np.float32(0.0)
                out[i, c] = v / five


def _check_flows(dP: np.ndarray, shape: tuple[int, ...], name: str = "dP") -> np.ndarray:
    dP = np.asarray(dP)
    if len(shape) not in (2, 3) or dP.shape != (len(shape), *shape):
        raise InputError(
            f"{name} must have shape (ndim, *image_shape) = {(len(shape), *shape)}, got {dP.shape}"
        )
    if not np.issubdtype(dP.dtype, np.floating):
        dP = dP.astype(np.float32)
    return dP


def follow_flows(dP: np.ndarray, mask: np.ndarray, niter: int = 200) -> np.ndarray:
    """Move the pixels of ``mask`` along the flow field by Euler integration.

    Parameters
    ----------
    dP : ndarray of float, shape (2, Y, X) or (3, Z, Y, X)
        Flows at network-output scale (5 x unit flows, as the network predicts).
        The field followed is ``dP * mask / 5`` (zero outside ``mask``).
    mask : ndarray of bool, shape (Y, X) or (Z, Y, X)
        Pixels that move (in Cellpose: ``cellprob > cellprob_threshold``).
    niter : int
        Number of Euler steps (200 in Cellpose; scale by 1/rescale when the
        flows were computed on a resampled image).

    Returns
    -------
    p : ndarray of float32, shape (ndim, N)
        Final positions of the ``N = mask.sum()`` moving pixels, in the order of
        ``np.nonzero(mask)``; positions are clamped to the image.

    Raises
    ------
    InputError
        If the shapes do not fit or ``niter`` is negative.
    """
    mask = np.asarray(mask, dtype=bool)
    dP = _check_flows(dP, mask.shape)
    niter = int(niter)
    if niter < 0:
        raise InputError(f"niter must be >= 0, got {niter}")
    ndim = mask.ndim
    inds = np.nonzero(mask)
    p = np.empty((ndim, inds[0].size), np.float32)
    for k in range(ndim):
        p[k] = inds[k]
    if p.shape[1] == 0 or niter == 0:
        return p
    # (dP * mask) / 5 in float32 as Cellpose, laid out (..., ndim) so that the
    # components of a corner are adjacent. float64 holds the same values (exact
    # conversion) and saves conversions per read; it is used unless the image is huge.
    dtype = np.float64 if mask.size <= _FLOAT64_FIELD_MAX else np.float32
    field = np.empty((mask.size, ndim), dtype)
    _make_field(dP.astype(np.float32, copy=False).reshape(ndim, -1), mask.reshape(-1), field)
    field = field.reshape(*mask.shape, ndim)
    # chunks differ in cost (slow trajectories cluster): threads take them one by one
    previous = set_parallel_chunksize(1)
    try:
        if ndim == 2:
            _steps_2d(field, p[0], p[1], niter)
        else:
            _steps_3d(field, p[0], p[1], p[2], niter)
    finally:
        set_parallel_chunksize(previous)
    return p


# --------------------------------------------------------------------------- clustering


@njit(cache=True, nogil=True)
def _cluster_2d(by, bx, ly, lx, seed_min, grow_min, half_seed, radius):
    n = by.shape[0]
    hist = np.zeros((ly, lx), np.int32)
    for j in range(n):
        hist[by[j], bx[j]] += 1
    # seeds: local maxima of the histogram (window clipped at the image border)
    sy = []
    sx = []
    sc = []
    for y in range(ly):
        for x in range(lx):
            h = hist[y, x]
            if h <= seed_min:
                continue
            ok = True
            for yy in range(max(0, y - half_seed), min(ly, y + half_seed + 1)):
                for xx in range(max(0, x - half_seed), min(lx, x + half_seed + 1)):
                    if hist[yy, xx] > h:
                        ok = False
                        break
                if not ok:
                    break
            if ok:
                sy.append(y)
                sx.append(x)
                sc.append(h)
    nseed = len(sy)
    counts = np.empty(nseed, np.int64)
    for k in range(nseed):
        counts[k] = sc[k]
    order = np.argsort(counts, kind="mergesort")  # ascending, stable
    binlab = np.zeros((ly, lx), np.int32)
    win = 2 * radius + 1
    good = np.zeros((win, win), np.bool_)
    cur = np.zeros((win, win), np.bool_)
    nxt = np.zeros((win, win), np.bool_)
    for rank in range(nseed):
        k = order[rank]
        cy = sy[k] - radius
        cx = sx[k] - radius
        for a in range(win):
            for b in range(win):
                yy = cy + a
                xx = cx + b
                good[a, b] = (0 <= yy < ly and 0 <= xx < lx) and hist[yy, xx] > grow_min
                cur[a, b] = False
        cur[radius, radius] = True
        for _ in range(radius):
            for a in range(win):
                for b in range(win):
                    v = False
                    if good[a, b]:
                        for da in range(max(0, a - 1), min(win, a + 2)):
                            for db in range(max(0, b - 1), min(win, b + 2)):
                                if cur[da, db]:
                                    v = True
                    nxt[a, b] = v
            for a in range(win):
                for b in range(win):
                    cur[a, b] = nxt[a, b]
        for a in range(win):
            for b in range(win):
                if cur[a, b]:
                    binlab[cy + a, cx + b] = rank + 1
    lab = np.empty(n, np.int32)
    for j in range(n):
        lab[j] = binlab[by[j], bx[j]]
    return lab, nseed


@njit(cache=True, nogil=True)
def _cluster_3d(bz, by, bx, lz, ly, lx, seed_min, grow_min, half_seed, radius):
    n = by.shape[0]
    hist = np.zeros((lz, ly, lx), np.int32)
    for j in range(n):
        hist[bz[j], by[j], bx[j]] += 1
    sz = []
    sy = []
    sx = []
    sc = []
    for z in range(lz):
        for y in range(ly):
            for x in range(lx):
                h = hist[z, y, x]
                if h <= seed_min:
                    continue
                ok = True
                for zz in range(max(0, z - half_seed), min(lz, z + half_seed + 1)):
                    for yy in range(max(0, y - half_seed), min(ly, y + half_seed + 1)):
                        for xx in range(max(0, x - half_seed), min(lx, x + half_seed + 1)):
                            if hist[zz, yy, xx] > h:
                                ok = False
                                break
                        if not ok:
                            break
                    if not ok:
                        break
                if ok:
                    sz.append(z)
                    sy.append(y)
                    sx.append(x)
                    sc.append(h)
    nseed = len(sy)
    counts = np.empty(nseed, np.int64)
    for k in range(nseed):
        counts[k] = sc[k]
    order = np.argsort(counts, kind="mergesort")
    binlab = np.zeros((lz, ly, lx), np.int32)
    win = 2 * radius + 1
    good = np.zeros((win, win, win), np.bool_)
    cur = np.zeros((win, win, win), np.bool_)
    nxt = np.zeros((win, win, win), np.bool_)
    for rank in range(nseed):
        k = order[rank]
        cz = sz[k] - radius
        cy = sy[k] - radius
        cx = sx[k] - radius
        for a in range(win):
            for b in range(win):
                for c in range(win):
                    zz = cz + a
                    yy = cy + b
                    xx = cx + c
                    good[a, b, c] = (0 <= zz < lz and 0 <= yy < ly and 0 <= xx < lx) and hist[zz, yy, xx] > grow_min
                    cur[a, b, c] = False
        cur[radius, radius, radius] = True
        for _ in range(radius):
            for a in range(win):
                for b in range(win):
                    for c in range(win):
                        v = False
                        if good[a, b, c]:
                            for da in range(max(0, a - 1), min(win, a + 2)):
                                for db in range(max(0, b - 1), min(win, b + 2)):
                                    for dc in range(max(0, c - 1), min(win, c + 2)):
                                        if cur[da, db, dc]:
                                            v = True
                        nxt[a, b, c] = v
            cur[:, :, :] = nxt
        for a in range(win):
            for b in range(win):
                for c in range(win):
                    if cur[a, b, c]:
                        binlab[cz + a, cy + b, cx + c] = rank + 1
    lab = np.empty(n, np.int32)
    for j in range(n):
        lab[j] = binlab[bz[j], by[j], bx[j]]
    return lab, nseed


@njit(cache=True, nogil=True)
def _drop_big_and_renumber(labels_flat, nlab, max_pixels):
    """Drop labels with more than ``max_pixels`` pixels; renumber by first appearance."""
    counts = np.zeros(nlab + 1, np.int64)
    for v in labels_flat:
        counts[v] += 1
    remap = np.zeros(nlab + 1, np.int32)
    for k in range(1, nlab + 1):
        if counts[k] > max_pixels:
            remap[k] = -1
    nxt = 0
    for i in range(labels_flat.shape[0]):
        v = labels_flat[i]
        if v == 0:
            continue
        r = remap[v]
        if r == 0:
            nxt += 1
            remap[v] = nxt
            r = nxt
        labels_flat[i] = r if r > 0 else 0
    return nxt


def get_masks(p: np.ndarray, mask: np.ndarray, *, max_size_fraction: float = 0.4) -> np.ndarray:
    """Cluster the end points of the flow dynamics into labelled masks.

    Parameters
    ----------
    p : ndarray of float, shape (ndim, N)
        Final positions of the moving pixels, as returned by :func:`follow_flows`.
    mask : ndarray of bool, shape (Y, X) or (Z, Y, X)
        The moving pixels (``p[:, j]`` belongs to the j-th pixel of ``np.nonzero(mask)``).
    max_size_fraction : float
        Masks with more pixels than this fraction of the image are dropped.

    Returns
    -------
    labels : ndarray of int32, same shape as ``mask``
        0 = background, 1..n = masks numbered by first appearance in raster order.

    Raises
    ------
    InputError
        If ``p`` does not fit ``mask``.
    """
    mask = np.asarray(mask, dtype=bool)
    shape = mask.shape
    ndim = mask.ndim
    p = np.asarray(p)
    npix = int(mask.sum())
    if ndim not in (2, 3) or p.shape != (ndim, npix):
        raise InputError(f"p must have shape ({ndim}, {npix}) for this mask, got {p.shape}")
    labels = np.zeros(shape, np.int32)
    if npix == 0:
        return labels
    bins = [np.clip(p[k].astype(np.int64), 0, shape[k] - 1) for k in range(ndim)]
    if ndim == 2:
        lab, nseed = _cluster_2d(bins[0], bins[1], shape[0], shape[1], _SEED_MIN_HITS,
                                 _GROW_MIN_HITS, _SEED_WINDOW // 2, _GROW_RADIUS)
    else:
        lab, nseed = _cluster_3d(bins[0], bins[1], bins[2], shape[0], shape[1], shape[2],
                                 _SEED_MIN_HITS, _GROW_MIN_HITS, _SEED_WINDOW // 2, _GROW_RADIUS)
    labels[mask] = lab
    flat = labels.reshape(-1)
    n = _drop_big_and_renumber(flat, nseed, float(np.prod(shape)) * float(max_size_fraction))
    logger.debug("get_masks: %d seeds, %d masks kept", nseed, n)
    return labels


# --------------------------------------------------------------------------- flow QC


@njit(cache=True, nogil=True)
def _error_sums(labels_flat, mu, dp, nlab):
    ndim = mu.shape[0]
    err = np.zeros(nlab + 1, np.float64)
    cnt = np.zeros(nlab + 1, np.int64)
    five = np.float32(5.0)
    for i in range(labels_flat.shape[0]):
        v = labels_flat[i]
        if v == 0:
            continue
        cnt[v] += 1
        for c in range(ndim):
            d = mu[c, i] - np.float64(dp[c, i] / five)
            err[v] += d * d
    return err, cnt


def flow_error(masks: np.ndarray, dP: np.ndarray) -> np.ndarray:
    """Mean squared difference between network flows and flows recomputed from masks.

    Parameters
    ----------
    masks : ndarray of int, shape (Y, X) or (Z, Y, X)
        Labelled masks, 0 = background.
    dP : ndarray of float, shape (ndim, *masks.shape)
        Flows at network-output scale (5 x unit flows); compared as ``dP / 5``.

    Returns
    -------
    errors : ndarray of float64, shape (masks.max(),)
        ``errors[k - 1]`` = mean over the pixels of mask k of the squared
        difference summed over the axes (NaN for labels absent from ``masks``).

    Raises
    ------
    InputError
        If the shapes do not fit.
    """
    labels = prepare_labels(masks)
    dP = _check_flows(dP, labels.shape)
    nlab = int(labels.max()) if labels.size else 0
    if nlab == 0:
        return np.zeros(0, np.float64)
    mu = _flows_into(labels, np.float64)
    ndim = labels.ndim
    dp32 = np.ascontiguousarray(dP, dtype=np.float32).reshape(ndim, -1)
    err, cnt = _error_sums(labels.reshape(-1), mu.reshape(ndim, -1), dp32, nlab)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (err / cnt)[1:]


def remove_bad_flow_masks(masks: np.ndarray, dP: np.ndarray, threshold: float = 0.4) -> np.ndarray:
    """Set to 0 the masks whose :func:`flow_error` exceeds ``threshold`` (in place if possible).

    Parameters
    ----------
    masks : ndarray of int
        Labelled masks; not renumbered.
    dP : ndarray of float
        Flows at network-output scale.
    threshold : float
        Largest accepted mean squared flow error.

    Returns
    -------
    masks : ndarray
        The masks with the inconsistent ones removed.
    """
    errors = flow_error(masks, dP)
    bad = np.zeros(errors.size + 1, bool)
    bad[1:] = errors > threshold
    if bad.any():
        logger.debug("flow QC drops %d of %d masks", int(bad.sum()), errors.size)
        masks[bad[masks]] = 0
    return masks


# --------------------------------------------------------------------------- clean-up


@njit(cache=True, nogil=True)
def _fill_box(vol, lab, z0, z1, y0, y1, x0, x1, stack, is2d):
    """Fill the holes of mask ``lab`` inside its bounding box (in place).

    Holes are background voxels not face-connected (4-connected in 2D, 6 in 3D)
    to the border of the box; they take the label ``lab`` whatever they held.
    """
    d = z1 - z0 + 1
    h = y1 - y0 + 1
    w = x1 - x0 + 1
    outside = np.zeros((d, h, w), np.bool_)
    top = 0
    for z in range(d):
        for y in range(h):
            for x in range(w):
                edge = y == 0 or y == h - 1 or x == 0 or x == w - 1
                if not is2d:
                    edge = edge or z == 0 or z == d - 1
                if edge and vol[z0 + z, y0 + y, x0 + x] != lab:
                    outside[z, y, x] = True
                    stack[top, 0] = z
                    stack[top, 1] = y
                    stack[top, 2] = x
                    top += 1
    while top > 0:
        top -= 1
        z = stack[top, 0]
        y = stack[top, 1]
        x = stack[top, 2]
        for k in range(6):
            zz = z + (k == 0) - (k == 1)
            yy = y + (k == 2) - (k == 3)
            xx = x + (k == 4) - (k == 5)
            if 0 <= zz < d and 0 <= yy < h and 0 <= xx < w and not outside[zz, yy, xx] \
                    and vol[z0 + zz, y0 + yy, x0 + xx] != lab:
                outside[zz, yy, xx] = True
                stack[top, 0] = zz
                stack[top, 1] = yy
                stack[top, 2] = xx
                top += 1
    for z in range(d):
        for y in range(h):
            for x in range(w):
                if not outside[z, y, x]:
                    vol[z0 + z, y0 + y, x0 + x] = lab


@njit(cache=True, nogil=True)
def _remove_small_and_renumber(flat, nlab, min_size):
    """Zero labels with fewer than ``min_size`` pixels; renumber by first appearance."""
    counts = np.zeros(nlab + 1, np.int64)
    for v in flat:
        counts[v] += 1
    remap = np.zeros(nlab + 1, np.int32)
    for k in range(1, nlab + 1):
        if counts[k] < min_size:
            remap[k] = -1
    nxt = 0
    for i in range(flat.shape[0]):
        v = flat[i]
        if v == 0:
            continue
        r = remap[v]
        if r == 0:
            nxt += 1
            remap[v] = nxt
            r = nxt
        flat[i] = r if r > 0 else 0
    return nxt


@njit(cache=True, nogil=True)
def _fill_all(vol, nlab, is2d):
    box = _boxes(vol, nlab)
    big = 0
    for lab in range(1, nlab + 1):
        if box[lab, 1] >= box[lab, 0]:
            n = (box[lab, 1] - box[lab, 0] + 1) * (box[lab, 3] - box[lab, 2] + 1) * (box[lab, 5] - box[lab, 4] + 1)
            big = max(big, n)
    stack = np.empty((big, 3), np.int64)
    for lab in range(1, nlab + 1):
        if box[lab, 1] >= box[lab, 0]:
            _fill_box(vol, lab, box[lab, 0], box[lab, 1], box[lab, 2], box[lab, 3],
                      box[lab, 4], box[lab, 5], stack, is2d)


@njit(cache=True, nogil=True)
def _boxes(vol, nlab):
    box = np.empty((nlab + 1, 6), np.int64)
    for k in range(3):
        box[:, 2 * k] = vol.shape[k]
        box[:, 2 * k + 1] = -1
    for z in range(vol.shape[0]):
        for y in range(vol.shape[1]):
            for x in range(vol.shape[2]):
                lab = vol[z, y, x]
                if lab == 0:
                    continue
                box[lab, 0] = min(box[lab, 0], z)
                box[lab, 1] = max(box[lab, 1], z)
                box[lab, 2] = min(box[lab, 2], y)
                box[lab, 3] = max(box[lab, 3], y)
                box[lab, 4] = min(box[lab, 4], x)
                box[lab, 5] = max(box[lab, 5], x)
    return box


def fill_holes_and_remove_small_masks(masks: np.ndarray, min_size: int = 15) -> np.ndarray:
    """Drop masks smaller than ``min_size``, fill holes of the others, renumber.

    As Cellpose 3.1: masks with fewer than ``min_size`` pixels are removed and the
    rest renumbered (by first appearance in raster order); then, in label order,
    the holes of each mask are filled (a hole is background not face-connected to
    the border of the mask's bounding box; in 3D the fill is 3D), a filled hole
    taking over whatever it covered (also an enclosed mask); finally masks that
    became smaller than ``min_size`` are removed and labels renumbered again.

    Parameters
    ----------
    masks : ndarray of int, shape (Y, X) or (Z, Y, X)
        Labelled masks, 0 = background.
    min_size : int
        Minimum number of pixels (voxels) per mask; 0 or less disables the removal
        (holes are still filled).

    Returns
    -------
    labels : ndarray of int32
        A new label image, labels 1..n consecutive.
    """
    labels = prepare_labels(masks).astype(np.int32, copy=True)
    nlab = int(labels.max()) if labels.size else 0
    if nlab == 0:
        return labels
    min_size = max(int(min_size), 0)
    flat = labels.reshape(-1)
    nlab = _remove_small_and_renumber(flat, nlab, min_size)
    vol = labels if labels.ndim == 3 else labels[np.newaxis]
    _fill_all(vol, nlab, labels.ndim == 2)
    _remove_small_and_renumber(flat, nlab, min_size)
    return labels


# --------------------------------------------------------------------------- pipeline


def compute_masks(
    dP: np.ndarray,
    cellprob: np.ndarray,
    *,
    cellprob_threshold: float = 0.0,
    flow_threshold: float | None = 0.4,
    niter: int = 200,
    min_size: int = 15,
    max_size_fraction: float = 0.4,
) -> np.ndarray:
    """Labelled masks from network flows and cell probability (Cellpose dynamics).

    Parameters
    ----------
    dP : ndarray of float, shape (2, Y, X) or (3, Z, Y, X)
        Flows at **network-output scale**, i.e. 5 x the unit flows of
        :func:`~cellseg_bridge.core.flows.masks_to_flows` (what the network
        predicts); pixels move along ``dP / 5``.
    cellprob : ndarray of float, shape (Y, X) or (Z, Y, X)
        Cell probability logits; pixels with ``cellprob > cellprob_threshold`` move.
    cellprob_threshold : float
        Threshold on ``cellprob`` (logit scale; 0 = probability 0.5).
    flow_threshold : float or None
        Largest accepted mean squared flow error per mask; 0 or None disables the QC.
    niter : int
        Number of Euler steps (200).
    min_size : int
        Masks with fewer pixels are removed; 0 or less disables the removal.
    max_size_fraction : float
        Masks larger than this fraction of the image are removed.

    Returns
    -------
    labels : ndarray of uint16 (uint32 if more than 65535 masks)
        0 = background, 1..n consecutive.

    Raises
    ------
    InputError
        If the shapes of ``dP`` and ``cellprob`` do not fit.
    """
    cellprob = np.asarray(cellprob)
    if cellprob.ndim not in (2, 3):
        raise InputError(f"cellprob must be 2D or 3D, got shape {cellprob.shape}")
    dP = _check_flows(dP, cellprob.shape)
    mask = cellprob > cellprob_threshold
    if not mask.any():
        logger.info("compute_masks: no pixel above cellprob_threshold %s", cellprob_threshold)
        return np.zeros(cellprob.shape, np.uint16)
    p = follow_flows(dP, mask, niter)
    labels = get_masks(p, mask, max_size_fraction=max_size_fraction)
    if flow_threshold and labels.max() > 0:
        labels = remove_bad_flow_masks(labels, dP, float(flow_threshold))
    labels = fill_holes_and_remove_small_masks(labels, min_size)
    n = int(labels.max())
    return labels.astype(np.uint16 if n < 2**16 else np.uint32)

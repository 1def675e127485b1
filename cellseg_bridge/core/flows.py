"""Flow fields from label images (the Cellpose training target and flow-QC reference).

For every mask, "heat" is released at the mask pixel nearest to the mask's
centroid and diffused inside the mask; the flow at a pixel is the normalised
central-difference gradient of that heat, so flows point toward the source.

The rules follow Cellpose 3.1 (``masks_to_flows_cpu``):

* the source is the mask pixel nearest to the mean of the mask's pixel
  coordinates (ties: the first such pixel in raster order);
* each diffusion step adds 1 at the source, then replaces every mask pixel by
  the sum of its 3x3 (3D: 3x3x3) neighbourhood divided by 9 (27), pixels outside
  the mask counting as 0 (a Jacobi step: all reads use the previous values);
* the number of steps for a mask is ``2 * sum(extent + 2)`` over its axes, the
  extent being the size of its bounding box (2D: ``2 * (h + 2 + w + 2)``);
* flows are central differences of the raw heat (no log: Cellpose 3 removed it),
  neighbours outside the mask counting as 0, divided by ``1e-60 + |gradient|``.

Design: one numba pass collects bounding boxes and coordinate sums of all
labels; a second, parallel pass (``prange`` over labels) runs the diffusion of
each mask on a dense, zero-padded copy of its bounding box (contiguous loops the
compiler vectorises). Masks never share pixels, so each writes its own output
pixels without locking. In 2D the arithmetic (local box coordinates for the
centroid, the order of the 9 terms of each sum) is Cellpose's, so the float64
flows are bit-identical to Cellpose 3.1.1.3's (checked on a 1024x1024 image of
463 nuclei).
"""

from __future__ import annotations

import logging

import numpy as np
from numba import njit, prange

from cellseg_bridge.errors import InputError

__all__ = ["masks_to_flows", "prepare_labels"]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- labels


def prepare_labels(masks: np.ndarray, name: str = "masks") -> np.ndarray:
    """Validate a 2D/3D label image and return it as a C-contiguous integer array.

    Labels need not be consecutive. Very sparse labels (maximum label larger than
    the number of pixels) are renumbered consecutively in increasing order, so that
    per-label tables stay small; this keeps every mask and its relative order.

    Parameters
    ----------
    masks : ndarray
        Integer or boolean label image, 0 = background.
    name : str
        Name used in error messages.

    Returns
    -------
    ndarray of int32 or int64
        The labels, C-contiguous.

    Raises
    ------
    InputError
        If the array is not 2D/3D, not integer/boolean, or has negative labels.
    """
    masks = np.asarray(masks)
    if masks.ndim not in (2, 3):
        raise InputError(f"{name} must be a 2D or 3D label image, got shape {masks.shape}")
    if masks.dtype == bool:
        return np.ascontiguousarray(masks, dtype=np.int32)
    if not np.issubdtype(masks.dtype, np.integer):
        raise InputError(f"{name} must hold integer labels, got dtype {masks.dtype}")
    if masks.size == 0:
        return np.ascontiguousarray(masks, dtype=np.int32)
    lo, hi = int(masks.min()), int(masks.max())
    if lo < 0:
        raise InputError(f"{name} has negative labels (minimum {lo})")
    if hi > max(masks.size, 1):
        _, inverse = np.unique(masks, return_inverse=True)
        masks = inverse.reshape(masks.shape)
        # np.unique puts 0 first when present; otherwise shift so labels start at 1
        if lo > 0:
            masks = masks + 1
        hi = int(masks.max())
    dtype = np.int32 if hi < 2**31 - 1 else np.int64
    return np.ascontiguousarray(masks, dtype=dtype)


# --------------------------------------------------------------------------- 2D kernels


@njit(cache=True, nogil=True)
def _stats_2d(masks: np.ndarray, nlab: int) -> tuple:
    """Bounding boxes, pixel counts and coordinate sums of labels 1..nlab."""
    ly, lx = masks.shape
    box = np.empty((nlab + 1, 4), np.int64)
    box[:, 0] = ly
    box[:, 1] = -1
    box[:, 2] = lx
    box[:, 3] = -1
    count = np.zeros(nlab + 1, np.int64)
    sums = np.zeros((nlab + 1, 2), np.float64)
    for y in range(ly):
        for x in range(lx):
            lab = masks[y, x]
            if lab == 0:
                continue
            if y < box[lab, 0]:
                box[lab, 0] = y
            if y > box[lab, 1]:
                box[lab, 1] = y
            if x < box[lab, 2]:
                box[lab, 2] = x
            if x > box[lab, 3]:
                box[lab, 3] = x
            count[lab] += 1
            sums[lab, 0] += y
            sums[lab, 1] += x
    return box, count, sums


@njit(cache=True, nogil=True)
def _heat_2d(masks, lab, y0, y1, x0, x1, sy, sx, n):
    """Diffuse heat in the padded bounding box of one mask; return (T, inside).

    Coordinates are local to the box padded by 1 (as in Cellpose), so that the
    centroid, the distances to it and hence the choice of the source among
    equidistant pixels are bit-identical to Cellpose's.
    """
    hh = y1 - y0 + 3
    ww = x1 - x0 + 3
    my = (sy - n * (y0 - 1)) / n  # exact integer sums, then one division
    mx = (sx - n * (x0 - 1)) / n
    inside = np.zeros((hh, ww), np.float64)
    best = np.inf
    cy = 0
    cx = 0
    for y in range(1, hh - 1):
        for x in range(1, ww - 1):
            if masks[y0 + y - 1, x0 + x - 1] == lab:
                inside[y, x] = 1.0
                d = (x - mx) ** 2 + (y - my) ** 2
                if d < best:
                    best = d
                    cy = y
                    cx = x
    niter = 2 * (hh + ww)
    heat = np.zeros((hh, ww), np.float64)
    new = np.zeros((hh, ww), np.float64)
    ninth = 1.0 / 9.0
    for _ in range(niter):
        heat[cy, cx] += 1.0
        for y in range(1, hh - 1):
            for x in range(1, ww - 1):
                # the 9 terms in Cellpose's order, for bit-identical sums
                s = (heat[y, x] + heat[y - 1, x] + heat[y + 1, x] + heat[y, x - 1] + heat[y, x + 1]
                     + heat[y - 1, x - 1] + heat[y - 1, x + 1] + heat[y + 1, x - 1] + heat[y + 1, x + 1])
                new[y, x] = inside[y, x] * (ninth * s)
        heat, new = new, heat
    return heat, inside


@njit(cache=True, parallel=True)
def _flows_2d(masks, box, count, sums, out):
    nlab = count.shape[0] - 1
    for lab in prange(1, nlab + 1):
        if count[lab] == 0:
            continue
        y0, y1, x0, x1 = box[lab, 0], box[lab, 1], box[lab, 2], box[lab, 3]
        heat, inside = _heat_2d(masks, lab, y0, y1, x0, x1, sums[lab, 0], sums[lab, 1], count[lab])
        for y in range(1, y1 - y0 + 2):
            for x in range(1, x1 - x0 + 2):
                if inside[y, x] == 0.0:
                    continue
                dy = heat[y + 1, x] - heat[y - 1, x]
                dx = heat[y, x + 1] - heat[y, x - 1]
                norm = 1e-60 + np.sqrt(dy * dy + dx * dx)
                out[0, y0 + y - 1, x0 + x - 1] = dy / norm
                out[1, y0 + y - 1, x0 + x - 1] = dx / norm


# --------------------------------------------------------------------------- 3D kernels


@njit(cache=True, nogil=True)
def _stats_3d(masks: np.ndarray, nlab: int) -> tuple:
    """Bounding boxes, pixel counts and coordinate sums of labels 1..nlab (3D)."""
    lz, ly, lx = masks.shape
    box = np.empty((nlab + 1, 6), np.int64)
    for k in range(3):
        box[:, 2 * k] = masks.shape[k]
        box[:, 2 * k + 1] = -1
    count = np.zeros(nlab + 1, np.int64)
    sums = np.zeros((nlab + 1, 3), np.float64)
    for z in range(lz):
        for y in range(ly):
            for x in range(lx):
                lab = masks[z, y, x]
                if lab == 0:
                    continue
                if z < box[lab, 0]:
                    box[lab, 0] = z
                if z > box[lab, 1]:
                    box[lab, 1] = z
                if y < box[lab, 2]:
                    box[lab, 2] = y
                if y > box[lab, 3]:
                    box[lab, 3] = y
                if x < box[lab, 4]:
                    box[lab, 4] = x
                if x > box[lab, 5]:
                    box[lab, 5] = x
                count[lab] += 1
                sums[lab, 0] += z
                sums[lab, 1] += y
                sums[lab, 2] += x
    return box, count, sums


@njit(cache=True, nogil=True)
def _heat_3d(masks, lab, b, mz, my, mx):
    z0, z1, y0, y1, x0, x1 = b[0], b[1], b[2], b[3], b[4], b[5]
    dd = z1 - z0 + 3
    hh = y1 - y0 + 3
    ww = x1 - x0 + 3
    inside = np.zeros((dd, hh, ww), np.float64)
    best = np.inf
    cz = 0
    cy = 0
    cx = 0
    for z in range(z0, z1 + 1):
        for y in range(y0, y1 + 1):
            for x in range(x0, x1 + 1):
                if masks[z, y, x] == lab:
                    inside[z - z0 + 1, y - y0 + 1, x - x0 + 1] = 1.0
                    d = (z - mz) ** 2 + (y - my) ** 2 + (x - mx) ** 2
                    if d < best:
                        best = d
                        cz = z - z0 + 1
                        cy = y - y0 + 1
                        cx = x - x0 + 1
    niter = 2 * (dd + hh + ww)
    heat = np.zeros((dd, hh, ww), np.float64)
    s1 = np.zeros((dd, hh, ww), np.float64)
    s2 = np.zeros((dd, hh, ww), np.float64)
    w27 = 1.0 / 27.0
    for _ in range(niter):
        heat[cz, cy, cx] += 1.0
        for z in range(1, dd - 1):
            for y in range(1, hh - 1):
                for x in range(1, ww - 1):
                    s1[z, y, x] = heat[z, y, x - 1] + heat[z, y, x] + heat[z, y, x + 1]
        for z in range(1, dd - 1):
            for y in range(1, hh - 1):
                for x in range(1, ww - 1):
                    s2[z, y, x] = s1[z, y - 1, x] + s1[z, y, x] + s1[z, y + 1, x]
        for z in range(1, dd - 1):
            for y in range(1, hh - 1):
                for x in range(1, ww - 1):
                    heat[z, y, x] = inside[z, y, x] * (w27 * (s2[z - 1, y, x] + s2[z, y, x] + s2[z + 1, y, x]))
    return heat, inside


@njit(cache=True, parallel=True)
def _flows_3d(masks, box, count, sums, out):
    nlab = count.shape[0] - 1
    for lab in prange(1, nlab + 1):
        if count[lab] == 0:
            continue
        b = box[lab]
        mz = sums[lab, 0] / count[lab]
        my = sums[lab, 1] / count[lab]
        mx = sums[lab, 2] / count[lab]
        heat, inside = _heat_3d(masks, lab, b, mz, my, mx)
        z0, y0, x0 = b[0], b[2], b[4]
        for z in range(1, b[1] - z0 + 2):
            for y in range(1, b[3] - y0 + 2):
                for x in range(1, b[5] - x0 + 2):
                    if inside[z, y, x] == 0.0:
                        continue
                    dz = heat[z + 1, y, x] - heat[z - 1, y, x]
                    dy = heat[z, y + 1, x] - heat[z, y - 1, x]
                    dx = heat[z, y, x + 1] - heat[z, y, x - 1]
                    norm = 1e-60 + np.sqrt(dz * dz + dy * dy + dx * dx)
                    out[0, z0 + z - 1, y0 + y - 1, x0 + x - 1] = dz / norm
                    out[1, z0 + z - 1, y0 + y - 1, x0 + x - 1] = dy / norm
                    out[2, z0 + z - 1, y0 + y - 1, x0 + x - 1] = dx / norm


# --------------------------------------------------------------------------- public


def _flows_into(labels: np.ndarray, dtype: type) -> np.ndarray:
    """Flows of already prepared labels, in the given float dtype."""
    out = np.zeros((labels.ndim, *labels.shape), dtype)
    if labels.size == 0:
        return out
    nlab = int(labels.max())
    if nlab == 0:
        return out
    if labels.ndim == 2:
        box, count, sums = _stats_2d(labels, nlab)
        _flows_2d(labels, box, count, sums, out)
    else:
        box, count, sums = _stats_3d(labels, nlab)
        _flows_3d(labels, box, count, sums, out)
    return out


def masks_to_flows(masks: np.ndarray, *, dtype: type = np.float32) -> np.ndarray:
    """Compute Cellpose flow fields from a label image.

    Parameters
    ----------
    masks : ndarray of int, shape (Y, X) or (Z, Y, X)
        Label image, 0 = background, 1, 2, ... = masks (labels need not be
        consecutive).
    dtype : numpy float type
        Output type. The computation is in float64; with ``np.float64`` the 2D
        flows are bit-identical to Cellpose 3.1's ``masks_to_flows`` on CPU.

    Returns
    -------
    flows : ndarray, shape (2, Y, X) or (3, Z, Y, X)
        Unit vectors ``(dY, dX)`` (3D: ``(dZ, dY, dX)``) pointing toward each
        mask's diffusion source; 0 outside masks (and where the gradient is
        exactly 0, such as one-pixel masks). This is the flow itself; the
        network is trained to output 5 times it.

    Raises
    ------
    InputError
        If ``masks`` is not a 2D/3D integer (or boolean) array.

    Notes
    -----
    In 3D the heat diffuses in 3D (3x3x3 mean), which is what the flow dynamics
    in 3D follow. Cellpose 3.1 on CPU instead sums 2D flows of the YX, ZX and ZY
    slices without renormalising; see the module docstring for the rules.
    """
    labels = prepare_labels(masks)
    return _flows_into(labels, np.dtype(dtype).type)

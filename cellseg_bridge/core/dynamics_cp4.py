"""Mask reconstruction as Cellpose 4 does it (the Cellpose-SAM models' post-processing).

Cellpose 4.2 changed two steps of Cellpose 3.1's ``compute_masks`` (learned from its
``dynamics.py``; :mod:`cellseg_bridge.core.dynamics` reproduces 3.1 and keeps the steps that
did not change):

1. **Euler steps.** Positions live in normalised coordinates ``u = 2 p / (L - 1) - 1`` and the
   flow in ``2 (dP / 5) / (L - 1)``; each step samples the flow with
   ``grid_sample(align_corners=False)`` (bilinear, zeros outside), adds it and clamps ``u`` to
   [-1, 1]. With ``align_corners=False`` the sample is taken at pixel ``p L / (L - 1) - 1/2``,
   not at ``p``: a small, position-dependent shift of where each pixel reads its flow, so
   the end points differ from Cellpose 3's (which samples at ``p``). End points are
   ``(u + 1) / 2 (L - 1)``, truncated to integers. All arithmetic in float32 through torch,
   so the result follows torch's own kernel.
2. **Flow QC** recomputes flows from the masks with one diffusion for all masks: the
   source of a mask is its mean position rounded, or the mask pixel nearest to it when that
   is outside the mask, ``2 * max(extent)`` iterations for every mask (extent = bounding-box
   height + width + 2), each pixel averaging the 9 pixels of its 3x3 neighbourhood that
   belong to its mask over 9 (float64), flows = central differences, unit length.

Clustering of end points (seeds, growth, ``max_size_fraction``), and the final hole filling
and small-mask removal are Cellpose 3's (:func:`~cellseg_bridge.core.dynamics.get_masks`,
:func:`~cellseg_bridge.core.dynamics.fill_holes_and_remove_small_masks`). 2D only: for 3D the
pipeline uses the 3D dynamics of :mod:`cellseg_bridge.core.dynamics`.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from cellseg_bridge.core.dynamics import fill_holes_and_remove_small_masks, get_masks
from cellseg_bridge.errors import InputError

__all__ = ["follow_flows_cp4", "flows_from_masks_cp4", "compute_masks_cp4"]

logger = logging.getLogger(__name__)


def follow_flows_cp4(
    dP: np.ndarray,
    mask: np.ndarray,
    niter: int = 200,
    *,
    plane_shape: tuple[int, int] | None = None,
    offset: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """End points ``(2, n)`` float32 (pixel units) of the pixels in ``mask`` after ``niter`` steps.

    ``dP`` is the network flow (5 x unit flows); it is multiplied by ``mask`` here, as
    Cellpose does. ``plane_shape`` and ``offset``: ``dP`` is a window at ``offset`` of a
    larger plane (a chunk): positions are normalised by the plane's size, as a run on the
    whole plane would, and the returned end points are window coordinates (the flow outside
    the window counts as zero).
    """
    ly, lx = mask.shape
    iy, ix = np.nonzero(mask)
    gy, gx = plane_shape if plane_shape is not None else (ly, lx)
    span = np.array([gx - 1, gy - 1], np.float64)  # (x, y) order of grid_sample
    field = torch.from_numpy(np.ascontiguousarray(dP * mask / 5.0, dtype=np.float32))
    im = torch.stack([field[1], field[0]])[None]  # (1, 2: x, y, Y, X)
    for k in range(2):
        im[:, k] *= 2.0 / span[k]
    pt = torch.zeros((1, 1, iy.size, 2), dtype=torch.float32)
    pt[0, 0, :, 0] = torch.from_numpy((ix + offset[1]).astype(np.float32))
    pt[0, 0, :, 1] = torch.from_numpy((iy + offset[0]).astype(np.float32))
    for k in range(2):
        pt[..., k] /= span[k]
    pt *= 2
    pt -= 1
    window = plane_shape is not None and (plane_shape != (ly, lx) or offset != (0, 0))
    size = torch.tensor([gx, gy], dtype=torch.float32)
    local = torch.tensor([lx, ly], dtype=torch.float32)
    shift = torch.tensor([offset[1], offset[0]], dtype=torch.float32)
    with torch.no_grad():
        for _ in range(int(niter)):
            # where grid_sample(align_corners=False) reads on the whole plane, in window coordinates
            at = pt if not window else (2 * (((pt + 1) * size - 1) / 2 - shift) + 1) / local - 1
            step = F.grid_sample(im, at, align_corners=False)  # (1, 2, 1, n)
            for k in range(2):
                pt[..., k] += step[:, k]
                torch.clamp_(pt[..., k], -1.0, 1.0)
    pt += 1
    pt *= 0.5
    for k in range(2):
        pt[..., k] *= span[k]
    end = np.stack([pt[0, 0, :, 1].numpy() - offset[0], pt[0, 0, :, 0].numpy() - offset[1]])
    np.clip(end[0], 0, ly - 1, out=end[0])
    np.clip(end[1], 0, lx - 1, out=end[1])
    return end.astype(np.float32, copy=False)


def _source(inside: np.ndarray) -> tuple[int, int]:
    """Diffusion source of one mask (box coordinates): the mean position rounded (half to even);
    if that pixel is outside the mask, the mask pixel nearest to it (first in raster order)."""
    yi, xi = np.nonzero(inside)
    cy, cx = int(np.round(yi.sum() / yi.size)), int(np.round(xi.sum() / xi.size))
    if not np.any((yi == cy) & (xi == cx)):
        k = int(((xi - cx) ** 2 + (yi - cy) ** 2).argmin())
        cy, cx = int(yi[k]), int(xi[k])
    return cy, cx


def flows_from_masks_cp4(labels: np.ndarray) -> np.ndarray:
    """Unit flows ``(2, Y, X)`` float64 of ``labels`` by Cellpose 4's diffusion (module docstring)."""
    ly, lx = labels.shape
    out = np.zeros((2, ly, lx))
    if labels.max() <= 0:
        return out
    pad = np.pad(labels.astype(np.int64), 1)
    y, x = np.nonzero(pad)
    offsets = [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)]
    wide = lx + 2
    neigh = np.stack([(y + dy) * wide + (x + dx) for dy, dx in offsets])  # (9, n) flat indices
    flat = pad.reshape(-1)
    same = flat[neigh] == flat[neigh[0]]
    slices = ndimage.find_objects(labels)
    centres, ext = [], []
    for k, slc in enumerate(slices, 1):
        if slc is None:
            continue
        cy, cx = _source(labels[slc] == k)
        centres.append((cy + slc[0].start + 1) * wide + cx + slc[1].start + 1)
        ext.append((slc[0].stop - slc[0].start) + (slc[1].stop - slc[1].start) + 2)
    t = torch.zeros(pad.size, dtype=torch.float64)
    nb = torch.from_numpy(neigh)
    centre = nb[0]
    is_same = torch.from_numpy(same).double()
    meds = torch.tensor(centres, dtype=torch.int64)
    for _ in range(2 * max(ext)):
        t[meds] += 1
        t[centre] = (t[nb] * is_same).sum(0) / 9.0
    grads = t[nb[[2, 1, 4, 3]]].numpy()
    mu = np.stack([grads[0] - grads[1], grads[2] - grads[3]])
    mu /= 1e-60 + np.sqrt((mu**2).sum(0))
    out[:, y - 1, x - 1] = mu
    return out


def _remove_bad_flow_masks(labels: np.ndarray, dP: np.ndarray, threshold: float) -> np.ndarray:
    mu = flows_from_masks_cp4(labels)
    err = ((mu - dP / 5.0) ** 2).sum(0)
    n = int(labels.max())
    sums = np.bincount(labels.ravel(), weights=err.ravel(), minlength=n + 1)
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        errors = sums / counts
    bad = np.zeros(n + 1, bool)
    bad[1:] = errors[1:] > threshold
    if bad.any():
        logger.debug("flow QC (Cellpose 4) drops %d of %d masks", int(bad.sum()), n)
        labels = labels.copy()
        labels[bad[labels]] = 0
    return labels


def compute_masks_cp4(
    dP: np.ndarray,
    cellprob: np.ndarray,
    *,
    cellprob_threshold: float = 0.0,
    flow_threshold: float | None = 0.4,
    niter: int = 200,
    min_size: int = 15,
    max_size_fraction: float = 0.4,
    plane_shape: tuple[int, int] | None = None,
    offset: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """2D masks from flows as Cellpose 4.2's ``compute_masks`` + small-mask removal.

    Parameters and result as :func:`cellseg_bridge.core.dynamics.compute_masks` (2D only);
    ``plane_shape`` / ``offset``: the flows are a window of a larger plane
    (:func:`follow_flows_cp4`), for chunked segmentation.
    """
    cellprob = np.asarray(cellprob)
    dP = np.asarray(dP)
    if cellprob.ndim != 2 or dP.shape != (2, *cellprob.shape):
        raise InputError(f"Cellpose 4 dynamics need 2D planes: dP {dP.shape}, cellprob {cellprob.shape}")
    dP = np.nan_to_num(dP.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    mask = cellprob > cellprob_threshold
    if not mask.any():
        return np.zeros(cellprob.shape, np.uint16)
    p = follow_flows_cp4(dP, mask, niter, plane_shape=plane_shape, offset=offset)
    labels = get_masks(p, mask, max_size_fraction=max_size_fraction)
    if flow_threshold and labels.max() > 0:
        labels = _remove_bad_flow_masks(labels, dP, float(flow_threshold))
    labels = fill_holes_and_remove_small_masks(labels, min_size)
    n = int(labels.max())
    return labels.astype(np.uint16 if n < 2**16 else np.uint32)

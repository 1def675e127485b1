"""labels -> ImageJ ROIs -> labels on a 2048x2048 image with 10,000 cells.

Reference: the per-cell approach of other tools (Cellpose's ROI export traces each mask
separately through pixel centres): skimage ``find_contours`` per label for export and
``skimage.draw.polygon`` per ROI for import. Ours must also be exact; the reference's
pixel agreement is printed too (it loses the outer pixel ring).
"""

from __future__ import annotations

import logging
import time

import numpy as np
from scipy import ndimage as ndi
from skimage import draw, measure

from _common import Row
from cellseg_bridge.io.roi_export import labels_to_rois
from cellseg_bridge.io.roi_import import rois_to_labels

log = logging.getLogger("benchmarks")


def tessellated_cells(shape: tuple[int, int] = (2048, 2048), n: int = 10_000, seed: int = 0) -> np.ndarray:
    """Voronoi cells around random seeds, separated by a one-pixel gap, labelled 1..n."""
    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape, dtype=np.int32)
    ys, xs = rng.integers(0, shape[0], n), rng.integers(0, shape[1], n)
    seeds[ys, xs] = np.arange(1, n + 1)
    _, (iy, ix) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    labels = seeds[iy, ix]
    edge = ndi.grey_dilation(labels, size=3) != labels
    labels[edge] = 0
    _, consecutive = np.unique(labels, return_inverse=True)
    return consecutive.reshape(shape).astype(np.int32)


def _reference(labels: np.ndarray) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    polygons = []
    for region in measure.regionprops(labels):
        y0, x0, _, _ = region.bbox
        contours = measure.find_contours(np.pad(region.image, 1).astype(np.uint8), 0.5)
        c = max(contours, key=len)
        polygons.append((region.label, c[:, 0] + y0 - 1, c[:, 1] + x0 - 1))
    back = np.zeros_like(labels)
    for lab, ys, xs in polygons:
        rr, cc = draw.polygon(ys, xs, labels.shape)
        back[rr, cc] = lab
    return time.perf_counter() - t0, back


def run() -> list[Row]:
    """Time both directions on the same label image and check exactness."""
    labels = tessellated_cells()
    n = int(labels.max())
    log.info("%d cells on %s", n, labels.shape)
    t0 = time.perf_counter()
    rois = labels_to_rois(labels)
    t_export = time.perf_counter() - t0
    t0 = time.perf_counter()
    back, _report = rois_to_labels(rois, labels.shape)
    t_import = time.perf_counter() - t0
    exact = np.array_equal(back > 0, labels > 0) and np.array_equal(back, labels)
    t_ref, ref_back = _reference(labels)
    ref_agree = float(np.mean((ref_back > 0) == (labels > 0)))
    log.info("ours exact round trip: %s; reference pixel agreement: %.4f (foreground kept: %.3f)",
             exact, ref_agree, float(((ref_back > 0) & (labels > 0)).sum() / (labels > 0).sum()))
    return [Row(f"labels_to_rois + rois_to_labels ({n} cells)", t_export + t_import, t_ref, "s",
                "per-cell skimage")]

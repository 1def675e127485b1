"""labels_to_rois / rois_to_labels take what segment() returns: (T, Z, Y, X) labels (issue 18 defect 5)."""

from __future__ import annotations

import numpy as np

from cellseg_bridge.io.roi_export import labels_to_rois
from cellseg_bridge.io.roi_import import rois_to_labels


def test_segment_shaped_labels_round_trip():
    plane = np.zeros((12, 14), np.uint16)
    plane[2:5, 3:7] = 1
    plane[7:10, 8:12] = 2
    single = plane[None, None]  # a 2D image: plain 2D ROIs, no positions
    rois = labels_to_rois(single)
    assert len(rois) == 2 and all(r.position == 0 and r.t_position == 0 for r in rois)
    back, _ = rois_to_labels(rois, shape=single.shape)
    assert np.array_equal(back, single)
    series = np.stack([plane, np.roll(plane, 1, axis=1)])[:, None]  # (T=2, Z=1, Y, X): positions along T
    rois = labels_to_rois(series)
    assert sorted({r.position for r in rois}) == [1, 2]
    back, _ = rois_to_labels(rois, shape=series.shape)  # one label per ROI: 1, 2 at t=0, 3, 4 at t=1
    assert np.array_equal(back > 0, series > 0) and np.array_equal(back[1], np.where(series[1] > 0, series[1] + 2, 0))

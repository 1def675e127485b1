"""Cellpose 4's dynamics on the flows Cellpose 4.2.1.1 fed its own (golden data of tests/data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cellseg_bridge.core.dynamics import compute_masks
from cellseg_bridge.core.dynamics_cp4 import compute_masks_cp4, follow_flows_cp4

GOLDEN = np.load(Path(__file__).parents[1] / "data" / "peer4_golden_cpsam.npz")
CASE = "rgb_256_d15"  # full-image flows; the peer ran niter int(200 / 2) = 100, flow_threshold 0.8


def test_masks_equal_cellpose4_on_its_own_flows(one_torch_thread):
    dP, cellprob, peer = GOLDEN[f"dP_{CASE}"], GOLDEN[f"cellprob_{CASE}"], GOLDEN[f"masks_{CASE}"]
    ours = compute_masks_cp4(dP, cellprob, niter=100, flow_threshold=0.8)
    assert peer.max() > 20
    np.testing.assert_array_equal(ours, peer)
    # Cellpose 3's rules give other masks on the same flows: the variant matters
    assert not np.array_equal(compute_masks(dP, cellprob, niter=100, flow_threshold=0.8), peer)


def test_window_of_the_whole_plane_is_the_plain_run(one_torch_thread):
    dP, cellprob = GOLDEN[f"dP_{CASE}"], GOLDEN[f"cellprob_{CASE}"]
    mask = cellprob > 0
    plain = follow_flows_cp4(dP, mask, 50)
    framed = follow_flows_cp4(dP, mask, 50, plane_shape=mask.shape, offset=(0, 0))
    np.testing.assert_array_equal(plain, framed)
    # a window: same end points where the flows stay inside it, up to float32 rounding
    win = (slice(64, 192), slice(48, 208))
    part = follow_flows_cp4(dP[:, win[0], win[1]], mask[win], 50, plane_shape=mask.shape, offset=(64, 48))
    inside = mask.copy()
    inside[:] = False
    inside[win] = mask[win]
    full = plain[:, inside[mask]] - np.array([[64], [48]], np.float32)
    close = np.abs(part - full).max(0) < 1e-3
    assert close.mean() > 0.9

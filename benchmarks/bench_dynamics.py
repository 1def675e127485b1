"""Mask reconstruction (``compute_masks``) against the peer's, on identical dP / cellprob.

Input: a 1024x1024 mosaic of the dsb2018 test-split fluorescence ground-truth labels (~550
real nuclei, ``_peer.mosaic``); ``dP`` = 5 x their flows (``masks_to_flows``) + Gaussian noise
(sigma 1, seed 0), ``cellprob`` = +/-5 + noise (sigma 1): flows as imperfect as a network's,
so flow QC has work to do. Reference: Cellpose 3.1.1.3 ``dynamics.compute_masks`` (niter 200,
min_size 15, the same thresholds) in its own environment through ``peer_side.py``, both on 2
threads, numba compiled before timing, best of 3. Masks equality and AP@0.5 of ours against
the peer's are logged.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from _common import Row, best_time, shared_data
from _peer import mosaic, peer_python, run_peer
from cellseg_bridge.core.dynamics import compute_masks
from cellseg_bridge.core.flows import masks_to_flows
from cellseg_bridge.core.metrics import average_precision

log = logging.getLogger("benchmarks")
SIZE = 1024
NITER = 200


def inputs(shared: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """(dP x5 with noise, cellprob, number of nuclei) on the 1024^2 label mosaic."""
    labels = mosaic(shared, SIZE, labels=True)
    rng = np.random.default_rng(0)
    dP = (5.0 * masks_to_flows(labels) + rng.normal(0.0, 1.0, (2, SIZE, SIZE))).astype(np.float32)
    cellprob = (np.where(labels > 0, 5.0, -5.0) + rng.normal(0.0, 1.0, labels.shape)).astype(np.float32)
    return dP, cellprob, int(labels.max())


def run() -> list[Row]:
    """Time ours and the peer's compute_masks, flow QC on and off."""
    shared = shared_data()
    if shared is None:
        log.warning("../shared/data not found: dynamics benchmark skipped")
        return []
    dP, cellprob, n = inputs(shared)
    ours: dict[str, tuple[float, np.ndarray]] = {}
    for name, ft in (("qc_on", 0.4), ("qc_off", 0.0)):
        def call(ft=ft):
            return compute_masks(dP, cellprob, niter=NITER, cellprob_threshold=0.0, flow_threshold=ft,
                                 min_size=15, max_size_fraction=0.4)
        masks = call()  # numba compilation outside the timing
        ours[name] = (best_time(call, 3), masks)
    if peer_python() is None:
        for name, (t, masks) in ours.items():
            log.info("ours %s: %.3f s, %d masks (no peer to compare)", name, t, int(masks.max()))
        return []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        np.save(tmp / "dP.npy", dP)
        np.save(tmp / "cellprob.npy", cellprob)
        report = run_peer(["dynamics", str(tmp), str(tmp), "--niter", str(NITER), "--repeat", "3"])
        theirs = {name: np.load(tmp / f"masks_{name}.npy") for name in ours}
    rows = []
    for name, label in (("qc_on", "flow QC on"), ("qc_off", "flow QC off")):
        t, masks = ours[name]
        equal = bool(np.array_equal(masks, theirs[name]))
        ap = average_precision(theirs[name], masks, 0.5)[0][0]
        log.info("compute_masks %s: ours %d masks, peer %d; identical %s; AP@0.5 ours vs peer %.4f",
                 label, int(masks.max()), int(theirs[name].max()), equal, ap)
        rows.append(Row(f"compute_masks 1024^2 {n} nuclei, {label}", t, report[name]["seconds"], "s",
                        "cellpose 3.1.1.3"))
    return rows

"""Cellpose-SAM against the real peer: Cellpose 4.2.1.1's own network, its file, its eval.

``tests/data/peer4_golden_cpsam_small.pth`` was written by ``benchmarks/peer4_golden.py`` with
Cellpose 4's ``CPSAM`` (small SAM encoder, seeded random weights, least-squares readout) and
``torch.save(state_dict)``; the npz holds what ``CellposeModel.eval`` returned on real dsb2018
images. Here the same file goes through our loader and ``segment()``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cellseg_bridge.core.metrics import average_precision
from cellseg_bridge.nn.vit_checkpoint import load_network
from cellseg_bridge.nn.vit_sam import CellposeSAM
from cellseg_bridge.segmentation.model import SegmentationModel
from cellseg_bridge.segmentation.pipeline import segment

DATA = Path(__file__).parents[1] / "data"
CKPT = DATA / "peer4_golden_cpsam_small.pth"
GOLDEN = np.load(DATA / "peer4_golden_cpsam.npz")
META = json.loads((DATA / "peer4_golden_cpsam.json").read_text())
#: float32 on both sides; differences come from summation order (fused attention, blending).
FLOW_ATOL = 1e-4


@pytest.fixture(scope="module")
def model() -> SegmentationModel:
    net, config = load_network(CKPT)
    return SegmentationModel(net=net, config=config, name="peer4-golden")


def read_case(shared: Path, case: str) -> np.ndarray:
    import imageio.v3 as iio

    info = META["cases"][case]
    image_id = info["image_id"]
    rgb = iio.imread(shared / "dsb2018" / "stage1_train" / image_id / "images" / f"{image_id}.png")[..., :3]
    img = rgb.astype(np.float32) if info["channels"] == "rgb" else np.ascontiguousarray(rgb[..., 0], np.float32)
    assert hashlib.sha256(img.tobytes()).hexdigest() == info["image_sha256"], "not the pixels the peer read"
    return img


def test_peer_file_loads_unchanged_with_equal_keys(model):
    state = torch.load(CKPT, weights_only=True)
    assert isinstance(model.net, CellposeSAM)
    ours = model.net.state_dict()
    assert set(ours) == set(state)
    assert all(torch.equal(ours[k], state[k]) for k in state)
    assert model.family == "cellpose-sam" and model.nchan == 3 and model.default_diameter == 30.0


def run_case(model, shared_data, case):
    info = META["cases"][case]
    img = read_case(shared_data, case)
    return segment(img, model, axes="YXC" if img.ndim == 3 else "YX", diameter=info["diameter"],
                   flow_threshold=META["effective_settings"]["flow_threshold"], precision="float32",
                   return_flows=True)


@pytest.mark.parametrize("case", META["flow_cases"])
def test_flows_equal_cellpose4(model, shared_data, case, one_torch_thread):
    """Network, 256-px tiles, blending, rescaling: the flows Cellpose 4's eval fed its dynamics."""
    res = run_case(model, shared_data, case)
    y0, y1, x0, x1 = META["cases"][case]["flow_window"]
    dp = np.abs(res.flows[0, :, 0, y0:y1, x0:x1] - GOLDEN[f"dP_{case}"]).max()
    cp = np.abs(res.cellprob[0, 0, y0:y1, x0:x1] - GOLDEN[f"cellprob_{case}"]).max()
    print(f"{case}: max |dP| diff {dp:.2e}, max |cellprob| diff {cp:.2e}")
    assert dp < FLOW_ATOL and cp < FLOW_ATOL


@pytest.mark.parametrize("case", list(META["cases"]))
def test_masks_equal_cellpose4(model, shared_data, case, one_torch_thread):
    """Masks through segment() (Cellpose 4's dynamics for this family) against CellposeModel.eval."""
    res = run_case(model, shared_data, case)
    peer, ours = GOLDEN[f"masks_{case}"], res.labels[0, 0]
    assert peer.max() > 0
    ap = average_precision(peer, ours, 0.5)[0][0]
    print(f"{case}: {int(peer.max())} peer masks, {int(ours.max())} ours, AP@0.5 {ap:.4f}, "
          f"pixels equal {np.mean(peer == ours):.4f}")
    assert ap >= 0.98

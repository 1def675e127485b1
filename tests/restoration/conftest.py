"""Tiny networks for the restoration tests (random weights, saved as real checkpoints)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cellseg_bridge.nn.checkpoint import save_checkpoint
from cellseg_bridge.nn.net import CellposeUNet


@pytest.fixture(scope="session")
def tiny_restore_path(tmp_path_factory) -> Path:
    """A 1-channel, nout-1 network (nbase [1, 4, 8, 16], diam_mean 17) saved with its config.json."""
    torch.manual_seed(0)
    net = CellposeUNet((1, 4, 8, 16), nout=1, diam_mean=17.0)
    path = tmp_path_factory.mktemp("restore_model") / "weights.pth"
    save_checkpoint(net, path, {"task": "restoration", "restore_type": "denoise"})
    return path


@pytest.fixture(scope="session")
def tiny_seg_path(tmp_path_factory) -> Path:
    """A 2-channel segmentation network (nbase [2, 4, 8, 16], nout 3, diam_mean 17)."""
    torch.manual_seed(1)
    net = CellposeUNet((2, 4, 8, 16), nout=3, diam_mean=17.0)
    path = tmp_path_factory.mktemp("seg_model") / "weights.pth"
    save_checkpoint(net, path)
    return path


@pytest.fixture(autouse=True)
def _tiny_networks(one_torch_thread):
    """Every restoration test runs on one torch thread (``tests/conftest.py``)."""
    yield

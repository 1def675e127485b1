"""Shared fixtures: the shared data folder beside the checkout, ImageJ 1.x through scyjava, one torch thread."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path:
    return Path(os.environ.get("CELLSEG_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout (or ``$CELLSEG_SHARED/data``), read in place."""
    path = _shared_dir() / "data"
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path} (a user's clone has no ../shared)")
    return path


@pytest.fixture(scope="session")
def shared_models() -> Path:
    """``../shared/models`` beside the checkout: the peer's checkpoint, for compatibility tests."""
    path = _shared_dir() / "models"
    if not path.is_dir():
        pytest.skip(f"shared models not found at {path}")
    return path


@pytest.fixture(scope="session")
def ij():
    """The real ImageJ 1.x (``ij.IJ``) in a headless JVM; skips when Java or the jar is missing.

    In CI (``CI=true``) a missing ImageJ is an error, not a skip: ``.ci/run`` installs it.
    """
    from cellseg_bridge.errors import DependencyError
    from cellseg_bridge.fiji.jvm import start_imagej1

    try:
        version = start_imagej1()
    except DependencyError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"ImageJ 1.x not available: {exc}")
    import scyjava

    ij_class = scyjava.jimport("ij.IJ")
    assert version
    return ij_class


@pytest.fixture
def one_torch_thread():
    """One torch thread, restored afterwards: tiny networks gain nothing from more, and on a loaded
    2-core machine OpenMP threads waiting for each other make them many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_restore_path(tmp_path_factory) -> Path:
    """A 1-channel, nout-1 network (nbase [1, 4, 8, 16], diam_mean 17) saved with its config.json."""
    import torch

    from cellseg_bridge.nn.checkpoint import save_checkpoint
    from cellseg_bridge.nn.net import CellposeUNet

    torch.manual_seed(0)
    net = CellposeUNet((1, 4, 8, 16), nout=1, diam_mean=17.0)
    path = tmp_path_factory.mktemp("restore_model") / "weights.pth"
    save_checkpoint(net, path, {"task": "restoration", "restore_type": "denoise"})
    return path


@pytest.fixture(scope="session")
def tiny_seg_path(tmp_path_factory) -> Path:
    """A 2-channel segmentation network (nbase [2, 4, 8, 16], nout 3, diam_mean 17)."""
    import torch

    from cellseg_bridge.nn.checkpoint import save_checkpoint
    from cellseg_bridge.nn.net import CellposeUNet

    torch.manual_seed(1)
    net = CellposeUNet((2, 4, 8, 16), nout=3, diam_mean=17.0)
    path = tmp_path_factory.mktemp("seg_model") / "weights.pth"
    save_checkpoint(net, path)
    return path

"""Fixtures of the HITL tests: tiny networks, small synthetic images written as TIFFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from cellseg_bridge.datasets.synthetic import NucleiSpec, synthetic_nuclei

#: Small images with nuclei of about 16 px: fast to segment and to train on.
SPEC = NucleiSpec(shape=(96, 96), n_nuclei=8, diameter=16.0)
#: Widths of the tiny networks used in these tests.
NBASE = (2, 8, 16, 32)
#: Training options that keep a cycle fast (one step of 8 crops of 64 px per epoch).
FAST_TRAIN = {"crop_size": 64, "fit_size_model": False, "save_every": 1}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained tiny segmentation network (for the project mechanics, not for quality)."""
    import torch

    from cellseg_bridge.nn.checkpoint import save_checkpoint
    from cellseg_bridge.nn.net import CellposeUNet

    torch.manual_seed(0)
    net = CellposeUNet(NBASE, 3, 3, diam_mean=16.0)
    path = tmp_path_factory.mktemp("tiny_model") / "weights.pth"
    save_checkpoint(net, path)
    return path


def write_images(folder: Path, seeds, *, channels: int = 1) -> list[Path]:
    """Synthetic nuclei images (and their true labels as ``<name>_truth.npy``) as TIFFs in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in seeds:
        image, labels = synthetic_nuclei(SPEC, seed=seed)
        if channels > 1:
            image = np.stack([image] * channels)
        path = folder / f"nuclei_{seed:02d}.tif"
        tifffile.imwrite(path, image, photometric="minisblack", metadata={"axes": "CYX" if channels > 1 else "YX"})
        np.save(folder / f"nuclei_{seed:02d}_truth.npy", labels)
        paths.append(path)
    return paths


@pytest.fixture
def images(tmp_path) -> list[Path]:
    """Four single-channel 96x96 synthetic nuclei images."""
    return write_images(tmp_path / "images", range(4))

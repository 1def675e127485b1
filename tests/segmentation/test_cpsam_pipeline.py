"""Cellpose-SAM models through segment(): channels (Cellpose 4's convention), tile size, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cellseg_bridge.datasets.synthetic import NucleiSpec, synthetic_nuclei
from cellseg_bridge.errors import InputError
from cellseg_bridge.segmentation.pipeline import load_model, segment

CKPT = Path(__file__).parents[1] / "data" / "peer4_golden_cpsam_small.pth"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    return load_model(CKPT, device="cpu")


@pytest.fixture(scope="module")
def planes() -> np.ndarray:
    """Five different (Y, X) planes of synthetic nuclei, (5, 96, 112) float32."""
    return np.stack([synthetic_nuclei(NucleiSpec(shape=(96, 112), n_nuclei=6, diameter=15), seed=s)[0]
                     for s in range(5)]).astype(np.float32)


def _run(img, model, axes, **kw):
    return segment(img, model, axes=axes, diameter=15, precision="float32", return_flows=True, **kw)


def test_one_channel_is_the_first_input_with_zeros(model, planes):
    one = _run(planes[0], model, "YX")
    padded = _run(np.stack([planes[0], np.zeros_like(planes[0]), np.zeros_like(planes[0])]), model, "CYX")
    assert np.array_equal(one.flows, padded.flows) and np.array_equal(one.labels, padded.labels)
    assert one.options.tile_size == 256  # the default 224 becomes the network's 256


def test_channels_choose_and_order_inputs(model, planes):
    chosen = _run(planes, model, "CYX", channels="4, 0,2")
    direct = _run(planes[[4, 0, 2]], model, "CYX")
    assert np.array_equal(chosen.flows, direct.flows)
    pair = _run(planes, model, "CYX", channel=3, nuclear_channel=1)
    assert np.array_equal(pair.flows, _run(planes[[3, 1]], model, "CYX").flows)


def test_too_many_channels_need_a_choice(model, planes):
    with pytest.raises(InputError, match="5 channels .*take up to 3.*channels"):
        _run(planes, model, "CYX")
    with pytest.raises(InputError, match="at most 3"):
        _run(planes, model, "CYX", channels="0,1,2,3")
    with pytest.raises(InputError, match="channels"):
        _run(planes, model, "CYX", channels="7")


def test_other_tile_sizes_are_refused(model, planes):
    with pytest.raises(InputError, match="tiles of 256 px only.*tile_size 512"):
        _run(planes[0], model, "YX", tile_size=512)
    assert _run(planes[0], model, "YX", tile_size=256).options.tile_size == 256


def test_3d_from_three_views(model, planes):
    """do_3d: the 2D network on YX, ZY and ZX planes (Cellpose 4's scheme), our 3D dynamics."""
    stack = np.stack([planes[0][:32, :40]] * 4)  # (Z, Y, X); every plane is padded to one 256-px tile
    res = segment(stack, model, axes="ZYX", do_3d=True, diameter=30, precision="float32", return_flows=True)
    assert res.labels.shape == (1, 4, 32, 40) and res.flows.shape == (1, 3, 4, 32, 40)
    assert np.isfinite(res.flows).all()

"""Network arithmetic: which autocast dtype each precision means, and that it is used."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellseg_bridge.errors import InputError
from cellseg_bridge.nn import CellposeUNet, precision
from cellseg_bridge.nn.inference import run_network

CPU = torch.device("cpu")


@pytest.mark.parametrize("native", [True, False])
def test_auto_follows_the_cpu(monkeypatch, native):
    monkeypatch.setattr(precision, "cpu_has_native_bfloat16", lambda: native)
    want = torch.bfloat16 if native else None
    assert precision.autocast_dtype("auto", CPU) is want
    assert precision.training_autocast_dtype("auto", CPU) is want
    # explicit choices do not depend on the CPU
    assert precision.autocast_dtype("float32", CPU) is None
    assert precision.autocast_dtype(" BFloat16 ", CPU) is torch.bfloat16
    assert precision.training_autocast_dtype("bfloat16", CPU) is torch.bfloat16


def test_auto_is_float32_on_mps_and_float16_on_cuda():
    assert precision.autocast_dtype("auto", torch.device("mps")) is None
    assert precision.autocast_dtype("auto", torch.device("cuda")) is torch.float16
    assert precision.autocast_dtype("float16", torch.device("cuda")) is torch.float16


def test_bad_precisions_are_refused():
    with pytest.raises(InputError, match="unknown precision 'half'"):
        precision.autocast_dtype("half", CPU)
    with pytest.raises(InputError, match="float16 is not available on the cpu"):
        precision.autocast_dtype("float16", CPU)
    with pytest.raises(InputError, match="not available on the mps"):
        precision.autocast_dtype("bfloat16", torch.device("mps"))
    with pytest.raises(InputError, match="not offered for training"):
        precision.training_autocast_dtype("float16", CPU)


def test_bfloat16_inference_is_close_to_float32_and_really_reduced():
    torch.manual_seed(0)
    net = CellposeUNet((2, 8, 16, 32), nout=3).eval()
    img = np.random.default_rng(1).uniform(0, 1, (2, 100, 90)).astype(np.float32)
    a, sa = run_network(net, img, tile_size=64, precision="float32")
    b, sb = run_network(net, img, tile_size=64, precision="bfloat16")
    assert b.dtype == np.float32 and b.shape == a.shape
    err = np.abs(a - b).max()
    assert 0 < err < 0.05 * np.abs(a).max()  # rounded (bfloat16 has 8 bits), but close
    np.testing.assert_allclose(sb, sa, atol=0.02)
    with pytest.raises(InputError, match="float16"):
        run_network(net, img, precision="float16")

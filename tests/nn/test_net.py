"""The U-Net: Cellpose CPnet state-dict layout, golden outputs from the real peer, shapes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cellseg_bridge.nn import RESTORATION_NBASE, SEGMENTATION_NBASE, CellposeUNet, load_checkpoint

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden_cpnet_dsb2018.npz"
SMALL = (2, 8, 16, 32, 64)


def expected_cpnet_layout(nbase: list[int], nout: int, k: int = 3) -> dict[str, tuple[int, ...]]:
    """Key -> shape of Cellpose 3's CPnet, written out from DESIGN.md section 3, not our code."""
    layout: dict[str, tuple[int, ...]] = {
        "diam_mean": (1,),
        "diam_labels": (1,),
    }  # CPnet's own params first

    def bn(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{prefix}.{name}"] = (c,)
        layout[f"{prefix}.num_batches_tracked"] = ()

    def conv(prefix: str, c_in: int, c_out: int, size: int) -> None:
        layout[f"{prefix}.weight"] = (c_out, c_in, size, size)
        layout[f"{prefix}.bias"] = (c_out,)

    for i in range(len(nbase) - 1):
        c_in, c_out = nbase[i], nbase[i + 1]
        p = f"downsample.down.res_down_{i}"
        for j in range(4):
            bn(f"{p}.conv.conv_{j}.0", c_in if j == 0 else c_out)
            conv(f"{p}.conv.conv_{j}.2", c_in if j == 0 else c_out, c_out, k)
        bn(f"{p}.proj.0", c_in)
        conv(f"{p}.proj.1", c_in, c_out, 1)
    up = [*nbase[1:], nbase[-1]]
    for i in range(len(up) - 1):
        c_in, c_out = up[i + 1], up[i]
        p = f"upsample.up.res_up_{i}"
        bn(f"{p}.conv.conv_0.0", c_in)
        conv(f"{p}.conv.conv_0.2", c_in, c_out, k)
        for j in (1, 2, 3):
            bn(f"{p}.conv.conv_{j}.conv.0", c_out)
            conv(f"{p}.conv.conv_{j}.conv.2", c_out, c_out, k)
            layout[f"{p}.conv.conv_{j}.full.weight"] = (c_out, nbase[-1])
            layout[f"{p}.conv.conv_{j}.full.bias"] = (c_out,)
        bn(f"{p}.proj.0", c_in)
        conv(f"{p}.proj.1", c_in, c_out, 1)
    bn("output.0", nbase[1])
    conv("output.2", nbase[1], nout, 1)
    return layout


def _layout(net: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def test_full_width_state_dict_is_cpnet() -> None:
    net = CellposeUNet(SEGMENTATION_NBASE, nout=3, diam_mean=17.0)
    state = net.state_dict()
    assert len(state) == 313
    assert sum(v.numel() for v in state.values()) == 6_610_430
    assert _layout(net) == expected_cpnet_layout(list(SEGMENTATION_NBASE), 3)
    assert list(state) == list(expected_cpnet_layout(list(SEGMENTATION_NBASE), 3))  # same order too
    assert state["diam_mean"].item() == 17.0 and state["diam_labels"].item() == 17.0
    assert not net.diam_mean.requires_grad and not net.diam_labels.requires_grad
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-5 and m.momentum == 0.05 for m in bns)


def test_restoration_and_small_widths_have_cpnet_layout() -> None:
    net = CellposeUNet(RESTORATION_NBASE, nout=1)
    assert _layout(net) == expected_cpnet_layout(list(RESTORATION_NBASE), 1)
    small = CellposeUNet((2, 16, 32, 64, 128), nout=3)
    assert _layout(small) == expected_cpnet_layout([2, 16, 32, 64, 128], 3)
    three_levels = CellposeUNet((2, 8, 16, 32), nout=3)
    assert _layout(three_levels) == expected_cpnet_layout([2, 8, 16, 32], 3)


def _dsb_input(shared_data: Path, meta: dict) -> np.ndarray:
    """Rebuild the dsb2018 crop exactly as benchmarks/make_golden_net.py does."""
    import imageio.v3 as iio

    image_id = meta["dsb_image"]
    png = shared_data / "dsb2018" / "stage1_train" / image_id / "images" / f"{image_id}.png"
    grey = iio.imread(png)[..., :3].astype(np.float32).mean(axis=-1)
    lo, hi = np.percentile(grey, [1, 99])
    grey = (grey - lo) / (hi - lo)
    (y0, y1), (x0, x1) = meta["crop"]
    x = np.zeros((1, 2, y1 - y0, x1 - x0), np.float32)
    x[0, 0] = grey[y0:y1, x0:x1]
    assert list(x.shape) == meta["x_dsb_shape"]
    assert x.astype(np.float64).sum() == pytest.approx(meta["x_dsb_sum"], rel=1e-6)
    return x


def test_real_cellpose_checkpoint_matches_peer_outputs(
    shared_models: Path, shared_data: Path
) -> None:
    """The checkpoint trained by Cellpose 3.1.1.3 computes what Cellpose's CPnet computed."""
    checkpoint = shared_models / "cellpose3_dsb2018_nuclei.pth"
    golden = np.load(GOLDEN)
    meta = json.loads(str(golden["meta"]))
    if hashlib.sha256(checkpoint.read_bytes()).hexdigest() != meta["checkpoint_sha256"]:
        pytest.fail(
            f"{checkpoint} changed since the golden data was made: "
            "rerun benchmarks/make_golden_net.py"
        )
    net, config = load_checkpoint(checkpoint)
    assert list(net.state_dict()) == list(
        torch.load(checkpoint, weights_only=True)
    )  # same keys, same order
    assert config["nbase"] == [2, 32, 64, 128, 256] and config["nout"] == 3
    assert config["diam_mean"] == 17.0
    assert config["diam_labels"] == pytest.approx(24.0, abs=0.05)
    assert not net.training
    inputs = {"random": golden["x_random"], "dsb": _dsb_input(shared_data, meta)}
    for name, x in inputs.items():
        with torch.no_grad():
            y, style = net(torch.from_numpy(x))
        assert y.shape == golden[f"y_{name}"].shape
        assert np.abs(y.numpy() - golden[f"y_{name}"]).max() < 1e-4, name
        assert np.abs(style.numpy() - golden[f"style_{name}"]).max() < 1e-5, name
    # the trained net sees nuclei in the real crop: some positive and some negative cell probability
    assert (golden["y_dsb"][0, 2] > 0).mean() > 0.05 and (golden["y_dsb"][0, 2] < 0).mean() > 0.05


@pytest.mark.parametrize("size", [(8, 8), (24, 40), (136, 200), (16, 8)])
def test_forward_shapes_for_multiples_of_eight(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = CellposeUNet(SMALL, nout=3).eval()
    assert net.size_multiple == 8
    with torch.no_grad():
        y, style = net(torch.randn(2, 2, *size))
    assert y.shape == (2, 3, *size)
    assert style.shape == (2, 64)
    assert torch.allclose(style.norm(dim=1), torch.ones(2), atol=1e-5)


@pytest.mark.parametrize("size", [(20, 24), (24, 12), (7, 8)])
def test_sizes_not_multiple_of_eight_are_refused(size: tuple[int, int]) -> None:
    net = CellposeUNet(SMALL, nout=3)
    with pytest.raises(ValueError, match="multiples of 8"):
        net(torch.zeros(1, 2, *size))


def test_size_multiple_depends_on_depth() -> None:
    net = CellposeUNet((1, 8, 16), nout=1).eval()
    assert net.size_multiple == 2
    with torch.no_grad():
        y, style = net(torch.randn(1, 1, 6, 10))
    assert y.shape == (1, 1, 6, 10) and style.shape == (1, 16)


def test_wrong_channel_count_is_refused() -> None:
    net = CellposeUNet(SMALL, nout=3)
    with pytest.raises(ValueError, match=r"\[B, 2, H, W\]"):
        net(torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError):
        net(torch.zeros(2, 16, 16))


@pytest.mark.parametrize(
    "kwargs", [{"nbase": (2, 8)}, {"nbase": (2, 0, 8)}, {"nout": 0}, {"kernel_size": 2}]
)
def test_bad_constructor_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        CellposeUNet(**kwargs)


def test_eval_mode_batch_items_are_independent() -> None:
    torch.manual_seed(1)
    net = CellposeUNet(SMALL, nout=3).eval()
    x = torch.randn(3, 2, 32, 24)
    with torch.no_grad():
        y, style = net(x)
        y1, style1 = net(x[1:2])
    assert torch.allclose(y[1:2], y1, atol=1e-5) and torch.allclose(style[1:2], style1, atol=1e-6)


def test_training_step_reaches_every_trainable_parameter() -> None:
    torch.manual_seed(2)
    net = CellposeUNet((2, 8, 16, 32), nout=3).train()
    y, _ = net(torch.randn(2, 2, 16, 16))
    y.square().mean().backward()
    trainable = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    assert {n for n, _ in net.named_parameters()} - {n for n, _ in trainable} == {
        "diam_mean",
        "diam_labels",
    }
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for _, p in trainable)
    assert net.downsample.down.res_down_0.conv.conv_0[0].num_batches_tracked.item() == 1


def test_encode_decode_equals_forward() -> None:
    from cellseg_bridge.nn import style_vector

    torch.manual_seed(3)
    net = CellposeUNet(SMALL, nout=3).eval()
    x = torch.randn(1, 2, 16, 32)
    with torch.no_grad():
        features = net.encode(x)
        style = style_vector(features[-1])
        y = net.decode(features, style)
        y_ref, style_ref = net(x)
    assert [f.shape[1] for f in features] == list(SMALL[1:])
    assert [f.shape[-1] for f in features] == [32, 16, 8, 4]
    assert torch.equal(y, y_ref) and torch.equal(style, style_ref)

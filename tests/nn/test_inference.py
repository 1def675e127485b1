"""Tests of running the network over images: tiles, blending, augmentation, devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cellseg_bridge.core import transforms as T
from cellseg_bridge.errors import InputError
from cellseg_bridge.nn import CellposeUNet
from cellseg_bridge.nn.inference import run_network, select_device


@pytest.fixture(scope="module")
def tiny_net():
    torch.manual_seed(0)
    net = CellposeUNet((2, 8, 16, 32), nout=3, diam_mean=17.0)
    # non-trivial BatchNorm statistics so that eval mode is not an identity
    for mod in net.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    return net.eval()


class PixelNet(torch.nn.Module):
    """A fake network: outputs depend on each pixel only, style = mean input."""

    nchan = 2
    size_multiple = 8

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        out = torch.stack([2 * x[:, 0], x[:, 0] + x[:, 1], x[:, 0] ** 2], 1)
        style = F.normalize(torch.cat([x.mean((2, 3)), torch.ones(x.shape[0], 2)], 1), dim=1)
        return out, style


class GradientNet(PixelNet):
    """A flip-equivariant fake network: dY, dX = central differences, cellprob = input."""

    def forward(self, x):
        img = x[:, :1]
        ky = torch.tensor([[-0.5], [0.0], [0.5]]).view(1, 1, 3, 1)
        kx = ky.view(1, 1, 1, 3)
        dy = F.conv2d(img, ky, padding=(1, 0))
        dx = F.conv2d(img, kx, padding=(0, 1))
        return torch.cat([dy, dx, img], 1), F.normalize(torch.ones(x.shape[0], 4), dim=1)


def _image(shape, seed=0):
    rng = np.random.default_rng(seed)
    img = np.zeros((2, *shape), np.float32)
    img[0] = rng.uniform(0, 1, shape)
    return img


def test_single_tile_equals_direct_forward(tiny_net):
    img = _image((48, 40))
    (y0, y1), (x0, x1) = T.pad_amounts(48), T.pad_amounts(40)
    padded = np.pad(img, ((0, 0), (y0, y1), (x0, x1)))
    with torch.no_grad():
        ref, style = tiny_net(torch.from_numpy(padded)[None])
    ref = ref[0, :, y0 : y0 + 48, x0 : x0 + 40].numpy()
    for tile in (0, 64, 224):  # padded image is 64 x 64: one tile in every case
        out, sty = run_network(tiny_net, img, tile_size=tile, precision="float32")
        assert out.shape == (3, 48, 40) and out.dtype == np.float32
        np.testing.assert_allclose(out, ref, atol=1e-5)
        np.testing.assert_allclose(sty, style[0].numpy(), atol=1e-6)


def test_tiled_equals_whole_for_pixelwise_network():
    img = _image((150, 230), seed=1)
    whole, _ = run_network(PixelNet(), img, tile_size=0)
    for tile, overlap in ((64, 0.1), (96, 0.3), (224, 0.1)):
        tiled, style = run_network(PixelNet(), img, tile_size=tile, tile_overlap=overlap, batch_size=3)
        np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-5)
        assert np.linalg.norm(style) == pytest.approx(1.0, abs=1e-6)


def test_tiled_close_to_whole_for_real_architecture(tiny_net):
    img = _image((80, 96), seed=2)
    whole, _ = run_network(tiny_net, img, tile_size=0)
    tiled, _ = run_network(tiny_net, img, tile_size=48, tile_overlap=0.25)
    assert tiled.shape == whole.shape
    # tiles see zero padding at their borders and their own style: close, not equal
    rel = np.abs(tiled - whole).mean() / np.abs(whole).mean()
    assert rel < 0.5


def test_augment_unflips_tiles_and_flow_signs():
    yy, xx = np.mgrid[0:260, 0:300].astype(np.float32)
    img = np.zeros((2, 260, 300), np.float32)
    img[0] = np.sin(yy / 7.0) * np.cos(xx / 9.0) + 0.02 * yy
    ref, _ = run_network(GradientNet(), img, tile_size=0)
    # 224-px tiles: the taper down-weights tile borders, where the zero padding of a tile
    # changes the differences
    aug, _ = run_network(GradientNet(), img, tile_size=224, augment=True)
    assert aug.shape == ref.shape
    # exact away from tile borders (a border pixel of one tile is the centre of another)
    err = np.abs(aug - ref)
    assert np.median(err) < 1e-5
    assert err.mean() < 0.02 * np.abs(ref[:2]).mean()
    # a sign error would show: the flips really happened (X flow of Y-flipped tiles negated)
    assert np.abs(ref[0]).mean() > 0.05


def test_augment_real_net_runs_finite(tiny_net):
    img = _image((40, 56), seed=3)
    out, style = run_network(tiny_net, img, tile_size=32, augment=True, batch_size=5)
    assert out.shape == (3, 40, 56) and np.isfinite(out).all()
    assert style.shape == (32,) and np.isfinite(style).all()


def test_batches_and_planes_are_independent(tiny_net):
    planes = np.stack([_image((40, 30), seed=s) for s in range(3)])
    out, styles = run_network(tiny_net, planes, tile_size=32, batch_size=4)
    assert out.shape == (3, 3, 40, 30) and styles.shape == (3, 32)
    for k in range(3):
        one, st = run_network(tiny_net, planes[k], tile_size=32, batch_size=1)
        np.testing.assert_allclose(out[k], one, atol=1e-5)
        np.testing.assert_allclose(styles[k], st, atol=1e-6)


def test_tile_size_is_rounded_to_multiple(tiny_net):
    img = _image((50, 50), seed=4)
    a, _ = run_network(tiny_net, img, tile_size=20)
    b, _ = run_network(tiny_net, img, tile_size=32)
    np.testing.assert_array_equal(a, b)


def test_bad_inputs(tiny_net):
    with pytest.raises(InputError, match="channel"):
        run_network(tiny_net, np.zeros((3, 32, 32), np.float32))
    with pytest.raises(InputError):
        run_network(tiny_net, np.zeros((32, 32), np.float32))
    with pytest.raises(InputError, match="batch_size"):
        run_network(tiny_net, np.zeros((2, 32, 32), np.float32), batch_size=0)


def test_select_device():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type in {"cpu", "cuda", "mps"}
    assert select_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(InputError):
        select_device("tpu")
    with pytest.raises(InputError):
        select_device("not a device")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA"):
            select_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_half_precision_on_gpu_close_to_float32(tiny_net):
    net = CellposeUNet((2, 8, 16, 32), nout=3).eval().cuda()
    img = _image((100, 100), seed=5)
    a, _ = run_network(net, img, precision="float32")
    b, _ = run_network(net, img, precision="auto")
    assert a.dtype == b.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=0.05 * np.abs(a).max())

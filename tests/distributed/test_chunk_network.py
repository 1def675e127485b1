"""A chunk's network output equals the whole-plane pass over the same pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellseg_bridge.core import transforms
from cellseg_bridge.distributed.chunk_network import PlaneGrid, TileCache, chunk_network_output
from cellseg_bridge.nn.inference import run_network
from cellseg_bridge.nn.net import CellposeUNet


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return CellposeUNet((1, 8, 16, 32), nout=3, diam_mean=17.0).eval()


def _whole(net, image: np.ndarray, rescale: float, tile: int) -> np.ndarray:
    ly, lx = image.shape[-2:]
    x = transforms.resize(image, transforms.scaled_shape((ly, lx), rescale))
    y, _ = run_network(net, x, tile_size=tile, tile_overlap=0.1)
    return transforms.resize(y, (ly, lx))


@pytest.mark.parametrize("rescale", [17 / 24, 1.3])
def test_chunk_output_matches_whole_plane(net, rescale):
    rng = np.random.default_rng(0)
    image = rng.random((1, 200, 330), dtype=np.float32)
    whole = _whole(net, image, rescale, 224)
    grid = PlaneGrid.build((200, 330), rescale, 224, 0.1)
    for region in [(slice(0, 120), slice(0, 200)), (slice(90, 200), slice(150, 300)), (slice(37, 61), slice(290, 330))]:
        window = grid.source_window(region)
        out = chunk_network_output(net, grid, region, image[:, window[0], window[1]], lambda a: a)
        np.testing.assert_allclose(out, whole[:, region[0], region[1]], rtol=0, atol=2e-5)


def test_single_tile_plane_and_tile_cache(net):
    rng = np.random.default_rng(1)
    image = rng.random((1, 150, 160), dtype=np.float32)
    whole = _whole(net, image, 1.0, 224)
    grid = PlaneGrid.build((150, 160), 1.0, 224, 0.1)
    assert grid.single_tile
    region = (slice(10, 90), slice(40, 160))
    window = grid.source_window(region)
    out = chunk_network_output(net, grid, region, image[:, window[0], window[1]], lambda a: a, cache_token="t")
    np.testing.assert_allclose(out, whole[:, region[0], region[1]], atol=2e-5)


def test_tile_cache_is_bounded():
    cache = TileCache(max_bytes=3 * 400)
    for k in range(5):
        cache.put(("run", k), np.zeros(100, np.float32))
    assert cache.get(("run", 0)) is None and cache.get(("run", 4)) is not None
    with pytest.raises(ValueError):
        PlaneGrid.build((100, 100), 1.0, 0, 0.1)

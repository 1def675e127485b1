"""Network output of one chunk on the tile grid of the whole plane.

:func:`cellseg_bridge.segmentation.pipeline.segment` runs the network on the whole plane:
bilinear resize by ``rescale``, zero padding, tiles at positions that depend
on the plane size, blending, resize back. A chunk segmented on its own would
see other tile positions, and the network output (the style vector is an
average over each tile) would change near every chunk. Here a chunk gets the
*same* numbers as the whole-plane pass: :class:`PlaneGrid` holds the
whole-plane geometry (resize maps, padding, tiles) and
:func:`chunk_network_output` computes, for one region of the plane, only the
tiles that touch it, from the pixels those tiles need, blended in the same
order, and resizes back with the whole-plane map. So flows and cell
probability inside a chunk equal the whole-plane ones (up to floating-point
differences of the network in other batch sizes), and chunk borders leave no
trace in the network output.

Resizing follows :func:`cellseg_bridge.core.transforms.resize` (half-pixel
centres, edge clamping, one axis after the other, float32); tiling and
blending follow :func:`cellseg_bridge.nn.inference.run_network` without
test-time augmentation.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from cellseg_bridge.core import transforms
from cellseg_bridge.nn import inference
from cellseg_bridge.nn.inference import PAD_DIVISOR, fixed_tile_grid, pad_to_tile
from cellseg_bridge.nn.precision import autocast_dtype

__all__ = ["PlaneGrid", "chunk_network_output", "TileCache", "TILE_CACHE"]


class TileCache:
    """Least-recently-used network outputs of tiles, bounded in bytes (one per process).

    Neighbouring chunks share the tiles of their overlap; a chunk computed
    after its left neighbour in the same process takes them from here instead
    of running the network again. Keys carry a token of the segmentation run,
    so runs never mix.
    """

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple) -> np.ndarray | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: tuple, value: np.ndarray) -> None:
        with self._lock:
            if key in self._items or value.nbytes > self.max_bytes:
                return
            self._items[key] = value
            self._bytes += value.nbytes
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes


#: The tile cache of this process.
TILE_CACHE = TileCache()


def _axis_map(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices ``i0``, ``i1`` and weight ``w`` of ``i1`` for each output index (half-pixel centres)."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    i0 = np.floor(src).astype(np.int64)
    w = (src - i0).astype(np.float32)
    low = i0 < 0
    i0[low], w[low] = 0, 0
    high = i0 >= n_in - 1
    i0[high], w[high] = n_in - 1, 0
    return i0, np.minimum(i0 + 1, n_in - 1), w


@dataclass(frozen=True)
class _Axis:
    """Geometry of one axis: original length, network length, padding, tiles (padded coordinates)."""

    length: int
    scaled: int
    pad_before: int
    tiles: tuple[tuple[int, int], ...]

    def up(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _axis_map(self.length, self.scaled)

    def down(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _axis_map(self.scaled, self.length)

    def scaled_range(self, start: int, stop: int) -> tuple[int, int]:
        """Network-scale rows needed to resize back original rows ``[start, stop)``."""
        if self.scaled == self.length:
            return start, stop
        i0, i1, _ = self.down()
        return int(i0[start:stop].min()), int(i1[start:stop].max()) + 1

    def source_range(self, start: int, stop: int) -> tuple[int, int]:
        """Original rows needed to make network-scale rows ``[start, stop)``."""
        if self.scaled == self.length:
            return start, stop
        i0, i1, _ = self.up()
        return int(i0[start:stop].min()), int(i1[start:stop].max()) + 1


def _resize_window(block: np.ndarray, axis: int, offset: int, maps: tuple, start: int, stop: int) -> np.ndarray:
    """Rows ``[start, stop)`` of the whole-plane resize along ``axis``, from ``block`` starting at ``offset``."""
    i0, i1, w = (m[start:stop] for m in maps)
    shape = [1] * block.ndim
    shape[axis] = stop - start
    a0 = np.take(block, i0 - offset, axis=axis)
    a1 = np.take(block, i1 - offset, axis=axis)
    return a0 + (a1 - a0) * w.reshape(shape)


@dataclass(frozen=True)
class PlaneGrid:
    """Whole-plane geometry of the network pass (what :func:`run_network` would do on the plane).

    Build it with :meth:`build`.
    """

    y: _Axis
    x: _Axis

    @classmethod
    def build(
        cls, shape: tuple[int, int], rescale: float, tile_size: int, tile_overlap: float, div: int = PAD_DIVISOR,
        fixed: bool = False,
    ) -> PlaneGrid:
        """Geometry of a ``(Y, X)`` plane at ``rescale`` with tiles of ``tile_size`` (> 0).

        ``fixed``: a network that runs tiles of exactly ``tile_size`` (Cellpose-SAM), padded
        and tiled as :func:`~cellseg_bridge.nn.inference.run_network` does for it.
        """
        if tile_size <= 0:
            raise ValueError("chunked segmentation needs tiles (tile_size > 0)")
        tile_size = div * math.ceil(tile_size / div)
        scaled = transforms.scaled_shape(tuple(shape), rescale)
        if fixed:
            pads = [pad_to_tile(n, tile_size, div) for n in scaled]
        else:
            pads = [transforms.pad_amounts(n, div) for n in scaled]
        padded = [n + a + b for n, (a, b) in zip(scaled, pads)]
        if padded[0] <= tile_size and padded[1] <= tile_size:
            tiles_y, tiles_x = [(0, padded[0])], [(0, padded[1])]
        elif fixed:
            grid = fixed_tile_grid((padded[0], padded[1]), tile_size, tile_overlap)
            tiles_y = sorted({(s.start, s.stop) for s, _ in grid})
            tiles_x = sorted({(s.start, s.stop) for _, s in grid})
        else:
            grid = transforms.tile_grid(tuple(padded), tile_size, tile_overlap, div=div)
            tiles_y = sorted({(s.start, s.stop) for s, _ in grid})
            tiles_x = sorted({(s.start, s.stop) for _, s in grid})
        return cls(
            y=_Axis(int(shape[0]), scaled[0], pads[0][0], tuple(tiles_y)),
            x=_Axis(int(shape[1]), scaled[1], pads[1][0], tuple(tiles_x)),
        )

    @property
    def single_tile(self) -> bool:
        """The whole padded plane is one tile (no blending)."""
        return len(self.y.tiles) == 1 and len(self.x.tiles) == 1

    def plan(self, region: tuple[slice, slice]) -> dict:
        """What a region needs: tiles, padded block, network-scale rows, source window."""
        out = {}
        for name, ax, s in (("y", self.y, region[0]), ("x", self.x, region[1])):
            lo, hi = ax.scaled_range(s.start, s.stop)
            plo, phi = lo + ax.pad_before, hi + ax.pad_before
            tiles = [t for t in ax.tiles if t[0] < phi and t[1] > plo]
            blo, bhi = min(t[0] for t in tiles), max(t[1] for t in tiles)
            qlo, qhi = max(blo - ax.pad_before, 0), min(bhi - ax.pad_before, ax.scaled)
            src = ax.source_range(qlo, qhi) if qhi > qlo else (0, 0)
            out[name] = {"tiles": tiles, "block": (blo, bhi), "scaled": (lo, hi), "fill": (qlo, qhi), "source": src}
        return out

    def source_window(self, region: tuple[slice, slice]) -> tuple[slice, slice]:
        """The pixels of the plane the network pass of ``region`` reads."""
        p = self.plan(region)
        return slice(*p["y"]["source"]), slice(*p["x"]["source"])


def chunk_network_output(
    net: torch.nn.Module,
    grid: PlaneGrid,
    region: tuple[slice, slice],
    source: np.ndarray,
    normalize: Callable[[np.ndarray], np.ndarray],
    *,
    batch_size: int = 8,
    precision: str = "auto",
    cache_token: str | None = None,
) -> np.ndarray:
    """Network output ``(nout, h, w)`` over ``region``, equal to the whole-plane pass there.

    Parameters
    ----------
    net : torch.nn.Module
        The segmentation network (eval mode).
    grid : PlaneGrid
        Whole-plane geometry.
    region : (slice, slice)
        Plane region wanted.
    source : ndarray, shape (C, ...)
        The plane's pixels over ``grid.source_window(region)`` (raw values).
    normalize : callable
        Raw ``(C, h, w)`` -> normalised float32 (with whole-plane percentiles).
    batch_size : int
        Tiles per forward pass.
    precision : {"auto", "float32", "bfloat16", "float16"}
        Arithmetic of the network (:func:`~cellseg_bridge.nn.precision.autocast_dtype`).
    cache_token : str, optional
        Reuse / keep tile outputs in :data:`TILE_CACHE` under this token (one
        per plane and set of options); None: no cache.

    Returns
    -------
    ndarray of float32, shape (nout, h, w)
    """
    plan = grid.plan(region)
    py, px = plan["y"], plan["x"]
    win = (py["source"][1] - py["source"][0], px["source"][1] - px["source"][0])
    if source.shape[-2:] != win:
        raise ValueError(f"source block {source.shape[-2:]} does not match the window {win}")
    x = normalize(np.asarray(source, dtype=np.float32))
    for axis, ax, p in ((1, grid.y, py), (2, grid.x, px)):
        if ax.scaled != ax.length and p["fill"][1] > p["fill"][0]:
            x = _resize_window(x, axis, p["source"][0], ax.up(), *p["fill"])
    (bly, bhy), (blx, bhx) = py["block"], px["block"]
    block = np.zeros((x.shape[0], bhy - bly, bhx - blx), np.float32)
    oy, ox = py["fill"][0] + grid.y.pad_before - bly, px["fill"][0] + grid.x.pad_before - blx
    block[:, oy : oy + x.shape[1], ox : ox + x.shape[2]] = x
    tiles = [(ty, tx) for ty in py["tiles"] for tx in px["tiles"]]
    th, tw = tiles[0][0][1] - tiles[0][0][0], tiles[0][1][1] - tiles[0][1][0]
    per_batch = max(1, min(batch_size, batch_size * transforms.MIN_TILE**2 // (th * tw)))
    device = next(net.parameters()).device
    dtype = autocast_dtype(precision, device)
    mask = transforms.taper_mask(th, tw)
    computed: dict = {}
    todo = tiles
    if cache_token is not None:
        for t in tiles:
            hit = TILE_CACHE.get((cache_token, t))
            if hit is not None:
                computed[t] = hit
        todo = [t for t in tiles if t not in computed]
    net.eval()
    with torch.inference_mode():
        for start in range(0, len(todo), per_batch):
            batch = todo[start : start + per_batch]
            arr = np.stack([block[:, ty[0] - bly : ty[1] - bly, tx[0] - blx : tx[1] - blx] for ty, tx in batch])
            y, _ = inference.forward_batch(net, arr, device, dtype)
            for t, yt in zip(batch, y):
                computed[t] = yt.copy()
                if cache_token is not None:
                    TILE_CACHE.put((cache_token, t), computed[t])
    nout = next(iter(computed.values())).shape[0]
    out = np.zeros((nout, *block.shape[1:]), np.float32)
    weight = np.zeros(block.shape[1:], np.float32)
    for ty, tx in tiles:  # blended in the whole-plane order
        yt = computed[(ty, tx)]
        sy, sx = slice(ty[0] - bly, ty[1] - bly), slice(tx[0] - blx, tx[1] - blx)
        if grid.single_tile:
            out[:, sy, sx] = yt
            weight[sy, sx] = 1
        else:
            out[:, sy, sx] += yt * mask
            weight[sy, sx] += mask
    if not grid.single_tile:
        out /= weight
    (lo_y, hi_y), (lo_x, hi_x) = py["scaled"], px["scaled"]
    ry = slice(lo_y + grid.y.pad_before - bly, hi_y + grid.y.pad_before - bly)
    rx = slice(lo_x + grid.x.pad_before - blx, hi_x + grid.x.pad_before - blx)
    res = out[:, ry, rx]
    for axis, ax, s, lo in ((1, grid.y, region[0], lo_y), (2, grid.x, region[1], lo_x)):
        if ax.scaled != ax.length:
            res = _resize_window(res, axis, lo, ax.down(), s.start, s.stop)
    return np.ascontiguousarray(res, dtype=np.float32)

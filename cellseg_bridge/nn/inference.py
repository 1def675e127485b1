"""Run the network over whole images: padding, tiles, batches, test-time augmentation.

:func:`run_network` takes normalised planes already at network scale (the
pipeline in :mod:`cellseg_bridge.segmentation.pipeline` resizes) and returns the blended
network output and one style vector per plane. The rules follow Cellpose 3.1's
``core.run_net`` (see :mod:`cellseg_bridge.core.transforms` for the tile
geometry and blending):

* each plane is zero-padded to a multiple of 16 plus 8 pixels on each side;
* tiles of ``tile_size`` (or the whole padded plane when ``tile_size`` is 0 or
  the plane fits in one tile) are run in batches of ``batch_size``, tiles of
  several planes sharing batches;
* ``augment``: 50% overlapping tiles, every other tile flipped in Y, in X or
  both before the network and flipped back after it, the flipped flow
  component negated;
* the style of a plane is the sum of its tiles' styles, L2-normalised.

The network runs under :func:`torch.inference_mode`, in the arithmetic chosen by
``precision`` (:func:`~cellseg_bridge.nn.precision.autocast_dtype`): by default
float16 autocast on a CUDA GPU, bfloat16 autocast on a CPU that computes bfloat16
natively (AVX512-BF16 or AMX), float32 elsewhere. Outputs are always float32.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from cellseg_bridge.core import transforms
from cellseg_bridge.errors import InputError
from cellseg_bridge.nn.precision import autocast, autocast_dtype

__all__ = ["select_device", "run_network", "forward_batch", "pad_to_tile", "fixed_tile_grid", "PAD_DIVISOR"]

logger = logging.getLogger(__name__)

#: Planes are padded to a multiple of this (and of the network's size multiple).
PAD_DIVISOR = 16



def select_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve ``"auto"`` (CUDA, then Apple MPS, then CPU) or check a named device.

    Raises
    ------
    InputError
        If the device string is not understood or the device is not available.
    """
    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"unknown device {device!r} (use auto, cpu, cuda, cuda:N or mps)") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r} requested but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise InputError(f"device {device!r} requested but MPS is not available")
    elif dev.type != "cpu":
        raise InputError(f"unsupported device {device!r} (use auto, cpu, cuda, cuda:N or mps)")
    return dev


def forward_batch(
    net: torch.nn.Module, batch: np.ndarray, device: torch.device, dtype: torch.dtype | None
) -> tuple[np.ndarray, np.ndarray]:
    """One network pass over a ``(B, C, Y, X)`` batch; float32 ``(output, style)`` arrays.

    The batch goes channels-last on the CPU (faster convolutions) and runs under
    autocast to ``dtype`` when it is not None; a network with ``inference_copy(dtype)``
    (Cellpose-SAM) runs a copy of itself held in that dtype instead (no per-call weight casts).
    Call under :func:`torch.inference_mode`.
    """
    cast = getattr(net, "inference_copy", None)
    if dtype is not None and cast is not None:  # the whole network in that dtype (Cellpose-SAM, as Cellpose 4)
        net, dtype = cast(dtype), None
    x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(device)
    if device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(device, dtype):
        y, style = net(x)
    return y.float().cpu().numpy(), style.float().cpu().numpy()


def _flip_code(j: int, i: int) -> tuple[bool, bool]:
    """(flip Y, flip X) of tile row ``j``, column ``i`` under test-time augmentation."""
    return i % 2 == 1, j % 2 == 1


def _plane_tiles(shape: tuple[int, int], tile_size: int, overlap: float, augment: bool, div: int):
    """Tile slices and flips of one padded plane."""
    ly, lx = shape
    if augment:
        ys = transforms.tile_starts(ly, tile_size, augment=True)
        xs = transforms.tile_starts(lx, tile_size, augment=True)
        out = []
        for j, y in enumerate(ys):
            for i, x in enumerate(xs):
                fy, fx = _flip_code(j, i)
                out.append(((slice(int(y), int(y) + tile_size), slice(int(x), int(x) + tile_size)), fy, fx))
        return out
    if tile_size <= 0:
        return [((slice(0, ly), slice(0, lx)), False, False)]
    return [(s, False, False) for s in transforms.tile_grid(shape, tile_size, overlap, div=div)]


def pad_to_tile(length: int, tile: int, div: int) -> tuple[int, int]:
    """Padding of an axis for a fixed-tile network (Cellpose 4's rule): as
    :func:`~cellseg_bridge.core.transforms.pad_amounts`, but a short axis is padded to one
    whole tile, centred."""
    if length >= tile:
        return transforms.pad_amounts(length, div)
    lpad = max(0, tile - length - div)
    return div // 2 + lpad // 2, div // 2 + lpad - lpad // 2


def fixed_tile_grid(shape: tuple[int, int], tile: int, overlap: float) -> list[tuple[slice, slice]]:
    """Tiles of exactly ``tile`` px (Cellpose's rule: ``ceil((1 + 2 overlap) L / tile)`` per axis)."""
    overlap = min(0.5, max(0.05, overlap))
    starts = []
    for length in shape:
        n = 1 if length <= tile else int(math.ceil((1.0 + 2 * overlap) * length / tile))
        starts.append(np.linspace(0, length - tile, n).astype(int))
    return [(slice(int(y), int(y) + tile), slice(int(x), int(x) + tile)) for y in starts[0] for x in starts[1]]


def run_network(
    net: torch.nn.Module,
    planes: np.ndarray,
    *,
    tile_size: int = 224,
    tile_overlap: float = 0.1,
    augment: bool = False,
    batch_size: int = 8,
    precision: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Network output for each plane, blended over tiles.

    Parameters
    ----------
    net : CellposeUNet
        The network (eval mode), on the device it runs on.
    planes : ndarray, shape (C, Y, X) or (N, C, Y, X)
        Normalised images at network scale; ``C`` must be ``net.nchan``.
    tile_size : int
        Largest side of the square tiles; 0 runs each padded plane as one tile
        (whole-image pass), as does a tile that holds the padded plane. Rounded
        up to a multiple of the pad divisor; tiles larger than 224 shrink to
        what covers the plane (:func:`~cellseg_bridge.core.transforms.tile_layout`).
        With ``augment``, 0 means 224. A network with a ``tile_size`` attribute (Cellpose-SAM:
        256) runs that size only: any other value is an error; short planes are padded to one
        tile (centred) and tiles never shrink, as Cellpose 4 runs them.
    tile_overlap : float
        Fraction of tile overlap (clamped to [0.05, 0.5]); ignored with ``augment``.
    augment : bool
        Test-time augmentation (50% overlap, flipped tiles).
    batch_size : int
        Tiles of 224 x 224 per forward pass; larger tiles are batched by area
        (``batch_size * 224**2 // tile_area``, at least 1).
    precision : {"auto", "float32", "bfloat16", "float16"}
        Arithmetic of the network (:func:`~cellseg_bridge.nn.precision.autocast_dtype`).

    Returns
    -------
    out : ndarray of float32, shape (nout, Y, X) or (N, nout, Y, X)
        For the segmentation network: ``[dY, dX, cellprob]``.
    style : ndarray of float32, shape (S,) or (N, S)
        L2-normalised style vector(s).
    """
    planes = np.asarray(planes, dtype=np.float32)
    single = planes.ndim == 3
    if single:
        planes = planes[None]
    if planes.ndim != 4:
        raise InputError(f"planes must be (C, Y, X) or (N, C, Y, X), got shape {planes.shape}")
    n, c, ly, lx = planes.shape
    nchan = int(getattr(net, "nchan", c))
    if c != nchan:
        raise InputError(f"the network takes {nchan} channel(s), got {c}")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    div = math.lcm(PAD_DIVISOR, int(getattr(net, "size_multiple", 1)))
    fixed = int(getattr(net, "tile_size", 0) or 0)  # a network that runs one tile size only
    if fixed and int(tile_size) != fixed:
        raise InputError(f"this network runs tiles of {fixed} px only (tile_size {tile_size} asked)")
    tile_size = int(tile_size)
    if augment and tile_size <= 0:
        tile_size = 224
    if tile_size > 0 and tile_size % div:
        rounded = div * math.ceil(tile_size / div)
        logger.info("tile size %d rounded up to %d (multiple of %d)", tile_size, rounded, div)
        tile_size = rounded

    if fixed:
        (y0, y1), (x0, x1) = pad_to_tile(ly, fixed, div), pad_to_tile(lx, fixed, div)
    else:
        (y0, y1), (x0, x1) = transforms.pad_amounts(ly, div), transforms.pad_amounts(lx, div)
    py, px = ly + y0 + y1, lx + x0 + x1
    if augment:  # Cellpose pads to at least one tile (at the end) before augmenting
        py, px = max(py, tile_size), max(px, tile_size)
    padded = np.zeros((n, c, py, px), np.float32)
    padded[:, :, y0 : y0 + ly, x0 : x0 + lx] = planes
    if tile_size > 0 and not augment and py <= tile_size and px <= tile_size:
        tiles = [((slice(0, py), slice(0, px)), False, False)]
    elif fixed and not augment:
        tiles = [(s, False, False) for s in fixed_tile_grid((py, px), fixed, tile_overlap)]
    else:
        tiles = _plane_tiles((py, px), tile_size, tile_overlap, augment, div)
    device = next(net.parameters()).device
    dtype = autocast_dtype(precision, device)
    (sy0, sx0), _, _ = tiles[0]
    tile_pixels = (sy0.stop - sy0.start) * (sx0.stop - sx0.start)
    # batch_size counts 224 x 224 tiles: larger tiles go fewer at a time (bounded memory)
    per_batch = max(1, min(batch_size, batch_size * transforms.MIN_TILE**2 // tile_pixels))

    nout = None
    outputs: list[np.ndarray] = []
    styles: list[np.ndarray] = []
    jobs = [(k, t) for k in range(n) for t in range(len(tiles))]
    results: dict[tuple[int, int], np.ndarray] = {}
    style_sum: dict[int, np.ndarray] = {}
    net.eval()
    with torch.inference_mode():
        for start in range(0, len(jobs), per_batch):
            batch = jobs[start : start + per_batch]
            arr = []
            for k, t in batch:
                (sy, sx), fy, fx = tiles[t]
                a = padded[k, :, sy, sx]
                if fy:
                    a = a[:, ::-1]
                if fx:
                    a = a[:, :, ::-1]
                arr.append(np.ascontiguousarray(a))
            y, style = forward_batch(net, np.stack(arr), device, dtype)
            nout = y.shape[1]
            for b, (k, t) in enumerate(batch):
                _, fy, fx = tiles[t]
                yt = y[b]
                if fy:
                    yt = yt[:, ::-1].copy()
                    yt[0] *= -1
                if fx:
                    yt = yt[:, :, ::-1].copy()
                    yt[1] *= -1
                results[(k, t)] = yt
                style_sum[k] = style_sum.get(k, 0) + style[b]
                if all((k, tt) in results for tt in range(len(tiles))):
                    stack = np.stack([results.pop((k, tt)) for tt in range(len(tiles))])
                    blended = transforms.average_tiles(stack, [s for s, _, _ in tiles], (py, px))
                    outputs.append(blended[:, y0 : y0 + ly, x0 : x0 + lx].copy())
                    s = style_sum.pop(k)
                    norm = float(np.sqrt((s**2).sum()))
                    styles.append((s / norm if norm > 0 else s).astype(np.float32))
    out = np.stack(outputs).astype(np.float32, copy=False)
    sty = np.stack(styles)
    logger.debug(
        "ran %d plane(s) of %dx%d as %d tile(s) each (nout %s)", n, ly, lx, len(tiles), nout
    )
    return (out[0], sty[0]) if single else (out, sty)

"""Run the network over whole images: padding, tiles, batches, test-time augmentation.

:func:`run_network` takes normalised planes already at network scale (the
pipeline in :mod:`cellseg_bridge.segment` resizes) and returns the blended
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

The network runs under :func:`torch.inference_mode`; on a CUDA device with
``half_precision`` under float16 autocast (outputs are returned as float32);
the CPU and MPS always compute in float32.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from cellseg_bridge.core import transforms
from cellseg_bridge.errors import InputError

__all__ = ["select_device", "run_network", "PAD_DIVISOR"]

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


def run_network(
    net: torch.nn.Module,
    planes: np.ndarray,
    *,
    tile_size: int = 224,
    tile_overlap: float = 0.1,
    augment: bool = False,
    batch_size: int = 8,
    half_precision: bool = True,
    tile_group: int = 1,
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
        With ``augment``, 0 means 224.
    tile_overlap : float
        Fraction of tile overlap (clamped to [0.05, 0.5]); ignored with ``augment``.
    augment : bool
        Test-time augmentation (50% overlap, flipped tiles).
    batch_size : int
        Tiles of 224 x 224 per forward pass; larger tiles are batched by area
        (``batch_size * 224**2 // tile_area``, at least 1).
    half_precision : bool
        float16 autocast on CUDA devices (ignored elsewhere).
    tile_group : int
        1: every tile is its own network pass (Cellpose). ``k > 1`` (only for
        ``tile_size <= 224`` without ``augment``, and a :class:`CellposeUNet`):
        ``k x k`` neighbouring tiles are run as one pass over the region they
        cover (less overlap: fewer pixels through the network), with the
        style still computed per tile, from the region's deepest features
        inside the tile, and fed to the decoder as a blended, spatially
        varying shift (:class:`~cellseg_bridge.nn.net.WindowStyles`); the
        region outputs are blended with the sum of their tiles' tapers. Close
        to, but not identical with, Cellpose's output (tile borders move).

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
    tile_size = int(tile_size)
    if augment and tile_size <= 0:
        tile_size = 224
    if tile_size > 0 and tile_size % div:
        rounded = div * math.ceil(tile_size / div)
        logger.info("tile size %d rounded up to %d (multiple of %d)", tile_size, rounded, div)
        tile_size = rounded

    (y0, y1), (x0, x1) = transforms.pad_amounts(ly, div), transforms.pad_amounts(lx, div)
    py, px = ly + y0 + y1, lx + x0 + x1
    if augment:  # Cellpose pads to at least one tile (at the end) before augmenting
        py, px = max(py, tile_size), max(px, tile_size)
    padded = np.zeros((n, c, py, px), np.float32)
    padded[:, :, y0 : y0 + ly, x0 : x0 + lx] = planes
    if tile_size > 0 and not augment and py <= tile_size and px <= tile_size:
        tiles = [((slice(0, py), slice(0, px)), False, False)]
    else:
        tiles = _plane_tiles((py, px), tile_size, tile_overlap, augment, div)
    device = next(net.parameters()).device
    if (
        int(tile_group) > 1
        and not augment
        and 0 < tile_size <= transforms.MIN_TILE
        and len(tiles) > 1
        and hasattr(net, "encode")
        and hasattr(net, "decode")
    ):
        outputs, styles = [], []
        net.eval()
        with torch.inference_mode():
            for k in range(n):
                o, s = _grouped_plane(net, padded[k], tile_size, tile_overlap, div, int(tile_group), device)
                outputs.append(o[:, y0 : y0 + ly, x0 : x0 + lx].copy())
                styles.append(s)
        out, sty = np.stack(outputs), np.stack(styles)
        return (out[0], sty[0]) if single else (out, sty)
    (sy0, sx0), _, _ = tiles[0]
    tile_pixels = (sy0.stop - sy0.start) * (sx0.stop - sx0.start)
    # batch_size counts 224 x 224 tiles: larger tiles go fewer at a time (bounded memory)
    per_batch = max(1, min(batch_size, batch_size * transforms.MIN_TILE**2 // tile_pixels))

    use_amp = half_precision and device.type == "cuda"
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
            x = _to_net(torch.from_numpy(np.stack(arr)), device)
            if use_amp:
                with torch.autocast(device_type="cuda", dtype=torch.float16):
                    y, style = net(x)
            else:
                y, style = net(x)
            y = y.float().cpu().numpy()
            style = style.float().cpu().numpy()
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


def _to_net(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a batch to the network's device; channels-last layout on the CPU (faster convolutions)."""
    x = x.to(device)
    if device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _group_spans(
    starts: np.ndarray, size: int, length: int, group: int, div: int
) -> list[tuple[int, int, list[int]]]:
    """Regions ``(start, stop, tile indices)`` along one axis covering groups of ``group`` tiles.

    Tiles are split into ``ceil(n / group)`` runs as even as possible; a region spans its
    tiles, its length rounded up to ``div`` (moved back inside ``length`` if needed).
    """
    idx = np.arange(len(starts))
    out = []
    for run in np.array_split(idx, int(math.ceil(len(starts) / group))):
        a, b = int(starts[run[0]]), int(starts[run[-1]]) + size
        span = min(length, div * int(math.ceil((b - a) / div)))
        a = min(a, length - span)
        out.append((a, a + span, [int(i) for i in run]))
    return out


def _grouped_plane(
    net: torch.nn.Module,
    plane: np.ndarray,
    tile_size: int,
    overlap: float,
    div: int,
    group: int,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    """One padded ``(C, Y, X)`` plane through the network in regions of ``group x group`` tiles.

    Returns the blended output ``(nout, Y, X)`` and the L2-normalised sum of the tiles' styles.
    """
    from cellseg_bridge.nn.net import WindowStyles

    _, py, px = plane.shape
    ty, ys = transforms.tile_layout(py, tile_size, overlap, div=div)
    tx, xs = transforms.tile_layout(px, tile_size, overlap, div=div)
    taper = transforms.taper_mask(ty, tx)
    taper_t = torch.from_numpy(taper).to(device)
    out = None
    weight = np.zeros((py, px), np.float32)
    style_sum = None
    for ay, by, iy in _group_spans(ys, ty, py, group, div):
        for ax, bx, ix in _group_spans(xs, tx, px, group, div):
            x = _to_net(torch.from_numpy(np.ascontiguousarray(plane[None, :, ay:by, ax:bx])), device)
            features = net.encode(x)
            deepest = features[-1][0]
            f = (by - ay) // deepest.shape[-2]
            boxes, styles = [], []
            for i in iy:
                for j in ix:
                    wy, wx = int(ys[i]) - ay, int(xs[j]) - ax
                    cy, cx = int(round(wy / f)), int(round(wx / f))
                    cells = deepest[:, cy : cy + max(1, ty // f), cx : cx + max(1, tx // f)]
                    styles.append(torch.nn.functional.normalize(cells.mean(dim=(1, 2)), dim=0))
                    boxes.append((wy, wx, ty, tx))
            styles_t = torch.stack(styles)
            y = net.decode(features, WindowStyles(styles_t, boxes, (by - ay, bx - ax), taper_t))
            y = y[0].float().cpu().numpy()
            if out is None:
                out = np.zeros((y.shape[0], py, px), np.float32)
            m = np.zeros((by - ay, bx - ax), np.float32)
            for wy, wx, _, _ in boxes:
                m[wy : wy + ty, wx : wx + tx] += taper
            out[:, ay:by, ax:bx] += y * m
            weight[ay:by, ax:bx] += m
            s = styles_t.sum(0).float().cpu().numpy()
            style_sum = s if style_sum is None else style_sum + s
    out /= weight
    norm = float(np.sqrt((style_sum**2).sum()))
    return out, (style_sum / norm if norm > 0 else style_sum).astype(np.float32)

"""Image transforms of the inference pipeline: normalise, resize, pad, tile, blend.

Pure numpy (no file I/O, no torch). Arrays are channels-first: an image is
``(C, Y, X)`` (or any leading axes before ``Y, X``). The rules are those of
Cellpose 3.1 (``transforms.py`` / ``core.run_net``), re-implemented:

* **Normalisation** (:func:`normalize_percentile`): each channel is mapped so
  that its ``low`` percentile (1) becomes 0 and its ``high`` percentile (99)
  becomes 1 (linear interpolation between order statistics, ``np.percentile``'s
  default). Percentiles of arrays larger than ``224**3`` values come from a
  strided subsample (as Cellpose). A channel whose percentile range is
  ``<= 1e-3`` (e.g. constant) becomes all zeros. Non-finite values are refused
  by the caller, not here.
* **Resize** (:func:`resize`): bilinear with half-pixel centres and edge
  clamping, i.e. OpenCV's ``cv2.resize(..., INTER_LINEAR)`` on float images
  (source coordinate ``(i + 0.5) * in / out - 0.5``, clamped to the image).
* **Pad** (:func:`pad_amounts`): to a multiple of ``div`` (16) plus ``div // 2``
  (8) on each side, zeros, split evenly (Cellpose's ``get_pad_yx``).
* **Tiles** (:func:`tile_layout`): ``1`` tile along an axis that fits, else
  ``ceil((1 + 2 * overlap) * L / tile)`` tiles, starts evenly spaced from 0 to
  ``L - tile`` (truncated to int); the overlap is clamped to [0.05, 0.5]. With
  test-time augmentation: ``max(2, ceil(2 * L / tile))`` tiles (50% overlap),
  the image padded to at least one tile. (Our addition: tiles larger than 224
  overlap by Cellpose's absolute overlap and shrink to what covers the axis,
  see :func:`tile_layout`.)
* **Blending** (:func:`taper_mask`, :func:`average_tiles`): each tile's output
  is weighted by a separable sigmoid taper ``1 / (1 + exp((|x - c| - (B/2 - 20)) / 7.5))``
  with ``B = max(224, tile)``, and the weighted sum is divided by the summed
  weights.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "normalize_percentile",
    "resize",
    "scaled_shape",
    "pad_amounts",
    "pad_image",
    "unpad",
    "tile_layout",
    "tile_starts",
    "tile_grid",
    "taper_mask",
    "average_tiles",
]

#: Arrays with more values than this get their percentiles from a strided subsample.
_PERCENTILE_SUBSAMPLE = 224**3
#: A channel whose percentile range is at most this is set to zero.
_MIN_RANGE = 1e-3
#: Tiles are never shrunk below this size (Cellpose's tile and training crop).
MIN_TILE = 224
#: Sigmoid width of the tile taper (pixels).
TAPER_SIGMA = 7.5


# --------------------------------------------------------------------------- normalisation


def _percentiles(x: np.ndarray, low: float, high: float) -> tuple[float, float]:
    if x.size > _PERCENTILE_SUBSAMPLE:
        step = [max(1, n // 224) for n in x.shape]
        if x.ndim == 3:
            step[0] = max(1, x.shape[0] // 50)
        x = x[tuple(slice(0, n, s) for n, s in zip(x.shape, step))]
    lo, hi = np.percentile(x, [low, high])
    return float(lo), float(hi)


def normalize_percentile(
    image: np.ndarray, low: float = 1.0, high: float = 99.0, *, channel_axis: int | None = 0
) -> np.ndarray:
    """Map each channel's ``low``/``high`` percentiles to 0/1 (float32 copy).

    Parameters
    ----------
    image : ndarray
        Image; channels along ``channel_axis`` (None: a single channel).
    low, high : float
        Percentiles, ``0 <= low < high <= 100``.
    channel_axis : int or None
        Axis of the channels; each channel is normalised over all its other axes.

    Returns
    -------
    ndarray of float32
        Same shape; a channel whose percentile range is <= 1e-3 (constant,
        nearly constant) is all zeros.
    """
    if not 0 <= low < high <= 100:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {low}, {high}")
    out = np.array(image, dtype=np.float32, copy=True)
    if channel_axis is None:
        channels = [out]
    else:
        view = np.moveaxis(out, channel_axis, 0)  # a view: writes go to ``out``
        channels = [view[c] for c in range(view.shape[0])]
    for ch in channels:
        if ch.size == 0:
            continue
        lo, hi = _percentiles(ch, low, high)
        if hi - lo > _MIN_RANGE:
            ch -= np.float32(lo)
            ch /= np.float32(hi - lo)
        else:
            ch[...] = 0
    return out


# --------------------------------------------------------------------------- resize


def scaled_shape(shape: tuple[int, int], rescale: float) -> tuple[int, int]:
    """``(int(Y * rescale), int(X * rescale))`` (Cellpose truncates), at least 1."""
    return tuple(max(1, int(n * rescale)) for n in shape)  # type: ignore[return-value]


def _axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices ``i0, i1`` and weight ``w`` of ``i1`` for half-pixel-centre linear resize."""
    scale = n_in / n_out
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5
    i0 = np.floor(src).astype(np.int64)
    w = (src - i0).astype(np.float32)
    # OpenCV: a source position left of pixel 0 or right of the last pixel takes that pixel.
    left = i0 < 0
    i0[left] = 0
    w[left] = 0
    right = i0 >= n_in - 1
    i0[right] = n_in - 1
    w[right] = 0
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, w


def _resize_axis(a: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    n_in = a.shape[axis]
    if n_in == n_out:
        return a
    i0, i1, w = _axis_weights(n_in, n_out)
    shape = [1] * a.ndim
    shape[axis] = n_out
    w = w.reshape(shape)
    a0 = np.take(a, i0, axis=axis)
    a1 = np.take(a, i1, axis=axis)
    return a0 + (a1 - a0) * w


def resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of the last two axes to ``shape`` (as ``cv2.INTER_LINEAR``).

    Parameters
    ----------
    image : ndarray
        ``(..., Y, X)``; any leading axes (channels, planes) are carried along.
    shape : (int, int)
        Output ``(Y, X)``, both >= 1.

    Returns
    -------
    ndarray of float32
        ``(..., shape[0], shape[1])``. Resizing to the same shape returns a
        float32 copy of the input.
    """
    ny, nx = (int(shape[0]), int(shape[1]))
    if ny < 1 or nx < 1:
        raise ValueError(f"cannot resize to {shape}")
    a = np.asarray(image, dtype=np.float32)
    if a.ndim < 2 or a.shape[-1] < 1 or a.shape[-2] < 1:
        raise ValueError(f"cannot resize an array of shape {a.shape}")
    out = _resize_axis(a, ny, a.ndim - 2)
    out = _resize_axis(out, nx, a.ndim - 1)
    return np.array(out, dtype=np.float32, copy=out is a)


# --------------------------------------------------------------------------- padding


def pad_amounts(length: int, div: int = 16, extra: int = 1) -> tuple[int, int]:
    """``(before, after)`` zero padding of one axis (Cellpose's ``get_pad_yx``).

    The padded length is the next multiple of ``div`` plus ``extra * div``;
    ``extra * div // 2`` plus half the rounding goes before, the rest after.
    """
    lpad = int(div * math.ceil(length / div) - length)
    before = extra * div // 2 + lpad // 2
    after = extra * div // 2 + lpad - lpad // 2
    return before, after


def pad_image(image: np.ndarray, div: int = 16, extra: int = 1) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Zero-pad the last two axes (see :func:`pad_amounts`).

    Returns
    -------
    padded : ndarray
    crop : (slice, slice)
        ``padded[..., crop[0], crop[1]]`` is the original image (:func:`unpad`).
    """
    ly, lx = image.shape[-2:]
    (y0, y1), (x0, x1) = pad_amounts(ly, div, extra), pad_amounts(lx, div, extra)
    pads = [(0, 0)] * (image.ndim - 2) + [(y0, y1), (x0, x1)]
    return np.pad(image, pads, mode="constant"), (slice(y0, y0 + ly), slice(x0, x0 + lx))


def unpad(image: np.ndarray, crop: tuple[slice, slice]) -> np.ndarray:
    """Undo :func:`pad_image` (a view)."""
    return image[..., crop[0], crop[1]]


# --------------------------------------------------------------------------- tiles


def tile_layout(
    length: int, tile: int, overlap: float = 0.1, augment: bool = False, div: int = 16
) -> tuple[int, np.ndarray]:
    """Tile size and start offsets along one axis.

    Parameters
    ----------
    length : int
        Length of the (padded) axis; with ``augment`` it must be >= ``tile``
        (pad first).
    tile : int
        Largest tile size.
    overlap : float
        Fraction of overlap (clamped to [0.05, 0.5]); ignored with ``augment``.
    augment : bool
        50% overlap, at least 2 tiles of size ``tile`` (Cellpose's test-time augmentation).
    div : int
        Tile sizes other than ``tile`` and ``length`` are rounded up to a multiple of this.

    Returns
    -------
    size : int
        Tile size along the axis.
    starts : ndarray of int
        Start offsets, evenly spaced from 0 to ``length - size`` (truncated).

    Notes
    -----
    Tiles up to :data:`MIN_TILE` (224): Cellpose's rule, one tile if the axis
    fits, else ``n = ceil((1 + 2 overlap) L / tile)`` tiles of size ``tile``.
    Larger tiles (our addition, to pass fewer pixels through the network): the
    overlap is the absolute one of Cellpose's 224-px tiling, ``o = 2 overlap 224``
    pixels; ``n = ceil((L - o) / (tile - o))`` tiles of size
    ``ceil((L + (n - 1) o) / n)`` rounded up to ``div`` (at least 224, at most
    ``tile``). So a large tile never costs more pixels than needed: no jump from
    one tile to four when the image grows past the tile.
    """
    if augment:
        if length < tile:
            raise ValueError("with augment, pad the axis to at least one tile first")
        n = max(2, int(math.ceil(2.0 * length / tile)))
        return tile, np.linspace(0, length - tile, n).astype(int)
    overlap = min(0.5, max(0.05, float(overlap)))
    if length <= tile:
        return length, np.zeros(1, int)
    if tile <= MIN_TILE:
        n = int(math.ceil((1.0 + 2 * overlap) * length / tile))
        return tile, np.linspace(0, length - tile, n).astype(int)
    o = 2 * overlap * MIN_TILE
    n = max(2, int(math.ceil((length - o) / (tile - o))))
    size = div * int(math.ceil(math.ceil((length + (n - 1) * o) / n) / div))
    size = min(tile, max(MIN_TILE, size), length)
    return size, np.linspace(0, length - size, n).astype(int)


def tile_starts(length: int, tile: int, overlap: float = 0.1, augment: bool = False) -> np.ndarray:
    """Start offsets of the tiles along one axis (see :func:`tile_layout`)."""
    return tile_layout(length, tile, overlap, augment)[1]


def tile_grid(
    shape: tuple[int, int], tile: int, overlap: float = 0.1, augment: bool = False, div: int = 16
) -> list[tuple[slice, slice]]:
    """All tiles of a ``(Y, X)`` image, row-major, as ``(slice_y, slice_x)``."""
    ty, ys = tile_layout(shape[0], tile, overlap, augment, div)
    tx, xs = tile_layout(shape[1], tile, overlap, augment, div)
    return [(slice(int(y), int(y) + ty), slice(int(x), int(x) + tx)) for y in ys for x in xs]


def taper_mask(ly: int, lx: int, sigma: float = TAPER_SIGMA) -> np.ndarray:
    """Blending weight of a ``(ly, lx)`` tile: separable sigmoid falling off ~20 px from the edge."""
    size = max(224, ly, lx)
    xm = np.arange(size, dtype=np.float64)
    xm = np.abs(xm - xm.mean())
    m = 1.0 / (1.0 + np.exp((xm - (size / 2 - 20)) / sigma))
    y0 = size // 2 - ly // 2
    x0 = size // 2 - lx // 2
    return (m[y0 : y0 + ly, None] * m[None, x0 : x0 + lx]).astype(np.float32)


def average_tiles(
    tiles: np.ndarray, slices: list[tuple[slice, slice]], shape: tuple[int, int]
) -> np.ndarray:
    """Blend tile outputs ``(N, C, ty, tx)`` into ``(C, Y, X)`` with :func:`taper_mask` weights.

    Every pixel of ``shape`` must be covered by at least one tile. A single
    tile covering the image is returned unchanged.
    """
    tiles = np.asarray(tiles, dtype=np.float32)
    n, c, ty, tx = tiles.shape
    if n == 1 and (ty, tx) == tuple(shape):
        return tiles[0].copy()
    mask = taper_mask(ty, tx)
    out = np.zeros((c, *shape), np.float32)
    weight = np.zeros(shape, np.float32)
    for t, (sy, sx) in zip(tiles, slices):
        out[:, sy, sx] += t * mask
        weight[sy, sx] += mask
    out /= weight
    return out

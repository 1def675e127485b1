"""ImageJ's scan-line polygon filler (``PolygonFiller``) and ``PolygonRoi`` masks.

The filling rules are described in :mod:`cellseg_bridge.core.roi.rasterize`.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

_F32 = np.float32


@numba.njit(cache=True)
def _java_round(v: float) -> int:
    """``Math.round(double)``: floor(v + 1/2) computed without double rounding."""
    f = math.floor(v)
    return int(f) + 1 if v - f >= 0.5 else int(f)


@numba.njit(cache=True)
def _java_int(v: float) -> int:
    """Java's ``(int)`` cast of a double: truncation toward zero, NaN -> 0, saturating."""
    if v != v:
        return 0
    if v >= 2147483647.0:
        return 2147483647
    if v <= -2147483648.0:
        return -2147483648
    return int(v)


@numba.njit(cache=True)
def _edge_table_int(x, y):
    n = x.shape[0]
    ex = np.empty(n, np.float64)
    ey1 = np.empty(n, np.int64)
    ey2 = np.empty(n, np.int64)
    slope = np.empty(n, np.float64)
    m = 0
    for i in range(n):
        j = 0 if i == n - 1 else i + 1
        y1 = y[i]
        y2 = y[j]
        x1 = x[i]
        x2 = x[j]
        if y1 == y2:
            continue
        if y1 > y2:
            y1, y2 = y2, y1
            x1, x2 = x2, x1
        s = float(x2 - x1) / float(y2 - y1)
        ex[m] = x1 + 0.5 * s + 1e-8
        ey1[m] = y1
        ey2[m] = y2
        slope[m] = s
        m += 1
    return ex[:m], ey1[:m], ey2[:m], slope[:m]


@numba.njit(cache=True)
def _edge_table_float(xf, yf, x_offset, y_offset):
    n = xf.shape[0]
    ex = np.empty(n, np.float64)
    ey1 = np.empty(n, np.int64)
    ey2 = np.empty(n, np.int64)
    slope = np.empty(n, np.float64)
    m = 0
    start = 0
    for i in range(n):
        j = start if i == n - 1 else i + 1
        if np.isnan(xf[j]):  # the next point starts a new polygon: close this one
            j = start
        if np.isnan(xf[i]):
            start = i + 1
            continue
        y1f = np.float64(yf[i]) + y_offset
        y2f = np.float64(yf[j]) + y_offset
        x1f = np.float64(xf[i]) + x_offset
        x2f = np.float64(xf[j]) + x_offset
        y1 = _java_round(y1f)
        y2 = _java_round(y2f)
        if y1 == y2 or (y1 <= 0 and y2 <= 0):
            continue
        if y1 > y2:
            y1, y2 = y2, y1
            y1f, y2f = y2f, y1f
            x1f, x2f = x2f, x1f
        s = (x2f - x1f) / (y2f - y1f)
        ex[m] = x1f + (y1 - y1f + 0.5) * s + 1e-8
        ey1[m] = y1
        ey2[m] = y2
        slope[m] = s
        m += 1
    return ex[:m], ey1[:m], ey2[:m], slope[:m]


#: Above this many edge-row steps, edges are moved to the first visible row in one
#: multiplication instead of ImageJ's row-by-row additions (see :func:`fill_polygon`).
EXACT_ADVANCE_LIMIT = 200_000_000


@numba.njit(cache=True)
def _scan_fill(ex, ey1, ey2, slope, width, height, wx0, wy0, wx1, wy1, exact_limit):
    """Scan-line fill of an edge table (even-odd), ImageJ's active-edge bookkeeping.

    Only the window ``[wy0, wy1) x [wx0, wx1)`` of the ``(height, width)`` mask is
    allocated and filled; the window must lie inside the mask.
    """
    mask = np.zeros((wy1 - wy0, wx1 - wx0), np.bool_)
    m = ex.shape[0]
    if m == 0 or wy1 <= wy0 or wx1 <= wx0:
        return mask
    ex = ex.copy()
    y_min = ey1.min()
    y_max = ey2.max()
    y_start = y_min if y_min > 0 else 0
    active = np.zeros(m, np.bool_)
    if y_min != 0:  # edges that started above the first row, shifted in one step
        for e in range(m):
            if ey1[e] < y_start and ey2[e] >= y_start:
                ex[e] += slope[e] * (y_start - ey1[e])
                active[e] = True
    first = y_start
    if wy0 > y_start:  # rows above the window: advance the edges without filling
        work = 0
        for e in range(m):
            begin = ey1[e] if ey1[e] > y_start else y_start
            end = ey2[e] if ey2[e] < wy0 else wy0
            if end > begin:
                work += end - begin
        for e in range(m):
            begin = ey1[e] if ey1[e] > y_start else y_start
            end = ey2[e] if ey2[e] < wy0 else wy0
            if end > begin:
                if work <= exact_limit:  # ImageJ's repeated addition, so ties round alike
                    for _ in range(end - begin):
                        ex[e] = ex[e] + slope[e]
                else:
                    ex[e] += slope[e] * (end - begin)
            active[e] = begin < wy0 and ey2[e] >= wy0
        first = wy0
    xs = np.empty(m, np.float64)
    for yy in range(first, min(height, wy1, y_max + 1)):
        for e in range(m):
            if active[e] and (yy < ey1[e] or yy >= ey2[e]):
                active[e] = False
            if yy == ey1[e]:
                active[e] = True
        k = 0
        for e in range(m):
            if active[e]:
                xs[k] = ex[e]
                k += 1
        if k > 1:
            row = np.sort(xs[:k])
            for i in range(0, k - 1, 2):
                x1 = _java_int(row[i] + 0.5)
                x1 = min(max(x1, wx0), wx1)
                x2 = _java_int(row[i + 1] + 0.5)
                x2 = min(max(x2, wx0), wx1)
                for xx in range(x1, x2):
                    mask[yy - wy0, xx - wx0] = True
        for e in range(m):
            if active[e]:
                ex[e] = ex[e] + slope[e]
    return mask


def image_window(
    origin: tuple[int, int], size: tuple[int, int], clip: tuple[int, int] | None
) -> tuple[int, int, int, int]:
    """The part of a local mask that lies on an image, in the mask's own coordinates.

    Parameters
    ----------
    origin : (int, int)
        ``(x0, y0)``: image coordinates of the local mask's pixel (0, 0).
    size : (int, int)
        ``(width, height)`` of the local mask.
    clip : (height, width) or None
        Image size; None: the whole local mask.

    Returns
    -------
    (wx0, wy0, wx1, wy1)
        Column and row ranges ``[wx0, wx1) x [wy0, wy1)``, empty (``wx1 <= wx0`` or
        ``wy1 <= wy0``) when the mask misses the image.
    """
    width, height = int(size[0]), int(size[1])
    if clip is None:
        return 0, 0, max(width, 0), max(height, 0)
    x0, y0 = int(origin[0]), int(origin[1])
    wx0, wy0 = max(-x0, 0), max(-y0, 0)
    wx1 = max(min(int(clip[1]) - x0, width), wx0)
    wy1 = max(min(int(clip[0]) - y0, height), wy0)
    return min(wx0, wx1), min(wy0, wy1), wx1, wy1


def fill_polygon(
    x: np.ndarray,
    y: np.ndarray,
    width: int,
    height: int,
    *,
    x_offset: float = 0.0,
    y_offset: float = 0.0,
    subpixel: bool | None = None,
    window: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """Fill a polygon into a ``(height, width)`` mask with ImageJ's ``PolygonFiller``.

    Parameters
    ----------
    x, y : ndarray
        Vertex coordinates in the mask's frame. Integer arrays use ImageJ's integer
        rules; float arrays are cast to float32 (ImageJ stores sub-pixel vertices as
        float) and may hold several polygons separated by one NaN each.
    width, height : int
        Mask size.
    x_offset, y_offset : float
        Added (in double precision) to float vertices, like ImageJ's base offset.
    subpixel : bool, optional
        Force the float (True) or integer (False) rules; default from the dtype.
    window : (x0, y0, x1, y1), optional
        Fill and return only columns ``[x0, x1)`` and rows ``[y0, y1)`` of the mask
        (clipped to it), so memory follows the window, not the polygon: a polygon
        with huge coordinates costs what its part on the image costs. The pixels are
        those of the full mask, exactly, as long as fewer than
        :data:`EXACT_ADVANCE_LIMIT` edge-row steps lie above the window (ImageJ
        advances edges row by row); beyond that the edges are moved to the window's
        first row in one step, which can move a rounding tie by one pixel.

    Returns
    -------
    ndarray of bool, shape (height, width), or the window's shape

    Notes
    -----
    Integer rule: an edge from ``(x1, y1)`` to ``(x2, y2)`` covers rows
    ``min(y1, y2) <= row < max(y1, y2)``. Float rule: vertex rows are rounded half up
    (``Math.round``) first, and edges entirely at or above row 0 are dropped. In both,
    a row's crossings are sorted and paired, and pixels ``round(xa) <= col < round(xb)``
    are set, with crossings evaluated at the row's centre.
    """
    width, height = int(width), int(height)
    if window is None:
        window = (0, 0, width, height)
    wx0, wy0 = max(int(window[0]), 0), max(int(window[1]), 0)
    wx1, wy1 = max(min(int(window[2]), width), wx0), max(min(int(window[3]), height), wy0)
    if width <= 0 or height <= 0:
        return np.zeros((max(wy1 - wy0, 0), max(wx1 - wx0, 0)), bool)
    x = np.asarray(x)
    y = np.asarray(y)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("x and y must be 1-D arrays of the same length")
    if subpixel is None:
        subpixel = not (np.issubdtype(x.dtype, np.integer) and np.issubdtype(y.dtype, np.integer))
    if x.size == 0:
        return np.zeros((wy1 - wy0, wx1 - wx0), bool)
    if subpixel:
        tables = _edge_table_float(
            x.astype(_F32), y.astype(_F32), float(x_offset), float(y_offset)
        )
    else:
        tables = _edge_table_int(x.astype(np.int64), y.astype(np.int64))
    return _scan_fill(*tables, width, height, wx0, wy0, wx1, wy1, EXACT_ADVANCE_LIMIT)


def float_polygon_bounds(xf: np.ndarray, yf: np.ndarray) -> tuple[float, float, float, float]:
    """Bounds of float vertices as ImageJ's ``FloatPolygon`` computes them.

    Returns ``(min_x, min_y, max_x, max_y)`` as float32 values, NaNs ignored. Like ImageJ,
    the maxima start at ``Float.MIN_VALUE`` (a tiny positive number), so polygons lying
    entirely at negative coordinates get a maximum of about 0.
    """
    xf = np.asarray(xf, _F32)
    yf = np.asarray(yf, _F32)
    tiny = np.float32(1.4e-45)
    big = np.float32(3.4028235e38)
    xs = xf[~np.isnan(xf)]
    ys = yf[~np.isnan(yf)]
    min_x = min(big, xs.min()) if xs.size else big
    min_y = min(big, ys.min()) if ys.size else big
    max_x = max(tiny, xs.max()) if xs.size else tiny
    max_y = max(tiny, ys.max()) if ys.size else tiny
    return _F32(min_x), _F32(min_y), _F32(max_x), _F32(max_y)


def _relative_polygon_bounds(xf: np.ndarray, yf: np.ndarray) -> tuple[int, int, int, int]:
    """``FloatPolygon.getBounds()``: floor of the minima, ``(int)(max - origin + 0.5)`` sizes."""
    min_x, min_y, max_x, max_y = float_polygon_bounds(xf, yf)
    x0 = math.floor(float(min_x))
    y0 = math.floor(float(min_y))
    w = int(float(_F32(max_x - _F32(x0))) + 0.5)
    h = int(float(_F32(max_y - _F32(y0))) + 0.5)
    return x0, y0, w, h


def polygon_mask(
    x: np.ndarray, y: np.ndarray, *, subpixel: bool | None = None, clip: tuple[int, int] | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """Mask of a ``PolygonRoi`` (polygon, freehand or traced) and its origin.

    Parameters
    ----------
    x, y : ndarray
        Absolute image coordinates of the vertices (integer, or float for sub-pixel ROIs).
    subpixel : bool, optional
        Default: float dtype means sub-pixel.
    clip : (height, width), optional
        Image size: only the part of the local mask on the image is computed and
        returned, its origin moving with it (memory bounded by the image).

    Returns
    -------
    mask : ndarray of bool, shape (h, w)
        The ROI's local mask, the size of its integer bounds (or its part on the image).
    origin : tuple of int
        ``(x0, y0)``: where the mask's pixel (0, 0) lies in the image.

    Notes
    -----
    Integer polygons: bounds are min/max of the vertices (``java.awt.Polygon``).
    Sub-pixel polygons: ImageJ keeps the float bounds ``(min_x, min_y)``, stores
    vertices relative to them in float32, takes integer bounds ``floor(min)`` to
    ``ceil(max)``, and fills with offset ``min - floor(min)``.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if subpixel is None:
        subpixel = not (np.issubdtype(x.dtype, np.integer) and np.issubdtype(y.dtype, np.integer))
    if x.size == 0:
        return np.zeros((0, 0), bool), (0, 0)
    if not subpixel:
        xi = x.astype(np.int64)
        yi = y.astype(np.int64)
        x0, y0 = int(xi.min()), int(yi.min())
        w, h = int(xi.max()) - x0, int(yi.max()) - y0
        return fill_on_image(xi - x0, yi - y0, (x0, y0), (w, h), clip, subpixel=False)
    xf = x.astype(_F32)
    yf = y.astype(_F32)
    min_x, min_y, max_x, max_y = float_polygon_bounds(xf, yf)
    bx, by = float(min_x), float(min_y)
    bw, bh = float(_F32(max_x - min_x)), float(_F32(max_y - min_y))
    x0, y0 = math.floor(bx), math.floor(by)
    w = math.ceil(bx + bw) - x0
    h = math.ceil(by + bh) - y0
    xr = (xf - _F32(bx)).astype(_F32)
    yr = (yf - _F32(by)).astype(_F32)
    return fill_on_image(xr, yr, (x0, y0), (w, h), clip, subpixel=True, x_offset=bx - x0, y_offset=by - y0)


def fill_on_image(
    x: np.ndarray, y: np.ndarray, origin: tuple[int, int], size: tuple[int, int],
    clip: tuple[int, int] | None, **fill: Any,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Fill a local polygon of ``size`` (w, h) at ``origin`` (x0, y0), only where it lies on a ``clip`` image.

    Parameters
    ----------
    x, y : ndarray
        Vertices in the local mask's frame.
    origin, size : (int, int)
        Where the local mask lies in the image, and its ``(width, height)``.
    clip : (height, width) or None
        Image size (None: the whole local mask).
    **fill
        Passed to :func:`fill_polygon` (``subpixel``, offsets).

    Returns
    -------
    mask : ndarray of bool
        The local mask's part on the image.
    origin : (int, int)
        Image coordinates of that part's pixel (0, 0).
    """
    wx0, wy0, wx1, wy1 = image_window(origin, size, clip)
    mask = fill_polygon(x, y, size[0], size[1], window=(wx0, wy0, wx1, wy1), **fill)
    return mask, (int(origin[0]) + wx0, int(origin[1]) + wy0)


def _relative_float_polygon_mask(
    xf: np.ndarray, yf: np.ndarray, clip: tuple[int, int] | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """Mask of a float polygon made relative with ``FloatPolygon.getBounds()`` (no offset)."""
    xf = np.asarray(xf, _F32)
    yf = np.asarray(yf, _F32)
    x0, y0, w, h = _relative_polygon_bounds(xf, yf)
    xr = (xf - _F32(x0)).astype(_F32)
    yr = (yf - _F32(y0)).astype(_F32)
    return fill_on_image(xr, yr, (x0, y0), (w, h), clip, subpixel=True)

"""ImageJ's "Fit Spline" for polygon ROIs: the closed spline through the nodes, and its mask."""

from __future__ import annotations

import logging
import math

import numpy as np

from cellseg_bridge.core.roi.polygon_fill import float_polygon_bounds, polygon_mask

_F32 = np.float32
logger = logging.getLogger(__name__)
#: Most points a spline is sampled at. ImageJ samples ``perimeter / 2`` points; a ROI with a
#: perimeter above 2e6 px (far beyond any image: ImageJ could not rasterise it, it allocates the
#: whole mask) would otherwise cost gigabytes of points and edges. Below it, pixels are ImageJ's.
MAX_SPLINE_POINTS = 1_000_000


def _closed_perimeter(xr: np.ndarray, yr: np.ndarray) -> float:
    """Perimeter of a closed float32 polygon, summed in double from float32 differences."""
    n = xr.size
    total = 0.0
    for i in range(n):
        j = (i + 1) % n
        if j == 0 and n < 2:
            break
        dx = float(_F32(xr[j] - xr[i])) if j else float(_F32(xr[0] - xr[n - 1]))
        dy = float(_F32(yr[j] - yr[i])) if j else float(_F32(yr[0] - yr[n - 1]))
        total += math.sqrt(dx * dx + dy * dy)
    return total


class _PeriodicSpline:
    """Interpolating cubic spline through (t, v) nodes, made periodic by copying
    ``extend`` nodes from each end across the other (closed curves).

    The second derivatives come from the classic tridiagonal recursion of a natural
    spline over the extended node list; differences of node parameters are taken in
    float32 where ImageJ stores them as float.
    """

    EXTEND = 7

    def __init__(self, t: np.ndarray, v: np.ndarray, closed: bool = True) -> None:
        t = np.asarray(t, _F32)
        v = np.asarray(v, _F32)
        n = t.size
        if closed:
            e = min(self.EXTEND, n - 1)
            head_t = [_F32(t[n - (e - i + 1)] - t[n - 1]) for i in range(e)]
            head_v = [v[n - (e - i + 1)] for i in range(e)]
            tail_t = [_F32(_F32(t[k + 1] - t[0]) + t[n - 1]) for k in range(e)]
            tail_v = [v[k + 1] for k in range(e)]
            t = np.array(head_t + list(t) + tail_t, _F32)
            v = np.array(head_v + list(v) + tail_v, _F32)
            n = t.size
        second = [0.0] * n
        u = [0.0] * n
        td = [float(a) for a in t]
        vd = [float(a) for a in v]
        for i in range(1, n - 1):
            sig = (td[i] - td[i - 1]) / (td[i + 1] - td[i - 1])
            p = sig * second[i - 1] + 2.0
            second[i] = (sig - 1.0) / p
            right = (vd[i + 1] - vd[i]) / float(_F32(t[i + 1] - t[i]))
            left = (vd[i] - vd[i - 1]) / float(_F32(t[i] - t[i - 1]))
            ui = right - left
            u[i] = (6.0 * ui / float(_F32(t[i + 1] - t[i - 1])) - sig * u[i - 1]) / p
        second[n - 1] = 0.0
        for k in range(n - 2, -1, -1):
            second[k] = second[k] * second[k + 1] + u[k]
        self._t = t
        self._td = td
        self._vd = vd
        self._second = second

    def __call__(self, xs: np.ndarray) -> np.ndarray:
        """Values at parameters ``xs``: ImageJ's evaluation in double precision, for all points at once.

        The interval of each parameter is the last node at or below it; a zero-length
        interval gives 0, as in ImageJ.
        """
        td = np.asarray(self._td, np.float64)
        vd = np.asarray(self._vd, np.float64)
        y2 = np.asarray(self._second, np.float64)
        xs = np.asarray(xs, np.float64)
        lo = np.clip(np.searchsorted(td, xs, side="right") - 1, 0, td.size - 2)
        hi = lo + 1
        h = (self._t[hi] - self._t[lo]).astype(np.float64)  # float32 difference, as __call__ takes it
        with np.errstate(divide="ignore", invalid="ignore"):
            a = (td[hi] - xs) / h
            b = (xs - td[lo]) / h
            out = a * vd[lo] + b * vd[hi] + ((a * a * a - a) * y2[lo] + (b * b * b - b) * y2[hi]) * (h * h) / 6.0
        return np.where(h == 0.0, 0.0, out)


def spline_fit_polygon(
    x: np.ndarray, y: np.ndarray, *, subpixel: bool | None = None, n_points: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The closed spline ImageJ draws through a polygon's nodes ("Fit Spline").

    Parameters
    ----------
    x, y : ndarray
        Absolute node coordinates (integer, or float32 for sub-pixel ROIs).
    subpixel : bool, optional
        Default: float dtype means sub-pixel.
    n_points : int, optional
        Number of spline points; default ImageJ's ``max(100, perimeter / 2)``.

    Returns
    -------
    xs, ys : ndarray of float32
        Absolute coordinates of the spline points.

    Notes
    -----
    The curve is parametrised by the cumulative square root of the node distances; x and
    y are each interpolated with a cubic spline over the node list extended periodically
    by 7 nodes at both ends, and sampled at equal parameter steps.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if subpixel is None:
        subpixel = not (np.issubdtype(x.dtype, np.integer) and np.issubdtype(y.dtype, np.integer))
    if subpixel:
        xa, ya = x.astype(_F32), y.astype(_F32)
        bx, by, _, _ = float_polygon_bounds(xa, ya)
    else:
        xa, ya = x.astype(np.int64), y.astype(np.int64)
        bx, by = _F32(xa.min()), _F32(ya.min())
        xa = xa.astype(_F32)
        ya = ya.astype(_F32)
    xr = (xa - _F32(bx)).astype(_F32)
    yr = (ya - _F32(by)).astype(_F32)
    n = xr.size
    if n_points is None:
        n_points = max(100, int(_closed_perimeter(xr, yr) / 2.0))
        if n_points > MAX_SPLINE_POINTS:  # a ROI far larger than any image (see the constant)
            logger.warning("spline-fitted ROI with a perimeter of %.3g px: sampled at %d points, not %d",
                           2.0 * n_points, MAX_SPLINE_POINTS, n_points)
            n_points = MAX_SPLINE_POINTS
    # node parameter: cumulative sqrt of segment lengths (all in float32), closing node last
    t = np.zeros(n + 1, _F32)
    total = _F32(0.0)
    floor_step = _F32(0.001)
    for i in range(1, n + 1):
        j = i if i < n else 0
        k = i - 1 if i < n else n - 1
        if i < n:
            dx, dy = _F32(xr[j] - xr[k]), _F32(yr[j] - yr[k])
        else:
            dx, dy = _F32(xr[k] - xr[0]), _F32(yr[k] - yr[0])
        step = _F32(math.sqrt(math.sqrt(float(_F32(_F32(dx * dx) + _F32(dy * dy))))))
        if step < floor_step:
            step = floor_step
        total = _F32(total + step)
        t[i] = total
    xn = np.append(xr, xr[0]).astype(_F32)
    yn = np.append(yr, yr[0]).astype(_F32)
    fx = _PeriodicSpline(t, xn)
    fy = _PeriodicSpline(t, yn)
    step_t = float(total) / (n_points - 1)
    params = np.arange(n_points, dtype=np.float64) * step_t  # i * step_t, as ImageJ computes it
    xs = fx(params).astype(_F32)
    ys = fy(params).astype(_F32)
    return (xs + _F32(bx)).astype(_F32), (ys + _F32(by)).astype(_F32)


def spline_polygon_mask(
    x: np.ndarray, y: np.ndarray, *, subpixel: bool | None = None, clip: tuple[int, int] | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """Mask and origin of a spline-fitted polygon ROI (see :func:`spline_fit_polygon`; ``clip``: :func:`polygon_mask`)."""
    xs, ys = spline_fit_polygon(x, y, subpixel=subpixel)
    return polygon_mask(xs, ys, subpixel=True, clip=clip)

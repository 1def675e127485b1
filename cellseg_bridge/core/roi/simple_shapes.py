"""Masks of ImageJ's simple shape ROIs: rectangles, ovals, ellipses and rotated rectangles."""

from __future__ import annotations

import math

import numpy as np

from cellseg_bridge.core.roi.polygon_fill import _relative_float_polygon_mask

_F32 = np.float32


def rectangle_mask(width: int, height: int) -> np.ndarray:
    """Mask of a plain rectangle ROI: all of its bounds."""
    return np.ones((max(int(height), 0), max(int(width), 0)), bool)


def oval_mask(
    width: int, height: int, window: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """Mask of an ``OvalRoi`` with integer bounds ``width`` x ``height`` (ImageJ 1.53t rule).

    A pixel is inside when ``dx*dx/(w/2)^2 + dy*dy/(h/2)^2 <= 1``, with ``dx``, ``dy`` the
    distances of the pixel's index from ``(w/2 - 0.5, h/2 - 0.5)``, in double precision
    and in that order of operations.

    Parameters
    ----------
    width, height : int
        The oval's bounds.
    window : (x0, y0, x1, y1), optional
        Compute only this part of the mask (local coordinates, clipped to the bounds),
        e.g. the part that lies on the image; default all of it.
    """
    width, height = int(width), int(height)
    x0, y0, x1, y1 = (0, 0, width, height) if window is None else window
    x0, y0 = max(int(x0), 0), max(int(y0), 0)
    x1, y1 = min(int(x1), width), min(int(y1), height)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), bool)
    rx = width / 2.0
    ry = height / 2.0
    rx2 = rx * rx
    ry2 = ry * ry
    dx = np.arange(x0, x1, dtype=np.float64) - (rx - 0.5)
    dy = np.arange(y0, y1, dtype=np.float64) - (ry - 0.5)
    return (dx[None, :] * dx[None, :]) / rx2 + (dy[:, None] * dy[:, None]) / ry2 <= 1.0


def ellipse_polygon(
    x1: float, y1: float, x2: float, y2: float, aspect_ratio: float
) -> tuple[np.ndarray, np.ndarray]:
    """The 72 float32 vertices of an ``EllipseRoi`` (absolute coordinates).

    ``(x1, y1)``-``(x2, y2)`` are the ends of the major axis; the minor axis is
    ``aspect_ratio`` (clamped to [0, 1]) times the major one.
    """
    aspect_ratio = min(max(float(aspect_ratio), 0.0), 1.0)
    x1, y1, x2, y2 = float(x1), float(y1), float(x2), float(y2)
    cx = (x1 + x2) / 2.0
    cy = (y1 + y2) / 2.0
    dx = x2 - x1
    dy = y2 - y1
    major = math.sqrt(dx * dx + dy * dy)
    minor = major * aspect_ratio
    phi_deg = math.atan2(dy, dx) * 180.0 / math.pi
    xs = np.empty(72, _F32)
    ys = np.empty(72, _F32)
    for i in range(72):
        deg = i * 360.0 / 72.0
        beta = deg / 180.0 * math.pi
        ex = math.cos(beta) * major / 2.0
        ey = math.sin(beta) * minor / 2.0
        theta = math.atan2(ey, ex)
        r = math.sqrt(ex * ex + ey * ey)
        ang = theta + phi_deg / 180.0 * math.pi
        xs[i] = _F32(cx + math.cos(ang) * r)
        ys[i] = _F32(cy + math.sin(ang) * r)
    return xs, ys


def ellipse_mask(
    x1: float, y1: float, x2: float, y2: float, aspect_ratio: float, clip: tuple[int, int] | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """Mask and origin of an ``EllipseRoi`` (see :func:`ellipse_polygon`); ``clip``: see :func:`polygon_mask`."""
    return _relative_float_polygon_mask(*ellipse_polygon(x1, y1, x2, y2, aspect_ratio), clip=clip)


def rotated_rect_polygon(
    x1: float, y1: float, x2: float, y2: float, rect_width: float
) -> tuple[np.ndarray, np.ndarray]:
    """The 5 float32 vertices (first repeated last) of a ``RotatedRectRoi``.

    ``(x1, y1)``-``(x2, y2)`` is the centre line, ``rect_width`` the width across it.
    """
    x1, y1, x2, y2, w = float(x1), float(y1), float(x2), float(y2), float(rect_width)
    dyy = y2 - y1
    dxx = x2 - x1
    if dyy != 0.0:
        ratio = dxx / dyy
    elif dxx != 0.0:
        ratio = math.copysign(math.inf, dxx) * math.copysign(1.0, dyy)
    else:
        ratio = math.nan
    theta = math.atan(ratio)
    sx = w / 2.0 * math.sin(math.pi / 2.0 + theta)
    sy = w / 2.0 * math.cos(math.pi / 2.0 + theta)
    xs = np.array([x1 + sx, x2 + sx, x2 - sx, x1 - sx, 0.0], dtype=np.float64).astype(_F32)
    ys = np.array([y1 + sy, y2 + sy, y2 - sy, y1 - sy, 0.0], dtype=np.float64).astype(_F32)
    xs[4], ys[4] = xs[0], ys[0]
    return xs, ys


def rotated_rect_mask(
    x1: float, y1: float, x2: float, y2: float, rect_width: float, clip: tuple[int, int] | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """Mask and origin of a ``RotatedRectRoi`` (see :func:`rotated_rect_polygon`); ``clip``: see :func:`polygon_mask`."""
    return _relative_float_polygon_mask(*rotated_rect_polygon(x1, y1, x2, y2, rect_width), clip=clip)

"""Java2D paths: ImageJ's composite shapes (``ShapeRoi``) and rounded rectangles.

Paths are lists of ``(SEG_*, coords)`` segments; curves are flattened like Java2D's
``FlatteningPathIterator`` and the result is filled with
:func:`~cellseg_bridge.core.roi.polygon_fill.fill_polygon`.
"""

from __future__ import annotations

import math

import numpy as np

from cellseg_bridge.core.roi.polygon_fill import fill_on_image

#: Java2D path segment types (``java.awt.geom.PathIterator``), as stored in ImageJ's
#: composite-ROI float arrays.
SEG_MOVETO, SEG_LINETO, SEG_QUADTO, SEG_CUBICTO, SEG_CLOSE = 0, 1, 2, 3, 4
_SEG_NCOORDS = {SEG_MOVETO: 2, SEG_LINETO: 2, SEG_QUADTO: 4, SEG_CUBICTO: 6, SEG_CLOSE: 0}

#: Flatness ImageJ uses to turn composite-shape curves into polygons for masks.
FILL_FLATNESS = 0.01
#: Recursion limit of Java2D's flattening (``FlatteningPathIterator``'s default).
FLATTEN_LIMIT = 10

_F32 = np.float32

Segment = tuple[int, tuple[float, ...]]

# Kappa of Java2D's rounded-rectangle corner cubics: the control-point fraction of the
# corner radius measured from the arc's end points (4/3 * tan(pi/8) for a quarter circle,
# written the way Java2D derives it from angle pi/4).
_A = 1.0 - math.cos(math.pi / 4.0)
_B = math.tan(math.pi / 4.0)
_C = math.sqrt(1.0 + _B * _B) - 1 + _A
_CV = 4.0 / 3.0 * _A * _B / _C
_ACV = (1.0 - _CV) / 2.0


def rounded_rect_path(x: float, y: float, width: float, height: float, arc: float) -> list[Segment]:
    """The path of a Java2D ``RoundRectangle2D`` (arc width = arc height = ``arc``).

    Each point is ``(x + fw*width + fa*aw, y + fh*height + fb*ah)`` with ``aw``, ``ah`` the
    arc sizes clipped to the width/height; the corners are cubic Beziers.
    """
    x, y, w, h = float(x), float(y), float(width), float(height)
    aw = min(w, abs(float(arc)))
    ah = min(h, abs(float(arc)))

    def pt(fw: float, fa: float, fh: float, fb: float) -> tuple[float, float]:
        return (x + fw * w + fa * aw, y + fh * h + fb * ah)

    # (segment type, [(fw, fa, fh, fb), ...]) going round counter-clockwise from the
    # top of the left side, as Java2D does.
    plan = [
        (SEG_MOVETO, [(0.0, 0.0, 0.0, 0.5)]),
        (SEG_LINETO, [(0.0, 0.0, 1.0, -0.5)]),
        (SEG_CUBICTO, [(0.0, 0.0, 1.0, -_ACV), (0.0, _ACV, 1.0, 0.0), (0.0, 0.5, 1.0, 0.0)]),
        (SEG_LINETO, [(1.0, -0.5, 1.0, 0.0)]),
        (SEG_CUBICTO, [(1.0, -_ACV, 1.0, 0.0), (1.0, 0.0, 1.0, -_ACV), (1.0, 0.0, 1.0, -0.5)]),
        (SEG_LINETO, [(1.0, 0.0, 0.0, 0.5)]),
        (SEG_CUBICTO, [(1.0, 0.0, 0.0, _ACV), (1.0, -_ACV, 0.0, 0.0), (1.0, -0.5, 0.0, 0.0)]),
        (SEG_LINETO, [(0.0, 0.5, 0.0, 0.0)]),
        (SEG_CUBICTO, [(0.0, _ACV, 0.0, 0.0), (0.0, 0.0, 0.0, _ACV), (0.0, 0.0, 0.0, 0.5)]),
    ]
    path: list[Segment] = []
    for seg, points in plan:
        coords: list[float] = []
        for p in points:
            coords.extend(pt(*p))
        path.append((seg, tuple(coords)))
    path.append((SEG_CLOSE, ()))
    return path


def parse_shape_array(array: np.ndarray) -> list[Segment]:
    """Split ImageJ's composite-ROI float array into path segments.

    The array is a sequence of ``type, coords...`` with ``type`` a ``SEG_*`` code and
    0, 2, 4 or 6 coordinates. Parsing stops at the first unknown type or truncated
    segment (as ImageJ does).
    """
    a = np.asarray(array, _F32)
    out: list[Segment] = []
    i = 0
    while i < a.size:
        t = int(a[i])
        if t not in _SEG_NCOORDS or float(a[i]) != t:
            break
        k = _SEG_NCOORDS[t]
        if i + 1 + k > a.size:
            break
        out.append((t, tuple(float(v) for v in a[i + 1 : i + 1 + k])))
        i += 1 + k
    return out


def _to_f32_path(path: list[Segment], dx: float = 0.0, dy: float = 0.0) -> list[Segment]:
    """Translate (in double) and store in float32, like ``new GeneralPath(transformed)``."""
    out: list[Segment] = []
    for t, c in path:
        cc = []
        for i, v in enumerate(c):
            cc.append(float(_F32(v + (dx if i % 2 == 0 else dy))))
        out.append((t, tuple(cc)))
    return out


def _path_bounds(path: list[Segment]) -> tuple[int, int, int, int]:
    """``Path2D.Float.getBounds()`` under Java 17: all points incl. control points."""
    xs = [c[i] for _, c in path for i in range(0, len(c), 2)]
    ys = [c[i] for _, c in path for i in range(1, len(c), 2)]
    if not xs:
        return 0, 0, 0, 0
    x1, x2 = _F32(min(xs)), _F32(max(xs))
    y1, y2 = _F32(min(ys)), _F32(max(ys))
    w = float(_F32(x2 - x1))
    h = float(_F32(y2 - y1))
    fx = math.floor(float(x1))
    fy = math.floor(float(y1))
    return fx, fy, int(math.ceil(float(x1) + w) - fx), int(math.ceil(float(y1) + h) - fy)


def _seg_dist_sq(x1: float, y1: float, x2: float, y2: float, px: float, py: float) -> float:
    """Squared distance from a point to a segment (the test Java2D's flattening uses)."""
    sx, sy = x2 - x1, y2 - y1
    qx, qy = px - x1, py - y1
    dot = qx * sx + qy * sy
    if dot <= 0.0:
        proj = 0.0
    else:
        qx, qy = sx - qx, sy - qy
        dot = qx * sx + qy * sy
        proj = 0.0 if dot <= 0.0 else dot * dot / (sx * sx + sy * sy)
    d = qx * qx + qy * qy - proj
    return d if d > 0 else 0.0


def _flatten_quad(p: tuple[float, ...], level: int, sqflat: float, limit: int, out: list) -> None:
    x1, y1, cx, cy, x2, y2 = p
    if level >= limit or _seg_dist_sq(x1, y1, x2, y2, cx, cy) < sqflat:
        out.append((x2, y2))
        return
    ax, ay = (x1 + cx) / 2.0, (y1 + cy) / 2.0
    bx, by = (x2 + cx) / 2.0, (y2 + cy) / 2.0
    mx, my = (ax + bx) / 2.0, (ay + by) / 2.0
    _flatten_quad((x1, y1, ax, ay, mx, my), level + 1, sqflat, limit, out)
    _flatten_quad((mx, my, bx, by, x2, y2), level + 1, sqflat, limit, out)


def _flatten_cubic(p: tuple[float, ...], level: int, sqflat: float, limit: int, out: list) -> None:
    x1, y1, c1x, c1y, c2x, c2y, x2, y2 = p
    flat = max(
        _seg_dist_sq(x1, y1, x2, y2, c1x, c1y), _seg_dist_sq(x1, y1, x2, y2, c2x, c2y)
    )
    if level >= limit or flat < sqflat:
        out.append((x2, y2))
        return
    ax, ay = (x1 + c1x) / 2.0, (y1 + c1y) / 2.0
    bx, by = (x2 + c2x) / 2.0, (y2 + c2y) / 2.0
    mx, my = (c1x + c2x) / 2.0, (c1y + c2y) / 2.0
    lx, ly = (ax + mx) / 2.0, (ay + my) / 2.0
    rx, ry = (bx + mx) / 2.0, (by + my) / 2.0
    cx, cy = (lx + rx) / 2.0, (ly + ry) / 2.0
    _flatten_cubic((x1, y1, ax, ay, lx, ly, cx, cy), level + 1, sqflat, limit, out)
    _flatten_cubic((cx, cy, rx, ry, bx, by, x2, y2), level + 1, sqflat, limit, out)


def flatten_path(
    path: list[Segment], flatness: float = FILL_FLATNESS, limit: int = FLATTEN_LIMIT
) -> tuple[np.ndarray, np.ndarray]:
    """Flatten a path into NaN-separated float32 polygons, as ImageJ's ``ShapeRoi`` does.

    Curves are subdivided at their midpoints until the control points lie within
    ``flatness`` of the chord (or ``limit`` levels deep); each sub-path becomes one
    polygon, a closing vertex equal to the sub-path's start is dropped.

    Returns
    -------
    x, y : ndarray of float32
        Vertices; sub-paths separated by one NaN.
    """
    sqflat = float(flatness) * float(flatness)
    xs: list[float] = []
    ys: list[float] = []
    start = 0
    curx = cury = movx = movy = 0.0

    def sep() -> None:
        if xs and not math.isnan(xs[-1]):
            xs.append(math.nan)
            ys.append(math.nan)

    for t, c in path:
        if t == SEG_MOVETO:
            sep()
            start = len(xs)
            curx, cury = movx, movy = c[0], c[1]
            xs.append(float(_F32(c[0])))
            ys.append(float(_F32(c[1])))
        elif t == SEG_LINETO:
            curx, cury = c[0], c[1]
            xs.append(float(_F32(c[0])))
            ys.append(float(_F32(c[1])))
        elif t in (SEG_QUADTO, SEG_CUBICTO):
            pts: list[tuple[float, float]] = []
            if t == SEG_QUADTO:
                _flatten_quad((curx, cury) + tuple(c), 0, sqflat, limit, pts)
            else:
                _flatten_cubic((curx, cury) + tuple(c), 0, sqflat, limit, pts)
            for px, py in pts:
                xs.append(float(_F32(px)))
                ys.append(float(_F32(py)))
            curx, cury = c[-2], c[-1]
        elif t == SEG_CLOSE:
            if xs and start < len(xs) and xs[-1] == xs[start] and ys[-1] == ys[start]:
                xs.pop()
                ys.pop()
            sep()
            curx, cury = movx, movy
    while xs and math.isnan(xs[-1]):
        xs.pop()
        ys.pop()
    return np.asarray(xs, _F32), np.asarray(ys, _F32)


def shape_mask(
    path: list[Segment] | np.ndarray, flatness: float = FILL_FLATNESS, clip: tuple[int, int] | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """Mask and origin of a composite shape (``ShapeRoi``).

    Parameters
    ----------
    path : list of (type, coords) or ndarray
        Segments in absolute image coordinates, or ImageJ's composite float array.
    flatness : float
        Flattening tolerance (ImageJ uses 0.01 for masks).
    clip : (height, width), optional
        Image size: compute only the part on the image (see
        :func:`~cellseg_bridge.core.roi.polygon_fill.polygon_mask`).
    """
    if isinstance(path, np.ndarray):
        path = parse_shape_array(path)
    path = _to_f32_path(list(path))
    x0, y0, w, h = _path_bounds(path)
    rel = _to_f32_path(path, -x0, -y0)
    xf, yf = flatten_path(rel, flatness)
    return fill_on_image(xf, yf, (x0, y0), (w, h), clip, subpixel=True)


def rounded_rect_mask(
    x: int, y: int, width: int, height: int, arc: int, clip: tuple[int, int] | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """Mask and origin of a rectangle ROI with rounded corners (corner diameter ``arc``; ``clip``: see :func:`shape_mask`)."""
    # ShapeRoi(Shape): bounds from the RoundRectangle2D itself (integers here), then the
    # path is translated to them in double and stored as float.
    x0, y0 = math.floor(float(x)), math.floor(float(y))
    w = math.ceil(float(x) + float(width)) - x0
    h = math.ceil(float(y) + float(height)) - y0
    rel = _to_f32_path(rounded_rect_path(x, y, width, height, arc), -x0, -y0)
    xf, yf = flatten_path(rel, FILL_FLATNESS)
    return fill_on_image(xf, yf, (x0, y0), (w, h), clip, subpixel=True)

"""Rasterisation of ImageJ ROI geometry: unit rules, and random shapes against ImageJ 1.53t.

The ImageJ comparisons build the ROI objects directly in the JVM (``PolygonRoi``,
``OvalRoi``, ``Roi`` with corner diameter, ``EllipseRoi``, ``RotatedRectRoi``,
``ShapeRoi`` from a path array), let ImageJ fill them into a ``ByteProcessor`` and compare
pixel for pixel with :mod:`cellseg_bridge.core.roi.rasterize`. Files are covered in
``tests/io/test_roi_import.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from cellseg_bridge.core.roi import rasterize as rz

CANVAS = (64, 64)  # (height, width); shapes are drawn from -10..70 so many are clipped
N_CASES = 150


# --------------------------------------------------------------------------- pure rules


def test_integer_square_covers_its_pixels():
    m = rz.fill_polygon(np.array([1, 4, 4, 1]), np.array([1, 1, 3, 3]), 6, 5)
    expected = np.zeros((5, 6), bool)
    expected[1:3, 1:4] = True
    np.testing.assert_array_equal(m, expected)


def test_float_square_half_pixel_rounds_like_imagej():
    # vertices at .5: rows/cols round half up -> pixels 2..3 (x) and 2..2 (y)
    m = rz.fill_polygon(np.array([1.5, 3.5, 3.5, 1.5], np.float32), np.array([1.5, 1.5, 2.5, 2.5], np.float32), 6, 5)
    assert np.argwhere(m).tolist() == [[2, 2], [2, 3]]


def test_nan_separated_polygons_use_even_odd():
    outer = [0, 10, 10, 0], [0, 0, 10, 10]
    inner = [3, 6, 6, 3], [3, 3, 6, 6]
    x = np.array(outer[0] + [np.nan] + inner[0], np.float32)
    y = np.array(outer[1] + [np.nan] + inner[1], np.float32)
    m = rz.fill_polygon(x, y, 10, 10)
    assert m.sum() == 100 - 9
    assert not m[3:6, 3:6].any()


def test_oval_mask_small_sizes():
    assert rz.oval_mask(1, 1).tolist() == [[True]]
    assert rz.oval_mask(2, 2).all()
    m = rz.oval_mask(5, 5)
    assert not m[0, 0] and m[2, 2] and m[0, 2] and m.sum() == 21


def test_float_polygon_bounds_quirk_for_negative_polygons():
    # ImageJ starts the maximum at Float.MIN_VALUE: an all-negative polygon reaches ~0
    _, _, max_x, max_y = rz.float_polygon_bounds(np.array([-5, -3], np.float32), np.array([-2, -1], np.float32))
    assert 0 < max_x < 1e-30 and 0 < max_y < 1e-30


def test_place_mask_clips():
    local = np.ones((4, 4), bool)
    out = rz.place_mask(local, (-2, 3), (5, 5))
    expected = np.zeros((5, 5), bool)
    expected[3:5, 0:2] = True
    np.testing.assert_array_equal(out, expected)
    assert not rz.place_mask(local, (10, 10), (5, 5)).any()


def test_parse_and_flatten_straight_path():
    arr = np.array([0, 1, 1, 1, 5, 1, 1, 5, 5, 1, 1, 1, 4, 0, 7, 7, 1, 8, 7, 1, 8, 8, 4], np.float32)
    segs = rz.parse_shape_array(arr)
    assert [s for s, _ in segs] == [0, 1, 1, 1, 4, 0, 1, 1, 4]
    x, y = rz.flatten_path(segs)
    # the closing vertex equal to the start is dropped, sub-paths separated by NaN
    assert np.isnan(x[3]) and x.size == 7
    np.testing.assert_array_equal(x[:3], [1, 5, 5])


def test_flatten_quad_is_within_flatness():
    x, y = rz.flatten_path([(rz.SEG_MOVETO, (0.0, 0.0)), (rz.SEG_QUADTO, (10.0, 20.0, 20.0, 0.0))], 0.01)
    t = np.linspace(0, 1, 2001)
    cx = 2 * (1 - t) * t * 10 + t * t * 20
    cy = 2 * (1 - t) * t * 20
    # every curve point is close to the polyline through the flattened vertices
    px, py = x.astype(float), y.astype(float)
    ax, ay, bx, by = px[:-1], py[:-1], px[1:], py[1:]
    vx, vy = bx - ax, by - ay
    s = ((cx[:, None] - ax) * vx + (cy[:, None] - ay) * vy) / (vx * vx + vy * vy)
    s = np.clip(s, 0, 1)
    d = np.hypot(ax + s * vx - cx[:, None], ay + s * vy - cy[:, None]).min(axis=1)
    assert d.max() < 0.02
    assert x.size > 20 and (x[-1], y[-1]) == (20, 0)


def test_rotated_rect_polygon_is_closed_rectangle():
    xs, ys = rz.rotated_rect_polygon(0, 0, 10, 0, 4)
    assert xs[4] == xs[0] and ys[4] == ys[0]
    np.testing.assert_allclose(sorted(set(np.round(ys[:4], 5))), [-2, 2], atol=1e-5)


def test_ellipse_polygon_has_72_vertices_on_the_axes():
    xs, ys = rz.ellipse_polygon(0, 0, 20, 0, 0.5)
    assert xs.size == 72 and xs.dtype == np.float32
    assert xs[0] == pytest.approx(20) and ys[18] == pytest.approx(5, abs=1e-5)


# --------------------------------------------------------------------------- against ImageJ


@pytest.fixture(scope="module")
def jfill(ij):
    """Fill a Java ROI into a fresh CANVAS ByteProcessor, return a bool array."""
    import jpype
    import scyjava

    byte_processor = scyjava.jimport("ij.process.ByteProcessor")
    height, width = CANVAS

    def fill(roi):
        ip = byte_processor(width, height)
        ip.setColor(255)
        ip.fill(roi)
        return np.array(ip.getPixels(), dtype=np.int8).reshape(height, width) != 0

    fill.JFloat = lambda a: jpype.JArray(jpype.JFloat)(np.asarray(a, np.float32).tolist())
    fill.JInt = lambda a: jpype.JArray(jpype.JInt)(np.asarray(a).astype(int).tolist())
    fill.cls = lambda name: scyjava.jimport(name)
    return fill


def _ours(local):
    mask, origin = local
    return rz.place_mask(mask, origin, CANVAS)


def _assert_all_equal(mismatches, kind):
    assert not mismatches, f"{len(mismatches)}/{N_CASES} {kind} differ from ImageJ: {mismatches[:5]}"


@pytest.mark.imagej
def test_integer_polygons_match_imagej(jfill):
    polygon_roi = jfill.cls("ij.gui.PolygonRoi")
    rng = np.random.default_rng(11)
    bad = []
    for case in range(N_CASES):
        n = int(rng.integers(3, 14))
        x, y = rng.integers(-10, 70, n), rng.integers(-10, 70, n)
        roi_type = [2, 3, 4][case % 3]  # polygon, freehand, traced: same filler
        ref = jfill(polygon_roi(jfill.JInt(x), jfill.JInt(y), n, roi_type))
        if (ref != _ours(rz.polygon_mask(x, y))).any():
            bad.append((x.tolist(), y.tolist()))
    _assert_all_equal(bad, "integer polygons")


@pytest.mark.imagej
def test_subpixel_polygons_match_imagej(jfill):
    polygon_roi = jfill.cls("ij.gui.PolygonRoi")
    rng = np.random.default_rng(12)
    bad = []
    for case in range(N_CASES):
        n = int(rng.integers(3, 14))
        x = rng.uniform(-10, 70, n).astype(np.float32)
        y = rng.uniform(-10, 70, n).astype(np.float32)
        if case % 3 == 0:  # many exact .5 / integer vertices: the rounding ties
            x, y = np.round(x * 2) / 2, np.round(y * 2) / 2
        ref = jfill(polygon_roi(jfill.JFloat(x), jfill.JFloat(y), n, 2))
        if (ref != _ours(rz.polygon_mask(x, y, subpixel=True))).any():
            bad.append((x.tolist(), y.tolist()))
    _assert_all_equal(bad, "sub-pixel polygons")


@pytest.mark.imagej
def test_ovals_and_rounded_rectangles_match_imagej(jfill):
    oval_roi = jfill.cls("ij.gui.OvalRoi")
    rect_roi = jfill.cls("ij.gui.Roi")
    rng = np.random.default_rng(13)
    bad = []
    for _ in range(N_CASES):
        w, h = (int(v) for v in rng.integers(1, 45, 2))
        x0, y0 = (int(v) for v in rng.integers(-10, 50, 2))
        if (jfill(oval_roi(x0, y0, w, h)) != _ours((rz.oval_mask(w, h), (x0, y0)))).any():
            bad.append(("oval", x0, y0, w, h))
        arc = int(rng.integers(1, 60))
        roi = rect_roi(x0, y0, w, h)
        roi.setCornerDiameter(arc)
        if (jfill(roi) != _ours(rz.rounded_rect_mask(x0, y0, w, h, arc))).any():
            bad.append(("rounded", x0, y0, w, h, arc))
    _assert_all_equal(bad, "ovals / rounded rectangles")


@pytest.mark.imagej
def test_ellipses_and_rotated_rectangles_match_imagej(jfill):
    ellipse_roi = jfill.cls("ij.gui.EllipseRoi")
    rotated_roi = jfill.cls("ij.gui.RotatedRectRoi")
    rng = np.random.default_rng(14)
    bad = []
    for case in range(N_CASES):
        p = [float(v) for v in rng.uniform(-8, 64, 4)]
        if case % 4 == 0:
            p = [round(v * 4) / 4 for v in p]
        ratio = float(rng.uniform(0.02, 1.0))
        if (jfill(ellipse_roi(*p, ratio)) != _ours(rz.ellipse_mask(*p, ratio))).any():
            bad.append(("ellipse", p, ratio))
        width = float(rng.uniform(0.3, 30))
        if (jfill(rotated_roi(*p, width)) != _ours(rz.rotated_rect_mask(*p, width))).any():
            bad.append(("rotated", p, width))
    _assert_all_equal(bad, "ellipses / rotated rectangles")


def _random_path(rng) -> np.ndarray:
    arr: list[float] = []
    for _ in range(int(rng.integers(1, 4))):
        arr += [0, *rng.uniform(-8, 70, 2)]
        for _ in range(int(rng.integers(1, 6))):
            seg = int(rng.integers(1, 4))
            arr += [seg, *rng.uniform(-8, 70, {1: 2, 2: 4, 3: 6}[seg])]
        if rng.random() < 0.8:
            arr += [4]
    return np.asarray(arr, np.float32)


@pytest.mark.imagej
def test_composite_paths_with_curves_match_imagej(jfill):
    """Paths mixing lines, quadratic and cubic curves, several sub-paths, open and closed."""
    shape_roi = jfill.cls("ij.gui.ShapeRoi")
    rng = np.random.default_rng(15)
    bad = []
    for _ in range(N_CASES):
        arr = _random_path(rng)
        ref = jfill(shape_roi(jfill.JFloat(arr)))
        diff = int((ref != _ours(rz.shape_mask(arr))).sum())
        if diff:
            bad.append((diff, arr.tolist()))
    _assert_all_equal(bad, "composite paths")


@pytest.mark.imagej
def test_spline_fitted_polygons_match_imagej(jfill):
    """``PolygonRoi.fitSpline()`` on integer and sub-pixel polygons, vs our spline."""
    polygon_roi = jfill.cls("ij.gui.PolygonRoi")
    rng = np.random.default_rng(16)
    bad = []
    for case in range(N_CASES // 3):
        n = int(rng.integers(3, 12))
        if case % 2:
            x, y = rng.integers(-10, 70, n), rng.integers(-10, 70, n)
            roi = polygon_roi(jfill.JInt(x), jfill.JInt(y), n, 2)
        else:
            x = rng.uniform(-10, 70, n).astype(np.float32)
            y = rng.uniform(-10, 70, n).astype(np.float32)
            roi = polygon_roi(jfill.JFloat(x), jfill.JFloat(y), n, 2)
        roi.fitSpline()
        diff = int((jfill(roi) != _ours(rz.spline_polygon_mask(x, y))).sum())
        if diff:
            bad.append((diff, x.tolist(), y.tolist()))
    assert not bad, f"{len(bad)} spline-fitted polygons differ from ImageJ: {bad[:3]}"

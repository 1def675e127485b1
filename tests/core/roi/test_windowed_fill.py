"""Rasterising only the part of a ROI on the image gives the same pixels as the full mask, clipped."""

import numpy as np
import pytest

from cellseg_bridge.core.roi.polygon_fill import fill_polygon, image_window, polygon_mask
from cellseg_bridge.core.roi.rasterize import place_mask
from cellseg_bridge.core.roi.shape_paths import rounded_rect_mask, shape_mask
from cellseg_bridge.core.roi.simple_shapes import ellipse_mask, rotated_rect_mask
from cellseg_bridge.core.roi.spline_fit import spline_polygon_mask


def _clipped_equal(full, windowed, shape):
    """Both (mask, origin) pairs pasted into an image of ``shape`` are the same pixels."""
    a = place_mask(full[0], full[1], shape)
    b = place_mask(windowed[0], windowed[1], shape)
    np.testing.assert_array_equal(a, b)
    assert windowed[0].size <= shape[0] * shape[1]


@pytest.mark.parametrize("seed", range(12))
def test_random_polygons_across_the_border_fill_the_same_pixels(seed):
    rng = np.random.default_rng(seed)
    shape = (37, 45)
    n = int(rng.integers(3, 12))
    subpixel = seed % 2 == 1
    xs = rng.uniform(-30, 75, n)
    ys = rng.uniform(-30, 67, n)
    if not subpixel:
        xs, ys = np.round(xs).astype(np.int64), np.round(ys).astype(np.int64)
    else:
        xs, ys = xs.astype(np.float32), ys.astype(np.float32)
    full = polygon_mask(xs, ys, subpixel=subpixel)
    windowed = polygon_mask(xs, ys, subpixel=subpixel, clip=shape)
    _clipped_equal(full, windowed, shape)


def test_window_of_fill_polygon_is_the_same_part_of_the_full_mask():
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 80, 9).astype(np.float32)
    y = rng.uniform(0, 60, 9).astype(np.float32)
    full = fill_polygon(x, y, 80, 60, x_offset=0.25, y_offset=0.75)
    part = fill_polygon(x, y, 80, 60, x_offset=0.25, y_offset=0.75, window=(11, 17, 50, 41))
    np.testing.assert_array_equal(part, full[17:41, 11:50])


def test_other_shapes_clip_to_the_image():
    shape = (40, 50)
    cases = [
        (ellipse_mask, (-20.0, 10.0, 70.0, 30.0, 0.6)),
        (rotated_rect_mask, (-15.0, -5.0, 60.0, 45.0, 12.0)),
    ]
    for func, args in cases:
        _clipped_equal(func(*args), func(*args, clip=shape), shape)
    _clipped_equal(rounded_rect_mask(-10, -8, 70, 30, 12), rounded_rect_mask(-10, -8, 70, 30, 12, clip=shape), shape)
    path = [(0, (-10.0, -10.0)), (1, (60.0, 5.0)), (3, (40.0, 60.0, 10.0, 70.0, -5.0, 30.0)), (4, ())]
    _clipped_equal(shape_mask(path), shape_mask(path, clip=shape), shape)
    xs = np.array([-10, 30, 60, 20], np.int64)
    ys = np.array([5, -12, 25, 50], np.int64)
    _clipped_equal(spline_polygon_mask(xs, ys), spline_polygon_mask(xs, ys, clip=shape), shape)


def test_huge_coordinates_cost_only_the_image():
    shape = (64, 64)
    x = np.array([-1e7, 1e7, 1e7, -1e7], np.float32)
    y = np.array([-1e7, -1e7, 1e7, 1e7], np.float32)
    mask, origin = polygon_mask(x, y, subpixel=True, clip=shape)
    assert mask.shape == shape and origin == (0, 0) and mask.all()
    xi = np.array([-32000, 32000, 0], np.int64)
    yi = np.array([-32000, -32000, 32000], np.int64)
    mask, origin = polygon_mask(xi, yi, subpixel=False, clip=shape)
    assert mask.shape == shape and mask.all()
    off = polygon_mask(x + np.float32(3e7), y, subpixel=True, clip=shape)[0]
    assert off.size == 0


def test_image_window():
    assert image_window((-5, -3), (20, 10), (8, 12)) == (5, 3, 17, 10)
    assert image_window((100, 0), (5, 5), (8, 12))[2] <= image_window((100, 0), (5, 5), (8, 12))[0]
    assert image_window((2, 2), (5, 5), None) == (0, 0, 5, 5)

"""Outline overlays: gray normalisation, outline pixels, atomic PNG writing."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest

from cellseg_bridge.errors import InputError
from cellseg_bridge.io.overlay import OUTLINE_COLOR, normalize_to_uint8, outline_mask, outline_overlay, write_png


def test_normalize_percentiles_and_edge_cases():
    ramp = np.arange(101, dtype=np.float32).reshape(1, 101)
    out = normalize_to_uint8(ramp)
    assert out.dtype == np.uint8 and out[0, 0] == 0 and out[0, -1] == 255
    assert out[0, 1] == 0 and out[0, 99] == 255  # 1st/99th percentiles map to the ends
    assert out[0, 50] == 128
    assert not normalize_to_uint8(np.full((4, 4), 7)).any()  # constant plane
    spots = np.zeros((50, 50), np.uint16)
    spots[10, 10] = 1000  # 99th percentile is 0: falls back to min..max
    assert normalize_to_uint8(spots)[10, 10] == 255
    nan = np.array([[np.nan, 1.0], [2.0, 3.0]])
    assert normalize_to_uint8(nan)[0, 0] == 0
    with pytest.raises(InputError):
        normalize_to_uint8(np.zeros((2, 2, 2)))


def test_outlines_are_inner_pixel_boundaries():
    labels = np.zeros((8, 10), np.uint16)
    labels[1:6, 1:5] = 1
    labels[1:6, 5:9] = 2  # touches label 1
    labels[7, 0] = 3  # one pixel at the image border
    edge = outline_mask(labels)
    assert edge[1:6, 1].all() and edge[1:6, 4].all() and edge[1:6, 5].all()  # touching sides both drawn
    assert not edge[2:5, 2:4].any() and not edge[2:5, 6:8].any()  # interiors
    assert not edge[labels == 0].any()  # nothing outside a label
    assert edge[7, 0]

    image = np.random.default_rng(0).random((8, 10))
    rgb = outline_overlay(image, labels)
    assert rgb.shape == (8, 10, 3) and rgb.dtype == np.uint8
    assert (rgb[edge] == OUTLINE_COLOR).all()
    gray = normalize_to_uint8(image)
    assert (rgb[~edge] == gray[~edge][:, None]).all()
    yellow = outline_overlay(image, labels, color=(255, 255, 0))
    assert (yellow[edge] == (255, 255, 0)).all()


def test_overlay_rejects_mismatches():
    with pytest.raises(InputError, match="shape"):
        outline_overlay(np.zeros((4, 4)), np.zeros((4, 5), np.uint8))
    with pytest.raises(InputError, match="integers"):
        outline_overlay(np.zeros((4, 4)), np.zeros((4, 4), np.float32))


def test_write_png_roundtrip_and_atomic(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 255, (12, 9, 3), dtype=np.uint8)
    path = write_png(rgb, tmp_path / "sub" / "x_overlay.png")
    assert np.array_equal(iio.imread(path), rgb)
    assert [p.name for p in path.parent.iterdir()] == ["x_overlay.png"]
    with pytest.raises(InputError):
        write_png(rgb.astype(np.float32), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()

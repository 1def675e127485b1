"""Tests of the inference transforms (normalise, resize, pad, tiles, blending)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cellseg_bridge.core import transforms as T

# ----------------------------------------------------------------------------- normalisation


def test_normalize_maps_percentiles_to_0_and_1_per_channel():
    rng = np.random.default_rng(0)
    img = np.stack([rng.uniform(0, 100, (40, 50)), rng.uniform(1000, 5000, (40, 50))])
    out = T.normalize_percentile(img, 1, 99)
    assert out.dtype == np.float32 and out.shape == img.shape
    for c in range(2):
        lo, hi = np.percentile(out[c], [1, 99])
        assert lo == pytest.approx(0, abs=1e-5)
        assert hi == pytest.approx(1, abs=1e-5)
    assert img.dtype == np.float64  # input untouched


def test_normalize_channel_axis_last_and_none():
    rng = np.random.default_rng(1)
    img = rng.uniform(0, 1, (30, 30, 2)) * np.array([1.0, 50.0])
    out = T.normalize_percentile(img, 1, 99, channel_axis=-1)
    np.testing.assert_allclose(out, np.moveaxis(T.normalize_percentile(np.moveaxis(img, -1, 0), 1, 99), 0, -1))
    single = T.normalize_percentile(img[..., 0], 1, 99, channel_axis=None)
    np.testing.assert_allclose(single, out[..., 0], atol=1e-6)


def test_normalize_constant_channel_is_zero_without_nan():
    img = np.stack([np.full((20, 20), 7.0), np.zeros((20, 20)), np.arange(400.0).reshape(20, 20)])
    out = T.normalize_percentile(img, 1, 99)
    assert np.isfinite(out).all()
    assert not out[0].any() and not out[1].any()
    assert out[2].max() > 0.9


def test_normalize_large_array_uses_strided_subsample(monkeypatch):
    # Cellpose takes percentiles of arrays > 224**3 values from every (n // 224)-th pixel
    monkeypatch.setattr(T, "_PERCENTILE_SUBSAMPLE", 1000)
    img = np.random.default_rng(2).uniform(0, 1, (1, 448, 460)).astype(np.float32)
    img[0, 1::2] = 1e6  # odd rows: skipped by the row step 448 // 224 = 2
    out = T.normalize_percentile(img, 1, 99)
    even = out[0, ::2]
    assert np.percentile(even[:, ::2], 99) == pytest.approx(1, abs=1e-5)
    assert out[0, 1].min() > 1e5


def test_normalize_rejects_bad_percentiles():
    with pytest.raises(ValueError):
        T.normalize_percentile(np.zeros((4, 4)), 99, 1)


# ----------------------------------------------------------------------------- resize


def test_resize_matches_opencv_linear_values():
    # cv2.resize(np.float32([[0, 1]]), (4, 1), interpolation=INTER_LINEAR) -> [0, .25, .75, 1]
    out = T.resize(np.array([[0.0, 1.0]], np.float32), (1, 4))
    np.testing.assert_allclose(out, [[0.0, 0.25, 0.75, 1.0]])
    # 2x down-sampling averages pixel pairs (half-pixel centres)
    out = T.resize(np.arange(8, dtype=np.float32).reshape(1, 8), (1, 4))
    np.testing.assert_allclose(out, [[0.5, 2.5, 4.5, 6.5]])
    # non-integer ratio, edge clamping: src = (i + .5) * 5 / 3 - .5 = [.333, 2, 3.667]
    out = T.resize(np.array([[0, 10, 20, 30, 40]], np.float32), (1, 3))
    np.testing.assert_allclose(out, [[10 / 3, 20, 36.666668]], rtol=1e-6)


def test_resize_keeps_leading_axes_and_constants():
    img = np.full((3, 2, 17, 23), 4.5, np.float32)
    out = T.resize(img, (40, 9))
    assert out.shape == (3, 2, 40, 9) and out.dtype == np.float32
    np.testing.assert_allclose(out, 4.5)
    same = T.resize(img, (17, 23))
    assert same is not img
    np.testing.assert_array_equal(same, img)


def test_resize_round_trip_smooth_image():
    yy, xx = np.mgrid[0:64, 0:80].astype(np.float32)
    img = np.sin(yy / 9.0) + np.cos(xx / 11.0)
    back = T.resize(T.resize(img, (45, 56)), (64, 80))
    assert np.abs(back - img)[4:-4, 4:-4].max() < 0.02
    # a linear ramp is reproduced exactly away from the borders
    ramp = 3 * yy + 2 * xx
    up = T.resize(ramp, (128, 160))
    np.testing.assert_allclose(T.resize(up, (64, 80))[2:-2, 2:-2], ramp[2:-2, 2:-2], rtol=1e-5)


def test_scaled_shape_truncates():
    assert T.scaled_shape((1024, 100), 17 / 24) == (725, 70)
    assert T.scaled_shape((3, 3), 0.01) == (1, 1)


# ----------------------------------------------------------------------------- padding


@pytest.mark.parametrize("length", [1, 15, 16, 17, 100, 725])
def test_pad_amounts_multiple_of_16_plus_border(length):
    before, after = T.pad_amounts(length)
    total = length + before + after
    assert total % 16 == 0
    assert total == 16 * math.ceil(length / 16) + 16
    assert before >= 8 and after >= 8 and abs(after - before) <= 1


def test_pad_unpad_round_trip():
    img = np.random.default_rng(3).normal(size=(2, 37, 50)).astype(np.float32)
    padded, crop = T.pad_image(img)
    assert padded.shape[1] % 16 == 0 and padded.shape[2] % 16 == 0
    np.testing.assert_array_equal(T.unpad(padded, crop), img)
    assert padded.sum() == pytest.approx(img.sum(), rel=1e-5)


# ----------------------------------------------------------------------------- tiles


@pytest.mark.parametrize("length", [100, 224, 225, 480, 752, 1024])
def test_tile_starts_count_and_coverage(length):
    starts = T.tile_starts(length, 224, 0.1)
    expected = 1 if length <= 224 else math.ceil(1.2 * length / 224)
    assert len(starts) == expected
    size = min(224, length)
    assert starts[0] == 0 and starts[-1] == length - size
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s : s + size] = True
    assert covered.all()
    assert np.all(np.diff(starts) > 0) or len(starts) == 1


@pytest.mark.parametrize("length, tile", [(752, 1024), (1040, 1024), (1472, 1024), (2064, 1024), (1472, 512), (300, 256)])
def test_large_tiles_cover_with_absolute_overlap(length, tile):
    size, starts = T.tile_layout(length, tile, 0.1)
    assert size % 16 == 0 or size == length
    assert T.MIN_TILE <= size <= tile or size == length
    assert starts[0] == 0 and starts[-1] + size == length
    if len(starts) > 1:
        assert np.min(np.diff(starts)) <= size - 2 * 0.1 * 224  # neighbours overlap >= 44.8 px
    # never more tiles than Cellpose's 224-px rule needs pixels for
    assert len(starts) * size <= math.ceil(1.2 * length / 224) * 224


def test_tile_starts_overlap_is_clamped_and_augment_doubles():
    assert len(T.tile_starts(1000, 224, 0.0)) == len(T.tile_starts(1000, 224, 0.05))
    assert len(T.tile_starts(1000, 224, 0.9)) == len(T.tile_starts(1000, 224, 0.5))
    assert len(T.tile_starts(448, 224, augment=True)) == 4
    assert len(T.tile_starts(224, 224, augment=True)) == 2
    with pytest.raises(ValueError):
        T.tile_starts(100, 224, augment=True)


def test_tile_grid_covers_image():
    grid = T.tile_grid((300, 500), 224, 0.1)
    cover = np.zeros((300, 500), int)
    for sy, sx in grid:
        assert sy.stop - sy.start == 224 and sx.stop - sx.start == 224
        cover[sy, sx] += 1
    assert cover.min() >= 1
    assert len(grid) == math.ceil(1.2 * 300 / 224) * math.ceil(1.2 * 500 / 224)


def test_taper_mask_shape_and_symmetry():
    m = T.taper_mask(224, 224)
    assert m.shape == (224, 224)
    np.testing.assert_allclose(m, m[::-1, ::-1])
    assert m[112, 112] == pytest.approx(1.0, abs=1e-3)
    assert m[0, 112] < 0.1
    small = T.taper_mask(64, 100)
    assert small.shape == (64, 100) and small.min() > 0.9  # the centre of the 224 taper


def test_average_tiles_weights_sum_to_one():
    shape = (300, 410)
    grid = T.tile_grid(shape, 224, 0.1)
    value = np.random.default_rng(4).normal(size=(2, *shape)).astype(np.float32)
    tiles = np.stack([value[:, sy, sx] for sy, sx in grid])
    out = T.average_tiles(tiles, grid, shape)
    np.testing.assert_allclose(out, value, rtol=1e-5, atol=1e-5)
    single = T.average_tiles(value[None], [(slice(0, 300), slice(0, 410))], shape)
    np.testing.assert_array_equal(single, value)

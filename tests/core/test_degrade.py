"""Synthetic degradations: statistics, geometry, and that inputs are left alone."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cellseg_bridge.core import degrade as dg


@pytest.fixture
def spots() -> np.ndarray:
    img = np.zeros((64, 64), np.float32)
    img[20:28, 30:38] = 1.0
    img[44:48, 10:14] = 0.5
    return img


def test_poisson_noise_is_unbiased_and_its_variance_is_mean_over_scale():
    rng = np.random.default_rng(0)
    flat = np.full((200, 200), 0.5, np.float32)
    for scale in (2.0, 20.0):
        noisy = dg.poisson_noise(flat, scale, rng)
        assert noisy.dtype == np.float32
        assert abs(noisy.mean() - 0.5) < 0.02
        assert noisy.var() == pytest.approx(0.5 / scale, rel=0.08)


def test_poisson_noise_rejects_bad_scale_and_nan(spots):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="positive"):
        dg.poisson_noise(spots, 0.0, rng)
    bad = spots.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        dg.poisson_noise(bad, 1.0, rng)


def test_photon_scale_follows_its_gamma_and_stays_in_range():
    rng = np.random.default_rng(1)
    s = np.array([dg.sample_photon_scale(rng, mean=5.0) for _ in range(4000)])
    assert s.min() >= 0.5 and s.max() <= 100.0
    assert abs(s.mean() - 5.0) < 0.2


def test_gaussian_blur_keeps_the_sum_and_spreads_a_point():
    img = np.zeros((65, 65), np.float32)
    img[32, 32] = 1.0
    out = dg.gaussian_blur(img, 3.0)
    assert out.sum() == pytest.approx(1.0, rel=1e-3)
    yy, xx = np.mgrid[:65, :65]
    var_y = float((out * (yy - 32) ** 2).sum())
    var_x = float((out * (xx - 32) ** 2).sum())
    assert var_y == pytest.approx(9.0, rel=0.05) and var_x == pytest.approx(9.0, rel=0.05)
    assert img[32, 32] == 1.0 and img.sum() == 1.0  # input unchanged


@pytest.mark.parametrize("angle", [0.0, math.pi / 2, math.pi / 4])
def test_anisotropic_blur_spreads_along_its_angle(angle):
    img = np.zeros((81, 81), np.float32)
    img[40, 40] = 1.0
    out = dg.anisotropic_blur(img, 6.0, 1.0, angle)
    assert out.sum() == pytest.approx(1.0, rel=1e-3)
    yy, xx = np.mgrid[:81, :81] - 40
    u = xx * math.cos(angle) + yy * math.sin(angle)
    v = -xx * math.sin(angle) + yy * math.cos(angle)
    assert float((out * u**2).sum()) == pytest.approx(36.0, rel=0.08)
    assert float((out * v**2).sum()) == pytest.approx(1.0, rel=0.15)


def test_downsample_loses_detail_but_keeps_shape_and_mean(spots):
    rng = np.random.default_rng(0)
    fine = rng.random((64, 64)).astype(np.float32)
    out = dg.downsample(fine, 4)
    assert out.shape == fine.shape
    assert abs(out.mean() - fine.mean()) < 0.05
    assert out.std() < 0.5 * fine.std()  # pixel noise is averaged away
    assert np.array_equal(dg.downsample(spots, 1), spots)
    with pytest.raises(ValueError):
        dg.downsample(spots, 0.5)


def test_stripe_noise_is_constant_along_the_stripes():
    rng = np.random.default_rng(3)
    img = np.zeros((48, 40), np.float32)
    rows = dg.stripe_noise(img, rng, 0.2, angle=0.0)
    assert np.allclose(rows, rows[:, :1])  # horizontal stripes: constant along x
    assert rows[:, 0].std() > 0.05
    cols = dg.stripe_noise(img, rng, 0.2, angle=math.pi / 2)
    assert np.allclose(cols, cols[:1, :], atol=1e-6)


@pytest.mark.parametrize("kind", dg.RESTORE_KINDS)
def test_degrade_every_kind_changes_the_image_and_is_reproducible(kind, spots):
    img = dg.gaussian_blur(spots, 1.0)
    before = img.copy()
    a, info = dg.degrade(img, kind, np.random.default_rng(7), diameter=17)
    b, _ = dg.degrade(img, kind, np.random.default_rng(7), diameter=17)
    assert np.array_equal(a, b)
    assert a.shape == img.shape and a.dtype == np.float32 and np.isfinite(a).all()
    assert not np.allclose(a, img, atol=1e-3)
    assert info.steps, info
    assert np.percentile(a, 99) == pytest.approx(1.0, abs=1e-4)  # renormalised
    assert np.array_equal(img, before)


def test_degrade_scales_blur_with_diameter(spots):
    _, small = dg.degrade(spots, "deblur", np.random.default_rng(2), diameter=15)
    _, large = dg.degrade(spots, "deblur", np.random.default_rng(2), diameter=60)
    assert large.steps[0][1]["sigma"] == pytest.approx(4 * small.steps[0][1]["sigma"])


@pytest.mark.parametrize("mix", [(0.7, 0.7), dg.ANISO_MIX])
def test_aniso_blur_spans_short_and_long_smears_at_its_rate(spots, mix):
    """Major sigmas log-uniform in [1, 24] x diameter / 30 (as many below 4.9 as above, some beyond 10);
    blur and stripes as often as ``aniso_mix`` says (at least one of them)."""
    rng = np.random.default_rng(3)
    majors, ratios, n_stripes, n = [], [], 0, 300
    for _ in range(n):
        _, info = dg.degrade(spots[:32, :32], "aniso", rng, diameter=30, aniso_mix=mix)
        names = [name for name, _ in info.steps]
        assert "aniso_blur" in names or "stripes" in names
        n_stripes += "stripes" in names
        for name, p in info.steps:
            if name == "aniso_blur":
                majors.append(p["sigma_major"])
                ratios.append(p["sigma_minor"] / p["sigma_major"])
    majors = np.array(majors)
    p_blur, p_stripes = mix
    assert abs(majors.size / n - p_blur) < 0.07
    assert abs(n_stripes / n - (p_stripes + (1 - p_blur) * (1 - p_stripes))) < 0.07
    assert majors.min() >= 1.0 and majors.max() <= dg.ANISO_MAX_SIGMA
    assert 0.35 < (majors < np.sqrt(dg.ANISO_MAX_SIGMA)).mean() < 0.65 and (majors > 10).mean() > 0.15
    assert min(ratios) >= 0.1 - 1e-9 and max(ratios) <= 0.4 + 1e-9
    with pytest.raises(ValueError, match="aniso_mix"):
        dg.degrade(spots, "aniso", rng, aniso_mix=(1.5, 0.2))


def test_degrade_rejects_unknown_kind_and_non_2d(spots):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown degradation"):
        dg.degrade(spots, "sharpen", rng)
    with pytest.raises(ValueError, match="2D"):
        dg.degrade(np.zeros((2, 8, 8), np.float32), "denoise", rng)

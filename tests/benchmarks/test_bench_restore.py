"""Pure helpers of ``benchmarks/bench_restore.py`` (no models, no data)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from benchmarks import bench_restore as br  # the repository root is on pytest's pythonpath


def test_paired_difference_counts_and_interval():
    p = br.paired_difference([0.5, 0.7, 0.9, 0.4], [0.4, 0.7, 0.6, 0.5])
    assert p["mean"] == pytest.approx((0.1 + 0.0 + 0.3 - 0.1) / 4)
    assert (p["wins"], p["losses"], p["n"]) == (2, 1, 4)
    d = np.array([0.1, 0.0, 0.3, -0.1])
    assert p["half_width"] == pytest.approx(1.96 * d.std(ddof=1) / 2)
    assert br.paired_difference([0.3], [0.1])["half_width"] == 0.0
    with pytest.raises(ValueError):
        br.paired_difference([], [])


@pytest.mark.parametrize("condition", br.CONDITIONS)
def test_degradations_are_fixed_per_seed_and_only_random_ones_vary(condition):
    args = argparse.Namespace(photons=5.0, blur=4.0, factor=4.0, aniso=(8.0, 1.5))
    img = np.random.default_rng(0).random((48, 56)).astype(np.float32)
    a = br.degrade_for(condition, img, 7, args)
    assert a.shape == img.shape and not np.allclose(a, img)
    np.testing.assert_array_equal(a, br.degrade_for(condition, img, 7, args))
    other = br.degrade_for(condition, img, 8, args)
    assert np.array_equal(a, other) == (condition not in br.RANDOM_CONDITIONS)

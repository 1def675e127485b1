"""Augmentation: image, flows and labels warped consistently."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cellseg_bridge.core.augment import AffineParams, random_affine, rotate_vectors, warp_sample
from cellseg_bridge.core.flows import masks_to_flows
from cellseg_bridge.datasets.synthetic import NucleiSpec, synthetic_nuclei


@pytest.fixture(scope="module")
def nuclei():
    img, lab = synthetic_nuclei(NucleiSpec(shape=(128, 128), n_nuclei=10), seed=1)
    lab = lab.astype(np.int32)
    return img.astype(np.float32)[None], lab, masks_to_flows(lab)


def _cosines(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> np.ndarray:
    na, nb = np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0)
    ok = where & (na > 0) & (nb > 0)
    return (a * b).sum(0)[ok] / (na[ok] * nb[ok])


@pytest.mark.parametrize("theta, flip", [(0.0, True), (math.pi / 2, False), (0.7, False), (2.0, True)])
def test_warped_flows_equal_flows_of_warped_labels(nuclei, theta, flip):
    img, lab, fl = nuclei
    p = AffineParams(1.0, theta, flip, (63.5, 63.5), (128, 128))
    _, wf, wl = warp_sample(p, img, fl, lab)
    ref = masks_to_flows(wl)
    cos = _cosines(wf, ref, wl > 0)
    assert cos.size > 1000
    assert np.median(cos) > 0.99
    assert np.mean(cos > 0.9) > 0.9
    # and the wrong vector transform (no rotation of vectors) does not agree
    if theta > 0.5:
        raw = rotate_vectors(wf, AffineParams(1.0, -theta, False, (0, 0), (1, 1))) if not flip else None
        if raw is not None:
            assert np.median(_cosines(raw, ref, wl > 0)) < 0.9


def test_flip_negates_x_and_mirrors(nuclei):
    img, lab, fl = nuclei
    p = AffineParams(1.0, 0.0, True, (63.5, 63.5), (128, 128))
    wi, wf, wl = warp_sample(p, img, fl, lab)
    np.testing.assert_array_equal(wl, lab[:, ::-1])
    np.testing.assert_allclose(wi[0], img[0, :, ::-1], atol=1e-4)
    np.testing.assert_allclose(wf[0], fl[0, :, ::-1], atol=1e-6)  # dy unchanged
    np.testing.assert_allclose(wf[1], -fl[1, :, ::-1], atol=1e-6)  # dx negated


def test_identity_is_exact(nuclei):
    img, lab, fl = nuclei
    p = AffineParams(1.0, 0.0, False, (63.5, 63.5), (128, 128))
    wi, wf, wl = warp_sample(p, img, fl, lab)
    np.testing.assert_array_equal(wl, lab)
    np.testing.assert_allclose(wf, fl, atol=1e-6)
    np.testing.assert_allclose(wi, img, atol=1e-3)


def test_scale_zooms_objects(nuclei):
    img, lab, _ = nuclei
    p = AffineParams(2.0, 0.0, False, (63.5, 63.5), (256, 256))
    _, _, wl = warp_sample(p, img, None, lab)
    a0 = np.bincount(lab.ravel())[1:]
    a1 = np.bincount(wl.ravel(), minlength=a0.size + 1)[1:]
    keep = a0 > 20
    assert np.allclose(a1[keep] / a0[keep], 4.0, rtol=0.2)


def test_random_affine_ranges_and_seed():
    rng = np.random.default_rng(3)
    ps = [random_affine(rng, (300, 500), 224, base_scale=2.0, scale_range=0.5) for _ in range(300)]
    scales = np.array([p.scale for p in ps])
    assert scales.min() >= 1.5 and scales.max() <= 2.5
    assert scales.min() < 1.6 and scales.max() > 2.4
    thetas = np.array([p.theta for p in ps])
    assert thetas.min() >= 0 and thetas.max() < 2 * math.pi and thetas.max() > 5
    flips = np.mean([p.flip for p in ps])
    assert 0.35 < flips < 0.65
    for p in ps:  # crop stays inside the scaled image where the image is larger than the crop
        half = (p.crop[1] / 2) / p.scale
        assert p.center[1] - half >= -1 and p.center[1] + half <= 500
    again = random_affine(np.random.default_rng(3), (300, 500), 224, base_scale=2.0)
    assert again == ps[0]


def test_outside_is_zero(nuclei):
    img, lab, fl = nuclei
    p = AffineParams(0.25, 0.0, False, (63.5, 63.5), (128, 128))
    wi, wf, wl = warp_sample(p, img, fl, lab)
    assert wl[0, 0] == 0 and wi[0, 0, 0] == 0 and np.all(wf[:, 0, 0] == 0)
    assert wl.dtype == np.int32 and wi.dtype == np.float32

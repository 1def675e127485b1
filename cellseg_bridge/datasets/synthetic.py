"""Synthetic fluorescence nuclei with exact ground truth (for the demo, tests and sanity checks).

The generator places non-overlapping elliptical nuclei of varied size, shape and
brightness, gives each a smooth internal texture (chromatin-like), blurs the
image with a Gaussian point-spread function, adds a smooth background and
shot (Poisson) plus read (Gaussian) noise, and returns a uint16 image together
with the label image the nuclei were drawn from. Everything depends only on the
seed, so outputs are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi


@dataclass(frozen=True)
class NucleiSpec:
    """Parameters of a synthetic nuclei image.

    Attributes
    ----------
    shape : tuple of int
        (Y, X) size in pixels.
    n_nuclei : int
        Number of nuclei attempted (fewer are placed when the field is full).
    diameter : float
        Mean nucleus diameter in pixels.
    diameter_spread : float
        Relative standard deviation of the diameter.
    max_eccentricity : float
        Largest ratio of minor to major semi-axis deficit (0: circles only).
    psf_sigma : float
        Gaussian blur sigma in pixels.
    photons : float
        Mean photon count at a nucleus' brightest point (lower: noisier).
    background : float
        Mean background photon count.
    read_noise : float
        Standard deviation of the additive camera noise, in counts.
    """

    shape: tuple[int, int] = (256, 256)
    n_nuclei: int = 40
    diameter: float = 22.0
    diameter_spread: float = 0.2
    max_eccentricity: float = 0.4
    psf_sigma: float = 1.2
    photons: float = 400.0
    background: float = 20.0
    read_noise: float = 3.0


def _ellipse_mask(shape: tuple[int, int], cy: float, cx: float, a: float, b: float, theta: float) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(theta), np.sin(theta)
    u = (dx * c + dy * s) / a
    v = (-dx * s + dy * c) / b
    return u * u + v * v <= 1.0


def synthetic_nuclei(spec: NucleiSpec = NucleiSpec(), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Generate one synthetic nuclei image and its ground-truth labels.

    Parameters
    ----------
    spec : NucleiSpec
        Image and noise parameters.
    seed : int
        Seed of the random generator; the same seed gives the same output.

    Returns
    -------
    image : ndarray of uint16, shape ``spec.shape``
        The noisy fluorescence image.
    labels : ndarray of uint16, shape ``spec.shape``
        0 for background, 1..N for the nuclei in placement order.
    """
    rng = np.random.default_rng(seed)
    h, w = spec.shape
    labels = np.zeros(spec.shape, dtype=np.uint16)
    signal = np.zeros(spec.shape, dtype=np.float64)
    # Chromatin-like texture shared by all nuclei: smoothed noise at two scales.
    texture = ndi.gaussian_filter(rng.normal(size=spec.shape), 1.5) + 0.5 * ndi.gaussian_filter(
        rng.normal(size=spec.shape), 4.0
    )
    texture = np.clip(1.0 + 0.15 * texture / (texture.std() + 1e-9), 0.5, 1.5)
    occupied = np.zeros(spec.shape, dtype=bool)
    next_label = 1
    for _ in range(spec.n_nuclei * 20):
        if next_label > spec.n_nuclei:
            break
        d = spec.diameter * max(0.4, 1.0 + spec.diameter_spread * rng.normal())
        ecc = rng.uniform(0.0, spec.max_eccentricity)
        a = d / 2.0
        b = a * (1.0 - ecc)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        mask = _ellipse_mask(spec.shape, cy, cx, a, b, rng.uniform(0, np.pi))
        if mask.sum() < 15:
            continue
        # Nuclei may touch (as in real tissue) but not overlap much: allow a sliver of contact.
        if (mask & ndi.binary_erosion(occupied, iterations=1)).any():
            continue
        mask &= labels == 0
        labels[mask] = next_label
        occupied |= mask
        brightness = rng.uniform(0.5, 1.0)
        # Brighter rim-free interior: intensity falls off gently toward the edge.
        dist = ndi.distance_transform_edt(mask)
        profile = np.clip(dist / max(b / 2.0, 1.0), 0.0, 1.0) ** 0.5
        signal[mask] = brightness * (0.6 + 0.4 * profile[mask]) * texture[mask]
        next_label += 1
    yy, xx = np.mgrid[0:h, 0:w]
    gradient = 1.0 + 0.3 * (xx / max(w - 1, 1)) - 0.2 * (yy / max(h - 1, 1))
    expected = ndi.gaussian_filter(signal, spec.psf_sigma) * spec.photons + spec.background * gradient
    counts = rng.poisson(np.clip(expected, 0, None)).astype(np.float64)
    counts += rng.normal(0.0, spec.read_noise, size=spec.shape) + 100.0  # camera offset
    image = np.clip(np.round(counts), 0, np.iinfo(np.uint16).max).astype(np.uint16)
    return image, labels

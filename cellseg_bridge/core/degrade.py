"""Synthetic image degradations for training and benchmarking restoration networks.

Pure numpy/scipy. Every function takes a 2D float image that is already
normalised (1st/99th percentiles at 0/1, as the networks see it) and returns a
new float32 image; inputs are never modified.

Cellpose 3's degradations (DESIGN.md section 3):

- :func:`poisson_noise`: shot noise. The image (clipped at 0) times a photon
  ``scale`` is the mean of a Poisson draw, divided back by ``scale``; small
  scales are low-photon images. In training the scale is drawn from a gamma
  distribution (:func:`sample_photon_scale`).
- :func:`gaussian_blur`: isotropic Gaussian blur; the training sigma range
  (1-10 px at an object diameter of 30 px) is scaled by ``diameter / 30``.
- :func:`downsample`: bilinear resize by ``1 / factor`` (x2-x7) and back to the
  original size, so the network sees what an upsampled low-resolution image
  looks like.

Beyond the paper (its named limits):

- :func:`anisotropic_blur`: an elongated Gaussian kernel at any angle (e.g.
  motion, astigmatism, line-scan smear).
- :func:`stripe_noise`: structured noise: a random offset per line along a
  direction (sCMOS row noise, scan banding) plus a sinusoidal banding.

:func:`degrade` draws one random degradation of a named kind (``denoise``,
``deblur``, ``upsample``, ``oneclick``, ``aniso``) for training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, signal

from cellseg_bridge.config import RESTORE_KINDS
from cellseg_bridge.core import transforms

__all__ = [
    "RESTORE_KINDS",
    "Degradation",
    "anisotropic_blur",
    "anisotropic_kernel",
    "degrade",
    "downsample",
    "gaussian_blur",
    "poisson_noise",
    "sample_photon_scale",
    "stripe_noise",
]

#: Object diameter (px) at which blur sigmas are quoted (Cellpose 3: cyto3's diam_mean).
REFERENCE_DIAMETER = 30.0
#: Largest major-axis sigma (px at REFERENCE_DIAMETER) of the ``aniso`` training blur.
ANISO_MAX_SIGMA = 24.0
#: Probabilities of the anisotropic blur and of the stripes in an ``aniso`` draw (at least one
#: is applied). Blur-heavy: with 0.7 / 0.7 the model learnt stripes but did not beat the
#: isotropic model on anisotropic blur (docs/restoration.md).
ANISO_MIX = (0.95, 0.35)


def _image(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("the image has NaN or infinite pixels")
    return a


def poisson_noise(img: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson (shot) noise: ``Poisson(max(img, 0) * scale) / scale``.

    Parameters
    ----------
    img : ndarray, 2D
        Normalised image (about 0..1).
    scale : float
        Photons per unit intensity (> 0); e.g. 1 means the 99th-percentile
        brightness collects about one photon (very noisy), 100 is mild.
    rng : numpy.random.Generator
    """
    a = _image(img)
    if not scale > 0:
        raise ValueError(f"photon scale must be positive, got {scale}")
    lam = np.clip(a, 0.0, None).astype(np.float64) * float(scale)
    return (rng.poisson(lam) / float(scale)).astype(np.float32)


def sample_photon_scale(
    rng: np.random.Generator, mean: float = 5.0, shape: float = 4.0, low: float = 0.5, high: float = 100.0
) -> float:
    """A photon scale from a gamma distribution (``shape``, mean ``mean``), clipped to [low, high]."""
    return float(np.clip(rng.gamma(shape, mean / shape), low, high))


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Isotropic Gaussian blur with standard deviation ``sigma`` pixels (reflecting borders)."""
    a = _image(img)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return a.copy()
    return ndimage.gaussian_filter(a, float(sigma), mode="reflect").astype(np.float32)


def anisotropic_kernel(sigma_major: float, sigma_minor: float, angle: float) -> np.ndarray:
    """Normalised 2D Gaussian kernel with axes ``sigma_major`` along ``angle`` (radians from +x) and ``sigma_minor``.

    The kernel spans 4 standard deviations of the major axis each way (odd side).
    """
    if not (sigma_major > 0 and sigma_minor > 0):
        raise ValueError(f"sigmas must be positive, got {sigma_major}, {sigma_minor}")
    r = max(1, int(math.ceil(4 * max(sigma_major, sigma_minor))))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    c, s = math.cos(angle), math.sin(angle)
    u = xx * c + yy * s  # along the major axis
    v = -xx * s + yy * c
    k = np.exp(-0.5 * ((u / sigma_major) ** 2 + (v / sigma_minor) ** 2))
    return (k / k.sum()).astype(np.float32)


def anisotropic_blur(img: np.ndarray, sigma_major: float, sigma_minor: float, angle: float) -> np.ndarray:
    """Blur with an elongated Gaussian (see :func:`anisotropic_kernel`), reflecting borders."""
    a = _image(img)
    k = anisotropic_kernel(sigma_major, sigma_minor, angle)
    r = k.shape[0] // 2
    padded = np.pad(a, r, mode="reflect" if min(a.shape) > r else "edge")
    return signal.fftconvolve(padded, k, mode="valid").astype(np.float32)


def downsample(img: np.ndarray, factor: float) -> np.ndarray:
    """Bilinear resize to ``1 / factor`` of the size and back (loss of resolution by ``factor``)."""
    a = _image(img)
    if not factor >= 1:
        raise ValueError(f"downsampling factor must be >= 1, got {factor}")
    shape = (int(a.shape[-2]), int(a.shape[-1]))
    small = (max(1, int(round(shape[0] / factor))), max(1, int(round(shape[1] / factor))))
    if small == shape:
        return a.copy()
    return transforms.resize(transforms.resize(a, small), shape).astype(np.float32)


def stripe_noise(
    img: np.ndarray,
    rng: np.random.Generator,
    amplitude: float,
    angle: float = 0.0,
    period: float | None = None,
    banding: float = 0.5,
) -> np.ndarray:
    """Add structured noise: a random offset per line plus a sinusoidal banding.

    Lines run along ``angle`` (radians from +x; 0: horizontal rows). Every
    line (1 px wide, measured across the lines) gets an independent Gaussian
    offset of standard deviation ``amplitude``; a sinusoid of amplitude
    ``banding * amplitude`` and ``period`` pixels (random phase) across the
    lines is added on top.

    Parameters
    ----------
    img : ndarray, 2D
        Normalised image.
    rng : numpy.random.Generator
    amplitude : float
        Offset standard deviation in normalised intensity units.
    angle : float
        Direction of the stripes.
    period : float, optional
        Banding period in pixels; default a random value in [8, 64].
    banding : float
        Relative amplitude of the banding.
    """
    a = _image(img)
    if amplitude < 0:
        raise ValueError(f"amplitude must be >= 0, got {amplitude}")
    ly, lx = a.shape
    yy, xx = np.mgrid[0:ly, 0:lx].astype(np.float64)
    # distance across the stripes
    d = -xx * math.sin(angle) + yy * math.cos(angle)
    d -= d.min()
    idx = np.floor(d).astype(np.int64)
    offsets = rng.normal(0.0, amplitude, size=int(idx.max()) + 1)
    if period is None:
        period = float(rng.uniform(8.0, 64.0))
    phase = rng.uniform(0, 2 * math.pi)
    band = banding * amplitude * np.sin(2 * math.pi * d / period + phase)
    return (a + offsets[idx] + band).astype(np.float32)


@dataclass
class Degradation:
    """What :func:`degrade` did to an image (for logs and benchmarks).

    Attributes
    ----------
    kind : str
        The kind asked for; ``steps`` lists what was applied, in order.
    steps : list of (str, dict)
        ``("blur", {"sigma": ...})``, ``("poisson", {"scale": ...})``, ...
    """

    kind: str
    steps: list[tuple[str, dict]] = field(default_factory=list)


def degrade(
    img: np.ndarray,
    kind: str,
    rng: np.random.Generator,
    *,
    diameter: float = REFERENCE_DIAMETER,
    renormalize: bool = True,
    aniso_mix: tuple[float, float] = ANISO_MIX,
) -> tuple[np.ndarray, Degradation]:
    """One random degradation of ``kind``, as used to train the restoration networks.

    - ``denoise``: Poisson noise, photon scale ~ gamma(4, mean 5) in [0.5, 100].
    - ``deblur``: Gaussian blur, sigma uniform in [1, 10] x diameter / 30, then
      mild Poisson noise (scale ~ gamma, mean 50).
    - ``upsample``: downsampling by a factor uniform in [2, 7] and back, then
      mild Poisson noise.
    - ``oneclick``: one of the three above, chosen uniformly.
    - ``aniso``: anisotropic blur (major sigma log-uniform in [1, 24] x
      diameter / 30, minor 0.1-0.4 of it, random angle) and stripe noise
      (amplitude 0.05-0.3, random angle), each with its probability in
      ``aniso_mix`` (at least one of the two), then mild Poisson noise.

    Parameters
    ----------
    img : ndarray, 2D
        Clean normalised image.
    kind : str
        One of :data:`RESTORE_KINDS`.
    rng : numpy.random.Generator
    diameter : float
        Object diameter in pixels in ``img`` (the network's diam_mean for crops
        at network scale); scales the blur sigmas.
    renormalize : bool
        Map the 1st/99th percentiles of the result to 0/1 (what the network sees
        at inference).
    aniso_mix : (float, float)
        Probabilities of the blur and of the stripes of an ``aniso`` draw.

    Returns
    -------
    degraded : ndarray of float32
    info : Degradation
    """
    a = _image(img)
    if len(aniso_mix) != 2 or not all(0.0 <= q <= 1.0 for q in aniso_mix):
        raise ValueError(f"aniso_mix must be two probabilities, got {aniso_mix}")
    if kind not in RESTORE_KINDS:
        raise ValueError(f"unknown degradation kind {kind!r}; known: {', '.join(RESTORE_KINDS)}")
    info = Degradation(kind)
    f = diameter / REFERENCE_DIAMETER
    if kind == "oneclick":
        kind = ("denoise", "deblur", "upsample")[int(rng.integers(3))]
    out = a
    if kind == "denoise":
        scale = sample_photon_scale(rng)
        out = poisson_noise(out, scale, rng)
        info.steps.append(("poisson", {"scale": scale}))
    elif kind == "deblur":
        sigma = float(rng.uniform(1.0, 10.0)) * f
        out = gaussian_blur(out, sigma)
        info.steps.append(("blur", {"sigma": sigma}))
    elif kind == "upsample":
        factor = float(rng.uniform(2.0, 7.0))
        out = downsample(out, factor)
        info.steps.append(("downsample", {"factor": factor}))
    elif kind == "aniso":
        p_blur, p_stripes = aniso_mix
        do_blur = rng.random() < p_blur
        do_stripes = rng.random() < p_stripes or not do_blur
        if do_blur:
            # an elongated smear reaches further than an isotropic blur: up to
            # 0.8 object diameters along its axis, as often short as long
            major = float(np.exp(rng.uniform(0.0, math.log(ANISO_MAX_SIGMA)))) * f
            minor = max(0.3, major * float(rng.uniform(0.1, 0.4)))
            angle = float(rng.uniform(0, math.pi))
            out = anisotropic_blur(out, major, minor, angle)
            info.steps.append(("aniso_blur", {"sigma_major": major, "sigma_minor": minor, "angle": angle}))
        if do_stripes:
            amp = float(rng.uniform(0.05, 0.3))
            angle = float(rng.choice([0.0, math.pi / 2, rng.uniform(0, math.pi)]))
            out = stripe_noise(out, rng, amp, angle)
            info.steps.append(("stripes", {"amplitude": amp, "angle": angle}))
    if kind in ("deblur", "upsample", "aniso"):
        scale = sample_photon_scale(rng, mean=50.0, low=5.0, high=500.0)
        out = poisson_noise(out, scale, rng)
        info.steps.append(("poisson", {"scale": scale}))
    if renormalize:
        out = transforms.normalize_percentile(out, channel_axis=None)
    return out.astype(np.float32, copy=False), info

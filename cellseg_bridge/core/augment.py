"""Training augmentation: random scale, rotation and flip applied consistently to
image, flow field and labels, sampled directly into a fixed-size crop.

Pure numpy/scipy. Coordinates are ``(y, x)`` in pixels, pixel centres at
integers. One random affine map sends input coordinates ``p`` to crop
coordinates ``q``::

    q = s * R(theta) @ F @ (p - c_in) + c_out

with ``F = diag(1, -1)`` for a horizontal flip (else the identity), ``R`` a
rotation by ``theta``, ``s`` the scale, ``c_in`` the input point that lands on
the crop centre ``c_out``. Each crop pixel samples the input at the inverse map
(:func:`scipy.ndimage.affine_transform`): images and flows bilinearly (order 1),
labels by nearest neighbour (order 0); outside the input all are 0.

Flow *vectors* are directions: they turn with the image, ``v' = R @ F @ v``
(a flip negates the x component, a rotation mixes both); an isotropic scale
leaves unit flows unchanged. So the flow field of the warped labels equals the
warped flow field up to interpolation (``tests/core/test_augment.py``).

The training recipe (Cellpose's): ``s = uniform(1 - r/2, 1 + r/2) * base_scale``
with ``r = scale_range`` (0.5 -> [0.75, 1.25]) and ``base_scale = diam_mean /
(cell diameter of that image)``; ``theta`` uniform in [0, 2 pi); flip with
probability 0.5; the crop centre is the image centre moved uniformly within the
margin by which the scaled image exceeds the crop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["AffineParams", "random_affine", "inverse_matrix", "warp_sample", "rotate_vectors"]


@dataclass(frozen=True)
class AffineParams:
    """One random affine map (see the module docstring).

    Attributes
    ----------
    scale : float
        Zoom factor ``s`` (crop pixels per input pixel).
    theta : float
        Rotation angle in radians.
    flip : bool
        Horizontal flip (x negated) before the rotation.
    center : tuple of float
        ``c_in``: the input point ``(y, x)`` mapped to the crop centre.
    crop : tuple of int
        Crop shape ``(Y, X)``.
    """

    scale: float
    theta: float
    flip: bool
    center: tuple[float, float]
    crop: tuple[int, int]

    def vector_matrix(self) -> np.ndarray:
        """``R @ F``, the 2x2 matrix applied to ``(dy, dx)`` vectors."""
        c, s = math.cos(self.theta), math.sin(self.theta)
        rot = np.array([[c, -s], [s, c]])
        flip = np.diag([1.0, -1.0 if self.flip else 1.0])
        return rot @ flip


def random_affine(
    rng: np.random.Generator,
    shape: tuple[int, int],
    crop: int | tuple[int, int] = 224,
    *,
    base_scale: float = 1.0,
    scale_range: float = 0.5,
    rotate: bool = True,
    flip: bool = True,
) -> AffineParams:
    """Draw one augmentation for an input of ``shape``.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness (seeded by the caller for reproducible runs).
    shape : tuple of int
        Input ``(Y, X)``.
    crop : int or tuple of int
        Output crop size.
    base_scale : float
        Scale before the random factor (``diam_mean / diameter`` of the image).
    scale_range : float
        Random factor uniform in ``[1 - scale_range / 2, 1 + scale_range / 2]``.
    rotate, flip : bool
        Draw a rotation angle in [0, 2 pi) / a horizontal flip with p = 0.5.

    Returns
    -------
    AffineParams
    """
    crop_yx = (int(crop[0]), int(crop[1])) if isinstance(crop, (tuple, list)) else (int(crop), int(crop))
    factor = 1.0 - scale_range / 2 + scale_range * rng.random()
    scale = float(base_scale * factor)
    theta = float(2 * math.pi * rng.random()) if rotate else 0.0
    do_flip = bool(rng.random() < 0.5) if flip else False
    center = []
    for n, c in zip(shape, crop_yx):
        # room (in input pixels) by which the scaled image exceeds the crop
        margin = max(0.0, n * scale - c) / scale
        center.append((n - 1) / 2 + (rng.random() - 0.5) * margin)
    return AffineParams(scale, theta, do_flip, (center[0], center[1]), crop_yx)


def inverse_matrix(params: AffineParams) -> tuple[np.ndarray, np.ndarray]:
    """Matrix and offset mapping crop coordinates to input coordinates.

    ``p = M @ q + offset`` with ``M = F @ R.T / s`` (F and R from ``params``).
    """
    a = params.vector_matrix()  # R @ F
    m = a.T / params.scale  # (R F)^-1 / s = F R^T / s
    c_out = np.array([(params.crop[0] - 1) / 2, (params.crop[1] - 1) / 2])
    offset = np.asarray(params.center, dtype=np.float64) - m @ c_out
    return m, offset


def rotate_vectors(vectors: np.ndarray, params: AffineParams) -> np.ndarray:
    """Apply ``R @ F`` to a ``(2, ...)`` field of ``(dy, dx)`` vectors."""
    a = params.vector_matrix().astype(np.float32)
    v = np.asarray(vectors, dtype=np.float32)
    return np.einsum("ij,j...->i...", a, v).astype(np.float32, copy=False)


def warp_sample(
    params: AffineParams,
    image: np.ndarray,
    flows: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Warp an image, its flows and labels into the crop of ``params``.

    Parameters
    ----------
    params : AffineParams
        The map (from :func:`random_affine`).
    image : ndarray, shape (C, Y, X)
        Channels first; sampled bilinearly.
    flows : ndarray, shape (2, Y, X), optional
        Unit flow vectors ``(dy, dx)``; sampled bilinearly, then rotated/flipped.
    labels : ndarray, shape (Y, X), optional
        Label image; sampled by nearest neighbour.

    Returns
    -------
    image : ndarray of float32, shape (C, *crop)
    flows : ndarray of float32, shape (2, *crop), or None
    labels : ndarray of int32, shape crop, or None
    """
    m, offset = inverse_matrix(params)
    out_shape = params.crop

    def warp(a: np.ndarray, order: int, dtype) -> np.ndarray:
        return ndimage.affine_transform(
            a, m, offset=offset, output_shape=out_shape, order=order,
            mode="constant", cval=0, prefilter=False, output=dtype,
        )

    img = np.stack([warp(np.asarray(ch, np.float32), 1, np.float32) for ch in image])
    fl = None
    if flows is not None:
        fl = np.stack([warp(np.asarray(f, np.float32), 1, np.float32) for f in flows])
        fl = rotate_vectors(fl, params)
    lab = None
    if labels is not None:
        lab = warp(np.asarray(labels, np.int32), 0, np.int32)
    return img, fl, lab

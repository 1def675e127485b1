"""Quick-look PNGs: an image plane in gray with the outlines of its labels drawn in colour.

The gray image is the plane normalised between its 1st and 99th percentiles
(clipped), so dim fluorescence is visible. An outline pixel is a pixel of a
label that touches (4-neighbourhood) another label, the background or the
image border: the inner pixel boundary of each object, so touching objects
keep separate outlines and no pixel outside a label is painted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cellseg_bridge.errors import InputError
from cellseg_bridge.io.atomic import atomic_output
from cellseg_bridge.io.seg_npy import masks_to_outlines

__all__ = ["OUTLINE_COLOR", "normalize_to_uint8", "outline_mask", "outline_overlay", "write_png"]

#: Default outline colour (magenta: visible on gray, and for red-green colour-blind readers).
OUTLINE_COLOR = (255, 0, 255)


def normalize_to_uint8(image2d: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.0)) -> np.ndarray:
    """Scale a plane between two percentiles to ``0..255`` (clipped).

    Parameters
    ----------
    image2d : array_like
        ``(Y, X)`` numbers; NaN and infinities are ignored for the percentiles and shown black.
    percentiles : (float, float)
        Low and high percentiles mapped to 0 and 255.

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` uint8. A constant plane is all 0.
    """
    data = np.asarray(image2d, dtype=np.float64)
    if data.ndim != 2:
        raise InputError(f"expected a 2-D image plane, got shape {data.shape}")
    finite = np.isfinite(data)
    if not finite.any():
        return np.zeros(data.shape, np.uint8)
    low, high = np.percentile(data[finite], percentiles)
    if not high > low:
        # nearly constant plane (e.g. sparse spots): fall back to the full range
        low, high = float(data[finite].min()), float(data[finite].max())
    if not high > low:
        return np.zeros(data.shape, np.uint8)
    scaled = (np.where(finite, data, low) - low) * (255.0 / (high - low))
    return np.clip(scaled, 0, 255).round().astype(np.uint8)


def outline_mask(labels2d: np.ndarray) -> np.ndarray:
    """Return the boolean outline pixels of every label of a ``(Y, X)`` label image (see module docstring)."""
    lab = np.asarray(labels2d)
    if lab.ndim != 2:
        raise InputError(f"expected 2-D labels, got shape {lab.shape}")
    return masks_to_outlines(lab) != 0


def outline_overlay(
    image2d: np.ndarray,
    labels2d: np.ndarray,
    *,
    color: tuple[int, int, int] = OUTLINE_COLOR,
    percentiles: tuple[float, float] = (1.0, 99.0),
) -> np.ndarray:
    """Draw label outlines over a gray image plane.

    Parameters
    ----------
    image2d : array_like
        ``(Y, X)`` intensities (any numeric type).
    labels2d : array_like
        ``(Y, X)`` integer labels, 0 = background, same shape as ``image2d``.
    color : (int, int, int)
        RGB colour of the outlines (default magenta).
    percentiles : (float, float)
        Normalisation percentiles of the gray image.

    Returns
    -------
    numpy.ndarray
        ``(Y, X, 3)`` uint8 RGB.
    """
    gray = normalize_to_uint8(image2d, percentiles)
    lab = np.asarray(labels2d)
    if lab.shape != gray.shape:
        raise InputError(f"labels {lab.shape} and image {gray.shape} differ in shape")
    if lab.dtype.kind not in "iub":
        raise InputError(f"labels must be integers, got {lab.dtype}")
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    rgb[outline_mask(lab)] = np.asarray(color, dtype=np.uint8)
    return rgb


def write_png(rgb: np.ndarray, path: str | Path) -> Path:
    """Write an RGB (``(Y, X, 3)``) or gray (``(Y, X)``) uint8 image as PNG, atomically.

    Parameters
    ----------
    rgb : numpy.ndarray
        uint8 pixels.
    path : str or Path
        The PNG to write (replaced only once complete).

    Returns
    -------
    Path
        ``path``.
    """
    import imageio.v3 as iio

    path = Path(path)
    data = np.asarray(rgb)
    if data.dtype != np.uint8 or not (data.ndim == 2 or (data.ndim == 3 and data.shape[2] in (3, 4))):
        raise InputError(f"PNG needs (Y, X) or (Y, X, 3|4) uint8 pixels, got {data.shape} {data.dtype}", path)
    with atomic_output(path, suffix=".png") as tmp:
        iio.imwrite(tmp, data, extension=".png")
    return path

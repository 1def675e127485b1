"""A glasbey-like lookup table for label images: neighbouring labels get distant colours.

Entry 0 (background) is black. Entry ``i`` takes the hue ``i`` times the golden
ratio (mod 1), so consecutive labels land far apart on the colour wheel, and
cycles through three saturation and three brightness levels so that labels
whose hues happen to be close still differ in shade. The same arithmetic, in
plain Python, lives in the Jython helper ``fiji_scripts/jars/Lib/cellseg_fiji.py``
(ImageJ side); a test checks that both give the same 256 colours.
"""

from __future__ import annotations

import colorsys

import numpy as np

__all__ = ["label_lut", "label_display_range"]

_GOLDEN = 0.6180339887498949
_SATURATIONS = (1.0, 0.7, 0.5)
_VALUES = (1.0, 0.8, 0.6)


def label_lut(n: int = 256) -> np.ndarray:
    """Return ``n`` RGB colours (uint8, shape ``(n, 3)``) for labels 0..n-1, 0 black.

    Parameters
    ----------
    n : int
        Number of entries; ImageJ LUTs have 256.

    Returns
    -------
    ndarray of uint8, shape (n, 3)
    """
    colours = np.zeros((n, 3), np.uint8)
    for i in range(1, n):
        hue = (i * _GOLDEN) % 1.0
        sat = _SATURATIONS[i % 3]
        val = _VALUES[(i // 3) % 3]
        rgb = colorsys.hsv_to_rgb(hue, sat, val)
        colours[i] = [int(c * 255.0 + 0.5) for c in rgb]
    return colours


def label_display_range(max_label: int) -> tuple[float, float]:
    """Display range that maps label ``k`` to LUT entry ``k`` when labels fit in the LUT.

    With at most 255 labels the range is ``(0, 255)``: every label has its own
    colour. Beyond that ImageJ cannot show each label in its own colour; the
    range ``(0, max_label)`` spreads them over the table (neighbours may share one).
    """
    return (0.0, 255.0) if max_label <= 255 else (0.0, float(max_label))

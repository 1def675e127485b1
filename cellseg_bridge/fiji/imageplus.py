"""numpy / xarray <-> ImageJ ``ImagePlus`` hyperstacks, written on ImageJ 1.x classes only.

Works in any JVM that has ImageJ 1.x on its class path: Debian's ``ij.jar``
through scyjava, or a user's Fiji through pyimagej (Fiji contains ImageJ 1.x).
Start one with :func:`cellseg_bridge.fiji.jvm.start_jvm` first.

ImageJ orders the planes of a hyperstack channel fastest, then Z, then T; the
conversions here put ``(T, C, Z, Y, X)`` arrays into that order and back.
Pixel types: uint8 -> 8-bit, uint16 -> 16-bit, everything else -> 32-bit float
(ImageJ has no 32-bit integer type; labels above 2**24 would lose precision
and are refused).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cellseg_bridge.errors import InputError
from cellseg_bridge.fiji.lut import label_display_range, label_lut

log = logging.getLogger(__name__)

__all__ = ["to_imageplus", "labels_to_imageplus", "imageplus_to_array", "imageplus_pixel_sizes", "apply_label_lut"]

#: ImageJ's name of the micrometre (shown as µm).
UNIT = "micron"
_AXES = "TCZYX"
_MAX_EXACT_FLOAT = 2**24


def _as_tczyx(image: Any, dims: str | None) -> tuple[np.ndarray, dict, list[str] | None]:
    """Array (T, C, Z, Y, X), pixel sizes and channel names of a DataArray or an array with ``dims``."""
    sizes: dict = {}
    names = None
    if hasattr(image, "dims") and hasattr(image, "attrs"):
        dims = "".join(str(d) for d in image.dims)
        sizes = dict(image.attrs.get("physical_pixel_sizes") or {})
        names = image.attrs.get("channel_names")
        data = np.asarray(image.values)
    else:
        data = np.asarray(image)
        if dims is None:
            dims = {2: "YX", 3: "ZYX", 5: "TCZYX"}.get(data.ndim)
            if dims is None:
                raise InputError(f"give dims for a {data.ndim}-D array (letters from TCZYX)")
    dims = dims.upper()
    if len(dims) != data.ndim or len(set(dims)) != len(dims) or set(dims) - set(_AXES + "S"):
        raise InputError(f"dims {dims!r} do not describe an array of shape {data.shape}")
    if "S" in dims:  # RGB samples become channels
        if "C" in dims:
            data = np.moveaxis(data, dims.index("S"), dims.index("C") + 1)
            dims = dims.replace("S", "")
            shape = list(data.shape)
            c = dims.index("C")
            data = data.reshape(shape[:c] + [shape[c] * shape[c + 1]] + shape[c + 2 :])
            if names is not None:
                names = [f"{n}_{s}" for n in names for s in "RGB"[: data.shape[c] // max(len(names), 1)]]
        else:
            dims = dims.replace("S", "C")
    for axis in _AXES:
        if axis not in dims:
            data = data[np.newaxis]
            dims = axis + dims
    data = np.transpose(data, [dims.index(a) for a in _AXES])
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != data.shape[1]:
            names = None
    return data, sizes, names


def _pixels(plane: np.ndarray) -> tuple[str, Any]:
    """The processor class name and Java pixel array of one 2-D plane."""
    import jpype

    if plane.dtype == np.uint8:
        return "ij.process.ByteProcessor", jpype.JArray(jpype.JByte)(np.ascontiguousarray(plane).view(np.int8).ravel())
    if plane.dtype == np.uint16:
        return "ij.process.ShortProcessor", jpype.JArray(jpype.JShort)(np.ascontiguousarray(plane).view(np.int16).ravel())
    return "ij.process.FloatProcessor", jpype.JArray(jpype.JFloat)(np.ascontiguousarray(plane, np.float32).ravel())


def _ij_dtype(data: np.ndarray) -> np.ndarray:
    if data.dtype in (np.uint8, np.uint16, np.float32):
        return data
    if data.dtype == bool:
        return data.astype(np.uint8) * 255
    return data.astype(np.float32)


def to_imageplus(
    image: Any,
    title: str = "image",
    *,
    dims: str | None = None,
    pixel_sizes: Mapping[str, float | None] | None = None,
    channel_names: Sequence[str] | None = None,
    display_ranges: Sequence[tuple[float, float]] | None = None,
    composite_mode: str = "composite",
) -> Any:
    """Make an ImageJ ``ImagePlus`` hyperstack from an array or an ``xarray.DataArray``.

    Parameters
    ----------
    image : xarray.DataArray or array_like
        A DataArray from :func:`cellseg_bridge.open_image` (dims from ``TCZYX``,
        ``S`` for RGB samples, attrs ``physical_pixel_sizes`` and
        ``channel_names``), or an array whose axes ``dims`` names.
    title : str
        Window title.
    dims : str, optional
        Axis letters of a plain array, e.g. ``"ZYX"``; default ``YX``, ``ZYX``
        or ``TCZYX`` by dimension.
    pixel_sizes : mapping, optional
        ``{"Z": µm, "Y": µm, "X": µm}`` (None = unknown); default the
        DataArray's ``physical_pixel_sizes``.
    channel_names : sequence of str, optional
        Default the DataArray's ``channel_names``; they become the slice labels
        of each channel's planes (Fiji shows them in the title bar).
    display_ranges : sequence of (float, float), optional
        One ``(min, max)`` per channel; default each channel's 0.1 and 99.9
        percentiles (min and max for 8-bit and label-like data).
    composite_mode : {"composite", "color", "grayscale"}
        How a multi-channel image is shown.

    Returns
    -------
    ij.ImagePlus
        An ``ij.CompositeImage`` when there are several channels.
    """
    from scyjava import jimport

    data, sizes, names = _as_tczyx(image, dims)
    data = _ij_dtype(data)
    if data.dtype == np.float32 and np.issubdtype(np.asarray(image).dtype, np.integer):
        if data.size and np.abs(np.asarray(image)).max() >= _MAX_EXACT_FLOAT:
            raise InputError("integer values above 2**24 cannot be stored exactly in an ImageJ image")
    if pixel_sizes is not None:
        sizes = dict(pixel_sizes)
    if channel_names is not None:
        names = [str(n) for n in channel_names]
    nt, nc, nz, ny, nx = data.shape
    if names is not None and len(names) != nc:
        raise InputError(f"{len(names)} channel names for {nc} channels")

    ImagePlus = jimport("ij.ImagePlus")
    ImageStack = jimport("ij.ImageStack")
    stack = ImageStack(nx, ny)
    for t in range(nt):
        for z in range(nz):
            for c in range(nc):
                cls, pixels = _pixels(data[t, c, z])
                ip = jimport(cls)(nx, ny, pixels, None) if cls != "ij.process.ByteProcessor" else jimport(cls)(nx, ny, pixels)
                stack.addSlice(names[c] if names else None, ip)
    imp = ImagePlus(title, stack)
    imp.setDimensions(nc, nz, nt)
    if sum(n > 1 for n in (nc, nz, nt)) > 1 or nc > 1:
        imp.setOpenAsHyperStack(True)
    _set_calibration(imp, sizes)
    ranges = list(display_ranges) if display_ranges is not None else [_auto_range(data[:, c]) for c in range(nc)]
    if len(ranges) != nc:
        raise InputError(f"{len(ranges)} display ranges for {nc} channels")
    if nc > 1:
        CompositeImage = jimport("ij.CompositeImage")
        modes = {"composite": CompositeImage.COMPOSITE, "color": CompositeImage.COLOR, "grayscale": CompositeImage.GRAYSCALE}
        if composite_mode not in modes:
            raise InputError(f"composite_mode must be one of {sorted(modes)}, got {composite_mode!r}")
        imp = CompositeImage(imp, modes[composite_mode])
        for c, (lo, hi) in enumerate(ranges):
            imp.setPositionWithoutUpdate(c + 1, 1, 1)
            imp.setDisplayRange(float(lo), float(hi))
        imp.setPositionWithoutUpdate(1, 1, 1)
    else:
        imp.setDisplayRange(float(ranges[0][0]), float(ranges[0][1]))
    return imp


def _auto_range(channel: np.ndarray) -> tuple[float, float]:
    if channel.size == 0:
        return (0.0, 1.0)
    if channel.dtype == np.uint8:
        return (0.0, 255.0)
    lo, hi = np.percentile(channel, (0.1, 99.9))
    if hi <= lo:
        lo, hi = float(channel.min()), float(channel.max())
    return (float(lo), float(hi) if hi > lo else float(lo) + 1.0)


def _set_calibration(imp: Any, sizes: Mapping[str, float | None]) -> None:
    cal = imp.getCalibration()
    known = False
    for axis, attr in (("X", "pixelWidth"), ("Y", "pixelHeight"), ("Z", "pixelDepth")):
        value = sizes.get(axis)
        if value is not None and np.isfinite(value) and value > 0:
            setattr(cal, attr, float(value))
            known = True
    if known:
        cal.setUnit(UNIT)


def imageplus_pixel_sizes(imp: Any) -> dict[str, float | None]:
    """``{"Z", "Y", "X"}`` pixel sizes in µm of an ImagePlus (None when it is not calibrated in µm)."""
    cal = imp.getCalibration()
    unit = str(cal.getUnit())
    scale = {"µm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "nm": 1e-3, "mm": 1e3}.get(unit)
    if scale is None:
        return {"Z": None, "Y": None, "X": None}
    return {"Z": float(cal.pixelDepth) * scale, "Y": float(cal.pixelHeight) * scale, "X": float(cal.pixelWidth) * scale}


def imageplus_to_array(imp: Any) -> np.ndarray:
    """The pixels of an ImagePlus as a ``(T, C, Z, Y, X)`` array (uint8, uint16 or float32; RGB as uint32 ARGB)."""
    nc, nz, nt = (int(v) for v in imp.getDimensions()[2:5])
    ny, nx = int(imp.getHeight()), int(imp.getWidth())
    stack = imp.getStack()
    bitdepth = int(imp.getBitDepth())
    dtype, view = {8: (np.int8, np.uint8), 16: (np.int16, np.uint16), 32: (np.float32, np.float32),
                   24: (np.int32, np.uint32)}[bitdepth]
    out = np.empty((nt, nc, nz, ny, nx), view)
    for t in range(nt):
        for z in range(nz):
            for c in range(nc):
                index = int(imp.getStackIndex(c + 1, z + 1, t + 1))
                pixels = stack.getPixels(index)
                out[t, c, z] = np.asarray(pixels, dtype=dtype).view(view).reshape(ny, nx)
    return out


def apply_label_lut(imp: Any, max_label: int | None = None) -> None:
    """Give an ImagePlus of labels the glasbey-like LUT (:func:`~cellseg_bridge.fiji.lut.label_lut`)."""
    import jpype
    from scyjava import jimport

    colours = label_lut(256)
    LUT = jimport("ij.process.LUT")
    red, green, blue = (jpype.JArray(jpype.JByte)(colours[:, k].view(np.int8).copy()) for k in range(3))
    if max_label is None:
        max_label = int(imp.getStatistics().max) if int(imp.getBitDepth()) != 8 else 255
    lo, hi = label_display_range(max_label)
    lut = LUT(red, green, blue)
    imp.setLut(lut)
    imp.setDisplayRange(lo, hi)


def labels_to_imageplus(
    labels: Any,
    title: str = "labels",
    *,
    dims: str | None = None,
    pixel_sizes: Mapping[str, float | None] | None = None,
) -> Any:
    """Make an ImagePlus of a label image, 16-bit (32-bit float beyond 65535 labels), with the label LUT.

    Parameters
    ----------
    labels : xarray.DataArray or array_like
        Label image (0 = background); axes as for :func:`to_imageplus`.
    title : str
        Window title.
    dims : str, optional
        Axis letters of a plain array.
    pixel_sizes : mapping, optional
        Pixel sizes in µm (default the DataArray's).

    Returns
    -------
    ij.ImagePlus
    """
    values = np.asarray(labels.values if hasattr(labels, "values") and hasattr(labels, "dims") else labels)
    if not np.issubdtype(values.dtype, np.integer):
        raise InputError(f"labels must be integers, got {values.dtype}")
    if values.size and values.min() < 0:
        raise InputError("labels must not be negative")
    max_label = int(values.max()) if values.size else 0
    cast = values.astype(np.uint16) if max_label <= 65535 else values
    if hasattr(labels, "dims") and hasattr(labels, "attrs"):
        cast = labels.copy(data=cast)
    imp = to_imageplus(cast, title, dims=dims, pixel_sizes=pixel_sizes, display_ranges=None)
    apply_label_lut(imp, max_label)
    return imp

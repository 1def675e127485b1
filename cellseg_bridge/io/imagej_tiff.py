"""Write images as ImageJ hyperstack TIFFs, the format plain ImageJ 1.x opens with its structure.

ImageJ 1.x reads an OME-TIFF as a plain stack (:mod:`cellseg_bridge.io.writers`: the T, C, Z
structure, the Z spacing and the channel names are lost without Bio-Formats). An ImageJ
hyperstack TIFF keeps them in the ``ImageDescription`` ImageJ writes itself
(``ImageJ=... channels= slices= frames= hyperstack=true spacing= unit= finterval=``), with:

- planes in ImageJ's order (channel fastest, then Z, then time: ``TZCYX``);
- the XY pixel size in the resolution tags and ``unit=micron``, the Z spacing in ``spacing``,
  the frame interval (seconds) in ``finterval`` when known;
- the channel names as the slice labels of every plane of that channel (ImageJ shows them as
  channel labels; :func:`cellseg_bridge.io.reader.open_image` reads them back as channel names);
- several channels shown as a composite, each with its colour when known (``LUTs``).

One ``ImageDescription`` cannot hold both OME-XML and ImageJ's text, so this is a separate
output format (``cellseg convert --format imagej``), not an addition to the OME-TIFF. ImageJ
holds 8-bit, 16-bit and 32-bit float images; other data types are refused (with bool written
as 8-bit), and so is pixel data beyond 4 GB (ImageJ does not read BigTIFF). The file is not
compressed, as ImageJ writes its own: ImageJ 1.53t drops the slice labels (our channel names)
of a compressed hyperstack (measured, ``tests/io/test_imagej_tiff.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cellseg_bridge.errors import InputError
from cellseg_bridge.io.atomic import atomic_output
from cellseg_bridge.io.writers import AXES, BIGTIFF_THRESHOLD, PixelSizes, _as_tczyx, _pixel_sizes, _planes, _rational

log = logging.getLogger(__name__)

__all__ = ["IMAGEJ_DTYPES", "write_imagej_tiff"]

#: Data types an ImageJ hyperstack holds (8-bit, 16-bit, 32-bit float).
IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
#: ImageJ's plane order: channel fastest, then Z, then T.
IMAGEJ_AXES = "TZCYX"


def write_imagej_tiff(
    image: Any,
    path: str | Path,
    *,
    physical_pixel_sizes: PixelSizes | None = None,
    channel_names: Sequence[str] | None = None,
    frame_interval: float | None = None,
    channel_colors: Sequence[str] | None = None,
    dims: str | None = None,
) -> Path:
    """Write an image as an ImageJ hyperstack TIFF, atomically.

    Parameters
    ----------
    image : xarray.DataArray, numpy.ndarray or dask.array.Array
        The pixels, as for :func:`cellseg_bridge.io.writers.write_ome_tiff` (a DataArray's
        ``physical_pixel_sizes``, ``channel_names`` and ``frame_interval`` attrs are used
        unless given here). Dask data are written plane by plane.
    path : str or Path
        Output file (``.tif``).
    physical_pixel_sizes : mapping, optional
        ``{"Z": µm, "Y": µm, "X": µm}``; unknown sizes are left out (ImageJ shows pixels).
    channel_names : sequence of str, optional
        One name per channel: the label of each plane of the channel.
    frame_interval : float, optional
        Seconds between time points (ImageJ's ``finterval``).
    channel_colors : sequence of str, optional
        One ``"#rrggbb"`` per channel: each channel's LUT runs from black to it.
    dims : str, optional
        Axis letters of a plain array.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        A data type ImageJ cannot hold, data beyond 4 GB, or channel names that do not match
        the channels.
    """
    import tifffile

    path = Path(path)
    data, attrs = _as_tczyx(image, dims, path)
    sizes = _pixel_sizes(physical_pixel_sizes if physical_pixel_sizes is not None else attrs.get("physical_pixel_sizes"))
    names = channel_names if channel_names is not None else attrs.get("channel_names")
    interval = frame_interval if frame_interval is not None else attrs.get("frame_interval")
    dtype = np.dtype(data.dtype).newbyteorder("=")
    if dtype == np.bool_:
        data, dtype = data.astype(np.uint8), np.dtype(np.uint8)
    if dtype not in IMAGEJ_DTYPES:
        raise InputError(f"an ImageJ hyperstack holds 8-bit, 16-bit or 32-bit float pixels, not {dtype}; "
                         "write OME-TIFF instead (Fiji opens it with Bio-Formats)", path)
    shape = tuple(int(s) for s in data.shape)
    if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize > BIGTIFF_THRESHOLD:
        raise InputError("pixel data above 4 GB: ImageJ 1.x cannot read such a TIFF; write OME-TIFF instead", path)
    n_t, n_c, n_z = shape[:3]
    metadata: dict[str, Any] = {"axes": IMAGEJ_AXES, "mode": "composite" if n_c > 1 else "grayscale"}
    if names is not None:
        labels = [str(n) for n in names]
        if len(labels) != n_c:
            raise InputError(f"{len(labels)} channel names given for {n_c} channels", path)
        metadata["Labels"] = labels * (n_t * n_z)  # one per plane, channel fastest
    resolution = None
    if sizes["X"] is not None and sizes["Y"] is not None:
        resolution = (_rational(1 / sizes["X"]), _rational(1 / sizes["Y"]))  # pixels per µm
        metadata["unit"] = "micron"
        if sizes["Z"] is not None:
            metadata["spacing"] = sizes["Z"]
    if interval is not None and float(interval) > 0:
        metadata["finterval"] = float(interval)
    if channel_colors is not None:
        if len(channel_colors) != n_c:
            raise InputError(f"{len(channel_colors)} channel colours given for {n_c} channels", path)
        ramp = np.arange(256, dtype=np.float64) / 255
        metadata["LUTs"] = [np.stack([np.round(ramp * int(str(c).lstrip("#")[i:i + 2], 16)) for i in (0, 2, 4)])
                            .astype(np.uint8) for c in channel_colors]
    order = [AXES.index(axis) for axis in IMAGEJ_AXES]
    tzc = data.transpose(order)  # T Z C Y X: _planes walks the first three axes in order
    log.debug("writing ImageJ hyperstack %s: TZCYX %s %s", path, tzc.shape, dtype)
    with atomic_output(path) as tmp:
        with tifffile.TiffWriter(tmp, imagej=True) as tif:
            tif.write(_planes(tzc, dtype), shape=tuple(int(s) for s in tzc.shape), dtype=dtype,
                      photometric="minisblack", resolution=resolution, metadata=metadata,
                      software="cellseg_bridge")
    return path

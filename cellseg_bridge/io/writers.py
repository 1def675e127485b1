"""Write images and label images as OME-TIFF (tifffile), atomically.

Two writers share one code path:

- :func:`write_ome_tiff` writes any image (``xarray.DataArray`` with dims
  ``T C Z Y X`` as returned by :func:`cellseg_bridge.io.reader.open_image`, or
  a numpy/dask array) with OME-XML metadata: ``PhysicalSizeX/Y/Z`` in µm and
  channel names. Dask-backed data are written plane by plane, computing whole
  dask chunks in groups of at most :data:`PLANE_BATCH_BYTES` (256 MB; one
  chunk when a chunk is larger), so an image larger than memory is never
  loaded whole. Files whose pixel data exceed about 2 GB are written as BigTIFF.
- :func:`write_labels` writes a label image (0 = background, 1..N = objects)
  as a single-channel OME-TIFF, ``uint16`` when the largest label fits, else
  ``uint32``.

Both also write the TIFF ``XResolution``/``YResolution`` tags (pixels per
centimetre), which plain TIFF readers such as ImageJ 1.x use for the XY pixel
size, since they ignore the OME-XML.

What ImageJ 1.x (Debian ImageJ 1.53t, ``IJ.openImage``) makes of these files
(measured, see ``tests/io/test_writers.py``):

- It reads an OME-TIFF as a plain TIFF: all planes become one stack (the T, C, Z
  structure and the channel names are lost; Bio-Formats in Fiji restores them),
  the XY calibration comes from the resolution tags, the Z spacing is not read.
- ``uint16`` labels open as a 16-bit image with the exact label values.
- ``uint32`` labels (more than 65535 objects) open as a **32-bit float**
  image: ImageJ converts unsigned 32-bit integers to float on reading. Labels
  stay exact up to 2**24 = 16,777,216 (float32 has a 24-bit mantissa); beyond
  that, neighbouring labels merge in ImageJ (not in Python readers). We do not
  write float32 ourselves, because Python readers, Cellpose and napari expect
  an integer label image; a user who needs 16-bit in ImageJ must split the
  image or relabel per tile.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from cellseg_bridge.config import DEFAULTS
from cellseg_bridge.errors import InputError
from cellseg_bridge.io.atomic import atomic_output

log = logging.getLogger(__name__)

#: Axis order of every image we write (the reader's order).
AXES = "TCZYX"
#: Pixel data above this size are written as BigTIFF (classic TIFF offsets are
#: 32-bit; the margin leaves room for IFDs, strip tables and the OME-XML).
BIGTIFF_THRESHOLD = 2**31 - 2**26
#: Dask data are computed in groups of Z-chunks up to this size (memory bound while writing).
PLANE_BATCH_BYTES = 256 * 2**20
#: Largest label a ``uint16`` label image can hold.
UINT16_MAX = np.iinfo(np.uint16).max
#: Dtypes OME-XML can describe (``Pixels/@Type``).
_OME_DTYPES = {np.dtype(t) for t in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")}

PixelSizes = Mapping[str, float | None]


def write_ome_tiff(
    image: Any,
    path: str | Path,
    *,
    physical_pixel_sizes: PixelSizes | None = None,
    channel_names: Sequence[str] | None = None,
    compression: str | None = DEFAULTS.convert.compression,
    dims: str | None = None,
    name: str | None = None,
    acquisition: Mapping[str, Any] | None = None,
) -> Path:
    """Write an image as OME-TIFF (``TCZYX``), atomically.

    Parameters
    ----------
    image : xarray.DataArray, numpy.ndarray or dask.array.Array
        The pixels. A DataArray's ``dims`` must be a subset of ``T C Z Y X``
        (missing axes get length 1); its ``attrs`` ``physical_pixel_sizes`` and
        ``channel_names`` are used unless given here. A plain array is read
        with ``dims``, by default the last ``ndim`` letters of ``TCZYX``
        (2-D: ``YX``, 3-D: ``ZYX``, 4-D: ``CZYX``).
    path : str or Path
        Output file, conventionally ending in ``.ome.tif``. Written to a
        temporary file first and renamed, so it is never left half-written.
    physical_pixel_sizes : mapping, optional
        ``{"Z": µm, "Y": µm, "X": µm}``; ``None`` values are left out of the
        OME-XML.
    channel_names : sequence of str, optional
        One name per channel.
    compression : str or None
        ``"zlib"`` (default from :data:`cellseg_bridge.config.DEFAULTS`),
        ``"none"``/``None``, or another tifffile codec name (ImageJ 1.x only
        reads uncompressed, zlib, LZW and PackBits).
    dims : str, optional
        Axis letters of a plain array (ignored for a DataArray).
    name : str, optional
        Image name stored in the OME-XML (e.g. the scene name).
    acquisition : mapping, optional
        Acquisition metadata as :func:`cellseg_bridge.io.acquisition.read_acquisition` returns it
        (default: the DataArray's ``acquisition`` attr): ``TimeIncrement`` (s), ``AcquisitionDate``,
        the channels' ``EmissionWavelength`` / ``ExcitationWavelength`` (nm, when every channel has
        one) and ``Color``, and the objective as an ``Instrument/Objective`` that the image's
        ``ObjectiveSettings`` reference.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        Unknown axes, a data type OME-TIFF cannot hold, or channel names that
        do not match the number of channels.
    """
    path = Path(path)
    data, attrs = _as_tczyx(image, dims, path)
    sizes = _pixel_sizes(physical_pixel_sizes if physical_pixel_sizes is not None else attrs.get("physical_pixel_sizes"))
    names = channel_names if channel_names is not None else attrs.get("channel_names")
    dtype = np.dtype(data.dtype)
    if dtype == np.bool_:
        data = data.astype(np.uint8)
        dtype = np.dtype(np.uint8)
    dtype = dtype.newbyteorder("=")
    if dtype not in _OME_DTYPES:
        raise InputError(f"cannot write data type {dtype} to OME-TIFF (supported: {sorted(map(str, _OME_DTYPES))})", path)
    metadata = _ome_metadata(data.shape, sizes, names, name, path)
    acquisition = acquisition if acquisition is not None else attrs.get("acquisition")
    objective = None
    if acquisition:
        extra = _acquisition_metadata(acquisition, data.shape[1])
        extra["Channel"] = {**metadata.get("Channel", {}), **extra.get("Channel", {})}
        metadata.update(extra)
        objective = acquisition.get("objective")
    _write(data, dtype, path, metadata, sizes, compression, objective)
    return path


def write_labels(
    labels: Any,
    path: str | Path,
    *,
    physical_pixel_sizes: PixelSizes | None = None,
    compression: str | None = DEFAULTS.convert.compression,
    dims: str | None = None,
) -> Path:
    """Write a label image as a single-channel OME-TIFF, ``uint16`` or ``uint32``.

    Parameters
    ----------
    labels : array-like or xarray.DataArray
        Integer (or boolean) labels, 0 = background. 2-D arrays are ``YX``,
        3-D arrays ``ZYX`` unless ``dims`` says otherwise.
    path : str or Path
        Output file (e.g. ``image_labels.ome.tif``), written atomically.
    physical_pixel_sizes : mapping, optional
        ``{"Z", "Y", "X"}`` in µm; default: the DataArray's attrs, if any.
    compression : str or None
        As in :func:`write_ome_tiff`.
    dims : str, optional
        Axis letters of a plain array.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        Non-integer or negative labels, or labels above ``2**32 - 1``.

    Notes
    -----
    The data type is ``uint16`` when the largest label is at most 65535 and
    ``uint32`` otherwise. ImageJ 1.x opens ``uint32`` TIFFs as 32-bit float
    images (exact up to 16,777,216 labels); see the module docstring.
    """
    path = Path(path)
    data, attrs = _as_tczyx(labels, dims, path)
    dtype = np.dtype(data.dtype)
    if not (dtype.kind in "iu" or dtype == np.bool_):
        raise InputError(f"labels must be integers, got {dtype}", path)
    low, high = _min_max(data)
    if low < 0:
        raise InputError(f"labels must be >= 0, found {low}", path)
    if high > np.iinfo(np.uint32).max:
        raise InputError(f"largest label {high} does not fit in uint32", path)
    out_dtype = np.dtype(np.uint16) if high <= UINT16_MAX else np.dtype(np.uint32)
    if out_dtype == np.uint32:
        log.info("%s: %d labels > 65535, writing uint32 (ImageJ 1.x opens it as 32-bit float)", path, high)
    sizes = _pixel_sizes(physical_pixel_sizes if physical_pixel_sizes is not None else attrs.get("physical_pixel_sizes"))
    metadata = _ome_metadata(data.shape, sizes, ["labels"] * data.shape[1], "labels", path)
    _write(data.astype(out_dtype), out_dtype, path, metadata, sizes, compression)
    return path


# --------------------------------------------------------------------------- helpers


def _as_tczyx(image: Any, dims: str | None, path: Path) -> tuple[Any, dict]:
    """Return ``(5-D numpy or dask array in TCZYX order, attrs)``."""
    attrs: dict = {}
    if hasattr(image, "dims") and hasattr(image, "data") and hasattr(image, "attrs"):  # xarray.DataArray
        attrs = dict(image.attrs)
        dims = "".join(str(d) for d in image.dims)
        image = image.data
    if not hasattr(image, "ndim") or not hasattr(image, "dtype"):
        image = np.asarray(image)
    if dims is None:
        if image.ndim > len(AXES) or image.ndim < 2:
            raise InputError(f"cannot write a {image.ndim}-D array (expected 2-D to 5-D, {AXES})", path)
        dims = AXES[-image.ndim :]
    dims = dims.upper()
    if len(dims) != image.ndim:
        raise InputError(f"dims {dims!r} do not match a {image.ndim}-D array", path)
    unknown = set(dims) - set(AXES)
    if unknown or len(set(dims)) != len(dims) or not {"Y", "X"} <= set(dims):
        raise InputError(f"dims {dims!r} must be distinct letters of {AXES} and include Y and X", path)
    for axis in AXES:
        if axis not in dims:
            image = image[None]
            dims = axis + dims
    order = [dims.index(axis) for axis in AXES]
    if order != list(range(len(AXES))):
        image = image.transpose(order)
    return image, attrs


def _pixel_sizes(sizes: PixelSizes | Any | None) -> dict[str, float | None]:
    """Normalise pixel sizes (mapping or an object with Z/Y/X attributes) to a dict."""
    out: dict[str, float | None] = {"Z": None, "Y": None, "X": None}
    if sizes is None:
        return out
    for axis in out:
        value = sizes.get(axis) if isinstance(sizes, Mapping) else getattr(sizes, axis, None)
        if value is not None:
            value = float(value)
            if np.isfinite(value) and value > 0:
                out[axis] = value
    return out


def _ome_metadata(
    shape: tuple[int, ...],
    sizes: dict[str, float | None],
    channel_names: Sequence[str] | None,
    name: str | None,
    path: Path,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"axes": AXES}
    if name:
        metadata["Name"] = str(name)
    for axis in ("X", "Y", "Z"):
        if sizes[axis] is not None:
            metadata[f"PhysicalSize{axis}"] = sizes[axis]
            metadata[f"PhysicalSize{axis}Unit"] = "µm"
    if channel_names is not None:
        names = [str(n) for n in channel_names]
        if len(names) != shape[1]:
            raise InputError(f"{len(names)} channel names given for {shape[1]} channels", path)
        metadata["Channel"] = {"Name": names}
    return metadata


def _acquisition_metadata(acquisition: Mapping[str, Any], n_channels: int) -> dict[str, Any]:
    """tifffile OME metadata of the acquisition facts (see :func:`write_ome_tiff`)."""
    out: dict[str, Any] = {}
    interval = acquisition.get("frame_interval_s")
    if interval is not None and float(interval) > 0:
        out["TimeIncrement"], out["TimeIncrementUnit"] = float(interval), "s"
    if acquisition.get("acquisition_date"):
        out["AcquisitionDate"] = str(acquisition["acquisition_date"])
    channels = list(acquisition.get("channels") or [])
    if len(channels) == n_channels:
        per_channel: dict[str, list] = {}
        for key, ome, unit in (("emission_nm", "EmissionWavelength", "nm"), ("excitation_nm", "ExcitationWavelength", "nm")):
            if all(c.get(key) is not None for c in channels):
                per_channel[ome] = [float(c[key]) for c in channels]
                per_channel[ome + "Unit"] = [unit] * n_channels
        if all(c.get("color") for c in channels):
            per_channel["Color"] = [_ome_color(str(c["color"])) for c in channels]
        out["Channel"] = per_channel
    return out


def _ome_color(hex_rgb: str) -> int:
    """``#rrggbb`` as OME's signed 32-bit RGBA integer (opaque)."""
    value = (int(hex_rgb.lstrip("#")[:6], 16) << 8) | 0xFF
    return value - 2**32 if value >= 2**31 else value


#: OME's Objective/@Immersion values.
_IMMERSIONS = ("Oil", "Water", "WaterDipping", "Air", "Multi", "Glycerol", "Other")


def _with_objective(xml: str, objective: Mapping[str, Any]) -> str:
    """OME-XML with an ``Instrument/Objective`` and every image's ``InstrumentRef`` / ``ObjectiveSettings``."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    ns = root.tag.split("}")[0].strip("{")
    ET.register_namespace("", ns)
    attrs = {"ID": "Objective:0"}
    if objective.get("model") or objective.get("name"):
        attrs["Model"] = str(objective.get("model") or objective.get("name"))
    if objective.get("magnification"):
        attrs["NominalMagnification"] = repr(float(objective["magnification"]))
    if objective.get("na"):
        attrs["LensNA"] = repr(float(objective["na"]))
    if objective.get("immersion") in _IMMERSIONS:
        attrs["Immersion"] = str(objective["immersion"])
    instrument = ET.Element(f"{{{ns}}}Instrument", {"ID": "Instrument:0"})
    ET.SubElement(instrument, f"{{{ns}}}Objective", attrs)
    children = list(root)
    images = [i for i, child in enumerate(children) if child.tag == f"{{{ns}}}Image"]
    if not images:
        return xml
    root.insert(images[0], instrument)
    for image in root.findall(f"{{{ns}}}Image"):
        pixels = [i for i, child in enumerate(image) if child.tag == f"{{{ns}}}Pixels"][0]
        image.insert(pixels, ET.Element(f"{{{ns}}}ObjectiveSettings", {"ID": "Objective:0"}))
        image.insert(pixels, ET.Element(f"{{{ns}}}InstrumentRef", {"ID": "Instrument:0"}))
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def _rational(value: float) -> tuple[int, int]:
    """Return ``value`` as a TIFF RATIONAL (numerator, denominator), both < 2**32."""
    limit = 2**32 - 1
    frac = Fraction(value).limit_denominator(limit)
    while frac.numerator > limit and frac.denominator > 1:
        frac = Fraction(value).limit_denominator(max(1, frac.denominator // 16))
    return min(frac.numerator, limit), frac.denominator


def _min_max(data: Any) -> tuple[int, int]:
    if data.size == 0:
        return 0, 0
    if isinstance(data, np.ndarray):
        return int(data.min()), int(data.max())
    import dask

    low, high = dask.compute(data.min(), data.max())
    return int(low), int(high)


def _planes(data: Any, dtype: np.dtype) -> Iterator[np.ndarray]:
    """Yield the YX planes of a TCZYX array in T, C, Z order.

    A dask array is computed in groups of whole Z-chunks of at most
    :data:`PLANE_BATCH_BYTES` (or one chunk, if larger), one ``dask.compute``
    per group: memory stays bounded while the per-compute overhead of dask
    (graph optimisation) is paid once per group, not once per plane.
    """
    n_t, n_c, n_z = data.shape[:3]
    if isinstance(data, np.ndarray):
        for t in range(n_t):
            for c in range(n_c):
                for z in range(n_z):
                    yield np.ascontiguousarray(data[t, c, z], dtype=dtype)
        return
    import dask

    plane_bytes = int(np.prod(data.shape[3:], dtype=np.int64)) * np.dtype(data.dtype).itemsize
    group: list[tuple[int, int, int, int]] = []
    group_bytes = 0
    for t in range(n_t):
        for c in range(n_c):
            start = 0
            for size in data.chunks[2]:
                nbytes = size * plane_bytes
                if group and group_bytes + nbytes > PLANE_BATCH_BYTES:
                    yield from _computed_planes(dask, data, group, dtype)
                    group, group_bytes = [], 0
                group.append((t, c, start, start + size))
                group_bytes += nbytes
                start += size
    if group:
        yield from _computed_planes(dask, data, group, dtype)


def _computed_planes(dask: Any, data: Any, group: list[tuple[int, int, int, int]], dtype: np.dtype) -> Iterator[np.ndarray]:
    blocks = dask.compute(*[data[t, c, z0:z1] for t, c, z0, z1 in group])
    for block in blocks:
        for plane in np.asarray(block):
            yield np.ascontiguousarray(plane, dtype=dtype)


def _write(
    data: Any,
    dtype: np.dtype,
    path: Path,
    metadata: dict[str, Any],
    sizes: dict[str, float | None],
    compression: str | None,
    objective: Mapping[str, Any] | None = None,
) -> None:
    import tifffile

    shape = tuple(int(s) for s in data.shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    bigtiff = nbytes > BIGTIFF_THRESHOLD
    codec = None if compression in (None, "none", "None", "") else compression
    resolution = None
    if sizes["X"] is not None and sizes["Y"] is not None:
        # pixels per centimetre, as exact rationals; ImageJ 1.x shows it as µm
        resolution = (_rational(1e4 / sizes["X"]), _rational(1e4 / sizes["Y"]))
    log.debug("writing %s: shape %s %s, %s, bigtiff=%s", path, shape, dtype, codec, bigtiff)
    with atomic_output(path) as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=bigtiff, ome=True) as tif:
            tif.write(
                _planes(data, dtype),
                shape=shape,
                dtype=dtype,
                photometric="minisblack",
                compression=codec,
                resolution=resolution,
                resolutionunit="CENTIMETER" if resolution else None,
                metadata=metadata,
                software="cellseg_bridge",
            )
        if objective:
            with tifffile.TiffFile(tmp) as tif:
                xml = tif.pages.first.description
            tifffile.tiffcomment(tmp, _with_objective(xml, objective).encode("utf-8"))

"""TIFF pieces both reader backends share: structure and damage checks, axes, pixel sizes, tiled reads.

- :func:`_inspect_tiff` reads the structure with tifffile and turns the damage
  tifffile only logs (a broken page chain) into :class:`InputError`.
- :func:`_tiff_layout` gives scenes and axis letters of a TIFF without OME
  metadata: the caller's ``axes`` or the file's, unknown axes guessed and logged.
- :func:`_tiff_pixel_sizes`: pixel sizes of a TIFF without OME metadata, from
  ImageJ metadata or resolution tags with a real unit (the project's rules; see
  :mod:`cellseg_bridge.io.reader`).
- :func:`_tiled_tiff_array`: pixels through tifffile's zarr interface, one
  chunk per plane, planes cut into tiles of at most 4096². The bioio backend
  uses it for planes larger than that (bioio-tifffile and bioio-ome-tiff read a
  whole plane per chunk, which a whole-slide image does not fit); the
  aicsimageio backend for every TIFF (aicsimageio 4.14 reads TIFF pages through
  a tifffile 2023.2 code path that calls ``ndarray.newbyteorder``, which numpy 2
  removed, so big-endian TIFFs such as ImageJ's fail when computed).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np

from cellseg_bridge.errors import InputError
from cellseg_bridge.io._backends.common import _AXIS_LETTERS, ScaleDict, _Image, _resolve_scene

logger = logging.getLogger(__name__)

#: Largest Y/X extent of one dask chunk of a TIFF plane (whole-slide images).
_TIFF_CHUNK_YX = 4096


@dataclass
class _TiffSeriesInfo:
    shape: tuple[int, ...]
    dtype: np.dtype
    axes: str


@dataclass
class _TiffInfo:
    is_ome: bool
    is_imagej: bool
    series: list[_TiffSeriesInfo]


class _TiffLogCatcher(logging.Handler):
    """Collects tifffile's log messages that mean the file structure is broken."""

    _DAMAGE = ("invalid page offset", "corrupted file", "truncated")

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []
        self.thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:  # another file opened concurrently
            return
        message = record.getMessage()
        if any(key in message for key in self._DAMAGE):
            self.messages.append(message)


def _inspect_tiff(path: Path) -> _TiffInfo:
    """Read a TIFF's structure with tifffile; raise InputError if it is damaged.

    tifffile does not raise on a broken page chain: it logs and returns fewer
    pages (a truncated 5-plane stack would open as 1 plane). Its log messages
    about damage are therefore caught and turned into an error, and every page's
    pixel data must lie inside the file.
    """
    import tifffile

    catcher = _TiffLogCatcher()
    tiff_logger = logging.getLogger("tifffile")
    tiff_logger.addHandler(catcher)
    file_size = path.stat().st_size
    try:
        with tifffile.TiffFile(path) as tif:
            series = []
            for s in tif.series:
                for page in s.pages:
                    if page is None:
                        continue
                    ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts) if n]
                    if ends and max(ends) > file_size:
                        raise InputError("truncated TIFF: pixel data extend past the end of the file", path)
                    _check_declared_size(page, path)
                series.append(_TiffSeriesInfo(tuple(int(n) for n in s.shape), np.dtype(s.dtype), str(s.axes)))
            info = _TiffInfo(is_ome=bool(tif.is_ome), is_imagej=bool(tif.is_imagej), series=series)
    except tifffile.TiffFileError as exc:
        raise InputError(f"not a valid TIFF file ({exc})", path) from exc
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise InputError(f"damaged TIFF file ({type(exc).__name__}: {exc})", path) from exc
    finally:
        tiff_logger.removeHandler(catcher)
    if catcher.messages:
        raise InputError(f"damaged or truncated TIFF ({catcher.messages[0]})", path)
    if not info.series:
        raise InputError("TIFF file holds no image", path)
    return info


#: Largest decoded/encoded size ratio of a codec, where one exists (deflate: 1032:1;
#: LZW: 12-bit codes of at most 4094 bytes; PackBits: 128 bytes from 2).
_MAX_RATIO = {8: 1100, 32946: 1100, 5: 3000, 32773: 70}


def _check_declared_size(page: Any, path: Path) -> None:
    """Refuse a page whose header declares more pixels than its data can hold, or than memory allows.

    A 200-byte file can declare 100000 x 100000 pixels; tifffile then fails deep
    inside (an IndexError for missing tiles, a reshape error for strips) or asks
    for the whole buffer. Checked before any pixel is read: the number of strips or
    tiles the size needs, the bytes an uncompressed page needs, the bytes a
    deflate/LZW/PackBits page can decode to at most, and the size of one decoded
    strip or tile against the memory budget.
    """
    from cellseg_bridge.io.memory import check_allocation, format_bytes

    key = getattr(page, "keyframe", None) or page  # a TiffFrame's tags live on its key page
    shape = tuple(int(n) for n in key.shape)
    declared = int(np.prod(shape, dtype=np.float64)) * np.dtype(key.dtype).itemsize
    stored = int(sum(page.databytecounts))
    size = " x ".join(str(n) for n in shape)
    claim = f"the TIFF header declares {size} pixels ({format_bytes(declared)})"
    needed = int(np.prod(key.chunked, dtype=np.float64))
    if declared and len(page.dataoffsets) < needed:
        kind = "tiles" if key.is_tiled else "strips"
        raise InputError(
            f"damaged or crafted TIFF: {claim} in {needed} {kind}, but lists only {len(page.dataoffsets)}", path
        )
    compression = int(key.compression)
    bits = int(getattr(key, "bitspersample", 8) or 8)
    if compression == 1 and bits % 8 == 0:
        limit = declared
    elif compression in _MAX_RATIO:
        limit = declared // _MAX_RATIO[compression]
    else:
        limit = 0
    if stored < limit:
        raise InputError(
            f"damaged or crafted TIFF: {claim} but holds only {format_bytes(stored)} of pixel data", path
        )
    chunk = int(np.prod(key.chunks, dtype=np.float64)) * np.dtype(key.dtype).itemsize
    check_allocation(chunk, f"one {'tile' if key.is_tiled else 'strip'} of this TIFF", path)


class _TiffSeriesArray:
    """Array-like view of one TIFF series for ``dask.array.from_array``.

    It holds only the path and the series index and opens the file for each
    read (through tifffile's zarr store, zarr 2 or 3, which handles big-endian
    data under numpy 2), so it is cheap to pickle to Dask workers.
    """

    def __init__(self, path: Path, series: int, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path = str(path)
        self.series = series
        self.shape = shape
        self.dtype = dtype.newbyteorder("=")
        self.ndim = len(shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        import tifffile
        import zarr

        with tifffile.TiffFile(self.path) as tif, tif.aszarr(series=self.series, level=0) as store:
            return np.asarray(zarr.open(store, mode="r")[key], dtype=self.dtype)


def _guess_tiff_axes(axes: str, path: Path) -> str:
    """Replace tifffile's unknown axis letters by T/C/Z; log what was assumed."""
    known = [a if a in _AXIS_LETTERS else "?" for a in axes]
    unknown = [i for i, a in enumerate(known) if a == "?"]
    if not unknown:
        return axes
    free = [letter for letter in "ZCT" if letter not in known]
    if len(free) < len(unknown):
        raise InputError(f"cannot interpret TIFF axes {axes!r}; state them with axes=...", path)
    for i, letter in zip(reversed(unknown), free):
        known[i] = letter
    guessed = "".join(known)
    logger.warning(
        "%s: the file does not record what its axes are (tifffile: %r); assumed %r. "
        "Pass axes=... (e.g. 'TYX' for a time series) to state them.",
        path,
        axes,
        guessed,
    )
    return guessed


def _tiff_layout(path: Path, scene: int | str | None, axes: str | None) -> tuple[_TiffInfo, list[str], int, str]:
    """Scenes, scene index and axis letters of a TIFF without OME metadata.

    Returns
    -------
    tuple
        ``(info, scenes, index, dims)``: the file's structure, its scene names
        (``Image:<i>``, one per tifffile series), the index of ``scene`` and the
        letters of the series' axes (``axes`` if given, else the file's own
        with unknown axes guessed and the guess logged).
    """
    tiff = _inspect_tiff(path)
    scenes = [f"Image:{i}" for i in range(len(tiff.series))]
    index = _resolve_scene(scenes, scene, path)
    series = tiff.series[index]
    if axes is not None:
        if len(axes) != len(series.shape):
            raise InputError(
                f"axes {axes!r} has {len(axes)} letters but the image has {len(series.shape)} "
                f"dimensions (shape {series.shape})",
                path,
            )
        return tiff, scenes, index, axes
    return tiff, scenes, index, _guess_tiff_axes(series.axes, path)


def _is_large_plane(shape: tuple[int, ...], dims: str) -> bool:
    """Whether a plane exceeds one tile of :data:`_TIFF_CHUNK_YX` along Y or X."""
    return any(n > _TIFF_CHUNK_YX for letter, n in zip(dims, shape) if letter in "YX")


def _tiled_tiff_array(path: Path, index: int, series: _TiffSeriesInfo, dims: str) -> da.Array:
    """Series ``index`` as a dask array: one chunk per plane, planes cut into tiles of at most 4096²."""
    array = _TiffSeriesArray(path, index, series.shape, series.dtype)
    chunks = tuple(
        min(n, _TIFF_CHUNK_YX) if letter in "YX" else (n if letter == "S" else 1)
        for letter, n in zip(dims, series.shape)
    )
    stat = path.stat()
    name = "tiff-" + dask.base.tokenize(str(path), stat.st_mtime_ns, stat.st_size, index)
    return da.from_array(array, chunks=chunks, name=name, meta=np.empty((0,) * array.ndim, array.dtype))


def _check_ome_shape(meta: _Image, data: da.Array, dims: str, path: Path) -> None:
    """The tifffile series must agree with the OME reader's dims, else names/sizes could be misassigned."""
    ours = {letter: n for letter, n in zip(dims, data.shape)}
    theirs = {letter: n for letter, n in zip(meta.dims, meta.data.shape)}
    for letter in "TCZYXS":
        if ours.get(letter, 1) != theirs.get(letter, 1):
            raise InputError(
                f"OME metadata and TIFF pages disagree on axis {letter} "
                f"({theirs.get(letter, 1)} vs {ours.get(letter, 1)})",
                path,
            )


#: Micrometres per length unit, for ImageJ's ``unit=`` and TIFF resolution units.
_UM_PER_UNIT = {
    "µm": 1.0,
    "um": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "mm": 1e3,
    "millimeter": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "m": 1e6,
    "meter": 1e6,
    "inch": 25400.0,
    "in": 25400.0,
}
#: TIFF ResolutionUnit tag values: 2 inch, 3 centimetre (4 mm and 5 µm are tifffile extensions).
_TIFF_RESUNIT_UM = {2: 25400.0, 3: 1e4, 4: 1e3, 5: 1.0}


def _tiff_pixel_sizes(path: Path, series_index: int, is_imagej: bool) -> ScaleDict:
    """Return ``{"Z", "Y", "X"}`` in µm from ImageJ metadata or TIFF resolution tags."""
    import tifffile

    none: ScaleDict = {"Z": None, "Y": None, "X": None}
    with tifffile.TiffFile(path) as tif:
        page = tif.series[series_index].pages[0]
        tags = page.tags
        xres = tags.get("XResolution")
        yres = tags.get("YResolution")
        unit_tag = tags.get("ResolutionUnit")
        imagej = dict(tif.imagej_metadata or {}) if is_imagej else {}
    if is_imagej:
        unit = str(imagej.get("unit", "")).replace("\\u00B5", "µ").replace("\u03bc", "µ").strip().lower()
        factor = _UM_PER_UNIT.get(unit)
        if factor is None:
            if unit not in ("", "pixel", "pixels"):
                logger.warning("%s: unknown ImageJ length unit %r; pixel size left unknown", path, unit)
            return none
        z = imagej.get("spacing")
        return {
            "Z": None if z is None else float(z) * factor,
            "Y": _size_from_resolution(yres, factor),
            "X": _size_from_resolution(xres, factor),
        }
    unit_value = int(unit_tag.value) if unit_tag is not None else 1
    factor = _TIFF_RESUNIT_UM.get(unit_value)
    if factor is None:  # 1 = no absolute unit: the resolution is an aspect ratio only
        return none
    if unit_value == 2 and _whole_dpi(xres) and _whole_dpi(yres):
        logger.info("%s: resolution is a whole number of dots per inch (display setting); pixel size unknown", path)
        return none
    return {"Z": None, "Y": _size_from_resolution(yres, factor), "X": _size_from_resolution(xres, factor)}


def _imagej_channel_names(path: Path, dims: str, shape: tuple[int, ...], is_imagej: bool) -> list[str] | None:
    """Channel names of an ImageJ TIFF from its slice labels ("Labels"), as Fiji shows them.

    ImageJ orders the planes channel fastest, so channel ``c`` owns labels ``c, c + C, c + 2C, ...``.
    A channel is named when its planes carry one label (first line; empty labels ignored), e.g.
    a label set on each channel of a composite. None (placeholder names) when the file is not an
    ImageJ TIFF or has no labels, when a channel's planes carry different labels (per-slice
    labels such as file names of a stack), or when names are missing or repeated.
    """
    if not is_imagej:
        return None
    import tifffile

    with tifffile.TiffFile(path) as tif:
        labels = (tif.imagej_metadata or {}).get("Labels")
    n_channels = shape[dims.index("C")] if "C" in dims else 1
    if not isinstance(labels, (list, tuple)) or len(labels) < n_channels:
        return None
    names = []
    for c in range(n_channels):
        found = {str(label).split("\n")[0].strip() for label in labels[c::n_channels]} - {""}
        if len(found) != 1:
            return None
        names.append(found.pop())
    return names if len(set(names)) == len(names) else None


def _size_from_resolution(tag: Any, um_per_unit: float) -> float | None:
    """Pixel size in µm from a TIFF rational resolution (pixels per unit)."""
    if tag is None:
        return None
    num, den = tag.value
    if not num or not den:
        return None
    return um_per_unit * den / num


def _whole_dpi(tag: Any) -> bool:
    if tag is None:
        return True
    num, den = tag.value
    return bool(den) and num % den == 0

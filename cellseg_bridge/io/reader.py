"""Open microscope images as lazy ``xarray.DataArray`` objects with dims ``T C Z Y X``.

One function, :func:`open_image`, reads every format the project supports and
returns the same thing: a dask-backed DataArray with dims exactly
``("T", "C", "Z", "Y", "X")``, channel names as the ``C`` coordinate, and
these ``attrs``:

``physical_pixel_sizes``
    ``{"Z": float | None, "Y": ..., "X": ...}`` in µm. ``None`` means the file
    does not record the size; no placeholder such as 1.0 is ever made up.
``channel_names``
    list of plain ``str`` (equal to the ``C`` coordinate).
``scenes``
    names of all scenes (series, positions) in the file; ``scene`` is the one opened.
``source``
    the file path as a string.
``reader``
    which code path read the pixels (e.g. ``"CziReader"``, ``"tifffile"``,
    ``"readlif-planes"``), for bug reports.

Routes, chosen by file extension (never by trying readers in turn):

- CZI, ND2, OME-TIFF, PNG/JPEG and ordinary LIF images: aicsimageio 4.14
  (``AICSImage(path, reader=...)``, then ``xarray_dask_data``). CZIs are opened
  with ``chunk_dims`` naming libCZI's sample axis ``A``: with the default, the
  lazily read colour samples of an RGB CZI all hold sample 0 (aicsimageio 4.14).
- TIFF pixels (plain, ImageJ and OME): tifffile's zarr interface, one chunk per
  plane. aicsimageio 4.14 reads TIFF pages through a tifffile 2023.2 code path
  that calls ``ndarray.newbyteorder``, which numpy 2 removed, so every
  big-endian TIFF (ImageJ writes big-endian) fails when computed. Metadata of
  OME-TIFFs still comes from aicsimageio's OME reader.
- LIF images aicsimageio cannot read (xz scans: "Atypical imaging experiment")
  or reads only partly (wavelength sweeps, of which it returns the first
  wavelength): per-plane reads at the byte offsets given by the LIF's own XML
  (readlif opens the file and locates the pixel block). An xz scan becomes a
  2-D image with the scanned depth as Y and Z = 1 (its Y pixel size is the
  depth step); xz planes stepped along y form an ordinary Z, Y, X volume. Each
  step of a wavelength sweep is a channel named ``<LUT name>_em<nm>nm``
  (emission) or ``_ex<nm>nm`` (excitation), e.g. ``Green_em550nm``.

Rules applied to every route:

- Colour samples (axis ``S`` of RGB images) become channels: channel ``c`` with
  ``n`` samples turns into ``n`` channels in the order c0s0, c0s1, ...,
  c1s0, .... Their names are ``"<name>_R"``, ``"<name>_G"``, ``"<name>_B"``
  (``_A`` for alpha; ``_S<i>`` for other sample counts), except that a file with
  a single unnamed channel (aicsimageio's placeholder ``Channel:0:0``) gets
  ``"Red"``, ``"Green"``, ``"Blue"`` (``"Alpha"``). CZI colour pixels are
  stored as B, G, R (libCZI's ``Bgr24``/``Bgr48``); they are reordered to R, G, B.
- ``Z`` pixel size is ``None`` when the image has a single Z plane: there is no
  Z spacing to measure, and the values files carry there are placeholders (ND2
  files record 1.0 and flag it as uncalibrated; ImageJ copies the pixel width).
- Plain TIFF pixel sizes are taken only from a real resolution unit: unit
  "none" (tifffile's default, resolution 1/1) and whole-number dots per inch
  (72, 96, 300 ... written by image editors) are display settings, not
  calibrations, and give ``None``.
- Duplicate channel names get ``_2``, ``_3`` ... appended (xarray selection
  needs unique coordinates).

Axis order is never guessed silently. For a TIFF without OME metadata the
caller may state the stored axes (``axes="ZYX"``, ``"TYX"``, ``"YXS"``,
``"TCZYX"`` ...; letters from ``TCZYXS``, one per array dimension). When the
file's own axes are unknown (tifffile reports ``Q`` or ``I``) and the caller
states none, unknown axes become Z, then C, then T (nearest to Y first, as
aicsimageio guesses) and a WARNING says so. Formats that record their axes
(CZI, ND2, LIF, OME-TIFF, PNG/JPEG) refuse an ``axes`` argument.

Errors: a missing file, a folder, an unsupported extension, a corrupt or
truncated file, a bad scene or a bad ``axes`` string raise
:class:`~cellseg_bridge.errors.InputError` naming the file and the reason. The
pixels are read lazily, so damage inside pixel data that metadata checks cannot
see (a truncated CZI, for instance) surfaces only when the data are computed.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import re
import threading
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from cellseg_bridge.errors import DependencyError, InputError

logger = logging.getLogger(__name__)

#: Dims of every DataArray returned by :func:`open_image`.
DIMS: tuple[str, ...] = ("T", "C", "Z", "Y", "X")

#: File name endings we read, and the format each one names.
SUPPORTED_SUFFIXES: dict[str, str] = {
    ".czi": "CZI",
    ".nd2": "ND2",
    ".lif": "LIF",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
}

_AXIS_LETTERS = "TCZYXS"
_PLACEHOLDER_CHANNEL = re.compile(r"^Channel:\d+:\d+$")
_RGBA_SUFFIXES = ("R", "G", "B", "A")
_RGBA_NAMES = ("Red", "Green", "Blue", "Alpha")
#: Largest Y/X extent of one dask chunk of a TIFF plane (whole-slide images).
_TIFF_CHUNK_YX = 4096

ScaleDict = dict[str, "float | None"]


# ----------------------------------------------------------------------------- public API


def list_scenes(path: str | Path) -> list[str]:
    """Return the names of all scenes (series, positions) in an image file.

    Parameters
    ----------
    path : str or Path
        Image file (CZI, ND2, LIF, TIFF/OME-TIFF, PNG, JPEG).

    Returns
    -------
    list of str
        Scene names in file order; a file without scenes has one (``"Image:0"``).

    Raises
    ------
    InputError
        The file is missing, not a supported format, or cannot be parsed.
    """
    path, fmt = _check_path(path)
    if fmt == "LIF":
        return [str(image["name"]) for image in _open_readlif(path).image_list]
    if fmt == "TIFF":
        tiff = _inspect_tiff(path)
        if tiff.is_ome:
            return _aics_scenes(_aics_image(path, fmt, ome=True), path, "OME-TIFF")
        return [f"Image:{i}" for i in range(len(tiff.series))]
    return _aics_scenes(_aics_image(path, fmt), path, fmt)


def open_image(path: str | Path, scene: int | str | None = None, axes: str | None = None) -> xr.DataArray:
    """Open one scene of an image file as a lazy TCZYX DataArray.

    Parameters
    ----------
    path : str or Path
        Image file (CZI, ND2, LIF, TIFF/OME-TIFF, PNG, JPEG).
    scene : int or str, optional
        Scene index (0-based) or scene name; default the first scene.
    axes : str, optional
        Axis order of the stored array of a TIFF without OME metadata, e.g.
        ``"ZYX"``, ``"TYX"``, ``"CYX"``, ``"YXS"``, ``"TCZYX"`` (letters from
        ``TCZYXS``, one per dimension of the stored array). Default: the file's
        metadata, with unknown axes guessed and the guess logged.

    Returns
    -------
    xarray.DataArray
        Dims ``("T", "C", "Z", "Y", "X")``, dask-backed (nothing is computed),
        dtype as stored, ``C`` coordinate = channel names, and ``attrs``
        ``physical_pixel_sizes``, ``channel_names``, ``scenes``, ``scene``,
        ``source``, ``reader`` (see the module docstring).

    Raises
    ------
    InputError
        Missing file, folder, unsupported extension, corrupt or truncated file,
        unknown scene, or an ``axes`` string that does not fit the file.
    DependencyError
        The vendor reader package for this format is not installed.
    """
    path, fmt = _check_path(path)
    axes = _validate_axes(axes, path)
    if fmt == "TIFF":
        image = _open_tiff(path, scene, axes)
    elif fmt == "LIF":
        _refuse_axes(axes, fmt, path)
        image = _open_lif(path, scene)
    else:
        _refuse_axes(axes, fmt, path)
        image = _open_aics(path, fmt, scene)
    return _to_dataarray(image, path)


# ----------------------------------------------------------------------------- shared pieces


@dataclass
class _Image:
    """What a route hands to :func:`_to_dataarray`."""

    data: da.Array
    #: Letters of ``data``'s axes, a subset of ``TCZYXS`` with Y and X.
    dims: str
    #: One name per channel before samples are merged (None: placeholders).
    channel_names: list[str] | None
    sizes: ScaleDict
    scenes: list[str]
    scene_index: int
    reader: str
    #: Reverse the S axis (CZI stores colour as B, G, R).
    samples_bgr: bool = False


def _check_path(path: str | Path) -> tuple[Path, str]:
    """Return ``(path, format)`` or raise InputError for a missing/unsupported file."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    if path.is_dir():
        raise InputError("is a folder, not an image file", path)
    fmt = SUPPORTED_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise InputError(f"unsupported file type {path.suffix!r} (supported: {supported})", path)
    try:
        with path.open("rb") as handle:
            head = handle.read(1)
    except OSError as exc:
        raise InputError(f"cannot be opened: {exc.strerror or exc}", path) from exc
    if not head:
        raise InputError("file is empty", path)
    return path, fmt


def _resolve_scene(scenes: Sequence[str], scene: int | str | None, path: Path) -> int:
    """Return the index of ``scene`` (None: 0) in ``scenes``, or raise InputError."""
    listing = ", ".join(f"{i}: {name!r}" for i, name in enumerate(scenes))
    if scene is None:
        return 0
    if isinstance(scene, (int, np.integer)) and not isinstance(scene, bool):
        if 0 <= int(scene) < len(scenes):
            return int(scene)
        raise InputError(f"scene index {scene} out of range; scenes: {listing}", path)
    if isinstance(scene, str):
        if scene in scenes:
            return list(scenes).index(scene)
        raise InputError(f"no scene named {scene!r}; scenes: {listing}", path)
    raise InputError(f"scene must be an index or a name, not {type(scene).__name__}", path)


def _validate_axes(axes: str | None, path: Path) -> str | None:
    """Normalise an ``axes`` string (upper case) and check its letters."""
    if axes is None:
        return None
    if not isinstance(axes, str) or not axes:
        raise InputError(f"axes must be a non-empty string such as 'ZYX', not {axes!r}", path)
    letters = axes.upper()
    bad = sorted(set(letters) - set(_AXIS_LETTERS))
    if bad:
        raise InputError(f"axes {axes!r} has letters {''.join(bad)!r}; use only {_AXIS_LETTERS}", path)
    if len(set(letters)) != len(letters):
        raise InputError(f"axes {axes!r} repeats a letter", path)
    if "Y" not in letters or "X" not in letters:
        raise InputError(f"axes {axes!r} must contain Y and X", path)
    return letters


def _refuse_axes(axes: str | None, fmt: str, path: Path) -> None:
    if axes is not None:
        raise InputError(
            f"axes={axes!r} was given, but {fmt} files record their own axis order; "
            "axes can only be stated for TIFF files without OME metadata",
            path,
        )


def _clean_size(value: Any) -> float | None:
    """Return a positive finite float, else None."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _unique(names: Sequence[str]) -> list[str]:
    """Append ``_2``, ``_3`` ... to repeated names."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def _sample_channel_names(names: list[str], n_samples: int) -> list[str]:
    """Expand channel names over colour samples (see the module docstring)."""
    if n_samples == 1:
        return names
    rgba = n_samples in (3, 4)
    if len(names) == 1 and _PLACEHOLDER_CHANNEL.match(names[0]) and rgba:
        return list(_RGBA_NAMES[:n_samples])
    suffixes = _RGBA_SUFFIXES[:n_samples] if rgba else tuple(f"S{i}" for i in range(n_samples))
    return [f"{name}_{suffix}" for name in names for suffix in suffixes]


def _to_dataarray(image: _Image, path: Path) -> xr.DataArray:
    """Arrange ``image.data`` as TCZYX (samples merged into C) and attach metadata."""
    data, dims = image.data, image.dims
    for letter in "TCZYX":
        if letter not in dims:
            data = data[None]
            dims = letter + dims
    order = [dims.index(letter) for letter in "TCSZYX" if letter in dims]
    data = data.transpose(order)
    n_samples = data.shape[2] if "S" in dims else 1
    if "S" in dims:
        if image.samples_bgr:
            data = data[:, :, ::-1]
        t, c, s, z, y, x = data.shape
        data = data.reshape((t, c * s, z, y, x))
    n_channels = data.shape[1] // n_samples
    names = image.channel_names
    if names is None or len(names) != n_channels:
        if names is not None:
            logger.warning("%s: %d channel names for %d channels; using placeholders", path, len(names), n_channels)
        names = [f"Channel:0:{i}" for i in range(n_channels)]
    names = _unique(_sample_channel_names([str(n) for n in names], n_samples))
    sizes = {axis: _clean_size(image.sizes.get(axis)) for axis in ("Z", "Y", "X")}
    if data.shape[2] == 1:
        sizes["Z"] = None
    attrs = {
        "physical_pixel_sizes": sizes,
        "channel_names": names,
        "scenes": [str(s) for s in image.scenes],
        "scene": str(image.scenes[image.scene_index]),
        "source": str(path),
        "reader": image.reader,
    }
    return xr.DataArray(data, dims=DIMS, coords={"C": names}, attrs=attrs)


# ----------------------------------------------------------------------------- aicsimageio route


def _reader_class(fmt: str, ome: bool = False) -> type:
    """Return the aicsimageio reader class for a format (import errors -> DependencyError)."""
    try:
        if fmt == "CZI":
            from aicsimageio.readers.czi_reader import CziReader as reader
        elif fmt == "ND2":
            from aicsimageio.readers.nd2_reader import ND2Reader as reader
        elif fmt == "LIF":
            from aicsimageio.readers.lif_reader import LifReader as reader
        elif fmt == "TIFF" and ome:
            from aicsimageio.readers.ome_tiff_reader import OmeTiffReader as reader
        else:
            from aicsimageio.readers.default_reader import DefaultReader as reader
    except ImportError as exc:
        package = {"CZI": "aicspylibczi", "ND2": "nd2", "LIF": "readlif"}.get(fmt, "aicsimageio")
        raise DependencyError(f"reading {fmt} files needs the package {package!r}: {exc}") from exc
    return reader


@contextlib.contextmanager
def _third_party_boundary(path: Path, what: str) -> Iterator[None]:
    """Turn any exception from a third-party reader into InputError.

    aicsimageio and the vendor libraries below it raise whatever their parsers
    hit on a damaged file (RuntimeError from libCZI, ValueError from nd2,
    KeyError/struct.error from XML and binary parsing, ...), so there is no
    closed list of types to catch. This is the single place where ``Exception``
    is caught; the original is chained (``from exc``) for debugging, and our own
    errors pass through unchanged.
    """
    try:
        with warnings.catch_warnings():
            # aicsimageio/xarray deprecation chatter is not actionable for users.
            warnings.simplefilter("ignore", category=FutureWarning)
            warnings.simplefilter("ignore", category=DeprecationWarning)
            yield
    except (InputError, DependencyError):
        raise
    except Exception as exc:  # noqa: BLE001 - see docstring
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"cannot be read as {what}: damaged, or not a {what} file ({type(exc).__name__}: {reason})", path
        ) from exc


def _aics_image(path: Path, fmt: str, ome: bool = False):
    """Return ``AICSImage(path, reader=...)`` with a fixed reader, errors as InputError."""
    reader = _reader_class(fmt, ome)
    from aicsimageio import AICSImage

    # CziReader names its colour-sample axis "A" internally but compares it with
    # chunk_dims using "S", so with the default chunk dims every lazily read
    # sample of an RGB CZI holds sample 0. Naming "A" keeps the samples in one
    # chunk and reads them correctly (checked against aicspylibczi in the tests).
    kwargs = {"chunk_dims": ["Z", "Y", "X", "A"]} if fmt == "CZI" else {}
    what = "OME-TIFF" if ome else fmt
    with _third_party_boundary(path, what):
        return AICSImage(path, reader=reader, **kwargs)


def _aics_scenes(img: Any, path: Path, what: str) -> list[str]:
    with _third_party_boundary(path, what):
        return [str(s) for s in img.scenes]


def _open_aics(path: Path, fmt: str, scene: int | str | None, ome: bool = False) -> _Image:
    """Open CZI, ND2, PNG/JPEG, ordinary LIF (and OME-TIFF metadata) with aicsimageio."""
    img = _aics_image(path, fmt, ome)
    what = "OME-TIFF" if ome else fmt
    scenes = _aics_scenes(img, path, what)
    index = _resolve_scene(scenes, scene, path)
    with _third_party_boundary(path, what):
        img.set_scene(index)
        xdata = img.xarray_dask_data
        sizes = img.physical_pixel_sizes
        names = [str(n) for n in img.channel_names]
        reader_name = type(img.reader).__name__
    dims = "".join(str(d) for d in xdata.dims)
    bgr = fmt == "CZI" and "S" in dims and _czi_is_bgr(path)
    return _Image(
        data=xdata.data,
        dims=dims,
        channel_names=names,
        sizes={"Z": sizes.Z, "Y": sizes.Y, "X": sizes.X},
        scenes=scenes,
        scene_index=index,
        reader=reader_name,
        samples_bgr=bgr,
    )


def _czi_is_bgr(path: Path) -> bool:
    """Whether a CZI stores colour as B, G, R (libCZI pixel types ``Bgr24``, ``Bgr48``, ...)."""
    from aicspylibczi import CziFile

    with _third_party_boundary(path, "CZI"):
        pixel_type = str(CziFile(path).pixel_type)
    return pixel_type.lower().startswith("bgr")


# ----------------------------------------------------------------------------- TIFF route


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


class _TiffSeriesArray:
    """Array-like view of one TIFF series for ``dask.array.from_array``.

    It holds only the path and the series index and opens the file for each
    read (through tifffile's zarr store, which handles big-endian data under
    numpy 2), so it is cheap to pickle to Dask workers.
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


def _open_tiff(path: Path, scene: int | str | None, axes: str | None) -> _Image:
    """Open a TIFF: pixels through tifffile, metadata from OME (aicsimageio) or TIFF tags."""
    tiff = _inspect_tiff(path)
    if tiff.is_ome:
        _refuse_axes(axes, "OME-TIFF", path)
        meta = _open_aics(path, "TIFF", scene, ome=True)
        index = meta.scene_index
        scenes, names, sizes = meta.scenes, meta.channel_names, meta.sizes
    else:
        scenes = [f"Image:{i}" for i in range(len(tiff.series))]
        index = _resolve_scene(scenes, scene, path)
        names, sizes = None, {}
    series = tiff.series[index]
    if axes is not None:
        if len(axes) != len(series.shape):
            raise InputError(
                f"axes {axes!r} has {len(axes)} letters but the image has {len(series.shape)} "
                f"dimensions (shape {series.shape})",
                path,
            )
        dims = axes
    else:
        dims = _guess_tiff_axes(series.axes, path)
    if not tiff.is_ome:
        sizes = _tiff_pixel_sizes(path, index, tiff.is_imagej)
    array = _TiffSeriesArray(path, index, series.shape, series.dtype)
    chunks = tuple(
        min(n, _TIFF_CHUNK_YX) if letter in "YX" else (n if letter == "S" else 1)
        for letter, n in zip(dims, series.shape)
    )
    stat = path.stat()
    name = "tiff-" + dask.base.tokenize(str(path), stat.st_mtime_ns, stat.st_size, index)
    data = da.from_array(array, chunks=chunks, name=name, meta=np.empty((0,) * array.ndim, array.dtype))
    if tiff.is_ome:
        _check_ome_shape(meta, data, dims, path)
    return _Image(data, dims, names, sizes, scenes, index, "tifffile")


def _check_ome_shape(meta: _Image, data: da.Array, dims: str, path: Path) -> None:
    """The tifffile series must agree with aicsimageio's OME dims, else names/sizes could be misassigned."""
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


# ----------------------------------------------------------------------------- LIF route

#: LIF DimID -> our axis letter; 5 and 9 (emission / excitation wavelength
#: sweeps) become channels, 10 (mosaic tile) is read only by aicsimageio.
_LIF_AXES = {1: "X", 2: "Y", 3: "Z", 4: "T", 5: "em", 9: "ex"}
_LIF_ORDINARY = {1, 2, 3, 4, 10}


def _open_readlif(path: Path):
    try:
        from readlif.reader import LifFile
    except ImportError as exc:
        raise DependencyError(f"reading LIF files needs the package 'readlif': {exc}") from exc
    with _third_party_boundary(path, "LIF"):
        return LifFile(str(path))


def _open_lif(path: Path, scene: int | str | None) -> _Image:
    """Open a LIF image: aicsimageio for ordinary XY images, per-plane reads otherwise.

    Ordinary means stored as XY planes (the first two dimensions are x and y) with
    no dimensions other than z, t and mosaic tiles; anything else (xz scans,
    wavelength sweeps) aicsimageio either refuses or reads only in part.
    """
    lif = _open_readlif(path)
    scenes = [str(image["name"]) for image in lif.image_list]
    index = _resolve_scene(scenes, scene, path)
    with _third_party_boundary(path, "LIF"):
        image = lif.get_image(index)
    offset, nbytes = (int(v) for v in image.offsets[:2])
    if nbytes == 0:
        raise InputError(f"LIF image {scenes[index]!r} holds no pixel data", path)
    if offset + nbytes > path.stat().st_size:
        raise InputError(f"truncated LIF: image {scenes[index]!r} extends past the end of the file", path)
    dims = dict(image.dims_n)
    if set(dims) <= _LIF_ORDINARY and tuple(image.display_dims) == (1, 2):
        return _open_aics(path, "LIF", index)
    logger.info("%s: LIF image %r has dims %s; reading planes directly", path, scenes[index], sorted(dims))
    return _open_lif_planes(path, lif, index, scenes, offset)


@dataclass
class _LifDim:
    dim_id: int
    count: int
    bytes_inc: int
    origin: float
    length: float
    unit: str


def _lif_element(lif: Any, index: int, path: Path) -> ET.Element:
    """The XML ``Element`` of readlif's image ``index`` (same depth-first order, checked)."""
    elements = [el for el in lif.xml_root.iter("Element") if el.find("./Data/Image") is not None]
    names = [str(image["name"]).split("/")[-1] for image in lif.image_list]
    if len(elements) != len(names) or any(el.get("Name") != n for el, n in zip(elements, names)):
        raise InputError("unsupported LIF layout (image list and XML do not match)", path)
    return elements[index]


def _open_lif_planes(path: Path, lif: Any, index: int, scenes: list[str], offset: int) -> _Image:
    """Read a LIF image that aicsimageio cannot (xz scans, wavelength sweeps), plane by plane.

    Byte positions come from the image's XML: each dimension and each channel
    has a ``BytesInc``. An xz scan (no Y dimension) is returned as a 2-D image
    with the scanned depth as Y and Z = 1, so it segments like any 2-D image and
    its Y pixel size is the (real) depth step. An xz scan stepped along y
    (dims x, z, y) is an ordinary volume and keeps Z, Y, X.
    """
    element = _lif_element(lif, index, path)
    description = element.find("./Data/Image/ImageDescription")
    lif_dims = [
        _LifDim(
            int(d.get("DimID", 0)),
            int(d.get("NumberOfElements", 1)),
            int(d.get("BytesInc", 0)),
            float(d.get("Origin", 0) or 0),
            float(d.get("Length", 0) or 0),
            str(d.get("Unit", "")),
        )
        for d in description.findall("./Dimensions/DimensionDescription")
    ]
    channels = description.findall("./Channels/ChannelDescription")
    unknown = [d.dim_id for d in lif_dims if d.dim_id not in _LIF_AXES and d.count > 1]
    if unknown or not channels:
        raise InputError(f"unsupported LIF image {scenes[index]!r} (dims {[d.dim_id for d in lif_dims]})", path)
    lif_dims = [d for d in lif_dims if d.dim_id in _LIF_AXES]
    bits = {int(c.get("Resolution", 8)) for c in channels}
    if len(bits) != 1 or max(bits) > 16:
        raise InputError(f"unsupported LIF bit depths {sorted(bits)}", path)
    dtype = np.dtype(np.uint8) if max(bits) <= 8 else np.dtype("<u2")

    letters = {d.dim_id: _LIF_AXES[d.dim_id] for d in lif_dims}
    if 2 not in letters and 3 in letters:  # xz scan: depth is the image's vertical axis
        letters[3] = "Y"
    by_letter = {letters[d.dim_id]: d for d in lif_dims}
    if "X" not in by_letter or "Y" not in by_letter:
        raise InputError(f"unsupported LIF image {scenes[index]!r}: no 2-D plane", path)
    plane_y, plane_x = by_letter["Y"], by_letter["X"]
    outer = [d for d in lif_dims if d not in (plane_y, plane_x)]

    planes = []
    for c_index, channel in enumerate(channels):
        for position in itertools.product(*(range(d.count) for d in outer)):
            start = offset + int(channel.get("BytesInc", 0)) + sum(i * d.bytes_inc for i, d in zip(position, outer))
            planes.append(
                da.from_delayed(
                    dask.delayed(_read_strided_plane)(
                        str(path), start, (plane_y.count, plane_x.count), (plane_y.bytes_inc, plane_x.bytes_inc), dtype
                    ),
                    shape=(plane_y.count, plane_x.count),
                    dtype=dtype,
                )
            )
    shape = (len(channels), *(d.count for d in outer), plane_y.count, plane_x.count)
    data = da.stack(planes).reshape(shape)
    stored = ["c", *(letters[d.dim_id] for d in outer), "Y", "X"]

    # Channels x emission x excitation wavelengths become C, in that order.
    spectral = [axis for axis in ("c", "em", "ex") if axis in stored]
    order = [stored.index(a) for a in ("T", *spectral, "Z", "Y", "X") if a in stored]
    data = data.transpose(order)
    kept = [stored[i] for i in order]
    n_c = int(np.prod([data.shape[kept.index(a)] for a in spectral]))
    first = kept.index(spectral[0])
    data = data.reshape((*data.shape[:first], n_c, *data.shape[first + len(spectral) :]))
    dims = "".join(a for a in kept if a not in spectral[1:]).replace("c", "C")

    luts = [str(c.get("LUTName") or f"Channel:0:{i}") for i, c in enumerate(channels)]
    names = luts
    for axis in ("em", "ex"):
        if axis in by_letter:
            wavelengths = _lif_positions_nm(by_letter[axis])
            names = [f"{name}_{axis}{wl:.0f}nm" for name in names for wl in wavelengths]
    sizes = {letter: _lif_step_um(by_letter[letter]) for letter in ("Z", "Y", "X") if letter in by_letter}
    return _Image(data, dims, names, sizes, scenes, index, "readlif-planes")


def _lif_step_um(dim: _LifDim) -> float | None:
    """Pixel size in µm: ``Length`` spans the centres of the first and last pixel."""
    if dim.unit != "m" or dim.count < 2 or dim.length <= 0:
        return None
    return dim.length / (dim.count - 1) * 1e6


def _lif_positions_nm(dim: _LifDim) -> list[float]:
    """Wavelength of each step of a LIF wavelength sweep, in nm."""
    step = dim.length / (dim.count - 1) if dim.count > 1 else 0.0
    return [(dim.origin + i * step) * 1e9 for i in range(dim.count)]


def _read_strided_plane(
    path: str, start: int, shape: tuple[int, int], strides: tuple[int, int], dtype: np.dtype
) -> np.ndarray:
    """Read a 2-D plane of ``shape`` at byte ``start`` with byte ``strides`` (rows, columns)."""
    span = (shape[0] - 1) * strides[0] + (shape[1] - 1) * strides[1] + dtype.itemsize
    with open(path, "rb") as handle:
        handle.seek(start)
        buffer = handle.read(span)
    if len(buffer) < span:
        raise InputError(f"truncated LIF: plane at byte {start} is incomplete", path)
    plane = np.ndarray(shape, dtype=dtype, buffer=buffer, strides=strides)
    return plane.astype(dtype.newbyteorder("="), copy=True)

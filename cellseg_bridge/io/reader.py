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
    which code path read the pixels (e.g. ``"bioio-czi"``, ``"bioio-tifffile"``,
    ``"readlif-planes"``, or an aicsimageio reader class such as ``"CziReader"``),
    for bug reports.

Backends (``reader=``, ``--reader``; private package
:mod:`cellseg_bridge.io._backends`): ``"bioio"`` (default; bioio and its plugins
bioio-czi, -nd2, -lif, -ome-tiff, -tifffile, -imageio, -ome-zarr) and
``"aicsimageio"`` (aicsimageio 4.14, the optional extra
``cellseg-bridge[aicsimageio]``). Without ``reader``, ``$CELLSEG_READER`` names
it, else bioio is used and aicsimageio, if installed, is tried for a file bioio
cannot read. Both return the same DataArray and attrs (except ``reader``) for
the same file. Within a backend the reader is chosen by file type, never by
trying readers in turn; what each backend still works around is documented in
its module (CZI colour samples, TIFF tiles, LIF xz scans and wavelength sweeps).

LIF images neither backend reads whole (xz scans, wavelength sweeps) are read
plane by plane at the byte offsets given by the LIF's own XML. An xz scan
becomes a 2-D image with the scanned depth as Y and Z = 1 (its Y pixel size is
the depth step); xz planes stepped along y form an ordinary Z, Y, X volume. Each
step of a wavelength sweep is a channel named ``<LUT name>_em<nm>nm``
(emission) or ``_ex<nm>nm`` (excitation), e.g. ``Green_em550nm``.

OME-Zarr (NGFF) folders, such as the ``<base>.ome.zarr`` written by ``cellseg segment
--format ome-zarr`` or ``--chunked``, open lazily like files (resolution level 0), and so do
image groups inside them (``<base>.ome.zarr/labels/cells``: its labels).

Rules applied to every backend:

- Colour samples (axis ``S`` of RGB images) become channels: channel ``c`` with
  ``n`` samples turns into ``n`` channels in the order c0s0, c0s1, ...,
  c1s0, .... Their names are ``"<name>_R"``, ``"<name>_G"``, ``"<name>_B"``
  (``_A`` for alpha; ``_S<i>`` for other sample counts), except that a file with
  a single unnamed channel (the placeholder ``Channel:0:0``) gets
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

import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import xarray as xr

from cellseg_bridge.errors import InputError
from cellseg_bridge.io import _backends
from cellseg_bridge.io._backends.common import _AXIS_LETTERS, _Image, _refuse_axes
from cellseg_bridge.io.paths import missing_reason

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
    ".zarr": "OME-Zarr",
}

#: The reader backends ``open_image(reader=...)`` accepts (``"bioio"`` is the default).
READERS: tuple[str, ...] = _backends.BACKENDS

_PLACEHOLDER_CHANNEL = re.compile(r"^Channel:\d+:\d+$")
_RGBA_SUFFIXES = ("R", "G", "B", "A")
_RGBA_NAMES = ("Red", "Green", "Blue", "Alpha")


# ----------------------------------------------------------------------------- public API


def list_scenes(path: str | Path, reader: str | None = None) -> list[str]:
    """Return the names of all scenes (series, positions) in an image file.

    Parameters
    ----------
    path : str or Path
        Image file (CZI, ND2, LIF, TIFF/OME-TIFF, PNG, JPEG) or OME-Zarr folder.
    reader : {"bioio", "aicsimageio"}, optional
        Backend; default ``$CELLSEG_READER``, else bioio (see the module docstring).

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
    return _backends.scene_names(path, fmt, reader)


def open_image(
    path: str | Path, scene: int | str | None = None, axes: str | None = None, reader: str | None = None
) -> xr.DataArray:
    """Open one scene of an image file as a lazy TCZYX DataArray.

    Parameters
    ----------
    path : str or Path
        Image file (CZI, ND2, LIF, TIFF/OME-TIFF, PNG, JPEG) or OME-Zarr folder.
    scene : int or str, optional
        Scene index (0-based) or scene name; default the first scene.
    axes : str, optional
        Axis order of the stored array of a TIFF without OME metadata, e.g.
        ``"ZYX"``, ``"TYX"``, ``"CYX"``, ``"YXS"``, ``"TCZYX"`` (letters from
        ``TCZYXS``, one per dimension of the stored array). Default: the file's
        metadata, with unknown axes guessed and the guess logged.
    reader : {"bioio", "aicsimageio"}, optional
        Backend; default ``$CELLSEG_READER``, else bioio with aicsimageio (if
        installed) as the fallback for files bioio cannot read.

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
        unknown scene, an ``axes`` string that does not fit the file, or an
        unknown ``reader``.
    DependencyError
        The reader package for this format (or backend) is not installed.
    """
    path, fmt = _check_path(path)
    axes = _validate_axes(axes, path)
    if fmt != "TIFF":
        _refuse_axes(axes, fmt, path)
    image = _backends.open_scene(path, fmt, scene, axes, reader)
    return _to_dataarray(image, path)


# ----------------------------------------------------------------------------- input checks and assembly


def _inside_zarr(path: Path) -> bool:
    """Whether folder ``path`` is a zarr group (format 2 or 3) below a ``*.zarr`` folder."""
    is_group = (path / ".zattrs").is_file() or (path / "zarr.json").is_file()
    return is_group and any(p.suffix.lower() == ".zarr" for p in path.parents)


def _check_path(path: str | Path) -> tuple[Path, str]:
    """Return ``(path, format)`` or raise InputError for a missing/unsupported file."""
    path = Path(path)
    if not path.exists():
        raise InputError(missing_reason(path), path)
    fmt = SUPPORTED_SUFFIXES.get(path.suffix.lower())
    if fmt is None and path.is_dir() and _inside_zarr(path):
        fmt = "OME-Zarr"  # an image group inside an OME-Zarr, e.g. ``<base>.ome.zarr/labels/cells``
    if fmt == "OME-Zarr":
        if not path.is_dir():
            raise InputError("an OME-Zarr image is a folder, not a file", path)
        return path, fmt
    if path.is_dir():
        raise InputError("is a folder, not an image file", path)
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

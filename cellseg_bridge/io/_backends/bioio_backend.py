"""The bioio backend (the default): ``BioImage`` with one named plugin per format.

The plugin is chosen by file type, never by trying readers in turn:

=========  ====================================================================
CZI        bioio-czi (aicspylibczi), ``chunk_dims`` naming libCZI's sample axis
           ``A``: with the default, the lazily read colour samples of an RGB CZI
           all hold sample 0 (bioio-czi 3.0, as in aicsimageio 4.14). Samples
           arrive as B, G, R and are reordered by the reader.
ND2        bioio-nd2 (nd2)
LIF        bioio-lif (liffile) for ordinary images; xz scans and wavelength
           sweeps plane by plane (:mod:`cellseg_bridge.io._backends.lif`)
OME-TIFF   bioio-ome-tiff
TIFF       bioio-tifffile with ``dim_order`` set to the axes from
           :func:`~cellseg_bridge.io._backends.tiff._tiff_layout`; pixel sizes by
           the project's TIFF rules
PNG/JPEG   bioio-imageio
OME-Zarr   bioio-ome-zarr (NGFF folders, our ``*.ome.zarr`` outputs included);
           before 1.2, channel names as 1.2 reads them
           (:func:`_ome_zarr_reader`)
=========  ====================================================================

TIFF planes larger than 4096 pixels along Y or X are read in tiles through
tifffile instead (:func:`~cellseg_bridge.io._backends.tiff._tiled_tiff_array`):
bioio-tifffile and bioio-ome-tiff read a whole plane per chunk. So are plain
TIFFs when tifffile is too old for bioio's TIFF plugins (the aicsimageio extra
holds it at 2023.2, where they fail); OME-TIFFs then raise DependencyError, and
the default reader falls back to aicsimageio, which that extra installed.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path
from typing import Any

from cellseg_bridge.errors import DependencyError, InputError
from cellseg_bridge.io._backends.common import (
    _Image,
    _image_scene,
    _refuse_axes,
    _scene_list,
    _third_party_boundary,
)
from cellseg_bridge.io._backends.lif import _open_lif, _open_readlif
from cellseg_bridge.io._backends.tiff import (
    _check_ome_shape,
    _imagej_channel_names,
    _inspect_tiff,
    _is_large_plane,
    _tiff_layout,
    _tiff_pixel_sizes,
    _tiled_tiff_array,
)

NAME = "bioio"

#: Kind of image -> the bioio plugin (distribution name) that reads it.
PLUGINS: dict[str, str] = {
    "CZI": "bioio-czi",
    "ND2": "bioio-nd2",
    "LIF": "bioio-lif",
    "OME-TIFF": "bioio-ome-tiff",
    "TIFF": "bioio-tifffile",
    "PNG": "bioio-imageio",
    "JPEG": "bioio-imageio",
    "OME-Zarr": "bioio-ome-zarr",
}


def _reader_class(kind: str) -> type:
    """The ``Reader`` class of the plugin for ``kind`` (a key of :data:`PLUGINS`)."""
    plugin = PLUGINS[kind]
    try:
        module = importlib.import_module(plugin.replace("-", "_"))
    except ImportError as exc:
        raise DependencyError(f"reading {kind} files needs the package {plugin!r}: {exc}") from exc
    if kind == "OME-Zarr" and _version_tuple(plugin) < (1, 2):
        return _ome_zarr_reader(module.Reader)
    return module.Reader


def _version_tuple(dist: str) -> tuple[int, ...]:
    """The leading numbers of an installed distribution's version, ``(0,)`` when unknown."""
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return (0,)
    numbers = []
    for part in version.split("."):
        digits = "".join(ch for ch in part if ch.isdigit()) if part[:1].isdigit() else ""
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers) or (0,)


def _ome_zarr_reader(base: type) -> type:
    """bioio-ome-zarr < 1.2 with channel names read as 1.2 reads them.

    pip picks bioio-ome-zarr 1.0 beside the aicsimageio extra (which holds zarr
    below 2.16; 1.2 needs zarr 2.18). Its ``channel_names`` falls back, for an
    image without ``omero`` metadata (such as a chunked label store), to the base
    class, which builds ``xarray_dask_data``, whose coordinates ask for
    ``channel_names`` again: RecursionError. Here the names come from ``omero``
    or are None (bioio then names the channels ``Channel:<scene>:<index>``).
    """

    class Reader(base):  # type: ignore[valid-type,misc]
        @property
        def channel_names(self) -> list[str] | None:
            if self._channel_names is None:
                omero = self._zarr.root_attrs.get("omero")
                channels = omero.get("channels") if isinstance(omero, dict) else None
                if channels:
                    self._channel_names = [str(c.get("label", i)) for i, c in enumerate(channels)]
            return self._channel_names

    Reader.__name__ = Reader.__qualname__ = base.__name__
    Reader.__module__ = base.__module__
    return Reader


def _bioimage(path: Path, kind: str) -> Any:
    """``BioImage(path, reader=<plugin Reader>)``, errors as InputError."""
    reader = _reader_class(kind)
    from bioio import BioImage

    kwargs = {"chunk_dims": ["Z", "Y", "X", "A"]} if kind == "CZI" else {}
    with _third_party_boundary(path, kind):
        return BioImage(path, reader=reader, **kwargs)


def _open_bioimage(path: Path, kind: str, scene: int | str | None) -> _Image:
    """Open one scene with the plugin for ``kind``; ``data`` has dims T C Z Y X (and S for colour)."""
    return _image_scene(_bioimage(path, kind), path, kind, kind, scene, reader=PLUGINS[kind])


def _open_tiff(path: Path, scene: int | str | None, axes: str | None) -> _Image:
    """Open a TIFF: OME-TIFF through bioio-ome-tiff, others through bioio-tifffile with our axes."""
    tiff = _inspect_tiff(path)
    if tiff.is_ome:
        _refuse_axes(axes, "OME-TIFF", path)
        _require_tiff_plugins()
        image = _open_bioimage(path, "OME-TIFF", scene)
        series = tiff.series[image.scene_index]
        if _is_large_plane(series.shape, series.axes):
            data = _tiled_tiff_array(path, image.scene_index, series, series.axes)
            _check_ome_shape(image, data, series.axes, path)
            image.data, image.dims, image.reader = data, series.axes, "tifffile-tiles"
        return image
    tiff, scenes, index, dims = _tiff_layout(path, scene, axes)
    series = tiff.series[index]
    sizes = _tiff_pixel_sizes(path, index, tiff.is_imagej)
    names = _imagej_channel_names(path, dims, series.shape, tiff.is_imagej)
    if _is_large_plane(series.shape, dims) or not _bioio_tifffile_works():
        return _Image(_tiled_tiff_array(path, index, series, dims), dims, names, sizes, scenes, index, "tifffile-tiles")
    reader_class = _reader_class("TIFF")
    with _third_party_boundary(path, "TIFF"):
        reader = reader_class(path, dim_order=dims)
        reader.set_scene(index)
        xdata = reader.xarray_dask_data
    found = "".join(str(d) for d in xdata.dims)
    if sorted(found) != sorted(dims) or tuple(xdata.shape) != tuple(series.shape[dims.index(d)] for d in found):
        raise InputError(f"bioio-tifffile read axes {found} {xdata.shape}, expected {dims} {series.shape}", path)
    return _Image(xdata.data, found, names, sizes, scenes, index, PLUGINS["TIFF"])


def _bioio_tifffile_works() -> bool:
    """Whether the installed tifffile has what bioio-tifffile calls (``TiffFile(..., is_mmstack=...)``).

    With the aicsimageio extra, tifffile is held below 2023.3.15 and pip picks
    bioio-tifffile 1.0, which fails there with "unexpected keyword argument:
    is_mmstack"; TIFF pixels are then read through tifffile directly.
    """
    import tifffile

    return "mmstack" in getattr(tifffile.TIFF, "FILE_FLAGS", ())


def _require_tiff_plugins() -> None:
    """Raise DependencyError when tifffile is too old for bioio-ome-tiff (see :func:`_bioio_tifffile_works`)."""
    if not _bioio_tifffile_works():
        import tifffile

        raise DependencyError(
            f"bioio's TIFF plugins need tifffile >= 2023.3.15; tifffile {tifffile.__version__} is installed "
            "(the aicsimageio extra holds it back): read OME-TIFFs with reader='aicsimageio'"
        )


def scene_names(path: Path, fmt: str) -> list[str]:
    """Names of the scenes of ``path`` (format ``fmt`` as named by the reader's suffix table)."""
    if fmt == "LIF":
        return [str(image["name"]) for image in _open_readlif(path).image_list]
    if fmt == "TIFF":
        tiff = _inspect_tiff(path)
        if tiff.is_ome:
            _require_tiff_plugins()
            return _scene_list(_bioimage(path, "OME-TIFF"), path, "OME-TIFF")
        return [f"Image:{i}" for i in range(len(tiff.series))]
    return _scene_list(_bioimage(path, fmt), path, fmt)


def open_scene(path: Path, fmt: str, scene: int | str | None, axes: str | None) -> _Image:
    """Open one scene of ``path`` with bioio (``axes`` only for TIFFs, checked by the caller)."""
    if fmt == "TIFF":
        return _open_tiff(path, scene, axes)
    if fmt == "LIF":
        return _open_lif(path, scene, lambda index: _open_bioimage(path, "LIF", index))
    return _open_bioimage(path, fmt, scene)

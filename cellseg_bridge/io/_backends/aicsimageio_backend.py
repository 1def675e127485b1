"""The aicsimageio 4.14 backend (``reader="aicsimageio"``; the optional extra ``cellseg-bridge[aicsimageio]``).

- CZI, ND2, PNG/JPEG and ordinary LIF images: ``AICSImage(path, reader=...)``,
  then ``xarray_dask_data``. CZIs are opened with ``chunk_dims`` naming
  libCZI's sample axis ``A``: with the default, the lazily read colour samples
  of an RGB CZI all hold sample 0.
- TIFF: pixels through tifffile's zarr interface
  (:func:`~cellseg_bridge.io._backends.tiff._tiled_tiff_array`), because
  aicsimageio's own TIFF path fails on big-endian files under numpy 2; OME-TIFF
  metadata from aicsimageio's ``OmeTiffReader``.
- LIF images it cannot read (xz scans, wavelength sweeps):
  :mod:`cellseg_bridge.io._backends.lif`.

aicsimageio pins tifffile < 2023.3.15, zarr < 2.16 and lxml < 5 (no Python 3.13).
"""

from __future__ import annotations

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
    _tiff_layout,
    _tiff_pixel_sizes,
    _tiled_tiff_array,
)

NAME = "aicsimageio"


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
        elif fmt == "OME-Zarr":
            from aicsimageio.readers.ome_zarr_reader import OmeZarrReader as reader
        else:
            from aicsimageio.readers.default_reader import DefaultReader as reader
    except ImportError as exc:
        package = {"CZI": "aicspylibczi", "ND2": "nd2", "LIF": "readlif", "OME-Zarr": "ome-zarr"}.get(fmt, "aicsimageio")
        raise DependencyError(
            f"reading {fmt} files with the aicsimageio backend needs the package {package!r} "
            f"(pip install 'cellseg-bridge[aicsimageio]'): {exc}"
        ) from exc
    return reader


def _aics_image(path: Path, fmt: str, ome: bool = False) -> Any:
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


def _open_aics(path: Path, fmt: str, scene: int | str | None, ome: bool = False) -> _Image:
    """Open CZI, ND2, PNG/JPEG, ordinary LIF, OME-Zarr (and OME-TIFF metadata) with aicsimageio."""
    return _image_scene(_aics_image(path, fmt, ome), path, "OME-TIFF" if ome else fmt, fmt, scene)


def _open_tiff(path: Path, scene: int | str | None, axes: str | None) -> _Image:
    """Open a TIFF: pixels through tifffile, metadata from OME (aicsimageio) or TIFF tags."""
    tiff = _inspect_tiff(path)
    if tiff.is_ome:
        _refuse_axes(axes, "OME-TIFF", path)
        meta = _open_aics(path, "TIFF", scene, ome=True)
        index = meta.scene_index
        series = tiff.series[index]
        dims = series.axes
        data = _tiled_tiff_array(path, index, series, dims)
        _check_ome_shape(meta, data, dims, path)
        return _Image(data, dims, meta.channel_names, meta.sizes, meta.scenes, index, "tifffile")
    tiff, scenes, index, dims = _tiff_layout(path, scene, axes)
    data = _tiled_tiff_array(path, index, tiff.series[index], dims)
    sizes = _tiff_pixel_sizes(path, index, tiff.is_imagej)
    names = _imagej_channel_names(path, dims, tiff.series[index].shape, tiff.is_imagej)
    return _Image(data, dims, names, sizes, scenes, index, "tifffile")


def scene_names(path: Path, fmt: str) -> list[str]:
    """Names of the scenes of ``path`` (format ``fmt`` as named by the reader's suffix table)."""
    if fmt == "LIF":
        return [str(image["name"]) for image in _open_readlif(path).image_list]
    if fmt == "TIFF":
        tiff = _inspect_tiff(path)
        if tiff.is_ome:
            return _scene_list(_aics_image(path, fmt, ome=True), path, "OME-TIFF")
        return [f"Image:{i}" for i in range(len(tiff.series))]
    return _scene_list(_aics_image(path, fmt), path, fmt)


def open_scene(path: Path, fmt: str, scene: int | str | None, axes: str | None) -> _Image:
    """Open one scene of ``path`` with aicsimageio (``axes`` only for TIFFs, checked by the caller)."""
    if fmt == "TIFF":
        return _open_tiff(path, scene, axes)
    if fmt == "LIF":
        return _open_lif(path, scene, lambda index: _open_aics(path, "LIF", index))
    if fmt == "OME-Zarr" and not path.is_dir():
        raise InputError("an OME-Zarr image is a folder", path)
    return _open_aics(path, fmt, scene)

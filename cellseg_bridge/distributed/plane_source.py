"""Lazy access to one 2D plane (with channels) of an image too large for memory.

A :class:`PlaneSource` reads rectangular blocks of the chosen channel(s) on
demand, from a file (through :func:`cellseg_bridge.io.reader.open_image`,
whose TIFF route reads only the tiles/strips a block needs) or from an array
(numpy, dask, zarr, xarray). It is picklable when it refers to a file, so dask
workers open the file themselves and read only their blocks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cellseg_bridge.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["PlaneSource", "open_plane_source", "plane_percentiles"]

_DIMS = "TCZYX"
#: Planes with more pixels than this get their percentiles from a strided subsample (as ``segment``).
PERCENTILE_SUBSAMPLE = 224**3


@dataclass
class PlaneSource:
    """One plane of an image, channels first, read block by block.

    Attributes
    ----------
    shape : (int, int)
        Plane size (Y, X).
    channels : list of int
        Channels of the image fed to the network, in order; missing network
        channels are zeros (``nchan``).
    nchan : int
        Channels of the network input.
    path, scene, axes
        The file (None for arrays), scene and axes to open it with.
    channel_names : list of str
    pixel_sizes : dict
        Physical pixel sizes (µm) ``{"Y": ..., "X": ...}`` or empty.
    """

    shape: tuple[int, int]
    channels: list[int]
    nchan: int
    path: str | None = None
    scene: int | str | None = None
    axes: str | None = None
    channel_names: list[str] = field(default_factory=list)
    pixel_sizes: dict = field(default_factory=dict)
    dtype: str = "float32"
    _array: Any = field(default=None, repr=False)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.path is not None:
            state["_array"] = None  # reopened lazily where it is unpickled
        return state

    def data(self) -> Any:
        """The lazy ``(C, Y, X)`` array (opened on first use)."""
        if self._array is None:
            from cellseg_bridge.io.reader import open_image

            image = open_image(self.path, scene=self.scene, axes=self.axes)
            self._array = image.data[0, :, 0]
        return self._array

    def read(self, window: tuple[slice, slice]) -> np.ndarray:
        """Raw pixels of ``window`` as float32 ``(nchan, h, w)`` (zeros for missing channels)."""
        sy, sx = window
        data = self.data()
        out = np.zeros((self.nchan, sy.stop - sy.start, sx.stop - sx.start), np.float32)
        for k, c in enumerate(self.channels[: self.nchan]):
            out[k] = np.asarray(data[c, sy, sx])
        return out


def _channel(which: int | str | None, names: list[str], n: int, what: str, source: Any) -> int:
    if which is None:
        return 0
    if isinstance(which, str) and which in names:
        return names.index(which)
    try:
        index = int(which)
    except (TypeError, ValueError):
        raise InputError(f"no {what} named {which!r} (channels: {', '.join(names)})", source) from None
    if not -n <= index < n:
        raise InputError(f"{what} {index} out of range (the image has {n} channel(s))", source)
    return index % n


def open_plane_source(
    image: Any,
    *,
    axes: str | None = None,
    scene: int | str | None = None,
    channel: int | str | None = 0,
    nuclear_channel: int | str | None = None,
    nchan: int = 1,
    choose: Callable[[int, list[str]], list[int]] | None = None,
) -> PlaneSource:
    """A :class:`PlaneSource` for a file path or an array.

    Parameters
    ----------
    image : str, Path, xarray.DataArray, ndarray, dask or zarr array
        A file (opened lazily with :func:`~cellseg_bridge.io.reader.open_image`;
        ``axes`` applies to plain TIFFs) or an array with ``axes`` (letters
        of TCZYX; default ``"YX"`` for 2D arrays, the dims of a DataArray).
    scene : int or str, optional
        Scene of a file.
    channel, nuclear_channel : int or str, optional
        Channel to segment and optional nuclear channel (index or name).
    nchan : int
        Input channels of the network.
    choose : callable, optional
        ``choose(n_channels, names) -> indices``: the channels to read, in order, instead of
        ``channel`` / ``nuclear_channel`` (Cellpose-SAM models:
        :func:`~cellseg_bridge.segmentation.preprocess.sam_channels`).

    Raises
    ------
    InputError
        Unreadable file, axes that do not fit, more than one time point or Z
        plane, unknown channel, non-numeric pixels.
    """
    path = None
    if isinstance(image, (str, Path)):
        from cellseg_bridge.io.reader import open_image

        path = str(image)
        arr = open_image(image, scene=scene, axes=axes)
        dims, names = "TCZYX", [str(n) for n in arr.attrs.get("channel_names") or []]
        sizes = dict(arr.attrs.get("physical_pixel_sizes") or {})
        data = arr.data
    elif hasattr(image, "dims") and hasattr(image, "attrs"):
        dims = "".join(str(d) for d in image.dims).upper()
        names = [str(n) for n in image.attrs.get("channel_names") or []]
        sizes = dict(image.attrs.get("physical_pixel_sizes") or {})
        data = image.data
    else:
        data = image if hasattr(image, "shape") and hasattr(image, "dtype") else np.asarray(image)
        dims = (axes or ("YX" if len(data.shape) == 2 else "")).upper()
        names, sizes = [], {}
        if not dims:
            raise InputError(f"a {len(data.shape)}D array needs axes, e.g. 'CYX' (shape {data.shape})")
    if len(dims) != len(data.shape) or not set(dims) <= set(_DIMS) or not {"Y", "X"} <= set(dims):
        raise InputError(f"axes {dims!r} do not fit an array of shape {tuple(data.shape)}", path)
    if np.dtype(data.dtype).kind not in "biuf":
        raise InputError(f"unsupported pixel type {data.dtype}", path)
    if not isinstance(data, np.ndarray):
        import dask.array as da

        data = da.asarray(data) if not hasattr(data, "dask") else data
    sizes_by_dim = dict(zip(dims, data.shape))
    for letter in "TZ":
        if sizes_by_dim.get(letter, 1) != 1:
            raise InputError(
                f"segment_large works on 2D planes; this image has {letter}={sizes_by_dim[letter]} "
                "(select one time point / plane first)", path)
    for letter in _DIMS:
        if letter not in dims:
            data = data[None]
            dims = letter + dims
    data = data.transpose([dims.index(letter) for letter in _DIMS])[0, :, 0]
    n = int(data.shape[0])
    names = names if len(names) == n else [f"ch{i}" for i in range(n)]
    if choose is not None:
        try:
            chans = list(choose(n, names))
        except InputError as exc:
            raise InputError(exc.reason, path) from exc
    else:
        chans = [_channel(channel, names, n, "channel", path)]
    if nuclear_channel is not None and choose is None:
        if nchan < 2:
            raise InputError("nuclear_channel given but the network takes a single channel", path)
        chans.append(_channel(nuclear_channel, names, n, "nuclear_channel", path))
    return PlaneSource(
        shape=(int(data.shape[1]), int(data.shape[2])),
        channels=chans,
        nchan=nchan,
        path=path,
        scene=scene,
        axes=axes,
        channel_names=names,
        pixel_sizes={k: v for k, v in sizes.items() if k in ("Y", "X")},
        dtype=str(data.dtype),
        _array=data,
    )


def plane_percentiles(source: PlaneSource, low: float, high: float) -> list[tuple[float, float]]:
    """Per network channel ``(low, high)`` percentiles over the whole plane, as ``segment`` computes them.

    Planes of more than :data:`PERCENTILE_SUBSAMPLE` pixels use the strided
    subsample ``[::Y // 224, ::X // 224]`` (so a plane of any size is read
    once, block by block, and only the subsample is kept); smaller planes use
    every pixel. Values are taken as float32, like the whole-plane pipeline.
    """
    ly, lx = source.shape
    data = source.data()
    step = (max(1, ly // 224), max(1, lx // 224)) if ly * lx > PERCENTILE_SUBSAMPLE else (1, 1)
    out = []
    for k in range(source.nchan):
        if k >= len(source.channels):
            out.append((0.0, 0.0))
            continue
        values = np.asarray(data[source.channels[k], :: step[0], :: step[1]]).astype(np.float32)
        lo, hi = np.percentile(values, [low, high])
        out.append((float(lo), float(hi)))
    return out

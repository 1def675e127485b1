"""Write an image and its labels as one OME-Zarr (OME-NGFF 0.4 or 0.5) that other tools accept.

Layout (``<base>.ome.zarr``)::

    .zattrs / zarr.json   multiscales (axes t, c, z, y, x; one scale per level), omero (channel names)
    0, 1, ...             the image, level k subsampled by 2**k in Y and X
    labels/               {"labels": ["cells"]}
    labels/cells/         multiscales with the image's levels and scales (c of size 1),
                          image-label: colors, properties (per label: area in pixels, centroid),
                          source {"image": "../../"}; colors and properties of the first
                          100,000 labels only (MAX_LISTED_LABELS; a whole slide holds millions)

Levels are taken by striding (every 2**k-th pixel of level 0), for the image as for the
labels, so label values stay labels and pixel k of level k sits on pixel k * 2**k of
level 0 (no translation). Version 0.4 is zarr format 2 with ``/`` chunk keys; 0.5 is
zarr format 3 (needs zarr >= 3) with the metadata under ``"ome"``. Arrays may be numpy
or dask: a dask image is streamed level by level (chunks of 1024 in Y and X), so
images larger than memory are written without being loaded. The folder is built under
a hidden name beside ``path`` and renamed into place when complete.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cellseg_bridge.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["LABEL_NAME", "MAX_LISTED_LABELS", "VERSIONS", "default_levels", "label_colors", "write_ome_zarr"]

VERSIONS = ("0.4", "0.5")
LABEL_NAME = "cells"
_CHUNK_YX = 1024
_MIN_SIDE = 256
_MAX_LEVELS = 8
#: ``image-label`` lists colors and properties for at most this many labels (the JSON stays below ~20 MB).
MAX_LISTED_LABELS = 100_000


def default_levels(shape_yx: tuple[int, int]) -> int:
    """Number of levels: halve until the smaller side is below 512 (at most 8 levels)."""
    side, levels = min(shape_yx), 1
    while side >= 2 * _MIN_SIDE and levels < _MAX_LEVELS:
        side = math.ceil(side / 2)
        levels += 1
    return levels


def _zarr_major() -> int:
    import zarr

    return int(zarr.__version__.split(".")[0])


def _open_group(path: Path, version: str) -> Any:
    import zarr

    if _zarr_major() >= 3:
        return zarr.open_group(str(path), mode="w", zarr_format=2 if version == "0.4" else 3)
    return zarr.open_group(str(path), mode="w")


def _create(group: Any, name: str, shape: tuple[int, ...], dtype: np.dtype, version: str) -> Any:
    import numcodecs

    chunks = tuple(1 for _ in shape[:-2]) + tuple(min(_CHUNK_YX, n) for n in shape[-2:])
    if _zarr_major() >= 3:
        if version == "0.4":
            compressor = numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE)
            return group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, compressors=compressor,
                                      fill_value=0, chunk_key_encoding={"name": "v2", "separator": "/"})
        from zarr.codecs import BloscCodec

        return group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=0,
                                  compressors=BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"),
                                  dimension_names=list("tczyx"))
    compressor = numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE)
    return group.create_dataset(name, shape=shape, chunks=chunks, dtype=dtype, compressor=compressor,
                                fill_value=0, dimension_separator="/")


def _set_ome(group: Any, version: str, attrs: dict[str, Any]) -> None:
    """Metadata at the top level (0.4) or under ``"ome"`` with its version (0.5)."""
    if version == "0.4":
        group.attrs.update(attrs)
    else:
        group.attrs["ome"] = {"version": version, **attrs}


def _multiscales(name: str, levels: int, scale: Sequence[float], units: dict[str, str], version: str) -> list:
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}]
    axes += [{"name": a, "type": "space", **({"unit": units[a]} if a in units else {})} for a in "zyx"]
    datasets = [{"path": str(k), "coordinateTransformations": [
        {"type": "scale", "scale": [*scale[:3], scale[3] * 2**k, scale[4] * 2**k]}]} for k in range(levels)]
    entry: dict[str, Any] = {"name": name, "axes": axes, "datasets": datasets}
    if version == "0.4":
        entry = {"version": version, **entry}
    return [entry]


def _as_dask(array: Any) -> Any:
    import dask.array as da

    if isinstance(array, da.Array):
        return array
    array = array if hasattr(array, "chunks") else np.asarray(array)
    return da.from_array(array, chunks=(1,) * (array.ndim - 2) + (_CHUNK_YX, _CHUNK_YX))


def _write_levels(group: Any, data: Any, levels: int, version: str) -> list[Any]:
    """Write level 0 from ``data`` (5D dask) and each further level strided from the one before."""
    import dask.array as da

    written = []
    source = data
    for k in range(levels):
        arr = _create(group, str(k), tuple(source.shape), source.dtype, version)
        chunks = tuple(1 for _ in source.shape[:-2]) + tuple(min(_CHUNK_YX, n) for n in source.shape[-2:])
        da.store(source.rechunk(chunks), arr, lock=False)
        written.append(arr)
        source = da.from_array(arr, chunks=chunks)[..., ::2, ::2]
    return written


def _label_table(labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Label values present and, per value, pixel count and mean y, x (over all planes), block by block.

    Each block's counts cover only its own range of values (labels of a block are close in value:
    chunked outputs number them in raster order), so a block costs its pixels, not the largest label.
    """
    counts = np.zeros(1, np.int64)
    sum_y = np.zeros(1, np.float64)
    sum_x = np.zeros(1, np.float64)
    ny, nx = labels.shape[-2:]
    for y0 in range(0, ny, _CHUNK_YX):
        for x0 in range(0, nx, _CHUNK_YX):
            block = np.asarray(labels[..., y0:y0 + _CHUNK_YX, x0:x0 + _CHUNK_YX])
            planes = block.reshape(-1, *block.shape[-2:])
            ps, ys, xs = np.nonzero(planes)
            if ys.size == 0:
                continue
            values = planes[ps, ys, xs].astype(np.int64)
            lo, hi = int(values.min()), int(values.max())
            if hi >= counts.size:
                grow = hi + 1 - counts.size
                counts, sum_y, sum_x = (np.concatenate([a, np.zeros(grow, a.dtype)]) for a in (counts, sum_y, sum_x))
            offset = values - lo
            counts[lo:hi + 1] += np.bincount(offset, minlength=hi - lo + 1)
            sum_y[lo:hi + 1] += np.bincount(offset, weights=ys + y0, minlength=hi - lo + 1)
            sum_x[lo:hi + 1] += np.bincount(offset, weights=xs + x0, minlength=hi - lo + 1)
    values = np.flatnonzero(counts[1:]) + 1
    n = counts[values]
    return values, n, sum_y[values] / n, sum_x[values] / n


def label_colors(values: np.ndarray) -> np.ndarray:
    """Distinct RGBA (uint8) per label value: hue advanced by the golden ratio, full saturation."""
    from matplotlib.colors import hsv_to_rgb

    hue = (values.astype(np.float64) * 0.6180339887) % 1.0
    rgb = hsv_to_rgb(np.stack([hue, np.full_like(hue, 0.85), np.full_like(hue, 1.0)], axis=-1))
    return np.concatenate([np.round(rgb * 255), np.full((len(values), 1), 255)], axis=1).astype(np.uint8)


def _image_label(labels: Any, pixel_sizes: dict[str, float | None], version: str) -> dict[str, Any]:
    values, n, cy, cx = _label_table(labels)
    if len(values) > MAX_LISTED_LABELS:  # JSON that every viewer parses whole: keep it bounded
        log.warning("%d labels: colors and properties are listed for the first %d only", len(values),
                    MAX_LISTED_LABELS)
        values, n, cy, cx = (a[:MAX_LISTED_LABELS] for a in (values, n, cy, cx))
    colors = label_colors(values)
    area_unit = ""
    sy, sx = pixel_sizes.get("Y"), pixel_sizes.get("X")
    properties = []
    for v, count, y, x in zip(values.tolist(), n.tolist(), cy.tolist(), cx.tolist()):
        entry: dict[str, Any] = {"label-value": v, "area (pixels)": count, "centroid_y (pixels)": round(y, 3),
                                 "centroid_x (pixels)": round(x, 3)}
        if sy and sx:
            area_unit = "area (µm²)"
            entry[area_unit] = round(count * sy * sx, 6)
        properties.append(entry)
    meta: dict[str, Any] = {
        "colors": [{"label-value": v, "rgba": c.tolist()} for v, c in zip(values.tolist(), colors)],
        "properties": properties,
        "source": {"image": "../../"},
    }
    if version == "0.4":
        meta = {"version": version, **meta}
    return meta


def _omero(image: Any, channel_names: Sequence[str]) -> dict[str, Any]:
    """Channel names and display windows (from the coarsest level written)."""
    low = np.asarray(image)
    channels = []
    for c, name in enumerate(channel_names):
        plane = low[:, c]
        lo, hi = (float(plane.min()), float(plane.max())) if plane.size else (0.0, 1.0)
        channels.append({"label": str(name), "color": "FFFFFF", "active": True,
                         "window": {"min": lo, "max": hi, "start": lo, "end": hi}})
    return {"channels": channels, "rdefs": {"model": "greyscale"}}


def write_ome_zarr(
    path: str | os.PathLike,
    image: Any,
    labels: Any,
    *,
    pixel_sizes: dict[str, float | None] | None = None,
    channel_names: Sequence[str] | None = None,
    levels: int | None = None,
    version: str = "0.4",
    name: str = "image",
) -> Path:
    """Write ``image`` (T, C, Z, Y, X) and ``labels`` (T, Z, Y, X) as one OME-Zarr with a ``labels/cells`` group.

    Parameters
    ----------
    path : str or path-like
        The ``.ome.zarr`` folder to write (replaced if it exists).
    image : array-like
        (T, C, Z, Y, X) pixels, numpy or dask (streamed).
    labels : array-like
        (T, Z, Y, X) integer labels (0 = background) of the image's T, Z, Y, X.
    pixel_sizes : dict, optional
        ``{"Z": ..., "Y": ..., "X": ...}`` in micrometres (missing: 1, no unit).
    channel_names : sequence of str, optional
        One per channel (``omero`` metadata).
    levels : int, optional
        Resolution levels (default: :func:`default_levels`).
    version : {"0.4", "0.5"}
        OME-NGFF version; 0.5 needs zarr >= 3.
    name : str
        Name in the image's ``multiscales``.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        Shapes that do not match, non-integer labels, an unknown version.
    """
    path = Path(path)
    if version not in VERSIONS:
        raise InputError(f"OME-NGFF version must be one of {', '.join(VERSIONS)}, got {version!r}", path)
    if version == "0.5" and _zarr_major() < 3:
        raise InputError("OME-NGFF 0.5 needs zarr >= 3 (zarr format 3); this zarr writes format 2 only", path)
    if len(image.shape) != 5 or len(labels.shape) != 4:
        raise InputError(f"expected image (T, C, Z, Y, X) and labels (T, Z, Y, X), got {image.shape} and "
                         f"{labels.shape}", path)
    n_t, n_c, n_z, n_y, n_x = image.shape
    if tuple(labels.shape) != (n_t, n_z, n_y, n_x):
        raise InputError(f"labels {tuple(labels.shape)} do not match the image's T, Z, Y, X "
                         f"{(n_t, n_z, n_y, n_x)}", path)
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels must be integers, got {labels.dtype}", path)
    sizes = dict(pixel_sizes or {})
    levels = default_levels((n_y, n_x)) if levels is None else int(levels)
    if not 1 <= levels <= _MAX_LEVELS:
        raise InputError(f"levels must be 1..{_MAX_LEVELS}, got {levels}", path)
    scale = [1.0, 1.0] + [float(sizes.get(a) or 1.0) for a in "ZYX"]
    units = {a.lower(): "micrometer" for a in "ZYX" if sizes.get(a)}
    names = list(channel_names) if channel_names is not None else [f"ch{i}" for i in range(n_c)]
    if len(names) != n_c:
        raise InputError(f"{len(names)} channel names for {n_c} channels", path)

    path.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    try:
        root = _open_group(stage, version)
        written = _write_levels(root, _as_dask(image), levels, version)
        _set_ome(root, version, {"multiscales": _multiscales(name, levels, scale, units, version),
                                 "omero": _omero(written[-1], names)})
        labels_group = root.require_group("labels")
        _set_ome(labels_group, version, {"labels": [LABEL_NAME]})
        cells = labels_group.require_group(LABEL_NAME)
        label_levels = _write_levels(cells, _as_dask(labels)[:, None], levels, version)
        _set_ome(cells, version, {"multiscales": _multiscales(LABEL_NAME, levels, scale, units, version),
                                  "image-label": _image_label(label_levels[0], sizes, version)})
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(stage, path)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    log.info("wrote %s (OME-NGFF %s, %d level(s), labels/%s)", path, version, levels, LABEL_NAME)
    return path

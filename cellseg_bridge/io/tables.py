"""Per-cell measurements of a label image: size, centroid, mean intensity per channel.

Pure numpy: every quantity is a :func:`numpy.bincount` over the label image
(one pass per quantity and plane), never a loop over labels, so 10,000 cells
cost the same as 10.

Table layout
------------
The table is a dict of equally long numpy columns, in this order:

``label``
    the label value.
``t``
    1-based time point, as ImageJ numbers frames and as the ROI names say
    (``cell_0001_t003`` is in row ``t = 3``); only when the labels have a ``T``
    axis longer than 1. Each time point is measured on its own.
``z``
    1-based plane (slice), as ImageJ and the ROI names number them; only in
    per-plane mode with a ``Z`` axis longer than 1: each plane is measured on
    its own, as for plane-by-plane 2D segmentation without stitching.
``area`` / ``area_um2``
    2D objects: pixel count, and µm² when the Y and X pixel sizes are known.
``volume`` / ``volume_um3``
    3D objects (a ``Z`` axis longer than 1, not per-plane): voxel count, and
    µm³ when the Z, Y and X pixel sizes are known.
``centroid_z``, ``centroid_y``, ``centroid_x``
    centre of mass of the object's pixels in pixel units (0-based, pixel
    centres at integers); ``centroid_z`` only for 3D objects.
``mean_<channel>``
    mean intensity of each channel over the object's pixels.

Rows are sorted by ``t``, ``z``, then ``label``; labels absent from a plane or
time point give no row there.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cellseg_bridge.errors import InputError
from cellseg_bridge.io.atomic import atomic_output

__all__ = ["measure_cells", "write_csv", "n_rows"]

_AXES = "TZYX"
#: Above this ratio of largest label to pixel count, labels are compacted first (np.unique).
_SPARSE_FACTOR = 4


def measure_cells(
    labels: Any,
    intensity: Any | None = None,
    *,
    axes: str | None = None,
    channel_names: Sequence[str] | None = None,
    pixel_sizes: Mapping[str, float | None] | None = None,
    per_plane: bool = False,
) -> dict[str, np.ndarray]:
    """Measure every labelled object.

    Parameters
    ----------
    labels : array_like
        Integer labels >= 0 (0 = background) with axes ``axes``.
    intensity : array_like, optional
        Intensities, shape ``labels.shape`` (one channel) or
        ``(C,) + labels.shape`` (channel first). Default: no intensity columns.
    axes : str, optional
        Axis letters of ``labels``, the letters of ``TZYX`` in that order and
        ending in ``YX``: ``"YX"``, ``"ZYX"``, ``"TYX"``, ``"TZYX"``. Default
        ``YX``/``ZYX``/``TZYX`` by dimension.
    channel_names : sequence of str, optional
        One name per intensity channel (columns ``mean_<name>``); default
        ``ch0``, ``ch1``, ...
    pixel_sizes : mapping, optional
        ``{"Z": µm, "Y": µm, "X": µm}`` (None for unknown) for the µm columns.
    per_plane : bool
        Measure each Z plane on its own (2D objects, a ``z`` column) instead
        of 3D objects.

    Returns
    -------
    dict of str to numpy.ndarray
        The columns (see the module docstring).

    Raises
    ------
    InputError
        Labels that are not non-negative integers, bad ``axes``, or
        intensities or channel names that do not match.
    """
    lab = np.asarray(labels)
    if lab.dtype.kind not in "iub":
        raise InputError(f"labels must be integers, got {lab.dtype}")
    if lab.dtype.kind == "b":
        lab = lab.astype(np.uint8)
    axes = _check_axes(axes, lab.ndim)
    if lab.size and lab.dtype.kind == "i" and lab.min() < 0:
        raise InputError("labels must be >= 0")
    lab4 = _to_tzyx(lab, axes)
    chans = _intensity_tczyx(intensity, lab, axes)
    n_channels = 0 if chans is None else chans.shape[1]
    names = _channel_names(channel_names, n_channels)
    sizes = {a: _size(pixel_sizes, a) for a in "ZYX"}

    n_t, n_z = lab4.shape[:2]
    three_d = n_z > 1 and not per_plane
    groups = [(t, z) for t in range(n_t) for z in range(n_z)] if not three_d else [(t, None) for t in range(n_t)]
    parts: list[dict[str, np.ndarray]] = []
    for t, z in groups:
        block = lab4[t] if z is None else lab4[t, z : z + 1]
        values = None if chans is None else (chans[t] if z is None else chans[t, :, z : z + 1])
        part = _measure_block(block, values, three_d)
        n = part["label"].size
        if n_t > 1:
            part["t"] = np.full(n, t + 1, np.int64)  # 1-based, as ImageJ and the ROI names
        if z is not None and n_z > 1:
            part["z"] = np.full(n, z + 1, np.int64)
        parts.append(part)

    table: dict[str, np.ndarray] = {}
    size_key = "volume" if three_d else "area"
    order = ["label"] + (["t"] if n_t > 1 else []) + (["z"] if n_z > 1 and not three_d else []) + [size_key]
    for key in order:
        table[key] = np.concatenate([p[key] for p in parts]).astype(np.int64)
    size_z, size_y, size_x = sizes["Z"], sizes["Y"], sizes["X"]
    if three_d and size_z is not None and size_y is not None and size_x is not None:
        table["volume_um3"] = table["volume"] * (size_z * size_y * size_x)
    if not three_d and size_y is not None and size_x is not None:
        table["area_um2"] = table["area"] * (size_y * size_x)
    for key in (["centroid_z"] if three_d else []) + ["centroid_y", "centroid_x"]:
        table[key] = np.concatenate([p[key] for p in parts])
    for c, name in enumerate(names):
        table[f"mean_{name}"] = np.concatenate([p["mean"][c] for p in parts])
    return table


def n_rows(table: Mapping[str, np.ndarray]) -> int:
    """Number of rows of a table."""
    return len(next(iter(table.values()))) if table else 0


def write_csv(table: Mapping[str, Any], path: str | Path, *, float_format: str = "%.7g") -> Path:
    """Write a table (dict of equally long columns) as CSV with a header row, atomically.

    Parameters
    ----------
    table : mapping of str to array_like
        Columns, e.g. from :func:`measure_cells`.
    path : str or Path
        The CSV to write (comma-separated, ``\\n`` line ends, UTF-8; ImageJ's
        *File > Import > Results* and spreadsheet programs read it).
    float_format : str
        printf format of floating-point values (default 7 significant digits).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    columns = {str(k): np.asarray(v) for k, v in table.items()}
    lengths = {c.shape[0] if c.ndim else 0 for c in columns.values()}
    if len(lengths) > 1:
        raise InputError(f"table columns differ in length: {sorted(lengths)}", path)
    text_columns = []
    for col in columns.values():
        if col.dtype.kind == "f":
            strings = np.char.mod(float_format, col)
            strings[~np.isfinite(col)] = "NaN"
        elif col.dtype.kind in "iub":
            strings = col.astype(np.int64).astype(str)
        else:
            strings = col.astype(str)
        text_columns.append(strings.tolist())
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(columns))
    writer.writerows(zip(*text_columns))
    with atomic_output(path) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- helpers


def _check_axes(axes: str | None, ndim: int) -> str:
    if axes is None:
        defaults = {2: "YX", 3: "ZYX", 4: "TZYX"}
        if ndim not in defaults:
            raise InputError(f"{ndim}-D labels need an explicit axes string (letters of {_AXES})")
        return defaults[ndim]
    axes = axes.upper()
    if len(axes) != ndim or not axes.endswith("YX") or len(set(axes)) != len(axes) or set(axes) - set(_AXES):
        raise InputError(f"axes {axes!r} must be letters of {_AXES} ending in YX, one per dimension of {ndim}-D labels")
    if [a for a in _AXES if a in axes] != list(axes):
        raise InputError(f"axes {axes!r} must follow the order {_AXES}")
    return axes


def _to_tzyx(arr: np.ndarray, axes: str) -> np.ndarray:
    index = tuple(slice(None) if a in axes else None for a in _AXES)
    return arr[index]


def _intensity_tczyx(intensity: Any | None, lab: np.ndarray, axes: str) -> np.ndarray | None:
    """Intensities as ``(T, C, Z, Y, X)``; None when not given."""
    if intensity is None:
        return None
    values = np.asarray(intensity)
    if values.shape == lab.shape:
        values = values[None]
    if values.shape[1:] != lab.shape:
        raise InputError(f"intensity shape {values.shape} does not match labels {lab.shape} (channel first)")
    if values.dtype.kind not in "iubf":
        raise InputError(f"intensities must be numbers, got {values.dtype}")
    cz = np.stack([_to_tzyx(channel, axes) for channel in values], axis=1)  # T C Z Y X
    return cz


def _channel_names(names: Sequence[str] | None, n: int) -> list[str]:
    if names is None:
        return [f"ch{i}" for i in range(n)]
    names = [str(x) for x in names]
    if len(names) != n:
        raise InputError(f"{len(names)} channel names for {n} intensity channels")
    return names


def _size(sizes: Mapping[str, float | None] | None, axis: str) -> float | None:
    if sizes is None:
        return None
    value = sizes.get(axis)
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) and value > 0 else None


def _measure_block(block: np.ndarray, values: np.ndarray | None, three_d: bool) -> dict[str, Any]:
    """Measure one ``(Z, Y, X)`` block (Z = 1 for a plane); ``values`` is ``(C, Z, Y, X)``."""
    flat = block.reshape(-1)
    if flat.size == 0:
        ids = np.zeros(0, np.int64)
        index = flat.astype(np.intp)
    else:
        high = int(flat.max())
        if high > _SPARSE_FACTOR * flat.size:
            ids, index = np.unique(flat, return_inverse=True)
            index = index.reshape(-1)
        else:
            ids, index = None, flat.astype(np.intp, copy=False)
    n_bins = (ids.size if ids is not None else int(index.max(initial=0)) + 1) if flat.size else 1
    counts = np.bincount(index, minlength=n_bins)
    bins = np.flatnonzero(counts)
    values_of_bins = bins if ids is None else ids[bins]
    keep = values_of_bins > 0
    bins, label_values = bins[keep], values_of_bins[keep]
    n = counts[bins].astype(np.float64)
    out: dict[str, Any] = {"label": label_values.astype(np.int64), "area": counts[bins], "volume": counts[bins]}
    nz, ny, nx = block.shape
    coords = {"centroid_y": (np.arange(ny, dtype=np.float64)[None, :, None], ny),
              "centroid_x": (np.arange(nx, dtype=np.float64)[None, None, :], nx)}
    if three_d:
        coords["centroid_z"] = (np.arange(nz, dtype=np.float64)[:, None, None], nz)
    for key, (grid, _) in coords.items():
        weights = np.broadcast_to(grid, block.shape).reshape(-1)
        out[key] = np.bincount(index, weights=weights, minlength=n_bins)[bins] / n
    if values is not None:
        means = []
        for channel in values:
            sums = np.bincount(index, weights=channel.reshape(-1).astype(np.float64, copy=False), minlength=n_bins)
            means.append(sums[bins] / n)
        out["mean"] = means
    return out

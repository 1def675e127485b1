"""How ``segment`` writes each output of one scene besides the label image (ROIs, GeoJSON, tracks, flows, ``_seg.npy``).

The job (:func:`cellseg_bridge.batch.segment.segment_item`) calls these with paths in its staging folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from cellseg_bridge.config import GeoJsonOptions, SegmentOptions
from cellseg_bridge.errors import InputError

__all__ = ["count_labels", "network_outputs", "pixel_destinations", "write_flows", "write_geojson_output", "write_rois",
           "write_seg_npy_output", "write_tracks"]

#: ROI and GeoJSON names of cells linked over time (``segment --track``): the track id, then ``_t003``.
TRACK_NAME_FORMAT = "track_{label:04d}"


def count_labels(labels: np.ndarray) -> int:
    """Number of distinct non-zero labels."""
    if labels.size == 0:
        return 0
    high = int(labels.max())
    if high == 0:
        return 0
    if high <= 4 * labels.size:
        return int(np.count_nonzero(np.bincount(labels.reshape(-1).astype(np.intp), minlength=high + 1)[1:]))
    return int(np.unique(labels).size - (labels.min() == 0))


def write_rois(labels: np.ndarray, n_channels: int, path: Path, name_format: str | None = None) -> None:
    """ImageJ ROIs of (T, Z, Y, X) labels with the positions described in :mod:`cellseg_bridge.batch.segment`."""
    from cellseg_bridge.io.roi_export import labels_to_rois, write_roi_zip

    n_t, n_z = labels.shape[:2]
    stack = "".join(a for a, n in zip("TZ", (n_t, n_z)) if n > 1)
    data = labels.reshape(tuple(n for n in (n_t, n_z) if n > 1) + labels.shape[2:])
    position = None
    if n_channels > 1 and len(stack) == 1:
        # a hyperstack with channels: hyperstack positions with channel 0 = all channels
        position = {("Z" if stack == "T" else "T"): 0}
    write_roi_zip(labels_to_rois(data, axes=stack + "YX", position=position, name_format=name_format), path)


def write_geojson_output(path: Path, labels: np.ndarray, pixels: np.ndarray, channel_names: list[str], sizes: dict,
                         options: GeoJsonOptions, name_format: str | None = None) -> None:
    """``<base>_cells.geojson`` (QuPath): one feature per cell and plane with its measurements.

    Measurements per plane: ``Label``, ``Area px^2`` (and ``Area µm^2``), ``Centroid X px`` and
    ``Centroid Y px`` in QuPath's coordinates (origin at the image's top-left corner, so pixel
    centres at .5), ``<channel>: Mean``.
    """
    from cellseg_bridge.io.geojson import labels_to_features, write_geojson
    from cellseg_bridge.io.tables import measure_cells

    table = measure_cells(labels, np.moveaxis(pixels, 1, 0), axes="TZYX", channel_names=channel_names,
                          pixel_sizes=sizes, per_plane=True)
    n = len(table["label"])
    zeros = np.zeros(n, np.int64)
    columns = {"Label": table["label"], "Area px^2": table["area"]}
    if "area_um2" in table:
        columns["Area µm^2"] = table["area_um2"]
    columns |= {"Centroid X px": table["centroid_x"] + 0.5, "Centroid Y px": table["centroid_y"] + 0.5}
    columns |= {f"{name}: Mean": table[f"mean_{name}"] for name in channel_names}
    rows = zip(table.get("t", zeros).tolist(), table.get("z", zeros).tolist(), table["label"].tolist())
    measurements = {key: {k: v[i] for k, v in columns.items()} for i, key in enumerate(rows)}
    features = labels_to_features(labels, axes="TZYX", object_type=options.geojson_object_type,
                                  classification=options.geojson_classification or None, name_format=name_format,
                                  measurements=measurements)
    write_geojson(features, path)


def write_tracks(path: Path, labels: np.ndarray, sizes: dict) -> None:
    """``<base>_tracks.csv`` of labels linked over time: one row per track and frame.

    Columns ``track``, ``frame`` (1-based, as the ``t`` column of the cells CSV and the ROI
    names), ``label`` (the value in ``<base>_labels.ome.tif``, which is the track id),
    ``centroid_x``, ``centroid_y`` (``centroid_z`` for 3D; pixels, pixel centres at integers),
    ``area`` (``volume``) and ``area_um2`` (``volume_um3``) when pixel sizes
    are known. Rows by frame, then track.
    """
    from cellseg_bridge.io.tables import measure_cells, write_csv

    table = measure_cells(labels, axes="TZYX", pixel_sizes=sizes, per_plane=False)
    out = {"track": table["label"], "frame": table["t"], "label": table["label"]}
    out |= {k: table[k] for k in ("centroid_x", "centroid_y", "centroid_z") if k in table}
    out |= {k: table[k] for k in ("area", "volume", "area_um2", "volume_um3") if k in table}
    write_csv(out, path)


def spatial_resample(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Resample the trailing axes of ``array`` to ``shape`` (linear), if they differ."""
    if array.shape[-len(shape):] == tuple(shape):
        return array
    from scipy.ndimage import zoom

    factors = (1.0,) * (array.ndim - len(shape)) + tuple(n / m for n, m in zip(shape, array.shape[-len(shape):]))
    out = zoom(array, factors, order=1, grid_mode=True, mode="nearest")
    return out[tuple(slice(0, n) for n in array.shape[: array.ndim - len(shape)] + tuple(shape))]


def network_outputs(result: Any, labels_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Flows (T, 2|3, Z, Y, X) and cell probability (T, Z, Y, X) at the labels' size."""
    flows = getattr(result, "flows", None)
    cellprob = getattr(result, "cellprob", None)
    if flows is None or cellprob is None:
        raise InputError("the segmentation returned no flows (return_flows was not honoured)")
    flows = np.asarray(flows, dtype=np.float32)
    cellprob = np.asarray(cellprob, dtype=np.float32)
    if flows.ndim != 5 or flows.shape[1] not in (2, 3) or cellprob.ndim != 4:
        raise InputError(f"unexpected flows {flows.shape} / cellprob {cellprob.shape}; "
                         "expected (T, 2|3, Z, Y, X) / (T, Z, Y, X)")
    spatial = labels_shape[1:]
    return spatial_resample(flows, spatial), spatial_resample(cellprob, spatial)


def write_flows(path: Path, result: Any, labels_shape: tuple[int, ...], sizes: dict) -> None:
    """``<base>_flows.ome.tif``: channels (dZ,) dY, dX and cellprob at the labels' size."""
    from cellseg_bridge.io.writers import write_ome_tiff

    flows, cellprob = network_outputs(result, labels_shape)
    names = (["dZ"] if flows.shape[1] == 3 else []) + ["dY", "dX", "cellprob"]
    data = np.concatenate([flows, cellprob[:, None]], axis=1)
    write_ome_tiff(data, path, physical_pixel_sizes=sizes, channel_names=names, dims="TCZYX", name="flows")


def write_seg_npy_output(path: Path, source: Path, labels: np.ndarray, result: Any, diameter: float | None,
                         options: SegmentOptions, chan_choose: tuple[int, int] = (0, 0)) -> None:
    """``<base>_seg.npy`` for Cellpose's GUI (first plane; flows when the result has them).

    With flows, the file holds all five items of the GUI's ``flows`` list, the last two being what
    the GUI recomputes masks from when the user changes its thresholds: ``flows[3]`` the pixel
    destinations of :func:`pixel_destinations` and ``flows[4]`` ``[dY, dX, cellprob]`` at the
    image's size. ``chan_choose`` is Cellpose's channel pair (1-based, 0 = grayscale / none).
    """
    from cellseg_bridge.io.seg_npy import gui_flows, write_seg_npy

    flows_list: list = []
    if getattr(result, "flows", None) is not None and getattr(result, "cellprob", None) is not None:
        flows, cellprob = network_outputs(result, labels.shape)
        dp, prob = flows[0][-2:, 0], cellprob[0, 0]
        p = pixel_destinations(dp, prob, float(options.cellprob_threshold), int(options.niter or 200))
        flows_list = gui_flows(dp, prob, p)
    extra = {
        "model_path": str(getattr(result, "model", "") or ""),
        "flow_threshold": float(options.flow_threshold),
        "cellprob_threshold": float(options.cellprob_threshold),
    }
    write_seg_npy(path, labels[0, 0], filename=os.path.abspath(source), diameter=diameter, flows=flows_list,
                  chan_choose=chan_choose, extra=extra)


def pixel_destinations(dp: np.ndarray, cellprob: np.ndarray, cellprob_threshold: float, niter: int) -> np.ndarray:
    """Where every pixel ends after the flow dynamics, ``(2, Y, X)`` float32 (Cellpose's ``p``).

    Pixels above ``cellprob_threshold`` follow ``dp / 5`` for ``niter`` steps
    (:func:`cellseg_bridge.core.dynamics.follow_flows`); the others stay where they are.
    """
    from cellseg_bridge.core.dynamics import follow_flows

    mask = cellprob > cellprob_threshold
    p = np.stack(np.meshgrid(*(np.arange(n, dtype=np.float32) for n in mask.shape), indexing="ij"))
    moved = follow_flows(dp, mask, niter)
    for axis in range(p.shape[0]):
        p[axis][mask] = moved[axis]
    return p

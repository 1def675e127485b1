"""How ``segment`` writes each output of one scene besides the label image (ROIs, flows, ``_seg.npy``).

The job (:func:`cellseg_bridge.batch.segment.segment_item`) calls these with paths in its staging folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from cellseg_bridge.config import SegmentOptions
from cellseg_bridge.errors import InputError

__all__ = ["count_labels", "network_outputs", "write_flows", "write_rois", "write_seg_npy_output"]


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


def write_rois(labels: np.ndarray, n_channels: int, path: Path) -> None:
    """ImageJ ROIs of (T, Z, Y, X) labels with the positions described in the module docstring."""
    from cellseg_bridge.io.roi_export import labels_to_rois, write_roi_zip

    n_t, n_z = labels.shape[:2]
    stack = "".join(a for a, n in zip("TZ", (n_t, n_z)) if n > 1)
    data = labels.reshape(tuple(n for n in (n_t, n_z) if n > 1) + labels.shape[2:])
    position = None
    if n_channels > 1 and len(stack) == 1:
        # a hyperstack with channels: hyperstack positions with channel 0 = all channels
        position = {("Z" if stack == "T" else "T"): 0}
    write_roi_zip(labels_to_rois(data, axes=stack + "YX", position=position), path)


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
                   options: SegmentOptions) -> None:
    """``<base>_seg.npy`` for Cellpose's GUI (first plane; flows when the result has them)."""
    from cellseg_bridge.io.seg_npy import gui_flows, write_seg_npy

    flows_list: list = []
    if getattr(result, "flows", None) is not None and getattr(result, "cellprob", None) is not None:
        flows, cellprob = network_outputs(result, labels.shape)
        flows_list = gui_flows(flows[0][-2:, 0], cellprob[0, 0])
    extra = {
        "model_path": str(getattr(result, "model", "") or ""),
        "flow_threshold": float(options.flow_threshold),
        "cellprob_threshold": float(options.cellprob_threshold),
    }
    write_seg_npy(path, labels[0, 0], filename=os.path.abspath(source), diameter=diameter, flows=flows_list,
                  extra=extra)

"""The job of ``segment`` for one scene: open it, segment it, write its outputs together.

:func:`segment_item` is what every batch runs per scene, in this process or on a
Dask worker; only where the model comes from differs (:class:`ModelOnce`: loaded
once for the batch; :class:`WorkerModel`: once per worker process,
:mod:`cellseg_bridge.distributed.models`). :func:`segment_task` and
:func:`segment_large_task` are the picklable tasks of cluster runs and of planes
segmented in chunks (:func:`~cellseg_bridge.distributed.chunked.segment_large`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cellseg_bridge.batch.items import WorkItem
from cellseg_bridge.batch.naming import axes_for, open_scene
from cellseg_bridge.batch.scene_outputs import (
    TRACK_NAME_FORMAT,
    count_labels,
    write_flows,
    write_geojson_output,
    write_rois,
    write_seg_npy_output,
    write_tracks,
)
from cellseg_bridge.config import DEFAULTS, GeoJsonOptions, SegmentOptions, TrackOptions
from cellseg_bridge.errors import CellsegError, InputError
from cellseg_bridge.io.atomic import staged_outputs

log = logging.getLogger(__name__)

__all__ = ["ModelOnce", "ModelSource", "WorkerModel", "channel_index", "segment_item", "segment_kwargs",
           "segment_large_task", "segment_task"]


def segment_kwargs(options: SegmentOptions) -> dict[str, Any]:
    """The keyword arguments of ``segment(image, model, **kwargs)`` for ``options``: every field but model, device."""
    return {name: value for name, value in options.as_dict().items() if name not in ("model", "device")}


class ModelSource(Protocol):
    """Anything that gives the loaded model on request (loading it on first use)."""

    def get(self) -> Any:
        """Return the loaded model."""


class ModelOnce:
    """Load the model on first use, once; a load failure is remembered and reported for every item."""

    def __init__(self, model: Any, device: str, load: Callable[..., Any]) -> None:
        self._spec, self._device, self._load = model, device, load
        self._model: Any = None if isinstance(model, (str, Path)) else model
        self._error: str | None = None

    def get(self) -> Any:
        """The loaded model (loaded now if this is the first call)."""
        if self._model is None:
            if self._error is None:
                try:
                    self._model = self._load(self._spec, device=self._device)
                    log.info("model %s loaded (device %s)", self._spec, self._device)
                except CellsegError as exc:
                    self._error = getattr(exc, "reason", None) or str(exc)
                except (OSError, RuntimeError, ValueError, KeyError) as exc:
                    self._error = f"{type(exc).__name__}: {exc}"
            if self._model is None:
                raise InputError(f"cannot load model {str(self._spec)!r}: {self._error}")
        return self._model


def segment_item(
    item: WorkItem,
    outputs: dict[str, Path],
    models: ModelSource,
    segment_fn: Callable[..., Any],
    options: SegmentOptions,
    axes: str | None,
    geojson: GeoJsonOptions = DEFAULTS.geojson,
    track: TrackOptions = DEFAULTS.track,
) -> tuple[int, float | None, dict | None]:
    """Open, segment and write all outputs of one scene; return (number of cells, diameter, model choice).

    Parameters
    ----------
    item : WorkItem
        The scene (``source``, scene index ``key``).
    outputs : dict of str to Path
        Output path per kind; all are written through :func:`staged_outputs`.
    models : object with a ``get()`` method
        Gives the loaded model (:class:`ModelOnce` in this process, :class:`WorkerModel` on a worker).
    segment_fn : callable
        ``segment_fn(image, model, return_flows=..., **options)``, as
        :func:`cellseg_bridge.segmentation.pipeline.segment`.
    options : SegmentOptions
        Segmentation options (``channel`` and ``nuclear_channel`` are resolved
        to indices of the image's channels here).
    axes : str, optional
        Axes of plain TIFFs.
    geojson : GeoJsonOptions
        QuPath object type and class of ``<base>_cells.geojson``.
    track : TrackOptions
        How labels are linked over time when ``outputs`` has ``"tracks"``: then every cell keeps
        its track id as label value in every output (ROIs named ``track_0007_t003``, a ``track``
        column in the table).

    Returns
    -------
    (int, float or None, dict or None)
        Number of labels, the diameter used and (``model="auto"``) the model choice.
    """
    image = open_scene(item.source, item.key, axes)
    image = image.copy(data=np.asarray(image.data))  # read the pixels once (segment and measure use them)
    n_t, n_c, n_z, n_y, n_x = (image.sizes[a] for a in "TCZYX")
    names = [str(n) for n in image.attrs.get("channel_names") or [f"ch{i}" for i in range(n_c)]]
    kwargs = segment_kwargs(options)
    channel = kwargs["channel"] = channel_index(names, options.channel, item.source)
    if options.nuclear_channel is not None:
        kwargs["nuclear_channel"] = channel_index(names, options.nuclear_channel, item.source)
    model = models.get()
    want_flows = "flows" in outputs or "seg_npy" in outputs
    result = segment_fn(image, model, return_flows=want_flows, **kwargs)
    labels = np.asarray(result.labels)
    if labels.shape != (n_t, n_z, n_y, n_x):
        raise InputError(f"segmentation returned labels of shape {labels.shape}, expected (T, Z, Y, X) = "
                         f"{(n_t, n_z, n_y, n_x)}", item.source)
    sizes = dict(image.attrs.get("physical_pixel_sizes") or {})
    diameter = getattr(result, "diameter", None)
    diameter = None if diameter is None else float(diameter)
    per_plane = n_z > 1 and not options.do_3d and not options.stitch_threshold
    pixels = image.data  # numpy (T, C, Z, Y, X)
    names_format = None
    if "tracks" in outputs:
        from cellseg_bridge.core.tracking import link_labels

        linked = link_labels(labels, iou_threshold=track.track_iou_threshold, max_gap=track.track_max_gap)
        labels, names_format = linked.labels, TRACK_NAME_FORMAT
        log.info("%s: %d tracks over %d frames (%d links across gaps)", item.name, linked.n_tracks, n_t,
                 linked.n_gap_links)

    writers: dict[str, Callable[[Path], Any]] = {}
    if "labels" in outputs:
        from cellseg_bridge.io.writers import write_labels

        writers["labels"] = lambda path: write_labels(labels, path, physical_pixel_sizes=sizes, dims="TZYX")
    for kind, version in (("ome_zarr", "0.4"), ("ome_zarr_v05", "0.5")):
        if kind in outputs:
            from cellseg_bridge.io.ome_zarr import write_ome_zarr

            def write_zarr(path: Path, version: str = version) -> None:
                write_ome_zarr(path, pixels, labels, pixel_sizes=sizes, channel_names=names, version=version,
                               name=path.name.removesuffix(".ome.zarr"))

            writers[kind] = write_zarr
    if "rois" in outputs:
        writers["rois"] = lambda path: write_rois(labels, n_c, path, names_format)
    if "geojson" in outputs:
        writers["geojson"] = lambda path: write_geojson_output(path, labels, pixels, names, sizes, geojson, names_format)
    if "csv" in outputs:
        from cellseg_bridge.io.tables import measure_cells, write_csv

        def write_table(path: Path) -> None:
            table = measure_cells(labels, np.moveaxis(pixels, 1, 0), axes="TZYX", channel_names=names,
                                  pixel_sizes=sizes, per_plane=per_plane)
            if names_format is not None:  # linked over time: the label is the track id, t the frame
                table = {"label": table["label"], "track": table["label"]} | table
            write_csv(table, path)

        writers["csv"] = write_table
    if "overlay" in outputs:
        from cellseg_bridge.io.overlay import outline_overlay, write_png

        z = n_z // 2
        writers["overlay"] = lambda path: write_png(outline_overlay(pixels[0, channel, z], labels[0, z]), path)
    if "seg_npy" in outputs:
        # Cellpose's channel pair: 1-based channels, 0 = grayscale (one channel) / no nuclear channel
        nuclear = kwargs.get("nuclear_channel")
        chan = (0, 0) if n_c == 1 else (channel + 1, 0 if nuclear is None else int(nuclear) + 1)
        writers["seg_npy"] = lambda path: write_seg_npy_output(path, item.source, labels, result, diameter, options,
                                                               chan)
    if "flows" in outputs:
        writers["flows"] = lambda path: write_flows(path, result, labels.shape, sizes)
    if "tracks" in outputs:
        writers["tracks"] = lambda path: write_tracks(path, labels, sizes)

    with staged_outputs([outputs[kind] for kind in writers]) as tmps:
        for write, tmp in zip(writers.values(), tmps):
            write(tmp)
    choice = getattr(result, "choice", None)
    return count_labels(labels), diameter, (choice.to_dict() if choice is not None else None)


def channel_index(names: Sequence[str], channel: int | str | None, source: Path) -> int:
    """Index of the segmented channel (a name, an index, or a string of digits); InputError if there is none."""
    if channel is None:
        return 0
    if isinstance(channel, str) and channel in names:
        return list(names).index(channel)
    try:
        index = int(channel)
    except (TypeError, ValueError):
        raise InputError(f"no channel named {channel!r} (channels: {', '.join(names)})", source) from None
    if not 0 <= index < len(names):
        raise InputError(f"channel {index} out of range (image has {len(names)} channels)", source)
    return index


class WorkerModel:
    """The ``.get()`` interface of the sequential batch, backed by the per-process model cache."""

    def __init__(self, spec: Any, device: str) -> None:
        self.spec, self.device = spec, device

    def get(self) -> Any:
        """The model of this worker process (loaded on its first use there)."""
        from cellseg_bridge.distributed.models import cached_model

        try:
            return cached_model(self.spec, self.device)
        except CellsegError as exc:
            raise InputError(f"cannot load model {str(self.spec)!r}: {getattr(exc, 'reason', exc)}") from exc

def _cached_restore_model(spec: Any, device: str) -> Any:
    from cellseg_bridge.distributed.models import cached_model

    return cached_model(spec, device, kind="restore")

def segment_task(item: WorkItem, model: Any, options: SegmentOptions, axes: str | None,
                 restore: Any = None, restore_target: str = DEFAULTS.restore.target,
                 geojson: GeoJsonOptions = DEFAULTS.geojson, track: TrackOptions = DEFAULTS.track) -> dict:
    """Segment one scene and write its outputs on a cluster worker (models cached per worker process).

    Returns ``{"n_cells", "diameter", "model_choice"}``, as the job of a batch in this process.
    """
    from cellseg_bridge.segmentation.pipeline import segment

    segment_fn: Callable[..., Any] = segment
    if restore:
        from cellseg_bridge.batch.restore import restoring_segment_fn

        segment_fn = restoring_segment_fn(segment, restore, target=restore_target, device=options.device,
                                          load=_cached_restore_model)
    n_cells, diameter, choice = segment_item(item, item.output_map(), WorkerModel(model, options.device),
                                             segment_fn, options, axes, geojson, track)
    return {"n_cells": n_cells, "diameter": diameter, "model_choice": choice}


def segment_large_task(item: WorkItem, model: Any, options: SegmentOptions, axes: str | None,
                       chunk_size: int | None, overlap: int | None, client: Any) -> dict:
    """Segment one large plane in chunks (their tasks on ``client``, if any) into the item's outputs.

    Returns ``n_cells``, ``diameter`` and the chunk counts (``chunks``, ``duplicates``, ``truncated``).
    """
    import shutil

    import dask.array as da

    from cellseg_bridge.distributed.chunked import read_zarr_labels, segment_large
    from cellseg_bridge.io.ome_zarr import write_ome_zarr

    outputs = item.output_map()
    scratch = outputs["ome_zarr"].with_name(f".{outputs['ome_zarr'].name}.labels.zarr")
    try:
        result = segment_large(str(item.source), model, out=[scratch, outputs["labels"]],
                               axes=axes_for(item.source, axes), scene=item.key, chunk_size=chunk_size,
                               overlap=overlap, client=client, overwrite=True, options=options)
        # the image (read lazily) and the merged labels, streamed into one OME-Zarr
        image = open_scene(item.source, item.key, axes)
        labels = da.from_zarr(read_zarr_labels(scratch))[None, None]
        write_ome_zarr(outputs["ome_zarr"], image.data, labels, name=outputs["ome_zarr"].name.removesuffix(".ome.zarr"),
                       pixel_sizes=dict(image.attrs.get("physical_pixel_sizes") or {}),
                       channel_names=[str(n) for n in image.attrs.get("channel_names") or []] or None)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"n_cells": result.n_cells, "diameter": result.diameter, "model_choice": None,
            "chunks": result.n_chunks, "duplicates": result.duplicates, "truncated": result.truncated}

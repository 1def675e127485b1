"""Segment many files (every scene of each) and write the results Fiji users need.

:func:`segment_files` is the batch behind ``cellseg segment``. For every input
file and scene it opens the image, segments it (the model is loaded ONCE for
the whole batch, and only when there is something to do) and writes, into
``out_dir``, under the scene's base name ``<base>`` (``<stem>`` or
``<stem>_s<index>_<scene>``, the rule of :mod:`cellseg_bridge.batch.naming` shared
with ``convert``):

==========================  ================================================  =====================
file                        content                                           when
==========================  ================================================  =====================
``<base>_labels.ome.tif``   label image (T, Z, Y, X; uint16, uint32 beyond    ``"labels"`` in outputs
                            65535 labels) with the image's pixel sizes
``<base>_RoiSet.zip``       one pixel-exact ImageJ ROI per label and plane,   ``"rois"``
                            with z/t positions (ROI Manager > More > Open)
``<base>_cells.csv``        per-cell table (:mod:`cellseg_bridge.io.tables`):   ``"csv"``
                            label, t, z, area/volume, centroid, mean
                            intensity of every channel
``<base>_overlay.png``      the segmented channel in gray with outlines in    ``"overlay"``
                            magenta: first time point, middle Z plane
``<base>_seg.npy``          Cellpose GUI file (masks, outlines, flows;        ``save_seg_npy``,
                            ``filename`` = the input's absolute path;         2D images only
                            pixel destinations and ``[dY, dX, cellprob]``
                            so that the GUI recomputes masks at other
                            thresholds; ``chan_choose`` as Cellpose's pair)
``<base>_flows.ome.tif``    network output per pixel: channels ``dY``,        ``save_flows``
                            ``dX`` (``dZ`` first in 3D) and ``cellprob``
``<base>_cells.geojson``    QuPath GeoJSON: one feature per cell and plane,   ``save_geojson``
                            pixel-exact polygons with measurements
                            (:mod:`cellseg_bridge.io.geojson`)
``<base>_tracks.csv``       labels linked over time (:mod:`~cellseg_bridge.   ``track``,
                            core.tracking`): track, frame, label, centroid,   time-lapses only
                            area (:func:`~cellseg_bridge.batch.scene_outputs.
                            write_tracks`)
``<base>.ome.zarr``         the image and its labels as OME-NGFF 0.4          ``label_format=
                            (``labels/cells``, :mod:`cellseg_bridge.io.       "ome-zarr"`` (instead
                            ome_zarr`), read by napari, ome-zarr-py, ...)      of the labels TIFF);
                                                                              chunked planes
==========================  ================================================  =====================

Positions and modes:

- ROIs: labels with one stack axis (Z or T) carry the plain stack position;
  with both, or when the image has several channels, hyperstack positions
  (channel 0 = "all channels"), so they land on the right plane of the
  original image and of the label image.
- CSV: 3D objects (one row per label and time point, ``volume``,
  ``centroid_z``) for ``do_3d`` or ``stitch_threshold > 0``; otherwise a Z
  stack is segmented plane by plane and measured per plane (a ``z`` column).
- ``_seg.npy`` is written for images with one time point and one plane only
  (Cellpose's GUI format); it is skipped, with a log message, for stacks.
- ``track``: every cell keeps its track id as label value in all outputs (labels,
  ROIs named ``track_0007_t003``, a ``track`` column in the CSV, GeoJSON names).
  A scene with one time point is not tracked: it is segmented as usual, without
  ``_tracks.csv``, and a log line says so (not an error); so is a Z stack segmented
  plane by plane (tracking needs 2D frames, or 3D objects: ``do_3d`` or
  ``stitch_threshold``). Planes segmented in chunks get neither tracks nor GeoJSON.

Every output of an item is written into a hidden staging folder in
``out_dir`` and moved into place only when all of them are complete, so a
failed or interrupted item leaves no output behind. An item whose outputs all
exist is skipped (a re-run resumes) unless ``overwrite``, or unless they were
made with other parameters (model weights, options): the run record
``cellseg_run.json`` (:mod:`cellseg_bridge.batch.run_record`) says how each
item was made, and such an item is redone, with the reason logged. A file that cannot
be read or segmented is reported with the reason and the batch goes on.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from cellseg_bridge.batch.items import WorkItem
from cellseg_bridge.batch.naming import (
    LARGE_SEGMENT_SUFFIXES,
    SEGMENT_SUFFIXES,
    open_scene,
    scene_items,
    segment_output_endings,
    select_scene,
)
from cellseg_bridge.batch.report import BatchReport
from cellseg_bridge.batch.run_record import RunRecord, models_facts
from cellseg_bridge.batch.runner import expand_inputs, plan_inputs, run_items
from cellseg_bridge.batch.segment_job import ModelOnce, segment_item, segment_large_task, segment_task
from cellseg_bridge.config import DEFAULTS, GeoJsonOptions, SegmentOptions, TrackOptions
from cellseg_bridge.errors import CellsegError, InputError

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_OUTPUTS",
    "LABEL_FORMATS",
    "LARGE_SUFFIXES",
    "OUTPUT_KINDS",
    "OUTPUT_SUFFIXES",
    "has_large_planes",
    "segment_files",
]

#: Output suffix of every kind of output, appended to the scene's base name.
OUTPUT_SUFFIXES = SEGMENT_SUFFIXES
#: Formats of the label image: an OME-TIFF of labels, or an OME-Zarr of the image with its labels.
LABEL_FORMATS = ("ome-tiff", "ome-zarr", "ome-zarr-0.5")
#: The output kind that replaces ``labels`` for each OME-Zarr label format (OME-NGFF 0.4, 0.5).
_ZARR_KINDS = {"ome-zarr": "ome_zarr", "ome-zarr-0.5": "ome_zarr_v05"}
#: Kinds that ``outputs`` may name (``seg_npy``, ``flows``, ``geojson``, ``tracks`` have their own switches).
OUTPUT_KINDS = ("labels", "rois", "csv", "overlay")
#: What ``cellseg segment`` writes unless told otherwise.
DEFAULT_OUTPUTS = OUTPUT_KINDS

#: Outputs of a plane segmented in chunks (no ROIs, table or overlay: a whole slide holds
#: hundreds of thousands of cells).
LARGE_SUFFIXES = LARGE_SEGMENT_SUFFIXES

#: The segmentation pipeline, looked up when a batch starts (so that a stand-in module can take its place).
PIPELINE_MODULE = "cellseg_bridge.segmentation.pipeline"


def batch_options(options: SegmentOptions | None, model: Any, overrides: dict[str, Any]) -> tuple[SegmentOptions, Any]:
    """The options of a batch (``options`` with ``overrides``) and the model to load or use.

    ``model`` None means ``options.model``; a name or path also becomes ``options.model``;
    a loaded model object is used as it is.
    """
    unknown = SegmentOptions.unknown_names(overrides)
    if unknown:  # said in the batch's words: these keywords are neither batch parameters nor options
        raise InputError(f"unknown segmentation option(s) {', '.join(unknown)} "
                         f"(known: {', '.join(SegmentOptions.names())})")
    opts = SegmentOptions.derive(options, **overrides)
    if model is None:
        return opts, opts.model
    if isinstance(model, (str, Path)):
        opts = SegmentOptions.derive(opts, model=str(model))
    return opts, model


def segment_files(
    inputs: Iterable[str | Path] | str | Path,
    out_dir: str | Path,
    *,
    options: SegmentOptions | None = None,
    model: Any = None,
    overwrite: bool = DEFAULTS.convert.overwrite,
    scene: int | str | None = DEFAULTS.read.scene,
    axes: str | None = DEFAULTS.read.axes,
    outputs: Sequence[str] = DEFAULT_OUTPUTS,
    save_seg_npy: bool = False,
    save_flows: bool = False,
    save_geojson: bool = False,
    track: bool = False,
    geojson_options: GeoJsonOptions | None = None,
    track_options: TrackOptions | None = None,
    recursive: bool = DEFAULTS.batch.recursive,
    quiet: bool = False,
    segment_fn: Callable[..., Any] | None = None,
    load_model_fn: Callable[..., Any] | None = None,
    restore: str | Sequence[str] | None = None,
    restore_target: str = DEFAULTS.restore.target,
    client: Any = None,
    workers: int | None = DEFAULTS.distributed.workers,
    scheduler: str | None = DEFAULTS.distributed.scheduler,
    chunked: bool = False,
    chunk_size: int | None = DEFAULTS.distributed.chunk_size,
    overlap: int | None = None,
    chunked_threshold_pixels: int = DEFAULTS.distributed.chunked_threshold_pixels,
    label_format: str = LABEL_FORMATS[0],
    **segment_options: Any,
) -> BatchReport:
    """Segment every scene of every input and write labels, ROIs, a table and an overlay.

    Parameters
    ----------
    inputs : path, or iterable of paths / folders / glob patterns
        Images (any format :func:`~cellseg_bridge.io.reader.open_image` reads).
        Folders and patterns keep the supported name endings; hidden and
        temporary files are skipped.
    out_dir : str or Path
        Output folder (created if needed); names in the module docstring.
    options : SegmentOptions, optional
        The segmentation options (default :data:`~cellseg_bridge.config.DEFAULTS` ``.segment``);
        ``**segment_options`` override single fields.
    model : str, Path or model object, optional
        Default ``options.model``. Model name or checkpoint path, loaded once with
        :func:`cellseg_bridge.segmentation.pipeline.load_model` (on ``device``) when the
        first item needs it (on a cluster: once per worker process); or an already loaded model.
    overwrite : bool
        Redo items whose outputs all exist (default: skip them, i.e. resume).
    scene : int or str, optional
        Only this scene (index or name); default every scene.
    axes : str, optional
        Axis order of plain TIFFs with ambiguous axes (e.g. ``"ZYX"``).
    outputs : sequence of str
        Which of ``labels``, ``rois``, ``csv``, ``overlay`` to write.
    save_seg_npy : bool
        Also write ``<base>_seg.npy`` for 2D images (Cellpose GUI).
    save_flows : bool
        Also write ``<base>_flows.ome.tif``.
    save_geojson : bool
        Also write ``<base>_cells.geojson`` (QuPath), as ``geojson_options`` say.
    track : bool
        Link labels over time (``track_options``) and write ``<base>_tracks.csv`` (time-lapses).
    geojson_options, track_options : optional
        Default :data:`~cellseg_bridge.config.DEFAULTS` ``.geojson`` / ``.track``.
    recursive : bool
        Descend into sub-folders of folder inputs.
    quiet : bool
        No progress bar.
    segment_fn, load_model_fn : callable, optional
        Stand-ins for :func:`cellseg_bridge.segmentation.pipeline.segment` and
        :func:`~cellseg_bridge.segmentation.pipeline.load_model` (tests, custom pipelines),
        with the same signatures; in this process only.
    restore : str or sequence of str, optional
        Restore the segmented (and nuclear) channel first: restoration types
        (``"denoise"``, ...; model ``<type>_<restore_target>``) or model
        names/paths, in order (:func:`cellseg_bridge.batch.restore.restoring_segment_fn`).
        Labels are of the restored image; the table and overlay use the original pixels.
        Not for planes segmented in chunks: ``chunked=True`` is refused, and a
        plane above the threshold is reported failed.
    restore_target : str
        Model family of ``restore`` types.
    client, workers, scheduler
        Where to run (:func:`~cellseg_bridge.distributed.executor.executor_for`): a Dask
        client, a LocalCluster of ``workers`` processes, or the workers of a running
        ``scheduler``, one task per scene, with a manifest (``<out_dir>/cellseg_manifest.jsonl``);
        none of them: in this process.
    chunked : bool
        Segment every plane in chunks (:func:`~cellseg_bridge.distributed.chunked.segment_large`,
        outputs :data:`LARGE_SUFFIXES`); otherwise only planes of more than
        ``chunked_threshold_pixels`` pixels.
    chunk_size, overlap : int, optional
        Chunk core side and overlap (defaults: ``DEFAULTS.distributed``).
    chunked_threshold_pixels : int
        Planes above this many pixels are segmented in chunks.
    label_format : {"ome-tiff", "ome-zarr", "ome-zarr-0.5"}
        ``"ome-zarr"``: write ``<base>.ome.zarr`` (the image and its labels, OME-NGFF 0.4;
        ``"ome-zarr-0.5"``: 0.5, zarr format 3) instead of ``<base>_labels.ome.tif``. Planes
        segmented in chunks write both, OME-NGFF 0.4.
    **segment_options
        Options of :class:`~cellseg_bridge.config.SegmentOptions` (``diameter``,
        ``channel``, ``nuclear_channel``, ``cellprob_threshold``,
        ``flow_threshold``, ``do_3d``, ``stitch_threshold``, ``tile_size``,
        ``augment``, ``device``, ...); default :data:`~cellseg_bridge.config.DEFAULTS`.

    Returns
    -------
    BatchReport
        Outputs written and skipped, failures ``(input, reason)``, and one
        record per scene (``n_cells``, ``diameter``, ``model_choice``; chunk counts
        for planes segmented in chunks). Failures never raise.

    Raises
    ------
    InputError
        Unknown output kinds or segmentation options, nothing to write, or
        ``restore`` with ``chunked``.
    """
    from cellseg_bridge.distributed.executor import executor_for
    from cellseg_bridge.io.reader import SUPPORTED_SUFFIXES

    out_dir = Path(out_dir)
    opts, model = batch_options(options, model, segment_options)
    kinds = check_output_kinds(outputs, save_seg_npy, save_flows, save_geojson, track)
    geo = geojson_options or DEFAULTS.geojson
    linking = track_options or DEFAULTS.track
    if label_format not in LABEL_FORMATS:
        raise InputError(f"unknown label format {label_format!r} (known: {', '.join(LABEL_FORMATS)})")
    if label_format in _ZARR_KINDS:
        kinds = [_ZARR_KINDS[label_format] if k == "labels" else k for k in kinds]
    if restore and chunked:
        raise InputError("restoration before segmentation is not available for chunked segmentation yet "
                         "(restore first with `cellseg restore`, then segment the restored files)")
    plan = functools.partial(_plan, out_dir=out_dir, kinds=tuple(kinds), scene=scene, axes=axes,
                             chunked=chunked, threshold=chunked_threshold_pixels, restore=bool(restore),
                             objects_3d=bool(opts.do_3d or opts.stitch_threshold))
    items, problems = plan_inputs(inputs, plan, recursive=recursive, suffixes=tuple(SUPPORTED_SUFFIXES),
                                  exclude=[out_dir], skip_endings=segment_output_endings())
    report = BatchReport(model=str(model) if isinstance(model, (str, Path)) else type(model).__name__)
    batch = {"outputs": list(kinds), "scene": scene, "axes": axes, "restore": restore or None,
             "restore_target": restore_target if restore else None, "chunked": chunked,
             "chunk_size": chunk_size, "overlap": overlap, "chunked_threshold_pixels": chunked_threshold_pixels,
             "label_format": label_format, "geojson": dataclasses.asdict(geo) if save_geojson else None,
             "track": dataclasses.asdict(linking) if track else None}
    record = RunRecord(out_dir, "segment", dataclasses.asdict(opts), batch, model=models_facts([model]),
                       device=opts.device, precision=opts.precision)
    with executor_for(client, workers, scheduler) as executor:
        if executor.in_process:
            task = _local_task(model, opts, axes, segment_fn, load_model_fn, restore, restore_target, geo, linking)
            manifest = None
        elif segment_fn is not None or load_model_fn is not None:
            raise InputError("segment_fn and load_model_fn stand-ins run in this process only (no Dask client, "
                             "workers or scheduler)")
        else:
            task = functools.partial(segment_task, model=model, options=opts, axes=axes, restore=restore,
                                     restore_target=restore_target, geojson=geo, track=linking)
            manifest = out_dir / DEFAULTS.distributed.manifest_name
        large = functools.partial(segment_large_task, model=model, options=opts, axes=axes, chunk_size=chunk_size,
                                  overlap=overlap, client=getattr(executor, "client", None))
        report = run_items(items, task, executor=executor, manifest=manifest, overwrite=overwrite, quiet=quiet,
                           description="segment", local=_is_large, local_task=large, problems=problems,
                           report=report, stale=record.stale_reason())
    record.write(report)
    return report


def _local_task(model: Any, options: SegmentOptions, axes: str | None, segment_fn: Callable[..., Any] | None,
                load_model_fn: Callable[..., Any] | None, restore: str | Sequence[str] | None,
                restore_target: str, geojson: GeoJsonOptions = DEFAULTS.geojson,
                track: TrackOptions = DEFAULTS.track) -> Callable[[WorkItem], dict]:
    """The job of a batch in this process: the model loaded once (on first use), ``segment_fn`` or the pipeline."""
    if segment_fn is None or load_model_fn is None:
        pipeline = importlib.import_module(PIPELINE_MODULE)
        segment_fn = segment_fn or pipeline.segment
        load_model_fn = load_model_fn or pipeline.load_model
    if restore:
        from cellseg_bridge.batch.restore import restoring_segment_fn

        segment_fn = restoring_segment_fn(segment_fn, restore, target=restore_target, device=options.device)
    models = ModelOnce(model, options.device, load_model_fn)

    def job(item: WorkItem) -> dict:
        n_cells, diameter, choice = segment_item(item, item.output_map(), models, segment_fn, options, axes,
                                                 geojson, track)
        return {"n_cells": n_cells, "diameter": diameter, "model_choice": choice}

    return job


def _is_large(item: WorkItem) -> bool:
    """Items segmented in chunks: their chunks go to the cluster themselves, so the item runs here."""
    return item.kinds == tuple(LARGE_SUFFIXES)


def _plan(source: Path, *, out_dir: Path, kinds: tuple[str, ...], scene: int | str | None, axes: str | None,
          chunked: bool, threshold: int, restore: bool, objects_3d: bool = False) -> list[WorkItem]:
    """The items of one input: one per scene, its outputs by kind (large planes: :data:`LARGE_SUFFIXES`)."""
    from cellseg_bridge.io.reader import list_scenes

    scenes = [str(s) for s in list_scenes(source)]
    planned = []
    for item in scene_items(source, scenes, out_dir, [OUTPUT_SUFFIXES[k] for k in kinds], scene=scene, kinds=kinds):
        sizes = open_scene(item.source, item.key, axes).sizes  # lazily: metadata only
        if chunked or sizes["Y"] * sizes["X"] > threshold:
            if restore:
                raise InputError(f"scene {item.key}: a {sizes['Y']}x{sizes['X']} plane is segmented in chunks, "
                                 "which cannot restore yet (restore it first with `cellseg restore`)")
            if {"geojson", "tracks"} & set(kinds):
                log.info("%s: segmented in chunks, which writes labels only (no GeoJSON, no tracks)", item.name)
            base = item.outputs[0].name[: -len(OUTPUT_SUFFIXES[kinds[0]])]
            item = dataclasses.replace(item, kinds=tuple(LARGE_SUFFIXES),
                                       outputs=tuple(out_dir / (base + s) for s in LARGE_SUFFIXES.values()))
        else:
            if "seg_npy" in kinds and (sizes["T"] > 1 or sizes["Z"] > 1):
                log.info("%s: not a single 2D plane; no _seg.npy (Cellpose's GUI format is 2D here)", item.name)
                item = _without(item, "seg_npy")
            if "tracks" in kinds and sizes["T"] == 1:
                log.info("%s: one time point, nothing to track; segmented without --track (no _tracks.csv)",
                         item.name)
                item = _without(item, "tracks")
            elif "tracks" in kinds and sizes["Z"] > 1 and not objects_3d:
                log.info("%s: a Z stack segmented plane by plane cannot be tracked (use --do-3d or "
                         "--stitch-threshold); segmented without --track", item.name)
                item = _without(item, "tracks")
        planned.append(item)
    return planned


def _without(item: WorkItem, kind: str) -> WorkItem:
    """The item without its output of ``kind``."""
    keep = [k != kind for k in item.kinds]
    return dataclasses.replace(item, kinds=tuple(k for k, on in zip(item.kinds, keep) if on),
                               outputs=tuple(o for o, on in zip(item.outputs, keep) if on))


def has_large_planes(
    inputs: Iterable[str | Path] | str | Path,
    *,
    scene: int | str | None = None,
    axes: str | None = None,
    recursive: bool = DEFAULTS.batch.recursive,
    threshold: int = DEFAULTS.distributed.chunked_threshold_pixels,
) -> bool:
    """Whether any scene of the inputs has planes of more than ``threshold`` pixels (files opened lazily).

    Unreadable inputs count as small (a batch reports them).
    """
    from cellseg_bridge.io.reader import SUPPORTED_SUFFIXES, list_scenes

    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    files, _ = expand_inputs(inputs, recursive=recursive, suffixes=tuple(SUPPORTED_SUFFIXES),
                             skip_endings=segment_output_endings())
    for source in files:
        try:
            scenes = [str(s) for s in list_scenes(source)]
            indices = range(len(scenes)) if scene is None else [select_scene(scenes, scene, source)]
            for index in indices:
                sizes = open_scene(source, index, axes).sizes
                if sizes["Y"] * sizes["X"] > threshold:
                    return True
        except (CellsegError, OSError, ValueError, KeyError):
            continue  # the batch reports what is wrong with this input
    return False


# --------------------------------------------------------------------------- planning


def check_output_kinds(outputs: Sequence[str], save_seg_npy: bool, save_flows: bool, save_geojson: bool = False,
                       track: bool = False) -> list[str]:
    """The output kinds to write, in :data:`OUTPUT_KINDS` order, then ``seg_npy``, ``flows``, ``geojson``, ``tracks``.

    Parameters
    ----------
    outputs : str or sequence of str
        Kinds of :data:`OUTPUT_KINDS`.
    save_seg_npy, save_flows, save_geojson, track : bool
        Add ``"seg_npy"`` / ``"flows"`` / ``"geojson"`` / ``"tracks"``.

    Returns
    -------
    list of str

    Raises
    ------
    InputError
        Unknown kinds, or nothing to write.
    """
    if isinstance(outputs, str):
        outputs = [outputs]
    unknown = [k for k in outputs if k not in OUTPUT_KINDS]
    if unknown:
        raise InputError(f"unknown output kind(s) {', '.join(map(repr, unknown))} (known: {', '.join(OUTPUT_KINDS)})")
    kinds = [k for k in OUTPUT_KINDS if k in outputs]
    kinds += ["seg_npy"] * bool(save_seg_npy) + ["flows"] * bool(save_flows)
    kinds += ["geojson"] * bool(save_geojson) + ["tracks"] * bool(track)
    if not kinds:
        raise InputError("nothing to write: every output is switched off")
    return kinds

"""``segment_files`` on a Dask cluster: one task per scene, planes above a size in chunks.

Each worker loads the model once (:mod:`cellseg_bridge.distributed.models`); the
tasks run :func:`cellseg_bridge.batch.segment.segment_item`, the job of the local
batch, so both write the same outputs. Large planes (above
``chunked_threshold_pixels``, or all with ``chunked=True``) are segmented with
:func:`~cellseg_bridge.distributed.chunked.segment_large`, their chunks spread
over the same cluster; they write ``<base>_labels.ome.zarr`` and a tiled
``<base>_labels.ome.tif`` (no ROIs, table or overlay: a whole slide holds
hundreds of thousands of cells).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from cellseg_bridge.batch.naming import open_scene, scene_is_2d, scene_items, select_scene
from cellseg_bridge.batch.runner import WorkItem, expand_inputs
from cellseg_bridge.batch.segment import OUTPUT_SUFFIXES, batch_options, check_output_kinds, segment_item
from cellseg_bridge.config import DEFAULTS, SegmentOptions
from cellseg_bridge.distributed.executor import DistributedReport, plan_inputs, run_items, with_cluster, with_problems
from cellseg_bridge.errors import CellsegError, InputError

__all__ = ["LARGE_SUFFIXES", "has_large_planes", "segment_files_distributed"]

#: Outputs of an item segmented in chunks.
LARGE_SUFFIXES = {"labels_zarr": "_labels.ome.zarr", "labels": "_labels.ome.tif"}

def has_large_planes(
    inputs: Iterable[str | Path] | str | Path,
    *,
    scene: int | str | None = None,
    axes: str | None = None,
    recursive: bool = DEFAULTS.batch.recursive,
    threshold: int = DEFAULTS.distributed.chunked_threshold_pixels,
) -> bool:
    """Whether any scene of the inputs has planes of more than ``threshold`` pixels (files opened lazily).

    Unreadable inputs count as small (the batch reports them).
    """
    from cellseg_bridge.io.reader import SUPPORTED_SUFFIXES, list_scenes

    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    files, _ = expand_inputs(inputs, recursive=recursive, suffixes=tuple(SUPPORTED_SUFFIXES))
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

class _WorkerModel:
    """The ``.get()`` interface of the sequential batch, backed by the per-process model cache."""

    def __init__(self, spec: Any, device: str) -> None:
        self.spec, self.device = spec, device

    def get(self) -> Any:
        from cellseg_bridge.distributed.models import cached_model

        try:
            return cached_model(self.spec, self.device)
        except CellsegError as exc:
            raise InputError(f"cannot load model {str(self.spec)!r}: {getattr(exc, 'reason', exc)}") from exc

def _cached_restore_model(spec: Any, device: str) -> Any:
    from cellseg_bridge.distributed.models import cached_model

    return cached_model(spec, device, kind="restore")

def _segment_task(item: WorkItem, kinds: tuple[str, ...], model: Any, options: SegmentOptions,
                  axes: str | None, restore: Any = None, restore_target: str = DEFAULTS.restore.target) -> dict:
    """Segment one scene and write its outputs (the job of :func:`~cellseg_bridge.batch.segment.segment_files`)."""
    from cellseg_bridge.segmentation.pipeline import segment

    segment_fn = segment
    if restore:
        from cellseg_bridge.batch.restore import restoring_segment_fn

        segment_fn = restoring_segment_fn(segment, restore, target=restore_target, device=options.device,
                                          load=_cached_restore_model)
    outputs = dict(zip(kinds, item.outputs))
    n_cells, diameter = segment_item(item, outputs, _WorkerModel(model, options.device), segment_fn, options, axes)
    return {"n_cells": n_cells, "diameter": diameter}

def _segment_large_task(item: WorkItem, model: Any, options: SegmentOptions, axes: str | None,
                        chunk_size: int | None, overlap: int | None, client: Any, overwrite: bool) -> dict:
    from cellseg_bridge.batch.naming import axes_for
    from cellseg_bridge.distributed.chunked import segment_large

    result = segment_large(str(item.source), model, out=list(item.outputs), axes=axes_for(item.source, axes),
                           scene=item.key, chunk_size=chunk_size, overlap=overlap, client=client,
                           overwrite=True, options=options)
    return {"n_cells": result.n_cells, "diameter": result.diameter, "chunks": result.n_chunks,
            "duplicates": result.duplicates, "truncated": result.truncated}

def segment_files_distributed(
    inputs: Iterable[str | Path] | str | Path,
    out_dir: str | Path,
    *,
    client: Any = None,
    workers: int | None = None,
    scheduler: str | None = None,
    options: SegmentOptions | None = None,
    model: Any = None,
    overwrite: bool = DEFAULTS.convert.overwrite,
    scene: int | str | None = DEFAULTS.read.scene,
    axes: str | None = DEFAULTS.read.axes,
    outputs: Sequence[str] = ("labels", "rois", "csv", "overlay"),
    save_seg_npy: bool = False,
    save_flows: bool = False,
    recursive: bool = DEFAULTS.batch.recursive,
    quiet: bool = False,
    chunked: bool = False,
    chunk_size: int | None = None,
    overlap: int | None = None,
    chunked_threshold_pixels: int = DEFAULTS.distributed.chunked_threshold_pixels,
    restore: str | Sequence[str] | None = None,
    restore_target: str = DEFAULTS.restore.target,
    **segment_options: Any,
) -> DistributedReport:
    """:func:`~cellseg_bridge.batch.segment.segment_files` on a Dask cluster, large planes in chunks.

    Parameters
    ----------
    inputs, out_dir, model, overwrite, scene, axes, outputs, save_seg_npy, save_flows, recursive, quiet
        As :func:`~cellseg_bridge.batch.segment.segment_files` (same output names).
    client : distributed.Client, optional
        The cluster. Or ``workers`` (a LocalCluster started and closed here)
        or ``scheduler`` (address of a running one). None of the three: in this process.
    chunked : bool
        Segment every plane in chunks (:func:`segment_large`); otherwise only
        planes of more than ``chunked_threshold_pixels`` pixels.
    chunk_size, overlap : int, optional
        Chunk core side and overlap (defaults: ``DEFAULTS.distributed``).
    restore, restore_target
        Restore before segmenting, as :func:`~cellseg_bridge.batch.segment.segment_files`
        (each worker loads the restoration models once). Not for planes segmented
        in chunks: ``chunked=True`` is refused, and a plane above the threshold
        is reported failed.
    **segment_options
        :class:`~cellseg_bridge.config.SegmentOptions` fields.

    Returns
    -------
    DistributedReport
        Per item: ``result`` holds ``n_cells`` and ``diameter`` (and chunk
        counts for chunked items). Failures never raise.
    """

    from cellseg_bridge.batch.naming import open_scene
    from cellseg_bridge.io.reader import list_scenes

    out_dir = Path(out_dir)
    opts, model = batch_options(options, model, segment_options)
    kinds = check_output_kinds(outputs, save_seg_npy, save_flows)
    if restore and chunked:
        raise InputError("restoration before segmentation is not available for chunked segmentation yet "
                         "(restore first with `cellseg restore`, then segment the restored files)")
    large_items: set[str] = set()
    item_kinds: dict[str, tuple[str, ...]] = {}

    def plan(source: Path) -> list[WorkItem]:
        scenes = [str(s) for s in list_scenes(source)]
        planned = []
        for item in scene_items(source, scenes, out_dir, [OUTPUT_SUFFIXES[k] for k in kinds], scene=scene):
            sizes = open_scene(item.source, item.key, axes).sizes
            if chunked or sizes["Y"] * sizes["X"] > chunked_threshold_pixels:
                if restore:
                    raise InputError(f"scene {item.key}: a {sizes['Y']}x{sizes['X']} plane is segmented in chunks, "
                                     "which cannot restore yet (restore it first with `cellseg restore`)")
                base = item.outputs[0].name[: -len(OUTPUT_SUFFIXES[kinds[0]])]
                item = dataclasses.replace(item, outputs=tuple(out_dir / (base + s) for s in LARGE_SUFFIXES.values()))
                large_items.add(item.name)
            else:
                these = [k for k in kinds if k != "seg_npy" or scene_is_2d(item.source, item.key, axes)]
                item = dataclasses.replace(item, outputs=tuple(o for k, o in zip(kinds, item.outputs) if k in these))
                item_kinds[item.name] = tuple(these)
            planned.append(item)
        return planned

    items, problems = plan_inputs(inputs, plan, out_dir=out_dir, recursive=recursive)

    def run(c: Any) -> DistributedReport:
        small = _Dispatch(functools.partial(_segment_task, model=model, options=opts, axes=axes,
                                            restore=restore, restore_target=restore_target), item_kinds)
        large = functools.partial(_segment_large_task, model=model, options=opts,
                                  axes=axes, chunk_size=chunk_size, overlap=overlap, client=c, overwrite=overwrite)

        def here(item: WorkItem) -> dict:
            return large(item) if item.name in large_items else small(item)

        return run_items(items, small, client=c, manifest=out_dir / DEFAULTS.distributed.manifest_name,
                         overwrite=overwrite, quiet=quiet, description="segment",
                         local=lambda item: item.name in large_items, local_task=here)

    return with_problems(with_cluster(run, client, workers, scheduler), problems)

class _Dispatch:
    """Picklable task for the small items: the segmentation task with the item's output kinds."""

    def __init__(self, small: Callable[..., dict], kinds: dict[str, tuple[str, ...]]) -> None:
        self.small, self.kinds = small, kinds

    def __call__(self, item: WorkItem) -> dict:
        return self.small(item, kinds=self.kinds[item.name])

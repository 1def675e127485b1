"""Batches on a Dask cluster: one task per work item (file, scene), a manifest, resume, progress.

:func:`run_items` is generic: it runs ``task(item)`` for every
:class:`~cellseg_bridge.batch.WorkItem` on the cluster's workers (or in this
process without a client) and collects what happened. Any command whose job is
"a function of one item that writes the item's outputs atomically" plugs in
(``segment`` and ``convert`` here; ``restore`` later). Semantics, as the
sequential batch (:mod:`cellseg_bridge.batch`):

- an item whose outputs all exist is skipped (a re-run resumes) unless ``overwrite``;
- a task that raises is reported as ``failed`` with its reason; the others go on;
- two items that would write the same output: the second fails;
- a worker that dies (killed, out of memory) loses nothing: the scheduler
  reruns its tasks on the other workers (``distributed.scheduler.allowed-failures``
  times, default 3, then the item is reported failed: ``KilledWorker``);
- the **manifest** (``<out_dir>/cellseg_manifest.jsonl``) gets one JSON line per
  finished item: ``item``, ``source``, ``key``, ``outputs``, ``status``,
  ``reason``, ``seconds``, ``worker``, ``time`` and what the task returned. It is
  appended as items finish, so an interrupted run leaves the record of what was
  done; :func:`read_manifest` gives the last state of each item;
- progress: a tqdm bar on a terminal, and one log line per finished item.

The model is loaded once per worker process (:mod:`.models`). Large planes
(above ``chunked_threshold_pixels``, or all with ``chunked=True``) are
segmented with :func:`~cellseg_bridge.distributed.chunked.segment_large`, their
chunks spread over the same cluster; they write ``<base>_labels.ome.zarr`` and
a tiled ``<base>_labels.ome.tif`` (no ROIs, table or overlay: a whole slide
holds hundreds of thousands of cells).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellseg_bridge.batch import BatchReport, WorkItem, expand_inputs
from cellseg_bridge.config import DEFAULTS
from cellseg_bridge.errors import CellsegError, InputError

log = logging.getLogger(__name__)

__all__ = [
    "ItemOutcome",
    "DistributedReport",
    "run_items",
    "read_manifest",
    "plan_inputs",
    "segment_files_distributed",
    "convert_distributed",
    "LARGE_SUFFIXES",
    "has_large_planes",
]

#: Outputs of an item segmented in chunks.
LARGE_SUFFIXES = {"labels_zarr": "_labels.ome.zarr", "labels": "_labels.ome.tif"}


@dataclass
class ItemOutcome:
    """What happened to one work item.

    Attributes
    ----------
    item : str
        The item's name (input path, with the scene for multi-scene files).
    source : str
    key : object
        Scene index.
    outputs : list of str
    status : str
        ``"done"``, ``"skipped"`` or ``"failed"``.
    reason : str or None
    seconds : float or None
        Time in the task.
    worker : str or None
        Host and process id of the worker that ran it.
    result : dict
        What the task returned (e.g. ``n_cells``, ``diameter``).
    """

    item: str
    source: str
    key: Any = None
    outputs: list[str] = field(default_factory=list)
    status: str = "failed"
    reason: str | None = None
    seconds: float | None = None
    worker: str | None = None
    result: dict = field(default_factory=dict)


@dataclass
class DistributedReport(BatchReport):
    """A :class:`~cellseg_bridge.batch.BatchReport` with one :class:`ItemOutcome` per item."""

    items: list[ItemOutcome] = field(default_factory=list)
    manifest: Path | None = None
    seconds: float = 0.0

    def summary(self, verb: str = "done") -> str:
        """Counts of items, then one line per failure."""
        n = {s: sum(1 for i in self.items if i.status == s) for s in ("done", "skipped")}
        lines = [f"{n['done']} {verb}, {n['skipped']} skipped (already done), {len(self.failed)} failed"]
        lines += [f"FAILED {path}: {reason}" for path, reason in self.failed]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report: ``ok``, ``items``, ``failed``, ``counts``, ``manifest``, ``seconds``."""
        statuses = ("done", "skipped", "failed")
        return {
            "ok": self.ok,
            "items": [dataclasses.asdict(i) for i in self.items],
            "failed": [{"input": s, "reason": r} for s, r in self.failed],
            "counts": {s: sum(1 for i in self.items if i.status == s) for s in statuses},
            "manifest": str(self.manifest) if self.manifest else None,
            "seconds": self.seconds,
        }


def _guarded(task: Callable[[WorkItem], Any], item: WorkItem) -> dict:
    """Run one task inside the error boundary; never raises (a dying worker process aside)."""
    tic = time.perf_counter()
    out: dict[str, Any] = {"worker": f"{socket.gethostname()}:{os.getpid()}"}
    try:
        result = task(item)
        out.update(status="done", result=dict(result or {}))
    except CellsegError as exc:
        out.update(status="failed", reason=getattr(exc, "reason", None) or str(exc))
    except MemoryError:
        out.update(status="failed", reason="out of memory")
    except Exception as exc:  # noqa: BLE001 - a batch must survive any per-item failure
        log.debug("%s: unexpected failure", item.name, exc_info=True)
        out.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
    out["seconds"] = time.perf_counter() - tic
    return out


def read_manifest(path: str | Path) -> dict[str, dict]:
    """Last record of each item in a manifest (a torn last line is ignored)."""
    records: dict[str, dict] = {}
    path = Path(path)
    if not path.exists():
        return records
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "item" in rec:
            records[rec["item"]] = rec
    return records


def _append(manifest: Path | None, outcome: ItemOutcome) -> None:
    if manifest is None:
        return
    manifest.parent.mkdir(parents=True, exist_ok=True)
    rec = dataclasses.asdict(outcome) | {"time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with open(manifest, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def run_items(
    items: Sequence[WorkItem],
    task: Callable[[WorkItem], Any],
    *,
    client: Any = None,
    manifest: str | Path | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    description: str = "",
    local: Callable[[WorkItem], bool] | None = None,
    local_task: Callable[[WorkItem], Any] | None = None,
) -> DistributedReport:
    """Run ``task(item)`` for every item, on the cluster's workers; collect outcomes.

    Parameters
    ----------
    items : sequence of WorkItem
        What to do; ``outputs`` decide skip/resume.
    task : callable
        ``task(item) -> dict or None``, picklable (a module-level function or
        ``functools.partial`` of one); writes ``item.outputs`` atomically.
    client : distributed.Client, optional
        The cluster; None runs the tasks one after the other in this process.
    manifest : path, optional
        JSON-lines record of finished items (appended).
    overwrite : bool
        Redo items whose outputs exist.
    quiet : bool
        No progress bar.
    description : str
        Progress bar label.
    local : callable, optional
        ``local(item) -> True`` for items to run in this process instead of as
        one task (e.g. a large image whose chunks go to the cluster themselves).
    local_task : callable, optional
        What runs the items in this process (default ``task``).

    Returns
    -------
    DistributedReport
    """
    from tqdm import tqdm

    tic = time.perf_counter()
    report = DistributedReport(manifest=Path(manifest) if manifest else None)
    claimed: dict[Path, str] = {}
    todo: list[WorkItem] = []
    for item in items:
        clash = next((claimed[o.resolve()] for o in item.outputs if o.resolve() in claimed), None)
        if clash is not None:
            _finish(report, item, {"status": "failed", "reason": f"an output is also the output of {clash}; "
                                   "write them to different folders"}, None)
            continue
        for o in item.outputs:
            claimed[o.resolve()] = item.name
        if not overwrite and item.outputs and all(o.exists() for o in item.outputs):
            _finish(report, item, {"status": "skipped"}, None)
            continue
        todo.append(item)
    disable = quiet or not sys.stderr.isatty()
    with tqdm(total=len(todo), desc=description or None, unit="item", disable=disable, file=sys.stderr) as bar:
        remote = [i for i in todo if client is not None and not (local and local(i))]
        here = [i for i in todo if i not in remote]
        futures = {}
        if remote:
            from distributed import as_completed

            run_id = uuid.uuid4().hex  # unique task keys: never a result of another run
            for k, item in enumerate(remote):
                fut = client.submit(_guarded, task, item, pure=False, key=f"cellseg-item-{run_id}-{k}")
                futures[fut] = item
        for item in here:
            _finish(report, item, _guarded(local_task or task, item), report.manifest)
            bar.update()
        if futures:
            for fut in as_completed(futures):
                item = futures[fut]
                try:
                    out = fut.result()
                except Exception as exc:  # noqa: BLE001 - KilledWorker, lost scheduler, ...
                    out = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
                _finish(report, item, out, report.manifest)
                fut.release()
                bar.update()
    report.seconds = time.perf_counter() - tic
    log.info(report.summary().splitlines()[0] + f" in {report.seconds:.1f} s")
    return report


def _finish(report: DistributedReport, item: WorkItem, out: dict, manifest: Path | None) -> None:
    status = out.get("status", "failed")
    reason = out.get("reason")
    if status == "done":
        missing = [str(o) for o in item.outputs if not o.exists()]
        if missing:
            status, reason = "failed", f"task finished without writing {', '.join(missing)}"
    outcome = ItemOutcome(item=item.name, source=str(item.source), key=item.key,
                          outputs=[str(o) for o in item.outputs], status=status, reason=reason,
                          seconds=out.get("seconds"), worker=out.get("worker"), result=out.get("result") or {})
    report.items.append(outcome)
    if status == "done":
        report.done.extend(item.outputs)
        log.info("%s: done%s", item.name, f" ({outcome.seconds:.1f} s on {outcome.worker})" if outcome.seconds else "")
    elif status == "skipped":
        report.skipped.extend(item.outputs)
    else:
        report.failed.append((item.name, reason or "unknown failure"))
        log.error("%s: %s", item.name, reason)
    if status != "skipped":
        _append(manifest, outcome)


def plan_inputs(
    inputs: Iterable[str | Path] | str | Path,
    plan: Callable[[Path], Sequence[WorkItem]],
    *,
    out_dir: Path,
    recursive: bool = DEFAULTS.batch.recursive,
) -> tuple[list[WorkItem], list[tuple[str, str]]]:
    """Expand inputs (files, folders, patterns) and plan their items; ``(items, failures)``."""
    from cellseg_bridge.io.reader import SUPPORTED_SUFFIXES

    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    files, problems = expand_inputs(inputs, recursive=recursive, suffixes=tuple(SUPPORTED_SUFFIXES),
                                    exclude=[out_dir])
    items: list[WorkItem] = []
    for source in files:
        try:
            items.extend(plan(source))
        except CellsegError as exc:
            problems.append((str(source), getattr(exc, "reason", None) or str(exc)))
        except Exception as exc:  # noqa: BLE001 - one unreadable file must not stop the batch
            problems.append((str(source), f"{type(exc).__name__}: {exc}"))
    return items, problems


def _with_problems(report: DistributedReport, problems: list[tuple[str, str]]) -> DistributedReport:
    for source, reason in problems:
        log.error("%s: %s", source, reason)
        report.failed.append((source, reason))
        report.items.append(ItemOutcome(item=source, source=source, status="failed", reason=reason))
    return report


def _run_with_cluster(run: Callable[[Any], DistributedReport], client: Any, workers: int | None,
                      scheduler: str | None) -> DistributedReport:
    if client is not None or (workers is None and scheduler is None):
        return run(client)
    from cellseg_bridge.distributed.cluster import dask_client

    with dask_client(workers, scheduler) as new_client:
        return run(new_client)


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
    from cellseg_bridge.naming import select_scene
    from cellseg_bridge.segment_batch import open_scene

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


# --------------------------------------------------------------------------- convert


def _convert_task(item: WorkItem, axes: str | None, compression: str | None) -> dict:
    """Write one scene as OME-TIFF (the job of :func:`cellseg_bridge.convert.convert`)."""
    from cellseg_bridge.io.reader import open_image
    from cellseg_bridge.io.writers import write_ome_tiff
    from cellseg_bridge.naming import axes_for

    image = open_image(item.source, scene=item.key, axes=axes_for(item.source, axes))
    write_ome_tiff(image, item.outputs[0], physical_pixel_sizes=image.attrs.get("physical_pixel_sizes"),
                   channel_names=image.attrs.get("channel_names"), compression=compression,
                   name=image.attrs.get("scene"))
    return {"shape": [int(n) for n in image.shape]}


def convert_distributed(
    inputs: Iterable[str | Path] | str | Path,
    out_dir: str | Path,
    *,
    client: Any = None,
    workers: int | None = None,
    scheduler: str | None = None,
    overwrite: bool = DEFAULTS.convert.overwrite,
    scene: int | str | None = DEFAULTS.read.scene,
    axes: str | None = DEFAULTS.read.axes,
    compression: str | None = DEFAULTS.convert.compression,
    recursive: bool = DEFAULTS.batch.recursive,
    quiet: bool = False,
) -> DistributedReport:
    """:func:`cellseg_bridge.convert.convert` with one task per scene on a Dask cluster.

    ``client``, or ``workers`` (LocalCluster) or ``scheduler`` (address); none
    of them: in this process. Other parameters as ``convert``; a manifest is
    written to ``out_dir``.
    """
    import functools

    from cellseg_bridge.convert import plan_outputs

    out_dir = Path(out_dir)
    items, problems = plan_inputs(inputs, lambda s: plan_outputs(s, out_dir, scene=scene), out_dir=out_dir,
                                  recursive=recursive)
    task = functools.partial(_convert_task, axes=axes, compression=compression)

    def run(c: Any) -> DistributedReport:
        return run_items(items, task, client=c, manifest=out_dir / DEFAULTS.distributed.manifest_name,
                         overwrite=overwrite, quiet=quiet, description="convert")

    return _with_problems(_run_with_cluster(run, client, workers, scheduler), problems)


# --------------------------------------------------------------------------- segment


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


def _segment_task(item: WorkItem, kinds: tuple[str, ...], model: Any, device: str, options: dict,
                  axes: str | None, restore: Any = None, restore_target: str = DEFAULTS.restore.target) -> dict:
    """Segment one scene and write its outputs (the job of :func:`~cellseg_bridge.segment_batch.segment_files`)."""
    from cellseg_bridge.segment import segment
    from cellseg_bridge.segment_batch import segment_item

    segment_fn = segment
    if restore:
        from cellseg_bridge.restoration.batch import restoring_segment_fn

        segment_fn = restoring_segment_fn(segment, restore, target=restore_target, device=device,
                                          load=_cached_restore_model)
    outputs = dict(zip(kinds, item.outputs))
    n_cells, diameter, choice = segment_item(item, outputs, _WorkerModel(model, device), segment_fn, dict(options),
                                             axes)
    return {"n_cells": n_cells, "diameter": diameter, "model_choice": choice}


def _segment_large_task(item: WorkItem, model: Any, options: dict, axes: str | None, chunk_size: int | None,
                        overlap: int | None, client: Any, overwrite: bool) -> dict:
    from cellseg_bridge.distributed.chunked import segment_large
    from cellseg_bridge.naming import axes_for

    result = segment_large(str(item.source), model, out=list(item.outputs), axes=axes_for(item.source, axes),
                           scene=item.key, chunk_size=chunk_size, overlap=overlap, client=client,
                           overwrite=True, **options)
    return {"n_cells": result.n_cells, "diameter": result.diameter, "chunks": result.n_chunks,
            "duplicates": result.duplicates, "truncated": result.truncated}


def segment_files_distributed(
    inputs: Iterable[str | Path] | str | Path,
    out_dir: str | Path,
    *,
    client: Any = None,
    workers: int | None = None,
    scheduler: str | None = None,
    model: Any = DEFAULTS.segment.model,
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
    """:func:`~cellseg_bridge.segment_batch.segment_files` on a Dask cluster, large planes in chunks.

    Parameters
    ----------
    inputs, out_dir, model, overwrite, scene, axes, outputs, save_seg_npy, save_flows, recursive, quiet
        As :func:`~cellseg_bridge.segment_batch.segment_files` (same output names).
    client : distributed.Client, optional
        The cluster. Or ``workers`` (a LocalCluster started and closed here)
        or ``scheduler`` (address of a running one). None of the three: in this process.
    chunked : bool
        Segment every plane in chunks (:func:`segment_large`); otherwise only
        planes of more than ``chunked_threshold_pixels`` pixels.
    chunk_size, overlap : int, optional
        Chunk core side and overlap (defaults: ``DEFAULTS.distributed``).
    restore, restore_target
        Restore before segmenting, as :func:`~cellseg_bridge.segment_batch.segment_files`
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
    import functools

    from cellseg_bridge.io.reader import list_scenes
    from cellseg_bridge.naming import scene_items
    from cellseg_bridge.segment_batch import (
        OUTPUT_SUFFIXES,
        SEGMENT_OPTION_NAMES,
        check_output_kinds,
        open_scene,
        scene_is_2d,
    )

    out_dir = Path(out_dir)
    kinds = check_output_kinds(outputs, save_seg_npy, save_flows)
    unknown = sorted(set(segment_options) - set(SEGMENT_OPTION_NAMES))
    if unknown:
        raise InputError(f"unknown segmentation option(s) {', '.join(unknown)}")
    if restore and chunked:
        raise InputError("restoration before segmentation is not available for chunked segmentation yet "
                         "(restore first with `cellseg restore`, then segment the restored files)")
    options = {name: getattr(DEFAULTS.segment, name) for name in SEGMENT_OPTION_NAMES} | segment_options
    device = options.pop("device")
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
        small = _Dispatch(functools.partial(_segment_task, model=model, device=device, options=options, axes=axes,
                                            restore=restore, restore_target=restore_target), item_kinds)
        large = functools.partial(_segment_large_task, model=model, options=dict(options) | {"device": device},
                                  axes=axes, chunk_size=chunk_size, overlap=overlap, client=c, overwrite=overwrite)

        def here(item: WorkItem) -> dict:
            return large(item) if item.name in large_items else small(item)

        return run_items(items, small, client=c, manifest=out_dir / DEFAULTS.distributed.manifest_name,
                         overwrite=overwrite, quiet=quiet, description="segment",
                         local=lambda item: item.name in large_items, local_task=here)

    return _with_problems(_run_with_cluster(run, client, workers, scheduler), problems)


class _Dispatch:
    """Picklable task for the small items: the segmentation task with the item's output kinds."""

    def __init__(self, small: Callable[..., dict], kinds: dict[str, tuple[str, ...]]) -> None:
        self.small, self.kinds = small, kinds

    def __call__(self, item: WorkItem) -> dict:
        return self.small(item, kinds=self.kinds[item.name])

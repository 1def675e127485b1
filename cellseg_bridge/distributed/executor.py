"""Batches on a Dask cluster: one task per work item (file, scene), a manifest, resume, progress.

:func:`run_items` is generic: it runs ``task(item)`` for every
:class:`~cellseg_bridge.batch.WorkItem` on the cluster's workers (or in this
process without a client) and collects what happened. Any command whose job is
"a function of one item that writes the item's outputs atomically" plugs in
(``segment`` and ``convert``: :mod:`cellseg_bridge.batch.segment_cluster`, :mod:`cellseg_bridge.batch.convert`). Semantics, as the
sequential batch (:mod:`cellseg_bridge.batch.runner`):

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

from cellseg_bridge.batch.runner import BatchReport, WorkItem, expand_inputs
from cellseg_bridge.config import DEFAULTS
from cellseg_bridge.errors import CellsegError

log = logging.getLogger(__name__)

__all__ = ["DistributedReport", "ItemOutcome", "plan_inputs", "read_manifest", "run_items", "with_cluster", "with_problems"]


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


def with_problems(report: DistributedReport, problems: list[tuple[str, str]]) -> DistributedReport:
    for source, reason in problems:
        log.error("%s: %s", source, reason)
        report.failed.append((source, reason))
        report.items.append(ItemOutcome(item=source, source=source, status="failed", reason=reason))
    return report


def with_cluster(run: Callable[[Any], DistributedReport], client: Any, workers: int | None,
                      scheduler: str | None) -> DistributedReport:
    if client is not None or (workers is None and scheduler is None):
        return run(client)
    from cellseg_bridge.distributed.cluster import dask_client

    with dask_client(workers, scheduler) as new_client:
        return run(new_client)


# --------------------------------------------------------------------------- convert


# --------------------------------------------------------------------------- segment



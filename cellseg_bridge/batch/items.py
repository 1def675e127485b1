"""Work items, the one error boundary, and the executor interface of the batch runner.

A batch is a list of :class:`WorkItem` (an input scene and the outputs it
writes) and a *task* (a function of one item that writes the item's outputs
atomically and may return a dict of facts, e.g. ``n_cells``). An *executor*
runs the task on items:

- :class:`LocalExecutor`: in this process, one item after the other;
- :class:`cellseg_bridge.distributed.executor.DaskExecutor`: one task per item
  on the workers of a Dask cluster.

Both run each item inside :func:`run_guarded`, so a failure is recorded the
same way wherever it happened. :func:`cellseg_bridge.batch.runner.run_items`
decides what to run (skip, clash) and collects the records.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cellseg_bridge.errors import CellsegError

log = logging.getLogger(__name__)

__all__ = ["Executor", "LocalExecutor", "WorkItem", "run_guarded"]

#: What a task gives for one item: a dict of facts (``n_cells``, ...) or None.
Task = Callable[["WorkItem"], Any]


@dataclass(frozen=True)
class WorkItem:
    """One unit of work: an input (or part of it, e.g. a scene) and the outputs it writes.

    Attributes
    ----------
    source : Path
        The input file.
    outputs : tuple of Path
        Every file the job writes for this item; the item counts as done when all exist.
    key : object
        What the job needs besides ``source`` (e.g. a scene index); opaque to the runner.
    label : str
        How the item is named in logs and reports (default: ``source``).
    kinds : tuple of str
        The kind of each output (``"labels"``, ``"rois"``, ...), the keys of the
        report's ``outputs``; default ``output``, ``output_1``, ...
    scene_name : str, optional
        The scene's name, for the report.
    """

    source: Path
    outputs: tuple[Path, ...]
    key: Any = None
    label: str = ""
    kinds: tuple[str, ...] = ()
    scene_name: str | None = None

    @property
    def name(self) -> str:
        """The label, or the source path."""
        return self.label or str(self.source)

    def output_map(self) -> dict[str, Path]:
        """Output kind -> path."""
        kinds = list(self.kinds) + [f"output_{k}" if k else "output" for k in range(len(self.kinds), len(self.outputs))]
        return dict(zip(kinds, self.outputs))


def run_guarded(task: Task, item: WorkItem) -> dict[str, Any]:
    """Run ``task(item)`` inside the one error boundary of every batch; never raises an ``Exception``.

    Parameters
    ----------
    task : callable
        ``task(item) -> dict or None``.
    item : WorkItem

    Returns
    -------
    dict
        ``status`` (``"done"`` or ``"failed"``), ``reason`` (failures), ``result``
        (the task's dict), ``seconds`` and ``worker`` (``host:pid``).
        ``KeyboardInterrupt`` is not caught.
    """
    tic = time.perf_counter()
    out: dict[str, Any] = {"worker": f"{socket.gethostname()}:{os.getpid()}"}
    try:
        result = task(item)
        out.update(status="done", result=dict(result) if isinstance(result, dict) else {})
    except CellsegError as exc:
        out.update(status="failed", reason=getattr(exc, "reason", None) or str(exc))
    except MemoryError:
        out.update(status="failed", reason="out of memory")
    except Exception as exc:  # noqa: BLE001 - a batch must survive any per-item failure
        log.debug("%s: unexpected failure", item.name, exc_info=True)
        out.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
    out["seconds"] = time.perf_counter() - tic
    return out


class Executor(Protocol):
    """Runs a task on work items; what :func:`~cellseg_bridge.batch.runner.run_items` plugs in."""

    #: True when tasks run in this process (so they may hold unpicklable things: loaded models, closures).
    in_process: bool

    def start(self, task: Task, items: Iterable[WorkItem]) -> Iterator[tuple[WorkItem, dict[str, Any]]]:
        """Start ``task`` on every item; yield ``(item, outcome)`` as items finish.

        ``outcome`` is :func:`run_guarded`'s dict. Work may begin before the
        iterator is consumed (a cluster starts at once; this process waits).
        """
        ...


class LocalExecutor:
    """Run the tasks in this process, one after the other, in order."""

    in_process = True

    def start(self, task: Task, items: Iterable[WorkItem]) -> Iterator[tuple[WorkItem, dict[str, Any]]]:
        """Yield ``(item, run_guarded(task, item))``, running each item when it is asked for."""
        return ((item, run_guarded(task, item)) for item in items)

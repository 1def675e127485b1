"""The Dask executor of the batch runner, and the one rule that picks where a batch runs.

:class:`DaskExecutor` runs one task per :class:`~cellseg_bridge.batch.items.WorkItem`
on the workers of a ``distributed.Client``, inside the same error boundary as the
local executor (:func:`~cellseg_bridge.batch.items.run_guarded`); the runner
(:func:`cellseg_bridge.batch.runner.run_items`) collects the records, so a cluster
run reports exactly as a local one. On a cluster:

- a worker that dies (killed, out of memory) loses nothing: the scheduler
  reruns its tasks on the other workers (``distributed.scheduler.allowed-failures``
  times, default 3, then the item is reported failed: ``KilledWorker``);
- task keys are unique per run, so a result of another run is never taken.

:func:`executor_for` is where the choice is made: a given client, a LocalCluster
of ``workers`` processes, the workers of a running ``scheduler``, or (none of
them) this process.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from cellseg_bridge.batch.items import Executor, LocalExecutor, Task, WorkItem, run_guarded

__all__ = ["DaskExecutor", "executor_for"]


class DaskExecutor:
    """Run each item as one task on a Dask cluster.

    Parameters
    ----------
    client : distributed.Client
        The cluster. Tasks must be picklable.
    """

    in_process = False

    def __init__(self, client: Any) -> None:
        self.client = client

    def start(self, task: Task, items: Iterable[WorkItem]) -> Iterator[tuple[WorkItem, dict[str, Any]]]:
        """Submit every item now; return an iterator of ``(item, outcome)`` in the order they finish."""
        run_id = uuid.uuid4().hex  # unique task keys: never a result of another run
        futures = {
            self.client.submit(run_guarded, task, item, pure=False, key=f"cellseg-item-{run_id}-{k}"): item
            for k, item in enumerate(items)
        }
        return self._collect(futures)

    @staticmethod
    def _collect(futures: dict[Any, WorkItem]) -> Iterator[tuple[WorkItem, dict[str, Any]]]:
        if not futures:
            return
        from distributed import as_completed

        for fut in as_completed(futures):
            item = futures[fut]
            try:
                outcome = fut.result()
            except Exception as exc:  # noqa: BLE001 - KilledWorker, lost scheduler, ...
                outcome = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
            fut.release()
            yield item, outcome


@contextlib.contextmanager
def executor_for(client: Any = None, workers: int | None = None,
                 scheduler: str | None = None) -> Iterator[Executor]:
    """The executor of a batch: on ``client``, on a cluster started or reached here, or in this process.

    Parameters
    ----------
    client : distributed.Client, optional
        A cluster the caller holds (left open).
    workers : int, optional
        Start a LocalCluster of this many worker processes (closed at the end).
    scheduler : str, optional
        Address of a running scheduler (the connection is closed at the end).

    Yields
    ------
    Executor
        :class:`DaskExecutor` or :class:`~cellseg_bridge.batch.items.LocalExecutor`.

    Raises
    ------
    InputError
        Both ``workers`` and ``scheduler``, ``workers < 1``, or a scheduler that cannot be reached.
    """
    if client is not None:
        yield DaskExecutor(client)
    elif workers is None and scheduler is None:
        yield LocalExecutor()
    else:
        from cellseg_bridge.distributed.cluster import dask_client

        with dask_client(workers, scheduler) as new_client:
            yield DaskExecutor(new_client)

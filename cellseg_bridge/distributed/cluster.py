"""A Dask client: a LocalCluster of worker processes, or a connection to a running scheduler."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from cellseg_bridge.config import DEFAULTS
from cellseg_bridge.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["dask_client"]


@contextlib.contextmanager
def dask_client(
    workers: int | None = DEFAULTS.distributed.workers,
    scheduler: str | None = DEFAULTS.distributed.scheduler,
    *,
    threads_per_worker: int = DEFAULTS.distributed.threads_per_worker,
    processes: bool = True,
    connect_timeout: str = "10s",
    **cluster_options: Any,
) -> Iterator[Any]:
    """Yield a ``distributed.Client``; close what was opened on exit.

    Parameters
    ----------
    workers : int, optional
        Start a ``LocalCluster`` with this many worker processes.
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``); its workers are used.
    threads_per_worker : int
        Threads per local worker.
    processes : bool
        Local workers as processes (True) or threads of this process.
    connect_timeout : str
        How long to try reaching ``scheduler`` (dask time string).
    **cluster_options
        More ``LocalCluster`` arguments (e.g. ``memory_limit``).

    Raises
    ------
    InputError
        Both or neither of ``workers`` and ``scheduler``, ``workers < 1``, or a
        scheduler that cannot be reached.
    """
    from distributed import Client, LocalCluster

    if (workers is None) == (scheduler is None):
        raise InputError("give either a number of local workers or a scheduler address (not both)")
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
        log.info("connected to %s (%d workers)", scheduler, len(client.scheduler_info().get("workers", {})))
        try:
            yield client
        finally:
            client.close()
        return
    if workers is None or workers < 1:  # None: excluded above (a scheduler was given)
        raise InputError(f"workers must be >= 1, got {workers}")
    cluster_options.setdefault("dashboard_address", None)
    cluster_options.setdefault("silence_logs", logging.WARNING)
    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=processes,
                           **cluster_options)
    client = Client(cluster)
    log.info("local Dask cluster: %d worker(s) x %d thread(s)", workers, threads_per_worker)
    try:
        yield client
    finally:
        client.close()
        cluster.close()

"""Scale out on Dask (``dask.distributed``): many files on a cluster, and planes larger than memory.

- :func:`segment_large`: one 2D plane of any size in overlapping chunks, labels
  merged across chunk borders without seams (:mod:`.chunked`, :mod:`.chunk_network`,
  :mod:`.plane_source`).
- :class:`DaskExecutor`: the batch runner's executor on a cluster, one task per
  work item (file, scene); :func:`executor_for` picks it or the local one
  (:mod:`.executor`). :func:`run_items` (the runner, :mod:`cellseg_bridge.batch.runner`)
  and :func:`read_manifest` are here too, for scripts that run their own tasks.
- :func:`dask_client`: a LocalCluster or a connection to a running scheduler (:mod:`.cluster`).

Names are imported on first use (PEP 562), so that importing one submodule does not load dask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cellseg_bridge import lazy_getattr

_LAZY = {
    "DaskExecutor": "cellseg_bridge.distributed.executor",
    "executor_for": "cellseg_bridge.distributed.executor",
    "read_manifest": "cellseg_bridge.batch.report",
    "run_items": "cellseg_bridge.batch.runner",
    "LargeResult": "cellseg_bridge.distributed.chunked",
    "read_zarr_labels": "cellseg_bridge.distributed.chunked",
    "segment_large": "cellseg_bridge.distributed.chunked",
    "dask_client": "cellseg_bridge.distributed.cluster",
}

if TYPE_CHECKING:
    from cellseg_bridge.batch.report import read_manifest
    from cellseg_bridge.batch.runner import run_items
    from cellseg_bridge.distributed.chunked import LargeResult, read_zarr_labels, segment_large
    from cellseg_bridge.distributed.cluster import dask_client
    from cellseg_bridge.distributed.executor import DaskExecutor, executor_for

__all__ = [
    "DaskExecutor",
    "LargeResult",
    "dask_client",
    "executor_for",
    "read_manifest",
    "read_zarr_labels",
    "run_items",
    "segment_large",
]


__getattr__ = lazy_getattr(__name__, _LAZY)

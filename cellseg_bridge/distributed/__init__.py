"""Scale out on Dask (``dask.distributed``): many files on a cluster, and planes larger than memory.

- :func:`segment_large`: one 2D plane of any size in overlapping chunks, labels
  merged across chunk borders without seams (:mod:`.chunked`, :mod:`.chunk_network`,
  :mod:`.plane_source`).
- :func:`run_items`: a function per work item (file, scene) on the workers,
  with a manifest, resume, progress and failures collected (:mod:`.executor`);
  the batch commands plug their jobs in (:mod:`cellseg_bridge.batch`).
- :func:`dask_client`: a LocalCluster or a connection to a running scheduler (:mod:`.cluster`).

Names are imported on first use (PEP 562), so that importing one submodule does not load dask.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "DistributedReport": "cellseg_bridge.distributed.executor",
    "read_manifest": "cellseg_bridge.distributed.executor",
    "run_items": "cellseg_bridge.distributed.executor",
    "LargeResult": "cellseg_bridge.distributed.chunked",
    "read_zarr_labels": "cellseg_bridge.distributed.chunked",
    "segment_large": "cellseg_bridge.distributed.chunked",
    "dask_client": "cellseg_bridge.distributed.cluster",
}

if TYPE_CHECKING:
    from cellseg_bridge.distributed.chunked import LargeResult, read_zarr_labels, segment_large
    from cellseg_bridge.distributed.cluster import dask_client
    from cellseg_bridge.distributed.executor import DistributedReport, read_manifest, run_items

__all__ = [
    "DistributedReport",
    "LargeResult",
    "dask_client",
    "read_manifest",
    "read_zarr_labels",
    "run_items",
    "segment_large",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

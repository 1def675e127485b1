"""Scale out on Dask (``dask.distributed``): many files on a cluster, and planes larger than memory.

- :func:`segment_large`: one 2D plane of any size in overlapping chunks, labels
  merged across chunk borders without seams (:mod:`.chunked`).
- :func:`run_items`: a function per work item (file, scene) on the workers,
  with a manifest, resume, progress and failures collected (:mod:`.batch`);
  :func:`segment_files_distributed` and :func:`convert_distributed` use it.
- :func:`dask_client`: a LocalCluster or a connection to a running scheduler (:mod:`.cluster`).
"""

from cellseg_bridge.distributed.batch import (
    DistributedReport,
    convert_distributed,
    has_large_planes,
    read_manifest,
    run_items,
    segment_files_distributed,
)
from cellseg_bridge.distributed.chunked import LargeResult, read_zarr_labels, segment_large
from cellseg_bridge.distributed.cluster import dask_client

__all__ = [
    "DistributedReport",
    "LargeResult",
    "convert_distributed",
    "dask_client",
    "has_large_planes",
    "read_manifest",
    "read_zarr_labels",
    "run_items",
    "segment_files_distributed",
    "segment_large",
]

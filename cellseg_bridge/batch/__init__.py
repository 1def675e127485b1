"""Files in, outputs out: the one batch runner and the jobs of ``convert``, ``segment`` and ``restore``.

- :mod:`.runner`: expand inputs, plan work items, skip what is done, run them on an executor;
- :mod:`.items`: work items, the one error boundary, the executor interface (local here;
  Dask in :mod:`cellseg_bridge.distributed.executor`);
- :mod:`.report`: the one record and report type (what ``--json`` prints), the manifest;
- :mod:`.naming`: per-scene output names shared by every batch command;
- :mod:`.convert`, :mod:`.segment` (with :mod:`.segment_job` and :mod:`.scene_outputs`),
  :mod:`.restore`: the commands' planners and jobs (one scene -> its outputs);
- :mod:`.suggest`: ``cellseg models suggest`` over files.
"""

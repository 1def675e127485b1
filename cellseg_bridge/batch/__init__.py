"""Files in, outputs out: the batch semantics of ``convert``, ``segment`` and ``restore``.

- :mod:`.runner`: expand inputs, plan work items, skip what is done, run, report;
- :mod:`.naming`: per-scene output names shared by every batch command;
- :mod:`.convert`, :mod:`.segment`, :mod:`.restore`: the jobs (one scene -> its outputs).
"""

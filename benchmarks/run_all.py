"""Run every benchmark and print ours against the reference measured in the same run.

Usage: ``python benchmarks/run_all.py [NAME ...]`` (names: convert, rois, dynamics, segment). Threads are
limited to 2 (the CI machine's size) unless ``OMP_NUM_THREADS`` is set.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("NUMBA_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

BENCHMARKS = {
    "convert": "bench_convert",
    "rois": "bench_rois",
    "dynamics": "bench_dynamics",
    "segment": "bench_segment",
}


def main(names: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log = logging.getLogger("benchmarks")
    for name in names or list(BENCHMARKS):
        module = importlib.import_module(BENCHMARKS[name])
        log.info("== %s", name)
        for row in module.run():
            log.info(row.format())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

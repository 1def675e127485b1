"""Helpers shared by the benchmarks: timing, peak memory, the shared-data folder, a result table."""

from __future__ import annotations

import logging
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("benchmarks")
REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path | None:
    """``../shared/data`` beside the checkout (or ``$CELLSEG_SHARED/data``), None when absent."""
    path = Path(os.environ.get("CELLSEG_SHARED", REPO.parent / "shared")) / "data"
    return path if path.is_dir() else None


def best_time(fn: Callable[[], object], repeat: int = 3) -> float:
    """Return the best wall time in seconds of ``repeat`` calls of ``fn``."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class Row:
    """One benchmark line: our number, the reference's, and what is compared."""

    name: str
    ours: float
    reference: float
    unit: str
    reference_name: str
    higher_is_better: bool = False

    @property
    def ratio(self) -> float:
        """How many times better ours is (>1: ours wins)."""
        if self.higher_is_better:
            return self.ours / self.reference
        return self.reference / self.ours

    def format(self) -> str:
        return (f"{self.name:<44} ours {self.ours:10.3f} {self.unit:<6} "
                f"{self.reference_name} {self.reference:10.3f} {self.unit:<6} ratio x{self.ratio:.2f}")


def matmul_gflops(n: int = 2048, repeat: int = 5, dtype: str = "float32") -> float:
    """Best ``torch.matmul`` rate of n x n matrices of ``dtype`` in this process, GFLOP/s (both sides use it)."""
    import torch

    a, b = (torch.randn(n, n, dtype=getattr(torch, dtype)) for _ in range(2))
    a @ b
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9

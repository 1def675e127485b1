"""How much memory one allocation may take, so that a file claiming gigabytes is refused, not allocated.

The budget is ``$CELLSEG_MEMORY_LIMIT`` (bytes, or with a ``K``/``M``/``G``/``T``
suffix, powers of 1024) when set, else the memory the system reports available
(``MemAvailable`` on Linux, else the physical memory). Readers and rasterisers
call :func:`check_allocation` before they allocate an array whose size a file
decides.
"""

from __future__ import annotations

import os
from pathlib import Path

from cellseg_bridge.errors import InputError

__all__ = ["MEMORY_LIMIT_ENV", "check_allocation", "format_bytes", "memory_budget"]

#: Environment variable overriding the memory budget.
MEMORY_LIMIT_ENV = "CELLSEG_MEMORY_LIMIT"
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = text[-1] if text and text[-1] in _UNITS else ""
    number = text[: len(text) - len(unit)]
    try:
        value = float(number) * _UNITS[unit]
    except ValueError as exc:
        raise InputError(f"${MEMORY_LIMIT_ENV}={text!r} is not a size such as 4G or 512M") from exc
    if value <= 0:
        raise InputError(f"${MEMORY_LIMIT_ENV} must be positive, not {text!r}")
    return int(value)


def _system_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def memory_budget() -> int | None:
    """Bytes one allocation may take: ``$CELLSEG_MEMORY_LIMIT``, else the available memory (None: unknown)."""
    text = os.environ.get(MEMORY_LIMIT_ENV)
    if text:
        return _parse_size(text)
    return _system_available()


def format_bytes(n: float) -> str:
    """``n`` bytes in words, e.g. ``"18.6 GiB"``."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def check_allocation(nbytes: int, what: str, path: str | Path | None = None) -> None:
    """Raise InputError when an array of ``nbytes`` does not fit the memory budget.

    Parameters
    ----------
    nbytes : int
        Size of the array about to be allocated.
    what : str
        What it is, for the message (e.g. ``"the label image (100000 x 100000, int32)"``).
    path : str or Path, optional
        The file whose content decided the size (named in the message).
    """
    budget = memory_budget()
    if budget is not None and nbytes > budget:
        raise InputError(
            f"{what} would need {format_bytes(nbytes)}, more than the memory available "
            f"({format_bytes(budget)}; ${MEMORY_LIMIT_ENV} sets the limit)",
            path,
        )

"""Logging set-up for the command line (the library itself only creates loggers)."""

from __future__ import annotations

import logging


def configure(verbosity: int = 0, quiet: bool = False) -> None:
    """Configure the root logger for CLI use.

    Parameters
    ----------
    verbosity : int
        0: INFO for cellseg_bridge, WARNING for others; 1 or more: DEBUG.
    quiet : bool
        Only warnings and errors.
    """
    level = logging.WARNING if quiet else (logging.DEBUG if verbosity > 0 else logging.INFO)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("cellseg_bridge").setLevel(level)

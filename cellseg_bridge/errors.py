"""Exceptions raised by cellseg_bridge.

Every error that concerns a file carries the path, so that a batch can report
``path: reason`` for each failure and go on with the other files.
"""

from __future__ import annotations

from pathlib import Path


class CellsegError(Exception):
    """Base class of all errors raised on purpose by cellseg_bridge."""


class InputError(CellsegError):
    """A user-supplied input (file, array, option) cannot be used.

    Parameters
    ----------
    message : str
        What is wrong, in words a user understands.
    path : str or Path, optional
        The file concerned, if any; it is prefixed to the message.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.reason = message
        super().__init__(f"{path}: {message}" if path is not None else message)


class DependencyError(CellsegError):
    """An optional dependency (Java, ImageJ, a reader plugin) is missing."""

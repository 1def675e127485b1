"""Path checks shared by every command that reads or writes files.

* :func:`check_output`: the one place that decides whether a command may write a
  file: never over one of its own inputs (the same file after resolving links,
  or a hard link to it), never over a file that exists unless the caller passes
  ``overwrite`` (``--overwrite``).
* :func:`missing_reason`: why a path cannot be opened, in words (no such file,
  a symbolic link loop, a broken link, no permission), so that every "not found"
  message says what is really wrong.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path

from cellseg_bridge.errors import InputError

__all__ = ["check_output", "missing_reason", "same_file"]


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file.

    True when both exist and are the same file (``os.path.samefile``: symbolic and
    hard links included), or when their paths are equal after resolving links
    (so a file that does not exist yet is compared by where it would be).

    Parameters
    ----------
    a, b : str or path-like
    """
    try:
        if os.path.samefile(a, b):
            return True
    except (OSError, ValueError):
        pass
    return os.path.realpath(os.fspath(a)) == os.path.realpath(os.fspath(b))


def check_output(
    out: str | os.PathLike,
    inputs: Iterable[str | os.PathLike | None] = (),
    *,
    overwrite: bool = False,
) -> Path:
    """Refuse to write ``out`` over an input, or over an existing file without ``overwrite``.

    Parameters
    ----------
    out : str or path-like
        The file a command is about to write.
    inputs : iterable of path, optional
        The files the command reads (None entries are ignored). Writing over one of
        them is refused even with ``overwrite``: the command would destroy what it
        is reading.
    overwrite : bool
        Allow replacing an existing file that is not an input (``--overwrite``).

    Returns
    -------
    Path
        ``out`` as a Path.

    Raises
    ------
    InputError
        ``out`` is one of the inputs, is a folder, or exists and ``overwrite`` is
        False. The message names the file and the way out.
    """
    out = Path(out)
    for source in inputs:
        if source is not None and same_file(out, source):
            raise InputError(
                f"the output is the input {os.fspath(source)!r}; writing it would destroy the input "
                "(choose another output path)",
                out,
            )
    if out.is_dir():
        raise InputError("the output is a folder; give a file name", out)
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise InputError("the output exists; pass --overwrite to replace it (or choose another path)", out)
    return out


def missing_reason(path: str | os.PathLike, what: str = "file", missing: str | None = None) -> str:
    """Why ``path`` cannot be opened, in a few words.

    Parameters
    ----------
    path : str or path-like
        A path that failed to open or does not exist.
    what : str
        What was expected (``"file"``, ``"ROI file"``, ``"checkpoint"``): used in
        the plain "not found" case.
    missing : str, optional
        The words for a path that simply does not exist (default ``"<what> not found"``).

    Returns
    -------
    str
        ``"symbolic link loop"``, ``"broken symbolic link (to 'x')"``,
        ``"permission denied"``, ``"<what> not found"``, ...
    """
    path = Path(path)
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (the link points back to itself)"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return "permission denied"
        if exc.errno == errno.ENOTDIR:
            return f"{what} not found (a part of the path is not a folder)"
        if exc.errno == errno.ENAMETOOLONG:
            return "file name too long"
        if path.is_symlink():
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            return f"broken symbolic link (to {target!r})"
        return missing or f"{what} not found"
    if path.is_dir():
        return f"is a folder, not a {what}"
    return f"{what} cannot be opened"

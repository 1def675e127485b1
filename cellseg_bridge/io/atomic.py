"""Atomic file output: write to a temporary file beside the target, then rename."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from cellseg_bridge.errors import InputError


@contextlib.contextmanager
def atomic_output(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path that replaces ``path`` only if the block succeeds.

    The temporary file lives in the target's folder (so the final ``os.replace``
    is atomic on the same file system) and keeps the target's suffix, because
    some writers choose the format from it. On any exception the temporary file
    is removed and the target is left untouched.

    Parameters
    ----------
    path : str or Path
        Final destination.
    suffix : str, optional
        Suffix of the temporary file; defaults to the full suffix of ``path``
        (e.g. ``.ome.tif``).

    Yields
    ------
    Path
        Where the caller writes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates the file private (0600); give it the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def staged_outputs(paths: Sequence[Path]) -> Iterator[list[Path]]:
    """Yield temporary paths in a hidden folder beside ``paths``; move them all into place on success.

    All outputs of an item share one folder, so one staging folder suffices; on any
    failure nothing is moved and the staging folder is removed.
    """
    if not paths:
        yield []
        return
    folder = paths[0].parent
    folder.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".cellseg-staging-", dir=folder))
    try:
        tmps = [stage / p.name for p in paths]
        yield tmps
        for tmp, path in zip(tmps, paths):
            if not tmp.exists():
                raise InputError(f"{path.name} was not written")
        for tmp, path in zip(tmps, paths):
            if tmp.is_dir() and path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)  # a folder output (OME-Zarr) being replaced: os.replace needs it gone
            os.replace(tmp, path)
    finally:
        shutil.rmtree(stage, ignore_errors=True)

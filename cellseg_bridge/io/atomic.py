"""Atomic file output (write to a temporary file beside the target, then rename) and write failures in words.

- :func:`atomic_output`: one file (written as ``.<name>.<host>-<pid>-*.part<suffix>``);
  :func:`staged_outputs`: several files moved into place together from a hidden
  staging folder ``.cellseg-staging-<host>-<pid>-*``.
- :func:`check_writable`: is this folder writable (create it, write a probe file)?
  Commands call it before any work; it also removes the partial files and staging
  folders that processes killed in the middle of a write (kill -9) left there
  (:func:`clean_stale_staging`: only ours, only of dead processes of this host).
- :func:`write_error` / :func:`translating_write_errors`: a full disk, a read-only
  folder or a denied permission while writing becomes one :class:`InputError`
  naming the path (also torch's ``inline_container`` and numpy's "requested and
  written" failures of a full disk). Both writers above translate on their own.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from cellseg_bridge.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["STAGING_PREFIX", "atomic_output", "check_writable", "clean_stale_staging", "staged_outputs",
           "translating_write_errors", "write_error"]

#: Name start of the staging folders of :func:`staged_outputs`.
STAGING_PREFIX = ".cellseg-staging-"
_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}
#: Messages of writes cut short by a full disk that carry no errno (torch.save, numpy's tofile).
_SHORT_WRITE = re.compile(r"inline_container|PytorchStreamWriter|requested and \d+ written|unexpected pos")


def write_error(path: str | Path, exc: BaseException) -> InputError | None:
    """The clear error of a failed write to ``path``, or None when ``exc`` is not a write failure.

    Parameters
    ----------
    path : str or Path
        The file or folder being written (named in the message).
    exc : BaseException
        What the write raised.

    Returns
    -------
    InputError or None
        "the disk is full" (ENOSPC, EDQUOT, EFBIG, a short write), "not writable"
        (EACCES, EPERM, EROFS); None for anything else.
    """
    number = getattr(exc, "errno", None)
    if isinstance(exc, OSError) and number in _FULL or (
            isinstance(exc, (OSError, RuntimeError)) and number is None and _SHORT_WRITE.search(str(exc))):
        error = InputError("cannot write: the disk is full (free some space and run again)", path)
    elif isinstance(exc, OSError) and number in _DENIED:
        why = "read-only file system" if number == errno.EROFS else "permission denied"
        error = InputError(f"cannot write: the folder is not writable ({why})", path)
    else:
        return None
    error.reason = str(error)  # a batch reports the item's input and this reason: keep the output's path in it
    return error


@contextlib.contextmanager
def translating_write_errors(path: str | Path) -> Iterator[None]:
    """Turn a failed write inside the block into :func:`write_error`'s InputError naming ``path``."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        clear = write_error(path, exc)
        if clear is None or not _concerns(path, exc):
            raise
        raise clear from exc


def _concerns(path: str | Path, exc: BaseException) -> bool:
    """Whether ``exc`` is about ``path``'s folder (an error naming another file, e.g. an input, is not)."""
    filename = getattr(exc, "filename", None)
    if not filename:
        return True
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    try:
        return Path(os.fsdecode(filename)).resolve().is_relative_to(folder.resolve())
    except (OSError, ValueError):
        return True


def check_writable(folder: str | Path) -> Path:
    """Create ``folder`` if needed and check that a file can be written in it (before any work).

    Parameters
    ----------
    folder : str or Path
        An output folder.

    Returns
    -------
    Path
        The folder.

    Raises
    ------
    InputError
        The folder cannot be created, is a file, is not writable, or its disk is full.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError("the output folder is a file", folder)
    with translating_write_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".cellseg-probe-", dir=folder)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
            os.unlink(probe)
    clean_stale_staging(folder)
    return folder


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
    if suffix is None:
        suffix = "".join(path.suffixes)
    with translating_write_errors(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_host()}-{os.getpid()}-", suffix=f".part{suffix}",
                                   dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with translating_write_errors(path):
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
    failure nothing is moved and the staging folder is removed. Its name holds this
    host and process id, so a later run removes it if this process is killed
    (:func:`check_writable`). A full disk or a folder that is not writable is
    an :class:`InputError` naming the folder.
    """
    if not paths:
        yield []
        return
    folder = paths[0].parent
    with translating_write_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=_staging_prefix(), dir=folder))
    try:
        tmps = [stage / p.name for p in paths]
        with translating_write_errors(folder):
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


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", socket.gethostname()) or "host"


def _staging_prefix(pid: int | None = None) -> str:
    return f"{STAGING_PREFIX}{_host()}-{os.getpid() if pid is None else pid}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clean_stale_staging(folder: str | Path) -> list[Path]:
    """Remove what processes of this host that no longer run left in ``folder`` in the middle of a write.

    Only staging folders ``.cellseg-staging-<this host>-<pid>-*`` and partial files
    ``.<name>.<this host>-<pid>-*.part*`` whose process is dead are removed: never
    those of a live process (a concurrent run, a Dask worker), of another host, or
    anything else.

    Parameters
    ----------
    folder : str or Path
        An output folder.

    Returns
    -------
    list of Path
        What was removed.
    """
    host = re.escape(_host())
    staging = re.compile(re.escape(STAGING_PREFIX) + host + r"-(\d+)-[^/]*$")
    partial = re.compile(r"\..+\." + host + r"-(\d+)-[^/]*\.part[^/]*$")
    removed: list[Path] = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = staging.match(entry.name) if entry.is_dir() else partial.match(entry.name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
        if not entry.exists():
            log.info("removed %s, left by an interrupted run (process %s)", entry, match.group(1))
            removed.append(entry)
    return removed

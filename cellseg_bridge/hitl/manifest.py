"""The project manifest of a HITL project: one JSON file, always replaced atomically.

The manifest (``hitl_project.json`` in the project folder) is the single source
of truth of a project. It is written to a temporary file beside it and renamed
over the old one (:func:`~cellseg_bridge.io.atomic.atomic_output`), so a crash at
any moment leaves either the old or the new manifest, never a torn one.
Commands that change a project hold an exclusive lock on ``.hitl.lock`` (an OS
file lock, released by the kernel when a process dies, so a crash never leaves
a stale lock behind).

Images are referenced, never copied: each record holds the absolute path, the
size in bytes, the modification time and the sha256 of the file, so that a
changed or moved image is noticed instead of silently training on other pixels.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cellseg_bridge.config import DEFAULTS
from cellseg_bridge.errors import InputError
from cellseg_bridge.io.atomic import atomic_output

__all__ = [
    "FORMAT",
    "VERSION",
    "manifest_path",
    "read_manifest",
    "write_manifest",
    "file_fingerprint",
    "check_fingerprint",
    "sha256_file",
    "project_lock",
    "now",
]

logger = logging.getLogger(__name__)

#: Value of the manifest's ``format`` key.
FORMAT = "cellseg-hitl-project"
#: Manifest schema version.
VERSION = 1
LOCK_NAME = ".hitl.lock"


def now() -> str:
    """The current UTC time as an ISO 8601 string (seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def manifest_path(project_dir: str | Path) -> Path:
    """Where the manifest of the project in ``project_dir`` lives."""
    return Path(project_dir) / DEFAULTS.hitl.manifest_name


def read_manifest(project_dir: str | Path) -> dict[str, Any]:
    """Read and check the manifest of a project.

    Raises
    ------
    InputError
        No project there, unreadable JSON, or a manifest of another format/version.
    """
    path = manifest_path(project_dir)
    if not path.is_file():
        raise InputError(
            "not a HITL project (no manifest; create one with `cellseg hitl init`)", Path(project_dir)
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the project manifest ({exc})", path) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"not a HITL project manifest (format {data.get('format')!r})", path)
    if int(data.get("version", 0)) > VERSION:
        raise InputError(
            f"manifest version {data.get('version')} is newer than this cellseg_bridge understands ({VERSION})",
            path,
        )
    return data


def write_manifest(project_dir: str | Path, data: dict[str, Any]) -> Path:
    """Replace the manifest atomically (temporary file + rename) and return its path."""
    path = manifest_path(project_dir)
    data["updated"] = now()
    text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False)
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    return path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def file_fingerprint(path: str | Path) -> dict[str, Any]:
    """``{"path", "size", "mtime_ns", "sha256"}`` of an existing file (absolute path)."""
    path = Path(path).resolve()
    st = path.stat()
    return {"path": str(path), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns), "sha256": sha256_file(path)}


def check_fingerprint(record: dict[str, Any]) -> None:
    """Check that the file of a fingerprint record is still there and unchanged.

    Size and modification time are compared first; only when the time differs is
    the sha256 recomputed (a copied or touched file with the same bytes is fine).

    Raises
    ------
    InputError
        The file is gone or its bytes changed.
    """
    path = Path(record["path"])
    if not path.is_file():
        raise InputError("image of the project not found (moved or deleted?)", path)
    st = path.stat()
    if st.st_size != record["size"]:
        raise InputError(
            f"image changed since it was added to the project ({st.st_size} bytes, was {record['size']})", path
        )
    if st.st_mtime_ns != record["mtime_ns"] and sha256_file(path) != record["sha256"]:
        raise InputError("image changed since it was added to the project (sha256 differs)", path)


@contextlib.contextmanager
def project_lock(project_dir: str | Path) -> Iterator[None]:
    """Hold the project's exclusive lock; InputError at once if another command holds it."""
    path = Path(project_dir) / LOCK_NAME
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks, run one command at a time
        yield
        return
    fh = open(path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                "another cellseg hitl command is working on this project; wait for it to finish",
                Path(project_dir),
            ) from None
        yield
    finally:
        fh.close()

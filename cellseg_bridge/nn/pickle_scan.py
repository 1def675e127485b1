"""List what a pickle would import, without unpickling it (to name what a refused checkpoint holds)."""

from __future__ import annotations

import io
import pickletools
import zipfile
from pathlib import Path

__all__ = ["pickled_globals"]


def pickled_globals(path: Path, limit: int = 64 << 20) -> list[str]:
    """Globals (``module.name``) the pickles in ``path`` would import, found without unpickling.

    Reads a plain pickle file (several pickles in a row, as torch's legacy format)
    or the ``data.pkl`` entries of a torch zip checkpoint, at most ``limit`` bytes
    each, and lists the GLOBAL / STACK_GLOBAL opcodes with :mod:`pickletools`
    (which only parses). Unreadable data gives what was found before it.
    """
    blobs: list[bytes] = []
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                blobs = [zf.read(i) for i in zf.infolist()
                         if i.filename.endswith(".pkl") and i.file_size <= limit]
        else:
            with open(path, "rb") as fh:
                blobs = [fh.read(limit)]
    except (OSError, zipfile.BadZipFile, ValueError, RuntimeError, EOFError):
        return []
    names: list[str] = []
    for blob in blobs:
        stream = io.BytesIO(blob)
        for _ in range(8):  # torch's legacy format: several pickles in a row
            start = stream.tell()
            try:
                names += _globals_of_one_pickle(stream)
            except Exception:  # noqa: BLE001 - garbage after or inside a pickle ends the scan
                break
            if stream.tell() in (start, len(blob)):
                break
    return names


def _globals_of_one_pickle(stream: io.BytesIO) -> list[str]:
    """GLOBAL / STACK_GLOBAL names of the next pickle in ``stream`` (strings followed through the memo)."""
    names: list[str] = []
    pushed: list[str | None] = []  # what each opcode pushed, as far as strings matter
    memo: dict[int, str | None] = {}
    for op, arg, _pos in pickletools.genops(stream):
        if op.name == "GLOBAL":
            names.append(str(arg).replace(" ", "."))
            pushed.append(None)
        elif op.name == "STACK_GLOBAL":
            module, name = (pushed[-2], pushed[-1]) if len(pushed) >= 2 else (None, None)
            names.append(f"{module}.{name}")
            pushed.append(None)
        elif op.name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(arg or 0)] = pushed[-1] if pushed else None
        elif op.name in ("GET", "BINGET", "LONG_BINGET"):
            pushed.append(memo.get(int(arg or 0)))
        elif op.name != "FRAME":
            pushed.append(arg if isinstance(arg, str) else None)
    return names

"""Structure check of a CZI file before a reader touches it: every sub-block must lie inside the file.

libCZI (through aicspylibczi) opens a truncated CZI lazily and fails only when the
pixels are read, with a bare ``RuntimeError: Not enough data read``. The file
header names the sub-block directory; each directory entry names the position of
its sub-block segment, whose header gives its size. A sub-block (or the directory)
that reaches past the end of the file means the file was cut short.

Layout (ZEISS CZI 1.x): a segment is a 16-byte id, int64 allocated size, int64 used
size, then its data. The file header segment (``ZISRAWFILE``) holds the directory
position at byte 84 of the file; the directory segment (``ZISRAWDIRECTORY``) holds
an int32 entry count, 124 reserved bytes, then entries: ``"DV"``, int32 pixel type,
int64 file position, int32 file part, int32 compression, 6 bytes, int32 dimension
count, and 20 bytes per dimension.
"""

from __future__ import annotations

import struct
from pathlib import Path

from cellseg_bridge.errors import InputError

__all__ = ["check_czi"]

_SEGMENT_HEADER = 32
_DIRECTORY_POSITION = 84
_ENTRY_FIXED = 32
_DIMENSION_ENTRY = 20


def _segment(fh: object, position: int, size: int, path: Path, what: str) -> tuple[bytes, int]:
    """Id and used size of the segment at ``position``; InputError if it reaches past ``size``."""
    if position < 0 or position + _SEGMENT_HEADER > size:
        raise InputError(f"truncated or damaged CZI: {what} at byte {position} lies past the end "
                         f"of the file ({size} bytes)", path)
    fh.seek(position)  # type: ignore[attr-defined]
    head = fh.read(_SEGMENT_HEADER)  # type: ignore[attr-defined]
    ident = head[:16].rstrip(b"\0")
    _allocated, used = struct.unpack_from("<qq", head, 16)
    if used < 0 or position + _SEGMENT_HEADER + used > size:
        raise InputError(f"truncated CZI: {what} at byte {position} needs {used} bytes, the file ends "
                         f"{size - position - _SEGMENT_HEADER} bytes after it", path)
    return ident, used


def check_czi(path: Path) -> None:
    """Raise InputError naming ``path`` when a CZI file is truncated or its directory is damaged.

    Files whose header is not a CZI file header are left to the reader (which says so).
    Sub-blocks in other parts of a multi-file CZI are not checked.
    """
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            head = fh.read(_DIRECTORY_POSITION + 8)
            if not head.startswith(b"ZISRAWFILE") or len(head) < _DIRECTORY_POSITION + 8:
                return
            (directory,) = struct.unpack_from("<q", head, _DIRECTORY_POSITION)
            ident, used = _segment(fh, directory, size, path, "the sub-block directory")
            if ident != b"ZISRAWDIRECTORY":
                raise InputError(f"damaged CZI: no sub-block directory at byte {directory}", path)
            data = fh.read(used)
            (count,) = struct.unpack_from("<i", data, 0)
            offset = 128
            for index in range(max(count, 0)):
                if offset + _ENTRY_FIXED > len(data):
                    raise InputError(f"damaged CZI: the directory lists {count} sub-blocks but holds {index}",
                                     path)
                position, part = struct.unpack_from("<qi", data, offset + 6)
                (n_dims,) = struct.unpack_from("<i", data, offset + 28)
                if part == 0:
                    _segment(fh, position, size, path, f"sub-block {index}")
                offset += _ENTRY_FIXED + max(n_dims, 0) * _DIMENSION_ENTRY
    except OSError as exc:
        raise InputError(f"cannot read CZI ({exc.strerror or exc})", path) from exc
    except struct.error as exc:
        raise InputError(f"damaged CZI directory ({exc})", path) from exc

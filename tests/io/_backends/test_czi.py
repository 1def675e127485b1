"""The CZI structure check: sub-blocks and directory inside the file."""

import struct

import pytest

from cellseg_bridge.errors import InputError
from cellseg_bridge.io._backends.czi import check_czi


def _segment(ident: bytes, data: bytes) -> bytes:
    return ident.ljust(16, b"\0") + struct.pack("<qq", len(data), len(data)) + data


def _czi(sub_block_size: int, cut: int = 0) -> bytes:
    """File header, one sub-block of ``sub_block_size`` bytes, the directory; ``cut`` bytes removed from the end."""
    header_data = bytearray(512)
    sub_block = _segment(b"ZISRAWSUBBLOCK", b"\1" * sub_block_size)
    sub_pos = 32 + len(header_data)
    entry = b"DV" + struct.pack("<iqii", 1, sub_pos, 0, 0) + b"\0" * 6 + struct.pack("<i", 0)
    directory = _segment(b"ZISRAWDIRECTORY", struct.pack("<i", 1) + b"\0" * 124 + entry)
    dir_pos = sub_pos + len(sub_block)
    struct.pack_into("<q", header_data, 84 - 32, dir_pos)
    blob = _segment(b"ZISRAWFILE", bytes(header_data)) + sub_block + directory
    return blob[: len(blob) - cut] if cut else blob


def test_a_whole_file_passes_and_a_cut_one_is_named(tmp_path):
    whole = tmp_path / "whole.czi"
    whole.write_bytes(_czi(1000))
    check_czi(whole)
    cut = tmp_path / "cut.czi"
    blob = _czi(1000)
    # move the directory before the sub-block's end: the sub-block now runs past the end of the file
    cut.write_bytes(blob[: 32 + 512 + 32 + 500])
    with pytest.raises(InputError, match="truncated or damaged CZI: the sub-block directory") as info:
        check_czi(cut)
    assert info.value.path == cut


def test_a_sub_block_past_the_end(tmp_path):
    blob = bytearray(_czi(1000))
    # claim a sub-block ten times larger than written
    struct.pack_into("<q", blob, 32 + 512 + 24, 10_000)
    path = tmp_path / "claims.czi"
    path.write_bytes(bytes(blob))
    with pytest.raises(InputError, match="truncated CZI: sub-block 0 at byte 544 needs 10000 bytes"):
        check_czi(path)


def test_not_a_czi_header_is_left_to_the_reader(tmp_path):
    path = tmp_path / "x.czi"
    path.write_bytes(b"hello")
    check_czi(path)

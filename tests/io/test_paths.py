"""io.paths: the one output check, and why a path cannot be opened."""

import os

import pytest

from cellseg_bridge.errors import InputError
from cellseg_bridge.io.paths import check_output, missing_reason, same_file


def test_same_file_sees_links_and_paths_not_yet_written(tmp_path):
    a = tmp_path / "a.tif"
    a.write_bytes(b"x")
    os.symlink(a, tmp_path / "sym.tif")
    os.link(a, tmp_path / "hard.tif")
    (tmp_path / "sub").mkdir()
    assert same_file(a, tmp_path / "sym.tif") and same_file(a, tmp_path / "hard.tif")
    assert same_file(tmp_path / "sub" / ".." / "a.tif", a)
    assert same_file(tmp_path / "new.tif", tmp_path / "sub" / ".." / "new.tif")  # neither exists
    other = tmp_path / "b.tif"
    other.write_bytes(b"x")
    assert not same_file(a, other)


def test_check_output(tmp_path):
    source = tmp_path / "in.tif"
    source.write_bytes(b"x")
    with pytest.raises(InputError, match="the output is the input") as info:
        check_output(tmp_path / "." / "in.tif", [None, source], overwrite=True)
    assert info.value.path == tmp_path / "." / "in.tif"
    existing = tmp_path / "out.tif"
    existing.write_bytes(b"y")
    with pytest.raises(InputError, match="--overwrite"):
        check_output(existing, [source])
    assert check_output(existing, [source], overwrite=True) == existing
    with pytest.raises(InputError, match="folder"):
        check_output(tmp_path, [source], overwrite=True)
    assert check_output(tmp_path / "fresh.tif", [source]) == tmp_path / "fresh.tif"


def test_missing_reason(tmp_path):
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    dangling = tmp_path / "dangling"
    os.symlink(tmp_path / "gone", dangling)
    (tmp_path / "file").write_bytes(b"")
    assert missing_reason(loop).startswith("symbolic link loop")
    assert missing_reason(dangling) == f"broken symbolic link (to {str(tmp_path / 'gone')!r})"
    assert missing_reason(tmp_path / "nope", "ROI file") == "ROI file not found"
    assert missing_reason(tmp_path / "nope", missing="no such file or folder") == "no such file or folder"
    assert "not a folder" in missing_reason(tmp_path / "file" / "x")
    assert missing_reason(tmp_path) == "is a folder, not a file"

import pytest

from cellseg_bridge.io.atomic import atomic_output


def test_atomic_output_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "out.ome.tif"
    with atomic_output(target) as tmp:
        assert tmp.parent == target.parent
        assert tmp.name.endswith(".ome.tif")
        tmp.write_text("new")
        assert not target.exists()
    assert target.read_text() == "new"
    assert list(target.parent.iterdir()) == [target]


def test_atomic_output_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer crashed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_output_respects_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        with atomic_output(tmp_path / "x.bin") as tmp:
            tmp.write_bytes(b"1")
    finally:
        os.umask(old)
    assert (tmp_path / "x.bin").stat().st_mode & 0o777 == 0o644

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


# --------------------------------------------------------------------------- write failures, stale staging


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(proc.stdout)


def test_write_error_says_disk_full_or_not_writable(tmp_path):
    import errno

    from cellseg_bridge.io.atomic import write_error

    full = write_error(tmp_path / "a.pt", OSError(errno.ENOSPC, "No space left on device"))
    assert full is not None and "the disk is full" in str(full) and str(tmp_path / "a.pt") in str(full)
    torch_full = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4416 vs 4310")
    assert "disk is full" in str(write_error(tmp_path, torch_full))
    assert "disk is full" in str(write_error(tmp_path, OSError("131072 requested and 73696 written")))
    for number in (errno.EACCES, errno.EPERM, errno.EROFS):
        denied = write_error(tmp_path, PermissionError(number, "no"))
        assert denied is not None and "not writable" in str(denied)
    assert write_error(tmp_path, FileNotFoundError(errno.ENOENT, "gone")) is None
    assert write_error(tmp_path, RuntimeError("shape mismatch")) is None


def test_atomic_output_turns_a_full_disk_into_one_clear_error(tmp_path):
    import errno

    from cellseg_bridge.errors import InputError

    target = tmp_path / "weights.pth"
    with pytest.raises(InputError, match="the disk is full") as info:
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert info.value.path == target
    assert list(tmp_path.iterdir()) == []  # no partial file left


def test_an_error_about_another_file_is_not_blamed_on_the_output(tmp_path):
    import errno

    elsewhere = tmp_path / "in" / "image.tif"
    with pytest.raises(PermissionError):
        with atomic_output(tmp_path / "out" / "x.tif"):
            raise PermissionError(errno.EACCES, "Permission denied", str(elsewhere))


def test_check_writable_creates_and_probes(tmp_path, monkeypatch):
    import errno
    import tempfile

    from cellseg_bridge.errors import InputError
    from cellseg_bridge.io.atomic import check_writable

    assert check_writable(tmp_path / "new" / "deep") == tmp_path / "new" / "deep"
    assert list((tmp_path / "new" / "deep").iterdir()) == []  # the probe is gone
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        check_writable(tmp_path / "file")

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "ro" / ".probe"))

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(InputError, match="not writable .permission denied.") as info:
        check_writable(tmp_path / "ro")
    assert info.value.path == tmp_path / "ro"


def test_stale_staging_of_dead_processes_only_is_removed(tmp_path):
    import os

    from cellseg_bridge.io.atomic import _host, _staging_prefix, check_writable, clean_stale_staging, staged_outputs

    pid = _dead_pid()
    dead = tmp_path / f"{_staging_prefix(pid)}abc"
    live = tmp_path / f"{_staging_prefix(os.getpid())}def"
    foreign = tmp_path / ".cellseg-staging-otherhost-1-xyz"
    for folder in (dead, live, foreign):
        folder.mkdir()
        (folder / "x_labels.ome.tif").write_bytes(b"partial")
    part = tmp_path / f".w.pth.{_host()}-{pid}-k2j.part.pth"
    part.write_bytes(b"half")
    live_part = tmp_path / f".w.pth.{_host()}-{os.getpid()}-k2j.part.pth"
    live_part.write_bytes(b"half")
    assert sorted(clean_stale_staging(tmp_path)) == sorted([dead, part])
    assert live.exists() and foreign.exists() and live_part.exists()
    # a command's first look at its output folder cleans up
    dead.mkdir()
    check_writable(tmp_path)
    assert not dead.exists() and live.exists()
    out = tmp_path / "a.txt"
    with staged_outputs([out]) as (tmp,):
        assert tmp.parent.name.startswith(_staging_prefix())
        tmp.write_text("ok")
    assert out.read_text() == "ok"
    with atomic_output(tmp_path / "b.txt") as tmp:
        assert tmp.name.startswith(f".b.txt.{_host()}-{os.getpid()}-")
        tmp.write_text("ok")

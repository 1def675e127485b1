"""The manifest file: atomic replacement, fingerprints of referenced images, the project lock."""

import json
import os

import pytest

from cellseg_bridge.errors import InputError
from cellseg_bridge.hitl import manifest as mf


def _minimal():
    return {"format": mf.FORMAT, "version": mf.VERSION, "images": []}


def test_manifest_round_trip_and_failed_write_keeps_the_old_one(tmp_path, monkeypatch):
    mf.write_manifest(tmp_path, _minimal())
    assert mf.read_manifest(tmp_path)["images"] == []
    bad = _minimal()
    bad["images"] = [float("nan")]  # not JSON: the write fails before anything is replaced
    with pytest.raises(ValueError):
        mf.write_manifest(tmp_path, bad)
    assert mf.read_manifest(tmp_path)["images"] == []

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        mf.write_manifest(tmp_path, {**_minimal(), "images": [1]})
    assert mf.read_manifest(tmp_path)["images"] == []
    assert [p.name for p in tmp_path.iterdir()] == [mf.manifest_path(tmp_path).name]


def test_read_manifest_errors(tmp_path):
    with pytest.raises(InputError, match="not a HITL project"):
        mf.read_manifest(tmp_path)
    mf.manifest_path(tmp_path).write_text("{broken", encoding="utf-8")
    with pytest.raises(InputError, match="cannot read"):
        mf.read_manifest(tmp_path)
    mf.manifest_path(tmp_path).write_text(json.dumps({"format": mf.FORMAT, "version": 99}), encoding="utf-8")
    with pytest.raises(InputError, match="newer"):
        mf.read_manifest(tmp_path)


def test_fingerprint_notices_changed_and_missing_files_but_not_a_touch(tmp_path):
    path = tmp_path / "img.tif"
    path.write_bytes(b"abcdef")
    rec = mf.file_fingerprint(path)
    mf.check_fingerprint(rec)
    os.utime(path, ns=(rec["mtime_ns"] + 10**9, rec["mtime_ns"] + 10**9))
    mf.check_fingerprint(rec)  # same bytes, other time: fine
    path.write_bytes(b"abcdeX")
    with pytest.raises(InputError, match="sha256"):
        mf.check_fingerprint(rec)
    path.write_bytes(b"abc")
    with pytest.raises(InputError, match="bytes"):
        mf.check_fingerprint(rec)
    path.unlink()
    with pytest.raises(InputError, match="not found"):
        mf.check_fingerprint(rec)


def test_second_command_on_a_locked_project_is_refused(tmp_path):
    with mf.project_lock(tmp_path):
        with pytest.raises(InputError, match="another cellseg hitl command"):
            with mf.project_lock(tmp_path):
                pass
    with mf.project_lock(tmp_path):  # released
        pass

import os
import subprocess
import sys

from cellseg_bridge.fiji import jvm


def test_imagej_version_is_1x(ij):
    assert str(ij.getVersion()).startswith("1.")


def test_missing_jar_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("IJ_JAR", str(tmp_path / "nope.jar"))
    assert jvm.find_ij_jar() is None
    assert jvm.find_ij_jar(tmp_path / "also-nope.jar") is None


def test_start_without_jar_gives_clear_error(tmp_path):
    # A fresh process: the JVM of this test process may already be running.
    code = (
        "from cellseg_bridge.fiji.jvm import start_imagej1\n"
        "from cellseg_bridge.errors import DependencyError\n"
        "try:\n"
        "    start_imagej1()\n"
        "except DependencyError as exc:\n"
        "    print('ERR', exc)\n"
    )
    env = dict(os.environ, IJ_JAR=str(tmp_path / "nope.jar"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "ERR ImageJ 1.x jar not found" in out.stdout, out.stdout + out.stderr


def _fake_fiji(root, jars=("ij-1.54f.jar",)):
    (root / "jars").mkdir(parents=True)
    for name in jars:
        (root / "jars" / name).write_bytes(b"")
    return root


def test_find_fiji_from_argument_env_and_inner_folder(tmp_path, monkeypatch):
    fiji = _fake_fiji(tmp_path / "Fiji.app")
    monkeypatch.delenv("FIJI_HOME", raising=False)
    assert jvm.find_fiji() is None
    assert jvm.find_fiji(fiji) == fiji
    (fiji / "Contents" / "MacOS").mkdir(parents=True)
    assert jvm.find_fiji(fiji / "Contents" / "MacOS") == fiji
    monkeypatch.setenv("FIJI_HOME", str(fiji))
    assert jvm.find_fiji() == fiji
    assert jvm.find_fiji(tmp_path / "elsewhere") is None


def test_start_fiji_refuses_incomplete_installations_before_any_download(tmp_path, monkeypatch):
    import pytest

    from cellseg_bridge.errors import DependencyError

    monkeypatch.delenv("FIJI_HOME", raising=False)
    with pytest.raises(DependencyError, match="--fiji PATH or set FIJI_HOME"):
        jvm.start_fiji()
    with pytest.raises(DependencyError, match="no Fiji installation"):
        jvm.start_fiji(tmp_path / "missing")
    only_ij1 = _fake_fiji(tmp_path / "A" / "Fiji.app")
    with pytest.raises(DependencyError, match="no ImageJ2 jar"):
        jvm.start_fiji(only_ij1)
    no_ij = _fake_fiji(tmp_path / "B" / "Fiji.app", jars=("imagej-2.14.0.jar",))
    with pytest.raises(DependencyError, match="no ImageJ 1.x jar"):
        jvm.start_jvm(fiji=no_ij)
    with pytest.raises(DependencyError, match="unknown Fiji mode"):
        jvm.start_fiji(only_ij1, mode="window")
    complete = _fake_fiji(tmp_path / "C" / "Fiji.app", jars=("ij-1.54f.jar", "imagej-legacy-1.2.jar"))
    assert jvm.check_fiji(complete) == complete

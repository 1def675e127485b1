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

"""``benchmarks/bench_convert.py`` runs as a script: --help, and a clear word when there is nothing to compare."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_convert.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_help_names_the_options():
    done = _run("--help")
    assert done.returncode == 0, done.stderr
    for option in ("--planes", "--repeat", "--bioio-python"):
        assert option in done.stdout


@pytest.mark.skipif(importlib.util.find_spec("aicsimageio") is not None, reason="aicsimageio installed: it compares")
def test_without_aicsimageio_says_so_and_fails():
    done = _run("--planes", "1")
    assert done.returncode == 1
    assert "aicsimageio is not installed" in done.stderr + done.stdout

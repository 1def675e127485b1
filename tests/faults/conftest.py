"""Fault tests: real ``cellseg`` processes killed (SIGKILL) or interrupted (SIGINT), then resumed.

Each test starts the command as a subprocess (one torch thread), waits until it is
provably in the middle of its work (a file it writes appears), sends the signal,
then runs the command it printed (or the same command) and compares the result with
an uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hitl.conftest import tiny_model, write_images  # noqa: F401 - fixtures and helpers reused here

#: How the CLI is started (no console script needed).
CLI = [sys.executable, "-m", "cellseg_bridge.cli"]


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """In-process reference runs use one torch thread, as the subprocesses do."""
    yield


def cli_env() -> dict[str, str]:
    """The environment of a subprocess: one thread, like the tests in this process."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


class Run:
    """A ``cellseg`` subprocess with its output in files (no pipe can fill up and block it)."""

    def __init__(self, args: list[str], cwd: Path, log: Path) -> None:
        self.log = log
        self._fh = open(log, "w")  # noqa: SIM115 - closed in finish()
        # a shell starts background jobs with SIGINT ignored, and Python keeps an ignored SIGINT:
        # give the child the default disposition, so that Ctrl-C reaches it as on a terminal
        self.proc = subprocess.Popen([*CLI, *args], cwd=cwd, env=cli_env(), stdout=self._fh,
                                     stderr=subprocess.STDOUT,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def signal_when(self, ready: Callable[[], bool], sig: int, timeout: float = 300.0) -> tuple[int, str]:
        """Send ``sig`` as soon as ``ready()``; fail if the process ended first. Returns (exit code, output)."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.proc.poll() is not None:
                pytest.fail(f"finished (exit {self.proc.returncode}) before it could be interrupted:\n"
                            f"{self.log.read_text()}")
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"not ready within {timeout} s:\n{self.log.read_text()}")
            time.sleep(0.005)
        self.proc.send_signal(sig)
        return self.finish(timeout)

    def finish(self, timeout: float = 300.0) -> tuple[int, str]:
        """Wait for the end; (exit code, output)."""
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._fh.close()
        return code, self.log.read_text()


SIGKILL = signal.SIGKILL
SIGINT = signal.SIGINT

"""Start a Java VM with ImageJ 1.x classes, never downloading anything.

Two ways in: scyjava + an ImageJ 1.x jar (``$IJ_JAR``, default Debian's
``/usr/share/java/ij.jar``), used here, in tests and on clusters; and pyimagej
with a user's local Fiji installation (added by the Fiji bridge). Every
conversion is written against ImageJ 1.x classes, which Fiji contains too.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from cellseg_bridge.config import DEFAULT_IJ_JAR, IJ_JAR_ENV
from cellseg_bridge.errors import DependencyError

log = logging.getLogger(__name__)


def find_java() -> str | None:
    """Return the path of a ``java`` executable (``$JAVA_HOME`` first), or None."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    return shutil.which("java")


def find_ij_jar(ij_jar: str | Path | None = None) -> Path | None:
    """Return the ImageJ 1.x jar to use: argument, then ``$IJ_JAR``, then Debian's; None if absent."""
    candidate = ij_jar or os.environ.get(IJ_JAR_ENV) or DEFAULT_IJ_JAR
    path = Path(candidate)
    return path if path.is_file() else None


def start_imagej1(ij_jar: str | Path | None = None, headless: bool = True) -> str:
    """Start the JVM (once per process) with an ImageJ 1.x jar on the class path.

    Parameters
    ----------
    ij_jar : str or Path, optional
        The jar; default ``$IJ_JAR`` or ``/usr/share/java/ij.jar``.
    headless : bool
        Start with ``-Djava.awt.headless=true``. Use False under Xvfb when the
        ROI Manager or ``IJ.run`` is needed (they throw HeadlessException otherwise).

    Returns
    -------
    str
        The ImageJ version string (``IJ.getVersion()``).

    Raises
    ------
    DependencyError
        Java, the jar or scyjava is missing, or the JVM was already started
        without ImageJ.
    """
    try:
        import scyjava
    except ImportError as exc:  # pragma: no cover - scyjava is a dependency
        raise DependencyError("scyjava is not installed: pip install scyjava") from exc
    if not scyjava.jvm_started():
        if find_java() is None:
            raise DependencyError("Java was not found: install a JDK (e.g. apt-get install default-jdk) or set JAVA_HOME")
        jar = find_ij_jar(ij_jar)
        if jar is None:
            raise DependencyError(
                f"ImageJ 1.x jar not found (looked at {ij_jar or os.environ.get(IJ_JAR_ENV) or DEFAULT_IJ_JAR}); "
                "install Debian's libij-java, set IJ_JAR, or use a Fiji installation"
            )
        scyjava.config.set_java_constraints(fetch="never")
        scyjava.config.add_classpath(str(jar))
        if headless:
            scyjava.config.add_option("-Djava.awt.headless=true")
        log.info("starting the JVM with %s", jar)
        scyjava.start_jvm()
    try:
        ij = scyjava.jimport("ij.IJ")
    except Exception as exc:  # jpype raises its own exception types here
        raise DependencyError("the JVM is running but ImageJ classes are not on its class path") from exc
    return str(ij.getVersion())

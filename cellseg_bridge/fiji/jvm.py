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


#: Modes of a Fiji start through pyimagej (``imagej.init(..., mode=...)``).
FIJI_MODES = ("headless", "interactive", "gui")


def find_fiji(fiji: str | Path | None = None) -> Path | None:
    """Return the local Fiji installation to use: argument, then ``$FIJI_HOME``; None if neither.

    A Fiji installation is a folder (``Fiji.app``) holding a ``jars/`` folder.
    On macOS the folder given may also be ``Fiji.app/Contents`` or the
    launcher inside it; its ``Fiji.app`` root is returned.
    """
    from cellseg_bridge.config import FIJI_HOME_ENV

    candidate = fiji or os.environ.get(FIJI_HOME_ENV)
    if not candidate:
        return None
    path = Path(candidate).expanduser()
    for folder in (path, *path.parents[:3]):
        if (folder / "jars").is_dir():
            return folder
    return None


def check_fiji(fiji: str | Path) -> Path:
    """Check that ``fiji`` is a Fiji installation that pyimagej can start, without starting it.

    Parameters
    ----------
    fiji : str or Path
        The ``Fiji.app`` folder.

    Returns
    -------
    Path
        The installation root.

    Raises
    ------
    DependencyError
        The folder is missing, has no ``jars/``, no ImageJ 1.x jar (``ij-*.jar``)
        or no ImageJ2 jar (``imagej-2*.jar`` / ``imagej-legacy``); pyimagej would
        otherwise try to fetch the missing parts from Maven.
    """
    root = find_fiji(fiji)
    if root is None:
        raise DependencyError(f"no Fiji installation at {fiji} (expected a Fiji.app folder with a jars/ folder)")
    jars = [p.name for p in (root / "jars").glob("*.jar")]
    if not any(name.startswith("ij-") for name in jars):
        raise DependencyError(f"{root}/jars holds no ImageJ 1.x jar (ij-*.jar): not a Fiji installation")
    if not any(name.startswith(("imagej-2", "imagej-legacy")) for name in jars):
        raise DependencyError(
            f"{root}/jars holds no ImageJ2 jar (imagej-2*.jar, imagej-legacy-*.jar): pyimagej needs ImageJ2; "
            "use a full Fiji, or ImageJ 1.x through start_imagej1()"
        )
    return root


def start_fiji(fiji: str | Path | None = None, mode: str = "headless") -> object:
    """Start a user's local Fiji through pyimagej (ImageJ2 + legacy ImageJ 1.x), never downloading.

    Parameters
    ----------
    fiji : str or Path, optional
        The ``Fiji.app`` folder; default ``$FIJI_HOME``.
    mode : {"headless", "interactive", "gui"}
        pyimagej's mode. ``headless`` has no ROI Manager (ImageJ 1.x limits);
        ``interactive`` needs a display (or Xvfb) and leaves the GUI hidden
        until ``ij.ui().showUI()``.

    Returns
    -------
    object
        The ImageJ2 gateway (``ij``) of pyimagej; ImageJ 1.x classes
        (``ij.IJ``, ``ij.ImagePlus``) are on the same class path, so every
        conversion of :mod:`cellseg_bridge.fiji` works on it.

    Raises
    ------
    DependencyError
        pyimagej, Java or the Fiji installation is missing or incomplete, or an
        unknown mode.
    """
    if mode not in FIJI_MODES:
        raise DependencyError(f"unknown Fiji mode {mode!r}; use one of {FIJI_MODES}")
    found = fiji if fiji is not None else find_fiji()
    if found is None:
        raise DependencyError("no Fiji installation given: pass --fiji PATH or set FIJI_HOME")
    root = check_fiji(found)
    if find_java() is None:
        raise DependencyError("Java was not found: install a JDK (e.g. apt-get install default-jdk) or set JAVA_HOME")
    try:
        import imagej
        import scyjava
    except ImportError as exc:
        raise DependencyError("pyimagej is not installed: pip install pyimagej") from exc
    if scyjava.jvm_started():
        raise DependencyError("the JVM is already running in this process; Fiji must be started first")
    scyjava.config.set_java_constraints(fetch="never")
    log.info("starting Fiji at %s (mode %s)", root, mode)
    try:
        return imagej.init(str(root), mode=mode, add_legacy=True)
    except Exception as exc:  # pyimagej/jpype raise many types; report them as one
        raise DependencyError(f"Fiji at {root} could not be started: {exc}") from exc


def start_jvm(fiji: str | Path | None = None, mode: str = "headless", ij_jar: str | Path | None = None) -> str:
    """Start ImageJ either way: a local Fiji (pyimagej) when one is given, else ImageJ 1.x (scyjava).

    Parameters
    ----------
    fiji : str or Path, optional
        ``Fiji.app`` folder; default ``$FIJI_HOME``. When neither is set, the
        ImageJ 1.x jar is used.
    mode : {"headless", "interactive", "gui"}
        Fiji's mode; with the jar, anything but ``headless`` starts the JVM
        without the headless flag (needs a display or Xvfb).
    ij_jar : str or Path, optional
        ImageJ 1.x jar; default ``$IJ_JAR`` or Debian's.

    Returns
    -------
    str
        The ImageJ 1.x version (``IJ.getVersion()``) now available.
    """
    if fiji is not None or find_fiji() is not None:
        start_fiji(fiji, mode)
        import scyjava

        return str(scyjava.jimport("ij.IJ").getVersion())
    if mode not in FIJI_MODES:
        raise DependencyError(f"unknown mode {mode!r}; use one of {FIJI_MODES}")
    return start_imagej1(ij_jar, headless=(mode == "headless"))

"""What ``cellseg info`` reports: versions, compute device, Java and ImageJ."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess

from cellseg_bridge.errors import InputError
from cellseg_bridge.fiji.jvm import find_ij_jar, find_java

PACKAGES = ("cellseg-bridge", "torch", "numpy", "numba", "bioio", "aicsimageio", "xarray", "tifffile",
            "zarr", "roifile", "dask", "distributed", "scyjava", "pyimagej", "click")


def compute_device() -> str:
    """Return the compute device the engine would use: ``cuda``, ``mps`` or ``cpu``."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def default_precision(device: str) -> dict[str, str]:
    """What ``precision="auto"`` means on ``device``: ``{"inference": ..., "training": ...}``."""
    import torch

    from cellseg_bridge.nn.precision import autocast_dtype, training_autocast_dtype

    dev = torch.device(device)
    names = {}
    for use, resolve in (("inference", autocast_dtype), ("training", training_autocast_dtype)):
        dtype = resolve("auto", dev)
        names[use] = "float32" if dtype is None else str(dtype).removeprefix("torch.")
    return names


def java_version(java: str) -> str | None:
    """Return the first line of ``java -version``, or None if it cannot be run."""
    try:
        proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[0] if lines else None


def reader_info() -> dict:
    """The reader backend ``open_image`` uses here and the versions of its plugins.

    Returns
    -------
    dict
        ``backend`` (``$CELLSEG_READER`` or ``"bioio"``), ``versions`` (its
        distributions, None when not installed), ``fallback`` (``"aicsimageio"``
        when bioio is the backend, chosen by default, and aicsimageio is
        installed, else None) and ``fallback_version``.
    """
    from cellseg_bridge.io import _backends

    try:
        name, explicit = _backends.resolve(None)
    except InputError as exc:  # a bad $CELLSEG_READER: report it instead of failing `info`
        return {"backend": f"invalid ({exc})", "versions": {}, "fallback": None, "fallback_version": None}
    versions = _backends.versions()
    fallback = "aicsimageio" if name == "bioio" and not explicit and _backends.installed("aicsimageio") else None
    return {
        "backend": name,
        "versions": versions[name],
        "fallback": fallback,
        "fallback_version": versions["aicsimageio"]["aicsimageio"] if fallback else None,
    }


def environment_info() -> dict:
    """Collect versions of the main packages, the compute device, Java and ImageJ.

    Returns
    -------
    dict
        JSON-serialisable; keys ``python``, ``packages``, ``reader`` (see
        :func:`reader_info`), ``device``, ``precision`` (what ``precision="auto"``
        means there), ``java``, ``imagej_jar``.
    """
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    java = find_java()
    jar = find_ij_jar()
    device = compute_device()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "reader": reader_info(),
        "device": device,
        "precision": default_precision(device),
        "java": {"path": java, "version": java_version(java) if java else None},
        "imagej_jar": str(jar) if jar else None,
    }

"""Reader backends behind :func:`cellseg_bridge.io.reader.open_image` (private).

Two backends read the same files into the same record
(:class:`~cellseg_bridge.io._backends.common._Image`):

``"bioio"`` (default)
    bioio and its format plugins (:mod:`~cellseg_bridge.io._backends.bioio_backend`).
``"aicsimageio"``
    aicsimageio 4.14, the optional extra ``cellseg-bridge[aicsimageio]``
    (:mod:`~cellseg_bridge.io._backends.aicsimageio_backend`).

The backend is chosen by the ``reader`` argument, else the environment variable
``CELLSEG_READER`` (what ``--reader`` on the command line sets, so Dask worker
processes started by the command use it too), else ``"bioio"``. When the
default was not overridden and bioio cannot read a file, aicsimageio is tried
if it is installed; a WARNING names the file, and if aicsimageio fails too the
bioio error is raised.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TypeVar

from cellseg_bridge.errors import DependencyError, InputError
from cellseg_bridge.io._backends.common import _Image

logger = logging.getLogger(__name__)

#: Names accepted by ``reader=`` / ``--reader``.
BACKENDS: tuple[str, ...] = ("bioio", "aicsimageio")
DEFAULT_BACKEND = "bioio"
#: Environment variable naming the backend when ``reader`` is not given.
ENV_VAR = "CELLSEG_READER"

#: Distributions that make up each backend, as reported by ``cellseg info``.
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "bioio": ("bioio", "bioio-base", "bioio-czi", "bioio-nd2", "bioio-lif", "bioio-ome-tiff",
              "bioio-tifffile", "bioio-imageio", "bioio-ome-zarr", "readlif", "aicspylibczi", "nd2",
              "liffile", "tifffile", "zarr"),
    "aicsimageio": ("aicsimageio", "aicspylibczi", "nd2", "readlif", "tifffile", "zarr"),
}

T = TypeVar("T")


def resolve(reader: str | None) -> tuple[str, bool]:
    """Return ``(backend name, chosen explicitly)`` for a ``reader`` argument.

    Parameters
    ----------
    reader : str or None
        ``"bioio"``, ``"aicsimageio"`` or None (``$CELLSEG_READER``, else bioio).

    Returns
    -------
    tuple of (str, bool)
        The backend, and whether the argument or the environment named it
        (no automatic fallback then).

    Raises
    ------
    InputError
        An unknown backend name.
    """
    explicit = reader is not None
    if reader is None:
        env = os.environ.get(ENV_VAR, "").strip()
        explicit = bool(env)
        reader = env or DEFAULT_BACKEND
    name = reader.strip().lower()
    if name not in BACKENDS:
        raise InputError(f"unknown reader {reader!r}; choose one of {', '.join(BACKENDS)}")
    return name, explicit


def installed(name: str) -> bool:
    """Whether the backend's main package can be imported (without importing it)."""
    return importlib.util.find_spec(name) is not None


def backend(name: str) -> ModuleType:
    """The module of backend ``name`` (``scene_names`` and ``open_scene``)."""
    if name == "aicsimageio":
        from cellseg_bridge.io._backends import aicsimageio_backend

        return aicsimageio_backend
    from cellseg_bridge.io._backends import bioio_backend

    return bioio_backend


def versions() -> dict[str, dict[str, str | None]]:
    """Installed versions of each backend's distributions (None: not installed)."""
    out: dict[str, dict[str, str | None]] = {}
    for name, dists in DISTRIBUTIONS.items():
        out[name] = {}
        for dist in dists:
            try:
                out[name][dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                out[name][dist] = None
    return out


def _with_fallback(reader: str | None, path: Path, call: Callable[[ModuleType], T]) -> T:
    """Run ``call(backend)``; on bioio's InputError/DependencyError try aicsimageio when allowed and installed."""
    name, explicit = resolve(reader)
    try:
        return call(backend(name))
    except (InputError, DependencyError) as error:
        if explicit or name != "bioio" or not installed("aicsimageio") or not path.exists():
            raise
        try:
            result = call(backend("aicsimageio"))
        except (InputError, DependencyError):
            raise error from None
        reason = getattr(error, "reason", str(error))
        logger.warning("%s: bioio could not read it (%s); read with aicsimageio instead", path, reason)
        return result


def _check_structure(path: Path, fmt: str) -> None:
    """Checks of the file's structure that no backend makes before reading pixels (truncated CZI)."""
    if fmt == "CZI" and path.is_file():
        from cellseg_bridge.io._backends.czi import check_czi

        check_czi(path)


def scene_names(path: Path, fmt: str, reader: str | None = None) -> list[str]:
    """Scene names of ``path`` through the chosen backend (see the module docstring)."""
    _check_structure(path, fmt)
    return _with_fallback(reader, path, lambda module: module.scene_names(path, fmt))


def open_scene(path: Path, fmt: str, scene: int | str | None, axes: str | None, reader: str | None = None) -> _Image:
    """One scene of ``path`` through the chosen backend (see the module docstring)."""
    _check_structure(path, fmt)
    return _with_fallback(reader, path, lambda module: module.open_scene(path, fmt, scene, axes))

"""One loaded model per worker process (dask workers, or this process).

Tasks name their model by a picklable spec (registry name or checkpoint path,
and device); :func:`cached_model` loads it the first time a process needs it
and hands the same object to every later task there. An already loaded model
object passed as the spec is returned as is.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["cached_model", "loads_in_this_process"]

_LOCK = threading.Lock()
_CACHE: dict[tuple[str, str, str], Any] = {}
_LOADS: list[str] = []


def cached_model(spec: Any, device: str = "auto", kind: str = "segment") -> Any:
    """The model for ``spec`` in this process, loaded on first use.

    Parameters
    ----------
    spec : str, Path or model
        Registry name or checkpoint path, or a loaded model (returned as is).
    device : str
        Device for loading (``"auto"``, ``"cpu"``, ``"cuda"``, ...).
    kind : {"segment", "restore"}
        A segmentation model (:func:`cellseg_bridge.segmentation.pipeline.load_model`) or a
        restoration model (:func:`cellseg_bridge.restoration.api.load_restore_model`).
    """
    if not isinstance(spec, (str, Path)):
        return spec
    if kind not in ("segment", "restore"):
        raise ValueError(f"unknown model kind {kind!r}")
    key = (str(spec), str(device), kind)
    with _LOCK:
        model = _CACHE.get(key)
        if model is None:
            if kind == "segment":
                from cellseg_bridge.segmentation.pipeline import load_model

                model = load_model(spec, device)
            else:
                from cellseg_bridge.restoration.api import load_restore_model

                model = load_restore_model(spec, device)
            _CACHE[key] = model
            _LOADS.append(str(spec))
            log.info("model %s loaded in this process (device %s)", spec, device)
    return model


def loads_in_this_process(spec: str | None = None) -> int:
    """How many models (or loads of ``spec``) this process has made (for tests: once per worker)."""
    return len(_LOADS) if spec is None else _LOADS.count(str(spec))

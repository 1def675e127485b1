"""Which model of a HITL project is current (``hitl use``), and taking one out of it (``hitl export``).

A cycle becomes current when it is trained, unless it scores below the current model
on the held-out images (:mod:`cellseg_bridge.hitl.cycle`); :func:`use_model` makes any
model of the project current (``initial`` or ``cycle_NNN``, or a cycle number), and
:func:`export_model` copies one into the model cache under a name, so that
``cellseg segment --model NAME`` and the Fiji menus can use it outside the project.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cellseg_bridge.errors import InputError
from cellseg_bridge.hitl.manifest import project_lock, write_manifest

if TYPE_CHECKING:
    from cellseg_bridge.hitl.project import HitlProject

__all__ = ["export_model", "model_key", "use_model"]

logger = logging.getLogger(__name__)


def model_key(project: HitlProject, model: str | int) -> str:
    """``initial`` or ``cycle_NNN`` for a model key, cycle key or cycle number; InputError if unknown."""
    from cellseg_bridge.hitl.cycle import cycle_key

    text = str(model).strip()
    key = cycle_key(int(text)) if text.isdigit() else text
    known = ["initial"] + [cycle["model"] for cycle in project.manifest["cycles"]]
    if key not in known:
        raise InputError(f"no model {text!r} in this project (known: {', '.join(known)})", project.directory)
    return key


def use_model(project: HitlProject, model: str | int) -> dict[str, Any]:
    """Make ``model`` (``initial``, ``cycle_NNN`` or a cycle number) the project's current model.

    Returns
    -------
    dict
        ``{"current": key, "previous": key}``.
    """
    with project_lock(project.directory):
        project.reload()
        key = model_key(project, model)
        previous = project.manifest["current_model"]
        project.manifest["current_model"] = key
        write_manifest(project.directory, project.manifest)
    logger.info("current model: %s (was %s)", key, previous)
    return {"current": key, "previous": previous}


def export_model(project: HitlProject, name: str, model: str | int | None = None, *,
                 overwrite: bool = False) -> Path:
    """Copy a model of the project (default: the current one) into the model cache as ``name``.

    Returns
    -------
    Path
        The model folder in the cache (:func:`cellseg_bridge.nn.registry.import_model`).
    """
    from cellseg_bridge.nn.registry import import_model

    key = model_key(project, project.current_model if model is None else model)
    return import_model(project.model_path(key), name, overwrite=overwrite)

"""``cellseg models suggest``: rank the zoo models for each input file by the generalist's style.

The ranking is :class:`cellseg_bridge.segmentation.suggest.AutoModel`'s, the one ``--model auto`` uses.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cellseg_bridge.batch.naming import open_scene
from cellseg_bridge.errors import CellsegError

log = logging.getLogger(__name__)

__all__ = ["suggest_files"]


def suggest_files(
    inputs: Sequence[str | Path], *, scene: int = 0, axes: str | None = None, device: str = "auto",
    **options: Any,
) -> list[dict[str, Any]]:
    """Rank the zoo models for each file (``cellseg models suggest``); failures are reported, not raised.

    Parameters
    ----------
    inputs : sequence of paths
        Image files.
    scene : int
        Scene of each file.
    axes : str, optional
        Axes of plain TIFFs.
    device : str
        Where the generalist runs.
    **options
        ``channel``, ``nuclear_channel``, ``invert``, ... as for segmentation.

    Returns
    -------
    list of dict
        Per input: ``{"input", "model", "confidence", "ranking"}`` or ``{"input", "reason"}``.

    Raises
    ------
    InputError
        The generalist, its style index or a zoo model is not installed.
    """
    from cellseg_bridge.segmentation.suggest import load_auto_model  # torch: only when the command runs

    auto = load_auto_model(device)
    rows: list[dict[str, Any]] = []
    for source in inputs:
        try:
            image = open_scene(Path(source), scene, axes)
            rows.append({"input": str(source), **auto.choose(image, **options).to_dict()})
        except CellsegError as exc:
            log.error("%s: %s", source, exc)
            rows.append({"input": str(source), "reason": str(exc)})
    return rows

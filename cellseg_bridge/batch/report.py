"""The record of one batch item and the report of a batch (what ``--json`` prints).

:class:`ItemResult` is one input scene: its outputs, status and what the job
returned; :class:`SegmentReport` is a :class:`~cellseg_bridge.batch.runner.BatchReport`
with one record per scene, for ``segment`` and ``restore``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellseg_bridge.batch.runner import BatchReport

__all__ = ["ItemResult", "SegmentReport", "item_statuses"]


@dataclass
class ItemResult:
    """What happened to one input scene (one row of ``--json``'s ``items``).

    Attributes
    ----------
    input : str
        The input file (as given/expanded).
    scene : int or None
        0-based scene index; None when the file could not be opened.
    scene_name : str or None
        The scene's name.
    status : str
        ``"done"``, ``"skipped"`` (outputs existed) or ``"failed"``.
    outputs : dict of str to Path
        Output kind (``labels``, ``rois``, ``csv``, ``overlay``, ``seg_npy``,
        ``flows``) -> file. Empty for a file that could not be opened.
    n_cells : int or None
        Number of labels found (None unless segmented in this run).
    diameter : float or None
        Diameter (pixels) used by the segmentation.
    reason : str or None
        Why it failed.
    """

    input: str
    scene: int | None = None
    scene_name: str | None = None
    status: str = "failed"
    outputs: dict[str, Path] = field(default_factory=dict)
    n_cells: int | None = None
    diameter: float | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, output paths absolute."""
        data = dataclasses.asdict(self)
        data["outputs"] = {kind: os.path.abspath(path) for kind, path in self.outputs.items()}
        return data


@dataclass
class SegmentReport(BatchReport):
    """A :class:`~cellseg_bridge.batch.BatchReport` with one :class:`ItemResult` per input scene."""

    items: list[ItemResult] = field(default_factory=list)
    model: str = ""

    def summary(self, verb: str = "segmented") -> str:
        """One line of counts of scenes (not files), then one line per failure."""
        counts = {status: sum(1 for item in self.items if item.status == status) for status in ("done", "skipped")}
        lines = [f"{counts['done']} {verb}, {counts['skipped']} skipped (already done), {len(self.failed)} failed"]
        lines += [f"FAILED {path}: {reason}" for path, reason in self.failed]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Machine-readable result (what ``cellseg segment --json`` prints).

        ``{"ok", "model", "items": [ItemResult...], "failed": [{"input", "reason"}],
        "counts": {"done", "skipped", "failed"}}`` where counts are items
        (scenes), and ``failed`` also lists inputs that could not be opened
        or did not exist.
        """
        statuses = ("done", "skipped", "failed")
        counts = {status: sum(1 for item in self.items if item.status == status) for status in statuses}
        return {
            "ok": self.ok,
            "model": self.model,
            "items": [item.to_dict() for item in self.items],
            "failed": [{"input": source, "reason": reason} for source, reason in self.failed],
            "counts": counts,
        }


def item_statuses(records: dict[str, ItemResult], batch: BatchReport) -> list[ItemResult]:
    """Set each record's status from the batch report; add records for inputs that failed before planning.

    Parameters
    ----------
    records : dict of str to ItemResult
        One record per planned item, by item name (updated in place).
    batch : BatchReport
        What :func:`~cellseg_bridge.batch.run_batch` did.

    Returns
    -------
    list of ItemResult
        The records, then one per input that failed before it could be planned.
    """
    failed = dict(batch.failed)
    skipped = {Path(p) for p in batch.skipped}
    done = {Path(p) for p in batch.done}
    items: list[ItemResult] = []
    for name, record in records.items():
        paths = list(record.outputs.values())
        if name in failed:
            record.status, record.reason = "failed", failed[name]
        elif paths and all(p in skipped for p in paths):
            record.status = "skipped"
        elif paths and all(p in done for p in paths):
            record.status = "done"
        else:  # pragma: no cover - run_batch reports every item one way or another
            record.status, record.reason = "failed", "not run"
        items.append(record)
    for source, reason in batch.failed:
        if source not in records:
            items.append(ItemResult(input=source, status="failed", reason=reason))
    return items

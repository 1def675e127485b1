"""The one record of a batch item and the one report of a batch (what ``--json`` prints), and the manifest.

Every batch (``convert``, ``segment``, ``restore``; in this process or on a Dask
cluster) reports with :class:`BatchReport`, one :class:`ItemRecord` per input
scene, so the JSON has one shape::

    {"ok": bool, "model": str, "counts": {"done", "skipped", "failed"},
     "failed": [{"input", "reason"}], "manifest": str | null, "seconds": float,
     "items": [{"item", "input", "scene", "scene_name", "status", "reason",
                "outputs": {kind: absolute path}, "n_cells", "diameter", "model_choice",
                "seconds", "worker", "result": {...}}]}

``n_cells``, ``diameter`` and ``model_choice`` are the segmentation's facts
(None for other jobs and for items not run); ``result`` holds whatever else the
job returned (e.g. ``chunks`` for a plane segmented in chunks).

The **manifest** (a JSON-lines file, written by cluster runs) gets the record of
every finished item as it finishes; :func:`read_manifest` gives the last state of
each item.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SUMMARY_KEYS", "BatchInterrupted", "BatchReport", "ItemRecord", "append_manifest", "manifest_records",
           "read_manifest", "recorded_task"]

#: The facts of a segmentation that every item of the JSON report carries at its top level.
SUMMARY_KEYS = ("n_cells", "diameter", "model_choice")
_STATUSES = ("done", "skipped", "failed")


@dataclass
class ItemRecord:
    """What happened to one work item (one row of ``--json``'s ``items``).

    Attributes
    ----------
    input : str
        The input file (as given/expanded).
    scene : object
        The item's key: the 0-based scene index for the batch commands; None
        for an input that could not be opened.
    scene_name : str or None
        The scene's name.
    item : str
        The item's name in logs and in the manifest (the input, with the scene
        for multi-scene files).
    status : str
        ``"done"``, ``"skipped"`` (outputs existed) or ``"failed"``.
    reason : str or None
        Why it failed.
    outputs : dict of str to Path
        Output kind (``labels``, ``rois``, ``restored``, ...) -> file; empty for
        an input that could not be opened.
    seconds : float or None
        Time in the job.
    worker : str or None
        ``host:pid`` of the process that ran the job.
    result : dict
        What the job returned (``n_cells``, ``diameter``, ``model_choice`` for
        segmentation; ``chunks``, ... for planes segmented in chunks).
    """

    input: str
    scene: Any = None
    scene_name: str | None = None
    item: str = ""
    status: str = "failed"
    reason: str | None = None
    outputs: dict[str, Path] = field(default_factory=dict)
    seconds: float | None = None
    worker: str | None = None
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> Any:
        """The work item's key (the scene index)."""
        return self.scene

    @property
    def source(self) -> str:
        """The input file."""
        return self.input

    @property
    def n_cells(self) -> int | None:
        """Number of labels found (segmentation; None unless segmented in this run)."""
        return self.result.get("n_cells")

    @property
    def diameter(self) -> float | None:
        """Diameter (pixels) used by the segmentation or restoration."""
        return self.result.get("diameter")

    @property
    def model_choice(self) -> dict | None:
        """With ``--model auto``: ``{"model", "confidence", "ranking"}``."""
        return self.result.get("model_choice")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the shape in the module docstring), output paths absolute."""
        data: dict[str, Any] = {
            "item": self.item or self.input,
            "input": self.input,
            "scene": self.scene,
            "scene_name": self.scene_name,
            "status": self.status,
            "reason": self.reason,
            "outputs": {kind: os.path.abspath(path) for kind, path in self.outputs.items()},
        }
        data.update({key: self.result.get(key) for key in SUMMARY_KEYS})
        data.update(seconds=self.seconds, worker=self.worker,
                    result={k: v for k, v in self.result.items() if k not in SUMMARY_KEYS})
        return data


@dataclass
class BatchReport:
    """What a batch did: one :class:`ItemRecord` per item, and the outputs written and skipped.

    Attributes
    ----------
    done : list of Path
        Outputs written.
    skipped : list of Path
        Outputs that existed already and were left alone.
    failed : list of (str, str)
        ``(input, reason)`` for every input or item that failed.
    items : list of ItemRecord
        One per item, and one per input that failed before its items were known.
    model : str
        The model used (segmentation, restoration), for the JSON report.
    manifest : Path or None
        The manifest written, if any.
    seconds : float
        Wall time of the run.
    """

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    items: list[ItemRecord] = field(default_factory=list)
    model: str = ""
    manifest: Path | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failed

    def counts(self) -> dict[str, int]:
        """Number of items done, skipped and failed."""
        return {status: sum(1 for item in self.items if item.status == status) for status in _STATUSES}

    def add(self, record: ItemRecord) -> None:
        """Record one item: its outputs go to ``done``/``skipped``, a failure to ``failed``."""
        self.items.append(record)
        paths = list(record.outputs.values())
        if record.status == "done":
            self.done.extend(paths)
        elif record.status == "skipped":
            self.skipped.extend(paths)
        else:
            self.failed.append((record.item or record.input, record.reason or "unknown failure"))

    def summary(self, verb: str = "written") -> str:
        """One line of counts of items (scenes), then one line per failure.

        Parameters
        ----------
        verb : str
            What happened to the items done ("written", "converted", "segmented", ...).
        """
        counts = self.counts()
        lines = [f"{counts['done']} {verb}, {counts['skipped']} skipped (already done), {len(self.failed)} failed"]
        lines += [f"FAILED {path}: {reason}" for path, reason in self.failed]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Machine-readable result (what ``--json`` prints; the shape in the module docstring).

        ``counts`` are items (scenes); ``failed`` also lists inputs that could not
        be opened or did not exist.
        """
        return {
            "ok": self.ok,
            "model": self.model,
            "items": [item.to_dict() for item in self.items],
            "failed": [{"input": source, "reason": reason} for source, reason in self.failed],
            "counts": self.counts(),
            "manifest": os.path.abspath(self.manifest) if self.manifest else None,
            "seconds": self.seconds,
        }


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a batch, with the report of what was done until then (``report``).

    Parameters
    ----------
    report : BatchReport
        The items finished (written, skipped, failed) before the interruption.
    """

    def __init__(self, report: BatchReport) -> None:
        super().__init__("interrupted")
        self.report = report


def recorded_task(task: Any, manifest: Path, item: Any) -> Any:
    """Run ``task(item)`` and append the finished item to the manifest at once, where it ran.

    On a cluster the worker records the item, so the manifest holds every item
    finished even when the process that collects the results is killed first.

    Parameters
    ----------
    task : callable
        ``task(item) -> dict or None``.
    manifest : Path
        The JSON-lines manifest.
    item : WorkItem
        The item.
    """
    import socket
    import time as _time

    tic = _time.perf_counter()
    result = task(item)
    append_manifest(manifest, ItemRecord(
        input=str(item.source), scene=item.key, scene_name=item.scene_name, item=item.name, status="done",
        outputs=item.output_map(), seconds=_time.perf_counter() - tic, worker=f"{socket.gethostname()}:{os.getpid()}",
        result=dict(result) if isinstance(result, dict) else {}))
    return result


def append_manifest(manifest: Path, record: ItemRecord) -> None:
    """Append one item's record (and the time) to the JSON-lines manifest, flushed to disk."""
    manifest.parent.mkdir(parents=True, exist_ok=True)
    line = record.to_dict() | {"time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with open(manifest, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def manifest_records(path: Path, offset: int = 0) -> list[ItemRecord]:
    """The records appended to a manifest after byte ``offset`` (a torn last line is ignored).

    Parameters
    ----------
    path : Path
        The manifest.
    offset : int
        Its size when the run started: only this run's records are read.
    """
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    records = []
    names = {f.name for f in dataclasses.fields(ItemRecord)}
    for line in text.splitlines():
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(data, dict) or "input" not in data:
            continue
        result = dict(data.get("result") or {})
        result.update({key: data[key] for key in SUMMARY_KEYS if data.get(key) is not None})
        fields = {k: v for k, v in data.items() if k in names and k not in ("result", "outputs")}
        outputs = {kind: Path(out) for kind, out in (data.get("outputs") or {}).items()}
        records.append(ItemRecord(**fields, outputs=outputs, result=result))
    return records


def read_manifest(path: str | Path) -> dict[str, dict]:
    """Last record of each item in a manifest, by item name (a torn last line is ignored).

    Parameters
    ----------
    path : str or Path
        The manifest (missing: no records).
    """
    records: dict[str, dict] = {}
    path = Path(path)
    if not path.exists():
        return records
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "item" in rec:
            records[rec["item"]] = rec
    return records

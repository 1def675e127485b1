"""The run record: ``cellseg_run.json`` in every output folder of ``segment``, ``restore`` and ``convert``.

It says how the outputs were made, so that a result can be traced and a run repeated
(``cellseg segment --like-run cellseg_run.json``)::

    {
      "format": "cellseg_run/1",
      "command": "segment",               # the batch command
      "argv": ["cellseg", "segment", ...], # the command line of the latest run
      "written": "2026-12-07T14:30:00+00:00",
      "versions": {"python": ..., "cellseg-bridge": ..., "torch": ..., ...},
      "platform": "...", "device": "cpu", "precision": "float32", "threads": 2,
      "model": {"name": "nuclei", "path": ..., "sha256": ..., "config": {...}},
      "options": {...},                   # every SegmentOptions field (or the command's options)
      "batch": {...},                     # the command's other settings (outputs, restore, ...)
      "parameters_sha256": "...",         # digest of what changes the outputs (see below)
      "inputs": [{"path": ..., "size": ..., "mtime": ...}],
      "items": {"<first output name>": {"input": ..., "parameters_sha256": ...}}
    }

``parameters_sha256`` is the digest of the *parameters that change the outputs*: the
model's weights (sha256) and configuration, every option except those that only change
how fast it runs (:data:`NEUTRAL_OPTIONS`), and the batch settings. Each item records
the digest it was made with. A re-run whose digest differs from an item's redoes that
item (its outputs exist, but were made with other parameters; the reason is logged), and
a re-run with the same parameters skips it as before. Outputs without a record (written
by an older version) count as made with the current parameters, i.e. they are skipped.

The top-level fields describe the latest run that wrote to the folder; ``items`` keeps
the entry of every item ever written there. The file is written atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cellseg_bridge.batch.items import WorkItem
from cellseg_bridge.batch.report import BatchReport
from cellseg_bridge.errors import CellsegError, InputError
from cellseg_bridge.io.atomic import atomic_output

log = logging.getLogger(__name__)

__all__ = [
    "FORMAT",
    "NEUTRAL_OPTIONS",
    "RECORD_NAME",
    "RunRecord",
    "model_facts",
    "models_facts",
    "read_run_record",
]

#: File name of the run record in an output folder.
RECORD_NAME = "cellseg_run.json"
#: Value of the record's ``format`` field.
FORMAT = "cellseg_run/1"
#: Options that change how fast a run goes, not its outputs.
NEUTRAL_OPTIONS = frozenset({"device", "batch_size"})
#: Distributions whose versions are recorded.
VERSIONED = ("cellseg-bridge", "torch", "numpy", "numba", "scipy", "bioio", "tifffile", "xarray", "dask",
             "roifile", "zarr")


def _jsonable(value: Any) -> Any:
    """Plain JSON values (tuples as lists, paths as strings)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def digest(value: Any) -> str:
    """sha256 of the canonical JSON text of ``value``."""
    text = json.dumps(_jsonable(value), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_facts(model: Any) -> dict[str, Any]:
    """Name, weights path, weights sha256 and configuration of a model name, path or loaded model.

    A loaded model object is described by its ``path`` / ``checkpoint`` / ``name`` attribute
    (a path or a registry name), else by its class name only (``sha256`` None).
    """
    if model is None:
        return {"name": None, "path": None, "sha256": None, "config": None}
    from cellseg_bridge.nn.store import folder_weights, read_json, sha256_file

    if not isinstance(model, (str, os.PathLike)):
        source = getattr(model, "path", None) or getattr(model, "checkpoint", None) or getattr(model, "name", None)
        if not isinstance(source, (str, os.PathLike)):
            return {"name": type(model).__name__, "path": None, "sha256": None, "config": None}
        facts = model_facts(source)
        facts["name"] = str(getattr(model, "name", None) or facts["name"])
        return facts
    from cellseg_bridge.nn.registry import resolve_model

    path = resolve_model(model)
    config: dict[str, Any] | None = None
    if path.is_dir():
        path, config = folder_weights(path)
    elif (path.parent / "config.json").is_file():
        beside = read_json(path.parent / "config.json")
        config = beside if beside.get("weights") == path.name else None
    return {"name": str(model), "path": str(path.resolve()), "sha256": sha256_file(path), "config": config}


def models_facts(models: Sequence[Any]) -> dict[str, Any]:
    """:func:`model_facts` of one model, or of several applied in order (restoration) as one entry.

    A model that cannot be found is named only (``sha256`` None): the batch reports it per item.
    """
    parts = []
    for model in models:
        try:
            parts.append(model_facts(model))
        except CellsegError:
            parts.append({"name": str(model), "path": None, "sha256": None, "config": None})
    if len(parts) == 1:
        return parts[0]
    shas = [part["sha256"] for part in parts]
    return {"name": "+".join(str(part["name"]) for part in parts), "path": None,
            "sha256": digest(shas) if all(shas) else None, "config": [part["config"] for part in parts],
            "parts": parts}


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _compute(device: str, precision: str) -> dict[str, Any]:
    """Device, precision and threads as the run used them (``auto`` resolved)."""
    import torch

    from cellseg_bridge.system.info import compute_device, default_precision

    used = compute_device() if device in ("auto", "") else device
    if precision in ("auto", ""):
        precision = default_precision(used.split(":")[0])["inference"]
    return {"device": used, "precision": precision, "threads": torch.get_num_threads()}


def input_facts(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Path (absolute), size and modification time (ISO, UTC) of each input file."""
    from datetime import datetime, timezone

    facts = []
    for path in dict.fromkeys(Path(p) for p in paths):
        try:
            stat = path.stat()
        except OSError:
            continue
        mtime = datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc).isoformat()
        facts.append({"path": str(path.resolve()), "size": stat.st_size, "mtime": mtime})
    return facts


def read_run_record(path: str | Path) -> dict[str, Any] | None:
    """The run record of an output folder (or the record file itself); None when there is none.

    Raises
    ------
    InputError
        The file exists but is not a run record.
    """
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the run record ({exc})", path) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"not a cellseg run record (expected format {FORMAT!r})", path)
    return data


@dataclasses.dataclass
class RunRecord:
    """The record of one batch run into ``out_dir``; :meth:`stale_reason` and :meth:`write` use it.

    Parameters
    ----------
    out_dir : Path
        The output folder.
    command : str
        ``segment``, ``restore`` or ``convert``.
    options : dict
        The command's options (all of them; :data:`NEUTRAL_OPTIONS` are left out of the digest).
    batch : dict
        The command's other settings that change outputs (output kinds, restore, ...).
    model : dict
        :func:`model_facts` of the model (empty for commands without one).
    device, precision : str
        As asked (``auto`` is resolved when the record is written).
    """

    out_dir: Path
    command: str
    options: dict[str, Any]
    batch: dict[str, Any]
    model: dict[str, Any] = dataclasses.field(default_factory=dict)
    device: str = "auto"
    precision: str = "auto"

    def parameters(self) -> dict[str, Any]:
        """What changes the outputs: model weights and config, options (but :data:`NEUTRAL_OPTIONS`), batch."""
        options = {k: v for k, v in self.options.items() if k not in NEUTRAL_OPTIONS and k != "model"}
        model = {"sha256": self.model.get("sha256"), "config": self.model.get("config")} if self.model else {}
        if model and model["sha256"] is None:  # an object we cannot hash: its name is all we know
            model["name"] = self.model.get("name")
        return {"command": self.command, "model": model, "options": options, "batch": self.batch}

    @property
    def parameters_sha256(self) -> str:
        """Digest of :meth:`parameters`."""
        return digest(self.parameters())

    def stale_reason(self) -> Callable[[WorkItem], str | None]:
        """``reason(item)``: why an item's existing outputs must be redone (other parameters), or None."""
        previous = read_run_record(self.out_dir) or {}
        items = previous.get("items") or {}
        mine = self.parameters_sha256
        changed = _describe_change(previous, self)

        def reason(item: WorkItem) -> str | None:
            entry = items.get(_item_key(item))
            if not entry or entry.get("parameters_sha256") in (None, mine):
                return None
            if entry.get("parameters_sha256") == previous.get("parameters_sha256") and changed:
                return f"its outputs were made with other parameters ({changed})"
            return "its outputs were made with other parameters (see cellseg_run.json)"

        return reason

    def write(self, report: BatchReport, argv: list[str] | None = None) -> Path | None:
        """Write (atomically) the record after a batch; the items done now carry this run's digest.

        A batch that wrote nothing (items skipped or failed) leaves the folder as it was (returns None).
        """
        from cellseg_bridge.nn.store import now_iso

        done = [rec for rec in report.items if rec.status == "done" and rec.outputs]
        if not done:
            return None
        previous = read_run_record(self.out_dir) or {}
        items = dict(previous.get("items") or {})
        mine = self.parameters_sha256
        for rec in done:
            first = Path(next(iter(rec.outputs.values())))
            items[first.name] = {"input": str(Path(rec.input).resolve()), "scene": _jsonable(rec.scene),
                                 "parameters_sha256": mine}
        inputs = [Path(rec.input) for rec in report.items if rec.status in ("done", "skipped")]
        record = {
            "format": FORMAT,
            "command": self.command,
            "argv": list(sys.argv if argv is None else argv),
            "cwd": os.getcwd(),
            "written": now_iso(),
            "versions": _versions(),
            "platform": platform.platform(),
            **(_compute(self.device, self.precision) if self.model else {"device": None, "precision": None,
                                                                           "threads": None}),
            "model": self.model,
            "options": self.options,
            "batch": self.batch,
            "parameters_sha256": mine,
            "inputs": input_facts(inputs),
            "items": items,
        }
        path = self.out_dir / RECORD_NAME
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp:
            Path(tmp).write_text(json.dumps(_jsonable(record), indent=2) + "\n", encoding="utf-8")
        return path


def _item_key(item: WorkItem) -> str:
    """An item's key in the record: the name of its first output."""
    return item.outputs[0].name if item.outputs else str(item.source)


def _describe_change(previous: Mapping[str, Any], current: RunRecord) -> str:
    """The differences between a previous record and this run, in words (model, options, batch)."""
    if not previous:
        return ""
    said = []
    old_model = previous.get("model") or {}
    if old_model.get("sha256") != current.model.get("sha256") or old_model.get("config") != current.model.get("config"):
        said.append(f"model {old_model.get('name')!r} -> {current.model.get('name')!r}")
    for group in ("options", "batch"):
        old, new = previous.get(group) or {}, _jsonable(getattr(current, group))
        for key in sorted(set(old) | set(new)):
            if key in NEUTRAL_OPTIONS or key == "model" or old.get(key) == new.get(key):
                continue
            said.append(f"{key} {old.get(key)!r} -> {new.get(key)!r}")
    return ", ".join(said)

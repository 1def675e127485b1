"""A generic batch runner: expand inputs, plan outputs, skip what is done, run, report.

Used by ``convert`` now and by ``segment``/``restore`` later. It knows nothing
about what a job does: the caller gives a *planner* (input file -> work items,
each naming the outputs it will write) and a *job* (work item -> writes those
outputs). The runner

- expands inputs: files, folders (non-recursive unless ``recursive``) and glob
  patterns (``**`` with ``recursive``); hidden and temporary files are skipped
  in folders and glob results (a file named explicitly is always taken);
- skips an item whose outputs all exist, unless ``overwrite`` (so a re-run
  resumes an interrupted batch);
- runs each item inside one error boundary: a failure is logged as
  ``path: reason`` and the batch goes on;
- shows a progress bar (tqdm) on a terminal unless ``quiet``;
- returns a :class:`BatchReport`.

Jobs must write their outputs atomically (:func:`cellseg_bridge.io.atomic.atomic_output`),
so an interrupted or failed item leaves no partial output and is redone next time.
"""

from __future__ import annotations

import functools
import glob
import itertools
import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellseg_bridge.config import DEFAULTS
from cellseg_bridge.errors import CellsegError

log = logging.getLogger(__name__)

#: File names (lower case) that are never inputs.
_JUNK_NAMES = {"thumbs.db", "desktop.ini", ".ds_store"}
#: Name endings (lower case) of temporary or partial files.
_TEMP_SUFFIXES = ("~", ".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".swp", ".lock")
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class WorkItem:
    """One unit of work: an input (or part of it, e.g. a scene) and the outputs it writes.

    Attributes
    ----------
    source : Path
        The input file.
    outputs : tuple of Path
        Every file the job writes for this item; the item counts as done when all exist.
    key : object
        What the job needs besides ``source`` (e.g. a scene index); opaque to the runner.
    label : str
        How the item is named in logs and reports (default: ``source``).
    """

    source: Path
    outputs: tuple[Path, ...]
    key: Any = None
    label: str = ""

    @property
    def name(self) -> str:
        """The label, or the source path."""
        return self.label or str(self.source)


@dataclass
class BatchReport:
    """What a batch did.

    Attributes
    ----------
    done : list of Path
        Outputs written.
    skipped : list of Path
        Outputs that existed already and were left alone.
    failed : list of (str, str)
        ``(input, reason)`` for every input or item that failed.
    """

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failed

    def summary(self, verb: str = "written") -> str:
        """Return a short human-readable summary, one line per failure.

        Parameters
        ----------
        verb : str
            What happened to ``done`` outputs ("written", "converted", ...).
        """
        lines = [f"{len(self.done)} {verb}, {len(self.skipped)} skipped (already done), {len(self.failed)} failed"]
        lines += [f"FAILED {path}: {reason}" for path, reason in self.failed]
        return "\n".join(lines)


def is_hidden_or_temp(path: Path) -> bool:
    """Return True for hidden files, temporary/partial downloads and OS junk files.

    Parameters
    ----------
    path : Path
        A file path (only its name is looked at).
    """
    name = path.name
    lower = name.lower()
    return (
        name.startswith((".", "~$"))
        or lower in _JUNK_NAMES
        or lower.endswith(_TEMP_SUFFIXES)
    )


def expand_inputs(
    inputs: Iterable[str | Path],
    *,
    recursive: bool = DEFAULTS.batch.recursive,
    suffixes: Sequence[str] | None = None,
    exclude: Sequence[str | Path] = (),
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files, folders and glob patterns into a list of input files.

    Parameters
    ----------
    inputs : iterable of str or Path
        Files, folders or glob patterns, in the order wanted.
    recursive : bool
        Descend into sub-folders of folders; let ``**`` in patterns match folders.
    suffixes : sequence of str, optional
        Lower-case name endings (e.g. ``".czi"``, ``".ome.tif"``) kept when
        listing folders and patterns; files named explicitly are always kept.
    exclude : sequence of path
        Folders whose content is not taken from folder or pattern inputs (e.g.
        the output folder inside the input folder), unless the excluded folder
        is the folder being listed itself.

    Returns
    -------
    files : list of Path
        Unique files, in input order (folders and patterns sorted by name).
    problems : list of (str, str)
        ``(input, reason)`` for inputs that do not exist, folders without
        input files and patterns that match nothing.
    """
    excluded = [Path(p).resolve() for p in exclude]
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def keep(path: Path, root: Path) -> bool:
        if is_hidden_or_temp(path) or not path.is_file():
            return False
        if suffixes is not None and not path.name.lower().endswith(tuple(suffixes)):
            return False
        resolved = path.resolve()
        # an excluded folder inside the folder being listed is skipped; one that
        # is the listed folder itself (or contains it) does not hide the inputs
        return not any(
            resolved.is_relative_to(folder) and folder != root and not root.is_relative_to(folder)
            for folder in excluded
        )

    def add(path: Path) -> None:
        resolved = path.resolve()
        if resolved not in seen:
            seen.add(resolved)
            files.append(path)

    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_file():
            add(path)
        elif path.is_dir():
            root = path.resolve()
            found = [p for p in _list_dir(path, recursive) if keep(p, root)]
            if not found:
                problems.append((text, "folder holds no input files" + ("" if recursive else " (try --recursive)")))
            for p in found:
                add(p)
        elif _GLOB_CHARS & set(text):
            matches = [Path(m) for m in sorted(glob.glob(text, recursive=recursive))]
            root = _glob_root(text)
            found = [p for p in matches if keep(p, root)]
            if not found:
                problems.append((text, "pattern matched no input files"))
            for p in found:
                add(p)
        else:
            problems.append((text, "no such file or folder"))
    return files, problems


def _glob_root(pattern: str) -> Path:
    """Return the folder a glob pattern starts in (its parts before the first wildcard)."""
    parts = Path(pattern).parts
    fixed = list(itertools.takewhile(lambda part: not (_GLOB_CHARS & set(part)), parts))
    return Path(*fixed).resolve() if fixed else Path.cwd().resolve()


def _list_dir(folder: Path, recursive: bool) -> list[Path]:
    if not recursive:
        return sorted(p for p in folder.iterdir() if p.is_file())
    out: list[Path] = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(Path(root) / n for n in sorted(names))
    return out


def run_batch(
    inputs: Iterable[str | Path],
    plan: Callable[[Path], Sequence[WorkItem]],
    job: Callable[[WorkItem], Any],
    *,
    overwrite: bool = False,
    recursive: bool = DEFAULTS.batch.recursive,
    suffixes: Sequence[str] | None = None,
    exclude: Sequence[str | Path] = (),
    quiet: bool = False,
    description: str = "",
) -> BatchReport:
    """Run ``job`` on every work item planned for every input file.

    Parameters
    ----------
    inputs : iterable of str or Path
        Files, folders, glob patterns (see :func:`expand_inputs`).
    plan : callable
        ``plan(path) -> [WorkItem, ...]``: what to do with one input (may open
        the file, e.g. to list scenes). Errors raised here fail that input.
    job : callable
        ``job(item)``: write ``item.outputs`` (atomically). Its return value is ignored.
    overwrite : bool
        Redo items whose outputs exist (default: skip them, i.e. resume).
    recursive, suffixes, exclude
        Passed to :func:`expand_inputs`.
    quiet : bool
        No progress bar (it is also off when stderr is not a terminal).
    description : str
        Progress bar label.

    Returns
    -------
    BatchReport
        Outputs written and skipped, and ``(input, reason)`` per failure.
        Failures never raise; ``KeyboardInterrupt`` does (outputs written so far stay).
    """
    import contextlib

    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    report = BatchReport()
    files, problems = expand_inputs(inputs, recursive=recursive, suffixes=suffixes, exclude=exclude)
    for source, reason in problems:
        _fail(report, source, reason)
    claimed: dict[Path, str] = {}
    disable = quiet or not sys.stderr.isatty()
    redirect = contextlib.nullcontext() if disable else logging_redirect_tqdm()
    with redirect, tqdm(files, desc=description or None, unit="file", disable=disable, file=sys.stderr) as bar:
        for source in bar:
            items = _guard(report, str(source), functools.partial(_planned, plan, source))
            if items is None:
                continue
            for item in items:
                _run_item(report, item, job, overwrite, claimed)
    log.info(report.summary().splitlines()[0])
    return report


def _planned(plan: Callable[[Path], Sequence[WorkItem]], source: Path) -> list[WorkItem]:
    return list(plan(source))


def _run_item(
    report: BatchReport,
    item: WorkItem,
    job: Callable[[WorkItem], Any],
    overwrite: bool,
    claimed: dict[Path, str],
) -> None:
    for out in item.outputs:
        other = claimed.get(out.resolve())
        if other is not None:
            _fail(report, item.name, f"output {out} is also the output of {other}; write them to different folders")
            return
    for out in item.outputs:
        claimed[out.resolve()] = item.name
    if not overwrite and item.outputs and all(out.exists() for out in item.outputs):
        log.debug("%s: outputs exist, skipped", item.name)
        report.skipped.extend(item.outputs)
        return
    if _guard(report, item.name, lambda: job(item) or True) is None:
        return
    missing = [str(out) for out in item.outputs if not out.exists()]
    if missing:
        _fail(report, item.name, f"job finished without writing {', '.join(missing)}")
        return
    log.debug("%s: done", item.name)
    report.done.extend(item.outputs)


def _guard(report: BatchReport, name: str, call: Callable[[], Any]) -> Any:
    """The one error boundary: run ``call``; on failure record ``name: reason`` and return None."""
    try:
        return call()
    except CellsegError as exc:
        reason = getattr(exc, "reason", None) or str(exc)
    except MemoryError:
        reason = "out of memory"
    except Exception as exc:  # noqa: BLE001 - a batch must survive any per-file failure
        log.debug("%s: unexpected failure", name, exc_info=True)
        reason = f"{type(exc).__name__}: {exc}"
    _fail(report, name, reason)
    return None


def _fail(report: BatchReport, name: str, reason: str) -> None:
    log.error("%s: %s", name, reason)
    report.failed.append((str(name), reason))

"""The one batch runner: expand inputs, plan work items, skip what is done, run them on an executor, report.

Every batch command (``convert``, ``segment``, ``restore``) is a *planner* (input
file -> :class:`~cellseg_bridge.batch.items.WorkItem` list, each naming the outputs
it writes) and a *task* (item -> writes those outputs atomically, returns a dict
of facts). :func:`run_batch` and :func:`run_items`

- expand inputs: files, folders (non-recursive unless ``recursive``) and glob
  patterns (``**`` with ``recursive``); hidden and temporary files are skipped
  in folders and glob results (a file named explicitly is always taken);
- fail the second of two items that would write the same output;
- skip an item whose outputs all exist, unless ``overwrite`` (so a re-run
  resumes an interrupted batch) or ``stale`` says they were made with other
  parameters (:mod:`cellseg_bridge.batch.run_record`);
- run the others on an *executor*: :class:`~cellseg_bridge.batch.items.LocalExecutor`
  (this process) or :class:`~cellseg_bridge.distributed.executor.DaskExecutor`
  (one task per item on a cluster; :func:`~cellseg_bridge.distributed.executor.executor_for`
  picks one from ``client`` / ``workers`` / ``scheduler``), each item inside one
  error boundary: a failure is logged as ``path: reason`` and the batch goes on;
- show a progress bar (tqdm) on a terminal unless ``quiet``, log one line per finished item;
- append each finished item to a manifest when given one (cluster runs);
- return one :class:`~cellseg_bridge.batch.report.BatchReport`, the same for every
  command and executor.

Tasks must write their outputs atomically (:func:`cellseg_bridge.io.atomic.atomic_output`),
so an interrupted or failed item leaves no partial output and is redone next time.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import itertools
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from cellseg_bridge.batch.items import Executor, LocalExecutor, Task, WorkItem
from cellseg_bridge.batch.report import (
    BatchInterrupted,
    BatchReport,
    ItemRecord,
    append_manifest,
    manifest_records,
    recorded_task,
)
from cellseg_bridge.config import DEFAULTS
from cellseg_bridge.errors import CellsegError
from cellseg_bridge.io.atomic import check_writable
from cellseg_bridge.io.paths import missing_reason

log = logging.getLogger(__name__)

__all__ = ["BatchReport", "WorkItem", "expand_inputs", "is_hidden_or_temp", "plan_inputs", "run_batch", "run_items"]

#: File names (lower case) that are never inputs.
_JUNK_NAMES = {"thumbs.db", "desktop.ini", ".ds_store"}
#: Name endings (lower case) of temporary or partial files.
_TEMP_SUFFIXES = ("~", ".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".swp", ".lock")
_GLOB_CHARS = set("*?[")


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
    skip_endings: Sequence[str] = (),
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
    skip_endings : sequence of str
        Name endings of the command's own outputs (e.g. ``_labels.ome.tif``):
        such files are never taken from folders or patterns (case-insensitive).

    Returns
    -------
    files : list of Path
        Unique files, in input order (folders and patterns sorted by name).
    problems : list of (str, str)
        ``(input, reason)`` for inputs that do not exist, folders without
        input files and patterns that match nothing.
    """
    excluded = [Path(p).resolve() for p in exclude]
    ours = tuple(e.lower() for e in skip_endings)
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def keep(path: Path, root: Path) -> bool:
        if is_hidden_or_temp(path) or not path.is_file():
            return False
        if suffixes is not None and not path.name.lower().endswith(tuple(suffixes)):
            return False
        if ours and path.name.lower().endswith(ours):
            log.debug("%s: an output of ours, not an input", path)
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
            problems.append((text, missing_reason(path, missing="no such file or folder")))
    return files, problems


def input_folder(source: Path, inputs: Iterable[str | Path]) -> Path:
    """The sub-folder ``source`` was found in, relative to the first of ``inputs`` (a folder or a
    pattern's fixed start) that holds it; ``Path()`` for a file named itself or found at the top.

    Symbolic links are not resolved: the tree is the one the user sees.
    """
    where = Path(os.path.abspath(source)).parent
    for item in inputs:
        text = str(item)
        if Path(text).is_dir():
            root = Path(os.path.abspath(text))
        elif _GLOB_CHARS & set(text):
            fixed = list(itertools.takewhile(lambda part: not (_GLOB_CHARS & set(part)), Path(text).parts))
            root = Path(os.path.abspath(Path(*fixed))) if fixed else Path.cwd()
        else:
            continue
        if where.is_relative_to(root):
            return where.relative_to(root)
    return Path()


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


def plan_inputs(
    inputs: Iterable[str | Path] | str | Path,
    plan: Callable[[Path], Sequence[WorkItem]],
    *,
    recursive: bool = DEFAULTS.batch.recursive,
    suffixes: Sequence[str] | None = None,
    exclude: Sequence[str | Path] = (),
    skip_endings: Sequence[str] = (),
) -> tuple[list[WorkItem], list[tuple[str, str]]]:
    """Expand the inputs and plan the items of each file.

    Parameters
    ----------
    inputs : path, or iterable of paths / folders / glob patterns
        See :func:`expand_inputs`.
    plan : callable
        ``plan(path) -> [WorkItem, ...]``; what it raises fails that input.
    recursive, suffixes, exclude, skip_endings
        As for :func:`expand_inputs`.

    Returns
    -------
    items : list of WorkItem
    problems : list of (str, str)
        ``(input, reason)`` for inputs that do not exist or could not be planned.
    """
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    files, problems = expand_inputs(inputs, recursive=recursive, suffixes=suffixes, exclude=exclude,
                                    skip_endings=skip_endings)
    items: list[WorkItem] = []
    for source in files:
        try:
            items.extend(plan(source))
        except CellsegError as exc:
            problems.append((str(source), getattr(exc, "reason", None) or str(exc)))
        except Exception as exc:  # noqa: BLE001 - one unreadable file must not stop the batch
            log.debug("%s: unexpected failure while planning", source, exc_info=True)
            problems.append((str(source), f"{type(exc).__name__}: {exc}"))
    return items, problems


def run_items(
    items: Sequence[WorkItem],
    task: Task,
    *,
    executor: Executor | None = None,
    client: Any = None,
    manifest: str | Path | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    description: str = "",
    local: Callable[[WorkItem], bool] | None = None,
    local_task: Task | None = None,
    problems: Sequence[tuple[str, str]] = (),
    report: BatchReport | None = None,
    stale: Callable[[WorkItem], str | None] | None = None,
) -> BatchReport:
    """Run ``task(item)`` for every item that is not done yet, on an executor; collect the records.

    Parameters
    ----------
    items : sequence of WorkItem
        What to do; ``outputs`` decide skip/resume.
    task : callable
        ``task(item) -> dict or None``; writes ``item.outputs`` atomically. On a
        cluster it must be picklable (a module-level function or a
        ``functools.partial`` of one).
    executor : Executor, optional
        Where the tasks run; default :class:`~cellseg_bridge.batch.items.LocalExecutor`,
        or a :class:`~cellseg_bridge.distributed.executor.DaskExecutor` of ``client``.
    client : distributed.Client, optional
        Shorthand for ``executor=DaskExecutor(client)``.
    manifest : path, optional
        JSON-lines record of finished items (appended as they finish).
    overwrite : bool
        Redo items whose outputs exist.
    quiet : bool
        No progress bar (it is also off when stderr is not a terminal).
    description : str
        Progress bar label.
    local : callable, optional
        ``local(item) -> True`` for items to run in this process rather than on
        the executor (e.g. a large plane whose chunks go to the cluster themselves).
    local_task : callable, optional
        What runs those items (default ``task``).
    problems : sequence of (str, str)
        ``(input, reason)`` of inputs that failed before planning; recorded first.
    report : BatchReport, optional
        The report to fill (e.g. with its ``model`` set); default a new one.
    stale : callable, optional
        ``stale(item) -> reason or None``: why an item whose outputs exist must be redone
        anyway (e.g. they were made with other parameters,
        :meth:`cellseg_bridge.batch.run_record.RunRecord.stale_reason`); None skips it.

    Returns
    -------
    BatchReport
        One record per item and per problem. Failures never raise; ``KeyboardInterrupt``
        does, as :class:`~cellseg_bridge.batch.report.BatchInterrupted` holding the
        report so far (outputs written so far stay).

    Raises
    ------
    InputError
        Before any work: a folder the items write into cannot be created or written
        (read-only, permission denied, disk full).
    """
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    if executor is None and client is not None:
        from cellseg_bridge.distributed.executor import DaskExecutor

        executor = DaskExecutor(client)
    executor = executor or LocalExecutor()
    tic = time.perf_counter()
    report = report if report is not None else BatchReport()
    report.manifest = Path(manifest) if manifest else None
    for source, reason in problems:
        _finish(report, ItemRecord(input=source, item=source, reason=reason), None)
    todo = _to_run(report, items, overwrite, stale)
    _check_output_folders(todo)
    here = [item for item in todo if local is not None and local(item)]
    there = [item for item in todo if item not in here]
    disable = quiet or not sys.stderr.isatty()
    redirect = contextlib.nullcontext() if disable else logging_redirect_tqdm()
    # on a cluster each worker records its finished items in the manifest itself (none lost if this process dies)
    remote = report.manifest is not None and not executor.in_process
    remote_task = functools.partial(recorded_task, task, report.manifest) if report.manifest and remote else task
    in_here = {id(item) for item in here}
    start = report.manifest.stat().st_size if remote and report.manifest and report.manifest.exists() else 0
    with redirect, tqdm(total=len(todo), desc=description or None, unit="item", disable=disable,
                        file=sys.stderr) as bar:
        try:
            running = executor.start(remote_task, there)  # a cluster starts now, while this process runs `here`
            for item, outcome in itertools.chain(LocalExecutor().start(local_task or task, here), running):
                record = _record(item, outcome)
                written = remote and id(item) not in in_here and record.status == "done"
                _finish(report, record, None if written else report.manifest, executor.in_process)
                bar.update()
        except KeyboardInterrupt as exc:
            if remote and report.manifest is not None:  # items the workers finished but this process did not collect
                seen = {record.item for record in report.items}
                for record in manifest_records(report.manifest, start):
                    if record.item not in seen and record.status == "done":
                        report.add(record)
            report.seconds = time.perf_counter() - tic
            raise BatchInterrupted(report) from exc
    report.seconds = time.perf_counter() - tic
    log.info(report.summary("done").splitlines()[0] + f" in {report.seconds:.1f} s")
    return report


def _to_run(report: BatchReport, items: Sequence[WorkItem], overwrite: bool,
            stale: Callable[[WorkItem], str | None] | None = None) -> list[WorkItem]:
    """The items to run: a clash of outputs fails the later item; items whose outputs exist are skipped
    unless ``stale`` gives a reason to redo them."""
    claimed: dict[Path, str] = {}
    todo: list[WorkItem] = []
    for item in items:
        clash = next(((out, claimed[out.resolve()]) for out in item.outputs if out.resolve() in claimed), None)
        if clash is not None:
            reason = f"output {clash[0]} is also the output of {clash[1]}; write them to different folders"
            _finish(report, _record(item, {"status": "failed", "reason": reason}), None)
            continue
        for out in item.outputs:
            claimed[out.resolve()] = item.name
        if not overwrite and item.outputs and all(out.exists() for out in item.outputs):
            changed = stale(item) if stale is not None else None
            if changed is not None:
                log.warning("%s: %s; redone", item.name, changed)
                todo.append(item)
                continue
            log.debug("%s: outputs exist, skipped", item.name)
            _finish(report, _record(item, {"status": "skipped"}), None)
            continue
        todo.append(item)
    return todo


def _check_output_folders(items: Sequence[WorkItem]) -> None:
    """Before any work: every folder the items write into must be writable (InputError naming it)."""
    for folder in dict.fromkeys(out.parent for item in items for out in item.outputs):
        check_writable(folder)


def _record(item: WorkItem, outcome: dict[str, Any]) -> ItemRecord:
    status, reason = outcome.get("status", "failed"), outcome.get("reason")
    if status == "done":
        missing = [str(out) for out in item.outputs if not out.exists()]
        if missing:
            status, reason = "failed", f"job finished without writing {', '.join(missing)}"
    return ItemRecord(input=str(item.source), scene=item.key, scene_name=item.scene_name, item=item.name,
                      status=status, reason=reason, outputs=item.output_map(), seconds=outcome.get("seconds"),
                      worker=outcome.get("worker"), result=outcome.get("result") or {})


def _finish(report: BatchReport, record: ItemRecord, manifest: Path | None, in_process: bool = True) -> None:
    report.add(record)
    if record.status == "done":
        where = "" if in_process else f" on {record.worker}"
        log.info("%s: done (%.1f s%s)", record.item, record.seconds or 0.0, where)
    elif record.status == "failed":
        log.error("%s: %s", record.item or record.input, record.reason)
    if manifest is not None and record.status != "skipped":
        append_manifest(manifest, record)


def run_batch(
    inputs: Iterable[str | Path] | str | Path,
    plan: Callable[[Path], Sequence[WorkItem]],
    job: Task,
    *,
    overwrite: bool = False,
    recursive: bool = DEFAULTS.batch.recursive,
    suffixes: Sequence[str] | None = None,
    exclude: Sequence[str | Path] = (),
    skip_endings: Sequence[str] = (),
    quiet: bool = False,
    description: str = "",
    executor: Executor | None = None,
    manifest: str | Path | None = None,
    report: BatchReport | None = None,
    stale: Callable[[WorkItem], str | None] | None = None,
) -> BatchReport:
    """Plan the items of every input (:func:`plan_inputs`) and run ``job`` on them (:func:`run_items`).

    Parameters
    ----------
    inputs : iterable of str or Path
        Files, folders, glob patterns (see :func:`expand_inputs`).
    plan : callable
        ``plan(path) -> [WorkItem, ...]``: what to do with one input (may open
        the file, e.g. to list scenes). Errors raised here fail that input.
    job : callable
        ``job(item) -> dict or None``: write ``item.outputs`` (atomically).
    overwrite : bool
        Redo items whose outputs exist (default: skip them, i.e. resume).
    recursive, suffixes, exclude, skip_endings
        Passed to :func:`expand_inputs`.
    quiet : bool
        No progress bar (it is also off when stderr is not a terminal).
    description : str
        Progress bar label.
    executor, manifest, report, stale
        As for :func:`run_items`.

    Returns
    -------
    BatchReport
        Outputs written and skipped, ``(input, reason)`` per failure, one record
        per item. Failures never raise; ``KeyboardInterrupt`` does (outputs written so far stay).
    """
    items, problems = plan_inputs(inputs, plan, recursive=recursive, suffixes=suffixes, exclude=exclude,
                                  skip_endings=skip_endings)
    return run_items(items, job, executor=executor, manifest=manifest, overwrite=overwrite, quiet=quiet,
                     description=description, problems=problems, report=report, stale=stale)

"""One HITL training cycle, crash-safe.

A cycle fine-tunes the project's **initial** model (never the previous cycle's:
the maintainers' advice, so errors do not accumulate) on **all** corrected
training images, with the ``hitl`` recipe (SGD, lr 0.1, weight decay 1e-4,
100 epochs, ``min_train_masks`` 0, ``max(8, n)`` images per epoch).

Crash safety, in order:

1. the cycle trains into ``models/cycle_NNN.partial/``, whose ``plan.json``
   says what it trains on (images, corrections' sha256, options);
   :func:`~cellseg_bridge.training.train` checkpoints it every ``save_every``
   epochs and on Ctrl-C;
2. when training and the held-out evaluation are done, ``cycle.json`` is
   written into it and the folder is renamed to ``models/cycle_NNN/``
   (an atomic rename);
3. only then is the manifest (atomically replaced) told that cycle NNN exists
   and is the current model -- unless its held-out AP@0.5 is below the current
   model's on the same held-out images: then the current model stays current, the
   cycle's record says why (``not_current``) and a warning is logged; ``cellseg
   hitl use CYCLE`` makes any cycle current.

A crash before 3 leaves the previous model current. Running ``hitl train``
again resumes the interrupted ``.partial`` folder from its last checkpoint when
its plan is unchanged (``fresh=True`` starts over), and adopts a complete
``cycle_NNN/`` folder that a crash between 2 and 3 left unregistered.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cellseg_bridge.errors import InputError
from cellseg_bridge.hitl.evaluate import holdout_score
from cellseg_bridge.hitl.manifest import check_fingerprint, now, project_lock, sha256_file, write_manifest
from cellseg_bridge.io.atomic import atomic_output

if TYPE_CHECKING:
    from cellseg_bridge.hitl.project import HitlProject

__all__ = ["train_cycle", "cycle_key", "PLAN_NAME", "CYCLE_NAME"]

logger = logging.getLogger(__name__)

PLAN_NAME = "plan.json"
CYCLE_NAME = "cycle.json"
PARTIAL_SUFFIX = ".partial"


def cycle_key(number: int) -> str:
    """``cycle_001`` for 1."""
    return f"cycle_{number:03d}"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _plan(project: HitlProject, number: int, n_epochs: int) -> dict[str, Any]:
    opts = project.options
    train_recs = project.corrected("train")
    if not train_recs:
        n_hold = len(project.corrected("holdout"))
        raise InputError(
            "no corrected training images yet: run `cellseg hitl next`, correct the ROIs in Fiji and "
            f"`cellseg hitl add IMAGE RoiSet.zip` first ({n_hold} held-out image(s) are never trained on)",
            project.directory,
        )
    for rec in train_recs:
        check_fingerprint(rec["file"])
        labels = project.directory / rec["correction"]["labels"]
        if not labels.is_file():
            raise InputError(f"corrections of {rec['name']} are missing from the project", labels)
    init = project.manifest["initial_model"]
    if sha256_file(init["path"]) != init["sha256"]:
        raise InputError("the initial model's weights changed since the project was created", init["path"])
    train_options = {
        **opts["train_options"],
        "recipe": "hitl", "pretrained": init["path"], "n_epochs": int(n_epochs), "seed": int(opts["seed"]),
        "channel": opts["channel"], "nuclear_channel": opts["nuclear_channel"], "val_every": 0,
    }
    return {
        "cycle": number,
        "initial_model": {"path": init["path"], "sha256": init["sha256"]},
        "train": [{"id": r["id"], "image": r["file"]["path"], "labels": r["correction"]["labels"],
                   "sha256": r["correction"]["sha256"], "n_cells": r["correction"]["n_cells"]} for r in train_recs],
        "train_options": train_options,
    }


def _same_plan(a: dict[str, Any] | None, b: dict[str, Any]) -> bool:
    return a is not None and json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def epochs_done(partial: Path) -> int:
    """Epochs an interrupted training run has finished: rows of ``curves.csv`` in ``partial`` (0 if none)."""
    curves = partial / "curves.csv"
    try:
        return max(0, len(curves.read_text(encoding="utf-8").strip().splitlines()) - 1)
    except OSError:
        return 0


def _interrupted_epochs(project: HitlProject, number: int, partial: Path, epochs: int, n_epochs: int | None,
                        fresh: bool) -> int:
    """The epochs of this cycle: those of an interrupted cycle with the same plan when none are given.

    So ``hitl train DIR`` resumes a cycle started with ``--epochs N`` instead of discarding it.
    """
    old = _read_json(partial / PLAN_NAME)
    if n_epochs is not None or fresh or old is None:
        return epochs
    try:
        theirs = int(old["train_options"]["n_epochs"])
    except (KeyError, TypeError, ValueError):
        return epochs
    if theirs != epochs and _same_plan(old, _plan(project, number, theirs)):
        logger.info("the interrupted %s was started with %d epochs: continuing it", partial.name, theirs)
        return theirs
    return epochs


def _stale_name(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.stale-{stamp}")
    k = 1
    while target.exists():
        k += 1
        target = path.with_name(f"{path.name}.stale-{stamp}-{k}")
    return target


def _better_current(project: HitlProject, record: dict[str, Any], device: str) -> dict[str, Any] | None:
    """Why the current model stays current (its held-out AP is higher than the new cycle's), or None."""
    new = record.get("holdout")
    current = project.current_model
    if new is None or current == record["model"]:
        return None
    score = holdout_score(project, current, device=device)  # the same held-out images (cached scores)
    if score is None or new["ap50"] >= score["ap50"]:
        return None
    message = (f"{record['model']}: held-out AP@0.5 {new['ap50']:.3f} is below {score['ap50']:.3f} of the current "
               f"model {current}, which stays current; `cellseg hitl use {record['model']}` makes the new "
               f"cycle current anyway")
    return {"current": current, "current_ap50": score["ap50"], "ap50": new["ap50"], "message": message}


def train_cycle(
    project: HitlProject,
    *,
    n_epochs: int | None = None,
    fresh: bool = False,
    progress: bool = False,
    device: str = "auto",
    evaluate: bool = True,
) -> dict[str, Any]:
    """Fine-tune the initial model on all corrected training images: the next cycle.

    Parameters
    ----------
    project : HitlProject
        The project.
    n_epochs : int, optional
        Epochs of this cycle (default: the project's, 100).
    fresh : bool
        Discard an interrupted cycle instead of resuming it.
    progress : bool
        Show a progress bar.
    device : str
        Where training runs.
    evaluate : bool
        Score the new model (and the initial model, if not cached) on the held-out images.

    Returns
    -------
    dict
        The cycle's record, as stored in the manifest (``cycle``, ``model``,
        ``weights``, ``train_images``, ``n_train_cells``, ``epochs``, ``seconds``,
        ``final_loss``, ``holdout``, ``initial_holdout``, ``resumed``, ``finished``; ``not_current``
        when the cycle scored below the current model on the held-out images and was not made current).

    Raises
    ------
    InputError
        No corrected training image, a project image or correction changed or
        missing, the initial model's weights changed, bad training options.
    KeyboardInterrupt
        After the partial cycle was checkpointed (rerun to resume).
    """
    from cellseg_bridge.training import train

    with project_lock(project.directory):
        project.reload()
        number = len(project.manifest["cycles"]) + 1
        key = cycle_key(number)
        epochs = int(project.options["n_epochs"] if n_epochs is None else n_epochs)
        if epochs < 1:
            raise InputError(f"n_epochs must be >= 1, got {epochs}")
        models = project.directory / "models"
        final = models / key
        partial = models / f"{key}{PARTIAL_SUFFIX}"
        plan = _plan(project, number, _interrupted_epochs(project, number, partial, epochs, n_epochs, fresh))
        t0 = time.perf_counter()

        record = None
        if final.exists():  # a crash between the rename and the manifest update
            done = _read_json(final / CYCLE_NAME)
            if done is not None and _same_plan(done.get("plan"), plan) and (final / "weights.pth").is_file():
                logger.info("%s was complete but not registered (interrupted before the manifest update): adopting it", key)
                record = done["record"]
            else:
                aside = _stale_name(final)
                logger.warning("%s exists but does not belong to this project state: moved to %s", final, aside.name)
                final.rename(aside)

        if record is None:
            resume = False
            if partial.exists():
                old = _read_json(partial / PLAN_NAME)
                state = partial / "checkpoint" / "state.pt"
                if not fresh and _same_plan(old, plan) and state.is_file():
                    resume = True
                    logger.info("resuming interrupted %s after epoch %d", key, epochs_done(partial))
                else:
                    why = "fresh start requested" if fresh else "its training set or options differ"
                    logger.warning("discarding interrupted %s (%s)", partial.name, why)
                    shutil.rmtree(partial)
            partial.mkdir(parents=True, exist_ok=True)
            _write_json(partial / PLAN_NAME, plan)
            pairs = [(item["image"], project.directory / item["labels"]) for item in plan["train"]]
            result = train(pairs, partial, resume=resume, progress=progress,
                           flow_cache=project.directory / "cache" / "flows",
                           **{**plan["train_options"], "device": device})
            last = result.curves[-1] if result.curves else {}
            record = {
                "cycle": number,
                "model": key,
                "weights": str((final / result.weights.name).relative_to(project.directory)),
                "train_images": [item["id"] for item in plan["train"]],
                "n_train_cells": sum(item["n_cells"] for item in plan["train"]),
                "holdout_images": [r["id"] for r in project.corrected("holdout")],
                "epochs": result.epochs_run,
                "stopped": result.stopped,
                "seconds": round(time.perf_counter() - t0, 1),
                "final_loss": last.get("loss"),
                "diam_labels": result.diam_labels,
                "resumed": resume,
                "finished": now(),
            }
            if result.stopped != "done":
                raise InputError(f"training of {key} stopped early ({result.stopped}); rerun to resume", partial)
            if evaluate:
                # score the new model while it is still the partial folder's weights
                project._models.pop((key, str(device)), None)
                from cellseg_bridge.segmentation.pipeline import load_model

                project._models[(key, str(device))] = load_model(result.weights, device)
                score = holdout_score(project, key, device=device)
                record["holdout"] = None if score is None else {k: score[k] for k in ("ap50", "n_images", "tp", "fp", "fn")}
            shutil.rmtree(partial / "checkpoint", ignore_errors=True)
            _write_json(partial / CYCLE_NAME, {"plan": plan, "record": record})
            partial.rename(final)

        if evaluate:
            init = holdout_score(project, "initial", device=device)
            record["initial_holdout"] = None if init is None else {k: init[k] for k in ("ap50", "n_images")}
        project.manifest["cycles"].append(record)
        kept = _better_current(project, record, device) if evaluate else None
        if kept is None:
            project.manifest["current_model"] = key
        else:
            record["not_current"] = kept
            logger.warning("%s", kept["message"])
        write_manifest(project.directory, project.manifest)
    logger.info("%s done: %d epochs on %d image(s) in %.0f s", key, record["epochs"], len(record["train_images"]),
                record["seconds"])
    return record

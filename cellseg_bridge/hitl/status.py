"""``hitl status``: cycles, ROI counts, held-out AP of every model, interrupted work."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from cellseg_bridge.hitl.cycle import PARTIAL_SUFFIX, cycle_key, epochs_done
from cellseg_bridge.hitl.evaluate import holdout_score
from cellseg_bridge.hitl.manifest import project_lock, write_manifest

if TYPE_CHECKING:
    from cellseg_bridge.hitl.project import HitlProject

__all__ = ["project_status", "format_status"]

logger = logging.getLogger(__name__)


def _image_state(rec: dict[str, Any]) -> str:
    if rec["correction"] is not None:
        return "corrected"
    return "predicted" if rec["prediction"] is not None else "new"


def project_status(project: HitlProject, *, evaluate: bool = True, device: str = "auto") -> dict[str, Any]:
    """Summarise a project (JSON-ready).

    Parameters
    ----------
    project : HitlProject
        The project.
    evaluate : bool
        Compute held-out scores that are not cached yet (segments the held-out
        images with each model; results are cached in the manifest). False:
        report cached scores only.
    device : str
        Where the network runs for new scores.

    Returns
    -------
    dict
        ``project``, ``initial_model``, ``current_model`` (key and weights),
        ``holdout_rule``, ``counts`` (images, corrected, train, holdout,
        remaining, corrected_cells, train_cells), ``models`` (one row per model:
        ``model``, ``cycle``, ``weights``, ``n_train_images``, ``n_train_cells``,
        ``epochs``, ``seconds``, ``holdout_ap50``, ``holdout_images``),
        ``images`` (``id``, ``name``, ``state``, ``split``, ``n_cells``,
        ``predicted_cells``, ``changes``), ``interrupted`` (or None) and
        ``next_image`` (or None).
    """
    # read-only (no new scores): no lock, so it works while another command (e.g. `hitl train`) holds it;
    # the manifest is replaced atomically, so what is read is whole
    with project_lock(project.directory) if evaluate else contextlib.nullcontext():
        project.reload()
        m = project.manifest
        before = len(m.get("evaluations", {}))
        rows = []
        keys = ["initial"] + [c["model"] for c in m["cycles"]]
        for key in keys:
            score = holdout_score(project, key, compute=evaluate, device=device)
            cyc = next((c for c in m["cycles"] if c["model"] == key), None)
            rows.append({
                "model": key,
                "cycle": 0 if cyc is None else cyc["cycle"],
                "weights": str(project.model_path(key)),
                "n_train_images": 0 if cyc is None else len(cyc["train_images"]),
                "n_train_cells": 0 if cyc is None else cyc["n_train_cells"],
                "epochs": None if cyc is None else cyc["epochs"],
                "seconds": None if cyc is None else cyc["seconds"],
                "holdout_ap50": None if score is None else score["ap50"],
                "holdout_images": 0 if score is None else score["n_images"],
                "current": key == m["current_model"],
            })
        if len(m.get("evaluations", {})) != before:
            write_manifest(project.directory, m)

    nxt = len(m["cycles"]) + 1
    partial = project.directory / "models" / f"{cycle_key(nxt)}{PARTIAL_SUFFIX}"
    interrupted = None
    if partial.is_dir():
        interrupted = {"cycle": nxt, "folder": str(partial), "epochs_done": epochs_done(partial),
                       "resumable": (partial / "checkpoint" / "state.pt").is_file()}
    corrected = project.corrected()
    train = [r for r in corrected if r["correction"]["split"] == "train"]
    every = int(project.options["holdout_every"])
    images = [{
        "id": r["id"], "name": r["name"], "state": _image_state(r),
        "split": None if r["correction"] is None else r["correction"]["split"],
        "n_cells": None if r["correction"] is None else r["correction"]["n_cells"],
        "predicted_cells": None if r["prediction"] is None else r["prediction"]["n_cells"],
        "predicted_by": None if r["prediction"] is None else r["prediction"]["model"],
        "changes": None if r["correction"] is None else r["correction"]["changes"],
    } for r in project.images]
    return {
        "project": str(project.directory),
        "initial_model": m["initial_model"],
        "current_model": {"model": m["current_model"], "weights": str(project.model_path(m["current_model"]))},
        "holdout_rule": (f"every {every}th corrected image (in the order added) is held out" if every
                         else "no automatic held-out images"),
        "counts": {
            "images": len(project.images),
            "corrected": len(corrected),
            "train": len(train),
            "holdout": len(corrected) - len(train),
            "remaining": len(project.images) - len(corrected),
            "corrected_cells": sum(r["correction"]["n_cells"] for r in corrected),
            "train_cells": sum(r["correction"]["n_cells"] for r in train),
        },
        "cycles": len(m["cycles"]),
        "models": rows,
        "images": images,
        "interrupted": interrupted,
        "next_image": next((r["id"] for r in project.images if r["correction"] is None), None),
    }


def format_status(status: dict[str, Any]) -> str:
    """The status as lines of text for the terminal."""
    c = status["counts"]
    lines = [
        f"project   {status['project']}",
        f"images    {c['images']} ({c['corrected']} corrected: {c['train']} train, {c['holdout']} held out; "
        f"{c['remaining']} to go)",
        f"cells     {c['corrected_cells']} corrected ({c['train_cells']} in training images)",
        f"held out  {status['holdout_rule']}",
        f"current   {status['current_model']['model']}  {status['current_model']['weights']}",
        "",
        f"{'model':<11} {'images':>6} {'cells':>6} {'epochs':>6} {'time s':>7} {'AP@0.5 held out':>16}",
    ]
    for r in status["models"]:
        ap = "-" if r["holdout_ap50"] is None else f"{r['holdout_ap50']:.3f} ({r['holdout_images']} img)"
        epochs = "-" if r["epochs"] is None else str(r["epochs"])
        secs = "-" if r["seconds"] is None else f"{r['seconds']:.0f}"
        mark = " *" if r["current"] else ""
        lines.append(f"{r['model']:<11} {r['n_train_images']:>6} {r['n_train_cells']:>6} {epochs:>6} {secs:>7} "
                     f"{ap:>16}{mark}")
    if status["interrupted"]:
        it = status["interrupted"]
        how = "resumes from its checkpoint" if it["resumable"] else "starts over"
        lines.append(f"\ninterrupted: cycle {it['cycle']} after {it['epochs_done']} epoch(s); "
                     f"`cellseg hitl train` {how}")
    lines.append("")
    for im in status["images"]:
        extra = ""
        if im["changes"]:
            ch = im["changes"]
            extra = f"  (vs prediction: {ch['deleted']} deleted, {ch['added']} added, {ch['reshaped']} reshaped)"
        cells = "" if im["n_cells"] is None else f"{im['n_cells']} cells"
        lines.append(f"  {im['id']:<24} {im['state']:<9} {im['split'] or '':<7} {cells}{extra}")
    if status["next_image"]:
        lines.append(f"\nnext: {status['next_image']} (`cellseg hitl next`)")
    return "\n".join(lines)

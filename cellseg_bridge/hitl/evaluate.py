"""AP of a project's models on its held-out corrected images (cached in the manifest).

Each held-out image is segmented exactly as ``hitl next`` would segment it
(project channels and diameter) and scored against its corrections with
:func:`~cellseg_bridge.core.metrics.average_precision` at IoU 0.5. The score of a
model is the mean over the held-out images of the per-image AP, with the summed
TP/FP/FN beside it. Scores are cached in the manifest under
``evaluations["<model>|<image id>|<corrections sha256>"]``, so replacing the
corrections of an image invalidates its cached scores.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from cellseg_bridge.core.metrics import average_precision

if TYPE_CHECKING:
    from cellseg_bridge.hitl.project import HitlProject

__all__ = ["holdout_score", "eval_key", "score_image"]

logger = logging.getLogger(__name__)


def eval_key(model: str, rec: dict[str, Any]) -> str:
    """Cache key of a model's score on one corrected image."""
    return f"{model}|{rec['id']}|{rec['correction']['sha256']}"


def score_image(project: HitlProject, model: str, rec: dict[str, Any], device: str = "auto") -> dict[str, Any]:
    """Segment one corrected image with ``model`` and score it (AP@0.5, TP, FP, FN)."""
    import tifffile

    truth = np.asarray(tifffile.imread(project.directory / rec["correction"]["labels"])).reshape(rec["shape"])
    pred = project.predict(rec, model, device)
    ap, tp, fp, fn = average_precision(truth.astype(np.int64), pred.astype(np.int64), 0.5)
    return {"ap50": float(ap[0]), "tp": int(tp[0]), "fp": int(fp[0]), "fn": int(fn[0])}


def holdout_score(
    project: HitlProject, model: str, *, compute: bool = True, device: str = "auto"
) -> dict[str, Any] | None:
    """Mean AP@0.5 of ``model`` on the project's held-out images.

    Parameters
    ----------
    project : HitlProject
        The project; new scores are added to ``project.manifest["evaluations"]``
        (the caller writes the manifest).
    model : str
        ``"initial"`` or ``"cycle_NNN"``.
    compute : bool
        Segment images whose score is not cached; False: only cached scores
        (returns None unless all are cached).
    device : str
        Where the network runs.

    Returns
    -------
    dict or None
        ``{"ap50", "tp", "fp", "fn", "n_images", "images": {id: ap50}}``; None
        when there is no held-out image (or, with ``compute=False``, a score is missing).
    """
    held = project.corrected("holdout")
    if not held:
        return None
    cache = project.manifest.setdefault("evaluations", {})
    per: dict[str, dict[str, Any]] = {}
    for rec in held:
        key = eval_key(model, rec)
        if key not in cache:
            if not compute:
                return None
            cache[key] = score_image(project, model, rec, device)
            logger.info("%s on held-out %s: AP@0.5 %.3f", model, rec["name"], cache[key]["ap50"])
        per[rec["id"]] = cache[key]
    return {
        "ap50": float(np.mean([s["ap50"] for s in per.values()])),
        "tp": sum(s["tp"] for s in per.values()),
        "fp": sum(s["fp"] for s in per.values()),
        "fn": sum(s["fn"] for s in per.values()),
        "n_images": len(per),
        "images": {k: s["ap50"] for k, s in per.items()},
    }

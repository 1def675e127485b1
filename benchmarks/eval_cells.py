"""Score whole-cell and nuclei models on every test split, with ``--model auto`` and its choices.

Test groups: ``usiigaci`` (phase contrast, 5 fields), ``bbbc030`` (DIC, 20),
``dsb2018`` per modality (fluo 24, color 8, bf_gray 2) and ``stardist img2d``.
Each model segments each image as a user would run it (``diameter=None``: the
size model's estimate, else the model's training diameter; ``--true-diameter``
gives every model the ground truth's median diameter instead). AP = TP / (TP +
FP + FN) at IoU 0.5 / 0.75 / 0.9, averaged over the images of a group.

``--auto`` adds the row ``auto``: the generalist's style picks a zoo model per
image (:mod:`cellseg_bridge.segmentation.suggest`), and that model's segmentation of the
image is scored (the same segmentation ``--model auto`` produces). It also
prints how often the choice is the specialist of the image's own dataset.

With ``--out``, the JSON is rewritten after each model, and a rerun reuses the
per-image scores of every model whose weights are unchanged (a fingerprint of
its state dict) under the same ``--true-diameter`` setting: add a model, or
retrain one, and only that model is segmented again.

Usage (from the repository root)::

    .venv/bin/python benchmarks/eval_cells.py --model cells --model cells_phase \\
        --model cells_dic --model nuclei --auto --out eval_cells.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import logging
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cellseg_bridge import datasets  # noqa: E402
from cellseg_bridge.core.metrics import average_precision  # noqa: E402
from cellseg_bridge.training.data import median_diameter  # noqa: E402

logger = logging.getLogger("eval_cells")

#: Test groups: (label, dataset, modality or None).
GROUPS = (
    ("usiigaci", "usiigaci", None),
    ("bbbc030", "bbbc030", None),
    ("dsb2018 fluo", "dsb2018", "fluo"),
    ("dsb2018 color", "dsb2018", "color"),
    ("dsb2018 bf_gray", "dsb2018", "bf_gray"),
    ("stardist img2d", "stardist", None),
)
#: The specialist of each dataset (what a correct suggestion picks).
OWN_SPECIALIST = {"usiigaci": "cells_phase", "bbbc030": "cells_dic", "dsb2018": "nuclei", "stardist": "nuclei"}


def test_samples(max_per_group: int | None = None) -> dict[str, list]:
    """Test-split samples per group (never a train image)."""
    groups: dict[str, list] = {}
    for label, name, modality in GROUPS:
        samples = [s for s in datasets.load(name, "test") if modality in (None, s.modality)]
        groups[label] = samples[:max_per_group]
    return groups


def score_image(model, sample, true_diameter: bool) -> dict:
    """Segment one sample with a loaded model; AP at 0.5/0.75/0.9 and what was used."""
    from cellseg_bridge.segmentation.pipeline import segment

    diameter = median_diameter(sample.labels)[0] if true_diameter else None
    tic = time.perf_counter()
    res = segment(sample.image, model, axes="YX", diameter=diameter)
    ap = average_precision(sample.labels.astype(np.int64), res.labels[0, 0].astype(np.int64))[0]
    return {"ap": [float(v) for v in ap], "diameter": res.diameter, "n": int(res.labels.max()),
            "seconds": round(time.perf_counter() - tic, 2)}


def fingerprint(model) -> str:
    """A short hash of a loaded model's weights (what makes cached scores reusable)."""
    digest = hashlib.sha256()
    for key, value in model.net.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _cached(path: Path | None, true_diameter: bool) -> tuple[dict, dict]:
    """Scores and fingerprints of an earlier run written to ``path`` with the same settings."""
    if path is None or not path.is_file():
        return {}, {}
    old = json.loads(path.read_text(encoding="utf-8"))
    if old.get("true_diameter") != true_diameter:
        return {}, {}
    return old.get("results", {}), old.get("fingerprints", {})


def _write(path: Path | None, report: dict) -> None:
    if path is None:
        return
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def table(results: dict[str, dict[str, dict]], groups: dict[str, list]) -> str:
    """Markdown table: AP@0.5 / 0.75 / 0.9 per group for each row of ``results``."""
    labels = list(groups)
    lines = ["| model | " + " | ".join(f"{g} ({len(groups[g])})" for g in labels) + " |",
             "|---|" + "---|" * len(labels)]
    for row, per_image in results.items():
        cells = []
        for g in labels:
            aps = [per_image[s.key]["ap"] for s in groups[g] if s.key in per_image]
            cells.append(" / ".join(f"{v:.3f}" for v in np.mean(aps, axis=0)) if aps else "-")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=[], help="model name or checkpoint (repeatable)")
    ap.add_argument("--auto", action="store_true", help="add the --model auto row and the choices")
    ap.add_argument("--true-diameter", action="store_true", help="segment at the ground truth's diameter")
    ap.add_argument("--max-per-group", type=int, default=None, help="at most N images per group (smoke runs)")
    ap.add_argument("--out", type=Path, help="JSON with per-image scores, choices and the table")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from cellseg_bridge.segmentation.pipeline import load_model

    groups = test_samples(args.max_per_group)
    samples = [s for g in groups.values() for s in g]
    results: dict[str, dict[str, dict]] = {}
    old_results, old_prints = _cached(args.out, args.true_diameter)
    report: dict = {"true_diameter": args.true_diameter, "fingerprints": {}, "results": results}
    loaded = {}

    def score(name: str, model, s) -> dict:
        if name not in report["fingerprints"]:
            report["fingerprints"][name] = fingerprint(model)
        if old_prints.get(name) == report["fingerprints"][name] and s.key in old_results.get(name, {}):
            return old_results[name][s.key]
        return score_image(model, s, args.true_diameter)

    for name in args.model:
        t0 = time.perf_counter()
        loaded[name] = load_model(name, device="cpu")
        results[name] = {s.key: score(name, loaded[name], s) for s in samples}
        logger.info("%s scored in %.0f s", name, time.perf_counter() - t0)
        _write(args.out, report)
    if args.auto:
        from cellseg_bridge.segmentation.suggest import load_auto_model

        auto = load_auto_model("cpu")
        choices, per_image = {}, {}
        for s in samples:
            choice = auto.choose(s.image, axes="YX")
            choices[s.key] = choice.to_dict()
            if choice.model not in results:
                loaded[choice.model] = auto.model(choice.model)
                results[choice.model] = {}
            if s.key not in results[choice.model]:
                results[choice.model][s.key] = score(choice.model, loaded[choice.model], s)
            per_image[s.key] = {**results[choice.model][s.key], "model": choice.model}
        results["auto"] = per_image
        own = [choices[s.key]["model"] == OWN_SPECIALIST[s.dataset] for s in samples]
        by_dataset = {}
        for s, ok in zip(samples, own):
            by_dataset.setdefault(s.dataset, []).append(ok)
        report["choices"] = choices
        report["own_specialist_rate"] = float(np.mean(own))
        report["own_specialist_by_dataset"] = {k: [int(sum(v)), len(v)] for k, v in by_dataset.items()}
        logger.info("auto chose the own-dataset specialist for %d of %d test images (%.1f%%): %s",
                    sum(own), len(own), 100 * np.mean(own), report["own_specialist_by_dataset"])
    text = table(results, groups)
    print("AP@0.5 / 0.75 / 0.9, mean over images" + (" (true diameters)" if args.true_diameter else "") + "\n")
    print(text)
    report["table"] = text
    _write(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Score nuclei models on the dsb2018 test split (per modality) and the stardist ``img2d.tif``.

Each model segments every image with our engine at its own scale (``diameter=None``: the
size model's estimate when the model has one, else its training diameter), exactly as a
user would run it; AP = TP / (TP + FP + FN) at IoU 0.5 / 0.75 / 0.9, averaged over the
images of a group (as the Cellpose 3 baseline's README reports it).

Usage (from the repository root)::

    .venv/bin/python benchmarks/eval_nuclei.py --model nuclei \\
        --model ../shared/models/cellpose3_dsb2018_nuclei.pth --out eval_nuclei.md
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import shared_data  # noqa: E402

from cellseg_bridge.core.metrics import average_precision  # noqa: E402
from cellseg_bridge.datasets import dsb2018  # noqa: E402
from cellseg_bridge.segmentation.pipeline import load_model, segment  # noqa: E402

logger = logging.getLogger("eval_nuclei")
GROUPS = ("fluo", "color", "bf_gray")


def score_model(
    name: str, samples: dict[str, list[tuple[np.ndarray, np.ndarray]]], precision: str = "auto"
) -> dict[str, np.ndarray]:
    """Mean AP (0.5, 0.75, 0.9) per group of ``samples`` for model ``name`` run in ``precision``."""
    model = load_model(name, device="cpu")
    scores: dict[str, np.ndarray] = {}
    every = []
    for group, items in samples.items():
        aps = []
        for image, truth in items:
            labels = segment(image, model, axes="YX", diameter=None, precision=precision).labels[0, 0]
            aps.append(average_precision(truth, labels.astype(np.int64))[0])
        scores[group] = np.mean(aps, axis=0)
        if group in GROUPS:
            every += aps
    scores["all"] = np.mean(every, axis=0)
    return scores


def load_samples(data: Path) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Test-split samples per modality, plus the stardist crop."""
    root = data / "dsb2018"
    rows = dsb2018.read_split(root)
    samples = {g: [dsb2018.load_sample(root, i) for i in dsb2018.select(rows, "test", g)] for g in GROUPS}
    img2d = tifffile.imread(data / "stardist" / "img2d.tif").astype(np.float32)
    mask2d = tifffile.imread(data / "stardist" / "mask2d.tif").astype(np.int64)
    samples["stardist img2d"] = [(img2d, mask2d)]
    return samples


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="model name or checkpoint (repeatable)")
    ap.add_argument("--precision", action="append", choices=["auto", "float32", "bfloat16"],
                    help="network arithmetic (repeatable: one row per model and precision); default auto")
    ap.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data = shared_data()
    if data is None:
        logger.error("../shared/data not found (set CELLSEG_SHARED): nothing to score")
        return 2
    samples = load_samples(data)
    groups = [*GROUPS, "all", "stardist img2d"]
    counts = {g: len(samples[g]) for g in samples} | {"all": sum(len(samples[g]) for g in GROUPS)}
    lines = ["| model | " + " | ".join(f"{g} ({counts[g]})" for g in groups) + " |",
             "|---|" + "---|" * len(groups)]
    precisions = args.precision or ["auto"]
    for name in args.model:
        for precision in precisions:
            t0 = time.perf_counter()
            scores = score_model(name, samples, precision)
            logger.info("%s (%s) scored in %.0f s", name, precision, time.perf_counter() - t0)
            cells = [" / ".join(f"{v:.3f}" for v in scores[g]) for g in groups]
            label = name if len(precisions) == 1 else f"{name} ({precision})"
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    table = "AP@0.5 / 0.75 / 0.9, mean over images\n\n" + "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.write_text(table, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

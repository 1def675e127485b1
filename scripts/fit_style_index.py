"""Fit the style index that ``--model auto`` uses: the generalist's styles of each specialist's training images.

Writes ``style_index.npz`` into the generalist's folder (``--out`` elsewhere).
Each ``--zoo MODEL=DATASET`` names a zoo model and the shared dataset whose TRAIN
split it was trained on; the generalist's style of every such image is stored
with the model's name (:class:`cellseg_bridge.segmentation.suggest.StyleIndex`).

Usage::

    .venv/bin/python scripts/fit_style_index.py cellseg_bridge/models/cells \\
        --zoo cells_phase=usiigaci --zoo cells_dic=bbbc030 --zoo nuclei=dsb2018
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cellseg_bridge import datasets  # noqa: E402
from cellseg_bridge.segmentation.suggest import STYLE_INDEX_NAME, fit_style_index  # noqa: E402
from cellseg_bridge.segmentation.pipeline import load_model  # noqa: E402

log = logging.getLogger("fit_style_index")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("generalist", type=Path, help="the generalist's model folder")
    ap.add_argument("--zoo", action="append", required=True, help="MODEL=DATASET (repeat)")
    ap.add_argument("--k", type=int, default=7, help="neighbours that vote")
    ap.add_argument("--max-images", type=int, default=None, help="at most N train images per dataset")
    ap.add_argument("--out", type=Path, default=None, help="default: GENERALIST/style_index.npz")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tic = time.perf_counter()
    images = {}
    for spec in args.zoo:
        model, _, dataset = spec.partition("=")
        images[model] = [s.image for s in datasets.load(dataset, "train")][: args.max_images]
        log.info("%s: %d %s train image(s)", model, len(images[model]), dataset)
    gen = load_model(args.generalist / "weights.pth", device="cpu")
    index = fit_style_index(gen, images, k=args.k)
    out = args.out or args.generalist / STYLE_INDEX_NAME
    index.save(out)
    log.info("style index of %d image(s), %d model(s) -> %s in %.0f s", len(index.labels), len(index.models), out,
             time.perf_counter() - tic)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

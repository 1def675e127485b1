"""Train the whole-cell generalist ``cells`` (or a specialist) on the train splits of the shared datasets.

Data: ``<shared>/data/<name>`` read by :mod:`cellseg_bridge.datasets` (grayscale
images, instance labels). Each ``--data NAME:WEIGHT`` adds a dataset's TRAIN
split, drawn with that weight; the last ``--n-val`` train images of each
dataset (in the reader's order) are held out for the curves (per-dataset AP) and
not trained on. Test splits are never read here.

Writes to OUT what :func:`cellseg_bridge.training.train` writes (``weights.pth``,
``config.json``, ``size_model.npz``, curves, ``checkpoint/`` resumable with
``--resume``).

Generalist (the bundled ``cells``; docs/models.md)::

    .venv/bin/python scripts/train_cells.py runs/cells --data usiigaci:0.35 \\
        --data bbbc030:0.25 --data dsb2018:0.4 --nbase 2,16,32,64,128 --epochs 300

Specialist (fine-tuned from the generalist on one dataset)::

    .venv/bin/python scripts/train_cells.py runs/cells_phase --data usiigaci \\
        --pretrained cellseg_bridge/models/cells/weights.pth --recipe hitl --epochs 100

Smoke run (a minute)::

    .venv/bin/python scripts/train_cells.py /tmp/cells_smoke --data bbbc030 --data dsb2018 \\
        --nbase 2,8,16,32 --epochs 2 --images-per-epoch 8 --max-images 4 --n-val 1
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
from cellseg_bridge.training import DataSource, train  # noqa: E402

log = logging.getLogger("train_cells")


def dataset_sources(
    specs: list[str], n_val: int, max_images: int | None = None
) -> tuple[list[DataSource], dict[str, list]]:
    """Training sources and held-out validation pairs of ``NAME[:WEIGHT]`` specs (train splits only)."""
    sources, val = [], {}
    for spec in specs:
        name, _, weight = spec.partition(":")
        train_split = datasets.load(name, "train")
        held = train_split[len(train_split) - n_val :] if n_val > 0 else []
        use = train_split[: len(train_split) - len(held)][:max_images]
        sources.append(DataSource([(s.image, s.labels, s.key) for s in use], float(weight or 1.0), name))
        if held:
            val[name] = [(s.image, s.labels, s.key) for s in held]
        log.info("%s: %d train image(s), %d held out: %s", name, len(use), len(held), [s.name for s in held])
    return sources, val


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output folder")
    ap.add_argument("--data", action="append", required=True, help="NAME[:WEIGHT] of a shared dataset (repeat)")
    ap.add_argument("--nbase", default="2,16,32,64,128", help="network widths, comma separated")
    ap.add_argument("--diam-mean", type=float, default=30.0, help="diameter the net works at (cells: 30)")
    ap.add_argument("--pretrained", default=None, help="model to fine-tune (name or weights path)")
    ap.add_argument("--recipe", default="generalist", choices=["generalist", "hitl"])
    ap.add_argument("--epochs", type=int, default=None, help="epochs (default: the recipe's)")
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the recipe's)")
    ap.add_argument("--images-per-epoch", type=int, default=64)
    ap.add_argument("--minutes", type=float, default=None, help="time budget (epochs are fitted to it)")
    ap.add_argument("--n-val", type=int, default=2, help="train images per dataset held out for the curves")
    ap.add_argument("--val-every", type=int, default=25)
    ap.add_argument("--save-every", type=int, default=5)
    ap.add_argument("--max-images", type=int, default=None, help="at most N train images per dataset")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tic = time.perf_counter()
    sources, val = dataset_sources(args.data, args.n_val, args.max_images)
    options = {"nbase": tuple(int(v) for v in args.nbase.split(",")), "diam_mean": args.diam_mean}
    if args.pretrained:
        options = {"pretrained": args.pretrained}
    result = train(
        sources if len(sources) > 1 else sources[0].data,
        args.out,
        val_data=val or None,
        resume=args.resume,
        progress=not args.no_progress,
        recipe=args.recipe,
        n_epochs=args.epochs,
        learning_rate=args.lr,
        images_per_epoch=args.images_per_epoch,
        val_every=args.val_every,
        save_every=args.save_every,
        seed=args.seed,
        time_budget_min=args.minutes,
        **options,
    )
    last = result.curves[-1] if result.curves else {}
    log.info(
        "done: %d/%d epochs (%s), diam_labels %.2f, last loss %s, val %s, weights %s, %.0f s",
        result.epochs_run, result.n_epochs, result.stopped, result.diam_labels, last.get("loss"),
        {k: round(v, 3) for k, v in last.items() if k.startswith("ap") and v is not None},
        result.weights, time.perf_counter() - tic,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Train the bundled ``nuclei`` model on the dsb2018 TRAIN split with our own training code.

Data: ``<shared>/data/dsb2018`` (``split.tsv``; ``stage1_train/<id>/images/<id>.png``;
one PNG per nucleus under ``stage1_train/<id>/masks/``). Every modality of the train
split is used; images become grayscale as the mean of their RGB channels (alpha dropped).
A few images of the TEST split (kinds taken in turn) are scored for the curves.

Writes to OUT: ``weights.pth``, ``config.json``, ``size_model.npz``, ``curves.csv``,
``curves.png``, ``checkpoint/`` (resumable with ``--resume``) and ``flow_cache/``.

Example (2-minute smoke run)::

    .venv/bin/python scripts/train_nuclei.py /tmp/nuclei_smoke --nbase 2,8,16,32 \\
        --epochs 2 --images-per-epoch 16 --minutes 2 --n-val 2

Copy OUT's ``weights.pth``, ``config.json`` and ``size_model.npz`` into
``cellseg_bridge/models/nuclei/`` to bundle the result.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cellseg_bridge.datasets import dsb2018  # noqa: E402
from cellseg_bridge.training import train  # noqa: E402


def _pick_val(rows, n: int) -> list[str]:
    by_kind: dict[str, list[str]] = {}
    for image_id, kind, split in ((r.image_id, r.kind, r.split) for r in rows):
        if split == "test":
            by_kind.setdefault(kind, []).append(image_id)
    picked: list[str] = []
    kinds = sorted(by_kind, key=lambda k: -len(by_kind[k]))
    while len(picked) < n and any(by_kind.values()):
        for k in kinds:
            if by_kind[k] and len(picked) < n:
                picked.append(by_kind[k].pop(0))
    return picked


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output folder")
    ap.add_argument("--nbase", default="2,32,64,128,256", help="network widths, comma separated")
    ap.add_argument("--epochs", type=int, default=None, help="epochs (default: the recipe's)")
    ap.add_argument("--recipe", default="generalist", choices=["generalist", "hitl"])
    ap.add_argument("--optimizer", default="sgd", choices=["sgd", "adamw"])
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the recipe's)")
    ap.add_argument("--minutes", type=float, default=None, help="time budget; epochs are fitted to it")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-val", type=int, default=6, help="test-split images scored for the curves")
    ap.add_argument("--val-every", type=int, default=10)
    ap.add_argument("--save-every", type=int, default=5)
    ap.add_argument("--images-per-epoch", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--diam-mean", type=float, default=17.0, help="diameter the net works at (nuclei: 17)")
    ap.add_argument("--max-images", type=int, default=None, help="use only the first N train images")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tic = time.perf_counter()
    root = dsb2018.shared_root(REPO)
    rows = dsb2018.read_split(root)
    pairs = dsb2018.load_samples(root, dsb2018.select(rows, "train")[: args.max_images])
    val = dsb2018.load_samples(root, _pick_val(rows, args.n_val)) if args.n_val > 0 else None
    nbase = tuple(int(v) for v in args.nbase.split(","))
    result = train(
        pairs,
        args.out,
        val_data=val,
        resume=args.resume,
        progress=not args.no_progress,
        recipe=args.recipe,
        optimizer=args.optimizer,
        n_epochs=args.epochs,
        learning_rate=args.lr,
        nbase=nbase,
        diam_mean=args.diam_mean,
        batch_size=args.batch_size,
        crop_size=args.crop,
        images_per_epoch=args.images_per_epoch,
        val_every=args.val_every,
        save_every=args.save_every,
        seed=args.seed,
        time_budget_min=args.minutes,
    )
    last = result.curves[-1] if result.curves else {}
    print(
        f"done: {result.epochs_run}/{result.n_epochs} epochs ({result.stopped}), "
        f"diam_labels {result.diam_labels:.2f}, last loss {last.get('loss')}, "
        f"val AP50/75/90 {last.get('ap50')}/{last.get('ap75')}/{last.get('ap90')}, "
        f"weights {result.weights}, size model {result.size_model}, "
        f"total {time.perf_counter() - tic:.0f} s"
    )
    return 0

if __name__ == "__main__":
    raise SystemExit(main())

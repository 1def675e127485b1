"""Train a nuclei restoration model on the dsb2018 TRAIN split (Cellpose 3 recipe, our code).

The judging segmentation network (frozen) is given by ``--seg-model`` (a name or a
path: the bundled ``nuclei`` model once it exists; for smoke runs only,
``../shared/models/cellpose3_dsb2018_nuclei.pth``). ``--loss seg`` is Cellpose 3's
segmentation-aware loss (perceptual 1.0 + segmentation 1.5); ``--loss mse`` is the
CARE-like baseline (80 x MSE) with the same network and data.

OUT becomes a model folder (``weights.pth``, ``config.json``, ``curves.csv``): copy it
to ``cellseg_bridge/models/<kind>_nuclei/`` (or ``~/.cellseg_bridge/models/``) to call
it by name, e.g. ``cellseg restore --type denoise``.

Examples::

    # smoke run (tiny network, 2 epochs of 8 images)
    .venv/bin/python scripts/train_restore.py /tmp/denoise_smoke --kind denoise \\
        --seg-model ../shared/models/cellpose3_dsb2018_nuclei.pth \\
        --nbase 1,8,16,32 --epochs 2 --images-per-epoch 8 --max-images 8

    # real run (full width, about an hour's budget)
    .venv/bin/python scripts/train_restore.py runs/denoise_nuclei --kind denoise \\
        --seg-model nuclei --minutes 60
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cellseg_bridge.core.degrade import ANISO_MIX, RESTORE_KINDS  # noqa: E402
from cellseg_bridge.datasets import dsb2018  # noqa: E402
from cellseg_bridge.restoration.losses import DEFAULT_WEIGHTS, MSE_BASELINE_WEIGHTS  # noqa: E402
from cellseg_bridge.restoration.training import train_restore  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output model folder")
    ap.add_argument("--kind", default="denoise", choices=RESTORE_KINDS)
    ap.add_argument("--seg-model", required=True, help="frozen segmentation model (name or path)")
    ap.add_argument("--loss", default="seg", choices=["seg", "mse"], help="seg: Cellpose 3; mse: baseline")
    ap.add_argument("--nbase", default="1,32,64,128,256", help="network widths, comma separated")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--minutes", type=float, default=None, help="stop after the epoch that passes this")
    ap.add_argument("--images-per-epoch", type=int, default=None)
    ap.add_argument("--max-images", type=int, default=None, help="only the first N train images")
    ap.add_argument("--kinds", default="fluo,color,bf_gray", help="dsb2018 modalities to train on")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--init", type=Path, default=None,
                    help="start from this restoration checkpoint (e.g. the MSE baseline of the same kind)")
    ap.add_argument("--aniso-mix", type=lambda v: tuple(float(x) for x in v.split(",")), default=ANISO_MIX,
                    help="--kind aniso: probabilities of the anisotropic blur and of the stripes, e.g. 0.95,0.35")
    ap.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"],
                    help="auto: bfloat16 mixed precision where the hardware has it natively")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    root = dsb2018.shared_root(REPO)
    rows = dsb2018.read_split(root)
    kinds = set(args.kinds.split(","))
    ids = [r.image_id for r in rows if r.split == "train" and r.kind in kinds]
    pairs = dsb2018.load_samples(root, ids[: args.max_images])
    weights = DEFAULT_WEIGHTS if args.loss == "seg" else MSE_BASELINE_WEIGHTS
    result = train_restore(
        [p[0] for p in pairs],
        args.out,
        labels=[p[1] for p in pairs],
        kind=args.kind,
        seg_model=args.seg_model,
        weights=weights,
        nbase=tuple(int(v) for v in args.nbase.split(",")),
        n_epochs=args.epochs,
        images_per_epoch=args.images_per_epoch,
        batch_size=args.batch_size,
        crop_size=args.crop,
        learning_rate=args.lr,
        seed=args.seed,
        time_budget_min=args.minutes,
        device=args.device,
        precision=args.precision,
        init_weights=args.init,
        aniso_mix=args.aniso_mix,
        provenance={"data": "dsb2018 train split", "modalities": sorted(kinds), "n_images": len(pairs),
                    "loss": args.loss, "command": " ".join(sys.argv)},
    )
    last = result.curves[-1] if result.curves else {}
    summary = {
        "weights": str(result.weights), "epochs": result.epochs_run, "steps": result.steps,
        "stopped": result.stopped, "seconds": round(result.seconds, 1),
        "s_per_step_data": round(sum(c["s_data"] for c in result.curves) / max(1, len(result.curves)), 3),
        "s_per_step_net": round(sum(c["s_net"] for c in result.curves) / max(1, len(result.curves)), 3),
        "last_loss": last.get("loss"),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The Cellpose 4.2.1.1 side of ``bench_cpsam.py``, run with the Cellpose 4 peer's interpreter.

Subcommands (the last stdout line is a JSON report):

* ``build OUT.pth [--seed S] [--shared DIR]``: Cellpose 4's own full-size ``CPSAM`` (SAM ViT-L)
  with seeded random weights (residual-branch outputs scaled by 0.1) and a readout fitted on two dsb2018 training tiles at their own
  scale (``peer4_net.fit_readout``), saved with ``torch.save(state_dict)``;
* ``segment IMAGE.npy CKPT OUTDIR [--warmup W.npy]``: ``CellposeModel(pretrained_model=CKPT,
  gpu=False)`` with Cellpose 4's defaults (bfloat16 weights), ``eval(img, flow_threshold=...)``
  (no diameter) timed,
  the network's forward calls timed, peak RSS; masks and flows (dY, dX, cellprob) saved in OUTDIR.
"""

from __future__ import annotations

import os

for _key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_key, "2")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import peer4_net  # noqa: E402  (puts the torchvision stub on sys.path)

REPO = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build(args: argparse.Namespace) -> dict:
    from peer4_golden import fit_tiles

    t0 = time.perf_counter()
    net = peer4_net.build(args.seed, small=False, residual_scale=0.1)
    tiles, labels, ids = fit_tiles(args.shared / "data", n=1, scale=1)
    peer4_net.fit_readout(net, tiles, labels)
    torch.save({k: v.clone() for k, v in net.state_dict().items()}, args.out)
    return {"seconds": time.perf_counter() - t0, "fit_ids": ids, "bytes": Path(args.out).stat().st_size}


def segment(args: argparse.Namespace) -> dict:
    from cellpose import models

    model = models.CellposeModel(pretrained_model=args.checkpoint, gpu=False)
    stats = {"seconds": 0.0, "calls": 0, "tiles": 0}
    forward = model.net.forward

    def timed(x):
        t0 = time.perf_counter()
        out = forward(x)
        stats["seconds"] += time.perf_counter() - t0
        stats["calls"] += 1
        stats["tiles"] += int(x.shape[0])
        return out

    model.net.forward = timed
    if args.warmup:
        model.eval(np.load(args.warmup))
    stats.update(seconds=0.0, calls=0, tiles=0)
    img = np.load(args.image)
    rss_before = _rss_mb()
    t0 = time.perf_counter()
    masks, flows, _styles = model.eval(img, flow_threshold=args.flow_threshold)
    np.save(Path(args.out) / "flows.npy", np.concatenate([flows[1], flows[2][None]]).astype(np.float32))
    seconds = time.perf_counter() - t0
    np.save(Path(args.out) / "masks.npy", np.asarray(masks).astype(np.uint32))
    return {"seconds": seconds, "net": stats, "n_masks": int(np.max(masks)), "rss_before_mb": rss_before,
            "peak_rss_mb": _rss_mb(), "dtype": str(model.net.dtype), "threads": torch.get_num_threads()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("out")
    b.add_argument("--seed", type=int, default=4)
    b.add_argument("--shared", type=Path, default=Path(os.environ.get("CELLSEG_SHARED", REPO.parent / "shared")))
    s = sub.add_parser("segment")
    s.add_argument("image")
    s.add_argument("checkpoint")
    s.add_argument("out")
    s.add_argument("--warmup")
    s.add_argument("--flow-threshold", type=float, default=0.4)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(2)
    print(json.dumps(build(args) if args.cmd == "build" else segment(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

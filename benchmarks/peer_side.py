"""The peer's side of the benchmarks: run with the PEER's interpreter (``.peer_venv``).

Not for the project's environment: it imports ``cellpose`` (3.1.1.3). ``bench_dynamics`` and
``bench_segment`` call it through a subprocess; it prints one JSON line (timings, peak RSS)
as its last output and saves its results as ``.npy`` into the given folder.

    python peer_side.py dynamics IN_DIR OUT_DIR --niter 200 --repeat 3
        IN_DIR/dP.npy (float32, x5), IN_DIR/cellprob.npy -> OUT_DIR/masks_qc_{on,off}.npy
    python peer_side.py segment IMAGE.npy CHECKPOINT OUT_DIR [--warmup WARMUP.npy]
        CellposeModel(pretrained_model=CHECKPOINT, gpu=False).eval(img, channels=[0, 0],
        diameter=None) -> OUT_DIR/masks.npy
    python peer_side.py train SPEC.json      (``peer_train_cells.py``: train_seg on npz data)
    python peer_side.py eval SPEC.json       (``peer_train_cells.py``: CellposeModel.eval + metrics)

2 threads everywhere (OMP/MKL/NUMBA_NUM_THREADS set before the imports, torch.set_num_threads).
"""

from __future__ import annotations

import os

for _key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_key, "2")

import argparse  # noqa: E402
import importlib.metadata as md  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import matmul_gflops  # noqa: E402

THREADS = 2


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_s() -> float:
    """User + system CPU seconds of this process (all threads) so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def dynamics(args: argparse.Namespace) -> dict:
    from cellpose import dynamics as cp_dynamics

    dP = np.load(Path(args.inputs) / "dP.npy")
    cellprob = np.load(Path(args.inputs) / "cellprob.npy")
    out = Path(args.out)
    report = {}
    for name, flow_threshold in (("qc_on", 0.4), ("qc_off", 0.0)):
        def call(ft=flow_threshold):
            return cp_dynamics.compute_masks(dP, cellprob, niter=args.niter, cellprob_threshold=0.0,
                                             flow_threshold=ft, min_size=15, max_size_fraction=0.4)
        masks = call()  # numba compilation happens here, outside the timing
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            masks = call()
            best = min(best, time.perf_counter() - t0)
        np.save(out / f"masks_{name}.npy", masks)
        report[name] = {"seconds": best, "n_masks": int(masks.max())}
    return report


def segment(args: argparse.Namespace) -> dict:
    from cellpose import models

    model = models.CellposeModel(pretrained_model=args.checkpoint, gpu=False)
    net_stats = {"pixels": 0, "seconds": 0.0, "calls": 0}
    forward = model.net.forward

    def timed_forward(x, *a, **k):
        t0 = time.perf_counter()
        y = forward(x, *a, **k)
        net_stats["seconds"] += time.perf_counter() - t0
        net_stats["pixels"] += int(x.shape[0] * x.shape[-2] * x.shape[-1])
        net_stats["calls"] += 1
        return y

    model.net.forward = timed_forward
    if args.warmup:  # numba compilation and first-call costs, not timed
        model.eval(np.load(args.warmup), channels=[0, 0], diameter=None)
    net_stats.update(pixels=0, seconds=0.0, calls=0)
    img = np.load(args.image)
    rss_before = _rss_mb()
    peak_before = matmul_gflops()
    cpu0, t0 = _cpu_s(), time.perf_counter()
    masks, _flows, _styles = model.eval(img, channels=[0, 0], diameter=None)
    seconds, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
    peak = _rss_mb()
    np.save(Path(args.out) / "masks.npy", masks.astype(np.uint32))
    return {"seconds": seconds, "cpu_seconds": cpu, "n_masks": int(masks.max()), "net": net_stats,
            "rss_before_mb": rss_before, "peak_rss_mb": peak,
            "rescale": float(model.diam_mean / model.diam_labels),
            "matmul_gflops": max(peak_before, matmul_gflops())}


def main() -> int:
    ap = argparse.ArgumentParser(description="the peer's side of the benchmarks")
    sub = ap.add_subparsers(dest="what", required=True)
    d = sub.add_parser("dynamics")
    d.add_argument("inputs")
    d.add_argument("out")
    d.add_argument("--niter", type=int, default=200)
    d.add_argument("--repeat", type=int, default=3)
    s = sub.add_parser("segment")
    s.add_argument("image")
    s.add_argument("checkpoint")
    s.add_argument("out")
    s.add_argument("--warmup")
    for name in ("train", "eval"):
        sub.add_parser(name).add_argument("spec", help="JSON written by peer_train_cells.py")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.what in ("train", "eval") else logging.ERROR,
                        format="%(asctime)s %(name)s: %(message)s")
    warnings.simplefilter("ignore")
    torch.set_num_threads(THREADS)
    if args.what in ("train", "eval"):
        import peer_side_cells  # the same folder

        report = getattr(peer_side_cells, args.what)(json.loads(Path(args.spec).read_text()))
    else:
        report = dynamics(args) if args.what == "dynamics" else segment(args)
    report["versions"] = {"cellpose": md.version("cellpose"), "torch": torch.__version__, "numpy": np.__version__,
                          "numba": md.version("numba"), "threads": torch.get_num_threads()}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

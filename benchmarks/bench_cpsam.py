"""Cellpose-SAM segmentation on CPU: our ``segment`` against Cellpose 4.2.1.1's ``eval``, same run.

One command (after ``bash benchmarks/peer4_env.sh``)::

    .venv/bin/python benchmarks/bench_cpsam.py [--size 1024]

Weights: a full-size Cellpose-SAM network (SAM ViT-L, 305 M parameters) built by Cellpose 4's
own ``CPSAM`` with seeded random weights (residual branches scaled by 0.1, so that the deep
random stack keeps its input) and a readout fitted on two dsb2018 training tiles
(``peer4_side.py build``), saved to a temporary folder (never committed). Input: a ``--size``
square mosaic of the dsb2018 test-split fluorescence images (grayscale, ``_peer.mosaic``), no
diameter (Cellpose 4's scale 1), ``flow_threshold`` 0.8 on both sides (the random network's
fitted readout gives crude flows; at 0.4 neither side keeps a mask). Each side runs in its own fresh process on 2 threads: ours
(``--worker`` mode, ``segment()`` with default options: bfloat16 autocast on a CPU with
native bfloat16, float32 otherwise) and the peer (``peer4_side.py segment``,
``CellposeModel`` defaults: bfloat16 weights). Each first segments a 256 x 256 image
(first-call costs), then the timed call.

Reported: seconds per megapixel, peak RSS, the network's achieved GFLOP/s (FLOPs of one
256 x 256 tile counted by ``FlopCounterMode`` x tiles run / seconds inside the network)
against this process's measured fp32 and bf16 matmul peaks (2048^2, 2 threads), the largest
differences of the flows and cell probability (both sides in bfloat16 by default), and AP@0.5
of our masks against the peer's. The machine's load average is logged: on a shared CPU the
ratio is the number to read, not the absolute times. Results: ``benchmarks/results/cpsam.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

for _key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_key, "2")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, matmul_gflops, shared_data  # noqa: E402
from _peer import THREADS, mosaic, our_python, read_gray, run_worker, test_fluo_ids  # noqa: E402

log = logging.getLogger("benchmarks")
PEER4_SIDE = Path(__file__).resolve().parent / "peer4_side.py"
TILE = 256


def peer4_python() -> Path | None:
    """``.peer4_venv/bin/python`` (or ``$PEER4_VENV``), None with a hint when it is missing."""
    python = Path(os.environ.get("PEER4_VENV", REPO / ".peer4_venv")) / "bin" / "python"
    if not python.exists():
        log.warning("Cellpose 4 peer not found at %s: create it with `bash benchmarks/peer4_env.sh`", python)
        return None
    return python


def flops_per_tile() -> float:
    """FLOPs of one ViT-L Cellpose-SAM forward pass on a 1 x 3 x 256 x 256 tile (meta tensors)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from cellseg_bridge.nn.vit_sam import CellposeSAM

    with torch.device("meta"):
        net = CellposeSAM("vit_l").eval()
        x = torch.zeros(1, 3, TILE, TILE)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(x)
    return float(counter.get_total_flops())


def _worker(args: argparse.Namespace) -> dict:
    """Our side in its own process: ``segment`` timed, the network's forward calls timed."""
    import torch

    torch.set_num_threads(THREADS)
    from cellseg_bridge.nn.precision import autocast_dtype
    from cellseg_bridge.nn.vit_sam import CellposeSAM
    from cellseg_bridge.segmentation.pipeline import load_model, segment

    stats = {"seconds": 0.0, "calls": 0, "tiles": 0}
    forward = CellposeSAM.forward

    def timed(self, x):
        t0 = time.perf_counter()
        out = forward(self, x)
        stats["seconds"] += time.perf_counter() - t0
        stats["calls"] += 1
        stats["tiles"] += int(x.shape[0])
        return out

    CellposeSAM.forward = timed  # type: ignore[method-assign]
    model = load_model(args.checkpoint, device="cpu")
    kwargs = {"axes": "YX", "precision": args.precision, "flow_threshold": args.flow_threshold}
    if args.warmup:
        segment(np.load(args.warmup), model, **kwargs)
    stats.update(seconds=0.0, calls=0, tiles=0)
    img = np.load(args.image)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    t0 = time.perf_counter()
    result = segment(img, model, return_flows=True, **kwargs)
    seconds = time.perf_counter() - t0
    masks = np.asarray(result.labels)[0, 0]
    np.save(Path(args.out) / "masks.npy", masks.astype(np.uint32))
    np.save(Path(args.out) / "flows.npy", np.concatenate([result.flows[0, :, 0], result.cellprob[0]]))
    dtype = autocast_dtype(args.precision, torch.device("cpu")) or torch.float32
    return {"seconds": seconds, "net": stats, "n_masks": int(masks.max()), "rss_before_mb": rss_before,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "dtype": str(dtype),
            "threads": torch.get_num_threads(), "timings": result.timings}


def run(size: int, flow_threshold: float) -> dict:
    """Build the peer's network, segment the mosaic with both sides, return the report."""
    from cellseg_bridge.core.metrics import average_precision

    shared, python = shared_data(), peer4_python()
    if shared is None or python is None:
        log.warning("../shared/data or the Cellpose 4 peer is missing: benchmark skipped")
        return {}
    img = mosaic(shared, size)
    small = next(i for i in test_fluo_ids(shared) if read_gray(shared, i).shape == (256, 256))
    mp = img.size / 1e6
    report: dict = {"size": size, "flow_threshold": flow_threshold, "load_average_start": os.getloadavg(),
                    "threads": THREADS}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ckpt = tmp / "cpsam_vitl_random.pth"
        report["build"] = run_worker([str(python), str(PEER4_SIDE), "build", str(ckpt)], timeout=3600)
        np.save(tmp / "image.npy", img)
        np.save(tmp / "warmup.npy", read_gray(shared, small))
        common = [str(tmp / "image.npy"), str(ckpt), str(tmp), "--warmup", str(tmp / "warmup.npy"),
                  "--flow-threshold", str(flow_threshold)]
        masks, flows = {}, {}
        for side in ("ours", "peer"):
            if side == "peer":
                cmd = [str(python), str(PEER4_SIDE), "segment", *common]
            else:
                cmd = [our_python(), str(Path(__file__).resolve()), "--worker", *common]
            report[side] = run_worker(cmd, timeout=7200)
            report[side]["load_average_after"] = os.getloadavg()
            masks[side] = np.load(tmp / "masks.npy")
            flows[side] = np.load(tmp / "flows.npy")
            log.info("%s: %.1f s (%.1f s/MP), %d masks", side, report[side]["seconds"],
                     report[side]["seconds"] / mp, report[side]["n_masks"])
    flops = flops_per_tile()
    report["gflop_per_tile"] = flops / 1e9
    report["matmul_gflops"] = {"float32": matmul_gflops(), "bfloat16": matmul_gflops(dtype="bfloat16")}
    for side in ("ours", "peer"):
        net = report[side]["net"]
        report[side]["s_per_mp"] = report[side]["seconds"] / mp
        report[side]["net_gflops"] = net["tiles"] * flops / net["seconds"] / 1e9 if net["seconds"] else None
    diff = np.abs(flows["ours"] - flows["peer"])
    report["max_abs_diff"] = {"dP": float(diff[:2].max()), "cellprob": float(diff[2].max()),
                              "cellprob_range": float(np.abs(flows["peer"][2]).max())}
    report["cellprob_sign_agreement"] = float(np.mean((flows["ours"][2] > 0) == (flows["peer"][2] > 0)))
    if masks["peer"].max() > 0:
        ap = average_precision(masks["peer"], masks["ours"], (0.5, 0.75, 0.9))[0]
        report["ap_ours_vs_peer"] = [float(a) for a in ap]
    report["speedup_wall"] = report["peer"]["seconds"] / report["ours"]["seconds"]
    report["load_average_end"] = os.getloadavg()
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="side of the square test image")
    ap.add_argument("--worker", metavar="IMAGE_NPY", help=argparse.SUPPRESS)
    ap.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    ap.add_argument("--warmup", help=argparse.SUPPRESS)
    ap.add_argument("--precision", default="auto", help="our side's precision (segment option)")
    ap.add_argument("--flow-threshold", type=float, default=0.8,
                    help="both sides (the random network's fitted readout gives crude flows: 0.4 keeps no mask)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.worker:
        args.image = args.worker
        args.checkpoint, args.out = args.rest
        logging.getLogger().setLevel(logging.WARNING)
        print(json.dumps(_worker(args)))
        return 0
    report = run(args.size, args.flow_threshold)
    if not report:
        return 1
    out = REPO / "benchmarks" / "results" / "cpsam.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    o, p = report["ours"], report["peer"]
    print(f"{args.size}^2: ours {o['s_per_mp']:.1f} s/MP ({o['dtype']}), peer {p['s_per_mp']:.1f} s/MP ({p['dtype']}), "
          f"x{report['speedup_wall']:.2f}; peak RSS {o['peak_rss_mb']:.0f} vs {p['peak_rss_mb']:.0f} MiB; network "
          f"{o['net_gflops']:.0f} vs {p['net_gflops']:.0f} GFLOP/s (matmul peak fp32 "
          f"{report['matmul_gflops']['float32']:.0f}, bf16 {report['matmul_gflops']['bfloat16']:.0f}); "
          f"AP@0.5 ours vs peer {report.get('ap_ours_vs_peer', ['n/a'])[0]} ({o['n_masks']} vs {p['n_masks']} masks); "
          f"flows max |diff| {report['max_abs_diff']}; load {report['load_average_end']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

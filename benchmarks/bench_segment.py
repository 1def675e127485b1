"""End-to-end segmentation of a 2048x2048 image: our ``segment`` against Cellpose 3.1.1.3 ``eval``.

Input: a 2048x2048 mosaic of the dsb2018 test-split fluorescence images (grayscale = mean of
R, G, B; ``_peer.mosaic``). Both sides use the same weights, the shared checkpoint
``../shared/models/cellpose3_dsb2018_nuclei.pth``, with ``diameter=None`` (the model's own
scale, diam_mean / diam_labels), and run in their own fresh process on 2 threads (so peak RSS,
``resource.getrusage``, is each side's own): ours through this file's ``--worker`` mode, the
peer through ``peer_side.py segment`` in ``.peer_venv``. Each process segments a 256x256
image first (numba compilation, first-call costs), then the timed 2048x2048 call. Ours runs
twice: with its default options (Cellpose's tiling; ``precision="auto"``, which is bfloat16
autocast on a CPU with native bfloat16, float32 on others) and with ``precision="float32"``
(the peer's arithmetic). The 2 cores are shared, so the sides alternate in ABBA order over ``BENCH_ROUNDS`` (2) rounds and
each side's best run counts (wall time; for CPU time, user + system over all threads, the
least of its runs).

Rows: seconds per megapixel of image; the network's achieved GFLOP/s (FLOPs of one 224x224
pass of the full-width net counted with torch's ``FlopCounterMode``, scaled by the pixels
that went through the network, over the time spent inside the network); peak RSS; the fp32
matmul (2048^2) peak of each environment on 2 threads, to read the GFLOP/s against (a
bfloat16 network can pass it: its multiply-adds run at twice the fp32 rate). AP@0.5
(and 0.75, 0.9) of our masks against the peer's is logged.
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
from _common import Row, matmul_gflops, shared_data  # noqa: E402
from _peer import (  # noqa: E402
    THREADS,
    checkpoint,
    mosaic,
    our_python,
    peer_python,
    read_gray,
    run_peer,
    run_worker,
    test_fluo_ids,
)

log = logging.getLogger("benchmarks")
SIZE = 2048
TILE = 224
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))


def flops_per_tile(weights: Path) -> float:
    """FLOPs of one forward pass of the checkpoint's network on a 1 x nchan x 224 x 224 tile."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from cellseg_bridge.nn import load_checkpoint

    net, _ = load_checkpoint(weights)
    x = torch.zeros(1, net.nchan, TILE, TILE)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(x)
    return float(counter.get_total_flops())


def _worker(args: argparse.Namespace) -> dict:
    """Our side, in its own process: time ``segment`` with the network instrumented."""
    import torch

    torch.set_num_threads(THREADS)
    from cellseg_bridge.nn.precision import autocast_dtype
    from cellseg_bridge.nn.net import CellposeUNet
    from cellseg_bridge.segmentation.pipeline import segment

    net_stats = {"pixels": 0, "seconds": 0.0, "calls": 0}
    encode, decode = CellposeUNet.encode, CellposeUNet.decode

    def timed_encode(self, x):
        t0 = time.perf_counter()
        out = encode(self, x)
        net_stats["seconds"] += time.perf_counter() - t0
        net_stats["pixels"] += int(x.shape[0] * x.shape[-2] * x.shape[-1])
        net_stats["calls"] += 1
        return out

    def timed_decode(self, features, style):
        t0 = time.perf_counter()
        out = decode(self, features, style)
        net_stats["seconds"] += time.perf_counter() - t0
        return out

    CellposeUNet.encode, CellposeUNet.decode = timed_encode, timed_decode
    kwargs = {"model": args.checkpoint, "axes": "YX", "channel": 0, "diameter": None}
    if args.tile_size is not None:
        kwargs["tile_size"] = args.tile_size
    if args.precision is not None:
        kwargs["precision"] = args.precision
    if args.warmup:
        segment(np.load(args.warmup), **kwargs)
    net_stats.update(pixels=0, seconds=0.0, calls=0)
    img = np.load(args.image)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    peak_before = matmul_gflops()
    cpu0, t0 = _cpu_s(), time.perf_counter()
    result = segment(img, **kwargs)
    seconds, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    masks = np.asarray(result.labels)[0, 0]
    np.save(Path(args.out) / "masks.npy", masks.astype(np.uint32))
    return {"seconds": seconds, "cpu_seconds": cpu, "n_masks": int(masks.max()), "net": net_stats,
            "rss_before_mb": rss_before, "peak_rss_mb": peak, "matmul_gflops": max(peak_before, matmul_gflops()),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "dtype": str(autocast_dtype(kwargs.get("precision", "auto"), torch.device("cpu")) or torch.float32)}


def _cpu_s() -> float:
    """User + system CPU seconds of this process (all threads) so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run() -> list[Row]:
    """Segment the 2048^2 mosaic with ours and the peer; rows for speed, GFLOP/s, memory."""
    from cellseg_bridge.core.metrics import average_precision

    shared = shared_data()
    if shared is None:
        log.warning("../shared/data not found: segment benchmark skipped")
        return []
    weights = checkpoint(shared)
    if weights is None:
        return []
    try:
        import cellseg_bridge.segmentation.pipeline  # noqa: F401
    except ImportError as exc:
        log.warning("cellseg_bridge.segmentation.pipeline not importable (%s): segment benchmark skipped", exc)
        return []
    img = mosaic(shared, SIZE)
    small = next(i for i in test_fluo_ids(shared) if read_gray(shared, i).shape == (256, 256))
    mp = img.size / 1e6
    have_peer = peer_python() is not None
    # Sides: ours with its default options, ours in float32, the peer.
    # ABBA order over ROUNDS rounds, best of each side: the 2 cores are shared, load drifts.
    sides = ["ours", "ours_fp32", "peer"] if have_peer else ["ours", "ours_fp32"]
    order = [x for r in range(ROUNDS) for x in (sides if r % 2 == 0 else sides[::-1])]
    if not have_peer:
        order = sides
    runs: dict[str, list[dict]] = {x: [] for x in sides}
    masks: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        np.save(tmp / "image.npy", img)
        np.save(tmp / "warmup.npy", read_gray(shared, small))
        common = [str(tmp / "image.npy"), str(weights), str(tmp), "--warmup", str(tmp / "warmup.npy")]
        for side in order:
            if side == "peer":
                report = run_peer(["segment", *common])
            else:
                extra = ["--precision", "float32"] if side == "ours_fp32" else []
                report = run_worker([our_python(), str(Path(__file__).resolve()), "--worker", *common, *extra])
            runs[side].append(report)
            masks[side] = np.load(tmp / "masks.npy")
            log.info("%s: %.2f s wall, %.2f s CPU, matmul peak %.0f GFLOP/s", side, report["seconds"],
                     report["cpu_seconds"], report["matmul_gflops"])
    flops = flops_per_tile(weights)
    log.info("network: %.2f GFLOP per %dx%d tile (FlopCounterMode)", flops / 1e9, TILE, TILE)
    best = {side: min(r, key=lambda x: x["seconds"]) for side, r in runs.items()}
    cpu = {side: min(x["cpu_seconds"] for x in r) for side, r in runs.items()}
    names = {"ours": f"ours (default options: {best['ours'].get('dtype', '?')})", "ours_fp32": "ours (float32)",
             "peer": "cellpose 3.1.1.3"}
    for side in sides:
        _log_side(names[side], best[side], mp, flops)
    if not have_peer:
        return []
    peer = best["peer"]
    for side in ("ours", "ours_fp32"):
        ap, tp, fp, fn = average_precision(masks["peer"], masks[side], (0.5, 0.75, 0.9))
        log.info("masks of %s: %d, peer %d; AP@0.5/0.75/0.9 ours vs peer %.4f/%.4f/%.4f (tp %d fp %d fn %d at "
                 "0.5); identical %s; %s", names[side], int(masks[side].max()), int(masks["peer"].max()), *ap,
                 tp[0], fp[0], fn[0], bool(np.array_equal(masks[side], masks["peer"])),
                 _difference(masks[side], masks["peer"]))

    def gflops(side: dict) -> float:
        return side["net"]["pixels"] / TILE**2 * flops / side["net"]["seconds"] / 1e9

    ref = "cellpose 3.1.1.3"
    rows = []
    for side, tag in (("ours", f", {best['ours'].get('dtype', '?')}"), ("ours_fp32", ", float32")):
        ours = best[side]
        rows += [
            Row(f"segment {SIZE}^2 wall (s per MP){tag}", ours["seconds"] / mp, peer["seconds"] / mp, "s/MP", ref),
            Row(f"segment {SIZE}^2 CPU (s per MP){tag}", cpu[side] / mp, cpu["peer"] / mp, "s/MP", ref),
            Row(f"network achieved GFLOP/s{tag}", gflops(ours), gflops(peer), "GF/s", ref, higher_is_better=True),
            Row(f"segment {SIZE}^2 peak RSS{tag}", ours["peak_rss_mb"], peer["peak_rss_mb"], "MiB", ref),
        ]
    rows.append(Row("fp32 matmul 2048^2 peak, 2 threads", max(b["matmul_gflops"] for k, b in best.items()
                                                            if k != "peer"), peer["matmul_gflops"], "GF/s",
                    "peer venv", higher_is_better=True))
    return rows


def _difference(ours: np.ndarray, theirs: np.ndarray) -> str:
    """Where two label images differ: pixels with another label, pixels fg/bg, same partition."""
    differ = int(np.count_nonzero(ours != theirs))
    fg = int(np.count_nonzero((ours > 0) != (theirs > 0)))
    key = ours.astype(np.int64).ravel() * (int(theirs.max()) + 1) + theirs.ravel()
    pairs = np.unique(key).size
    same_partition = pairs == np.unique(ours).size == np.unique(theirs).size
    return (f"{differ} pixels carry another label ({fg} differ as foreground/background); "
            f"same objects up to numbering: {same_partition}")


def _log_side(name: str, side: dict, mp: float, flops: float) -> None:
    net = side["net"]
    gf = net["pixels"] / TILE**2 * flops / net["seconds"] / 1e9 if net["seconds"] else float("nan")
    log.info("%s: %.2f s (%.2f s/MP), %d masks; network %.2f s over %d calls, %.2f MP (%.2fx the image), "
             "%.0f GFLOP/s vs matmul peak %.0f GFLOP/s (%.0f%%); peak RSS %.0f MiB (%.0f before the call)",
             name, side["seconds"], side["seconds"] / mp, side["n_masks"], net["seconds"], net["calls"],
             net["pixels"] / 1e6, net["pixels"] / 1e6 / mp, gf, side["matmul_gflops"],
             100 * gf / side["matmul_gflops"], side["peak_rss_mb"], side["rss_before_mb"])


def main() -> int:
    ap = argparse.ArgumentParser(description="our side of the segment benchmark (one process)")
    ap.add_argument("--worker", metavar="IMAGE_NPY", required=True)
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--warmup")
    ap.add_argument("--tile-size", type=int, default=None, help="segment(tile_size=...); default: ours")
    ap.add_argument("--precision", default=None, help="segment(precision=...); default: ours")
    args = ap.parse_args()
    args.image = args.worker
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(_worker(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

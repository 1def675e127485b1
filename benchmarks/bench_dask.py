"""Scale-out benchmarks: seams, memory, and 1 vs 2 Dask workers. One command, prints numbers.

    .venv/bin/python benchmarks/bench_dask.py                 # all three, the sizes of docs/scaling.md
    .venv/bin/python benchmarks/bench_dask.py seam --size 2048
    .venv/bin/python benchmarks/bench_dask.py memory --size 20000 --net tiny
    .venv/bin/python benchmarks/bench_dask.py scaling --files 16

- ``seam``: a ``size``² mosaic of the dsb2018 test-split fluorescence images
  (``_peer.mosaic``), segmented whole (``segment``) and in chunks
  (``segment_large``, cores of ``--chunk-size``) with the shared checkpoint;
  AP@0.5/0.75/0.9 of the chunked labels against the whole-image labels, cells
  that cross a core border, cells split, times.
- ``memory``: a ``size``² uint16 tiled TIFF (the 2048² mosaic repeated) is
  written, then segmented by ``segment_large`` (OME-Zarr + tiled OME-TIFF
  out) in a fresh process whose peak RSS is read from ``getrusage``. ``--net
  full`` uses the shared checkpoint; ``--net tiny`` a 4-level network of width 8
  (same pipeline, tiny activations) so that 20000² fits in minutes on a CPU.
  ``--diameter`` sets the scale (larger: fewer network pixels), ``--niter`` the
  dynamics steps (memory does not depend on it; time does).
- ``scaling``: ``--files`` 256² crops of dsb2018 images as TIFFs, ``cellseg``
  batch segmentation (labels only) on a LocalCluster of 1 worker, then of 2
  (1 thread each), wall time and speed-up.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import shared_data  # noqa: E402
from _peer import mosaic  # noqa: E402

log = logging.getLogger("bench_dask")
MODEL = "cellpose3_dsb2018_nuclei.pth"
DIAMETER = 24.0


def _model_path(shared: Path) -> Path:
    return shared.parent / "models" / MODEL


def bench_seam(shared: Path, size: int, chunk_size: int) -> dict:
    """Chunked vs whole-image labels on a size² mosaic of real nuclei."""
    from cellseg_bridge.core.chunk_merge import chunk_grid, split_cells
    from cellseg_bridge.core.metrics import average_precision
    from cellseg_bridge.distributed import segment_large
    from cellseg_bridge.segmentation.pipeline import load_model, segment

    image = mosaic(shared, size)
    model = load_model(_model_path(shared), "cpu")
    tic = time.perf_counter()
    whole = segment(image, model, diameter=DIAMETER).labels[0, 0].astype(np.uint32)
    t_whole = time.perf_counter() - tic
    tic = time.perf_counter()
    result = segment_large(image, model, chunk_size=chunk_size, diameter=DIAMETER)
    t_chunked = time.perf_counter() - tic
    chunked = result.labels
    touched: dict[int, int] = {}
    for c in chunk_grid(whole.shape, chunk_size, 0):
        ids = np.unique(whole[c.core])
        for v in ids[ids > 0]:
            touched[int(v)] = touched.get(int(v), 0) + 1
    crossing = sum(1 for n in touched.values() if n > 1)
    ap, tp, fp, fn = average_precision(whole.astype(np.int64), chunked.astype(np.int64), [0.5, 0.75, 0.9])
    return {
        "size": size, "chunk_size": chunk_size, "chunks": result.n_chunks, "overlap": result.overlap,
        "cells_whole": int(whole.max()), "cells_chunked": result.n_cells,
        "cells_crossing_core_borders": crossing, "cells_split": int(split_cells(whole, chunked).size),
        "ap": [round(float(a), 4) for a in ap], "tp_fp_fn@0.5": [int(tp[0]), int(fp[0]), int(fn[0])],
        "pixels_differing_label_assignment": int(((whole > 0) != (chunked > 0)).sum()),
        "duplicates_dropped": result.duplicates, "truncated": result.truncated,
        "seconds_whole": round(t_whole, 1), "seconds_chunked": round(t_chunked, 1),
    }


def _tiny_model(folder: Path) -> Path:
    import torch

    from cellseg_bridge.nn.checkpoint import save_checkpoint
    from cellseg_bridge.nn.net import CellposeUNet

    torch.manual_seed(0)
    net = CellposeUNet((1, 8, 16, 32), nout=3, diam_mean=17.0)
    with torch.no_grad():  # cell probability biased up: most pixels run through the dynamics (worst case)
        last = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        last.bias[2] += 1.0
    path = folder / "tiny.pth"
    save_checkpoint(net.eval(), path)
    return path


def _write_big_tiff(shared: Path, size: int, path: Path) -> None:
    """A size² uint16 tiled TIFF: the 2048² mosaic repeated, written tile by tile."""
    import tifffile

    base = mosaic(shared, 2048)
    base = (base / max(float(base.max()), 1.0) * 60000).astype(np.uint16)
    t = 512

    def tiles():
        for y in range(0, size, t):
            for x in range(0, size, t):
                tile = np.zeros((t, t), np.uint16)
                h, w = min(t, size - y), min(t, size - x)
                yy = (np.arange(y, y + h) % 2048)[:, None]
                xx = (np.arange(x, x + w) % 2048)[None, :]
                tile[:h, :w] = base[yy, xx]
                yield tile

    tifffile.imwrite(path, tiles(), shape=(size, size), dtype=np.uint16, tile=(t, t), bigtiff=True)


def _memory_child(args: argparse.Namespace) -> None:
    """Runs in a fresh process: segment_large on the big TIFF, print JSON with the peak RSS."""
    import torch

    from cellseg_bridge.distributed import segment_large

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    tic = time.perf_counter()
    result = segment_large(args.image, args.model, out=[out / "labels.ome.zarr", out / "labels.ome.tif"],
                           chunk_size=args.chunk_size, diameter=args.diameter, niter=args.niter, device="cpu",
                           flow_threshold=0.0 if args.tiny else 0.4, overwrite=True)
    seconds = time.perf_counter() - tic
    print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "seconds": seconds,
                      "cells": result.n_cells, "chunks": result.n_chunks, "timings": result.timings}))


def bench_memory(shared: Path, size: int, chunk_size: int, net: str, diameter: float, threads: int,
                 niter: int) -> dict:
    """Peak RSS of segment_large on a size² TIFF in a fresh process."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        tmp = Path(tmp)
        image = tmp / "big.tif"
        tic = time.perf_counter()
        _write_big_tiff(shared, size, image)
        t_write = time.perf_counter() - tic
        model = _tiny_model(tmp) if net == "tiny" else _model_path(shared)
        rescale = 17.0 / diameter
        cmd = [sys.executable, __file__, "_memory_child", "--image", str(image), "--model", str(model),
               "--out", str(tmp), "--chunk-size", str(chunk_size), "--diameter", str(diameter),
               "--niter", str(niter), "--threads", str(threads)] + (["--tiny"] if net == "tiny" else [])
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-3000:])
        data = json.loads(done.stdout.strip().splitlines()[-1])
        data.update(size=size, megapixels=size * size / 1e6, net=net, chunk_size=chunk_size, diameter=diameter,
                    rescale=round(rescale, 4), niter=niter, input_tiff_mib=round(image.stat().st_size / 2**20, 1),
                    seconds_writing_input=round(t_write, 1),
                    seconds_per_megapixel=round(data["seconds"] / (size * size / 1e6), 3))
        return data


def bench_scaling(shared: Path, n_files: int) -> dict:
    """Many files: 1 worker vs 2 workers (LocalCluster, 1 thread each), full-width net."""
    import tifffile

    from cellseg_bridge.batch.segment import segment_files
    from cellseg_bridge.distributed import dask_client

    img = mosaic(shared, 2048)
    out: dict = {"files": n_files}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        for k in range(n_files):
            y, x = divmod(k, 8)
            crop = img[256 * (y % 8): 256 * (y % 8) + 256, 256 * x: 256 * x + 256]
            tifffile.imwrite(tmp / "in" / f"f{k:03d}.tif", crop)
        for workers in (1, 2):
            with dask_client(workers=workers, threads_per_worker=1) as client:
                client.run(_warm, str(_model_path(shared)))  # model loaded, numba compiled: not timed
                tic = time.perf_counter()
                report = segment_files([tmp / "in"], tmp / f"out{workers}", client=client,
                                       model=str(_model_path(shared)), diameter=DIAMETER,
                                       outputs=("labels",), quiet=True, device="cpu")
                out[f"seconds_{workers}_worker"] = round(time.perf_counter() - tic, 2)
                assert report.ok, report.failed
    out["speedup"] = round(out["seconds_1_worker"] / out["seconds_2_worker"], 2)
    return out


def _warm(model: str) -> None:
    from cellseg_bridge.distributed.models import cached_model
    from cellseg_bridge.segmentation.pipeline import segment

    segment(np.random.default_rng(0).random((64, 64)).astype(np.float32), cached_model(model, "cpu"), diameter=DIAMETER)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", default="all", choices=["all", "seam", "memory", "scaling", "_memory_child"])
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--chunk-size", type=int, default=2048)
    parser.add_argument("--net", choices=["full", "tiny"], default="tiny")
    parser.add_argument("--diameter", type=float, default=None)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    # child-only arguments
    parser.add_argument("--image"), parser.add_argument("--model"), parser.add_argument("--out")
    parser.add_argument("--niter", type=int, default=200), parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.what == "_memory_child":
        _memory_child(args)
        return
    shared = shared_data()
    if shared is None or not _model_path(shared).exists():
        print("shared data / model not found: nothing to benchmark")
        return
    if args.what in ("all", "seam"):
        print("seam", json.dumps(bench_seam(shared, args.size or 8192, args.chunk_size)), flush=True)
    if args.what in ("all", "memory"):
        diameter = args.diameter or (68.0 if args.net == "tiny" else DIAMETER)
        print("memory", json.dumps(bench_memory(shared, args.size or 20000, args.chunk_size, args.net, diameter,
                                                args.threads, args.niter)), flush=True)
    if args.what in ("all", "scaling"):
        print("scaling", json.dumps(bench_scaling(shared, args.files)), flush=True)


if __name__ == "__main__":
    main()

"""Helpers for the benchmarks that run the peer (Cellpose 3.1.1.3) in the same run.

The peer lives in its own virtual environment (``.peer_venv``, made by
``bash benchmarks/peer_env.sh``) because it pins numpy < 2.1; it is driven through a
subprocess running ``benchmarks/peer_side.py``. Inputs and outputs travel as ``.npy`` files
in a temporary folder, timings and peak memory as JSON.

Inputs are mosaics of the dsb2018 test-split fluorescence images (``../shared/data``), read
in place: a shelf packing in id order, cropped at the canvas border, repeated if needed.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from _common import REPO

log = logging.getLogger("benchmarks")
PEER_SIDE = Path(__file__).resolve().parent / "peer_side.py"
CHECKPOINT_NAME = "cellpose3_dsb2018_nuclei.pth"
THREADS = 2


def thread_env() -> dict[str, str]:
    """The environment of a worker process: 2 threads for OpenMP, MKL and numba."""
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[key] = str(THREADS)
    return env


def peer_python() -> Path | None:
    """``.peer_venv/bin/python`` (or ``$PEER_VENV``), None with a hint when it is missing."""
    venv = Path(os.environ.get("PEER_VENV", REPO / ".peer_venv"))
    python = venv / "bin" / "python"
    if not python.exists():
        log.warning("peer environment not found at %s: the peer rows are skipped. Create it with "
                    "`bash benchmarks/peer_env.sh` (cellpose 3.1.1.3 + torch 2.13.0 CPU, ~2 min)", venv)
        return None
    return python


def checkpoint(shared: Path) -> Path | None:
    path = shared.parent / "models" / CHECKPOINT_NAME
    if not path.is_file():
        log.warning("checkpoint %s not found: segment benchmark skipped", path)
        return None
    return path


def run_peer(args: list[str], timeout: float = 1800) -> dict:
    """Run ``peer_side.py ARGS`` with the peer's interpreter; return the JSON it prints last."""
    python = peer_python()
    if python is None:
        raise FileNotFoundError("peer environment missing")
    return run_worker([str(python), str(PEER_SIDE), *args], timeout)


def run_worker(cmd: list[str], timeout: float = 1800) -> dict:
    """Run a worker command with 2 threads; its last stdout line is a JSON report."""
    proc = subprocess.run(cmd, env=thread_env(), capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def our_python() -> str:
    return sys.executable


# ----------------------------------------------------------------------------- inputs


def test_fluo_ids(shared: Path) -> list[str]:
    """Ids of the dsb2018 test-split fluorescence images, sorted."""
    with open(shared / "dsb2018" / "split.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return sorted(r["image_id"] for r in rows if r["split"] == "test" and r["kind"] == "fluo")


def read_gray(shared: Path, image_id: str) -> np.ndarray:
    """float32 grayscale = mean of R, G, B (how the shared checkpoint was trained and scored)."""
    import imageio.v3 as iio

    img = iio.imread(shared / "dsb2018" / "stage1_train" / image_id / "images" / f"{image_id}.png")
    if img.ndim == 2:
        return img.astype(np.float32)
    return img[..., :3].astype(np.float32).mean(axis=-1)


def read_truth(shared: Path, image_id: str, shape: tuple[int, ...]) -> np.ndarray:
    """Ground-truth labels 1..n from the one-PNG-per-nucleus ``masks/`` folder."""
    import imageio.v3 as iio

    labels = np.zeros(shape, np.int32)
    folder = shared / "dsb2018" / "stage1_train" / image_id / "masks"
    for i, path in enumerate(sorted(folder.glob("*.png")), start=1):
        labels[iio.imread(path) > 0] = i
    return labels


def _placements(shapes: list[tuple[int, int]], size: int) -> list[tuple[int, int, int, int, int]]:
    """Shelf packing of ``shapes`` (cycled) into ``size`` x ``size``: (index, y, x, h, w) crops."""
    out = []
    y = x = row_h = 0
    k = 0
    while y < size:
        i = k % len(shapes)
        h, w = shapes[i]
        if x > 0 and x + w > size:  # next shelf
            y, x, row_h = y + row_h, 0, 0
            if y >= size:
                break
        hh, ww = min(h, size - y), min(w, size - x)
        out.append((i, y, x, hh, ww))
        x += ww
        row_h = max(row_h, hh)
        if x >= size:
            y, x, row_h = y + row_h, 0, 0
        k += 1
    return out


def mosaic(shared: Path, size: int, *, labels: bool = False) -> np.ndarray:
    """A ``size`` x ``size`` mosaic of the dsb2018 test fluorescence images (or their labels).

    Images are packed tallest first (then by id) on shelves, cycling through the list.
    Labels are renumbered consecutively; nuclei cut by the canvas border stay (cropped).
    """
    ids = test_fluo_ids(shared)
    images = [read_gray(shared, i) for i in ids]
    order = sorted(range(len(ids)), key=lambda i: (-images[i].shape[0], ids[i]))  # tallest first
    ids, images = [ids[i] for i in order], [images[i] for i in order]
    canvas = np.zeros((size, size), np.int32 if labels else np.float32)
    offset = 0
    for i, y, x, h, w in _placements([im.shape for im in images], size):
        if labels:
            lab = read_truth(shared, ids[i], images[i].shape)[:h, :w]
            _, inv = np.unique(lab, return_inverse=True)
            inv = inv.reshape(lab.shape)
            canvas[y:y + h, x:x + w] = np.where(inv > 0, inv + offset, 0)
            offset += int(inv.max())
        else:
            canvas[y:y + h, x:x + w] = images[i][:h, :w]
    return canvas

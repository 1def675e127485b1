"""Make the peer's golden masks: Cellpose 3.1.1.3 on the dsb2018 test-split fluorescence images.

Run with the PEER's interpreter (``bash benchmarks/peer_env.sh`` creates it)::

    .peer_venv/bin/python benchmarks/peer_golden.py [--shared ../shared] [--out tests/data]

What it does, exactly as ``../shared/models/README.md`` says the checkpoint was scored:
``CellposeModel(pretrained_model=cellpose3_dsb2018_nuclei.pth, gpu=False)
.eval(img, channels=[0, 0], diameter=None)`` on every image whose ``split.tsv`` row says
``kind=fluo, split=test`` (24 images), with ``img`` = mean of the PNG's R, G, B channels
(float32). Torch, OpenMP and numba are limited to 2 threads.

Writes

* ``peer_golden_dsb2018.npz`` (compressed): ``ids`` (image ids, sorted), ``shapes``,
  ``image_sha256`` (of the float32 grayscale image, so a test can check it reads the same
  pixels), ``masks_<id>`` (uint16, the peer's masks) for all 24 images, and for 2 images
  (``flow_ids``) the peer's raw network output as it entered the dynamics, rounded to
  float16 (``dP_<id>`` = flows x 5, shape (2, Y, X); ``cellprob_<id>``), plus
  ``dyn_masks_<id>``: the peer's mask reconstruction re-run on exactly those float16 values
  (so a dynamics-only comparison has an exact target), and ``niter``.
* ``peer_golden_dsb2018.json``: versions, checkpoint checksum, every setting, per-image
  mask counts and the peer's AP against the dsb2018 ground truth (a check that the set-up
  reproduces the README's scores).

The files hold only what the peer produced (masks, flows), never copies of the images.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")
os.environ.setdefault("NUMBA_NUM_THREADS", "2")

import argparse  # noqa: E402
import csv  # noqa: E402
import hashlib  # noqa: E402
import importlib.metadata as md  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = "cellpose3_dsb2018_nuclei.pth"
# The two images whose raw network output is kept (small, and many nuclei: 125 and 57).
FLOW_IDS = (
    "0402a81e75262469925ea893b6706183832e85324f7b1e08e634129f5d522cdd",
    "693bc64581275f04fc456da74f031d583733360a1f6032fa38b3fbf592ff4352",
)
EVAL_KWARGS = {"channels": [0, 0], "diameter": None}


def test_fluo_ids(data: Path) -> list[str]:
    """Ids of the dsb2018 test-split fluorescence images, sorted."""
    with open(data / "dsb2018" / "split.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return sorted(r["image_id"] for r in rows if r["split"] == "test" and r["kind"] == "fluo")


def read_gray(data: Path, image_id: str) -> np.ndarray:
    """The image as float32 grayscale = mean of R, G, B (the checkpoint's training input)."""
    path = data / "dsb2018" / "stage1_train" / image_id / "images" / f"{image_id}.png"
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FileNotFoundError(path)
    if img.ndim == 2:
        return img.astype(np.float32)
    return img[..., :3].astype(np.float32).mean(axis=-1)


def read_truth(data: Path, image_id: str, shape: tuple[int, int]) -> np.ndarray:
    """Ground-truth labels from the one-PNG-per-nucleus ``masks/`` folder."""
    labels = np.zeros(shape, np.uint16)
    folder = data / "dsb2018" / "stage1_train" / image_id / "masks"
    for i, path in enumerate(sorted(folder.glob("*.png")), start=1):
        labels[cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 0] = i
    return labels


def sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("CELLSEG_SHARED", REPO.parent / "shared")))
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "data")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(2)

    from cellpose import dynamics, metrics, models

    data = args.shared / "data"
    ckpt = args.shared / "models" / CHECKPOINT
    model = models.CellposeModel(pretrained_model=str(ckpt), gpu=False)
    diam_mean, diam_labels = float(model.diam_mean), float(model.diam_labels)
    rescale = diam_mean / diam_labels
    niter = 200.0 / rescale  # what eval(resample=True) passes on; follow_flows takes uint32 of it

    ids = test_fluo_ids(data)
    out: dict[str, np.ndarray] = {}
    per_image = {}
    shapes, hashes = [], []
    t_total = 0.0
    for image_id in ids:
        img = read_gray(data, image_id)
        t0 = time.perf_counter()
        masks, flows, _styles = model.eval(img, **EVAL_KWARGS)
        dt = time.perf_counter() - t0
        t_total += dt
        masks = masks.astype(np.uint16)
        out[f"masks_{image_id}"] = masks
        shapes.append(img.shape)
        hashes.append(sha256(img))
        truth = read_truth(data, image_id, img.shape)
        ap_gt = metrics.average_precision([truth], [masks], threshold=[0.5, 0.75, 0.9])[0][0]
        per_image[image_id] = {"shape": list(img.shape), "n_masks": int(masks.max()), "eval_s": round(dt, 3),
                               "ap_vs_truth": [round(float(v), 4) for v in ap_gt]}
        if image_id in FLOW_IDS:
            dP, cellprob = flows[1], flows[2]
            kw = {"niter": niter, "cellprob_threshold": 0.0, "flow_threshold": 0.4, "interp": True,
                  "resize": None, "min_size": 15, "max_size_fraction": 0.4}
            again = dynamics.resize_and_compute_masks(dP.astype(np.float32), cellprob.astype(np.float32), **kw)
            if not np.array_equal(again, masks):
                raise RuntimeError(f"{image_id}: the peer's dynamics on its own flows differ from eval")
            dP16, cp16 = dP.astype(np.float16), cellprob.astype(np.float16)
            dyn = dynamics.resize_and_compute_masks(dP16.astype(np.float32), cp16.astype(np.float32), **kw)
            out[f"dP_{image_id}"] = dP16
            out[f"cellprob_{image_id}"] = cp16
            out[f"dyn_masks_{image_id}"] = dyn.astype(np.uint16)
            per_image[image_id]["float16_flows_masks_equal_eval"] = bool(np.array_equal(dyn, masks))
        print(f"{image_id[:12]} {img.shape} {int(masks.max()):4d} masks  {dt:6.2f} s  AP@0.5 vs truth "
              f"{ap_gt[0]:.3f}", flush=True)

    out["ids"] = np.array(ids)
    out["shapes"] = np.array(shapes, np.int64)
    out["image_sha256"] = np.array(hashes)
    out["flow_ids"] = np.array(FLOW_IDS)
    out["niter"] = np.array(int(np.uint32(niter)))
    args.out.mkdir(parents=True, exist_ok=True)
    npz = args.out / "peer_golden_dsb2018.npz"
    np.savez_compressed(npz, **out)

    aps = np.array([v["ap_vs_truth"] for v in per_image.values()])
    meta = {
        "peer": {"cellpose": md.version("cellpose"), "torch": torch.__version__, "numpy": np.__version__,
                 "numba": md.version("numba"), "opencv": cv2.__version__, "python": platform.python_version()},
        "checkpoint": {"file": CHECKPOINT, "sha256": hashlib.sha256(ckpt.read_bytes()).hexdigest(),
                       "diam_mean": diam_mean, "diam_labels": diam_labels},
        "call": "CellposeModel(pretrained_model=<checkpoint>, gpu=False).eval(img, channels=[0, 0], diameter=None)",
        "effective_settings": {
            "rescale": rescale, "network_input_scale": "diam_mean / diam_labels", "resample": True,
            "niter_passed": niter, "niter_used": int(np.uint32(niter)), "flow_threshold": 0.4,
            "cellprob_threshold": 0.0, "min_size": 15, "max_size_fraction": 0.4, "bsize": 224,
            "tile_overlap": 0.1, "augment": False, "batch_size": 8, "normalize": "1st-99th percentile",
            "interp": True, "gpu": False, "threads": 2},
        "images": {"dataset": "dsb2018 stage1_train (BBBC038, fixed masks)", "selection":
                   "split.tsv rows with split=test and kind=fluo (all 24), sorted by id",
                   "preprocessing": "PNG -> float32, mean of R, G, B (alpha dropped)",
                   "image_sha256": "sha256 of the float32 grayscale array bytes (C order)"},
        "flow_images": {"ids": list(FLOW_IDS), "what": "dP (= flows x 5, (2, Y, X)) and cellprob as they entered "
                        "the peer's dynamics (after resampling to image size), float16; dyn_masks_<id> = the peer's "
                        "resize_and_compute_masks on those float16 values (niter, thresholds as above)"},
        "peer_ap_vs_truth_mean": {"0.5": round(float(aps[:, 0].mean()), 4), "0.75": round(float(aps[:, 1].mean()), 4),
                                  "0.9": round(float(aps[:, 2].mean()), 4)},
        "eval_seconds_total": round(t_total, 2),
        "per_image": per_image,
        "made_by": "benchmarks/peer_golden.py",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    (args.out / "peer_golden_dsb2018.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {npz} ({npz.stat().st_size / 1e6:.2f} MB); peer AP vs truth (mean) "
          f"{meta['peer_ap_vs_truth_mean']}; eval {t_total:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

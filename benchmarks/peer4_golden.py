"""Make golden data of Cellpose 4.2.1.1 (Cellpose-SAM) with a small, seeded random network.

Run with the Cellpose 4 PEER's interpreter (``bash benchmarks/peer4_env.sh`` creates it)::

    .peer4_venv/bin/python benchmarks/peer4_golden.py [--shared ../shared] [--out tests/data]

What it does:

1. builds Cellpose 4's own ``CPSAM`` network with a small SAM encoder (``peer4_net.SMALL``:
   3 blocks, 48 wide, neck 32; every adaptation step by Cellpose's code) and seeded random
   weights, and saves it with ``torch.save(state_dict)`` as ``peer4_golden_cpsam_small.pth``;
2. loads that file with ``CellposeModel(pretrained_model=..., use_bfloat16=False, gpu=False)``
   (float32) and runs ``eval`` on real dsb2018 test-split fluorescence images from
   ``../shared/data``, as ``CASES`` says: the PNG's R, G, B as 3 channels (``channel_axis=-1``)
   or its first channel alone (Cellpose 4 then uses the first input-channel weights only),
   with ``diameter`` None (no rescaling), 15 (rescale 2: the scale the readout was fitted at)
   or 20, and ``flow_threshold`` 0.8 (the fitted readout's flows are crude);
3. writes ``peer4_golden_cpsam.npz``: ``masks_<case>`` (uint16) for every case and, for the
   cases in ``FLOW_CASES``, ``dP_<case>`` (flows x 5, (2, Y, X)) and ``cellprob_<case>`` in
   float32 as they entered the peer's dynamics (``FLOW_WINDOW``: a window of them); and ``peer4_golden_cpsam.json`` (versions,
   settings, checksums, mask counts).

Threads: 2 (torch, OpenMP, numba). The files hold the peer's outputs only, never images.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")
os.environ.setdefault("NUMBA_NUM_THREADS", "2")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import importlib.metadata as md  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import peer4_net  # noqa: E402  (puts the torchvision stub on sys.path)

REPO = Path(__file__).resolve().parents[1]
SEED = 16
CHECKPOINT = "peer4_golden_cpsam_small.pth"
#: case name -> (dsb2018 image id, channels "rgb" or "gray", diameter)
CASES = {
    "rgb_256_d15": ("05040e2e959c3f5632558fc9683fec88f0010026c555b499066346f67fdd0e13", "rgb", 15.0),
    "gray_256_d15": ("693bc64581275f04fc456da74f031d583733360a1f6032fa38b3fbf592ff4352", "gray", 15.0),
    "rgb_260x347_d15": ("0402a81e75262469925ea893b6706183832e85324f7b1e08e634129f5d522cdd", "rgb", 15.0),
    "rgb_360": ("2869fad54664677e81bacbf00c2256e89a7b90b69d9688c9342e2c736ff5421c", "rgb", None),
    "gray_512x640_d20": ("20e209f6ffa120a72712e1b4c1d3e24d1339227e2936abd4bbd49a636fada423", "gray", 20.0),
}
FLOW_CASES = ("rgb_256_d15", "gray_256_d15")
#: Flows kept for a window only (y0, y1, x0, x1), to keep the committed files small.
FLOW_WINDOW = {"gray_256_d15": (64, 192, 64, 192)}
FIT_IMAGES = 6
#: The readout is a crude linear fit: its flows fail Cellpose's default QC (0.4) on most cells.
FLOW_THRESHOLD = 0.8


def find_id(data: Path, prefix: str) -> str:
    """The full dsb2018 id starting with ``prefix`` (the table may hold a prefix only)."""
    hits = sorted(p.name for p in (data / "dsb2018" / "stage1_train").glob(prefix[:12] + "*"))
    if len(hits) != 1:
        raise FileNotFoundError(f"dsb2018 image {prefix[:12]}...: {len(hits)} matches")
    return hits[0]


def read_image(data: Path, image_id: str, mode: str) -> np.ndarray:
    """float32 (Y, X, 3) R, G, B for ``"rgb"``, (Y, X) first channel for ``"gray"``."""
    import cv2

    path = data / "dsb2018" / "stage1_train" / image_id / "images" / f"{image_id}.png"
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FileNotFoundError(path)
    rgb = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB).astype(np.float32)
    return rgb if mode == "rgb" else np.ascontiguousarray(rgb[..., 0])


def fit_tiles(data: Path, n: int = FIT_IMAGES, scale: int = 2) -> tuple[list, list, list]:
    """The readout's fitting data: the first ``n`` 256 x 256 dsb2018 *training*-split
    fluorescence images (by id), upsampled ``scale`` x (labels by nearest neighbour), top-left 256 x 256
    crop, normalised by Cellpose 4 (channels first), each as R, G, B and as its first channel
    alone; their labels; their ids."""
    import csv

    import cv2
    from cellpose import transforms

    with open(data / "dsb2018" / "split.tsv", newline="") as fh:
        rows = sorted((r["image_id"] for r in csv.DictReader(fh, delimiter="\t")
                       if r["split"] == "train" and r["kind"] == "fluo"))
    tiles, labels, ids = [], [], []
    for image_id in rows:
        img = read_image(data, image_id, "rgb")
        if img.shape[:2] != (256, 256):
            continue
        lab = np.zeros(img.shape[:2], np.int32)
        for i, path in enumerate(sorted((data / "dsb2018" / "stage1_train" / image_id / "masks").glob("*.png")), 1):
            lab[cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 0] = i
        # at the scale the cases run (diameter ~15 -> rescale 2): nuclei span several tokens
        side = 256 * scale
        img = cv2.resize(img, (side, side), interpolation=cv2.INTER_LINEAR)[:256, :256]
        lab = cv2.resize(lab, (side, side), interpolation=cv2.INTER_NEAREST)[:256, :256]
        lab = np.unique(lab, return_inverse=True)[1].reshape(lab.shape).astype(np.int32)  # 1..n again
        norm = transforms.normalize_img(img, axis=-1).transpose(2, 0, 1)
        tiles += [norm, norm[:1]]  # as 3 channels and as one (Cellpose 4 then uses 1 channel's weights)
        labels += [lab, lab]
        ids.append(image_id)
        if len(ids) == n:
            break
    return tiles, labels, ids


def sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("CELLSEG_SHARED", REPO.parent / "shared")))
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "data")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(2)

    from cellpose import models

    data = args.shared / "data"
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt = args.out / CHECKPOINT
    net = peer4_net.build(SEED, small=True)
    tiles, labels, fit_ids = fit_tiles(data)
    peer4_net.fit_readout(net, tiles, labels)
    # clone: CPSAM's patch and position embeddings are strided views whose whole storage
    # torch.save would otherwise write
    torch.save({k: v.clone() for k, v in net.state_dict().items()}, ckpt)
    with peer4_net.small_encoder_registry():
        model = models.CellposeModel(pretrained_model=str(ckpt), gpu=False, use_bfloat16=False)
    loaded = model.net.state_dict()
    saved = torch.load(ckpt, weights_only=True)
    if set(loaded) != set(saved) or any(not torch.equal(loaded[k], saved[k]) for k in saved):
        raise RuntimeError("CellposeModel did not load the saved weights exactly")

    out: dict[str, np.ndarray] = {}
    per_case = {}
    for case, (prefix, mode, diameter) in CASES.items():
        image_id = find_id(data, prefix)
        img = read_image(data, image_id, mode)
        kwargs = {"diameter": diameter, "channel_axis": -1 if mode == "rgb" else None,
                  "flow_threshold": FLOW_THRESHOLD}
        img_hash = sha256(img)
        t0 = time.perf_counter()
        masks, flows, _styles = model.eval(img.copy(), **kwargs)  # a copy: eval may change its input
        dt = time.perf_counter() - t0
        out[f"masks_{case}"] = masks.astype(np.uint16)
        if case in FLOW_CASES:
            y0, y1, x0, x1 = FLOW_WINDOW.get(case, (0, img.shape[0], 0, img.shape[1]))
            out[f"dP_{case}"] = np.asarray(flows[1], np.float32)[:, y0:y1, x0:x1]
            out[f"cellprob_{case}"] = np.asarray(flows[2], np.float32)[y0:y1, x0:x1]
            per_case[case] = {"flow_window": [y0, y1, x0, x1]}
        per_case[case] = {**per_case.get(case, {}), "image_id": image_id, "channels": mode, "diameter": diameter,
                          "shape": list(img.shape), "image_sha256": img_hash,
                          "n_masks": int(masks.max()), "eval_s": round(dt, 3), "eval_kwargs": kwargs}
        print(f"{case:18s} {img.shape} {int(masks.max()):4d} masks {dt:6.2f} s", flush=True)

    npz = args.out / "peer4_golden_cpsam.npz"
    np.savez_compressed(npz, **out)
    meta = {
        "peer": {"cellpose": md.version("cellpose"), "torch": torch.__version__, "numpy": np.__version__,
                 "segment_anything": md.version("segment_anything"), "python": platform.python_version(),
                 "torchvision": "stub (benchmarks/peer4_stub; not used by the network)"},
        "network": {"builder": "cellpose.vit.CPSAM with segment_anything ImageEncoderViT " + json.dumps(
                        {k: list(v) if isinstance(v, tuple) else v for k, v in peer4_net.SMALL.items()}),
                    "weights": "peer4_net.randomise, seed %d; readout (out) by peer4_net.fit_readout on "
                               "dsb2018 training-split images %s" % (SEED, [i[:12] for i in fit_ids]),
                    "file": CHECKPOINT,
                    "sha256": hashlib.sha256(ckpt.read_bytes()).hexdigest()},
        "call": "CellposeModel(pretrained_model=<file>, gpu=False, use_bfloat16=False).eval(img, diameter=d, "
                "channel_axis=-1 for rgb / None for gray)",
        "effective_settings": {"bsize": 256, "tile_overlap": 0.1, "augment": False, "batch_size": 8,
                               "normalize": "1st-99th percentile per channel", "flow_threshold": FLOW_THRESHOLD,
                               "cellprob_threshold": 0.0, "min_size": 15, "max_size_fraction": 0.4,
                               "rescale": "30 / diameter, 1 when None", "niter": "int(200 / rescale)",
                               "dtype": "float32", "threads": 2},
        "flow_cases": list(FLOW_CASES),
        "cases": per_case,
        "made_by": "benchmarks/peer4_golden.py",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    (args.out / "peer4_golden_cpsam.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {npz} ({npz.stat().st_size / 1e6:.2f} MB), {ckpt} ({ckpt.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

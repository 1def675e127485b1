"""Label efficiency: how many annotated ROIs of a new modality does fine-tuning need?

The experiment of issue 4, on the dsb2018 data of ``<shared>/data/dsb2018``:

1. **pretrain** a network on the fluorescence TRAIN images only (``generalist``
   recipe), or take one given with ``--pretrained PATH`` (it must not have seen
   colour-tissue images, or the experiment means nothing);
2. build **ROI subsets** of the colour-tissue TRAIN images holding 50, 100, 200
   and 400 annotated nuclei (:func:`roi_subset`, rule below);
3. on each subset, **fine-tune** the pretrained network and **train from
   scratch** (same architecture, ``hitl`` recipe for both, same epochs, same seed);
4. score **AP@0.5/0.75/0.9** (``TP / (TP + FP + FN)``, mean over images) on the
   colour-tissue TEST images (8) for the pretrained network alone, every
   fine-tuned and every scratch network;
5. write ``scores.csv`` (one row per model), ``label_efficiency.md`` (the table)
   and ``subsets.json`` (which images and crops each subset holds) to ``--out``.

Images are grayscale as the mean of their RGB channels (alpha dropped), as in
``cellseg_bridge.datasets.dsb2018``; the test images are segmented at their true median
diameter by default (``--eval-diameter true``: the comparison is about the
network, not the size estimate) or at the model's own estimate (``model``).

ROI subset rule (:func:`roi_subset`): the colour TRAIN images are put in a fixed
order (a permutation drawn with the replicate's seed); whole images are taken in
that order while the ROIs they hold fit in the target count. The next image is
cut to a strip along one of its sides (top, bottom, left, right: the first that
holds exactly the remaining count; if ties make that impossible, the strip holding
the most, and the rest from the next image) that holds the ROIs whose pixels come
nearest to that side; ROIs that reach into the strip are kept (cut at the strip's edge,
like a ROI cut by any crop border) and counted; everything outside the strip is
not used at all. So every counted ROI is annotated and every pixel the trainer
sees carries its true label. Subsets of one seed are nested (the 50-ROI subset
is part of the 100-ROI one, ...). Cellpose's own HITL trains on whole corrected
images; the strip is the closest honest way to stop at an exact ROI count.

Every training run lives in its own folder (``pretrained/``,
``finetune_r{N}_s{SEED}/``, ``scratch_r{N}_s{SEED}/``); a rerun skips runs whose
``weights.pth`` exists and resumes runs that left a ``checkpoint/``. Test scores
are cached in the run folders (``test_scores_<mode>.json``; ``pretrained_given/`` for
``--pretrained``), and recomputed when the weights are newer.

Usage::

    python benchmarks/label_efficiency.py --out /tmp/le_quick --quick        # smoke: minutes
    python benchmarks/label_efficiency.py --out le_full                      # full size: hours on a CPU
    python benchmarks/label_efficiency.py --out le_full --seeds 0 1 2 --pretrained my_fluo/weights.pth
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO))

from _common import shared_data  # noqa: E402

from cellseg_bridge.io.atomic import atomic_output  # noqa: E402

log = logging.getLogger("benchmarks.label_efficiency")

#: Sides a partial image may be cut from, tried in this order.
SIDES = ("top", "bottom", "left", "right")
#: IoU thresholds of the scores.
THRESHOLDS = (0.5, 0.75, 0.9)


# --------------------------------------------------------------------------- ROI subsets (pure)


@dataclass(frozen=True)
class SubsetPart:
    """One image of a ROI subset.

    Attributes
    ----------
    index : int
        Index of the image in the list given to :func:`roi_subset`.
    side : str or None
        None: the whole image; else the side (``top``, ``bottom``, ``left``,
        ``right``) the strip is cut from.
    depth : int
        Strip thickness in pixels (rows for top/bottom, columns for left/right);
        0 for a whole image.
    n_rois : int
        ROIs of this image in the subset (including ROIs cut by the strip edge).
    """

    index: int
    side: str | None
    depth: int
    n_rois: int


def _near_edge(labels: np.ndarray, side: str) -> np.ndarray:
    """Per ROI, the distance (pixels) from ``side`` to the ROI's nearest pixel."""
    from scipy import ndimage

    h, w = labels.shape
    boxes = [b for b in ndimage.find_objects(labels) if b is not None]
    if side == "top":
        return np.array([b[0].start for b in boxes], np.int64)
    if side == "bottom":
        return np.array([h - b[0].stop for b in boxes], np.int64)
    if side == "left":
        return np.array([b[1].start for b in boxes], np.int64)
    if side == "right":
        return np.array([w - b[1].stop for b in boxes], np.int64)
    raise ValueError(f"unknown side {side!r}")


def _strip(labels: np.ndarray, want: int) -> tuple[str, int, int]:
    """The strip of ``labels`` holding ``want`` ROIs (or the fewest short of it): side, depth, count."""
    best: tuple[str, int, int] | None = None
    for side in SIDES:
        near = np.sort(_near_edge(labels, side))
        depth = int(near[want])  # the (want+1)-th nearest ROI starts here: the strip stops before it
        count = int(np.count_nonzero(near < depth))
        if count == want:
            return side, depth, count
        if best is None or count > best[2]:
            best = (side, depth, count)
    assert best is not None
    return best


def roi_subset(labels: Sequence[np.ndarray], n_rois: int, order: Sequence[int]) -> list[SubsetPart]:
    """Choose whole images, then one strip of an image, holding ``n_rois`` ROIs.

    Parameters
    ----------
    labels : sequence of 2D ndarray of int
        Label images (0 = background) of the candidate images.
    n_rois : int
        ROIs wanted (>= 1).
    order : sequence of int
        The order in which images are taken (a permutation of ``range(len(labels))``).

    Returns
    -------
    list of SubsetPart
        Whole images, then a strip; their ``n_rois`` sum to ``n_rois`` unless
        the images hold fewer ROIs in all. When ties in the ROIs' distances to
        every side of an image make the exact count impossible there, its strip
        takes as many as it can and the rest comes from the next image(s).

    Raises
    ------
    ValueError
        ``n_rois < 1`` or ``order`` not a permutation of the image indices.
    """
    if n_rois < 1:
        raise ValueError(f"n_rois must be >= 1, got {n_rois}")
    if sorted(order) != list(range(len(labels))):
        raise ValueError("order must be a permutation of the image indices")
    parts: list[SubsetPart] = []
    left = n_rois
    for i in order:
        lab = np.asarray(labels[i])
        n = int(np.count_nonzero(np.bincount(lab.ravel().astype(np.int64))[1:]))
        if n == 0:
            continue
        if n <= left:
            parts.append(SubsetPart(int(i), None, 0, n))
            left -= n
        else:
            side, depth, count = _strip(lab, left)
            if count > 0:
                parts.append(SubsetPart(int(i), side, depth, count))
                left -= count
            if left == 0:
                break
        if left == 0:
            break
    return parts


def crop_part(image: np.ndarray, labels: np.ndarray, part: SubsetPart) -> tuple[np.ndarray, np.ndarray]:
    """The image and labels of one :class:`SubsetPart` (a view; the whole image for ``side=None``)."""
    if part.side is None:
        return image, labels
    d = part.depth
    sl = {
        "top": np.s_[:d, :],
        "bottom": np.s_[labels.shape[0] - d :, :],
        "left": np.s_[:, :d],
        "right": np.s_[:, labels.shape[1] - d :],
    }[part.side]
    return image[sl], labels[sl]


# --------------------------------------------------------------------------- data


def load_split(root: Path, kind: str, split: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(image_id, grayscale image, labels)`` of one kind (fluo/color/bf_gray) and split."""
    from cellseg_bridge.datasets import dsb2018

    ids = dsb2018.select(dsb2018.read_split(root), split, kind)
    return [(i, *dsb2018.load_sample(root, i)) for i in ids]


# --------------------------------------------------------------------------- training and scoring


def invert(image: np.ndarray) -> np.ndarray:
    """Contrast inverted (dark nuclei become bright): ``min + max - image``.

    After percentile normalisation this is exactly ``1 - normalised image`` (the low and
    high percentiles swap places), i.e. Cellpose's ``invert`` option.
    """
    image = np.asarray(image, dtype=np.float32)
    return (float(image.min()) + float(image.max()) - image).astype(np.float32)


def _done(run_dir: Path) -> bool:
    return (run_dir / "weights.pth").is_file()


def train_run(run_dir: Path, pairs, *, flow_cache: Path, progress: bool, **options) -> dict:
    """Train into ``run_dir`` unless its weights exist; resume a checkpoint left there.

    Parameters
    ----------
    run_dir : Path
        The run's folder (``weights.pth`` there means done).
    pairs : list of (image, labels)
        Training images (2D grayscale) and their label images.
    flow_cache : Path
        Folder of flow targets shared by all runs.
    progress : bool
        Show progress bars.
    **options
        Fields of :class:`cellseg_bridge.config.TrainOptions`.

    Returns
    -------
    dict
        The ``provenance`` of the run's ``config.json`` (epochs_run, train_seconds, ...).
    """
    from cellseg_bridge.training import train

    if _done(run_dir):
        log.info("%s: weights exist, skipped", run_dir.name)
    else:
        resume = (run_dir / "checkpoint" / "state.pt").is_file()
        log.info("%s: %s on %d image(s)", run_dir.name, "resuming" if resume else "training", len(pairs))
        train(pairs, run_dir, resume=resume, flow_cache=flow_cache, progress=progress, **options)
    cfg = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    return cfg.get("provenance", {})


def score_model(weights: Path, test, eval_diameter: str, device: str, cache_dir: Path) -> dict:
    """Mean AP at :data:`THRESHOLDS` over the test images.

    Parameters
    ----------
    weights : Path
        Checkpoint to score (its size model beside it is used with ``eval_diameter="model"``).
    test : list of (image_id, image, labels)
        Test images (2D grayscale) with their true labels.
    eval_diameter : {"true", "model"}
        Segment at each image's true median diameter, or at the model's own estimate.
    device : str
        Torch device of the network.
    cache_dir : Path
        Where ``test_scores_<eval_diameter>.json`` is kept; reused unless the weights are newer.

    Returns
    -------
    dict
        ``ap50``, ``ap75``, ``ap90`` (means), ``seconds`` and ``per_image`` (AP, TP, FP, FN, diameter).
    """
    from cellseg_bridge.core.metrics import average_precision
    from cellseg_bridge.segmentation.pipeline import load_model, segment
    from cellseg_bridge.training.data import median_diameter

    cache = cache_dir / f"test_scores_{eval_diameter}.json"
    cache_dir.mkdir(parents=True, exist_ok=True)
    if cache.is_file() and cache.stat().st_mtime >= weights.stat().st_mtime:
        return json.loads(cache.read_text(encoding="utf-8"))
    model = load_model(weights, device)
    per_image = []
    tic = time.perf_counter()
    for image_id, image, labels in test:
        diam = median_diameter(labels)[0] if eval_diameter == "true" else None
        res = segment(image, model, axes="YX", diameter=diam)
        ap, tp, fp, fn = average_precision(labels.astype(np.int64), res.labels[0, 0].astype(np.int64), THRESHOLDS)
        per_image.append({"image_id": image_id, "ap": ap.tolist(), "tp": tp.tolist(), "fp": fp.tolist(),
                          "fn": fn.tolist(), "diameter": res.diameter})
    mean = np.mean([p["ap"] for p in per_image], axis=0)
    out = {"ap50": float(mean[0]), "ap75": float(mean[1]), "ap90": float(mean[2]),
           "seconds": round(time.perf_counter() - tic, 1), "per_image": per_image}
    with atomic_output(cache) as tmp:
        tmp.write_text(json.dumps(out, indent=1), encoding="utf-8")
    return out


# --------------------------------------------------------------------------- report


CSV_FIELDS = ("model", "n_rois", "seed", "n_images", "ap50", "ap75", "ap90", "epochs", "train_seconds")


def _mean_sd(values: list[float]) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def markdown_table(rows: list[dict], title: str) -> str:
    """The Markdown table: one line per ROI count (pretrained-only first), mean ± sd over seeds."""
    pre = [r for r in rows if r["model"] == "pretrained"]
    counts = sorted({int(r["n_rois"]) for r in rows if r["model"] != "pretrained"})
    lines = [f"### {title}", "",
             "| ROIs | images | model | AP@0.5 | AP@0.75 | AP@0.9 |",
             "|---:|---:|---|---:|---:|---:|"]
    for r in pre:
        lines.append(f"| 0 | 0 | pretrained only | {r['ap50']:.3f} | {r['ap75']:.3f} | {r['ap90']:.3f} |")
    for n in counts:
        for kind, name in (("finetune", "fine-tuned"), ("scratch", "from scratch")):
            sel = [r for r in rows if r["model"] == kind and int(r["n_rois"]) == n]
            if not sel:
                continue
            imgs = sorted({str(r["n_images"]) for r in sel})
            lines.append(
                f"| {n} | {'/'.join(imgs)} | {name} | {_mean_sd([r['ap50'] for r in sel])} | "
                f"{_mean_sd([r['ap75'] for r in sel])} | {_mean_sd([r['ap90'] for r in sel])} |"
            )
    return "\n".join(lines) + "\n"


def write_report(out: Path, rows: list[dict], title: str, notes: list[str]) -> None:
    """``scores.csv`` and ``label_efficiency.md`` in ``out`` (atomically)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in CSV_FIELDS})
    with atomic_output(out / "scores.csv") as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    text = markdown_table(rows, title) + "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    with atomic_output(out / "label_efficiency.md") as tmp:
        tmp.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- main


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="output folder (runs, scores.csv, label_efficiency.md)")
    ap.add_argument("--pretrained", type=Path, default=None,
                    help="weights.pth of a model pretrained WITHOUT colour images (skips step 1)")
    ap.add_argument("--nbase", default="2,32,64,128,256", help="widths of the pretrained network")
    ap.add_argument("--diam-mean", type=float, default=17.0, help="diameter the networks work at")
    ap.add_argument("--pretrain-epochs", type=int, default=100, help="epochs of the fluorescence pretraining")
    ap.add_argument("--pretrain-minutes", type=float, default=None, help="time budget of the pretraining")
    ap.add_argument("--epochs", type=int, default=100, help="epochs of each fine-tune and scratch run (hitl)")
    ap.add_argument("--minutes", type=float, default=None,
                    help="time budget of each fine-tune/scratch run (epochs are fitted to it)")
    ap.add_argument("--rois", default="50,100,200,400", help="ROI counts, comma separated")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0],
                    help="replicates: seed s orders the images for the subsets and seeds training")
    ap.add_argument("--pretrain-seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--max-pretrain-images", type=int, default=None, help="use only N fluorescence images")
    ap.add_argument("--eval-diameter", choices=["true", "model"], default="true",
                    help="segment test images at their true median diameter or the model's estimate")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--invert-target", action="store_true",
                    help="invert the colour-tissue images (train and test) for every arm: dark nuclei on a "
                         "bright background become bright on dark, like the fluorescence pretraining data")
    ap.add_argument("--quick", action="store_true",
                    help="smoke version: nbase 2,8,16,32, 2 pretrain epochs on 16 images, 3 epochs per run")
    ap.add_argument("--progress", action="store_true", help="progress bars")
    args = ap.parse_args(argv)
    if args.quick:
        args.nbase = "2,8,16,32"
        args.pretrain_epochs = 2
        args.max_pretrain_images = args.max_pretrain_images or 16
        args.epochs = 3
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data = shared_data()
    if data is None:
        log.error("no shared data folder (../shared/data or $CELLSEG_SHARED/data)")
        return 2
    root = data / "dsb2018"
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    flow_cache = out / "flow_cache"
    counts = [int(v) for v in args.rois.split(",")]
    nbase = tuple(int(v) for v in args.nbase.split(","))
    common = {"batch_size": args.batch_size, "crop_size": args.crop, "device": args.device}
    tic = time.perf_counter()

    color_train = load_split(root, "color", "train")
    color_test = load_split(root, "color", "test")
    if args.invert_target:
        color_train = [(i, invert(img), lab) for i, img, lab in color_train]
        color_test = [(i, invert(img), lab) for i, img, lab in color_test]
    log.info("colour tissue: %d train images (%d ROIs), %d test images", len(color_train),
             sum(len(np.unique(lab)) - 1 for _, _, lab in color_train), len(color_test))

    # 1. pretraining on fluorescence TRAIN images
    rows: list[dict] = []
    if args.pretrained is not None:
        pre_weights = args.pretrained
        pre_prov = {"pretrained": str(pre_weights)}
    else:
        fluo = load_split(root, "fluo", "train")
        if args.max_pretrain_images:
            fluo = fluo[: args.max_pretrain_images]
        pre_dir = out / "pretrained"
        pre_prov = train_run(
            pre_dir, [(img, lab) for _, img, lab in fluo], flow_cache=flow_cache, progress=args.progress,
            recipe="generalist", n_epochs=args.pretrain_epochs, nbase=nbase, diam_mean=args.diam_mean,
            seed=args.pretrain_seed, time_budget_min=args.pretrain_minutes, **common,
        )
        pre_weights = pre_dir / "weights.pth"
    s = score_model(pre_weights, color_test, args.eval_diameter, args.device,
                    out / ("pretrained_given" if args.pretrained else "pretrained"))
    rows.append({"model": "pretrained", "n_rois": 0, "seed": args.pretrain_seed, "n_images": 0,
                 "ap50": s["ap50"], "ap75": s["ap75"], "ap90": s["ap90"],
                 "epochs": pre_prov.get("epochs_run", ""), "train_seconds": pre_prov.get("train_seconds", "")})
    log.info("pretrained only: AP50 %.3f AP75 %.3f AP90 %.3f", s["ap50"], s["ap75"], s["ap90"])

    from cellseg_bridge.nn.checkpoint import load_checkpoint

    pre_net, _ = load_checkpoint(pre_weights, "cpu")
    arch = {"nbase": tuple(int(v) for v in pre_net.nbase), "diam_mean": float(pre_net.diam_mean.item())}
    del pre_net

    # 2.-4. subsets, fine-tuning, scratch, scores
    subsets: dict[str, list[dict]] = {}
    labels = [lab for _, _, lab in color_train]
    for seed in args.seeds:
        order = np.random.default_rng(seed).permutation(len(color_train)).tolist()
        for n in counts:
            parts = roi_subset(labels, n, order)
            subsets[f"r{n}_s{seed}"] = [
                {**asdict(p), "image_id": color_train[p.index][0]} for p in parts
            ]
            pairs = [crop_part(color_train[p.index][1], color_train[p.index][2], p) for p in parts]
            got = sum(p.n_rois for p in parts)
            if got != n:
                log.warning("subset r%d_s%d holds %d ROIs, not %d", n, seed, got, n)
            for kind in ("finetune", "scratch"):
                run_dir = out / f"{kind}_r{n}_s{seed}"
                init = {"pretrained": str(pre_weights)} if kind == "finetune" else {"pretrained": None, **arch}
                prov = train_run(run_dir, pairs, flow_cache=flow_cache, progress=args.progress, recipe="hitl",
                                 n_epochs=args.epochs, seed=seed, time_budget_min=args.minutes, **init, **common)
                s = score_model(run_dir / "weights.pth", color_test, args.eval_diameter, args.device, run_dir)
                rows.append({"model": kind, "n_rois": got, "seed": seed, "n_images": len(parts),
                             "ap50": s["ap50"], "ap75": s["ap75"], "ap90": s["ap90"],
                             "epochs": prov.get("epochs_run", ""), "train_seconds": prov.get("train_seconds", "")})
                log.info("%s: AP50 %.3f AP75 %.3f AP90 %.3f", run_dir.name, s["ap50"], s["ap75"], s["ap90"])
    with atomic_output(out / "subsets.json") as tmp:
        tmp.write_text(json.dumps(subsets, indent=1), encoding="utf-8")

    # 5. report
    title = ("SMOKE RUN (--quick: tiny network, few epochs; numbers mean nothing)" if args.quick
             else "Label efficiency on dsb2018 colour tissue (test images: 8)")
    notes = [
        f"pretraining: {'given ' + str(args.pretrained) if args.pretrained else 'fluorescence train images'}"
        f" ({pre_prov.get('n_train_images', '?')} images, {pre_prov.get('epochs_run', '?')} epochs"
        f"{', ' + str(pre_prov.get('recipe')) + ' recipe' if pre_prov.get('recipe') else ''})",
        f"network nbase {list(arch['nbase'])}, diam_mean {arch['diam_mean']:g}; fine-tune and scratch: "
        f"hitl recipe, {args.epochs} epochs, batch {args.batch_size}, crop {args.crop}",
        f"seeds {args.seeds}; 'images' = colour train images used (the last one cut to a strip)",
        "colour-tissue images " + ("INVERTED (min + max - image) for every arm" if args.invert_target
                                   else "as they are (dark nuclei on a bright background)"),
        f"AP = TP/(TP+FP+FN), mean over the 8 colour test images, segmented at "
        f"{'their true median diameter' if args.eval_diameter == 'true' else 'the model estimate'}",
        f"total wall time {time.perf_counter() - tic:.0f} s (this invocation; finished runs are skipped)",
    ]
    write_report(out, rows, title, notes)
    sys.stdout.write(markdown_table(rows, title))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

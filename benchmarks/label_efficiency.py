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

Whole-cell mode (``--dataset usiigaci``, issue 13 item 7): the same three arms on
phase-contrast whole cells whose annotations are **real Fiji ROI Manager exports**.

1. pretrain from scratch on the TRAIN splits of every dataset of the bundled ``cells``
   mixture except Usiigaci (``--pretrain-data``, default ``bbbc030:0.4,dsb2018:0.6``: the
   ``cells`` weights 0.25 / 0.4 with Usiigaci's 0.35 dropped and the rest renormalised),
   weighted sampling (``DataSource``), ``generalist`` recipe, ``cells`` architecture (half width
   nbase 2,16,32,64,128, diam_mean 30), 300 epochs of 64 images as ``cells``;
2. the candidate images are the Usiigaci TRAIN fields that have a ``RoiSet.zip`` (set18-40:
   23 fields, 1367 ROIs), their labels rasterised from the zip by
   :func:`cellseg_bridge.datasets.usiigaci.labels_from_rois` (never the label PNG); ROI
   subsets by the same rule, nested per seed;
3.-5. as above; scored on the Usiigaci TEST fields (set41-45) against their label PNGs
   (``instances_ids.png``, the pixel truth). The table also shows each run's training time.

Usage::

    python benchmarks/label_efficiency.py --out /tmp/le_quick --quick        # smoke: minutes
    python benchmarks/label_efficiency.py --out le_full                      # full size: hours on a CPU
    python benchmarks/label_efficiency.py --out le_full --seeds 0 1 2 --pretrained my_fluo/weights.pth
    python benchmarks/label_efficiency.py --dataset usiigaci --out le_cells --seeds 0 1   # whole cells
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


def load_usiigaci(root: Path) -> tuple[list, list]:
    """Usiigaci ``(train, test)`` as ``(set name, image, labels)``.

    ``train``: the TRAIN fields that have a Fiji ``RoiSet.zip``, labels rasterised from the
    zip (:func:`~cellseg_bridge.datasets.usiigaci.labels_from_rois`); fields without one are
    left out. ``test``: every TEST field with its label PNG (``instances_ids.png``, the pixel truth).
    """
    from cellseg_bridge.datasets import usiigaci
    from cellseg_bridge.datasets.common import read_split_table

    table = read_split_table(root / "split.tsv", "set")
    names = sorted(table, key=usiigaci._sort_key)
    train = []
    for name in names:
        folder = root / name
        if table[name] != "train" or usiigaci.roi_path(folder) is None:
            continue
        image = usiigaci.load_image(folder)
        train.append((name, image, usiigaci.labels_from_rois(folder, image.shape)))
    test = [(s.name, s.image, s.labels) for s in usiigaci.samples(root, "test")]
    return train, test


def parse_pretrain_spec(spec: str) -> list[tuple[str, float]]:
    """``[(name, weight)]`` of ``NAME[:WEIGHT],...`` (weight 1 when left out).

    Raises
    ------
    ValueError
        Usiigaci (the target) among them, an unknown dataset name, or a weight that is not a
        positive number.
    """
    from cellseg_bridge import datasets

    out = []
    for item in spec.split(","):
        name, _, weight = item.strip().partition(":")
        if name == "usiigaci":
            raise ValueError("--pretrain-data must not hold usiigaci, the target of the whole-cell mode")
        if name not in datasets.DATASETS:
            raise ValueError(f"unknown dataset {name!r} in --pretrain-data (known: {', '.join(datasets.DATASETS)})")
        w = float(weight or 1.0)
        if not (np.isfinite(w) and w > 0):
            raise ValueError(f"weight of {name!r} in --pretrain-data must be a positive number, got {weight!r}")
        out.append((name, w))
    return out


def pretrain_sources(data: Path, spec: str, max_images: int | None) -> list:
    """:class:`~cellseg_bridge.training.DataSource` per ``NAME:WEIGHT`` of ``spec`` (TRAIN splits only).

    ``max_images``: at most that many images of each dataset (its first, in the reader's order).
    """
    from cellseg_bridge import datasets
    from cellseg_bridge.training import DataSource

    sources = []
    for name, weight in parse_pretrain_spec(spec):
        use = datasets.load(name, "train", data / name)[:max_images]
        sources.append(DataSource([(s.image, s.labels) for s in use], weight, name))
        log.info("pretraining source %s: %d train image(s), weight %g", name, len(use), weight)
    return sources


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
    pairs : list of (image, labels), or list of DataSource
        Training images (2D grayscale) and their label images, or weighted datasets of them.
    flow_cache : Path
        Folder of flow targets shared by all runs.
    progress : bool
        Show progress bars.
    **options
        Fields of :class:`cellseg_bridge.config.TrainOptions`.

    Returns
    -------
    dict
        The ``provenance`` of the run's ``config.json`` (epochs_run, train_seconds, ...), plus
        ``run_wall_seconds`` and ``run_cpu_seconds``: wall and CPU time (all threads of this
        process) of the ``train`` call(s) that made it, setup and size model included, summed over
        resumes and kept in ``run_time.json`` (absent for runs trained before it existed). CPU
        seconds do not grow when other jobs share the CPU; wall seconds do.
    """
    from cellseg_bridge.training import train

    timing = run_dir / "run_time.json"
    if _done(run_dir):
        log.info("%s: weights exist, skipped", run_dir.name)
    else:
        resume = (run_dir / "checkpoint" / "state.pt").is_file()
        n = sum(len(p.data) for p in pairs) if pairs and hasattr(pairs[0], "weight") else len(pairs)
        log.info("%s: %s on %d image(s)", run_dir.name, "resuming" if resume else "training", n)
        before = json.loads(timing.read_text(encoding="utf-8")) if resume and timing.is_file() else {}
        wall, cpu = time.perf_counter(), time.process_time()
        train(pairs, run_dir, resume=resume, flow_cache=flow_cache, progress=progress, **options)
        spent = {"run_wall_seconds": round(before.get("run_wall_seconds", 0.0) + time.perf_counter() - wall, 1),
                 "run_cpu_seconds": round(before.get("run_cpu_seconds", 0.0) + time.process_time() - cpu, 1)}
        with atomic_output(timing) as tmp:
            tmp.write_text(json.dumps(spent), encoding="utf-8")
    cfg = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    prov = dict(cfg.get("provenance", {}))
    if timing.is_file():
        prov.update(json.loads(timing.read_text(encoding="utf-8")))
    return prov


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
#: Columns of the whole-cell mode's ``scores.csv``: also each run's wall and CPU time (see :func:`train_run`).
CSV_FIELDS_TIMED = CSV_FIELDS + ("run_wall_seconds", "run_cpu_seconds")


def _mean_sd(values: list[float]) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def _seconds(sel: list[dict], key: str = "train_seconds") -> str:
    """``key`` (seconds) of each run of ``sel``, in seed order, joined by ``/``."""
    vals = [r.get(key, "") for r in sorted(sel, key=lambda r: int(r["seed"]))]
    return "/".join(f"{float(v):.0f}" if v not in ("", None) else "?" for v in vals)


def _time_cells(sel: list[dict]) -> str:
    return f" {_seconds(sel)} | {_seconds(sel, 'run_cpu_seconds')} |"


def markdown_table(rows: list[dict], title: str, times: bool = False) -> str:
    """The Markdown table: one line per ROI count (pretrained-only first), mean ± sd over seeds.

    ``times``: two last columns, each run's training-loop wall seconds (``train_seconds``) and the
    CPU seconds of its whole ``train`` call (``run_cpu_seconds``), in seed order, ``/``-joined.
    """
    pre = [r for r in rows if r["model"] == "pretrained"]
    counts = sorted({int(r["n_rois"]) for r in rows if r["model"] != "pretrained"})
    head = "| ROIs | images | model | AP@0.5 | AP@0.75 | AP@0.9 |"
    rule = "|---:|---:|---|---:|---:|---:|"
    if times:
        head, rule = head + " train s | CPU s |", rule + "---:|---:|"
    lines = [f"### {title}", "", head, rule]
    for r in pre:
        lines.append(f"| 0 | 0 | pretrained only | {r['ap50']:.3f} | {r['ap75']:.3f} | {r['ap90']:.3f} |"
                     + (_time_cells([r]) if times else ""))
    for n in counts:
        for kind, name in (("finetune", "fine-tuned"), ("scratch", "from scratch")):
            sel = [r for r in rows if r["model"] == kind and int(r["n_rois"]) == n]
            if not sel:
                continue
            imgs = sorted({str(r["n_images"]) for r in sel})
            lines.append(
                f"| {n} | {'/'.join(imgs)} | {name} | {_mean_sd([r['ap50'] for r in sel])} | "
                f"{_mean_sd([r['ap75'] for r in sel])} | {_mean_sd([r['ap90'] for r in sel])} |"
                + (_time_cells(sel) if times else "")
            )
    return "\n".join(lines) + "\n"


def write_report(out: Path, rows: list[dict], title: str, notes: list[str], times: bool = False) -> None:
    """``scores.csv`` and ``label_efficiency.md`` in ``out`` (atomically)."""
    buf = io.StringIO()
    fields = CSV_FIELDS_TIMED if times else CSV_FIELDS
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in fields})
    with atomic_output(out / "scores.csv") as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    text = markdown_table(rows, title, times) + "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    with atomic_output(out / "label_efficiency.md") as tmp:
        tmp.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- main

#: Per-dataset defaults of the options left unset (``None``) on the command line.
DEFAULTS = {
    "dsb2018": {"nbase": "2,32,64,128,256", "diam_mean": 17.0, "pretrain_epochs": 100,
                "pretrain_images_per_epoch": None},
    # the bundled ``cells`` recipe: half width, diam_mean 30, 300 epochs of 64 images (docs/models.md)
    "usiigaci": {"nbase": "2,16,32,64,128", "diam_mean": 30.0, "pretrain_epochs": 300,
                 "pretrain_images_per_epoch": 64},
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="output folder (runs, scores.csv, label_efficiency.md)")
    ap.add_argument("--dataset", choices=sorted(DEFAULTS), default="dsb2018",
                    help="dsb2018: fluorescence -> colour-tissue nuclei (issue 4); usiigaci: whole cells, ROIs "
                         "from the Fiji RoiSet.zip exports, pretrained without Usiigaci (issue 13)")
    ap.add_argument("--pretrained", type=Path, default=None,
                    help="weights.pth of a model pretrained WITHOUT the target data (colour images; Usiigaci) "
                         "(skips step 1)")
    ap.add_argument("--nbase", default=None,
                    help="widths of the pretrained network (default: dsb2018 2,32,64,128,256; usiigaci 2,16,32,64,128)")
    ap.add_argument("--diam-mean", type=float, default=None,
                    help="diameter the networks work at (default: dsb2018 17; usiigaci 30)")
    ap.add_argument("--pretrain-epochs", type=int, default=None,
                    help="epochs of the pretraining (default: dsb2018 100; usiigaci 300)")
    ap.add_argument("--pretrain-images-per-epoch", type=int, default=None,
                    help="images drawn per pretraining epoch (default: dsb2018 the recipe's; usiigaci 64)")
    ap.add_argument("--pretrain-data", default="bbbc030:0.4,dsb2018:0.6",
                    help="usiigaci mode: NAME:WEIGHT,... of the datasets whose TRAIN splits are pretrained on")
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
    ap.add_argument("--max-pretrain-images", type=int, default=None,
                    help="use only N pretraining images (usiigaci mode: N per dataset)")
    ap.add_argument("--max-test-images", type=int, default=None,
                    help="score only the first N test images (smoke tests; the experiment uses all)")
    ap.add_argument("--eval-diameter", choices=["true", "model"], default="true",
                    help="segment test images at their true median diameter or the model's estimate")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--invert-target", action="store_true",
                    help="invert the target images (train and test) for every arm: on colour tissue, dark nuclei "
                         "on a bright background become bright on dark, like the fluorescence pretraining data")
    ap.add_argument("--quick", action="store_true",
                    help="smoke version: nbase 2,8,16,32, 2 pretrain epochs on 16 images (usiigaci: 16 per "
                         "dataset, 16 per epoch), 3 epochs per run")
    ap.add_argument("--progress", action="store_true", help="progress bars")
    args = ap.parse_args(argv)
    for key, value in DEFAULTS[args.dataset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.quick:
        args.nbase = "2,8,16,32"
        args.pretrain_epochs = 2
        args.max_pretrain_images = args.max_pretrain_images or 16
        args.epochs = 3
        if args.dataset == "usiigaci":
            args.pretrain_images_per_epoch = 16
    return args


def _check_pretrained(weights: Path, target: str, _depth: int = 0) -> None:
    """Refuse a ``--pretrained`` model whose ``config.json`` shows it saw the target dataset.

    Looks at ``provenance.datasets`` (names), ``provenance.stages`` (texts) and, recursively,
    at the model it was fine-tuned from (``provenance.pretrained``: a path, or a bundled name).
    A model without a ``config.json`` cannot be checked and is taken on trust.
    """
    cfg = weights.parent / "config.json"
    if not cfg.is_file() or _depth > 8:
        return
    prov = json.loads(cfg.read_text(encoding="utf-8")).get("provenance", {})
    names = {str(d.get("name")) for d in prov.get("datasets", []) if isinstance(d, dict)}
    stages = " ".join(str(t) for t in prov.get("stages", []))
    if target in names or target.lower() in stages.lower():
        raise ValueError(f"{weights} was trained on {target} (config.json provenance): "
                         "it cannot stand for a network that never saw the target data")
    parent = prov.get("pretrained")
    if parent:
        for cand in (Path(parent), REPO / parent, REPO / "cellseg_bridge" / "models" / str(parent) / "weights.pth"):
            if cand.is_file():
                _check_pretrained(cand, target, _depth + 1)
                break


def run_arms(args: argparse.Namespace, out: Path, target_train: list, target_test: list, pretrain_data,
             pretrain_extra: dict) -> tuple[list[dict], dict, dict, dict]:
    """Steps 1-4 for any target: pretraining (or ``--pretrained``), ROI subsets, both arms, test scores.

    Parameters
    ----------
    args : Namespace
        Parsed options.
    out : Path
        Output folder (one sub-folder per run, ``flow_cache/``).
    target_train, target_test : list of (image_id, image, labels)
        Candidate images of the ROI subsets; test images with their true labels.
    pretrain_data : callable
        Returns the pretraining data (pairs or DataSources); called only when the pretraining runs.
    pretrain_extra : dict
        Further TrainOptions of the pretraining.

    Returns
    -------
    rows, subsets, pre_prov, arch
        ``scores.csv`` rows, ``subsets.json`` content, the pretraining's provenance, the network's
        ``nbase``/``diam_mean``.
    """
    flow_cache = out / "flow_cache"
    counts = [int(v) for v in args.rois.split(",")]
    nbase = tuple(int(v) for v in args.nbase.split(","))
    common = {"batch_size": args.batch_size, "crop_size": args.crop, "device": args.device}

    # 1. pretraining without the target data
    rows: list[dict] = []
    if args.pretrained is not None:
        pre_weights = args.pretrained
        pre_prov = {"pretrained": str(pre_weights)}
    else:
        pre_dir = out / "pretrained"
        pre_prov = train_run(
            pre_dir, [] if _done(pre_dir) else pretrain_data(), flow_cache=flow_cache, progress=args.progress,
            recipe="generalist", n_epochs=args.pretrain_epochs, nbase=nbase, diam_mean=args.diam_mean,
            seed=args.pretrain_seed, time_budget_min=args.pretrain_minutes, **pretrain_extra, **common,
        )
        pre_weights = pre_dir / "weights.pth"
    s = score_model(pre_weights, target_test, args.eval_diameter, args.device,
                    out / ("pretrained_given" if args.pretrained else "pretrained"))
    rows.append({"model": "pretrained", "n_rois": 0, "seed": args.pretrain_seed, "n_images": 0,
                 "ap50": s["ap50"], "ap75": s["ap75"], "ap90": s["ap90"],
                 "epochs": pre_prov.get("epochs_run", ""), "train_seconds": pre_prov.get("train_seconds", ""),
                 **_run_times(pre_prov)})
    log.info("pretrained only: AP50 %.3f AP75 %.3f AP90 %.3f", s["ap50"], s["ap75"], s["ap90"])

    from cellseg_bridge.nn.checkpoint import load_checkpoint

    pre_net, _ = load_checkpoint(pre_weights, "cpu")
    arch = {"nbase": tuple(int(v) for v in pre_net.nbase), "diam_mean": float(pre_net.diam_mean.item())}
    del pre_net

    # 2.-4. subsets, fine-tuning, scratch, scores
    subsets: dict[str, list[dict]] = {}
    labels = [lab for _, _, lab in target_train]
    for seed in args.seeds:
        order = np.random.default_rng(seed).permutation(len(target_train)).tolist()
        for n in counts:
            parts = roi_subset(labels, n, order)
            subsets[f"r{n}_s{seed}"] = [
                {**asdict(p), "image_id": target_train[p.index][0]} for p in parts
            ]
            pairs = [crop_part(target_train[p.index][1], target_train[p.index][2], p) for p in parts]
            got = sum(p.n_rois for p in parts)
            if got != n:
                log.warning("subset r%d_s%d holds %d ROIs, not %d", n, seed, got, n)
            for kind in ("finetune", "scratch"):
                run_dir = out / f"{kind}_r{n}_s{seed}"
                init = {"pretrained": str(pre_weights)} if kind == "finetune" else {"pretrained": None, **arch}
                prov = train_run(run_dir, pairs, flow_cache=flow_cache, progress=args.progress, recipe="hitl",
                                 n_epochs=args.epochs, seed=seed, time_budget_min=args.minutes, **init, **common)
                s = score_model(run_dir / "weights.pth", target_test, args.eval_diameter, args.device, run_dir)
                rows.append({"model": kind, "n_rois": got, "seed": seed, "n_images": len(parts),
                             "ap50": s["ap50"], "ap75": s["ap75"], "ap90": s["ap90"],
                             "epochs": prov.get("epochs_run", ""), "train_seconds": prov.get("train_seconds", ""),
                             **_run_times(prov)})
                log.info("%s: AP50 %.3f AP75 %.3f AP90 %.3f (%s s training)", run_dir.name, s["ap50"], s["ap75"],
                         s["ap90"], prov.get("train_seconds", "?"))
    return rows, subsets, pre_prov, arch


def _run_times(prov: dict) -> dict:
    return {"run_wall_seconds": prov.get("run_wall_seconds", ""), "run_cpu_seconds": prov.get("run_cpu_seconds", "")}


def _pretrain_note(args: argparse.Namespace, pre_prov: dict, what: str) -> str:
    return (f"pretraining: {'given ' + str(args.pretrained) if args.pretrained else what}"
            f" ({pre_prov.get('n_train_images', '?')} images, {pre_prov.get('epochs_run', '?')} epochs"
            f"{', ' + str(pre_prov.get('recipe')) + ' recipe' if pre_prov.get('recipe') else ''})")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data = shared_data()
    if data is None:
        log.error("no shared data folder (../shared/data or $CELLSEG_SHARED/data)")
        return 2
    if args.dataset == "usiigaci":  # refuse a pretraining that saw the target before anything runs
        try:
            parse_pretrain_spec(args.pretrain_data)
            if args.pretrained is not None:
                _check_pretrained(args.pretrained, "usiigaci")
        except ValueError as exc:
            log.error("%s", exc)
            return 2
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    tic = time.perf_counter()

    if args.dataset == "dsb2018":
        root = data / "dsb2018"
        target_train = load_split(root, "color", "train")
        target_test = load_split(root, "color", "test")
        log.info("colour tissue: %d train images (%d ROIs), %d test images", len(target_train),
                 sum(len(np.unique(lab)) - 1 for _, _, lab in target_train), len(target_test))

        def pretrain_data():
            fluo = load_split(root, "fluo", "train")[: args.max_pretrain_images]
            return [(img, lab) for _, img, lab in fluo]

        pretrain_extra: dict = {}
        if args.pretrain_images_per_epoch:
            pretrain_extra["images_per_epoch"] = args.pretrain_images_per_epoch
    else:
        target_train, target_test = load_usiigaci(data / "usiigaci")
        n_rois_train = sum(len(np.unique(lab)) - 1 for _, _, lab in target_train)
        log.info("usiigaci: %d train fields with a RoiSet.zip (%d ROIs), %d test fields", len(target_train),
                 n_rois_train, len(target_test))

        def pretrain_data():
            return pretrain_sources(data, args.pretrain_data, args.max_pretrain_images)

        pretrain_extra = {"images_per_epoch": args.pretrain_images_per_epoch}

    if args.invert_target:
        target_train = [(i, invert(img), lab) for i, img, lab in target_train]
        target_test = [(i, invert(img), lab) for i, img, lab in target_test]
    n_test_all = len(target_test)
    target_test = target_test[: args.max_test_images]

    rows, subsets, pre_prov, arch = run_arms(args, out, target_train, target_test, pretrain_data, pretrain_extra)
    with atomic_output(out / "subsets.json") as tmp:
        tmp.write_text(json.dumps(subsets, indent=1), encoding="utf-8")

    # 5. report
    smoke = "SMOKE RUN (--quick: tiny network, few epochs; numbers mean nothing)"
    if args.dataset == "dsb2018":
        title = smoke if args.quick else "Label efficiency on dsb2018 colour tissue (test images: 8)"
        notes = [
            _pretrain_note(args, pre_prov, "fluorescence train images"),
            f"network nbase {list(arch['nbase'])}, diam_mean {arch['diam_mean']:g}; fine-tune and scratch: "
            f"hitl recipe, {args.epochs} epochs, batch {args.batch_size}, crop {args.crop}",
            f"seeds {args.seeds}; 'images' = colour train images used (the last one cut to a strip)",
            "colour-tissue images " + ("INVERTED (min + max - image) for every arm" if args.invert_target
                                       else "as they are (dark nuclei on a bright background)"),
            f"AP = TP/(TP+FP+FN), mean over the {len(target_test)} colour test images, segmented at "
            f"{'their true median diameter' if args.eval_diameter == 'true' else 'the model estimate'}",
        ]
    else:
        title = smoke if args.quick else (
            f"Label efficiency on Usiigaci whole cells, ROIs from the Fiji RoiSet.zip exports "
            f"(test fields: {len(target_test)})")
        mix = ", ".join(f"{d.get('name')} {d.get('n_images')} images weight {d.get('weight')}"
                        for d in pre_prov.get("datasets", []))
        notes = [
            _pretrain_note(args, pre_prov, f"TRAIN splits without Usiigaci: {mix or args.pretrain_data}")
            + (f", {args.pretrain_images_per_epoch} images per epoch" if not args.pretrained else ""),
            f"network nbase {list(arch['nbase'])}, diam_mean {arch['diam_mean']:g}; fine-tune and scratch: "
            f"hitl recipe, {args.epochs} epochs, batch {args.batch_size}, crop {args.crop}",
            f"ROIs: the {len(target_train)} Usiigaci train fields with a Fiji RoiSet.zip ({n_rois_train} ROIs), "
            "labels rasterised from the zip (datasets.usiigaci.labels_from_rois); train fields without one unused",
            f"seeds {args.seeds}; 'images' = train fields used (the last one cut to a strip)",
            "phase-contrast fields " + ("INVERTED (min + max - image) for every arm" if args.invert_target
                                        else "as they are"),
            f"AP = TP/(TP+FP+FN), mean over {len(target_test)} of the {n_test_all} Usiigaci test fields "
            f"(labels: instances_ids.png), segmented at "
            f"{'their true median diameter' if args.eval_diameter == 'true' else 'the model estimate'}",
            "train s = wall seconds of each run's training loop (provenance.train_seconds); CPU s = CPU seconds "
            "(all threads) of its whole train call, flows and size model included (contention does not inflate "
            "it); seeds in order, '/'-joined",
        ]
    notes.append(f"total wall time {time.perf_counter() - tic:.0f} s (this invocation; finished runs are skipped)")
    times = args.dataset != "dsb2018"
    write_report(out, rows, title, notes, times)
    sys.stdout.write(markdown_table(rows, title, times))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

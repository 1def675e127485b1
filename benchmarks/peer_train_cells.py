"""Same-data peer baseline: Cellpose 3.1.1.3 trained by its own ``train_seg`` on our ``cells`` mixture.

Issue 13, item 6. This driver runs in OUR environment; the training and the scoring run in
the PEER's (``.peer_venv``, ``bash benchmarks/peer_env.sh``) through ``peer_side.py train`` /
``peer_side.py eval`` (code in ``peer_side_cells.py``), with 2 threads. Its checkpoints are
baselines: they stay in the work folder and are never shipped.

Data (identical to ours). ``scripts/train_cells.py``'s :func:`dataset_sources` gives the train
images of each ``--data NAME[:WEIGHT]`` (train split, the last ``--n-val`` = 2 held out), the
grayscale float32 images and int32 labels of :mod:`cellseg_bridge.datasets`; they are written
once as ``.npz`` to ``WORK/data/`` (never into the repository). The held-out images become
Cellpose's ``test_data`` (its test loss in the log), as ours use them for the curves. Test
images: every group of ``benchmarks/eval_cells.py`` (usiigaci, bbbc030, dsb2018 fluo / color /
bf_gray, stardist img2d), labels renumbered 1..n (Cellpose's metrics count ``labels.max()``).

Training, same as our generalist (``cellseg_bridge/models/cells``):

* sampling: per-image ``train_probs`` = dataset weight / number of that dataset's images
  (Cellpose 3's own mechanism for its weighted cyto3 mixture); images with fewer than
  ``min_train_masks`` = 5 masks are left out first (``train_seg`` would drop them itself and
  renormalise, which shifts the shares), and listed in the run's JSON;
* length: ``--epochs`` x ``--images-per-epoch`` (default 300 x 64 = 2,400 steps of batch 8,
  ours: 2,400) as ``n_epochs`` and ``nimg_per_epoch``; note that ``train_seg`` ignores
  ``train_probs`` when ``nimg_per_epoch`` equals the number of images (a warning says so);
* width: ``--nbase`` (default ours, half width ``2,16,32,64,128``) or ``--full-width``
  (Cellpose's ``CPnet([2, 32, 64, 128, 256])``, what ``CellposeModel`` builds);
* diam_mean 30 (Cellpose's and ours); optimizer: ``--optimizer sgd`` (default) is what
  ``python -m cellpose --train`` uses (SGD, momentum 0.9, lr 0.2, weight decay 1e-5; also our
  generalist recipe), ``--optimizer adamw`` is ``train_seg``'s own function default (AdamW,
  lr 0.005, weight decay 1e-5);
* Cellpose's defaults otherwise: its LR schedule (10-epoch warm-up, then for > 100 epochs the
  last 50 epochs halve the rate every 5), batch 8, 224 x 224 crops, ``rescale=True``
  (each image resized by diam_mean / its diameter, times U[0.75, 1.25]: ``scale_range`` 0.5),
  random rotation and flips, per-image 1st-99th percentile normalisation, ``channels=[0, 0]``
  (grayscale, second channel empty), ``min_train_masks`` 5, ``save_every`` 100, float32 on the
  CPU (mkldnn as ``CellposeModel`` decides), no size model (``train_size`` is not run: our
  ``cells`` has one, Cellpose's CLI trains one only with ``--train_size``).

Scoring, by Cellpose itself: ``CellposeModel.eval(img, channels=[0, 0], diameter=None)``
then ``cellpose.metrics.average_precision`` at IoU 0.5 / 0.75 / 0.9, mean over the images of
each group, in the table format of ``eval_cells.py``. **Diameter**: with ``diameter=None`` and
no size model Cellpose runs every image at ``rescale = diam_mean / diam_labels``, where
``diam_labels`` is the mean over the training images of each image's diameter
(``cellpose.utils.diameters``: from the median mask area; ``train_seg`` stores it in the
checkpoint; 33.7 px for the mixture, as our ``cells``): one scale for all images, nuclei and
whole cells alike. That is what a Cellpose
user gets from such a model; it is recorded per image. ``--true-diameter`` adds rows scored
at each test image's ground-truth diameter (``cellpose.utils.diameters``) instead.

CPU budget. Each run's JSON states wall and CPU seconds (training and scoring), seconds per
step, setup time, threads (2), the machine's core count and load average at the start and
end. ``--minutes M`` caps a training run: it stops at the first step past M minutes (setup
included), saves the network as it is and says ``stopped: "budget"``. ``train_seg`` cannot
resume (its LR schedule and optimizer state restart), so a run is not resumable: a rerun
skips every finished step instead (data written, runs trained, images scored: the scoring
goes on image by image where it stopped); a budget-stopped run is trained again from the start
only if the new budget is larger (or none). ``--force`` trains again.

Outputs in WORK: ``runs/<name>/`` (``models/<name>`` = the checkpoint, ``train.json``,
``eval_<test>.json`` per-image scores, ``train.log``, ``eval.log``), and the summary of every
run in WORK scored on the current test set: ``peer_cells.json`` (per-image scores, settings,
times, the table) and ``peer_cells.md`` (the AP table and the budget table).

Full runs (the next session). Cost measured 2026-12-07 on this 2-core CPU while other jobs kept
its load average at 4-6: 8.6 s per step at half width (5.7 h for 2,400 steps), 18.5 s at full
width (12 h); set-up (reading, Cellpose's flows for all 187 images) 1 min, scoring all 60 test
images 4-5 min. On a quiet machine about a third of that (docs/models.md: a full-width step
costs 4.6 s undisturbed). A run cannot resume, so start it where it can run to its end
(``setsid nohup ... &``)::

    nice -n 10 .venv/bin/python benchmarks/peer_train_cells.py ../peer_cells    # the mixture
    nice -n 10 .venv/bin/python benchmarks/peer_train_cells.py ../peer_cells --data usiigaci
    nice -n 10 .venv/bin/python benchmarks/peer_train_cells.py ../peer_cells --data bbbc030
    nice -n 10 .venv/bin/python benchmarks/peer_train_cells.py ../peer_cells --data dsb2018

Smoke run (minutes)::

    .venv/bin/python benchmarks/peer_train_cells.py /tmp/peer_smoke --max-images 2 \\
        --nbase 2,8,16,32 --epochs 2 --images-per-epoch 8 --max-per-group 1
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

log = logging.getLogger("peer_train_cells")

#: Our bundled generalist's mixture (``cellseg_bridge/models/cells/config.json``).
DEFAULT_DATA = ("usiigaci:0.35", "bbbc030:0.25", "dsb2018:0.4")
#: Our generalist's width (half of Cellpose's) and Cellpose's own (``CellposeModel``, nchan 2).
OUR_NBASE = (2, 16, 32, 64, 128)
CELLPOSE_NBASE = (2, 32, 64, 128, 256)
#: ``python -m cellpose --train`` defaults (SGD) and ``train_seg``'s function defaults (AdamW).
OPTIMIZERS = {"sgd": {"SGD": True, "learning_rate": 0.2, "weight_decay": 1e-5, "momentum": 0.9},
              "adamw": {"SGD": False, "learning_rate": 0.005, "weight_decay": 1e-5, "momentum": 0.9}}
SUMMARY = "peer_cells"


# ----------------------------------------------------------------------------- helpers


def find_peer_python(explicit: str | None = None) -> Path | None:
    """``--peer-python``, else ``$CELLSEG_PEER_PYTHON``, else ``$PEER_VENV`` / ``.peer_venv`` (``_peer``)."""
    for candidate in (explicit, os.environ.get("CELLSEG_PEER_PYTHON")):
        if candidate:
            return Path(candidate) if Path(candidate).exists() else None
    from _peer import peer_python

    return peer_python()


def parse_data(specs: list[str]) -> list[tuple[str, float]]:
    """``NAME[:WEIGHT]`` -> (name, weight); weights must be positive numbers."""
    out = []
    for spec in specs:
        name, _, weight = spec.partition(":")
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise SystemExit(f"--data {spec}: the weight must be a number") from None
        if not (math.isfinite(w) and w > 0):
            raise SystemExit(f"--data {spec}: the weight must be > 0")
        if name in [n for n, _ in out]:
            raise SystemExit(f"--data {name} given twice")
        out.append((name, w))
    return out


def width_label(nbase: tuple[int, ...]) -> str:
    if nbase == OUR_NBASE:
        return "half width"
    if nbase == CELLPOSE_NBASE:
        return "full width"
    return "nbase " + ",".join(map(str, nbase))


def run_name(args, data: list[tuple[str, float]], nbase: tuple[int, ...]) -> str:
    if args.name:
        return args.name
    width = {OUR_NBASE: "half", CELLPOSE_NBASE: "full"}.get(nbase, "nb" + "-".join(map(str, nbase)))
    parts = ["+".join(n for n, _ in data), width, f"e{args.epochs}x{args.images_per_epoch}"]
    if args.optimizer != "sgd":
        parts.append(args.optimizer)
    if args.max_images:
        parts.append(f"max{args.max_images}")
    if args.seed:
        parts.append(f"s{args.seed}")
    return "_".join(parts)


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.stem + ".partial.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _label_dtype(labels: np.ndarray):
    return np.uint16 if labels.max() < 65536 else np.int32


def renumber(labels: np.ndarray) -> np.ndarray:
    """Labels 1..n in the order of their values (0 stays background)."""
    values, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(labels.shape)
    if values[0] != 0:
        inverse = inverse + 1
    return inverse.astype(_label_dtype(inverse))


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def machine() -> dict:
    return {"cpu_count": os.cpu_count(), "loadavg": [round(v, 2) for v in os.getloadavg()],
            "nice": os.nice(0), "platform": platform.platform(), "processor": platform.processor()}


# ----------------------------------------------------------------------------- data


def write_train_data(work: Path, name: str, n_val: int, max_images: int | None) -> Path:
    """``WORK/data/train_<name>_val<n>[_max<m>].npz`` from ``train_cells.dataset_sources`` (once)."""
    path = work / "data" / (f"train_{name}_val{n_val}" + (f"_max{max_images}" if max_images else "") + ".npz")
    if path.is_file():
        return path
    from scripts.train_cells import dataset_sources

    tic = time.perf_counter()
    sources, val = dataset_sources([name], n_val, max_images)
    pairs = sources[0].data
    arrays: dict[str, np.ndarray] = {"names": np.array([key for _, _, key in pairs]),
                                     "val_names": np.array([key for _, _, key in val.get(name, [])])}
    for prefix, items in (("", pairs), ("val_", val.get(name, []))):
        for i, (image, labels, _) in enumerate(items):
            arrays[f"{prefix}img_{i:04d}"] = np.asarray(image, np.float32)
            arrays[f"{prefix}lbl_{i:04d}"] = np.asarray(labels).astype(_label_dtype(np.asarray(labels)))
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_npz(path, arrays)
    log.info("wrote %s: %d train + %d held-out images (%.0f s)", path, len(pairs), len(val.get(name, [])),
             time.perf_counter() - tic)
    return path


def write_test_data(work: Path, max_per_group: int | None) -> Path:
    """``WORK/data/test[_max<k>].npz``: every test group of ``eval_cells`` (once)."""
    path = work / "data" / ("test" + (f"_max{max_per_group}" if max_per_group else "") + ".npz")
    if path.is_file():
        return path
    from eval_cells import test_samples

    tic = time.perf_counter()
    groups = test_samples(max_per_group)
    save_test_npz(path, groups)
    log.info("wrote %s: %d test images in %d groups (%.0f s)", path, sum(map(len, groups.values())), len(groups),
             time.perf_counter() - tic)
    return path


def save_test_npz(path: Path, groups: dict[str, list]) -> None:
    """``{group: [Sample]}`` as the ``.npz`` the peer's ``eval`` reads (labels renumbered 1..n)."""
    arrays: dict[str, np.ndarray] = {}
    keys, labels_of = [], []
    for label, samples in groups.items():
        for s in samples:
            i = len(keys)
            keys.append(s.key)
            labels_of.append(label)
            arrays[f"img_{i:04d}"] = np.asarray(s.image, np.float32)
            arrays[f"lbl_{i:04d}"] = renumber(np.asarray(s.labels))
    arrays["keys"], arrays["groups"] = np.array(keys), np.array(labels_of)
    arrays["group_order"] = np.array(list(groups))
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_npz(path, arrays)


def test_groups(test_file: Path) -> dict[str, list]:
    """``{group: [objects with .key]}`` of a test ``.npz``, in ``eval_cells`` order."""
    with np.load(test_file) as z:
        keys, groups, order = (list(map(str, z[k])) for k in ("keys", "groups", "group_order"))
    return {g: [SimpleNamespace(key=k) for k, gg in zip(keys, groups) if gg == g] for g in order}


# ----------------------------------------------------------------------------- the peer


def run_peer(python: Path, what: str, spec: dict, spec_path: Path, log_path: Path) -> dict:
    """``peer_side.py WHAT SPEC`` with 2 threads; stderr to ``log_path``; its last stdout line is JSON."""
    from _peer import PEER_SIDE, thread_env

    _write_json(spec_path, spec)
    cmd = [str(python), str(PEER_SIDE), what, str(spec_path)]
    log.info("peer %s: %s (log: %s)", what, " ".join(cmd), log_path)
    with open(log_path, "a", encoding="utf-8") as err:
        err.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n")
        err.flush()
        proc = subprocess.run(cmd, env=thread_env(), stdout=subprocess.PIPE, stderr=err, text=True, check=False)
    if proc.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"peer {what} failed ({proc.returncode}); end of {log_path}:\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def train_run(args, python: Path, run_dir: Path, name: str, settings: dict, data_files: list[dict]) -> dict:
    """Train unless a finished run with the same settings is there; returns ``train.json``'s content."""
    record_path = run_dir / "train.json"
    if record_path.is_file() and not args.force:
        old = json.loads(record_path.read_text(encoding="utf-8"))
        if old["settings"] != settings:
            raise SystemExit(f"{run_dir} holds a run with other settings; use --name, another WORK, or --force\n"
                             f"  there: {old['settings']}\n  now:   {settings}")
        stopped, old_minutes = old["peer"]["stopped"], old.get("minutes")
        larger = args.minutes is None or (old_minutes is not None and args.minutes > old_minutes)
        if stopped == "done" or not larger:
            log.info("%s: trained already (%s, %d steps, %.0f s): skipped", name, stopped, old["peer"]["steps"],
                     old["peer"]["wall_s"])
            return old
        log.info("%s: stopped by a %.1f min budget before; a larger budget trains it again from the start",
                 name, old_minutes)
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = {**settings, "datasets": data_files, "out": str(run_dir), "model_name": name, "minutes": args.minutes,
            "nbase": list(settings["nbase"])}
    start = machine()
    tic = time.perf_counter()
    peer = run_peer(python, "train", spec, run_dir / "train_spec.json", run_dir / "train.log")
    record = {"name": name, "settings": settings, "minutes": args.minutes, "peer": peer,
              "driver_wall_s": round(time.perf_counter() - tic, 1), "machine_start": start, "machine_end": machine(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    _write_json(record_path, record)
    p = peer
    log.info("%s: %s after %d/%d steps, %.0f s wall (%.0f s CPU), %s s/step, setup %.0f s, diam_labels %.1f",
             name, p["stopped"], p["steps"], p["steps_planned"], p["wall_s"], p["cpu_s"], p["s_per_step"],
             p["setup_s"], p["diam_labels"])
    return record


def eval_run(args, python: Path, run_dir: Path, record: dict, test_file: Path, true_diameter: bool) -> dict:
    """Score the run's checkpoint on every image of ``test_file`` (resumes; skips when complete)."""
    out = run_dir / (f"eval_{test_file.stem}" + ("_truediam" if true_diameter else "") + ".json")
    checkpoint = Path(record["peer"]["checkpoint"])
    keys = [s.key for g in test_groups(test_file).values() for s in g]
    if out.is_file():
        old = json.loads(out.read_text(encoding="utf-8"))
        if (old.get("checkpoint_sha256") == record["peer"]["checkpoint_sha256"]
                and all(k in old.get("results", {}) for k in keys)):
            log.info("%s: scored already on %s: skipped", run_dir.name, out.name)
            return old
    spec = {"checkpoint": str(checkpoint), "nbase": record["settings"]["nbase"], "test_file": str(test_file),
            "out": str(out), "true_diameter": true_diameter}
    tic = time.perf_counter()
    summary = run_peer(python, "eval", spec, run_dir / "eval_spec.json", run_dir / "eval.log")
    scores = json.loads(out.read_text(encoding="utf-8"))
    scores["eval_wall_s"] = round(time.perf_counter() - tic, 1)
    scores["eval_summary"] = summary
    _write_json(out, scores)
    log.info("%s: scored %d images (%d now) in %.0f s, diameter %s", run_dir.name, summary["n_images"],
             summary["n_scored_now"], summary["wall_s"],
             "ground truth" if true_diameter else f"diam_labels {summary['diam_labels']:.1f}")
    return scores


# ----------------------------------------------------------------------------- summary


def row_label(record: dict, true_diameter: bool) -> str:
    s, p = record["settings"], record["peer"]
    data = s["data"]
    what = "+".join(f"{n}:{w:g}" for n, w in data) if len(data) > 1 else f"{data[0][0]} alone"
    label = f"Cellpose 3 same-data, {what}, {width_label(tuple(s['nbase']))}, {p['steps']} steps"
    if p["stopped"] != "done":
        label += f" (stopped by the budget, of {p['steps_planned']})"
    if s.get("optimizer", "sgd") != "sgd":
        label += f", {s['optimizer']}"
    if true_diameter:
        label += ", true diameter"
    return label


def summarize(work: Path, test_file: Path) -> dict:
    """Every run in WORK scored on ``test_file``: ``peer_cells.json`` and ``peer_cells.md``."""
    from eval_cells import table

    groups = test_groups(test_file)
    results, runs = {}, {}
    for run_dir in sorted(p for p in (work / "runs").glob("*") if (p / "train.json").is_file()):
        record = json.loads((run_dir / "train.json").read_text(encoding="utf-8"))
        for true_diameter in (False, True):
            path = run_dir / (f"eval_{test_file.stem}" + ("_truediam" if true_diameter else "") + ".json")
            if not path.is_file():
                continue
            scores = json.loads(path.read_text(encoding="utf-8"))
            if scores.get("checkpoint_sha256") != record["peer"]["checkpoint_sha256"]:
                continue
            label = row_label(record, true_diameter)
            results[label] = scores["results"]
            p = record["peer"]
            runs[label] = {"run": run_dir.name, "settings": record["settings"], "minutes": record["minutes"],
                           "date": record["date"], "stopped": p["stopped"], "steps": p["steps"],
                           "steps_planned": p["steps_planned"], "train_wall_s": p["wall_s"], "train_cpu_s": p["cpu_s"],
                           "setup_s": p["setup_s"], "s_per_step": p["s_per_step"],
                           "cpu_s_per_step": p.get("cpu_s_per_step"), "threads": p["threads"],
                           "diam_labels": p["diam_labels"], "n_params": p["n_params"], "datasets": p["datasets"],
                           "versions": p.get("versions"), "machine_start": record["machine_start"],
                           "machine_end": record["machine_end"], "eval_wall_s": scores.get("eval_wall_s"),
                           "eval_cpu_s": (scores.get("eval_summary") or {}).get("cpu_s"),
                           "diameter": scores["call"], "checkpoint": p["checkpoint"]}
    text = table(results, groups)
    budget = ["| run | steps | train wall | train CPU | s/step (wall / CPU) | setup | scoring wall | diam_labels "
              "| load avg (start) |", "|---|---|---|---|---|---|---|---|---|"]
    for label, r in runs.items():
        budget.append(f"| {label} | {r['steps']}/{r['steps_planned']} | {r['train_wall_s'] / 60:.1f} min | "
                      f"{r['train_cpu_s'] / 60:.1f} min | {_num(r['s_per_step'])} / {_num(r.get('cpu_s_per_step'))} | "
                      f"{r['setup_s']:.0f} s | "
                      f"{(r['eval_wall_s'] or 0) / 60:.1f} min | {r['diam_labels']:.1f} | "
                      f"{r['machine_start']['loadavg'][0]:.2f} |")
    report = {"made_by": "benchmarks/peer_train_cells.py", "test_file": test_file.name,
              "groups": {g: [s.key for s in v] for g, v in groups.items()}, "runs": runs, "results": results,
              "table": text, "budget_table": "\n".join(budget)}
    _write_json(work / f"{SUMMARY}.json", report)
    md = ["# Same-data Cellpose 3.1.1.3 baselines (scored by Cellpose itself)", "",
          "AP@0.5 / 0.75 / 0.9, mean over images; `CellposeModel.eval(img, channels=[0, 0], diameter=None)` "
          "(one scale for all images: diam_mean / diam_labels) unless the row says true diameter; "
          "`cellpose.metrics.average_precision`.", "", text, "",
          "CPU budget (2 threads; cores and load average in the JSON):", "", "\n".join(budget), ""]
    (work / f"{SUMMARY}.md").write_text("\n".join(md), encoding="utf-8")
    return report


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path, help="work folder (data, runs, summary); outside the repository")
    ap.add_argument("--data", action="append", default=None,
                    help="NAME[:WEIGHT] of a shared dataset (repeat; default: our cells mixture "
                         + " ".join(DEFAULT_DATA) + "); one NAME trains on that dataset alone")
    width = ap.add_mutually_exclusive_group()
    width.add_argument("--nbase", default=",".join(map(str, OUR_NBASE)), help="network widths (default: ours)")
    width.add_argument("--full-width", action="store_true", help="Cellpose's own widths 2,32,64,128,256")
    ap.add_argument("--epochs", type=int, default=300, help="n_epochs (default 300, as our cells)")
    ap.add_argument("--images-per-epoch", type=int, default=64, help="nimg_per_epoch (default 64, as our cells)")
    ap.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="sgd",
                    help="sgd: Cellpose CLI's defaults (lr 0.2); adamw: train_seg's defaults (lr 0.005)")
    ap.add_argument("--lr", type=float, default=None, help="learning rate (default: the optimizer's Cellpose default)")
    ap.add_argument("--n-val", type=int, default=2, help="train images per dataset held out (as train_cells.py)")
    ap.add_argument("--max-images", type=int, default=None, help="at most N train images per dataset (smoke runs)")
    ap.add_argument("--max-per-group", type=int, default=None, help="at most N test images per group (smoke runs)")
    ap.add_argument("--minutes", type=float, default=None, help="time budget of the training run (stops it)")
    ap.add_argument("--seed", type=int, default=0, help="torch seed of the initial weights")
    ap.add_argument("--true-diameter", action="store_true", help="also score at the ground truth's diameter")
    ap.add_argument("--name", default=None, help="run name (default: from data, width, length)")
    ap.add_argument("--force", action="store_true", help="train again even if the run is finished")
    ap.add_argument("--no-eval", action="store_true", help="train only")
    ap.add_argument("--peer-python", default=None,
                    help="the peer's python (default: $CELLSEG_PEER_PYTHON, else .peer_venv/bin/python)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    work = args.work.resolve()
    if work == REPO or REPO in work.parents:
        raise SystemExit(f"{work} is inside the repository; give a work folder outside it (e.g. ../peer_cells)")
    data = parse_data(args.data or list(DEFAULT_DATA))
    nbase = CELLPOSE_NBASE if args.full_width else tuple(int(v) for v in args.nbase.split(","))
    if nbase[0] != 2:
        raise SystemExit("--nbase must start with 2 (two input channels, as Cellpose's and our cells)")
    python = find_peer_python(args.peer_python)
    if python is None:
        raise SystemExit("the peer's python was not found: create it with `bash benchmarks/peer_env.sh`, "
                         "or set CELLSEG_PEER_PYTHON / --peer-python")
    opt = dict(OPTIMIZERS[args.optimizer])
    if args.lr is not None:
        opt["learning_rate"] = args.lr
    name = run_name(args, data, nbase)
    settings = {"data": [[n, w] for n, w in data], "n_val": args.n_val, "max_images": args.max_images,
                "nbase": list(nbase), "diam_mean": 30.0, "n_epochs": args.epochs,
                "nimg_per_epoch": args.images_per_epoch, "batch_size": 8, "optimizer": args.optimizer, **opt,
                "min_train_masks": 5, "save_every": 100, "seed": args.seed}
    tic = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    data_files = [{"name": n, "weight": w, "file": str(write_train_data(work, n, args.n_val, args.max_images))}
                  for n, w in data]
    test_file = None if args.no_eval else write_test_data(work, args.max_per_group)
    run_dir = work / "runs" / name
    record = train_run(args, python, run_dir, name, settings, data_files)
    if test_file is not None:
        for true_diameter in (False, True) if args.true_diameter else (False,):
            eval_run(args, python, run_dir, record, test_file, true_diameter)
        report = summarize(work, test_file)
        print("AP@0.5 / 0.75 / 0.9, mean over images (Cellpose 3.1.1.3 scoring itself)\n")
        print(report["table"])
        print("\n" + report["budget_table"])
        print(f"\n{work / (SUMMARY + '.json')}, {work / (SUMMARY + '.md')}")
    log.info("done in %.0f s", time.perf_counter() - tic)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

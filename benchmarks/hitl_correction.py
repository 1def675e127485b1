"""Does one HITL cycle teach the model the user's corrections? (issue 4, with the real ImageJ)

On a dsb2018 test-split image the bundled model gets partly wrong (colour tissue by default):

1. ``hitl next`` predicts it and writes the RoiSet.zip;
2. ImageJ 1.x (Debian ``ij.jar`` through scyjava) edits that zip as a user would in the ROI
   Manager: the predicted ROIs that match no true nucleus (IoU < 0.5) are deleted, the true
   nuclei the model missed are added (their ROIs decoded by ImageJ's ``RoiDecoder``), and the
   list is saved with ``RoiEncoder`` like "ROI Manager > Save";
3. ``hitl add`` imports the edited zip, ``hitl train`` fine-tunes one cycle (hitl recipe);
4. the new model predicts the same image again.

Printed: AP@0.5 of the prediction against the corrections before and after the cycle, and how
many of the deleted objects are gone and how many of the added nuclei are found (IoU >= 0.5).
This is the image the model was fine-tuned on: the question is whether it learned the
corrections, not whether it generalises.

Usage: ``.venv/bin/python benchmarks/hitl_correction.py [--kind color] [--index 0] [--epochs 100]``
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import tifffile

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import shared_data  # noqa: E402

from cellseg_bridge.core.metrics import average_precision, match_labels  # noqa: E402
from cellseg_bridge.datasets import dsb2018  # noqa: E402
from cellseg_bridge.fiji.jvm import start_imagej1  # noqa: E402
from cellseg_bridge.fiji.rois import save_java_rois  # noqa: E402
from cellseg_bridge.hitl import init_project, open_project  # noqa: E402
from cellseg_bridge.io.roi_export import labels_to_rois, write_roi_zip  # noqa: E402

logger = logging.getLogger("hitl_correction")


def imagej_correct(predicted_zip: Path, delete: set[int], added_zip: Path, out: Path) -> int:
    """Delete ROIs named ``cell_<id>`` for ids in ``delete``, append the ROIs of ``added_zip``, save.

    Everything through ImageJ's own classes; returns the number of ROIs saved.
    """
    from scyjava import jimport

    decoder = jimport("ij.io.RoiDecoder")

    def decode(path: Path) -> list:
        with zipfile.ZipFile(path) as zf:
            return [decoder(bytearray(zf.read(n)), n).getRoi() for n in zf.namelist()]

    kept = [r for r in decode(predicted_zip) if int(str(r.getName()).split("_")[-1]) not in delete]
    added = decode(added_zip)
    for k, roi in enumerate(added, start=1):
        roi.setName(f"added_{k:04d}")
    rois = kept + added
    save_java_rois(rois, out)
    return len(rois)


def found(objects: np.ndarray, ids: set[int], pred: np.ndarray) -> int:
    """How many of the labels ``ids`` of ``objects`` have a match (IoU >= 0.5) in ``pred``."""
    if not ids:
        return 0
    sub = np.where(np.isin(objects, list(ids)), objects, 0)
    return len(match_labels(sub, pred)[0])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--imagej-edit"]:
        src, ids, added_zip, out = argv[1:5]
        start_imagej1()
        print(imagej_correct(Path(src), {int(i) for i in ids.split(",") if i}, Path(added_zip), Path(out)))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="nuclei")
    ap.add_argument("--kind", default="color", choices=["fluo", "color", "bf_gray"])
    ap.add_argument("--index", type=int, default=0, help="which test image of that kind")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--workdir", type=Path)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data = shared_data()
    if data is None:
        logger.error("../shared/data not found (set CELLSEG_SHARED)")
        return 2
    root = data / "dsb2018"
    image_id = dsb2018.select(dsb2018.read_split(root), "test", args.kind)[args.index]
    image, truth = dsb2018.load_sample(root, image_id)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="hitl_correction_"))
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"{image_id[:12]}.tif"
    tifffile.imwrite(path, image)
    proj = init_project(work / "project", [path], model=args.model, n_epochs=args.epochs, holdout_every=0)
    first = proj.next_image()
    before = tifffile.imread(first.labels).reshape(truth.shape).astype(np.int64)
    t_ids, p_ids, _ = match_labels(truth, before)
    false_pos = set(np.unique(before[before > 0]).tolist()) - set(p_ids.tolist())
    missed = set(np.unique(truth[truth > 0]).tolist()) - set(t_ids.tolist())
    missed_labels = np.where(np.isin(truth, list(missed)), truth, 0)
    added_zip = write_roi_zip(labels_to_rois(missed_labels), work / "missed_RoiSet.zip")
    corrected_zip = work / "corrected_RoiSet.zip"
    # ImageJ runs in a child process: a JVM inside the training process crashed it (SIGSEGV after
    # training, seen 2026-11-29), presumably the JVM's signal handling against torch/numba threads
    edit = subprocess.run([sys.executable, __file__, "--imagej-edit", str(first.rois),
                           ",".join(map(str, sorted(false_pos))), str(added_zip), str(corrected_zip)],
                          capture_output=True, text=True, check=True)
    n_rois = int(edit.stdout.strip().splitlines()[-1])
    added = proj.add_correction(path, corrected_zip)
    corrected = tifffile.imread(proj.directory / proj.find_image(path)["correction"]["labels"])
    corrected = corrected.reshape(truth.shape).astype(np.int64)

    t0 = time.perf_counter()
    record = proj.train(evaluate=False)
    seconds = time.perf_counter() - t0
    after_run = open_project(proj.directory).next_image(path)
    after = tifffile.imread(after_run.labels).reshape(truth.shape).astype(np.int64)

    result = {
        "image": image_id, "kind": args.kind, "shape": list(truth.shape), "model": args.model,
        "epochs": args.epochs, "train_seconds": round(seconds, 1), "cycle_model": record["model"],
        "predicted": len(np.unique(before)) - 1, "deleted_in_imagej": len(false_pos),
        "added_in_imagej": len(missed), "rois_saved_by_imagej": n_rois, "changes": added.changes,
        "ap50_vs_corrections_before": float(average_precision(corrected, before)[0][0]),
        "ap50_vs_corrections_after": float(average_precision(corrected, after)[0][0]),
        "deleted_still_predicted_after": found(before, false_pos, after),
        "added_found_before": found(truth, missed, before),
        "added_found_after": found(truth, missed, after),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``benchmarks/peer_train_cells.py``: the real peer (Cellpose 3.1.1.3) trains and scores itself, tiny.

The end-to-end smoke needs the peer's python (``.peer_venv``, made by
``bash benchmarks/peer_env.sh``, or ``$CELLSEG_PEER_PYTHON``) and ``../shared/data``; it
skips with the reason when either is missing. About two minutes on the shared 2-core CPU.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from benchmarks import eval_cells
from benchmarks import peer_train_cells as ptc  # the repository root is on pytest's pythonpath

TINY = ["--max-images", "2", "--nbase", "2,8,16,32", "--images-per-epoch", "8", "--max-per-group", "1"]


def _peer_python():
    python = ptc.find_peer_python()
    if python is None:
        pytest.skip("the peer's python is absent: `bash benchmarks/peer_env.sh` creates .peer_venv "
                    "(or set CELLSEG_PEER_PYTHON to a python with cellpose 3.1.1.3)")
    probe = subprocess.run([str(python), "-c", "import cellpose, torch"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cellpose is not importable by the peer's python {python}: {probe.stderr.strip()[-200:]}")
    return python


def test_bad_input_is_refused_before_any_work(tmp_path):
    with pytest.raises(SystemExit, match="must be > 0"):
        ptc.main([str(tmp_path / "w"), "--data", "dsb2018:0"])
    with pytest.raises(SystemExit, match="must be a number"):
        ptc.main([str(tmp_path / "w"), "--data", "dsb2018:lots"])
    with pytest.raises(SystemExit, match="inside the repository"):
        ptc.main([str(ptc.REPO / "peer_runs")])
    with pytest.raises(SystemExit, match="peer's python was not found"):
        ptc.main([str(tmp_path / "w"), "--peer-python", str(tmp_path / "no_python")])
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_smoke_trains_scores_and_skips_finished_work(shared_data, tmp_path, monkeypatch):
    python = _peer_python()
    work = tmp_path / "work"
    args = [str(work), "--epochs", "2", "--peer-python", str(python), *TINY]
    assert ptc.main(args) == 0  # the default mixture, 2 images per dataset, 2 steps
    report = json.loads((work / "peer_cells.json").read_text())
    ((label, run),) = report["runs"].items()
    assert run["stopped"] == "done" and run["steps"] == run["steps_planned"] == 2
    assert run["settings"]["data"] == [["usiigaci", 0.35], ["bbbc030", 0.25], ["dsb2018", 0.4]]
    assert run["settings"]["nbase"] == [2, 8, 16, 32] and run["versions"]["cellpose"] == "3.1.1.3"
    for d in run["datasets"]:  # per-image probability = dataset weight / its images
        assert d["prob_per_image"] * d["n_used"] == pytest.approx(d["weight"])
    per_image = report["results"][label]
    assert len(per_image) == len(eval_cells.GROUPS)  # one test image per group
    for v in per_image.values():
        assert len(v["ap"]) == 3 and 0 <= min(v["ap"]) <= max(v["ap"]) <= 1
        assert v["diameter"] == pytest.approx(run["diam_labels"])  # diameter=None: the model's diam_labels
    assert report["table"].count("\n") == 2 and "| usiigaci (1) |" in report["table"]
    assert (work / "peer_cells.md").read_text().count(label) == 2  # AP table and budget table

    def no_peer(*a, **k):
        raise AssertionError("finished work was run again")

    monkeypatch.setattr(ptc, "run_peer", no_peer)
    assert ptc.main(args) == 0
    assert json.loads((work / "peer_cells.json").read_text())["results"] == report["results"]
    monkeypatch.undo()

    # one dataset alone is one call; a budget stops it (1 of 3 steps: setup alone takes longer)
    assert ptc.main([str(work), "--data", "dsb2018", "--epochs", "3", "--minutes", "0.001",
                     "--peer-python", str(python), *TINY]) == 0
    report = json.loads((work / "peer_cells.json").read_text())
    assert len(report["runs"]) == 2
    ((alone_label, alone),) = [(k, r) for k, r in report["runs"].items() if "dsb2018 alone" in k]
    assert alone["stopped"] == "budget" and alone["steps"] == 1 and alone["steps_planned"] == 3
    assert "stopped by the budget" in alone_label and len(report["results"][alone_label]) == len(eval_cells.GROUPS)


@pytest.mark.slow
def test_peer_scoring_reproduces_the_golden_scores_of_the_shared_checkpoint(shared_data, shared_models, tmp_path):
    """The scoring path (our reader -> npz -> Cellpose's eval and metrics) gives, image by image, the
    AP that ``peer_golden.py`` recorded for the shared checkpoint (full width, Cellpose's own loader)."""
    python = _peer_python()
    checkpoint = shared_models / "cellpose3_dsb2018_nuclei.pth"
    if not checkpoint.is_file():
        pytest.skip(f"shared checkpoint not found at {checkpoint}")
    golden = json.loads((ptc.REPO / "tests" / "data" / "peer_golden_dsb2018.json").read_text())["per_image"]
    from cellseg_bridge import datasets

    fluo = [s for s in datasets.load("dsb2018", "test") if s.modality == "fluo"][:3]
    test_file = tmp_path / "fluo.npz"
    ptc.save_test_npz(test_file, {"dsb2018 fluo": fluo})
    spec = {"checkpoint": str(checkpoint), "nbase": None, "test_file": str(test_file),
            "out": str(tmp_path / "scores.json"), "true_diameter": False}
    summary = ptc.run_peer(python, "eval", spec, tmp_path / "spec.json", tmp_path / "eval.log")
    assert summary["n_scored_now"] == 3
    scores = json.loads((tmp_path / "scores.json").read_text())
    for s in fluo:
        assert scores["results"][s.key]["ap"] == pytest.approx(golden[s.name]["ap_vs_truth"], abs=1e-4), s.name

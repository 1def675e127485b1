"""``cellseg segment``: kill -9 and Ctrl-C in the middle of a batch, then the same command again.

"Identical" here means bit-identical label images: segmentation is deterministic
on the CPU, so every label image written after the faults must equal the one of an
uninterrupted run, and no partial output or staging folder may remain.
"""

from __future__ import annotations

import json

import numpy as np
import tifffile
from click.testing import CliRunner

from cellseg_bridge.cli import main
from cellseg_bridge.datasets.synthetic import NucleiSpec, synthetic_nuclei
from tests.faults.conftest import SIGINT, SIGKILL, Run

SEGMENT = ["segment", "in", "--out", "in", "--model", "nuclei", "--diameter", "12", "--no-rois", "--no-csv"]
N_IMAGES = 6


def _images(folder):
    (folder / "in").mkdir(parents=True)
    for i in range(N_IMAGES):
        image, _ = synthetic_nuclei(NucleiSpec(shape=(64, 64), n_nuclei=5, diameter=12.0), seed=i)
        tifffile.imwrite(folder / "in" / f"img{i}.tif", image)


def _labels(folder):
    return {p.name: tifffile.imread(p) for p in sorted((folder / "in").glob("*_labels.ome.tif"))}


def test_kill9_then_ctrl_c_then_rerun_gives_the_uninterrupted_labels(tmp_path, monkeypatch):
    ref, run = tmp_path / "ref", tmp_path / "run"
    _images(ref)
    _images(run)
    monkeypatch.chdir(ref)
    result = CliRunner().invoke(main, ["-q", *SEGMENT])
    assert result.exit_code == 0, result.output
    expected = _labels(ref)
    assert len(expected) == N_IMAGES and all(lab.max() > 0 for lab in expected.values())

    def staging():  # a staged write in progress: the moment a kill -9 hurts most
        return any(p.name.startswith(".cellseg-staging-") for p in (run / "in").iterdir())

    code, out = Run(["-q", *SEGMENT], run, tmp_path / "kill.log").signal_when(staging, SIGKILL)
    assert code == -SIGKILL, out
    before = len(_labels(run))
    assert before < N_IMAGES  # it really stopped in the middle

    def one_more_done():
        return len(_labels(run)) > before

    code, out = Run(["-q", *SEGMENT], run, tmp_path / "int.log").signal_when(one_more_done, SIGINT)
    assert code == 130, out
    assert "interrupted: " in out and " segmented, " in out and "run the same command again" in out
    assert "Traceback" not in out
    done = len(_labels(run))
    assert done < N_IMAGES

    monkeypatch.chdir(run)
    result = CliRunner().invoke(main, ["-q", *SEGMENT, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["counts"] == {"done": N_IMAGES - done, "skipped": done, "failed": 0}
    got = _labels(run)
    assert got.keys() == expected.keys()
    for name, lab in expected.items():
        np.testing.assert_array_equal(got[name], lab, err_msg=name)
    leftovers = [p.name for p in (run / "in").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the staging folder of the killed run was removed
    # a third run finds its own outputs done and segments none of them (issue 19 item 7)
    result = CliRunner().invoke(main, ["-q", *SEGMENT, "--json"])
    assert json.loads(result.output)["counts"] == {"done": 0, "skipped": N_IMAGES, "failed": 0}

"""``cellseg train``: Ctrl-C and kill -9 in the middle of fine-tuning, then the printed ``--resume`` command.

"Identical" here: training is seeded and runs on one CPU thread, and an interrupted
epoch is rolled back to its start, so a run interrupted by Ctrl-C and resumed gives
bit-identical final weights and the same loss per epoch as an uninterrupted run. After
kill -9 nothing can be saved at the moment of the kill: the run resumes from the last
periodic checkpoint (``--save-every``) and redoes the epochs after it with the same
draws, so the final weights are again identical.
"""

from __future__ import annotations

import csv
import re
import shlex

import pytest
import tifffile
import torch
from click.testing import CliRunner

from cellseg_bridge.cli import main
from cellseg_bridge.datasets.synthetic import NucleiSpec, synthetic_nuclei
from tests.faults.conftest import SIGINT, SIGKILL, Run

EPOCHS = 12
#: The issue's case: fine-tuning a pretrained model whose widths differ from a new network's (a tiny one here).
OPTIONS = ["--epochs", str(EPOCHS), "--crop-size", "32", "--batch-size", "2", "--images-per-epoch", "2",
           "--val-every", "0", "--save-every", "4", "--no-fit-size-model", "--seed", "5"]


def _data(folder):
    folder.mkdir(parents=True)
    for i in range(2):
        image, labels = synthetic_nuclei(NucleiSpec(shape=(48, 48), n_nuclei=5, diameter=12.0), seed=i)
        tifffile.imwrite(folder / f"img{i}.tif", image)
        tifffile.imwrite(folder / f"img{i}_masks.tif", labels)


def _weights(out):
    return torch.load(out / "weights.pth", map_location="cpu", weights_only=True)


def _curves(out):
    with open(out / "curves.csv", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _epochs_saved(out):
    state = out / "checkpoint" / "state.pt"
    if not state.is_file():
        return 0
    try:
        return int(torch.load(state, map_location="cpu", weights_only=True)["epoch"])
    except Exception:  # noqa: BLE001 - read while being replaced: try again
        return 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model):
    """An uninterrupted run: its weights and curves."""
    root = tmp_path_factory.mktemp("train_ref")
    _data(root / "data")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    result = CliRunner().invoke(main, ["-q", "train", str(root / "data"), "--out", str(root / "m"),
                                       "--pretrained", str(tiny_model), *OPTIONS])
    torch.set_num_threads(before)
    assert result.exit_code == 0, result.output
    return _weights(root / "m"), _curves(root / "m")


@pytest.mark.parametrize("sig", [SIGINT, SIGKILL], ids=["ctrl-c", "kill-9"])
def test_interrupted_training_resumes_to_the_uninterrupted_weights(tmp_path, reference, tiny_model, sig):
    _data(tmp_path / "data")
    out = tmp_path / "m"
    command = ["train", str(tmp_path / "data"), "--out", str(out), "--pretrained", str(tiny_model), *OPTIONS]
    code, log = Run(command, tmp_path, tmp_path / "train.log").signal_when(lambda: _epochs_saved(out) >= 4, sig)
    if sig == SIGINT:
        assert code == 130, log
        assert "Traceback" not in log
        printed = re.search(r"resume with: cellseg (.*--resume)", log)
        assert printed, log
        again = shlex.split(printed.group(1))
        assert "--pretrained" not in again  # the printed command: the options come from the checkpoint
    else:
        assert code == -SIGKILL
        again = ["train", str(tmp_path / "data"), "--out", str(out), "--resume"]
    assert _epochs_saved(out) < EPOCHS  # really interrupted before the end

    result = CliRunner().invoke(main, ["-q", *again])
    assert result.exit_code == 0, result.output
    assert f"trained {EPOCHS}/{EPOCHS} epochs" in result.output
    weights, curves = reference
    got = _weights(out)
    assert got.keys() == weights.keys()
    for key in weights:
        assert torch.equal(got[key], weights[key]), key
    rows = _curves(out)
    assert [r["epoch"] for r in rows] == [str(e) for e in range(1, EPOCHS + 1)]  # integers after a resume
    hidden = [p.name for folder in (out, out / "checkpoint") for p in folder.iterdir() if p.name.startswith(".")]
    assert hidden == []  # no partial file of the interrupted run is left
    assert [r["loss"] for r in rows] == [r["loss"] for r in curves]


def test_resume_with_options_that_contradict_the_checkpoint_is_one_line(tmp_path, tiny_model):
    _data(tmp_path / "data")
    out = tmp_path / "m"
    short = ["--pretrained", str(tiny_model), "--epochs", "2", "--crop-size", "32", "--batch-size", "2",
             "--images-per-epoch", "2", "--val-every", "0", "--no-fit-size-model"]
    assert CliRunner().invoke(main, ["-q", "train", str(tmp_path / "data"), "--out", str(out), *short]).exit_code == 0
    result = CliRunner().invoke(main, ["-q", "train", str(tmp_path / "data"), "--out", str(out), "--resume",
                                       "--pretrained", "nuclei", "--device", "cpu"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "cannot resume with other options than the checkpoint's" in lines[0] and "pretrained='nuclei'" in lines[0]
    assert "device" not in lines[0]  # where it runs may change
    # an old state without options and another network: still one line, not the size-mismatch dump
    state = torch.load(out / "checkpoint" / "state.pt", weights_only=True)
    del state["options"]
    torch.save(state, out / "checkpoint" / "state.pt")
    result = CliRunner().invoke(main, ["-q", "train", str(tmp_path / "data"), "--out", str(out), "--resume"])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert "does not fit this network" in result.output and "--pretrained" in result.output

"""``cellseg hitl train``: Ctrl-C in the middle of a cycle, status meanwhile, then ``hitl train DIR`` again.

"Identical" as for ``train``: the cycle is seeded, runs on one CPU thread and an
interrupted epoch is rolled back, so the resumed cycle's weights are bit-identical
to those of an uninterrupted cycle of a project built the same way.
"""

from __future__ import annotations

import json
import re

import numpy as np
import torch
from click.testing import CliRunner

from cellseg_bridge.cli import main
from cellseg_bridge.hitl import init_project
from cellseg_bridge.io.roi_export import labels_to_rois, write_roi_zip
from tests.faults.conftest import SIGINT, Run, write_images
from tests.hitl.conftest import FAST_TRAIN

EPOCHS = 10


def _project(folder, images, model):
    proj = init_project(folder, images, model=model, diameter=16.0, n_epochs=4, train_options=FAST_TRAIN)
    for image in images[:2]:
        labels = np.load(image.with_name(image.stem + "_truth.npy"))
        proj.add_correction(image, write_roi_zip(labels_to_rois(labels), folder.parent / f"{folder.name}_{image.stem}.zip"))
    return proj.directory


def _epochs_saved(partial):
    state = partial / "checkpoint" / "state.pt"
    try:
        return int(torch.load(state, map_location="cpu", weights_only=True)["epoch"]) if state.is_file() else 0
    except Exception:  # noqa: BLE001 - read while being replaced: try again
        return 0


def test_ctrl_c_of_a_cycle_then_the_plain_command_resumes_it(tmp_path, tiny_model):
    images = write_images(tmp_path / "images", range(3))
    ref = _project(tmp_path / "ref", images, tiny_model)
    result = CliRunner().invoke(main, ["-q", "hitl", "train", str(ref), "--epochs", str(EPOCHS), "--no-eval"])
    assert result.exit_code == 0, result.output
    expected = torch.load(ref / "models" / "cycle_001" / "weights.pth", weights_only=True)

    proj = _project(tmp_path / "proj", images, tiny_model)
    partial = proj / "models" / "cycle_001.partial"
    run = Run(["hitl", "train", str(proj), "--epochs", str(EPOCHS), "--no-eval"], tmp_path, tmp_path / "hitl.log")

    def mid_cycle():
        return _epochs_saved(partial) >= 3

    status = {}

    def then_status():  # while `hitl train` holds the project lock: read-only status works
        if not mid_cycle():
            return False
        result = CliRunner().invoke(main, ["hitl", "status", str(proj), "--no-eval", "--json"])
        status.update(code=result.exit_code, output=result.output)
        return True

    code, log = run.signal_when(then_status, SIGINT)
    assert status["code"] == 0, status["output"]
    assert json.loads(status["output"])["interrupted"]["cycle"] == 1
    assert code == 130, log
    assert "Traceback" not in log
    printed = re.search(r"`cellseg (hitl train [^`]*)` resumes", log)
    assert printed and f"--epochs {EPOCHS}" in printed.group(1), log
    assert 3 <= _epochs_saved(partial) < EPOCHS

    # the command the user ran (without --epochs) continues the interrupted cycle too
    result = CliRunner().invoke(main, ["hitl", "train", str(proj), "--no-eval", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output[result.output.index("{"):])
    assert record["resumed"] and record["epochs"] == EPOCHS
    got = torch.load(proj / "models" / "cycle_001" / "weights.pth", weights_only=True)
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    curves = (proj / "models" / "cycle_001" / "curves.csv").read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in curves] == [str(e) for e in range(1, EPOCHS + 1)]

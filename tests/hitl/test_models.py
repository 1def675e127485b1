"""A cycle that scores below the current model does not become current; ``hitl use`` / ``hitl export``.

Issue 18 defect 8. The held-out scores are stand-ins (the real cycles train tiny networks whose AP
says nothing), so that the drop 0.844 -> 0.809 of the issue is reproduced exactly.
"""

from __future__ import annotations

import logging

import numpy as np
from click.testing import CliRunner

from cellseg_bridge.cli import main
from cellseg_bridge.config import MODELS_DIR_ENV
from cellseg_bridge.hitl import cycle as cycle_mod
from cellseg_bridge.hitl import init_project, open_project
from cellseg_bridge.io.roi_export import labels_to_rois, write_roi_zip
from cellseg_bridge.nn.registry import resolve_model
from cellseg_bridge.nn.store import sha256_file
from tests.hitl.conftest import FAST_TRAIN

AP = {"initial": 0.5, "cycle_001": 0.844, "cycle_002": 0.809}


def fake_holdout_score(project, model, *, compute=True, device="auto"):
    return {"ap50": AP[model], "tp": 1, "fp": 0, "fn": 0, "n_images": 1, "images": {}}


def test_worse_cycle_is_not_made_current_then_use_and_export(tmp_path, images, tiny_model, monkeypatch, caplog):
    monkeypatch.setattr(cycle_mod, "holdout_score", fake_holdout_score)
    proj = init_project(tmp_path / "proj", images, model=tiny_model, diameter=16.0, n_epochs=2,
                        train_options=FAST_TRAIN)
    for image, holdout in zip(images[:3], (False, False, True)):
        labels = np.load(image.with_name(image.stem + "_truth.npy"))
        proj.add_correction(image, write_roi_zip(labels_to_rois(labels), tmp_path / f"{image.stem}.zip"),
                            holdout=holdout)
    first = proj.train()
    assert "not_current" not in first and open_project(proj.directory).current_model == "cycle_001"
    with caplog.at_level(logging.WARNING):
        second = proj.train()
    assert second["not_current"]["current"] == "cycle_001"
    assert "cycle_002: held-out AP@0.5 0.809 is below 0.844 of the current model cycle_001" in caplog.text
    assert open_project(proj.directory).current_model == "cycle_001"  # the best stays current
    assert open_project(proj.directory).manifest["cycles"][-1]["not_current"]["ap50"] == 0.809

    used = CliRunner().invoke(main, ["hitl", "use", str(proj.directory), "2"])
    assert used.exit_code == 0 and "current model: cycle_002 (was cycle_001)" in used.output
    assert open_project(proj.directory).current_model == "cycle_002"
    unknown = CliRunner().invoke(main, ["hitl", "use", str(proj.directory), "cycle_009"])
    assert unknown.exit_code == 1 and "no model 'cycle_009'" in unknown.output

    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "cache"))
    exported = CliRunner().invoke(main, ["hitl", "export", str(proj.directory), "my_nuclei"])
    assert exported.exit_code == 0, exported.output
    weights = open_project(proj.directory).model_path("cycle_002")
    assert sha256_file(resolve_model("my_nuclei")) == sha256_file(weights)

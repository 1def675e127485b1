"""Training cycles are crash-safe: an interruption leaves the previous model current and resumes."""

import sys

import numpy as np
import pytest

from cellseg_bridge.hitl import cycle as cycle_mod
from cellseg_bridge.hitl import init_project, open_project
from cellseg_bridge.io.roi_export import labels_to_rois, write_roi_zip
from cellseg_bridge.training import loop
from tests.hitl.conftest import FAST_TRAIN


def _project(tmp_path, images, tiny_model, n=2):
    proj = init_project(tmp_path / "proj", images, model=tiny_model, diameter=16.0, n_epochs=4,
                        train_options=FAST_TRAIN)
    for image in images[:n]:
        labels = np.load(image.with_name(image.stem + "_truth.npy"))
        proj.add_correction(image, write_roi_zip(labels_to_rois(labels), tmp_path / f"{image.stem}.zip"))
    return proj


def test_interrupted_cycle_keeps_previous_model_and_resumes(tmp_path, images, tiny_model, monkeypatch):
    proj = _project(tmp_path, images, tiny_model)
    real_loss, calls = loop.training_loss, []

    def interrupting_loss(*args):
        calls.append(1)
        if len(calls) == 3:  # during epoch 3 (one step per epoch)
            raise KeyboardInterrupt
        return real_loss(*args)

    monkeypatch.setattr(loop, "training_loss", interrupting_loss)
    with pytest.raises(KeyboardInterrupt):
        proj.train(evaluate=False)
    monkeypatch.setattr(loop, "training_loss", real_loss)

    proj = open_project(proj.directory)
    assert proj.current_model == "initial" and proj.manifest["cycles"] == []
    status = proj.status(evaluate=False)
    assert status["interrupted"]["cycle"] == 1 and status["interrupted"]["resumable"]
    assert status["interrupted"]["epochs_done"] == 2
    assert not (proj.directory / "models" / "cycle_001").exists()
    assert proj.next_image().model == "initial"  # the previous model is still usable

    record = proj.train(evaluate=False)
    assert record["resumed"] and record["epochs"] == 4 and record["model"] == "cycle_001"
    assert (proj.directory / record["weights"]).is_file()
    assert not (proj.directory / "models" / "cycle_001.partial").exists()
    assert not (proj.directory / "models" / "cycle_001" / "checkpoint").exists()
    proj = open_project(proj.directory)
    assert proj.current_model == "cycle_001"
    nxt = proj.next_image()
    assert nxt.model == "cycle_001" and nxt.rois.parent.name == "cycle_001"


def test_crash_before_the_manifest_update_is_adopted_not_retrained(tmp_path, images, tiny_model, monkeypatch):
    proj = _project(tmp_path, images, tiny_model)
    real_write = cycle_mod.write_manifest

    def crash(*args):
        raise OSError("power cut")

    monkeypatch.setattr(cycle_mod, "write_manifest", crash)
    with pytest.raises(OSError):
        proj.train(evaluate=False)
    monkeypatch.setattr(cycle_mod, "write_manifest", real_write)
    proj = open_project(proj.directory)
    assert proj.current_model == "initial" and (proj.directory / "models" / "cycle_001" / "weights.pth").is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("the complete cycle must be adopted, not trained again")

    monkeypatch.setattr(sys.modules["cellseg_bridge.training"], "train", no_training)
    record = proj.train(evaluate=False)
    assert record["model"] == "cycle_001" and open_project(proj.directory).current_model == "cycle_001"


def test_changed_corrections_restart_an_interrupted_cycle(tmp_path, images, tiny_model, monkeypatch):
    proj = _project(tmp_path, images, tiny_model, n=1)

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "training_loss", interrupt)
    with pytest.raises(KeyboardInterrupt):
        proj.train(evaluate=False)
    monkeypatch.undo()
    labels = np.load(images[1].with_name(images[1].stem + "_truth.npy"))
    proj.add_correction(images[1], write_roi_zip(labels_to_rois(labels), tmp_path / "b.zip"))
    record = proj.train(n_epochs=2, evaluate=False)
    assert not record["resumed"] and record["train_images"] == ["nuclei_00", "nuclei_01"] and record["epochs"] == 2

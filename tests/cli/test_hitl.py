"""``cellseg hitl``: the CLI parses, calls the API and reports (errors as one line, exit status 1)."""

import json

import numpy as np
from click.testing import CliRunner

from cellseg_bridge.cli import main
from cellseg_bridge.io.roi_export import labels_to_rois, write_roi_zip
from tests.hitl.conftest import NBASE, write_images


def _tiny(path):
    import torch

    from cellseg_bridge.nn.checkpoint import save_checkpoint
    from cellseg_bridge.nn.net import CellposeUNet

    torch.manual_seed(0)
    save_checkpoint(CellposeUNet(NBASE, 3, 3, diam_mean=16.0), path)
    return path


def test_hitl_cli_init_next_add_status_and_errors(tmp_path):
    runner = CliRunner()
    model = _tiny(tmp_path / "tiny.pth")
    images = write_images(tmp_path / "images", [0, 1])
    proj = tmp_path / "proj"
    res = runner.invoke(main, ["hitl", "init", str(proj), *map(str, images), "--model", str(model),
                               "--diameter", "16", "--epochs", "3", "--crop-size", "64"])
    assert res.exit_code == 0, res.output
    assert "2 image(s)" in res.output

    res = runner.invoke(main, ["hitl", "next", str(proj), "--json"])
    assert res.exit_code == 0, res.output
    nxt = json.loads(res.stdout)["next"]
    assert nxt["image_id"] == "nuclei_00" and nxt["model"] == "initial" and nxt["rois"].endswith("_RoiSet.zip")

    truth = np.load(tmp_path / "images" / "nuclei_00_truth.npy")
    zp = write_roi_zip(labels_to_rois(truth), tmp_path / "corrected.zip")
    res = runner.invoke(main, ["hitl", "add", str(proj), "nuclei_00", str(zp)])
    assert res.exit_code == 0, res.output
    assert f"{len(np.unique(truth)) - 1} cells" in res.output and "(train)" in res.output

    res = runner.invoke(main, ["hitl", "status", str(proj), "--json", "--no-eval"])
    assert res.exit_code == 0, res.output
    status = json.loads(res.stdout)
    assert status["counts"]["corrected"] == 1 and status["cycles"] == 0
    assert status["models"][0]["model"] == "initial" and status["next_image"] == "nuclei_01"
    res = runner.invoke(main, ["hitl", "status", str(proj), "--no-eval"])
    assert res.exit_code == 0 and "nuclei_00" in res.output and "initial" in res.output

    big = np.zeros((400, 400), np.uint16)
    big[300:320, 300:320] = 1
    wrong = write_roi_zip(labels_to_rois(big), tmp_path / "wrong.zip")
    res = runner.invoke(main, ["hitl", "add", str(proj), "nuclei_01", str(wrong)])
    assert res.exit_code == 1 and "wrong.zip" in res.output and "does not fit" in res.output
    res = runner.invoke(main, ["hitl", "add", str(proj), str(tmp_path / "other.tif"), str(zp)])
    assert res.exit_code == 1 and "not in the HITL project" in res.output
    res = runner.invoke(main, ["hitl", "status", str(tmp_path / "nothing")])
    assert res.exit_code == 1 and "not a HITL project" in res.output
    other = write_images(tmp_path / "rgb", [5], channels=3)
    res = runner.invoke(main, ["hitl", "init", str(tmp_path / "p2"), str(images[0]), str(other[0]),
                               "--model", str(model)])
    assert res.exit_code == 1 and "different channel counts" in res.output

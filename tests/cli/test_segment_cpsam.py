"""``cellseg segment``: a Cellpose 3 U-Net, a restoration model and a Cellpose-SAM file in one environment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from click.testing import CliRunner

from cellseg_bridge.cli import main
from cellseg_bridge.datasets.synthetic import NucleiSpec, synthetic_nuclei
from cellseg_bridge.io.writers import write_ome_tiff
from cellseg_bridge.nn.checkpoint import save_checkpoint
from cellseg_bridge.nn.net import CellposeUNet

SAM = Path(__file__).parents[1] / "data" / "peer4_golden_cpsam_small.pth"  # written by Cellpose 4's code
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli_cpsam")
    img = synthetic_nuclei(NucleiSpec(shape=(64, 72), n_nuclei=5, diameter=15), seed=3)[0]
    write_ome_tiff(np.stack([img, img[::-1]]), root / "two.ome.tif", dims="CYX", channel_names=["DAPI", "GFP"])
    torch.manual_seed(0)
    save_checkpoint(CellposeUNet((1, 4, 8, 16), nout=1, diam_mean=17.0), root / "restore" / "weights.pth")
    save_checkpoint(CellposeUNet((2, 4, 8, 16), nout=3, diam_mean=17.0), root / "cp3" / "weights.pth")
    return {"image": root / "two.ome.tif", "restore": root / "restore" / "weights.pth",
            "cp3": root / "cp3" / "weights.pth"}


def _segment(files, out: Path, model: Path, *extra: str):
    args = ["segment", str(files["image"]), "--out", str(out), "--model", str(model), "--restore",
            str(files["restore"]), "--device", "cpu", "--json", "--no-rois", "--no-csv", "--no-overlay", *extra]
    return CliRunner().invoke(main, args)


def test_cellpose3_restoration_and_cellpose_sam_in_one_environment(files, tmp_path):
    cp3 = _segment(files, tmp_path / "cp3", files["cp3"], "--channel", "DAPI", "--diameter", "17")
    assert cp3.exit_code == 0, cp3.output
    sam = _segment(files, tmp_path / "sam", SAM, "--channels", "GFP,DAPI", "--diameter", "15")
    assert sam.exit_code == 0, sam.output
    for result, out in ((cp3, tmp_path / "cp3"), (sam, tmp_path / "sam")):
        assert json.loads(result.stdout)["items"][0]["status"] == "done"
        labels = tifffile.imread(out / "two_labels.ome.tif")
        assert labels.shape[-2:] == (64, 72)


def test_cellpose_sam_cli_errors(files, tmp_path):
    bad_tile = _segment(files, tmp_path / "a", SAM, "--tile-size", "128")
    assert bad_tile.exit_code != 0 and "tiles of 256 px only" in bad_tile.output
    bad_channel = _segment(files, tmp_path / "b", SAM, "--channels", "DAPI,RFP")
    assert bad_channel.exit_code != 0 and "RFP" in bad_channel.output
    assert "Traceback" not in bad_tile.output + bad_channel.output

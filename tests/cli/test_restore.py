"""``cellseg restore`` and ``cellseg segment --restore`` through click."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cellseg_bridge.cli import main
from cellseg_bridge.datasets.synthetic import NucleiSpec, synthetic_nuclei
from cellseg_bridge.io.reader import open_image
from cellseg_bridge.io.writers import write_ome_tiff
from cellseg_bridge.nn.checkpoint import save_checkpoint
from cellseg_bridge.nn.net import CellposeUNet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli_restore")
    img = synthetic_nuclei(NucleiSpec(shape=(48, 56), n_nuclei=5, diameter=17), seed=2)[0]
    write_ome_tiff(img, root / "nuclei.ome.tif", dims="YX", channel_names=["DAPI"])
    torch.manual_seed(0)
    save_checkpoint(CellposeUNet((1, 4, 8, 16), nout=1, diam_mean=17.0), root / "restore" / "weights.pth")
    save_checkpoint(CellposeUNet((2, 4, 8, 16), nout=3, diam_mean=17.0), root / "seg" / "weights.pth")
    return {"image": root / "nuclei.ome.tif", "restore": root / "restore" / "weights.pth",
            "seg": root / "seg" / "weights.pth"}


def test_restore_json_lists_the_restored_file(files, tmp_path):
    result = CliRunner().invoke(main, ["restore", str(files["image"]), "--out", str(tmp_path), "--model",
                                       str(files["restore"]), "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    item = report["items"][0]
    assert item["status"] == "done" and item["input"] == str(files["image"])
    restored = Path(item["outputs"]["restored"])
    assert restored.is_file() and restored.name == "nuclei_restored.ome.tif"
    img = open_image(restored)
    assert img.dtype == np.float32 and img.sizes["Y"] == 48 and img.attrs["channel_names"] == ["DAPI"]
    assert report["counts"] == {"done": 1, "skipped": 0, "failed": 0}


def test_restore_unknown_type_and_missing_model_fail_clearly(files, tmp_path):
    bad = CliRunner().invoke(main, ["restore", str(files["image"]), "--out", str(tmp_path), "--type", "sharpen"])
    assert bad.exit_code != 0 and "unknown restoration type" in bad.output
    seg = CliRunner().invoke(main, ["restore", str(files["image"]), "--out", str(tmp_path), "--model",
                                    str(files["seg"]), "--device", "cpu"])
    assert seg.exit_code == 1 and "not a restoration network" in seg.output


def test_segment_restore_option(files, tmp_path):
    args = ["segment", str(files["image"]), "--out", str(tmp_path), "--model", str(files["seg"]),
            "--restore", str(files["restore"]), "--diameter", "17", "--device", "cpu", "--json", "--no-rois",
            "--no-csv", "--no-overlay"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["items"][0]["status"] == "done"
    assert (tmp_path / "nuclei_labels.ome.tif").is_file()
    chunked = CliRunner().invoke(main, [*args, "--chunked"])
    assert chunked.exit_code == 2 and "--restore cannot be combined with --chunked" in chunked.output

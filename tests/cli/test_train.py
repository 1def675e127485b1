"""``cellseg train``: parses, calls train(), reports; bad input is a one-line error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from cellseg_bridge.cli import main
from cellseg_bridge.datasets.synthetic import NucleiSpec, synthetic_nuclei

pytestmark = pytest.mark.usefixtures("one_torch_thread")


TINY = ["--epochs", "2", "--nbase", "2,4,8", "--crop-size", "32", "--batch-size", "2",
        "--images-per-epoch", "2", "--diam-mean", "10", "--val-every", "1"]


def _folder(path, n=2, suffix="_masks"):
    path.mkdir()
    for i in range(n):
        img, lab = synthetic_nuclei(NucleiSpec(shape=(48, 48), n_nuclei=5), seed=i)
        tifffile.imwrite(path / f"img{i}.tif", img)
        tifffile.imwrite(path / f"img{i}{suffix}.tif", lab)
    return path


def test_cli_train_writes_model(tmp_path):
    data = _folder(tmp_path / "data")
    val = _folder(tmp_path / "val", n=1)
    out = tmp_path / "model"
    r = CliRunner().invoke(main, ["-q", "train", str(data), "--out", str(out), "--val", str(val),
                                  "--seed", "3", *TINY])
    assert r.exit_code == 0, r.output
    assert "trained 2/2 epochs" in r.output and "validation AP@0.5" in r.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["nbase"] == [2, 4, 8] and cfg["provenance"]["seed"] == 3
    assert (out / "size_model.npz").is_file() and (out / "curves.csv").is_file()
    assert len((out / "curves.csv").read_text().splitlines()) == 3


def test_cli_train_masks_dir_and_suffix(tmp_path):
    data = _folder(tmp_path / "data", n=1, suffix="_labels")
    r = CliRunner().invoke(main, ["-q", "train", str(data), "--out", str(tmp_path / "m"),
                                  "--mask-suffix", "_labels", *TINY])
    assert r.exit_code == 0, r.output


def test_cli_train_bad_input(tmp_path):
    empty = tmp_path / "nomasks"
    empty.mkdir()
    tifffile.imwrite(empty / "a.tif", np.zeros((32, 32), np.uint16))
    r = CliRunner().invoke(main, ["train", str(empty), "--out", str(tmp_path / "o"), *TINY])
    assert r.exit_code == 1 and "no image/mask pairs" in r.output
    data = _folder(tmp_path / "data", n=1)
    r = CliRunner().invoke(main, ["train", str(data), "--out", str(tmp_path / "o"), "--resume", *TINY])
    assert r.exit_code == 1 and "nothing to resume" in r.output
    r = CliRunner().invoke(main, ["train", str(data), "--out", str(tmp_path / "o"), "--nbase", "2,x"])
    assert r.exit_code == 2 and "--nbase" in r.output


def test_cli_train_several_weighted_datasets(tmp_path):
    a = _folder(tmp_path / "phase", n=2)
    b = _folder(tmp_path / "dic", n=1)
    out = tmp_path / "model"
    r = CliRunner().invoke(main, ["-q", "train", "--data", f"{a}:3", "--data", str(b), "--out", str(out), *TINY])
    assert r.exit_code == 0, r.output
    datasets = json.loads((out / "config.json").read_text())["provenance"]["datasets"]
    assert [(d["name"], d["n_images"], d["weight"]) for d in datasets] == [("phase", 2, 3.0), ("dic", 1, 1.0)]
    assert datasets[0]["share"] == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give a training FOLDER"),
        (["--data", "{a}:0"], "positive"),
        (["--data", "{a}:-2"], "positive"),
        (["--data", "{a}", "--data", "{empty}:1"], "no image/mask pairs"),
    ],
)
def test_cli_train_bad_datasets(tmp_path, args, message):
    a = _folder(tmp_path / "a", n=1)
    (tmp_path / "empty").mkdir()
    args = [x.format(a=a, empty=tmp_path / "empty") for x in args]
    r = CliRunner().invoke(main, ["-q", "train", *args, "--out", str(tmp_path / "m"), *TINY])
    assert r.exit_code != 0 and message in r.output, r.output
    assert "Traceback" not in r.output

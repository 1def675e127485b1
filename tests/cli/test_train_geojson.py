"""``cellseg train`` on QuPath GeoJSON annotations (``NAME.geojson`` beside ``NAME.tif``)."""

from __future__ import annotations

import json

import pytest
import tifffile
from click.testing import CliRunner

from cellseg_bridge.cli import main
from cellseg_bridge.datasets.synthetic import NucleiSpec, synthetic_nuclei
from cellseg_bridge.io.geojson import labels_to_features, write_geojson

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["--epochs", "1", "--nbase", "2,4,8", "--crop-size", "32", "--batch-size", "2",
        "--images-per-epoch", "2", "--diam-mean", "10", "--val-every", "0", "--no-fit-size-model"]


def test_cli_train_from_geojson(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        img, lab = synthetic_nuclei(NucleiSpec(shape=(48, 48), n_nuclei=5), seed=i)
        tifffile.imwrite(data / f"img{i}.tif", img)
        write_geojson(labels_to_features(lab, object_type="annotation"), data / f"img{i}.geojson")
    out = tmp_path / "model"
    r = CliRunner().invoke(main, ["-q", "train", str(data), "--out", str(out), *TINY])
    assert r.exit_code == 0, r.output
    assert "trained 1/1 epochs" in r.output
    assert json.loads((out / "config.json").read_text())["nbase"] == [2, 4, 8]

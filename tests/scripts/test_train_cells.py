"""scripts/train_cells.py and scripts/fit_style_index.py on the shared datasets (tiny network, seconds)."""

from __future__ import annotations

import json

import pytest

from scripts import fit_style_index, train_cells

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_train_on_two_datasets_then_fit_the_style_index(shared_data, monkeypatch, tmp_path):
    monkeypatch.setenv("CELLSEG_SHARED", str(shared_data.parent))
    out = tmp_path / "gen"
    rc = train_cells.main([str(out), "--data", "bbbc030:1", "--data", "usiigaci:3", "--nbase", "2,8,16",
                           "--epochs", "1", "--images-per-epoch", "4", "--max-images", "1", "--n-val", "0",
                           "--no-progress"])
    assert rc == 0
    config = json.loads((out / "config.json").read_text())
    shares = {d["name"]: round(d["share"], 3) for d in config["provenance"]["datasets"]}
    assert shares == {"bbbc030": 0.25, "usiigaci": 0.75}
    assert config["diam_mean"] == 30.0 and config["nbase"][0] == 2
    rc = fit_style_index.main([str(out), "--zoo", "phase=usiigaci", "--zoo", "dic=bbbc030", "--max-images", "1"])
    assert rc == 0
    from cellseg_bridge.segmentation.suggest import StyleIndex

    index = StyleIndex.load(out / "style_index.npz")
    assert index.models == ["dic", "phase"] and len(index.labels) == 2

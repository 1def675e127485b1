"""Style-based model suggestion: the index, styles of real networks, --model auto end to end, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cellseg_bridge.datasets.synthetic import NucleiSpec, synthetic_nuclei
from cellseg_bridge.errors import InputError
from cellseg_bridge.nn import registry
from cellseg_bridge.nn.checkpoint import save_checkpoint
from cellseg_bridge.nn.net import CellposeUNet
from cellseg_bridge.segmentation.suggest import STYLE_INDEX_NAME, AutoModel, StyleIndex, fit_style_index, load_auto_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_rank_votes_for_the_nearest_styles_and_reports_confidence():
    rng = np.random.default_rng(0)
    a, b = _unit(rng.normal(size=16)), _unit(rng.normal(size=16))
    styles = _unit(np.concatenate([a + 0.05 * rng.normal(size=(6, 16)), b + 0.05 * rng.normal(size=(4, 16))]))
    index = StyleIndex(styles, ["zoo_a"] * 6 + ["zoo_b"] * 4, k=5)
    near_b = index.rank(b + 0.01 * rng.normal(size=16))
    assert near_b.model == "zoo_b" and near_b.confidence > 0.7
    assert [name for name, _ in near_b.ranking] == ["zoo_b", "zoo_a"]
    assert sum(score for _, score in near_b.ranking) == pytest.approx(1.0)
    assert index.rank(a).model == "zoo_a"
    assert near_b.to_dict()["model"] == "zoo_b"


def test_index_round_trip_and_bad_files(tmp_path):
    index = StyleIndex(_unit(np.eye(3)), ["x", "y", "y"], k=2)
    index.save(tmp_path / "i.npz")
    back = StyleIndex.load(tmp_path / "i.npz")
    np.testing.assert_array_equal(back.styles, index.styles)
    assert back.labels.tolist() == ["x", "y", "y"] and back.k == 2 and back.models == ["x", "y"]
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(InputError, match="style index") as err:
        StyleIndex.load(tmp_path / "bad.npz")
    assert "bad.npz" in str(err.value)
    with pytest.raises(InputError):
        StyleIndex(np.zeros((2, 3)), ["only one"])
    with pytest.raises(InputError, match="does not fit"):
        index.rank(np.ones(5))


def _blobs(seed):
    return synthetic_nuclei(NucleiSpec(shape=(64, 64), n_nuclei=6), seed=seed)[0]


def _stripes(seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    angle = rng.uniform(0, np.pi)
    return (np.sin((np.cos(angle) * xx + np.sin(angle) * yy) / 1.5) + 0.2 * rng.normal(size=(64, 64))).astype(np.float32)


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    """A generalist (random tiny net) and two zoo models in private model folders."""
    torch.manual_seed(0)
    bundled = tmp_path / "bundled"
    monkeypatch.setattr(registry, "bundled_models_dir", lambda: bundled)
    monkeypatch.setenv("CELLSEG_BRIDGE_MODELS", str(tmp_path / "cache"))
    for name in ("cells", "zoo_blobs", "zoo_stripes"):
        net = CellposeUNet((2, 8, 16), 3, 3, diam_mean=10.0)
        net.diam_labels.data.fill_(10.0)
        save_checkpoint(net, bundled / name / "weights.pth", {"provenance": {"test": name}})
    return bundled


def test_auto_model_picks_the_zoo_model_of_the_image_type(zoo):
    from cellseg_bridge.segmentation.pipeline import load_model, segment

    gen = load_model("cells", device="cpu")
    index = fit_style_index(gen, {"zoo_blobs": [_blobs(i) for i in range(4)],
                                  "zoo_stripes": [_stripes(i) for i in range(4)]}, k=3)
    index.save(zoo / "cells" / STYLE_INDEX_NAME)
    auto = load_model("auto", device="cpu")
    assert isinstance(auto, AutoModel) and auto.index.models == ["zoo_blobs", "zoo_stripes"]
    for seed in (10, 11):
        res = segment(_stripes(seed), auto)
        assert res.choice.model == "zoo_stripes" and res.model == "zoo_stripes"
        assert res.labels.shape == (1, 1, 64, 64)
        res = segment(_blobs(seed), "auto", device="cpu")
        assert res.choice.model == "zoo_blobs" and res.choice.confidence > 0.5


def test_auto_without_index_or_zoo_is_a_clear_error(zoo):
    with pytest.raises(InputError, match="style index"):
        load_auto_model("cpu")
    StyleIndex(_unit(np.eye(16)[:2]), ["zoo_blobs", "not_installed"]).save(zoo / "cells" / STYLE_INDEX_NAME)
    with pytest.raises(InputError, match="not_installed"):
        load_auto_model("cpu")


def test_auto_without_generalist_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "bundled_models_dir", lambda: tmp_path / "none")
    monkeypatch.setenv("CELLSEG_BRIDGE_MODELS", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CELLPOSE_LOCAL_MODELS_PATH", raising=False)
    with pytest.raises(InputError, match="needs the generalist 'cells'"):
        load_auto_model("cpu")


def test_cli_suggest_and_segment_json_report_the_choice(zoo, tmp_path):
    import tifffile
    from click.testing import CliRunner

    from cellseg_bridge.cli import main
    from cellseg_bridge.segmentation.pipeline import load_model

    gen = load_model("cells", device="cpu")
    fit_style_index(gen, {"zoo_blobs": [_blobs(i) for i in range(4)],
                          "zoo_stripes": [_stripes(i) for i in range(4)]}, k=3).save(zoo / "cells" / STYLE_INDEX_NAME)
    tifffile.imwrite(tmp_path / "stripes.tif", _stripes(20))
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    r = CliRunner().invoke(main, ["-q", "models", "suggest", str(tmp_path / "stripes.tif"),
                                  str(tmp_path / "broken.tif"), "--json", "--device", "cpu"])
    rows = json.loads(r.output[r.output.index("["):])
    assert rows[0]["model"] == "zoo_stripes" and 0 < rows[0]["confidence"] <= 1
    assert "broken.tif" in rows[1]["input"] and rows[1]["reason"]
    assert r.exit_code == 1
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["-q", "segment", str(tmp_path / "stripes.tif"), "--out", str(out),
                                  "--model", "auto", "--json", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output[r.output.index("{"):])
    assert report["items"][0]["model_choice"]["model"] == "zoo_stripes"

"""``scripts/bundle_model.py``: configs lose the machine's absolute paths; the copy loads."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from cellseg_bridge.nn.checkpoint import load_checkpoint, save_checkpoint
from cellseg_bridge.nn.net import CellposeUNet
from scripts import bundle_model as bundle  # the repository root is on pytest's pythonpath


def test_paths_become_portable():
    models, repo = bundle.MODELS, bundle.REPO
    cfg = {
        "judge_model": str(models / "nuclei" / "weights.pth"),
        "provenance": {"command": f"{repo}/scripts/train_restore.py /data/runs/x --init /data/runs/x_mse/weights.pth",
                       "list": ["/a/b/c.pth", "plain"], "n": 3},
    }
    out = bundle.portable(cfg)
    assert out["judge_model"] == "nuclei"
    assert out["provenance"]["command"] == "scripts/train_restore.py runs/x --init x_mse/weights.pth"
    assert out["provenance"]["list"] == ["b/c.pth", "plain"] and out["provenance"]["n"] == 3


def test_bundling_copies_a_loadable_model(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = CellposeUNet((1, 4, 8), nout=1, diam_mean=17.0)
    save_checkpoint(net, tmp_path / "src" / "weights.pth", {"provenance": {"out": str(tmp_path / "src")}})
    monkeypatch.setattr(bundle, "MODELS", tmp_path / "models")
    (tmp_path / "models").mkdir()
    assert bundle.main([str(tmp_path / "src"), "tiny_restore", "--stage", "a", "--stage", "b"]) == 0
    dest = tmp_path / "models" / "tiny_restore"
    copy, config = load_checkpoint(dest / "weights.pth")
    assert all(torch.equal(copy.state_dict()[k], v) for k, v in net.state_dict().items())
    provenance = json.loads((dest / "config.json").read_text())["provenance"]
    assert provenance["out"] == str(Path(*(tmp_path / "src").parts[-2:])) and provenance["stages"] == ["a", "b"]
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["tiny_restore"]  # no partial folder left


def test_bundling_keeps_the_size_model_and_portable_stages(tmp_path, monkeypatch):
    net = CellposeUNet((2, 4, 8), nout=3, diam_mean=30.0)
    save_checkpoint(net, tmp_path / "src" / "weights.pth", {})
    (tmp_path / "src" / "size_model.npz").write_bytes(b"size model bytes")
    monkeypatch.setattr(bundle, "MODELS", tmp_path / "models")
    (tmp_path / "models").mkdir()
    assert bundle.main([str(tmp_path / "src"), "tiny_cells", "--stage", "weights /data/runs/x/weights.pth, 9 s"]) == 0
    assert (tmp_path / "models" / "tiny_cells" / "size_model.npz").read_bytes() == b"size model bytes"
    stages = json.loads((tmp_path / "models" / "tiny_cells" / "config.json").read_text())["provenance"]["stages"]
    assert stages == ["weights x/weights.pth, 9 s"]  # stage texts lose the machine's paths too

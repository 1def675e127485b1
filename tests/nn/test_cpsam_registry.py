"""Cellpose 4 models in the registry: zoo names, generations, download on request, cpdino refused."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cellseg_bridge.cli import main
from cellseg_bridge.errors import InputError
from cellseg_bridge.nn import CellposeUNet, registry
from cellseg_bridge.nn.registry import ZOO, download_model, list_models, model_info, resolve_model
from cellseg_bridge.nn.vit_sam import CellposeSAM


@pytest.fixture()
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Private cache and Cellpose folders (HOME moved, env vars cleared, no bundled models)."""
    home = tmp_path / "home"
    dirs = {"cache": tmp_path / "cache", "zoo": home / ".cellpose" / "models"}
    dirs["zoo"].mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CELLSEG_BRIDGE_MODELS", str(dirs["cache"]))
    monkeypatch.delenv("CELLPOSE_LOCAL_MODELS_PATH", raising=False)
    monkeypatch.delenv("CELLSEG_BRIDGE_MODEL_URL", raising=False)
    monkeypatch.setattr(registry, "bundled_models_dir", lambda: tmp_path / "bundled")
    return dirs


def _sam_file(path: Path) -> Path:
    torch.manual_seed(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(CellposeSAM("tiny").state_dict(), path)
    return path


def test_zoo_entries():
    for name in ("cpsam", "cpsam_v2"):
        entry = ZOO[name]
        assert entry.filename == name and entry.generation == "cellpose4" and entry.size_filename is None
        assert entry.base_url == "https://huggingface.co/mouseland/cellpose-sam/resolve/main/"
    assert ZOO["cyto3"].generation == "cellpose3"


def test_found_under_cellpose4_file_names_with_generation(places):
    _sam_file(places["zoo"] / "cpsam_v2")
    torch.save(CellposeUNet((2, 4, 8), 3).state_dict(), places["zoo"] / "nucleitorch_0")
    assert resolve_model("cpsam_v2") == places["zoo"] / "cpsam_v2"
    listed = {m.name: m.generation for m in list_models()}
    assert listed == {"cpsam_v2": "cellpose4", "nuclei": "cellpose3"}
    info = model_info("cpsam_v2")
    assert info["architecture"]["family"] == "cellpose-sam" and info["zoo"]["generation"] == "cellpose4"
    out = CliRunner().invoke(main, ["models", "list"])
    assert out.exit_code == 0, out.output
    line = next(ln for ln in out.output.splitlines() if ln.startswith("cpsam_v2"))
    assert "cellpose4" in line
    with pytest.raises(InputError, match="cellseg models download cpsam"):
        resolve_model("cpsam")  # not there: how to get it, and nothing downloaded


def test_download_on_request_records_sha256(places, tmp_path):
    served = _sam_file(tmp_path / "served" / "cpsam")
    digest = hashlib.sha256(served.read_bytes()).hexdigest()
    dest = download_model("cpsam", base_url=served.parent.as_uri() + "/")
    config = json.loads((dest / "config.json").read_text())
    assert config["sha256"] == digest and config["origin"]["sha256_verified"] is False
    assert config["origin"]["generation"] == "cellpose4" and config["family"] == "cellpose-sam"
    assert config["format"] == "cellpose-sam-state-dict"
    assert resolve_model("cpsam") == dest / "cpsam"
    assert {m.name: m.generation for m in list_models()} == {"cpsam": "cellpose4"}


@pytest.mark.parametrize("name", ["cpdino", "cpdino-vitb"])
def test_cpdino_is_refused_clearly(places, name):
    with pytest.raises(InputError, match="DINOv3.*not supported yet"):
        resolve_model(name)
    with pytest.raises(InputError, match="DINOv3.*not supported yet"):
        download_model(name)

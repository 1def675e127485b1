"""Loading Cellpose-SAM checkpoints: sizes read from shapes, bad files refused with the file named."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cellseg_bridge.errors import InputError
from cellseg_bridge.nn.checkpoint import load_checkpoint
from cellseg_bridge.nn.vit_checkpoint import load_network
from cellseg_bridge.nn.vit_sam import CellposeSAM, VitSamConfig


def _save(path: Path, state: dict) -> Path:
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def tiny_state() -> dict:
    torch.manual_seed(0)
    return CellposeSAM("tiny").state_dict()


def test_size_is_read_from_the_shapes(tmp_path):
    """Another ViT size (here 3 blocks, 48 wide, 4 heads, MLP x2, neck 16) loads as such."""
    cfg = VitSamConfig(48, 3, 4, (27, 27, 127), mlp_ratio=2.0, neck=16)
    torch.manual_seed(1)
    net = CellposeSAM(cfg)
    path = _save(tmp_path / "vit_other", net.state_dict())
    loaded, config = load_network(path)
    assert isinstance(loaded, CellposeSAM) and loaded.cfg == cfg
    assert config["family"] == "cellpose-sam" and config["vit"]["depth"] == 3
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], net.eval()(x)[0])


def test_module_prefix_and_unet_checkpoints(tmp_path, tiny_state):
    path = _save(tmp_path / "ddp", {f"module.{k}": v for k, v in tiny_state.items()})
    assert isinstance(load_network(path)[0], CellposeSAM)
    with pytest.raises(InputError, match="Cellpose 4 .*not a Cellpose 2/3 U-Net") as err:
        load_checkpoint(path)  # U-Net-only callers (restoration) say what the file is
    assert "ddp" in str(err.value)


def test_truncated_file(tmp_path, tiny_state):
    path = _save(tmp_path / "cpsam", tiny_state)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="corrupt") as err:
        load_network(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("encoder.blocks.1.mlp.lin2.weight"), "missing key"),
        (lambda s: s.update({"encoder.patch_embed.proj.weight": torch.zeros(32, 3, 16, 16)}), "8 x 8 patches"),
        (lambda s: s.update({"encoder.pos_embed": torch.zeros(1, 64, 64, 32)}), "tiles of 256 px"),
        (lambda s: s.update({"W2": torch.ones_like(s["W2"])}), "pixel-shuffle"),
        (lambda s: s.update({"encoder.blocks.0.attn.qkv.weight": torch.zeros(90, 32)}), "mismatched shapes"),
        (lambda s: s.update({"encoder.cls_token": torch.zeros(1, 1, 32)}), "DINOv3"),
    ],
)
def test_bad_state_dicts(tmp_path, tiny_state, edit, message):
    state = {k: v.clone() for k, v in tiny_state.items()}
    edit(state)
    path = _save(tmp_path / "bad.pth", state)
    with pytest.raises(InputError, match=message) as err:
        load_network(path)
    assert "bad.pth" in str(err.value)

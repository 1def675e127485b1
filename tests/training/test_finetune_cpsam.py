"""Fine-tuning a Cellpose-SAM network (tiny config of the family): Cellpose 4's recipe, loadable output."""

from __future__ import annotations

import pytest
import torch

from cellseg_bridge.datasets.synthetic import NucleiSpec, synthetic_nuclei
from cellseg_bridge.errors import InputError
from cellseg_bridge.nn.vit_checkpoint import load_network
from cellseg_bridge.nn.vit_sam import CellposeSAM
from cellseg_bridge.training import train

RUN = dict(n_epochs=1, batch_size=1, images_per_epoch=2, save_every=1, val_every=0, fit_size_model=False,
           progress=False)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam") / "cpsam_tiny"
    torch.save(CellposeSAM("tiny").state_dict(), path)
    return path


@pytest.fixture(scope="module")
def pairs():
    return [synthetic_nuclei(NucleiSpec(shape=(96, 96), n_nuclei=6), seed=i) for i in range(2)]


def test_fine_tune_uses_cellpose4_recipe_and_keeps_its_layout(pretrained, pairs, tmp_path):
    res = train(pairs, tmp_path / "tuned", pretrained=str(pretrained), **RUN)
    prov = res.config["provenance"]
    assert (prov["optimizer"], prov["learning_rate"], prov["weight_decay"], prov["crop_size"]) == (
        "adamw", 1e-5, 0.1, 256)
    before = torch.load(pretrained, weights_only=True)
    after = torch.load(res.weights, weights_only=True)
    assert after.keys() == before.keys()  # Cellpose 4's keys: the file loads into CPSAM unchanged
    assert all(after[k].shape == before[k].shape for k in before)
    assert not torch.equal(after["out.weight"], before["out.weight"])
    assert torch.equal(after["W2"], before["W2"])  # fixed, not trained
    assert torch.equal(after["encoder.patch_embed.proj.weight"], before["encoder.patch_embed.proj.weight"])
    net, config = load_network(res.weights)
    assert isinstance(net, CellposeSAM) and config["family"] == "cellpose-sam"


def test_other_crop_sizes_are_refused(pretrained, pairs, tmp_path):
    with pytest.raises(InputError, match="crops of 256 px only"):
        train(pairs, tmp_path / "bad", pretrained=str(pretrained), crop_size=128, **RUN)

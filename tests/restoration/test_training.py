"""Restoration training on tiny networks: it saves a loadable restoration model and it learns."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from cellseg_bridge.datasets.synthetic import NucleiSpec, synthetic_nuclei
from cellseg_bridge.errors import InputError
from cellseg_bridge.nn.checkpoint import load_checkpoint
from cellseg_bridge.restoration.api import restore
from cellseg_bridge.restoration.losses import MSE_BASELINE_WEIGHTS
from cellseg_bridge.restoration.training import train_restore


@pytest.fixture(scope="module")
def data():
    pairs = [synthetic_nuclei(NucleiSpec(shape=(64, 64), n_nuclei=6, diameter=17), seed=s) for s in range(3)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def test_segmentation_aware_training_writes_a_restoration_model(data, tiny_seg_path, tmp_path):
    images, labels = data
    result = train_restore(images, tmp_path, labels=labels, kind="deblur", seg_model=tiny_seg_path,
                           nbase=(1, 4, 8, 16), n_epochs=2, batch_size=2, crop_size=32, device="cpu")
    assert result.epochs_run == 2 and result.steps == 4 and result.stopped == "done"
    net, config = load_checkpoint(result.weights)
    assert config["nout"] == 1 and config["nbase"][0] == 1
    assert config["task"] == "restoration" and config["restore_type"] == "deblur"
    assert config["loss_weights"] == {"perceptual": 1.0, "segmentation": 1.5, "reconstruction": 0.0}
    assert config["diam_mean"] == 17.0  # taken from the judging network
    with open(tmp_path / "curves.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"loss_perceptual", "loss_segmentation", "s_data", "s_net"} <= set(rows[0])
    out = restore(images[0], model=result.weights, device="cpu")
    assert out.image.shape == (1, 1, 1, 64, 64) and np.isfinite(out.image).all()


def test_reconstruction_training_learns_to_denoise(data, tmp_path):
    images, _ = data
    result = train_restore(images, tmp_path, kind="denoise", weights=MSE_BASELINE_WEIGHTS, nbase=(1, 4, 8, 16),
                           n_epochs=12, images_per_epoch=8, batch_size=4, crop_size=32, learning_rate=0.01,
                           warmup_epochs=1, seed=0, device="cpu", diam_mean=17.0)
    first, last = result.curves[0]["loss_reconstruction"], result.curves[-1]["loss_reconstruction"]
    assert last < 0.6 * first, (first, last)


def test_aniso_training_records_its_degradation_mix(data, tmp_path):
    images, _ = data
    kw = dict(weights=MSE_BASELINE_WEIGHTS, nbase=(1, 4, 8, 16), n_epochs=1, batch_size=2, crop_size=32,
              device="cpu", diam_mean=17.0)
    result = train_restore(images, tmp_path / "a", kind="aniso", aniso_mix=(1.0, 0.0), **kw)
    assert load_checkpoint(result.weights)[1]["aniso_mix"] == [1.0, 0.0]
    other = train_restore(images, tmp_path / "d", kind="denoise", **kw)
    assert "aniso_mix" not in load_checkpoint(other.weights)[1]


def test_training_rejects_bad_setups(data, tmp_path):
    images, labels = data
    with pytest.raises(InputError, match="unknown restoration kind"):
        train_restore(images, tmp_path, kind="sharpen", weights=MSE_BASELINE_WEIGHTS)
    with pytest.raises(InputError, match="nbase must start with 1"):
        train_restore(images, tmp_path, nbase=(2, 4, 8), weights=MSE_BASELINE_WEIGHTS)
    with pytest.raises(InputError, match="label images"):
        train_restore(images, tmp_path, labels=labels[:1], weights=MSE_BASELINE_WEIGHTS)
    with pytest.raises(InputError, match="multiple of"):
        train_restore(images, tmp_path, nbase=(1, 4, 8, 16), crop_size=34, weights=MSE_BASELINE_WEIGHTS,
                      device="cpu")


def test_training_can_start_from_a_restoration_checkpoint(data, tiny_seg_path, tmp_path):
    images, labels = data
    kw = dict(kind="denoise", nbase=(1, 4, 8, 16), n_epochs=1, batch_size=2, crop_size=32, device="cpu")
    mse = train_restore(images, tmp_path / "mse", weights=MSE_BASELINE_WEIGHTS, diam_mean=17.0, **kw)
    seg = train_restore(images, tmp_path / "seg", labels=labels, seg_model=tiny_seg_path,
                        init_weights=mse.weights, learning_rate=0.0, warmup_epochs=0, **kw)
    a, _ = load_checkpoint(mse.weights)
    b, config = load_checkpoint(seg.weights)
    assert config["provenance"]["init_weights"] == str(mse.weights)
    # learning rate 0: the weights are the starting checkpoint's
    assert all(np.allclose(a.state_dict()[k].numpy(), v.numpy()) for k, v in b.state_dict().items()
               if not k.endswith("num_batches_tracked") and "running" not in k and not k.startswith("diam"))
    with pytest.raises(InputError, match="init weights have nbase"):
        train_restore(images, tmp_path / "bad", weights=MSE_BASELINE_WEIGHTS, init_weights=mse.weights,
                      **{**kw, "nbase": (1, 8, 16, 32)})

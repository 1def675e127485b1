"""train(): outputs, seed reproducibility, resume after Ctrl-C, time budget, bad input."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import torch

from cellseg_bridge.datasets.synthetic import NucleiSpec, synthetic_nuclei
from cellseg_bridge.errors import InputError
from cellseg_bridge.training import train
from cellseg_bridge.training.data import median_diameter

loop = importlib.import_module("cellseg_bridge.training.loop")

TINY = dict(
    nbase=(2, 4, 8), crop_size=32, batch_size=2, images_per_epoch=2, diam_mean=10.0,
    save_every=1, val_every=0, fit_size_model=False,
)


@pytest.fixture(scope="module")
def pairs():
    return [synthetic_nuclei(NucleiSpec(shape=(48, 48), n_nuclei=5), seed=i) for i in range(3)]


def _weights(path):
    return torch.load(path, weights_only=True)


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_end_to_end_outputs(pairs, tmp_path):
    from cellseg_bridge.segmentation.pipeline import load_model, segment

    out = tmp_path / "m"
    res = train(pairs[:2], out, val_data=pairs[2:], n_epochs=3, progress=False,
                **{**TINY, "fit_size_model": True, "val_every": 1})
    assert res.epochs_run == 3 and res.stopped == "done"
    for name in ("weights.pth", "config.json", "size_model.npz", "curves.csv", "curves.png",
                 "checkpoint/state.pt", "checkpoint/last.pth"):
        assert (out / name).is_file(), name
    cfg = json.loads((out / "config.json").read_text())
    expected = np.mean([median_diameter(lab)[0] for _, lab in pairs[:2]])
    assert cfg["diam_labels"] == pytest.approx(expected, rel=1e-5)
    assert cfg["diam_mean"] == 10.0 and cfg["nbase"] == [2, 4, 8]
    assert cfg["provenance"]["recipe"] == "hitl" and cfg["size_model"] == "size_model.npz"
    rows = (out / "curves.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,lr,loss,ap50") and len(rows) == 4
    assert all(r["ap50"] is not None and 0 <= r["ap50"] <= 1 for r in res.curves)
    model = load_model(out / "weights.pth", device="cpu")
    assert model.diam_labels == pytest.approx(expected, rel=1e-5)
    assert model.size_model is not None
    result = segment(pairs[2][0], model)  # size model path
    assert result.labels.shape == (1, 1, 48, 48)


def test_seed_makes_runs_reproducible(pairs, tmp_path):
    kw = dict(n_epochs=2, progress=False, **TINY)
    train(pairs[:2], tmp_path / "a", seed=1, **kw)
    train(pairs[:2], tmp_path / "b", seed=1, **kw)
    train(pairs[:2], tmp_path / "c", seed=2, **kw)
    a, b, c = (_weights(tmp_path / x / "weights.pth") for x in "abc")
    assert _same(a, b)
    assert not _same(a, c)


def test_invert_option_inverts_the_training_input_and_is_recorded(pairs, tmp_path):
    from cellseg_bridge.training.data import network_input

    img = pairs[0][0]
    np.testing.assert_allclose(network_input(img, nchan=2, invert=True)[0],
                               1 - network_input(img, nchan=2)[0], atol=1e-6)
    train(pairs[:2], tmp_path / "inv", n_epochs=1, progress=False, invert=True, **TINY)
    assert json.loads((tmp_path / "inv" / "config.json").read_text())["invert"] is True


def test_precisions_train_float32_weights_and_differ(pairs, tmp_path):
    kw = dict(n_epochs=2, progress=False, **TINY)
    for p in ("float32", "bfloat16"):
        res = train(pairs[:2], tmp_path / p, precision=p, **kw)
        assert all(np.isfinite(r["loss"]) for r in res.curves)
    a, b = (_weights(tmp_path / p / "weights.pth") for p in ("float32", "bfloat16"))
    assert all(v.dtype in (torch.float32, torch.int64) for v in b.values())
    assert not _same(a, b)  # the bfloat16 convolutions were used
    with pytest.raises(InputError, match="float16"):
        train(pairs[:2], tmp_path / "f16", precision="float16", **kw)


def test_ctrl_c_leaves_resumable_checkpoint(pairs, tmp_path, monkeypatch):
    kw = dict(n_epochs=3, progress=False, **{**TINY, "save_every": 0, "val_every": 0})
    train(pairs[:2], tmp_path / "full", **kw)
    calls = {"n": 0}
    real = loop.training_loss

    def interrupting(*args):
        calls["n"] += 1
        if calls["n"] == 2:  # first step of epoch 2
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(loop, "training_loss", interrupting)
    with pytest.raises(KeyboardInterrupt):
        train(pairs[:2], tmp_path / "cut", **kw)
    monkeypatch.setattr(loop, "training_loss", real)
    state = torch.load(tmp_path / "cut" / "checkpoint" / "state.pt", weights_only=True)
    assert state["epoch"] == 1
    assert not (tmp_path / "cut" / "weights.pth").exists()
    res = train(pairs[:2], tmp_path / "cut", resume=True, **kw)
    assert res.epochs_run == 3 and len(res.curves) == 3
    assert _same(_weights(tmp_path / "full" / "weights.pth"), _weights(tmp_path / "cut" / "weights.pth"))


def test_time_budget_stops_and_saves(pairs, tmp_path, monkeypatch):
    clock = {"t": 0.0}

    def fake_clock():
        clock["t"] += 1.0  # every reading is one second later
        return clock["t"]

    monkeypatch.setattr(loop, "_clock", fake_clock)
    res = train(pairs[:2], tmp_path / "b", n_epochs=50, time_budget_min=0.5, progress=False,
                **{**TINY, "save_every": 0, "val_every": 0})
    assert 1 <= res.epochs_run < 50 and res.n_epochs < 50
    assert (tmp_path / "b" / "weights.pth").is_file() and (tmp_path / "b" / "checkpoint" / "state.pt").is_file()


def test_bad_input(pairs, tmp_path):
    img, lab = pairs[0]
    kw = dict(n_epochs=1, progress=False, **TINY)
    with pytest.raises(InputError, match="empty|at least"):
        train([(img, np.zeros_like(lab))], tmp_path / "e", **kw)
    with pytest.raises(InputError, match="at least 5 mask"):
        few = np.zeros_like(lab)
        few[:5, :5] = 1
        train([(img, few)], tmp_path / "g", recipe="generalist", **kw)
    rgb = np.stack([img, img, img])
    with pytest.raises(InputError, match="different channel counts"):
        train([(np.stack([img, img]), lab), (rgb, lab)], tmp_path / "c", axes="CYX", **kw)
    with pytest.raises(InputError, match="unknown training option"):
        train([(img, lab)], tmp_path / "u", learning_rat=0.1)
    with pytest.raises(InputError, match="nothing to resume"):
        train([(img, lab)], tmp_path / "r", resume=True, **kw)
    with pytest.raises(InputError, match="masks are"):
        train([(img, lab[:40])], tmp_path / "s", **kw)


def test_single_image_trains(pairs, tmp_path, caplog):
    res = train(pairs[:1], tmp_path / "one", n_epochs=1, progress=False, **TINY)
    assert res.epochs_run == 1 and "single image" in caplog.text


def test_adamw_option(pairs, tmp_path):
    res = train(pairs[:1], tmp_path / "w", n_epochs=1, optimizer="adamw", progress=False, **TINY)
    assert res.config["provenance"]["optimizer"] == "adamw"
    assert res.config["provenance"]["learning_rate"] == pytest.approx(1e-3)


def test_fine_tune_from_pretrained(pairs, tmp_path):
    base = train(pairs[:1], tmp_path / "base", n_epochs=1, progress=False, **TINY)
    tuned = train(pairs[1:2], tmp_path / "tuned", n_epochs=1, progress=False, pretrained=str(base.weights),
                  **{**TINY, "nbase": (2, 8, 16, 32), "diam_mean": 30.0})
    assert tuned.config["nbase"] == [2, 4, 8] and tuned.config["diam_mean"] == 10.0  # the model's, not the options'
    assert tuned.config["provenance"]["pretrained"] == str(base.weights)
    assert not _same(_weights(base.weights), _weights(tuned.weights))

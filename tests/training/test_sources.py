"""Several training datasets with sampling weights: parsing, draw shares, train() with sources, errors."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from cellseg_bridge.datasets.synthetic import NucleiSpec, synthetic_nuclei
from cellseg_bridge.errors import InputError
from cellseg_bridge.training import DataSource, parse_source, train
from cellseg_bridge.training.sources import as_sources, sampling_probabilities

TINY = dict(
    nbase=(2, 4, 8), crop_size=32, batch_size=2, images_per_epoch=8, diam_mean=10.0,
    save_every=1, val_every=0, fit_size_model=False,
)


@pytest.fixture(scope="module")
def pairs():
    return [synthetic_nuclei(NucleiSpec(shape=(48, 48), n_nuclei=5), seed=i) for i in range(5)]


def test_parse_source_path_and_weight():
    assert parse_source("data/phase:0.35") == DataSource("data/phase", 0.35)
    assert parse_source("data/phase") == DataSource("data/phase", 1.0)
    assert parse_source("C:/data/x:2") == DataSource("C:/data/x", 2.0)
    assert parse_source("odd:name") == DataSource("odd:name", 1.0)  # not a number: part of the path


@pytest.mark.parametrize("spec", ["a:0", "a:-1", "a:nan", "a:inf"])
def test_parse_source_rejects_bad_weights(spec):
    with pytest.raises(InputError, match="positive"):
        parse_source(spec)


def test_sampling_shares_follow_weights_not_sizes():
    source_of = [0] * 90 + [1] * 10
    p = sampling_probabilities(source_of, [1.0, 3.0])
    assert p.sum() == pytest.approx(1.0)
    assert p[:90].sum() == pytest.approx(0.25) and p[90:].sum() == pytest.approx(0.75)
    rng = np.random.default_rng(0)
    draws = Counter(np.asarray(source_of)[rng.choice(100, size=20000, p=p)])
    assert draws[1] / 20000 == pytest.approx(0.75, abs=0.02)


def test_as_sources_wraps_plain_data_and_refuses_mixtures(pairs):
    assert as_sources(pairs) == [DataSource(pairs)]
    with pytest.raises(InputError, match="DataSource"):
        as_sources([DataSource(pairs), pairs[0]])


def test_train_on_weighted_sources_records_shares_and_per_dataset_ap(pairs, tmp_path):
    out = tmp_path / "m"
    named = [(*pairs[3], "small/field 3")]  # (image, labels, name): the name reaches the provenance
    sources = [DataSource(pairs[:3], 0.2, "big"), DataSource(named, 0.8, "small")]
    res = train(sources, out, val_data={"big": pairs[4:], "small": pairs[3:4]}, n_epochs=2, progress=False,
                **{**TINY, "val_every": 1})
    prov = json.loads((out / "config.json").read_text())["provenance"]
    shares = {d["name"]: (d["n_images"], d["share"]) for d in prov["datasets"]}
    assert shares["big"][0] == 3 and shares["small"][0] == 1
    assert shares["big"][1] == pytest.approx(0.2) and shares["small"][1] == pytest.approx(0.8)
    assert prov["train_images"] == ["image 0", "image 1", "image 2", "small/field 3"]
    header = (out / "curves.csv").read_text().splitlines()[0].split(",")
    assert {"ap50_big", "ap75_big", "ap90_small"} <= set(header)
    last = res.curves[-1]
    assert last["ap50"] == pytest.approx((last["ap50_big"] + last["ap50_small"]) / 2)


def test_weighted_run_resumes_identically_after_ctrl_c(pairs, tmp_path, monkeypatch):
    import importlib

    import torch

    loop = importlib.import_module("cellseg_bridge.training.loop")
    sources = [DataSource(pairs[:3], 1.0, "a"), DataSource(pairs[3:], 2.0, "b")]
    kw = dict(n_epochs=3, progress=False, **{**TINY, "save_every": 0})
    train(sources, tmp_path / "full", **kw)
    calls = {"n": 0}
    real = loop.training_loss

    def interrupting(*args):
        calls["n"] += 1
        if calls["n"] == 6:  # second step of epoch 2 (4 steps an epoch)
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(loop, "training_loss", interrupting)
    with pytest.raises(KeyboardInterrupt):
        train(sources, tmp_path / "cut", **kw)
    monkeypatch.setattr(loop, "training_loss", real)
    train(sources, tmp_path / "cut", resume=True, **kw)
    a = torch.load(tmp_path / "full" / "weights.pth", weights_only=True)
    b = torch.load(tmp_path / "cut" / "weights.pth", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_sources(pairs, tmp_path):
    with pytest.raises(InputError, match="positive"):
        DataSource(pairs, 0)
    with pytest.raises(InputError, match="positive"):
        DataSource(pairs, -0.5)
    empty = tmp_path / "empty_dataset"
    empty.mkdir()
    with pytest.raises(InputError, match="empty_dataset") as err:
        train([DataSource(pairs[:2], 1.0, "ok"), DataSource(empty, 1.0)], tmp_path / "o", progress=False,
              n_epochs=1, **TINY)
    assert "no image/mask pairs" in str(err.value)
    import xarray as xr

    two_channel = [(xr.DataArray(np.stack([img, img]), dims=("C", "Y", "X")), lab) for img, lab in pairs[:2]]
    with pytest.raises(InputError, match="different channel counts"):
        train([DataSource(pairs[:2], 1.0, "gray"), DataSource(two_channel, 1.0, "two")], tmp_path / "o2",
              progress=False, n_epochs=1, **TINY)

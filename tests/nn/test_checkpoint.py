"""Checkpoint load/save: round trips, Cellpose-style files, and every bad file as InputError."""

from __future__ import annotations

import json
import logging
import pickle
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from cellseg_bridge.errors import InputError
from cellseg_bridge.nn import (
    CONFIG_NAME,
    CellposeUNet,
    infer_architecture,
    load_checkpoint,
    save_checkpoint,
)

SMALL = (2, 8, 16, 32)


def _net(nbase=SMALL, nout: int = 3, diam_mean: float = 17.0, seed: int = 0) -> CellposeUNet:
    """A small net with random weights AND random BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    net = CellposeUNet(nbase, nout, diam_mean=diam_mean)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
        net.diam_labels.fill_(21.5)
    return net.eval()


def _state(net: torch.nn.Module) -> OrderedDict:
    return OrderedDict((k, v.clone()) for k, v in net.state_dict().items())


def _assert_input_error(path: Path, match: str) -> InputError:
    with pytest.raises(InputError, match=match) as info:
        load_checkpoint(path)
    assert info.value.path == Path(path)
    assert str(path) in str(info.value)
    return info.value


def test_round_trip_with_config(tmp_path: Path) -> None:
    net = _net()
    weights = tmp_path / "model" / "weights.pth"
    cfg_path = save_checkpoint(
        net,
        weights,
        {"channels": (0, 0), "provenance": {"data": "dsb2018 train", "epochs": np.int64(3)}},
    )
    assert cfg_path == tmp_path / "model" / CONFIG_NAME
    assert sorted(p.name for p in weights.parent.iterdir()) == [
        CONFIG_NAME,
        "weights.pth",
    ]  # no temp files left
    written = json.loads(cfg_path.read_text())
    assert written["channels"] == [0, 0] and written["provenance"] == {
        "data": "dsb2018 train",
        "epochs": 3,
    }
    assert (
        written["nbase"] == list(SMALL)
        and written["nout"] == 3
        and written["weights"] == "weights.pth"
    )
    assert written["diam_mean"] == 17.0 and written["diam_labels"] == 21.5

    for source in (weights, weights.parent):  # the file, or the model folder
        loaded, config = load_checkpoint(source)
        assert not loaded.training
        assert config["channels"] == [0, 0] and config["provenance"]["epochs"] == 3
        assert (config["nbase"], config["nout"], config["diam_labels"]) == (list(SMALL), 3, 21.5)
        for key, value in net.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
        x = torch.randn(2, 2, 16, 24)
        with torch.no_grad():
            assert torch.equal(loaded(x)[0], net(x)[0])


def test_plain_state_dict_without_config_infers_architecture(tmp_path: Path) -> None:
    """A bare Cellpose-style file (torch.save(state_dict), no suffix, no config.json)."""
    net = _net(nbase=(1, 8, 16, 32, 64), nout=1, diam_mean=30.0)
    path = tmp_path / "denoise_tiny"
    torch.save(net.state_dict(), path)
    loaded, config = load_checkpoint(path, device=torch.device("cpu"))
    assert config == {
        "nbase": [1, 8, 16, 32, 64],
        "nout": 1,
        "kernel_size": 3,
        "diam_mean": 30.0,
        "diam_labels": 21.5,
        "weights": "denoise_tiny",
    }
    assert loaded.device.type == "cpu"
    assert infer_architecture(net.state_dict()) == {
        "nbase": [1, 8, 16, 32, 64],
        "nout": 1,
        "kernel_size": 3,
    }


def test_config_of_another_weights_file_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    save_checkpoint(_net(), tmp_path / "a.pth", {"channels": [1, 2]})
    torch.save(_net(seed=1).state_dict(), tmp_path / "b.pth")
    _, config = load_checkpoint(tmp_path / "b.pth")
    assert "channels" not in config and config["weights"] == "b.pth"
    with caplog.at_level(logging.WARNING):
        save_checkpoint(_net(seed=1), tmp_path / "b.pth", {"channels": [0, 0]})
    assert "described a.pth" in caplog.text


def test_config_contradicting_the_weights(tmp_path: Path) -> None:
    save_checkpoint(_net(), tmp_path / "w.pth", {})
    cfg = tmp_path / CONFIG_NAME
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "nout": 1}))
    _assert_input_error(tmp_path / "w.pth", "config.json says nout = 1 but the weights have 3")


def test_non_finite_weights_and_bad_config_values(tmp_path: Path) -> None:
    state = _state(_net())
    state["upsample.up.res_up_2.proj.1.weight"][0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    _assert_input_error(tmp_path / "nan.pth", r"NaN or infinite .*res_up_2\.proj\.1\.weight")
    save_checkpoint(_net(), tmp_path / "w.pth", {})
    cfg = tmp_path / CONFIG_NAME
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "diam_mean": "big"}))
    with pytest.raises(InputError, match="diameters must be numbers") as info:
        load_checkpoint(tmp_path / "w.pth")
    assert info.value.path == cfg


def test_wrapped_and_prefixed_state_dicts_load(tmp_path: Path) -> None:
    state = _state(_net())
    path = tmp_path / "training.pt"
    torch.save({"epoch": 7, "lr": 0.1, "state_dict": state}, path)
    load_checkpoint(path)
    torch.save(OrderedDict((f"module.{k}", v) for k, v in state.items()), path)
    load_checkpoint(path)


def test_missing_diameters_are_tolerated(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = _state(_net())
    del state["diam_mean"], state["diam_labels"]
    torch.save(state, tmp_path / "old")
    with caplog.at_level(logging.WARNING):
        net, config = load_checkpoint(tmp_path / "old")
    assert config["diam_mean"] == 30.0 and "no diam_labels or diam_mean" in caplog.text


def test_missing_file(tmp_path: Path) -> None:
    _assert_input_error(tmp_path / "nope.pth", "not found")
    _assert_input_error(tmp_path, "no config.json")


@pytest.mark.parametrize("content", [b"", bytes(range(256)) * 8, b"PK\x03\x04" + b"\0" * 100])
def test_corrupt_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    _assert_input_error(path, "not a PyTorch checkpoint or corrupt")


def test_random_bytes_and_truncated_checkpoint(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    (path := tmp_path / "random.pth").write_bytes(rng.bytes(5000))
    _assert_input_error(path, "not a PyTorch checkpoint or corrupt")
    torch.save(_net().state_dict(), tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (path := tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    _assert_input_error(path, "not a PyTorch checkpoint or corrupt")


class _Evil:
    """Unpickling this would create a file: weights_only must refuse before that."""

    marker: Path

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("kind", ["module", "numpy", "evil_torch", "evil_pickle", "evil_pickle4"])
def test_pickled_objects_are_refused_not_executed(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.pth"
    marker = tmp_path / "executed"
    evil = _Evil()
    evil.marker = marker
    if kind == "module":
        torch.save(_net(), path)
    elif kind == "numpy":
        torch.save({"w": np.zeros(3)}, path)
    elif kind == "evil_torch":
        torch.save({"w": torch.zeros(1), "x": evil}, path)
    elif kind == "evil_pickle":
        path.write_bytes(pickle.dumps({"x": evil}, protocol=2))
    else:  # protocol 4 opcodes are themselves unsupported by the weights-only unpickler
        path.write_bytes(pickle.dumps({"x": evil}, protocol=4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns about the pickle protocol
        error = _assert_input_error(path, r"refused: this file pickles Python objects \(.+\)")
    if kind.startswith("evil"):  # a global it would have called is named (protocol 2: getattr)
        assert "getattr" in str(error) or "pathlib" in str(error)
    assert not marker.exists()


def test_non_tensor_values_and_other_containers(tmp_path: Path) -> None:
    path = tmp_path / "x.pth"
    torch.save({"weights": torch.zeros(2), "note": "hello"}, path)
    _assert_input_error(path, r"not a state dict: entries that are not tensors: 'note' \(str\)")
    torch.save([torch.zeros(2)], path)
    _assert_input_error(path, "not a state dict: the file holds a list")
    torch.save({}, path)
    _assert_input_error(path, "empty")


def test_wrong_keys_and_shapes_are_named(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    base = _state(_net())

    state = OrderedDict(base)
    del state["upsample.up.res_up_1.conv.conv_2.full.weight"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, path)
    err = _assert_input_error(path, "1 missing keys: upsample.up.res_up_1.conv.conv_2.full.weight")
    assert "1 unexpected keys: extra.weight" in str(err)

    state = OrderedDict(base)
    state["upsample.up.res_up_0.conv.conv_1.full.weight"] = torch.zeros(8, 5)
    torch.save(state, path)
    _assert_input_error(
        path,
        r"1 mismatched shapes: upsample.up.res_up_0.conv.conv_1.full.weight \[8, 5\] "
        r"\(expected \[8, 32\]\)",
    )

    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    _assert_input_error(path, "not a Cellpose CPnet state dict")


def test_unsupported_kinds_of_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    torch.save({"W2": torch.zeros(2), "encoder.weight": torch.zeros(2)}, path)
    _assert_input_error(path, "Cellpose 4")
    state = _state(_net())
    state["downsample.down.res_down_0.conv.conv_0.2.weight"] = torch.zeros(8, 2, 3, 3, 3)
    torch.save(state, path)
    _assert_input_error(path, "3D convolutions")


def test_safetensors_without_or_with_the_package(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    try:
        from safetensors.torch import save_file
    except ImportError:
        path.write_bytes(b"\0" * 16)
        _assert_input_error(path, "needs the 'safetensors' package")
        return
    net = _net()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    loaded, _ = load_checkpoint(path)
    assert torch.equal(loaded.state_dict()["output.2.weight"], net.state_dict()["output.2.weight"])


def test_unserialisable_config_is_refused_and_nothing_written(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not JSON-serialisable"):
        save_checkpoint(_net(), tmp_path / "w.pth", {"provenance": object()})
    assert list(tmp_path.iterdir()) == []

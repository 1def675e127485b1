"""Model registry: lookup order, size models, import, download (loopback HTTP), CLI."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cellseg_bridge.cli import main
from cellseg_bridge.errors import InputError
from cellseg_bridge.nn import CONFIG_NAME, CellposeUNet, load_checkpoint, registry, save_checkpoint
from cellseg_bridge.nn.registry import (
    ZOO,
    download_model,
    import_model,
    list_models,
    model_info,
    resolve_model,
    size_model_path,
)

TINY = (2, 4, 8)


def _net(diam_mean: float = 17.0, seed: int = 0) -> CellposeUNet:
    torch.manual_seed(seed)
    return CellposeUNet(TINY, 3, diam_mean=diam_mean).eval()


def _bare(path: Path, seed: int = 0) -> Path:
    """A Cellpose-style weights file: a plain state dict, no config.json."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(_net(seed=seed).state_dict(), path)
    return path


def _folder(folder: Path, seed: int = 0, weights: str = "weights.pth") -> Path:
    """A model folder written by save_checkpoint; returns the weights file."""
    save_checkpoint(_net(seed=seed), folder / weights, {"provenance": {"seed": seed}})
    return folder / weights


@pytest.fixture()
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Private bundled, cache and Cellpose folders (HOME moved, env vars cleared)."""
    home = tmp_path / "home"
    home.mkdir()
    dirs = {
        "bundled": tmp_path / "bundled",
        "cache": tmp_path / "cache",
        "zoo": home / ".cellpose" / "models",
    }
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CELLSEG_BRIDGE_MODELS", str(dirs["cache"]))
    monkeypatch.delenv("CELLPOSE_LOCAL_MODELS_PATH", raising=False)
    monkeypatch.delenv("CELLSEG_BRIDGE_MODEL_URL", raising=False)
    monkeypatch.setattr(registry, "bundled_models_dir", lambda: dirs["bundled"])
    monkeypatch.chdir(tmp_path)
    return dirs


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# ----------------------------------------------------------------------------- zoo table


def test_zoo_table_uses_cellpose_file_names() -> None:
    expected = {
        "cyto3": ("cyto3", "size_cyto3.npy"),
        "nuclei": ("nucleitorch_0", "size_nucleitorch_0.npy"),
        "cyto2": ("cyto2torch_0", "size_cyto2torch_0.npy"),
        "cyto": ("cytotorch_0", "size_cytotorch_0.npy"),
        "denoise_cyto3": ("denoise_cyto3", None),
        "deblur_cyto3": ("deblur_cyto3", None),
        "upsample_cyto3": ("upsample_cyto3", None),
        "oneclick_cyto3": ("oneclick_cyto3", None),
        "denoise_nuclei": ("denoise_nuclei", None),
        "denoise_per_nuclei": ("denoise_per_nuclei", None),
        "aniso_cyto2": ("aniso_cyto2", None),
        "tissuenet_cp3": ("tissuenet_cp3", None),
    }
    for name, (filename, size) in expected.items():
        assert (ZOO[name].filename, ZOO[name].size_filename) == (filename, size), name
    assert ZOO["nuclei"].diam_mean == 17.0 and ZOO["cyto3"].diam_mean == 30.0
    assert ZOO["oneclick_nuclei"].diam_mean == 17.0
    assert ZOO["denoise_cyto3"].kind == "restoration" and ZOO["cyto3"].kind == "segmentation"
    assert "denoise_per_cyto3" not in ZOO  # cyto3 restoration has no per/seg/rec variants
    assert "transformer_cp3" not in ZOO  # not a CPnet
    assert registry.DEFAULT_MODEL_URL == "https://www.cellpose.org/models/"


def test_real_bundled_nuclei_model_is_ours_and_complete() -> None:
    folder = registry.bundled_models_dir()
    assert (folder / "README.md").is_file()
    weights = registry.resolve_model("nuclei")
    assert weights.parent == folder / "nuclei"
    config = json.loads((folder / "nuclei" / "config.json").read_text())
    assert config["provenance"]["trainer"] == "cellseg_bridge.training"  # never Cellpose's weights
    assert config["diam_mean"] == 17.0 and config["nout"] == 3
    assert registry.size_model_path(weights) == folder / "nuclei" / "size_model.npz"


# ----------------------------------------------------------------------------- lookup


def test_resolution_order_bundled_cache_zoo(places: dict[str, Path]) -> None:
    zoo_file = _bare(places["zoo"] / "nucleitorch_0")
    assert resolve_model("nuclei") == zoo_file
    assert resolve_model("nucleitorch_0") == zoo_file  # Cellpose's file name works too

    cache_weights = _folder(places["cache"] / "nuclei", seed=1)
    assert resolve_model("nuclei") == cache_weights

    bundled_weights = _folder(places["bundled"] / "nuclei", seed=2)
    assert resolve_model("nuclei") == bundled_weights

    found = [(m.name, m.source, m.active) for m in list_models()]
    assert found == [
        ("nuclei", "bundled", True),
        ("nuclei", "cache", False),
        ("nuclei", "cellpose-zoo", False),
    ]
    info = model_info("nuclei")
    assert info["source"] == "bundled" and info["path"] == str(bundled_weights)
    assert [s["source"] for s in info["shadowed"]] == ["cache", "cellpose-zoo"]
    assert info["architecture"]["nbase"] == list(TINY)
    assert info["zoo"]["filename"] == "nucleitorch_0"
    assert registry.zoo_model_for(zoo_file) is ZOO["nuclei"]
    assert registry.zoo_model_for(bundled_weights) is None


def test_cellpose_env_folder_and_gui_models(
    places: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _bare(places["zoo"] / "cyto3")
    other = tmp_path / "cp_models"
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(other))
    with pytest.raises(InputError, match="cp_models"):
        resolve_model("cyto3")  # the env var replaces ~/.cellpose/models
    weights = _bare(other / "cyto3")
    _bare(other / "my_gui_model")
    (other / "gui_models.txt").write_text("my_gui_model\nvanished\n")
    (other / "size_cyto3.npy").write_bytes(b"not read here")
    assert resolve_model("cyto3") == weights
    assert resolve_model("my_gui_model") == other / "my_gui_model"
    listed = {m.name: m for m in list_models()}
    assert sorted(listed) == ["cyto3", "my_gui_model"]
    assert listed["cyto3"].size_model == other / "size_cyto3.npy"
    assert listed["cyto3"].config is None and listed["cyto3"].source == "cellpose-zoo"
    assert not listed["my_gui_model"].has_size_model


def test_paths_and_bare_words(places: dict[str, Path], tmp_path: Path) -> None:
    weights = _bare(tmp_path / "ckpt" / "model.pth")
    assert resolve_model(str(weights)) == weights
    assert resolve_model(weights) == weights
    assert resolve_model(weights.parent) == weights.parent  # a folder path: itself
    with pytest.raises(InputError, match="not found") as info:
        resolve_model("ckpt/missing.pth")
    assert info.value.path == Path("ckpt/missing.pth")
    # a bare word naming a local checkpoint file is that file
    _bare(tmp_path / "localmodel")
    assert resolve_model("localmodel") == Path("localmodel")
    # a data folder that happens to be called like a model does not hide the model
    (tmp_path / "nuclei").mkdir()
    zoo_file = _bare(places["zoo"] / "nucleitorch_0")
    assert resolve_model("nuclei") == zoo_file


def test_missing_model_says_where_and_how(places: dict[str, Path]) -> None:
    with pytest.raises(InputError) as info:
        resolve_model("cyto3")
    text = str(info.value)
    assert "cellseg models download cyto3" in text
    assert "cellseg models import PATH" in text
    for folder in (places["bundled"], places["cache"], places["zoo"]):
        assert str(folder) in text
    assert str(places["zoo"] / "cyto3") in text

    with pytest.raises(InputError) as info:
        resolve_model("nucleii")
    text = str(info.value)
    assert "cellseg models import PATH --name nucleii" in text
    assert "download" not in text and "'nuclei'" in text  # a suggestion, not a zoo name


def test_broken_folder_raises_on_resolve_and_is_skipped_by_list(
    places: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    broken = places["cache"] / "broken"
    broken.mkdir(parents=True)
    (broken / CONFIG_NAME).write_text(json.dumps({"weights": "gone.pth"}))
    with pytest.raises(InputError, match="'gone.pth' named in config.json is missing"):
        resolve_model("broken")
    with caplog.at_level(logging.WARNING, logger="cellseg_bridge"):
        assert list_models() == []
    assert "skipped broken model folder" in caplog.text


def test_size_model_path_conventions(tmp_path: Path) -> None:
    zoo = tmp_path / "zoo"
    weights = _bare(zoo / "nucleitorch_0")
    assert size_model_path(weights) is None
    (zoo / "size_nucleitorch_0.npy").write_bytes(b"x")
    assert size_model_path(weights) == zoo / "size_nucleitorch_0.npy"

    trained = _bare(tmp_path / "train" / "models" / "cellpose_123")
    (trained.parent / "cellpose_123_size.npy").write_bytes(b"x")  # Cellpose train_seg
    assert size_model_path(trained) == trained.parent / "cellpose_123_size.npy"

    ours = _folder(tmp_path / "ours")
    np.savez(tmp_path / "ours" / "size_model.npz", A=np.zeros(3))
    assert size_model_path(ours) == tmp_path / "ours" / "size_model.npz"
    assert size_model_path(ours.parent) == tmp_path / "ours" / "size_model.npz"

    # config.json naming its size model wins
    named = _folder(tmp_path / "named")
    cfg = json.loads((named.parent / CONFIG_NAME).read_text())
    cfg["size_model"] = "regression.npz"
    (named.parent / CONFIG_NAME).write_text(json.dumps(cfg))
    (named.parent / "regression.npz").write_bytes(b"x")
    (named.parent / "size_model.npz").write_bytes(b"x")
    assert size_model_path(named) == named.parent / "regression.npz"

    # a size_model.npz in a folder whose config.json describes other weights is not ours
    shared = tmp_path / "shared"
    _folder(shared, weights="a.pth")
    other = _bare(shared / "b.pth")
    (shared / "size_model.npz").write_bytes(b"x")
    assert size_model_path(other) is None


# ----------------------------------------------------------------------------- import


def test_import_copies_validated_model(places: dict[str, Path], tmp_path: Path) -> None:
    src = _bare(tmp_path / "incoming" / "my_nuclei.pth")
    size_params = {"A": np.ones(4), "smean": np.zeros(4), "diam_mean": 17.0, "ymean": 0.1}
    np.save(src.parent / "my_nuclei.pth_size.npy", size_params, allow_pickle=True)  # Cellpose's layout
    dest = import_model(src)
    assert dest == places["cache"] / "my_nuclei"
    assert _leftovers(places["cache"]) == ["my_nuclei"]  # no temporary folders left
    assert _leftovers(dest) == [CONFIG_NAME, "my_nuclei.pth", "my_nuclei.pth_size.npy"]
    assert (dest / "my_nuclei.pth").read_bytes() == src.read_bytes()  # bytes unchanged
    config = json.loads((dest / CONFIG_NAME).read_text())
    assert config["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert config["weights"] == "my_nuclei.pth" and config["nbase"] == list(TINY)
    assert config["size_model"] == "my_nuclei.pth_size.npy"
    assert config["origin"]["kind"] == "import" and config["origin"]["path"] == str(src.resolve())
    assert resolve_model("my_nuclei") == dest / "my_nuclei.pth"
    assert size_model_path(dest) == dest / "my_nuclei.pth_size.npy"
    net, loaded = load_checkpoint(dest)
    assert loaded["diam_mean"] == 17.0

    with pytest.raises(InputError, match="already exists.*--overwrite"):
        import_model(src)
    replacement = _folder(tmp_path / "v2", seed=5)
    dest2 = import_model(replacement.parent, name="my_nuclei", overwrite=True)
    assert dest2 == dest
    assert _leftovers(dest) == [CONFIG_NAME, "weights.pth"]
    assert _leftovers(places["cache"]) == ["my_nuclei"]
    assert json.loads((dest / CONFIG_NAME).read_text())["provenance"] == {"seed": 5}


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not a checkpoint", b"PK\x03\x04 broken zip"],
    ids=["empty", "text", "zip"],
)
def test_import_refuses_corrupt_file(
    places: dict[str, Path], tmp_path: Path, content: bytes
) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(content)
    with pytest.raises(InputError) as info:
        import_model(bad)
    assert info.value.path == bad
    assert _leftovers(places["cache"]) == []


def test_import_refuses_wrong_state_dict_and_bad_names(
    places: dict[str, Path], tmp_path: Path
) -> None:
    other = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(InputError, match="not a Cellpose CPnet state dict"):
        import_model(other)
    good = _bare(tmp_path / "good.pth")
    for bad_name in ("../escape", "a/b", ".hidden", "", "model.pth"):
        with pytest.raises(InputError, match="invalid model name"):
            import_model(good, name=bad_name)
    with pytest.raises(InputError, match="not found"):
        import_model(tmp_path / "nope.pth")
    assert _leftovers(places["cache"]) == []


def test_unwritable_cache_is_an_input_error(
    places: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("CELLSEG_BRIDGE_MODELS", str(blocker / "cache"))
    with pytest.raises(InputError, match="cannot write to the model cache"):
        import_model(_bare(tmp_path / "good.pth"))


def test_import_real_cellpose_checkpoint(places: dict[str, Path], shared_models: Path) -> None:
    src = shared_models / "cellpose3_dsb2018_nuclei.pth"
    dest = import_model(src, name="dsb_nuclei")  # validated by loading it
    assert resolve_model("dsb_nuclei") == dest / src.name
    assert (dest / src.name).stat().st_size == src.stat().st_size
    config = json.loads((dest / CONFIG_NAME).read_text())
    assert config["nbase"] == [2, 32, 64, 128, 256] and config["nout"] == 3
    assert config["diam_mean"] == pytest.approx(17.0)
    assert config["diam_labels"] == pytest.approx(24.0, abs=0.05)  # README: 24.0
    assert [(m.name, m.source) for m in list_models()] == [("dsb_nuclei", "cache")]


# ----------------------------------------------------------------------------- download


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.fixture()
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server serving tmp_path/served; yields (base URL, folder)."""
    served = tmp_path / "served"
    served.mkdir()
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    _Handler.requests = []
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(served))
    )
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/models/", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _serve_nuclei(served: Path, size: bool = True) -> str:
    """Put a zoo-named 'nuclei' checkpoint on the server; return its sha256."""
    weights = served / "models" / "nucleitorch_0"
    save_checkpoint(_net(), weights)  # our writer; its config.json is not fetched
    if size:
        (served / "models" / "size_nucleitorch_0.npy").write_bytes(b"size params")
    return hashlib.sha256(weights.read_bytes()).hexdigest()


def test_download_verified(places: dict[str, Path], server: tuple[str, Path]) -> None:
    base, served = server
    digest = _serve_nuclei(served)
    dest = download_model("nuclei", base_url=base, expected_sha256=digest.upper())
    assert dest == places["cache"] / "nuclei"
    assert _leftovers(places["cache"]) == ["nuclei"]
    assert _leftovers(dest) == [CONFIG_NAME, "nucleitorch_0", "size_nucleitorch_0.npy"]
    config = json.loads((dest / CONFIG_NAME).read_text())
    assert config["sha256"] == digest and config["origin"]["sha256_verified"] is True
    assert config["origin"]["url"] == base + "nucleitorch_0"
    assert config["size_model"] == "size_nucleitorch_0.npy"
    assert resolve_model("nuclei") == dest / "nucleitorch_0"
    assert size_model_path(resolve_model("nuclei")) == dest / "size_nucleitorch_0.npy"
    assert registry.zoo_model_for(dest) is ZOO["nuclei"]
    assert _Handler.requests == ["/models/nucleitorch_0", "/models/size_nucleitorch_0.npy"]
    # a second call finds it in the cache and does not download again
    assert download_model("nuclei", base_url=base, expected_sha256=digest) == dest
    assert len(_Handler.requests) == 2
    with pytest.raises(InputError, match="--overwrite"):
        download_model("nuclei", base_url=base, expected_sha256="0" * 64)


def test_download_unverified_warns_and_records_sha(
    places: dict[str, Path],
    server: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    base, served = server
    digest = _serve_nuclei(served, size=False)
    monkeypatch.setenv("CELLSEG_BRIDGE_MODEL_URL", base)  # the env var gives the base URL
    with caplog.at_level(logging.WARNING, logger="cellseg_bridge"):
        dest = download_model("nuclei")
    assert "no known sha256" in caplog.text and "NOT verified" in caplog.text
    assert "size model of 'nuclei' not downloaded" in caplog.text and "404" in caplog.text
    config = json.loads((dest / CONFIG_NAME).read_text())
    assert config["sha256"] == digest and config["origin"]["sha256_verified"] is False
    assert config["size_model"] is None
    assert _leftovers(dest) == [CONFIG_NAME, "nucleitorch_0"]


def test_download_checksum_mismatch_leaves_nothing(
    places: dict[str, Path], server: tuple[str, Path]
) -> None:
    base, served = server
    _serve_nuclei(served)
    with pytest.raises(InputError, match="checksum mismatch.*deleted"):
        download_model("nuclei", base_url=base, expected_sha256="ab" * 32)
    assert _leftovers(places["cache"]) == []
    with pytest.raises(InputError, match="not a sha256"):
        download_model("nuclei", base_url=base, expected_sha256="abc")


def test_download_errors(places: dict[str, Path], server: tuple[str, Path]) -> None:
    base, served = server
    with pytest.raises(InputError, match=r"HTTP 404") as info:
        download_model("cyto3", base_url=base)
    assert base + "cyto3" in str(info.value)
    (served / "models").mkdir()
    (served / "models" / "denoise_cyto3").write_text("<html>maintenance</html>")
    with pytest.raises(InputError, match="not a usable checkpoint"):
        download_model("denoise_cyto3", base_url=base)
    with pytest.raises(InputError, match="not a Cellpose zoo model.*'cyto3'"):
        download_model("cyto4", base_url=base)
    with pytest.raises(InputError, match="must start with http"):
        download_model("cyto3", base_url="ftp://example.org/models")
    with pytest.raises(InputError, match="failed"):
        download_model("cyto3", base_url="http://127.0.0.1:9/models")  # nothing listens
    assert _leftovers(places["cache"]) == []


def test_resolve_never_downloads(
    places: dict[str, Path], server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, served = server
    _serve_nuclei(served)
    monkeypatch.setenv("CELLSEG_BRIDGE_MODEL_URL", base)
    with pytest.raises(InputError, match="cellseg models download nuclei"):
        resolve_model("nuclei")
    assert _Handler.requests == []


# ----------------------------------------------------------------------------- CLI


def test_cli_models(places: dict[str, Path], server: tuple[str, Path], tmp_path: Path) -> None:
    base, served = server
    digest = _serve_nuclei(served)
    runner = CliRunner()

    result = runner.invoke(main, ["models", "list"])
    assert result.exit_code == 0, result.output
    assert "no models found" in result.output

    args = ["-q", "models", "download", "nuclei", "--url", base, "--sha256", digest]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert str(places["cache"] / "nuclei") in result.output

    src = _bare(tmp_path / "mine.pth")
    result = runner.invoke(main, ["models", "import", str(src), "--name", "mine"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["models", "import", str(src), "--name", "mine"])
    assert result.exit_code == 1 and "already exists" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(main, ["models", "import", str(src), "--name", "mine", "--overwrite"])
    assert result.exit_code == 0, result.output

    result = runner.invoke(main, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [(m["name"], m["source"], m["has_size_model"]) for m in listed] == [
        ("mine", "cache", False),
        ("nuclei", "cache", True),
    ]
    result = runner.invoke(main, ["models", "list"])
    assert "nuclei" in result.output and "size model" in result.output

    result = runner.invoke(main, ["models", "info", "nuclei", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["config"]["sha256"] == digest and info["architecture"]["nout"] == 3
    result = runner.invoke(main, ["models", "info", "mine"])
    assert result.exit_code == 0 and "nbase" in result.output

    result = runner.invoke(main, ["models", "info", "cyto3"])
    assert result.exit_code == 1
    assert "cellseg models download cyto3" in result.output

    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"junk")
    result = runner.invoke(main, ["models", "import", str(bad)])
    assert result.exit_code == 1 and "bad.pth" in result.output
    result = runner.invoke(main, ["models", "download", "cyto3", "--url", base])
    assert result.exit_code == 1 and "HTTP 404" in result.output

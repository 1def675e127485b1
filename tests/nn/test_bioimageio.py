"""bioimage.io packages: our export checked by bioimageio.spec/core themselves, TorchScript parity, import back."""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from cellseg_bridge.errors import InputError
from cellseg_bridge.nn.bioimageio import export_bioimageio, scale_range
from cellseg_bridge.nn.bioimageio_import import import_bioimageio, is_bioimageio_package
from cellseg_bridge.nn.checkpoint import load_checkpoint
from cellseg_bridge.nn.registry import resolve_model

log = logging.getLogger(__name__)


def _small_image() -> np.ndarray:
    from cellseg_bridge.datasets.synthetic import NucleiSpec, synthetic_nuclei

    return synthetic_nuclei(NucleiSpec(shape=(64, 64), n_nuclei=5, diameter=17.0), seed=3)[0]


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled ``nuclei`` model exported with a small test image (bioimageio.core runs it 12 times)."""
    return export_bioimageio("nuclei", tmp_path_factory.mktemp("bioimageio") / "nuclei.zip", test_image=_small_image())


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CELLSEG_BRIDGE_MODELS", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.slow
def test_bundled_nuclei_passes_bioimageio_core_test(package: Path) -> None:
    spec = pytest.importorskip("bioimageio.spec", reason="bioimageio.spec not installed (pip install -e '.[bioimageio]')")
    core = pytest.importorskip("bioimageio.core", reason="bioimageio.core not installed (pip install -e '.[bioimageio]')")
    descr = spec.load_description(package)
    assert descr.validation_summary.status in ("valid-format", "passed"), descr.validation_summary.format()
    assert str(descr.format_version).startswith("0.5")
    summary = core.test_model(package)  # format validation + test tensors reproduced with every weights format
    assert summary.status == "passed", summary.format()
    reproduced = {d.name for d in summary.details if d.name.startswith("Reproduce test outputs") and d.status == "passed"}
    assert reproduced == {"Reproduce test outputs from test inputs (pytorch_state_dict)",
                          "Reproduce test outputs from test inputs (torchscript)"}


def test_package_content_and_torchscript_gives_our_flows(package: Path) -> None:
    with zipfile.ZipFile(package) as zf:
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
        weights = zf.read("weights.pth")
        scripted = torch.jit.load(io.BytesIO(zf.read("weights.torchscript")))
        test_in = np.load(io.BytesIO(zf.read("test_input.npy")))
        test_out = np.load(io.BytesIO(zf.read("test_output.npy")))
        names = set(zf.namelist())
    bundled = resolve_model("nuclei")
    assert weights == Path(bundled).read_bytes()  # the shipped state dict, bytes unchanged
    assert {"cover.png", "README.md", "cellpose_unet.py", "size_model.npz"} <= names
    assert rdf["format_version"].startswith("0.5") and rdf["license"] == "BSD-3-Clause"
    assert rdf["inputs"][0]["preprocessing"] == [
        {"id": "scale_range", "kwargs": {"axes": ["y", "x"], "min_percentile": 1.0, "max_percentile": 99.0}}]
    assert rdf["weights"]["pytorch_state_dict"]["architecture"]["callable"] == "CellposeFlowsNet"
    assert rdf["config"]["cellseg_bridge"]["provenance"]["trainer"] == "cellseg_bridge.training"
    net, _ = load_checkpoint(bundled, "cpu")
    # a size other than the traced one (64 x 64): the traced graph is not tied to it
    x = torch.from_numpy(scale_range(np.random.default_rng(0).gamma(2.0, 50.0, (2, 2, 80, 112)), 1, 99))
    with torch.no_grad():
        ours, scripted_out = net(x)[0].numpy(), scripted(x).numpy()
        ours_test = net(torch.from_numpy(scale_range(test_in, 1, 99)))[0].numpy()
    diff = float(np.abs(ours - scripted_out).max())
    log.info("TorchScript vs CellposeUNet: max abs difference of the flows %.3g", diff)
    assert diff < 1e-4
    assert np.abs(ours_test - test_out).max() < 1e-5


def test_import_restores_the_model_and_its_masks_path(package: Path, cache: Path) -> None:
    from cellseg_bridge.segmentation.pipeline import load_model, segment

    with pytest.raises(InputError, match="bundled model"):  # the package's own name is taken by the bundled one
        import_bioimageio(package)
    dest = import_bioimageio(package, "nuclei_bmz")
    assert dest == cache / "nuclei_bmz" and (dest / "size_model.npz").is_file()
    imported, config = load_checkpoint(dest, "cpu")
    original, orig_config = load_checkpoint(resolve_model("nuclei"), "cpu")
    for key, value in original.state_dict().items():
        assert torch.equal(imported.state_dict()[key], value), key
    assert config["normalize_percentiles"] == [1.0, 99.0] and config["diam_labels"] == orig_config["diam_labels"]
    assert config["origin"]["kind"] == "bioimageio"
    labels = segment(_small_image(), load_model(str(dest), device="cpu"), diameter=17.0).labels
    assert labels.max() >= 3  # the masks path runs on the imported model (same weights as nuclei, above)
    with pytest.raises(InputError, match="already exists"):
        import_bioimageio(package, "nuclei_bmz")


def _repack(src: Path, dst: Path, edit) -> Path:
    """Copy package ``src`` to ``dst`` with its RDF changed by ``edit(rdf, files)``."""
    with zipfile.ZipFile(src) as zf:
        files = {n: zf.read(n) for n in zf.namelist()}
    rdf = yaml.safe_load(files["rdf.yaml"])
    edit(rdf, files)
    files["rdf.yaml"] = yaml.safe_dump(rdf).encode()
    with zipfile.ZipFile(dst, "w") as zf:
        for n, data in files.items():
            zf.writestr(n, data)
    return dst


def test_import_refuses_other_model_families(package: Path, cache: Path, tmp_path: Path) -> None:
    def other_family(rdf: dict, files: dict) -> None:  # a stardist-like network: other keys
        buf = io.BytesIO()
        torch.save(torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3), torch.nn.Conv2d(32, 33, 1)).state_dict(), buf)
        files["weights.pth"] = buf.getvalue()
        rdf["weights"] = {"pytorch_state_dict": {"source": "weights.pth",
                                                 "architecture": {"callable": "StarDist2D", "source": "stardist.py"}}}

    with pytest.raises(InputError, match="not a Cellpose-style model .*StarDist2D") as err:
        import_bioimageio(_repack(package, tmp_path / "other.zip", other_family))
    assert "other.zip" in str(err.value)
    onnx_only = _repack(package, tmp_path / "onnx.zip", lambda rdf, files: rdf.update(
        weights={"onnx": {"source": "weights.onnx"}}))
    with pytest.raises(InputError, match=r"no pytorch_state_dict weights \(formats: onnx\)"):
        import_bioimageio(onnx_only)
    dataset = _repack(package, tmp_path / "data.zip", lambda rdf, files: rdf.update(type="dataset"))
    with pytest.raises(InputError, match="describes a 'dataset', not a model"):
        import_bioimageio(dataset)
    tampered = _repack(package, tmp_path / "bad.zip", lambda rdf, files: files.update({"weights.pth": b"x" * 10}))
    with pytest.raises(InputError, match="sha256 differs"):
        import_bioimageio(tampered)
    assert not cache.exists() or not any(cache.iterdir())


@pytest.mark.slow
def test_cli_export_and_import(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cellseg_bridge.cli.main import main
    from cellseg_bridge.nn import bioimageio

    monkeypatch.setattr(bioimageio, "_TEST_SIZE", 64)  # a smaller generated test image (default 256)

    out = tmp_path / "pkg.zip"
    result = CliRunner().invoke(main, ["models", "export", "nuclei", "--bioimageio", str(out)])
    assert result.exit_code == 0, result.output
    assert is_bioimageio_package(out) and not is_bioimageio_package(resolve_model("nuclei"))
    result = CliRunner().invoke(main, ["models", "export", "nuclei", "--bioimageio", str(out)])
    assert result.exit_code == 1 and "output exists" in result.output
    result = CliRunner().invoke(main, ["models", "import", str(out), "--name", "nuc_bio"])
    assert result.exit_code == 0, result.output
    assert (cache / "nuc_bio" / "weights.pth").is_file()


def test_export_refuses_restoration_networks_and_other_suffixes(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="only segmentation networks"):
        export_bioimageio("denoise_nuclei", tmp_path / "d.zip")
    with pytest.raises(InputError, match="is a .zip file"):
        export_bioimageio("nuclei", tmp_path / "d.tar")
    assert not list(tmp_path.iterdir())


def test_import_of_a_foreign_0_4_style_package(package: Path, cache: Path, tmp_path: Path) -> None:
    """A package without our config (as Cellpose's own export): percentiles from its preprocessing, diameters
    from the state dict."""
    def foreign(rdf: dict, files: dict) -> None:
        rdf.pop("config")
        rdf.pop("attachments")
        rdf["format_version"] = "0.4.10"
        rdf["inputs"][0]["preprocessing"] = [{"name": "scale_range", "kwargs": {
            "mode": "per_sample", "axes": "yx", "min_percentile": 2.0, "max_percentile": 98.0}}]
        rdf["weights"]["pytorch_state_dict"]["architecture"] = "cellpose_unet.py:CPnetBioImageIO"
        del files["size_model.npz"]

    dest = import_bioimageio(_repack(package, tmp_path / "cp_model.zip", foreign))
    _, config = load_checkpoint(dest, "cpu")
    assert dest.name == "cp_model" and config["normalize_percentiles"] == [2.0, 98.0]
    assert config["diam_mean"] == 17.0 and config["size_model"] is None
    assert config["provenance"]["bioimageio"]["format_version"] == "0.4.10"

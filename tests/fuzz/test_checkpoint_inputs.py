"""Files that are not checkpoints, and pickles that would run code (issue 19 items 5, 9, 11).

Each goes through every command that loads a model the user names.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from cellseg_bridge.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")

KINDS = ["passwd", "empty", "truncated", "zip_not_torch", "garbage_safetensors",
         "pickle_os_system_torch", "pickle_os_system_p2", "pickle_os_system_p4"]


def _commands(bad, tmp_path, image):
    """Every command that loads a model given by the user, pointed at ``bad``."""
    (tmp_path / "train_data").mkdir(exist_ok=True)
    return {
        "segment --model": ["segment", str(image), "--model", str(bad), "--out", str(tmp_path / "seg")],
        "train --pretrained": ["train", str(tmp_path / "train_data"), "--pretrained", str(bad),
                               "--out", str(tmp_path / "run")],
        "hitl init --model": ["hitl", "init", str(tmp_path / "proj"), str(image), "--model", str(bad)],
        "models info": ["models", "info", str(bad)],
        "models import": ["models", "import", str(bad), "--name", "fuzzed"],
    }


@pytest.mark.parametrize("kind", KINDS)
def test_a_file_that_is_not_a_checkpoint_is_one_clear_error_everywhere(tmp_path, fuzz, sample_image, kind,
                                                                         monkeypatch):
    monkeypatch.setenv("CELLSEG_BRIDGE_MODELS", str(tmp_path / "cache"))
    marker = tmp_path / "MARKER"
    bad = fuzz.checkpoint_files(tmp_path / "bad", marker)[kind]
    before = fuzz.sha256s([bad, sample_image])
    for command, args in _commands(bad, tmp_path, sample_image).items():
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1, (command, result.output, result.exception)
        assert bad.name in result.output, (command, result.output)
        assert "Traceback" not in result.output and not isinstance(result.exception, (IndexError, RuntimeError))
        if kind.startswith("pickle_os_system"):
            assert "refused: this file pickles Python objects" in result.output, (command, result.output)
            assert "system" in result.output  # the global it would have called is named
        assert not marker.exists(), f"{command} ran the pickle"
    assert not (tmp_path / "cache" / "fuzzed").exists()
    assert fuzz.sha256s([bad, sample_image]) == before


def _tiny_checkpoint(folder):
    from cellseg_bridge.nn.checkpoint import save_checkpoint
    from cellseg_bridge.nn.net import CellposeUNet

    net = CellposeUNet((2, 8, 16), 3, diam_mean=17.0)
    return save_checkpoint(net, folder / "tiny.pth", {}).parent / "tiny.pth"


def test_models_import_refuses_an_unsafe_size_model_and_a_bundled_name(tmp_path, monkeypatch, fuzz):
    monkeypatch.setenv("CELLSEG_BRIDGE_MODELS", str(tmp_path / "cache"))
    marker = tmp_path / "MARKER"
    weights = _tiny_checkpoint(tmp_path / "incoming")
    import pickle

    class Size:  # a Cellpose-style size file whose dict pickles os.system
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    size = tmp_path / "incoming" / "tiny.pth_size.npy"
    with open(size, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False, "shape": ()})
        pickle.dump(np.array({"A": Size()}, dtype=object), fh, protocol=3)
    result = CliRunner().invoke(main, ["models", "import", str(weights), "--name", "mine"])
    assert result.exit_code == 1 and "tiny.pth_size.npy" in result.output
    assert "refused: the size model beside the weights cannot be loaded safely" in result.output
    assert not marker.exists() and not (tmp_path / "cache" / "mine").exists()
    size.unlink()
    result = CliRunner().invoke(main, ["models", "import", str(weights), "--name", "nuclei", "--overwrite"])
    assert result.exit_code == 1 and "bundled model" in result.output and "--name" in result.output
    assert not (tmp_path / "cache" / "nuclei").exists()
    result = CliRunner().invoke(main, ["models", "import", str(weights), "--name", "mine"])
    assert result.exit_code == 0, result.output
    assert CliRunner().invoke(main, ["models", "info", "mine"]).exit_code == 0


def test_train_refuses_an_out_folder_holding_the_pretrained_model(tmp_path, fuzz):
    weights = _tiny_checkpoint(tmp_path / "run")
    (tmp_path / "data").mkdir()
    before = fuzz.sha256s(sorted((tmp_path / "run").iterdir()))
    result = CliRunner().invoke(main, ["train", str(tmp_path / "data"), "--pretrained", str(weights),
                                       "--out", str(tmp_path / "run"), "--epochs", "1"])
    assert result.exit_code == 1 and "the output is the input" in result.output, result.output
    assert "--pretrained" in result.output
    assert fuzz.sha256s(sorted((tmp_path / "run").iterdir())) == before

"""``cellseg fiji install``: the scripts land in Fiji's menu folder, the helper in jars/Lib."""

import json
import re
import sys
from pathlib import Path

from click.testing import CliRunner

from cellseg_bridge.cli import main
from cellseg_bridge.config import DEFAULTS
from cellseg_bridge.fiji.install import default_scripts_dir


def test_install_copies_scripts_helper_and_command(tmp_path):
    fiji = tmp_path / "Fiji.app"
    (fiji / "jars").mkdir(parents=True)
    result = CliRunner().invoke(main, ["fiji", "install", "--fiji", str(fiji)])
    assert result.exit_code == 0, result.output
    menu = sorted(p.name for p in (fiji / "scripts" / "Plugins" / "Cellseg").iterdir())
    assert menu == ["Batch_Folder.py", "Fine_Tune_From_ROI_Manager.py", "HITL_Add_Correction.py", "HITL_Next_Image.py",
                    "Restore.py", "Segment_Current_Image.py"]
    source = default_scripts_dir() / "scripts" / "Plugins" / "Cellseg" / "HITL_Next_Image.py"
    assert (fiji / "scripts" / "Plugins" / "Cellseg" / "HITL_Next_Image.py").read_bytes() == source.read_bytes()
    assert (fiji / "jars" / "Lib" / "cellseg_fiji.py").is_file()
    config = json.loads((fiji / "jars" / "Lib" / "cellseg_fiji.json").read_text())
    assert config["command"] == [sys.executable, "-m", "cellseg_bridge.cli"]
    # this environment's command: the defaults and commands are cached for the scripts (issue 18 defect 7)
    printed = CliRunner().invoke(main, ["defaults"])
    assert config["defaults"] == json.loads(printed.output)
    assert {"segment", "train", "restore", "hitl"} <= set(config["commands"])
    # the model list of the Segment dialogs: `cellseg models list` at install, restoration networks left out
    listed = json.loads(CliRunner().invoke(main, ["models", "list", "--json"]).output)
    segmenting = [m["name"] for m in listed if m["active"] and (m["config"] or {}).get("nout", 3) != 1]
    assert config["models"] == segmenting and {"nuclei", "cells"} <= set(segmenting)
    assert not {"denoise_nuclei", "deblur_nuclei"} & set(segmenting)
    expected = segmenting + ["auto"] if DEFAULTS.segment.model in segmenting else [*segmenting, DEFAULTS.segment.model, "auto"]
    for script in ("Segment_Current_Image.py", "Batch_Folder.py"):
        choices, value = _model_parameter(fiji / "scripts" / "Plugins" / "Cellseg" / script)
        assert choices == expected and value == DEFAULTS.segment.model  # the current default preselected
    again = CliRunner().invoke(main, ["fiji", "install", "--fiji", str(fiji), "--command", "/opt/env/bin/cellseg"])
    assert again.exit_code == 0
    other = json.loads((fiji / "jars" / "Lib" / "cellseg_fiji.json").read_text())
    assert other == {"command": ["/opt/env/bin/cellseg"]}  # another environment's defaults are not ours to cache
    assert _model_parameter(fiji / "scripts" / "Plugins" / "Cellseg" / "Segment_Current_Image.py") == \
        (["default", "auto"], "default")  # nor its models: the list of fiji_scripts


def _model_parameter(script: Path) -> tuple[list[str], str]:
    """Choices and preselected value of a script's ``#@ String (... choices={...}, value=...) model`` line."""
    (line,) = [line for line in script.read_text().splitlines() if line.startswith("#@") and line.endswith(" model")]
    choices = re.search(r"choices=\{([^}]*)\}", line).group(1)
    return [json.loads(c) for c in choices.split(", ")], json.loads(re.search(r'value=("[^"]*")', line).group(1))


def test_install_refuses_a_folder_that_is_not_fiji(tmp_path, monkeypatch):
    monkeypatch.delenv("FIJI_HOME", raising=False)
    result = CliRunner().invoke(main, ["fiji", "install", "--fiji", str(tmp_path)])
    assert result.exit_code != 0 and "not a Fiji installation" in result.output
    missing = CliRunner().invoke(main, ["fiji", "install"])
    assert missing.exit_code != 0 and "FIJI_HOME" in missing.output

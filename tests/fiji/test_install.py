"""``cellseg fiji install``: the scripts land in Fiji's menu folder, the helper in jars/Lib."""

import json
import sys

from click.testing import CliRunner

from cellseg_bridge.cli import main
from cellseg_bridge.fiji.install import default_scripts_dir


def test_install_copies_scripts_helper_and_command(tmp_path):
    fiji = tmp_path / "Fiji.app"
    (fiji / "jars").mkdir(parents=True)
    result = CliRunner().invoke(main, ["fiji", "install", "--fiji", str(fiji)])
    assert result.exit_code == 0, result.output
    menu = sorted(p.name for p in (fiji / "scripts" / "Plugins" / "Cellseg").iterdir())
    assert menu == ["Batch_Folder.py", "Fine_Tune_From_ROI_Manager.py", "HITL_Add_Correction.py", "HITL_Next_Image.py",
                    "Restore.py", "Segment_Current_Image.py"]
    source = default_scripts_dir() / "scripts" / "Plugins" / "Cellseg" / "Batch_Folder.py"
    assert (fiji / "scripts" / "Plugins" / "Cellseg" / "Batch_Folder.py").read_bytes() == source.read_bytes()
    assert (fiji / "jars" / "Lib" / "cellseg_fiji.py").is_file()
    config = json.loads((fiji / "jars" / "Lib" / "cellseg_fiji.json").read_text())
    assert config["command"] == [sys.executable, "-m", "cellseg_bridge.cli"]
    # this environment's command: the defaults and commands are cached for the scripts (issue 18 defect 7)
    printed = CliRunner().invoke(main, ["defaults"])
    assert config["defaults"] == json.loads(printed.output)
    assert {"segment", "train", "restore", "hitl"} <= set(config["commands"])
    again = CliRunner().invoke(main, ["fiji", "install", "--fiji", str(fiji), "--command", "/opt/env/bin/cellseg"])
    assert again.exit_code == 0
    other = json.loads((fiji / "jars" / "Lib" / "cellseg_fiji.json").read_text())
    assert other == {"command": ["/opt/env/bin/cellseg"]}  # another environment's defaults are not ours to cache


def test_install_refuses_a_folder_that_is_not_fiji(tmp_path, monkeypatch):
    monkeypatch.delenv("FIJI_HOME", raising=False)
    result = CliRunner().invoke(main, ["fiji", "install", "--fiji", str(tmp_path)])
    assert result.exit_code != 0 and "not a Fiji installation" in result.output
    missing = CliRunner().invoke(main, ["fiji", "install"])
    assert missing.exit_code != 0 and "FIJI_HOME" in missing.output

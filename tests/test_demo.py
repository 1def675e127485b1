"""The README's main job (``make demo``) on the bundled sample data."""

import re
from pathlib import Path

from click.testing import CliRunner

from cellseg_bridge.cli import main
from cellseg_bridge.io.reader import open_image

REPO = Path(__file__).resolve().parents[1]


def test_makefile_demo_commands_run_on_sample_data(tmp_path):
    makefile = (REPO / "Makefile").read_text()
    block = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    commands = re.findall(r"\$\(VENV\)/bin/cellseg (.+)", block)
    assert commands, "the demo target runs cellseg"
    runner = CliRunner()
    for command in commands:
        args = command.replace("demo_out", str(tmp_path / "demo_out")).split()
        args = [str(REPO / a) if a.startswith("sample_data") else a for a in args]
        result = runner.invoke(main, args)
        assert result.exit_code == 0, (command, result.output)
    converted = open_image(tmp_path / "demo_out" / "nuclei_00.ome.tif")
    assert converted.attrs["channel_names"] == ["DAPI"]
    assert (tmp_path / "demo_out" / "nuclei_00_RoiSet.zip").stat().st_size > 0

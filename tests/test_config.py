import json

from click.testing import CliRunner

from cellseg_bridge.cli import main
from cellseg_bridge.config import DEFAULTS


def test_defaults_command_prints_the_dataclass_defaults():
    result = CliRunner().invoke(main, ["defaults"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data == DEFAULTS.to_dict()
    assert data["rois"]["name_format"] == "cell_{label:04d}"

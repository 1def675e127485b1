import json

from click.testing import CliRunner

from cellseg_bridge.cli import main


def test_info_json_reports_versions_device_and_java():
    result = CliRunner().invoke(main, ["info", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["packages"]["cellseg-bridge"]
    assert data["packages"]["torch"]
    assert data["device"] in {"cpu", "cuda", "mps"}
    assert set(data["precision"]) == {"inference", "training"}
    assert {data["precision"]["inference"], data["precision"]["training"]} <= {"float32", "bfloat16", "float16"}
    assert set(data["java"]) == {"path", "version"}


def test_info_text_mentions_device_and_imagej():
    result = CliRunner().invoke(main, ["info"])
    assert result.exit_code == 0, result.output
    assert "device" in result.output
    assert "imagej jar" in result.output

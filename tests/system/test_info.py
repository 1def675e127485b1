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


def test_info_names_the_reader_backend_and_plugin_versions(monkeypatch):
    import importlib.metadata

    monkeypatch.delenv("CELLSEG_READER", raising=False)
    data = json.loads(CliRunner().invoke(main, ["info", "--json"]).output)
    reader = data["reader"]
    assert reader["backend"] == "bioio"
    assert reader["versions"]["bioio"] == importlib.metadata.version("bioio")
    assert reader["versions"]["bioio-czi"] == importlib.metadata.version("bioio-czi")
    text = CliRunner().invoke(main, ["info"]).output
    assert f"reader      bioio (bioio {importlib.metadata.version('bioio')}" in text
    monkeypatch.setenv("CELLSEG_READER", "aicsimageio")
    reader = json.loads(CliRunner().invoke(main, ["info", "--json"]).output)["reader"]
    assert reader["backend"] == "aicsimageio" and "aicsimageio" in reader["versions"] and reader["fallback"] is None

"""The run record ``cellseg_run.json``: what it holds, reruns with changed parameters, ``--like-run``."""

from __future__ import annotations

import json
import logging

import pytest
from click.testing import CliRunner

from cellseg_bridge.batch.run_record import RECORD_NAME, read_run_record
from cellseg_bridge.batch.segment import segment_files
from cellseg_bridge.cli import main
from cellseg_bridge.errors import InputError
from cellseg_bridge.nn.registry import resolve_model
from cellseg_bridge.nn.store import sha256_file
from cellseg_bridge.system.info import default_precision
from tests.batch.test_segment import engine, inputs  # noqa: F401  (fixtures)


def _run(inputs, out, engine, **options):  # noqa: F811
    return segment_files(inputs / "a.ome.tif", out, quiet=True, segment_fn=engine.segment,
                         load_model_fn=engine.load_model, **options)


def test_segment_writes_a_run_record(inputs, tmp_path, engine):  # noqa: F811
    out = tmp_path / "out"
    _run(inputs, out, engine, diameter=17.0, model="nuclei")
    record = read_run_record(out)
    assert record is not None and json.loads((out / RECORD_NAME).read_text())["format"] == "cellseg_run/1"
    assert record["command"] == "segment" and record["argv"]
    weights = resolve_model("nuclei")
    assert record["model"]["name"] == "nuclei"
    assert record["model"]["sha256"] == sha256_file(weights) and record["model"]["config"]["weights"] == weights.name
    assert record["options"]["diameter"] == 17.0 and record["options"]["channel"] == 0
    assert record["device"] == "cpu" and record["threads"] >= 1
    assert record["precision"] == default_precision("cpu")["inference"]  # "auto" resolved
    assert record["versions"]["cellseg-bridge"] and record["versions"]["torch"]
    source = (inputs / "a.ome.tif").resolve()
    assert record["inputs"] == [{"path": str(source), "size": source.stat().st_size, "mtime": record["inputs"][0]["mtime"]}]
    assert list(record["items"]) == ["a_labels.ome.tif"]
    assert record["items"]["a_labels.ome.tif"]["parameters_sha256"] == record["parameters_sha256"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # written atomically, nothing left behind


def test_rerun_with_other_parameters_redoes_the_items(inputs, tmp_path, engine, caplog):  # noqa: F811
    """Defect 4 of issue 18: another diameter or model redoes the outputs; the same parameters skip."""
    out = tmp_path / "out"
    _run(inputs, out, engine, diameter=17.0)
    same = _run(inputs, out, engine, diameter=17.0, device="cpu", batch_size=2)  # speed-only options: skipped
    assert [item.status for item in same.items] == ["skipped"] and len(engine.calls) == 1
    with caplog.at_level(logging.WARNING):
        other = _run(inputs, out, engine, diameter=30.0)
    assert [item.status for item in other.items] == ["done"] and engine.calls[-1]["diameter"] == 30.0
    assert "made with other parameters (diameter 17.0 -> 30.0)" in caplog.text and "redone" in caplog.text
    assert read_run_record(out)["options"]["diameter"] == 30.0
    again = _run(inputs, out, engine, diameter=30.0)
    assert [item.status for item in again.items] == ["skipped"] and len(engine.calls) == 2
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        model = _run(inputs, out, engine, diameter=30.0, model="cells")
    assert [item.status for item in model.items] == ["done"] and "model 'nuclei' -> 'cells'" in caplog.text
    assert read_run_record(out)["model"]["sha256"] == sha256_file(resolve_model("cells"))


def test_like_run_repeats_the_settings(inputs, tmp_path, engine):  # noqa: F811
    first = tmp_path / "first"
    args = ["segment", str(inputs / "a.ome.tif"), "--out", str(first), "--diameter", "23", "--channel", "GFP",
            "--cellprob-threshold", "-1.5", "--no-csv", "--save-geojson", "--geojson-object-type", "annotation"]
    assert CliRunner().invoke(main, args).exit_code == 0
    second = tmp_path / "second"
    result = CliRunner().invoke(main, ["segment", "--like-run", str(first / RECORD_NAME), "--out", str(second)])
    assert result.exit_code == 0, result.output
    one, two = engine.calls
    assert two["diameter"] == 23.0 and two["cellprob_threshold"] == -1.5 and two["channel"] == one["channel"]
    assert {k: v for k, v in one.items() if k != "model"} == {k: v for k, v in two.items() if k != "model"}
    assert sorted(p.name for p in second.iterdir()) == sorted(p.name for p in first.iterdir())  # no CSV either
    features = json.loads((second / "a_cells.geojson").read_text())["features"]  # GeoJSON and its options too
    assert features and {f["properties"]["objectType"] for f in features} == {"annotation"}
    assert read_run_record(second)["parameters_sha256"] == read_run_record(first)["parameters_sha256"]
    # a flag given with --like-run overrides the record
    third = tmp_path / "third"
    result = CliRunner().invoke(main, ["segment", "--like-run", str(first), "--out", str(third), "--diameter", "40"])
    assert result.exit_code == 0 and engine.calls[-1]["diameter"] == 40.0


def test_like_run_refuses_other_files(tmp_path):
    bad = tmp_path / RECORD_NAME
    bad.write_text('{"format": "something else"}')
    with pytest.raises(InputError, match="not a cellseg run record"):
        read_run_record(bad)
    result = CliRunner().invoke(main, ["segment", "--like-run", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "not a cellseg run record" in result.output

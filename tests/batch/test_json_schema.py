"""One ``--json`` schema on every path (issue 19 item 6): local, Dask, chunked, and chunked above the threshold.

The local path is the reference (docs/json_report.md; the Fiji scripts read
``item["outputs"]["labels"]`` and ``item["n_cells"]``): every path must give items
with the same keys, ``outputs`` a dict of absolute paths by kind, ``n_cells`` an
integer at the item's top level, and the same report keys.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import tifffile
from click.testing import CliRunner

from cellseg_bridge.batch.report import SUMMARY_KEYS
from cellseg_bridge.batch.segment import segment_files
from cellseg_bridge.datasets.synthetic import NucleiSpec, synthetic_nuclei

#: The keys of a report and of one of its items (docs/json_report.md).
REPORT_KEYS = {"ok", "model", "items", "failed", "counts", "manifest", "seconds"}
ITEM_KEYS = {"item", "input", "scene", "scene_name", "status", "reason", "outputs", *SUMMARY_KEYS, "seconds",
             "worker", "result"}


@pytest.fixture(scope="module")
def model() -> str:
    """The bundled nuclei model: it finds the synthetic nuclei, so ``n_cells`` > 0 is checked for real."""
    return "nuclei"


@pytest.fixture(scope="module")
def client():
    from cellseg_bridge.distributed import dask_client

    with dask_client(workers=1, threads_per_worker=1, processes=False) as c:
        yield c


def _inputs(folder: Path) -> Path:
    folder.mkdir()
    image, _ = synthetic_nuclei(NucleiSpec(shape=(64, 64), n_nuclei=5, diameter=12.0), seed=0)
    tifffile.imwrite(folder / "img.tif", image)
    (folder / "broken.tif").write_bytes(b"not a tiff")
    return folder


def _check(report: dict, out: Path, chunked: bool) -> dict:
    assert set(report) == REPORT_KEYS
    assert report["counts"] == {"done": 1, "skipped": 0, "failed": 1}
    assert [f["input"] for f in report["failed"]] == [str(Path("in") / "broken.tif")]  # inputs as given
    by_name = {Path(i["input"]).name: i for i in report["items"]}
    for item in by_name.values():
        assert set(item) == ITEM_KEYS, sorted(item)
    item = by_name["img.tif"]
    assert item["status"] == "done" and item["reason"] is None
    assert isinstance(item["n_cells"], int) and item["n_cells"] > 0
    assert isinstance(item["outputs"], dict)
    assert item["outputs"]["labels"] == str(out / "img_labels.ome.tif")
    assert all(os.path.isabs(p) and Path(p).exists() for p in item["outputs"].values())
    kinds = {"labels", "ome_zarr"} if chunked else {"labels", "csv", "overlay"}
    assert set(item["outputs"]) == kinds
    labels = tifffile.imread(item["outputs"]["labels"])
    assert int(labels.max()) == item["n_cells"]
    return item


@pytest.mark.parametrize("path", ["local", "dask", "chunked", "chunked-dask", "above-threshold"])
def test_every_path_prints_the_local_schema(path, model, client, tmp_path, monkeypatch, one_torch_thread):
    _inputs(tmp_path / "in")
    monkeypatch.chdir(tmp_path)  # relative inputs: outputs must still come out absolute
    out = tmp_path / "out"
    kwargs = dict(model=model, diameter=12.0, device="cpu", outputs=("labels", "csv", "overlay"), quiet=True)
    if path in ("dask", "chunked-dask"):
        kwargs["client"] = client
    if path.startswith("chunked"):
        kwargs.update(chunked=True, chunk_size=32)
    if path == "above-threshold":
        kwargs.update(chunked_threshold_pixels=32 * 32, chunk_size=32)
    report = segment_files([Path("in")], Path("out"), **kwargs).to_dict()
    item = _check(json.loads(json.dumps(report, default=str)), out, chunked=path not in ("local", "dask"))
    assert item["diameter"] == pytest.approx(12.0)
    if path in ("dask", "chunked-dask"):
        assert report["manifest"] == str(out / "cellseg_manifest.jsonl")  # absolute, as the outputs
    if path.startswith("chunked") or path == "above-threshold":
        assert item["result"]["chunks"] >= 4  # it really went through the chunked path


def test_cli_json_is_the_report(model, tmp_path, monkeypatch, one_torch_thread):
    from cellseg_bridge.cli import main

    _inputs(tmp_path / "in")
    monkeypatch.chdir(tmp_path)
    common = ["--model", model, "--diameter", "12", "--device", "cpu", "--json", "--no-rois"]
    for extra, chunked in (([], False), (["--chunked", "--chunk-size", "32"], True)):
        out = tmp_path / f"out{len(extra)}"
        result = CliRunner().invoke(main, ["segment", "in", "--out", out.name, *common, *extra])
        assert result.exit_code == 1, result.output  # broken.tif failed
        _check(json.loads(result.stdout), out, chunked)

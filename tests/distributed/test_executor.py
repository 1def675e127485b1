"""Batches on a 2-worker LocalCluster: results, failures, manifest, resume, a killed worker."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from click.testing import CliRunner

from cellseg_bridge.batch.convert import convert as convert_distributed
from cellseg_bridge.batch.runner import WorkItem
from cellseg_bridge.batch.segment import segment_files as segment_files_distributed
from cellseg_bridge.distributed import (
    dask_client,
    read_manifest,
    read_zarr_labels,
    run_items,
    segment_large,
)
from cellseg_bridge.errors import InputError


@pytest.fixture(scope="module")
def client():
    with dask_client(workers=2, threads_per_worker=1, processes=True) as c:
        yield c


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny network whose cell probability is biased up, so that it finds (meaningless) objects."""
    from cellseg_bridge.nn.checkpoint import save_checkpoint
    from cellseg_bridge.nn.net import CellposeUNet

    torch.manual_seed(0)
    net = CellposeUNet((1, 8, 16, 32), nout=3, diam_mean=17.0)
    with torch.no_grad():
        last = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        last.bias[2] += 3.0
    path = tmp_path_factory.mktemp("model") / "tiny.pth"
    save_checkpoint(net.eval(), path)
    return path


def _images(folder: Path, n: int, size: int = 64) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for k in range(n):
        path = folder / f"img{k}.tif"
        tifffile.imwrite(path, (rng.random((size, size)) * 1000).astype(np.uint16))
        paths.append(path)
    return paths


def _items(tmp_path: Path, n: int) -> list[WorkItem]:
    sources = _images(tmp_path / "in", n, 8)
    return [WorkItem(source=s, outputs=(tmp_path / "out" / f"{s.stem}.txt",), key=k) for k, s in enumerate(sources)]


def _writer(fail_key=None, die_key=None, marker: Path | None = None):
    """A task writing '<key> ok' (pickled by value: it is defined inside a function)."""

    def task(item):
        import os

        from cellseg_bridge.io.atomic import atomic_output

        if item.key == fail_key:
            raise InputError("bad pixels", item.source)
        if item.key == die_key and not marker.exists():
            marker.write_text("died once")
            os._exit(1)  # the worker process dies in the middle of the run
        with atomic_output(item.outputs[0]) as tmp:
            tmp.write_text(f"{item.key} ok")
        return {"key": item.key, "pid": os.getpid()}

    return task


def test_results_failures_manifest_and_resume(client, tmp_path):
    items = _items(tmp_path, 6)
    manifest = tmp_path / "out" / "manifest.jsonl"
    report = run_items(items, _writer(fail_key=3), client=client, manifest=manifest, quiet=True)
    status = {i.key: i.status for i in report.items}
    assert status == {0: "done", 1: "done", 2: "done", 3: "failed", 4: "done", 5: "done"}
    assert not report.ok and report.failed[0][1].endswith("bad pixels")
    assert len({i.worker for i in report.items if i.worker}) == 2  # both workers took items
    records = read_manifest(manifest)
    assert len(records) == 6 and records[str(items[3].source)]["status"] == "failed"
    assert records[str(items[0].source)]["result"]["key"] == 0
    # resume: done items are skipped, the failed one is tried again (and now succeeds)
    again = run_items(items, _writer(), client=client, manifest=manifest, quiet=True)
    assert [i.status for i in again.items].count("skipped") == 5
    assert again.ok and (tmp_path / "out" / "img3.txt").read_text() == "3 ok"
    assert read_manifest(manifest)[str(items[3].source)]["status"] == "done"


def test_a_killed_worker_loses_nothing(client, tmp_path):
    items = _items(tmp_path, 5)
    marker = tmp_path / "died"
    report = run_items(items, _writer(die_key=2, marker=marker), client=client, quiet=True,
                       manifest=tmp_path / "m.jsonl")
    assert marker.exists()  # the worker did die on the first attempt
    assert report.ok, report.failed
    assert [(tmp_path / "out" / f"img{k}.txt").read_text() for k in range(5)] == [f"{k} ok" for k in range(5)]
    assert all(r["status"] == "done" for r in read_manifest(tmp_path / "m.jsonl").values())


def test_segment_files_loads_the_model_once_per_worker(client, tiny_model, tmp_path):
    from cellseg_bridge.distributed.models import loads_in_this_process

    before = client.run(loads_in_this_process)  # a worker restarted after a kill may join later: 0 loads
    images = _images(tmp_path / "in", 6)
    bad = tmp_path / "in" / "broken.tif"
    bad.write_bytes(b"not a tiff")
    report = segment_files_distributed([tmp_path / "in"], tmp_path / "out", client=client, model=str(tiny_model),
                                       diameter=17.0, outputs=("labels", "csv"), quiet=True, device="cpu")
    assert [f for f, _ in report.failed] == [str(bad)]
    for path in images:
        labels = tifffile.imread(tmp_path / "out" / f"{path.stem}_labels.ome.tif")
        assert labels.shape == (64, 64)
        assert (tmp_path / "out" / f"{path.stem}_cells.csv").exists()
    after = client.run(loads_in_this_process)
    loads = [after[w] - before.get(w, 0) for w in after]
    assert max(loads) == 1 and sum(loads) >= 1
    assert all(i.result["diameter"] == 17.0 for i in report.items if i.status == "done")


def test_convert_on_the_cluster(client, tmp_path):
    images = _images(tmp_path / "in", 3, 16)
    report = convert_distributed([tmp_path / "in"], tmp_path / "out", client=client, quiet=True)
    assert report.ok
    for path in images:
        out = tmp_path / "out" / f"{path.stem}.ome.tif"
        np.testing.assert_array_equal(tifffile.imread(out).squeeze(), tifffile.imread(path))
    lines = (tmp_path / "out" / "cellseg_manifest.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["status"] for line in lines) == ["done"] * 3


def test_chunks_on_the_cluster_equal_chunks_in_process(client, tiny_model, tmp_path):
    rng = np.random.default_rng(1)
    image = (rng.random((150, 170)) * 255).astype(np.uint8)
    opts = dict(diameter=17.0, flow_threshold=0.0, device="cpu")
    here = segment_large(image, str(tiny_model), chunk_size=60, **opts)
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, image)
    there = segment_large(path, str(tiny_model), chunk_size=60, client=client, out=tmp_path / "l.ome.zarr", **opts)
    assert here.n_chunks == there.n_chunks == 9 and here.n_cells > 10
    np.testing.assert_array_equal(np.asarray(read_zarr_labels(tmp_path / "l.ome.zarr")[:]), here.labels)


def test_cli_segment_chunked_writes_zarr_and_tiled_tiff(tiny_model, tmp_path):
    from cellseg_bridge.cli import main

    _images(tmp_path / "in", 1, 96)
    result = CliRunner().invoke(main, ["segment", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--chunked",
                                       "--chunk-size", "48", "--model", str(tiny_model), "--diameter", "17",
                                       "--flow-threshold", "0", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["counts"] == {"done": 1, "skipped": 0, "failed": 0}
    # <base>.ome.zarr: the image at its root, the merged labels in labels/cells (OME-NGFF 0.4)
    zarr_labels = np.asarray(read_zarr_labels(tmp_path / "out" / "img0.ome.zarr" / "labels" / "cells")[:])
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "img0_labels.ome.tif"), zarr_labels[0, 0, 0])
    image = np.asarray(read_zarr_labels(tmp_path / "out" / "img0.ome.zarr")[:])
    np.testing.assert_array_equal(image[0, 0, 0], tifffile.imread(next((tmp_path / "in").iterdir())))
    assert data["items"][0]["result"]["chunks"] == 4 and zarr_labels.max() > 0
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no scratch left
    models = pytest.importorskip("ome_zarr_models", reason="ome-zarr-models not installed (Python >= 3.11)")
    import zarr
    from ome_zarr_models.v04.image import Image
    from ome_zarr_models.v04.image_label import ImageLabel

    assert isinstance(models.open_ome_zarr(zarr.open_group(str(tmp_path / "out" / "img0.ome.zarr"), mode="r")), Image)
    ImageLabel.from_zarr(zarr.open_group(str(tmp_path / "out" / "img0.ome.zarr" / "labels" / "cells"), mode="r"))


def test_large_planes_are_detected_by_size(tmp_path):
    from cellseg_bridge.batch.segment import has_large_planes

    _images(tmp_path / "in", 2, 40)
    assert has_large_planes([tmp_path / "in"], threshold=40 * 40 - 1)
    assert not has_large_planes([tmp_path / "in"], threshold=40 * 40)
    assert not has_large_planes([tmp_path / "missing"], threshold=1)


@pytest.fixture(scope="module")
def tiny_restore_model(tmp_path_factory) -> Path:
    """A tiny restoration network (1 channel in, 1 out), random weights."""
    from cellseg_bridge.nn.checkpoint import save_checkpoint
    from cellseg_bridge.nn.net import CellposeUNet

    torch.manual_seed(2)
    net = CellposeUNet((1, 4, 8, 16), nout=1, diam_mean=17.0)
    path = tmp_path_factory.mktemp("restore_model") / "weights.pth"
    save_checkpoint(net.eval(), path, {"task": "restoration", "restore_type": "denoise"})
    return path


def test_segment_with_restore_on_the_cluster_equals_the_sequential_batch(client, tiny_model, tiny_restore_model,
                                                                       tmp_path):
    from cellseg_bridge.batch.segment import segment_files
    from cellseg_bridge.distributed.models import loads_in_this_process

    images = _images(tmp_path / "in", 4)
    opts = dict(model=str(tiny_model), diameter=17.0, flow_threshold=0.0, outputs=("labels",), quiet=True,
                device="cpu")
    before = client.run(loads_in_this_process, str(tiny_restore_model))
    there = segment_files_distributed([tmp_path / "in"], tmp_path / "cluster", client=client,
                                      restore=str(tiny_restore_model), **opts)
    assert there.ok and len(there.items) == 4
    after = client.run(loads_in_this_process, str(tiny_restore_model))
    assert max(after[w] - before.get(w, 0) for w in after) == 1  # the restoration model once per worker
    segment_files([tmp_path / "in"], tmp_path / "here", restore=str(tiny_restore_model), **opts)
    segment_files([tmp_path / "in"], tmp_path / "plain", **opts)
    differs = []
    for path in images:
        name = f"{path.stem}_labels.ome.tif"
        labels = tifffile.imread(tmp_path / "here" / name)
        assert labels.max() > 0
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "cluster" / name), labels)
        differs.append(not np.array_equal(labels, tifffile.imread(tmp_path / "plain" / name)))
    assert any(differs)  # the restoration did change what was segmented


def test_restore_is_refused_for_chunked_planes(tiny_model, tiny_restore_model, tmp_path):
    _images(tmp_path / "in", 1, 40)
    opts = dict(model=str(tiny_model), diameter=17.0, quiet=True, device="cpu", restore=str(tiny_restore_model))
    with pytest.raises(InputError, match="chunked"):
        segment_files_distributed([tmp_path / "in"], tmp_path / "out", chunked=True, **opts)
    report = segment_files_distributed([tmp_path / "in"], tmp_path / "out", chunked_threshold_pixels=100, **opts)
    assert not report.ok and "restore it first" in report.failed[0][1]
    assert not (tmp_path / "out" / "img0_labels.ome.tif").exists()


def _shape(value):
    """The keys of a JSON value, recursively (lists: the union of their items' shapes)."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        merged: dict = {}
        for item in value:
            shape = _shape(item)
            if isinstance(shape, dict):
                merged.update(shape)
        return [merged]
    return None


def test_local_and_dask_runs_print_the_same_json_shape(client, tiny_model, tmp_path):
    from cellseg_bridge.cli import main

    _images(tmp_path / "in", 2)
    (tmp_path / "in" / "broken.tif").write_bytes(b"not a tiff")
    common = ["--model", str(tiny_model), "--diameter", "17", "--device", "cpu", "--json", "--no-rois"]
    here = CliRunner().invoke(main, ["segment", str(tmp_path / "in"), "--out", str(tmp_path / "here"), *common])
    there = CliRunner().invoke(main, ["segment", str(tmp_path / "in"), "--out", str(tmp_path / "there"),
                                      "--scheduler", client.scheduler.address, *common])
    assert here.exit_code == there.exit_code == 1, here.output + there.output  # broken.tif failed in both
    local, dask = json.loads(here.stdout), json.loads(there.stdout)
    assert _shape(local) == _shape(dask)
    assert local["counts"] == dask["counts"] == {"done": 2, "skipped": 0, "failed": 1}
    done = {Path(i["input"]).name: i for i in local["items"] if i["status"] == "done"}
    for item in dask["items"]:
        if item["status"] == "done":
            assert item["n_cells"] == done[Path(item["input"]).name]["n_cells"]
            assert set(item["outputs"]) == {"labels", "csv", "overlay"}
    assert local["manifest"] is None and Path(dask["manifest"]).name == "cellseg_manifest.jsonl"

"""The Dask manifest records every finished item, even when the collecting process stops first (issue 19 item 10)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cellseg_bridge.batch.items import WorkItem
from cellseg_bridge.batch.report import BatchInterrupted, read_manifest
from cellseg_bridge.distributed import dask_client, run_items
from cellseg_bridge.distributed.executor import DaskExecutor


def _write(item: WorkItem) -> dict:
    item.outputs[0].write_text("ok")
    return {"n_cells": 1}


def test_items_finished_on_workers_are_in_the_manifest_before_they_are_collected(tmp_path, monkeypatch):
    items = [WorkItem(Path(f"in{k}.tif"), (tmp_path / "out" / f"{k}.txt",), key=k) for k in range(3)]
    (tmp_path / "out").mkdir()
    manifest = tmp_path / "out" / "manifest.jsonl"
    real_collect = DaskExecutor._collect

    def dies_at_first_result(futures):
        for _ in real_collect(futures):
            deadline = time.monotonic() + 30
            while not all(item.outputs[0].exists() for item in items) and time.monotonic() < deadline:
                time.sleep(0.01)  # every item finishes on the worker ...
            time.sleep(0.2)
            raise KeyboardInterrupt  # ... while this process dies before collecting them

    monkeypatch.setattr(DaskExecutor, "_collect", staticmethod(dies_at_first_result))
    with dask_client(workers=1, threads_per_worker=1, processes=False) as client:
        with pytest.raises(BatchInterrupted) as info:
            run_items(items, _write, client=client, manifest=manifest, quiet=True)
    # nothing was collected, yet the report of the interruption counts what the workers finished ...
    assert info.value.report.counts()["done"] == 3
    assert sorted(info.value.report.done) == sorted(item.outputs[0] for item in items)
    records = read_manifest(manifest)
    assert sorted(records) == sorted(item.name for item in items)  # ... and the manifest records them
    assert all(r["status"] == "done" and r["n_cells"] == 1 for r in records.values())
    assert len(manifest.read_text().splitlines()) == 3  # once each


def test_failed_items_are_recorded_by_the_collector_once(tmp_path):
    items = [WorkItem(Path(f"in{k}.tif"), (tmp_path / "out" / f"{k}.txt",), key=k) for k in range(2)]

    def task(item: WorkItem) -> dict:
        if item.key == 1:
            raise ValueError("bad")
        return _write(item)

    manifest = tmp_path / "manifest.jsonl"
    with dask_client(workers=1, threads_per_worker=1, processes=False) as client:
        report = run_items(items, task, client=client, manifest=manifest, quiet=True)
    assert report.counts() == {"done": 1, "skipped": 0, "failed": 1}
    lines = manifest.read_text().splitlines()
    assert len(lines) == 2
    assert read_manifest(manifest)[items[1].name]["reason"] == "ValueError: bad"

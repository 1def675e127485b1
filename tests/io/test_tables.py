"""Per-cell measurements: exact values against a brute-force reference, modes, speed, CSV."""

from __future__ import annotations

import csv
import time

import numpy as np
import pytest

from cellseg_bridge.errors import InputError
from cellseg_bridge.io.tables import measure_cells, n_rows, write_csv


def _reference(labels2d, channels):
    """Brute force, one label at a time (fine for a test)."""
    rows = {}
    for lab in np.unique(labels2d):
        if lab == 0:
            continue
        ys, xs = np.nonzero(labels2d == lab)
        rows[int(lab)] = (ys.size, ys.mean(), xs.mean(), [c[labels2d == lab].mean() for c in channels])
    return rows


def test_2d_values_match_reference():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 30, (40, 50)).astype(np.uint16)
    labels[labels == 7] = 0  # a missing label gives no row
    channels = rng.random((2, 40, 50))
    table = measure_cells(labels, channels, channel_names=["DAPI", "GFP"], pixel_sizes={"Y": 0.5, "X": 0.25, "Z": None})
    assert list(table) == ["label", "area", "area_um2", "centroid_y", "centroid_x", "mean_DAPI", "mean_GFP"]
    ref = _reference(labels, channels)
    assert table["label"].tolist() == sorted(ref)
    for i, lab in enumerate(table["label"]):
        area, cy, cx, means = ref[lab]
        assert table["area"][i] == area
        assert table["area_um2"][i] == pytest.approx(area * 0.125)
        assert table["centroid_y"][i] == pytest.approx(cy) and table["centroid_x"][i] == pytest.approx(cx)
        assert [table["mean_DAPI"][i], table["mean_GFP"][i]] == pytest.approx(means)


def test_one_channel_without_names_and_no_sizes():
    labels = np.zeros((5, 6), np.uint8)
    labels[1:3, 1:4] = 1
    labels[4, 5] = 9
    table = measure_cells(labels, np.arange(30).reshape(5, 6))
    assert list(table) == ["label", "area", "centroid_y", "centroid_x", "mean_ch0"]
    assert table["label"].tolist() == [1, 9] and table["area"].tolist() == [6, 1]
    assert table["mean_ch0"].tolist() == [11.0, 29.0]
    assert n_rows(measure_cells(np.zeros((4, 4), np.uint16))) == 0


def test_3d_objects_and_per_plane_and_time():
    labels = np.zeros((2, 3, 4, 4), np.uint16)  # T Z Y X
    labels[0, :, 1:3, 1:3] = 2
    labels[1, 1, 0, 0] = 5
    vol = measure_cells(labels, pixel_sizes={"Z": 2.0, "Y": 1.0, "X": 0.5})
    assert list(vol) == ["label", "t", "volume", "volume_um3", "centroid_z", "centroid_y", "centroid_x"]
    assert vol["t"].tolist() == [1, 2] and vol["volume"].tolist() == [12, 1]
    assert vol["volume_um3"].tolist() == [12.0, 1.0] and vol["centroid_z"].tolist() == [1.0, 1.0]
    flat = measure_cells(labels, per_plane=True)
    assert list(flat) == ["label", "t", "z", "area", "centroid_y", "centroid_x"]
    assert flat["z"].tolist() == [1, 2, 3, 2] and flat["area"].tolist() == [4, 4, 4, 1]
    zyx = measure_cells(labels[0], axes="ZYX")
    assert "t" not in zyx and zyx["volume"].tolist() == [12]
    tyx = measure_cells(labels[:, 1], axes="TYX")
    assert tyx["t"].tolist() == [1, 2] and "area" in tyx


def test_sparse_large_label_values():
    labels = np.zeros((3, 3), np.int64)
    labels[0, 0] = 2**40
    labels[2, 2] = 5
    table = measure_cells(labels)
    assert table["label"].tolist() == [5, 2**40] and table["area"].tolist() == [1, 1]


def test_ten_thousand_cells_fast(tmp_path):
    labels = np.kron(np.arange(1, 10001).reshape(100, 100), np.ones((10, 10), np.uint16)).astype(np.uint16)
    channels = np.random.default_rng(0).random((2,) + labels.shape).astype(np.float32)
    measure_cells(labels[:10, :10], channels[:, :10, :10])  # warm-up
    tic = time.perf_counter()
    table = measure_cells(labels, channels)
    write_csv(table, tmp_path / "cells.csv")
    assert time.perf_counter() - tic < 2.0
    assert n_rows(table) == 10000 and (table["area"] == 100).all()


def test_write_csv_roundtrip(tmp_path):
    table = {"label": np.array([1, 2]), "area_um2": np.array([0.5, np.nan]), "mean_a,b": np.array([1e-9, 3.25])}
    path = write_csv(table, tmp_path / "x_cells.csv")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["label", "area_um2", "mean_a,b"]
    assert rows[1:] == [["1", "0.5", "1e-09"], ["2", "NaN", "3.25"]]
    assert [p.name for p in tmp_path.iterdir()] == ["x_cells.csv"]
    with pytest.raises(InputError, match="length"):
        write_csv({"a": np.arange(2), "b": np.arange(3)}, tmp_path / "bad.csv")


def test_bad_inputs():
    with pytest.raises(InputError, match="integers"):
        measure_cells(np.zeros((3, 3), np.float32))
    with pytest.raises(InputError, match=">= 0"):
        measure_cells(-np.ones((3, 3), np.int32))
    with pytest.raises(InputError, match="axes"):
        measure_cells(np.zeros((2, 3, 3), np.uint8), axes="ZXY")
    with pytest.raises(InputError, match="channel names"):
        measure_cells(np.zeros((3, 3), np.uint8), np.zeros((2, 3, 3)), channel_names=["a"])
    with pytest.raises(InputError, match="does not match"):
        measure_cells(np.zeros((3, 3), np.uint8), np.zeros((3, 4)))

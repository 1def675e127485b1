"""The ROI-subset rule of ``benchmarks/label_efficiency.py`` (pure helpers only, no training)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import label_efficiency as le  # the repository root is on pytest's pythonpath


def _grid(n_rows: int, n_cols: int, shape=(64, 80), size=6, step=10, offset=2) -> np.ndarray:
    """A label image with ``n_rows x n_cols`` square ROIs (labels 1..n, row-major)."""
    lab = np.zeros(shape, np.int32)
    k = 0
    for r in range(n_rows):
        for c in range(n_cols):
            k += 1
            y, x = offset + r * step, offset + c * step
            lab[y : y + size, x : x + size] = k
    return lab


def _n(lab: np.ndarray) -> int:
    return int(np.unique(lab[lab > 0]).size)


def test_whole_images_in_order_then_an_exact_strip():
    labels = [_grid(2, 3), _grid(4, 5), _grid(3, 3)]  # 6, 20, 9 ROIs
    parts = le.roi_subset(labels, 20, order=[2, 0, 1])
    assert [(p.index, p.side) for p in parts[:2]] == [(2, None), (0, None)]
    assert parts[2] == le.SubsetPart(1, "top", 12, 5)  # the first row of ROIs of the 4x5 grid
    assert len(parts) == 3 and sum(p.n_rois for p in parts) == 20
    assert le.roi_subset(labels, 15, order=[2, 0, 1]) == parts[:2]  # exact fit: no strip
    for p in parts:
        image = np.arange(labels[p.index].size, dtype=np.float32).reshape(labels[p.index].shape)
        img, lab = le.crop_part(image, labels[p.index], p)
        assert img.shape == lab.shape
        assert _n(lab) == p.n_rois  # every counted ROI is in the crop, no other ROI is


def test_strip_keeps_rois_cut_by_its_edge_and_counts_them():
    lab = np.zeros((40, 40), np.int32)
    lab[0:10, 0:10] = 1  # nearest to the top
    lab[5:20, 20:30] = 2  # reaches below row 12: cut by the strip edge, still counted
    lab[12:18, 0:6] = 3  # starts at row 12: the first ROI left out
    lab[30:36, 30:36] = 4
    parts = le.roi_subset([lab], 2, order=[0])
    assert parts == [le.SubsetPart(0, "top", 12, 2)]
    _, crop = le.crop_part(np.zeros((40, 40)), lab, parts[0])
    assert crop.shape == (12, 40)
    assert set(np.unique(crop)) == {0, 1, 2}


def test_ties_on_one_side_use_another_side():
    lab = np.zeros((30, 30), np.int32)
    for k, x in enumerate((0, 10, 20), start=1):  # three ROIs touching the top row: no top strip holds 2
        lab[0 : 5 + 5 * k, x : x + 6] = k
    parts = le.roi_subset([lab], 2, order=[0])
    assert parts[0].side != "top" and parts[0].n_rois == 2
    _, crop = le.crop_part(np.zeros((30, 30)), lab, parts[0])
    assert _n(crop) == 2


def _diagonal(n: int) -> np.ndarray:
    """``n`` 4x4 ROIs on distinct rows and columns (no two equally far from any side)."""
    lab = np.zeros((5 * n + 5, 80), np.int32)
    for k in range(n):
        x = (7 * k) % 76
        lab[5 * k : 5 * k + 4, x : x + 4] = k + 1
    return lab


def test_subsets_of_one_order_are_nested():
    labels = [_diagonal(4), _diagonal(9), _diagonal(10)]  # 23 ROIs
    small = le.roi_subset(labels, 7, order=[0, 1, 2])
    large = le.roi_subset(labels, 11, order=[0, 1, 2])
    assert small == [le.SubsetPart(0, None, 0, 4), le.SubsetPart(1, "top", 15, 3)]
    assert large == [le.SubsetPart(0, None, 0, 4), le.SubsetPart(1, "top", 35, 7)]
    everything = le.roi_subset(labels, 100, order=[2, 1, 0])
    assert sum(p.n_rois for p in everything) == 23 and all(p.side is None for p in everything)


def test_a_count_that_ties_forbid_is_completed_from_the_next_image():
    tied = _grid(2, 2)  # two ROIs at the same distance from every side, twice
    parts = le.roi_subset([tied, _diagonal(5)], 3, order=[0, 1])
    assert parts[0].index == 0 and parts[0].n_rois == 2
    assert parts[1] == le.SubsetPart(1, "top", 5, 1)
    assert le.roi_subset([tied, _diagonal(5)], 1, order=[0, 1]) == [le.SubsetPart(1, "top", 5, 1)]


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_rois"):
        le.roi_subset([_grid(1, 1)], 0, order=[0])
    with pytest.raises(ValueError, match="permutation"):
        le.roi_subset([_grid(1, 1), _grid(1, 1)], 1, order=[0, 0])


def test_invert_is_one_minus_the_normalised_image():
    from cellseg_bridge.core.transforms import normalize_percentile

    img = np.random.default_rng(0).gamma(2.0, 30.0, (40, 50)).astype(np.float32)
    inv = le.invert(img)
    assert inv.dtype == np.float32 and inv.min() == pytest.approx(img.min()) and inv.max() == pytest.approx(img.max())
    a = normalize_percentile(img, 1.0, 99.0)
    b = normalize_percentile(inv, 1.0, 99.0)
    np.testing.assert_allclose(b, 1.0 - a, atol=1e-4)


# --------------------------------------------------------------------------- whole-cell mode (Usiigaci), end to end


def test_pretrain_spec_refuses_the_target_and_bad_weights():
    assert le.parse_pretrain_spec("bbbc030:0.4,dsb2018:0.6") == [("bbbc030", 0.4), ("dsb2018", 0.6)]
    assert le.parse_pretrain_spec("bbbc030") == [("bbbc030", 1.0)]
    with pytest.raises(ValueError, match="usiigaci"):
        le.parse_pretrain_spec("bbbc030:0.4,usiigaci:0.6")
    with pytest.raises(ValueError, match="unknown"):
        le.parse_pretrain_spec("cyto2:1")
    with pytest.raises(ValueError, match="positive"):
        le.parse_pretrain_spec("bbbc030:0")


def test_timed_table_has_train_and_cpu_seconds():
    rows = [{"model": "pretrained", "n_rois": 0, "seed": 0, "n_images": 0, "ap50": 0.5, "ap75": 0.2, "ap90": 0.0,
             "train_seconds": 100.4, "run_cpu_seconds": 190.0},
            *({"model": m, "n_rois": 50, "seed": s, "n_images": 1, "ap50": 0.1, "ap75": 0.0, "ap90": 0.0,
               "train_seconds": 10.0 + s, "run_cpu_seconds": ""} for m in ("finetune", "scratch") for s in (1, 0))]
    text = le.markdown_table(rows, "T", times=True)
    assert "| AP@0.9 | train s | CPU s |" in text
    assert "| 0 | 0 | pretrained only | 0.500 | 0.200 | 0.000 | 100 | 190 |" in text
    assert "| 50 | 1 | fine-tuned | 0.100 ± 0.000 | 0.000 ± 0.000 | 0.000 ± 0.000 | 10/11 | ?/? |" in text
    assert "train s" not in le.markdown_table(rows, "T")  # the dsb2018 table is unchanged


@pytest.mark.slow
def test_usiigaci_mode_end_to_end_with_real_roi_exports(shared_data, tmp_path, monkeypatch):
    """``--dataset usiigaci --quick`` on tiny settings: pretraining without Usiigaci, a 50-ROI subset of
    the Fiji RoiSet.zip exports, both arms, test scores against the label PNGs; a rerun trains nothing."""
    import csv
    import json

    from cellseg_bridge.datasets import usiigaci

    out = tmp_path / "le_cells"
    args = ["--dataset", "usiigaci", "--quick", "--out", str(out), "--rois", "50", "--seeds", "0",
            "--max-pretrain-images", "2", "--max-test-images", "1", "--batch-size", "2", "--crop", "96"]
    assert le.main(args) == 0

    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert [(r["model"], r["n_rois"]) for r in rows] == [("pretrained", "0"), ("finetune", "50"), ("scratch", "50")]
    for r in rows:
        assert 0.0 <= float(r["ap50"]) <= 1.0 and float(r["train_seconds"]) > 0
        assert float(r["run_cpu_seconds"]) > 0 and float(r["run_wall_seconds"]) >= float(r["train_seconds"])
    table = (out / "label_efficiency.md").read_text()
    assert "| train s | CPU s |" in table and "1 of the 5 Usiigaci test fields" in table

    # the pretraining saw bbbc030 and dsb2018 only, drawn 0.4 / 0.6
    prov = json.loads((out / "pretrained" / "config.json").read_text())["provenance"]
    assert [(d["name"], d["weight"]) for d in prov["datasets"]] == [("bbbc030", 0.4), ("dsb2018", 0.6)]
    # the subset: ROIs of a train field that has a RoiSet.zip, counted on the labels rasterised from it
    parts = json.loads((out / "subsets.json").read_text())["r50_s0"]
    assert sum(p["n_rois"] for p in parts) == 50
    split = dict(line.split("\t") for line in (shared_data / "usiigaci" / "split.tsv").read_text().split("\n")[1:]
                 if line)
    for p in parts:
        folder = shared_data / "usiigaci" / p["image_id"]
        assert split[p["image_id"]] == "train" and usiigaci.roi_path(folder) is not None
        lab = usiigaci.labels_from_rois(folder, usiigaci.load_image(folder).shape)
        _, crop = le.crop_part(lab, lab, le.SubsetPart(p["index"], p["side"], p["depth"], p["n_rois"]))
        assert _n(crop) == p["n_rois"]

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")

    import cellseg_bridge.training

    monkeypatch.setattr(cellseg_bridge.training, "train", no_training)
    assert le.main(args) == 0  # everything skipped, scores from the caches
    assert list(csv.DictReader((out / "scores.csv").open())) == rows


def test_a_pretrained_model_that_saw_usiigaci_is_refused(tmp_path):
    import json

    def model(folder, prov):
        folder.mkdir()
        (folder / "weights.pth").write_bytes(b"")
        (folder / "config.json").write_text(json.dumps({"provenance": prov}))
        return folder / "weights.pth"

    clean = model(tmp_path / "clean", {"datasets": [{"name": "bbbc030"}, {"name": "dsb2018"}]})
    le._check_pretrained(clean, "usiigaci")
    mixed = model(tmp_path / "mixed", {"datasets": [{"name": "usiigaci"}, {"name": "dsb2018"}]})
    with pytest.raises(ValueError, match="usiigaci"):
        le._check_pretrained(mixed, "usiigaci")
    child = model(tmp_path / "child", {"pretrained": str(mixed)})  # fine-tuned from a model that saw it
    with pytest.raises(ValueError, match="usiigaci"):
        le._check_pretrained(child, "usiigaci")
    le._check_pretrained(model(tmp_path / "child2", {"pretrained": str(clean)}), "usiigaci")
    for bundled in ("cells", "cells_phase"):  # both saw the Usiigaci train fields
        with pytest.raises(ValueError, match="usiigaci"):
            le._check_pretrained(le.REPO / "cellseg_bridge" / "models" / bundled / "weights.pth", "usiigaci")

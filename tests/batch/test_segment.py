"""``segment_files`` and ``cellseg segment``: outputs and their content, resume, failures, JSON.

Most tests inject a fake segmenter (threshold + connected components) so they
run in milliseconds and do not depend on the network; the last ones run the
real :func:`cellseg_bridge.segmentation.pipeline.segment` with a tiny random-weights model and
with the peer's nuclei checkpoint on ``sample_data/nuclei_00.ome.tif``.
"""

from __future__ import annotations

import csv
import json
import sys
import types
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from scipy import ndimage

from cellseg_bridge.batch.segment import segment_files
from cellseg_bridge.cli import main
from cellseg_bridge.config import DEFAULTS
from cellseg_bridge.errors import InputError
from cellseg_bridge.io.reader import open_image
from cellseg_bridge.io.roi_import import read_rois, rois_to_labels
from cellseg_bridge.io.seg_npy import read_seg_npy
from cellseg_bridge.io.writers import write_ome_tiff

REPO = Path(__file__).resolve().parents[2]
SIZES = {"Z": 2.0, "Y": 0.5, "X": 0.5}


# ------------------------------------------------------------------ fake segmenter


class FakeEngine:
    """Threshold the chosen channel at its mean, label connected components per plane."""

    def __init__(self):
        self.loads: list[tuple] = []
        self.calls: list[dict] = []
        self.results: dict[str, np.ndarray] = {}

    def load_model(self, name_or_path, device="auto"):
        self.loads.append((name_or_path, device))
        return types.SimpleNamespace(name=str(name_or_path))

    def segment(self, image, model=None, *, axes=None, return_flows=False, **options):
        self.calls.append(dict(options, return_flows=return_flows, model=model))
        data = np.asarray(image.isel(C=options["channel"]).values, dtype=np.float64)  # T Z Y X
        labels = np.zeros(data.shape, np.uint16)
        for t in range(data.shape[0]):
            offset = 0
            for z in range(data.shape[1]):
                plane, n = ndimage.label(data[t, z] > data[t, z].mean())
                labels[t, z] = np.where(plane > 0, plane + offset, 0)
                offset += n
        self.results[image.attrs["source"]] = labels
        flows = cellprob = None
        if return_flows:
            flows = np.stack([np.gradient(data, axis=a) for a in (2, 3)], axis=1).astype(np.float32)
            cellprob = (data - data.mean()).astype(np.float32)
        return types.SimpleNamespace(labels=labels, flows=flows, cellprob=cellprob, styles=None,
                                     diameter=17.0, model=model.name)


@pytest.fixture
def engine(monkeypatch):
    """A FakeEngine, also installed as ``cellseg_bridge.segmentation.pipeline`` for the CLI."""
    fake = FakeEngine()
    module = types.SimpleNamespace(segment=fake.segment, load_model=fake.load_model)
    monkeypatch.setitem(sys.modules, "cellseg_bridge.segmentation.pipeline", module)
    return fake


def _blobs(shape, seed):
    """Bright squares on a dim noisy background; shape (..., Y, X)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 20, shape).astype(np.uint16)
    for i in range(4):
        cy, cx = 4 + 7 * i, 3 + 6 * i
        img[..., cy : cy + 4, cx : cx + 5] += 500
    return img


@pytest.fixture
def inputs(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    two_channel = np.stack([_blobs((32, 40), 1), _blobs((32, 40), 2)[::-1]])  # C Y X
    write_ome_tiff(two_channel, folder / "a.ome.tif", dims="CYX", channel_names=["DAPI", "GFP"],
                   physical_pixel_sizes=SIZES)
    write_ome_tiff(_blobs((3, 32, 40), 3), folder / "stack.ome.tif", dims="ZYX", physical_pixel_sizes=SIZES)
    (folder / "broken.tif").write_bytes(b"II*\x00 this is not a TIFF")
    return folder


def _labels_of(path: Path) -> np.ndarray:
    image = open_image(path)
    return np.asarray(image.isel(C=0).values)  # T Z Y X


def _csv_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------ API


def test_outputs_and_their_content(inputs, tmp_path, engine):
    out = tmp_path / "out"
    report = segment_files(inputs, out, quiet=True, segment_fn=engine.segment, load_model_fn=engine.load_model)
    assert engine.loads == [(DEFAULTS.segment.model, DEFAULTS.segment.device)]  # loaded once
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{stem}{suffix}" for stem in ("a", "stack")
         for suffix in ("_labels.ome.tif", "_RoiSet.zip", "_cells.csv", "_overlay.png")] + ["cellseg_run.json"]
    )
    assert [source for source, _ in report.failed] == [str(inputs / "broken.tif")]
    assert len(report.done) == 8 and not report.ok

    for stem, source in (("a", "a.ome.tif"), ("stack", "stack.ome.tif")):
        expected = engine.results[str(inputs / source)]
        labels_file = out / f"{stem}_labels.ome.tif"
        assert np.array_equal(_labels_of(labels_file), expected)
        image = open_image(labels_file)
        assert image.attrs["physical_pixel_sizes"]["X"] == pytest.approx(0.5)
        # ROIs decode to exactly the same labels (pixel-edge tracing), planes via positions
        axes = "ZYX" if expected.shape[1] > 1 else "YX"
        shape = expected.shape[1:] if axes == "ZYX" else expected.shape[2:]
        decoded, _ = rois_to_labels(out / f"{stem}_RoiSet.zip", shape, axes=axes)
        assert np.array_equal(decoded > 0, expected.reshape(shape) > 0)
        assert _same_partition(decoded, expected.reshape(shape))
        rows = _csv_rows(out / f"{stem}_cells.csv")
        n_objects = sum(len(np.unique(p)) - 1 for p in expected.reshape((-1,) + expected.shape[2:]))
        assert len(rows) == n_objects  # per plane for a stack segmented plane by plane
        for row in rows:
            plane = expected[0, int(row.get("z", 1)) - 1]  # z is 1-based, as in the ROI names
            assert int(row["area"]) == np.count_nonzero(plane == int(row["label"]))
            assert float(row["area_um2"]) == pytest.approx(int(row["area"]) * 0.25)
        png = iio.imread(out / f"{stem}_overlay.png")
        assert png.shape == expected.shape[2:] + (3,) and png.dtype == np.uint8

    rows = _csv_rows(out / "a_cells.csv")
    assert {"mean_DAPI", "mean_GFP"} <= set(rows[0]) and "z" not in rows[0]
    assert "z" in _csv_rows(out / "stack_cells.csv")[0]
    items = {Path(item.input).name: item for item in report.items}
    assert items["a.ome.tif"].status == "done" and items["a.ome.tif"].n_cells == 4
    assert items["a.ome.tif"].diameter == 17.0
    assert items["broken.tif"].status == "failed" and items["broken.tif"].reason


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to renumbering of the labels."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


def test_rerun_skips_and_does_not_load_the_model(inputs, tmp_path, engine):
    out = tmp_path / "out"
    segment_files(inputs / "a.ome.tif", out, quiet=True, segment_fn=engine.segment, load_model_fn=engine.load_model)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = segment_files(inputs / "a.ome.tif", out, quiet=True, segment_fn=engine.segment,
                          load_model_fn=engine.load_model)
    assert len(engine.loads) == 1 and len(engine.calls) == 1  # nothing loaded nor segmented again
    assert again.ok and not again.done and len(again.skipped) == 4
    assert [item.status for item in again.items] == ["skipped"]
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    (out / "a_cells.csv").unlink()  # an incomplete item is redone
    redo = segment_files(inputs / "a.ome.tif", out, quiet=True, segment_fn=engine.segment,
                         load_model_fn=engine.load_model)
    assert len(redo.done) == 4 and (out / "a_cells.csv").exists()
    forced = segment_files(inputs / "a.ome.tif", out, overwrite=True, quiet=True, segment_fn=engine.segment,
                           load_model_fn=engine.load_model)
    assert len(forced.done) == 4 and len(engine.calls) == 3


def test_outputs_inside_the_input_folder_are_not_inputs(inputs, engine):
    (inputs / "broken.tif").unlink()
    kwargs = dict(quiet=True, recursive=True, segment_fn=engine.segment, load_model_fn=engine.load_model)
    first = segment_files(inputs, inputs / "seg", **kwargs)
    second = segment_files(inputs, inputs / "seg", **kwargs)
    assert first.ok and second.ok and len(engine.calls) == 2
    assert [i.status for i in second.items] == ["skipped", "skipped"]


def test_a_failing_output_leaves_no_output_of_that_item(inputs, tmp_path, engine, monkeypatch):
    from cellseg_bridge.io import overlay

    def broken_png(rgb, path):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(overlay, "write_png", broken_png)
    out = tmp_path / "out"
    report = segment_files([inputs / "a.ome.tif", inputs / "stack.ome.tif"], out, quiet=True,
                           segment_fn=engine.segment, load_model_fn=engine.load_model)
    assert len(report.failed) == 2 and all("disk full" in reason for _, reason in report.failed)
    assert list(out.iterdir()) == []  # labels/ROIs/CSV were staged, never moved in; no staging folder left
    without_overlay = segment_files(inputs / "a.ome.tif", out, outputs=("labels", "csv"), quiet=True,
                                    segment_fn=engine.segment, load_model_fn=engine.load_model)
    assert without_overlay.ok and sorted(p.name for p in out.iterdir()) == ["a_cells.csv", "a_labels.ome.tif",
                                                                                   "cellseg_run.json"]


def test_seg_npy_and_flows(inputs, tmp_path, engine):
    out = tmp_path / "out"
    kwargs = dict(save_seg_npy=True, save_flows=True, quiet=True, segment_fn=engine.segment,
                  load_model_fn=engine.load_model)
    assert segment_files(inputs / "a.ome.tif", out, channel="GFP", **kwargs).ok
    report = segment_files(inputs / "stack.ome.tif", out, **kwargs)
    assert report.ok
    assert engine.calls[0]["channel"] == 1 and engine.calls[0]["return_flows"]  # name resolved to index
    seg = read_seg_npy(out / "a_seg.npy")
    expected = engine.results[str(inputs / "a.ome.tif")][0, 0]
    assert np.array_equal(seg.masks, expected)
    assert Path(seg.filename) == (inputs / "a.ome.tif").resolve() and seg.diameter == 17.0
    # the five items Cellpose's GUI reads; [3] and [4] are what it recomputes masks from
    assert [f.shape for f in seg.flows] == [(1, 32, 40, 3), (1, 32, 40), (1, 32, 40, 3), (2, 32, 40), (3, 32, 40)]
    data = np.asarray(open_image(inputs / "a.ome.tif").isel(C=1).values, dtype=np.float64)[0, 0]
    np.testing.assert_allclose(seg.flows[4][:2], [np.gradient(data, axis=a) for a in (0, 1)], rtol=1e-5)
    np.testing.assert_allclose(seg.flows[4][2], data - data.mean(), rtol=1e-5)
    still = seg.flows[4][2] <= DEFAULTS.segment.cellprob_threshold  # pixels that do not move stay in place
    grid = np.stack(np.meshgrid(np.arange(32), np.arange(40), indexing="ij"))
    assert np.array_equal(seg.flows[3][:, still], grid[:, still]) and not np.array_equal(seg.flows[3], grid)
    assert seg.chan_choose == [2, 0]  # Cellpose's pair: GFP is channel 2 (1-based), no nuclear channel
    assert seg.extra["cellprob_threshold"] == DEFAULTS.segment.cellprob_threshold
    assert not (out / "stack_seg.npy").exists()  # 2D only
    assert "seg_npy" not in report.items[0].outputs and "flows" in report.items[0].outputs
    with tifffile.TiffFile(out / "stack_flows.ome.tif") as tif:
        assert tif.series[0].shape == (3, 3, 32, 40)  # C Z Y X (T = 1 dropped by tifffile)
        assert 'Name="cellprob"' in tif.ome_metadata


def test_time_lapse_hyperstack_positions_and_table(tmp_path, engine):
    src = tmp_path / "movie.ome.tif"
    data = np.stack([np.stack([_blobs((2, 32, 40), 10 + t), _blobs((2, 32, 40), 20 + t)]) for t in range(3)])
    write_ome_tiff(data, src, dims="TCZYX", channel_names=["DAPI", "GFP"], physical_pixel_sizes=SIZES)
    out = tmp_path / "out"
    report = segment_files(src, out, quiet=True, segment_fn=engine.segment, load_model_fn=engine.load_model)
    assert report.ok, report.summary()
    expected = engine.results[str(src)]
    assert expected.shape == (3, 2, 32, 40)
    assert np.array_equal(_labels_of(out / "movie_labels.ome.tif"), expected)
    rois = read_rois(out / "movie_RoiSet.zip")
    assert {(r.t_position, r.z_position, r.c_position) for r in rois} == {(t, z, 0) for t in (1, 2, 3) for z in (1, 2)}
    decoded, _ = rois_to_labels(rois, expected.shape, axes="TZYX")
    assert np.array_equal(decoded > 0, expected > 0)
    rows = _csv_rows(out / "movie_cells.csv")
    assert list(rows[0])[:4] == ["label", "t", "z", "area"]
    # CSV rows and ROI names number t and z alike, 1-based as ImageJ (issue 18 defect 9)
    assert {(int(r["t"]), int(r["z"])) for r in rows} == {(t, z) for t in (1, 2, 3) for z in (1, 2)}
    first = next(r for r in rows if r["t"] == "2" and r["z"] == "1")
    assert f"cell_{int(first['label']):04d}_t002_z001" in {r.name for r in rois}
    assert len(rows) == sum(len(np.unique(expected[t, z])) - 1 for t in range(3) for z in range(2))
    # one stack axis but several channels: hyperstack positions, channel 0 = all
    zstack = tmp_path / "zc.ome.tif"
    write_ome_tiff(data[0], zstack, dims="CZYX", physical_pixel_sizes=SIZES)
    segment_files(zstack, out, outputs=("rois",), quiet=True, segment_fn=engine.segment,
                  load_model_fn=engine.load_model)
    rois = read_rois(out / "zc_RoiSet.zip")
    assert {(r.t_position, r.z_position, r.c_position) for r in rois} == {(1, 1, 0), (1, 2, 0)}
    assert not any(r.name.endswith(("_t001", "_t1")) for r in rois)


def test_multi_scene_names_and_scene_selection(tmp_path, engine):
    src = tmp_path / "in"
    src.mkdir()
    with tifffile.TiffWriter(src / "plate.tif") as tif:
        tif.write(_blobs((32, 40), 4))
        tif.write(_blobs((36, 40), 5))
    out = tmp_path / "out"
    report = segment_files(src, out, outputs=("labels",), quiet=True, segment_fn=engine.segment,
                           load_model_fn=engine.load_model)
    assert sorted(p.name for p in out.iterdir()) == ["cellseg_run.json", "plate_s0_Image_0_labels.ome.tif",
                                                      "plate_s1_Image_1_labels.ome.tif"]
    assert [(i.scene, i.scene_name) for i in report.items] == [(0, "Image:0"), (1, "Image:1")]
    only = segment_files(src / "plate.tif", tmp_path / "out2", scene="1", outputs=("labels",), quiet=True,
                         segment_fn=engine.segment, load_model_fn=engine.load_model)
    assert [p.name for p in only.done] == ["plate_s1_Image_1_labels.ome.tif"]


def test_model_that_cannot_load_fails_every_item_once(inputs, tmp_path, engine):
    attempts = []

    def bad_load(name, device="auto"):
        attempts.append(name)
        raise InputError("no model named 'nope'")

    report = segment_files(inputs, tmp_path / "out", model="nope", quiet=True, segment_fn=engine.segment,
                           load_model_fn=bad_load)
    assert attempts == ["nope"]
    reasons = [reason for source, reason in report.failed if "broken" not in source]
    assert len(reasons) == 2 and all("cannot load model 'nope'" in r for r in reasons)


def test_bad_arguments_raise(tmp_path, engine):
    with pytest.raises(InputError, match="unknown segmentation option"):
        segment_files(tmp_path, tmp_path / "o", diamter=3, segment_fn=engine.segment, load_model_fn=engine.load_model)
    with pytest.raises(InputError, match="unknown output"):
        segment_files(tmp_path, tmp_path / "o", outputs=("labels", "pdf"), segment_fn=engine.segment,
                      load_model_fn=engine.load_model)
    with pytest.raises(InputError, match="nothing to write"):
        segment_files(tmp_path, tmp_path / "o", outputs=(), segment_fn=engine.segment,
                      load_model_fn=engine.load_model)


# ------------------------------------------------------------------ CLI


def test_cli_json_exit_codes_and_resume(inputs, tmp_path, engine):
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(main, ["segment", str(inputs), "--out", str(out), "--json"])
    assert result.exit_code == 1, result.output  # broken.tif failed
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["counts"] == {"done": 2, "skipped": 0, "failed": 1}
    assert data["failed"][0]["input"].endswith("broken.tif")
    item = next(i for i in data["items"] if i["input"].endswith("a.ome.tif"))
    assert set(item["outputs"]) == {"labels", "rois", "csv", "overlay"}
    assert all(Path(p).is_absolute() and Path(p).exists() for p in item["outputs"].values())
    # every option's default comes from DEFAULTS.segment
    call = engine.calls[0]
    for name in ("diameter", "cellprob_threshold", "flow_threshold", "do_3d", "stitch_threshold", "tile_size",
                 "augment", "nuclear_channel"):
        assert call[name] == getattr(DEFAULTS.segment, name), name
    assert engine.loads == [(DEFAULTS.segment.model, DEFAULTS.segment.device)]

    again = runner.invoke(main, ["segment", str(inputs / "a.ome.tif"), str(inputs / "stack.ome.tif"),
                                 "--out", str(out), "--json"])
    assert again.exit_code == 0, again.output
    assert [i["status"] for i in json.loads(again.stdout)["items"]] == ["skipped", "skipped"]
    text = runner.invoke(main, ["segment", str(inputs / "a.ome.tif"), "--out", str(out)])
    assert text.exit_code == 0 and "0 segmented, 1 skipped" in text.stdout


def test_cli_options_reach_segment(inputs, tmp_path, engine):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [
        "segment", str(inputs / "stack.ome.tif"), "--out", str(out), "--model", "cyto3", "--diameter", "12",
        "--channel", "0", "--cellprob-threshold", "-1", "--flow-threshold", "0.2", "--do-3d",
        "--stitch-threshold", "0.3", "--tile-size", "128", "--augment", "--device", "cpu",
        "--no-rois", "--no-overlay", "--save-flows",
    ])
    assert result.exit_code == 0, result.output
    assert engine.loads == [("cyto3", "cpu")]
    call = engine.calls[0]
    assert (call["diameter"], call["channel"]) == (12.0, 0)
    assert (call["cellprob_threshold"], call["flow_threshold"]) == (-1.0, 0.2)
    assert call["do_3d"] and call["stitch_threshold"] == 0.3 and call["tile_size"] == 128 and call["augment"]
    assert sorted(p.name for p in out.iterdir()) == ["cellseg_run.json", "stack_cells.csv", "stack_flows.ome.tif",
                                                     "stack_labels.ome.tif"]
    assert "centroid_z" in _csv_rows(out / "stack_cells.csv")[0]  # 3D objects with --do-3d


def test_cli_missing_input_and_bad_channel(tmp_path, inputs, engine):
    runner = CliRunner()
    missing = runner.invoke(main, ["segment", str(tmp_path / "nope.tif"), "--out", str(tmp_path / "o"), "--json"])
    assert missing.exit_code == 1
    assert "no such file" in json.loads(missing.stdout)["failed"][0]["reason"]
    bad = runner.invoke(main, ["segment", str(inputs / "a.ome.tif"), "--out", str(tmp_path / "o"),
                               "--channel", "Cy5"])
    assert bad.exit_code == 1 and "no channel named 'Cy5'" in bad.output


# ------------------------------------------------------------------ the real segmenter


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    pytest.importorskip("cellseg_bridge.segmentation.pipeline")
    import torch

    from cellseg_bridge.nn import save_checkpoint
    from cellseg_bridge.nn.net import CellposeUNet

    torch.manual_seed(0)
    net = CellposeUNet(nbase=[2, 8, 16], nout=3, diam_mean=17.0)
    path = tmp_path_factory.mktemp("model") / "tiny.pth"
    save_checkpoint(net, path)
    return path


def _real_segment_module():
    import importlib

    module = importlib.import_module("cellseg_bridge.segmentation.pipeline")
    if not hasattr(module, "segment") or not hasattr(module, "load_model"):
        pytest.skip("cellseg_bridge.segmentation.pipeline has no segment/load_model yet")
    return module


def test_end_to_end_with_real_segment_and_tiny_model(inputs, tmp_path, tiny_model):
    seg = _real_segment_module()
    out = tmp_path / "out"
    options = {"diameter": 17.0, "cellprob_threshold": -6.0, "flow_threshold": 0.0}
    result = CliRunner().invoke(main, [
        "segment", str(inputs / "a.ome.tif"), "--out", str(out), "--model", str(tiny_model), "--json",
        "--diameter", "17", "--cellprob-threshold", "-6", "--flow-threshold", "0", "--device", "cpu",
        "--save-seg-npy",
    ])
    assert result.exit_code == 0, result.output
    expected = seg.segment(open_image(inputs / "a.ome.tif"), seg.load_model(tiny_model, device="cpu"),
                           **options).labels
    labels = _labels_of(out / "a_labels.ome.tif")
    assert np.array_equal(labels, expected)
    decoded, _ = rois_to_labels(out / "a_RoiSet.zip", labels.shape[2:], axes="YX")
    assert _same_partition(decoded, labels[0, 0])
    rows = _csv_rows(out / "a_cells.csv")
    assert len(rows) == len(np.unique(labels)) - 1 > 0  # random weights, low threshold: some masks
    assert sum(int(r["area"]) for r in rows) == np.count_nonzero(labels)
    assert np.array_equal(read_seg_npy(out / "a_seg.npy").masks > 0, labels[0, 0] > 0)
    item = json.loads(result.stdout)["items"][0]
    assert item["n_cells"] == len(rows) and item["diameter"] == 17.0


def test_sample_nuclei_with_peer_checkpoint(tmp_path, shared_models):
    _real_segment_module()
    weights = shared_models / "cellpose3_dsb2018_nuclei.pth"
    if not weights.exists():
        pytest.skip(f"{weights} not found")
    from cellseg_bridge.core.metrics import average_precision

    sample = REPO / "sample_data" / "nuclei_00.ome.tif"
    out = tmp_path / "out"
    report = segment_files(sample, out, model=str(weights), diameter=22.0, device="cpu", quiet=True,
                           save_seg_npy=True)
    assert report.ok, report.summary()
    labels = _labels_of(out / "nuclei_00_labels.ome.tif")[0, 0]
    truth = _labels_of(REPO / "sample_data" / "nuclei_00_masks.ome.tif")[0, 0]
    ap = average_precision(truth, labels)[0]
    assert ap[0] > 0.9  # AP@0.5 on 40 synthetic nuclei
    # what Cellpose's GUI does when the user changes a threshold: masks from flows[4] at the image's size
    from cellseg_bridge.core.dynamics import compute_masks

    seg = read_seg_npy(out / "nuclei_00_seg.npy")
    dp, cellprob = seg.flows[4][:-1], seg.flows[4][-1]
    same = compute_masks(dp, cellprob, cellprob_threshold=seg.extra["cellprob_threshold"],
                         flow_threshold=seg.extra["flow_threshold"])
    assert average_precision(labels, same)[0][0] > 0.9  # the saved thresholds give the saved masks back
    stricter = compute_masks(dp, cellprob, cellprob_threshold=3.0, flow_threshold=seg.extra["flow_threshold"])
    assert 0 < np.count_nonzero(stricter) < 0.9 * np.count_nonzero(same)
    rows = _csv_rows(out / "nuclei_00_cells.csv")
    assert len(rows) == report.items[0].n_cells == len(np.unique(labels)) - 1
    assert {"label", "area", "area_um2", "centroid_y", "centroid_x", "mean_DAPI"} <= set(rows[0])
    assert len(read_rois(out / "nuclei_00_RoiSet.zip")) == len(rows)

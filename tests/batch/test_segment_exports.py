"""``segment --save-geojson`` and ``segment --track``: the files, their content, documented skips."""

from __future__ import annotations

import json
import logging

import numpy as np
from click.testing import CliRunner

from cellseg_bridge.batch.segment import segment_files
from cellseg_bridge.cli import main
from cellseg_bridge.config import GeoJsonOptions
from cellseg_bridge.io.geojson import geojson_to_labels, read_geojson
from cellseg_bridge.io.roi_import import read_rois
from cellseg_bridge.io.writers import write_ome_tiff
from tests.batch.test_segment import SIZES, _blobs, _csv_rows, _labels_of, engine, inputs  # noqa: F401


def test_geojson_output_matches_the_labels(inputs, tmp_path, engine):  # noqa: F811
    out = tmp_path / "out"
    report = segment_files(inputs / "a.ome.tif", out, save_geojson=True, quiet=True, segment_fn=engine.segment,
                           load_model_fn=engine.load_model)
    assert report.ok, report.summary()
    labels = _labels_of(out / "a_labels.ome.tif")[0, 0]
    back, rep = geojson_to_labels(out / "a_cells.geojson", labels.shape)
    np.testing.assert_array_equal(back, labels)
    features = json.loads((out / "a_cells.geojson").read_text())["features"]
    props = features[0]["properties"]
    assert props["objectType"] == "detection" and props["classification"]["name"] == "Cell"
    assert props["name"] == "cell_0001"
    m = props["measurements"]
    assert set(m) == {"Label", "Area px^2", "Area µm^2", "Centroid X px", "Centroid Y px", "DAPI: Mean", "GFP: Mean"}
    ys, xs = np.nonzero(labels == 1)
    assert m["Area px^2"] == ys.size and m["Area µm^2"] == ys.size * 0.25
    assert m["Centroid X px"] == xs.mean() + 0.5  # QuPath: origin at the image's corner
    # CLI: annotations without a class
    result = CliRunner().invoke(main, ["segment", str(inputs / "a.ome.tif"), "--out", str(tmp_path / "cli"),
                                       "--save-geojson", "--geojson-object-type", "annotation",
                                       "--geojson-classification", "", "--no-rois", "--no-overlay", "--no-csv"])
    assert result.exit_code == 0, result.output
    parsed = read_geojson(tmp_path / "cli" / "a_cells.geojson")
    assert {f.object_type for f in parsed} == {"annotation"}
    assert all("classification" not in f.properties for f in parsed)


def moving_blobs(tmp_path):
    """A 4-frame movie: 3 squares moving by 2 px per frame; the first one is gone in frames 2 and 3."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 20, (4, 1, 1, 40, 48)).astype(np.uint16)
    for t in range(4):
        for k, (y, x) in enumerate([(4, 4), (20, 6), (10, 28)]):
            if k == 0 and t >= 2:
                continue
            data[t, 0, 0, y + 2 * t : y + 2 * t + 6, x + t : x + t + 6] += 500
    src = tmp_path / "movie.ome.tif"
    write_ome_tiff(data, src, dims="TCZYX", channel_names=["GFP"], physical_pixel_sizes=SIZES)
    return src


def test_track_links_labels_and_writes_tracks(tmp_path, engine):  # noqa: F811
    src = moving_blobs(tmp_path)
    out = tmp_path / "out"
    report = segment_files(src, out, track=True, save_geojson=True, quiet=True, segment_fn=engine.segment,
                           load_model_fn=engine.load_model)
    assert report.ok, report.summary()
    raw = engine.results[str(src)][:, 0]
    assert raw[3, 28, 11] != raw[0, 22, 8]  # the segmenter's own numbers change when square 1 is gone
    labels = _labels_of(out / "movie_labels.ome.tif")[:, 0]
    # every cell keeps one value over time: tracks 2 and 3 (raster order in frame 0) in every frame
    assert [labels[t, 10 + 2 * t + 2, 28 + t + 2] for t in range(4)] == [2] * 4
    assert [labels[t, 20 + 2 * t + 2, 6 + t + 2] for t in range(4)] == [3] * 4
    rows = _csv_rows(out / "movie_tracks.csv")
    assert list(rows[0]) == ["track", "frame", "label", "centroid_x", "centroid_y", "area", "area_um2"]
    assert [(r["track"], r["frame"]) for r in rows] == [
        ("1", "1"), ("2", "1"), ("3", "1"), ("1", "2"), ("2", "2"), ("3", "2"), ("2", "3"), ("3", "3"),
        ("2", "4"), ("3", "4")]  # frames 1-based, as the cells CSV's t and the ROI names
    assert all(float(r["area"]) == 36 for r in rows)
    assert float(rows[4]["centroid_y"]) == 10 + 2 + 2.5
    cells = _csv_rows(out / "movie_cells.csv")
    assert list(cells[0])[:3] == ["label", "track", "t"] and all(c["label"] == c["track"] for c in cells)
    names = sorted(r.name for r in read_rois(out / "movie_RoiSet.zip"))
    assert names[:3] == ["track_0001_t001", "track_0001_t002", "track_0002_t001"] and len(names) == 10
    assert {f.name for f in read_geojson(out / "movie_cells.geojson")} == set(names)


def test_track_options_reach_the_linking(tmp_path, engine):  # noqa: F811
    src = moving_blobs(tmp_path)
    result = CliRunner().invoke(main, ["segment", str(src), "--out", str(tmp_path / "o"), "--track",
                                       "--track-iou-threshold", "0.99", "--no-rois", "--no-overlay", "--no-csv"])
    assert result.exit_code == 0, result.output
    rows = _csv_rows(tmp_path / "o" / "movie_tracks.csv")
    assert len({r["track"] for r in rows}) == 10  # moving squares overlap < 0.99: no link at all


def test_track_on_a_single_time_point_is_a_logged_skip(inputs, tmp_path, engine, caplog):  # noqa: F811
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="cellseg_bridge.batch.segment"):
        report = segment_files([inputs / "a.ome.tif", inputs / "stack.ome.tif"], out, track=True, quiet=True,
                               segment_fn=engine.segment, load_model_fn=engine.load_model)
    assert report.ok, report.summary()
    assert not list(out.glob("*_tracks.csv"))
    assert (out / "a_labels.ome.tif").exists() and (out / "stack_labels.ome.tif").exists()
    text = caplog.text
    assert "one time point, nothing to track" in text
    assert "cannot be tracked" not in text  # stack.ome.tif: one time point says it first
    assert GeoJsonOptions().geojson_object_type == "detection"


def test_track_on_a_real_time_lapse(shared_data, tmp_path):
    """E. coli (GFP) time-lapse from ``formats/nd2``: its first 6 frames, the bundled nuclei model, --track."""
    from cellseg_bridge.io.reader import open_image

    movie = open_image(shared_data / "formats" / "nd2" / "example-timelapse.nd2")
    assert movie.sizes["T"] == 53
    src = tmp_path / "timelapse6.ome.tif"
    write_ome_tiff(np.asarray(movie.isel(T=slice(0, 6)).values), src, dims="TCZYX",
                   channel_names=[str(c) for c in movie.attrs["channel_names"]],
                   physical_pixel_sizes=movie.attrs["physical_pixel_sizes"])
    out = tmp_path / "out"
    report = segment_files(src, out, track=True, outputs=("labels", "rois"), quiet=True, model="nuclei",
                           device="cpu")
    assert report.ok, report.summary()
    rows = _csv_rows(out / "timelapse6_tracks.csv")
    frames: dict[str, set[str]] = {}
    for r in rows:
        frames.setdefault(r["track"], set()).add(r["frame"])
    labels = _labels_of(out / "timelapse6_labels.ome.tif")
    assert set(frames) == {str(v) for v in np.unique(labels) if v}  # one track per label value
    assert len(rows) == sum(len(np.unique(labels[t])) - 1 for t in range(6))  # one row per cell and frame
    lengths = sorted(len(f) for f in frames.values())
    print(f"real time-lapse, 6 frames: {len(frames)} tracks, lengths {lengths}")
    # the bacteria barely move in 6 frames: most cells are followed through the whole excerpt
    assert sum(n == 6 for n in lengths) >= 4
    assert any(r.name.startswith("track_") and r.name.endswith("_t006") for r in read_rois(out / "timelapse6_RoiSet.zip"))


def test_track_a_z_stack_only_as_3d_objects(tmp_path, engine, caplog):  # noqa: F811
    src = tmp_path / "tz.ome.tif"
    data = np.stack([_blobs((1, 2, 32, 40), 30 + t) for t in range(3)])  # T C Z Y X
    write_ome_tiff(data, src, dims="TCZYX", physical_pixel_sizes=SIZES)
    kwargs = dict(track=True, outputs=("labels",), quiet=True, segment_fn=engine.segment,
                  load_model_fn=engine.load_model)
    with caplog.at_level(logging.INFO, logger="cellseg_bridge.batch.segment"):
        assert segment_files(src, tmp_path / "planes", **kwargs).ok
    assert "cannot be tracked" in caplog.text and not (tmp_path / "planes" / "tz_tracks.csv").exists()
    assert segment_files(src, tmp_path / "3d", do_3d=True, **kwargs).ok
    rows = _csv_rows(tmp_path / "3d" / "tz_tracks.csv")
    assert "centroid_z" in rows[0] and "volume" in rows[0]
    assert {r["frame"] for r in rows} == {"1", "2", "3"}  # 1-based

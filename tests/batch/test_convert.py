"""``convert`` and ``cellseg convert``: naming, metadata, resume, failures, atomicity, inputs untouched.

Two layers: a fake reader (JSON files standing in for vendor files) tests the
logic without shared data; the real reader on a few small vendor files from
``../shared/data/formats`` (symlinked, never copied) tests the whole path.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import tifffile
import xarray as xr
from click.testing import CliRunner

from cellseg_bridge.batch.convert import convert, file_stem, output_name, sanitise, select_scene
from cellseg_bridge.cli import main
from cellseg_bridge.errors import InputError
from cellseg_bridge.io import writers

# ------------------------------------------------------------------ naming


def test_naming_rules():
    assert file_stem(Path("a/cells.czi")) == "cells"
    assert file_stem(Path("a/cells.ome.tiff")) == "cells"
    assert file_stem(Path("a/cells.OME.TIF")) == "cells"
    assert output_name("cells", 0, "Image:0", 1) == "cells.ome.tif"
    assert output_name("exp", 2, "x_y_z_t lambda/Emi", 3) == "exp_s2_x_y_z_t_lambda_Emi.ome.tif"
    assert output_name("exp", 3, "Pos 3", 12) == "exp_s03_Pos_3.ome.tif"
    assert output_name("exp", 1, "::", 2) == "exp_s1.ome.tif"
    assert sanitise("  ünïcode: scene #1 ") == "n_code_scene_1"
    assert len(sanitise("x" * 200)) == 60


def test_select_scene():
    scenes = ["A1", "B2", "7"]
    assert select_scene(scenes, "B2") == 1
    assert select_scene(scenes, 0) == 0 and select_scene(scenes, "1") == 1
    assert select_scene(scenes, "7") == 2  # a name wins over an index
    with pytest.raises(InputError, match="no scene named"):
        select_scene(scenes, "C3")
    with pytest.raises(InputError, match="out of range"):
        select_scene(scenes, 5)


# ------------------------------------------------------------------ fake reader


@pytest.fixture
def fake_reader(monkeypatch):
    """A reader for ``.czi`` files that hold JSON: {"scenes": [...], "shape": [t, c, z, y, x]}."""

    def _load(path):
        try:
            return json.loads(Path(path).read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read this file ({exc.__class__.__name__})", path) from exc

    def list_scenes(path):
        return _load(path)["scenes"]

    def open_image(path, scene=None, axes=None):
        spec = _load(path)
        index = 0 if scene is None else int(scene)
        data = np.full(spec["shape"], index + 1, dtype=np.uint16)
        return xr.DataArray(data, dims=list("TCZYX"), attrs={
            "physical_pixel_sizes": {"Z": 1.0, "Y": 0.5, "X": 0.5},
            "channel_names": [f"ch{i}" for i in range(spec["shape"][1])],
            "scenes": spec["scenes"], "scene": spec["scenes"][index], "source": str(path)})

    module = types.SimpleNamespace(list_scenes=list_scenes, open_image=open_image, SUPPORTED_SUFFIXES={".czi": "CZI"})
    monkeypatch.setitem(sys.modules, "cellseg_bridge.io.reader", module)
    return module


def _fake_inputs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "one.czi").write_text(json.dumps({"scenes": ["Image:0"], "shape": [1, 2, 1, 8, 9]}))
    (folder / "multi.czi").write_text(json.dumps({"scenes": ["Pos A", "Pos/B"], "shape": [1, 1, 3, 8, 9]}))
    (folder / "broken.czi").write_bytes(b"\x00\xffnot json")
    (folder / "readme.txt").write_text("not an image")
    return folder


def test_convert_with_fake_reader(tmp_path, fake_reader):
    src = _fake_inputs(tmp_path / "in")
    out = tmp_path / "out"
    report = convert(src, out, quiet=True)
    assert sorted(p.name for p in out.iterdir()) == ["cellseg_run.json", "multi_s0_Pos_A.ome.tif",
                                                     "multi_s1_Pos_B.ome.tif", "one.ome.tif"]
    assert len(report.done) == 3 and report.failed[0][0] == str(src / "broken.czi")
    assert "cannot read this file" in report.failed[0][1]
    with tifffile.TiffFile(out / "multi_s1_Pos_B.ome.tif") as tif:
        assert tif.series[0].asarray().max() == 2  # scene 1
        assert 'Name="Pos/B"' in tif.ome_metadata
    only = convert(src / "multi.czi", tmp_path / "out2", scene="Pos/B", quiet=True)
    assert [p.name for p in only.done] == ["multi_s1_Pos_B.ome.tif"]
    bad = convert(src / "multi.czi", tmp_path / "out3", scene="nope", quiet=True)
    assert "no scene named 'nope'" in bad.failed[0][1]


def test_keep_tree_mirrors_the_input_folders(tmp_path, fake_reader):
    """Same-named files in two folders clash in one output folder; ``--keep-tree`` mirrors the folders."""
    src = tmp_path / "in"
    for folder, value in (("a", 1), ("b/deep", 3)):
        (src / folder).mkdir(parents=True)
        (src / folder / "x.czi").write_text(json.dumps({"scenes": ["Image:0"], "shape": [1, value, 1, 8, 9]}))
    flat = convert(src, tmp_path / "flat", recursive=True, quiet=True)
    assert len(flat.done) == 1 and len(flat.failed) == 1  # the second x.czi clashes with the first
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["convert", str(src), "--out", str(out), "--recursive", "--keep-tree"])
    assert result.exit_code == 0, result.output
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.ome.tif"))
    assert written == ["a/x.ome.tif", "b/deep/x.ome.tif"]
    with tifffile.TiffFile(out / "b" / "deep" / "x.ome.tif") as tif:
        assert tif.series[0].shape[0] == 3  # the file of b/deep (3 channels)
    named = convert([src / "a" / "x.czi", str(src / "b" / "*" / "*.czi")], tmp_path / "mixed", keep_tree=True,
                    quiet=True)  # a file named itself stays at the top; a pattern mirrors below its fixed start
    assert sorted(str(p.relative_to(tmp_path / "mixed")) for p in named.done) == ["deep/x.ome.tif", "x.ome.tif"]


def test_interrupted_write_leaves_no_partial_output(tmp_path, fake_reader, monkeypatch):
    src = _fake_inputs(tmp_path / "in")
    out = tmp_path / "out"
    real_planes = writers._planes

    def failing_planes(data, dtype):
        for i, plane in enumerate(real_planes(data, dtype)):
            if i == 1:
                raise OSError("simulated crash half-way through the file")
            yield plane

    monkeypatch.setattr(writers, "_planes", failing_planes)
    report = convert(src / "one.czi", out, quiet=True)
    assert "simulated crash" in report.failed[0][1]
    assert list(out.iterdir()) == []  # no partial output, no temp file left behind
    monkeypatch.setattr(writers, "_planes", real_planes)
    assert convert(src / "one.czi", out, quiet=True).done == [out / "one.ome.tif"]  # the re-run does it


# ------------------------------------------------------------------ real vendor files


#: Small real files (≈0.5-1.1 MB each): ND2 T3 C2 Z10, LIF with 3 scenes, CZI 2-D.
REAL_FILES = ["nd2/pims_cluster.nd2", "lif/LeicaLASX_wavelength-sweep_example.lif", "czi/s_1_t_1_c_1_z_1.czi"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def vendor_folder(shared_data, tmp_path) -> Path:
    pytest.importorskip("cellseg_bridge.io.reader")
    folder = tmp_path / "in"
    folder.mkdir()
    for rel in REAL_FILES:
        (folder / Path(rel).name).symlink_to(shared_data / "formats" / rel)
    (folder / "corrupt.czi").write_bytes(b"ZISRAWFILE" + bytes(range(256)) * 8)
    return folder


def test_cli_convert_real_files(vendor_folder, tmp_path):
    from cellseg_bridge.io.reader import list_scenes, open_image

    out = tmp_path / "out"
    before = {p.name: _sha(p) for p in vendor_folder.iterdir()}
    runner = CliRunner()
    result = runner.invoke(main, ["convert", str(vendor_folder), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert f"{vendor_folder / 'corrupt.czi'}: " in result.output  # named, with its reason
    expected = set()
    for rel in REAL_FILES:
        src = vendor_folder / Path(rel).name
        scenes = list_scenes(src)
        expected |= {output_name(file_stem(src), i, str(name), len(scenes)) for i, name in enumerate(scenes)}
    assert "pims_cluster.ome.tif" in expected and len(expected) == 5  # the LIF has 3 scenes
    assert sorted(p.name for p in out.iterdir()) == sorted(expected | {"cellseg_run.json"})
    assert f"{len(expected)} converted, 0 skipped (already done), 1 failed" in result.output

    # metadata kept: compare every output with its source scene
    for rel in REAL_FILES:
        src = vendor_folder / Path(rel).name
        scenes = list_scenes(src)
        for index, scene in enumerate(scenes):
            name = output_name(file_stem(src), index, str(scene), len(scenes))
            original = open_image(src, scene=index)
            converted = open_image(out / name)
            assert converted.shape == original.shape and converted.dtype == original.dtype
            np.testing.assert_array_equal(np.asarray(converted.data), np.asarray(original.data))
            assert [str(c) for c in converted.attrs["channel_names"]] == [str(c) for c in original.attrs["channel_names"]]
            for axis in "ZYX":
                want = original.attrs["physical_pixel_sizes"][axis]
                got = converted.attrs["physical_pixel_sizes"][axis]
                assert (got is None and want is None) or got == pytest.approx(want), (name, axis)

    # a re-run skips what is done and does not rewrite it
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = runner.invoke(main, ["convert", str(vendor_folder), "--out", str(out)])
    assert again.exit_code == 1  # the corrupt file still fails
    assert f"0 converted, {len(expected)} skipped" in again.output
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes

    # --overwrite rewrites
    forced = runner.invoke(main, ["convert", str(vendor_folder / "pims_cluster.nd2"), "--out", str(out), "--overwrite"])
    assert forced.exit_code == 0, forced.output
    assert "1 converted" in forced.output
    assert (out / "pims_cluster.ome.tif").stat().st_mtime_ns != mtimes["pims_cluster.ome.tif"]

    # inputs never modified
    assert {p.name: _sha(p) for p in vendor_folder.iterdir()} == before
    assert all((vendor_folder / Path(rel).name).is_symlink() for rel in REAL_FILES)


def test_cli_convert_scene_option_and_exit_zero(vendor_folder, tmp_path):
    out = tmp_path / "out"
    lif = vendor_folder / "LeicaLASX_wavelength-sweep_example.lif"
    result = CliRunner().invoke(main, ["convert", str(lif), "--out", str(out), "--scene", "0"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["LeicaLASX_wavelength-sweep_example_s0_x_y_lambdaEmi.ome.tif",
                                                     "cellseg_run.json"]
    missing = CliRunner().invoke(main, ["convert", str(tmp_path / "nothing*.czi"), "--out", str(out)])
    assert missing.exit_code == 1 and "matched no input files" in missing.output


def test_axes_apply_to_plain_tiffs_only(vendor_folder, tmp_path):
    from cellseg_bridge.io.reader import open_image

    plain = vendor_folder / "plain.tif"
    tifffile.imwrite(plain, np.arange(3 * 16 * 20, dtype=np.uint16).reshape(3, 16, 20), photometric="minisblack", metadata=None)
    out = tmp_path / "out"
    report = convert([plain, vendor_folder / "pims_cluster.nd2"], out, axes="CYX", quiet=True)
    assert report.ok, report.failed  # the ND2 (which records its axes) ignores --axes
    converted = open_image(out / "plain.ome.tif")
    assert converted.sizes["C"] == 3 and converted.sizes["Z"] == 1


def test_cli_reader_option_picks_the_backend(vendor_folder, tmp_path, monkeypatch):
    import importlib.util

    from cellseg_bridge.io import _backends

    monkeypatch.delenv(_backends.ENV_VAR, raising=False)
    used: list[str] = []
    real = _backends.backend
    monkeypatch.setattr(_backends, "backend", lambda name: used.append(name) or real(name))
    nd2 = vendor_folder / "pims_cluster.nd2"
    result = CliRunner().invoke(main, ["convert", str(nd2), "--out", str(tmp_path / "b"), "--reader", "bioio"])
    assert result.exit_code == 0, result.output
    assert set(used) == {"bioio"}
    used.clear()
    result = CliRunner().invoke(main, ["convert", str(nd2), "--out", str(tmp_path / "a"), "--reader", "aicsimageio"])
    assert set(used) == {"aicsimageio"}
    assert _backends.ENV_VAR not in os.environ  # restored after the command
    if importlib.util.find_spec("aicsimageio") is None:
        assert result.exit_code == 1 and "cellseg-bridge[aicsimageio]" in result.output
    else:
        assert result.exit_code == 0, result.output
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "a" / "pims_cluster.ome.tif"),
                                      tifffile.imread(tmp_path / "b" / "pims_cluster.ome.tif"))
    bad = CliRunner().invoke(main, ["convert", str(nd2), "--out", str(tmp_path / "x"), "--reader", "pims"])
    assert bad.exit_code == 2 and "'pims' is not one of" in bad.output


def test_bad_inputs_fail_one_by_one(vendor_folder, tmp_path):
    """Corrupt, truncated and wrong-extension files: a clear error naming each; the batch goes on."""
    truncated = tmp_path / "cut.nd2"
    truncated.write_bytes((vendor_folder / "pims_cluster.nd2").read_bytes()[:200_000])
    renamed = tmp_path / "renamed.czi"
    renamed.write_bytes((vendor_folder / "pims_cluster.nd2").read_bytes())
    inputs = [vendor_folder / "corrupt.czi", truncated, renamed, vendor_folder / "pims_cluster.nd2"]
    report = convert(inputs, tmp_path / "out", quiet=True)
    failed = dict(report.failed)
    assert set(failed) == {str(p) for p in inputs[:3]}, report.failed
    assert all(reason for reason in failed.values())
    assert (tmp_path / "out" / "pims_cluster.ome.tif").exists()


def test_convert_to_imagej_hyperstack_opens_in_plain_imagej(ij, shared_data, tmp_path):
    """``--format imagej``: ImageJ 1.x (no Bio-Formats) sees the ND2's channels, slices, frames, Z spacing, names."""
    from cellseg_bridge.io.reader import open_image

    src = shared_data / "formats" / "nd2" / "pims_cluster.nd2"
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["convert", str(src), "--out", str(out), "--format", "imagej"])
    assert result.exit_code == 0, result.output
    original = open_image(src)
    assert sorted(p.name for p in out.iterdir()) == ["cellseg_run.json", "pims_cluster.tif"]
    imp = ij.openImage(str(out / "pims_cluster.tif"))
    sizes = original.sizes
    assert (imp.getNChannels(), imp.getNSlices(), imp.getNFrames()) == (sizes["C"], sizes["Z"], sizes["T"]) == (2, 10, 3)
    cal = imp.getCalibration()
    pixel = original.attrs["physical_pixel_sizes"]
    assert (cal.pixelWidth, cal.pixelHeight, cal.pixelDepth) == pytest.approx((pixel["X"], pixel["Y"], pixel["Z"]))
    assert str(cal.getUnit()) in ("µm", "micron")
    labels = [str(imp.getStack().getSliceLabel(imp.getStackIndex(c + 1, 1, 1))) for c in range(sizes["C"])]
    assert labels == original.attrs["channel_names"]
    plane = np.asarray(original.isel(T=2, C=1, Z=7).values)
    ip = imp.getStack().getProcessor(imp.getStackIndex(2, 8, 3))
    assert [ip.getPixel(x, 3) for x in range(5)] == plane[3, :5].tolist()
    back = open_image(out / "pims_cluster.tif")  # and our reader reads the same image back
    np.testing.assert_array_equal(np.asarray(back.data), np.asarray(original.data))
    # the acquisition facts ImageJ has a place for: frame interval, channel colours (the ND2's)
    assert cal.frameInterval == pytest.approx(10.870089)
    import jpype

    top = jpype.JInt(255)
    luts = [imp.getChannelLut(c + 1) for c in range(2)]
    assert [(lut.getRed(top), lut.getGreen(top), lut.getBlue(top)) for lut in luts] == [(120, 233, 15), (254, 1, 0)]


def test_convert_keeps_acquisition_metadata_as_ome_fields(shared_data, tmp_path):
    """Frame interval, date, objective, channel wavelengths and colours of an ND2 and a CZI reach the OME-XML."""
    import xml.etree.ElementTree as ET

    from cellseg_bridge.io.acquisition import read_acquisition

    nd2 = shared_data / "formats" / "nd2" / "pims_cluster.nd2"
    czi = shared_data / "formats" / "czi" / "CD_s_1_t_3_c_2_z_5.czi"
    out = tmp_path / "out"
    assert convert([nd2, czi], out, quiet=True).ok
    source = read_acquisition(nd2)
    assert source == {
        "frame_interval_s": pytest.approx(10.870089), "acquisition_date": "2014-06-18T13:55:23.392019+00:00",
        "channels": [{"emission_nm": 525.0, "excitation_nm": 488.0, "color": "#78e90f"},
                     {"emission_nm": 700.0, "excitation_nm": 561.0, "color": "#fe0100"}],
        "objective": {"model": "Plan Apo λ 60x", "magnification": 60.0, "na": 0.95},
    }
    assert read_acquisition(out / "pims_cluster.ome.tif") == source  # read back through bioio / ome-types
    with tifffile.TiffFile(out / "pims_cluster.ome.tif") as tif:
        root = ET.fromstring(tif.ome_metadata)
    ns = {"ome": root.tag.split("}")[0].strip("{")}
    pixels = root.find("ome:Image/ome:Pixels", ns)
    assert float(pixels.get("TimeIncrement")) == pytest.approx(10.870089) and pixels.get("TimeIncrementUnit") == "s"
    names = [c.get("Name") for c in pixels.findall("ome:Channel", ns)]
    assert names == ["5-FAM/pH 9.0", "FM 4-64/2% CHAPS"]  # the names stay beside the wavelengths
    assert root.find("ome:Image/ome:ObjectiveSettings", ns).get("ID") == \
        root.find("ome:Instrument/ome:Objective", ns).get("ID")
    czi_facts = read_acquisition(out / "CD_s_1_t_3_c_2_z_5.ome.tif")
    assert czi_facts["frame_interval_s"] == pytest.approx(60.045434)
    assert czi_facts["objective"] == {"model": "Plan-Apochromat 50x/1.2", "magnification": 50.0, "na": 1.2,
                                      "immersion": "Water"}
    assert [c["emission_nm"] for c in czi_facts["channels"]] == [568.0, 517.0]

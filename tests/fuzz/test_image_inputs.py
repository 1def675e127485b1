"""Crafted image files (issue 19 items 8, 11): TIFF headers claiming 100000^2 pixels, a truncated CZI, link loops."""

from __future__ import annotations

import os
import shutil
import zlib

from click.testing import CliRunner

from cellseg_bridge.cli import main

MB = 1 << 20
SIDE = 100_000


def _crafted_tiffs(tmp_path, fuzz):
    return {
        "tiled": fuzz.tiff_header(tmp_path / "tiled.tif", SIDE, SIDE, tiled=True),
        "strip": fuzz.tiff_header(tmp_path / "strip.tif", SIDE, SIDE),
        "zlib": fuzz.tiff_header(tmp_path / "zlib.tif", SIDE, SIDE, compression=8,
                                 payload=zlib.compress(b"\0" * 4096)),
    }


def test_crafted_tiff_headers_are_refused_before_allocating(tmp_path, fuzz, sample_image):
    tiffs = _crafted_tiffs(tmp_path, fuzz)
    rois = fuzz.roi_zip(tmp_path / "RoiSet.zip", [fuzz.polygon([[5, 5], [20, 5], [20, 20]], "tri")])
    before = fuzz.sha256s([*tiffs.values(), rois, sample_image])
    result = fuzz.run_child(f"""
        from click.testing import CliRunner
        from cellseg_bridge.cli import main

        def run(like, tag):
            labels = CliRunner().invoke(main, ["rois", "to-labels", {str(rois)!r}, "--like", str(like),
                                              "--out", f"labels_{{tag}}.ome.tif"])
            convert = CliRunner().invoke(main, ["convert", str(like), "--out", f"converted_{{tag}}"])
            return [labels.exit_code, labels.output[-400:], convert.exit_code, convert.output[-400:]]

        ok = run({str(sample_image)!r}, "ok")
        base = peak()
        crafted = {{name: run(path, name) for name, path in {({k: str(v) for k, v in tiffs.items()})!r}.items()}}
        print(json.dumps({{"base": base, "peak": peak(), "ok": ok, "crafted": crafted}}))
    """, cwd=tmp_path)
    assert result["ok"][0] == 0 and result["ok"][2] == 0, result["ok"]
    for name, (labels_code, labels_out, convert_code, convert_out) in result["crafted"].items():
        for code, out in ((labels_code, labels_out), (convert_code, convert_out)):
            assert code == 1, (name, out)
            assert f"{name}.tif" in out and "damaged or crafted TIFF" in out and f"{SIDE} x {SIDE}" in out, out
            assert "Traceback" not in out
        assert not (tmp_path / f"labels_{name}.ome.tif").exists()
    extra = (result["peak"] - result["base"]) / MB
    print(f"crafted TIFFs: peak {result['peak'] / MB:.0f} MB, {extra:.0f} MB above the baseline")
    assert extra < 200, f"crafted TIFFs took {extra:.0f} MB above the baseline"
    assert fuzz.sha256s([*tiffs.values(), rois, sample_image]) == before


def test_truncated_czi_names_the_file(tmp_path, shared_data):
    source = shared_data / "formats" / "czi" / "s_1_t_1_c_1_z_1.czi"
    if not source.is_file():
        import pytest

        pytest.skip(f"{source} not found")
    data = source.read_bytes()
    cuts = {"half.czi": data[: len(data) // 2], "most.czi": data[: len(data) * 9 // 10], "head.czi": data[:100]}
    for name, blob in cuts.items():
        (tmp_path / name).write_bytes(blob)
        result = CliRunner().invoke(main, ["convert", str(tmp_path / name), "--out", str(tmp_path / "out")])
        assert result.exit_code == 1, result.output
        assert name in result.output and "CZI" in result.output and "truncated" in result.output, result.output
        assert "Not enough data read" not in result.output
    shutil.copyfile(source, tmp_path / "whole.czi")
    result = CliRunner().invoke(main, ["convert", str(tmp_path / "whole.czi"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output


def test_a_symlink_loop_is_called_one(tmp_path, sample_image):
    loop = tmp_path / "loop.ome.tif"
    os.symlink(loop, loop)
    result = CliRunner().invoke(main, ["convert", str(loop), str(sample_image), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "loop.ome.tif" in result.output and "symbolic link loop" in result.output, result.output
    assert (tmp_path / "out" / "img.ome.tif").exists()  # the other input is converted


def test_a_png_claiming_100000_squared_pixels_is_refused(tmp_path, fuzz):
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = tmp_path / "bomb.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", SIDE, SIDE, 8, 0, 0, 0, 0))
                    + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    before = fuzz.sha256s([png])
    result = CliRunner().invoke(main, ["convert", str(png), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "bomb.png" in result.output and "Traceback" not in result.output
    assert fuzz.sha256s([png]) == before

"""Hostile ROI files (issue 19 items 1, 2, 11): huge coordinates, ROIs off the image, damaged zips, links.

Each bad input goes through the real ``cellseg rois`` commands (and, for memory, the
``hitl add`` and training readers too); the inputs' checksums must not change.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from cellseg_bridge.cli import main

MB = 1 << 20


def _to_labels(*args: str):
    return CliRunner().invoke(main, ["rois", "to-labels", *args])


def test_huge_rois_cost_what_the_image_costs_on_every_path(tmp_path, fuzz, sample_image):
    """+-32000 px and 1e7 sub-pixel polygons, ellipse, rounded rectangle, composite, spline: memory stays flat."""
    small = fuzz.roi_zip(tmp_path / "small_RoiSet.zip", [fuzz.polygon([[5, 5], [20, 5], [20, 20]], "tri")])
    huge = fuzz.roi_zip(tmp_path / "huge_RoiSet.zip", fuzz.huge_rois())
    before = fuzz.sha256s([small, huge, sample_image])
    result = fuzz.run_child(f"""
        from pathlib import Path
        from click.testing import CliRunner
        from cellseg_bridge.cli import main
        from cellseg_bridge.errors import InputError
        from cellseg_bridge.hitl.corrections import read_correction
        from cellseg_bridge.training.data import TrainPair, load_pair

        def paths(zip_path, tag):
            out = {{}}
            run = CliRunner().invoke(main, ["rois", "to-labels", str(zip_path), "--like", {str(sample_image)!r},
                                           "--out", f"labels_{{tag}}.ome.tif"])
            out["cli"] = [run.exit_code, run.output[-300:], repr(run.exception) if run.exit_code else None]
            try:
                correction = read_correction(zip_path, (48, 64))
                out["hitl_add"] = ["ok", int(correction.labels.max())]
            except InputError as exc:
                out["hitl_add"] = ["InputError", str(exc)]
            _, labels = load_pair(TrainPair(Path({str(sample_image)!r}), Path(zip_path), "rois"))
            out["train"] = ["ok", int(labels.max())]
            return out

        small = paths({str(small)!r}, "small")
        base = peak()
        huge = paths({str(huge)!r}, "huge")
        print(json.dumps({{"base": base, "peak": peak(), "small": small, "huge": huge}}))
    """, cwd=tmp_path)
    assert result["small"]["cli"][0] == 0, result
    assert result["huge"]["cli"][0] == 0, result  # ROIs on the image: labels written, exit 0
    assert "7 labels from 7 ROIs" in result["huge"]["cli"][1]
    assert result["huge"]["train"] == ["ok", 7]
    assert result["huge"]["hitl_add"] == ["ok", 7], result
    extra = (result["peak"] - result["base"]) / MB
    print(f"huge ROIs: peak {result['peak'] / MB:.0f} MB, {extra:.0f} MB above the baseline")
    assert extra < 200, f"huge ROIs took {extra:.0f} MB above the baseline"
    assert fuzz.sha256s([small, huge, sample_image]) == before


def test_every_roi_off_the_image_is_an_error_not_an_empty_image(tmp_path, fuzz, sample_image):
    off = fuzz.roi_zip(tmp_path / "off_RoiSet.zip", [
        fuzz.polygon([[500, 500], [600, 500], [600, 600]], "far"),
        fuzz.polygon([[-1e7, -1e7], [-1e7 + 5, -1e7], [-1e7, -1e7 + 5]], "far_subpixel", subpixel=True),
    ])
    out = tmp_path / "labels.ome.tif"
    result = _to_labels(str(off), "--like", str(sample_image), "--out", str(out))
    assert result.exit_code == 1
    assert "off_RoiSet.zip" in result.output and "none of its 2 ROIs covers a pixel" in result.output
    assert not out.exists()


def test_damaged_zips_and_links_are_named_for_what_they_are(tmp_path, fuzz, sample_image):
    good = fuzz.roi_zip(tmp_path / "good_RoiSet.zip", [fuzz.polygon([[5, 5], [20, 5], [20, 20]], "tri")])
    cut = tmp_path / "cut_RoiSet.zip"
    cut.write_bytes(good.read_bytes()[:-30])  # the central directory is lost
    junk = tmp_path / "junk_RoiSet.zip"
    with zipfile.ZipFile(junk, "w") as zf:
        zf.writestr("cell.roi", b"Iout" + b"\xff" * 10)
    loop = tmp_path / "loop.zip"
    os.symlink(loop, loop)
    dangling = tmp_path / "dangling.zip"
    os.symlink(tmp_path / "gone.zip", dangling)
    before = fuzz.sha256s([good, cut, junk, sample_image])
    expected = {
        cut: "corrupt or truncated zip",
        junk: "no readable ROI (1 corrupt entries)",
        loop: "symbolic link loop",
        dangling: "broken symbolic link",
    }
    for path, words in expected.items():
        result = _to_labels(str(path), "--like", str(sample_image), "--out", str(tmp_path / "x.ome.tif"))
        assert result.exit_code in (1, 2), (path, result.output)
        assert words in result.output and path.name in result.output, result.output
        assert "Traceback" not in result.output and "starts with b'PK" not in result.output
    assert not (tmp_path / "x.ome.tif").exists()
    assert fuzz.sha256s([good, cut, junk, sample_image]) == before


@pytest.mark.parametrize("target", ["like", "rois", "like_symlink", "like_hardlink"])
def test_to_labels_never_writes_over_an_input(tmp_path, fuzz, sample_image, target):
    rois = fuzz.roi_zip(tmp_path / "RoiSet.zip", [fuzz.polygon([[5, 5], [20, 5], [20, 20]], "tri")])
    out = {"like": sample_image, "rois": rois, "like_symlink": tmp_path / "link.ome.tif",
           "like_hardlink": tmp_path / "hard.ome.tif"}[target]
    if target == "like_symlink":
        os.symlink(sample_image, out)
    elif target == "like_hardlink":
        os.link(sample_image, out)
    before = fuzz.sha256s([sample_image, rois])
    for extra in ([], ["--overwrite"]):  # --overwrite does not make an input writable
        result = _to_labels(str(rois), "--like", str(sample_image), "--out", str(out), *extra)
        assert result.exit_code == 1 and "the output is the input" in result.output, result.output
    assert fuzz.sha256s([sample_image, rois]) == before


def test_to_zip_never_writes_over_its_input_nor_an_unknown_file(tmp_path, fuzz):
    from cellseg_bridge.io.writers import write_labels

    labels = np.zeros((32, 32), np.uint16)
    labels[4:12, 4:12] = 1
    path = tmp_path / "L.ome.tif"
    write_labels(labels, path)
    before = fuzz.sha256s([path])
    result = CliRunner().invoke(main, ["rois", "to-zip", str(path), "--out", str(path), "--overwrite"])
    assert result.exit_code == 1 and "the output is the input" in result.output
    someone_elses = tmp_path / "L_RoiSet.zip"
    someone_elses.write_bytes(b"a file this command did not write")
    result = CliRunner().invoke(main, ["rois", "to-zip", str(path)])
    assert result.exit_code == 1 and "--overwrite" in result.output and "L_RoiSet.zip" in result.output
    assert someone_elses.read_bytes() == b"a file this command did not write"
    result = CliRunner().invoke(main, ["rois", "to-zip", str(path), "--overwrite"])
    assert result.exit_code == 0 and zipfile.is_zipfile(someone_elses)
    assert fuzz.sha256s([path]) == before
    existing = tmp_path / "labels_out.ome.tif"
    existing.write_bytes(b"keep me")
    result = _to_labels(str(someone_elses), "--like", str(path), "--out", str(existing))
    assert result.exit_code == 1 and "--overwrite" in result.output and existing.read_bytes() == b"keep me"

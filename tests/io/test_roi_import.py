"""ImageJ ROI files: parsing (vs read-roi's expected json and fissa's vertex arrays),
rasterisation (vs the real ImageJ 1.53t, pixel for pixel), labels, overlaps, positions,
corrupt zip entries.

fissa's ``*.npy`` masks for ovals/ellipses are fissa's own rasterisation, not ImageJ's:
they are not used as pixel truth.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from roifile import ROI_SUBTYPE, ROI_TYPE, ImagejRoi

from cellseg_bridge.core.roi import rasterize as rz
from cellseg_bridge.errors import InputError
from cellseg_bridge.io.roi_import import (
    RoiImportReport,
    _header_float,
    is_area_roi,
    read_rois,
    roi_local_mask,
    roi_to_mask,
    rois_to_labels,
)

# fissa/b: ROIs drawn on AVG_A0*.tif, which are 14 px wide and 21 px high
FISSA_B_SHAPE = (21, 14)


def _shared_rois_dir() -> Path | None:
    import os

    repo = Path(__file__).resolve().parents[2]
    base = Path(os.environ.get("CELLSEG_SHARED", repo.parent / "shared"))
    path = base / "data" / "rois"
    return path if path.is_dir() else None


ROOT = _shared_rois_dir()
ROI_FILES = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*.roi")) if ROOT else []
ZIP_FILES = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*.zip")) if ROOT else []
JSON_FILES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "read-roi").glob("*.json")) if ROOT else []


@pytest.fixture(scope="module")
def rois_dir(shared_data) -> Path:
    return shared_data / "rois"


# --------------------------------------------------------------------------- parsing

_TYPE_NAMES = {
    ROI_TYPE.POLYGON: "polygon",
    ROI_TYPE.RECT: "rectangle",
    ROI_TYPE.OVAL: "oval",
    ROI_TYPE.LINE: "line",
    ROI_TYPE.FREELINE: "freeline",
    ROI_TYPE.POLYLINE: "polyline",
    ROI_TYPE.FREEHAND: "freehand",
    ROI_TYPE.TRACED: "traced",
    ROI_TYPE.ANGLE: "angle",
    ROI_TYPE.POINT: "point",
}


def _path_vertices(shape_array: np.ndarray) -> list[list[list[float]]]:
    """The vertices of each sub-path of a composite ROI, as stored (no flattening)."""
    paths: list[list[list[float]]] = []
    for seg, coords in rz.parse_shape_array(shape_array):
        if seg == rz.SEG_MOVETO:
            paths.append([list(coords)])
        elif seg != rz.SEG_CLOSE:
            paths[-1].append(list(coords[-2:]))
    return paths


def normalise(roi: ImagejRoi) -> dict:
    """Our reading of a ROI, in the vocabulary of read-roi's json files."""
    out: dict = {"type": "composite" if roi.composite else _TYPE_NAMES[roi.roitype], "name": roi.name}
    if roi.c_position or roi.z_position or roi.t_position:
        out["position"] = {"channel": roi.c_position, "slice": roi.z_position, "frame": roi.t_position}
    else:
        out["position"] = roi.position
    if roi.composite or roi.roitype in (ROI_TYPE.RECT, ROI_TYPE.OVAL):
        out.update(left=roi.left, top=roi.top, width=roi.right - roi.left, height=roi.bottom - roi.top)
        if roi.roitype == ROI_TYPE.RECT and not roi.composite:
            out["arc_size"] = roi.rounded_rect_arc_size
    if roi.composite:
        out["paths"] = _path_vertices(roi.multi_coordinates)
    elif roi.roitype == ROI_TYPE.FREEHAND and roi.subtype in (ROI_SUBTYPE.ELLIPSE, ROI_SUBTYPE.ROTATED_RECT):
        out.update(ex1=roi.x1, ey1=roi.y1, ex2=roi.x2, ey2=roi.y2, aspect_ratio=_header_float(roi))
    elif roi.integer_coordinates is not None:
        if roi.subpixelresolution and roi.subpixel_coordinates is not None:
            xy = roi.subpixel_coordinates.astype(float)
        else:
            xy = roi.integer_coordinates.astype(int) + [roi.left, roi.top]
        out.update(x=xy[:, 0].tolist(), y=xy[:, 1].tolist(), n=int(roi.n_coordinates))
        if roi.roitype != ROI_TYPE.POINT:
            out["width"] = roi.stroke_width
    return out


@pytest.mark.parametrize("json_name", JSON_FILES)
def test_parse_matches_read_roi_json(rois_dir, json_name):
    expected = next(iter(json.loads((rois_dir / json_name).read_text()).values()))
    rois = read_rois(rois_dir / json_name.replace(".json", ".roi"))
    assert len(rois) == 1
    ours = normalise(rois[0])
    for key, value in expected.items():
        if key in ("counters", "slices"):  # point counters (all zero here) are not modelled
            continue
        assert key in ours, f"{key} missing from our parse"
        if key == "paths":
            assert len(ours[key]) == len(value)
            for a, b in zip(ours[key], value):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-4)
        elif isinstance(value, float) or (isinstance(value, list) and value and isinstance(value[0], float)):
            np.testing.assert_allclose(ours[key], value, rtol=0, atol=1e-5)
        elif key == "name" and value == Path(json_name).stem:
            # read-roi names a single-file ROI after its file; ImageJ (and we) keep a
            # name stored in the file and fall back to the file name
            assert ours[key] in (value, ImagejRoi.fromfile(rois_dir / json_name.replace(".json", ".roi")).name)
        else:
            assert ours[key] == value, f"{key}: {ours[key]!r} != {value!r}"


def _fissa_coordinate_cases() -> list[str]:
    if not ROOT:
        return []
    out = []
    for npy in sorted((ROOT / "fissa" / "rois").glob("*.npy")):
        arr = np.load(npy)
        if arr.ndim == 2 and arr.shape[1] == 3 and (npy.with_suffix(".roi")).exists():
            out.append(npy.stem)
    return out


@pytest.mark.parametrize("stem", _fissa_coordinate_cases())
def test_parse_matches_fissa_vertices(rois_dir, stem):
    """fissa's npy arrays of (x, y, z) vertices: polygons' integer vertices, rectangle corners."""
    expected = np.load(rois_dir / "fissa" / "rois" / f"{stem}.npy")[:, :2]
    roi = read_rois(rois_dir / "fissa" / "rois" / f"{stem}.roi")[0]
    if roi.roitype == ROI_TYPE.FREEHAND and roi.subtype == ROI_SUBTYPE.ROTATED_RECT:
        xs, ys = rz.rotated_rect_polygon(roi.x1, roi.y1, roi.x2, roi.y2, _header_float(roi))
        ours = np.stack([xs[:4], ys[:4]], 1)
        np.testing.assert_allclose(ours, expected, atol=1e-4)
        return
    if roi.composite or roi.roitype == ROI_TYPE.RECT:
        x0, y0, x1, y1 = roi.left, roi.top, roi.right, roi.bottom
        if roi.composite:  # composite rectangle: the corners of its single sub-path
            x, y = rz.flatten_path(rz.parse_shape_array(roi.multi_coordinates))
            ours = np.stack([x, y], 1)
            assert {tuple(p) for p in ours.tolist()} == {tuple(p) for p in expected.tolist()}
            return
        ours = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        np.testing.assert_array_equal(ours, expected)
        return
    ours = roi.integer_coordinates + [roi.left, roi.top]
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("zip_name", ZIP_FILES)
def test_zip_entries_parse_like_single_files(rois_dir, zip_name):
    rois = read_rois(rois_dir / zip_name)
    with zipfile.ZipFile(rois_dir / zip_name) as zf:
        names = [n for n in zf.namelist() if n.endswith(".roi")]
        assert len(rois) == len(names) > 0
        for roi, entry in zip(rois, names):
            single = ImagejRoi.frombytes(zf.read(entry))
            single.name = single.name or entry[:-4]
            assert normalise(roi) == normalise(single)
            loose = rois_dir / Path(zip_name).parent / "rois" / entry
            if loose.exists():  # fissa/b ships the same ROIs as loose files
                assert normalise(read_rois(loose)[0]) == normalise(roi)


def test_positions_are_read(rois_dir):
    roi = read_rois(rois_dir / "fissa" / "b" / "rois" / "03.roi")[0]
    assert roi.position == 41
    lab = read_rois(rois_dir / "vcell-fiji" / "Lab ROI.roi")[0]
    assert (lab.c_position, lab.z_position, lab.t_position) == (1, 1, 1)


# --------------------------------------------------------------------------- ImageJ truth


def _canvases(local) -> dict[str, tuple[int, int]]:
    """Named canvases (height, width): the ROI plus a margin, and one cutting it in half.

    ROIs at negative coordinates (the "-left", "-top", "offscreen" files) are clipped on
    every canvas.
    """
    mask, (x0, y0) = local
    h, w = mask.shape
    return {
        "fits": (max(y0 + h, 1) + 5, max(x0 + w, 1) + 5),
        "clipped": (max(y0 + h // 2, 1), max(x0 + w // 2, 1)),
    }


def _area_roi_files() -> list[str]:
    if not ROOT:
        return []
    out = []
    for name in ROI_FILES:
        roi = ImagejRoi.fromfile(ROOT / name)
        if is_area_roi(roi):
            out.append(name)
    return out


AREA_FILES = _area_roi_files()


@pytest.fixture(scope="module")
def imagej_truth(ij, rois_dir):
    """ImageJ's fill of every area ROI file on each canvas, computed in one batch."""
    import jpype
    import scyjava

    decoder = scyjava.jimport("ij.io.RoiDecoder")
    byte_processor = scyjava.jimport("ij.process.ByteProcessor")
    truth = {}
    for name in AREA_FILES:
        data = (rois_dir / name).read_bytes()
        jroi = decoder(jpype.JArray(jpype.JByte)(data), Path(name).name).getRoi()
        canvases = _canvases(roi_local_mask(read_rois(rois_dir / name)[0]))
        if name.startswith("fissa/b/"):
            canvases["image"] = FISSA_B_SHAPE
        for label, (height, width) in canvases.items():
            ip = byte_processor(width, height)
            ip.setColor(255)
            ip.fill(jroi)
            truth[(name, label)] = np.array(ip.getPixels(), dtype=np.int8).reshape(height, width) != 0
        jmask = jroi.getMask()
        bounds = jroi.getBounds()
        truth[(name, "mask")] = (
            None
            if jmask is None
            else np.array(jmask.getPixels(), dtype=np.int8).reshape(jmask.getHeight(), jmask.getWidth()) != 0,
            (bounds.x, bounds.y, bounds.width, bounds.height),
        )
    return truth


# Files whose rasterisation is known to differ from ImageJ (measured, recorded here,
# reported by the test as xfail with the pixel counts). None at present.
KNOWN_INEXACT: set[str] = set()


@pytest.mark.imagej
@pytest.mark.parametrize("name", AREA_FILES)
def test_area_roi_rasterises_exactly_like_imagej(imagej_truth, rois_dir, name):
    roi = read_rois(rois_dir / name)[0]
    failures = []
    for (fname, label), ref in imagej_truth.items():
        if fname != name or label == "mask":
            continue
        ours = roi_to_mask(roi, ref.shape)
        diff = int((ours != ref).sum())
        if diff:
            failures.append(f"{label} canvas {ref.shape}: {diff} px differ (ImageJ {ref.sum()}, ours {ours.sum()})")
    jmask, (bx, by, bw, bh) = imagej_truth[(name, "mask")]
    mask, (x0, y0) = roi_local_mask(roi)
    if (x0, y0, mask.shape[1], mask.shape[0]) != (bx, by, bw, bh):
        failures.append(f"bounds {(x0, y0, mask.shape[1], mask.shape[0])} != ImageJ {(bx, by, bw, bh)}")
    elif jmask is not None and (jmask != mask).any():
        failures.append(f"getMask: {int((jmask != mask).sum())} px differ")
    if name in KNOWN_INEXACT:
        if not failures:
            pytest.fail(f"{name} now matches ImageJ: remove it from KNOWN_INEXACT")
        pytest.xfail("; ".join(failures))
    assert not failures, "; ".join(failures)


@pytest.mark.imagej
@pytest.mark.parametrize("zip_name", ["fissa/RoiSet.zip", "fissa/b/rois.zip"])
def test_labels_equal_imagej_filling_in_order(ij, rois_dir, zip_name):
    import jpype
    import scyjava

    decoder = scyjava.jimport("ij.io.RoiDecoder")
    short_processor = scyjava.jimport("ij.process.ShortProcessor")
    rois = read_rois(rois_dir / zip_name)
    height = max(r.bottom for r in rois) + 7
    width = max(r.right for r in rois) + 7
    if zip_name.startswith("fissa/b/"):
        height, width = FISSA_B_SHAPE
    ip = short_processor(width, height)
    with zipfile.ZipFile(rois_dir / zip_name) as zf:
        for i, entry in enumerate(n for n in zf.namelist() if n.endswith(".roi")):
            jroi = decoder(jpype.JArray(jpype.JByte)(zf.read(entry)), entry).getRoi()
            ip.setValue(i + 1)
            ip.fill(jroi)
    expected = np.array(ip.getPixels(), dtype=np.int16).reshape(height, width).astype(np.uint16)
    labels, report = rois_to_labels(rois_dir / zip_name, (height, width))
    assert report.n_labels == len(rois) and not report.skipped and not report.corrupt
    np.testing.assert_array_equal(labels, expected)


@pytest.mark.imagej
def test_imagej_encoded_rois_round_trip_exactly(ij):
    """ROIs written by ImageJ's RoiEncoder (incl. sub-pixel rectangles/ovals, rounded corners,
    spline fits) read with roifile rasterise like ImageJ decodes and fills them."""
    import jpype
    import scyjava

    encoder = scyjava.jimport("ij.io.RoiEncoder")
    decoder = scyjava.jimport("ij.io.RoiDecoder")
    byte_processor = scyjava.jimport("ij.process.ByteProcessor")
    rect_roi, oval_roi = scyjava.jimport("ij.gui.Roi"), scyjava.jimport("ij.gui.OvalRoi")
    polygon_roi = scyjava.jimport("ij.gui.PolygonRoi")
    shape_roi = scyjava.jimport("ij.gui.ShapeRoi")
    ellipse2d = scyjava.jimport("java.awt.geom.Ellipse2D$Double")
    rng = np.random.default_rng(21)
    bad = []
    for case in range(120):
        x, y = (float(v) for v in rng.uniform(-5, 40, 2))
        w, h = (float(v) for v in rng.uniform(0.5, 30, 2))
        kind = case % 6
        if kind == 4:  # composite from ROI Manager-style boolean operations
            a = shape_roi(oval_roi(int(x), int(y), int(w) + 1, int(h) + 1))
            b = shape_roi(rect_roi(int(x + w / 2), int(y - 3), 12, int(h)))
            jroi = [a.or_, a.xor, a.not_, a.and_][case // 6 % 4](b)
        elif kind == 5:  # composite with true cubic curves (Java2D ellipse)
            jroi = shape_roi(ellipse2d(x, y, w, h))
        elif kind == 0:
            jroi = oval_roi(x, y, w, h)
        elif kind in (1, 2):
            jroi = rect_roi(x, y, w, h)
            if kind == 2:
                jroi.setCornerDiameter(int(rng.integers(1, 20)))
        else:
            n = int(rng.integers(3, 9))
            xs = jpype.JArray(jpype.JFloat)(rng.uniform(-5, 60, n).tolist())
            ys = jpype.JArray(jpype.JFloat)(rng.uniform(-5, 60, n).tolist())
            jroi = polygon_roi(xs, ys, n, 2)
            jroi.fitSpline()
        data = bytes(np.array(encoder.saveAsByteArray(jroi), dtype=np.int8).tobytes())
        decoded = decoder(jpype.JArray(jpype.JByte)(data), "x.roi").getRoi()
        ours = roi_to_mask(ImagejRoi.frombytes(data), (64, 64))
        bounds = decoded.getBounds()
        if bounds.width == 0 or bounds.height == 0:
            # an empty result (e.g. disjoint AND): ImageJ's fill() then paints the whole
            # image (a 0x0 roi rectangle means "no roi"); an empty mask is the meaning
            assert not ours.any()
            continue
        ip = byte_processor(64, 64)
        ip.setColor(255)
        ip.fill(decoded)
        ref = np.array(ip.getPixels(), dtype=np.int8).reshape(64, 64) != 0
        diff = int((ours != ref).sum())
        if diff:
            bad.append((case, kind, diff))
    assert not bad, f"ImageJ-encoded ROIs differ: {bad}"


# --------------------------------------------------------------------------- labels


def _rect(left, top, right, bottom, *, name="", **positions) -> ImagejRoi:
    roi = ImagejRoi(roitype=ROI_TYPE.RECT, left=left, top=top, right=right, bottom=bottom, name=name, version=228)
    for key, value in positions.items():
        setattr(roi, key, value)
    return roi


def test_overlap_report_and_rules():
    a = _rect(0, 0, 6, 6, name="a")
    b = _rect(4, 4, 10, 10, name="b")  # overlaps a on 2x2
    c = _rect(5, 0, 8, 8, name="c")  # overlaps a (1x6) and b (3x4)
    far = _rect(20, 20, 22, 22, name="far")
    labels, report = rois_to_labels([a, b, c, far], (24, 24), overlap="last")
    assert isinstance(report, RoiImportReport)
    assert report.n_labels == 4 and report.label_names == ["a", "b", "c", "far"]
    assert report.overlap_pairs == [(1, 2), (1, 3), (2, 3)]
    cover = np.zeros((24, 24), int)
    for r in (a, b, c, far):
        cover[r.top : r.bottom, r.left : r.right] += 1
    assert report.overlap_pixels == int((cover >= 2).sum())
    assert labels[5, 5] == 3 and labels[4, 4] == 2 and labels[0, 0] == 1
    first, report_first = rois_to_labels([a, b, c, far], (24, 24), overlap="first")
    assert first[5, 5] == 1 and first[4, 4] == 1 and first[7, 7] == 2 and first[0, 6] == 3
    assert report_first.overlap_pixels == report.overlap_pixels
    assert (labels > 0).sum() == (first > 0).sum() == (cover > 0).sum()


def test_overlap_rule_is_validated():
    with pytest.raises(InputError):
        rois_to_labels([_rect(0, 0, 2, 2)], (4, 4), overlap="max")


def test_3d_labels_use_z_positions():
    everywhere = _rect(0, 0, 3, 3, name="all")  # position 0: every plane
    z2 = _rect(4, 4, 8, 8, name="z2", position=2)  # stack position 2
    z3 = _rect(0, 5, 3, 8, name="z3", z_position=3, c_position=1, t_position=1)
    outside = _rect(0, 0, 1, 1, name="z9", position=9)
    labels, report = rois_to_labels([everywhere, z2, z3, outside], (4, 10, 10))
    assert labels.shape == (4, 10, 10)
    assert all(labels[z, 1, 1] == 1 for z in range(4))
    assert labels[1, 5, 5] == 2 and (labels[[0, 2, 3], 5, 5] == 0).all()
    assert labels[2, 6, 1] == 3 and (labels[[0, 1, 3], 6, 1] == 0).all()
    assert [s[1] for s in report.skipped] == ["z9"]
    assert report.n_labels == 3


def test_5d_labels_with_axes_and_stack_index():
    # C=2, Z=3: stack position 4 -> channel 2, slice 2 (ImageJ's czt order)
    roi = _rect(1, 1, 3, 3, position=4)
    labels, _ = rois_to_labels([roi], (1, 2, 3, 5, 5), axes="TCZYX")
    assert np.argwhere(labels[:, :, :, 1, 1]).tolist() == [[0, 1, 1]]
    hyper = _rect(1, 1, 3, 3, c_position=0, z_position=3, t_position=1)  # all channels
    labels, _ = rois_to_labels([hyper], (5, 5, 2, 3), axes="YXCZ")
    assert labels.shape == (5, 5, 2, 3)
    assert np.argwhere(labels[1, 1]).tolist() == [[0, 2], [1, 2]]


def test_non_area_rois_are_skipped_and_reported(rois_dir):
    names = ["read-roi/line1.roi", "read-roi/polyline.roi", "read-roi/multipoint.roi", "read-roi/oval.roi"]
    rois = [read_rois(rois_dir / n)[0] for n in names]
    labels, report = rois_to_labels(rois, (200, 300))
    assert report.n_labels == 1 and report.label_to_roi == [3]
    assert [s[0] for s in report.skipped] == [0, 1, 2]
    assert all("no area" in s[2] for s in report.skipped)
    assert labels.max() == 1
    with pytest.raises(InputError, match="no area"):
        roi_to_mask(rois[0], (10, 10))


def test_roi_off_image_is_skipped_as_empty():
    labels, report = rois_to_labels([_rect(50, 50, 60, 60, name="off"), _rect(0, 0, 2, 2)], (10, 10))
    assert report.n_labels == 1 and report.skipped[0][1] == "off"
    assert labels.max() == 1


def test_huge_rectangles_and_ovals_are_clipped_before_rasterising():
    big = _rect(-4000, -4000, 30000, 30000)  # 1.2e9 pixels: never materialised
    assert roi_to_mask(big, (5, 7)).all()
    oval = ImagejRoi(roitype=ROI_TYPE.OVAL, left=-10, top=-4, right=30, bottom=20, version=228)
    expected = rz.place_mask(rz.oval_mask(40, 24), (-10, -4), (8, 9))
    np.testing.assert_array_equal(roi_to_mask(oval, (8, 9)), expected)
    labels, report = rois_to_labels([big, oval], (8, 9))
    assert report.overlap_pixels == int(expected.sum()) and report.overlap_pairs == [(1, 2)]


def test_empty_and_zero_size_header_values_follow_imagej():
    # ImageJ makes a 0-wide rectangle one pixel wide; a zero bottom stays zero
    thin = _rect(2, 1, 2, 4)
    assert np.argwhere(roi_to_mask(thin, (6, 6))).tolist() == [[1, 2], [2, 2], [3, 2]]
    empty = _rect(0, 0, 0, 0)
    assert roi_to_mask(empty, (64, 64)).sum() == 1


# --------------------------------------------------------------------------- corrupt input


def test_corrupt_zip_entry_is_skipped_and_reported(rois_dir, tmp_path, caplog):
    zpath = tmp_path / "RoiSet.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("0001-good.roi", (rois_dir / "read-roi" / "oval.roi").read_bytes())
        zf.writestr("0002-garbage.roi", b"this is not a roi at all, just some bytes" * 3)
        zf.writestr("0003-truncated.roi", (rois_dir / "read-roi" / "polygon.roi").read_bytes()[:40])
        zf.writestr("0004-good.roi", (rois_dir / "read-roi" / "rectangle.roi").read_bytes())
        zf.writestr("README.txt", b"not a ROI, and not named .roi: ignored like ImageJ does")
    problems: list[str] = []
    with caplog.at_level("WARNING"):
        rois = read_rois(zpath, problems=problems)
    assert [r.name for r in rois] == ["oval", "rectangle"]
    assert [p.split(":")[0] for p in problems] == ["0002-garbage.roi", "0003-truncated.roi"]
    assert "0002-garbage.roi" in caplog.text and str(zpath) in caplog.text
    labels, report = rois_to_labels(zpath, (200, 200))
    assert report.n_labels == 2 and len(report.corrupt) == 2 and report.source == str(zpath)
    assert set(np.unique(labels)) == {0, 1, 2}


def test_corrupt_roi_file_raises_input_error_naming_it(tmp_path):
    bad = tmp_path / "bad.roi"
    bad.write_bytes(b"Iout" + b"\x00" * 10)
    with pytest.raises(InputError) as info:
        read_rois(bad)
    assert info.value.path == bad and "too short" in str(info.value)
    with pytest.raises(InputError, match="not found"):
        read_rois(tmp_path / "missing.zip")
    notzip = tmp_path / "x.zip"
    notzip.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(InputError):
        read_rois(notzip)

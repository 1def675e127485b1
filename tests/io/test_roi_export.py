"""Labels -> ImageJ ROIs: names, positions, zips, and pixel-exactness in the real ImageJ 1.53t."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import roifile
from roifile import ROI_OPTIONS, ROI_TYPE, ImagejRoi

from cellseg_bridge.errors import InputError
from cellseg_bridge.io.roi_export import labels_to_rois, write_roi_zip

N_DSB_IMAGES = 20


def synthetic_labels() -> np.ndarray:
    """Labels with a hole, several pieces, a piece with a hole, diagonal contacts, border contact."""
    labels = np.zeros((24, 30), np.uint16)
    labels[1:8, 1:8] = 1
    labels[3:5, 3:6] = 0  # hole
    labels[0:3, 12:15] = 2  # piece 1, on the border
    labels[6:9, 12:14] = 2  # piece 2
    labels[9, 14] = 2  # joined to piece 2 only through a corner
    labels[12:20, 2:10] = 3  # piece 1: ring ...
    labels[14:18, 4:8] = 0
    labels[15:17, 5:7] = 3  # ... with an island in its hole (piece 2)
    labels[21:24, 25:30] = 3  # piece 3, bottom-right border
    labels[10:13, 20:23] = 4
    labels[13:16, 23:26] = 4  # touches the block above only at a corner
    labels[5:7, 20:30] = 5  # touches the right border
    return labels


def label_of(roi: ImagejRoi) -> int:
    return int(roi.name.split("_")[1])


# ----------------------------------------------------------------- pure Python ---


def test_polygon_vertices_names_and_roundtrip():
    labels = np.zeros((10, 12), np.uint8)
    labels[2:5, 3:7] = 7
    labels[6:9, 1:3] = 2
    rois = labels_to_rois(labels)
    assert [r.name for r in rois] == ["cell_0002", "cell_0007"]
    roi = rois[1]
    assert roi.roitype == ROI_TYPE.POLYGON
    assert (roi.left, roi.top, roi.right, roi.bottom) == (3, 2, 7, 5)
    assert roi.position == roi.c_position == roi.z_position == roi.t_position == 0
    back = ImagejRoi.frombytes(roi.tobytes())
    assert back.roitype == ROI_TYPE.POLYGON and back.name == "cell_0007"
    np.testing.assert_array_equal(back.coordinates(), [[3, 2], [7, 2], [7, 5], [3, 5]])
    assert [r.name for r in labels_to_rois(labels, name_format="obj{label}")] == ["obj2", "obj7"]


def test_composite_and_pieces_modes():
    labels = synthetic_labels()
    comp = {r.name: r for r in labels_to_rois(labels)}
    assert sorted(comp) == [f"cell_{i:04d}" for i in range(1, 6)]
    assert comp["cell_0001"].roitype == ROI_TYPE.RECT and comp["cell_0001"].composite  # hole
    assert comp["cell_0002"].composite and comp["cell_0003"].composite
    assert comp["cell_0004"].roitype == ROI_TYPE.POLYGON  # corner contact = one piece
    assert comp["cell_0005"].roitype == ROI_TYPE.POLYGON
    loops = ImagejRoi.frombytes(comp["cell_0003"].tobytes()).coordinates(multi=True)
    assert len(loops) == 4  # 3 outer boundaries and 1 hole

    pieces = {r.name: r for r in labels_to_rois(labels, multipart="pieces")}
    assert sorted(pieces) == [
        "cell_0001",
        "cell_0002_p1",
        "cell_0002_p2",
        "cell_0003_p1",
        "cell_0003_p2",
        "cell_0003_p3",
        "cell_0004",
        "cell_0005",
    ]
    assert pieces["cell_0001"].composite  # a hole needs a composite ROI even in "pieces" mode
    assert pieces["cell_0003_p1"].composite  # the ring
    assert pieces["cell_0003_p2"].roitype == ROI_TYPE.POLYGON  # the island in its hole
    assert pieces["cell_0003_p2"].left == 5 and pieces["cell_0003_p2"].top == 15
    assert pieces["cell_0002_p2"].roitype == ROI_TYPE.POLYGON
    named = labels_to_rois(labels, multipart="pieces", name_format="n{label}-{piece}")
    assert "n2-2" in {r.name for r in named}


def test_empty_labels_give_no_rois():
    assert labels_to_rois(np.zeros((5, 5), np.uint8)) == []
    assert labels_to_rois(np.zeros((3, 5, 5), np.uint16)) == []


def test_stack_positions_and_names():
    labels = np.zeros((3, 6, 6), np.uint8)
    labels[0, 1:3, 1:3] = 1
    labels[2, 1:3, 1:3] = 1
    labels[2, 4:6, 4:6] = 2
    rois = labels_to_rois(labels)
    assert [(r.name, r.position, r.z_position) for r in rois] == [
        ("cell_0001_z001", 1, 0),
        ("cell_0001_z003", 3, 0),
        ("cell_0002_z003", 3, 0),
    ]
    assert [r.name for r in labels_to_rois(labels, name_format="c{label}@{z}")] == ["c1@1", "c1@3", "c2@3"]
    tyx = labels_to_rois(labels, axes="TYX")
    assert [(r.name, r.position) for r in tyx][0] == ("cell_0001_t001", 1)


def test_hyperstack_positions():
    labels = np.zeros((2, 3, 4, 4), np.uint8)  # T, Z, Y, X
    labels[1, 2, 0:2, 0:2] = 9
    (roi,) = labels_to_rois(labels, axes="TZYX")
    assert roi.name == "cell_0009_t002_z003"
    assert (roi.position, roi.c_position, roi.z_position, roi.t_position) == (0, 0, 3, 2)
    tczyx = np.zeros((1, 2, 1, 4, 4), np.uint8)
    tczyx[0, 1, 0, 1, 1] = 4
    (roi,) = labels_to_rois(tczyx, axes="TCZYX")
    assert roi.name == "cell_0004_t001_c002_z001"
    assert (roi.c_position, roi.z_position, roi.t_position) == (2, 1, 1)
    (roi,) = labels_to_rois(tczyx[0, 1, 0], position={"C": 1, "t": 4})
    assert roi.name == "cell_0004"
    assert (roi.position, roi.c_position, roi.z_position, roi.t_position) == (0, 2, 0, 5)


@pytest.mark.parametrize(
    ("labels", "kwargs"),
    [
        (np.array([[0, -3]], np.int32), {}),
        (np.array([[0.0, 1.5]]), {}),
        (np.ones((2, 2), np.uint8), {"multipart": "split"}),
        (np.ones((2, 2, 2, 2, 2), np.uint8), {}),  # 4D is segment()'s (T, Z, Y, X); 5D needs axes
        (np.ones((2, 2, 2), np.uint8), {"axes": "TZYX"}),
        (np.ones((2, 2, 2), np.uint8), {"axes": "YXZ"}),
        (np.ones((2, 2, 2, 2), np.uint8), {"axes": "ZZYX"}),
        (np.ones((2, 2, 2), np.uint8), {"axes": "ZYX", "position": {"Z": 0}}),
        (np.ones((2, 2), np.uint8), {"position": {"S": 0}}),
        (np.ones((2, 2), np.uint8), {"position": {"C": -1}}),
        (np.ones((2, 2), np.uint8), {"name_format": "cell_{id}"}),
    ],
)
def test_bad_input_raises_input_error(labels, kwargs):
    with pytest.raises(InputError):
        labels_to_rois(labels, **kwargs)


def test_huge_coordinates_use_float_coordinates():
    labels = np.zeros((2, 40010), np.uint8)
    labels[:, 40000:40004] = 1
    labels[0, 3:5] = 2
    far, near = sorted(labels_to_rois(labels), key=lambda r: -r.left)
    assert far.options & ROI_OPTIONS.SUB_PIXEL_RESOLUTION
    np.testing.assert_array_equal(
        ImagejRoi.frombytes(far.tobytes()).coordinates(), [[40000, 0], [40004, 0], [40004, 2], [40000, 2]]
    )
    assert not near.options & ROI_OPTIONS.SUB_PIXEL_RESOLUTION


def test_write_roi_zip_replaces_existing_zip(tmp_path):
    path = tmp_path / "RoiSet.zip"
    old = labels_to_rois(np.ones((3, 3), np.uint8), name_format="old_{label}")
    roifile.roiwrite(path, old)  # roifile appends to existing zips; we must not
    roifile.roiwrite(path, old, name=["older"])
    assert len(zipfile.ZipFile(path).namelist()) == 2
    rois = labels_to_rois(synthetic_labels())
    assert write_roi_zip(rois, path) == path
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == [f"cell_{i:04d}.roi" for i in range(1, 6)]
        assert zf.read("cell_0003.roi") == rois[2].tobytes()
    back = roifile.roiread(path)
    assert [r.name for r in back] == [r.name for r in rois]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["RoiSet.zip"]  # no temporary left


def test_write_roi_zip_unique_entry_names(tmp_path):
    rois = labels_to_rois(synthetic_labels())[:2]
    rois[1].name = rois[0].name
    nameless = ImagejRoi.frombytes(rois[0].tobytes())
    nameless.name = ""
    folder = ImagejRoi.frombytes(rois[0].tobytes())
    folder.name = "a/b.roi"
    path = write_roi_zip([*rois, rois[0], nameless, folder], tmp_path / "sub" / "x.zip")
    names = zipfile.ZipFile(path).namelist()
    assert names == ["cell_0001.roi", "cell_0001-2.roi", "cell_0001-3.roi", "roi_0004.roi", "a_b.roi"]
    assert write_roi_zip([], tmp_path / "empty.zip").is_file()
    assert zipfile.ZipFile(tmp_path / "empty.zip").namelist() == []


# ------------------------------------------------------------- the real ImageJ ---


@pytest.fixture(scope="module")
def ij_tools(ij):
    """Decode ROI bytes with ImageJ's RoiDecoder and rasterise them with ImageJ."""
    import jpype
    from scyjava import jimport

    decoder = jimport("ij.io.RoiDecoder")
    short_processor = jimport("ij.process.ShortProcessor")
    byte_array = jpype.JArray(jpype.JByte)

    class Tools:
        @staticmethod
        def decode(data: bytes, name: str):
            roi = decoder(byte_array(data), name).getRoi()
            assert roi is not None, name
            return roi

        @staticmethod
        def mask(jroi) -> tuple[int, int, np.ndarray]:
            """ImageJ's mask of a ROI (``getMask()``; None = full rectangle) and its offset."""
            b = jroi.getBounds()
            m = jroi.getMask()
            if m is None:
                return b.x, b.y, np.ones((b.height, b.width), bool)
            return b.x, b.y, np.asarray(m.getPixels()).reshape(m.getHeight(), m.getWidth()) != 0

        @staticmethod
        def fill_all(jrois, values, shape) -> np.ndarray:
            """Fill every ROI into one 16-bit image with ImageJ's ``ip.fill(roi)``."""
            ip = short_processor(shape[1], shape[0])
            for jroi, value in zip(jrois, values):
                ip.setValue(float(value))
                ip.fill(jroi)
            return np.asarray(ip.getPixels()).view(np.uint16).reshape(shape)

    return Tools


def assert_imagej_exact(tools, labels: np.ndarray, rois: list[ImagejRoi]) -> list:
    """Per-label IoU of ImageJ's rasterisation of our ROIs == 1.0 (one ROI per label)."""
    counts = np.bincount(labels.ravel())
    jrois = []
    ious = []
    for roi in rois:
        jroi = tools.decode(roi.tobytes(), roi.name + ".roi")
        assert str(jroi.getName()) == roi.name
        x, y, mask = tools.mask(jroi)
        label = label_of(roi)
        crop = labels[y : y + mask.shape[0], x : x + mask.shape[1]] == label
        assert crop.shape == mask.shape, roi.name  # the ROI lies inside the image
        inter = np.count_nonzero(mask & crop)
        ious.append(inter / (np.count_nonzero(mask) + counts[label] - inter))
        jrois.append(jroi)
    assert sorted(label_of(r) for r in rois) == [int(v) for v in np.flatnonzero(counts[1:]) + 1]
    assert ious == [1.0] * len(rois), [(r.name, v) for r, v in zip(rois, ious) if v != 1.0]
    return jrois


@pytest.mark.imagej
def test_imagej_stardist_mask_exact(ij_tools, shared_data):
    import tifffile

    labels = tifffile.imread(shared_data / "stardist" / "mask2d.tif")
    rois = labels_to_rois(labels)
    assert len(rois) == 125
    jrois = assert_imagej_exact(ij_tools, labels, rois)
    # ImageJ's fill gives back the whole label image
    np.testing.assert_array_equal(ij_tools.fill_all(jrois, [label_of(r) for r in rois], labels.shape), labels)
    # and its measurements count the label's pixels
    counts = np.bincount(labels.ravel())
    for roi, jroi in list(zip(rois, jrois))[::10]:
        assert int(jroi.getStatistics().pixelCount) == counts[label_of(roi)]


def dsb2018_labels(shared_data: Path, n: int) -> list[tuple[str, np.ndarray]]:
    """The first ``n`` image ids of ``split.tsv`` (sorted), masks -> label image (PNG i -> label i+1)."""
    import imageio.v3 as iio

    root = shared_data / "dsb2018"
    rows = [line.split("\t") for line in (root / "split.tsv").read_text().splitlines()[1:] if line.strip()]
    ids = sorted(row[0] for row in rows if row[2].strip() in {"train", "test"})[:n]
    out = []
    for image_id in ids:
        pngs = sorted((root / "stage1_train" / image_id / "masks").glob("*.png"))
        first = iio.imread(pngs[0])
        labels = np.zeros(first.shape[:2], np.uint16)
        for i, png in enumerate(pngs, start=1):
            m = iio.imread(png)
            labels[(m if m.ndim == 2 else m.max(axis=-1)) > 0] = i
        out.append((image_id, labels))
    return out


@pytest.mark.imagej
def test_imagej_dsb2018_exact(ij_tools, shared_data):
    images = dsb2018_labels(shared_data, N_DSB_IMAGES)
    assert len(images) == N_DSB_IMAGES
    n_rois = 0
    for _, labels in images:
        rois = labels_to_rois(labels)
        assert_imagej_exact(ij_tools, labels, rois)
        n_rois += len(rois)
    assert n_rois > 500


@pytest.mark.imagej
@pytest.mark.parametrize("multipart", ["composite", "pieces"])
def test_imagej_holes_and_pieces_exact(ij_tools, multipart):
    labels = synthetic_labels()
    rois = labels_to_rois(labels, multipart=multipart)
    kinds = set()
    union = {}
    for roi in rois:
        jroi = ij_tools.decode(roi.tobytes(), roi.name + ".roi")
        kinds.add(str(jroi.getClass().getSimpleName()))
        x, y, mask = ij_tools.mask(jroi)
        full = np.zeros(labels.shape, bool)
        full[y : y + mask.shape[0], x : x + mask.shape[1]] = mask
        label = label_of(roi)
        assert not (union.get(label, np.zeros_like(full)) & full).any()  # pieces do not overlap
        union[label] = union.get(label, np.zeros_like(full)) | full
        assert int(jroi.getStatistics().pixelCount) == full.sum()
    assert kinds == {"ShapeRoi", "PolygonRoi"}
    for label, mask in union.items():
        np.testing.assert_array_equal(mask, labels == label, err_msg=f"label {label}")
    if multipart == "composite":
        assert_imagej_exact(ij_tools, labels, rois)


@pytest.mark.imagej
def test_imagej_reads_z_positions(ij_tools, shared_data):
    import tifffile

    labels = tifffile.imread(shared_data / "stardist" / "mask3d.tif")  # (Z, Y, X)
    rois = labels_to_rois(labels)
    assert len(rois) > labels.max() // 2
    for roi in rois:
        z = int(roi.name.rsplit("_z", 1)[1])
        jroi = ij_tools.decode(roi.tobytes(), roi.name + ".roi")
        assert jroi.getPosition() == z and jroi.getZPosition() == z
        assert not jroi.hasHyperStackPosition()
        x, y, mask = ij_tools.mask(jroi)
        crop = labels[z - 1, y : y + mask.shape[0], x : x + mask.shape[1]] == label_of(roi)
        np.testing.assert_array_equal(mask, crop)
        assert mask.sum() == np.count_nonzero(labels[z - 1] == label_of(roi))


@pytest.mark.imagej
def test_imagej_reads_hyperstack_positions(ij_tools):
    labels = np.zeros((2, 2, 3, 5, 5), np.uint8)  # T C Z Y X
    labels[1, 0, 2, 1:3, 1:4] = 1
    labels[0, 1, 1, 0:2, 0:2] = 2
    rois = labels_to_rois(labels, axes="TCZYX")
    got = []
    for roi in rois:
        jroi = ij_tools.decode(roi.tobytes(), roi.name + ".roi")
        assert jroi.hasHyperStackPosition()
        got.append((roi.name, jroi.getCPosition(), jroi.getZPosition(), jroi.getTPosition()))
    assert got == [("cell_0002_t001_c002_z002", 2, 2, 1), ("cell_0001_t002_c001_z003", 1, 3, 2)]


@pytest.mark.imagej
def test_imagej_reads_every_zip_entry(ij_tools, tmp_path):
    labels = synthetic_labels()
    path = tmp_path / "RoiSet.zip"
    path.write_bytes(b"not a zip at all")
    rois = labels_to_rois(labels, multipart="pieces")
    write_roi_zip(rois, path)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert len(set(names)) == len(names) == len(rois)
        assert all(n.endswith(".roi") for n in names)
        for name, roi in zip(names, rois):
            jroi = ij_tools.decode(zf.read(name), name)
            assert str(jroi.getName()) == name[:-4] == roi.name
            assert int(jroi.getStatistics().pixelCount) > 0

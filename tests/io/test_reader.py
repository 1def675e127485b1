"""Tests of cellseg_bridge.io.reader on the real vendor files in ../shared/data/formats.

The expected values in ``FILES`` are facts about the files, established with
the vendor libraries directly (aicspylibczi's XML ``Scaling``/``Channels``,
``nd2.ND2File`` and ``known-metadata_arcadia.yml``, the LIF XML
``DimensionDescription``/``ChannelDescription``, the OME-XML ``Pixels`` element,
TIFF resolution tags and ImageJ metadata via tifffile), not by running the
reader under test. LIF pixel sizes are written as ``Length / (N - 1)`` with the
numbers from the XML; CZI scalings are the XML values converted from m to µm.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import tifffile

from cellseg_bridge.errors import InputError
from cellseg_bridge.io.reader import DIMS, list_scenes, open_image

RGB = ("R", "G", "B")
POL = ["Bright", "Pol_0", "Pol_15", "Pol_30", "Pol_45", "Pol_60", "Pol_75"]

# (file under formats/, scene index, T, C, Z, Y, X, dtype, (Z, Y, X) size in µm, channel names)
FILES = [
    ("czi/CD_s_1_t_3_c_2_z_5.czi", 0, 3, 2, 5, 170, 240, "uint16",
     (0.32, 0.090576674152210312, 0.090576674152210312), ["LED555", "LED470"]),
    ("czi/RGB-8bit.czi", 0, 1, 3, 1, 624, 924, "uint8",
     (None, 1.0833333333333333, 1.0833333333333333), ["Red", "Green", "Blue"]),
    ("czi/RGB-multichannel.czi", 0, 1, 21, 1, 81, 147, "uint8",
     (None, 2.9584899946757142, 2.9584899946757142), [f"{n}_{s}" for n in POL for s in RGB]),
    ("czi/s_1_t_1_c_1_z_1.czi", 0, 1, 1, 1, 325, 475, "uint16",
     (None, 1.0833333333333333, 1.0833333333333333), ["Bright"]),
    # mosaic of 4 tiles of 256 x 256; stitched bounding box 510 x 512 (aicspylibczi)
    ("czi/tiles_z.czi", 0, 1, 2, 2, 512, 510, "uint8",
     (4.0, 0.83026582096383912, 0.83026582096383912), ["Ch1", "T PMT"]),
    # ND2: Z is not calibrated in single-plane files (axesCalibrated z False) -> None
    ("nd2/example-cerevisiae.nd2", 0, 1, 2, 1, 256, 256, "uint16",
     (None, 0.10833333333333334, 0.10833333333333334), ["DIC", "FITC BP"]),
    ("nd2/example-multichannel.nd2", 0, 1, 4, 1, 256, 256, "uint16",
     (None, 0.323390342594048, 0.323390342594048), ["Mono", "DAPI", "FITC BP", "TRITC BP"]),
    ("nd2/example-pbmc.nd2", 0, 1, 4, 1, 256, 256, "uint16",
     (None, 0.646780685188096, 0.646780685188096), ["Mono", "DAPI", "FITC BP", "TRITC BP"]),
    ("nd2/example-timelapse.nd2", 0, 53, 1, 1, 64, 64, "uint16",
     (None, 0.325, 0.325), ["GFP 488 nm"]),
    ("nd2/example-zstack.nd2", 0, 1, 1, 11, 128, 128, "uint16",
     (6.0, 0.323390342594048, 0.323390342594048), ["FITC BP"]),
    ("nd2/pims_cluster.nd2", 0, 3, 2, 10, 31, 38, "uint16",
     (0.5, 0.16780898323268245, 0.16780898323268245), ["5-FAM/pH 9.0", "FM 4-64/2% CHAPS"]),
    # LIF wavelength sweeps: emission 550 nm + 10 nm steps (20), excitation 490 nm + 5 nm (15)
    ("lif/LeicaLASX_wavelength-sweep_example.lif", 0, 1, 20, 1, 64, 64, "uint8",
     (None, 6.603309 / 63, 6.603309 / 63), [f"Green_em{550 + 10 * i}nm" for i in range(20)]),
    ("lif/LeicaLASX_wavelength-sweep_example.lif", 1, 1, 15, 1, 64, 64, "uint8",
     (None, 6.603309 / 63, 6.603309 / 63), [f"Green_ex{490 + 5 * i}nm" for i in range(15)]),
    ("lif/LeicaLASX_wavelength-sweep_example.lif", 2, 2, 10, 11, 64, 64, "uint8",
     (5.002027 / 10, 6.603309 / 63, 6.603309 / 63), [f"Green_em{550 + 5 * i}nm" for i in range(10)]),
    # LIF xz scans: depth becomes Y (Z = 1); xz planes stepped in y are volumes (Z, Y, X)
    ("lif/LeicaLASX_xz-plane_example.lif", 0, 1, 1, 1, 512, 512, "uint8",
     (None, 78.95889 / 511, 78.95885 / 511), ["Glow"]),
    ("lif/LeicaLASX_xz-plane_example.lif", 1, 10, 1, 1, 128, 128, "uint8",
     (None, 25.19989 / 127, 25.19994 / 127), ["Glow"]),
    ("lif/LeicaLASX_xz-plane_example.lif", 2, 1, 1, 64, 38, 128, "uint8",
     (17.18785 / 63, 9.994533 / 37, 34.64866 / 127), ["Glow"]),
    ("lif/testdata_2channel_xz.lif", 0, 20, 2, 1, 128, 128, "uint8",
     (None, 17.81540 / 127, 17.81554 / 127), ["Green", "Red"]),
    ("lif/testdata_2channel_xz.lif", 1, 1, 2, 128, 23, 128, "uint8",
     (17.81540 / 127, 5.039354 / 22, 17.81554 / 127), ["Green", "Red"]),
    ("lif/testdata_2channel_xz.lif", 2, 1, 2, 1, 512, 512, "uint8",
     (None, 52.47841 / 511, 52.47828 / 511), ["Green", "Red"]),
    ("ome_tiff/s_1_t_1_c_1_z_1.ome.tiff", 0, 1, 1, 1, 325, 475, "uint16",
     (None, 1.0833333333333333, 1.0833333333333333), ["Bright"]),
    # ImageJ: BBBC022 has no calibration (its slice labels name the channels, as Fiji shows them);
    # hela is RGB at 19.420064 px/µm; the stack is slices=5
    ("imagej_tiff/BBBC022_IXMtest_A02_s9.tif", 0, 1, 3, 1, 395, 695, "uint16",
     (None, None, None), ["IXMtest_A02_s9_c1.tif", "IXMtest_A02_s9_c2.tif", "IXMtest_A02_s9_c3.tif"]),
    ("imagej_tiff/hela-cells.tif", 0, 1, 3, 1, 512, 672, "uint16",
     (None, 1 / 19.420064, 1 / 19.420064), ["Red", "Green", "Blue"]),
    ("imagej_tiff/pims_tiff_stack.tif", 0, 1, 1, 5, 512, 512, "uint16",
     (None, None, None), ["Channel:0:0"]),
]

SCENES = {
    "lif/LeicaLASX_wavelength-sweep_example.lif": ["x_y_lambdaEmi", "x_y_lambdaExc", "x_y_z_t_lambdaEmi"],
    "lif/LeicaLASX_xz-plane_example.lif": ["x-z", "x-z-t", "x-z-y"],
    "lif/testdata_2channel_xz.lif": ["xzt", "xzy", "xz"],
    "czi/RGB-multichannel.czi": ["ScanRegion0"],
    "czi/tiles_z.czi": ["tiles_z-0"],
}


@pytest.fixture(scope="module")
def formats(shared_data: Path) -> Path:
    return shared_data / "formats"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- the table


@pytest.mark.parametrize("row", FILES, ids=[f"{r[0].split('/')[-1]}[{r[1]}]" for r in FILES])
def test_file_opens_with_known_values(formats, row):
    rel, scene, t, c, z, y, x, dtype, sizes, names = row
    image = open_image(formats / rel, scene=scene)
    assert image.dims == DIMS
    assert image.shape == (t, c, z, y, x)
    assert image.dtype == np.dtype(dtype)
    got = image.attrs["physical_pixel_sizes"]
    assert set(got) == {"Z", "Y", "X"}
    for axis, expected in zip("ZYX", sizes):
        if expected is None:
            assert got[axis] is None, axis
        else:
            assert got[axis] == pytest.approx(expected, rel=1e-6), axis
    assert image.attrs["channel_names"] == names
    assert all(type(n) is str for n in image.attrs["channel_names"])
    assert list(image.coords["C"].values) == names
    assert image.attrs["source"] == str(formats / rel)
    scenes = image.attrs["scenes"]
    assert all(type(s) is str for s in scenes)
    assert image.attrs["scene"] == scenes[scene]
    if rel in SCENES:
        assert scenes == SCENES[rel]


def test_table_covers_every_file(formats):
    images = {
        str(p.relative_to(formats))
        for p in formats.rglob("*")
        if p.is_file() and p.suffix.lower() in (".czi", ".nd2", ".lif", ".tif", ".tiff")
    }
    assert images == {row[0] for row in FILES}
    for rel in images:
        n_scenes = len(list_scenes(formats / rel))
        assert {row[1] for row in FILES if row[0] == rel} == set(range(n_scenes)), rel


def test_nd2_agrees_with_known_metadata(formats):
    yaml = pytest.importorskip("yaml")
    known = yaml.safe_load((formats / "nd2" / "known-metadata_arcadia.yml").read_text())
    for name, channels in known.items():
        image = open_image(formats / "nd2" / name)
        sizes = image.attrs["physical_pixel_sizes"]
        assert image.sizes["C"] == len(channels), name
        for channel in channels.values():
            res = channel["resolution"]
            assert (image.sizes["Y"], image.sizes["X"], image.sizes["Z"]) == (
                res["y_size_px"], res["x_size_px"], res["z_size_px"]), name
            assert sizes["X"] == pytest.approx(res["xy_step_um"]) and sizes["Y"] == pytest.approx(res["xy_step_um"])
            if res["z_size_px"] > 1:  # single-plane files list NIS' uncalibrated default 1.0
                assert sizes["Z"] == pytest.approx(res["z_step_um"]), name
            else:
                assert sizes["Z"] is None


# ----------------------------------------------------------------------------- pixels vs vendor libraries


def test_pixels_match_vendor_readers(formats):
    import nd2
    from aicspylibczi import CziFile
    from readlif.reader import LifFile

    # CZI colour: libCZI stores B, G, R; our "Red" is the third stored sample.
    raw, dims = CziFile(formats / "czi" / "RGB-8bit.czi").read_image()
    raw = np.squeeze(raw)  # (Y, X, A)
    ours = open_image(formats / "czi" / "RGB-8bit.czi")
    np.testing.assert_array_equal(ours.sel(C="Red").values[0, 0], raw[..., 2])
    np.testing.assert_array_equal(ours.sel(C="Blue").values[0, 0], raw[..., 0])

    ours = open_image(formats / "nd2" / "pims_cluster.nd2").values
    np.testing.assert_array_equal(ours, nd2.imread(formats / "nd2" / "pims_cluster.nd2").transpose(0, 2, 1, 3, 4))

    stack = tifffile.memmap(formats / "imagej_tiff" / "pims_tiff_stack.tif", mode="r")  # big-endian ImageJ
    np.testing.assert_array_equal(open_image(formats / "imagej_tiff" / "pims_tiff_stack.tif").values[0, 0], stack)
    hela = tifffile.memmap(formats / "imagej_tiff" / "hela-cells.tif", mode="r")  # (Y, X, S)
    np.testing.assert_array_equal(open_image(formats / "imagej_tiff" / "hela-cells.tif").values[0, :, 0],
                                  np.moveaxis(hela, -1, 0))

    # LIF planes against readlif's own get_plane (8-bit files, where its offsets are right)
    lif = LifFile(str(formats / "lif" / "testdata_2channel_xz.lif"))
    ours = open_image(formats / "lif" / "testdata_2channel_xz.lif", scene="xzt").values
    for t, ch in [(0, 0), (7, 1), (19, 1)]:
        plane = np.asarray(lif.get_image(0).get_plane(display_dims=(1, 3), c=ch, requested_dims={4: t}))
        np.testing.assert_array_equal(ours[t, ch, 0], plane)
    volume = open_image(formats / "lif" / "testdata_2channel_xz.lif", scene="xzy").values
    plane = np.asarray(lif.get_image(1).get_plane(display_dims=(1, 3), c=1, requested_dims={2: 5}))  # (Z, X) at y=5
    np.testing.assert_array_equal(volume[0, 1, :, 5, :], plane)
    sweep = LifFile(str(formats / "lif" / "LeicaLASX_wavelength-sweep_example.lif")).get_image(2)
    ours = open_image(formats / "lif" / "LeicaLASX_wavelength-sweep_example.lif", scene=2).values
    plane = np.asarray(sweep.get_plane(display_dims=(1, 2), c=0, requested_dims={3: 4, 5: 7, 4: 1}))
    np.testing.assert_array_equal(ours[1, 7, 4], plane)


# ----------------------------------------------------------------------------- scenes


def test_scene_by_index_and_by_name(formats):
    path = formats / "lif" / "LeicaLASX_xz-plane_example.lif"
    assert list_scenes(path) == ["x-z", "x-z-t", "x-z-y"]
    by_index = open_image(path, scene=1)
    by_name = open_image(path, scene="x-z-t")
    assert by_index.attrs["scene"] == by_name.attrs["scene"] == "x-z-t"
    assert by_index.shape == by_name.shape == (10, 1, 1, 128, 128)
    assert open_image(path).attrs["scene"] == "x-z"


@pytest.mark.parametrize("scene", [3, -1, "nope", 1.5])
def test_bad_scene_names_file_and_lists_scenes(formats, scene):
    path = formats / "lif" / "testdata_2channel_xz.lif"
    with pytest.raises(InputError) as info:
        open_image(path, scene=scene)
    message = str(info.value)
    assert str(path) in message
    if not isinstance(scene, float):
        assert "'xzt'" in message and "'xzy'" in message and "'xz'" in message


# ----------------------------------------------------------------------------- axes


@pytest.fixture
def stack_tif(tmp_path) -> tuple[Path, np.ndarray]:
    values = np.arange(5 * 64 * 48, dtype=np.uint16).reshape(5, 64, 48)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, values)  # no OME, no ImageJ: axes unknown ("QYX")
    return path, values


def test_plain_tiff_axes_default_is_logged(stack_tif, caplog):
    path, values = stack_tif
    with caplog.at_level(logging.WARNING, logger="cellseg_bridge"):
        image = open_image(path)
    assert image.shape == (1, 1, 5, 64, 48)
    assert "assumed 'ZYX'" in caplog.text and str(path) in caplog.text
    np.testing.assert_array_equal(image.values[0, 0], values)


@pytest.mark.parametrize(
    "axes, shape",
    [("ZYX", (1, 1, 5, 64, 48)), ("TYX", (5, 1, 1, 64, 48)), ("CYX", (1, 5, 1, 64, 48)), ("zyx", (1, 1, 5, 64, 48))],
)
def test_plain_tiff_axes_stated(stack_tif, caplog, axes, shape):
    path, values = stack_tif
    with caplog.at_level(logging.WARNING, logger="cellseg_bridge"):
        image = open_image(path, axes=axes)
    assert caplog.text == ""
    assert image.shape == shape
    np.testing.assert_array_equal(image.values.reshape(values.shape), values)
    assert image.attrs["physical_pixel_sizes"] == {"Z": None, "Y": None, "X": None}  # unit "none": no calibration


def test_axes_with_samples_and_five_dims(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (32, 24, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    image = open_image(tmp_path / "rgb.tif", axes="YXS")
    assert image.shape == (1, 3, 1, 32, 24) and image.attrs["channel_names"] == ["Red", "Green", "Blue"]
    np.testing.assert_array_equal(image.values[0, 2, 0], rgb[..., 2])

    five = np.arange(2 * 3 * 4 * 8 * 6, dtype=np.float32).reshape(2, 3, 4, 8, 6)
    tifffile.imwrite(tmp_path / "five.tif", five, photometric="minisblack")
    image = open_image(tmp_path / "five.tif", axes="TCZYX")
    assert image.shape == five.shape and image.dtype == np.float32
    np.testing.assert_array_equal(image.values, five)
    image = open_image(tmp_path / "five.tif", axes="CTZYX")
    np.testing.assert_array_equal(image.values, five.transpose(1, 0, 2, 3, 4))


@pytest.mark.parametrize("axes", ["YX", "TZYX", "ZZX", "QYX", "ZXW", ""])
def test_bad_axes(stack_tif, axes):
    path, _ = stack_tif
    with pytest.raises(InputError, match="axes") as info:
        open_image(path, axes=axes)
    assert str(path) in str(info.value)


def test_axes_refused_for_self_describing_formats(formats):
    with pytest.raises(InputError, match="record their own axis order"):
        open_image(formats / "czi" / "s_1_t_1_c_1_z_1.czi", axes="YX")
    with pytest.raises(InputError, match="record their own axis order"):
        open_image(formats / "ome_tiff" / "s_1_t_1_c_1_z_1.ome.tiff", axes="YX")


# ----------------------------------------------------------------------------- other TIFF/PNG/JPEG cases


def test_tiff_pixel_sizes_from_tags(tmp_path):
    img = np.zeros((16, 12), np.uint16)
    tifffile.imwrite(tmp_path / "cm.tif", img, resolution=(1e4 / 0.25, 1e4 / 0.5), resolutionunit="CENTIMETER")
    sizes = open_image(tmp_path / "cm.tif").attrs["physical_pixel_sizes"]
    assert sizes["X"] == pytest.approx(0.25) and sizes["Y"] == pytest.approx(0.5) and sizes["Z"] is None
    tifffile.imwrite(tmp_path / "dpi.tif", img, resolution=(72, 72), resolutionunit="INCH")
    assert open_image(tmp_path / "dpi.tif").attrs["physical_pixel_sizes"] == {"Z": None, "Y": None, "X": None}
    stack = np.zeros((3, 16, 12), np.uint8)
    tifffile.imwrite(tmp_path / "ij.tif", stack, imagej=True, resolution=(1 / 0.2, 1 / 0.2),
                     metadata={"axes": "ZYX", "unit": "um", "spacing": 1.5})
    image = open_image(tmp_path / "ij.tif")
    assert image.shape == (1, 1, 3, 16, 12)
    assert image.attrs["physical_pixel_sizes"] == pytest.approx({"Z": 1.5, "Y": 0.2, "X": 0.2})


def test_big_endian_ome_tiff(tmp_path):
    values = np.arange(2 * 3 * 10 * 8, dtype=np.uint16).reshape(2, 3, 10, 8)
    path = tmp_path / "be.ome.tif"
    tifffile.imwrite(path, values, byteorder=">", ome=True,
                     metadata={"axes": "CZYX", "PhysicalSizeX": 0.4, "PhysicalSizeY": 0.4, "PhysicalSizeZ": 2.0,
                               "Channel": {"Name": ["DNA", "Actin"]}})
    image = open_image(path)
    assert image.shape == (1, 2, 3, 10, 8)
    assert image.attrs["channel_names"] == ["DNA", "Actin"]
    assert image.attrs["physical_pixel_sizes"] == pytest.approx({"Z": 2.0, "Y": 0.4, "X": 0.4})
    np.testing.assert_array_equal(image.values[0], values)


def test_png_and_jpeg(tmp_path):
    imageio = pytest.importorskip("imageio.v3")
    rgb = np.random.default_rng(1).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    imageio.imwrite(tmp_path / "c.png", rgb)
    imageio.imwrite(tmp_path / "g.png", rgb[..., 0])
    imageio.imwrite(tmp_path / "c.jpg", rgb)
    image = open_image(tmp_path / "c.png")
    assert image.shape == (1, 3, 1, 20, 30) and image.attrs["channel_names"] == ["Red", "Green", "Blue"]
    np.testing.assert_array_equal(image.values[0, :, 0], np.moveaxis(rgb, -1, 0))
    assert open_image(tmp_path / "g.png").shape == (1, 1, 1, 20, 30)
    jpeg = open_image(tmp_path / "c.jpg")
    assert jpeg.shape == (1, 3, 1, 20, 30) and jpeg.dtype == np.uint8
    assert jpeg.attrs["physical_pixel_sizes"] == {"Z": None, "Y": None, "X": None}
    assert list_scenes(tmp_path / "c.png") == ["Image:0"]


# ----------------------------------------------------------------------------- laziness, inputs untouched


def _no_compute(dsk, keys, **kwargs):
    raise AssertionError("open_image computed data")


@pytest.mark.parametrize(
    "rel, scene",
    [("czi/CD_s_1_t_3_c_2_z_5.czi", 0), ("nd2/pims_cluster.nd2", 0), ("imagej_tiff/pims_tiff_stack.tif", 0),
     ("lif/testdata_2channel_xz.lif", 0), ("ome_tiff/s_1_t_1_c_1_z_1.ome.tiff", 0)],
)
def test_data_is_lazy(formats, rel, scene):
    with dask.config.set(scheduler=_no_compute):
        image = open_image(formats / rel, scene=scene)
    assert isinstance(image.data, da.Array)
    assert image.data.npartitions > 1 or image.shape[1] * image.shape[0] == 1


def test_lazy_data_pickles_for_dask_workers(formats):
    for rel, scene in [("imagej_tiff/pims_tiff_stack.tif", 0), ("lif/testdata_2channel_xz.lif", 1)]:
        image = open_image(formats / rel, scene=scene)
        copy = pickle.loads(pickle.dumps(image.data))
        np.testing.assert_array_equal(copy.compute(), image.values)


def test_inputs_not_modified(formats):
    paths = [formats / rel for rel in ("czi/RGB-8bit.czi", "nd2/example-zstack.nd2", "imagej_tiff/hela-cells.tif",
                                       "lif/LeicaLASX_xz-plane_example.lif", "ome_tiff/s_1_t_1_c_1_z_1.ome.tiff")]
    before = {p: (_sha(p), p.stat().st_mtime_ns) for p in paths}
    for p in paths:
        for i in range(len(list_scenes(p))):
            open_image(p, scene=i).values
    assert {p: (_sha(p), p.stat().st_mtime_ns) for p in paths} == before


# ----------------------------------------------------------------------------- bad files


@pytest.mark.parametrize("name", ["x.czi", "x.tif", "x.nd2", "x.lif", "x.png", "x.jpg", "x.ome.tiff"])
def test_random_bytes_give_input_error(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(7).bytes(4096))
    with pytest.raises(InputError) as info:
        open_image(path)
    assert info.value.path == path and str(path) in str(info.value)
    with pytest.raises(InputError):
        list_scenes(path)


@pytest.mark.parametrize("rel", ["imagej_tiff/pims_tiff_stack.tif", "nd2/pims_cluster.nd2",
                                 "lif/LeicaLASX_xz-plane_example.lif", "imagej_tiff/hela-cells.tif"])
def test_truncated_files_give_input_error(formats, tmp_path, rel):
    data = (formats / rel).read_bytes()
    path = tmp_path / Path(rel).name
    path.write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(InputError, match="truncated|damaged|cannot be read") as info:
        # all scenes: the LIF's first images may lie before the cut
        for i in range(len(list_scenes(path))):
            open_image(path, scene=i)
    assert str(path) in str(info.value)


def test_missing_folder_empty_unsupported(tmp_path):
    with pytest.raises(InputError, match="not found") as info:
        open_image(tmp_path / "nope.czi")
    assert info.value.path == tmp_path / "nope.czi"
    with pytest.raises(InputError, match="folder"):
        open_image(tmp_path)
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        open_image(tmp_path / "empty.tif")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="unsupported file type '.txt'"):
        open_image(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="not found"):
        list_scenes(tmp_path / "nope.lif")


# ----------------------------------------------------------------------------- OME-Zarr (NGFF) folders


def _zarr_array(group, name: str, data: np.ndarray, chunks: tuple[int, ...]):
    """Write ``data`` as a zarr format 2 array (OME-NGFF 0.4) with zarr 2 or zarr 3."""
    import zarr

    if int(zarr.__version__.split(".")[0]) >= 3:
        array = group.create_array(name, shape=data.shape, chunks=chunks, dtype=data.dtype,
                                   chunk_key_encoding={"name": "v2", "separator": "/"})
    else:
        array = group.create_dataset(name, shape=data.shape, chunks=chunks, dtype=data.dtype,
                                     dimension_separator="/")
    array[...] = data
    return array


def _ngff_image(path: Path, data: np.ndarray, scale: list[float], channels: list[str] | None) -> None:
    """A user's NGFF 0.4 image: axes t c z y x, two resolution levels, omero channel labels (unless None)."""
    import zarr

    kwargs = {"zarr_format": 2} if int(zarr.__version__.split(".")[0]) >= 3 else {}
    group = zarr.open_group(str(path), mode="w", **kwargs)
    _zarr_array(group, "0", data, (1, 1, 1, 32, 32))
    _zarr_array(group, "1", data[..., ::2, ::2], (1, 1, 1, 32, 32))
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}] + [
        {"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    group.attrs["multiscales"] = [{
        "version": "0.4", "name": "cells", "axes": axes,
        "datasets": [
            {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0, *scale]}]},
            {"path": "1", "coordinateTransformations": [
                {"type": "scale", "scale": [1.0, 1.0, scale[0], scale[1] * 2, scale[2] * 2]}]},
        ],
    }]
    if channels is not None:
        group.attrs["omero"] = {"channels": [{"label": name} for name in channels]}


def test_ngff_image_opens_lazily(tmp_path):
    data = np.random.default_rng(3).integers(0, 4000, (2, 2, 3, 64, 96), dtype=np.uint16)
    path = tmp_path / "cells.ome.zarr"
    _ngff_image(path, data, [2.0, 0.5, 0.25], ["DAPI", "GFP"])
    with dask.config.set(scheduler=_no_compute):
        image = open_image(path)
    assert image.dims == DIMS and image.shape == data.shape and image.dtype == np.uint16
    assert image.data.npartitions > 1
    assert image.attrs["channel_names"] == ["DAPI", "GFP"]
    assert image.attrs["physical_pixel_sizes"] == pytest.approx({"Z": 2.0, "Y": 0.5, "X": 0.25})
    assert image.attrs["reader"] == "bioio-ome-zarr"
    np.testing.assert_array_equal(image.values, data)
    assert list_scenes(path)[0] == image.attrs["scene"]


def test_ngff_image_without_omero_metadata(tmp_path):
    # bioio-ome-zarr < 1.2 (picked beside the aicsimageio extra) recursed without end here
    data = np.random.default_rng(4).integers(0, 4000, (1, 2, 1, 64, 64), dtype=np.uint16)
    path = tmp_path / "plain.ome.zarr"
    _ngff_image(path, data, [1.0, 0.5, 0.5], None)
    image = open_image(path)
    assert image.shape == data.shape and image.attrs["reader"] == "bioio-ome-zarr"
    assert len(image.attrs["channel_names"]) == 2 and len(set(image.attrs["channel_names"])) == 2
    np.testing.assert_array_equal(image.values, data)


def test_ome_zarr_must_be_a_folder(tmp_path):
    (tmp_path / "x.ome.zarr").write_bytes(b"zarr?")
    with pytest.raises(InputError, match="folder") as info:
        open_image(tmp_path / "x.ome.zarr")
    assert info.value.path == tmp_path / "x.ome.zarr"
    (tmp_path / "empty.ome.zarr").mkdir()
    with pytest.raises(InputError) as info:
        open_image(tmp_path / "empty.ome.zarr")
    assert str(tmp_path / "empty.ome.zarr") in str(info.value)


@pytest.mark.parametrize("rel, wrong", [("nd2/pims_cluster.nd2", ".czi"), ("czi/s_1_t_1_c_1_z_1.czi", ".nd2"),
                                        ("imagej_tiff/pims_tiff_stack.tif", ".lif"),
                                        ("lif/testdata_2channel_xz.lif", ".tif"),
                                        ("czi/s_1_t_1_c_1_z_1.czi", ".png")])
def test_wrong_extension_gives_input_error(formats, tmp_path, rel, wrong):
    path = tmp_path / ("renamed" + wrong)
    path.symlink_to(formats / rel)
    with pytest.raises(InputError) as info:
        open_image(path).values
    assert info.value.path == path and str(path) in str(info.value)

"""``cellseg segment --format ome-zarr``: the image and its labels in one OME-Zarr other tools accept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from cellseg_bridge.batch.segment import segment_files
from cellseg_bridge.cli import main
from cellseg_bridge.errors import InputError
from cellseg_bridge.io.reader import open_image
from cellseg_bridge.io.writers import write_ome_tiff

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def nuclei(tmp_path: Path) -> Path:
    """A 2-channel 128 x 160 crop of the bundled sample nuclei (channel 1: the same, inverted)."""
    plane = tifffile.imread(REPO / "sample_data" / "nuclei_00.ome.tif")[:128, :160]
    folder = tmp_path / "in"
    folder.mkdir()
    write_ome_tiff(np.stack([plane, plane.max() - plane]), folder / "nuc.ome.tif", dims="CYX",
                   channel_names=["DAPI", "inv"], physical_pixel_sizes={"Y": 0.65, "X": 0.65})
    return folder / "nuc.ome.tif"


def test_cli_format_ome_zarr_writes_image_and_labels(nuclei: Path, tmp_path: Path) -> None:
    args = [str(nuclei), "--model", "nuclei", "--diameter", "20", "--device", "cpu", "--json"]
    zarr_run = CliRunner().invoke(main, ["segment", *args, "--out", str(tmp_path / "z"), "--format", "ome-zarr"])
    assert zarr_run.exit_code == 0, zarr_run.output
    out = tmp_path / "z"
    assert sorted(p.name for p in out.iterdir()) == ["cellseg_run.json", "nuc.ome.zarr", "nuc_RoiSet.zip",
                                                     "nuc_cells.csv", "nuc_overlay.png"]
    tiff_run = CliRunner().invoke(main, ["segment", *args, "--out", str(tmp_path / "t"), "--no-rois", "--no-csv",
                                         "--no-overlay"])
    assert tiff_run.exit_code == 0, tiff_run.output
    expected = np.asarray(open_image(tmp_path / "t" / "nuc_labels.ome.tif").data)  # (T, 1, Z, Y, X)
    labels = open_image(out / "nuc.ome.zarr" / "labels" / "cells")
    np.testing.assert_array_equal(np.asarray(labels.data), expected)  # pixel-identical through open_image
    assert expected.max() > 5 and json.loads(zarr_run.stdout)["items"][0]["n_cells"] == len(
        np.unique(expected)) - 1
    image = open_image(out / "nuc.ome.zarr")
    np.testing.assert_array_equal(np.asarray(image.data), np.asarray(open_image(nuclei).data))
    assert list(image.attrs["channel_names"]) == ["DAPI", "inv"]
    assert image.attrs["physical_pixel_sizes"]["Y"] == pytest.approx(0.65)

    models = pytest.importorskip("ome_zarr_models", reason="ome-zarr-models not installed (Python >= 3.11)")
    import zarr
    from ome_zarr_models.v04.image import Image
    from ome_zarr_models.v04.image_label import ImageLabel

    assert isinstance(models.open_ome_zarr(zarr.open_group(str(out / "nuc.ome.zarr"), mode="r")), Image)
    cells = ImageLabel.from_zarr(zarr.open_group(str(out / "nuc.ome.zarr" / "labels" / "cells"), mode="r"))
    assert len(cells.attributes.image_label.properties) == len(np.unique(expected)) - 1

    again = CliRunner().invoke(main, ["segment", *args, "--out", str(out), "--format", "ome-zarr", "--overwrite"])
    assert again.exit_code == 0, again.output  # the folder output is replaced
    np.testing.assert_array_equal(np.asarray(open_image(out / "nuc.ome.zarr" / "labels" / "cells").data), expected)


def test_unknown_label_format_is_refused(nuclei: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown label format 'zarr'"):
        segment_files(nuclei, tmp_path / "o", label_format="zarr")


def test_ome_zarr_0_5_through_the_batch(nuclei: Path, tmp_path: Path) -> None:
    """``label_format="ome-zarr-0.5"``: OME-NGFF 0.5 (zarr format 3), validated as such; a stand-in segmenter."""
    import types

    from scipy import ndimage

    def fake_segment(image, model=None, *, return_flows=False, **options):
        data = np.asarray(image.isel(C=options["channel"]).values, dtype=np.float64)
        labels = np.stack([[ndimage.label(p > p.mean())[0] for p in planes] for planes in data]).astype(np.uint16)
        return types.SimpleNamespace(labels=labels, flows=None, cellprob=None, diameter=17.0, model="fake")

    report = segment_files(nuclei, tmp_path / "o", outputs=["labels"], label_format="ome-zarr-0.5", quiet=True,
                           segment_fn=fake_segment, load_model_fn=lambda name, device="auto": name)
    assert report.ok, report.failed
    path = tmp_path / "o" / "nuc.ome.zarr"
    assert (path / "zarr.json").is_file() and not (path / ".zattrs").exists()
    expected = fake_segment(open_image(nuclei), channel=0).labels
    np.testing.assert_array_equal(np.asarray(open_image(path / "labels" / "cells").data)[:, 0], expected)
    pytest.importorskip("ome_zarr_models", reason="ome-zarr-models not installed (Python >= 3.11)")
    import zarr
    from ome_zarr_models.v05.image import Image
    from ome_zarr_models.v05.image_label import ImageLabel

    assert Image.from_zarr(zarr.open_group(str(path), mode="r")).attributes.ome.version == "0.5"
    cells = ImageLabel.from_zarr(zarr.open_group(str(path / "labels" / "cells"), mode="r"))
    assert len(cells.attributes.ome.image_label.properties) == len(np.unique(expected)) - 1


def test_an_ome_zarr_input_is_never_replaced_by_its_output(tmp_path: Path) -> None:
    from cellseg_bridge.io.ome_zarr import write_ome_zarr

    image = np.zeros((1, 1, 1, 32, 32), np.uint16)
    source = write_ome_zarr(tmp_path / "x.ome.zarr", image, np.zeros((1, 1, 32, 32), np.uint32))
    before = sorted(p.relative_to(source) for p in source.rglob("*"))
    report = segment_files(source, tmp_path, label_format="ome-zarr", overwrite=True, quiet=True,
                           segment_fn=lambda *a, **k: None, load_model_fn=lambda name, device="auto": name)
    assert not report.ok and not report.done  # inputs inside the output folder are left out (batch rule)
    assert sorted(p.relative_to(source) for p in source.rglob("*")) == before

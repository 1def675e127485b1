"""OME-Zarr image + labels: checked by independent readers (ome-zarr-models, ome-zarr-py) and by open_image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cellseg_bridge.errors import InputError
from cellseg_bridge.io.ome_zarr import default_levels, write_ome_zarr
from cellseg_bridge.io.reader import open_image


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 4000, (2, 2, 1, 100, 130)).astype(np.uint16)
    labels = np.zeros((2, 1, 100, 130), np.uint32)
    labels[:, :, 10:30, 20:50] = 3
    labels[0, :, 50:91, 60:71] = 7
    labels[1, :, 51:90, 61:72] = 70000  # beyond uint16
    return image, labels


@pytest.fixture(params=["0.4", "0.5"])
def written(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str, np.ndarray, np.ndarray]:
    image, labels = _data()
    path = write_ome_zarr(tmp_path / "img.ome.zarr", image, labels, pixel_sizes={"Y": 0.5, "X": 0.25},
                          channel_names=["dna", "membrane"], levels=3, version=request.param)
    return path, request.param, image, labels


def test_independent_validator_accepts_image_and_labels(written) -> None:
    """ome-zarr-models validates the image, the labels group and the label image (image-label metadata)."""
    models = pytest.importorskip("ome_zarr_models", reason="ome-zarr-models not installed (Python >= 3.11; test extra)")
    import zarr

    path, version, image, labels = written
    mod = {"0.4": "v04", "0.5": "v05"}[version]
    image_model = pytest.importorskip(f"ome_zarr_models.{mod}.image").Image
    label_model = pytest.importorskip(f"ome_zarr_models.{mod}.image_label").ImageLabel
    labels_model = pytest.importorskip(f"ome_zarr_models.{mod}.labels").Labels
    assert isinstance(models.open_ome_zarr(zarr.open_group(str(path), mode="r")), image_model)
    group = labels_model.from_zarr(zarr.open_group(str(path / "labels"), mode="r"))
    attrs = group.attributes if version == "0.4" else group.attributes.ome
    assert list(attrs.labels) == ["cells"]
    cells = label_model.from_zarr(zarr.open_group(str(path / "labels" / "cells"), mode="r"))
    meta = cells.attributes if version == "0.4" else cells.attributes.ome
    props = {p.label_value: p.model_dump(by_alias=True) for p in meta.image_label.properties}
    counts = np.bincount(labels.ravel())
    assert sorted(props) == [3, 7, 70000]
    for value, entry in props.items():
        assert entry["area (pixels)"] == counts[value]
        assert entry["area (µm²)"] == pytest.approx(counts[value] * 0.125)
        _, ys, xs = np.nonzero(labels.reshape(-1, 100, 130) == value)
        assert (entry["centroid_y (pixels)"], entry["centroid_x (pixels)"]) == pytest.approx((ys.mean(), xs.mean()),
                                                                                             abs=1e-3)
    assert sorted(c.label_value for c in meta.image_label.colors) == [3, 7, 70000]
    assert meta.image_label.source.image == "../../"
    image_scales = [d.coordinateTransformations[0].scale for d in meta.multiscales[0].datasets]
    assert image_scales == [[1.0, 1.0, 1.0, 0.5 * 2**k, 0.25 * 2**k] for k in range(3)]


def test_ome_zarr_py_finds_labels_with_same_levels(written) -> None:
    pytest.importorskip("ome_zarr", reason="ome-zarr not installed (Python >= 3.11; test extra)")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Labels, Multiscales, Reader

    path, _, image, labels = written
    nodes = list(Reader(parse_url(str(path)))())
    by_spec = {type(s): n for n in nodes for s in n.specs}
    assert {Multiscales, Labels, Label} <= set(by_spec)
    image_node, label_node = nodes[0], by_spec[Label]
    assert [d.shape[-2:] for d in image_node.data] == [d.shape[-2:] for d in label_node.data] == \
        [(100, 130), (50, 65), (25, 33)]
    np.testing.assert_array_equal(np.asarray(label_node.data[0])[:, 0], labels)
    np.testing.assert_array_equal(np.asarray(label_node.data[2])[:, 0], labels[..., ::4, ::4])
    np.testing.assert_array_equal(np.asarray(image_node.data[1]), image[..., ::2, ::2])
    assert label_node.metadata["properties"][7]["area (pixels)"] == int((labels == 7).sum())


def test_open_image_reads_back_pixel_identical(written) -> None:
    path, _, image, labels = written
    back = open_image(path / "labels" / "cells")
    assert back.dims == ("T", "C", "Z", "Y", "X") and back.dtype == np.uint32
    np.testing.assert_array_equal(np.asarray(back.data)[:, 0], labels)
    assert back.attrs["physical_pixel_sizes"]["X"] == pytest.approx(0.25)
    img = open_image(path)
    np.testing.assert_array_equal(np.asarray(img.data), image)
    assert list(img.attrs["channel_names"]) == ["dna", "membrane"]


def test_bad_input_and_defaults(tmp_path: Path) -> None:
    image, labels = _data()
    with pytest.raises(InputError, match="do not match"):
        write_ome_zarr(tmp_path / "a.ome.zarr", image, labels[:, :, :50])
    with pytest.raises(InputError, match="must be integers"):
        write_ome_zarr(tmp_path / "a.ome.zarr", image, labels.astype(np.float32))
    with pytest.raises(InputError, match="version"):
        write_ome_zarr(tmp_path / "a.ome.zarr", image, labels, version="0.3")
    assert not (tmp_path / "a.ome.zarr").exists() and not list(tmp_path.iterdir())
    assert default_levels((300, 400)) == 1 and default_levels((2048, 4096)) == 4  # 2048, 1024, 512, 256


def test_properties_over_many_blocks_and_the_listing_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-label sums accumulate over zarr blocks (32 px here) as over the whole array; long lists are capped."""
    import zarr

    from cellseg_bridge.io import ome_zarr

    monkeypatch.setattr(ome_zarr, "_CHUNK_YX", 32)
    image, labels = _data()
    write_ome_zarr(tmp_path / "a.ome.zarr", image, labels, levels=2)
    meta = zarr.open_group(str(tmp_path / "a.ome.zarr" / "labels" / "cells"), mode="r").attrs["image-label"]
    for entry in meta["properties"]:
        _, ys, xs = np.nonzero(labels.reshape(-1, 100, 130) == entry["label-value"])
        assert entry["area (pixels)"] == ys.size
        assert (entry["centroid_y (pixels)"], entry["centroid_x (pixels)"]) == pytest.approx((ys.mean(), xs.mean()),
                                                                                             abs=1e-3)
    monkeypatch.setattr(ome_zarr, "MAX_LISTED_LABELS", 2)
    write_ome_zarr(tmp_path / "b.ome.zarr", image, labels, levels=1)
    meta = zarr.open_group(str(tmp_path / "b.ome.zarr" / "labels" / "cells"), mode="r").attrs["image-label"]
    assert [p["label-value"] for p in meta["properties"]] == [c["label-value"] for c in meta["colors"]] == [3, 7]

"""segment_large: chunked segmentation of real dsb2018 nuclei against the whole-image result."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from cellseg_bridge.core.chunk_merge import chunk_grid, split_cells
from cellseg_bridge.core.metrics import average_precision
from cellseg_bridge.core.transforms import normalize_percentile
from cellseg_bridge.distributed.chunked import read_zarr_labels, segment_large
from cellseg_bridge.distributed.plane_source import open_plane_source, plane_percentiles
from cellseg_bridge.errors import InputError

SIZE = 384
CHUNK = 150  # cores of 128 px: borders at 128 and 256 cut through the 192-px mosaic tiles
DIAMETER = 24.0


def _mosaic(shared: Path, size: int) -> np.ndarray:
    """A size x size mosaic of 192 x 192 crops of the dsb2018 test-split fluorescence images with most nuclei."""
    import imageio.v3 as iio

    rows = [line.split("\t") for line in (shared / "dsb2018" / "split.tsv").read_text().splitlines()[1:]]
    ids = [r[0] for r in rows if r[1] == "fluo" and r[2].strip() == "test"]
    folder = shared / "dsb2018" / "stage1_train"
    images = {i: iio.imread(folder / i / "images" / f"{i}.png") for i in ids}
    density = {i: len(list((folder / i / "masks").glob("*.png"))) / images[i][..., 0].size for i in ids}
    ids.sort(key=lambda i: (-density[i], i))  # most nuclei per pixel first
    canvas = np.zeros((size, size), np.float32)
    k = 0
    for y in range(0, size, 192):
        for x in range(0, size, 192):
            img = images[ids[k]]
            gray = img[..., :3].mean(-1) if img.ndim == 3 else img
            canvas[y : y + 192, x : x + 192] = gray[:192, :192]
            k += 1
    return canvas


@pytest.fixture(scope="module")
def model(shared_models):
    from cellseg_bridge.segmentation.pipeline import load_model

    path = shared_models / "cellpose3_dsb2018_nuclei.pth"
    if not path.exists():
        pytest.skip(f"{path} not found")
    return load_model(path, "cpu")


@pytest.fixture(scope="module")
def mosaic_and_whole(shared_data, model):
    from cellseg_bridge.segmentation.pipeline import segment

    image = _mosaic(shared_data, SIZE)
    whole = segment(image, model, diameter=DIAMETER).labels[0, 0]
    return image, whole


def test_one_chunk_equals_the_whole_image_pipeline(model, mosaic_and_whole):
    from cellseg_bridge.segmentation.pipeline import segment

    crop = mosaic_and_whole[0][:200, 100:300] * 3 + 7  # other percentiles than the mosaic's
    whole = segment(crop, model, diameter=DIAMETER).labels[0, 0]
    result = segment_large(crop, model, chunk_size=200, diameter=DIAMETER)
    assert result.n_chunks == 1 and whole.max() > 5
    np.testing.assert_array_equal(result.labels, whole)


def test_one_chunk_equals_the_whole_image_pipeline_inverted(model, mosaic_and_whole):
    from cellseg_bridge.segmentation.pipeline import segment

    crop = mosaic_and_whole[0][:200, 100:300]
    dark = crop.max() - crop
    whole = segment(dark, model, diameter=DIAMETER, invert=True).labels[0, 0]
    result = segment_large(dark, model, chunk_size=200, diameter=DIAMETER, invert=True)
    assert result.n_chunks == 1 and whole.max() > 5
    np.testing.assert_array_equal(result.labels, whole)
    # a model trained on inverted images inverts by itself (invert=None, the default)
    trained_inverted = dataclasses.replace(model, config={**model.config, "invert": True})
    by_config = segment_large(dark, trained_inverted, chunk_size=200, diameter=DIAMETER)
    np.testing.assert_array_equal(by_config.labels, whole)


def test_chunked_matches_whole_image_without_seams(model, mosaic_and_whole, tmp_path):
    image, whole = mosaic_and_whole
    out = [tmp_path / "labels.ome.zarr", tmp_path / "labels.ome.tif"]
    result = segment_large(image, model, out=out, chunk_size=CHUNK, diameter=DIAMETER)
    assert result.n_chunks == 9 and result.overlap == 48 and result.truncated == 0
    labels = np.asarray(read_zarr_labels(out[0])[:])
    # chunk borders go through cells: whole-image cells in more than one core
    cores = chunk_grid(whole.shape, CHUNK, 0)
    seen: dict[int, int] = {}
    for c in cores:
        for v in np.unique(whole[c.core]):
            seen[int(v)] = seen.get(int(v), 0) + 1
    crossing = [v for v, n in seen.items() if v and n > 1]
    assert len(crossing) >= 10
    ap, tp, fp, fn = average_precision(whole.astype(np.int64), labels.astype(np.int64), [0.5])
    assert ap[0] >= 0.99, (ap, tp, fp, fn)
    assert split_cells(whole, labels).size == 0
    assert labels.max() == result.n_cells and np.unique(labels).size == result.n_cells + 1
    import tifffile

    np.testing.assert_array_equal(tifffile.imread(out[1]), labels)
    # the OME-Zarr output opens like any image, lazily (bioio-ome-zarr)
    from cellseg_bridge.io.reader import open_image

    opened = open_image(out[0])
    assert opened.shape == (1, 1, 1, *labels.shape) and opened.dtype == np.uint32
    assert isinstance(opened.data, da.Array)
    np.testing.assert_array_equal(opened.values[0, 0, 0], labels)


def test_plane_percentiles_follow_the_whole_image_rule():
    rng = np.random.default_rng(0)
    big = rng.gamma(2.0, 100.0, size=(3360, 3400)).astype(np.uint16)  # > 224**3 pixels: strided subsample
    source = open_plane_source(big, nchan=2)
    (lo, hi), zeros = plane_percentiles(source, 1.0, 99.0)
    assert zeros == (0.0, 0.0)  # the missing second network channel
    crop = big[:50, :60].astype(np.float32)
    expected = normalize_percentile(big, 1.0, 99.0, channel_axis=None)[:50, :60]
    np.testing.assert_allclose((crop - np.float32(lo)) / np.float32(hi - lo), expected, rtol=1e-6)


def test_refusals(model, tmp_path):
    image = np.zeros((64, 64), np.float32)
    with pytest.raises(InputError, match="twice the diameter"):
        segment_large(image, model, diameter=20.0, overlap=30)
    with pytest.raises(InputError, match="2D planes"):
        segment_large(np.zeros((3, 64, 64), np.float32), model, axes="ZYX", diameter=20.0)
    with pytest.raises(InputError, match="augmentation"):
        segment_large(image, model, augment=True)
    with pytest.raises(InputError, match="one model for the whole image"):
        segment_large(image, "auto", diameter=20.0)
    (tmp_path / "x.ome.zarr").mkdir()
    with pytest.raises(InputError, match="exists"):
        segment_large(image, model, out=tmp_path / "x.ome.zarr")
    with pytest.raises(InputError, match="must end in"):
        segment_large(image, model, out=tmp_path / "x.png")

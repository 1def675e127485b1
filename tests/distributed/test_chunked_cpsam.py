"""segment_large with a Cellpose-SAM model (the peer-built golden network) against segment()."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cellseg_bridge.core.metrics import average_precision
from cellseg_bridge.distributed.chunked import segment_large

DATA = Path(__file__).parents[1] / "data"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    from cellseg_bridge.segmentation.pipeline import load_model

    return load_model(DATA / "peer4_golden_cpsam_small.pth", "cpu")


@pytest.fixture(scope="module")
def image(shared_data) -> np.ndarray:
    """The golden case rgb_360: a 360 x 360 dsb2018 image as 3 channels (C, Y, X)."""
    import imageio.v3 as iio

    image_id = json.loads((DATA / "peer4_golden_cpsam.json").read_text())["cases"]["rgb_360"]["image_id"]
    rgb = iio.imread(shared_data / "dsb2018" / "stage1_train" / image_id / "images" / f"{image_id}.png")
    return np.ascontiguousarray(rgb[..., :3].transpose(2, 0, 1), np.float32)


def test_chunks_equal_the_whole_image(model, image):
    from cellseg_bridge.segmentation.pipeline import segment

    whole = segment(image, model, axes="CYX", flow_threshold=0.8).labels[0, 0]
    assert whole.max() > 20
    one = segment_large(image, model, axes="CYX", chunk_size=400, flow_threshold=0.8)
    assert one.n_chunks == 1
    np.testing.assert_array_equal(one.labels, whole)
    four = segment_large(image, model, axes="CYX", chunk_size=180, flow_threshold=0.8)
    assert four.n_chunks == 4 and four.diameter == 30.0
    ap = average_precision(whole.astype(np.int64), four.labels.astype(np.int64), 0.5)[0][0]
    print(f"4 chunks vs whole image: {int(four.labels.max())} vs {int(whole.max())} masks, AP@0.5 {ap:.4f}")
    assert ap >= 0.98

"""The automatic diameter does not depend on the user's cellprob / flow thresholds (issue 18 defect 9).

Cellpose's SizeModel estimates the diameter with its default thresholds; the thresholds
change the final masks only. Otherwise a lower cellprob threshold grows the estimation
masks, hence the diameter, and gives fewer, larger cells: the opposite of what it is for.
"""

from __future__ import annotations

import pytest

from cellseg_bridge.io.reader import open_image
from cellseg_bridge.segmentation.pipeline import load_model, segment
from tests.conftest import REPO


def test_cellprob_threshold_does_not_move_the_automatic_diameter(one_torch_thread):
    model = load_model("nuclei", device="cpu")
    if model.size_model is None:
        pytest.skip("the bundled nuclei model has no size model")
    image = open_image(REPO / "sample_data" / "nuclei_00.ome.tif")
    default = segment(image, model, diameter=None)
    lower = segment(image, model, diameter=None, cellprob_threshold=-4.0, flow_threshold=0.0)
    assert lower.diameter == pytest.approx(default.diameter)
    fg_default, fg_lower = (default.labels > 0).sum(), (lower.labels > 0).sum()
    assert fg_lower >= fg_default  # a lower threshold: more foreground at the same scale

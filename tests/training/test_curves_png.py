"""curves.png: one panel (loss) without a validation set, two with one (issue 18 defect 8)."""

from __future__ import annotations

import imageio.v3 as iio
import pytest

from cellseg_bridge.training.state import write_curves

pytest.importorskip("matplotlib")


def test_no_empty_validation_panel(tmp_path):
    loss_only = [{"epoch": e, "loss": 1.0 / e, "ap50": None, "ap75": None, "ap90": None} for e in (1, 2, 3)]
    write_curves(loss_only, tmp_path / "a")
    validated = [dict(r, ap50=0.5, ap75=0.3, ap90=0.1) for r in loss_only]
    write_curves(validated, tmp_path / "b")
    one, two = iio.imread(tmp_path / "a" / "curves.png"), iio.imread(tmp_path / "b" / "curves.png")
    assert one.shape[0] == two.shape[0] and two.shape[1] == 2 * one.shape[1]  # the AP panel only with AP

"""``benchmarks/eval_cells.py``: scores every test group, and a rerun reuses unchanged models' scores."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import eval_cells  # the repository root is on pytest's pythonpath
from cellseg_bridge.nn import save_checkpoint
from cellseg_bridge.nn.net import CellposeUNet


@pytest.fixture
def tiny(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "tiny.pth"
    save_checkpoint(CellposeUNet(nbase=[2, 8, 16], nout=3, diam_mean=30.0), path)
    return path


@pytest.mark.slow
def test_scores_every_group_and_a_rerun_reuses_them(shared_data, tiny, tmp_path, monkeypatch, capsys):
    out = tmp_path / "scores.json"
    args = ["--model", str(tiny), "--max-per-group", "1", "--true-diameter", "--out", str(out)]
    assert eval_cells.main(args) == 0
    first = json.loads(out.read_text())
    per_image = first["results"][str(tiny)]
    assert len(per_image) == len(eval_cells.GROUPS)  # one test image per group
    assert all(len(v["ap"]) == 3 and 0 <= min(v["ap"]) <= max(v["ap"]) <= 1 for v in per_image.values())
    assert first["table"].count("\n") == 2 and str(tiny) in first["table"]

    def no_segmentation(*a, **k):
        raise AssertionError("an unchanged model was segmented again")

    monkeypatch.setattr(eval_cells, "score_image", no_segmentation)
    assert eval_cells.main(args) == 0
    assert json.loads(out.read_text())["results"] == first["results"]

    save_checkpoint(CellposeUNet(nbase=[2, 8, 16], nout=3, diam_mean=30.0), tiny)  # new weights: scored again
    with pytest.raises(AssertionError, match="segmented again"):
        eval_cells.main(args)

"""Cellpose's flag names work as aliases of ours (issue 18, "also expected")."""

from __future__ import annotations

from click.testing import CliRunner

from cellseg_bridge.cli import main
from tests.batch.test_segment import engine, inputs  # noqa: F401  (fixtures)


def test_cellpose_style_flags(inputs, tmp_path, engine):  # noqa: F811
    out = tmp_path / "out"
    args = ["segment", "--dir", str(inputs), "--savedir", str(out), "--flow_threshold", "0.7",
            "--cellprob_threshold", "-2", "--min_size", "3", "--stitch_threshold", "0.25", "--pretrained_model", "cells"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output  # the folder's broken.tif fails; the others are segmented
    call = engine.calls[-1]
    assert (call["flow_threshold"], call["cellprob_threshold"], call["min_size"], call["stitch_threshold"]) == \
        (0.7, -2.0, 3, 0.25)
    assert engine.loads[-1][0] == "cells"
    assert (out / "a_labels.ome.tif").is_file() and (out / "stack_labels.ome.tif").is_file()

"""Outputs that cannot be written: a read-only folder and a full disk give one clear line, exit 1, no traceback.

A read-only folder is real (chmod) for a normal user; root ignores permissions, so as
root the file system calls that create files and folders inside it fail with EACCES
instead (monkeypatched). A full disk is a mocked ENOSPC of the write call (torch's
``inline_container`` failure, numpy's short write); a real 2 MB tmpfs gave the same line.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from click.testing import CliRunner

from cellseg_bridge.cli import main
from cellseg_bridge.datasets.synthetic import NucleiSpec, synthetic_nuclei
from cellseg_bridge.io.roi_export import labels_to_rois, write_roi_zip

TINY_TRAIN = ["--epochs", "2", "--nbase", "2,4,8", "--crop-size", "32", "--batch-size", "2",
              "--images-per-epoch", "2", "--diam-mean", "10", "--val-every", "0", "--no-fit-size-model"]


@pytest.fixture
def data(tmp_path):
    """Two images with masks (``data/``) and a RoiSet of the first."""
    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(2):
        image, labels = synthetic_nuclei(NucleiSpec(shape=(48, 48), n_nuclei=5, diameter=12.0), seed=i)
        tifffile.imwrite(folder / f"img{i}.tif", image)
        tifffile.imwrite(folder / f"img{i}_masks.tif", labels)
    write_roi_zip(labels_to_rois(tifffile.imread(folder / "img0_masks.tif")), tmp_path / "rois.zip")
    return folder


@pytest.fixture
def readonly(tmp_path, monkeypatch):
    """A folder nothing can be written into: chmod 555, or (as root) EACCES from every create inside it."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
        yield folder
        folder.chmod(stat.S_IRWXU)
        return
    inside = folder.resolve()

    def guard(real, where):
        def call(*args, **kwargs):
            target = where(args, kwargs)
            if target is not None and Path(os.fsdecode(target)).resolve().is_relative_to(inside):
                raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(target))
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(tempfile, "mkstemp", guard(tempfile.mkstemp, lambda a, k: k.get("dir")))
    monkeypatch.setattr(tempfile, "mkdtemp", guard(tempfile.mkdtemp, lambda a, k: k.get("dir")))
    monkeypatch.setattr(os, "mkdir", guard(os.mkdir, lambda a, k: a[0] if a else k.get("path")))
    yield folder


def _one_clear_line(result, path, words):
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert str(path) in lines[0] and words in lines[0], lines[0]


def test_read_only_output_folder(tmp_path, data, readonly, tiny_model, tiny_seg_path, tiny_restore_path):
    runner = CliRunner()
    cases = {
        "rois to-zip": (["rois", "to-zip", str(data / "img0_masks.tif"), "--out", str(readonly / "r.zip")], readonly),
        "rois to-labels": (["rois", "to-labels", str(tmp_path / "rois.zip"), "--like", str(data / "img0.tif"),
                            "--out", str(readonly / "l.ome.tif")], readonly),
        "train": (["train", str(data), "--out", str(readonly / "m"), *TINY_TRAIN], readonly / "m"),
        "hitl init": (["hitl", "init", str(readonly / "p"), str(data / "img0.tif"), "--model", str(tiny_model)],
                      readonly / "p"),
        "segment": (["segment", str(data), "--out", str(readonly / "s"), "--model", str(tiny_seg_path),
                     "--diameter", "12"], readonly / "s"),
        "restore": (["restore", str(data), "--out", str(readonly / "s"), "--model", str(tiny_restore_path)],
                    readonly / "s"),
        "convert": (["convert", str(data), "--out", str(readonly / "c")], readonly / "c"),
    }
    for name, (args, path) in cases.items():
        result = runner.invoke(main, ["-q", *args])
        _one_clear_line(result, path, "cannot write: the folder is not writable")
        assert list(readonly.iterdir()) == [], name  # nothing written, nothing half-written


@pytest.mark.parametrize("how", ["torch.save", "np.save"])
def test_full_disk_during_train(tmp_path, data, monkeypatch, how):
    if how == "torch.save":
        def full(obj, f, *args, **kwargs):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4416 vs 4310")

        monkeypatch.setattr(torch, "save", full)
        path = tmp_path / "m" / "checkpoint" / "state.pt"
    else:
        def full(file, arr, *args, **kwargs):
            raise OSError("131072 requested and 73696 written")

        monkeypatch.setattr(np, "save", full)
        path = None  # a flow cache file: its name is a digest
    result = CliRunner().invoke(main, ["-q", "train", str(data), "--out", str(tmp_path / "m"), *TINY_TRAIN])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "cannot write: the disk is full" in lines[0], result.output
    assert str(path if path is not None else tmp_path / "m" / "flow_cache") in lines[0]

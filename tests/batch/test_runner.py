"""The generic batch runner: input expansion, resume, error boundary, report."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cellseg_bridge.batch.runner import BatchReport, WorkItem, expand_inputs, is_hidden_or_temp, run_batch
from cellseg_bridge.errors import InputError
from cellseg_bridge.io.atomic import atomic_output


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for name in ["a.tif", "b.czi", "notes.txt", ".hidden.tif", "c.tif~", "d.tif.part", "~$e.tif", "Thumbs.db"]:
        (src / name).write_text(name)
    (src / "sub" / "f.tif").write_text("f")
    return src


def test_hidden_and_temp_names():
    assert is_hidden_or_temp(Path(".x.tif")) and is_hidden_or_temp(Path("x.tif~"))
    assert is_hidden_or_temp(Path("x.crdownload")) and is_hidden_or_temp(Path(".DS_Store"))
    assert not is_hidden_or_temp(Path("x.ome.tif"))


def test_expand_folder_non_recursive_and_recursive(tree):
    files, problems = expand_inputs([tree], suffixes=(".tif", ".czi"))
    assert [p.name for p in files] == ["a.tif", "b.czi"] and problems == []
    files, _ = expand_inputs([tree], recursive=True, suffixes=(".tif", ".czi"))
    assert [p.name for p in files] == ["a.tif", "b.czi", "f.tif"]
    files, _ = expand_inputs([tree])  # no suffix filter: everything not hidden/temp
    assert [p.name for p in files] == ["a.tif", "b.czi", "notes.txt"]


def test_expand_globs_explicit_files_missing_and_duplicates(tree):
    files, problems = expand_inputs(
        [str(tree / "*.tif"), tree / "a.tif", tree / ".hidden.tif", str(tree / "*.nd2"), tree / "nope.czi"],
        suffixes=(".tif",),
    )
    # glob skips hidden/temp; an explicitly named hidden file is taken; a.tif only once
    assert [p.name for p in files] == ["a.tif", ".hidden.tif"]
    assert problems == [(str(tree / "*.nd2"), "pattern matched no input files"),
                        (str(tree / "nope.czi"), "no such file or folder")]
    files, _ = expand_inputs([str(tree / "**" / "*.tif")], recursive=True, suffixes=(".tif",))
    assert sorted(p.name for p in files) == ["a.tif", "f.tif"]


def test_expand_excludes_output_folder(tree):
    out = tree / "out"
    out.mkdir()
    (out / "a.ome.tif").write_text("x")
    files, _ = expand_inputs([tree], recursive=True, suffixes=(".tif",), exclude=[out])
    assert "a.ome.tif" not in [p.name for p in files]


def _plan_for(out_dir: Path):
    def plan(source: Path) -> list[WorkItem]:
        if source.name == "b.czi":
            raise InputError("unreadable vendor file", source)
        if source.name == "a.tif":  # two "scenes"
            return [WorkItem(source, (out_dir / f"a_s{i}.out",), key=i, label=f"{source} [scene {i}]") for i in (0, 1)]
        return [WorkItem(source, (out_dir / f"{source.stem}.out",))]

    return plan


def _job(item: WorkItem) -> None:
    if item.key == 1:
        raise ValueError("scene 1 is broken")
    with atomic_output(item.outputs[0]) as tmp:
        tmp.write_text(item.source.read_text())


def test_run_batch_errors_are_reported_and_others_go_on(tree, tmp_path, caplog):
    out = tmp_path / "out"
    with caplog.at_level(logging.ERROR, logger="cellseg_bridge"):
        report = run_batch([tree, tree / "missing.tif"], _plan_for(out), _job, recursive=True,
                           suffixes=(".tif", ".czi"), quiet=True)
    assert [p.name for p in report.done] == ["a_s0.out", "f.out"]
    assert report.skipped == []
    reasons = dict(report.failed)
    assert reasons[str(tree / "b.czi")].endswith("unreadable vendor file")
    assert reasons[f"{tree / 'a.tif'} [scene 1]"] == "ValueError: scene 1 is broken"
    assert reasons[str(tree / "missing.tif")] == "no such file or folder"
    assert not report.ok
    assert f"{tree / 'b.czi'}: " in caplog.text  # logged as "path: reason"
    text = report.summary("converted")
    assert text.splitlines()[0] == "2 converted, 0 skipped (already done), 3 failed"
    assert "FAILED" in text and "scene 1 is broken" in text
    assert sorted(p.name for p in out.iterdir()) == ["a_s0.out", "f.out"]  # no partial output


def test_run_batch_resume_and_overwrite(tree, tmp_path):
    out = tmp_path / "out"
    inputs = [tree / "sub" / "f.tif"]
    first = run_batch(inputs, _plan_for(out), _job, quiet=True)
    assert first.ok and len(first.done) == 1
    mtime = (out / "f.out").stat().st_mtime_ns
    calls = []
    again = run_batch(inputs, _plan_for(out), lambda item: calls.append(item), quiet=True)
    assert again.skipped == [out / "f.out"] and again.done == [] and calls == []
    assert (out / "f.out").stat().st_mtime_ns == mtime
    forced = run_batch(inputs, _plan_for(out), _job, overwrite=True, quiet=True)
    assert forced.done == [out / "f.out"]


def test_job_that_writes_nothing_fails(tree, tmp_path):
    report = run_batch([tree / "sub" / "f.tif"], _plan_for(tmp_path), lambda item: None, quiet=True)
    assert report.failed and "without writing" in report.failed[0][1]


def test_two_inputs_with_the_same_output_are_not_both_written(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    for folder in ("x", "y"):
        (tmp_path / folder / "same.tif").write_text(folder)
    out = tmp_path / "out"
    report = run_batch([tmp_path / "x" / "same.tif", tmp_path / "y" / "same.tif"], _plan_for(out), _job, quiet=True)
    assert len(report.done) == 1 and len(report.failed) == 1
    assert "also the output of" in report.failed[0][1]
    assert (out / "same.out").read_text() == "x"


def test_keyboard_interrupt_propagates(tree, tmp_path):
    def job(item):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch([tree / "sub" / "f.tif"], _plan_for(tmp_path), job, quiet=True)


def test_empty_report_summary():
    assert BatchReport().summary() == "0 written, 0 skipped (already done), 0 failed"
    assert BatchReport().ok


def test_output_folder_equal_to_input_folder_hides_nothing(tree):
    files, _ = expand_inputs([tree], suffixes=(".tif",), exclude=[tree])
    assert [p.name for p in files] == ["a.tif"]
    files, _ = expand_inputs([str(tree / "*.tif")], suffixes=(".tif",), exclude=[tree])
    assert [p.name for p in files] == ["a.tif"]
    files, _ = expand_inputs([str(tree / "**" / "*.tif")], recursive=True, suffixes=(".tif",), exclude=[tree / "sub"])
    assert [p.name for p in files] == ["a.tif"]


def test_empty_folder_is_a_problem(tmp_path):
    (tmp_path / "empty").mkdir()
    files, problems = expand_inputs([tmp_path / "empty"], suffixes=(".tif",))
    assert files == [] and problems == [(str(tmp_path / "empty"), "folder holds no input files (try --recursive)")]


def test_our_outputs_are_never_inputs_of_folders(tmp_path):
    """`segment . --out .` run twice does not segment its own labels, flows or overlays (issue 19 item 7)."""
    from cellseg_bridge.batch.naming import segment_output_endings

    for name in ("img.tif", "img_labels.ome.tif", "img_flows.ome.tif", "img_overlay.png", "IMG_LABELS.OME.TIF",
                 "img_RoiSet.zip", "img_cells.csv"):
        (tmp_path / name).write_bytes(b"x")
    files, _ = expand_inputs([tmp_path], skip_endings=segment_output_endings())
    assert [p.name for p in files] == ["img.tif"]
    files, _ = expand_inputs([str(tmp_path / "*.tif")], skip_endings=segment_output_endings())
    assert [p.name for p in files] == ["img.tif"]
    # a file named explicitly is always taken
    files, _ = expand_inputs([tmp_path / "img_labels.ome.tif"], skip_endings=segment_output_endings())
    assert len(files) == 1


def test_interrupt_carries_the_report_so_far(tree, tmp_path):
    from cellseg_bridge.batch.report import BatchInterrupted

    calls = []

    def job(item):
        calls.append(item)
        if len(calls) == 2:
            raise KeyboardInterrupt
        item.outputs[0].write_text("ok")

    with pytest.raises(BatchInterrupted) as info:
        run_batch([tree / "sub" / "f.tif", tree / "a.tif"], _plan_for(tmp_path), job, quiet=True)
    assert isinstance(info.value, KeyboardInterrupt)
    assert info.value.report.counts() == {"done": 1, "skipped": 0, "failed": 0}


def test_unwritable_output_folder_fails_before_any_work(tree, tmp_path, monkeypatch):
    import errno
    import tempfile

    from cellseg_bridge.errors import InputError

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "out" / ".probe"))

    calls = []
    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(InputError, match="not writable") as info:
        run_batch([tree / "sub" / "f.tif"], _plan_for(tmp_path / "out"), calls.append, quiet=True)
    assert calls == [] and info.value.path == tmp_path / "out"
    # nothing to do (all outputs exist): no check, no error
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "f.out").write_text("x")
    report = run_batch([tree / "sub" / "f.tif"], _plan_for(tmp_path / "done"), calls.append, quiet=True)
    assert report.counts()["skipped"] == 1

"""The README's Python code blocks run as written (issue 18 defect 5).

Each ```python block runs, in order and in one namespace, in a temporary folder that sees
the repository's ``sample_data`` (the snippets' paths are relative to the repository).
"""

from __future__ import annotations

import os
import re

from tests.conftest import REPO

BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_readme_python_blocks_run(tmp_path, monkeypatch, one_torch_thread):
    blocks = BLOCK.findall((REPO / "README.md").read_text(encoding="utf-8"))
    assert blocks, "the README has no ```python block"
    os.symlink(REPO / "sample_data", tmp_path / "sample_data")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    assert (tmp_path / "labels.ome.tif").is_file() and (tmp_path / "RoiSet.zip").is_file()
    assert namespace["labels"].max() > 0 and namespace["result"].to_dataarray().dims == ("T", "Z", "Y", "X")

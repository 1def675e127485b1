"""The bioio and aicsimageio backends give the same DataArray for every file in ../shared/data/formats.

Runs where both backends are installed (aicsimageio is the optional extra
``cellseg-bridge[aicsimageio]``, which does not install on Python 3.13); skips
with the reason otherwise.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from cellseg_bridge.io.reader import list_scenes, open_image

SUFFIXES = (".czi", ".nd2", ".lif", ".tif", ".tiff")

needs_both = pytest.mark.skipif(
    importlib.util.find_spec("aicsimageio") is None or importlib.util.find_spec("bioio") is None,
    reason="needs both backends: pip install 'cellseg-bridge[aicsimageio]' (Python < 3.13) beside bioio",
)


def _files(formats: Path) -> list[Path]:
    return sorted(p for p in formats.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


@needs_both
def test_backends_agree_on_every_format_file(shared_data):
    files = _files(shared_data / "formats")
    assert len(files) >= 15  # CZI, ND2, LIF, OME-TIFF, ImageJ TIFF
    from cellseg_bridge.io._backends.bioio_backend import _bioio_tifffile_works

    compared = 0
    if not _bioio_tifffile_works():
        # the aicsimageio extra holds tifffile at 2023.2, where bioio-ome-tiff fails (DependencyError)
        files = [p for p in files if not p.name.lower().endswith((".ome.tif", ".ome.tiff"))]
    for path in files:
        scenes = list_scenes(path, reader="bioio")
        assert list_scenes(path, reader="aicsimageio") == scenes, path
        for index in range(len(scenes)):
            ours = open_image(path, scene=index, reader="bioio")
            theirs = open_image(path, scene=index, reader="aicsimageio")
            where = f"{path.name}[{index}]"
            assert ours.dims == theirs.dims and ours.shape == theirs.shape, where
            assert ours.dtype == theirs.dtype, where
            for key in ("channel_names", "scenes", "scene", "source"):
                assert ours.attrs[key] == theirs.attrs[key], (where, key)
            for axis in "ZYX":
                a, b = ours.attrs["physical_pixel_sizes"][axis], theirs.attrs["physical_pixel_sizes"][axis]
                assert (a is None) == (b is None), (where, axis, a, b)
                if a is not None:
                    assert a == pytest.approx(b, rel=1e-6), (where, axis)
            np.testing.assert_array_equal(ours.values, theirs.values, err_msg=where)
            assert list(ours.coords["C"].values) == list(theirs.coords["C"].values), where
            compared += 1
    assert compared >= 23  # every scene of every file (but the OME-TIFF when bioio cannot read it here)

"""Choice of the reader backend: argument, $CELLSEG_READER, default bioio, fallback to aicsimageio."""

from __future__ import annotations

import logging
import types
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cellseg_bridge.errors import InputError
from cellseg_bridge.io import _backends
from cellseg_bridge.io.reader import open_image


@pytest.fixture
def tif(tmp_path) -> Path:
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, np.arange(12 * 10, dtype=np.uint16).reshape(12, 10))
    return path


def test_resolve(monkeypatch):
    monkeypatch.delenv(_backends.ENV_VAR, raising=False)
    assert _backends.resolve(None) == ("bioio", False)
    assert _backends.resolve("aicsimageio") == ("aicsimageio", True)
    assert _backends.resolve(" BioIO ") == ("bioio", True)
    monkeypatch.setenv(_backends.ENV_VAR, "aicsimageio")
    assert _backends.resolve(None) == ("aicsimageio", True)
    assert _backends.resolve("bioio") == ("bioio", True)
    with pytest.raises(InputError, match="unknown reader 'pims'"):
        _backends.resolve("pims")


def test_default_reads_through_bioio(monkeypatch, tif):
    monkeypatch.delenv(_backends.ENV_VAR, raising=False)
    from cellseg_bridge.io._backends.bioio_backend import _bioio_tifffile_works

    image = open_image(tif)
    # with the aicsimageio extra, tifffile is too old for bioio-tifffile: tifffile reads directly
    assert image.attrs["reader"] == ("bioio-tifffile" if _bioio_tifffile_works() else "tifffile-tiles")
    np.testing.assert_array_equal(image.values[0, 0, 0], tifffile.imread(tif))


def _fake(name: str, fails: bool) -> types.ModuleType:
    module = types.ModuleType(name)

    def open_scene(path, fmt, scene, axes):
        if fails:
            raise InputError(f"{name} cannot", path)
        return name

    module.open_scene = open_scene
    module.scene_names = lambda path, fmt: [name]
    return module


def _patch(monkeypatch, bioio_fails: bool, aics_fails: bool, aics_installed: bool = True) -> None:
    fakes = {"bioio": _fake("bioio", bioio_fails), "aicsimageio": _fake("aicsimageio", aics_fails)}
    monkeypatch.setattr(_backends, "backend", fakes.__getitem__)
    monkeypatch.setattr(_backends, "installed", lambda name: aics_installed)
    monkeypatch.delenv(_backends.ENV_VAR, raising=False)


def test_fallback_to_aicsimageio_when_bioio_fails(monkeypatch, tif, caplog):
    _patch(monkeypatch, bioio_fails=True, aics_fails=False)
    with caplog.at_level(logging.WARNING, logger="cellseg_bridge"):
        assert _backends.open_scene(tif, "TIFF", None, None) == "aicsimageio"
    assert "read with aicsimageio instead" in caplog.text and str(tif) in caplog.text


def test_no_fallback_when_chosen_or_absent(monkeypatch, tif):
    _patch(monkeypatch, bioio_fails=True, aics_fails=False)
    with pytest.raises(InputError, match="bioio cannot"):
        _backends.open_scene(tif, "TIFF", None, None, reader="bioio")  # chosen: no fallback
    monkeypatch.setenv(_backends.ENV_VAR, "bioio")
    with pytest.raises(InputError, match="bioio cannot"):
        _backends.open_scene(tif, "TIFF", None, None)
    _patch(monkeypatch, bioio_fails=True, aics_fails=False, aics_installed=False)
    with pytest.raises(InputError, match="bioio cannot"):
        _backends.open_scene(tif, "TIFF", None, None)


def test_both_fail_raises_the_bioio_error(monkeypatch, tif):
    _patch(monkeypatch, bioio_fails=True, aics_fails=True)
    with pytest.raises(InputError, match="bioio cannot") as info:
        _backends.open_scene(tif, "TIFF", None, None)
    assert info.value.path == tif


def test_versions_lists_plugins():
    versions = _backends.versions()
    assert set(versions) == {"bioio", "aicsimageio"}
    assert versions["bioio"]["bioio"] and versions["bioio"]["bioio-czi"] and versions["bioio"]["bioio-ome-zarr"]

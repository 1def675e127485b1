"""aicsimageio route of :mod:`cellseg_bridge.io.reader`: CZI, ND2, PNG/JPEG, ordinary LIF, OME-TIFF metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cellseg_bridge.errors import DependencyError
from cellseg_bridge.io.route_common import _Image, _resolve_scene, _third_party_boundary


def _reader_class(fmt: str, ome: bool = False) -> type:
    """Return the aicsimageio reader class for a format (import errors -> DependencyError)."""
    try:
        if fmt == "CZI":
            from aicsimageio.readers.czi_reader import CziReader as reader
        elif fmt == "ND2":
            from aicsimageio.readers.nd2_reader import ND2Reader as reader
        elif fmt == "LIF":
            from aicsimageio.readers.lif_reader import LifReader as reader
        elif fmt == "TIFF" and ome:
            from aicsimageio.readers.ome_tiff_reader import OmeTiffReader as reader
        else:
            from aicsimageio.readers.default_reader import DefaultReader as reader
    except ImportError as exc:
        package = {"CZI": "aicspylibczi", "ND2": "nd2", "LIF": "readlif"}.get(fmt, "aicsimageio")
        raise DependencyError(f"reading {fmt} files needs the package {package!r}: {exc}") from exc
    return reader


def _aics_image(path: Path, fmt: str, ome: bool = False):
    """Return ``AICSImage(path, reader=...)`` with a fixed reader, errors as InputError."""
    reader = _reader_class(fmt, ome)
    from aicsimageio import AICSImage

    # CziReader names its colour-sample axis "A" internally but compares it with
    # chunk_dims using "S", so with the default chunk dims every lazily read
    # sample of an RGB CZI holds sample 0. Naming "A" keeps the samples in one
    # chunk and reads them correctly (checked against aicspylibczi in the tests).
    kwargs = {"chunk_dims": ["Z", "Y", "X", "A"]} if fmt == "CZI" else {}
    what = "OME-TIFF" if ome else fmt
    with _third_party_boundary(path, what):
        return AICSImage(path, reader=reader, **kwargs)


def _aics_scenes(img: Any, path: Path, what: str) -> list[str]:
    with _third_party_boundary(path, what):
        return [str(s) for s in img.scenes]


def _open_aics(path: Path, fmt: str, scene: int | str | None, ome: bool = False) -> _Image:
    """Open CZI, ND2, PNG/JPEG, ordinary LIF (and OME-TIFF metadata) with aicsimageio."""
    img = _aics_image(path, fmt, ome)
    what = "OME-TIFF" if ome else fmt
    scenes = _aics_scenes(img, path, what)
    index = _resolve_scene(scenes, scene, path)
    with _third_party_boundary(path, what):
        img.set_scene(index)
        xdata = img.xarray_dask_data
        sizes = img.physical_pixel_sizes
        names = [str(n) for n in img.channel_names]
        reader_name = type(img.reader).__name__
    dims = "".join(str(d) for d in xdata.dims)
    bgr = fmt == "CZI" and "S" in dims and _czi_is_bgr(path)
    return _Image(
        data=xdata.data,
        dims=dims,
        channel_names=names,
        sizes={"Z": sizes.Z, "Y": sizes.Y, "X": sizes.X},
        scenes=scenes,
        scene_index=index,
        reader=reader_name,
        samples_bgr=bgr,
    )


def _czi_is_bgr(path: Path) -> bool:
    """Whether a CZI stores colour as B, G, R (libCZI pixel types ``Bgr24``, ``Bgr48``, ...)."""
    from aicspylibczi import CziFile

    with _third_party_boundary(path, "CZI"):
        pixel_type = str(CziFile(path).pixel_type)
    return pixel_type.lower().startswith("bgr")

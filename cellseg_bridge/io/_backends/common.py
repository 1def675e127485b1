"""Pieces every reader backend of :mod:`cellseg_bridge.io.reader` uses.

The record a backend returns (:class:`_Image`), scene lookup, the refusal of an
``axes`` argument for formats that record their axes, and the single place
where exceptions of third-party readers become :class:`InputError`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from cellseg_bridge.errors import DependencyError, InputError

#: Axis letters a backend's array may carry (``S``: colour samples).
_AXIS_LETTERS = "TCZYXS"

ScaleDict = dict[str, "float | None"]


@dataclass
class _Image:
    """What a backend hands to :func:`cellseg_bridge.io.reader._to_dataarray`."""

    data: da.Array
    #: Letters of ``data``'s axes, a subset of ``TCZYXS`` with Y and X.
    dims: str
    #: One name per channel before samples are merged (None: placeholders).
    channel_names: list[str] | None
    sizes: ScaleDict
    scenes: list[str]
    scene_index: int
    reader: str
    #: Reverse the S axis (CZI stores colour as B, G, R).
    samples_bgr: bool = False


def _resolve_scene(scenes: Sequence[str], scene: int | str | None, path: Path) -> int:
    """Return the index of ``scene`` (None: 0) in ``scenes``, or raise InputError."""
    listing = ", ".join(f"{i}: {name!r}" for i, name in enumerate(scenes))
    if scene is None:
        return 0
    if isinstance(scene, (int, np.integer)) and not isinstance(scene, bool):
        if 0 <= int(scene) < len(scenes):
            return int(scene)
        raise InputError(f"scene index {scene} out of range; scenes: {listing}", path)
    if isinstance(scene, str):
        if scene in scenes:
            return list(scenes).index(scene)
        raise InputError(f"no scene named {scene!r}; scenes: {listing}", path)
    raise InputError(f"scene must be an index or a name, not {type(scene).__name__}", path)


def _refuse_axes(axes: str | None, fmt: str, path: Path) -> None:
    if axes is not None:
        raise InputError(
            f"axes={axes!r} was given, but {fmt} files record their own axis order; "
            "axes can only be stated for TIFF files without OME metadata",
            path,
        )


@contextlib.contextmanager
def _third_party_boundary(path: Path, what: str) -> Iterator[None]:
    """Turn any exception from a third-party reader into InputError.

    bioio, aicsimageio and the vendor libraries below them raise whatever their parsers
    hit on a damaged file (RuntimeError from libCZI, ValueError from nd2,
    KeyError/struct.error from XML and binary parsing, ...), so there is no
    closed list of types to catch. This is the single place where ``Exception``
    is caught; the original is chained (``from exc``) for debugging, and our own
    errors pass through unchanged.
    """
    try:
        with warnings.catch_warnings():
            # bioio/aicsimageio/xarray deprecation chatter is not actionable for users.
            warnings.simplefilter("ignore", category=FutureWarning)
            warnings.simplefilter("ignore", category=DeprecationWarning)
            yield
    except (InputError, DependencyError):
        raise
    except Exception as exc:  # noqa: BLE001 - see docstring
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"cannot be read as {what}: damaged, or not a {what} file ({type(exc).__name__}: {reason})", path
        ) from exc


def _czi_is_bgr(path: Path) -> bool:
    """Whether a CZI stores colour as B, G, R (libCZI pixel types ``Bgr24``, ``Bgr48``, ...).

    Both backends' CZI readers hand the samples over in stored order.
    """
    from aicspylibczi import CziFile

    with _third_party_boundary(path, "CZI"):
        pixel_type = str(CziFile(path).pixel_type)
    return pixel_type.lower().startswith("bgr")


def _scene_list(img: Any, path: Path, what: str) -> list[str]:
    """Scene names of an opened ``BioImage`` / ``AICSImage`` (third-party errors as InputError)."""
    with _third_party_boundary(path, what):
        return [str(s) for s in img.scenes]


def _image_scene(img: Any, path: Path, what: str, fmt: str, scene: int | str | None,
                 reader: str | None = None) -> _Image:
    """One scene of an opened ``BioImage`` / ``AICSImage`` (both have the same model of an image).

    ``reader`` names what read the pixels (default: the class of ``img.reader``);
    ``fmt`` is the format as named by the reader's suffix table (a CZI's colour
    samples may be stored BGR).
    """
    scenes = _scene_list(img, path, what)
    index = _resolve_scene(scenes, scene, path)
    with _third_party_boundary(path, what):
        img.set_scene(index)
        xdata = img.xarray_dask_data
        sizes = img.physical_pixel_sizes
        names = [str(n) for n in img.channel_names]
        reader = reader or type(img.reader).__name__
    dims = "".join(str(d) for d in xdata.dims)
    return _Image(
        data=xdata.data,
        dims=dims,
        channel_names=names,
        sizes={"Z": sizes.Z, "Y": sizes.Y, "X": sizes.X},
        scenes=scenes,
        scene_index=index,
        reader=reader,
        samples_bgr=fmt == "CZI" and "S" in dims and _czi_is_bgr(path),
    )


"""Per-scene output naming shared by the batch commands (``convert``, ``segment``, ...).

Every batch command writes its outputs for one scene of one input file under a
common *base name*, followed by a command-specific suffix:

- a file with one scene: ``<stem>``;
- a file with several scenes: ``<stem>_s<index>_<scene>`` for each scene,
  ``<index>`` the 0-based scene index zero-padded to the width of the largest
  index (``s0``..``s9``, ``s00``..``s11``), ``<scene>`` the scene name with every
  run of characters other than ``A-Z a-z 0-9 . _ -`` replaced by ``_`` (at
  most 60 characters; left out when empty). The same names are used when one
  scene of a multi-scene file is selected, so they do not depend on the selection.

``<stem>`` is the input's name without its extension (``.ome.tif``/``.ome.tiff``
count as one extension). Examples: ``convert`` writes ``<base>.ome.tif``;
``segment`` writes ``<base>_labels.ome.tif``, ``<base>_RoiSet.zip``, ...

The reader is imported inside the functions (not at module level), so that
tests can stand in a fake reader.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from cellseg_bridge.batch.items import WorkItem
from cellseg_bridge.errors import InputError
from cellseg_bridge.io.paths import same_file

log = logging.getLogger(__name__)

_MAX_SCENE_CHARS = 60

#: ``segment``'s output suffix of every kind of output, appended to the scene's base name.
SEGMENT_SUFFIXES = {
    "labels": "_labels.ome.tif",
    "rois": "_RoiSet.zip",
    "csv": "_cells.csv",
    "overlay": "_overlay.png",
    "seg_npy": "_seg.npy",
    "flows": "_flows.ome.tif",
    "geojson": "_cells.geojson",
    "tracks": "_tracks.csv",
    "ome_zarr": ".ome.zarr",
    "ome_zarr_v05": ".ome.zarr",
}
#: ``segment``'s outputs of a plane segmented in chunks.
LARGE_SEGMENT_SUFFIXES = {"ome_zarr": ".ome.zarr", "labels": "_labels.ome.tif"}
#: Endings of outputs that are also ordinary inputs (an OME-Zarr of the image and its labels): not skipped.
_INPUT_LIKE_ENDINGS = (".ome.zarr",)


def segment_output_endings() -> tuple[str, ...]:
    """Name endings of every output ``segment`` writes: files so named are never inputs of folders or patterns.

    So ``cellseg segment . --out .`` does not segment its own labels, flows or
    overlays when it runs again (a file named explicitly is still taken).
    """
    endings = [*SEGMENT_SUFFIXES.values(), *LARGE_SEGMENT_SUFFIXES.values()]
    return tuple(e for e in dict.fromkeys(endings) if e not in _INPUT_LIKE_ENDINGS)


def file_stem(path: Path) -> str:
    """Return the name without its extension; ``.ome.tif(f)`` counts as one extension."""
    name = path.name
    lower = name.lower()
    for suffix in (".ome.tiff", ".ome.tif", ".ome.btf"):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def sanitise(text: str, limit: int = _MAX_SCENE_CHARS) -> str:
    """Replace runs of characters other than ``A-Za-z0-9._-`` by ``_``; trim ``._-`` at the ends."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")[:limit].rstrip("._-")


def scene_stem(stem: str, index: int, scene_name: str, n_scenes: int) -> str:
    """Return the base name of one scene's outputs (see the module docstring).

    Parameters
    ----------
    stem : str
        The input's :func:`file_stem`.
    index : int
        0-based scene index.
    scene_name : str
        The scene's name.
    n_scenes : int
        Number of scenes in the file.
    """
    if n_scenes == 1:
        return stem
    width = len(str(n_scenes - 1))
    clean = sanitise(scene_name)
    tail = f"_{clean}" if clean else ""
    return f"{stem}_s{index:0{width}d}{tail}"


def select_scene(scenes: Sequence[str], scene: int | str, source: Path | None = None) -> int:
    """Return the index of ``scene`` (a name, an index, or a string of digits) in ``scenes``.

    Raises
    ------
    InputError
        No such scene.
    """
    if isinstance(scene, str) and scene in scenes:
        return list(scenes).index(scene)
    try:
        index = int(scene)
    except (TypeError, ValueError):
        raise InputError(f"no scene named {scene!r} (scenes: {', '.join(scenes)})", source) from None
    if not 0 <= index < len(scenes):
        raise InputError(f"scene index {index} out of range (file has {len(scenes)} scenes)", source)
    return index


def plan_scene_items(
    source: Path,
    out_dir: Path,
    suffixes: Sequence[str],
    *,
    scene: int | str | None = None,
    kinds: Sequence[str] = (),
) -> list[WorkItem]:
    """Return one work item per scene of ``source``, with outputs ``out_dir / (base + suffix)``.

    Parameters
    ----------
    source : Path
        Input file (its scenes are listed, nothing else is read).
    out_dir : Path
        Output folder.
    suffixes : sequence of str
        One output per suffix, in this order (e.g. ``(".ome.tif",)``).
    scene : int or str, optional
        Only this scene (index or name); default every scene.
    kinds : sequence of str
        The kind of each output (the keys of the report's ``outputs``).

    Returns
    -------
    list of WorkItem
        ``key`` is the scene index; ``label`` is the source path, with
        ``[scene <index> '<name>']`` appended for multi-scene files.

    Raises
    ------
    InputError
        The file cannot be read, the scene does not exist, or an output would
        replace the input.
    """
    from cellseg_bridge.io.reader import list_scenes

    return scene_items(source, list_scenes(source), out_dir, suffixes, scene=scene, kinds=kinds)


def scene_items(
    source: Path,
    scenes: Sequence[str],
    out_dir: Path,
    suffixes: Sequence[str],
    *,
    scene: int | str | None = None,
    kinds: Sequence[str] = (),
) -> list[WorkItem]:
    """:func:`plan_scene_items` for a file whose scene names are known already."""
    scenes = [str(s) for s in scenes]
    if not scenes:
        raise InputError("no image (scene) in this file", source)
    indices = range(len(scenes)) if scene is None else [select_scene(scenes, scene, source)]
    stem = file_stem(source)
    items = []
    for index in indices:
        base = scene_stem(stem, index, scenes[index], len(scenes))
        outputs = tuple(out_dir / f"{base}{suffix}" for suffix in suffixes)
        for out in outputs:
            if same_file(out, source):
                raise InputError(f"output {out} would replace the input; choose another --out folder", source)
        label = str(source) if len(scenes) == 1 else f"{source} [scene {index} {scenes[index]!r}]"
        items.append(WorkItem(source=source, outputs=outputs, key=index, label=label, kinds=tuple(kinds),
                              scene_name=scenes[index]))
    return items


def axes_for(source: Path, axes: str | None) -> str | None:
    """Return ``axes`` for plain TIFFs only: formats that record their axes (CZI, ND2, LIF, OME-TIFF) ignore it.

    So one ``--axes`` value can be given for a folder of mixed formats.
    """
    if axes is None:
        return None
    from cellseg_bridge.io.reader import SUPPORTED_SUFFIXES

    if SUPPORTED_SUFFIXES.get(source.suffix.lower()) != "TIFF":
        log.debug("%s: --axes ignored (the format records its axes)", source)
        return None
    import tifffile

    try:
        with tifffile.TiffFile(source) as tif:
            is_ome = tif.is_ome
    except (OSError, ValueError, tifffile.TiffFileError):
        return axes  # let the reader report what is wrong with the file
    if is_ome:
        log.debug("%s: --axes ignored (OME-TIFF records its axes)", source)
        return None
    return axes


def scene_is_2d(source: Path, index: int, axes: str | None) -> bool:
    """Whether a scene has one time point and one plane (opened lazily; no pixels are read)."""
    image = open_scene(source, index, axes)
    return image.sizes["T"] == 1 and image.sizes["Z"] == 1


def open_scene(source: Path, index: int, axes: str | None):
    """Open scene ``index`` of ``source`` lazily as a TCZYX DataArray.

    ``axes`` applies to plain TIFFs only (:func:`~cellseg_bridge.batch.naming.axes_for`);
    see :func:`~cellseg_bridge.io.reader.open_image`.
    """
    from cellseg_bridge.io.reader import open_image

    return open_image(source, scene=index, axes=axes_for(source, axes))

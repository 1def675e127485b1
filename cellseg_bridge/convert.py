"""Convert vendor microscope files (CZI, ND2, LIF, TIFF, ...) to OME-TIFF, one file per scene.

Naming rule (``out_dir`` / name):

- a file with one scene: ``<stem>.ome.tif``;
- a file with several scenes: ``<stem>_s<index>_<scene>.ome.tif`` for each
  scene, ``<index>`` the 0-based scene index zero-padded to the width of the
  largest index (``s0``..``s9``, ``s00``..``s11``), ``<scene>`` the scene name
  with every run of characters other than ``A-Z a-z 0-9 . _ -`` replaced by
  ``_`` (at most 60 characters; left out when empty). The same names are used
  when ``scene`` selects one scene of a multi-scene file, so they do not
  depend on the selection.

``<stem>`` is the input's name without its extension (``.ome.tif``/``.ome.tiff``
count as one extension). Two inputs that map to the same output in one run
(``a/x.czi`` and ``b/x.nd2``) are not both converted: the second is reported
as failed. Inputs are only read; an output that would replace its own input
is refused.

Pixel sizes (µm), channel names and the scene name are written to the
OME-XML. Outputs are written atomically and existing outputs are skipped
unless ``overwrite``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from cellseg_bridge.batch import BatchReport, WorkItem, run_batch
from cellseg_bridge.config import DEFAULTS
from cellseg_bridge.errors import InputError

log = logging.getLogger(__name__)

OUTPUT_SUFFIX = ".ome.tif"
_MAX_SCENE_CHARS = 60


def convert(
    inputs: Iterable[str | Path] | str | Path,
    out_dir: str | Path,
    *,
    overwrite: bool = DEFAULTS.convert.overwrite,
    scene: int | str | None = DEFAULTS.read.scene,
    axes: str | None = DEFAULTS.read.axes,
    compression: str | None = DEFAULTS.convert.compression,
    recursive: bool = DEFAULTS.batch.recursive,
    quiet: bool = False,
) -> BatchReport:
    """Convert microscope files to OME-TIFF, one file per scene, keeping the metadata.

    Parameters
    ----------
    inputs : path, or iterable of paths / folders / glob patterns
        What to convert. Folders and patterns are listed (folders recursively
        with ``recursive``), keeping only the name endings the reader supports
        (:data:`cellseg_bridge.io.reader.SUPPORTED_SUFFIXES`); hidden and
        temporary files are skipped. Files named explicitly are always tried.
    out_dir : str or Path
        Output folder (created if needed). See the module docstring for names.
    overwrite : bool
        Rewrite outputs that exist (default: skip them, so re-running resumes).
    scene : int or str, optional
        Convert only this scene (index, or name); default every scene. A
        string of digits that is not a scene name is taken as an index.
    axes : str, optional
        Axis order of plain TIFFs with ambiguous axes, e.g. ``"ZYX"``; files
        that record their axes (CZI, ND2, LIF, OME-TIFF) ignore it, so one
        value can be given for a mixed folder.
    compression : str or None
        OME-TIFF compression (``"zlib"``, ``"none"``).
    recursive : bool
        Descend into sub-folders of folder inputs.
    quiet : bool
        No progress bar.

    Returns
    -------
    BatchReport
        Outputs written and skipped; ``(input, reason)`` for each failure.
    """
    from cellseg_bridge.io.reader import SUPPORTED_SUFFIXES
    from cellseg_bridge.io.writers import write_ome_tiff

    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    out_dir = Path(out_dir)

    def plan(source: Path) -> list[WorkItem]:
        return plan_outputs(source, out_dir, scene=scene)

    def job(item: WorkItem) -> None:
        image = _open(item.source, item.key, _axes_for(item.source, axes))
        write_ome_tiff(
            image,
            item.outputs[0],
            physical_pixel_sizes=image.attrs.get("physical_pixel_sizes"),
            channel_names=image.attrs.get("channel_names"),
            compression=compression,
            name=image.attrs.get("scene"),
        )

    return run_batch(
        inputs,
        plan,
        job,
        overwrite=overwrite,
        recursive=recursive,
        suffixes=tuple(SUPPORTED_SUFFIXES),
        exclude=[out_dir],
        quiet=quiet,
        description="convert",
    )


def plan_outputs(source: Path, out_dir: Path, *, scene: int | str | None = None) -> list[WorkItem]:
    """Return one work item per scene to convert, with its output path.

    Parameters
    ----------
    source : Path
        Input file.
    out_dir : Path
        Output folder.
    scene : int or str, optional
        Only this scene (index or name).

    Returns
    -------
    list of WorkItem
        ``key`` is the scene index.

    Raises
    ------
    InputError
        The file cannot be read, the scene does not exist, or an output would
        replace the input.
    """
    from cellseg_bridge.io.reader import list_scenes

    scenes = [str(s) for s in list_scenes(source)]
    if not scenes:
        raise InputError("no image (scene) in this file", source)
    indices = range(len(scenes)) if scene is None else [select_scene(scenes, scene, source)]
    stem = file_stem(source)
    items = []
    for index in indices:
        name = output_name(stem, index, scenes[index], len(scenes))
        out = out_dir / name
        if out.resolve() == source.resolve():
            raise InputError(f"output {out} would replace the input; choose another --out folder", source)
        label = str(source) if len(scenes) == 1 else f"{source} [scene {index} {scenes[index]!r}]"
        items.append(WorkItem(source=source, outputs=(out,), key=index, label=label))
    return items


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


def output_name(stem: str, index: int, scene_name: str, n_scenes: int) -> str:
    """Return the output file name of one scene (see the module docstring)."""
    if n_scenes == 1:
        return f"{stem}{OUTPUT_SUFFIX}"
    width = len(str(n_scenes - 1))
    clean = sanitise(scene_name)
    tail = f"_{clean}" if clean else ""
    return f"{stem}_s{index:0{width}d}{tail}{OUTPUT_SUFFIX}"


def _axes_for(source: Path, axes: str | None) -> str | None:
    """``axes`` for plain TIFFs only: formats that record their axes (CZI, ND2, LIF, OME-TIFF) ignore it."""
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


def _open(source: Path, scene_index: int, axes: str | None):
    from cellseg_bridge.io.reader import open_image

    return open_image(source, scene=scene_index, axes=axes)

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
count as one extension). The rule lives in :mod:`cellseg_bridge.batch.naming`, shared
with the other batch commands. Two inputs that map to the same output in one run
(``a/x.czi`` and ``b/x.nd2``) are not both converted: the second is reported
as failed, unless ``keep_tree`` puts each output in the sub-folder of ``out_dir`` that
mirrors its input's (``out/a/x.ome.tif``, ``out/b/x.ome.tif``). Inputs are only read; an output that would replace its own input
is refused.

Pixel sizes (µm), channel names and the scene name are written to the
OME-XML, with what the reader knows of the acquisition
(:func:`cellseg_bridge.io.acquisition.read_acquisition`): frame interval, acquisition date,
objective, channel wavelengths and colours. With ``output_format="imagej"`` each scene is an ImageJ hyperstack TIFF
``<name>.tif`` instead (:mod:`cellseg_bridge.io.imagej_tiff`: plain ImageJ 1.x opens it with
its channels, Z slices and frames, the Z spacing and the channel names as labels).
Outputs are written atomically and existing outputs are skipped unless ``overwrite``.
The scenes are converted in this process or, one task per scene, on a Dask cluster (``client``, ``workers``, ``scheduler``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cellseg_bridge.batch.items import WorkItem
from cellseg_bridge.batch.naming import axes_for, file_stem, plan_scene_items, sanitise, scene_stem, select_scene
from cellseg_bridge.batch.report import BatchReport
from cellseg_bridge.batch.run_record import RunRecord
from cellseg_bridge.batch.runner import input_folder, run_batch
from cellseg_bridge.config import DEFAULTS

log = logging.getLogger(__name__)

__all__ = ["convert", "plan_outputs", "output_name", "file_stem", "sanitise", "select_scene"]

OUTPUT_SUFFIX = ".ome.tif"
#: Output name ending and report kind of each ``output_format``.
FORMATS = {"ome-tiff": (OUTPUT_SUFFIX, "ome_tiff"), "imagej": (".tif", "imagej_tiff")}


def convert(
    inputs: Iterable[str | Path] | str | Path,
    out_dir: str | Path,
    *,
    overwrite: bool = DEFAULTS.convert.overwrite,
    scene: int | str | None = DEFAULTS.read.scene,
    axes: str | None = DEFAULTS.read.axes,
    compression: str | None = DEFAULTS.convert.compression,
    output_format: str = "ome-tiff",
    keep_tree: bool = False,
    recursive: bool = DEFAULTS.batch.recursive,
    quiet: bool = False,
    client: Any = None,
    workers: int | None = DEFAULTS.distributed.workers,
    scheduler: str | None = DEFAULTS.distributed.scheduler,
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
        OME-TIFF compression (``"zlib"``, ``"none"``); ImageJ hyperstacks are not compressed.
    output_format : str
        ``"ome-tiff"`` (``<name>.ome.tif``) or ``"imagej"`` (an ImageJ hyperstack ``<name>.tif``).
    keep_tree : bool
        Write each output into the sub-folder of ``out_dir`` that mirrors where its input was
        found under a folder or pattern input (``in/a/x.czi`` -> ``out/a/x.ome.tif``), so that
        files with the same name in different folders do not clash.
    recursive : bool
        Descend into sub-folders of folder inputs.
    quiet : bool
        No progress bar.
    client, workers, scheduler
        Where to run (:func:`~cellseg_bridge.distributed.executor.executor_for`): a
        Dask client, a LocalCluster of ``workers`` processes, or the workers of
        a running ``scheduler``, one task per scene, with a manifest
        (``<out_dir>/cellseg_manifest.jsonl``); none of them: in this process.

    Returns
    -------
    BatchReport
        Outputs written and skipped; ``(input, reason)`` for each failure; one
        record per scene (``result``: the shape written).
    """
    from cellseg_bridge.distributed.executor import executor_for
    from cellseg_bridge.errors import InputError
    from cellseg_bridge.io.reader import SUPPORTED_SUFFIXES

    if output_format not in FORMATS:
        raise InputError(f"unknown output format {output_format!r} (one of {', '.join(FORMATS)})")
    out_dir = Path(out_dir)
    task = functools.partial(_convert_task, axes=axes, compression=compression, output_format=output_format)
    with executor_for(client, workers, scheduler) as executor:
        manifest = None if executor.in_process else out_dir / DEFAULTS.distributed.manifest_name
        record = RunRecord(out_dir, "convert", {"compression": compression, "axes": axes, "format": output_format},
                           {"scene": scene, "keep_tree": keep_tree})
        listed = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)

        def plan(source: Path) -> list[WorkItem]:
            folder = out_dir / input_folder(source, listed) if keep_tree else out_dir
            return plan_outputs(source, folder, scene=scene, output_format=output_format)

        report = run_batch(listed, plan, task,
                           overwrite=overwrite, recursive=recursive, suffixes=tuple(SUPPORTED_SUFFIXES),
                           exclude=[out_dir], quiet=quiet, description="convert", executor=executor,
                           manifest=manifest, stale=record.stale_reason())
    record.write(report)
    return report


def plan_outputs(source: Path, out_dir: Path, *, scene: int | str | None = None,
                 output_format: str = "ome-tiff") -> list[WorkItem]:
    """Return one work item per scene to convert, with its output path.

    Parameters
    ----------
    source : Path
        Input file.
    out_dir : Path
        Output folder.
    scene : int or str, optional
        Only this scene (index or name).
    output_format : str
        A key of :data:`FORMATS` (the output's name ending and kind).

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
    suffix, kind = FORMATS[output_format]
    return plan_scene_items(source, out_dir, (suffix,), scene=scene, kinds=(kind,))


def output_name(stem: str, index: int, scene_name: str, n_scenes: int) -> str:
    """Return the output file name of one scene (see the module docstring)."""
    return scene_stem(stem, index, scene_name, n_scenes) + OUTPUT_SUFFIX


def _convert_task(item: WorkItem, axes: str | None, compression: str | None, output_format: str = "ome-tiff") -> dict:
    """Write one scene as OME-TIFF or ImageJ hyperstack (the task of :func:`convert`; picklable, for clusters)."""
    from cellseg_bridge.io.acquisition import read_acquisition
    from cellseg_bridge.io.reader import open_image
    from cellseg_bridge.io.writers import write_ome_tiff

    image = open_image(item.source, scene=item.key, axes=axes_for(item.source, axes))
    acquisition = read_acquisition(item.source, int(item.key or 0))
    if output_format == "imagej":
        from cellseg_bridge.io.imagej_tiff import write_imagej_tiff

        channels = acquisition.get("channels") or []
        colors = [c.get("color") for c in channels] if len(channels) == image.sizes["C"] else None
        write_imagej_tiff(image, item.outputs[0], frame_interval=acquisition.get("frame_interval_s"),
                          channel_colors=colors if colors and all(colors) else None)
        return {"shape": [int(n) for n in image.shape]}
    write_ome_tiff(image, item.outputs[0], physical_pixel_sizes=image.attrs.get("physical_pixel_sizes"),
                   channel_names=image.attrs.get("channel_names"), compression=compression,
                   name=image.attrs.get("scene"), acquisition=acquisition)
    return {"shape": [int(n) for n in image.shape]}

"""``cellseg segment``: parse arguments, call :func:`cellseg_bridge.batch.segment.segment_files`, report."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import click

from cellseg_bridge.cli.common import dask_options, is_quiet, run_api, scene_arg
from cellseg_bridge.config import DEFAULTS

_SEG = DEFAULTS.segment


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (created if needed).")
@click.option("--model", default=_SEG.model, show_default=True,
              help="Model name (bundled, cache, Cellpose zoo) or checkpoint path.")
@click.option("--diameter", type=float, default=_SEG.diameter,
              help="Object diameter in pixels; default: the model's size estimate or training diameter.")
@click.option("--channel", default=str(_SEG.channel), show_default=True,
              help="Channel to segment: 0-based index or channel name.")
@click.option("--invert/--no-invert", default=_SEG.invert,
              help="Invert the normalised image: dark objects on a bright background (brightfield, H&E). "
                   "Default: as the model was trained (cellseg train --invert).")
@click.option("--nuclear-channel", default=_SEG.nuclear_channel,
              help="Nuclear channel (index or name) for 2-channel cytoplasm models.")
@click.option("--cellprob-threshold", type=float, default=_SEG.cellprob_threshold, show_default=True,
              help="Cell probability (logit) threshold; lower finds more/larger cells.")
@click.option("--flow-threshold", type=float, default=_SEG.flow_threshold, show_default=True,
              help="Maximum flow error of a mask (0 disables the check).")
@click.option("--do-3d/--no-do-3d", "do_3d", default=_SEG.do_3d, show_default=True,
              help="True 3D segmentation of Z stacks (default: plane by plane).")
@click.option("--stitch-threshold", type=float, default=_SEG.stitch_threshold, show_default=True,
              help="Plane by plane: join masks of neighbouring planes with IoU above this (0: no stitching).")
@click.option("--tile-size", type=int, default=_SEG.tile_size, show_default=True,
              help="Network tile side in pixels.")
@click.option("--augment/--no-augment", default=_SEG.augment, show_default=True,
              help="Test-time augmentation (overlapping, flipped tiles; slower).")
@click.option("--device", default=_SEG.device, show_default=True,
              help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--precision", type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
              default=_SEG.precision, show_default=True,
              help="Network arithmetic; auto: float16 on CUDA, bfloat16 on CPUs with native bfloat16, else float32.")
@click.option("--scene", default=DEFAULTS.read.scene,
              help="Segment only this scene (name or 0-based index); default: every scene.")
@click.option("--axes", default=DEFAULTS.read.axes,
              help="Axis order of plain TIFFs whose axes are ambiguous, e.g. ZYX.")
@click.option("--save-seg-npy", is_flag=True, help="Also write <base>_seg.npy for Cellpose's GUI (2D images).")
@click.option("--save-flows", is_flag=True, help="Also write the network's flows as <base>_flows.ome.tif.")
@click.option("--no-rois", is_flag=True, help="Do not write <base>_RoiSet.zip.")
@click.option("--no-overlay", is_flag=True, help="Do not write <base>_overlay.png.")
@click.option("--no-csv", is_flag=True, help="Do not write <base>_cells.csv.")
@click.option("--overwrite/--no-overwrite", default=DEFAULTS.convert.overwrite, show_default=True,
              help="Redo scenes whose outputs exist (default: skip them, so a re-run resumes).")
@click.option("-r", "--recursive/--no-recursive", default=DEFAULTS.batch.recursive, show_default=True,
              help="Descend into sub-folders of folder inputs.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result as JSON (outputs per input and scene, failures).")
@dask_options
@click.option("--chunked", is_flag=True,
              help="Segment every plane in overlapping chunks (automatic above "
                   f"{DEFAULTS.distributed.chunked_threshold_pixels} pixels): <base>_labels.ome.zarr + tiled .ome.tif.")
@click.option("--chunk-size", type=click.IntRange(min=16), default=DEFAULTS.distributed.chunk_size,
              show_default=True, help="Chunk core side (pixels) for chunked segmentation.")
@click.option("--restore", "restore_types", default=None,
              help="Restore before segmenting: type(s) (denoise, deblur, upsample, oneclick, aniso; model "
                   "<type>_<target>) or restoration model names/paths, comma separated, applied in order.")
@click.option("--restore-target", default=DEFAULTS.restore.target, show_default=True,
              help="Model family of --restore types (<type>_<target>).")
@click.pass_context
def segment(ctx: click.Context, inputs: tuple[str, ...], out_dir: Path, model: str, channel: str,
            nuclear_channel: str | None, scene: str | None, axes: str | None, save_seg_npy: bool,
            save_flows: bool, no_rois: bool, no_overlay: bool, no_csv: bool, overwrite: bool,
            recursive: bool, as_json: bool, workers: int | None, scheduler: str | None, chunked: bool,
            chunk_size: int, restore_types: str | None, restore_target: str, **options) -> None:
    """Segment cells in images (files, folders, glob patterns); write labels, ROIs, a table, an overlay.

    Per input scene, into --out: <base>_labels.ome.tif, <base>_RoiSet.zip,
    <base>_cells.csv, <base>_overlay.png (and _seg.npy, _flows.ome.tif on
    request), <base> being <stem> or <stem>_s<index>_<scene> for files with
    several scenes. Scenes whose outputs exist are skipped. Exits with status
    1 when anything failed (the other inputs are still segmented).
    """
    from cellseg_bridge.batch.segment import segment_files

    quiet = is_quiet(ctx)
    outputs = [kind for kind, off in (("labels", False), ("rois", no_rois), ("csv", no_csv), ("overlay", no_overlay))
               if not off]
    from cellseg_bridge.distributed import has_large_planes, segment_files_distributed

    run_segment = segment_files
    if restore_types:
        if chunked:
            raise click.UsageError("--restore cannot be combined with --chunked yet")
        options.update(restore=restore_types, restore_target=restore_target)
    if workers or scheduler or chunked or (not restore_types and has_large_planes(
            list(inputs), scene=scene_arg(scene), axes=axes, recursive=recursive)):
        run_segment = functools.partial(segment_files_distributed, workers=workers, scheduler=scheduler,
                                        chunked=chunked, chunk_size=chunk_size)
    report = run_api(
        run_segment,
        list(inputs),
        out_dir,
        model=model,
        overwrite=overwrite,
        scene=scene,
        axes=axes,
        outputs=outputs,
        save_seg_npy=save_seg_npy,
        save_flows=save_flows,
        recursive=recursive,
        quiet=quiet or as_json,
        channel=scene_arg(channel),
        nuclear_channel=scene_arg(nuclear_channel),
        **options,
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(report.summary())
    if not report.ok:
        ctx.exit(1)

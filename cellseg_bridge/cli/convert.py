"""``cellseg convert``: parse arguments, call :func:`cellseg_bridge.batch.convert.convert`, report."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from cellseg_bridge.cli.common import dask_options, is_quiet, run_api
from cellseg_bridge.config import DEFAULTS


@click.command()
@dask_options
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (created if needed).")
@click.option("--overwrite/--no-overwrite", default=DEFAULTS.convert.overwrite, show_default=True,
              help="Rewrite outputs that exist (default: skip them, so a re-run resumes).")
@click.option("--scene", default=DEFAULTS.read.scene,
              help="Convert only this scene (name or 0-based index); default: every scene.")
@click.option("--axes", default=DEFAULTS.read.axes,
              help="Axis order of plain TIFFs whose axes are ambiguous, e.g. ZYX.")
@click.option("--compression", type=click.Choice(["zlib", "none"]), default=DEFAULTS.convert.compression,
              show_default=True, help="OME-TIFF compression.")
@click.option("-r", "--recursive/--no-recursive", default=DEFAULTS.batch.recursive, show_default=True,
              help="Descend into sub-folders of folder inputs.")
@click.pass_context
def convert(
    ctx: click.Context,
    inputs: tuple[str, ...],
    out_dir: Path,
    overwrite: bool,
    scene: str | None,
    axes: str | None,
    compression: str,
    recursive: bool,
    workers: int | None,
    scheduler: str | None,
) -> None:
    """Convert microscope files (CZI, ND2, LIF, TIFF, ...) to OME-TIFF, one file per scene.

    INPUT may be files, folders or glob patterns. Names: <stem>.ome.tif, or
    <stem>_s<index>_<scene>.ome.tif for files with several scenes. Exits with
    status 1 when any input failed (the others are still converted).
    """
    from cellseg_bridge.batch.convert import convert as run_convert

    quiet = is_quiet(ctx)
    if workers or scheduler:
        from cellseg_bridge.distributed import convert_distributed

        run_convert = functools.partial(run_api, convert_distributed, workers=workers, scheduler=scheduler)
    report = run_convert(
        list(inputs),
        out_dir,
        overwrite=overwrite,
        scene=scene,
        axes=axes,
        compression=compression,
        recursive=recursive,
        quiet=quiet,
    )
    click.echo(report.summary(verb="converted"))
    if not report.ok:
        ctx.exit(1)

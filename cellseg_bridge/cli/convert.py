"""``cellseg convert``: parse arguments, call :func:`cellseg_bridge.batch.convert.convert`, report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cellseg_bridge.cli.common import dask_options, is_quiet, run_batch_api, use_reader
from cellseg_bridge.cli.options import collect, options_from
from cellseg_bridge.config import DEFAULTS, ConvertOptions, DistributedOptions, ReadOptions


@click.command()
@dask_options
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (created if needed).")
@options_from(DEFAULTS.convert, only=["overwrite"])
@options_from(DEFAULTS.read)
@options_from(DEFAULTS.convert, only=["compression"])
@click.option("--format", "output_format", type=click.Choice(["ome-tiff", "imagej"]), default="ome-tiff",
              show_default=True, help="ome-tiff: <name>.ome.tif with OME-XML (Fiji: Bio-Formats). imagej: an ImageJ "
              "hyperstack <name>.tif that plain ImageJ opens with its channels, slices, frames, Z spacing and "
              "channel names (not compressed).")
@click.option("--keep-tree", is_flag=True, help="Mirror the input folders under --out (in/a/x.czi -> "
              "OUT/a/x.ome.tif), so that files of the same name in different folders do not clash.")
@options_from(DEFAULTS.batch)
@click.pass_context
def convert(ctx: click.Context, inputs: tuple[str, ...], out_dir: Path, recursive: bool, output_format: str,
            keep_tree: bool, **params: Any) -> None:
    """Convert microscope files (CZI, ND2, LIF, TIFF, ...) to OME-TIFF, one file per scene.

    INPUT may be files, folders or glob patterns. Names: <stem>.ome.tif, or
    <stem>_s<index>_<scene>.ome.tif for files with several scenes (.tif with --format imagej). Exits with
    status 1 when any input failed (the others are still converted).
    """
    from cellseg_bridge.batch.convert import convert as convert_files

    options = collect(ConvertOptions, params)
    read = collect(ReadOptions, params)
    dist = collect(DistributedOptions, params)
    use_reader(ctx, read.reader)
    report = run_batch_api(ctx, "converted", convert_files, list(inputs), out_dir, overwrite=options.overwrite,
                           scene=read.scene, axes=read.axes, compression=options.compression, output_format=output_format,
                           keep_tree=keep_tree, recursive=recursive,
                           quiet=is_quiet(ctx), workers=dist.workers, scheduler=dist.scheduler)
    click.echo(report.summary(verb="converted"))
    if not report.ok:
        ctx.exit(1)

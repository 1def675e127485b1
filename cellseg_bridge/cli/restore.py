"""``cellseg restore``: parse arguments, call :func:`cellseg_bridge.batch.restore.restore_files`, report.

Every :class:`~cellseg_bridge.config.RestoreOptions` field is an option (:mod:`cellseg_bridge.cli.options`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cellseg_bridge.cli.common import is_quiet, run_batch_api, use_reader
from cellseg_bridge.cli.options import collect, options_from
from cellseg_bridge.config import DEFAULTS, ReadOptions, RestoreOptions


@click.command("restore")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (created if needed).")
@options_from(DEFAULTS.restore)
@options_from(DEFAULTS.read)
@options_from(DEFAULTS.convert, only=["overwrite"])
@options_from(DEFAULTS.batch)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (outputs per input and scene).")
@click.pass_context
def restore(ctx: click.Context, inputs: tuple[str, ...], out_dir: Path, overwrite: bool, recursive: bool,
            as_json: bool, **params: Any) -> None:
    """Restore images (denoise, deblur, upsample, oneclick, aniso) for segmentation.

    Per input scene, into --out: <base>_restored.ome.tif (float32, normalised
    intensities, the input's channel names and pixel sizes) and
    <base>_restored.json (what was done). Exits with status 1 when anything failed.
    """
    from cellseg_bridge.batch.restore import restore_files

    options = collect(RestoreOptions, params)
    read = collect(ReadOptions, params)
    use_reader(ctx, read.reader)
    report = run_batch_api(ctx, "restored", restore_files, list(inputs), out_dir, options=options,
                           overwrite=overwrite, scene=read.scene, axes=read.axes, recursive=recursive,
                           quiet=is_quiet(ctx) or as_json)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(report.summary(verb="restored"))
    if not report.ok:
        ctx.exit(1)

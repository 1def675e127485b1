"""``cellseg restore``: parse arguments, call :func:`cellseg_bridge.batch.restore.restore_files`, report."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cellseg_bridge.cli.common import is_quiet, run_api, scene_arg
from cellseg_bridge.config import DEFAULTS, RESTORE_KINDS

_RES = DEFAULTS.restore


@click.command("restore")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (created if needed).")
@click.option("--type", "types", default=",".join(_RES.types), show_default=True,
              help=f"Restoration type(s), comma separated, applied in order: {', '.join(RESTORE_KINDS)}.")
@click.option("--target", default=_RES.target, show_default=True,
              help="Model family: the model of a type is <type>_<target> (e.g. denoise_nuclei, denoise_cyto3).")
@click.option("--model", default=_RES.model,
              help="Restoration model name or checkpoint path (instead of --type/--target).")
@click.option("--channel", default=None, help="Channel to restore (index or name); default: every channel.")
@click.option("--diameter", type=float, default=_RES.diameter,
              help="Object diameter in pixels (the image is rescaled to the model's); default: no rescaling.")
@click.option("--tile-size", type=int, default=_RES.tile_size, show_default=True, help="Network tile side in pixels.")
@click.option("--device", default=_RES.device, show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--scene", default=DEFAULTS.read.scene, help="Only this scene (name or 0-based index).")
@click.option("--axes", default=DEFAULTS.read.axes, help="Axis order of plain TIFFs whose axes are ambiguous.")
@click.option("--overwrite/--no-overwrite", default=DEFAULTS.convert.overwrite, show_default=True,
              help="Redo scenes whose outputs exist (default: skip them, so a re-run resumes).")
@click.option("-r", "--recursive/--no-recursive", default=DEFAULTS.batch.recursive, show_default=True,
              help="Descend into sub-folders of folder inputs.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (outputs per input and scene).")
@click.pass_context
def restore(ctx: click.Context, inputs: tuple[str, ...], out_dir: Path, types: str, target: str,
            model: str | None, channel: str | None, diameter: float | None, tile_size: int, device: str,
            scene: str | None, axes: str | None, overwrite: bool, recursive: bool, as_json: bool) -> None:
    """Restore images (denoise, deblur, upsample, oneclick, aniso) for segmentation.

    Per input scene, into --out: <base>_restored.ome.tif (float32, normalised
    intensities, the input's channel names and pixel sizes) and
    <base>_restored.json (what was done). Exits with status 1 when anything failed.
    """
    from cellseg_bridge.batch.restore import restore_files

    quiet = is_quiet(ctx)
    report = run_api(
        restore_files,
        list(inputs),
        out_dir,
        types=types,
        model=model,
        target=target,
        overwrite=overwrite,
        scene=scene_arg(scene),
        axes=axes,
        recursive=recursive,
        device=device,
        quiet=quiet or as_json,
        channel=scene_arg(channel),
        diameter=diameter,
        tile_size=tile_size,
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(report.summary(verb="restored"))
    if not report.ok:
        ctx.exit(1)

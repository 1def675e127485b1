"""``cellseg hitl``: a headless human-in-the-loop project (parse options, call :mod:`cellseg_bridge.hitl`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click

from cellseg_bridge.cli.common import help_of, is_quiet, run_api
from cellseg_bridge.cli.options import collect, options_from
from cellseg_bridge.config import DEFAULTS, HitlOptions, SegmentOptions, TrainOptions


def _open(project: Path) -> Any:
    from cellseg_bridge.hitl import open_project

    return run_api(open_project, project)


@click.group("hitl")
def hitl() -> None:
    """Human-in-the-loop training with corrections made in Fiji's ROI Manager.

    \b
    cellseg hitl init DIR --model nuclei IMAGES...   start a project
    cellseg hitl next DIR                           segment the next image -> RoiSet.zip to correct
    cellseg hitl add DIR IMAGE RoiSet.zip           import the corrected ROIs
    cellseg hitl train DIR                          fine-tune the initial model on all corrections
    cellseg hitl status DIR [--json]                cycles, ROI counts, held-out AP per model
    """


@hitl.command("init")
@click.argument("project", type=click.Path(file_okay=False, path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@options_from(DEFAULTS.hitl, only=["model", "n_epochs", "holdout_every", "seed"])
@options_from(DEFAULTS.segment, only=["channel", "nuclear_channel", "diameter"])
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help=help_of(TrainOptions, "batch_size"))
@click.option("--crop-size", type=click.IntRange(min=16), default=None, help=help_of(TrainOptions, "crop_size"))
def hitl_init(project: Path, images: tuple[Path, ...], batch_size: int | None, crop_size: int | None,
              **params: Any) -> None:
    """Create a HITL project in PROJECT for IMAGES (referenced, never copied)."""
    from cellseg_bridge.hitl import init_project

    options = collect(HitlOptions, params)
    seg = collect(SegmentOptions, params)
    extra = {k: v for k, v in {"batch_size": batch_size, "crop_size": crop_size}.items() if v is not None}
    proj = run_api(init_project, project, list(images), model=options.model, channel=seg.channel,
                   nuclear_channel=seg.nuclear_channel, diameter=seg.diameter, n_epochs=options.n_epochs,
                   holdout_every=options.holdout_every, seed=options.seed, train_options=extra)
    click.echo(f"HITL project {proj.directory}: {len(proj.images)} image(s), initial model "
               f"{proj.manifest['initial_model']['path']}\nnext: cellseg hitl next {project}")


@hitl.command("next")
@click.argument("project", type=click.Path(file_okay=False, path_type=Path))
@click.option("--image", default=None, help="This image (path, name or id) instead of the next unannotated one.")
@click.option("--overwrite", is_flag=True, help="Predict again even if the current model already did.")
@options_from(DEFAULTS.segment, only=["device"])
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def hitl_next(project: Path, image: str | None, overwrite: bool, device: str, as_json: bool) -> None:
    """Segment the next image without corrections; write its labels and RoiSet.zip to correct in Fiji."""
    proj = _open(project)
    result = run_api(proj.next_image, image, overwrite=overwrite, device=device)
    if as_json:
        data = None if result is None else {k: str(v) if isinstance(v, Path) else v
                                            for k, v in dataclasses.asdict(result).items()}
        click.echo(json.dumps({"ok": True, "next": data}, indent=2))
        return
    if result is None:
        click.echo("every image has corrections: run `cellseg hitl train` (or add images in a new project)")
        return
    click.echo(
        f"{result.image_id}: {result.n_cells} cells by model {result.model}"
        f"{' (existing prediction)' if result.reused else ''}\n"
        f"  image   {result.image}\n  labels  {result.labels}\n  ROIs    {result.rois}\n"
        f"correct the ROIs in Fiji (ROI Manager > More > Save...), then:\n"
        f"  cellseg hitl add {project} {result.image_id} CORRECTED_RoiSet.zip"
    )


@hitl.command("add")
@click.argument("project", type=click.Path(file_okay=False, path_type=Path))
@click.argument("image")
@click.argument("rois", type=click.Path(path_type=Path))
@click.option("--holdout/--train", "holdout", default=None,
              help="Hold this image out for AP, or train on it (default: the project's rule).")
@click.option("--allow-empty", is_flag=True, help="Accept corrections without cells (an image with no cells).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def hitl_add(project: Path, image: str, rois: Path, holdout: bool | None, allow_empty: bool, as_json: bool) -> None:
    """Import the corrected ROIS (RoiSet.zip from Fiji, or a QuPath .geojson) of IMAGE (path, name or id)."""
    proj = _open(project)
    result = run_api(proj.add_correction, image, rois, holdout=holdout, allow_empty=allow_empty)
    if as_json:
        click.echo(json.dumps({"ok": True, **dataclasses.asdict(result)}, indent=2))
        return
    ch = result.changes
    diff = (f"; vs prediction: {ch['unchanged']} unchanged, {ch['reshaped']} reshaped, {ch['added']} added, "
            f"{ch['deleted']} deleted" if ch else "")
    click.echo(f"{result.image_id}: {result.n_cells} cells from {result.n_rois} ROIs ({result.split})"
               f"{' [replaced earlier corrections]' if result.replaced else ''}{diff}")


@hitl.command("train")
@click.argument("project", type=click.Path(file_okay=False, path_type=Path))
@click.option("--epochs", "n_epochs", type=click.IntRange(min=1), default=None,
              help="Epochs of this cycle (default: the project's).")
@click.option("--fresh", is_flag=True, help="Discard an interrupted cycle instead of resuming it.")
@click.option("--no-eval", is_flag=True, help="Do not score the held-out images.")
@options_from(DEFAULTS.train, only=["device"])
@click.option("--json", "as_json", is_flag=True, help="Print the cycle's record as JSON.")
@click.pass_context
def hitl_train(ctx: click.Context, project: Path, n_epochs: int | None, fresh: bool, no_eval: bool, device: str,
               as_json: bool) -> None:
    """Fine-tune the initial model on ALL corrected images: the next cycle (crash-safe, resumable)."""
    proj = _open(project)
    quiet = is_quiet(ctx)
    try:
        record = run_api(proj.train, n_epochs=n_epochs, fresh=fresh, progress=not (quiet or as_json),
                       device=device, evaluate=not no_eval)
    except KeyboardInterrupt:
        again = f" --epochs {n_epochs}" if n_epochs is not None else ""
        click.echo(f"interrupted: the previous model stays current; `cellseg hitl train {project}{again}` resumes",
                   err=True)
        raise SystemExit(130) from None
    if as_json:
        click.echo(json.dumps({"ok": True, **record}, indent=2))
        return
    hold = record.get("holdout")
    ap = f", held-out AP@0.5 {hold['ap50']:.3f} on {hold['n_images']} image(s)" if hold else ""
    init = record.get("initial_holdout")
    ap += f" (initial model {init['ap50']:.3f})" if init else ""
    if record.get("not_current"):
        click.echo(f"WARNING: {record['not_current']['message']}", err=True)
    click.echo(f"{record['model']}: {record['epochs']} epochs on {len(record['train_images'])} image(s), "
               f"{record['n_train_cells']} cells, {record['seconds']:.0f} s{ap}\n"
               f"  weights {proj.directory / record['weights']}")


@hitl.command("use")
@click.argument("project", type=click.Path(file_okay=False, path_type=Path))
@click.argument("model")
def hitl_use(project: Path, model: str) -> None:
    """Make MODEL (initial, cycle_NNN or a cycle number) the project's current model."""
    from cellseg_bridge.hitl.models import use_model

    done = run_api(use_model, _open(project), model)
    click.echo(f"current model: {done['current']} (was {done['previous']})")


@hitl.command("export")
@click.argument("project", type=click.Path(file_okay=False, path_type=Path))
@click.argument("name")
@click.option("--model", "model", default=None, help="initial, cycle_NNN or a cycle number (default: the current).")
@click.option("--overwrite", is_flag=True, help="Replace a cached model of that name.")
def hitl_export(project: Path, name: str, model: str | None, overwrite: bool) -> None:
    """Copy the current model (or --model) into the model cache as NAME: `cellseg segment --model NAME`."""
    from cellseg_bridge.hitl.models import export_model

    folder = run_api(export_model, _open(project), name, model, overwrite=overwrite)
    click.echo(f"exported to {folder}; use it with --model {name}")


@hitl.command("status")
@click.argument("project", type=click.Path(file_okay=False, path_type=Path))
@click.option("--no-eval", is_flag=True, help="Report cached held-out scores only (segments nothing).")
@options_from(DEFAULTS.segment, only=["device"])
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def hitl_status(project: Path, no_eval: bool, device: str, as_json: bool) -> None:
    """Cycles, ROI counts, AP on the held-out images and the model of each cycle."""
    from cellseg_bridge.hitl import format_status

    proj = _open(project)
    status = run_api(proj.status, evaluate=not no_eval, device=device)
    click.echo(json.dumps(status, indent=2) if as_json else format_status(status))

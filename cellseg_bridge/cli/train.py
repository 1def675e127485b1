"""``cellseg train``: parse the options and call :func:`cellseg_bridge.training.train`.

Every :class:`~cellseg_bridge.config.TrainOptions` field is an option (:mod:`cellseg_bridge.cli.options`).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import click

from cellseg_bridge.cli.common import is_quiet
from cellseg_bridge.cli.options import collect, options_from
from cellseg_bridge.config import DEFAULTS, TrainOptions
from cellseg_bridge.errors import CellsegError


@click.command("train")
@click.argument("folder", type=click.Path(path_type=Path), required=False)
@click.option("--data", "data_specs", multiple=True, metavar="PATH[:WEIGHT]",
              help="A training folder with its sampling weight (repeat for several datasets; default weight 1).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Output folder: weights.pth, config.json, size_model.npz, curves, checkpoint/.")
@click.option("--masks", "masks_dir", type=click.Path(path_type=Path), default=None,
              help="Folder holding the masks (NAME_masks.tif, NAME.tif, NAME_seg.npy, NAME_RoiSet.zip).")
@click.option("--val", "val_folder", type=click.Path(path_type=Path), default=None,
              help="Folder of validation images with masks (AP every --val-every epochs).")
@options_from(DEFAULTS.train)
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint/state.pt.")
@click.pass_context
def train(ctx: click.Context, folder: Path | None, data_specs: tuple[str, ...], out_dir: Path,
          masks_dir: Path | None, val_folder: Path | None, resume: bool, **params: Any) -> None:
    """Train or fine-tune a segmentation model on FOLDER (images with masks), or on several --data folders."""
    from cellseg_bridge.training import DataSource, parse_source
    from cellseg_bridge.training import train as train_api

    if folder is None and not data_specs:
        raise click.UsageError("give a training FOLDER or at least one --data PATH[:WEIGHT]")
    try:
        sources = ([DataSource(folder)] if folder is not None else []) + [parse_source(s) for s in data_specs]
    except CellsegError as exc:
        raise click.BadParameter(str(exc), param_hint="--data") from None
    data: Any = sources[0].data if len(sources) == 1 else sources
    options = collect(TrainOptions, params).as_dict()
    if resume:  # the checkpoint's options, except those given here (which must agree with it)
        options = {k: v for k, v in options.items()
                   if ctx.get_parameter_source(k) not in (None, click.core.ParameterSource.DEFAULT)}
    try:
        result = train_api(
            data, out_dir, val_data=val_folder, masks_dir=masks_dir, resume=resume, progress=not is_quiet(ctx),
            **options,
        )
    except CellsegError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        again = ["cellseg", "train"] + ([str(folder)] if folder is not None else [])
        for flag, value in [("--data", s) for s in data_specs] + [("--masks", masks_dir), ("--val", val_folder)]:
            again += [flag, str(value)] if value is not None else []
        again += ["--out", str(out_dir), "--resume"]
        click.echo(f"interrupted; resume with: {shlex.join(again)}", err=True)
        raise SystemExit(130) from None
    last = result.curves[-1] if result.curves else {}
    ap = f", validation AP@0.5 {last['ap50']:.3f}" if last.get("ap50") is not None else ""
    click.echo(
        f"trained {result.epochs_run}/{result.n_epochs} epochs ({result.stopped}), "
        f"diam_labels {result.diam_labels:.2f}{ap}: {result.weights}"
    )

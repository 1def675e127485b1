"""``cellseg train``: parse the options and call :func:`cellseg_bridge.training.train`."""

from __future__ import annotations

from pathlib import Path

import click

from cellseg_bridge.config import DEFAULTS
from cellseg_bridge.errors import CellsegError

_T = DEFAULTS.train


def _channel(value: str | None) -> int | str | None:
    return int(value) if value is not None and value.lstrip("-").isdigit() else value


@click.command("train")
@click.argument("folder", type=click.Path(path_type=Path), required=False)
@click.option("--data", "data_specs", multiple=True, metavar="PATH[:WEIGHT]",
              help="A training folder with its sampling weight (repeat for several datasets; default weight 1).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Output folder: weights.pth, config.json, size_model.npz, curves, checkpoint/.")
@click.option("--masks", "masks_dir", type=click.Path(path_type=Path), default=None,
              help="Folder holding the masks (NAME_masks.tif, NAME.tif, NAME_seg.npy, NAME_RoiSet.zip).")
@click.option("--mask-suffix", default=_T.mask_suffix, show_default=True,
              help="Label images are NAME + suffix + .tif/.png beside the image.")
@click.option("--val", "val_folder", type=click.Path(path_type=Path), default=None,
              help="Folder of validation images with masks (AP every --val-every epochs).")
@click.option("--recipe", type=click.Choice(["hitl", "generalist"]), default=_T.recipe, show_default=True)
@click.option("--pretrained", default=_T.pretrained,
              help="Model to fine-tune (name or checkpoint); default: a new network.")
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default=_T.optimizer, show_default=True)
@click.option("--epochs", "n_epochs", type=click.IntRange(min=1), default=None, help="Default: the recipe's.")
@click.option("--lr", "learning_rate", type=float, default=None, help="Default: the recipe's.")
@click.option("--weight-decay", type=float, default=None, help="Default: the recipe's.")
@click.option("--batch-size", type=click.IntRange(min=1), default=_T.batch_size, show_default=True)
@click.option("--crop-size", type=click.IntRange(min=16), default=_T.crop_size, show_default=True,
              help="Side of the square training crops.")
@click.option("--images-per-epoch", type=click.IntRange(min=1), default=None, help="Default: the recipe's.")
@click.option("--nbase", default=",".join(map(str, _T.nbase)), show_default=True,
              help="Widths of a new network, comma separated (first: input channels).")
@click.option("--diam-mean", type=float, default=_T.diam_mean, show_default=True,
              help="Diameter a new network works at.")
@click.option("--channel", default=str(_T.channel), show_default=True, help="Segmentation channel (index or name).")
@click.option("--nuclear-channel", default=None, help="Optional nuclear channel (2-channel networks).")
@click.option("--invert", is_flag=True, help="Invert the normalised images (the model then inverts when it segments).")
@click.option("--min-train-masks", type=click.IntRange(min=0), default=None, help="Default: the recipe's.")
@click.option("--val-every", type=click.IntRange(min=0), default=_T.val_every, show_default=True)
@click.option("--save-every", type=click.IntRange(min=0), default=_T.save_every, show_default=True)
@click.option("--seed", type=int, default=_T.seed, show_default=True)
@click.option("--minutes", "time_budget_min", type=float, default=None,
              help="Time budget; epochs are fitted to it and the run stops and saves when it is used up.")
@click.option("--device", default=_T.device, show_default=True)
@click.option("--precision", type=click.Choice(["auto", "float32", "bfloat16"]), default=_T.precision,
              show_default=True, help="auto: bfloat16 mixed precision where the hardware has it, else float32.")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint/state.pt.")
@click.pass_context
def train(ctx: click.Context, folder: Path | None, data_specs: tuple[str, ...], out_dir: Path, masks_dir, mask_suffix, val_folder, nbase, channel,
          nuclear_channel, resume, **options) -> None:
    """Train or fine-tune a segmentation model on FOLDER (images with masks), or on several --data folders."""
    from cellseg_bridge.training import DataSource, parse_source
    from cellseg_bridge.training import train as train_api

    if folder is None and not data_specs:
        raise click.UsageError("give a training FOLDER or at least one --data PATH[:WEIGHT]")
    try:
        sources = ([DataSource(folder)] if folder is not None else []) + [parse_source(s) for s in data_specs]
    except CellsegError as exc:
        raise click.BadParameter(str(exc), param_hint="--data") from None
    data = sources[0].data if len(sources) == 1 else sources
    try:
        widths = tuple(int(v) for v in nbase.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {nbase!r}", param_hint="--nbase") from None
    quiet = bool(ctx.find_root().params.get("quiet"))
    try:
        result = train_api(
            data, out_dir, val_data=val_folder, masks_dir=masks_dir, resume=resume, progress=not quiet,
            mask_suffix=mask_suffix, nbase=widths, channel=_channel(channel),
            nuclear_channel=_channel(nuclear_channel), **options,
        )
    except CellsegError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        again = " ".join(([str(folder)] if folder is not None else []) + [f"--data {s}" for s in data_specs])
        click.echo(f"interrupted; resume with: cellseg train {again} --out {out_dir} --resume", err=True)
        raise SystemExit(130) from None
    last = result.curves[-1] if result.curves else {}
    ap = f", validation AP@0.5 {last['ap50']:.3f}" if last.get("ap50") is not None else ""
    click.echo(
        f"trained {result.epochs_run}/{result.n_epochs} epochs ({result.stopped}), "
        f"diam_labels {result.diam_labels:.2f}{ap}: {result.weights}"
    )

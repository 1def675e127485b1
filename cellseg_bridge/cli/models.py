"""``cellseg models``: list, inspect, import, download and suggest models (:mod:`cellseg_bridge.nn.registry`)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cellseg_bridge.cli.common import ExistingPath, help_of, is_quiet, run_api, scene_arg
from cellseg_bridge.config import ReadOptions, SegmentOptions


@click.group()
def models() -> None:
    """List, inspect, import and download models (bundled, cache, Cellpose zoo)."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models_list(as_json: bool) -> None:
    """List the models found, in lookup order: bundled, cache, Cellpose zoo folder."""
    from cellseg_bridge.nn.registry import list_models, searched_dirs

    found = run_api(list_models)
    if as_json:
        click.echo(json.dumps([m.to_dict() for m in found], indent=2))
        return
    for m in found:
        note = "" if m.active else "  (shadowed)"
        size = "size model" if m.has_size_model else "-"
        click.echo(f"{m.name:<24} {m.source:<13} {m.generation:<10} {m.size_bytes / 1e6:7.1f} MB  {size:<10} "
                   f"{m.path}{note}")
    if not found:
        click.echo("no models found; get one with `cellseg models download nuclei` "
                   "or `cellseg models import PATH`")
    click.echo("searched: " + "; ".join(f"{s} {p}" for s, p in searched_dirs().items()), err=True)


@models.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models_info(name: str, as_json: bool) -> None:
    """Show where model NAME (or a checkpoint path) is and what it is.

    Exits with status 1 when the model is found but does not load (its error is shown).
    """
    from cellseg_bridge.nn.registry import model_info

    data = run_api(model_info, name)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        if "error" in data:
            raise click.exceptions.Exit(1)
        return
    for key in ("name", "source", "path", "size_bytes", "size_model"):
        click.echo(f"{key:<12} {data[key]}")
    for key, value in (data.get("architecture") or {}).items():
        click.echo(f"{key:<12} {value}")
    for other in data["shadowed"]:
        click.echo(f"shadows      {other['source']} {other['path']}")
    if "error" in data:
        click.echo(f"error        {data['error']}")
        raise click.exceptions.Exit(1)


@models.command("import")
@click.argument("path", type=ExistingPath(exists=True, path_type=Path))
@click.option("--name", default=None,
              help="Model name (default: the file name without suffix); not a bundled model's name, "
                   "which would always be found first (refused).")
@click.option("--overwrite", is_flag=True, help="Replace a cached model of the same name.")
def models_import(path: Path, name: str | None, overwrite: bool) -> None:
    """Validate checkpoint PATH (or a bioimage.io package .zip of a Cellpose-style model) and copy it into
    the model cache."""
    from cellseg_bridge.nn.bioimageio_import import import_bioimageio, is_bioimageio_package
    from cellseg_bridge.nn.registry import import_model

    importer = import_bioimageio if is_bioimageio_package(path) else import_model
    dest = run_api(importer, path, name, overwrite=overwrite)
    click.echo(f"imported {path} as {dest.name!r}: {dest}")


@models.command("export")
@click.argument("name")
@click.option("--bioimageio", "out", required=True, type=click.Path(path_type=Path),
              help="Write a bioimage.io model package (format 0.5) to this .zip.")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT.")
def models_export(name: str, out: Path, overwrite: bool) -> None:
    """Export model NAME (or a checkpoint path) as a bioimage.io package: weights (state dict with its
    architecture file, TorchScript), test tensors, preprocessing, cover, model card."""
    from cellseg_bridge.nn.bioimageio import export_bioimageio

    dest = run_api(export_bioimageio, name, out, overwrite=overwrite)
    click.echo(f"exported {name} as bioimage.io package: {dest}")


@models.command("suggest")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--channel", default="0", show_default=True, help=help_of(SegmentOptions, "channel"))
@click.option("--scene", default=0, show_default=True, type=int, help="Scene of each file.")
@click.option("--axes", default=None, help=help_of(ReadOptions, "axes"))
@click.option("--device", default="auto", show_default=True, help=help_of(SegmentOptions, "device"))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models_suggest(inputs: tuple[Path, ...], channel: str, scene: int, axes: str | None, device: str,
                   as_json: bool) -> None:
    """Rank the zoo models for each image by the generalist's style (what --model auto picks)."""
    from cellseg_bridge.batch.suggest import suggest_files

    rows = run_api(suggest_files, list(inputs), scene=scene, axes=axes, device=device, channel=scene_arg(channel))
    if as_json:
        click.echo(json.dumps(rows, indent=1))
    else:
        for row in rows:
            if "reason" in row:
                click.echo(f"{row['input']}: failed: {row['reason']}")
            else:
                ranking = ", ".join(f"{name} {score:.2f}" for name, score in row["ranking"])
                click.echo(f"{row['input']}: {row['model']} (confidence {row['confidence']:.2f}; {ranking})")
    if any("reason" in row for row in rows):
        raise SystemExit(1)


@models.command("download")
@click.argument("name")
@click.option("--url", "base_url", default=None,
              help="Base URL of the model files (default: $CELLSEG_BRIDGE_MODEL_URL or the Cellpose server).")
@click.option("--sha256", "sha256", default=None, help="Expected sha256 of the weights file.")
@click.option("--overwrite", is_flag=True, help="Download again / replace a cached model of that name.")
@click.pass_context
def models_download(ctx: click.Context, name: str, base_url: str | None, sha256: str | None,
                    overwrite: bool) -> None:
    """Download Cellpose zoo model NAME (cyto3, nuclei, denoise_cyto3, ...) into the cache."""
    from cellseg_bridge.nn.registry import download_model

    quiet = is_quiet(ctx)
    dest = run_api(download_model, name, base_url=base_url, expected_sha256=sha256,
                overwrite=overwrite, progress=not quiet)
    click.echo(f"{name}: {dest}")

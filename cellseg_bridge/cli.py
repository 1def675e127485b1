"""The ``cellseg`` command line: parse arguments, call the API, report. Nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cellseg_bridge import _logging
from cellseg_bridge.config import DEFAULTS
from cellseg_bridge.errors import CellsegError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cellseg-bridge")
@click.option("-v", "--verbose", count=True, help="More log output (-v: debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def main(verbose: int, quiet: bool) -> None:
    """Cellpose-class cell segmentation for Fiji/ImageJ users, headless."""
    _logging.configure(verbose, quiet)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(as_json: bool) -> None:
    """Print versions, compute device, and whether Java and ImageJ were found."""
    from cellseg_bridge.info import environment_info

    data = environment_info()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"python      {data['python']} ({data['platform']})")
    for name, version in data["packages"].items():
        click.echo(f"{name:<15} {version or 'not installed'}")
    click.echo(f"device      {data['device']}")
    java = data["java"]
    click.echo(f"java        {java['version'] + ' at ' + java['path'] if java['path'] else 'not found'}")
    click.echo(f"imagej jar  {data['imagej_jar'] or 'not found (apt-get install libij-java, or set IJ_JAR)'}")


@main.command()
def defaults() -> None:
    """Print the defaults shared by the API, the CLI and the Fiji scripts, as JSON."""
    click.echo(json.dumps(DEFAULTS.to_dict(), indent=2))


@main.command()
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
) -> None:
    """Convert microscope files (CZI, ND2, LIF, TIFF, ...) to OME-TIFF, one file per scene.

    INPUT may be files, folders or glob patterns. Names: <stem>.ome.tif, or
    <stem>_s<index>_<scene>.ome.tif for files with several scenes. Exits with
    status 1 when any input failed (the others are still converted).
    """
    from cellseg_bridge.convert import convert as run_convert

    quiet = bool(ctx.find_root().params.get("quiet"))
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


@main.group()
def rois() -> None:
    """Convert between label images and ImageJ ROI Manager files (RoiSet.zip)."""


@rois.command("to-zip")
@click.argument("labels", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Zip to write (replaced if it exists); default <stem>_RoiSet.zip beside LABELS.")
@click.option("--name-format", default=DEFAULTS.rois.name_format, show_default=True,
              help="ROI names; fields {label}, {z}, {t}, {c}, {piece}.")
@click.option("--multipart", type=click.Choice(["composite", "pieces"]), default=DEFAULTS.rois.multipart,
              show_default=True, help="A label with several pieces: one composite ROI, or one ROI per piece.")
@click.option("--scene", default=DEFAULTS.read.scene, help="Scene of a multi-scene file.")
def rois_to_zip(labels: Path, out: Path | None, name_format: str, multipart: str, scene: str | None) -> None:
    """Trace each label of LABELS along pixel edges into ImageJ ROIs (z/t positions for stacks)."""
    from cellseg_bridge.roi_files import label_image_to_roi_zip

    path, n = _run(label_image_to_roi_zip, labels, out, name_format=name_format, multipart=multipart,
                   scene=_scene_arg(scene))
    click.echo(f"{n} ROIs written to {path}")


@rois.command("to-labels")
@click.argument("roi_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--like", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Image whose shape (T, Z, Y, X) and pixel sizes the labels take.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Label OME-TIFF to write.")
@click.option("--overlap", type=click.Choice(["last", "first"]), default=DEFAULTS.rois.overlap,
              show_default=True, help="Who keeps a pixel claimed by several ROIs.")
def rois_to_labels(roi_file: Path, like: Path, out: Path, overlap: str) -> None:
    """Rasterise ROI_FILE (RoiSet.zip or .roi) exactly as ImageJ does into a label image."""
    from cellseg_bridge.roi_files import roi_zip_to_label_image

    report = _run(roi_zip_to_label_image, roi_file, like, out, overlap=overlap)
    click.echo(report.summary())
    for problem in report.corrupt:
        click.echo(f"corrupt: {problem}", err=True)
    for index, name, reason in report.skipped:
        click.echo(f"skipped ROI {index} {name!r}: {reason}", err=True)


def _scene_arg(scene: str | None) -> int | str | None:
    """A scene option as an index when it is a number, else as a name."""
    return int(scene) if scene is not None and scene.lstrip("-").isdigit() else scene


def _run(func, *args, **kwargs):
    """Call an API function; a CellsegError becomes a one-line message and exit status 1."""
    try:
        return func(*args, **kwargs)
    except CellsegError as exc:
        raise click.ClickException(str(exc)) from exc


if __name__ == "__main__":  # pragma: no cover
    main()

"""The ``cellseg`` command line: parse arguments, call the API, report. Nothing else."""

from __future__ import annotations

import functools
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
    reader = data["reader"]
    versions = ", ".join(f"{name} {version}" for name, version in reader["versions"].items() if version)
    click.echo(f"reader      {reader['backend']} ({versions})")
    if reader["fallback"]:
        click.echo(f"            fallback {reader['fallback']} ({reader['fallback_version']})")
    click.echo(f"device      {data['device']} (precision auto: network {data['precision']['inference']}, "
               f"training {data['precision']['training']})")
    java = data["java"]
    click.echo(f"java        {java['version'] + ' at ' + java['path'] if java['path'] else 'not found'}")
    click.echo(f"imagej jar  {data['imagej_jar'] or 'not found (apt-get install libij-java, or set IJ_JAR)'}")


@main.command()
def defaults() -> None:
    """Print the defaults shared by the API, the CLI and the Fiji scripts, as JSON."""
    click.echo(json.dumps(DEFAULTS.to_dict(), indent=2))


def _dask_options(func):
    """--workers / --scheduler (Dask), shared by the batch commands."""
    func = click.option("--scheduler", default=DEFAULTS.distributed.scheduler,
                        help="Address of a running Dask scheduler (tcp://host:8786): one task per scene.")(func)
    return click.option("--workers", type=click.IntRange(min=1), default=DEFAULTS.distributed.workers,
                        help="Run on a local Dask cluster of N worker processes (one task per scene).")(func)


def _set_reader(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Make ``--reader`` the backend of every ``open_image`` of this command, in Dask workers it starts too.

    It is passed as ``$CELLSEG_READER`` (worker processes inherit it; workers of a
    remote ``--scheduler`` need it set in their own environment) and restored
    when the command ends.
    """
    if value is None:
        return
    import os

    from cellseg_bridge.io._backends import ENV_VAR

    before = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = value

    def restore() -> None:
        if before is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = before

    ctx.call_on_close(restore)


def _reader_option(func):
    """--reader (bioio or aicsimageio), shared by convert and segment."""
    return click.option("--reader", type=click.Choice(["bioio", "aicsimageio"]), default=DEFAULTS.read.reader,
                        expose_value=False, callback=_set_reader,
                        help="Reader backend: bioio (default; falls back to aicsimageio, if installed, for "
                             "files bioio cannot read) or aicsimageio (pip install "
                             "'cellseg-bridge[aicsimageio]').")(func)


@main.command()
@_dask_options
@_reader_option
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
    from cellseg_bridge.convert import convert as run_convert

    quiet = bool(ctx.find_root().params.get("quiet"))
    if workers or scheduler:
        from cellseg_bridge.distributed import convert_distributed

        run_convert = functools.partial(_run, convert_distributed, workers=workers, scheduler=scheduler)
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


_SEG = DEFAULTS.segment


@main.command()
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
@_reader_option
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
@_dask_options
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
    from cellseg_bridge.segment_batch import segment_files

    quiet = bool(ctx.find_root().params.get("quiet"))
    outputs = [kind for kind, off in (("labels", False), ("rois", no_rois), ("csv", no_csv), ("overlay", no_overlay))
               if not off]
    from cellseg_bridge.distributed import has_large_planes, segment_files_distributed

    run_segment = segment_files
    if restore_types:
        if chunked:
            raise click.UsageError("--restore cannot be combined with --chunked yet")
        options.update(restore=restore_types, restore_target=restore_target)
    if workers or scheduler or chunked or (not restore_types and has_large_planes(
            list(inputs), scene=_scene_arg(scene), axes=axes, recursive=recursive)):
        run_segment = functools.partial(segment_files_distributed, workers=workers, scheduler=scheduler,
                                        chunked=chunked, chunk_size=chunk_size)
    report = _run(
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
        channel=_scene_arg(channel),
        nuclear_channel=_scene_arg(nuclear_channel),
        **options,
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(report.summary())
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


@main.group()
def models() -> None:
    """List, inspect, import and download models (bundled, cache, Cellpose zoo)."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models_list(as_json: bool) -> None:
    """List the models found, in lookup order: bundled, cache, Cellpose zoo folder."""
    from cellseg_bridge.nn.registry import list_models, searched_dirs

    found = _run(list_models)
    if as_json:
        click.echo(json.dumps([m.to_dict() for m in found], indent=2))
        return
    for m in found:
        note = "" if m.active else "  (shadowed)"
        size = "size model" if m.has_size_model else "-"
        click.echo(f"{m.name:<24} {m.source:<13} {m.size_bytes / 1e6:7.1f} MB  {size:<10} {m.path}{note}")
    if not found:
        click.echo("no models found; get one with `cellseg models download nuclei` "
                   "or `cellseg models import PATH`")
    click.echo("searched: " + "; ".join(f"{s} {p}" for s, p in searched_dirs().items()), err=True)


@models.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models_info(name: str, as_json: bool) -> None:
    """Show where model NAME (or a checkpoint path) is and what it is."""
    from cellseg_bridge.nn.registry import model_info

    data = _run(model_info, name)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key in ("name", "source", "path", "size_bytes", "size_model"):
        click.echo(f"{key:<12} {data[key]}")
    for key, value in (data.get("architecture") or {}).items():
        click.echo(f"{key:<12} {value}")
    if "error" in data:
        click.echo(f"error        {data['error']}")
    for other in data["shadowed"]:
        click.echo(f"shadows      {other['source']} {other['path']}")


@models.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--name", default=None, help="Model name (default: the file name without suffix).")
@click.option("--overwrite", is_flag=True, help="Replace a cached model of the same name.")
def models_import(path: Path, name: str | None, overwrite: bool) -> None:
    """Validate checkpoint PATH and copy it into the model cache."""
    from cellseg_bridge.nn.registry import import_model

    dest = _run(import_model, path, name, overwrite=overwrite)
    click.echo(f"imported {path} as {dest.name!r}: {dest}")


@models.command("suggest")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--channel", default="0", show_default=True, help="Segmentation channel (index or name).")
@click.option("--scene", default=0, show_default=True, type=int, help="Scene of each file.")
@click.option("--axes", default=None, help="Axes of plain TIFFs (e.g. ZYX).")
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models_suggest(inputs: tuple[Path, ...], channel: str, scene: int, axes: str | None, device: str,
                   as_json: bool) -> None:
    """Rank the zoo models for each image by the generalist's style (what --model auto picks)."""
    from cellseg_bridge.segment_batch import suggest_files

    rows = _run(suggest_files, list(inputs), scene=scene, axes=axes, device=device, channel=_scene_arg(channel))
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

    quiet = bool(ctx.find_root().params.get("quiet"))
    dest = _run(download_model, name, base_url=base_url, expected_sha256=sha256,
                overwrite=overwrite, progress=not quiet)
    click.echo(f"{name}: {dest}")


def _scene_arg(scene: str | None) -> int | str | None:
    """A scene option as an index when it is a number, else as a name."""
    return int(scene) if scene is not None and scene.lstrip("-").isdigit() else scene


def _run(func, *args, **kwargs):
    """Call an API function; a CellsegError becomes a one-line message and exit status 1."""
    try:
        return func(*args, **kwargs)
    except CellsegError as exc:
        raise click.ClickException(str(exc)) from exc


from cellseg_bridge.cli_fiji import fiji as _fiji_group  # noqa: E402

main.add_command(_fiji_group)

from cellseg_bridge.cli_train import train as _train_command  # noqa: E402

main.add_command(_train_command)

from cellseg_bridge.cli_hitl import hitl as _hitl_group  # noqa: E402

main.add_command(_hitl_group)

from cellseg_bridge.cli_restore import restore as _restore_command  # noqa: E402

main.add_command(_restore_command)


if __name__ == "__main__":  # pragma: no cover
    main()

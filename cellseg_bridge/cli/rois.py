"""``cellseg rois``: label images <-> ImageJ ROI files (parse, call :mod:`cellseg_bridge.io.roi_files`, report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cellseg_bridge.cli.common import ExistingPath, run_api
from cellseg_bridge.cli.options import collect, options_from
from cellseg_bridge.config import DEFAULTS, ReadOptions, RoiOptions


@click.group()
def rois() -> None:
    """Convert between label images and ImageJ ROI Manager files (RoiSet.zip)."""


@rois.command("to-zip")
@click.argument("labels", type=ExistingPath(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Zip to write; default <stem>_RoiSet.zip beside LABELS. Never LABELS itself.")
@click.option("--overwrite", is_flag=True, help="Replace the output if it exists (default: refuse).")
@options_from(DEFAULTS.rois, only=["name_format", "multipart"])
@options_from(DEFAULTS.read, only=["scene"])
def rois_to_zip(labels: Path, out: Path | None, overwrite: bool, **params: Any) -> None:
    """Trace each label of LABELS along pixel edges into ImageJ ROIs (z/t positions for stacks).

    An existing output is replaced only with --overwrite; the input is never replaced.
    """
    from cellseg_bridge.io.roi_files import label_image_to_roi_zip

    options = collect(RoiOptions, params)
    read = collect(ReadOptions, params)
    path, n = run_api(label_image_to_roi_zip, labels, out, name_format=options.name_format,
                      multipart=options.multipart, scene=read.scene, overwrite=overwrite)
    click.echo(f"{n} ROIs written to {path}")


@rois.command("to-labels")
@click.argument("roi_file", type=ExistingPath(exists=True, dir_okay=False, path_type=Path))
@click.option("--like", required=True, type=ExistingPath(exists=True, dir_okay=False, path_type=Path),
              help="Image whose shape (T, Z, Y, X) and pixel sizes the labels take.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Label OME-TIFF to write (never ROI_FILE or the --like image).")
@click.option("--overwrite", is_flag=True, help="Replace the output if it exists (default: refuse).")
@options_from(DEFAULTS.rois, only=["overlap"])
def rois_to_labels(roi_file: Path, like: Path, out: Path, overwrite: bool, overlap: str) -> None:
    """Rasterise ROI_FILE (RoiSet.zip or .roi) exactly as ImageJ does into a label image.

    Fails, writing nothing, when no ROI covers a pixel of the image. An existing output
    is replaced only with --overwrite; an input is never replaced.
    """
    from cellseg_bridge.io.roi_files import roi_zip_to_label_image

    report = run_api(roi_zip_to_label_image, roi_file, like, out, overlap=overlap, overwrite=overwrite)
    click.echo(report.summary())
    for problem in report.corrupt:
        click.echo(f"corrupt: {problem}", err=True)
    for index, name, reason in report.skipped:
        click.echo(f"skipped ROI {index} {name!r}: {reason}", err=True)

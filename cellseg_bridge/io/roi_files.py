"""File-level ROI conversions behind ``cellseg rois``: label image <-> ImageJ ``RoiSet.zip``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import xarray as xr

from cellseg_bridge.errors import InputError
from cellseg_bridge.io.paths import check_output
from cellseg_bridge.io.reader import open_image
from cellseg_bridge.io.roi_export import labels_to_rois, write_roi_zip
from cellseg_bridge.io.roi_import import RoiImportReport, rois_to_labels
from cellseg_bridge.io.writers import write_labels

log = logging.getLogger(__name__)


def _stack_axes(image: xr.DataArray, path: Path) -> str:
    """Axes of ``image`` without C and without singleton T/Z, e.g. ``"YX"``, ``"ZYX"``, ``"TZYX"``."""
    if image.sizes["C"] != 1:
        raise InputError(f"a label image must have one channel, this one has {image.sizes['C']}", path)
    return "".join(a for a in "TZ" if image.sizes[a] > 1) + "YX"


def label_image_to_roi_zip(
    labels_path: str | Path,
    out: str | Path | None = None,
    *,
    name_format: str | None = None,
    multipart: str | None = None,
    scene: int | str | None = None,
    overwrite: bool = False,
) -> tuple[Path, int]:
    """Write the ROIs of a label image (any readable format) as an ImageJ ``RoiSet.zip``.

    Parameters
    ----------
    labels_path : str or Path
        Label image; T and Z axes (when longer than 1) become ROI positions.
    out : str or Path, optional
        The zip to write; default ``<stem>_RoiSet.zip`` beside the input.
    name_format, multipart : str, optional
        See :func:`cellseg_bridge.io.roi_export.labels_to_rois`.
    scene : int or str, optional
        Scene of a multi-scene file.
    overwrite : bool
        Replace ``out`` if it exists (it is never the input itself: see
        :func:`cellseg_bridge.io.paths.check_output`).

    Returns
    -------
    path : Path
        The zip written.
    n_rois : int
        Number of ROIs in it.
    """
    labels_path = Path(labels_path)
    if out is None:
        stem = labels_path.name.split(".")[0]
        out = labels_path.with_name(f"{stem}_RoiSet.zip")
    out = check_output(out, [labels_path], overwrite=overwrite)
    image = open_image(labels_path, scene=scene)
    axes = _stack_axes(image, labels_path)
    dropped = {a: 0 for a in "TZ" if a not in axes}
    data = np.asarray(image.isel(C=0, **dropped).transpose(*axes).values)
    try:
        rois = labels_to_rois(data, name_format=name_format, multipart=multipart, axes=axes)
    except InputError as exc:
        raise InputError(exc.reason, labels_path) from exc
    path = write_roi_zip(rois, out)
    log.debug("%s: %d ROIs -> %s", labels_path, len(rois), path)
    return path, len(rois)


def roi_zip_to_label_image(
    rois_path: str | Path,
    like: str | Path,
    out: str | Path,
    *,
    overlap: str | None = None,
    overwrite: bool = False,
) -> RoiImportReport:
    """Rasterise an ImageJ ROI file (``.zip`` or ``.roi``) into a label OME-TIFF shaped like an image.

    Parameters
    ----------
    rois_path : str or Path
        ``RoiSet.zip`` or a single ``.roi``.
    like : str or Path
        Image giving the shape (T, Z, Y, X; channels are ignored) and pixel sizes.
    out : str or Path
        Label OME-TIFF to write.
    overlap : {"last", "first"}, optional
        Overlap rule (default ``DEFAULTS.rois.overlap``).
    overwrite : bool
        Replace ``out`` if it exists (never one of the inputs: see
        :func:`cellseg_bridge.io.paths.check_output`).

    Returns
    -------
    RoiImportReport
        What was converted, skipped, found corrupt and overlapping.

    Raises
    ------
    InputError
        ``out`` is an input or exists (without ``overwrite``); an input cannot be
        read; no ROI of the file gives a label on the image (all off the image,
        empty or without area): nothing is written then.
    """
    like = Path(like)
    out = check_output(out, [rois_path, like], overwrite=overwrite)
    image = open_image(like)
    axes = "".join(a for a in "TZ" if image.sizes[a] > 1) + "YX"
    shape = tuple(image.sizes[a] for a in axes)
    try:
        labels, report = rois_to_labels(rois_path, shape, axes=axes, overlap=overlap)
    except InputError as exc:
        if exc.path is not None:
            raise
        raise InputError(exc.reason, like) from exc  # the shape (e.g. too big for memory) is the image's
    if report.n_labels == 0:
        size = " x ".join(str(n) for n in shape)
        why = (f"none of its {report.n_rois} ROIs covers a pixel of the image ({size}, from {like.name})"
               if report.n_rois else f"it holds no readable ROI ({len(report.corrupt)} corrupt entries)")
        raise InputError(f"no labels to write: {why}; nothing written", rois_path)
    write_labels(labels, out, physical_pixel_sizes=image.attrs.get("physical_pixel_sizes"), dims=axes)
    log.debug("%s: %s", rois_path, report.summary())
    return report

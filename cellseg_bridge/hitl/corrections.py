"""Corrected ROIs of a HITL project: read a RoiSet.zip, check it fits its image, compare to the prediction.

Rules for a correction (each broken rule is an :class:`~cellseg_bridge.errors.InputError`
naming the zip):

* the file is a readable ``.zip`` (or ``.roi``) of ImageJ ROIs; corrupt entries
  are an error too (a half-read correction would teach the network wrong cells);
* it has at least one area ROI (polygon, freehand, traced, oval, rectangle,
  composite), unless ``allow_empty`` says the image really has no cells
  ("empty corrections" are usually an export of the wrong, empty ROI Manager);
* no area ROI lies entirely outside the image (a RoiSet made on another, larger
  image); ROIs that only overhang the border are clipped, as ImageJ does;
* line and point ROIs are ignored (logged).

A QuPath GeoJSON (``.geojson``, e.g. QuPath's *Export as GeoJSON* of the corrected cells) is
taken by the same rules, one cell per polygon feature, rasterised as our ROIs are
(:mod:`cellseg_bridge.io.geojson`): points and lines ignored, self-intersecting polygons and
features entirely outside the image refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cellseg_bridge.core.metrics import match_labels
from cellseg_bridge.errors import InputError
from cellseg_bridge.io.paths import missing_reason
from cellseg_bridge.io.roi_import import RoiImportReport, is_area_roi, read_rois, roi_bounds, rois_to_labels

__all__ = ["Correction", "CorrectionChanges", "read_correction", "compare_to_prediction"]

logger = logging.getLogger(__name__)

#: Matched cells whose IoU with their predicted cell is at least this count as unchanged.
UNCHANGED_IOU = 0.999


@dataclass
class Correction:
    """A checked correction.

    Attributes
    ----------
    labels : ndarray of uint16/uint32, shape (Y, X)
        The corrected cells, one label per area ROI (in ROI order).
    n_rois : int
        ROIs in the file (all types).
    n_cells : int
        Labels made (area ROIs with pixels on the image).
    ignored : list of str
        ``"name: reason"`` of ROIs that gave no cell (lines, points).
    """

    labels: np.ndarray
    n_rois: int
    n_cells: int
    ignored: list[str] = field(default_factory=list)


@dataclass
class CorrectionChanges:
    """How a correction differs from the prediction it was made from (IoU >= 0.5 matching).

    Attributes
    ----------
    unchanged : int
        Predicted cells kept as they were.
    reshaped : int
        Predicted cells kept but edited (matched, IoU below 0.999).
    added : int
        Corrected cells without a predicted match (drawn by the user).
    deleted : int
        Predicted cells without a corrected match (removed by the user).
    """

    unchanged: int = 0
    reshaped: int = 0
    added: int = 0
    deleted: int = 0

    def to_dict(self) -> dict[str, int]:
        """The counts as a dict."""
        return {"unchanged": self.unchanged, "reshaped": self.reshaped, "added": self.added, "deleted": self.deleted}


def read_correction(path: str | Path, shape: tuple[int, int], *, image_name: str = "the image",
                    allow_empty: bool = False) -> Correction:
    """Read a corrected RoiSet and rasterise it at the image's size, checking that it fits.

    Parameters
    ----------
    path : str or Path
        ``RoiSet.zip`` (or a single ``.roi``) saved from Fiji's ROI Manager, or a QuPath ``.geojson``.
    shape : (int, int)
        ``(Y, X)`` of the image it belongs to.
    image_name : str
        Used in messages.
    allow_empty : bool
        Accept a correction without cells (an image that really has none).

    Returns
    -------
    Correction

    Raises
    ------
    InputError
        See the module docstring.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(missing_reason(path, "ROI file"), path)
    if path.suffix.lower() == ".geojson":
        return _read_geojson_correction(path, shape, image_name, allow_empty)
    if path.suffix.lower() not in (".zip", ".roi"):
        raise InputError("corrections must be an ImageJ RoiSet .zip (or a .roi file) or a QuPath .geojson", path)
    problems: list[str] = []
    rois = read_rois(path, problems=problems)
    if problems:
        raise InputError(
            f"{len(problems)} ROI entr{'y' if len(problems) == 1 else 'ies'} could not be read "
            f"({problems[0]}{' ...' if len(problems) > 1 else ''}): save the RoiSet again from Fiji",
            path,
        )
    n_area = sum(1 for r in rois if is_area_roi(r))
    if n_area == 0 and not allow_empty:
        what = "no ROIs" if not rois else f"{len(rois)} ROI(s) but none encloses an area"
        raise InputError(
            f"empty corrections: the file has {what}; save the ROI Manager with the cells of "
            f"{image_name} (or pass allow_empty / --allow-empty if it truly has no cells)",
            path,
        )
    labels, report = rois_to_labels(rois, shape=tuple(shape))
    _check_fit(report, path, shape, image_name, rois)
    ignored = [f"{name or index}: {reason}" for index, name, reason in report.skipped]
    for line in ignored:
        logger.info("%s: ROI %s (ignored)", path.name, line)
    if report.n_labels == 0 and not allow_empty:
        raise InputError(f"empty corrections: no ROI gives a cell on {image_name}", path)
    return Correction(labels=labels, n_rois=report.n_rois, n_cells=report.n_labels, ignored=ignored)


def _read_geojson_correction(path: Path, shape: tuple[int, int], image_name: str, allow_empty: bool) -> Correction:
    """:func:`read_correction` of a QuPath GeoJSON."""
    from cellseg_bridge.io.geojson import geojson_to_labels, read_geojson

    features = read_geojson(path)
    if not any(f.kind == "area" for f in features) and not allow_empty:
        what = "no features" if not features else f"{len(features)} feature(s) but no polygon (only points or lines)"
        raise InputError(f"empty corrections: the file has {what}; export the cells of {image_name} as polygons "
                         "(or pass allow_empty / --allow-empty if it truly has no cells)", path)
    labels, report = geojson_to_labels(features, shape)
    off = [(i, name, reason) for i, name, reason in report.skipped if "outside" in reason]
    if off:
        examples = "; ".join(f"{name or i!r} {reason}" for i, name, reason in off[:3])
        raise InputError(f"{len(off)} of {report.n_rois} features lie outside the {shape[1]}x{shape[0]} (width x "
                         f"height) image {image_name} ({examples}): was this GeoJSON exported from another image?",
                         path)
    ignored = [f"{name or index}: {reason}" for index, name, reason in report.skipped]
    for line in ignored:
        logger.info("%s: feature %s (ignored)", path.name, line)
    if report.n_labels == 0 and not allow_empty:
        raise InputError(f"empty corrections: no feature gives a cell on {image_name}", path)
    return Correction(labels=labels, n_rois=report.n_rois, n_cells=report.n_labels, ignored=ignored)


def _check_fit(report: RoiImportReport, path: Path, shape: tuple[int, int], image_name: str, rois) -> None:
    ly, lx = shape
    off = []
    for index, name, reason in report.skipped:
        if "empty mask" not in reason and "outside" not in reason:
            continue
        left, top, width, height = roi_bounds(rois[index])
        if left >= lx or top >= ly or left + max(width, 1) <= 0 or top + max(height, 1) <= 0 or "outside" in reason:
            off.append((index, name, (left, top, width, height)))
    if not off:
        return
    examples = [f"{name or index!r} at x {b[0]}..{b[0] + b[2]}, y {b[1]}..{b[1] + b[3]}" for index, name, b in off[:3]]
    raise InputError(
        f"{len(off)} of {report.n_rois} ROIs lie outside the {lx}x{ly} (width x height) image "
        f"{image_name} ({'; '.join(examples)}): this RoiSet does not fit the image "
        "(was it saved from another image?)",
        path,
    )


def compare_to_prediction(correction: np.ndarray, prediction: np.ndarray) -> CorrectionChanges:
    """Count unchanged, reshaped, added and deleted cells between a prediction and its correction.

    Parameters
    ----------
    correction, prediction : ndarray of int, shape (Y, X)
        Label images (0 = background).
    """
    corr = np.asarray(correction).astype(np.int64, copy=False)
    pred = np.asarray(prediction).astype(np.int64, copy=False)
    n_corr = int(np.unique(corr[corr > 0]).size)
    n_pred = int(np.unique(pred[pred > 0]).size)
    t, _, iou = match_labels(corr, pred, 0.5)
    unchanged = int(np.count_nonzero(iou >= UNCHANGED_IOU))
    return CorrectionChanges(
        unchanged=unchanged, reshaped=int(t.size) - unchanged, added=n_corr - int(t.size), deleted=n_pred - int(t.size)
    )

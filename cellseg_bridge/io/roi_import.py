"""ImageJ ROI files (``.roi``, ``RoiSet.zip``) -> masks and label images.

Long module: one reader that takes every ImageJ ROI type and option (the geometry itself
lives in :mod:`cellseg_bridge.core.roi`); its parts share the ROI record and report.

Reading is done with :mod:`roifile`; rasterisation follows ImageJ 1.53t pixel for pixel
(see :mod:`cellseg_bridge.core.roi.rasterize`): ``roi_to_mask`` equals what
``ImageProcessor.fill(roi)`` paints in ImageJ, parts off the image clipped.

Positions: ImageJ ROIs carry either hyperstack positions (channel, slice, frame; 1-based,
0 = all) or a single stack ``position`` (1-based stack index, 0 = all planes).
:func:`rois_to_labels` uses them to place each ROI in a (Z, Y, X) or (T, C, Z, Y, X)-like
label volume.
"""

from __future__ import annotations

import logging
import struct
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from roifile import ROI_OPTIONS, ROI_SUBTYPE, ROI_TYPE, ImagejRoi

from cellseg_bridge.config import DEFAULTS
from cellseg_bridge.core.roi import rasterize as rz
from cellseg_bridge.errors import InputError
from cellseg_bridge.io.memory import check_allocation
from cellseg_bridge.io.paths import missing_reason

log = logging.getLogger(__name__)

__all__ = [
    "RoiImportReport",
    "read_rois",
    "is_area_roi",
    "roi_local_mask",
    "roi_to_mask",
    "rois_to_labels",
    "roi_planes",
]

#: ROI types that enclose an area (others are lines or points and are skipped).
AREA_TYPES = frozenset({ROI_TYPE.POLYGON, ROI_TYPE.RECT, ROI_TYPE.OVAL, ROI_TYPE.FREEHAND, ROI_TYPE.TRACED})
_MAX_ZIP_ENTRY = 64 * 1024 * 1024


@dataclass
class RoiImportReport:
    """What :func:`rois_to_labels` did with each ROI.

    Attributes
    ----------
    source : str or None
        The file read, if a path was given.
    n_rois : int
        ROIs read (corrupt entries not counted).
    n_labels : int
        Labels written (``1..n_labels``).
    label_to_roi : list of int
        ``label_to_roi[k-1]`` is the index (in the ROI list) of label ``k``.
    label_names : list of str
        ROI name of each label (``""`` when unnamed).
    skipped : list of (int, str, str)
        ``(roi index, name, reason)`` for ROIs that gave no label: non-area types
        (line, polyline, freeline, angle, point, multipoint), empty masks (entirely
        off the image or degenerate), positions outside the volume.
    corrupt : list of str
        ``"entry: reason"`` for zip entries (or files) that could not be decoded.
    overlap_rule : str
        ``"last"`` (later ROI wins) or ``"first"`` (earlier ROI keeps its pixels).
    overlap_pixels : int
        Pixels (voxels) covered by two or more ROIs.
    overlap_pairs : list of (int, int)
        Label pairs ``(a, b)``, ``a < b``, that share at least one pixel.
    approximated : list of (int, str, str)
        ROIs rasterised without a guarantee of matching ImageJ exactly (spline-fitted
        polygons, sub-pixel rectangles/ovals), with the reason.
    """

    source: str | None = None
    n_rois: int = 0
    n_labels: int = 0
    label_to_roi: list[int] = field(default_factory=list)
    label_names: list[str] = field(default_factory=list)
    skipped: list[tuple[int, str, str]] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    overlap_rule: str = "last"
    overlap_pixels: int = 0
    overlap_pairs: list[tuple[int, int]] = field(default_factory=list)
    approximated: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def n_overlap_pairs(self) -> int:
        """Number of label pairs that overlap."""
        return len(self.overlap_pairs)

    def summary(self) -> str:
        """One line for logs and the CLI."""
        return (
            f"{self.n_labels} labels from {self.n_rois} ROIs; skipped {len(self.skipped)}, "
            f"corrupt {len(self.corrupt)}, overlaps {self.overlap_pixels} px in "
            f"{self.n_overlap_pairs} pairs (rule {self.overlap_rule!r})"
        )


# --------------------------------------------------------------------------- reading


def _check_roi_bytes(data: bytes) -> ImagejRoi:
    """Decode one ROI, raising ValueError with a reason when the bytes are not a usable ROI."""
    if len(data) < 64:
        raise ValueError(f"too short for an ImageJ ROI ({len(data)} bytes < 64)")
    if data[:4] != b"Iout":
        raise ValueError(f"not an ImageJ ROI (starts with {data[:4]!r}, expected b'Iout')")
    try:
        roi = ImagejRoi.frombytes(data)
    except (ValueError, struct.error, TypeError, IndexError, OverflowError) as exc:
        raise ValueError(f"cannot decode ImageJ ROI: {exc}") from exc
    if roi.roitype in (
        ROI_TYPE.POLYGON,
        ROI_TYPE.FREEHAND,
        ROI_TYPE.TRACED,
        ROI_TYPE.POLYLINE,
        ROI_TYPE.FREELINE,
        ROI_TYPE.ANGLE,
        ROI_TYPE.POINT,
    ) and not roi.composite:
        is_shape = roi.roitype == ROI_TYPE.FREEHAND and roi.subtype in (
            ROI_SUBTYPE.ELLIPSE,
            ROI_SUBTYPE.ROTATED_RECT,
        )
        if roi.integer_coordinates is None and not is_shape:
            raise ValueError(f"{roi.roitype.name} ROI without coordinates")
    if roi.composite and roi.multi_coordinates is None:
        raise ValueError("composite ROI without path data")
    return roi


def _read_zip(path: Path, problems: list[str]) -> list[ImagejRoi]:
    rois: list[ImagejRoi] = []
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"not a readable zip file: {exc}", path) from exc
    with zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            entry = info.filename
            if not entry.lower().endswith(".roi"):  # ImageJ's ROI Manager reads only these
                log.debug("%s: ignoring zip entry %r (not a .roi)", path, entry)
                continue
            try:
                if info.file_size > _MAX_ZIP_ENTRY:
                    raise ValueError(f"entry too large ({info.file_size} bytes)")
                data = zf.read(info)
                roi = _check_roi_bytes(data)
            except (ValueError, zipfile.BadZipFile, zlib.error, OSError, RuntimeError, EOFError) as exc:
                err = InputError(f"zip entry {entry!r}: {exc}", path)
                log.warning("skipping corrupt ROI: %s", err)
                problems.append(f"{entry}: {exc}")
                continue
            if not roi.name:
                roi.name = entry[:-4] if entry.lower().endswith(".roi") else entry
            rois.append(roi)
    return rois


def read_rois(path: str | Path, *, problems: list[str] | None = None) -> list[ImagejRoi]:
    """Read the ROIs of an ImageJ ``.roi`` file or a ROI Manager ``.zip``.

    Zip entries not named ``*.roi`` are ignored, as ImageJ's ROI Manager does.

    Parameters
    ----------
    path : str or Path
        A ``.roi`` file or a zip of ``.roi`` entries (``RoiSet.zip``).
    problems : list of str, optional
        Receives ``"entry: reason"`` for each zip entry that could not be decoded; such
        entries are skipped with a warning, the others are returned.

    Returns
    -------
    list of roifile.ImagejRoi
        In file order. Unnamed ROIs get their file or entry name (as ImageJ does).

    Raises
    ------
    InputError
        The file is missing, is not a zip/ROI, or a single ``.roi`` file is corrupt.
    """
    path = Path(path)
    if problems is None:
        problems = []
    if not path.is_file():
        raise InputError(missing_reason(path, "ROI file"), path)
    if zipfile.is_zipfile(path):
        return _read_zip(path, problems)
    try:
        data = path.read_bytes()
        if data[:2] == b"PK":  # a zip whose table of contents is missing or damaged
            raise ValueError("corrupt or truncated zip file (its table of contents cannot be read)")
        roi = _check_roi_bytes(data)
    except (ValueError, OSError) as exc:
        raise InputError(str(exc), path) from exc
    if not roi.name:
        roi.name = path.name[:-4] if path.name.lower().endswith(".roi") else path.name
    return [roi]


# --------------------------------------------------------------------------- geometry


def is_area_roi(roi: ImagejRoi) -> bool:
    """True for ROIs that enclose an area (rectangle, oval, polygon, freehand, traced, composite).

    Text and image overlays (rectangle ROIs with subtype TEXT or IMAGE) are annotations,
    not regions, and count as non-area.
    """
    if roi.composite:
        return True
    if roi.subtype in (ROI_SUBTYPE.TEXT, ROI_SUBTYPE.IMAGE):
        return False
    return roi.roitype in AREA_TYPES


def _signed_rel(v: np.ndarray) -> np.ndarray:
    """Relative integer coordinates as ImageJ reads them (signed, unless below -5000)."""
    v = np.asarray(v, np.int64)
    return np.where(v >= 65536 - 5000, v - 65536, v)


def _ij_short(value: int) -> int:
    """A header coordinate as ImageJ reads its 16 bits: signed, unless below -5000.

    roifile may unwrap some values differently (e.g. a zero bottom of an empty ROI
    becomes 65536), so the raw bits are re-read with ImageJ's rule.
    """
    raw = int(value) & 0xFFFF
    signed = raw - 65536 if raw >= 32768 else raw
    return signed if signed >= -5000 else raw


def roi_bounds(roi: ImagejRoi) -> tuple[int, int, int, int]:
    """``(left, top, width, height)`` of the header, as ImageJ decodes them."""
    left, top = _ij_short(roi.left), _ij_short(roi.top)
    return left, top, _ij_short(roi.right) - left, _ij_short(roi.bottom) - top


def _header_float(roi: ImagejRoi) -> float:
    """The float ImageJ reads at header offset 52 (ellipse aspect ratio, rotated-rect width)."""
    order = roi.byteorder
    raw = struct.pack(
        order + "BBh",
        int(roi.arrow_style_or_aspect_ratio) & 0xFF,
        int(roi.arrow_head_size) & 0xFF,
        int(np.int16(np.uint16(int(roi.rounded_rect_arc_size) & 0xFFFF))),
    )
    return float(struct.unpack(order + "f", raw)[0])


def _integer_vertices(roi: ImagejRoi) -> tuple[np.ndarray, np.ndarray]:
    rel = _signed_rel(roi.integer_coordinates)
    left, top, _, _ = roi_bounds(roi)
    return rel[:, 0] + left, rel[:, 1] + top


def roi_local_mask(
    roi: ImagejRoi, clip: tuple[int, int] | None = None
) -> tuple[np.ndarray, tuple[int, int]] | None:
    """The ROI's own mask, the size of its integer bounds, and where it lies.

    Parameters
    ----------
    roi : roifile.ImagejRoi
    clip : (height, width), optional
        Image size: every shape is then computed only where it lies on the image (a
        ROI with huge coordinates costs what its part on the image costs), the
        returned origin moving with it.

    Returns
    -------
    (mask, (x0, y0)) or None
        ``mask`` is a bool array (h, w) equal to ImageJ's ``roi.getMask()`` (all True for
        a plain rectangle) and ``(x0, y0)`` its position (``roi.getBounds()``). None for
        ROIs without area (lines, points).
    """
    if not is_area_roi(roi):
        return None
    if roi.composite:
        return rz.shape_mask(np.asarray(roi.multi_coordinates, np.float32), clip=clip)
    left, top, width, height = roi_bounds(roi)
    # ImageJ's Roi and OvalRoi make empty or negative sizes one pixel
    width, height = max(width, 1), max(height, 1)
    if clip is None:
        window = (0, 0, width, height)
    else:  # the part of the bounds on the image, in the ROI's local coordinates
        window = (-left, -top, int(clip[1]) - left, int(clip[0]) - top)
    wx0, wy0 = max(window[0], 0), max(window[1], 0)
    wx1, wy1 = min(window[2], width), min(window[3], height)
    if roi.roitype == ROI_TYPE.RECT:
        arc = int(roi.rounded_rect_arc_size)
        if arc > 0:
            return rz.rounded_rect_mask(left, top, width, height, arc, clip=clip)
        return rz.rectangle_mask(wx1 - wx0, wy1 - wy0), (left + wx0, top + wy0)
    if roi.roitype == ROI_TYPE.OVAL:
        return rz.oval_mask(width, height, (wx0, wy0, wx1, wy1)), (left + wx0, top + wy0)
    if roi.roitype == ROI_TYPE.FREEHAND and roi.subtype == ROI_SUBTYPE.ELLIPSE:
        return rz.ellipse_mask(roi.x1, roi.y1, roi.x2, roi.y2, _header_float(roi), clip=clip)
    if roi.roitype == ROI_TYPE.FREEHAND and roi.subtype == ROI_SUBTYPE.ROTATED_RECT:
        return rz.rotated_rect_mask(roi.x1, roi.y1, roi.x2, roi.y2, _header_float(roi), clip=clip)
    # polygon, freehand, traced (ImageJ draws spline-fitted ones through their spline)
    fill = rz.spline_polygon_mask if roi.options & ROI_OPTIONS.SPLINE_FIT else rz.polygon_mask
    if roi.subpixelresolution and roi.subpixel_coordinates is not None:
        xy = np.asarray(roi.subpixel_coordinates, np.float32)
        return fill(xy[:, 0], xy[:, 1], subpixel=True, clip=clip)
    x, y = _integer_vertices(roi)
    return fill(x, y, subpixel=False, clip=clip)


def _approximation_reason(roi: ImagejRoi) -> str | None:
    if roi.composite:
        return None
    if roi.options & ROI_OPTIONS.SPLINE_FIT and roi.roitype in (ROI_TYPE.FREEHAND, ROI_TYPE.TRACED):
        # ImageJ sizes the spline from a smoothed/traced perimeter for these types; we use
        # the polygon perimeter, so the number of spline points may differ
        return "spline-fitted freehand/traced ROI: spline point count may differ from ImageJ"
    return None


def roi_to_mask(roi: ImagejRoi, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise one ROI into a ``(height, width)`` bool mask, as ImageJ fills it.

    Parameters
    ----------
    roi : roifile.ImagejRoi
        An area ROI.
    shape : (int, int)
        ``(height, width)`` of the image; parts of the ROI off the image are clipped.

    Returns
    -------
    ndarray of bool

    Raises
    ------
    InputError
        The ROI has no area (line, polyline, freeline, angle, point).
    """
    if len(shape) != 2:
        raise InputError(f"roi_to_mask needs a (height, width) shape, got {tuple(shape)}")
    local = roi_local_mask(roi, clip=(int(shape[0]), int(shape[1])))
    if local is None:
        raise InputError(f"ROI {roi.name!r} is a {roi.roitype.name} ROI, which has no area")
    reason = _approximation_reason(roi)
    if reason:
        log.warning("ROI %r: %s", roi.name, reason)
    mask, origin = local
    return rz.place_mask(mask, origin, (int(shape[0]), int(shape[1])))


# --------------------------------------------------------------------------- labels


def _default_axes(ndim: int) -> str:
    defaults = {2: "YX", 3: "ZYX", 4: "TZYX", 5: "TCZYX"}  # 4: the labels of segment()
    if ndim not in defaults:
        raise InputError(f"a {ndim}-D shape needs an explicit axes string (e.g. 'CZYX')")
    return defaults[ndim]


def roi_planes(roi: ImagejRoi, shape: Sequence[int], axes: str) -> list[tuple] | None:
    """Index tuples (over the non-YX axes) of the planes a ROI belongs to.

    ``c_position``/``z_position``/``t_position`` (hyperstack positions, 1-based, 0 = all)
    are used when any is set; otherwise ``position`` (1-based stack index, 0 = all) is
    the plane along the only non-YX axis, or ImageJ's stack index (channel fastest, then
    slice, then frame) when there are several. Returns None when a position lies outside
    the volume.
    """
    other = [a for a in axes if a not in "YX"]
    sizes = {a: int(s) for a, s in zip(axes, shape)}
    per_axis: dict[str, int] = {a: 0 for a in other}
    hyper = {"C": int(roi.c_position), "Z": int(roi.z_position), "T": int(roi.t_position)}
    if any(hyper.values()):
        for a in other:
            per_axis[a] = hyper.get(a, 0)
    elif int(roi.position) > 0 and other:
        n = int(roi.position)
        if len(other) == 1:
            per_axis[other[0]] = n
        else:
            nc, nz, nt = sizes.get("C", 1), sizes.get("Z", 1), sizes.get("T", 1)
            if n > nc * nz * nt:
                return None
            k = n - 1
            pos = {"C": k % nc + 1, "Z": (k // nc) % nz + 1, "T": (k // (nc * nz)) % nt + 1}
            for a in other:
                per_axis[a] = pos.get(a, 0)
    ranges = []
    for a in other:
        p = per_axis[a]
        if p == 0:
            ranges.append(range(sizes[a]))
        elif 1 <= p <= sizes[a]:
            ranges.append(range(p - 1, p))
        else:
            return None
    planes: list[tuple] = [()]
    for r in ranges:
        planes = [pl + (i,) for pl in planes for i in r]
    return planes


def rois_to_labels(
    rois_or_path: str | Path | Iterable[ImagejRoi],
    shape: Sequence[int],
    *,
    axes: str | None = None,
    overlap: str | None = None,
) -> tuple[np.ndarray, RoiImportReport]:
    """Rasterise ROIs into a label image, one label per area ROI, in ROI order.

    Parameters
    ----------
    rois_or_path : path or iterable of roifile.ImagejRoi
        A ``.roi``/``.zip`` file (corrupt zip entries are skipped and reported) or ROIs.
    shape : sequence of int
        ``(Y, X)``, ``(Z, Y, X)``, or any shape described by ``axes``.
    axes : str, optional
        Axis letters for ``shape`` from ``T``, ``C``, ``Z``, ``Y``, ``X`` (default
        ``YX``, ``ZYX``, ``TZYX`` (the labels of ``segment``) or ``TCZYX`` by dimension). Positions of ROIs are ignored for 2-D
        shapes.
    overlap : {"last", "first"}, optional
        Who owns a pixel claimed by several ROIs: the later ROI (``"last"``, what ImageJ
        shows when it fills ROIs in order) or the earlier one (``"first"``). Default
        ``DEFAULTS.rois.overlap``.

    Returns
    -------
    labels : ndarray of uint16 (uint32 beyond 65535 labels)
        Label ``k`` is the k-th area ROI that gave a non-empty mask (see
        ``report.label_to_roi``).
    report : RoiImportReport
    """
    overlap = DEFAULTS.rois.overlap if overlap is None else overlap
    if overlap not in ("last", "first"):
        raise InputError(f"overlap must be 'last' or 'first', got {overlap!r}")
    shape = tuple(int(s) for s in shape)
    axes = (axes or _default_axes(len(shape))).upper()
    if len(axes) != len(shape) or set(axes) - set("TCZYX") or len(set(axes)) != len(axes):
        raise InputError(f"axes {axes!r} do not describe a {len(shape)}-D shape {shape}")
    if "Y" not in axes or "X" not in axes:
        raise InputError(f"axes {axes!r} must contain Y and X")
    report = RoiImportReport(overlap_rule=overlap)
    if isinstance(rois_or_path, (str, Path)):
        report.source = str(rois_or_path)
        rois = read_rois(rois_or_path, problems=report.corrupt)
    else:
        rois = list(rois_or_path)
    report.n_rois = len(rois)

    # work in (planes..., Y, X) order, transposed back at the end
    order = [axes.index(a) for a in axes if a not in "YX"] + [axes.index("Y"), axes.index("X")]
    work_axes = "".join(axes[i] for i in order)
    work_shape = tuple(shape[i] for i in order)
    height, width = work_shape[-2], work_shape[-1]
    n_area = sum(1 for r in rois if is_area_roi(r))
    dtype = np.uint16 if n_area < 65535 else np.uint32
    n_pixels = int(np.prod(work_shape, dtype=np.float64))
    size = " x ".join(str(n) for n in shape)
    check_allocation(n_pixels * (np.dtype(dtype).itemsize + 1), f"the label image ({size} pixels)")
    labels = np.zeros(work_shape, dtype)
    coverage = np.zeros(work_shape, np.uint8)  # 0, 1, or 2 = "two or more ROIs"
    boxes = np.zeros((max(n_area, 1), 4), np.int64)  # y0, y1, x0, x1 of each label's clipped mask
    masks: list[np.ndarray] = []
    plane_sets: list[set] = []
    pairs: set[tuple[int, int]] = set()

    for index, roi in enumerate(rois):
        name = roi.name or ""
        local = roi_local_mask(roi, clip=(height, width))
        if local is None:
            annotation = roi.subtype in (ROI_SUBTYPE.TEXT, ROI_SUBTYPE.IMAGE)
            kind = (roi.subtype if annotation else roi.roitype).name.lower()
            report.skipped.append((index, name, f"{kind} ROI has no area"))
            continue
        reason = _approximation_reason(roi)
        if reason:
            report.approximated.append((index, name, reason))
        planes = roi_planes(roi, work_shape, work_axes) if len(work_shape) > 2 else [()]
        if planes is None:
            report.skipped.append((index, name, "position outside the image"))
            continue
        mask, (x0, y0) = local
        mh, mw = mask.shape
        xa, ya = max(x0, 0), max(y0, 0)
        xb, yb = min(x0 + mw, width), min(y0 + mh, height)
        crop = mask[ya - y0 : yb - y0, xa - x0 : xb - x0] if (xa < xb and ya < yb) else None
        if crop is None or not crop.any():
            report.skipped.append((index, name, "empty mask (off the image or degenerate)"))
            continue
        label = len(report.label_to_roi) + 1
        report.label_to_roi.append(index)
        report.label_names.append(name)
        pset = set(planes)
        done = boxes[: label - 1]
        near = np.flatnonzero(
            (done[:, 0] < yb) & (ya < done[:, 1]) & (done[:, 2] < xb) & (xa < done[:, 3])
        )
        for other in near.tolist():
            if not (plane_sets[other] & pset):
                continue
            oy0, oy1, ox0, ox1 = boxes[other].tolist()
            iy0, iy1, ix0, ix1 = max(ya, oy0), min(yb, oy1), max(xa, ox0), min(xb, ox1)
            a = crop[iy0 - ya : iy1 - ya, ix0 - xa : ix1 - xa]
            b = masks[other][iy0 - oy0 : iy1 - oy0, ix0 - ox0 : ix1 - ox0]
            if np.any(a & b):
                pairs.add((other + 1, label))
        boxes[label - 1] = (ya, yb, xa, xb)
        masks.append(crop)
        plane_sets.append(pset)
        for plane in planes:
            target = labels[plane][ya:yb, xa:xb]
            cov = coverage[plane][ya:yb, xa:xb]
            cov[crop] = np.minimum(cov[crop], 1) + 1
            if overlap == "last":
                target[crop] = label
            else:
                target[crop & (target == 0)] = label
    report.n_labels = len(report.label_to_roi)
    report.overlap_pixels = int(np.count_nonzero(coverage >= 2))
    report.overlap_pairs = sorted(pairs)
    inverse = np.argsort(order)
    labels = np.transpose(labels, inverse) if len(shape) > 2 else labels
    if report.skipped or report.corrupt or report.overlap_pixels:
        log.info("%s", report.summary())
    return labels, report


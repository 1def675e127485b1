"""Label images -> ImageJ ROIs (``.roi`` / ``RoiSet.zip``) that are pixel-exact.

Every ROI is traced along pixel EDGES (:mod:`cellseg_bridge.core.outlines`), so
ImageJ's own rasterisation of it (``roi.getMask()``, ``ip.fill(roi)``,
Measure's pixel count) returns exactly the pixels of its label. Cellpose's ROI
export traces through pixel centres and so loses a one-pixel rim; ours does not.

What each label becomes
-----------------------
- A label that is one piece without holes: a ``POLYGON`` ROI with one vertex per
  corner (collinear points dropped).
- ``multipart="composite"`` (default, :data:`~cellseg_bridge.config.DEFAULTS`):
  a label with holes or several pieces becomes ONE composite ROI, what ImageJ's
  *Edit > Selection > Create Selection* makes (a ``ShapeRoi``, stored as type
  ``RECT`` with a shape path of all loops). Outer loops run clockwise on screen
  and holes the other way, so the path fills correctly whatever winding rule
  a reader applies.
- ``multipart="pieces"``: one ROI per piece, named ``..._p1``, ``..._p2`` (in
  raster order of the pieces' top-left pixels) when a label has more than one.
  A single polygon cannot have a hole, so a piece WITH holes is still written
  as a composite ROI of that piece alone; exactness is never given up.
- Pieces are 8-connected: pixels touching only at a corner belong to the same
  piece, whose polygon passes through the shared corner twice (it touches
  itself there without crossing). ImageJ fills such polygons correctly.

Names and positions in stacks and hyperstacks
---------------------------------------------
Names come from ``name_format`` (default ``"cell_{label:04d}"``). Labels with
more axes than ``YX`` are cut into planes; an object spanning several planes
gives one ROI per plane, named with a suffix per varying axis, e.g.
``cell_0001_z012``. Suffix numbers are 1-based, the numbers ImageJ shows on its
sliders and stores in the ROI (so name and position agree in Fiji), padded to at
least 3 digits. ``name_format`` may use the fields ``{label}``, ``{c}``, ``{z}``,
``{t}`` (1-based) and ``{piece}`` (1-based); a suffix is only appended for a
varying field the format does not use.

Positions follow what ImageJ's ROI Manager records itself (verified with
ImageJ 1.53t's ``RoiDecoder``):

- labels with ONE non-spatial axis (``ZYX``, the default for 3D input, or
  ``TYX``/``CYX``) and no fixed ``position``: the plain stack index
  (``roi.getPosition()``; ImageJ's ``getZPosition()`` returns it too for a
  stack that is not a hyperstack);
- two or more non-spatial axes (``TZYX``, ``TCZYX``, ...) or any fixed
  ``position``: hyperstack positions ``c_position``, ``z_position``,
  ``t_position`` (``roi.getCPosition()`` etc.), 0 (= "all") for an axis that is
  neither in ``axes`` nor in ``position``. ImageJ then reports
  ``getPosition() == 0``.
"""

from __future__ import annotations

import logging
import string
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from roifile import ROI_OPTIONS, ROI_TYPE, ImagejRoi

from cellseg_bridge.config import DEFAULTS
from cellseg_bridge.core.outlines import Outlines, as_label_image, group_pieces, trace_outlines
from cellseg_bridge.errors import InputError
from cellseg_bridge.io.atomic import atomic_output

log = logging.getLogger(__name__)

__all__ = ["labels_to_rois", "name_fields", "plane_suffix", "write_roi_zip"]

MULTIPART_MODES = ("composite", "pieces")
#: Non-spatial axes a label array may have, and the ROI field each maps to.
_STACK_AXES = "TCZ"
#: Above this coordinate, integer ROI coordinates (int16 in the file) are not safe
#: (ImageJ 1.53t unwraps them up to 60535, measured): float (subpixel) coordinates are
#: written as well, which ImageJ reads instead when present. Composite ROIs store
#: float coordinates anyway.
_MAX_INT_COORD = 30000
# java.awt.geom.PathIterator segment types used in ImageJ's composite ROI path.
_SEG_MOVETO = 0.0
_SEG_LINETO = 1.0
_SEG_CLOSE = 4.0


def labels_to_rois(
    labels: object,
    *,
    name_format: str | None = None,
    multipart: str | None = None,
    axes: str | None = None,
    position: Mapping[str, int] | None = None,
) -> list[ImagejRoi]:
    """Turn a label image into pixel-exact ImageJ ROIs, one per label (and plane).

    Parameters
    ----------
    labels : array_like
        Label image, 0 = background, labels > 0 (see
        :func:`cellseg_bridge.core.outlines.as_label_image`): ``(Y, X)``, or
        a stack whose axes ``axes`` names.
    name_format : str, optional
        ROI name pattern, default ``DEFAULTS.rois.name_format``
        (``"cell_{label:04d}"``); see the module notes for fields and suffixes.
    multipart : {"composite", "pieces"}, optional
        How a label with several pieces or holes is written, default
        ``DEFAULTS.rois.multipart``; see the module notes.
    axes : str, optional
        Axis letters of ``labels``, from ``T``, ``C``, ``Z`` followed by
        ``YX``, e.g. ``"ZYX"``, ``"TZYX"``, ``"TCZYX"`` (any order of the
        non-spatial axes). Default: ``"YX"`` for 2D, ``"ZYX"`` for 3D input,
        and for 4D input ``"TZYX"``, what :func:`~cellseg_bridge.segmentation.pipeline.segment`
        returns, with its axes of length 1 left out (a 2D image gives plain 2D ROIs);
        required for more dimensions.
    position : mapping of str to int, optional
        0-based positions on hyperstack axes NOT in ``axes``, e.g.
        ``{"C": 1}`` for labels segmented from the second channel of a
        hyperstack. Giving any makes the ROIs carry hyperstack positions.

    Returns
    -------
    list of roifile.ImagejRoi
        Ordered by plane (C order over the non-spatial axes), then label, then
        piece. Empty when ``labels`` has no object.

    Raises
    ------
    InputError
        Non-integer or negative labels, unknown ``multipart``, bad ``axes`` or
        ``position``, or a ``name_format`` with unknown fields.
    """
    name_format = DEFAULTS.rois.name_format if name_format is None else name_format
    multipart = DEFAULTS.rois.multipart if multipart is None else multipart
    if multipart not in MULTIPART_MODES:
        raise InputError(f"multipart must be one of {MULTIPART_MODES}, got {multipart!r}")
    lab = as_label_image(labels)
    if axes is None and lab.ndim == 4:  # segment()'s (T, Z, Y, X): drop the axes of length 1
        kept = [i for i in range(2) if lab.shape[i] > 1]
        axes = "".join("TZ"[i] for i in kept) + "YX"
        lab = lab.reshape(tuple(lab.shape[i] for i in kept) + lab.shape[2:])
    axes = _check_axes(axes, lab.shape)
    fixed = _check_position(position, axes)
    stack_axes = axes[:-2]
    fields = name_fields(name_format)
    hyperstack = len(stack_axes) >= 2 or bool(fixed)

    rois: list[ImagejRoi] = []
    planes = lab.reshape((-1,) + lab.shape[-2:])
    plane_shape = lab.shape[:-2]
    sizes = dict(zip(stack_axes, plane_shape))
    for flat, plane in enumerate(planes):
        if not plane.any():
            continue
        index = np.unravel_index(flat, plane_shape) if plane_shape else ()
        where = {ax.lower(): int(i) + 1 for ax, i in zip(stack_axes, index)}  # 1-based
        suffix = plane_suffix(where, sizes, fields)
        if hyperstack:
            pos = {ax.lower(): i + 1 for ax, i in fixed.items()} | where
            roi_pos = {
                "c_position": pos.get("c", 0),
                "z_position": pos.get("z", 0),
                "t_position": pos.get("t", 0),
            }
        elif where:
            roi_pos = {"position": next(iter(where.values()))}
        else:
            roi_pos = {}
        rois.extend(_plane_rois(plane, name_format, fields, suffix, where, multipart, roi_pos))
    log.debug("%d ROIs from labels of shape %s (axes %s)", len(rois), lab.shape, axes)
    return rois


def write_roi_zip(rois: Iterable[ImagejRoi], path: str | Path) -> Path:
    """Write ROIs to a ``RoiSet.zip`` that ImageJ's ROI Manager opens, atomically.

    An existing file is REPLACED (never appended to), and only once the new
    zip is complete. Entries are named ``<roi name>.roi``; a name used twice
    gets ``-2``, ``-3``, ... (as ImageJ's ROI Manager does), so no entry is lost.

    Parameters
    ----------
    rois : iterable of roifile.ImagejRoi
        The ROIs, e.g. from :func:`labels_to_rois`.
    path : str or Path
        The zip file to write.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    used: set[str] = set()
    with atomic_output(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for i, roi in enumerate(rois):
                base = _entry_name(roi.name) or f"roi_{i + 1:04d}"
                entry, k = base, 1
                while entry.lower() in used:  # case-insensitive: zips are unpacked on such file systems
                    k += 1
                    entry = f"{base}-{k}"
                if k > 1:
                    log.warning("ROI name %r is used more than once; zip entry %r", roi.name, entry + ".roi")
                used.add(entry.lower())
                zf.writestr(entry + ".roi", roi.tobytes())
    return path


def _entry_name(name: str) -> str:
    """A zip entry stem for a ROI name: no folders, no ``.roi`` suffix."""
    name = name.replace("/", "_").replace("\\", "_").strip()
    return name[:-4] if name.lower().endswith(".roi") else name


def _check_axes(axes: str | None, shape: tuple[int, ...]) -> str:
    """Validate ``axes`` against ``shape``; return it upper-case."""
    ndim = len(shape)
    if axes is None:
        if ndim == 2:
            return "YX"
        if ndim == 3:
            return "ZYX"
        raise InputError(f"labels of shape {shape} need an explicit axes argument, e.g. 'TZYX'")
    axes = axes.upper()
    if len(axes) != ndim:
        raise InputError(f"axes {axes!r} do not match labels of shape {shape}")
    if not axes.endswith("YX"):
        raise InputError(f"axes must end with 'YX', got {axes!r}")
    stack = axes[:-2]
    if any(ax not in _STACK_AXES for ax in stack) or len(set(stack)) != len(stack):
        raise InputError(f"axes before 'YX' must be distinct letters of {_STACK_AXES!r}, got {axes!r}")
    return axes


def _check_position(position: Mapping[str, int] | None, axes: str) -> dict[str, int]:
    """Validate fixed 0-based hyperstack positions of axes not in ``axes``."""
    if not position:
        return {}
    fixed: dict[str, int] = {}
    for ax, value in position.items():
        key = str(ax).upper()
        if key not in _STACK_AXES:
            raise InputError(f"position keys must be among {_STACK_AXES!r}, got {ax!r}")
        if key in axes:
            raise InputError(f"position gives axis {key!r}, which the labels already have")
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise InputError(f"position of axis {key!r} must be a 0-based integer >= 0, got {value!r}")
        fixed[key] = int(value)
    return fixed


def plane_suffix(where: Mapping[str, int], sizes: Mapping[str, int], fields: set[str]) -> str:
    """The name suffix of a plane, e.g. ``_z012``, for the axes whose field a name format does not use.

    Parameters
    ----------
    where : mapping of str to int
        1-based position of the plane on each stack axis, keys lower-case (``"t"``, ``"z"``).
    sizes : mapping of str to int
        Length of each axis, keys upper-case; numbers are padded to its digits, at least 3.
    fields : set of str
        Fields the name format uses (:func:`name_fields`).
    """
    return "".join(f"_{ax}{pos:0{max(3, len(str(sizes[ax.upper()])))}d}" for ax, pos in where.items()
                   if ax not in fields)


def name_fields(name_format: str) -> set[str]:
    """Fields used by ``name_format`` (a ROI name pattern); InputError unless it formats."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(name_format) if f}
        name_format.format(label=1, c=1, z=1, t=1, piece=1)
    except (KeyError, IndexError, ValueError) as exc:
        raise InputError(
            f"name_format {name_format!r} cannot be used: {exc!r}; fields are label, c, z, t, piece"
        ) from exc
    return {f.split(".")[0].split("[")[0] for f in fields}


def _plane_rois(
    plane: np.ndarray,
    name_format: str,
    fields: set[str],
    suffix: str,
    where: dict[str, int],
    multipart: str,
    roi_pos: dict[str, int],
) -> list[ImagejRoi]:
    """ROIs of all labels of one 2D plane."""
    outlines = trace_outlines(plane)
    rois: list[ImagejRoi] = []
    areas = outlines.areas
    if len(outlines) == 0:
        return rois
    # per-loop bounding boxes at once (x0, y0, x1, y1); far cheaper than per-ROI min/max
    starts = outlines.offsets[:-1]
    lo = np.minimum.reduceat(outlines.vertices, starts, axis=0).tolist()
    hi = np.maximum.reduceat(outlines.vertices, starts, axis=0).tolist()
    for label, loops in outlines.by_label().items():
        fmt = {"c": 0, "z": 0, "t": 0} | where
        if len(loops) == 1:  # one piece, no hole: the common case
            name = name_format.format(label=label, piece=1, **fmt) + suffix
            i = int(loops[0])
            rois.append(_polygon_roi(outlines.loop(i), name, roi_pos, (*lo[i], *hi[i])))
            continue
        n_outer = int(np.count_nonzero(areas[loops] > 0))
        if multipart == "composite" or n_outer == 1:
            name = name_format.format(label=label, piece=1, **fmt) + suffix
            rois.append(_loops_roi(outlines, list(loops), name, roi_pos))
            continue
        for k, (outer, holes) in enumerate(group_pieces(outlines, loops), start=1):
            name = name_format.format(label=label, piece=k, **fmt) + suffix
            if "piece" not in fields:
                name += f"_p{k}"
            rois.append(_loops_roi(outlines, [outer, *holes], name, roi_pos))
    return rois


def _loops_roi(outlines: Outlines, loops: list[int], name: str, roi_pos: dict[str, int]) -> ImagejRoi:
    """A polygon ROI for a single loop, else a composite ROI."""
    if len(loops) == 1:
        return _polygon_roi(outlines.loop(loops[0]), name, roi_pos)
    return _composite_roi([outlines.loop(i) for i in loops], name, roi_pos)


def _polygon_roi(
    vertices: np.ndarray,
    name: str,
    roi_pos: dict[str, int],
    bounds: tuple[int, int, int, int] | None = None,
) -> ImagejRoi:
    """A POLYGON ROI with integer vertices at pixel corners; ``bounds`` = (x0, y0, x1, y1) if known."""
    if bounds is None:
        (left, top), (right, bottom) = vertices.min(axis=0).tolist(), vertices.max(axis=0).tolist()
    else:
        left, top, right, bottom = bounds
    roi = ImagejRoi(
        roitype=ROI_TYPE.POLYGON,
        name=name,
        left=left,
        top=top,
        right=right,
        bottom=bottom,
        n_coordinates=int(vertices.shape[0]),
        integer_coordinates=vertices - np.array([left, top], dtype=np.int32),
        **roi_pos,
    )
    if max(right, bottom) > _MAX_INT_COORD:
        # the file stores int16 bounds and offsets, which ImageJ unwraps only up to
        # 60535; beyond, it reads the float coordinates (exact up to 2**24)
        roi.options |= ROI_OPTIONS.SUB_PIXEL_RESOLUTION
        roi.subpixel_coordinates = vertices.astype(np.float32)
    return roi


def _composite_roi(loops: list[np.ndarray], name: str, roi_pos: dict[str, int]) -> ImagejRoi:
    """A composite (ShapeRoi) ROI: MOVETO, LINETO..., CLOSE for each loop, absolute coordinates."""
    parts = []
    for v in loops:
        seg = np.empty((v.shape[0], 3), dtype=np.float32)
        seg[:, 0] = _SEG_LINETO
        seg[0, 0] = _SEG_MOVETO
        seg[:, 1:] = v
        parts.append(seg.ravel())
        parts.append(np.array([_SEG_CLOSE], dtype=np.float32))
    path = np.concatenate(parts)
    allv = np.concatenate(loops)
    left, top = (int(v) for v in allv.min(axis=0))
    right, bottom = (int(v) for v in allv.max(axis=0))
    return ImagejRoi(
        roitype=ROI_TYPE.RECT,
        name=name,
        left=left,
        top=top,
        right=right,
        bottom=bottom,
        shape_roi_size=int(path.size),
        multi_coordinates=path,
        **roi_pos,
    )

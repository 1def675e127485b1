"""QuPath GeoJSON: label images -> ``<base>_cells.geojson`` and GeoJSON annotations -> label images.

The geometry (labels <-> polygons, pixel-exact) is :mod:`cellseg_bridge.core.polygons`; this module
holds the file format, following what QuPath (0.4 and later) writes and reads:

- a ``FeatureCollection`` with one ``Feature`` per cell and plane; ``geometry`` a ``Polygon``, or a
  ``MultiPolygon`` for a cell in several pieces, holes as interior rings, rings closed (first
  vertex repeated); coordinates in pixels, origin at the top-left CORNER of the image, vertices on
  pixel edges exactly as our ImageJ ROIs (integers);
- on planes other than the first, ``geometry.plane = {"c": -1, "z": z, "t": t}`` (0-based, QuPath's
  ``ImagePlane``);
- ``properties``: ``objectType`` (``"detection"`` or ``"annotation"``), ``name`` (the ROI name,
  e.g. ``cell_0007`` or ``cell_0007_t003``), ``classification`` (``{"name", "color"}``) and
  ``measurements`` (a map of name to number: label, area, centroid, mean intensity per channel).

Reading (:func:`read_geojson`, :func:`geojson_to_labels`) accepts a ``FeatureCollection``, a single
``Feature``, a list of features (QuPath's export without the collection option) or a bare
geometry. Object ``k`` with an area becomes label ``k`` (in file order), rasterised with the rule of
our ROIs, so that labels -> GeoJSON -> labels and GeoJSON -> labels -> GeoJSON are exact.

Bad input, and what happens (documented behaviour; errors are :class:`~cellseg_bridge.errors.InputError`
naming the file and the feature):

- not JSON, not GeoJSON, or coordinates that are not finite numbers: error;
- a self-intersecting polygon (edges that cross, not merely touch; also a hole crossing its
  exterior or overlapping parts of a MultiPolygon): error with the crossing point, since such a
  shape has no well-defined inside;
- ``Point``, ``MultiPoint``, ``LineString``, ``MultiLineString`` features and features without a
  geometry enclose no area: skipped and reported (like ImageJ line and point ROIs); when nothing
  else is left the callers (training, ``hitl add``) refuse the file;
- coordinates outside the image: a polygon overhanging the border is clipped (as ImageJ clips
  ROIs); one entirely outside is skipped and reported (training and ``hitl add`` refuse a file
  whose objects mostly lie outside: it belongs to another image); one whose bounding box is far
  larger than the image (:data:`MAX_BOX_FACTOR`) is an error;
- rings with fewer than 3 distinct vertices are dropped; an unclosed ring is closed.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cellseg_bridge.config import DEFAULTS
from cellseg_bridge.core.polygons import Polygon, fill_polygons, find_crossing, label_polygons, object_bounds
from cellseg_bridge.errors import InputError
from cellseg_bridge.io.atomic import atomic_output
from cellseg_bridge.io.roi_export import name_fields, plane_suffix
from cellseg_bridge.io.roi_import import RoiImportReport

log = logging.getLogger(__name__)

__all__ = ["GeoFeature", "OBJECT_TYPES", "geojson_to_labels", "labels_to_features", "read_geojson", "write_geojson"]

#: QuPath object types we write (QuPath reads any of its types).
OBJECT_TYPES = ("detection", "annotation")
#: An object whose bounding box is more than this many times the image's area is refused.
MAX_BOX_FACTOR = 16
#: Colour of the classification we write (QuPath shows objects in it).
CLASS_COLOR = (255, 0, 255)
_AREA_TYPES = ("Polygon", "MultiPolygon")
_OTHER_TYPES = {"Point": "point", "MultiPoint": "point", "LineString": "line", "MultiLineString": "line"}


# --------------------------------------------------------------------------- writing


def labels_to_features(
    labels: Any,
    *,
    axes: str | None = None,
    object_type: str = DEFAULTS.geojson.geojson_object_type,
    classification: str | None = DEFAULTS.geojson.geojson_classification,
    name_format: str | None = None,
    measurements: Mapping[tuple[int, int, int], Mapping[str, float]] | None = None,
) -> list[dict[str, Any]]:
    """One GeoJSON Feature (QuPath conventions) per label and plane of a label image.

    Parameters
    ----------
    labels : array_like
        ``(Y, X)`` or a stack with axes ``axes`` (``"TYX"``, ``"ZYX"``, ``"TZYX"``).
    axes : str, optional
        Default ``YX`` / ``ZYX`` / ``TZYX`` by dimension.
    object_type : {"detection", "annotation"}
        QuPath's ``objectType``.
    classification : str, optional
        Class name (None: unclassified).
    name_format : str, optional
        Object names, as ROI names (default ``DEFAULTS.rois.name_format``); planes of a stack add
        ``_t003``-style suffixes (1-based) as the ROIs do.
    measurements : mapping, optional
        ``(t, z, label) -> {name: value}`` (0-based t, z), written as ``properties.measurements``.

    Returns
    -------
    list of dict
        Features in plane order (t, then z), then label order.
    """
    if object_type not in OBJECT_TYPES:
        raise InputError(f"object type must be one of {', '.join(OBJECT_TYPES)}, got {object_type!r}")
    name_format = DEFAULTS.rois.name_format if name_format is None else name_format
    fields = name_fields(name_format)
    lab = np.asarray(labels)
    axes = (axes or {2: "YX", 3: "ZYX", 4: "TZYX"}.get(lab.ndim, "")).upper()
    if len(axes) != lab.ndim or axes not in ("YX", "TYX", "ZYX", "TZYX"):
        raise InputError(f"labels of shape {lab.shape} need axes YX, TYX, ZYX or TZYX, got {axes!r}")
    n_t = int(lab.shape[0]) if axes[0] == "T" else 1
    n_z = int(lab.shape[axes.index("Z")]) if "Z" in axes else 1
    lab4 = lab.reshape((n_t, n_z) + tuple(lab.shape[-2:]))
    sizes = {a: n for a, n in (("T", n_t), ("Z", n_z)) if n > 1}
    props: dict[str, Any] = {"objectType": object_type}
    if classification:
        props["classification"] = {"name": classification, "color": list(CLASS_COLOR)}
    features: list[dict[str, Any]] = []
    for t in range(n_t):
        for z in range(n_z):
            where = {a.lower(): p + 1 for a, p in (("T", t), ("Z", z)) if a in sizes}
            suffix = plane_suffix(where, sizes, fields)
            for label, polygons in label_polygons(lab4[t, z]).items():
                geometry = _geometry(polygons)
                if t or z:
                    geometry["plane"] = {"c": -1, "z": z, "t": t}
                name = name_format.format(label=label, c=0, z=z + 1, t=t + 1, piece=1) + suffix
                feature_props = dict(props, name=name)
                if measurements is not None and (t, z, label) in measurements:
                    feature_props["measurements"] = {k: _json_number(v) for k, v in measurements[t, z, label].items()}
                features.append({"type": "Feature", "geometry": geometry, "properties": feature_props})
    return features


def _geometry(polygons: list[Polygon]) -> dict[str, Any]:
    """A Polygon or MultiPolygon geometry with closed rings of integer coordinates."""
    coords = [[_closed(ring) for ring in polygon] for polygon in polygons]
    if len(coords) == 1:
        return {"type": "Polygon", "coordinates": coords[0]}
    return {"type": "MultiPolygon", "coordinates": coords}


def _closed(ring: np.ndarray) -> list[list[int]]:
    pts = np.asarray(ring).tolist()
    return pts + [pts[0]]


def _json_number(value: Any) -> float | int | None:
    """A measurement as a JSON number (NaN, which JSON lacks, as null)."""
    if isinstance(value, (int, np.integer)):
        return int(value)
    v = float(value)
    return v if math.isfinite(v) else None


def write_geojson(features: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write features as a GeoJSON ``FeatureCollection``, atomically (one feature per line).

    Parameters
    ----------
    features : sequence of dict
        E.g. from :func:`labels_to_features`.
    path : str or Path
        The ``.geojson`` file.

    Returns
    -------
    Path
    """
    path = Path(path)
    body = ",\n".join(json.dumps(f, separators=(",", ":"), allow_nan=False) for f in features)
    with atomic_output(path) as tmp:
        tmp.write_text('{"type":"FeatureCollection","features":[\n' + body + "\n]}\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- reading


@dataclass
class GeoFeature:
    """One feature of a GeoJSON file, parsed.

    Attributes
    ----------
    index : int
        0-based position in the file.
    name : str
        ``properties.name`` (``""`` if none).
    kind : str
        ``"area"`` (polygons), ``"point"``, ``"line"`` or ``"empty"`` (no usable geometry).
    polygons : list of Polygon
        The rings of an area feature (open, float ``(x, y)``).
    plane : (int, int)
        ``(z, t)`` from ``geometry.plane`` (QuPath), 0-based; ``(0, 0)`` when absent.
    object_type : str
        ``properties.objectType`` (``""`` if none).
    properties : dict
        All properties.
    """

    index: int
    name: str
    kind: str
    polygons: list[Polygon] = field(default_factory=list)
    plane: tuple[int, int] = (0, 0)
    object_type: str = ""
    properties: dict[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        """How messages name the feature."""
        return f"feature {self.index}" + (f" ({self.name!r})" if self.name else "")


def read_geojson(path: str | Path) -> list[GeoFeature]:
    """Parse the features of a GeoJSON file (QuPath's exports included).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    list of GeoFeature
        In file order; self-intersections are not checked here (:func:`geojson_to_labels` does).

    Raises
    ------
    InputError
        Missing file, not JSON, not GeoJSON, or bad coordinates.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("GeoJSON file not found", path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not a readable JSON file ({exc})", path) from exc
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        items = data.get("features")
        if not isinstance(items, list):
            raise InputError("FeatureCollection without a 'features' list", path)
    elif isinstance(data, dict) and data.get("type") == "Feature":
        items = [data]
    elif isinstance(data, dict) and isinstance(data.get("type"), str) and "coordinates" in data:
        items = [{"type": "Feature", "geometry": data, "properties": {}}]
    elif isinstance(data, list):
        items = data
    else:
        raise InputError("not GeoJSON: expected a FeatureCollection, a Feature or a list of features", path)
    return [_parse_feature(item, i, path) for i, item in enumerate(items)]


def _parse_feature(item: Any, index: int, path: Path) -> GeoFeature:
    if not isinstance(item, dict) or item.get("type") != "Feature":
        raise InputError(f"feature {index} is not a GeoJSON Feature", path)
    props = item.get("properties") or {}
    if not isinstance(props, dict):
        raise InputError(f"feature {index}: 'properties' is not an object", path)
    name = props.get("name")
    feature = GeoFeature(index=index, name=str(name) if name is not None else "", kind="empty",
                         object_type=str(props.get("objectType") or ""), properties=props)
    geometry = item.get("geometry")
    if geometry is None:
        return feature
    if not isinstance(geometry, dict):
        raise InputError(f"{feature.label()}: 'geometry' is not an object", path)
    plane = geometry.get("plane") or {}
    try:
        feature.plane = (int(plane.get("z", 0)), int(plane.get("t", 0)))
    except (AttributeError, TypeError, ValueError) as exc:
        raise InputError(f"{feature.label()}: unreadable 'plane' {plane!r}", path) from exc
    kinds: set[str] = set()
    try:
        _collect(geometry, feature.polygons, kinds)
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise InputError(f"{feature.label()}: bad geometry ({exc})", path) from exc
    if feature.polygons:
        feature.kind = "area"
    elif kinds:
        feature.kind = sorted(kinds)[-1]  # "point" or "line"
    return feature


def _collect(geometry: Mapping[str, Any], polygons: list[Polygon], kinds: set[str]) -> None:
    """Add the polygons of a geometry (and of the members of a collection) to ``polygons``."""
    kind = geometry.get("type")
    if kind == "GeometryCollection":
        for member in geometry.get("geometries") or []:
            _collect(member, polygons, kinds)
        return
    if kind in _OTHER_TYPES:
        kinds.add(_OTHER_TYPES[kind])
        return
    if kind not in _AREA_TYPES:
        raise ValueError(f"unknown geometry type {kind!r}")
    coords = geometry["coordinates"]
    for rings in [coords] if kind == "Polygon" else coords:
        polygon = [r for r in (_ring(ring) for ring in rings) if r is not None]
        if polygon:
            polygons.append(polygon)


def _ring(positions: Any) -> np.ndarray | None:
    """An open ring of float (x, y) from GeoJSON positions; None when it has under 3 distinct vertices."""
    pts = np.array([[float(p[0]), float(p[1])] for p in positions], np.float64).reshape(-1, 2)
    if not np.all(np.isfinite(pts)):
        raise ValueError("coordinates must be finite numbers")
    if pts.shape[0] > 1 and np.array_equal(pts[0], pts[-1]):
        pts = pts[:-1]
    if np.unique(pts, axis=0).shape[0] < 3:
        return None
    return pts


def geojson_to_labels(
    source: str | Path | Sequence[GeoFeature],
    shape: Sequence[int],
    *,
    overlap: str | None = None,
) -> tuple[np.ndarray, RoiImportReport]:
    """Rasterise the area features of a GeoJSON file into a 2D label image, one label per feature.

    Parameters
    ----------
    source : path or sequence of GeoFeature
        A ``.geojson`` file, or features from :func:`read_geojson`.
    shape : (int, int)
        ``(height, width)`` of the image.
    overlap : {"last", "first"}, optional
        Who owns a pixel two features claim; default ``DEFAULTS.rois.overlap``.

    Returns
    -------
    labels : numpy.ndarray
        ``uint16`` (``uint32`` beyond 65534 labels); label ``k`` is the k-th area feature with
        pixels on the image.
    report : RoiImportReport
        As for ROIs: ``n_rois`` counts features, ``skipped`` lists ``(index, name, reason)`` of
        features without area, entirely outside the image or without pixels.

    Raises
    ------
    InputError
        Unreadable files, self-intersecting polygons, objects on several planes (2D only),
        objects reaching far beyond the image.
    """
    overlap = DEFAULTS.rois.overlap if overlap is None else overlap
    height, width = (int(s) for s in shape)
    path = Path(source) if isinstance(source, (str, Path)) else None
    features: list[GeoFeature] = read_geojson(path) if path is not None else list(source)  # type: ignore[arg-type]
    report = RoiImportReport(source=str(path) if path else None, n_rois=len(features), overlap_rule=overlap)
    planes = {f.plane for f in features if f.kind == "area"}
    if len(planes) > 1:
        raise InputError(f"objects on {len(planes)} planes (z, t): {sorted(planes)[:4]}; only 2D annotations "
                         "(one plane) can be turned into a label image", path)
    kept: list[GeoFeature] = []
    for f in features:
        if f.kind != "area":
            report.skipped.append((f.index, f.name, f"{f.kind} feature has no area"))
            continue
        x0, y0, x1, y1 = object_bounds(f.polygons)
        if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            report.skipped.append((f.index, f.name, f"entirely outside the image (x {x0:g}..{x1:g}, y {y0:g}..{y1:g})"))
            continue
        if (x1 - x0 + 1) * (y1 - y0 + 1) > MAX_BOX_FACTOR * max(height * width, 4096):
            raise InputError(f"{f.label()} spans x {x0:g}..{x1:g}, y {y0:g}..{y1:g}, far beyond the {width}x{height} "
                             "image: is this GeoJSON from another image?", path)
        crossing = find_crossing(f.polygons)
        if crossing is not None:
            raise InputError(f"{f.label()} is a self-intersecting polygon (edges cross near x {crossing[0]:.6g}, "
                             f"y {crossing[1]:.6g}), which has no well-defined inside: fix or redraw it", path)
        kept.append(f)
    labels, pixels, report.overlap_pixels = fill_polygons([f.polygons for f in kept], (height, width), overlap=overlap)
    lut = np.zeros(len(kept) + 1, np.int64)
    for k, (f, n) in enumerate(zip(kept, pixels), start=1):
        if n == 0:
            report.skipped.append((f.index, f.name, "empty mask (no pixel centre inside)"))
            continue
        report.label_to_roi.append(f.index)
        report.label_names.append(f.name)
        lut[k] = len(report.label_to_roi)
    report.n_labels = len(report.label_to_roi)
    if report.n_labels != len(kept):
        labels = lut[labels].astype(labels.dtype)
    report.skipped.sort()
    if report.skipped or report.overlap_pixels:
        log.info("%s: %s", path or "GeoJSON", report.summary())
    return labels, report

"""Label images <-> polygons with holes (the Simple Features geometry of GeoJSON), pixel-exact.

Pure arrays, no I/O: :mod:`cellseg_bridge.io.geojson` writes and reads the files.

Labels -> polygons (:func:`label_polygons`)
    The outlines are those of our ImageJ ROIs (:func:`~cellseg_bridge.core.outlines.trace_outlines`,
    along pixel edges), so the coordinates are integers at pixel corners and the polygons enclose
    exactly the pixel squares of their label. Simple Features (OGC; shapely, and JTS in QuPath)
    want more than ImageJ: rings that never touch themselves and polygons whose inside is
    connected. So the pieces of a label are its 4-connected parts (pixels touching only at a
    corner go to two polygons of a MultiPolygon that touch there: the inside of a polygon is then
    always connected), and each traced loop that passes twice through a pixel corner (a hole
    touching the boundary, or two holes touching, at a corner) is cut there into simple rings.
    Rings with a positive signed area (counter-clockwise in x-right/y-up terms, GeoJSON's
    right-hand rule) are exteriors, the others holes; each hole goes to the smallest exterior that
    contains a pixel of the label beside it.
Polygons -> labels (:func:`fill_polygons`)
    All rings of one object are filled together with the even-odd rule by ImageJ's composite-shape
    filler (:func:`~cellseg_bridge.core.roi.rasterize.shape_mask`), the rule of our ROIs: pixel
    centres inside are in, so integer polygons from :func:`label_polygons` give back exactly their
    pixels, and labels -> polygons -> labels (and polygons -> labels -> polygons) is exact.

A ring is an ``(n, 2)`` array of ``(x, y)`` vertices, open (the closing vertex is implicit); a
polygon is a list of rings, exterior first; an object is a list of polygons.
"""

from __future__ import annotations

import numpy as np

from cellseg_bridge.core.outlines import _point_in_polygon, signed_area, trace_outlines
from cellseg_bridge.core.roi.rasterize import SEG_CLOSE, SEG_LINETO, SEG_MOVETO, Segment, shape_mask
from cellseg_bridge.errors import InputError

__all__ = ["Polygon", "find_crossing", "fill_polygons", "label_polygons", "object_bounds", "split_ring"]

#: A polygon: its exterior ring, then its holes; each ring ``(n, 2)`` ``(x, y)``, open.
Polygon = list[np.ndarray]


def label_polygons(labels: object) -> dict[int, list[Polygon]]:
    """The polygons of every label of a 2D label image, vertices at pixel corners.

    Parameters
    ----------
    labels : array_like
        ``(H, W)`` label image, 0 = background.

    Returns
    -------
    dict of int to list of Polygon
        Per label (ascending), its polygons (one per 4-connected piece) with their holes; rings
        are simple, exteriors counter-clockwise in y-up terms (positive shoelace area in image
        coordinates), holes the other way.
    """
    outlines = trace_outlines(labels, connectivity=4)
    result: dict[int, list[Polygon]] = {}
    for label, loops in outlines.by_label().items():
        rings: list[np.ndarray] = []
        for i in loops.tolist():
            rings.extend(split_ring(outlines.loop(i)))
        result[label] = _group_rings(rings)
    return result


def split_ring(loop: np.ndarray) -> list[np.ndarray]:
    """Cut a closed loop at the vertices it visits twice into simple rings.

    Parameters
    ----------
    loop : numpy.ndarray
        ``(n, 2)`` integer ``(x, y)`` vertices of a traced loop (open).

    Returns
    -------
    list of numpy.ndarray
        Rings that visit every vertex once, edges in the loop's direction; vertices where a ring
        goes straight on (left after a cut) are dropped.
    """
    v = np.asarray(loop)
    keys = [(int(x), int(y)) for x, y in v.tolist()]
    if len(set(keys)) == len(keys):
        return [v]
    rings: list[np.ndarray] = []
    path: list[int] = []
    where: dict[tuple[int, int], int] = {}
    for i, key in enumerate(keys):
        j = where.get(key)
        if j is None:
            where[key] = len(path)
            path.append(i)
            continue
        cut = path[j:]
        for k in cut[1:]:
            del where[keys[k]]
        rings.append(_drop_straight(v[cut]))
        del path[j + 1 :]
    rings.append(_drop_straight(v[path]))
    return [r for r in rings if r.shape[0] >= 3]


def _drop_straight(ring: np.ndarray) -> np.ndarray:
    """The ring without vertices where it goes straight on."""
    prev, nxt = np.roll(ring, 1, axis=0), np.roll(ring, -1, axis=0)
    a, b = ring - prev, nxt - ring
    cross = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    return ring[cross != 0]


def _group_rings(rings: list[np.ndarray]) -> list[Polygon]:
    """Exteriors (positive area) in order, each with the holes whose label pixel it contains."""
    areas = [signed_area(r) for r in rings]
    outers = [i for i, a in enumerate(areas) if a > 0]
    polygons: dict[int, Polygon] = {i: [rings[i]] for i in outers}
    for h, area in enumerate(areas):
        if area >= 0:
            continue
        if len(outers) == 1:
            polygons[outers[0]].append(rings[h])
            continue
        # the centre of the label pixel on the right of the hole's first edge
        ring = rings[h].astype(np.float64)
        step = ring[1] - ring[0]
        step /= max(abs(step[0]), abs(step[1]))
        px = ring[0, 0] + 0.5 * step[0] - 0.5 * step[1]
        py = ring[0, 1] + 0.5 * step[1] + 0.5 * step[0]
        inside = [o for o in outers if _point_in_polygon(rings[o], px, py)]
        best = min(inside, key=lambda o: areas[o]) if inside else outers[0]
        polygons[best].append(rings[h])
    return [polygons[o] for o in outers]


def object_bounds(polygons: list[Polygon]) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)``: the bounding box of all vertices of an object."""
    allv = np.concatenate([np.asarray(r, np.float64).reshape(-1, 2) for p in polygons for r in p])
    (x0, y0), (x1, y1) = allv.min(axis=0), allv.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def find_crossing(polygons: list[Polygon]) -> tuple[float, float] | None:
    """A point where two edges of an object cross (a self-intersection), or None.

    Edges that only touch (at a vertex, or one ending on another) do not count: traced outlines
    touch at pixel corners. Edges of all rings of all polygons of the object are tested against
    each other, so a hole crossing its exterior or two overlapping polygons are found too.

    Parameters
    ----------
    polygons : list of Polygon
        One object.

    Returns
    -------
    (float, float) or None
        The crossing point of the first crossing pair found.
    """
    starts, ends = [], []
    for polygon in polygons:
        for ring in polygon:
            r = np.asarray(ring, np.float64).reshape(-1, 2)
            starts.append(r)
            ends.append(np.roll(r, -1, axis=0))
    a, b = np.concatenate(starts), np.concatenate(ends)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    n = a.shape[0]
    block = 256
    for s in range(0, n, block):
        e = min(s + block, n)
        # pairs (i in block, j > i) whose boxes overlap
        near = (
            (lo[s:e, None, 0] <= hi[None, :, 0]) & (lo[None, :, 0] <= hi[s:e, None, 0])
            & (lo[s:e, None, 1] <= hi[None, :, 1]) & (lo[None, :, 1] <= hi[s:e, None, 1])
        )
        near &= np.arange(n)[None, :] > np.arange(s, e)[:, None]
        ii, jj = np.nonzero(near)
        if ii.size == 0:
            continue
        ii += s
        p, q, r, t = a[ii], b[ii], a[jj], b[jj]
        d1, d2 = _orient(p, q, r), _orient(p, q, t)
        d3, d4 = _orient(r, t, p), _orient(r, t, q)
        cross = (d1 * d2 < 0) & (d3 * d4 < 0)
        if cross.any():
            k = int(np.flatnonzero(cross)[0])
            frac = d1[k] / (d1[k] - d2[k])
            point = r[k] + frac * (t[k] - r[k])
            return float(point[0]), float(point[1])
    return None


def _orient(p: np.ndarray, q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Twice the signed area of triangles (p, q, r), row-wise."""
    return (q[:, 0] - p[:, 0]) * (r[:, 1] - p[:, 1]) - (q[:, 1] - p[:, 1]) * (r[:, 0] - p[:, 0])


def object_path(polygons: list[Polygon]) -> list[Segment]:
    """A composite-shape path (moveto, lineto..., close per ring) of all rings of an object."""
    path: list[Segment] = []
    for polygon in polygons:
        for ring in polygon:
            r = np.asarray(ring, np.float64).reshape(-1, 2)
            path.append((SEG_MOVETO, (float(r[0, 0]), float(r[0, 1]))))
            path.extend((SEG_LINETO, (float(x), float(y))) for x, y in r[1:].tolist())
            path.append((SEG_CLOSE, ()))
    return path


def fill_polygons(
    objects: list[list[Polygon]], shape: tuple[int, int], *, overlap: str = "last"
) -> tuple[np.ndarray, list[int], int]:
    """Rasterise objects into a label image, object ``k`` (0-based) as label ``k + 1``.

    Parameters
    ----------
    objects : list of list of Polygon
        The objects, in order.
    shape : (int, int)
        ``(height, width)``; parts outside are clipped.
    overlap : {"last", "first"}
        Who owns a pixel two objects claim: the later object or the earlier one.

    Returns
    -------
    labels : numpy.ndarray
        ``uint16`` (``uint32`` beyond 65534 objects).
    pixels : list of int
        Pixels each object got on the image before overlaps were resolved (0: nothing on it).
    overlap_pixels : int
        Pixels claimed by two or more objects.
    """
    if overlap not in ("last", "first"):
        raise InputError(f"overlap must be 'last' or 'first', got {overlap!r}")
    height, width = int(shape[0]), int(shape[1])
    labels = np.zeros((height, width), np.uint16 if len(objects) < 65535 else np.uint32)
    claimed = np.zeros((height, width), np.uint8)
    pixels: list[int] = []
    for k, polygons in enumerate(objects, start=1):
        mask, (x0, y0) = shape_mask(object_path(polygons))
        xa, ya = max(x0, 0), max(y0, 0)
        xb, yb = min(x0 + mask.shape[1], width), min(y0 + mask.shape[0], height)
        if xa >= xb or ya >= yb:
            pixels.append(0)
            continue
        crop = mask[ya - y0 : yb - y0, xa - x0 : xb - x0]
        pixels.append(int(np.count_nonzero(crop)))
        cov = claimed[ya:yb, xa:xb]
        cov[crop] = np.minimum(cov[crop], 1) + 1
        target = labels[ya:yb, xa:xb]
        if overlap == "last":
            target[crop] = k
        else:
            target[crop & (target == 0)] = k
    return labels, pixels, int(np.count_nonzero(claimed >= 2))

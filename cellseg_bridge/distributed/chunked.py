"""Segment a plane larger than memory in overlapping chunks, with labels merged seam-free.

:func:`segment_large` reads the image lazily (:mod:`.plane_source`), cuts the
plane into cores of ``chunk_size`` grown by ``overlap`` (at least twice the
diameter; default ``ceil(2 * diameter)``), and segments every chunk:

- normalisation with percentiles of the whole plane (the rule of
  :func:`~cellseg_bridge.segmentation.pipeline.segment`: a strided subsample above 224³ pixels);
- the network on the whole plane's tile grid (:mod:`.chunk_network`), so the
  flows in a chunk are those of the whole-plane pass;
- masks (:func:`~cellseg_bridge.core.dynamics.compute_masks`) on the chunk,
  ``max_size_fraction`` scaled to the whole plane's area;
- merging (:mod:`cellseg_bridge.core.chunk_merge`): each cell is owned by the
  chunk whose core holds its centroid and is pasted whole, chunks in raster
  order, duplicates dropped, labels numbered consecutively.

Chunks run in this process, or on a Dask cluster when a ``client`` is given
(at most ``max_pending`` chunks in flight, results pasted in raster order as
they arrive, so memory stays bounded by a few chunks on the client and one
chunk per worker thread). Labels go to an OME-Zarr folder (zarr v2, one
level, chunks of 1024², Blosc-zstd) written chunk by chunk, and optionally to
a tiled OME-TIFF (512² tiles, zlib) streamed from it; both are staged beside
the target and moved into place only when complete. With ``out=None`` the
labels are returned in memory instead (small planes, tests).

Only 2D planes (one time point, one Z plane) are handled; 3D stacks, test-time
augmentation and ``tile_size=0`` are refused with :class:`InputError`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cellseg_bridge.config import DEFAULTS, SegmentOptions
from cellseg_bridge.core.chunk_merge import Chunk, chunk_grid, owned_labels, paste_owned, truncated_labels
from cellseg_bridge.distributed.chunk_network import PlaneGrid, chunk_network_output
from cellseg_bridge.distributed.models import cached_model
from cellseg_bridge.distributed.plane_source import PlaneSource, open_plane_source, plane_percentiles
from cellseg_bridge.errors import InputError
from cellseg_bridge.segmentation.suggest import AUTO

log = logging.getLogger(__name__)

__all__ = ["LargeResult", "segment_large", "ZARR_SUFFIX", "TIFF_SUFFIXES"]

ZARR_SUFFIX = ".zarr"
TIFF_SUFFIXES = (".tif", ".tiff")
_STORE_CHUNK = 1024
_TIFF_TILE = 512


@dataclass
class LargeResult:
    """What :func:`segment_large` returns.

    Attributes
    ----------
    labels : ndarray of uint32 or None
        The merged labels (Y, X) when ``out`` is None; else None (read the files).
    outputs : list of Path
        Files / folders written.
    n_cells : int
        Labels 1..n_cells.
    diameter : float
        Diameter used (pixels).
    chunk_size, overlap : int
        Core side and overlap used.
    n_chunks : int
    duplicates : int
        Owned cells dropped because a cell pasted before covered most of them.
    truncated : int
        Owned cells that touched their chunk's edge inside the plane (overlap too small for them).
    timings : dict
        Seconds: ``percentiles``, ``chunks`` (all chunk work, summed over
        workers), ``merge`` (pasting), ``write`` (final outputs), ``total``.
    """

    labels: np.ndarray | None
    outputs: list[Path]
    n_cells: int
    diameter: float
    chunk_size: int
    overlap: int
    n_chunks: int
    duplicates: int = 0
    truncated: int = 0
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Normalizer:
    """Map each channel's whole-plane percentiles to 0, 1 (float32, as the whole-plane pipeline)."""

    ranges: tuple[tuple[float, float], ...]
    invert: bool = False

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.array(x, dtype=np.float32, copy=True)
        for k, (lo, hi) in enumerate(self.ranges):
            if hi - lo > 1e-3:
                x[k] -= np.float32(lo)
                x[k] /= np.float32(hi - lo)
                if self.invert:
                    np.subtract(np.float32(1), x[k], out=x[k])
            else:
                x[k] = 0
        return x


@dataclass(frozen=True)
class _ChunkParams:
    grid: PlaneGrid
    normalize: _Normalizer
    plane_shape: tuple[int, int]
    niter: int
    cellprob_threshold: float
    flow_threshold: float
    min_size: int
    max_size_fraction: float
    batch_size: int
    precision: str
    cache_token: str


@dataclass
class _ChunkOutput:
    labels: np.ndarray  # owned cells only, region coordinates
    owned: np.ndarray
    truncated: int
    seconds: float


def _chunk_task(source: PlaneSource | np.ndarray, chunk: Chunk, params: _ChunkParams, model: Any,
                device: str) -> _ChunkOutput:
    """Segment one chunk; keep the cells it owns. Runs on a worker (or in this process)."""
    tic = time.perf_counter()
    net_model = cached_model(model, device)
    window = params.grid.source_window(chunk.region)
    block = source if isinstance(source, np.ndarray) else source.read(window)
    y = chunk_network_output(net_model.net, params.grid, chunk.region, block, params.normalize,
                             batch_size=params.batch_size, precision=params.precision,
                             cache_token=params.cache_token)
    del block
    h, w = chunk.shape
    fraction = params.max_size_fraction * params.plane_shape[0] * params.plane_shape[1] / (h * w)
    labels = net_model.compute_masks(y[:2], y[2], window=(tuple(params.plane_shape), chunk.origin),
                                     cellprob_threshold=params.cellprob_threshold, flow_threshold=params.flow_threshold,
                                     niter=params.niter, min_size=params.min_size, max_size_fraction=fraction)
    del y
    owned = owned_labels(labels, chunk)
    cut = np.intersect1d(truncated_labels(labels, chunk, params.plane_shape), owned)
    keep = np.zeros(int(labels.max()) + 1, bool)
    keep[owned] = True
    labels = np.where(keep[labels], labels, 0).astype(np.uint32)
    return _ChunkOutput(labels=labels, owned=owned, truncated=int(cut.size), seconds=time.perf_counter() - tic)


def _options(options: SegmentOptions | None, overrides: dict[str, Any]) -> SegmentOptions:
    """The options (validated by the dataclass), and what chunked segmentation cannot do."""
    opts = SegmentOptions.derive(options, **overrides)
    if opts.augment:
        raise InputError("test-time augmentation is not available for chunked segmentation")
    if opts.tile_size <= 0:
        raise InputError("chunked segmentation needs network tiles (tile_size > 0)")
    return opts


def _diameter(opts: SegmentOptions, model: Any, source: PlaneSource) -> float:
    """The diameter: given, or the size model's estimate on a central crop (<= 1024²), or diam_labels."""
    if opts.diameter is not None:
        return float(opts.diameter)
    if model.size_model is None:
        return float(model.default_diameter)
    from cellseg_bridge.segmentation.pipeline import segment

    ly, lx = source.shape
    h, w = min(ly, 1024), min(lx, 1024)
    y0, x0 = (ly - h) // 2, (lx - w) // 2
    crop = source.read((slice(y0, y0 + h), slice(x0, x0 + w)))
    nuclear = 1 if len(source.channels) > 1 else None
    result = segment(crop[: len(source.channels)], model, axes="CYX", channel=0, nuclear_channel=nuclear,
                     tile_size=opts.tile_size)
    log.info("diameter %.2f px estimated on the central %dx%d crop", result.diameter, h, w)
    return float(result.diameter)


class _ZarrTarget:
    """The merged labels in an OME-Zarr folder being written (staged beside its final place)."""

    def __init__(self, final: Path, shape: tuple[int, int], pixel_sizes: dict) -> None:
        import numcodecs
        import zarr

        final.parent.mkdir(parents=True, exist_ok=True)
        self.stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent))
        chunks = (min(_STORE_CHUNK, shape[0]), min(_STORE_CHUNK, shape[1]))
        compressor = numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE)
        # OME-NGFF 0.4 is zarr format 2 with "/" between chunk indices; zarr 3 writes
        # format 3 unless told, zarr 2 names the options differently.
        if int(zarr.__version__.split(".")[0]) >= 3:
            group = zarr.open_group(str(self.stage), mode="w", zarr_format=2)
            self.array = group.create_array("0", shape=shape, chunks=chunks, dtype=np.uint32,
                                            compressors=compressor, fill_value=0,
                                            chunk_key_encoding={"name": "v2", "separator": "/"})
        else:
            group = zarr.open_group(str(self.stage), mode="w")
            self.array = group.create_dataset("0", shape=shape, chunks=chunks, dtype=np.uint32,
                                              compressor=compressor, fill_value=0, dimension_separator="/")
        scale = [float(pixel_sizes.get(a) or 1.0) for a in "YX"]
        unit = {"unit": "micrometer"} if all(pixel_sizes.get(a) for a in "YX") else {}
        group.attrs["multiscales"] = [{
            "version": "0.4",
            "name": "labels",
            "axes": [{"name": "y", "type": "space", **unit}, {"name": "x", "type": "space", **unit}],
            "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
        }]
        self.final = final

    def __getitem__(self, key):
        return self.array[key]

    def __setitem__(self, key, value) -> None:
        self.array[key] = value

    def discard(self) -> None:
        shutil.rmtree(self.stage, ignore_errors=True)


def _write_tiled_tiff(array: Any, path: Path, pixel_sizes: dict) -> None:
    """Stream a (Y, X) array (zarr) into a tiled OME-TIFF, one row of tiles at a time."""
    import tifffile

    from cellseg_bridge.io.atomic import atomic_output

    ly, lx = array.shape
    t = _TIFF_TILE

    def tiles():
        for y in range(0, ly, t):
            strip = np.asarray(array[y : y + t, :])
            for x in range(0, lx, t):
                tile = np.zeros((t, t), np.uint32)
                part = strip[:, x : x + t]
                tile[: part.shape[0], : part.shape[1]] = part
                yield tile

    metadata: dict[str, Any] = {"axes": "YX", "Name": "labels"}
    for axis in "YX":
        if pixel_sizes.get(axis):
            metadata[f"PhysicalSize{axis}"] = float(pixel_sizes[axis])
            metadata[f"PhysicalSize{axis}Unit"] = "µm"
    with atomic_output(path) as tmp:
        tifffile.imwrite(tmp, tiles(), shape=(ly, lx), dtype=np.uint32, tile=(t, t), compression="zlib",
                         metadata=metadata, ome=True, bigtiff=ly * lx * 4 > 2**31)


def _targets(out: str | Path | Sequence[str | Path] | None, overwrite: bool) -> tuple[Path | None, Path | None]:
    if out is None:
        return None, None
    paths = [Path(out)] if isinstance(out, (str, Path)) else [Path(p) for p in out]
    zarr_path = tiff_path = None
    for p in paths:
        name = p.name.lower()
        if name.endswith(ZARR_SUFFIX):
            zarr_path = p
        elif name.endswith(TIFF_SUFFIXES):
            tiff_path = p
        else:
            raise InputError(f"output {p} must end in {ZARR_SUFFIX} (OME-Zarr) or .tif (tiled OME-TIFF)")
        if p.exists() and not overwrite:
            raise InputError(f"output {p} exists (overwrite=True to replace it)")
    return zarr_path, tiff_path


def segment_large(
    image: Any,
    model: Any = None,
    *,
    out: str | Path | Sequence[str | Path] | None = None,
    axes: str | None = None,
    scene: int | str | None = None,
    chunk_size: int | None = None,
    overlap: int | None = None,
    client: Any = None,
    max_pending: int | None = None,
    overwrite: bool = False,
    options: SegmentOptions | None = None,
    **overrides: Any,
) -> LargeResult:
    """Segment a 2D image of any size chunk by chunk, with labels merged across chunk borders.

    Parameters
    ----------
    image : str, Path, xarray.DataArray, ndarray, dask or zarr array
        A file (read lazily, block by block) or an array (see ``axes``).
    model : str, Path or SegmentationModel, optional
        Registry name or checkpoint (loaded once per worker), or a loaded
        model (in this process; shipped to the workers with a client).
        Default ``DEFAULTS.segment.model``.
    out : path or sequence of paths, optional
        ``*.zarr`` (OME-Zarr folder) and/or ``*.tif`` (tiled OME-TIFF). None:
        return the labels in memory.
    axes : str, optional
        Axes of an array (default ``"YX"`` for 2D), or of a plain TIFF.
    scene : int or str, optional
        Scene of a multi-scene file.
    chunk_size : int, optional
        Largest core side in pixels (default ``DEFAULTS.distributed.chunk_size``).
    overlap : int, optional
        Pixels added around each core; at least ``2 * diameter`` (the default,
        rounded up).
    client : distributed.Client, optional
        Run chunks on this Dask cluster; default in this process.
    max_pending : int, optional
        Chunks in flight on the cluster (default: 2 per worker thread + 1).
    overwrite : bool
        Replace existing outputs.
    options : SegmentOptions, optional
        The segmentation options (default ``DEFAULTS.segment``); ``**overrides`` change single fields.
    **overrides
        :class:`~cellseg_bridge.config.SegmentOptions` fields (``diameter``,
        ``channel``, ``nuclear_channel``, ``cellprob_threshold``,
        ``flow_threshold``, ``tile_size``, ``device``, ...).

    Returns
    -------
    LargeResult

    Raises
    ------
    InputError
        Unknown options, augmentation, ``tile_size=0``, overlap below twice
        the diameter, an image that is not a 2D plane, outputs that exist.
    """
    t_start = time.perf_counter()
    opts = _options(options, overrides)
    dist = DEFAULTS.distributed
    chunk_size = int(chunk_size or dist.chunk_size)
    if chunk_size < 16:
        raise InputError(f"chunk_size must be at least 16 pixels, got {chunk_size}")
    zarr_path, tiff_path = _targets(out, overwrite)
    spec = opts.model if model is None else model
    if spec == AUTO or getattr(spec, "name", None) == AUTO:
        raise InputError("chunked segmentation needs one model for the whole image; model 'auto' chooses per image: "
                         "run `cellseg models suggest IMAGE` on a smaller view and pass the model it names")
    local_model = cached_model(spec, opts.device)
    opts = local_model.resolve_options(opts)
    source = open_plane_source(image, axes=axes, scene=scene, channel=opts.channel,
                               nuclear_channel=opts.nuclear_channel, nchan=local_model.nchan,
                               choose=local_model.channel_chooser(opts))
    diameter = _diameter(opts, local_model, source)
    min_overlap = math.ceil(2 * diameter)
    overlap = min_overlap if overlap is None else int(overlap)
    if overlap < min_overlap:
        raise InputError(f"overlap {overlap} px is less than twice the diameter ({min_overlap} px)")
    rescale = local_model.diam_mean / diameter
    div = math.lcm(16, int(getattr(local_model.net, "size_multiple", 1)))
    grid = PlaneGrid.build(source.shape, rescale, opts.tile_size, opts.tile_overlap, div, fixed=local_model.fixed_tiles)
    tic = time.perf_counter()
    ranges = plane_percentiles(source, *opts.normalize_percentiles)
    t_perc = time.perf_counter() - tic
    params = _ChunkParams(
        grid=grid, normalize=_Normalizer(tuple(ranges), opts.invert), plane_shape=source.shape,
        niter=int(opts.niter) if opts.niter else int((1.0 / rescale) * 200),
        cellprob_threshold=opts.cellprob_threshold, flow_threshold=opts.flow_threshold,
        min_size=opts.min_size, max_size_fraction=opts.max_size_fraction,
        batch_size=opts.batch_size, precision=opts.precision, cache_token=uuid.uuid4().hex,
    )
    chunks = chunk_grid(source.shape, chunk_size, overlap)
    log.info("segment_large: plane %dx%d, diameter %.3g px, %d chunk(s) of core <= %d px, overlap %d px",
             *source.shape, diameter, len(chunks), chunk_size, overlap)
    target: Any
    target = _ZarrTarget(zarr_path or _scratch_name(tiff_path), source.shape, source.pixel_sizes) \
        if (zarr_path or tiff_path) else np.zeros(source.shape, np.uint32)
    try:
        stats = _run_chunks(chunks, source, params, spec, opts.device, target, client, max_pending)
        tic = time.perf_counter()
        outputs = _finish(target, zarr_path, tiff_path, source.pixel_sizes, overwrite)
        t_write = time.perf_counter() - tic
    except BaseException:
        if isinstance(target, _ZarrTarget):
            target.discard()
        raise
    if stats["truncated"]:
        log.warning("%d cell(s) touched a chunk edge (larger than the overlap of %d px?); "
                    "use a larger overlap", stats["truncated"], overlap)
    return LargeResult(
        labels=target if isinstance(target, np.ndarray) else None,
        outputs=outputs,
        n_cells=stats["next"] - 1,
        diameter=diameter,
        chunk_size=chunk_size,
        overlap=overlap,
        n_chunks=len(chunks),
        duplicates=stats["dropped"],
        truncated=stats["truncated"],
        timings={"percentiles": t_perc, "chunks": stats["chunk_seconds"], "merge": stats["merge_seconds"],
                 "write": t_write, "total": time.perf_counter() - t_start},
    )


def _scratch_name(tiff_path: Path | None) -> Path:
    assert tiff_path is not None
    return tiff_path.with_name(tiff_path.name + ".scratch.zarr")


def _run_chunks(chunks: list[Chunk], source: PlaneSource, params: _ChunkParams, spec: Any, device: str,
                target: Any, client: Any, max_pending: int | None) -> dict:
    """Segment every chunk (here or on the cluster) and paste the results in raster order."""
    stats = {"next": 1, "dropped": 0, "truncated": 0, "chunk_seconds": 0.0, "merge_seconds": 0.0}

    def paste(chunk: Chunk, res: _ChunkOutput, k: int) -> None:
        tic = time.perf_counter()
        region = target[chunk.region]
        stats["next"], pasted, dropped = paste_owned(region, res.labels, res.owned, stats["next"])
        target[chunk.region] = region
        stats["dropped"] += dropped
        stats["truncated"] += res.truncated
        stats["chunk_seconds"] += res.seconds
        stats["merge_seconds"] += time.perf_counter() - tic
        log.info("chunk %d/%d %s: %d cell(s) pasted, %d duplicate(s); %d so far",
                 k + 1, len(chunks), chunk.index, pasted, dropped, stats["next"] - 1)

    if client is None:
        for k, chunk in enumerate(chunks):
            paste(chunk, _chunk_task(source, chunk, params, spec, device), k)
        return stats

    if not isinstance(spec, (str, Path)):
        [spec] = client.scatter([spec], broadcast=True)
    if max_pending is None:
        threads = sum(client.nthreads().values()) or 1
        max_pending = 2 * threads + 1
    by_file = source.path is not None
    pending: deque = deque()
    for k, chunk in enumerate(chunks):
        data = source if by_file else source.read(params.grid.source_window(chunk.region))
        pending.append((k, chunk, client.submit(_chunk_task, data, chunk, params, spec, device, pure=False,
                                                key=f"cellseg-chunk-{params.cache_token}-{k}")))
        while len(pending) >= max_pending:
            j, ch, fut = pending.popleft()
            paste(ch, fut.result(), j)
            fut.release()
    while pending:
        j, ch, fut = pending.popleft()
        paste(ch, fut.result(), j)
        fut.release()
    return stats


def _finish(target: Any, zarr_path: Path | None, tiff_path: Path | None, pixel_sizes: dict,
            overwrite: bool) -> list[Path]:
    """Move the staged OME-Zarr into place and/or stream the tiled OME-TIFF from it."""
    if isinstance(target, np.ndarray):
        return []
    outputs = []
    if tiff_path is not None:
        _write_tiled_tiff(target.array, tiff_path, pixel_sizes)
        outputs.append(tiff_path)
    if zarr_path is not None:
        if zarr_path.exists() and overwrite:
            shutil.rmtree(zarr_path) if zarr_path.is_dir() else zarr_path.unlink()
        os.replace(target.stage, zarr_path)
        outputs.insert(0, zarr_path)
    else:
        target.discard()
    return outputs


def read_zarr_labels(path: str | Path) -> Any:
    """The label array (level 0) of an OME-Zarr folder written by :func:`segment_large` (lazy zarr array)."""
    import zarr

    group = zarr.open_group(str(path), mode="r")
    meta = group.attrs.get("multiscales")
    if not meta:
        raise InputError("not an OME-Zarr image (no multiscales metadata)", path)
    return group[meta[0]["datasets"][0]["path"]]


def describe(result: LargeResult) -> str:
    """One-line JSON summary of a :class:`LargeResult` (for logs)."""
    data = {k: v for k, v in dataclasses.asdict(result).items() if k != "labels"}
    data["outputs"] = [str(p) for p in result.outputs]
    return json.dumps(data)

"""Training data: image + mask pairs, their network input and flow targets.

Where pairs come from (:func:`find_pairs`), for an image ``NAME.EXT`` in a folder
(files whose stem ends in the mask suffix, ``_seg`` or ``_flows`` are never
taken as images):

1. a label image ``NAME{mask_suffix}.{tif,tiff,png,ome.tif}`` (``mask_suffix``
   default ``_masks``, Cellpose's ``name_masks.tif``), looked up in ``masks_dir``
   if given (where ``NAME.{tif,tiff,png}`` itself is also accepted), else beside
   the image;
2. a Cellpose ``NAME_seg.npy`` (its ``masks``);
3. ImageJ ROIs ``NAME_RoiSet.zip``, ``NAME_rois.zip`` or ``NAME.zip``
   (rasterised with :func:`~cellseg_bridge.io.roi_import.rois_to_labels` at the
   image's size; corrupt entries and non-area ROIs are skipped and logged);
4. QuPath GeoJSON annotations ``NAME.geojson`` (QuPath's export of the image
   ``NAME.EXT``) or ``NAME_cells.geojson`` (what ``segment --save-geojson`` writes),
   one cell per polygon feature, rasterised with the same rule as the ROIs
   (:func:`~cellseg_bridge.io.geojson.geojson_to_labels`: points and lines skipped
   and logged, self-intersecting polygons refused).

Images without any of these are skipped (logged). The network input is built
exactly as :func:`cellseg_bridge.segmentation.pipeline.segment` builds it: the segmentation
``channel``, then the ``nuclear_channel`` or a zero channel for 2-channel
networks, each channel normalised by its 1st/99th percentiles. Flow targets
(:func:`~cellseg_bridge.core.flows.masks_to_flows`) are computed once per image
and optionally cached on disk, keyed by a hash of the label image.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cellseg_bridge.config import DEFAULTS, SegmentOptions
from cellseg_bridge.core.flows import masks_to_flows, prepare_labels
from cellseg_bridge.errors import InputError
from cellseg_bridge.io.atomic import atomic_output

__all__ = [
    "TrainSample",
    "TrainPair",
    "find_pairs",
    "load_pair",
    "make_sample",
    "median_diameter",
    "network_input",
]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".czi", ".nd2", ".lif", ".ome.tif", ".ome.tiff")
LABEL_SUFFIXES = (".tif", ".tiff", ".png", ".ome.tif", ".ome.tiff")
ROI_NAMES = ("{}_RoiSet.zip", "{}_rois.zip", "{}.zip")
GEOJSON_NAMES = ("{}.geojson", "{}_cells.geojson")


@dataclass
class TrainSample:
    """One training image, ready for augmentation.

    Attributes
    ----------
    name : str
        Where it came from (file name or ``"image <i>"``).
    image : ndarray of float32, shape (C, Y, X)
        Normalised network input (C = the network's input channels).
    labels : ndarray of int32, shape (Y, X)
        Masks, 0 = background.
    flows : ndarray of float32, shape (2, Y, X)
        Unit flow targets ``(dy, dx)`` of ``labels``.
    diameter : float
        Median object diameter ``median(sqrt(area)) / (sqrt(pi) / 2)``; 0 without masks.
    n_masks : int
        Number of masks.
    source_channels : int
        Channels of the original image (before channel selection).
    """

    name: str
    image: np.ndarray
    labels: np.ndarray
    flows: np.ndarray
    diameter: float
    n_masks: int
    source_channels: int = 1


@dataclass(frozen=True)
class TrainPair:
    """An image file and the file holding its masks.

    Attributes
    ----------
    image : Path
    masks : Path
    kind : str
        ``"labels"``, ``"seg_npy"``, ``"rois"`` or ``"geojson"``.
    """

    image: Path
    masks: Path
    kind: str


# --------------------------------------------------------------------------- arrays


def median_diameter(labels: np.ndarray) -> tuple[float, int]:
    """Median object diameter ``median(sqrt(area)) / (sqrt(pi) / 2)`` and mask count.

    Returns ``(0.0, 0)`` for a label image without masks.
    """
    counts = np.bincount(np.asarray(labels).ravel().astype(np.int64))[1:]
    counts = counts[counts > 0]
    if counts.size == 0:
        return 0.0, 0
    return float(np.median(np.sqrt(counts)) / (math.sqrt(math.pi) / 2)), int(counts.size)


def network_input(
    image: Any,
    *,
    nchan: int,
    axes: str | None = None,
    channel: int | str = 0,
    nuclear_channel: int | str | None = None,
    normalize_percentiles: tuple[float, float] = DEFAULTS.segment.normalize_percentiles,
    invert: bool = False,
    name: str | Path | None = None,
) -> np.ndarray:
    """The normalised ``(nchan, Y, X)`` input the network sees, built as ``segment`` does.

    Raises
    ------
    InputError
        Not a single 2D plane (T or Z > 1), missing channel, NaN pixels, ... (as
        :func:`~cellseg_bridge.segmentation.pipeline.segment`).
    """
    return _input_and_channels(
        image, nchan=nchan, axes=axes, channel=channel, nuclear_channel=nuclear_channel,
        normalize_percentiles=normalize_percentiles, invert=invert, name=name,
    )[0]


def _input_and_channels(
    image: Any, *, nchan, axes, channel, nuclear_channel, normalize_percentiles, invert=False, name
) -> tuple[np.ndarray, int]:
    # the inference pipeline's own input steps, so that training and inference match
    from cellseg_bridge.segmentation.preprocess import as_tczyx, normalize, select_channels

    opts = dataclasses.replace(
        SegmentOptions(),
        channel=channel,
        nuclear_channel=nuclear_channel,
        normalize_percentiles=tuple(normalize_percentiles),
        invert=bool(invert),
    )
    try:
        data, names, _ = as_tczyx(image, axes)
        if data.shape[0] != 1 or data.shape[2] != 1:
            raise InputError(
                f"training takes single 2D planes; this image has T={data.shape[0]}, Z={data.shape[2]}"
            )
        planes = select_channels(data, names, opts, nchan)[0]  # (C, 1, Y, X)
        return normalize(planes, opts, whole_stack=False)[:, 0], int(data.shape[1])
    except InputError as exc:
        if name is not None and exc.path is None:
            raise InputError(exc.reason, name) from exc
        raise


def _labels_2d(labels: Any, shape: tuple[int, int], name: str | Path | None) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim > 2:
        lab = lab.squeeze()
    if lab.ndim != 2:
        raise InputError(f"masks must be a 2D label image, got shape {np.asarray(labels).shape}", name)
    if lab.shape != shape:
        raise InputError(f"masks are {lab.shape[0]}x{lab.shape[1]} but the image is {shape[0]}x{shape[1]}", name)
    try:
        return prepare_labels(lab, "masks").astype(np.int32, copy=False)
    except InputError as exc:
        raise InputError(exc.reason, name) from exc


def _flows_cached(labels: np.ndarray, cache_dir: Path | None) -> np.ndarray:
    if cache_dir is None:
        return masks_to_flows(labels)
    digest = hashlib.sha1(np.ascontiguousarray(labels, np.int32).tobytes())
    digest.update(str(labels.shape).encode())
    path = Path(cache_dir) / f"flows_{digest.hexdigest()}.npy"
    if path.is_file():
        try:
            flows = np.load(path, allow_pickle=False)
            if flows.shape == (2, *labels.shape):
                return flows
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable flow cache %s (%s)", path, exc)
    flows = masks_to_flows(labels)
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, flows)
    return flows


def make_sample(
    image: Any,
    labels: Any,
    *,
    nchan: int,
    name: str = "image",
    axes: str | None = None,
    channel: int | str = 0,
    nuclear_channel: int | str | None = None,
    normalize_percentiles: tuple[float, float] = DEFAULTS.segment.normalize_percentiles,
    invert: bool = False,
    flow_cache: str | Path | None = None,
) -> TrainSample:
    """Build a :class:`TrainSample` (network input, labels, flows, diameter).

    Parameters
    ----------
    image : ndarray or xarray.DataArray
        The image (2D ``YX`` arrays need no ``axes``).
    labels : ndarray
        2D label image of the image's plane size.
    nchan : int
        Input channels of the network.
    name : str
        Used in messages.
    axes, channel, nuclear_channel, normalize_percentiles, invert
        As for :func:`~cellseg_bridge.segmentation.pipeline.segment`.
    flow_cache : str or Path, optional
        Folder where flows are cached (computed once per distinct label image).
    """
    x, nc = _input_and_channels(
        image, nchan=nchan, axes=axes, channel=channel, nuclear_channel=nuclear_channel,
        normalize_percentiles=normalize_percentiles, invert=invert, name=name,
    )
    lab = _labels_2d(labels, x.shape[-2:], name)
    flows = _flows_cached(lab, None if flow_cache is None else Path(flow_cache))
    diam, n = median_diameter(lab)
    return TrainSample(
        name=str(name), image=x, labels=lab, flows=flows, diameter=diam, n_masks=n,
        source_channels=nc,
    )


# --------------------------------------------------------------------------- files


def _stem(path: Path) -> str:
    name = path.name
    for suf in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return path.stem


def _first_existing(candidates: list[Path]) -> Path | None:
    return next((p for p in candidates if p.is_file()), None)


def find_pairs(
    folder: str | Path,
    *,
    mask_suffix: str = "_masks",
    masks_dir: str | Path | None = None,
) -> list[TrainPair]:
    """Image/mask pairs in ``folder`` by the naming rule of the module docstring.

    Raises
    ------
    InputError
        The folder does not exist, or no pair is found in it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("training folder not found", folder)
    mdir = Path(masks_dir) if masks_dir is not None else None
    if mdir is not None and not mdir.is_dir():
        raise InputError("masks folder not found", mdir)
    pairs: list[TrainPair] = []
    skipped: list[str] = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        low = path.name.lower()
        if not any(low.endswith(s) for s in IMAGE_SUFFIXES):
            continue
        stem = _stem(path)
        if stem.endswith((mask_suffix, "_seg", "_flows", "_cp_masks")) and mask_suffix:
            continue
        where = mdir if mdir is not None else folder
        cands = [where / f"{stem}{mask_suffix}{s}" for s in LABEL_SUFFIXES]
        if mdir is not None:
            cands += [mdir / f"{stem}{s}" for s in LABEL_SUFFIXES]
        found = _first_existing(cands)
        if found is not None:
            pairs.append(TrainPair(path, found, "labels"))
            continue
        found = _first_existing([where / f"{stem}_seg.npy"])
        if found is not None:
            pairs.append(TrainPair(path, found, "seg_npy"))
            continue
        found = _first_existing([where / pat.format(stem) for pat in ROI_NAMES])
        if found is not None:
            pairs.append(TrainPair(path, found, "rois"))
            continue
        found = _first_existing([where / pat.format(stem) for pat in GEOJSON_NAMES])
        if found is not None:
            pairs.append(TrainPair(path, found, "geojson"))
            continue
        skipped.append(path.name)
    if skipped:
        logger.warning(
            "%d image(s) without masks skipped (expected NAME%s.tif, NAME_seg.npy, NAME_RoiSet.zip or NAME.geojson): %s",
            len(skipped), mask_suffix, ", ".join(skipped[:8]) + (" ..." if len(skipped) > 8 else ""),
        )
    if not pairs:
        raise InputError(
            f"no image/mask pairs found (masks must be named NAME{mask_suffix}.tif, "
            "NAME_seg.npy, NAME_RoiSet.zip or NAME.geojson"
            + (f" in {mdir}" if mdir is not None else " beside the image")
            + ")",
            folder,
        )
    return pairs


def _read_image(path: Path) -> Any:
    from cellseg_bridge.io.reader import open_image

    img = open_image(path)
    if "S" in img.dims:  # RGB samples (e.g. RGB CZI): as channels when there is one channel
        if img.sizes.get("C", 1) == 1:
            img = img.isel(C=0).rename({"S": "C"}).transpose("T", "C", "Z", "Y", "X")
        else:
            raise InputError("images with both channels and RGB samples are not supported for training", path)
    return img


def _read_label_file(path: Path) -> np.ndarray:
    """A label image as an array: TIFFs through the image reader (one TIFF path for images and
    masks: ImageJ's big-endian TIFFs, OME-TIFF, tiled files), other formats through imageio."""
    if path.suffix.lower() in (".tif", ".tiff"):
        from cellseg_bridge.io.reader import open_image

        return np.asarray(open_image(path).values)  # (T, C, Z, Y, X); load_pair squeezes it
    try:
        import imageio.v3 as iio

        return np.asarray(iio.imread(path))
    except (OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"cannot read label image ({exc})", path) from exc


def load_pair(pair: TrainPair) -> tuple[Any, np.ndarray]:
    """Read an image and its masks (rasterising ROIs at the image's size).

    Raises
    ------
    InputError
        Unreadable files, masks of another size, ROIs none of which lie on the
        image (a ROI zip that does not fit it).
    """
    image = _read_image(pair.image)
    ly, lx = int(image.sizes["Y"]), int(image.sizes["X"])
    if pair.kind == "labels":
        labels = _read_label_file(pair.masks)
    elif pair.kind == "seg_npy":
        from cellseg_bridge.io.seg_npy import read_seg_npy

        labels = np.asarray(read_seg_npy(pair.masks).masks)
    elif pair.kind in ("rois", "geojson"):
        if pair.kind == "rois":
            from cellseg_bridge.io.roi_import import rois_to_labels

            labels, report = rois_to_labels(pair.masks, shape=(ly, lx))
        else:
            from cellseg_bridge.io.geojson import geojson_to_labels

            labels, report = geojson_to_labels(pair.masks, (ly, lx))
        for entry in report.corrupt:
            logger.warning("%s: corrupt ROI entry skipped: %s", pair.masks, entry)
        for idx, name, reason in report.skipped:
            logger.warning("%s: ROI %d %r skipped: %s", pair.masks, idx, name, reason)
        if report.n_rois > 0 and report.n_labels == 0:
            raise InputError(
                f"none of the {report.n_rois} ROIs gives a mask on the {ly}x{lx} image "
                "(ROIs outside the image, or not area ROIs): does this file belong to "
                f"{pair.image.name}?",
                pair.masks,
            )
        off = [s for s in report.skipped if "off the image" in s[2] or "outside" in s[2]]
        if off and len(off) > report.n_labels:
            raise InputError(
                f"{len(off)} of {report.n_rois} ROIs lie outside the {ly}x{lx} image: "
                f"the file does not fit {pair.image.name}",
                pair.masks,
            )
    else:
        raise InputError(f"unknown mask kind {pair.kind!r}", pair.masks)
    labels = np.asarray(labels)
    if labels.ndim > 2:
        labels = labels.squeeze()
    if labels.shape != (ly, lx):
        raise InputError(
            f"masks are {'x'.join(map(str, labels.shape))} but the image {pair.image.name} is {ly}x{lx}",
            pair.masks,
        )
    return image, labels

"""The segmentation pipeline: image -> labels (Cellpose 2.0/3 inference).

Usage::

    from cellseg_bridge.segmentation.pipeline import segment, load_model
    result = segment(open_image("cells.czi"), model="nuclei", channel="DAPI")
    model = load_model("/path/to/checkpoint.pth")          # load once for a batch
    result = segment(array2d, model=model, diameter=None)  # ndarray, axes "YX"

Steps, per time point (each time point is independent):

1. **Channels.** ``channel`` (index or name from the image's ``channel_names``)
   and, for two-channel networks, ``nuclear_channel`` (None: a zero channel, as
   Cellpose's ``channels=[0, 0]``).
2. **Normalisation.** Per channel, percentiles ``normalize_percentiles`` (1, 99)
   mapped to 0, 1 (:func:`~cellseg_bridge.core.transforms.normalize_percentile`),
   per plane in 2D, over the whole stack for ``do_3d`` and for stitching (as
   Cellpose's ``norm3D``). A constant channel becomes zeros.
3. **Scale.** ``rescale = diam_mean / diameter``. With ``diameter=None``: if the
   model has a size model (2D only), the Cellpose rule: styles at the model's
   own scale -> style estimate -> one segmentation at that scale (masks at
   network scale, 200 iterations, the DEFAULT cellprob/flow thresholds and
   min_size as Cellpose's SizeModel, so that ``cellprob_threshold`` changes the
   final masks only, not the diameter) -> final diameter = median mask diameter
   (``diam_mean`` if none); otherwise the model's ``diam_labels`` (its mean
   training diameter), as Cellpose's ``CellposeModel.eval``.
4. **Network.** Bilinear resize by ``rescale`` (sizes truncated), pad, tiles of
   ``tile_size`` blended with a sigmoid taper (:mod:`cellseg_bridge.nn.inference`),
   flows and cell probability resized back to the image size.
5. **Masks** (CPU, :func:`~cellseg_bridge.core.dynamics.compute_masks`; for Cellpose-SAM
   models in 2D Cellpose 4's variant, :func:`~cellseg_bridge.core.dynamics_cp4.compute_masks_cp4`):
   ``niter`` None -> ``int(200 / rescale)`` (Cellpose: ``(1 / rescale) * 200``
   truncated).

3D (``Z > 1``): ``do_3d=True`` runs the 2D network on the YX, ZY and ZX planes of
the stack, Z first resampled by ``anisotropy`` (None: Z step / X pixel size from
the image metadata, 1.0 if unknown), sums the flows (dZ from ZY and ZX, dY
from YX and ZY, dX from YX and ZX) and the cell probabilities, resamples back
and runs 3D dynamics. As in Cellpose, the flow QC is not applied in 3D (the
summed flows are about twice the unit flows), so ``flow_threshold`` is
ignored there. ``do_3d=False``: each plane is segmented in 2D; with
``stitch_threshold > 0`` masks of consecutive planes are linked by IoU
(:func:`~cellseg_bridge.core.stitch.stitch_planes`) and ``min_size`` applies to
the 3D objects.

Inputs that are refused with :class:`~cellseg_bridge.errors.InputError`: empty
arrays, planes smaller than :data:`MIN_SIDE` pixels, NaN or infinite pixels
(no guess of what they should be: replace them first), planes larger than
:data:`MAX_PLANE_PIXELS` (use the Dask large-image path), an ``axes`` string
that does not fit the array (e.g. a 3D stack given as ``"YX"``), a channel that
does not exist (the message lists those that do), unknown options. An image
with nothing in it (constant, or no pixel above ``cellprob_threshold``) gives
all-zero labels, not an error.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cellseg_bridge.config import DEFAULTS, SegmentOptions
from cellseg_bridge.core import transforms
from cellseg_bridge.core.dynamics import fill_holes_and_remove_small_masks
from cellseg_bridge.core.stitch import stitch_planes
from cellseg_bridge.errors import InputError
from cellseg_bridge.nn.inference import run_network, select_device
from cellseg_bridge.segmentation.model import SegmentationModel, load_network_model
from cellseg_bridge.segmentation.preprocess import MAX_PLANE_PIXELS, MIN_SIDE, as_tczyx, normalize, select_channels
from cellseg_bridge.segmentation.suggest import AUTO, AutoModel, ModelChoice, load_auto_model

__all__ = [
    "SegmentResult",
    "SegmentationModel",
    "load_model",
    "segment",
    "MIN_SIDE",
    "MAX_PLANE_PIXELS",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- model


def load_model(
    name_or_path: str | Path | None = None, device: str | torch.device = "auto"
) -> SegmentationModel | AutoModel:
    """Load a segmentation model once (for batches): network, config and size model.

    Parameters
    ----------
    name_or_path : str or Path, optional
        Registry name (``"nuclei"``, ``"cyto3"``) or checkpoint path; default
        ``DEFAULTS.segment.model``. ``"auto"`` gives an
        :class:`~cellseg_bridge.segmentation.suggest.AutoModel` (the generalist picks a zoo
        model per image from its style).
    device : str or torch.device
        ``"auto"`` (CUDA, MPS, CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
    """
    name = DEFAULTS.segment.model if name_or_path is None else name_or_path
    if str(name) == AUTO:
        return load_auto_model(select_device(device))
    return load_network_model(name, device)


# --------------------------------------------------------------------------- result


@dataclass
class SegmentResult:
    """What :func:`segment` returns.

    Attributes
    ----------
    labels : ndarray of uint16 (uint32 beyond 65535 objects), shape (T, Z, Y, X)
        0 = background; labels 1..n per time point (3D objects with ``do_3d`` or
        stitching; without stitching, each plane of a Z stack is labelled on its own).
    flows : ndarray of float32, shape (T, 2 or 3, Z, Y, X), or None
        Network flows at network-output scale (5x unit flows), at image size:
        ``(dY, dX)`` in 2D / plane by plane, ``(dZ, dY, dX)`` (summed over the
        three views) with ``do_3d``. Only with ``return_flows=True``.
    cellprob : ndarray of float32, shape (T, Z, Y, X), or None
        Cell probability logits (summed over views with ``do_3d``); only with
        ``return_flows=True``.
    styles : ndarray of float32, shape (T, Z, 256)
        Style vector per plane (YX planes with ``do_3d``).
    diameter : float
        Diameter used (pixels) for the first time point.
    diameters : list of float
        Diameter used for each time point.
    model : str
        Model name or path.
    options : SegmentOptions
        The options used (defaults + overrides).
    timings : dict
        Seconds spent in ``network`` and ``masks`` (all time points).
    choice : ModelChoice or None
        With ``model="auto"``: the zoo model chosen and its confidence.
    physical_pixel_sizes : dict
        ``{"Z", "Y", "X"}`` in µm (None where unknown), from the image.
    """

    labels: np.ndarray
    flows: np.ndarray | None
    cellprob: np.ndarray | None
    styles: np.ndarray
    diameter: float
    diameters: list[float]
    model: str
    options: SegmentOptions
    timings: dict[str, float] = field(default_factory=dict)
    choice: ModelChoice | None = None
    physical_pixel_sizes: dict[str, float | None] = field(default_factory=dict)

    def to_dataarray(self) -> Any:
        """The labels as an ``xarray.DataArray`` (dims T, Z, Y, X) with the pixel sizes, model and diameter.

        Single time points and planes stay as axes of length 1 (``.squeeze()`` drops them).
        """
        import xarray as xr

        return xr.DataArray(
            self.labels,
            dims=("T", "Z", "Y", "X"),
            name="labels",
            attrs={"physical_pixel_sizes": dict(self.physical_pixel_sizes), "model": self.model,
                   "diameter": self.diameter, "diameters": list(self.diameters),
                   "options": dataclasses.asdict(self.options)},
        )


# --------------------------------------------------------------------------- input handling


def _anisotropy(opts: SegmentOptions, sizes: dict) -> float:
    if opts.anisotropy is not None:
        return float(opts.anisotropy)
    z, x = sizes.get("Z"), sizes.get("X")
    if z and x and z > 0 and x > 0:
        a = float(z) / float(x)
        logger.info("anisotropy %.3g from the pixel sizes (Z %.4g / X %.4g)", a, z, x)
        return a
    logger.info("anisotropy 1.0 (pixel sizes unknown)")
    return 1.0


def _default_niter(rescale: float) -> int:
    """Cellpose: ``niter = (1 / rescale) * 200`` as a uint32 (truncated)."""
    return int((1.0 / rescale) * 200)


# --------------------------------------------------------------------------- the steps


class _Runner:
    def __init__(self, model: SegmentationModel, opts: SegmentOptions):
        self.model = model
        self.opts = opts
        self.t_net = 0.0
        self.t_masks = 0.0

    def net(self, planes: np.ndarray, rescale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Network output at the planes' size for (N, C, Y, X) planes, rescaled for the net."""
        o = self.opts
        ly, lx = planes.shape[-2:]
        shape = transforms.scaled_shape((ly, lx), rescale)
        if shape[0] * shape[1] > MAX_PLANE_PIXELS:
            raise InputError(f"the image rescaled by {rescale:.3g} would be {shape}: too large")
        x = transforms.resize(planes, shape) if shape != (ly, lx) else planes
        tic = time.perf_counter()
        y, style = run_network(
            self.model.net,
            x,
            tile_size=o.tile_size,
            tile_overlap=o.tile_overlap,
            augment=o.augment,
            batch_size=o.batch_size,
            precision=o.precision,
        )
        self.t_net += time.perf_counter() - tic
        return y, style

    def masks(self, dp: np.ndarray, cellprob: np.ndarray, niter: int, *, min_size=None, flow_threshold=None,
              cellprob_threshold=None):
        o = self.opts
        tic = time.perf_counter()
        lab = self.model.compute_masks(  # Cellpose-SAM in 2D: Cellpose 4's dynamics
            dp,
            cellprob,
            cellprob_threshold=o.cellprob_threshold if cellprob_threshold is None else cellprob_threshold,
            flow_threshold=o.flow_threshold if flow_threshold is None else flow_threshold,
            niter=niter,
            min_size=o.min_size if min_size is None else min_size,
            max_size_fraction=o.max_size_fraction,
        )
        self.t_masks += time.perf_counter() - tic
        return lab

    def niter(self, rescale: float) -> int:
        return int(self.opts.niter) if self.opts.niter else _default_niter(rescale)

    # ---- 2D
    def planes_2d(self, planes: np.ndarray, rescale: float, stitch: bool):
        """Segment (Z, C, Y, X) normalised planes independently in 2D."""
        ly, lx = planes.shape[-2:]
        y, styles = self.net(planes, rescale)
        if y.shape[-2:] != (ly, lx):
            y = transforms.resize(y, (ly, lx))
        niter = self.niter(rescale)
        labels = np.zeros((planes.shape[0], ly, lx), np.uint32)
        for z in range(planes.shape[0]):
            labels[z] = self.masks(y[z, :2], y[z, 2], niter, min_size=-1 if stitch else None)
        return labels, y[:, :2], y[:, 2], styles

    def estimate_diameter(self, plane: np.ndarray) -> float:
        """Cellpose's size-model rule on one normalised (C, Y, X) plane."""
        m = self.model
        r0 = m.diam_mean / m.diam_labels
        _, style = self.net(plane[None], r0)
        d_style = float(m.size_model.predict(style[0]))
        if not math.isfinite(d_style) or d_style <= 0:
            d_style = m.diam_mean
        rescale = m.diam_mean / d_style
        y, _ = self.net(plane[None], rescale)  # masks at network scale (resample=False)
        # with the default thresholds, as Cellpose's SizeModel: the user's cellprob / flow thresholds
        # (and min_size) shape the final masks only, not the diameter (a lower cellprob threshold
        # would otherwise grow these masks, hence the diameter, and give fewer, larger cells)
        base = DEFAULTS.segment
        lab = self.masks(y[0, :2], y[0, 2], 200, min_size=base.min_size, flow_threshold=base.flow_threshold,
                         cellprob_threshold=base.cellprob_threshold)
        # back to image size by nearest neighbour (cv2.INTER_NEAREST: src = floor(dst * in / out))
        ly, lx = plane.shape[-2:]
        iy = np.minimum((np.arange(ly) * lab.shape[0]) // ly, lab.shape[0] - 1)
        ix = np.minimum((np.arange(lx) * lab.shape[1]) // lx, lab.shape[1] - 1)
        lab = lab[iy][:, ix]
        counts = np.bincount(lab.ravel().astype(np.int64))[1:]
        counts = counts[counts > 0]
        diam = float(np.median(np.sqrt(counts)) / (math.sqrt(math.pi) / 2)) if counts.size else 0.0
        if not (diam > 0 and math.isfinite(diam)):
            diam = m.diam_mean
        logger.info("diameter: style estimate %.2f, from masks %.2f px", d_style, diam)
        return diam

    # ---- 3D
    def volume_3d(self, vol: np.ndarray, rescale: float, anisotropy: float):
        """do_3d on a normalised (C, Z, Y, X) stack: flows from three views, 3D dynamics."""
        c, lz, ly, lx = vol.shape
        x = vol
        ry, rx = transforms.scaled_shape((ly, lx), rescale)
        rz = max(1, int(lz * anisotropy * rescale))
        if (ry, rx) != (ly, lx):
            x = transforms.resize(x, (ry, rx))
        if rz != lz:
            x = transforms.resize(x.transpose(0, 2, 1, 3), (rz, rx)).transpose(0, 2, 1, 3)
        logger.info(
            "3D: stack %s resampled to %s (rescale %.3g, anisotropy %.3g)",
            (lz, ly, lx), (rz, ry, rx), rescale, anisotropy,
        )
        # YX planes: (Z, C, Y, X) -> dY, dX
        yx, styles = self.net(np.ascontiguousarray(x.transpose(1, 0, 2, 3)))
        flows = np.zeros((4, rz, ry, rx), np.float32)  # dZ, dY, dX, cellprob
        flows[1] += yx[:, 0]
        flows[2] += yx[:, 1]
        flows[3] += yx[:, 2]
        del yx
        # planes along Y: (Y, C, Z, X) -> dZ, dX
        zx, _ = self.net(np.ascontiguousarray(x.transpose(2, 0, 1, 3)))
        flows[0] += zx[:, 0].transpose(1, 0, 2)
        flows[2] += zx[:, 1].transpose(1, 0, 2)
        flows[3] += zx[:, 2].transpose(1, 0, 2)
        del zx
        # planes along X: (X, C, Z, Y) -> dZ, dY
        zy, _ = self.net(np.ascontiguousarray(x.transpose(3, 0, 1, 2)))
        flows[0] += zy[:, 0].transpose(1, 2, 0)
        flows[1] += zy[:, 1].transpose(1, 2, 0)
        flows[3] += zy[:, 2].transpose(1, 2, 0)
        del zy
        if (ry, rx) != (ly, lx):
            flows = transforms.resize(flows, (ly, lx))
        if rz != lz:
            flows = transforms.resize(flows.transpose(0, 2, 1, 3), (lz, lx))
            flows = np.ascontiguousarray(flows.transpose(0, 2, 1, 3))
        labels = self.masks(flows[:3], flows[3], self.niter(rescale), flow_threshold=0.0)
        if styles.shape[0] != lz:  # styles per original plane: nearest resampled plane
            idx = np.minimum((np.arange(lz) * rz) // lz, rz - 1)
            styles = styles[idx]
        return labels, flows[:3], flows[3], styles


def segment(
    image: Any,
    model: SegmentationModel | str | Path | None = None,
    *,
    axes: str | None = None,
    options: SegmentOptions | None = None,
    **overrides: Any,
) -> SegmentResult:
    """Segment cells or nuclei in an image with a Cellpose-style network.

    Parameters
    ----------
    image : xarray.DataArray or ndarray
        A TCZYX DataArray from :func:`~cellseg_bridge.io.reader.open_image`
        (channel names and pixel sizes are used), or an array whose axes are
        given by ``axes``.
    model : SegmentationModel, AutoModel, str or Path, optional
        A model from :func:`load_model` (load once, segment many), a registry
        name or a checkpoint path; default ``DEFAULTS.segment.model``.
        ``"auto"``: the zoo model suggested by the generalist's style
        (``result.choice``; :mod:`cellseg_bridge.segmentation.suggest`).
    axes : str, optional
        Axes of an ndarray, letters of ``TCZYX`` (e.g. ``"YX"``, ``"CYX"``,
        ``"YXC"``, ``"ZYX"``, ``"TZCYX"``). Default ``"YX"`` for 2D arrays;
        required otherwise (never guessed).
    options : SegmentOptions, optional
        The options (default ``DEFAULTS.segment``).
    **overrides
        Overrides of :class:`~cellseg_bridge.config.SegmentOptions` fields
        (``diameter``, ``channel``, ``tile_size``, ``do_3d``, ...), plus
        ``return_flows`` (bool, default False).

    Returns
    -------
    SegmentResult

    Raises
    ------
    InputError
        Unknown option, bad option value, unusable image (see the module
        docstring), missing channel, model that cannot be loaded.
    """
    return_flows = bool(overrides.pop("return_flows", False))
    opts = SegmentOptions.derive(options, **overrides)
    if model is None:
        model = opts.model
    if isinstance(model, str) and model == AUTO:
        model = load_auto_model(opts.device)
    if isinstance(model, AutoModel):
        choice = model.choose(image, axes=axes, options=opts)
        result = segment(image, model.model(choice.model), axes=axes, options=opts, return_flows=return_flows)
        result.choice = choice
        return result
    data, names, sizes = as_tczyx(image, axes)
    if not isinstance(model, SegmentationModel):
        model = load_model(model, opts.device)
    opts = dataclasses.replace(model.resolve_options(opts), model=model.name)
    planes_all = select_channels(data, names, opts, model.nchan)
    del data
    nt, _, nz, ly, lx = planes_all.shape
    run = _Runner(model, opts)
    three_d = nz > 1 and opts.do_3d
    stitch = nz > 1 and not opts.do_3d and opts.stitch_threshold > 0
    if nz > 1 and not opts.do_3d and not stitch:
        logger.info("Z stack of %d planes segmented plane by plane (no stitching)", nz)
    if opts.do_3d and nz == 1:
        logger.warning("do_3d requested but the image has a single Z plane: segmenting in 2D")
    anisotropy = _anisotropy(opts, sizes) if three_d else 1.0

    labels_t, flows_t, prob_t, styles_t, diams = [], [], [], [], []
    for t in range(nt):
        planes = normalize(planes_all[t], opts, whole_stack=three_d or stitch)
        if opts.diameter is not None:
            diameter = float(opts.diameter)
        elif model.size_model is not None and not three_d:
            diameter = run.estimate_diameter(planes[:, nz // 2])
        else:
            if model.size_model is not None:
                logger.info("no diameter estimation in 3D; using the model's diam_labels")
            diameter = model.default_diameter
        rescale = model.diam_mean / diameter
        logger.info("time point %d: diameter %.3g px, rescale %.3g", t, diameter, rescale)
        if three_d:
            lab, fl, cp, st = run.volume_3d(planes, rescale, anisotropy)
        else:
            zplanes = np.ascontiguousarray(planes.transpose(1, 0, 2, 3))  # (Z, C, Y, X)
            lab, fl, cp, st = run.planes_2d(zplanes, rescale, stitch)
            fl = fl.transpose(1, 0, 2, 3)  # (2, Z, Y, X)
            if stitch:
                tic = time.perf_counter()
                lab = stitch_planes(lab, opts.stitch_threshold)
                lab = fill_holes_and_remove_small_masks(lab, opts.min_size)
                run.t_masks += time.perf_counter() - tic
        labels_t.append(lab.reshape(nz, ly, lx))
        styles_t.append(st.reshape(nz, -1))
        diams.append(diameter)
        if return_flows:
            flows_t.append(fl.reshape(fl.shape[0], nz, ly, lx).astype(np.float32, copy=False))
            prob_t.append(cp.reshape(nz, ly, lx).astype(np.float32, copy=False))
    labels = np.stack(labels_t)
    nmax = int(labels.max()) if labels.size else 0
    labels = labels.astype(np.uint16 if nmax < 2**16 else np.uint32)
    if nmax == 0:
        logger.info("no objects found")
    return SegmentResult(
        labels=labels,
        flows=np.stack(flows_t) if return_flows else None,
        cellprob=np.stack(prob_t) if return_flows else None,
        styles=np.stack(styles_t).astype(np.float32),
        diameter=float(diams[0]),
        diameters=[float(d) for d in diams],
        model=model.name,
        options=opts,
        timings={"network": run.t_net, "masks": run.t_masks},
        physical_pixel_sizes={axis: sizes.get(axis) for axis in ("Z", "Y", "X")},
    )

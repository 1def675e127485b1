"""Image restoration (Cellpose 3 style): denoise, deblur, upsample, one-click, anisotropic.

Usage::

    import cellseg_bridge as cb
    result = cb.restore(cb.open_image("noisy.czi"), types="denoise")   # model "denoise_nuclei"
    result = cb.restore(array2d, model="/path/denoise_cyto3")          # a Cellpose 3 checkpoint
    cb.segment(result.to_dataarray(), "nuclei")

A restoration model is a :class:`~cellseg_bridge.nn.net.CellposeUNet` with one
input channel and ``nout`` 1 (Cellpose 3's ``denoise_cyto3``, ``deblur_nuclei``,
... load unchanged; so do the models trained by :mod:`cellseg_bridge.restoration.training`).
Names: ``<type>_<target>``, e.g. ``denoise_nuclei``, found through the model
registry (bundled, cache, Cellpose's folder).

Per plane and restored channel (every channel by default; a Z stack plane by
plane, time points one by one):

1. **Normalise** the 1st/99th percentiles to 0/1 (as :func:`~cellseg_bridge.segmentation.pipeline.segment`).
2. **Rescale** by ``diam_mean / diameter`` when ``diameter`` is given (the
   network's diam_mean: 17 for nuclei, 30 for cyto3), bilinearly.
3. **Network** in tiles blended with a taper (:func:`~cellseg_bridge.nn.inference.run_network`),
   resized back to the plane size.

Several types are chained in order, the input of each renormalised. The output
is a float32 image on the *normalised* scale (about 0..1, as Cellpose 3's
restoration models return it), not the input's intensity units: use it to
look at and to segment (``segment`` normalises its input again, which leaves
such an image about unchanged), not to measure intensities. Channels that are
not restored are copied unchanged.

Bad input raises :class:`~cellseg_bridge.errors.InputError`: NaN or infinite
pixels, planes under 8 px, a channel that does not exist, a checkpoint that is
not a restoration network (e.g. a segmentation model), an unknown type.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cellseg_bridge.config import DEFAULTS, RestoreOptions
from cellseg_bridge.core import transforms
from cellseg_bridge.core.degrade import RESTORE_KINDS
from cellseg_bridge.errors import InputError
from cellseg_bridge.nn.checkpoint import load_checkpoint
from cellseg_bridge.nn.inference import run_network, select_device
from cellseg_bridge.nn.net import CellposeUNet
from cellseg_bridge.nn.registry import resolve_model

__all__ = [
    "RestorationModel",
    "RestoreResult",
    "load_restore_model",
    "model_name_for",
    "parse_types",
    "restore",
    "restore_planes",
]

logger = logging.getLogger(__name__)


@dataclass
class RestorationModel:
    """A loaded restoration network.

    Attributes
    ----------
    net : CellposeUNet
        One input channel, ``nout`` 1, eval mode.
    config : dict
        The checkpoint's config.
    name : str
        Name or path it was loaded from.
    device : torch.device
    """

    net: CellposeUNet
    config: dict
    name: str
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def diam_mean(self) -> float:
        """Object diameter (pixels) the network works at."""
        return float(self.net.diam_mean.item())


def parse_types(types: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"denoise,deblur"`` or a sequence -> validated tuple of restoration types (default ``DEFAULTS``)."""
    if types is None:
        return tuple(DEFAULTS.restore.types)
    if isinstance(types, str):
        types = [t for t in types.replace(" ", "").split(",") if t]
    out = tuple(str(t).lower() for t in types)
    if not out:
        raise InputError(f"no restoration type given; known: {', '.join(RESTORE_KINDS)}")
    bad = [t for t in out if t not in RESTORE_KINDS]
    if bad:
        raise InputError(f"unknown restoration type(s) {', '.join(bad)}; known: {', '.join(RESTORE_KINDS)}")
    return out


def model_name_for(kind: str, target: str = DEFAULTS.restore.target) -> str:
    """Registry name of the model for restoration ``kind`` and model family ``target``: ``<kind>_<target>``."""
    return f"{parse_types([kind])[0]}_{target}"


def load_restore_model(name_or_path: str | Path, device: str | torch.device = "auto") -> RestorationModel:
    """Load a restoration network by registry name or checkpoint path.

    Raises
    ------
    InputError
        Model not found or not loadable, or not a restoration network (one input
        channel, ``nout`` 1).
    """
    path = resolve_model(name_or_path)
    dev = select_device(device)
    net, config = load_checkpoint(path, dev)
    if int(config["nout"]) != 1 or int(config["nbase"][0]) != 1:
        raise InputError(
            f"not a restoration network: it has {config['nbase'][0]} input channel(s) and nout "
            f"{config['nout']} (restoration networks have 1 and 1; segmentation models cannot restore)",
            path,
        )
    return RestorationModel(net=net, config=config, name=str(name_or_path), device=dev)


def restore_planes(
    model: RestorationModel,
    planes: np.ndarray,
    *,
    diameter: float | None = None,
    normalize_percentiles: tuple[float, float] = DEFAULTS.restore.normalize_percentiles,
    tile_size: int = DEFAULTS.restore.tile_size,
    batch_size: int = DEFAULTS.restore.batch_size,
) -> np.ndarray:
    """Restore a stack of single-channel 2D planes ``(N, Y, X)``; returns float32 ``(N, Y, X)``.

    Each plane is normalised on its own (percentiles), rescaled by
    ``diam_mean / diameter`` (no rescaling when ``diameter`` is None), run
    through the network and resized back.
    """
    planes = np.asarray(planes, dtype=np.float32)
    if planes.ndim != 3:
        raise InputError(f"planes must be (N, Y, X), got shape {planes.shape}")
    lo, hi = normalize_percentiles
    x = np.stack([transforms.normalize_percentile(p, lo, hi, channel_axis=None) for p in planes])[:, None]
    ly, lx = planes.shape[-2:]
    rescale = 1.0 if diameter is None else model.diam_mean / float(diameter)
    shape = transforms.scaled_shape((ly, lx), rescale)
    if min(shape) < 8:
        raise InputError(f"the planes rescaled by {rescale:.3g} would be {shape[0]}x{shape[1]} px: too small")
    if shape != (ly, lx):
        x = transforms.resize(x, shape)
    y, _ = run_network(model.net, x, tile_size=tile_size, batch_size=batch_size)
    y = y[:, 0]
    if y.shape[-2:] != (ly, lx):
        y = transforms.resize(y, (ly, lx))
    return np.ascontiguousarray(y, dtype=np.float32)


@dataclass
class RestoreResult:
    """What :func:`restore` returns.

    Attributes
    ----------
    image : ndarray of float32, shape (T, C, Z, Y, X)
        Restored channels on the normalised scale; other channels unchanged.
    channel_names : list of str or None
    physical_pixel_sizes : dict
    restored_channels : list of int
    types : list of str
        Restoration types applied, in order (``"model"`` for an explicit model).
    models : list of str
        Model names or paths used, in order.
    diameter : float or None
    timings : dict
        Seconds in the network (all planes).
    """

    image: np.ndarray
    channel_names: list[str] | None
    physical_pixel_sizes: dict
    restored_channels: list[int]
    types: list[str]
    models: list[str]
    diameter: float | None
    timings: dict[str, float] = field(default_factory=dict)

    def to_dataarray(self) -> Any:
        """The restored image as an ``xarray.DataArray`` (dims TCZYX) with channel names and pixel sizes."""
        import xarray as xr

        names = self.channel_names or [f"ch{i}" for i in range(self.image.shape[1])]
        return xr.DataArray(
            self.image,
            dims=tuple("TCZYX"),
            attrs={"channel_names": list(names), "physical_pixel_sizes": dict(self.physical_pixel_sizes),
                   "restored": {"types": self.types, "models": self.models}},
        )


def _options(options: dict[str, Any]) -> RestoreOptions:
    """``DEFAULTS.restore`` with ``options`` (validated by the dataclass)."""
    return RestoreOptions.derive(None, **options)


def _channels(which: Any, names: list[str] | None, n: int) -> list[int]:
    from cellseg_bridge.segmentation.preprocess import channel_index

    if which is None:
        return list(range(n))
    items = which if isinstance(which, (list, tuple)) else [which]
    return sorted({channel_index(c, names, n, "channel") for c in items})


def restore(
    image: Any,
    types: str | Sequence[str] | None = None,
    *,
    model: RestorationModel | str | Path | Sequence[RestorationModel | str | Path] | None = None,
    axes: str | None = None,
    **options: Any,
) -> RestoreResult:
    """Restore an image with Cellpose-3-style restoration networks.

    Parameters
    ----------
    image : xarray.DataArray or ndarray
        A TCZYX DataArray (:func:`~cellseg_bridge.io.reader.open_image`) or an
        array with ``axes`` (2D arrays default to ``"YX"``).
    types : str or sequence of str, optional
        ``"denoise"``, ``"deblur"``, ``"upsample"``, ``"oneclick"``, ``"aniso"``
        or several (``"denoise,deblur"``), applied in order; the model of each is
        ``<type>_<target>``. Default ``DEFAULTS.restore.types``.
    model : RestorationModel, name, path, or a sequence of them, optional
        Explicit model(s), used instead of ``types`` (e.g. a Cellpose 3
        ``denoise_cyto3`` file).
    axes : str, optional
        Axes of an ndarray (letters of TCZYX).
    **options
        Fields of :class:`~cellseg_bridge.config.RestoreOptions`: ``target``,
        ``channel`` (index, name or list; None = all), ``diameter``,
        ``normalize_percentiles``, ``tile_size``, ``batch_size``, ``device``.

    Returns
    -------
    RestoreResult

    Raises
    ------
    InputError
        See the module docstring.
    """
    from cellseg_bridge.segmentation.preprocess import as_tczyx

    opts = _options(options)
    if model is None and opts.model is not None:
        model = opts.model
    if model is not None:
        specs = list(model) if isinstance(model, (list, tuple)) else [model]
        kinds = ["model"] * len(specs)
    else:
        kinds = list(parse_types(types))
        specs = [model_name_for(k, opts.target) for k in kinds]
    data, names, sizes = as_tczyx(image, axes)
    chans = _channels(opts.channel, list(names) if names is not None else None, data.shape[1])
    used = data[:, chans]
    bad = ~np.isfinite(used) if used.dtype.kind == "f" else None
    if bad is not None and bad.any():
        raise InputError(
            f"the image has {int(bad.sum())} NaN or infinite pixel(s) in the channel(s) to restore; "
            "replace them (e.g. by the background value) first"
        )
    models = [m if isinstance(m, RestorationModel) else load_restore_model(m, opts.device) for m in specs]
    out = data.astype(np.float32, copy=True)
    nt, _, nz, ly, lx = data.shape
    tic = time.perf_counter()
    for c in chans:
        planes = out[:, c].reshape(nt * nz, ly, lx)
        for m in models:
            planes = restore_planes(
                m, planes, diameter=opts.diameter, normalize_percentiles=opts.normalize_percentiles,
                tile_size=opts.tile_size, batch_size=opts.batch_size,
            )
        out[:, c] = planes.reshape(nt, nz, ly, lx)
    elapsed = time.perf_counter() - tic
    logger.info("restored channel(s) %s with %s in %.2f s", chans, ", ".join(m.name for m in models), elapsed)
    return RestoreResult(
        image=out,
        channel_names=[str(n) for n in names] if names is not None else None,
        physical_pixel_sizes=dict(sizes),
        restored_channels=chans,
        types=kinds,
        models=[m.name for m in models],
        diameter=opts.diameter,
        timings={"network": elapsed},
    )

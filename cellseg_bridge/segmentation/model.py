"""A loaded segmentation network and what the pipeline needs beside it (config, size model, device).

:func:`load_network_model` loads one network; :func:`cellseg_bridge.segmentation.pipeline.load_model`
is the public loader (it also knows ``"auto"``, :mod:`cellseg_bridge.segmentation.suggest`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cellseg_bridge.config import DEFAULTS, SegmentOptions
from cellseg_bridge.core.dynamics import compute_masks
from cellseg_bridge.core.dynamics_cp4 import compute_masks_cp4
from cellseg_bridge.errors import InputError
from cellseg_bridge.nn.inference import select_device
from cellseg_bridge.nn.net import CellposeUNet
from cellseg_bridge.nn.registry import resolve_model, size_model_path
from cellseg_bridge.nn.size_model import SizeModel, load_size_model
from cellseg_bridge.nn.vit_checkpoint import FAMILY_SAM, FAMILY_UNET, load_network
from cellseg_bridge.nn.vit_sam import CellposeSAM
from cellseg_bridge.segmentation.preprocess import sam_channels

__all__ = ["SegmentationModel", "load_network_model"]

logger = logging.getLogger(__name__)


@dataclass
class SegmentationModel:
    """A loaded segmentation network with what the pipeline needs beside it.

    Attributes
    ----------
    net : CellposeUNet or CellposeSAM
        The network in eval mode, on ``device``.
    config : dict
        The checkpoint's config (architecture, diameters, provenance).
    name : str
        The model name or path it was loaded from.
    size_model : SizeModel or None
        Style-to-diameter regression, if the model has one.
    device : torch.device
        Where the network runs (masks are always computed on the CPU).
    """

    net: CellposeUNet | CellposeSAM
    config: dict
    name: str
    size_model: SizeModel | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def diam_mean(self) -> float:
        """Diameter (pixels) the network works at."""
        return float(self.net.diam_mean.item())

    @property
    def diam_labels(self) -> float:
        """Mean diameter of the training labels."""
        return float(self.net.diam_labels.item())

    @property
    def family(self) -> str:
        """``"cellpose-unet"`` (Cellpose 2/3) or ``"cellpose-sam"`` (Cellpose 4)."""
        return str(self.config.get("family", FAMILY_UNET))

    @property
    def default_diameter(self) -> float:
        """The diameter used when none is given: ``diam_labels`` (Cellpose 3's rule), or for
        Cellpose-SAM ``diam_mean`` (no rescaling, as Cellpose 4 runs without a diameter)."""
        return self.diam_mean if self.family == FAMILY_SAM else self.diam_labels

    @property
    def fixed_tiles(self) -> bool:
        """Whether the network runs one tile size only (Cellpose-SAM: 256 px)."""
        return hasattr(self.net, "tile_size")

    @property
    def nchan(self) -> int:
        """Input channels of the network."""
        return int(self.net.nchan)

    def compute_masks(self, dP: np.ndarray, cellprob: np.ndarray, *,
                      window: tuple[tuple[int, int], tuple[int, int]] | None = None, **kwargs: Any) -> np.ndarray:
        """Masks from this network's flows with the dynamics of its generation.

        Cellpose-SAM in 2D: Cellpose 4's (:func:`~cellseg_bridge.core.dynamics_cp4.compute_masks_cp4`;
        ``window``: ``(plane_shape, offset)`` when the flows are a chunk of a larger plane);
        otherwise Cellpose 3's :func:`~cellseg_bridge.core.dynamics.compute_masks`. ``kwargs``:
        thresholds, ``niter``, ``min_size``, ``max_size_fraction``.
        """
        if self.family == FAMILY_SAM and np.ndim(cellprob) == 2:
            plane_shape, offset = window if window is not None else (None, (0, 0))
            return compute_masks_cp4(dP, cellprob, plane_shape=plane_shape, offset=offset, **kwargs)
        return compute_masks(dP, cellprob, **kwargs)

    def channel_chooser(self, options: SegmentOptions) -> Callable[[int, list[str]], list[int]] | None:
        """For Cellpose-SAM: ``(n_channels, names) -> indices`` by Cellpose 4's convention
        (:func:`~cellseg_bridge.segmentation.preprocess.sam_channels`); None for the U-Net."""
        return functools.partial(sam_channels, opts=options) if self.family == FAMILY_SAM else None

    def resolve_options(self, options: SegmentOptions) -> SegmentOptions:
        """``options`` with ``invert`` and ``nuclear_channel`` resolved for this model.

        Every path that feeds this network (whole image, chunks, style) calls it,
        so none can hand it an input it was not trained on.
        """
        return dataclasses.replace(options, invert=self.resolve_invert(options.invert),
                                   nuclear_channel=self.resolve_nuclear_channel(options.nuclear_channel),
                                   tile_size=self.resolve_tile_size(options.tile_size))

    def resolve_tile_size(self, tile_size: int) -> int:
        """``tile_size``, or for Cellpose-SAM its fixed 256 (the default 224 becomes 256;
        any other value is an :class:`InputError`: its position embedding is for 32 x 32 tokens)."""
        fixed = int(getattr(self.net, "tile_size", 0) or 0)
        if not fixed or tile_size == fixed:
            return tile_size
        if tile_size == DEFAULTS.segment.tile_size:
            return fixed
        raise InputError(f"model {self.name} (Cellpose-SAM) runs tiles of {fixed} px only; "
                         f"tile_size {tile_size} is not possible (leave it at the default)")

    def resolve_invert(self, invert: bool | None) -> bool:
        """``invert`` as asked, or (None) as the model was trained (``config["invert"]``)."""
        if invert is not None:
            return bool(invert)
        trained = bool(self.config.get("invert", False))
        if trained:
            logger.info("model %s was trained on inverted images: inverting (invert=False to switch off)", self.name)
        return trained

    def resolve_nuclear_channel(self, nuclear_channel: int | str | None) -> int | str | None:
        """``nuclear_channel``, or None for a model that our trainer trained without one.

        Such a network saw only zeros in its second input: its first normalisation
        layer divides that input by ~0, so a real nuclear channel would wreck its output.
        """
        trained = self.config.get("channels")
        if nuclear_channel is None or not isinstance(trained, dict) or trained.get("nuclear_channel", 0) is not None:
            return nuclear_channel  # no nuclear channel asked for, or a model that had one (or does not say)
        logger.warning("model %s was trained without a nuclear channel: nuclear channel %r ignored",
                       self.name, nuclear_channel)
        return None


def load_network_model(name_or_path: str | Path, device: str | torch.device = "auto") -> SegmentationModel:
    """Load one segmentation network with its config and size model.

    Parameters
    ----------
    name_or_path : str or Path
        Registry name (``"nuclei"``, ``"cyto3"``) or checkpoint path.
    device : str or torch.device
        ``"auto"`` (CUDA, MPS, CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.

    Raises
    ------
    InputError
        Unknown model, unreadable checkpoint, or a restoration network.
    """
    name = name_or_path
    dev = select_device(device)
    path = resolve_model(name)
    net, config = load_network(path, dev)
    if int(config.get("nout", 3)) < 3:
        raise InputError(
            f"not a segmentation network (nout {config.get('nout')}; restoration models cannot segment)",
            path,
        )
    size_path = size_model_path(path)
    size_model = load_size_model(size_path) if size_path is not None else None
    if size_model is not None:
        logger.info("size model %s", size_path)
    return SegmentationModel(net=net, config=config, name=str(name), size_model=size_model, device=dev)

"""Style-based model suggestion: the generalist's style vector picks the zoo model that fits an image.

Cellpose 2.0's idea: the style vector (the network's global summary of an image,
L2-normalised) separates imaging modalities and cell types. The generalist
(``cells``) computes the style of every training image of each specialist at its
own fixed scale ``diam_mean / diam_labels`` (the scale at which it also estimates
sizes); :class:`StyleIndex` keeps those styles with the name of the specialist
they belong to and ranks the specialists for a new image by a cosine-similarity
weighted vote of its ``k`` nearest training styles. The vote share of the chosen
model is its confidence.

``style_index.npz`` lives in the generalist's model folder; ``--model auto``
(:class:`AutoModel`) loads the generalist, the index and, on demand, the chosen
specialists.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cellseg_bridge.config import DEFAULTS, SegmentOptions
from cellseg_bridge.core import transforms
from cellseg_bridge.errors import InputError
from cellseg_bridge.io.atomic import atomic_output
from cellseg_bridge.nn.inference import run_network
from cellseg_bridge.nn.registry import resolve_model
from cellseg_bridge.segmentation.model import load_network_model
from cellseg_bridge.segmentation.preprocess import as_tczyx, normalize, select_channels

__all__ = [
    "AUTO",
    "STYLE_INDEX_NAME",
    "AutoModel",
    "ModelChoice",
    "StyleIndex",
    "fit_style_index",
    "image_style",
    "load_auto_model",
]

logger = logging.getLogger(__name__)

#: The model name that asks for a suggestion.
AUTO = "auto"
#: File name of the index in the generalist's folder.
STYLE_INDEX_NAME = "style_index.npz"
#: The generalist whose styles choose (a registry name).
GENERALIST = "cells"


@dataclass(frozen=True)
class ModelChoice:
    """The suggested model of one image.

    Attributes
    ----------
    model : str
        The chosen zoo model.
    confidence : float
        Its share of the similarity-weighted vote (0-1).
    ranking : list of (str, float)
        Every zoo model with its share, best first.
    """

    model: str
    confidence: float
    ranking: list[tuple[str, float]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"model": self.model, "confidence": round(self.confidence, 4),
                "ranking": [[name, round(score, 4)] for name, score in self.ranking]}


@dataclass
class StyleIndex:
    """Training styles labelled with the zoo model they belong to.

    Attributes
    ----------
    styles : ndarray of float32, shape (N, S)
        L2-normalised style vectors.
    labels : ndarray of str, shape (N,)
        Zoo model name of each style.
    k : int
        Neighbours that vote.
    """

    styles: np.ndarray
    labels: np.ndarray
    k: int = 7

    def __post_init__(self) -> None:
        self.styles = np.asarray(self.styles, dtype=np.float32)
        self.labels = np.asarray(self.labels).astype(str)
        if self.styles.ndim != 2 or len(self.styles) != len(self.labels) or len(self.labels) == 0:
            raise InputError(f"a style index needs (N, S) styles and N labels, got {self.styles.shape} "
                             f"and {self.labels.shape}")
        if self.k < 1:
            raise InputError(f"k must be >= 1, got {self.k}")

    @property
    def models(self) -> list[str]:
        """The zoo model names, sorted."""
        return sorted(set(self.labels.tolist()))

    def rank(self, style: np.ndarray) -> ModelChoice:
        """Rank the zoo models for one style vector (``S``,)."""
        s = np.asarray(style, dtype=np.float32).ravel()
        if s.shape[0] != self.styles.shape[1]:
            raise InputError(f"style of length {s.shape[0]} does not fit the index ({self.styles.shape[1]})")
        norm = float(np.linalg.norm(s))
        sims = self.styles @ (s / norm if norm > 0 else s)
        k = min(self.k, len(sims))
        nearest = np.argsort(-sims, kind="stable")[:k]
        weights = np.maximum(sims[nearest], 0.0) + 1e-6
        votes = {name: 0.0 for name in self.models}
        for i, w in zip(nearest, weights):
            votes[str(self.labels[i])] += float(w)
        total = sum(votes.values())
        ranking = sorted(((name, v / total) for name, v in votes.items()), key=lambda kv: (-kv[1], kv[0]))
        return ModelChoice(ranking[0][0], ranking[0][1], ranking)

    def save(self, path: str | Path) -> None:
        """Write the index as ``.npz`` (plain arrays, atomically)."""
        with atomic_output(Path(path)) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, styles=self.styles, labels=self.labels.astype("U"), k=np.int64(self.k))

    @classmethod
    def load(cls, path: str | Path) -> StyleIndex:
        """Read an index written by :meth:`save` (no pickles).

        Raises
        ------
        InputError
            Missing or unreadable file.
        """
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                return cls(z["styles"], z["labels"], int(z["k"]))
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(f"not a readable style index ({exc})", path) from exc


def image_style(model: Any, image: Any, *, axes: str | None = None, options: SegmentOptions | None = None,
                **overrides: Any) -> np.ndarray:
    """The style vector of an image's first time point (middle plane) at the model's own scale.

    Parameters
    ----------
    model : SegmentationModel
        The generalist (:func:`cellseg_bridge.segmentation.pipeline.load_model`).
    image : xarray.DataArray or ndarray
        As for :func:`cellseg_bridge.segmentation.pipeline.segment`.
    axes : str, optional
        Axes of an ndarray.
    options : SegmentOptions, optional
        The segmentation options (default ``DEFAULTS.segment``); ``channel``,
        ``nuclear_channel``, ``invert``, ``normalize_percentiles``, ``tile_size``,
        ``batch_size`` and ``precision`` are used.
    **overrides
        Fields of :class:`~cellseg_bridge.config.SegmentOptions` overriding ``options``
        (names that are not fields are ignored).
    """
    names = set(SegmentOptions.names())
    opts = SegmentOptions.derive(options or DEFAULTS.segment, **{k: v for k, v in overrides.items() if k in names})
    opts = model.resolve_options(opts)
    data, channel_names, _ = as_tczyx(image, axes)
    planes = select_channels(data, channel_names, opts, model.nchan)[0]  # (C, Z, Y, X)
    plane = normalize(planes, opts, whole_stack=False)[:, planes.shape[1] // 2]
    rescale = model.diam_mean / model.diam_labels
    shape = transforms.scaled_shape(plane.shape[-2:], rescale)
    x = transforms.resize(plane[None], shape)[0] if shape != plane.shape[-2:] else plane
    _, style = run_network(model.net, x, tile_size=opts.tile_size, batch_size=opts.batch_size,
                           precision=opts.precision)
    return style


def fit_style_index(model: Any, images: dict[str, list[Any]], k: int = 7, **options: Any) -> StyleIndex:
    """Styles of each zoo model's training images (``{model_name: [2D image, ...]}``) as an index."""
    styles, labels = [], []
    for name, items in images.items():
        for image in items:
            styles.append(image_style(model, image, **options))
            labels.append(name)
    return StyleIndex(np.stack(styles), np.asarray(labels), k)


@dataclass
class AutoModel:
    """``--model auto``: the generalist with its style index; specialists loaded when first chosen.

    Attributes
    ----------
    generalist : SegmentationModel
    index : StyleIndex
    device : str
        Where specialists are loaded.
    """

    generalist: Any
    index: StyleIndex
    device: Any = "cpu"
    _loaded: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        """``"auto"``."""
        return AUTO

    def choose(self, image: Any, *, axes: str | None = None, options: SegmentOptions | None = None,
               **overrides: Any) -> ModelChoice:
        """Rank the zoo for ``image`` and log the choice (``options``, ``overrides``: as :func:`image_style`)."""
        choice = self.index.rank(image_style(self.generalist, image, axes=axes, options=options, **overrides))
        logger.info("model auto: %s (confidence %.2f; %s)", choice.model, choice.confidence,
                    ", ".join(f"{n} {s:.2f}" for n, s in choice.ranking))
        return choice

    def model(self, name: str) -> Any:
        """The loaded zoo model ``name`` (loaded once)."""
        if name not in self._loaded:
            self._loaded[name] = (
                self.generalist if name == self.generalist.name else load_network_model(name, self.device)
            )
        return self._loaded[name]


def load_auto_model(device: Any = "cpu", generalist: str = GENERALIST) -> AutoModel:
    """The generalist, its style index and a check that every zoo model it names is installed.

    Raises
    ------
    InputError
        The generalist, its ``style_index.npz`` or a zoo model is not installed.
    """
    try:
        path = Path(resolve_model(generalist))
    except InputError as exc:
        raise InputError(f"--model auto needs the generalist {generalist!r} and its zoo: {exc}") from exc
    index_path = path.parent / STYLE_INDEX_NAME
    if not index_path.is_file():
        raise InputError(f"--model auto needs a style index beside the generalist {generalist!r} "
                         "(scripts/fit_style_index.py makes it)", index_path)
    index = StyleIndex.load(index_path)
    missing = []
    for name in index.models:
        try:
            resolve_model(name)
        except InputError:
            missing.append(name)
    if missing:
        raise InputError(f"--model auto: zoo model(s) {', '.join(missing)} not installed; "
                         "install them or choose a model by name")
    return AutoModel(load_network_model(path, device), index, device)

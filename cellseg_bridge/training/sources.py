"""Several training datasets in one run, each with a sampling weight.

A :class:`DataSource` wraps any training data :func:`~cellseg_bridge.training.train`
takes (a folder, image/mask pairs) with a ``weight`` and a ``name``. Images are
drawn with replacement so that dataset ``k`` supplies ``weight_k / sum(weights)``
of the crops of an epoch, whatever its number of images (Cellpose 3 drew its
super-generalist's images so that large homogeneous sets did not dominate).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cellseg_bridge.errors import InputError

__all__ = ["DataSource", "as_sources", "parse_source", "sampling_probabilities"]


@dataclass(frozen=True)
class DataSource:
    """Training data with a sampling weight.

    Attributes
    ----------
    data : folder, list of (image, labels) pairs, or list of TrainPair
        As ``train_data`` of :func:`~cellseg_bridge.training.train`.
    weight : float
        Relative share of the crops drawn from this source (> 0).
    name : str, optional
        Used in messages, validation columns and provenance (default: the
        folder's name or ``"data<k>"``).
    """

    data: Any
    weight: float = 1.0
    name: str | None = None

    def __post_init__(self) -> None:
        try:
            w = float(self.weight)
        except (TypeError, ValueError):
            raise InputError(f"sampling weight of {self.label()!r} must be a number, got {self.weight!r}") from None
        if not (math.isfinite(w) and w > 0):
            raise InputError(f"sampling weight of {self.label()!r} must be a positive number, got {self.weight!r}")

    def label(self, index: int | None = None) -> str:
        """The name, else the folder's name, else ``data<index>``."""
        if self.name:
            return str(self.name)
        if isinstance(self.data, (str, Path)):
            return Path(self.data).name or str(self.data)
        return f"data{index}" if index is not None else "data"


def parse_source(spec: str) -> DataSource:
    """A :class:`DataSource` from ``PATH`` or ``PATH:WEIGHT`` (the CLI's ``--data``).

    A last ``:`` part that is not a number belongs to the path.

    Raises
    ------
    InputError
        A weight that is zero, negative or not finite.
    """
    path, sep, tail = spec.rpartition(":")
    if sep and path:
        try:
            weight = float(tail)
        except ValueError:
            return DataSource(spec)
        return DataSource(path, weight)
    return DataSource(spec)


def as_sources(data: Any) -> list[DataSource]:
    """``data`` as a list of sources: a DataSource, a list of them, or any other data (one source)."""
    if isinstance(data, DataSource):
        return [data]
    if isinstance(data, (list, tuple)) and data and all(isinstance(d, DataSource) for d in data):
        return list(data)
    if isinstance(data, (list, tuple)) and any(isinstance(d, DataSource) for d in data):
        raise InputError("mix of DataSource and other training data: wrap every dataset in a DataSource")
    return [DataSource(data)]


def sampling_probabilities(source_of: Sequence[int], weights: Sequence[float]) -> np.ndarray:
    """Per-image draw probabilities: ``weights[k] / sum(weights) / n_k`` for an image of source ``k``.

    Parameters
    ----------
    source_of : sequence of int
        Source index of each image.
    weights : sequence of float
        Weight of each source; sources without images get no share (the others
        are renormalised).
    """
    src = np.asarray(source_of, dtype=np.int64)
    w = np.asarray(weights, dtype=np.float64)
    counts = np.bincount(src, minlength=len(w)).astype(np.float64)
    share = np.where(counts > 0, w, 0.0)
    share = share / share.sum()
    return share[src] / counts[src]

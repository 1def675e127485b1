"""Readers of public annotated datasets used for training and evaluation (not needed to segment).

Each reader module (:mod:`~cellseg_bridge.datasets.dsb2018`, ``usiigaci``,
``bbbc030``, ``stardist``, ``ecoli``) returns
:class:`~cellseg_bridge.datasets.common.Sample` objects: a grayscale float32
image, an int32 label image, the split and the modality. :func:`load` reads one
by name.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from cellseg_bridge.datasets.common import Sample, dataset_root, shared_data_root
from cellseg_bridge.errors import InputError

__all__ = ["DATASETS", "Sample", "dataset_root", "load", "shared_data_root"]

#: Dataset names with a reader module of the same name.
DATASETS = ("dsb2018", "usiigaci", "bbbc030", "stardist", "ecoli")


def load(name: str, split: str | None = None, root: str | Path | None = None) -> list[Sample]:
    """Samples of dataset ``name`` in ``split`` (None: all), from ``root`` or ``<shared>/data/<name>``.

    Raises
    ------
    InputError
        Unknown dataset name or missing folder.
    """
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    module = importlib.import_module(f"cellseg_bridge.datasets.{name}")
    return module.samples(root, split)

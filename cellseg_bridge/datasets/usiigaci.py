"""Usiigaci: phase-contrast fields of migrating mammalian cells with hand-drawn whole-cell labels.

Layout: ``setN/raw.tif`` (uint16, 1022 x 1024), ``setN/instances_ids.png`` (uint8
label image, the pixel truth) and, for 28 folders, ``setN/RoiSet.zip``: the Fiji
ROI Manager export the labels were drawn from. ``split.tsv`` (columns ``set``,
``split``): set1-40 train, set41-45 test. MIT licence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cellseg_bridge.datasets.common import Sample, dataset_root, read_split_table
from cellseg_bridge.errors import InputError

__all__ = ["NAME", "MODALITY", "samples", "load_image", "load_labels", "roi_path", "labels_from_rois"]

NAME = "usiigaci"
MODALITY = "phase"


def _sort_key(name: str) -> tuple[int, str]:
    digits = "".join(ch for ch in name if ch.isdigit())
    return (int(digits) if digits else 0, name)


def load_image(folder: Path) -> np.ndarray:
    """The raw phase-contrast image of one ``setN`` folder, float32."""
    import tifffile

    try:
        return np.asarray(tifffile.imread(folder / "raw.tif")).astype(np.float32)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the image ({exc})", folder / "raw.tif") from exc


def load_labels(folder: Path) -> np.ndarray:
    """The hand-drawn label image of one ``setN`` folder, int32."""
    import imageio.v3 as iio

    lab = np.asarray(iio.imread(folder / "instances_ids.png"))
    if lab.ndim == 3:
        lab = lab[..., 0]
    return lab.astype(np.int32)


def roi_path(folder: Path) -> Path | None:
    """The folder's Fiji ``RoiSet.zip``, or None where the dataset has none."""
    path = folder / "RoiSet.zip"
    return path if path.is_file() else None


def labels_from_rois(folder: Path, shape: tuple[int, int]) -> np.ndarray:
    """Labels rasterised from the folder's ``RoiSet.zip`` by our ImageJ-exact rasteriser.

    Raises
    ------
    InputError
        The folder has no ``RoiSet.zip``.
    """
    from cellseg_bridge.io.roi_import import rois_to_labels

    path = roi_path(folder)
    if path is None:
        raise InputError("no RoiSet.zip in this Usiigaci folder", folder)
    labels, _ = rois_to_labels(path, shape)
    return labels.astype(np.int32)


def samples(root: str | Path | None = None, split: str | None = None) -> list[Sample]:
    """The dataset's samples in set order (``split`` None: all).

    Parameters
    ----------
    root : str or Path, optional
        The ``usiigaci`` folder (default ``<shared>/data/usiigaci``).
    split : {"train", "test"}, optional
    """
    base = dataset_root(NAME, root)
    table = read_split_table(base / "split.tsv", "set")
    out = []
    for name in sorted(table, key=_sort_key):
        if split not in (None, table[name]):
            continue
        folder = base / name
        out.append(Sample(NAME, name, table[name], MODALITY, load_image(folder), load_labels(folder)))
    return out

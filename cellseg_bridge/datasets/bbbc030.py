"""BBBC030: DIC images of CHO cells with filled binary masks (instances = connected components).

Layout: ``images/choNN.png`` (RGB, three identical channels), ``masks/choNN.png``
(foreground 255). ``split.tsv`` (columns ``image``, ``split``): cho21-40 train,
cho01-20 test. Touching cells can merge into one component: such a mask counts
as one instance here, as it does for every method scored on it. CC BY 3.0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cellseg_bridge.datasets.common import Sample, as_gray, dataset_root, instances_from_binary, read_split_table

__all__ = ["NAME", "MODALITY", "samples"]

NAME = "bbbc030"
MODALITY = "dic"


def samples(root: str | Path | None = None, split: str | None = None) -> list[Sample]:
    """The dataset's samples in name order (``split`` None: all).

    Parameters
    ----------
    root : str or Path, optional
        The ``bbbc030`` folder (default ``<shared>/data/bbbc030``).
    split : {"train", "test"}, optional
    """
    import imageio.v3 as iio

    base = dataset_root(NAME, root)
    table = read_split_table(base / "split.tsv", "image")
    out = []
    for name in sorted(table):
        if split not in (None, table[name]):
            continue
        image = as_gray(iio.imread(base / "images" / f"{name}.png"))
        mask = np.asarray(iio.imread(base / "masks" / f"{name}.png"))
        if mask.ndim == 3:
            mask = mask[..., 0]
        out.append(Sample(NAME, name, table[name], MODALITY, image, instances_from_binary(mask)))
    return out

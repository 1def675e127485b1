"""StarDist's example data: ``img2d.tif`` / ``mask2d.tif``, a fluorescence crop of DSB 2018 (125 nuclei).

It has no split table: the 2D pair is a ``test`` image only (it comes from the same
challenge as dsb2018, so it is never trained on). The synthetic 3D pair
(``img3d.tif`` / ``mask3d.tif``) is not returned by :func:`samples` (2D only). BSD-3.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cellseg_bridge.datasets.common import Sample, dataset_root

__all__ = ["NAME", "MODALITY", "samples"]

NAME = "stardist"
MODALITY = "fluo"


def samples(root: str | Path | None = None, split: str | None = None) -> list[Sample]:
    """``[img2d]`` as a ``test`` sample (empty for ``split="train"``)."""
    import tifffile

    base = dataset_root(NAME, root)
    if split not in (None, "test"):
        return []
    image = np.asarray(tifffile.imread(base / "img2d.tif")).astype(np.float32)
    labels = np.asarray(tifffile.imread(base / "mask2d.tif")).astype(np.int32)
    return [Sample(NAME, "img2d", "test", MODALITY, image, labels)]

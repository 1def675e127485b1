"""E. coli fields (ColiCoords): brightfield + fluorescence, ilastik-derived binary masks.

Layout: ``ds1/``, ``ds2/``, each with ``brightfield/NNNNN.tif``,
``fluorescence/NNNNN.tif`` and ``binary/NNNNN_Probabilities_filtered.tif``
(instances = connected components). The masks were made by a pixel classifier and
filtered, not drawn by hand, and do not cover every cell: they are returned with
split ``"extra"`` and are used neither to train the bundled models (an unlabelled
cell taught as background hurts more than the few labelled ones help) nor to score
them. MIT licence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cellseg_bridge.datasets.common import Sample, dataset_root, instances_from_binary

__all__ = ["NAME", "MODALITY", "samples"]

NAME = "ecoli"
MODALITY = "brightfield"
_MASK_SUFFIX = "_Probabilities_filtered.tif"


def _read_plane(path: Path) -> np.ndarray:
    """One 2D plane as float32, through :func:`~cellseg_bridge.io.reader.open_image` (big-endian TIFFs)."""
    from cellseg_bridge.io.reader import open_image

    return np.asarray(open_image(path, axes="YX").values).squeeze().astype(np.float32)


def samples(root: str | Path | None = None, split: str | None = None, channel: str = "brightfield") -> list[Sample]:
    """Every field with a mask (split ``"extra"``), as ``channel`` (``brightfield`` or ``fluorescence``)."""
    base = dataset_root(NAME, root)
    if split not in (None, "extra"):
        return []
    out = []
    for mask_path in sorted(base.glob(f"ds*/binary/*{_MASK_SUFFIX}")):
        stem = mask_path.name[: -len(_MASK_SUFFIX)]
        img_path = mask_path.parent.parent / channel / f"{stem}.tif"
        if not img_path.is_file():
            continue
        image = _read_plane(img_path)
        labels = instances_from_binary(_read_plane(mask_path))
        name = f"{mask_path.parent.parent.name}/{stem}"
        out.append(Sample(NAME, name, "extra", MODALITY if channel == "brightfield" else "fluo", image, labels))
    return out

"""The Data Science Bowl 2018 stage-1 training set (BBBC038) in its Kaggle folder layout.

One folder per image: ``stage1_train/<id>/images/<id>.png`` (RGB or RGBA) and one PNG per
nucleus under ``stage1_train/<id>/masks/``. ``split.tsv`` beside ``stage1_train`` lists
``image_id``, ``kind`` (``fluo``, ``color``, ``bf_gray``) and ``split`` (``train``/``test``).
Images are returned as grayscale (mean of R, G, B; alpha dropped), as Cellpose's nuclei
models see them.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cellseg_bridge.datasets.common import Sample, dataset_root
from cellseg_bridge.errors import InputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitRow:
    """One line of ``split.tsv``."""

    image_id: str
    kind: str
    split: str


def read_split(root: str | Path) -> list[SplitRow]:
    """Rows of ``<root>/split.tsv`` in file order.

    Parameters
    ----------
    root : str or Path
        The dsb2018 folder (holding ``split.tsv`` and ``stage1_train/``).
    """
    path = Path(root) / "split.tsv"
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return [SplitRow(r["image_id"], r["kind"], r["split"]) for r in csv.DictReader(fh, delimiter="\t")]
    except (OSError, KeyError) as exc:
        raise InputError(f"not a readable dsb2018 split table ({exc})", path) from exc


def select(rows: list[SplitRow], split: str | None = None, kind: str | None = None) -> list[str]:
    """Image ids of ``rows`` in ``split`` and of ``kind`` (None: any)."""
    return [r.image_id for r in rows if split in (None, r.split) and kind in (None, r.kind)]


def load_image(root: str | Path, image_id: str) -> np.ndarray:
    """Grayscale float32 image (mean of RGB) of one dsb2018 sample."""
    import imageio.v3 as iio

    path = Path(root) / "stage1_train" / image_id / "images" / f"{image_id}.png"
    img = np.asarray(iio.imread(path))
    if img.ndim == 3:
        img = img[..., :3].astype(np.float32).mean(axis=-1)
    return img.astype(np.float32)


def load_labels(root: str | Path, image_id: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Label image (int32, one label per mask PNG in sorted file order) of one dsb2018 sample."""
    import imageio.v3 as iio

    folder = Path(root) / "stage1_train" / image_id / "masks"
    files = sorted(folder.glob("*.png"))
    if not files:
        raise InputError("no mask PNGs", folder)
    labels = None
    for k, path in enumerate(files, start=1):
        m = np.asarray(iio.imread(path))
        if m.ndim == 3:
            m = m[..., 0]
        if labels is None:
            labels = np.zeros(shape or m.shape, np.int32)
        labels[m > 0] = k
    return labels


def load_sample(root: str | Path, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    """``(image, labels)`` of one dsb2018 sample (see :func:`load_image`, :func:`load_labels`)."""
    image = load_image(root, image_id)
    return image, load_labels(root, image_id, image.shape)


def shared_root(repo: str | Path) -> Path:
    """``<shared>/data/dsb2018``, ``<shared>`` being ``$CELLSEG_SHARED`` or ``shared/`` beside ``repo``."""
    return Path(os.environ.get("CELLSEG_SHARED", Path(repo).parent / "shared")) / "data" / "dsb2018"


def load_samples(root: str | Path, image_ids: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`load_sample` of each id, in order (logs how many and how long)."""
    tic = time.perf_counter()
    samples = [load_sample(root, i) for i in image_ids]
    logger.info("loaded %d dsb2018 image(s) in %.1f s", len(samples), time.perf_counter() - tic)
    return samples


NAME = "dsb2018"


def samples(root: str | Path | None = None, split: str | None = None, kind: str | None = None) -> list[Sample]:
    """The dataset's samples as :class:`~cellseg_bridge.datasets.common.Sample` (modality = ``kind``).

    Parameters
    ----------
    root : str or Path, optional
        The dsb2018 folder (default ``<shared>/data/dsb2018``).
    split : {"train", "test"}, optional
    kind : {"fluo", "color", "bf_gray"}, optional
    """
    base = dataset_root(NAME, root)
    out = []
    for row in read_split(base):
        if split in (None, row.split) and kind in (None, row.kind):
            image, labels = load_sample(base, row.image_id)
            out.append(Sample(NAME, row.image_id, row.split, row.kind, image, labels))
    return out

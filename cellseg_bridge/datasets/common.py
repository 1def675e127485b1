"""What every dataset reader returns, and where the shared data lives.

A dataset reader module (``dsb2018``, ``usiigaci``, ``bbbc030``, ``stardist``,
``ecoli``) exposes ``NAME`` (its folder under ``<shared>/data``), ``MODALITY``
and ``samples(root=None, split=None) -> list[Sample]``. Images come as
float32 2D arrays (``YX``, one channel: the modality's grayscale), labels as
int32 label images of the same size (0 = background).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cellseg_bridge.errors import InputError

__all__ = ["Sample", "shared_data_root", "dataset_root", "read_split_table", "instances_from_binary"]

#: The repository root (``shared/`` is looked up beside it).
_REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Sample:
    """One annotated image of a public dataset.

    Attributes
    ----------
    dataset : str
        Dataset name (``"usiigaci"``, ...).
    name : str
        Image id inside the dataset.
    split : str
        ``"train"``, ``"test"`` (report only) or ``"extra"`` (no official split).
    modality : str
        ``"phase"``, ``"dic"``, ``"fluo"``, ``"color"``, ``"bf_gray"``, ``"brightfield"``.
    image : ndarray of float32, shape (Y, X)
    labels : ndarray of int32, shape (Y, X)
    """

    dataset: str
    name: str
    split: str
    modality: str
    image: np.ndarray
    labels: np.ndarray

    @property
    def key(self) -> str:
        """``dataset/name``, unique across datasets."""
        return f"{self.dataset}/{self.name}"


def shared_data_root() -> Path:
    """``<shared>/data``: ``$CELLSEG_SHARED/data``, else ``shared/data`` beside the repository."""
    base = os.environ.get("CELLSEG_SHARED")
    return (Path(base) if base else _REPO.parent / "shared") / "data"


def dataset_root(name: str, root: str | Path | None = None) -> Path:
    """The folder of dataset ``name`` (``root`` if given), checked to exist.

    Raises
    ------
    InputError
        The folder does not exist.
    """
    path = Path(root) if root is not None else shared_data_root() / name
    if not path.is_dir():
        raise InputError(f"the {name} dataset folder does not exist", path)
    return path


def read_split_table(path: Path, key: str) -> dict[str, str]:
    """``{id: split}`` from a two-column ``split.tsv`` (columns ``key`` and ``split``).

    Raises
    ------
    InputError
        Missing or malformed table.
    """
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return {r[key]: r["split"] for r in csv.DictReader(fh, delimiter="\t")}
    except (OSError, KeyError) as exc:
        raise InputError(f"not a readable split table with columns {key!r}, 'split' ({exc})", path) from exc


def instances_from_binary(mask: np.ndarray) -> np.ndarray:
    """Instance labels of a binary mask: its 4-connected components (int32, 0 = background)."""
    from scipy import ndimage

    labels, _ = ndimage.label(np.asarray(mask) > 0)
    return labels.astype(np.int32)


def as_gray(img: np.ndarray) -> np.ndarray:
    """float32 grayscale: the mean of R, G, B for colour images (alpha dropped), else as is."""
    img = np.asarray(img)
    if img.ndim == 3:
        img = img[..., :3].astype(np.float32).mean(axis=-1)
    return img.astype(np.float32)

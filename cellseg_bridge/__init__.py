"""cellseg_bridge: Cellpose-class cell segmentation for Fiji/ImageJ users, headless.

Public API (everything else is internal and may change):

- reading: :func:`open_image`, :func:`list_scenes`
- writing: :func:`write_ome_tiff`, :func:`write_labels`, :func:`read_seg_npy`, :func:`write_seg_npy`
- ImageJ ROIs: :func:`labels_to_rois`, :func:`write_roi_zip`, :func:`read_rois`, :func:`rois_to_labels`
- other tools: :func:`labels_to_features`, :func:`write_geojson`, :func:`read_geojson`,
  :func:`geojson_to_labels` (QuPath), :func:`write_ome_zarr` (OME-NGFF image + labels),
  :func:`link_labels` (time-lapse tracks), :func:`export_bioimageio`, :func:`import_bioimageio`
- batch conversion: :func:`convert`
- segmentation: :func:`segment` (arrays), :func:`load_model`, :func:`segment_files` (batch of files),
  :func:`segment_large` (planes of any size, in chunks, on Dask; more in :mod:`cellseg_bridge.distributed`)
- models: :func:`resolve_model`, :func:`list_models`
- training: :func:`train` (folders of images + masks, RoiSet.zip, ``_seg.npy``, arrays)
- restoration: :func:`restore` (denoise/deblur/upsample/oneclick/aniso), :func:`restore_files` (batch)
- the shared defaults: :data:`DEFAULTS`

The names are loaded on first use (PEP 562): ``import cellseg_bridge`` imports neither torch
nor dask, so ``cellseg --help`` and ``cellseg info`` start fast; ``cellseg_bridge.segment`` imports
the segmentation pipeline (and torch) the first time it is looked up.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cellseg_bridge.config import DEFAULTS
from cellseg_bridge.errors import CellsegError, DependencyError, InputError

#: Public name -> module that defines it (imported on first access).
_LAZY = {
    "convert": "cellseg_bridge.batch.convert",
    "segment_files": "cellseg_bridge.batch.segment",
    "restore_files": "cellseg_bridge.batch.restore",
    "segment_large": "cellseg_bridge.distributed.chunked",
    "list_scenes": "cellseg_bridge.io.reader",
    "open_image": "cellseg_bridge.io.reader",
    "link_labels": "cellseg_bridge.core.tracking",
    "geojson_to_labels": "cellseg_bridge.io.geojson",
    "labels_to_features": "cellseg_bridge.io.geojson",
    "read_geojson": "cellseg_bridge.io.geojson",
    "write_geojson": "cellseg_bridge.io.geojson",
    "write_ome_zarr": "cellseg_bridge.io.ome_zarr",
    "export_bioimageio": "cellseg_bridge.nn.bioimageio",
    "import_bioimageio": "cellseg_bridge.nn.bioimageio_import",
    "labels_to_rois": "cellseg_bridge.io.roi_export",
    "write_roi_zip": "cellseg_bridge.io.roi_export",
    "read_rois": "cellseg_bridge.io.roi_import",
    "rois_to_labels": "cellseg_bridge.io.roi_import",
    "read_seg_npy": "cellseg_bridge.io.seg_npy",
    "write_seg_npy": "cellseg_bridge.io.seg_npy",
    "write_labels": "cellseg_bridge.io.writers",
    "write_ome_tiff": "cellseg_bridge.io.writers",
    "list_models": "cellseg_bridge.nn.registry",
    "resolve_model": "cellseg_bridge.nn.registry",
    "restore": "cellseg_bridge.restoration.api",
    "load_model": "cellseg_bridge.segmentation.pipeline",
    "segment": "cellseg_bridge.segmentation.pipeline",
    "train": "cellseg_bridge.training.loop",
}

if TYPE_CHECKING:  # what static tools see; at run time __getattr__ imports on first use
    from cellseg_bridge.batch.convert import convert
    from cellseg_bridge.batch.restore import restore_files
    from cellseg_bridge.batch.segment import segment_files
    from cellseg_bridge.core.tracking import link_labels
    from cellseg_bridge.distributed.chunked import segment_large
    from cellseg_bridge.io.geojson import geojson_to_labels, labels_to_features, read_geojson, write_geojson
    from cellseg_bridge.io.ome_zarr import write_ome_zarr
    from cellseg_bridge.io.reader import list_scenes, open_image
    from cellseg_bridge.io.roi_export import labels_to_rois, write_roi_zip
    from cellseg_bridge.io.roi_import import read_rois, rois_to_labels
    from cellseg_bridge.io.seg_npy import read_seg_npy, write_seg_npy
    from cellseg_bridge.io.writers import write_labels, write_ome_tiff
    from cellseg_bridge.nn.bioimageio import export_bioimageio
    from cellseg_bridge.nn.bioimageio_import import import_bioimageio
    from cellseg_bridge.nn.registry import list_models, resolve_model
    from cellseg_bridge.restoration.api import restore
    from cellseg_bridge.segmentation.pipeline import load_model, segment
    from cellseg_bridge.training.loop import train

__all__ = [
    "CellsegError",
    "DEFAULTS",
    "DependencyError",
    "InputError",
    "convert",
    "export_bioimageio",
    "geojson_to_labels",
    "import_bioimageio",
    "labels_to_features",
    "labels_to_rois",
    "link_labels",
    "list_models",
    "list_scenes",
    "load_model",
    "open_image",
    "read_geojson",
    "read_rois",
    "read_seg_npy",
    "resolve_model",
    "restore",
    "restore_files",
    "rois_to_labels",
    "segment",
    "segment_files",
    "segment_large",
    "train",
    "write_geojson",
    "write_labels",
    "write_ome_tiff",
    "write_ome_zarr",
    "write_roi_zip",
    "write_seg_npy",
]


def lazy_getattr(package: str, table: dict[str, str]) -> Callable[[str], Any]:
    """A PEP 562 module ``__getattr__`` for ``package``: public name -> its module, imported on first access.

    Used by this package and by sub-packages that re-export names of heavy modules
    (:mod:`cellseg_bridge.distributed`).

    Parameters
    ----------
    package : str
        The package's ``__name__`` (the name is cached in it once loaded).
    table : dict of str to str
        Public name -> module that defines it.
    """

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__


__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    """The public API, loaded or not."""
    return sorted(set(globals()) | set(_LAZY))

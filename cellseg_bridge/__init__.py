"""cellseg_bridge: Cellpose-class cell segmentation for Fiji/ImageJ users, headless.

Public API (everything else is internal and may change):

- reading: :func:`open_image`, :func:`list_scenes`
- writing: :func:`write_ome_tiff`, :func:`write_labels`, :func:`read_seg_npy`, :func:`write_seg_npy`
- ImageJ ROIs: :func:`labels_to_rois`, :func:`write_roi_zip`, :func:`read_rois`, :func:`rois_to_labels`
- batch conversion: :func:`convert`
- segmentation: :func:`segment` (arrays), :func:`load_model`, :func:`segment_files` (batch of files),
  :func:`segment_large` (planes of any size, in chunks, on Dask; more in :mod:`cellseg_bridge.distributed`)
- models: :func:`resolve_model`, :func:`list_models`
- training: :func:`train` (folders of images + masks, RoiSet.zip, ``_seg.npy``, arrays)
- restoration: :func:`restore` (denoise/deblur/upsample/oneclick/aniso), :func:`restore_files` (batch)
- the shared defaults: :data:`DEFAULTS`
"""

from cellseg_bridge.config import DEFAULTS
from cellseg_bridge.convert import convert
from cellseg_bridge.distributed.chunked import segment_large
from cellseg_bridge.errors import CellsegError, DependencyError, InputError
from cellseg_bridge.io.reader import list_scenes, open_image
from cellseg_bridge.io.roi_export import labels_to_rois, write_roi_zip
from cellseg_bridge.io.roi_import import read_rois, rois_to_labels
from cellseg_bridge.io.seg_npy import read_seg_npy, write_seg_npy
from cellseg_bridge.io.writers import write_labels, write_ome_tiff
from cellseg_bridge.nn.registry import list_models, resolve_model
from cellseg_bridge.restoration.api import restore
from cellseg_bridge.restoration.batch import restore_files
from cellseg_bridge.segment import load_model, segment
from cellseg_bridge.segment_batch import segment_files
from cellseg_bridge.training import train

__all__ = [
    "DEFAULTS",
    "CellsegError",
    "DependencyError",
    "InputError",
    "convert",
    "labels_to_rois",
    "list_models",
    "list_scenes",
    "load_model",
    "open_image",
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
    "write_labels",
    "write_ome_tiff",
    "write_roi_zip",
    "write_seg_npy",
]

"""Image restoration (Cellpose 3 style): API, losses, training, batch.

See :mod:`cellseg_bridge.restoration.api` (``restore``), :mod:`.losses`,
:mod:`.training` (``train_restore``) and :mod:`.batch` (``restore_files``).
"""

from cellseg_bridge.restoration.api import (
    RestorationModel,
    RestoreResult,
    load_restore_model,
    model_name_for,
    parse_types,
    restore,
    restore_planes,
)
from cellseg_bridge.restoration.batch import restore_files, restoring_segment_fn

__all__ = [
    "RestorationModel",
    "RestoreResult",
    "load_restore_model",
    "model_name_for",
    "parse_types",
    "restore",
    "restore_files",
    "restore_planes",
    "restoring_segment_fn",
]

"""Image restoration (Cellpose 3 style): API, losses, training.

See :mod:`cellseg_bridge.restoration.api` (``restore``), :mod:`.losses` and
:mod:`.training` (``train_restore``); files are restored in batch by
:mod:`cellseg_bridge.batch.restore` (``restore_files``).
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

__all__ = [
    "RestorationModel",
    "RestoreResult",
    "load_restore_model",
    "model_name_for",
    "parse_types",
    "restore",
    "restore_planes",
]

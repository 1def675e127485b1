"""The network: Cellpose-compatible residual U-Net and checkpoint load/save."""

from cellseg_bridge.nn.checkpoint import (
    CONFIG_NAME,
    config_path_for,
    infer_architecture,
    load_checkpoint,
    save_checkpoint,
)
from cellseg_bridge.nn.net import (
    RESTORATION_NBASE,
    SEGMENTATION_NBASE,
    CellposeUNet,
    style_vector,
)

__all__ = [
    "CONFIG_NAME",
    "RESTORATION_NBASE",
    "SEGMENTATION_NBASE",
    "CellposeUNet",
    "config_path_for",
    "infer_architecture",
    "load_checkpoint",
    "save_checkpoint",
    "style_vector",
]

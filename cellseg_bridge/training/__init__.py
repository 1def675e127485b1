"""Training of Cellpose-style segmentation networks (see :func:`train`).

- :mod:`~cellseg_bridge.training.data`: image/mask pairs (naming rule), network input, flow targets;
- :mod:`~cellseg_bridge.training.recipes`: the ``generalist`` and ``hitl`` recipes, LR schedule;
- :mod:`~cellseg_bridge.training.sources`: several datasets with sampling weights;
- :mod:`~cellseg_bridge.training.loop`: :func:`train`, checkpoints, resume, curves, size model.
"""

from cellseg_bridge.training.data import TrainPair, TrainSample, find_pairs, make_sample
from cellseg_bridge.training.loop import TrainResult, train
from cellseg_bridge.training.recipes import RECIPES, lr_schedule
from cellseg_bridge.training.sources import DataSource, parse_source

__all__ = [
    "RECIPES",
    "DataSource",
    "TrainPair",
    "TrainResult",
    "TrainSample",
    "find_pairs",
    "lr_schedule",
    "make_sample",
    "parse_source",
    "train",
]

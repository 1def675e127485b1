"""Training recipes (Cellpose's numbers) and the learning-rate schedule.

=============  ==========  ======  =============  ======  ================  ====================
recipe         optimiser   lr      weight decay   epochs  min_train_masks   images per epoch
=============  ==========  ======  =============  ======  ================  ====================
generalist     SGD m=0.9   0.2     1e-5           500     5                 n
hitl           SGD m=0.9   0.1     1e-4           100     0                 max(8, n)
=============  ==========  ======  =============  ======  ================  ====================

AdamW (option ``optimizer="adamw"``) uses lr 1e-3 unless given. The schedule
(:func:`lr_schedule`): linear warm-up over ``warmup`` epochs (epoch k of w at
``lr * k / (w + 1)``; Cellpose starts at exactly 0, a wasted epoch), constant,
then step halvings in the last epochs: above 300 epochs the last 100 epochs
halve the rate every 10 epochs; from 100 to 300 epochs the last 50 halve it
every 5; shorter runs halve it every ``max(1, n // 20)`` epochs over their last
quarter (our choice, so that short CPU runs also anneal).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cellseg_bridge.errors import InputError

__all__ = ["Recipe", "RECIPES", "get_recipe", "lr_schedule"]


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters of a recipe (see the module docstring)."""

    name: str
    learning_rate: float
    weight_decay: float
    n_epochs: int
    min_train_masks: int
    min_images_per_epoch: int
    momentum: float = 0.9


RECIPES: dict[str, Recipe] = {
    "generalist": Recipe("generalist", 0.2, 1e-5, 500, 5, 0),
    "hitl": Recipe("hitl", 0.1, 1e-4, 100, 0, 8),
}

#: Default learning rate of AdamW when none is given.
ADAMW_LR = 1e-3


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; InputError listing the known ones otherwise."""
    try:
        return RECIPES[str(name).lower()]
    except KeyError:
        raise InputError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}") from None


def lr_schedule(learning_rate: float, n_epochs: int, warmup: int = 10) -> np.ndarray:
    """Learning rate of each epoch (length ``n_epochs``).

    Parameters
    ----------
    learning_rate : float
        Peak rate.
    n_epochs : int
        Number of epochs.
    warmup : int
        Epochs of linear warm-up (from 0; capped at a third of the run).
    """
    n = int(n_epochs)
    if n < 1:
        return np.zeros(0)
    warm = min(int(warmup), n // 3)
    lr = np.full(n, float(learning_rate))
    if warm > 0:
        lr[:warm] = learning_rate * np.arange(1, warm + 1) / (warm + 1)
    if n > 300:
        tail, step = 100, 10
    elif n >= 100:
        tail, step = 50, 5
    else:
        tail, step = n // 4, max(1, n // 20)
    start = n - tail
    for k in range(tail):
        lr[start + k] = learning_rate / 2 ** (k // step + 1)
    return lr

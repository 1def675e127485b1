"""Recipes and the learning-rate schedule."""

from __future__ import annotations

import numpy as np
import pytest

from cellseg_bridge.errors import InputError
from cellseg_bridge.training.recipes import RECIPES, get_recipe, lr_schedule


def test_recipe_numbers():
    g, h = RECIPES["generalist"], RECIPES["hitl"]
    assert (g.learning_rate, g.weight_decay, g.n_epochs, g.momentum) == (0.2, 1e-5, 500, 0.9)
    assert (h.learning_rate, h.weight_decay, h.n_epochs, h.min_train_masks) == (0.1, 1e-4, 100, 0)
    assert h.min_images_per_epoch == 8
    with pytest.raises(InputError, match="unknown recipe"):
        get_recipe("cyto9")


def test_schedule_warmup_then_halvings_500():
    lr = lr_schedule(0.2, 500, 10)
    assert lr.shape == (500,)
    assert np.all(np.diff(lr[:10]) > 0) and lr[0] > 0 and lr[9] < 0.2
    assert np.all(lr[10:400] == 0.2)
    assert lr[400] == pytest.approx(0.1) and lr[409] == pytest.approx(0.1) and lr[410] == pytest.approx(0.05)
    assert lr[-1] == pytest.approx(0.2 / 2**10)


def test_schedule_100_and_short_runs():
    lr = lr_schedule(0.1, 100, 10)
    assert np.all(lr[10:50] == 0.1) and lr[50] == pytest.approx(0.05) and lr[-1] == pytest.approx(0.1 / 2**10)
    short = lr_schedule(0.1, 40, 10)
    assert short.shape == (40,) and short.max() == pytest.approx(0.1) and short[-1] < 0.1 / 4
    assert np.all(np.diff(short[short.argmax():]) <= 0)
    assert lr_schedule(0.1, 1, 10).tolist() == [0.1]
    assert lr_schedule(0.1, 0).size == 0

"""One torch thread in the training tests: tiny networks gain nothing from more, and on a
loaded CI machine OpenMP threads waiting for each other make them many times slower."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

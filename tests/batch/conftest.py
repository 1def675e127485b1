"""Batch tests run their tiny networks on one torch thread (``tests/conftest.py``)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _tiny_networks(one_torch_thread):
    """Every batch test runs on one torch thread."""
    yield

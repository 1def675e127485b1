"""Restoration tests run on one torch thread (their tiny networks live in ``tests/conftest.py``)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _tiny_networks(one_torch_thread):
    """Every restoration test runs on one torch thread (``tests/conftest.py``)."""
    yield

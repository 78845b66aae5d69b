"""Fixtures for the engine tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def single_threaded(one_thread):
    """Every training test on one thread (see ``one_thread`` in tests/conftest.py)."""
    yield

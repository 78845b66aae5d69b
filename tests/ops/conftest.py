"""Fixtures for the convolution tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def single_threaded(one_thread):
    """Every convolution test on one thread (see ``one_thread`` in tests/conftest.py)."""
    yield


@pytest.fixture(autouse=True)
def float32_matmuls_in_float32():
    """Full float32 matrix products, whatever an earlier test set (a CUDA training run turns
    TF32 on): the float32 comparisons here hold to 1e-4."""
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(precision)

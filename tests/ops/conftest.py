"""Fixtures for the convolution tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Run on one thread: the tensors here are tiny, and on CI's two shared cores every
    parallel op otherwise waits for a descheduled worker (milliseconds per op)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

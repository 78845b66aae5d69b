"""Small models shared by the visualize tests (the trained LeNet-5 is tests/conftest.py's
session-wide ``lenet_checkpoint``)."""

from __future__ import annotations

import pytest
import torch


def _random_model(name: str, in_channels: int = 1, side: int = 28, seed: int = 0) -> torch.nn.Module:
    from convzoo.registry import create_model

    torch.manual_seed(seed)
    return create_model(name, num_classes=10, in_channels=in_channels, image_size=side).eval()


@pytest.fixture
def random_model():
    """``random_model(name, in_channels=1, side=28, seed=0)``: a registered model, randomly
    initialised under ``seed``, in eval mode."""
    return _random_model

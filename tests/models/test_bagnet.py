"""BagNet's defining properties: each location of the last feature map sees exactly a
q x q patch, and the logits are the average of the patches' logits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convzoo.registry import create_model

PATCH_SIDE = {"bagnet9": 9, "bagnet17": 17, "bagnet33": 33}


def influence_mask(model: nn.Module, side: int, location: int) -> torch.Tensor:
    """Input pixels whose gradient reaches the last feature map at (location, location).

    Every convolution averages its inputs (weight 1/fan-in) and the input is positive, so
    every ReLU passes and a pixel's gradient is non-zero exactly when a path connects it to
    the output: the mask is the receptive field, with no cancellation by chance."""
    model.eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.fill_(1.0 / module.weight[0].numel())
    images = (torch.rand(1, 3, side, side) + 0.1).requires_grad_()
    model.features(images)[0, :, location, location].sum().backward()
    return images.grad[0].abs().sum(dim=0) > 0


def assert_filled_square(mask: torch.Tensor, patch_side: int) -> None:
    rows = mask.any(dim=1).nonzero().flatten()
    columns = mask.any(dim=0).nonzero().flatten()
    height, width = int(rows.max() - rows.min() + 1), int(columns.max() - columns.min() + 1)
    assert (height, width) == (patch_side, patch_side)
    assert int(mask.sum()) == patch_side * patch_side  # a filled square, no holes


@pytest.mark.parametrize("name", sorted(PATCH_SIDE))
def test_receptive_field_is_the_papers_patch(name):
    # The paper's unpadded network, on a 64x64 crop to keep it quick.
    assert_filled_square(influence_mask(create_model(name), side=64, location=2), PATCH_SIDE[name])


@pytest.mark.parametrize("name", sorted(PATCH_SIDE))
def test_small_input_variant_keeps_the_patch_size(name):
    # Padded variant: location 2 of a 48x48 image lies far enough from the border.
    model = create_model(name, image_size=48)
    assert_filled_square(influence_mask(model, side=48, location=2), PATCH_SIDE[name])


def test_logits_are_the_average_of_patch_logits():
    torch.manual_seed(0)
    model = create_model("bagnet17", num_classes=10, image_size=32).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        patch_logits = model.patch_logits(images)
        logits = model(images)
    assert patch_logits.shape == (2, 4, 4, 10)
    torch.testing.assert_close(logits, patch_logits.mean(dim=(1, 2)), rtol=1e-4, atol=1e-4)

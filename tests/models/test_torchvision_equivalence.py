"""The models torchvision also has are torchvision's, parameter for parameter: its state
dict loads with ``strict=True`` and gives the same logits, so its ImageNet weights give
the same predictions in convzoo (random weights prove it without a download)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from convzoo.models.pretrained import TORCHVISION_COUNTERPARTS
from convzoo.registry import create_model

# Identical logits are checked at 224x224 on one model per block type (the rest of each
# family differs only in depth and width, checked by the key-and-shape test below).
SAME_LOGITS = ["alexnet", "vgg11", "vgg16_bn", "resnet18", "resnet50", "densenet121", "mobilenet_v2"]


def shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


@pytest.mark.parametrize("name", sorted(TORCHVISION_COUNTERPARTS))
def test_state_dict_keys_and_shapes_are_torchvisions(name):
    with torch.device("meta"):
        ours = create_model(name)
        theirs = torchvision.models.get_model(name, weights=None)
    assert shapes(ours) == shapes(theirs)


@pytest.mark.parametrize("name", SAME_LOGITS)
def test_torchvision_weights_give_the_same_logits(name):
    torch.manual_seed(0)
    theirs = torchvision.models.get_model(name, weights=None).eval()
    ours = create_model(name).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    images = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(images), theirs(images))


def test_mobilenet_v2_width_multiplier_matches_torchvision():
    with torch.device("meta"):
        for width_mult in (0.5, 1.4):
            ours = create_model("mobilenet_v2", width_mult=width_mult)
            theirs = torchvision.models.mobilenet_v2(width_mult=width_mult)
            assert shapes(ours) == shapes(theirs)

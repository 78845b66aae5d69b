"""ResNet specifics: section 4.2's CIFAR networks, zero-init of the residual branches, and
the map sizes of the ImageNet and small-input stems."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convzoo.registry import create_model


@pytest.mark.parametrize("name, depth", [("resnet20", 20), ("resnet56", 56), ("resnet110", 110)])
def test_cifar_resnets_follow_section_4_2(name, depth):
    """6n+2 weighted layers: a 3x3 conv, three stages of 2n 3x3 convs (16, 32, 64 filters),
    the classifier; option A shortcuts add no parameters."""
    with torch.device("meta"):
        model = create_model(name)
    convs = [module for module in model.modules() if isinstance(module, nn.Conv2d)]
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    assert len(convs) + len(linears) == depth
    assert all(conv.kernel_size == (3, 3) for conv in convs)
    assert sorted({conv.out_channels for conv in convs}) == [16, 32, 64]
    assert not hasattr(model, "layer4")


def test_cifar_resnet_maps_are_32_16_8(output_shapes):
    shapes = output_shapes(create_model("resnet20"), ["layer1", "layer2", "layer3"], torch.randn(1, 3, 32, 32))
    assert list(shapes.values()) == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]


@pytest.mark.parametrize("image_size, layer4_side", [(224, 7), (32, 4)])
def test_stem_downsamples_by_4_only_for_large_images(output_shapes, image_size, layer4_side):
    model = create_model("resnet18", num_classes=10, image_size=image_size)
    shapes = output_shapes(model, ["layer4"], torch.randn(1, 3, image_size, image_size))
    assert shapes["layer4"] == (512, layer4_side, layer4_side)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet20"])
def test_zero_init_residual_makes_every_block_start_as_the_identity(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, image_size=32, zero_init_residual=True).eval()
    block = model.layer1[1]  # a block without a projection: output = ReLU(0 + input)
    features = torch.relu(torch.randn(2, block.conv1.in_channels, 8, 8))
    with torch.no_grad():
        torch.testing.assert_close(block(features), features)

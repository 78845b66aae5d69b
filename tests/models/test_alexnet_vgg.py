"""AlexNet's paper form (Krizhevsky et al. 2012) and VGG's Table 1 columns, layer by layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convzoo.registry import create_model


def layers_of(model: nn.Module, kind: type[nn.Module]) -> list[nn.Module]:
    return [module for module in model.modules() if isinstance(module, kind)]


def test_alexnet_paper_has_two_towers_lrn_and_overlapping_pooling():
    with torch.device("meta"):
        model = create_model("alexnet_paper")
    convs = layers_of(model, nn.Conv2d)
    assert [conv.out_channels for conv in convs] == [96, 256, 384, 384, 256]
    # Figure 2: conv2, conv4 and conv5 connect only within a GPU's tower; conv3 across both.
    assert [conv.groups for conv in convs] == [1, 2, 1, 2, 2]
    assert len(layers_of(model, nn.LocalResponseNorm)) == 2
    assert all(pool.kernel_size == 3 and pool.stride == 2 for pool in layers_of(model, nn.MaxPool2d))


def test_alexnet_paper_maps_at_227_are_the_papers(output_shapes):
    """Section 3.5: 55x55x96 after conv1; conv5's pooled 6x6x256 feeds the 4096-unit layer."""
    model = create_model("alexnet_paper")
    shapes = output_shapes(model, ["features.0", "features"], torch.randn(1, 3, 227, 227))
    assert shapes == {"features.0": (96, 55, 55), "features": (256, 6, 6)}


def test_alexnet_paper_initialisation_of_section_5():
    torch.manual_seed(0)
    model = create_model("alexnet_paper")
    convs, linears = layers_of(model, nn.Conv2d), layers_of(model, nn.Linear)
    ones = [layer.bias.eq(1).all().item() for layer in convs + linears]
    assert ones == [False, True, False, True, True, True, True, False]
    assert abs(linears[0].weight.std().item() - 0.01) < 1e-3


@pytest.mark.parametrize("image_size, side", [(227, 227), (28, 28), (32, 32)])
def test_alexnet_conv5_map_is_at_least_6x6_for_paper_and_small_inputs(output_shapes, image_size, side):
    model = create_model("alexnet", num_classes=10, image_size=image_size)
    shapes = output_shapes(model, ["features"], torch.randn(1, 3, side, side))
    assert shapes["features"][-1] >= 6  # adaptive pooling to 6x6 then averages, never repeats values


# Table 1: weight layers per configuration, and the kernel sizes of its convolutions.
VGG_COLUMNS = {
    "vgg11": (11, {3}), "vgg11_lrn": (11, {3}), "vgg13": (13, {3}),
    "vgg16_c": (16, {1, 3}), "vgg16": (16, {3}), "vgg19": (19, {3}),
}


@pytest.mark.parametrize("name", sorted(VGG_COLUMNS))
def test_vgg_weight_layers_match_table_1(name):
    with torch.device("meta"):
        model = create_model(name)
    depth, kernels = VGG_COLUMNS[name]
    convs = layers_of(model, nn.Conv2d)
    assert len(convs) + len(layers_of(model, nn.Linear)) == depth
    assert {conv.kernel_size[0] for conv in convs} == kernels
    assert len(layers_of(model, nn.LocalResponseNorm)) == (1 if name == "vgg11_lrn" else 0)
    assert len(layers_of(model, nn.MaxPool2d)) == 5


@pytest.mark.parametrize("name", ["vgg11", "vgg16_bn"])
def test_vgg_small_variant_drops_the_last_pool_and_reads_512_features(output_shapes, name):
    model = create_model(name, num_classes=10, in_channels=1, image_size=28)
    assert len(layers_of(model, nn.MaxPool2d)) == 4 and isinstance(model.features[-1], nn.Identity)
    shapes = output_shapes(model, ["features", "avgpool"], torch.randn(1, 1, 28, 28))
    assert shapes == {"features": (512, 1, 1), "avgpool": (512, 1, 1)}
    assert model.classifier[0].in_features == 512

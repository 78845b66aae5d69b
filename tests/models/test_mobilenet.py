"""MobileNet v1's depthwise-separable layers (Howard et al. 2017, Table 1) and v2's
inverted residuals (Sandler et al. 2018, Table 2)."""

from __future__ import annotations

import torch
from torch import nn

from convzoo.registry import create_model


def test_mobilenet_v1_is_one_full_conv_then_13_depthwise_separable_pairs():
    with torch.device("meta"):
        model = create_model("mobilenet_v1")
    convs = [module for module in model.modules() if isinstance(module, nn.Conv2d)]
    assert convs[0].groups == 1 and convs[0].kernel_size == (3, 3)
    depthwise, pointwise = convs[1::2], convs[2::2]
    assert len(depthwise) == len(pointwise) == 13
    assert all(conv.groups == conv.in_channels == conv.out_channels for conv in depthwise)
    assert all(conv.kernel_size == (3, 3) for conv in depthwise)
    assert all(conv.groups == 1 and conv.kernel_size == (1, 1) for conv in pointwise)
    assert pointwise[-1].out_channels == 1024


def test_mobilenet_v1_reaches_7x7_at_224():
    model = create_model("mobilenet_v1", width_mult=0.25).eval()
    with torch.no_grad():
        assert model.features(torch.randn(1, 3, 224, 224)).shape == (1, 256, 7, 7)


def test_mobilenet_v2_adds_the_input_back_only_where_shapes_match():
    with torch.device("meta"):
        model = create_model("mobilenet_v2")
    residual = [block.use_residual for block in model.features[1:-1]]
    # Table 2: repeats 1, 2, 3, 4, 3, 3, 1; every repeat after a row's first keeps its shape.
    assert residual == [False, False, True, False, True, True, False, True, True, True,
                        False, True, True, False, True, True, False]


def test_small_input_stems_keep_full_resolution():
    for name in ("mobilenet_v1", "mobilenet_v2"):
        with torch.device("meta"):
            model = create_model(name, image_size=32)
        assert model.features[0][0].stride == (1, 1)

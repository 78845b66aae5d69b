"""MobileNets: depthwise-separable convolutions for small, fast networks.

- ``mobilenet_v1``: Howard et al., "MobileNets: Efficient Convolutional Neural Networks for
  Mobile Vision Applications", 2017, Table 1; the width multiplier alpha of section 3.3
  scales every layer's channels (``width_mult``).
- ``mobilenet_v2``: Sandler et al., "MobileNetV2: Inverted Residuals and Linear
  Bottlenecks", CVPR 2018, Table 2, with torchvision's module names so its weights load.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from convzoo.models._common import drop_branch, init_weights_, is_small_input, make_divisible
from convzoo.recipes import recipe
from convzoo.registry import register_model


class ConvBNActivation(nn.Sequential):
    """Conv, BatchNorm, activation, as children ``0``, ``1``, ``2`` (torchvision's Conv2dNormActivation)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, activation: type[nn.Module] = nn.ReLU6) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, groups=groups,
                      bias=False),
            nn.BatchNorm2d(out_channels),
            activation(inplace=True),
        )


def stage_ends(strides: list[int], offset: int) -> tuple[str, ...]:
    """``features.<i>`` of the last block before each downsampling and of the last block:
    the natural exits at each resolution. ``strides[i]`` is block i's, ``offset`` the stem's length."""
    return tuple(f"features.{index + offset}" for index, stride in enumerate(strides)
                 if index == len(strides) - 1 or strides[index + 1] != 1)


# ---- MobileNet v1 -------------------------------------------------------------------------

# Table 1 after the first convolution: (pointwise output channels, depthwise stride).
# The paper lists the second-to-last depthwise layer with stride 2, but its own output
# sizes (7x7 in and out) show stride 1, which is what the reference implementation uses.
V1_BLOCKS: list[tuple[int, int]] = [
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
]


class DepthwiseSeparable(nn.Sequential):
    """Figure 3 (right): 3x3 depthwise conv-BN-ReLU, then 1x1 pointwise conv-BN-ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.depthwise = ConvBNActivation(in_channels, in_channels, 3, stride, groups=in_channels,
                                          activation=nn.ReLU)
        self.pointwise = ConvBNActivation(in_channels, out_channels, 1, activation=nn.ReLU)


class MobileNetV1(nn.Module):
    def __init__(self, num_classes: int = 1000, in_channels: int = 3, width_mult: float = 1.0,
                 small_input: bool = False) -> None:
        super().__init__()
        channels = make_divisible(32 * width_mult)
        layers: list[nn.Module] = [
            ConvBNActivation(in_channels, channels, 3, stride=1 if small_input else 2, activation=nn.ReLU)]
        for out_channels, stride in V1_BLOCKS:
            out_channels = make_divisible(out_channels * width_mult)
            layers.append(DepthwiseSeparable(channels, out_channels, stride))
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))  # Table 1: 7x7 average pool, global at 224x224
        self.classifier = nn.Linear(channels, num_classes)
        init_weights_(self, conv_mode="fan_out", linear_std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


RECIPE = recipe(
    0.05, weight_decay=4e-4, warmup_epochs=1.0, label_smoothing=0.1,
    source="Sandler et al. 2018 section 6.1 and Howard et al. 2017 section 4 train with RMSprop on ImageNet; "
           "SGD with warm-up as configs/mobilenet_v2-fashion-mnist.yaml (91.22 % in 2 epochs, BENCHMARKS.md)")


@register_model(family="mobilenet", paper="Howard et al. 2017", recipe=RECIPE, head=("classifier",), stem="features.0.0",
                probe_layers=stage_ends([stride for _, stride in V1_BLOCKS], offset=1))
def mobilenet_v1(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, width_mult: float = 1.0,
                 **kwargs) -> MobileNetV1:
    """MobileNet v1 of Table 1, 4,231,976 parameters at width_mult 1 (paper: 4.2 M); up to 64 px
    the first convolution has stride 1."""
    return MobileNetV1(num_classes, in_channels, width_mult, is_small_input(image_size), **kwargs)


# ---- MobileNet v2 -------------------------------------------------------------------------

class BottleneckRow(NamedTuple):
    """One row of Table 2: expansion t, output channels c, repeats n, first stride s."""

    expansion: int
    channels: int
    repeats: int
    stride: int


V2_ROWS: list[BottleneckRow] = [
    BottleneckRow(1, 16, 1, 1),
    BottleneckRow(6, 24, 2, 2),
    BottleneckRow(6, 32, 3, 2),
    BottleneckRow(6, 64, 4, 2),
    BottleneckRow(6, 96, 3, 1),
    BottleneckRow(6, 160, 3, 2),
    BottleneckRow(6, 320, 1, 1),
]
V2_BLOCK_STRIDES = [row.stride if repeat == 0 else 1 for row in V2_ROWS for repeat in range(row.repeats)]


class InvertedResidual(nn.Module):
    """Table 1 of the v2 paper: 1x1 expansion (ReLU6), 3x3 depthwise (ReLU6), 1x1 linear
    projection; the input is added back when stride and width are unchanged (Figure 4d)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = round(in_channels * expansion)
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(ConvBNActivation(in_channels, hidden, 1))
        layers += [
            ConvBNActivation(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),  # linear bottleneck: no activation (section 3.2)
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels
        if self.use_residual:
            self.drop_path: nn.Module | None = None  # stochastic depth (``add_stochastic_depth``)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + drop_branch(self.drop_path, self.conv(x)) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000, in_channels: int = 3, width_mult: float = 1.0,
                 small_input: bool = False, dropout: float = 0.2) -> None:
        super().__init__()
        channels = make_divisible(32 * width_mult)
        last_channels = make_divisible(1280 * max(1.0, width_mult))  # the paper keeps 1280 for alpha < 1
        layers: list[nn.Module] = [ConvBNActivation(in_channels, channels, 3, stride=1 if small_input else 2)]
        for row in V2_ROWS:
            out_channels = make_divisible(row.channels * width_mult)
            for repeat in range(row.repeats):
                stride = row.stride if repeat == 0 else 1
                layers.append(InvertedResidual(channels, out_channels, stride, row.expansion))
                channels = out_channels
        layers.append(ConvBNActivation(channels, last_channels, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(last_channels, num_classes))
        init_weights_(self, conv_mode="fan_out", linear_std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@register_model(family="mobilenet", paper="Sandler et al. 2018", recipe=RECIPE, head=("classifier.1",),
                stem="features.0.0",
                probe_layers=stage_ends(V2_BLOCK_STRIDES, offset=1) + (f"features.{len(V2_BLOCK_STRIDES) + 1}",))
def mobilenet_v2(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, width_mult: float = 1.0,
                 **kwargs) -> MobileNetV2:
    """MobileNet v2 of Table 2, 3,504,872 parameters (paper: 3.4 M); up to 64 px the first
    convolution has stride 1."""
    return MobileNetV2(num_classes, in_channels, width_mult, is_small_input(image_size), **kwargs)

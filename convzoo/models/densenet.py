"""DenseNet-BC (Huang, Liu, van der Maaten & Weinberger, "Densely Connected Convolutional
Networks", CVPR 2017), the ImageNet networks of Table 1, with torchvision's module names.

Inside a dense block every layer receives the concatenation of all earlier feature maps
and adds ``growth_rate`` new ones (section 3, "Dense connectivity"); each layer is the
BN-ReLU-Conv(1x1, 4k)-BN-ReLU-Conv(3x3, k) bottleneck ("DenseNet-B"), and each transition
halves the channels with a 1x1 convolution before 2x2 average pooling (compression 0.5,
"DenseNet-C").
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from convzoo.models._common import init_weights_, is_small_input
from convzoo.recipes import recipe
from convzoo.registry import register_model


class DenseNetConfig(NamedTuple):
    """One column of Table 1."""

    growth_rate: int
    block_layers: tuple[int, int, int, int]
    stem_channels: int
    """Section 4: "the initial convolution layer comprises 2k convolutions"."""


CONFIGS: dict[str, DenseNetConfig] = {
    "densenet121": DenseNetConfig(32, (6, 12, 24, 16), 64),
    "densenet161": DenseNetConfig(48, (6, 12, 36, 24), 96),
    "densenet169": DenseNetConfig(32, (6, 12, 32, 32), 64),
    "densenet201": DenseNetConfig(32, (6, 12, 48, 32), 64),
}

BOTTLENECK_WIDTH = 4
"""Section 3, "Bottleneck layers": each 1x1 convolution produces 4k feature maps."""


class DenseLayer(nn.Module):
    """BN-ReLU-Conv(1x1)-BN-ReLU-Conv(3x3), fed with the concatenation of all earlier maps."""

    def __init__(self, in_channels: int, growth_rate: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, BOTTLENECK_WIDTH * growth_rate, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm2d(BOTTLENECK_WIDTH * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(BOTTLENECK_WIDTH * growth_rate, growth_rate, kernel_size=3, padding=1, bias=False)
        self.dropout = dropout

    def forward(self, earlier_maps: list[torch.Tensor]) -> torch.Tensor:
        x = self.conv1(self.relu1(self.norm1(torch.cat(earlier_maps, 1))))
        x = self.conv2(self.relu2(self.norm2(x)))
        return F.dropout(x, p=self.dropout, training=self.training) if self.dropout > 0 else x


class DenseBlock(nn.ModuleDict):
    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, dropout: float = 0.0) -> None:
        super().__init__()
        for index in range(num_layers):
            self[f"denselayer{index + 1}"] = DenseLayer(in_channels + index * growth_rate, growth_rate, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = [x]
        for layer in self.values():
            maps.append(layer(maps))
        return torch.cat(maps, 1)


class Transition(nn.Sequential):
    """Between blocks: BN, ReLU, 1x1 conv halving the channels, 2x2 average pool."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(nn.Module):
    """Stem, four dense blocks joined by transitions, BN, ReLU, global average pool, linear.

    ``small_stem`` replaces the 7x7/2 convolution and 3x3/2 max-pool by a 3x3/1 convolution
    and an identity (the paper's own CIFAR networks start with a 3x3 convolution, section 3).
    """

    def __init__(self, config: DenseNetConfig, num_classes: int = 1000, in_channels: int = 3,
                 small_stem: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.features = nn.Sequential()
        if small_stem:
            self.features.add_module("conv0", nn.Conv2d(in_channels, config.stem_channels, 3, padding=1, bias=False))
        else:
            self.features.add_module(
                "conv0", nn.Conv2d(in_channels, config.stem_channels, 7, stride=2, padding=3, bias=False))
        self.features.add_module("norm0", nn.BatchNorm2d(config.stem_channels))
        self.features.add_module("relu0", nn.ReLU(inplace=True))
        self.features.add_module("pool0", nn.Identity() if small_stem else nn.MaxPool2d(3, stride=2, padding=1))

        channels = config.stem_channels
        for index, num_layers in enumerate(config.block_layers):
            self.features.add_module(f"denseblock{index + 1}",
                                     DenseBlock(num_layers, channels, config.growth_rate, dropout))
            channels += num_layers * config.growth_rate
            if index < len(config.block_layers) - 1:
                self.features.add_module(f"transition{index + 1}", Transition(channels, channels // 2))
                channels //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.classifier = nn.Linear(channels, num_classes)

        init_weights_(self, conv_mode="fan_in")
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.features(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _densenet(name: str, num_classes: int, in_channels: int, image_size: int, **kwargs) -> DenseNet:
    return DenseNet(CONFIGS[name], num_classes, in_channels, small_stem=is_small_input(image_size), **kwargs)


RECIPE = recipe(
    0.1, batch_size=64, weight_decay=1e-4, warmup_epochs=1.0, label_smoothing=0.1,
    source="Huang et al. 2017 section 4.2 (SGD 0.1, batch 64, Nesterov momentum 0.9, weight decay 1e-4); "
           "Goyal et al. 2017 warm-up; as configs/densenet121-fashion-mnist.yaml")


def _register():
    return register_model(family="densenet", paper="Huang et al. 2017", recipe=RECIPE,
                          head=("classifier",), stem="features.conv0",
                          probe_layers=tuple(f"features.denseblock{index}" for index in range(1, 5)))


@_register()
def densenet121(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, **kwargs) -> DenseNet:
    """DenseNet-121 (k=32) of Table 1, 7,978,856 parameters; up to 64 px a 3x3/1 stem conv and no max-pool."""
    return _densenet("densenet121", num_classes, in_channels, image_size, **kwargs)


@_register()
def densenet161(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, **kwargs) -> DenseNet:
    """DenseNet-161 (k=48) of Table 1, 28,681,000 parameters; up to 64 px a 3x3/1 stem conv and no max-pool."""
    return _densenet("densenet161", num_classes, in_channels, image_size, **kwargs)


@_register()
def densenet169(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, **kwargs) -> DenseNet:
    """DenseNet-169 (k=32) of Table 1, 14,149,480 parameters; up to 64 px a 3x3/1 stem conv and no max-pool."""
    return _densenet("densenet169", num_classes, in_channels, image_size, **kwargs)


@_register()
def densenet201(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, **kwargs) -> DenseNet:
    """DenseNet-201 (k=32) of Table 1, 20,013,928 parameters; up to 64 px a 3x3/1 stem conv and no max-pool."""
    return _densenet("densenet201", num_classes, in_channels, image_size, **kwargs)

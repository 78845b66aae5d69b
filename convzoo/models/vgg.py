"""VGG (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015), configurations A-E of Table 1, with torchvision's module names.

The configurations are data, written in the paper's own notation so that each column of
Table 1 can be ticked off against its list: ``conv3-64`` is a 3x3 convolution with 64
filters, ``conv1-256`` a 1x1 one (configuration C), ``LRN`` local response normalisation
(A-LRN) and ``maxpool`` a 2x2/2 max-pool. Every convolution is followed by ReLU (and, in
the ``_bn`` variants, by BatchNorm before it, as torchvision adds it).
"""

from __future__ import annotations

import torch
from torch import nn

from convzoo.models._common import alexnet_local_response_norm, init_weights_, is_small_input, plain_init_
from convzoo.recipes import recipe
from convzoo.registry import register_model

_BLOCK_A = ["maxpool", "conv3-128", "maxpool", "conv3-256", "conv3-256", "maxpool",
            "conv3-512", "conv3-512", "maxpool", "conv3-512", "conv3-512", "maxpool"]

CONFIGURATIONS: dict[str, list[str]] = {
    "A": ["conv3-64"] + _BLOCK_A,
    "A-LRN": ["conv3-64", "LRN"] + _BLOCK_A,
    "B": ["conv3-64", "conv3-64", "maxpool", "conv3-128", "conv3-128", "maxpool",
          "conv3-256", "conv3-256", "maxpool", "conv3-512", "conv3-512", "maxpool",
          "conv3-512", "conv3-512", "maxpool"],
    "C": ["conv3-64", "conv3-64", "maxpool", "conv3-128", "conv3-128", "maxpool",
          "conv3-256", "conv3-256", "conv1-256", "maxpool", "conv3-512", "conv3-512", "conv1-512", "maxpool",
          "conv3-512", "conv3-512", "conv1-512", "maxpool"],
    "D": ["conv3-64", "conv3-64", "maxpool", "conv3-128", "conv3-128", "maxpool",
          "conv3-256", "conv3-256", "conv3-256", "maxpool", "conv3-512", "conv3-512", "conv3-512", "maxpool",
          "conv3-512", "conv3-512", "conv3-512", "maxpool"],
    "E": ["conv3-64", "conv3-64", "maxpool", "conv3-128", "conv3-128", "maxpool",
          "conv3-256", "conv3-256", "conv3-256", "conv3-256", "maxpool",
          "conv3-512", "conv3-512", "conv3-512", "conv3-512", "maxpool",
          "conv3-512", "conv3-512", "conv3-512", "conv3-512", "maxpool"],
}


def parse_conv(layer: str) -> tuple[int, int]:
    """``"conv3-64"`` -> (kernel size 3, 64 filters)."""
    kernel, filters = layer.removeprefix("conv").split("-")
    return int(kernel), int(filters)


def make_features(configuration: list[str], in_channels: int, batch_norm: bool, small_input: bool) -> nn.Sequential:
    """The convolutional trunk. For small inputs the last max-pool is an identity, so a
    28x28 image keeps a 1x1 map (five halvings would leave nothing) and a 32x32 one 2x2."""
    modules: list[nn.Module] = []
    channels = in_channels
    for position, layer in enumerate(configuration):
        if layer == "maxpool":
            last = position == len(configuration) - 1
            modules.append(nn.Identity() if small_input and last else nn.MaxPool2d(kernel_size=2, stride=2))
        elif layer == "LRN":
            modules.append(alexnet_local_response_norm())
        else:
            kernel, filters = parse_conv(layer)
            # Section 2.1: padding keeps the spatial size ("1 pixel for 3x3 conv. layers").
            modules.append(nn.Conv2d(channels, filters, kernel_size=kernel, padding=kernel // 2))
            if batch_norm:
                modules.append(nn.BatchNorm2d(filters))
            modules.append(nn.ReLU(inplace=True))
            channels = filters
    return nn.Sequential(*modules)


def block_ends(configuration: list[str], batch_norm: bool) -> tuple[str, ...]:
    """``features.<i>`` of each max-pool, the end of each of the five blocks."""
    modules_per_conv = 3 if batch_norm else 2  # conv, [BatchNorm,] ReLU
    names, index = [], 0
    for layer in configuration:
        if layer == "maxpool":
            names.append(f"features.{index}")
        index += modules_per_conv if layer.startswith("conv") else 1
    return tuple(names)


class VGG(nn.Module):
    """Convolutional trunk, then FC-4096, FC-4096 with dropout 0.5 (section 3.1), FC-classes."""

    def __init__(self, configuration: list[str], num_classes: int = 1000, in_channels: int = 3,
                 batch_norm: bool = False, small_input: bool = False, dropout: float = 0.5,
                 init: str = "torchvision") -> None:
        super().__init__()
        self.features = make_features(configuration, in_channels, batch_norm, small_input)
        # 7x7 is the last map for 224x224 input; adaptive pooling lets other sizes in. Small
        # images end at 1x1 or 2x2: pooled to 1x1, FC-4096 reads 512 features instead of 49
        # copies of them (copies would multiply that layer's effective learning rate by 49).
        pooled_side = 1 if small_input else 7
        self.avgpool = nn.AdaptiveAvgPool2d((pooled_side, pooled_side))
        self.classifier = nn.Sequential(
            nn.Linear(512 * pooled_side * pooled_side, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        init_weights_(self, conv_mode="fan_out", linear_std=0.01)
        plain_init_(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _vgg(configuration: str, batch_norm: bool, num_classes: int, in_channels: int, image_size: int,
         **kwargs) -> VGG:
    small_input = is_small_input(image_size)
    return VGG(CONFIGURATIONS[configuration], num_classes, in_channels, batch_norm, small_input, **kwargs)


PLAIN_RECIPE = recipe(
    0.01, warmup_epochs=1.0, label_smoothing=0.1, model_kwargs={"init": "he"},
    source="Simonyan & Zisserman 2014 section 3.1 (SGD, momentum 0.9, weight decay 5e-4, dropout 0.5; "
           "deep nets need an initialisation that keeps the signal); He et al. 2015 initialisation; "
           "Goyal et al. 2017 warm-up")
"""With torchvision's initialisation and no BatchNorm, a small-input VGG-16 starts with
logits of std 3e-4 and its loss stays at ln 10 at any rate (models/_common.py, plain_init_).
With He's, 40 steps of batch 128 on Fashion-MNIST reached 32.9 % at 0.01, 21.6 % at 0.02 and
11.0 % at 0.05."""

BATCH_NORM_RECIPE = recipe(
    0.05, warmup_epochs=1.0, label_smoothing=0.1,
    source="Simonyan & Zisserman 2014 section 3.1 with BatchNorm (Ioffe & Szegedy 2015), which allows a higher "
           "rate; as configs/vgg11_bn-fashion-mnist.yaml")


def _register(configuration: str, batch_norm: bool = False):
    return register_model(family="vgg", paper="Simonyan & Zisserman 2014", head=("classifier.6",), stem="features.0",
                          recipe=BATCH_NORM_RECIPE if batch_norm else PLAIN_RECIPE,
                          probe_layers=block_ends(CONFIGURATIONS[configuration], batch_norm))


@_register("A")
def vgg11(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, **kwargs) -> VGG:
    """VGG configuration A (Table 1), 132,863,336 parameters (Table 2: 133 M); up to 64 px
    no last max-pool, and FC-4096 reads the 512 pooled features."""
    return _vgg("A", False, num_classes, in_channels, image_size, **kwargs)


@_register("A-LRN")
def vgg11_lrn(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, **kwargs) -> VGG:
    """VGG configuration A-LRN (Table 1), A with AlexNet's LRN after conv1 (Table 2: 133 M); up to 64 px
    no last max-pool, and FC-4096 reads the 512 pooled features."""
    return _vgg("A-LRN", False, num_classes, in_channels, image_size, **kwargs)


@_register("B")
def vgg13(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, **kwargs) -> VGG:
    """VGG configuration B (Table 1), 133,047,848 parameters (Table 2: 133 M); up to 64 px
    no last max-pool, and FC-4096 reads the 512 pooled features."""
    return _vgg("B", False, num_classes, in_channels, image_size, **kwargs)


@_register("C")
def vgg16_c(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, **kwargs) -> VGG:
    """VGG configuration C (Table 1), with its three 1x1 convolutions (Table 2: 134 M); up to 64 px
    no last max-pool, and FC-4096 reads the 512 pooled features."""
    return _vgg("C", False, num_classes, in_channels, image_size, **kwargs)


@_register("D")
def vgg16(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, **kwargs) -> VGG:
    """VGG configuration D (Table 1), 138,357,544 parameters (Table 2: 138 M); up to 64 px
    no last max-pool, and FC-4096 reads the 512 pooled features."""
    return _vgg("D", False, num_classes, in_channels, image_size, **kwargs)


@_register("E")
def vgg19(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, **kwargs) -> VGG:
    """VGG configuration E (Table 1), 143,667,240 parameters (Table 2: 144 M); up to 64 px
    no last max-pool, and FC-4096 reads the 512 pooled features."""
    return _vgg("E", False, num_classes, in_channels, image_size, **kwargs)


@_register("A", batch_norm=True)
def vgg11_bn(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, **kwargs) -> VGG:
    """VGG configuration A (Table 1) with BatchNorm after each convolution, as torchvision; up to 64 px
    no last max-pool, and FC-4096 reads the 512 pooled features."""
    return _vgg("A", True, num_classes, in_channels, image_size, **kwargs)


@_register("B", batch_norm=True)
def vgg13_bn(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, **kwargs) -> VGG:
    """VGG configuration B (Table 1) with BatchNorm after each convolution, as torchvision; up to 64 px
    no last max-pool, and FC-4096 reads the 512 pooled features."""
    return _vgg("B", True, num_classes, in_channels, image_size, **kwargs)


@_register("D", batch_norm=True)
def vgg16_bn(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, **kwargs) -> VGG:
    """VGG configuration D (Table 1) with BatchNorm, 138,365,992 parameters; up to 64 px
    no last max-pool, and FC-4096 reads the 512 pooled features."""
    return _vgg("D", True, num_classes, in_channels, image_size, **kwargs)


@_register("E", batch_norm=True)
def vgg19_bn(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, **kwargs) -> VGG:
    """VGG configuration E (Table 1) with BatchNorm after each convolution, as torchvision; up to 64 px
    no last max-pool, and FC-4096 reads the 512 pooled features."""
    return _vgg("E", True, num_classes, in_channels, image_size, **kwargs)

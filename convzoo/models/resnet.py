"""ResNet (He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016).

Two kinds, one network class:

- the ImageNet ResNets of Table 1 (18/34 with basic blocks, 50/101/152 with bottlenecks),
  with torchvision's module names, projection shortcuts (option B) where the shape changes,
  and the stride of a bottleneck on its 3x3 convolution (torchvision's "ResNet v1.5"; the
  paper strides the first 1x1, which has the same parameters but sees only a quarter of
  the pixels);
- the CIFAR-10 ResNets of section 4.2: a 3x3 conv with 16 filters, three stages of 2n
  layers with 16, 32 and 64 filters on 32x32, 16x16 and 8x8 maps, and parameter-free
  identity shortcuts that zero-pad the new channels (option A), so resnet20 has 0.27 M
  parameters (Table 6).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from convzoo.models._common import drop_branch, init_weights_, is_small_input
from convzoo.recipes import recipe
from convzoo.registry import register_model


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Figure 5 (left): two 3x3 convolutions, BatchNorm after each, ReLU after the addition."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.drop_path: nn.Module | None = None  # stochastic depth (``add_stochastic_depth``)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(drop_branch(self.drop_path, out) + identity)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2


class Bottleneck(nn.Module):
    """Figure 5 (right): 1x1 reduce, 3x3, 1x1 restore to 4x the width.

    ``kernel_size`` and ``padding`` of the middle convolution are BagNet's to change."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.conv1 = conv1x1(in_channels, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.drop_path: nn.Module | None = None  # stochastic depth (``add_stochastic_depth``)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return drop_branch(self.drop_path, self.bn3(self.conv3(out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.residual(x) + identity)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3


Block = type[BasicBlock] | type[Bottleneck]


def zero_init_residual_branches_(model: nn.Module) -> None:
    """Goyal et al. 2017 (section 5.1): the last BatchNorm of each residual block starts with
    a zero scale, so each block starts as the identity and a deep network trains at first
    like a shallow one; timm's ``zero_init_last``. Names and shapes are untouched."""
    for module in model.modules():
        if isinstance(module, (BasicBlock, Bottleneck)):
            nn.init.zeros_(module.last_bn().weight)


class ZeroPadShortcut(nn.Module):
    """Option A (section 3.3): identity on a stride-subsampled input, the extra channels zero."""

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.extra_channels))


def projection_shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Option B (section 3.3): a strided 1x1 convolution and BatchNorm, torchvision's ``downsample``."""
    return nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))


def zero_pad_shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    return ZeroPadShortcut(stride, out_channels - in_channels)


def make_stage(block: Block, in_channels: int, planes: int, blocks: int, stride: int,
               shortcut: Callable[[int, int, int], nn.Module]) -> nn.Sequential:
    """One stage (torchvision's ``_make_layer``): the first block changes width and stride,
    with a ``shortcut`` module where the shape changes; the rest keep both."""
    out_channels = planes * block.expansion
    downsample = shortcut(in_channels, out_channels, stride) if stride != 1 or in_channels != out_channels else None
    layers = [block(in_channels, planes, stride, downsample)]
    layers += [block(out_channels, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    """A stem, stages ``layer1``..``layerN`` of residual blocks (the first block of every
    stage but the first halves the map), global average pooling and one linear layer.

    The ImageNet stem is a 7x7/2 convolution and a 3x3/2 max-pool; ``small_stem`` replaces
    them by a 3x3/1 convolution and an identity (section 4.2's CIFAR stem, also the usual
    practice for ImageNet-width ResNets on 32x32 images), keeping the module names.
    """

    def __init__(
        self,
        block: Block,
        blocks_per_stage: list[int],
        widths: list[int],
        num_classes: int = 1000,
        in_channels: int = 3,
        small_stem: bool = False,
        shortcut: Callable[[int, int, int], nn.Module] = projection_shortcut,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        stem_width = widths[0]
        if small_stem:
            self.conv1 = conv3x3(in_channels, stem_width)
        else:
            self.conv1 = nn.Conv2d(in_channels, stem_width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if small_stem else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        channels = stem_width
        for index, (planes, blocks) in enumerate(zip(widths, blocks_per_stage)):
            stride = 1 if index == 0 else 2
            setattr(self, f"layer{index + 1}", make_stage(block, channels, planes, blocks, stride, shortcut))
            channels = planes * block.expansion
        self.num_stages = len(widths)

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, num_classes)

        init_weights_(self, conv_mode="fan_out")
        if zero_init_residual:
            zero_init_residual_branches_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for index in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{index}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


IMAGENET_WIDTHS = [64, 128, 256, 512]
CIFAR_WIDTHS = [16, 32, 64]


def _imagenet_resnet(block: Block, blocks_per_stage: list[int], num_classes: int, in_channels: int,
                     image_size: int, **kwargs) -> ResNet:
    return ResNet(block, blocks_per_stage, IMAGENET_WIDTHS, num_classes, in_channels,
                  small_stem=is_small_input(image_size), **kwargs)


def _cifar_resnet(depth: int, num_classes: int, in_channels: int, **kwargs) -> ResNet:
    """Section 4.2: depth 6n+2, n blocks of two 3x3 convolutions in each of the three stages."""
    n = (depth - 2) // 6
    return ResNet(BasicBlock, [n, n, n], CIFAR_WIDTHS, num_classes, in_channels, small_stem=True,
                  shortcut=zero_pad_shortcut, **kwargs)


_IMAGENET_PROBES = ("maxpool", "layer1", "layer2", "layer3", "layer4")
_CIFAR_PROBES = ("maxpool", "layer1", "layer2", "layer3")


IMAGENET_RECIPE = recipe(
    0.025, batch_size=64, weight_decay=1e-4, warmup_epochs=1.0, label_smoothing=0.1, model_kwargs={"zero_init_residual": True},
    source="He et al. 2015 section 3.4 (SGD, momentum 0.9, weight decay 1e-4); Goyal et al. 2017 (0.1 x batch/256, "
           "warm-up, last BatchNorm of each block at zero); torchvision's recipe (label smoothing 0.1)")
"""Without the warm-up and the zero-initialised blocks a ResNet-50 at 0.05 for 128 diverged on
its first steps (training loss 15.9, test loss in the thousands). Batch 64 (torchvision's
reference trains 32 per GPU): two epochs of 2,560 Fashion-MNIST images reached 64.4 % at 64
and 55.2 % at 128, the same images in twice the steps."""

CIFAR_RECIPE = recipe(
    0.1, weight_decay=1e-4, model_kwargs={"zero_init_residual": True},
    source="He et al. 2015 section 4.2 (SGD 0.1, batch 128, momentum 0.9, weight decay 1e-4); "
           "Goyal et al. 2017 (last BatchNorm of each block at zero)")
CIFAR_DEEP_RECIPE = recipe(
    0.1, weight_decay=1e-4, warmup_epochs=1.0, model_kwargs={"zero_init_residual": True},
    source="He et al. 2015 section 4.2: ResNet-110 warms up at a lower rate for its first 400 iterations "
           "(one CIFAR epoch); Goyal et al. 2017 (gradual warm-up, last BatchNorm of each block at zero)")


def _register_imagenet():
    return register_model(family="resnet", paper="He et al. 2015", probe_layers=_IMAGENET_PROBES,
                          recipe=IMAGENET_RECIPE)


def _register_cifar(model_recipe=CIFAR_RECIPE):
    return register_model(family="resnet", paper="He et al. 2015", input_size=(3, 32, 32), num_classes=10,
                          recipe=model_recipe,
                          probe_layers=_CIFAR_PROBES)


@_register_imagenet()
def resnet18(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, **kwargs) -> ResNet:
    """ResNet-18 of Table 1, 11,689,512 parameters; up to 64 px a 3x3/1 conv1 and no max-pool."""
    return _imagenet_resnet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, image_size, **kwargs)


@_register_imagenet()
def resnet34(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, **kwargs) -> ResNet:
    """ResNet-34 of Table 1, 21,797,672 parameters; up to 64 px a 3x3/1 conv1 and no max-pool."""
    return _imagenet_resnet(BasicBlock, [3, 4, 6, 3], num_classes, in_channels, image_size, **kwargs)


@_register_imagenet()
def resnet50(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, **kwargs) -> ResNet:
    """ResNet-50 of Table 1, 25,557,032 parameters; up to 64 px a 3x3/1 conv1 and no max-pool."""
    return _imagenet_resnet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, image_size, **kwargs)


@_register_imagenet()
def resnet101(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, **kwargs) -> ResNet:
    """ResNet-101 of Table 1, 44,549,160 parameters; up to 64 px a 3x3/1 conv1 and no max-pool."""
    return _imagenet_resnet(Bottleneck, [3, 4, 23, 3], num_classes, in_channels, image_size, **kwargs)


@_register_imagenet()
def resnet152(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, **kwargs) -> ResNet:
    """ResNet-152 of Table 1, 60,192,808 parameters; up to 64 px a 3x3/1 conv1 and no max-pool."""
    return _imagenet_resnet(Bottleneck, [3, 8, 36, 3], num_classes, in_channels, image_size, **kwargs)


@_register_cifar()
def resnet20(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, **kwargs) -> ResNet:
    """CIFAR ResNet-20 of section 4.2, 0.27 M parameters (Table 6);
    built for 32x32 images, any size works (global average pooling)."""
    return _cifar_resnet(20, num_classes, in_channels, **kwargs)


@_register_cifar()
def resnet32(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, **kwargs) -> ResNet:
    """CIFAR ResNet-32 of section 4.2, 0.46 M parameters (Table 6);
    built for 32x32 images, any size works (global average pooling)."""
    return _cifar_resnet(32, num_classes, in_channels, **kwargs)


@_register_cifar()
def resnet44(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, **kwargs) -> ResNet:
    """CIFAR ResNet-44 of section 4.2, 0.66 M parameters (Table 6);
    built for 32x32 images, any size works (global average pooling)."""
    return _cifar_resnet(44, num_classes, in_channels, **kwargs)


@_register_cifar()
def resnet56(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, **kwargs) -> ResNet:
    """CIFAR ResNet-56 of section 4.2, 0.85 M parameters (Table 6);
    built for 32x32 images, any size works (global average pooling)."""
    return _cifar_resnet(56, num_classes, in_channels, **kwargs)


@_register_cifar(CIFAR_DEEP_RECIPE)
def resnet110(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, **kwargs) -> ResNet:
    """CIFAR ResNet-110 of section 4.2, 1.7 M parameters (Table 6);
    built for 32x32 images, any size works (global average pooling)."""
    return _cifar_resnet(110, num_classes, in_channels, **kwargs)

"""Fully convolutional networks (Long, Shelhamer & Darrell, "Fully Convolutional Networks
for Semantic Segmentation", CVPR 2015 / PAMI 2016): a classification network made fully
convolutional, scoring every position of its last feature map, then upsampled back to
the image by learned transposed convolutions.

- FCN-32s upsamples the scores of the last map (stride 32) to the image in one step.
- FCN-16s first upsamples them 2x and adds the scores of the stride-16 map (``pool4``).
- FCN-8s then upsamples that sum 2x and adds the scores of the stride-8 map (``pool3``).

As in the paper (section 4.2): the skip score layers start at zero, so each finer net
starts as the coarser one; every upsampling is a transposed convolution of kernel 2f and
stride f, one filter per class, initialised to bilinear interpolation (``bilinear_kernel``)
and then learned (the paper keeps the last one fixed; learning it costs nothing here).

The backbone is the zoo's own classification model, built by the registry and kept under
its own module names (``backbone.``), without its global pooling and classifier: its
weights load into the FCN (``--weights torchvision``, ``--weights run/best.pt``). For
VGG-16 the paper's fc6 and fc7 are VGG's own fully connected layers as convolutions
(section 3.1): ``backbone.classifier.0`` and ``.3`` keep their names and their weights,
reshaped. Departures: the paper pads the input by 100 pixels so that fc6's valid 7x7
convolution finds a map, and crops after; here the image is zero-padded at its bottom and
right to a multiple of the trunk's final stride, fc6 pads "same", and the scores are
cropped back to the image, so the output has the input's height and width at any size.
The class-scoring layer ``score_fr`` starts at N(0, 0.01) rather than the paper's zero, so
that an untrained FCN's scores already depend on the image.

Small images (up to 64 px, the zoo's small-input rule) get each backbone's small-input
build: ResNet's stride-1 stem (final stride 8), MobileNet-v2's stride-1 first convolution
(final stride 16), VGG's identity last pool (final stride 16, and fc6 1x1 because that
VGG's fc6 reads a 1x1 pooled map). The skips then come from the maps at 1/2 and 1/4 of
the final map's resolution, as pool4 and pool3 are at 224 px: the same modules for
ResNet and MobileNet, ``pool3`` and ``pool2`` for VGG. torchvision's VGG-16 weights fit
the ImageNet build; the small build's 1x1 fc6 cannot take their 7x7 one (``--weights-strict
false`` starts it fresh), but takes the small-input VGG-16's, which reads a 1x1 map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from convzoo.models._backbone import classification_trunk, crop_to, pad_to_multiple, run_to_exits
from convzoo.models import mobilenet, resnet, vgg  # noqa: F401  (registers the backbones before this file)
from convzoo.models._common import is_small_input
from convzoo.recipes import recipe
from convzoo.registry import get_model_info, register_model


def bilinear_kernel(channels: int, factor: int) -> torch.Tensor:
    """Weights (channels, channels, 2f, 2f) of a transposed convolution of stride f that
    upsamples each channel by bilinear interpolation (the FCN reference code's
    ``upsample_filt``, on the channel diagonal). With padding f/2, which crops f/2 pixels
    off each side of its (n + 1) f output, it equals ``F.interpolate(mode="bilinear",
    align_corners=False)`` away from the borders."""
    size = 2 * factor
    centre = factor - 0.5
    taps = 1 - (torch.arange(size, dtype=torch.float32) - centre).abs() / factor
    weight = torch.zeros(channels, channels, size, size)
    weight[range(channels), range(channels)] = taps[:, None] * taps[None, :]
    return weight


def upsampling(channels: int, factor: int) -> nn.ConvTranspose2d:
    """A learned ``factor`` x upsampling of score maps, starting as bilinear interpolation."""
    layer = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(bilinear_kernel(channels, factor))
    return layer


def score_layer(in_channels: int, num_classes: int, zero: bool) -> nn.Conv2d:
    """A 1x1 convolution scoring each position for each class (background included)."""
    layer = nn.Conv2d(in_channels, num_classes, kernel_size=1)
    if zero:
        nn.init.zeros_(layer.weight)
    else:
        nn.init.normal_(layer.weight, 0, 0.01)
    nn.init.zeros_(layer.bias)
    return layer


@dataclass(frozen=True)
class Trunk:
    """Where the FCN takes a backbone's features: the exits at 1/4, 1/2 and the final
    resolution (pool3, pool4 and fc7 for the paper's VGG-16), their channels, and the
    final map's stride."""

    exits: tuple[str, str, str]
    channels: tuple[int, int, int]
    final_stride: int


def vgg_trunk(small: bool) -> Trunk:
    if small:  # the last pool is an identity: pool2 and pool3 are at 1/4 and 1/2 of the final map
        return Trunk(("features.9", "features.16", "classifier"), (128, 256, 4096), 16)
    return Trunk(("features.16", "features.23", "classifier"), (256, 512, 4096), 32)


# backbone -> (trunk of the ImageNet build, trunk of the small-input build); modules dropped
TRUNKS: dict[str, tuple[Trunk, Trunk]] = {
    "vgg16": (vgg_trunk(False), vgg_trunk(True)),
    "resnet18": (Trunk(("layer2", "layer3", "layer4"), (128, 256, 512), 32),
                 Trunk(("layer2", "layer3", "layer4"), (128, 256, 512), 8)),
    "resnet50": (Trunk(("layer2", "layer3", "layer4"), (512, 1024, 2048), 32),
                 Trunk(("layer2", "layer3", "layer4"), (512, 1024, 2048), 8)),
    "mobilenet_v2": (Trunk(("features.6", "features.13", "features.18"), (32, 96, 1280), 32),
                     Trunk(("features.6", "features.13", "features.18"), (32, 96, 1280), 16)),
}
DROPPED = {"vgg16": ("avgpool",), "resnet18": ("avgpool", "fc"), "resnet50": ("avgpool", "fc"),
           "mobilenet_v2": ("avgpool", "classifier")}
"""The backbone's global pooling and classifier, which a fully convolutional net has no use for."""


def convolutionalized(linear: nn.Linear, in_channels: int, side: int) -> nn.Conv2d:
    """A fully connected layer reading a ``side`` x ``side`` map as the convolution it is
    (section 3.1), sharing its weights: fc6 of VGG-16 is a 7x7 convolution, fc7 a 1x1."""
    # Built on the meta device: its own initialisation would be thrown away (102 M numbers for fc6).
    conv = nn.Conv2d(in_channels, linear.out_features, side, padding=side // 2, device="meta")
    conv.weight = nn.Parameter(linear.weight.detach().reshape(linear.out_features, in_channels, side, side))
    conv.bias = nn.Parameter(linear.bias.detach())
    return conv


def vgg_fully_convolutional(backbone: nn.Module) -> None:
    """VGG's fc6 and fc7 as convolutions, in place: ``classifier.0`` and ``.3`` keep their names;
    the 1000-class ``classifier.6`` goes (the FCN's ``score_fr`` replaces it)."""
    classifier = backbone.classifier
    channels = 512  # VGG's last convolutions
    side = math.isqrt(classifier[0].in_features // channels)  # 7 for the ImageNet build, 1 for the small-input one
    fc6 = convolutionalized(classifier[0], channels, side)
    fc7 = convolutionalized(classifier[3], classifier[3].in_features, 1)
    backbone.classifier = nn.Sequential(fc6, classifier[1], classifier[2], fc7, classifier[4], classifier[5])


class FCN(nn.Module):
    """A backbone's trunk, class scores on its last map, and ``skips`` (0, 1 or 2) fusions
    with the scores of the finer maps: FCN-32s, FCN-16s, FCN-8s."""

    def __init__(self, backbone: str, skips: int, num_classes: int = 21, in_channels: int = 3,
                 image_size: int = 224) -> None:
        super().__init__()
        small = is_small_input(image_size)
        self.backbone = classification_trunk(backbone, in_channels, image_size, DROPPED[backbone])
        if backbone == "vgg16":
            vgg_fully_convolutional(self.backbone)
        trunk = TRUNKS[backbone][small]
        self.exits = trunk.exits
        self.final_stride = trunk.final_stride
        self.skips = skips
        pool3_channels, pool4_channels, final_channels = trunk.channels
        self.score_fr = score_layer(final_channels, num_classes, zero=False)
        if skips >= 1:
            self.upscore2 = upsampling(num_classes, 2)
            self.score_pool4 = score_layer(pool4_channels, num_classes, zero=True)
        if skips >= 2:
            self.upscore_pool4 = upsampling(num_classes, 2)
            self.score_pool3 = score_layer(pool3_channels, num_classes, zero=True)
        self.upscore = upsampling(num_classes, self.final_stride >> skips)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        pool3, pool4, final = run_to_exits(self.backbone, pad_to_multiple(images, self.final_stride), self.exits)
        scores = self.score_fr(final)
        if self.skips >= 1:
            scores = self.upscore2(scores) + self.score_pool4(pool4)
        if self.skips >= 2:
            scores = self.upscore_pool4(scores) + self.score_pool3(pool3)
        return crop_to(self.upscore(scores), height, width)


HEADS = {
    0: ("score_fr", "upscore"),
    1: ("score_fr", "upscore2", "score_pool4", "upscore"),
    2: ("score_fr", "upscore2", "score_pool4", "upscore_pool4", "score_pool3", "upscore"),
}
"""Every layer whose output is class scores: re-initialised for another class count."""

RECIPE = recipe(
    2e-3, batch_size=32, optimizer="adamw", weight_decay=1e-4, warmup_epochs=0.0,
    source="measured on mnist-scenes (BENCHMARKS.md): Long et al. 2015 fine-tune from ImageNet weights with SGD "
           "(momentum 0.9, batch 20, 1e-4 on a loss summed over pixels); from scratch on a few thousand canvases "
           "that SGD left FCN-8s predicting background for epochs, AdamW at 2e-3 for 32 images learns")


def _register(backbone: str, skips: int):
    backbone_info = get_model_info(backbone)
    return register_model(
        family="fcn", paper="Long et al. 2015", task="segmentation", num_classes=21, recipe=RECIPE,
        head=HEADS[skips], stem=f"backbone.{backbone_info.stem}", backbone=backbone,
        probe_layers=tuple(f"backbone.{name}" for name in backbone_info.probe_layers))


@_register("vgg16", skips=0)
def fcn32s_vgg16(num_classes: int = 21, in_channels: int = 3, image_size: int = 224, **kwargs) -> FCN:
    """FCN-32s on VGG-16 (Long et al. Table 1: 134 M parameters), 136,152,917 for 21 PASCAL classes,
    1,806,336 of them the 64x64 upsampling, which the paper keeps fixed; up to
    64 px VGG's small-input trunk (final stride 16) and a 1x1 fc6."""
    return FCN("vgg16", 0, num_classes, in_channels, image_size, **kwargs)


@_register("vgg16", skips=1)
def fcn16s_vgg16(num_classes: int = 21, in_channels: int = 3, image_size: int = 224, **kwargs) -> FCN:
    """FCN-16s on VGG-16 (Long et al. Table 2, the pool4 skip); up to 64 px VGG's small-input
    trunk (final stride 16, the skip from pool3) and a 1x1 fc6."""
    return FCN("vgg16", 1, num_classes, in_channels, image_size, **kwargs)


@_register("vgg16", skips=2)
def fcn8s_vgg16(num_classes: int = 21, in_channels: int = 3, image_size: int = 224, **kwargs) -> FCN:
    """FCN-8s on VGG-16 (Long et al. Table 2, the pool4 and pool3 skips), 134,489,759 parameters
    for 21 classes; up to 64 px VGG's
    small-input trunk (final stride 16, skips from pool3 and pool2) and a 1x1 fc6."""
    return FCN("vgg16", 2, num_classes, in_channels, image_size, **kwargs)


@_register("resnet18", skips=0)
def fcn32s_resnet18(num_classes: int = 21, in_channels: int = 3, image_size: int = 224, **kwargs) -> FCN:
    """FCN-32s on ResNet-18 (scores on layer4); up to 64 px its stride-1 stem (final stride 8)."""
    return FCN("resnet18", 0, num_classes, in_channels, image_size, **kwargs)


@_register("resnet18", skips=1)
def fcn16s_resnet18(num_classes: int = 21, in_channels: int = 3, image_size: int = 224, **kwargs) -> FCN:
    """FCN-16s on ResNet-18 (skip from layer3); up to 64 px its stride-1 stem (final stride 8)."""
    return FCN("resnet18", 1, num_classes, in_channels, image_size, **kwargs)


@_register("resnet18", skips=2)
def fcn8s_resnet18(num_classes: int = 21, in_channels: int = 3, image_size: int = 224, **kwargs) -> FCN:
    """FCN-8s on ResNet-18 (skips from layer3 and layer2); up to 64 px its stride-1 stem (final stride 8)."""
    return FCN("resnet18", 2, num_classes, in_channels, image_size, **kwargs)


@_register("resnet50", skips=2)
def fcn8s_resnet50(num_classes: int = 21, in_channels: int = 3, image_size: int = 224, **kwargs) -> FCN:
    """FCN-8s on ResNet-50 (skips from layer3 and layer2); up to 64 px its stride-1 stem (final stride 8)."""
    return FCN("resnet50", 2, num_classes, in_channels, image_size, **kwargs)


@_register("mobilenet_v2", skips=0)
def fcn32s_mobilenet_v2(num_classes: int = 21, in_channels: int = 3, image_size: int = 224, **kwargs) -> FCN:
    """FCN-32s on MobileNet v2 (its last 1x1 convolution's 1280 maps, one 32x upsampling); up to
    64 px its stride-1 first convolution (final stride 16)."""
    return FCN("mobilenet_v2", 0, num_classes, in_channels, image_size, **kwargs)


@_register("mobilenet_v2", skips=1)
def fcn16s_mobilenet_v2(num_classes: int = 21, in_channels: int = 3, image_size: int = 224, **kwargs) -> FCN:
    """FCN-16s on MobileNet v2 (a skip from the stride-16 block, features.13); up to 64 px its
    stride-1 first convolution (final stride 16)."""
    return FCN("mobilenet_v2", 1, num_classes, in_channels, image_size, **kwargs)


@_register("mobilenet_v2", skips=2)
def fcn8s_mobilenet_v2(num_classes: int = 21, in_channels: int = 3, image_size: int = 224, **kwargs) -> FCN:
    """FCN-8s on MobileNet v2 (skips from the stride-16 and stride-8 blocks, features.13 and
    features.6); up to 64 px its stride-1 first convolution (final stride 16)."""
    return FCN("mobilenet_v2", 2, num_classes, in_channels, image_size, **kwargs)

"""U-Net (Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015), and a U-Net whose contracting path is the zoo's ResNet-18.

Figure 1 of the paper: a contracting path of units of two 3x3 convolutions with ReLU,
each unit but the last followed by a 2x2 max-pool, doubling the channels at each of four
halvings (64 to 1024); an expanding path of 2x2 "up-convolutions" (transposed
convolutions) that double the map and halve the channels, each concatenated with the
contracting path's map of that size and followed by two 3x3 convolutions; a 1x1
convolution to the class scores.

Departures, both those of the common implementations: the 3x3 convolutions pad by 1
("same"), so the output has the input's size, where the paper's unpadded ones shrink a
572x572 tile to a 388x388 map and crop the skip maps to fit; and each convolution is
followed by BatchNorm (and has no bias), which the paper predates (``batch_norm=False``
gives its plain network, with biases). Images whose sides are not multiples of 16 are
zero-padded at the bottom and right and the scores cropped back. Convolutions start
from He's normal initialisation, the paper's std sqrt(2/N) (section 3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from convzoo.models import resnet  # noqa: F401  (registers the backbone before this file)
from convzoo.models._backbone import classification_trunk, crop_to, pad_to_multiple, run_to_exits
from convzoo.models._common import init_weights_, is_small_input
from convzoo.recipes import recipe
from convzoo.registry import get_model_info, register_model


class DoubleConv(nn.Sequential):
    """The paper's unit: two 3x3 convolutions, each followed by [BatchNorm and] ReLU."""

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool = True) -> None:
        layers: list[nn.Module] = []
        for channels in (in_channels, out_channels):
            layers.append(nn.Conv2d(channels, out_channels, kernel_size=3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class UpBlock(nn.Module):
    """One step of the expanding path: a ``factor`` x ``factor`` transposed convolution of
    stride ``factor`` halving the channels, concatenation with the skip map, a DoubleConv.
    (``factor`` is 2 in the paper; 1 where a small-input ResNet keeps the resolution.)"""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, factor: int = 2,
                 batch_norm: bool = True) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=factor, stride=factor)
        self.conv = DoubleConv(in_channels // 2 + skip_channels, out_channels, batch_norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """``encoder.0`` .. ``encoder.<depth>`` (the contracting path, the last one the bottom of
    the U), ``decoder.0`` .. ``decoder.<depth - 1>`` (the expanding path, coarsest first) and
    the 1x1 ``classifier``."""

    def __init__(self, num_classes: int = 2, in_channels: int = 1, base_width: int = 64, depth: int = 4,
                 batch_norm: bool = True) -> None:
        super().__init__()
        widths = [base_width * 2**level for level in range(depth + 1)]
        self.encoder = nn.ModuleList(
            DoubleConv(in_channels if level == 0 else widths[level - 1], width, batch_norm)
            for level, width in enumerate(widths))
        self.decoder = nn.ModuleList(
            UpBlock(widths[level + 1], widths[level], widths[level], 2, batch_norm) for level in reversed(range(depth)))
        self.classifier = nn.Conv2d(widths[0], num_classes, kernel_size=1)
        self.depth = depth
        init_weights_(self, conv_mode="fan_in")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        x = pad_to_multiple(images, 2**self.depth)
        skips = []
        for level, unit in enumerate(self.encoder):
            x = unit(x if level == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for step in self.decoder:
            x = step(x, skips.pop())
        return crop_to(self.classifier(x), height, width)


class ResNetUNet(nn.Module):
    """A U-Net whose contracting path is a zoo ResNet's trunk (``backbone``, its own module
    names, so its classification weights load): the skips are the stem's output (``relu``)
    and ``layer1`` .. ``layer3``, the bottom ``layer4``. The expanding path has the paper's
    steps (``decoder``), then one more transposed convolution back to the image's resolution
    (``final_up``, by the stem's stride), two 3x3 convolutions and the 1x1 ``classifier``."""

    EXITS = ("relu", "layer1", "layer2", "layer3", "layer4")

    def __init__(self, backbone: str = "resnet18", num_classes: int = 2, in_channels: int = 3,
                 image_size: int = 224, batch_norm: bool = True) -> None:
        super().__init__()
        small = is_small_input(image_size)
        self.backbone = classification_trunk(backbone, in_channels, image_size, ("avgpool", "fc"))
        expansion = 4 if backbone in ("resnet50", "resnet101", "resnet152") else 1
        stem, *stages = [64] + [width * expansion for width in (64, 128, 256, 512)]
        # The small-input stem keeps the resolution (3x3/1 conv, no max-pool): layer1 is at the stem's.
        stem_stride, layer1_factor = (1, 1) if small else (2, 2)
        self.final_stride = 8 if small else 32
        self.decoder = nn.ModuleList([
            UpBlock(stages[3], stages[2], stages[2], 2, batch_norm),
            UpBlock(stages[2], stages[1], stages[1], 2, batch_norm),
            UpBlock(stages[1], stages[0], stages[0], 2, batch_norm),
            UpBlock(stages[0], stem, stem // 2, layer1_factor, batch_norm),
        ])
        self.final_up = nn.ConvTranspose2d(stem // 2, stem // 4, kernel_size=stem_stride, stride=stem_stride)
        self.final_conv = DoubleConv(stem // 4, stem // 4, batch_norm)
        self.classifier = nn.Conv2d(stem // 4, num_classes, kernel_size=1)
        for module in (self.decoder, self.final_conv, self.classifier):
            init_weights_(module, conv_mode="fan_in")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        *skips, x = run_to_exits(self.backbone, pad_to_multiple(images, self.final_stride), self.EXITS)
        for step in self.decoder:
            x = step(x, skips.pop())
        return crop_to(self.classifier(self.final_conv(self.final_up(x))), height, width)


RECIPE = recipe(
    1e-3, optimizer="adamw", weight_decay=1e-4,
    source="Ronneberger et al. 2015 section 3 train with SGD, momentum 0.99, on one large tile per step; "
           "with BatchNorm and batches of small images, AdamW at 1e-3 (Loshchilov & Hutter 2019), "
           "as the common implementations train it")


@register_model(family="unet", paper="Ronneberger et al. 2015", task="segmentation", input_size=(1, 572, 572),
                num_classes=2, recipe=RECIPE, head=("classifier",), stem="encoder.0.0",
                probe_layers=tuple(f"encoder.{level}" for level in range(1, 5))
                + tuple(f"decoder.{step}" for step in range(4)))
def unet(num_classes: int = 2, in_channels: int = 1, image_size: int = 572, base_width: int = 64,
         batch_norm: bool = True, **kwargs) -> UNet:
    """U-Net of Figure 1 (64 to 1024 channels, four halvings), 31,036,546 parameters for 1 channel
    and 2 classes with BatchNorm (31,037,698 for 3 channels, as in milesial's Pytorch-UNet;
    31,030,658 without BatchNorm); any size (padded to a multiple of 16);
    ``base_width`` (model_kwargs) narrows it for small images: 32 has a quarter of the parameters."""
    return UNet(num_classes, in_channels, base_width, 4, batch_norm, **kwargs)


@register_model(family="unet", paper="Ronneberger et al. 2015", task="segmentation", num_classes=2, recipe=RECIPE,
                head=("classifier",), stem="backbone.conv1", backbone="resnet18",
                probe_layers=tuple(f"backbone.{name}" for name in get_model_info("resnet18").probe_layers)
                + tuple(f"decoder.{step}" for step in range(4)))
def unet_resnet18(num_classes: int = 2, in_channels: int = 3, image_size: int = 224, batch_norm: bool = True,
                  **kwargs) -> ResNetUNet:
    """U-Net with the zoo's ResNet-18 as its contracting path (skips from the stem and layer1-3);
    up to 64 px ResNet's stride-1 stem, and the decoder keeps the stem's resolution."""
    return ResNetUNet("resnet18", num_classes, in_channels, image_size, batch_norm, **kwargs)

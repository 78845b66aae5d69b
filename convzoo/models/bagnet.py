"""BagNet (Brendel & Bethge, "Approximating CNNs with Bag-of-local-Features models works
surprisingly well on ImageNet", ICLR 2019).

A ResNet-50 (bottleneck blocks, 3-4-6-3) in which almost every 3x3 convolution is a 1x1
and no convolution pads, so each location of the last feature map sees exactly one
q x q patch of the image (q = 9, 17 or 33). The classifier is linear and applied at every
location: its logits are the class evidence of one patch, and the image's logits are
their average, a "bag of local features" (section 2). Layout and module names follow the
authors' reference implementation (``bagnets/pytorchnet.py``): same state-dict keys.
"""

from __future__ import annotations

import torch
from torch import nn

from convzoo.models import resnet
from convzoo.models._common import init_weights_, is_small_input
from convzoo.recipes import recipe
from convzoo.registry import register_model

STAGE_WIDTHS = [64, 128, 256, 512]
BLOCKS_PER_STAGE = [3, 4, 6, 3]  # ResNet-50
STAGE_STRIDES = [2, 2, 2, 1]
"""The reference code's strides: the stem does not downsample, the last stage neither."""

# How many leading blocks of each stage keep a 3x3 convolution; all others use 1x1.
# The receptive field grows from 3 (the stem's 3x3) by 2 x the cumulative stride at each
# 3x3: 3 -> 5 -> 9 (stride 2, 4) -> 17 (stride 8) -> 33 (stride 8 again, layer4 does not stride).
KERNEL3_BLOCKS: dict[str, list[int]] = {
    "bagnet9": [1, 1, 0, 0],
    "bagnet17": [1, 1, 1, 0],
    "bagnet33": [1, 1, 1, 1],
}


class Bottleneck(resnet.Bottleneck):
    """ResNet's bottleneck with a 1x1 or an unpadded 3x3 middle convolution. The 3x3 then
    shrinks the map, so the shortcut is cropped to the residual branch's size (from the
    bottom right, as the reference code does; each kept value still lies in the patch)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.residual(x)
        height, width = out.shape[-2:]
        return self.relu(out + identity[:, :, :height, :width])


class BagNet(nn.Module):
    """``conv1`` (1x1) and ``conv2`` (3x3) stem, four bottleneck stages, linear classifier
    per location, averaged. ``same_padding`` pads every 3x3 (the small-input variant)."""

    def __init__(self, kernel3_blocks: list[int], num_classes: int = 1000, in_channels: int = 3,
                 same_padding: bool = False, zero_init_residual: bool = False) -> None:
        super().__init__()
        padding = 1 if same_padding else 0
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=1, bias=False)
        self.conv2 = nn.Conv2d(64, 64, kernel_size=3, padding=padding, bias=False)
        # The reference sets this BatchNorm's momentum to 0.001; the default 0.1 is kept here
        # so that running statistics catch up within a short training run.
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)

        channels = 64
        for index, (planes, blocks, stride, with_3x3) in enumerate(
                zip(STAGE_WIDTHS, BLOCKS_PER_STAGE, STAGE_STRIDES, kernel3_blocks)):
            out_channels = planes * Bottleneck.expansion
            downsample = None
            if stride != 1 or channels != out_channels:
                downsample = resnet.projection_shortcut(channels, out_channels, stride)
            layers = []
            for block in range(blocks):
                kernel_size = 3 if block < with_3x3 else 1
                layers.append(Bottleneck(channels, planes, stride if block == 0 else 1,
                                         downsample if block == 0 else None,
                                         kernel_size, padding if kernel_size == 3 else 0))
                channels = out_channels
            setattr(self, f"layer{index + 1}", nn.Sequential(*layers))
        self.fc = nn.Linear(channels, num_classes)
        init_weights_(self, conv_mode="fan_out")
        if zero_init_residual:
            resnet.zero_init_residual_branches_(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map: one 2048-vector per image patch."""
        x = self.relu(self.bn1(self.conv2(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def patch_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class evidence of each patch, (batch, height, width, classes): the heatmaps of Figure 2."""
        return self.fc(self.features(x).permute(0, 2, 3, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The classifier is linear, so averaging features first equals averaging the
        # patch logits, at a fraction of the cost.
        return self.fc(self.features(x).mean(dim=(2, 3)))


def _bagnet(name: str, num_classes: int, in_channels: int, image_size: int, **kwargs) -> BagNet:
    return BagNet(KERNEL3_BLOCKS[name], num_classes, in_channels, same_padding=is_small_input(image_size), **kwargs)


RECIPE = recipe(
    0.05, warmup_epochs=1.0, label_smoothing=0.1, model_kwargs={"zero_init_residual": True},
    source="Brendel & Bethge 2019 train ResNet-50's ImageNet recipe; warm-up and label smoothing as "
           "configs/bagnet17-fashion-mnist.yaml (89.53 % in 2 epochs, BENCHMARKS.md); the last BatchNorm of "
           "each bottleneck at zero (Goyal et al. 2017): without it a small-batch run's test loss reached 177 "
           "after its first epoch")


def _register():
    return register_model(family="bagnet", paper="Brendel & Bethge 2019", recipe=RECIPE,
                          probe_layers=("relu", "layer1", "layer2", "layer3", "layer4"))


@_register()
def bagnet9(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, **kwargs) -> BagNet:
    """BagNet-9 (9x9 patches), 15,688,744 parameters; up to 64 px the 3x3 convolutions zero-pad
    so that small images keep a map of patches (border patches then overlap the padding)."""
    return _bagnet("bagnet9", num_classes, in_channels, image_size, **kwargs)


@_register()
def bagnet17(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, **kwargs) -> BagNet:
    """BagNet-17 (17x17 patches), 16,213,032 parameters; up to 64 px the 3x3 convolutions zero-pad
    so that small images keep a map of patches (border patches then overlap the padding)."""
    return _bagnet("bagnet17", num_classes, in_channels, image_size, **kwargs)


@_register()
def bagnet33(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, **kwargs) -> BagNet:
    """BagNet-33 (33x33 patches), 18,310,184 parameters; up to 64 px the 3x3 convolutions zero-pad
    so that small images keep a map of patches (on 32x32 images one patch is the whole image)."""
    return _bagnet("bagnet33", num_classes, in_channels, image_size, **kwargs)

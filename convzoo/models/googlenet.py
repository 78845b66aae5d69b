"""GoogLeNet (Szegedy et al., "Going Deeper with Convolutions", CVPR 2015 / arXiv 2014).

Written from the paper, not from torchvision: no BatchNorm (it came a year later), the
local response normalisations of Figure 3's stem, and the 5x5 branch really 5x5 (torchvision's
GoogLeNet uses 3x3 there, a known deviation it keeps for its weights). Module names follow
torchvision's where the two agree (``conv1``, ``inception3a``, ``aux1``, ``fc``, ...).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from convzoo.models._common import init_weights_, is_small_input
from convzoo.recipes import recipe
from convzoo.registry import register_model


class InceptionWidths(NamedTuple):
    """One row of Table 1."""

    conv1x1: int
    reduce3x3: int
    conv3x3: int
    reduce5x5: int
    conv5x5: int
    pool_proj: int

    @property
    def out_channels(self) -> int:
        return self.conv1x1 + self.conv3x3 + self.conv5x5 + self.pool_proj


# Table 1, "inception" rows: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
INCEPTION_WIDTHS: dict[str, InceptionWidths] = {
    "3a": InceptionWidths(64, 96, 128, 16, 32, 32),
    "3b": InceptionWidths(128, 128, 192, 32, 96, 64),
    "4a": InceptionWidths(192, 96, 208, 16, 48, 64),
    "4b": InceptionWidths(160, 112, 224, 24, 64, 64),
    "4c": InceptionWidths(128, 128, 256, 24, 64, 64),
    "4d": InceptionWidths(112, 144, 288, 32, 64, 64),
    "4e": InceptionWidths(256, 160, 320, 32, 128, 128),
    "5a": InceptionWidths(256, 160, 320, 32, 128, 128),
    "5b": InceptionWidths(384, 192, 384, 48, 128, 128),
}


class ConvReLU(nn.Sequential):
    """A convolution and its ReLU: "All the convolutions, including those inside the
    Inception modules, use rectified linear activation" (section 5)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2)
        self.relu = nn.ReLU(inplace=True)


class Inception(nn.Module):
    """Figure 2(b): 1x1, 1x1->3x3, 1x1->5x5 and 3x3 max-pool->1x1, concatenated."""

    def __init__(self, in_channels: int, widths: InceptionWidths) -> None:
        super().__init__()
        self.branch1 = ConvReLU(in_channels, widths.conv1x1, 1)
        self.branch2 = nn.Sequential(ConvReLU(in_channels, widths.reduce3x3, 1),
                                     ConvReLU(widths.reduce3x3, widths.conv3x3, 3))
        self.branch3 = nn.Sequential(ConvReLU(in_channels, widths.reduce5x5, 1),
                                     ConvReLU(widths.reduce5x5, widths.conv5x5, 5))
        self.branch4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
                                     ConvReLU(in_channels, widths.pool_proj, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)


class AuxiliaryClassifier(nn.Module):
    """Section 5: 5x5/3 average pool (4x4 out of 14x14), 1x1 conv with 128 filters, FC-1024,
    dropout 70%, linear classifier. Used only during training, its loss weighted by 0.3."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.Sequential(nn.AvgPool2d(kernel_size=5, stride=3), nn.AdaptiveAvgPool2d((4, 4)))
        self.conv = ConvReLU(in_channels, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(p=0.7)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(self.pool(x)), 1)
        return self.fc2(self.dropout(self.relu(self.fc1(x))))


class GoogLeNetOutputs(NamedTuple):
    """Training-mode output: main logits first, then the auxiliary classifiers' logits."""

    logits: torch.Tensor
    aux1: torch.Tensor
    aux2: torch.Tensor


class GoogLeNet(nn.Module):
    """Table 1 from top to bottom. Training mode returns ``GoogLeNetOutputs``; evaluation
    mode returns the main logits only, the auxiliary classifiers being discarded at
    inference (section 5)."""

    aux_loss_weight = 0.3
    """Section 5: "their loss gets added to the total loss of the network with a discount weight"."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                 dropout: float = 0.4) -> None:
        super().__init__()

        def stem_pool() -> nn.Module:
            return nn.Identity() if small_input else nn.MaxPool2d(3, stride=2, ceil_mode=True)

        # Stem (Figure 3): conv 7x7/2, max-pool, LRN, conv 1x1, conv 3x3, LRN, max-pool. The
        # paper gives no LRN constants; PyTorch's defaults (n=5, alpha=1e-4, beta=0.75, k=1)
        # are those of the Caffe reproduction the authors' Figure 3 corresponds to.
        self.conv1 = ConvReLU(in_channels, 64, 7, stride=1 if small_input else 2)
        self.maxpool1 = stem_pool()
        self.lrn1 = nn.LocalResponseNorm(size=5)
        self.conv2 = ConvReLU(64, 64, 1)
        self.conv3 = ConvReLU(64, 192, 3)
        self.lrn2 = nn.LocalResponseNorm(size=5)
        self.maxpool2 = stem_pool()

        widths = INCEPTION_WIDTHS
        self.inception3a = Inception(192, widths["3a"])
        self.inception3b = Inception(widths["3a"].out_channels, widths["3b"])
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(widths["3b"].out_channels, widths["4a"])
        self.inception4b = Inception(widths["4a"].out_channels, widths["4b"])
        self.inception4c = Inception(widths["4b"].out_channels, widths["4c"])
        self.inception4d = Inception(widths["4c"].out_channels, widths["4d"])
        self.inception4e = Inception(widths["4d"].out_channels, widths["4e"])
        self.maxpool4 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception5a = Inception(widths["4e"].out_channels, widths["5a"])
        self.inception5b = Inception(widths["5a"].out_channels, widths["5b"])

        self.aux1 = AuxiliaryClassifier(widths["4a"].out_channels, num_classes)
        self.aux2 = AuxiliaryClassifier(widths["4d"].out_channels, num_classes)

        # Table 1: 7x7 average pool (global at 224x224), dropout 40%, linear.
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(widths["5b"].out_channels, num_classes)
        # The paper gives no initialisation; He normal keeps 22 ReLU layers without
        # BatchNorm at a usable scale from the first step.
        init_weights_(self, conv_mode="fan_in", linear_std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:
        x = self.maxpool2(self.lrn2(self.conv3(self.conv2(self.lrn1(self.maxpool1(self.conv1(x)))))))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        aux1 = self.aux1(x) if self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if self.training else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        logits = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        if self.training:
            return GoogLeNetOutputs(logits, aux1, aux2)
        return logits


RECIPE = recipe(
    0.01, batch_size=32, weight_decay=2e-4, warmup_epochs=2.0, label_smoothing=0.1,
    source="Szegedy et al. 2014 section 6 (SGD, momentum 0.9; auxiliary losses at 0.3, section 5) give no rate; "
           "the BVLC Caffe reproduction's solver: 0.01 for batch 32, weight decay 2e-4; no BatchNorm, so a warm-up")


@register_model(family="googlenet", paper="Szegedy et al. 2014", recipe=RECIPE,
                head=("fc", "aux1.fc2", "aux2.fc2"), stem="conv1.conv",
                probe_layers=tuple(f"inception{block}" for block in INCEPTION_WIDTHS))
def googlenet(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, **kwargs) -> GoogLeNet:
    """GoogLeNet of Table 1 with both auxiliary classifiers (section 5); up to 64 px conv1 has stride 1
    and the two stem max-pools are dropped, so a 28x28 image meets inception (3a) at Table 1's 28x28."""
    return GoogLeNet(num_classes, in_channels, is_small_input(image_size), **kwargs)

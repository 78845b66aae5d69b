"""LeNet-5 (LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to
document recognition", Proc. IEEE 1998), in the modern form of the lecture's table:
ReLU instead of scaled tanh, max-pooling instead of trainable sub-sampling, and a full
C5 instead of C3's partial connection table.
"""

from __future__ import annotations

import torch
from torch import nn

from convzoo.registry import register_model


class LeNet5(nn.Module):
    """C1 conv 5x5 (6) → pool → C3 conv 5x5 (16) → pool → C5 conv 5x5 (120) → F6 (84) → output.

    The last layer is a ``LogSoftmax``, as in the lecture's table: its outputs are valid
    logits for cross-entropy (softmax of log-probabilities is the same softmax), so
    training, accuracy and top-5 are unaffected.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5),  # C1: 32x32 -> 28x28
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2),  # S2: -> 14x14
            nn.Conv2d(6, 16, kernel_size=5),  # C3: -> 10x10
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2),  # S4: -> 5x5
            nn.Conv2d(16, 120, kernel_size=5),  # C5: -> 1x1
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Sequential(
            nn.Linear(120, 84),  # F6
            nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
            nn.LogSoftmax(dim=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@register_model(
    family="lenet",
    paper="LeCun et al. 1998",
    input_size=(1, 32, 32),
    fixed_input_size=True,
    num_classes=10,
    probe_layers=("features.1", "features.4", "features.7", "classifier.1"),
    head=("classifier.2",),
    stem="features.0",
)
def lenet5(num_classes: int = 10, in_channels: int = 1, image_size: int = 32) -> LeNet5:
    """LeNet-5, 61,706 parameters for 10 classes on 1x32x32 (LeCun 1998; lecture table).

    The architecture takes 32x32 only: 28x28 MNIST digits are zero-padded to 32x32 by the
    data pipeline, as in the paper, so ``image_size`` is accepted but not used.
    """
    return LeNet5(num_classes=num_classes, in_channels=in_channels)

"""AlexNet (Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep
Convolutional Neural Networks", NIPS 2012), in two forms.

``alexnet`` is the single-tower 64-192-384-256-256 network of the lecture's table and of
torchvision (its state dict loads into torchvision's and back). ``alexnet_paper`` is the
paper's own network: 96-256-384-384-256 filters, local response normalisation after the
first two convolutions (section 3.3), overlapping 3x3/2 max-pooling (section 3.4), and the
two-GPU layout of Figure 2 written as grouped convolutions: conv2, conv4 and conv5 see only
their own tower's half of the channels, conv3 and the fully connected layers see both.
"""

from __future__ import annotations

from typing import NamedTuple, Union

import torch
from torch import nn

from convzoo.models._common import alexnet_local_response_norm, is_small_input, plain_init_
from convzoo.recipes import recipe
from convzoo.registry import register_model


class Conv(NamedTuple):
    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    groups: int = 1


LayerSpec = Union[Conv, str]
"""A convolution (always followed by ReLU), ``"LRN"`` or ``"M"`` (3x3/2 max-pool)."""

LAYERS: dict[str, list[LayerSpec]] = {
    # torchvision's AlexNet ("One weird trick", Krizhevsky 2014): one tower, 64-192-384-256-256.
    "alexnet": [
        Conv(64, 11, stride=4, padding=2), "M",
        Conv(192, 5, padding=2), "M",
        Conv(384, 3, padding=1),
        Conv(256, 3, padding=1),
        Conv(256, 3, padding=1), "M",
    ],
    # The paper's Figure 2; groups=2 are the two GPUs' towers.
    "alexnet_paper": [
        Conv(96, 11, stride=4), "LRN", "M",
        Conv(256, 5, padding=2, groups=2), "LRN", "M",
        Conv(384, 3, padding=1),
        Conv(384, 3, padding=1, groups=2),
        Conv(256, 3, padding=1, groups=2), "M",
    ],
}


def make_features(layers: list[LayerSpec], in_channels: int, small_input: bool) -> nn.Sequential:
    """The convolutional trunk. For small inputs conv1 keeps its kernel (and so its weight
    shape) but runs at stride 1 with "same" padding, and the last max-pool becomes an
    identity: a 28x28 image then reaches conv5 at 6x6, the map the classifier expects."""
    modules: list[nn.Module] = []
    channels = in_channels
    for position, spec in enumerate(layers):
        if isinstance(spec, Conv):
            stride, padding = spec.stride, spec.padding
            if small_input and not modules:
                stride, padding = 1, spec.kernel_size // 2
            modules.append(nn.Conv2d(channels, spec.out_channels, spec.kernel_size,
                                     stride=stride, padding=padding, groups=spec.groups))
            modules.append(nn.ReLU(inplace=True))
            channels = spec.out_channels
        elif spec == "LRN":
            modules.append(alexnet_local_response_norm())
        elif spec == "M":
            last = position == len(layers) - 1
            modules.append(nn.Identity() if small_input and last else nn.MaxPool2d(kernel_size=3, stride=2))
        else:
            raise ValueError(f"unknown AlexNet layer {spec!r}")
    return nn.Sequential(*modules)


def relu_names(layers: list[LayerSpec]) -> tuple[str, ...]:
    """``features.<i>`` of the ReLU after each convolution: conv1..conv5 for linear probing."""
    names, index = [], 0
    for spec in layers:
        if isinstance(spec, Conv):
            names.append(f"features.{index + 1}")
            index += 2
        else:
            index += 1
    return tuple(names)


class AlexNet(nn.Module):
    """Five convolutions, then FC-4096, FC-4096 and the classifier, with dropout 0.5 before
    the two hidden fully connected layers (section 4.2)."""

    def __init__(self, layers: list[LayerSpec], num_classes: int = 1000, in_channels: int = 3,
                 small_input: bool = False, dropout: float = 0.5, init: str = "torchvision") -> None:
        super().__init__()
        self.features = make_features(layers, in_channels, small_input)
        last_channels = [spec.out_channels for spec in layers if isinstance(spec, Conv)][-1]
        # 6x6 is conv5's pooled map for a 227x227 input; adaptive pooling lets other sizes in.
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(last_channels * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )
        # torchvision keeps PyTorch's default layers (std 1/sqrt(3 fan_in)): each layer
        # shrinks the signal by about 2.4, eight of them by about 1,300 (models/_common.py).
        plain_init_(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def init_paper_weights_(model: AlexNet) -> None:
    """Section 5: weights from N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden
    fully connected layers (so their ReLUs start with positive inputs), 0 elsewhere."""
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    for layer in convs + linears:
        nn.init.normal_(layer.weight, 0.0, 0.01)
        nn.init.zeros_(layer.bias)
    for layer in (convs[1], convs[3], convs[4], linears[0], linears[1]):
        nn.init.ones_(layer.bias)


RECIPE = recipe(
    0.02, warmup_epochs=1.0, label_smoothing=0.1, model_kwargs={"init": "he"},
    source="Krizhevsky et al. 2012 section 5 (SGD, batch 128, momentum 0.9, weight decay 5e-4, dropout 0.5); "
           "He et al. 2015 initialisation (no BatchNorm: PyTorch's default layers start with logits of std 0.01); "
           "warm-up and label smoothing as configs/alexnet-fashion-mnist.yaml")


@register_model(family="alexnet", paper="Krizhevsky et al. 2012", head=("classifier.6",), stem="features.0",
                probe_layers=relu_names(LAYERS["alexnet"]),
                recipe=RECIPE)
def alexnet(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, **kwargs) -> AlexNet:
    """AlexNet as in torchvision and the lecture's table, 61,100,840 parameters at 1000 classes;
    for images up to 64 px conv1 runs at stride 1 and the last max-pool is dropped."""
    return AlexNet(LAYERS["alexnet"], num_classes, in_channels, is_small_input(image_size), **kwargs)


@register_model(family="alexnet", paper="Krizhevsky et al. 2012", head=("classifier.6",), stem="features.0",
                input_size=(3, 227, 227), recipe=RECIPE,
                probe_layers=relu_names(LAYERS["alexnet_paper"]))
def alexnet_paper(num_classes: int = 1000, in_channels: int = 3, image_size: int = 227, init: str = "paper",
                  **kwargs) -> AlexNet:
    """The paper's two-tower AlexNet with LRN (Figure 2), 60,965,224 parameters; 227x227 is the input
    its 55x55 conv1 output implies; for images up to 64 px conv1 runs at stride 1, no last max-pool.
    ``init="paper"``: section 5's N(0, 0.01) weights and unit biases; else as ``AlexNet``'s ``init``."""
    model = AlexNet(LAYERS["alexnet_paper"], num_classes, in_channels, is_small_input(image_size),
                    init="torchvision" if init == "paper" else init, **kwargs)
    if init == "paper":
        init_paper_weights_(model)
    return model

"""The same architecture from the libraries a user would otherwise pick: torchvision and timm.

A comparison is only fair between equal networks, so a peer is offered only where its
layers are convzoo's: torchvision's ImageNet builds of the models convzoo mirrors key for
key (``TORCHVISION_COUNTERPARTS``), and timm's models of the same names. Small-input
variants (images of 64 pixels or less: 3x3 stems, no max-pool) exist only in convzoo;
for them no peer is built and a note says why.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from convzoo.benchmarking.harness import Contender
from convzoo.models.pretrained import TORCHVISION_COUNTERPARTS

PEER_LIBRARIES = ("torchvision", "timm")
SMALL_INPUT_LIMIT = 64
"""convzoo builds its small-input variant at or below this side (see the zoo table)."""

TIMM_NAMES = {
    "resnet18": "resnet18", "resnet34": "resnet34", "resnet50": "resnet50", "resnet101": "resnet101",
    "resnet152": "resnet152", "densenet121": "densenet121", "densenet161": "densenet161",
    "densenet169": "densenet169", "densenet201": "densenet201", "mobilenet_v2": "mobilenetv2_100",
    "vgg11": "vgg11", "vgg13": "vgg13", "vgg16": "vgg16", "vgg19": "vgg19",
    "vgg11_bn": "vgg11_bn", "vgg13_bn": "vgg13_bn", "vgg16_bn": "vgg16_bn", "vgg19_bn": "vgg19_bn",
}
"""timm's names for the same networks. (timm's VGGs replace the first two fully connected
layers by convolutions of the same size: same parameters and multiply-adds, other layout.)"""


def convzoo_contender(name: str, num_classes: int, in_channels: int, image_size: int) -> Contender:
    from convzoo.registry import create_model

    return Contender("convzoo", lambda: create_model(name, num_classes=num_classes, in_channels=in_channels,
                                                     image_size=image_size))


def peer_contenders(name: str, libraries: list[str], num_classes: int, in_channels: int,
                    image_size: int) -> tuple[list[Contender], list[str]]:
    """Peers of ``name`` from ``libraries`` and, for each one not built, a note saying why."""
    contenders: list[Contender] = []
    notes: list[str] = []
    for library in libraries:
        if image_size <= SMALL_INPUT_LIMIT:
            notes.append(f"{library}: no peer at {image_size} px (convzoo's small-input {name} has no counterpart; "
                         f"compare at an input above {SMALL_INPUT_LIMIT} px)")
        elif in_channels != 3:
            notes.append(f"{library}: no peer for {in_channels}-channel input")
        elif library == "torchvision":
            if name in TORCHVISION_COUNTERPARTS:
                contenders.append(Contender("torchvision", _torchvision_builder(name, num_classes)))
            else:
                notes.append(f"torchvision: has no {name} with convzoo's layers")
        elif library == "timm":
            builder, why = _timm_builder(name, num_classes)
            if builder is None:
                notes.append(f"timm: {why}")
            else:
                contenders.append(Contender("timm", builder))
    return contenders, notes


def _torchvision_builder(name: str, num_classes: int) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return torchvision.models.get_model(name, weights=None, num_classes=num_classes)

    return build


def _timm_builder(name: str, num_classes: int) -> tuple[Callable[[], nn.Module] | None, str]:
    try:
        import timm
    except ImportError:
        return None, 'not installed (pip install -e ".[bench]" adds it)'
    timm_name = TIMM_NAMES.get(name)
    if timm_name is None or not timm.is_model(timm_name):
        return None, f"has no {name} with convzoo's layers"

    def build() -> nn.Module:
        return timm.create_model(timm_name, pretrained=False, num_classes=num_classes)

    return build, ""

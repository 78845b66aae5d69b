"""A zoo classification model as the trunk of a dense-prediction model (FCN, U-Net's encoder).

Private (the leading underscore keeps ``convzoo.models`` from importing it as a family).

The backbone is built by the registry, so every family's own small-input rule applies,
and kept under its own module names (``backbone.layer1.0.conv1``): its classification
weights load into it by prefix (``models/pretrained.py``, ``backbone_weights``). Only its
classifier and global pooling are removed, as torchvision's ``IntermediateLayerGetter``
removes what follows the last exit.
"""

from __future__ import annotations

import torch
from torch import nn


def classification_trunk(name: str, in_channels: int, image_size: int, drop: tuple[str, ...]) -> nn.Module:
    """The registered model ``name`` for ``in_channels`` x ``image_size`` images, without the
    top-level modules ``drop`` (its global pooling and classifier)."""
    from convzoo.registry import create_model

    backbone = create_model(name, num_classes=1, in_channels=in_channels, image_size=image_size)
    for module_name in drop:
        delattr(backbone, module_name)
    return backbone


def run_to_exits(module: nn.Module, x: torch.Tensor, exits: tuple[str, ...]) -> list[torch.Tensor]:
    """The outputs of the modules named ``exits`` (in depth order), running ``module``'s children
    in the order they were registered and stopping after the last exit.

    That order is the forward order of every trunk used here (ResNet's ``conv1 bn1 relu
    maxpool layer1..4``, VGG's and MobileNet's ``features`` Sequentials); a child that holds
    an exit is entered and run child by child, which is what a Sequential's forward does.
    """
    found: dict[str, torch.Tensor] = {}

    def run(parent: nn.Module, prefix: str, x: torch.Tensor) -> torch.Tensor:
        for child_name, child in parent.named_children():
            if len(found) == len(exits):
                break
            name = f"{prefix}{child_name}"
            if any(exit_name.startswith(f"{name}.") for exit_name in exits):
                x = run(child, f"{name}.", x)
            else:
                x = child(x)
            if name in exits:
                found[name] = x
        return x

    run(module, "", x)
    missing = [name for name in exits if name not in found]
    if missing:
        raise ValueError(f"exits {missing} are not modules of {type(module).__name__}'s trunk")
    return [found[name] for name in exits]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad the bottom and right so that height and width are multiples of ``multiple``:
    every halving of the trunk is then exact, and the maps of all exits align."""
    height, width = x.shape[-2:]
    pad_height, pad_width = -height % multiple, -width % multiple
    if pad_height or pad_width:
        x = torch.nn.functional.pad(x, (0, pad_width, 0, pad_height))
    return x


def crop_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The top-left ``height`` x ``width`` of ``x``: the image before ``pad_to_multiple``."""
    return x if x.shape[-2:] == (height, width) else x[..., :height, :width]

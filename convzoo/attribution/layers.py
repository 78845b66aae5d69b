"""Which layer Grad-CAM and the effective receptive field look at: one named by the user,
or by default the family's last exit that still has a spatial grid.

Selvaraju et al. (2017, section 3) take the last convolutional layer: the deepest maps
that keep "spatial information which is lost in fully-connected layers". The families
declare their exits (``probe_layers`` in the registry); the default is the deepest of
them whose output is more than one pixel (LeNet-5: ``features.4``, 16x10x10; the CIFAR
ResNets: ``layer3``, 64x8x8).
"""

from __future__ import annotations

import torch
from torch import nn

from convzoo.errors import ConvzooError
from convzoo.probing.layers import INPUT_EXIT, LayerInfo, trace_layers
from convzoo.registry import get_model_info, unknown_name_message


def spatial_layers(model: nn.Module, example: torch.Tensor) -> list[LayerInfo]:
    """The tappable modules whose output is a (C, H, W) map, in depth order."""
    return [layer for layer in trace_layers(model, example)
            if layer.name != INPUT_EXIT and len(layer.shape) == 3]


def choose_spatial_layer(model: nn.Module, example: torch.Tensor, name: str | None, model_name: str | None,
                         option: str = "--layer") -> str:
    """``name`` if ``model`` has a module of that name with a spatial output, else a
    one-line error naming close ones; ``None``: the family's last exit wider than 1x1."""
    layers = spatial_layers(model, example)
    by_name = {layer.name: layer for layer in layers}
    if name is not None:
        if name in by_name:
            return name
        module_names = [module_name for module_name, _ in model.named_modules() if module_name]
        if name in module_names:
            raise ConvzooError(f"{option} {name}: that module has no (channels, height, width) output in an eval-mode "
                               f"forward; pass a convolution, pooling or block, e.g. {layers[-1].name if layers else ''}.")
        raise ConvzooError(unknown_name_message("layer", name, list(by_name), "convzoo probe --model NAME --list-layers"))
    declared = get_model_info(model_name).probe_layers if model_name else ()
    wide = [layer.name for layer in layers if layer.shape[1] * layer.shape[2] > 1]
    for exit_name in reversed(declared):
        if exit_name in wide:
            return exit_name
    if not wide:
        raise ConvzooError(f"{option}: the model has no layer with a spatial output wider than one pixel.")
    return wide[-1]

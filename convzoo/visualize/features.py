"""Feature maps: what each channel of chosen layers computes on given images
(the lecture's "feature maps"; Zeiler & Fergus 2014 show them beside the input)."""

from __future__ import annotations

import math

import torch
from torch import nn

from convzoo.probing.features import Exit, FeatureTaps
from convzoo.probing.layers import LayerInfo
from convzoo.visualize.layers import frozen


@torch.no_grad()
def feature_maps(model: nn.Module, inputs: torch.Tensor, layers: list[LayerInfo]) -> dict[str, torch.Tensor]:
    """Each layer's (N, C, H, W) output for model ``inputs`` (normalised), from one forward.

    The probe's taps copy every output inside its hook, so an in-place ReLU that follows a
    tapped convolution cannot change what is returned; the forward stops after the deepest.
    The model runs in eval mode and is left as it was.
    """
    exits = [Exit(layer.name, layer.shape, None, math.prod(layer.shape), layer.calls) for layer in layers]
    with frozen(model), FeatureTaps(model, exits) as taps:
        flat = taps.extract(inputs)
    return {layer.name: values.view(values.shape[0], *layer.shape) for layer, values in zip(layers, flat)}

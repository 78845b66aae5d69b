"""A convolution's kernels as pictures (the lecture's learned filters; Krizhevsky et al.
2012, Fig. 3; Zeiler & Fergus 2014, Fig. 2).

The first layer works on pixels, so its kernels *are* small images: RGB for 3 input
channels, grey for 1. A deeper kernel has one k x k slice per input channel, so each
output channel becomes a tile of its slices, side by side. Either way there is one tile
per filter. Kernels are normalised to [0, 1] per filter by default (each filter's own
contrast), or over the whole layer (``global``), which shows which filters are strong.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from convzoo.errors import ConvzooError
from convzoo.visualize.layers import LIST_HINT

NORMALIZATIONS = ("filter", "global")


def conv_layer_weight(model: nn.Module, layer: str | None = None) -> tuple[str, torch.Tensor]:
    """The name and (out, in, kH, kW) weight of conv ``layer`` (None: the first convolution)."""
    modules = dict(model.named_modules())
    if layer is None:
        for name, module in modules.items():
            if _conv_weight(module) is not None:
                return name, _conv_weight(module)
        raise ConvzooError("this model has no 2-D convolution to show.")
    if layer not in modules:
        from convzoo.registry import unknown_name_message

        convs = [name for name, module in modules.items() if _conv_weight(module) is not None]
        raise ConvzooError(unknown_name_message("layer", layer, convs, LIST_HINT))
    weight = _conv_weight(modules[layer])
    if weight is None:
        raise ConvzooError(f"--layer {layer} is a {type(modules[layer]).__name__}, not a 2-D convolution; "
                           f"pick a Conv2d (see `{LIST_HINT}`).")
    return layer, weight


def _conv_weight(module: nn.Module) -> torch.Tensor | None:
    weight = getattr(module, "weight", None)
    is_conv = isinstance(module, nn.Conv2d) or "Conv" in type(module).__name__  # convzoo.ops' scratch conv too
    return weight.detach() if is_conv and isinstance(weight, torch.Tensor) and weight.dim() == 4 else None


def filter_images(weight: torch.Tensor, normalize: str = "filter") -> torch.Tensor:
    """(out, C, H, W) tiles in [0, 1], one per filter: the kernel itself for 1 or 3 input
    channels (grey or RGB), else its input slices in a square mosaic (grey)."""
    if normalize not in NORMALIZATIONS:
        raise ConvzooError(f"--normalize must be filter or global, got {normalize!r}.")
    weight = weight.detach().float().cpu()
    dims = (1, 2, 3) if normalize == "filter" else (0, 1, 2, 3)
    low, high = weight.amin(dim=dims, keepdim=True), weight.amax(dim=dims, keepdim=True)
    scaled = (weight - low) / (high - low).clamp_min(1e-12)
    out_channels, in_channels, height, width = scaled.shape
    if in_channels in (1, 3):
        return scaled
    columns = math.ceil(math.sqrt(in_channels))
    rows = math.ceil(in_channels / columns)
    gap = 1  # one white pixel between slices, so 3x3 slices stay apart
    tiles = torch.ones(out_channels, 1, rows * (height + gap) - gap, columns * (width + gap) - gap)
    for index in range(in_channels):
        row, column = divmod(index, columns)
        top, left = row * (height + gap), column * (width + gap)
        tiles[:, 0, top:top + height, left:left + width] = scaled[:, index]
    return tiles

"""What every kind of visualisation shares: which layer, its activations, a frozen model.

Layer names are resolved exactly as ``convzoo probe`` resolves them (``trace_layers``,
``resolve_exits``: an unknown name is a one-line error naming the close ones), and
activations are captured with the probe's ``FeatureTaps``, whose hooks copy the output
the moment the module returns it: ``ReLU(inplace=True)`` after a tapped convolution, or
ResNet's ``out += identity``, cannot overwrite what was captured. The copy keeps its
autograd history, so the same taps serve gradient ascent on the input.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn

from convzoo.errors import ConvzooError
from convzoo.probing.features import Exit, FeatureTaps
from convzoo.probing.layers import INPUT_EXIT, LayerInfo, resolve_exits, trace_layers

LIST_HINT = "convzoo probe --model MODEL --list-layers"


def resolve_layers(
    model: nn.Module,
    example: torch.Tensor,
    requested: Sequence[str] | None,
    default_names: Sequence[str] = (),
    *,
    spatial: bool = False,
    option: str = "--layer",
) -> list[LayerInfo]:
    """The layers ``requested`` (names or globs; None: ``default_names``) in depth order.

    With ``spatial``, each must output (C, H, W) feature maps: a requested one that does
    not is an error; a default one that does not (LeNet-5's ``classifier.1``) is skipped.
    """
    with frozen(model):  # trace_layers leaves the model in eval mode; restore what it was
        layers = trace_layers(model, example)
    module_names = [name for name, _ in model.named_modules()]
    chosen = [layer for layer in resolve_exits(list(requested) if requested else None, layers, tuple(default_names),
                                               module_names, LIST_HINT) if layer.name != INPUT_EXIT]
    if not spatial:
        return chosen
    if requested:
        for layer in chosen:
            require_spatial(layer, option)
        return chosen
    return [layer for layer in chosen if len(layer.shape) == 3]


def require_spatial(layer: LayerInfo, option: str = "--layer") -> None:
    if len(layer.shape) != 3:
        raise ConvzooError(
            f"{option} {layer.name} outputs shape {tuple(layer.shape)}, not (channels, height, width) feature maps; "
            f"pick a convolutional layer (see `{LIST_HINT}`)."
        )


def layer_output(model: nn.Module, inputs: torch.Tensor, layer: LayerInfo) -> torch.Tensor:
    """``layer``'s output for model ``inputs`` as (N, C, positions): a copy taken inside the
    forward hook (immune to later in-place operations), with autograd history when grad is on.

    The forward stops once the layer has run. Positions are flattened so the same call
    serves any input size (Deep Dream's octaves); a (C,) output has one position.
    """
    exit = Exit(layer.name, layer.shape, None, math.prod(layer.shape), layer.calls)
    with FeatureTaps(model, [exit]) as taps:
        (flat,) = taps.extract(inputs)
    return flat.view(flat.shape[0], layer.shape[0], -1)


def parse_channels(text: str | None, count: int, default: int = 16, what: str = "channel",
                   option: str = "--channels") -> list[int]:
    """``"0-15"``, ``"3,7,9-11"`` (None: the first ``default``) as indices, each checked against ``count``."""
    if text is None or not text.strip():
        return list(range(min(default, count)))
    indices: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part.lstrip("-"):
                first, last = part.split("-", 1)
                span = list(range(int(first), int(last) + 1))
                if not span:
                    raise ValueError
            else:
                span = [int(part)]
        except ValueError:
            raise ConvzooError(f"{option} takes indices and ranges like 0-15 or 3,7,9-11; got {text!r}.") from None
        indices.extend(span)
    check_range(indices, count, what, option)
    return list(dict.fromkeys(indices))


def check_range(indices: Sequence[int], count: int, what: str, option: str) -> None:
    bad = [index for index in indices if not 0 <= index < count]
    if bad:
        raise ConvzooError(f"{option} {bad[0]} is out of range: {what} indices run from 0 to {count - 1}.")


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode with no weight gradients, restored afterwards (even on error).

    Visualisations differentiate with respect to the input only: weights that do not
    require grad spare backward the weight gradients, about a third of its work.
    """
    modes = [(module, module.training) for module in model.modules()]
    needs_grad = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    model.eval()
    for parameter, _ in needs_grad:
        parameter.requires_grad_(False)
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
        for parameter, flag in needs_grad:
            parameter.requires_grad_(flag)

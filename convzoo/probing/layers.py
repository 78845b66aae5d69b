"""Which modules of a network can be probed, and which ones the user asked for.

A module is *tappable* when an eval-mode forward calls it and it returns one tensor.
``trace_layers`` finds them all with one forward of a single example, in the order
their outputs are produced, which is the order of depth. ``resolve_exits`` turns
``--layers`` names and glob patterns into that ordered list, or a one-line error.
"""

from __future__ import annotations

import fnmatch
import itertools
from dataclasses import dataclass

import torch
from torch import nn

from convzoo.errors import ConvzooError
from convzoo.registry import unknown_name_message

INPUT_EXIT = "input"
"""The exit before any layer: a linear classifier on the raw pixels (LeCun et al. 1998
report 12 % test error for one on MNIST), so every curve starts from what needs no network."""


@dataclass(frozen=True)
class LayerInfo:
    """One tappable module: its name, class, output shape (without the batch) and how
    many times one forward calls it (a module reused in a forward is tapped at its last call)."""

    name: str
    type_name: str
    shape: tuple[int, ...]
    calls: int


@torch.inference_mode()
def trace_layers(model: nn.Module, example: torch.Tensor) -> list[LayerInfo]:
    """Every tappable module of ``model`` (eval mode) for inputs shaped like ``example``,
    ordered by when its (last) output is produced, with ``input`` first."""
    model.eval()
    order: dict[str, int] = {}
    shapes: dict[str, tuple[int, ...] | None] = {}
    calls: dict[str, int] = {}
    clock = itertools.count()
    modules = {name: module for name, module in model.named_modules() if name}

    def record(name: str):
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            calls[name] = calls.get(name, 0) + 1
            shapes[name] = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) and output.dim() >= 2 else None
            order[name] = next(clock)  # a reused module is ordered by its last call

        return hook

    handles = [module.register_forward_hook(record(name)) for name, module in modules.items()]
    try:
        model(example)
    finally:
        for handle in handles:
            handle.remove()
    layers = [LayerInfo(INPUT_EXIT, "input", tuple(example.shape[1:]), 1)]
    for name in sorted(order, key=order.__getitem__):
        shape = shapes[name]
        if shape is not None:
            layers.append(LayerInfo(name, type(modules[name]).__name__, shape, calls[name]))
    return layers


def resolve_exits(
    requested: list[str] | None,
    layers: list[LayerInfo],
    default_names: tuple[str, ...],
    all_module_names: list[str],
    list_hint: str,
) -> list[LayerInfo]:
    """The exits to probe, in depth order and always starting with ``input``.

    ``requested`` holds module names or glob patterns (``layer*``, ``features.?``), each
    entry possibly comma-separated; ``None`` means the family's declared exits.
    """
    by_name = {layer.name: layer for layer in layers}
    if requested is None:
        if not default_names:
            raise ConvzooError(f"this model declares no probe layers; pass --layers NAMES (see `{list_hint}`).")
        names = list(default_names)
    else:
        names = [part.strip() for entry in requested for part in entry.split(",") if part.strip()]
        if not names:
            raise ConvzooError(f"--layers is empty; pass module names or glob patterns (see `{list_hint}`).")
    chosen: set[str] = {INPUT_EXIT}
    for name in names:
        if any(char in name for char in "*?["):
            matches = [layer.name for layer in layers if fnmatch.fnmatchcase(layer.name, name)]
            if not matches:
                raise ConvzooError(f"--layers pattern {name!r} matches no tappable module. Run `{list_hint}` to see them.")
            chosen.update(matches)
        elif name in by_name:
            chosen.add(name)
        elif name in all_module_names:
            raise ConvzooError(
                f"module {name!r} produces no single tensor in an eval-mode forward (it is not run, or returns "
                f"several values), so it cannot be probed. Run `{list_hint}` to see the tappable ones."
            )
        else:
            raise ConvzooError(unknown_name_message("layer", name, list(by_name), list_hint))
    return [layer for layer in layers if layer.name in chosen]

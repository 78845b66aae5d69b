"""Exit features: pooled to about the same size at every depth, captured by forward hooks.

Zhang et al. (2017) compare AlexNet's conv1..conv5 with features adaptively average-pooled
to roughly equal sizes (9600, 9216, 9600, 9600, 9216 for a target of about 9,000), so
that a deeper exit does not win merely by being wider. ``plan_exit`` picks that pooled
size; ``FeatureTaps`` pools each exit's output *inside its hook*, the moment the module
returns it: a later in-place operation (``ReLU(inplace=True)``, ``out += identity``)
would otherwise overwrite the captured tensor before it is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from convzoo.probing.layers import INPUT_EXIT, LayerInfo, resolve_exits, trace_layers


@dataclass(frozen=True)
class Exit:
    """A probed layer and how its output becomes a feature vector of ``dim`` numbers."""

    name: str
    shape: tuple[int, ...]
    """Output shape without the batch: (C,), (C, L), (C, H, W) ..."""
    pooled: tuple[int, ...] | None
    """Output size of the adaptive average pooling over the spatial axes; None: flatten as is."""
    dim: int
    calls: int = 1
    """The module's call, among one forward's, whose output is tapped (its last)."""


def plan_exit(layer: LayerInfo, target_dim: int) -> Exit:
    """Pool ``layer``'s output to the side that brings ``C x side^d`` closest to ``target_dim``.

    Outputs already at most ``target_dim`` are kept whole; a flat vector longer than that
    is averaged in ``target_dim`` equal windows. Channels are never mixed, so an output
    with more channels than ``target_dim`` stays at one value per channel.
    """
    size = math.prod(layer.shape)
    if size <= target_dim:
        return Exit(layer.name, layer.shape, None, size, layer.calls)
    if len(layer.shape) == 1:
        return Exit(layer.name, layer.shape, (target_dim,), target_dim, layer.calls)
    channels, spatial = layer.shape[0], layer.shape[1:]

    def dim_at(side: int) -> int:
        return channels * math.prod(min(side, extent) for extent in spatial)

    side = min(range(1, max(spatial) + 1), key=lambda s: (abs(dim_at(s) - target_dim), s))
    pooled = tuple(min(side, extent) for extent in spatial)
    return Exit(layer.name, layer.shape, pooled, dim_at(side), layer.calls)


def choose_exits(
    model: nn.Module,
    example: torch.Tensor,
    requested: list[str] | None,
    target_dim: int,
    default_names: tuple[str, ...] = (),
    list_hint: str = "convzoo probe --list-layers",
) -> list[Exit]:
    """The exits ``requested`` (names or globs; None: ``default_names``) of ``model`` for
    inputs like ``example``, in depth order after ``input``, each planned to ~``target_dim``."""
    layers = trace_layers(model, example)
    module_names = [name for name, _ in model.named_modules()]
    chosen = resolve_exits(requested, layers, default_names, module_names, list_hint)
    return [plan_exit(layer, target_dim) for layer in chosen]


def pool_features(output: torch.Tensor, pooled: tuple[int, ...] | None) -> torch.Tensor:
    """(N, dim) features of one exit's output: adaptive average pooling, then flatten.

    Always a new tensor, never a view of ``output``, so nothing done to ``output`` later
    in the forward can change it.
    """
    if pooled is None:
        return output.flatten(1).clone()
    if output.dim() == 2:
        return F.adaptive_avg_pool1d(output.unsqueeze(1), pooled[0]).flatten(1)
    pool = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}[len(pooled)]
    return pool(output, pooled).flatten(1)


class _AllExitsCaptured(Exception):
    """Raised by the deepest exit's hook: the rest of the forward is not needed."""


class FeatureTaps:
    """Forward hooks on a frozen backbone that return every exit's features from ONE forward.

    Use as a context manager (the hooks are removed on exit); ``extract(images)`` runs the
    backbone once and returns the features of ``exits`` in order. Once the deepest exit
    has been captured the forward is cut short: layers after it (often the classifier,
    most of VGG's and AlexNet's parameters) never run.
    """

    def __init__(self, model: nn.Module, exits: list[Exit]) -> None:
        self.model = model
        self.exits = exits
        self.modules = dict(model.named_modules())
        self.handles: list[torch.utils.hooks.RemovableHandle] = []
        self.captured: dict[str, torch.Tensor] = {}
        self.calls: dict[str, int] = {}
        self.module_exits = [exit for exit in exits if exit.name != INPUT_EXIT]

    def __enter__(self) -> "FeatureTaps":
        for exit in self.module_exits:
            self.handles.append(self.modules[exit.name].register_forward_hook(self._hook(exit)))
        return self

    def __exit__(self, *_: object) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def _hook(self, exit: Exit):
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            count = self.calls[exit.name] = self.calls.get(exit.name, 0) + 1
            if count == exit.calls:
                self.captured[exit.name] = pool_features(output, exit.pooled)
                if len(self.captured) == len(self.module_exits):
                    raise _AllExitsCaptured

        return hook

    def extract(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Features of every exit for one batch, from a single backbone forward."""
        self.captured, self.calls = {}, {}
        by_name = {}
        for exit in self.exits:
            if exit.name == INPUT_EXIT:
                by_name[INPUT_EXIT] = pool_features(images, exit.pooled)
        if self.module_exits:
            try:
                self.model(images)
            except _AllExitsCaptured:
                pass
            missing = [exit.name for exit in self.module_exits if exit.name not in self.captured]
            if missing:
                raise RuntimeError(f"the forward did not reach exit(s) {', '.join(missing)}")
            by_name.update(self.captured)
        return [by_name[exit.name] for exit in self.exits]

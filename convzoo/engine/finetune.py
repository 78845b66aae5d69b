"""Fine-tuning: what trains when (freezing), and at which rate (per-block learning rates).

``--freeze backbone`` trains the classifier head alone (the registry's ``ModelInfo.head``);
``--freeze-until LAYER`` freezes that layer and every module before it in forward order
(the names of ``convzoo probe --list-layers``); ``--unfreeze-at E`` trains everything from
epoch E on: the usual two-stage schedule, head first, then the whole network.

A frozen parameter has ``requires_grad=False``, so it gets no gradient. It stays in the
optimiser's groups all the same: torch's optimisers skip a parameter whose ``grad`` is
None (no momentum, no Adam moments, no weight decay), so the groups, and a checkpoint's
optimiser state, have one shape before and after the unfreeze epoch, and a run resumed on
either side of it loads them. Frozen BatchNorm layers go back to eval mode after every
``model.train()``: otherwise each forward would still move their running statistics, and
the backbone the head is fitted to would drift away from the one it was trained with.

``--head-lr-mult X`` and ``--layer-decay D`` give each depth its own rate (``depth_blocks``,
``rate_blocks``); ``convzoo.engine.optim.parameter_groups`` turns them into groups.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from convzoo.config import TrainConfig
from convzoo.errors import ConvzooError
from convzoo.registry import get_model_info, unknown_name_message

STEM, PRE_LOGITS, HEAD, BACKBONE = "stem", "pre_logits", "head", "backbone"


def _inside(name: str, modules: tuple[str, ...]) -> bool:
    """Whether module ``name`` is one of ``modules`` or inside one of them."""
    return any(name == module or name.startswith(module + ".") for module in modules)


def head_modules(model: nn.Module, model_name: str) -> tuple[str, ...]:
    """The registry's head modules that this build has (GoogLeNet built without its
    auxiliary classifiers has ``fc`` alone)."""
    present = dict(model.named_modules())
    return tuple(name for name in get_model_info(model_name).head if name in present)


def example_input(model: nn.Module, config: TrainConfig) -> torch.Tensor:
    """One zero image shaped as the run's batches (the dataset's channels, the model's input size)."""
    from convzoo.engine.setup import dataset_spec_for

    spec, pad_to = dataset_spec_for(config)
    size = pad_to or spec.image_size
    return torch.zeros(1, spec.channels, size, size, device=next(model.parameters()).device)


@torch.no_grad()
def forward_order(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Each module's place in a training forward of ``example``, by its last call.

    The root module runs in training mode and every other one in eval mode: the forward
    takes the training path (GoogLeNet's auxiliary classifiers run, in their place after
    inception4a and 4d), but no BatchNorm statistic moves and no dropout draws a random
    number; a detector runs in eval mode. The modules' modes are restored afterwards.
    """
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

    modes = {module: module.training for module in model.modules()}
    model.eval()
    # A detector's training forward needs targets; its inference calls the same modules in order.
    model.training = not isinstance(model, GeneralizedRCNN)
    order: dict[str, int] = {}
    clock = itertools.count()

    def record(name: str):
        def hook(*_: Any) -> None:
            order[name] = next(clock)

        return hook

    handles = [module.register_forward_hook(record(name)) for name, module in model.named_modules() if name]
    try:
        model(example)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    return order


def frozen_modules(model: nn.Module, config: TrainConfig, example: torch.Tensor | None = None) -> frozenset[str]:
    """Names of the modules ``freeze`` / ``freeze_until`` freeze (containers included);
    a module's own parameters freeze with it. Empty when nothing is frozen.

    Unknown layer names and a choice that leaves nothing to train are one-line errors.
    """
    if config.freeze == "none" and config.freeze_until is None:
        return frozenset()
    head = head_modules(model, config.model)
    names = [name for name, _ in model.named_modules()]
    if config.freeze == "backbone":
        frozen = frozenset(name for name in names if not _inside(name, head))
        what = "--freeze backbone"
    else:
        order = forward_order(model, example_input(model, config) if example is None else example)
        layer = config.freeze_until
        if layer not in order:
            raise ConvzooError("--freeze-until: " + unknown_name_message(
                "layer", layer, list(order), f"convzoo probe --model {config.model} --list-layers"))
        # A module the forward never calls has no place before the layer: left training.
        frozen = frozenset(name for name in names
                           if _inside(name, (layer,)) or order.get(name, len(order)) <= order[layer])
        what = f"--freeze-until {layer}"
    if all(name in frozen for name, module in model.named_modules() for _ in module.parameters(recurse=False)):
        raise ConvzooError(
            f"nothing left to train: {what} freezes every parameter of {config.model}. "
            "Freeze less (--freeze-until an earlier layer) or drop the freeze.")
    return frozen


def check_freezing(config: TrainConfig) -> None:
    """``frozen_modules``' refusals (an unknown layer, nothing left to train) on a model
    built here on the CPU: ``train --nproc-per-node`` asks before starting torchrun, so the
    error is one line, not one per rank."""
    if config.freeze == "none" and config.freeze_until is None:
        return
    from convzoo.engine.setup import build_model, dataset_spec_for

    spec, pad_to = dataset_spec_for(config)
    frozen_modules(build_model(config.model, spec, pad_to or spec.image_size, model_kwargs=config.model_kwargs),
                   config)


class Freezing:
    """Which parameters train in each epoch of a run, built once from its config and model.

    ``set_epoch`` sets ``requires_grad`` for an epoch and says whether that changed what
    trains (the loop then rebuilds its DistributedDataParallel wrapper, which registers
    gradient hooks only for the parameters that require grad when it is built);
    ``train_mode`` replaces ``model.train()``.
    """

    def __init__(self, model: nn.Module, config: TrainConfig, example: torch.Tensor | None = None) -> None:
        self.modules = frozen_modules(model, config, example)
        self.unfreeze_epoch = None if config.unfreeze_at is None else config.unfreeze_at - 1  # 0-based
        self.frozen_now: frozenset[str] | None = None

    def frozen_in(self, epoch: int) -> frozenset[str]:
        """The modules frozen in 0-based ``epoch``."""
        thawed = self.unfreeze_epoch is not None and epoch >= self.unfreeze_epoch
        return frozenset() if thawed else self.modules

    def set_epoch(self, model: nn.Module, epoch: int) -> bool:
        frozen = self.frozen_in(epoch)
        if frozen == self.frozen_now:
            return False
        for name, module in model.named_modules():
            for parameter in module.parameters(recurse=False):
                parameter.requires_grad_(name not in frozen)
        changed = self.frozen_now is not None
        self.frozen_now = frozen
        return changed

    def train_mode(self, train_model: nn.Module, model: nn.Module) -> None:
        """``train_model.train()``, with the frozen BatchNorm layers of ``model`` (the module
        ``train_model`` wraps, if it does) in eval mode: their running statistics stay put."""
        train_model.train()
        for name, module in model.named_modules():
            if isinstance(module, _BatchNorm) and name in (self.frozen_now or ()):
                module.eval()

    def describe(self, model: nn.Module) -> str | None:
        """One line for the run's start: how many parameters train, and until when."""
        if not self.modules:
            return None
        parameters = [(name, parameter) for name, module in model.named_modules()
                      for parameter in module.parameters(recurse=False)]
        frozen = sum(parameter.numel() for name, parameter in parameters if name in self.modules)
        total = sum(parameter.numel() for _, parameter in parameters)
        until = f" until epoch {self.unfreeze_epoch + 1}, then everything" if self.unfreeze_epoch is not None else ""
        return f"fine-tuning: {frozen:,} of {total:,} parameters frozen{until}"


def rates_line(optimizer: torch.optim.Optimizer) -> str | None:
    """The blocks' rates as multiples of ``lr`` (``--layer-decay``, ``--head-lr-mult``), for
    the run's start; None when every group trains at ``lr``."""
    scales = {group["name"]: group["lr_scale"] for group in optimizer.param_groups if "name" in group}
    if not scales:
        return None
    return "learning rate by block (x lr): " + ", ".join(f"{name} {scale:.3g}" for name, scale in scales.items())


def depth_blocks(model: nn.Module, model_name: str, example: torch.Tensor) -> dict[str, tuple[int, str]]:
    """``{module name: (depth, block name)}`` for every module that holds parameters: the
    blocks of layer-wise learning-rate decay, from the stem (depth 0) to the head (depth N).

    The blocks follow each family's natural exits (``ModelInfo.probe_layers``, in depth
    order), as timm's per-model ``group_matcher`` follows its stages: everything before the
    first exit is the stem (``stem``); each exit closes a block named after it, which holds
    the exit's own modules and those between the exit before it and it (ResNet: ``layer1``
    ... ``layer4``; DenseNet: ``features.denseblock2`` with ``transition1``; VGG:
    ``features.5``, the convolutions up to the second pooling); what lies after the last
    exit and is not the head is ``pre_logits`` (VGG's and AlexNet's hidden fully connected
    layers, DenseNet's last norm); the head (``ModelInfo.head``) is the last block. Blocks
    that hold no parameter (ResNet's ``maxpool`` exit) are skipped in the numbering, so
    ResNet-18 has depths 0 (stem) to 5 (fc). Positions are those of ``forward_order``.
    """
    head = head_modules(model, model_name)
    order = forward_order(model, example)
    exits = [name for name in get_model_info(model_name).probe_layers if name in order]
    raw: dict[str, tuple[int, str]] = {}
    for name, module in model.named_modules():
        if not any(True for _ in module.parameters(recurse=False)) or _inside(name, head):
            continue
        inside = [index for index, exit_name in enumerate(exits) if _inside(name, (exit_name,))]
        if inside:
            index = max(inside) + 1
        else:
            index = sum(order[exit_name] < order.get(name, len(order)) for exit_name in exits)
            index = index + 1 if index else 0  # between two exits: the block the next one closes
        block = STEM if index == 0 else PRE_LOGITS if index > len(exits) else exits[index - 1]
        raw[name] = (index, block)
    renumbered = {index: depth for depth, index in enumerate(sorted({index for index, _ in raw.values()}))}
    blocks = {name: (renumbered[index], block) for name, (index, block) in raw.items()}
    head_depth = len(renumbered)
    for name, module in model.named_modules():
        if _inside(name, head) and any(True for _ in module.parameters(recurse=False)):
            blocks[name] = (head_depth, HEAD)
    return blocks


def rate_blocks(model: nn.Module, config: TrainConfig,
                example: torch.Tensor | None = None) -> list[tuple[str, float, list[nn.Parameter]]] | None:
    """``[(block name, rate multiplier, parameters)]`` from the stem to the head, or None
    when every parameter trains at ``lr`` (no ``head_lr_mult``, no ``layer_decay``).

    Layer-wise learning-rate decay (Clark et al. 2020, ELECTRA; Bao et al. 2021, BEiT; timm's
    ``param_groups_layer_decay``): with N the head's depth, the
    block at depth d trains at ``lr * layer_decay ** (N - d)``, so the layers nearest the
    input, which transfer best, move least. The head trains at ``lr * head_lr_mult``.
    Every parameter is in a block, frozen ones too (see the module docstring).
    """
    if config.layer_decay is None and config.head_lr_mult == 1.0:
        return None
    if config.layer_decay is None:
        head = head_modules(model, config.model)
        depths = {name: (0 if not _inside(name, head) else 1, HEAD if _inside(name, head) else BACKBONE)
                  for name, module in model.named_modules() if any(True for _ in module.parameters(recurse=False))}
        decay = 1.0
    else:
        depths = depth_blocks(model, config.model, example_input(model, config) if example is None else example)
        decay = config.layer_decay
    head_depth = max(depth for depth, _ in depths.values())
    grouped: dict[tuple[int, str], list[nn.Parameter]] = {}
    seen: set[int] = set()  # a parameter two modules share goes in one group, as torch requires
    for name, module in model.named_modules():
        for parameter in module.parameters(recurse=False):
            if name in depths and id(parameter) not in seen:
                seen.add(id(parameter))
                grouped.setdefault(depths[name], []).append(parameter)
    return [
        (block, config.head_lr_mult if block == HEAD else decay ** (head_depth - depth), parameters)
        for (depth, block), parameters in sorted(grouped.items(), key=lambda item: item[0][0])
    ]

"""Optimisers and learning-rate schedules (stepped once per batch, with linear warm-up).

A schedule is laid out in epochs and stepped per batch, so its step count depends on the
steps per epoch, and those on the number of processes. A resumed run therefore rebuilds
its schedule at its own steps per epoch and starts it at the epoch it resumes from: the
learning rate of every epoch boundary is the same however many processes train.
"""

from __future__ import annotations

import math

from typing import Any

import torch

from convzoo.config import TrainConfig


def parameter_groups(model: torch.nn.Module, weight_decay: float, lr: float | None = None,
                     rate_blocks: list[tuple[str, float, list[torch.nn.Parameter]]] | None = None) -> list[dict]:
    """Weight decay on weights only: biases and normalisation scales are not decayed,
    as in the training recipes of torchvision and timm.

    With ``rate_blocks`` (fine-tuning's per-block rates, ``engine.finetune.rate_blocks``)
    each block gets its two groups, named after it, at ``lr`` times its ``lr_scale``; the
    schedules scale every group's rate alike.
    """
    if rate_blocks is None:
        rate_blocks = [(None, 1.0, list(model.parameters()))]
    groups = []
    for name, scale, parameters in rate_blocks:
        decayed = [parameter for parameter in parameters if parameter.ndim > 1]
        undecayed = [parameter for parameter in parameters if parameter.ndim <= 1]
        for members, decay in ((decayed, weight_decay), (undecayed, 0.0)):
            if name is None:
                groups.append({"params": members, "weight_decay": decay})
            elif members:
                groups.append({"params": members, "weight_decay": decay, "lr": lr * scale, "lr_scale": scale,
                               "name": name})
    return groups


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD or AdamW over ``parameter_groups``; on CUDA with fused steps (``fast_path``).

    Every parameter is in a group, frozen ones too (``engine.finetune``): torch's optimisers
    skip a parameter without a gradient, and one unfrozen later steps from then on.
    """
    from convzoo.engine.fast_path import fused_optimizer_kwargs
    from convzoo.engine.finetune import rate_blocks

    groups = parameter_groups(model, config.weight_decay, config.lr, rate_blocks(model, config))
    parameters = [parameter for group in groups for parameter in group["params"]]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov and config.momentum > 0,
                               **fused_optimizer_kwargs(parameters, torch.optim.SGD))
    return torch.optim.AdamW(groups, lr=config.lr, **fused_optimizer_kwargs(parameters, torch.optim.AdamW))


def scheduled_rate(optimizer: torch.optim.Optimizer) -> float:
    """The schedule's rate now, before any group's own multiplier: the ``lr`` of the logs."""
    group = optimizer.param_groups[0]
    return group["lr"] / group.get("lr_scale", 1.0)


def block_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """Each named block's rate now (``{"stem": ..., "layer1": ..., "head": ...}``); empty
    when every group trains at the schedule's rate."""
    return {group["name"]: group["lr"] for group in optimizer.param_groups if "name" in group}


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Restore a checkpoint's optimiser state, keeping this device's implementation.

    ``load_state_dict`` also restores each group's ``fused``/``foreach`` choice, which was
    the saving device's: a run saved on CUDA (fused steps) and resumed on CPU must not ask
    the CPU for fused kernels, and one saved on CPU should get them on CUDA.
    """
    implementation = {key: optimizer.defaults.get(key) for key in ("fused", "foreach")}
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        group.update(implementation)
    move_state_to_parameters(optimizer)


def move_state_to_parameters(optimizer: torch.optim.Optimizer) -> None:
    """Every state tensor on its parameter's device, as the groups' implementation needs it.

    ``load_state_dict`` places the state by the *saved* groups' implementation: a step count
    saved by a CPU run stays a CPU tensor, and the fused kernels a CUDA run switches to
    reject it (pytorch#104767, #124133). Fused and capturable steps keep ``step`` on the
    parameter's device in float32; the others keep it on the CPU, where they read it
    without a device sync. Buffers (momentum, Adam's moments) go to the parameter's device.
    """
    for group in optimizer.param_groups:
        step_on_device = bool(group.get("fused") or group.get("capturable"))
        for parameter in group["params"]:
            state = optimizer.state.get(parameter, {})
            for key, value in state.items():
                if not isinstance(value, torch.Tensor):
                    continue
                if key == "step":
                    state[key] = value.to(device=parameter.device, dtype=torch.float32) if step_on_device \
                        else value.to(device="cpu")
                else:
                    state[key] = value.to(device=parameter.device)


def lr_factor(step: int, total_steps: int, warmup_steps: int, config: TrainConfig, steps_per_epoch: int) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "step":
        return config.gamma ** (step // (config.step_size * steps_per_epoch))
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if config.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    raise ValueError(config.schedule)


def warmup_steps_of(config: TrainConfig, steps_per_epoch: int) -> int:
    """Steps before the schedule reaches its peak rate: the warm-up, or one-cycle's rising
    quarter when no warm-up is set (``build_scheduler``)."""
    warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
    if config.schedule == "onecycle" and not warmup_steps:
        return int(0.25 * config.epochs * steps_per_epoch)
    return warmup_steps


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int, start_step: int = 0
) -> torch.optim.lr_scheduler.LRScheduler:
    """The run's schedule, ``start_step`` steps in (the first step of a resumed epoch).

    To start past step 0 the optimiser must hold the state it was saved with: schedules
    read their base rates (``initial_lr``, one-cycle's ``max_lr``) from its groups.
    """
    # torch's way to resume a schedule: ``last_epoch`` is the last step taken; both
    # schedules below are closed forms of it, so the rates equal an uninterrupted run's.
    last_step = start_step - 1
    total_steps = config.epochs * steps_per_epoch
    warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
    if config.schedule == "onecycle":
        # Smith & Topin's one-cycle: warm up to lr (the peak), then anneal to lr/1e4 by cosine.
        warm = warmup_steps if warmup_steps else 0.25 * total_steps
        if abs(warm - 1) < 1e-6:
            # torch's OneCycleLR divides by (warm-up steps - 1): a one-step warm-up, as in a
            # 4-step smoke run, would divide by zero. Half a step more changes nothing else.
            warm = 1.5
        pct_start = min(warm / total_steps, 1.0)
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[config.lr * group.get("lr_scale", 1.0) for group in optimizer.param_groups],
            total_steps=total_steps, pct_start=pct_start,
            cycle_momentum=config.optimizer == "sgd" and config.momentum > 0, last_epoch=last_step,
        )
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, warmup_steps, config, steps_per_epoch),
        last_epoch=last_step,
    )

"""An exponential moving average of the weights, evaluated beside the trained model.

The average is kept by PyTorch's own ``AveragedModel`` with its EMA update
(``get_ema_multi_avg_fn``, both in torch >= 2.1), over parameters *and* buffers
(``use_buffers=True``): BatchNorm's running statistics are averaged with the weights they
belong to, as timm's ``ModelEmaV3`` and torchvision's classification reference do, so the
averaged model is evaluated as it is, with no pass over the data to recompute them.

Under torchrun the average is of the unwrapped module (DDP keeps its parameters alike on
every rank, so every rank's average is the same). Its weights and its update count are in
``last.pt``: a resumed run continues the same average, bit for bit on CPU.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def ema_decay(decay: float, step: int, warmup: bool) -> float:
    """The decay of the update made after ``step`` optimiser steps: ``decay``, or with
    the warm-up ``min(decay, (1 + step) / (10 + step))``, the formula of TensorFlow's
    ``tf.train.ExponentialMovingAverage(decay, num_updates=step)``. Early on the weights
    move fast and an average over thousands of steps would mostly hold the random
    initialisation; the warm-up lets it follow them (0.5 after 8 steps, 0.99 after 890).
    (timm's ModelEmaV3 warms up with another curve, ``1 - (1 + step) ** -2/3``.)"""
    return min(decay, (1 + step) / (10 + step)) if warmup else decay


class WeightAverage:
    """The EMA of ``model``'s weights, updated every ``every`` optimiser steps.

    ``module`` is the averaged copy of the model: evaluate it, or save its ``state_dict``
    as a model's weights (same keys as the model's).
    """

    def __init__(self, model: torch.nn.Module, decay: float, every: int = 1, warmup: bool = True) -> None:
        self.decay, self.every, self.warmup = decay, every, warmup
        self._decay_now = decay
        self.averaged = AveragedModel(model, multi_avg_fn=self._average, use_buffers=True)
        self.averaged.requires_grad_(False)

    @property
    def module(self) -> torch.nn.Module:
        return self.averaged.module

    def update(self, model: torch.nn.Module, step: int) -> None:
        """After the optimiser's ``step``-th step (1-based): fold ``model`` in, when due.
        The first update copies the model (``AveragedModel``'s rule; timm's EMA too starts
        from the model's weights)."""
        if step % self.every == 0:
            self._decay_now = ema_decay(self.decay, step, self.warmup)
            self.averaged.update_parameters(model)

    def _average(self, averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
        if averaged[0].is_floating_point():
            get_ema_multi_avg_fn(self._decay_now)(averaged, current, updates)
        else:
            # Integer buffers (BatchNorm's num_batches_tracked) are counts, not weights: copied, as timm does.
            for average, value in zip(averaged, current):
                average.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.module.state_dict(), "updates": int(self.averaged.n_averaged)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["weights"], strict=True)
        self.averaged.n_averaged.fill_(int(state["updates"]))


def build_weight_average(config: Any, model: torch.nn.Module, checkpoint: dict[str, Any] | None
                         ) -> WeightAverage | None:
    """The run's EMA (None without ``--ema``), continued from ``checkpoint``'s when resuming."""
    if config.ema is None:
        return None
    average = WeightAverage(model, config.ema, config.ema_every, config.ema_warmup)
    if checkpoint is not None and checkpoint.get("ema") is not None:
        average.load_state_dict(checkpoint["ema"])
    return average


def better_of(test: dict[str, Any], ema_test: dict[str, Any] | None, metric: str = "acc1") -> tuple[str, dict[str, Any]]:
    """``("ema", ema_test)`` when the average scored higher by ``metric`` (the task's: test
    accuracy for classification), else ``("model", test)``."""
    if ema_test is not None and ema_test[metric] > test[metric]:
        return "ema", ema_test
    return "model", test


def ema_record(ema_test: dict[str, Any] | None, better: str, task: Any) -> dict[str, Any]:
    """The EMA's numbers for an epoch's ``metrics.jsonl`` line, as ``task`` records them
    (``ema_test_acc``, ...; nothing without ``--ema``)."""
    if ema_test is None:
        return {}
    return {**task.record(ema_test, prefix="ema_test"), "better": better}


def best_state(state: dict[str, Any], average: WeightAverage | None, better: str,
               scores: dict[str, Any], metric: str = "acc1") -> dict[str, Any]:
    """``best.pt``: ``last.pt``'s ``state`` with, as its ``model``, the weights that scored
    ``scores`` (the EMA's when ``better == "ema"``, so eval, predict and export use them
    unchanged), and ``weights`` saying which they are."""
    if average is None:
        return state
    best = {key: value for key, value in state.items() if key != "ema"}
    best.update(weights=better, test_acc=scores[metric], test_loss=scores["loss"])
    if better == "ema":
        best["model"] = state["ema"]["weights"]
    return best

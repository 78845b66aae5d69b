"""Lucid's redirected ReLU gradient (``lucid/misc/redirected_relu_grad.py``; used by
``lucid.optvis.render`` by default, Olah et al., "Feature Visualization", Distill 2017).

From a nearly uniform grey start, a unit behind a ReLU is often at zero with a negative
pre-activation: its gradient is exactly zero and plain ascent never moves it. Lucid's
fix, for optimisation only: where a ReLU passes no gradient at all for an image, it
passes the gradient anyway, except where that would push an already negative input
further down. As soon as any gradient gets through for that image, the true ReLU
gradient is used. The forward pass is unchanged.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


class _RedirectedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, inputs: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(inputs)
        return inputs.clamp_min(0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (inputs,) = ctx.saved_tensors
        relu_grad = torch.where(inputs < 0, torch.zeros_like(grad), grad)
        # grad is that of the loss being minimised: grad > 0 on a negative input pushes it lower.
        redirected = torch.where((inputs < 0) & (grad > 0), torch.zeros_like(grad), grad)
        if inputs.dim() < 2:
            return relu_grad if bool(relu_grad.any()) else redirected
        passes = relu_grad.flatten(1).abs().amax(dim=1) > 0
        return torch.where(passes.view(-1, *[1] * (inputs.dim() - 1)), relu_grad, redirected)


_RELUS = {F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}


class RedirectedReLUs(TorchFunctionMode):
    """Within this context every ReLU of a forward (module, functional or in-place) uses
    the redirected gradient; in-place ReLUs return a new tensor instead, which every
    ``x = relu(x)`` in the zoo's code takes."""

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _RELUS and torch.is_grad_enabled():
            return _RedirectedReLU.apply(args[0])
        return func(*args, **kwargs)

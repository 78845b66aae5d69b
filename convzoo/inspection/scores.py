"""The class score every inspection method differentiates: the main head's output, read
*before* a final softmax or log-softmax.

Saliency (Simonyan, Vedaldi & Zisserman 2014, section 2: "the unnormalised class scores
S_c, rather than the class posteriors returned by the soft-max layer"), Grad-CAM
(Selvaraju et al. 2017, section 3: "y^c, the score for class c before the softmax"),
SmoothGrad and Integrated Gradients (which average or integrate that gradient), occlusion
and class-logit maximisation all attribute the pre-softmax score. A model that ends in
``LogSoftmax`` (LeNet-5, as in the lecture's table) returns log p_c = S_c - logsumexp(S)
instead, whose gradient dS_c - sum_k p_k dS_k vanishes for a confident prediction (its
saliency peaks near 3e-4 where the logit's is near 1) and maps what separates c from the
other classes rather than c's own evidence.

So one rule holds for every inspection command and every model: when the tensor a model
returns (its main head, for GoogLeNet's ``(main, aux1, aux2)``) is the output of a
softmax or log-softmax, module or functional, the input of that call is the score.
Attacks read the same scores: cross-entropy is the same function of logits as of
log-probabilities.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from convzoo.engine.evaluate import main_logits

_SOFTMAXES = {F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, torch.Tensor.softmax,
              torch.Tensor.log_softmax}


class _SoftmaxCalls(TorchFunctionMode):
    """Records (input, output) of every softmax and log-softmax a forward calls: ``nn.Softmax``
    and ``nn.LogSoftmax`` go through ``F.softmax`` / ``F.log_softmax``, so modules and
    functional calls in ``forward`` are both seen."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        output = func(*args, **(kwargs or {}))
        if func in _SOFTMAXES:
            self.calls.append((args[0], output))
        return output


def class_scores(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """(N, classes) pre-softmax scores of ``model`` for ``inputs``: its main logits, or the
    input of the softmax / log-softmax whose output the model returned."""
    with _SoftmaxCalls() as recorder:
        outputs = main_logits(model(inputs))
    # The returned tensor itself must be a softmax's output: a softmax inside the network
    # (attention, a gate) is not the end of the network and is left alone.
    return next((before for before, after in reversed(recorder.calls) if after is outputs), outputs)


class ClassScores(nn.Module):
    """``model`` returning its pre-softmax class scores (``class_scores``), for captum."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return class_scores(self.model, inputs)

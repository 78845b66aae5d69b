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
    """``model`` returning its pre-softmax class scores (``class_scores``), for captum.

    A segmentation model's score maps (N, classes, H, W) become one score per class, the
    mean of its map over ``region`` (a box ``(x1, y1, x2, y2)`` in input pixels, ends
    excluded; None: the whole image): Seg-Grad-CAM's score of class c over a set of pixels M,
    y^c = sum over (i, j) in M of y^c_ij (Vinogradova, Dibrov, Myers, AAAI 2020), divided by
    |M|, which scales every gradient alike. Saliency, Grad-CAM and the other methods then
    explain why the model gives that region that class.
    """

    def __init__(self, model: nn.Module, region: tuple[int, int, int, int] | None = None) -> None:
        super().__init__()
        self.model = model
        self.region = region

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        scores = class_scores(self.model, inputs)
        return region_mean(scores, self.region) if scores.dim() == 4 else scores

    @torch.no_grad()
    def region_classes(self, inputs: torch.Tensor) -> torch.Tensor | None:
        """(N,) for a segmentation model: the class other than background (0) that the model
        gives most pixels of the region, or background where it gives none another; None
        for a classifier."""
        scores = class_scores(self.model, inputs)
        if scores.dim() != 4:
            return None
        x1, y1, x2, y2 = self.region or (0, 0, scores.shape[-1], scores.shape[-2])
        predicted = scores[..., y1:y2, x1:x2].argmax(1).flatten(1)
        counts = torch.stack([torch.bincount(row, minlength=scores.shape[1]) for row in predicted])
        counts[:, 0] = 0
        return torch.where(counts.amax(1) > 0, counts.argmax(1), torch.zeros_like(counts[:, 0]))


def region_mean(scores: torch.Tensor, region: tuple[int, int, int, int] | None) -> torch.Tensor:
    """(N, classes): the mean of each class's score map over ``region`` (None: all of it)."""
    if region is not None:
        x1, y1, x2, y2 = region
        scores = scores[..., y1:y2, x1:x2]
    return scores.mean(dim=(-2, -1))

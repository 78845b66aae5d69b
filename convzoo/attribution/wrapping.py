"""A copy of any zoo model that gradient methods can differentiate: pixels in, class scores out.

Four things in the zoo trip up captum's gradients and hooks, so every explanation and
attack runs on a copy prepared here rather than on the user's model:

- in-place operations (``ReLU(inplace=True)`` in LeNet-5, AlexNet, VGG, ResNet, ...)
  overwrite the tensor a layer hook captured, so Grad-CAM's activations or a hook's
  gradient can be wrong or make autograd raise; the copy has ``inplace=False`` on every
  module that has the flag;
- GoogLeNet in training mode returns ``(logits, aux1, aux2)``; the copy always returns the
  main head's logits (``convzoo.engine.evaluate.main_logits``), so targets index classes;
- LeNet-5 ends in ``LogSoftmax``: the copy returns the scores before it
  (``convzoo.inspection.scores``), which is what saliency, Grad-CAM and the others are
  defined on, and the same cross-entropy for the attacks;
- attacks measure epsilon in pixels and Integrated Gradients' black baseline is black
  *pixels* (not zero after normalisation, which is grey for MNIST): the dataset's
  normalisation is folded in front (``PixelInputModel``) so inputs are pixels in [0, 1].
"""

from __future__ import annotations

import copy

from torch import nn

from convzoo.inspection import PixelInputModel, Preprocessing
from convzoo.inspection.scores import ClassScores


def without_inplace(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` (in its current mode) with every ``inplace`` flag off."""
    duplicate = copy.deepcopy(model)
    for module in duplicate.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False
    return duplicate


class GradientReadyModel(ClassScores):
    """Pixels in [0, 1] (or the model's own inputs when no preprocessing is given) to the
    main head's pre-softmax class scores, on an in-place-free eval-mode copy; ``network``
    is that copy, for layer lookups.

    The copy's parameters do not require gradients: only inputs are differentiated, and
    the user's model is never touched.
    """

    def __init__(self, model: nn.Module, preprocessing: Preprocessing | None = None,
                 region: tuple[int, int, int, int] | None = None) -> None:
        network = without_inplace(model).eval()
        for parameter in network.parameters():
            parameter.requires_grad_(False)
        super().__init__(PixelInputModel(network, preprocessing) if preprocessing is not None else network, region)
        self.network = network

    def layer(self, name: str) -> nn.Module:
        """The copy's module called ``name`` in the original model."""
        return self.network.get_submodule(name)

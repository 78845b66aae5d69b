"""``Conv2d``: ``nn.Conv2d`` computed by convzoo's hand-written convolution, and the swap
that puts it into any model."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from convzoo.ops.convolution import conv2d


class Conv2d(nn.Conv2d):
    """Drop-in ``nn.Conv2d`` whose forward and backward are ``convzoo.ops.conv2d``.

    A subclass, so constructor arguments, parameter names, state dicts, initialisation
    and ``isinstance(m, nn.Conv2d)`` checks are all ``nn.Conv2d``'s.  Padding modes other
    than zeros pad first, exactly as ``nn.Conv2d`` does.
    """

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if self.padding_mode != "zeros":
            padded = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return conv2d(padded, weight, bias, self.stride, 0, self.dilation, self.groups)
        return conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)


def use_scratch_conv(model: nn.Module) -> nn.Module:
    """Make every ``nn.Conv2d`` in ``model`` compute with ``convzoo.ops.conv2d``, in place.

    The modules keep their identity, parameters (the same tensors, device and dtype),
    buffers and hooks: only their class changes to :class:`Conv2d`, which adds no state.
    Subclasses of ``nn.Conv2d`` with behaviour of their own are left alone.  Returns
    ``model`` so the call can be chained: ``use_scratch_conv(create_model("resnet18"))``.
    """
    for module in model.modules():
        if type(module) is nn.Conv2d:
            module.__class__ = Conv2d
    return model

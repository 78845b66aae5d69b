"""``Conv2d`` and ``ScratchConvTranspose2d``: ``nn.Conv2d`` and ``nn.ConvTranspose2d``
computed by convzoo's hand-written convolution, and the swap that puts them into any model."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from convzoo.ops.convolution import conv2d
from convzoo.ops.transposed import conv_transpose2d


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


class ScratchConvTranspose2d(nn.ConvTranspose2d):
    """Drop-in ``nn.ConvTranspose2d`` whose forward and backward are ``convzoo.ops.conv_transpose2d``.

    A subclass, as :class:`Conv2d` is: ``nn.ConvTranspose2d``'s constructor, parameter
    names, state dict and ``forward(input, output_size=None)``.
    """

    def forward(self, input: Tensor, output_size: list[int] | None = None) -> Tensor:
        if self.padding_mode != "zeros":
            raise ValueError("Only `zeros` padding mode is supported for ConvTranspose2d")
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size, 2, self.dilation  # type: ignore[arg-type]
        )
        return conv_transpose2d(
            input, self.weight, self.bias, self.stride, self.padding, output_padding, self.groups, self.dilation
        )


SCRATCH_CLASSES: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv2d: Conv2d,
    nn.ConvTranspose2d: ScratchConvTranspose2d,
}
"""torch's class -> convzoo's drop-in subclass, for the swap and for undoing it."""


def use_scratch_conv(model: nn.Module) -> nn.Module:
    """Make every ``nn.Conv2d`` and ``nn.ConvTranspose2d`` in ``model`` compute with
    convzoo's hand-written convolution, in place.

    The modules keep their identity, parameters (the same tensors, device and dtype),
    buffers and hooks: only their class changes to :class:`Conv2d` or
    :class:`ScratchConvTranspose2d`, which add no state.  Subclasses with behaviour of
    their own are left alone.  Returns ``model`` so the call can be chained:
    ``use_scratch_conv(create_model("resnet18"))``.
    """
    for module in model.modules():
        scratch = SCRATCH_CLASSES.get(type(module))
        if scratch is not None:
            module.__class__ = scratch
    return model

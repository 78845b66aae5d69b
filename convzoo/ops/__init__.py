"""Hand-written tensor-level operations: convolution from scratch.

``conv2d`` matches ``torch.nn.functional.conv2d``, ``conv_transpose2d`` matches
``torch.nn.functional.conv_transpose2d``; ``Conv2d`` and ``ScratchConvTranspose2d`` match
``nn.Conv2d`` and ``nn.ConvTranspose2d``; ``use_scratch_conv(model)`` swaps every
``nn.Conv2d`` and ``nn.ConvTranspose2d`` of a model for them.
"""

from convzoo.ops.convolution import conv2d
from convzoo.ops.correlation import correlate
from convzoo.ops.modules import Conv2d, ScratchConvTranspose2d, use_scratch_conv
from convzoo.ops.transposed import conv_transpose2d

__all__ = ["Conv2d", "ScratchConvTranspose2d", "conv2d", "conv_transpose2d", "correlate", "use_scratch_conv"]

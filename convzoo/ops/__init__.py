"""Hand-written tensor-level operations: convolution from scratch.

``conv2d`` matches ``torch.nn.functional.conv2d``; ``Conv2d`` matches ``nn.Conv2d``;
``use_scratch_conv(model)`` swaps every ``nn.Conv2d`` of a model for ``Conv2d``.
"""

from convzoo.ops.convolution import conv2d
from convzoo.ops.correlation import correlate
from convzoo.ops.modules import Conv2d, use_scratch_conv

__all__ = ["Conv2d", "conv2d", "correlate", "use_scratch_conv"]

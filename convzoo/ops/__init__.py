"""Hand-written tensor-level operations: convolution, transposed convolution and RoI pooling from scratch.

``conv2d`` matches ``torch.nn.functional.conv2d``, ``conv_transpose2d`` matches
``torch.nn.functional.conv_transpose2d``; ``Conv2d`` and ``ScratchConvTranspose2d`` match
``nn.Conv2d`` and ``nn.ConvTranspose2d``; ``use_scratch_conv(model)`` swaps every
``nn.Conv2d`` and ``nn.ConvTranspose2d`` of a model for them.
``roi_pool`` and ``roi_align`` match ``torchvision.ops``'; ``RoIPool``, ``RoIAlign`` and
``MultiScaleRoIAlign`` match torchvision's modules, and ``use_scratch_roi_ops(model)``
swaps them into a model (a torchvision detector, say).
"""

from convzoo.ops.convolution import conv2d
from convzoo.ops.correlation import correlate
from convzoo.ops.modules import (
    Conv2d,
    MultiScaleRoIAlign,
    RoIAlign,
    RoIPool,
    ScratchConvTranspose2d,
    use_scratch_conv,
    use_scratch_roi_ops,
)
from convzoo.ops.roi import roi_align, roi_pool
from convzoo.ops.transposed import conv_transpose2d

__all__ = [
    "Conv2d",
    "MultiScaleRoIAlign",
    "RoIAlign",
    "RoIPool",
    "ScratchConvTranspose2d",
    "conv2d",
    "conv_transpose2d",
    "correlate",
    "roi_align",
    "roi_pool",
    "use_scratch_conv",
    "use_scratch_roi_ops",
]

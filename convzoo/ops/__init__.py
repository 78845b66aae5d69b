"""Hand-written tensor-level operations: convolution and RoI pooling from scratch.

``conv2d`` matches ``torch.nn.functional.conv2d``; ``Conv2d`` matches ``nn.Conv2d``;
``use_scratch_conv(model)`` swaps every ``nn.Conv2d`` of a model for ``Conv2d``.
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
    use_scratch_conv,
    use_scratch_roi_ops,
)
from convzoo.ops.roi import roi_align, roi_pool

__all__ = [
    "Conv2d",
    "MultiScaleRoIAlign",
    "RoIAlign",
    "RoIPool",
    "conv2d",
    "correlate",
    "roi_align",
    "roi_pool",
    "use_scratch_conv",
    "use_scratch_roi_ops",
]

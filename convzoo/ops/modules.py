"""``Conv2d`` and ``ScratchConvTranspose2d``: ``nn.Conv2d`` and ``nn.ConvTranspose2d``
computed by convzoo's hand-written convolution; ``RoIPool``, ``RoIAlign`` and
``MultiScaleRoIAlign``: torchvision's RoI modules computed by convzoo's hand-written RoI
ops; and the swaps that put them into any model."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision import ops as tv_ops
from torchvision.ops import poolers

from convzoo.ops.convolution import conv2d
from convzoo.ops.roi import BoxesLike, roi_align, roi_pool
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


class RoIPool(tv_ops.RoIPool):
    """Drop-in ``torchvision.ops.RoIPool`` (same arguments, same repr) whose forward and
    backward are ``convzoo.ops.roi_pool``."""

    def forward(self, input: Tensor, rois: BoxesLike) -> Tensor:
        return roi_pool(input, rois, self.output_size, self.spatial_scale)


class RoIAlign(tv_ops.RoIAlign):
    """Drop-in ``torchvision.ops.RoIAlign`` whose forward and backward are ``convzoo.ops.roi_align``."""

    def forward(self, input: Tensor, rois: BoxesLike) -> Tensor:
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)


class MultiScaleRoIAlign(tv_ops.MultiScaleRoIAlign):
    """Drop-in ``torchvision.ops.MultiScaleRoIAlign`` (the FPN pooler of torchvision's Faster
    and Mask R-CNN) that pools with ``convzoo.ops.roi_align``.

    torchvision's forward calls the ``roi_align`` it imported into ``torchvision.ops.poolers``,
    so the op cannot be passed in; this forward repeats its few steps with convzoo's op and
    reuses the rest as is: which feature maps take part (``_filter_input``), their scales
    inferred from the image sizes (``_setup_scales``), the boxes in RoI format and the FPN
    level of each box (``LevelMapper``, FPN paper eq. 1).
    """

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        features = poolers._filter_input(x, self.featmap_names)
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = poolers._setup_scales(
                features, image_shapes, self.canonical_scale, self.canonical_level
            )
        rois = poolers._convert_to_roi_format(boxes)
        if len(features) == 1:
            return roi_align(features[0], rois, self.output_size, self.scales[0], self.sampling_ratio)
        levels = self.map_levels(boxes)
        result = features[0].new_zeros((len(rois), features[0].shape[1], *self.output_size))
        for level, (feature, scale) in enumerate(zip(features, self.scales)):
            in_level = torch.where(levels == level)[0]
            pooled = roi_align(feature, rois[in_level], self.output_size, scale, self.sampling_ratio)
            # Autocast may have given the levels different dtypes: the result keeps the first's.
            result[in_level] = pooled.to(result.dtype)
        return result


_SCRATCH_ROI_MODULES = {
    tv_ops.RoIPool: RoIPool,
    tv_ops.RoIAlign: RoIAlign,
    tv_ops.MultiScaleRoIAlign: MultiScaleRoIAlign,
}


def use_scratch_roi_ops(model: nn.Module) -> nn.Module:
    """Make every torchvision ``RoIPool``, ``RoIAlign`` and ``MultiScaleRoIAlign`` in ``model``
    compute with convzoo's RoI ops, in place, as :func:`use_scratch_conv` does for convolutions.

    For torchvision's detectors the box pooler is ``model.roi_heads.box_roi_pool``:
    ``use_scratch_roi_ops(torchvision.models.detection.fasterrcnn_resnet50_fpn())`` pools
    Faster R-CNN's boxes with ``convzoo.ops.roi_align``.  Returns ``model``.
    """
    for module in model.modules():
        scratch = _SCRATCH_ROI_MODULES.get(type(module))
        if scratch is not None:
            module.__class__ = scratch
    return model

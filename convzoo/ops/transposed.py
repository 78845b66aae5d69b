"""``conv_transpose2d`` with ``torch.nn.functional.conv_transpose2d``'s signature: the
adjoint of convzoo's convolution, built from that convolution's own three pieces.

Lecture 000 writes a convolution as a matrix product ``y = U x``: ``U`` has one row per
output position and one column per input position, and holds the kernel weight that
connects them.  The transposed convolution is the product with ``U^T``: each input
sample adds a kernel-weighted copy of itself into the output, the copies ``stride``
apart (lecture 004's "upsampling": every input pixel paints a ``K x K`` patch).  That
product is exactly what backpropagation through ``y = U x`` computes for ``dL/dx``, so

* forward: ``conv_transpose(z, W) = U_W^T z`` is the convolution's input gradient with
  ``z`` as the upstream gradient (``convolution._input_gradient``: ``z`` zero-dilated
  by the stride, padded, correlated with the flipped kernel, its channel axes swapped);
* input gradient: ``d/dz <g, U^T z> = U g``, the convolution's forward pass applied to
  the upstream gradient ``g`` (``convolution._forward``);
* weight gradient: ``<g, U_W^T z> = <U_W g, z>``, so it is the convolution's weight
  gradient with ``g`` in the input's place and ``z`` in the upstream gradient's
  (``convolution._weight_gradient``);
* bias gradient: the sum of ``g`` over batch and positions.

All three run in ``convolution._Convolution``, the convolution's own autograd node, given
the output size (``transposed_size``); this module adds torch's argument checks and the
geometry.  The stride's inserted zeros are never multiplied: the primitive splits the
output into ``stride x stride`` phases, each a stride-1 correlation with the taps that
land on real samples (``convzoo.ops.correlation``).

The weight needs no rearranging: ``nn.ConvTranspose2d``'s ``(in, out / groups, KH, KW)``
is the layout of the convolution it transposes, which maps ``out`` channels to ``in``.

The convolution being transposed is the one that maps the transposed output's size
``(N - 1) * stride - 2 * pad + dilation * (K - 1) + output_padding + 1`` back to the
input size ``N``.  With a stride, several sizes floor to the same ``N`` (lecture 004's
output-size formula); ``output_padding`` picks a larger one (torch allows it below the
stride or below the dilation).  Its extra rows are real input rows of that convolution,
read where the symmetric padding would read zeros, so the convolution pads ``pad``
before and ``pad - output_padding`` after (negative: crops): it reads the same cells as
with ``pad`` on both sides and gives exactly ``N`` outputs, for the forward pass and
both gradients alike.
"""

from __future__ import annotations

import torch
from torch import Tensor

from convzoo.ops.convolution import IntOrPair, _check_operands, _Geometry, _pair, _run, _stride_and_dilation


def _check(input: Tensor, weight: Tensor, bias: Tensor | None, groups: int) -> None:
    _check_operands(input, weight, bias, groups, "conv_transpose2d")
    if weight.shape[0] % groups != 0:
        raise RuntimeError(
            f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, "
            f"but got weight of size {list(weight.shape)} instead"
        )
    if input.shape[1] != weight.shape[0]:
        raise RuntimeError(
            f"Given transposed=1, weight of size {list(weight.shape)}, expected input{list(input.shape)} "
            f"to have {weight.shape[0]} channels, but got {input.shape[1]} channels instead"
        )
    out_channels = weight.shape[1] * groups
    if bias is not None and bias.shape != (out_channels,):
        raise RuntimeError(
            f"Given transposed=1, weight of size {list(weight.shape)}, expected bias to be 1-dimensional with "
            f"{out_channels} elements, but got bias of size {list(bias.shape)} instead"
        )


def _geometry(
    input: Tensor, weight: Tensor, stride: IntOrPair, padding: IntOrPair, output_padding: IntOrPair,
    groups: int, dilation: IntOrPair,
) -> tuple[_Geometry, torch.Size]:
    """The convolution this transposes (see the module docstring), and the output's size."""
    stride_pair, dilation_pair = _stride_and_dilation(stride, dilation, "conv_transpose2d")
    padding_pair = _pair(padding, "padding", "conv_transpose2d")
    extra = _pair(output_padding, "output_padding", "conv_transpose2d")
    if min(padding_pair) < 0:
        raise RuntimeError("negative padding is not supported")
    if min(extra) < 0:
        raise RuntimeError("negative output_padding is not supported")
    if any(e >= s and e >= d for e, s, d in zip(extra, stride_pair, dilation_pair)):
        raise RuntimeError(
            f"output padding must be smaller than either stride or dilation, but got output_padding={extra}, "
            f"stride={stride_pair}, dilation={dilation_pair}"
        )
    size = [
        (input.shape[2 + axis] - 1) * stride_pair[axis] - 2 * padding_pair[axis]
        + dilation_pair[axis] * (weight.shape[2 + axis] - 1) + extra[axis] + 1
        for axis in range(2)
    ]
    if min(size) <= 0:
        raise RuntimeError(
            f"Given input size per channel: ({input.shape[2]} x {input.shape[3]}). "
            f"Calculated output size per channel: ({size[0]} x {size[1]}). Output size is too small"
        )
    padding_pairs = tuple((pad, pad - e) for pad, e in zip(padding_pair, extra))
    geometry = _Geometry(stride_pair, padding_pairs, dilation_pair, groups)  # type: ignore[arg-type]
    return geometry, torch.Size((input.shape[0], weight.shape[1] * groups, *size))


def conv_transpose2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    output_padding: IntOrPair = 0,
    groups: int = 1,
    dilation: IntOrPair = 1,
) -> Tensor:
    """2-D transposed convolution with exactly ``torch.nn.functional.conv_transpose2d``'s semantics.

    ``weight`` is ``(in_channels, out_channels / groups, KH, KW)``.  Forward and backward
    are convzoo's hand-written convolution and its gradients with their roles swapped;
    under autocast the operands are cast to autocast's dtype first, as torch does.

    >>> x, w = torch.randn(1, 21, 8, 8), torch.randn(21, 21, 4, 4)
    >>> conv_transpose2d(x, w, stride=2, padding=1).shape  # FCN's 2x upsampling of class scores
    torch.Size([1, 21, 16, 16])
    """

    def plan(input: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[_Geometry, torch.Size]:
        _check(input, weight, bias, groups)
        return _geometry(input, weight, stride, padding, output_padding, groups, dilation)

    return _run(input, weight, bias, plan)

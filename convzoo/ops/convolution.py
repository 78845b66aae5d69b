"""``conv2d`` with ``torch.nn.functional.conv2d``'s signature, forward and backward by hand.

Lecture 004 shows that backpropagating through a convolution takes two more
convolutions.  Along one spatial axis, with the input ``x`` zero-padded by
``(pad_before, pad_after)`` into ``xp``, stride ``s``, dilation ``d`` and kernel size
``K``, the forward pass is the correlation

    y[i] = sum_u  xp[i*s + u*d] * w[u]                                (1)

(summed over input channels too).  Given the upstream gradient ``g = dL/dy``:

* Weight gradient.  Differentiating (1) by ``w[u]``::

      dL/dw[u] = sum_i  g[i] * xp[i*s + u*d]

  is the same correlation with ``g`` as the kernel, read at step ``s`` while the output
  index ``u`` moves by ``d``: the padded input correlated with the upstream gradient,
  stride and dilation swapped.  The sum over the batch becomes the contraction, so
  batch and channel axes swap too (input ``x`` transposed to (C, N, H, W), kernel ``g``
  to (O, N, OH, OW)).  Trailing input that no output reads is cropped from the padding
  so the result has exactly ``K`` taps.

* Input gradient.  Each ``xp[t]`` feeds every ``y[i]`` with ``i*s + u*d = t``::

      dL/dxp[t] = sum_u  g^[t - u*d] * w[u],    g^ = g with s - 1 zeros between samples

  and renaming ``u -> K - 1 - u`` turns it into a correlation again: the zero-dilated
  upstream gradient, padded by ``d*(K-1)``, correlated with the spatially flipped kernel
  whose input and output channels are swapped.  Dropping the first ``pad_before``
  outputs undoes the forward padding: ``dL/dx[t] = dL/dxp[t + pad_before]``.

* Bias gradient: the sum of ``g`` over batch and positions.

All three correlations are computed by ``convzoo.ops.correlation.correlate``; the zeros of
the dilated gradient are never multiplied (the primitive splits its output into phases
instead, see there).  Nothing here calls torch's own convolutions or its autograd.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from convzoo.ops.correlation import correlate
from convzoo.ops.plans import Pair, output_size

IntOrPair = int | tuple[int, ...] | list[int]


@dataclass(frozen=True)
class _Geometry:
    stride: Pair
    padding: tuple[Pair, Pair]
    """((top, bottom), (left, right)): uneven for ``padding="same"`` with an even kernel."""
    dilation: Pair
    groups: int


def _pair(value: IntOrPair, name: str, function: str = "conv2d") -> Pair:
    values = (value, value) if isinstance(value, int) else tuple(value)
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or not all(isinstance(v, int) for v in values):
        raise RuntimeError(f"{function}: expected {name} to be an int or a pair of ints, got {value!r}")
    return values  # type: ignore[return-value]


def _resolve_padding(padding: IntOrPair | str, kernel: Pair, stride: Pair, dilation: Pair) -> tuple[Pair, Pair]:
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding != "same":
            raise RuntimeError(f"Invalid padding string '{padding}'; expected 'same' or 'valid'")
        if stride != (1, 1):
            raise RuntimeError("padding='same' is not supported for strided convolutions")
        # torch's convention: the odd pixel of an even kernel's padding goes after (bottom, right).
        totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
        return tuple((total // 2, total - total // 2) for total in totals)  # type: ignore[return-value]
    pad_h, pad_w = _pair(padding, "padding")
    if pad_h < 0 or pad_w < 0:
        raise RuntimeError("negative padding is not supported")
    return (pad_h, pad_h), (pad_w, pad_w)


def _wants_channels_last(*tensors: Tensor) -> bool:
    """torch's rule for convolutions: channels-last in, channels-last out.

    A tensor with one channel (or a 1x1 map) is contiguous in both formats; as torch
    does, its strides decide: channels-last ones have the channel stride smallest.
    """
    return any(
        t.dim() == 4
        and t.is_contiguous(memory_format=torch.channels_last)
        and (not t.is_contiguous() or t.stride(1) < t.stride(2))
        for t in tensors
    )


def _memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def _forward(input: Tensor, weight: Tensor, geometry: _Geometry, channels_last: bool) -> Tensor:
    # The output is allocated here, not viewed out of a buffer: autograd lets in-place
    # operations (``ReLU(inplace=True)``) follow a custom Function only if it returns no view.
    size = [
        output_size(input.shape[2 + axis], weight.shape[2 + axis], geometry.stride[axis], geometry.dilation[axis],
                    1, geometry.padding[axis])
        for axis in range(2)
    ]
    out = torch.empty(
        (input.shape[0], weight.shape[0], *size),
        dtype=input.dtype,
        device=input.device,
        memory_format=_memory_format(channels_last),
    )
    groups = geometry.groups
    correlate(
        input.unflatten(1, (groups, -1)),
        weight.unflatten(0, (groups, -1)),
        stride=geometry.stride,
        padding=geometry.padding,
        dilation=geometry.dilation,
        channels_last=channels_last,
        out=out.unflatten(1, (groups, -1)),
    )
    return out


def _input_gradient(
    grad_output: Tensor, weight: Tensor, input_size: torch.Size, geometry: _Geometry, channels_last: bool
) -> Tensor:
    """Zero-dilated, padded upstream gradient correlated with the flipped, transposed kernel.

    Also the forward pass of the transposed convolution (``convzoo.ops.transposed``), which
    is why the result is allocated here rather than viewed out of the primitive's.
    """
    groups = geometry.groups
    # (G, Cg, Og, KH, KW) flipped, built tap-major with Og innermost (the layout the primitive multiplies in),
    # where reversing the flattened taps flips both axes at once.
    out_channels, in_channels, kernel_h, kernel_w = weight.shape
    by_tap = weight.reshape(groups, out_channels // groups, in_channels, kernel_h * kernel_w).permute(0, 2, 3, 1)
    reversed_taps = torch.arange(kernel_h * kernel_w - 1, -1, -1, device=weight.device)
    flipped = by_tap.contiguous().index_select(2, reversed_taps)
    kernel = flipped.unflatten(2, (kernel_h, kernel_w)).permute(0, 1, 4, 2, 3)
    padding = []
    for axis in range(2):
        size, out_size = input_size[2 + axis], grad_output.shape[2 + axis]
        stride, dilation = geometry.stride[axis], geometry.dilation[axis]
        before = geometry.padding[axis][0]
        reach = dilation * (weight.shape[2 + axis] - 1)
        padding.append((reach - before, size - 1 - (out_size - 1) * stride + before))
    grad = torch.empty(
        input_size, dtype=grad_output.dtype, device=grad_output.device, memory_format=_memory_format(channels_last)
    )
    correlate(
        grad_output.unflatten(1, (groups, -1)),
        kernel,
        padding=tuple(padding),  # type: ignore[arg-type]
        dilation=geometry.dilation,
        input_dilation=geometry.stride,
        channels_last=channels_last,
        out=grad.unflatten(1, (groups, -1)),
    )
    return grad


def _weight_gradient(input: Tensor, grad_output: Tensor, weight_size: torch.Size, geometry: _Geometry) -> Tensor:
    """Input correlated with the upstream gradient: batch and channels swapped, stride and dilation swapped."""
    groups = geometry.groups
    padding = []
    for axis in range(2):
        size, out_size = input.shape[2 + axis], grad_output.shape[2 + axis]
        stride, dilation = geometry.stride[axis], geometry.dilation[axis]
        before, after = geometry.padding[axis]
        unread = size + before + after - 1 - dilation * (weight_size[2 + axis] - 1) - (out_size - 1) * stride
        padding.append((before, after - unread))
    grad = correlate(
        input.unflatten(1, (groups, -1)).transpose(0, 2),
        grad_output.unflatten(1, (groups, -1)).permute(1, 2, 0, 3, 4),
        stride=geometry.dilation,
        padding=tuple(padding),  # type: ignore[arg-type]
        dilation=geometry.stride,
        channels_last=_wants_channels_last(input),
    )
    return grad.permute(1, 2, 0, 3, 4).reshape(weight_size)


class _Convolution(torch.autograd.Function):
    """Convolution as an autograd node whose backward pass is the two correlations above.

    With ``transposed_size`` (the output's full size) it is the convolution's adjoint,
    ``convzoo.ops.transposed``: the same three correlations with their roles swapped.
    """

    @staticmethod
    def forward(ctx, input: Tensor, weight: Tensor, bias: Tensor | None, geometry: _Geometry,  # type: ignore[override]
                transposed_size: torch.Size | None) -> Tensor:
        channels_last = _wants_channels_last(input, weight)
        if transposed_size is None:
            out = _forward(input, weight, geometry, channels_last)
        else:
            out = _input_gradient(input, weight, transposed_size, geometry, channels_last)
        if bias is not None:
            out.add_(bias.view(1, -1, 1, 1))
        ctx.geometry = geometry
        ctx.transposed = transposed_size is not None
        ctx.has_bias = bias is not None
        ctx.save_for_backward(input, weight)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        input, weight = ctx.saved_tensors
        geometry = ctx.geometry
        grad_input = grad_weight = grad_bias = None
        # A backward called inside autocast must not recast the primitive's float32 accumulators.
        with _autocast_disabled(grad_output.device.type):
            if ctx.needs_input_grad[0]:
                channels_last = _wants_channels_last(grad_output)
                if ctx.transposed:
                    grad_input = _forward(grad_output, weight, geometry, channels_last)
                else:
                    grad_input = _input_gradient(grad_output, weight, input.shape, geometry, channels_last)
            if ctx.needs_input_grad[1]:
                # The adjoint's weight gradient: the upstream gradient is what the convolution reads.
                read, upstream = (grad_output, input) if ctx.transposed else (input, grad_output)
                grad_weight = _weight_gradient(read, upstream, weight.shape, geometry)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum(dim=(0, 2, 3))
        return grad_input, grad_weight, grad_bias, None, None


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast would run a convolution in on this device, or None when it is off."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 had per-device functions only
        enabled = torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()
    if not enabled:
        return None
    if hasattr(torch, "get_autocast_dtype"):
        return torch.get_autocast_dtype(device_type)
    return torch.get_autocast_cpu_dtype() if device_type == "cpu" else torch.get_autocast_gpu_dtype()


def _autocast_disabled(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast switched off where it is on (the primitive picks its own precision)."""
    if _autocast_dtype(device_type) is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, enabled=False)


def _autocast(tensor: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """Autocast's cast of one operand: floating tensors go to ``dtype``, except float64,
    which autocast leaves alone (torch's ``is_eligible``)."""
    if tensor is None or not tensor.is_floating_point() or tensor.dtype == torch.float64:
        return tensor
    return tensor.to(dtype)


def _check_operands(input: Tensor, weight: Tensor, bias: Tensor | None, groups: int, function: str) -> None:
    """torch's checks that ``conv2d`` and ``conv_transpose2d`` share, with its messages."""
    if input.dim() != 4:
        raise RuntimeError(
            f"Expected 3D (unbatched) or 4D (batched) input to {function}, but got input of size: {list(input.shape)}"
        )
    if weight.dim() != 4:
        raise RuntimeError(f"{function}: expected a 4D weight, got size {list(weight.shape)}")
    if groups <= 0:
        raise RuntimeError("non-positive groups is not supported")
    if input.dtype != weight.dtype or (bias is not None and bias.dtype != input.dtype):
        raise RuntimeError(
            f"Input type ({input.dtype}) and weight type ({weight.dtype}) (and bias) should be the same"
        )


def _check(input: Tensor, weight: Tensor, bias: Tensor | None, groups: int) -> None:
    _check_operands(input, weight, bias, groups, "conv2d")
    if input.shape[1] != weight.shape[1] * groups or weight.shape[0] % groups != 0:
        raise RuntimeError(
            f"Given groups={groups}, weight of size {list(weight.shape)}, expected input{list(input.shape)} "
            f"to have {weight.shape[1] * groups} channels and the weight's first dimension to divide by {groups}"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise RuntimeError(f"Given weight of size {list(weight.shape)}, expected bias to be 1-dimensional with "
                           f"{weight.shape[0]} elements, but got bias of size {list(bias.shape)}")


def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrPair = 1,
    padding: IntOrPair | str = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
) -> Tensor:
    """2-D convolution (cross-correlation) with exactly ``torch.nn.functional.conv2d``'s semantics.

    Forward and backward are computed by convzoo's hand-written correlation; under
    autocast the operands are cast to autocast's dtype first, as torch does for its own
    convolutions.

    >>> x, w = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)
    >>> torch.allclose(conv2d(x, w, padding="same"), torch.nn.functional.conv2d(x, w, padding="same"), atol=1e-5)
    True
    """

    def plan(input: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[_Geometry, None]:
        _check(input, weight, bias, groups)
        stride_pair, dilation_pair = _stride_and_dilation(stride, dilation, "conv2d")
        kernel = (weight.shape[2], weight.shape[3])
        padding_pairs = _resolve_padding(padding, kernel, stride_pair, dilation_pair)
        for axis in range(2):
            padded = input.shape[2 + axis] + sum(padding_pairs[axis])
            if padded < dilation_pair[axis] * (kernel[axis] - 1) + 1:
                raise RuntimeError(
                    f"Calculated padded input size per channel: {padded}. Kernel size: {kernel[axis]} (dilated "
                    f"{dilation_pair[axis] * (kernel[axis] - 1) + 1}). Kernel size can't be greater than actual "
                    "input size"
                )
        return _Geometry(stride_pair, padding_pairs, dilation_pair, groups), None

    return _run(input, weight, bias, plan)


def _stride_and_dilation(stride: IntOrPair, dilation: IntOrPair, function: str) -> tuple[Pair, Pair]:
    stride_pair, dilation_pair = _pair(stride, "stride", function), _pair(dilation, "dilation", function)
    if min(stride_pair) <= 0:
        raise RuntimeError("non-positive stride is not supported")
    if min(dilation_pair) <= 0:
        raise RuntimeError("dilation should be greater than zero")
    return stride_pair, dilation_pair


def _run(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    plan: Callable[[Tensor, Tensor, Tensor | None], tuple[_Geometry, torch.Size | None]],
) -> Tensor:
    """What ``conv2d`` and ``conv_transpose2d`` share around the autograd node: unbatched
    input, autocast's cast; ``plan`` checks the cast operands and returns the geometry
    (and the output size of a transposed convolution)."""
    unbatched = input.dim() == 3
    if unbatched:
        input = input.unsqueeze(0)
    device_type = input.device.type
    autocast_dtype = _autocast_dtype(device_type)
    if autocast_dtype is not None:
        # Autocast's cast comes before the dtype check, as for torch's own convolutions:
        # from the second layer on, a bfloat16 activation meets a float32 weight.
        input, weight, bias = (_autocast(t, autocast_dtype) for t in (input, weight, bias))
    geometry, transposed_size = plan(input, weight, bias)
    # The operands are cast already; the primitive's float32 accumulators must stay float32.
    with _autocast_disabled(device_type):
        out = _Convolution.apply(input, weight, bias, geometry, transposed_size)
    return out.squeeze(0) if unbatched else out

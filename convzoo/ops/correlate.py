"""Cross-correlation written by hand: the one primitive behind ``convzoo.ops.conv2d``
and both of its gradients.

With the group axis made explicit, for ``x`` of shape ``(B, G, C, H, W)`` and ``w`` of
shape ``(G, O, C, KH, KW)``::

    out[b, g, o, i, j] = sum_{c, u, v} x~[b, g, c, i*sh + u*dh, j*sw + v*dw] * w[g, o, c, u, v]

where ``x~`` is ``x`` with ``input_dilation - 1`` zeros inserted between neighbours and
then zero-padded (negative padding crops).  Forward pass, weight gradient and input
gradient are all this one sum with different arguments (see ``convzoo/ops/conv2d.py``).

How the sum is evaluated: im2col without building im2col
-------------------------------------------------------
The lecture's Toeplitz view (lecture 000, "convolution as a matrix product") writes the
correlation as one product of the im2col matrix, one column per output position and
one row per (channel, tap), with the flattened kernel.  Its rows come in blocks of
``C``, one block per kernel tap, and each block is the input shifted by that tap's
offset.  Lay the (padded) input on a grid and flatten the grid's rows: the shifted
block is then a *view* of the grid, offset by ``u*grid_width + v``, so the product is
a sum over taps of ``kernel[:, :, u, v] @ view`` with nothing copied.  The positions
that fall in the grid's padding columns are computed and thrown away, which costs
``grid_width / output_width`` (about 4 % at 56x56).

* Stride ``s``: the shifted view would be strided.  Splitting the padded input into
  ``s*s`` phases ``x[p::s, q::s]`` makes every tap a unit-stride view into one phase.
* Input dilation ``e`` (the input gradient of a strided convolution correlates a
  zero-dilated upstream gradient): rather than multiplying by the inserted zeros, the
  output is split into ``e*e`` phases; each phase is a stride-1 correlation with the
  taps that land on real samples (the polyphase form of a transposed convolution).
* Output smaller than the kernel (the weight gradient, whose "kernel" is the upstream
  gradient): the roles of taps and output positions swap.  Loop over the few output
  positions; each is one product over (channel, kernel position), with the kernel
  laid on the same grid (zeros in its padding columns) so that its rows are again a
  view.  Phases then split the input by the kernel dilation instead of the stride.
* Thin contractions (3 input channels in a stem, 1 in depthwise layers): a few taps'
  views are stacked into a real im2col block so each product is wide enough to run
  efficiently; depthwise layers are a per-channel multiply-add.

The work is done a few images at a time (``_CHUNK_BYTES``), so the padded copy of the
input and the output tile stay in cache across the taps and the extra memory is a
chunk, not a tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

Pair = tuple[int, int]

_CHUNK_BYTES = {"cpu": 6 << 20}
"""Working set per chunk of images: about what stays in a CPU's last-level cache slice.
Accelerators take the whole batch at once (kernel launches, not caches, dominate)."""
_ACCELERATOR_CHUNK_BYTES = 1 << 30
_MIN_CONTRACTION = 64
"""A matrix product contracting fewer rows than this is memory-bound: stack taps."""


@dataclass(frozen=True)
class _GridAxis:
    """How one spatial axis of the input is laid on a grid: ``grid[q][m] = x[m*period + q - origin]``."""

    period: int
    origin: int
    length: int


@dataclass(frozen=True)
class _Tap:
    """One kernel tap along one axis: kernel index, input phase it reads, offset in that phase."""

    index: int
    phase: int
    offset: int


@dataclass(frozen=True)
class _OutputPhase:
    """Output positions ``start, start + period, ...`` (``count`` of them) and the taps feeding them."""

    start: int
    count: int
    taps: tuple[_Tap, ...]


@dataclass(frozen=True)
class _TapPlan:
    """One axis evaluated by looping over kernel taps."""

    grid: _GridAxis
    out_period: int
    phases: tuple[_OutputPhase, ...]


@dataclass(frozen=True)
class _PositionPlan:
    """One axis evaluated by looping over output positions: ``(phase, offset)`` for each."""

    grid: _GridAxis
    positions: tuple[tuple[int, int], ...]


def output_size(size: int, kernel: int, stride: int, dilation: int, input_dilation: int, pad: Pair) -> int:
    """Lecture 004's ``floor((N + 2 pad - K) / stride) + 1``, with dilations and uneven padding."""
    span = (size - 1) * input_dilation + 1 + pad[0] + pad[1]
    return (span - dilation * (kernel - 1) - 1) // stride + 1


def _plan_taps(size: int, kernel: int, stride: int, dilation: int, input_dilation: int, pad: Pair) -> _TapPlan:
    out_length = output_size(size, kernel, stride, dilation, input_dilation, pad)
    if input_dilation == 1:
        # Tap u reads padded index i*s + u*d = s*(i + (u*d)//s) + (u*d)%s: phase (u*d)%s, unit stride.
        taps = tuple(_Tap(u, (u * dilation) % stride, (u * dilation) // stride) for u in range(kernel))
        length = out_length + max(tap.offset for tap in taps)
        return _TapPlan(_GridAxis(stride, pad[0], length), 1, (_OutputPhase(0, out_length, taps),))
    if stride != 1:
        raise ValueError("the tap loop takes a stride or an input dilation, not both")
    # Output t = m*e + r reads dilated index t + u*d - pad, a real sample only when that is a multiple of e.
    phases = []
    for start in range(min(input_dilation, out_length)):
        count = -(-(out_length - start) // input_dilation)
        taps = tuple(
            _Tap(u, 0, (start + u * dilation - pad[0]) // input_dilation)
            for u in range(kernel)
            if (start + u * dilation - pad[0]) % input_dilation == 0
        )
        phases.append(_OutputPhase(start, count, taps))
    shift = max([0] + [-tap.offset for phase in phases for tap in phase.taps])
    phases = [
        _OutputPhase(p.start, p.count, tuple(_Tap(t.index, 0, t.offset + shift) for t in p.taps)) for p in phases
    ]
    length = max([1] + [p.count + t.offset for p in phases for t in p.taps])
    return _TapPlan(_GridAxis(1, shift, length), input_dilation, tuple(phases))


def _plan_positions(size: int, kernel: int, stride: int, dilation: int, pad: Pair) -> _PositionPlan:
    out_length = output_size(size, kernel, stride, dilation, 1, pad)
    # Position i, tap u reads padded index i*s + u*d = d*((i*s)//d + u) + (i*s)%d: taps are contiguous in a phase.
    positions = tuple(((i * stride) % dilation, (i * stride) // dilation) for i in range(out_length))
    length = max(offset for _, offset in positions) + kernel
    return _PositionPlan(_GridAxis(dilation, pad[0], length), positions)


# ---------------------------------------------------------------------------------------
# Grids: the padded, phase-split input, a chunk of images at a time
# ---------------------------------------------------------------------------------------


def _empty_grid(shape: tuple[int, ...], rows: bool, like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """A tensor of logical ``shape`` (..., A, G, C, H, W) with channels innermost (``rows``) or spatial innermost."""
    dtype = like.dtype if dtype is None else dtype
    if not rows:
        return torch.empty(shape, dtype=dtype, device=like.device)
    lead = len(shape) - 5
    physical = shape[:lead] + (shape[lead], shape[lead + 3], shape[lead + 4], shape[lead + 1], shape[lead + 2])
    order = tuple(range(lead)) + tuple(lead + i for i in (0, 3, 4, 1, 2))
    inverse = sorted(range(len(order)), key=order.__getitem__)
    return torch.empty(physical, dtype=dtype, device=like.device).permute(inverse)


def _is_grid(t: Tensor, rows: bool) -> bool:
    """Whether ``t`` (A, G, C, H, W) already has the memory layout the spans below need."""
    _, groups, channels, height, width = t.shape
    s_a, s_g, s_c, s_h, s_w = t.stride()
    if s_h != width * s_w:
        return False
    if rows:
        return s_a == height * width * s_w and s_c == 1 and s_g == channels and s_w == groups * channels
    return s_w == 1 and s_c == height * width and s_g == channels * s_c and s_a == groups * s_g


def _axis_copy_range(axis: _GridAxis, phase: int, size: int) -> tuple[int, int, int]:
    """Grid indices [lo, hi) of a phase that hold real samples, and the first sample's index."""
    lo = max(0, -((phase - axis.origin) // axis.period))
    hi = min(axis.length, (size - 1 + axis.origin - phase) // axis.period + 1)
    return lo, max(lo, hi), lo * axis.period + phase - axis.origin


class _Grid:
    """The input phases a computation reads, laid on grids, refilled for each chunk of images.

    Cells that hold no input sample (padding, the grid's spare columns) are zeroed once
    when the buffer is made and never written again.
    """

    def __init__(self, x: Tensor, axes: tuple[_GridAxis, _GridAxis], phases: list[Pair], chunk: int, rows: bool):
        self.x = x
        self.axes = axes
        self.phases = {phase: n for n, phase in enumerate(phases)}
        height, width = x.shape[-2:]
        self.shared = (
            phases == [(0, 0)]
            and all(a.period == 1 and a.origin == 0 for a in axes)
            and (axes[0].length, axes[1].length) == (height, width)
            and _is_grid(x, rows)
        )
        if not self.shared:
            _, groups, channels, _, _ = x.shape
            shape = (len(phases), chunk, groups, channels, axes[0].length, axes[1].length)
            self.buffer = _empty_grid(shape, rows, x).zero_()

    def fill(self, first: int, count: int) -> None:
        if self.shared:
            return
        height, width = self.x.shape[-2:]
        for (phase_h, phase_w), n in self.phases.items():
            lo_h, hi_h, src_h = _axis_copy_range(self.axes[0], phase_h, height)
            lo_w, hi_w, src_w = _axis_copy_range(self.axes[1], phase_w, width)
            if hi_h > lo_h and hi_w > lo_w:
                step_h, step_w = self.axes[0].period, self.axes[1].period
                source = self.x[
                    first : first + count,
                    ...,
                    src_h : src_h + (hi_h - lo_h - 1) * step_h + 1 : step_h,
                    src_w : src_w + (hi_w - lo_w - 1) * step_w + 1 : step_w,
                ]
                self.buffer[n, :count, ..., lo_h:hi_h, lo_w:hi_w].copy_(source)

    def phase(self, phase: Pair, first: int) -> tuple[Tensor, int]:
        """The grid of one phase and the image the current chunk starts at within it."""
        if self.shared:
            return self.x, first
        return self.buffer[self.phases[phase]], 0


def _span(grid: Tensor, first: int, count: int, offset: int, length: int, rows: bool) -> Tensor:
    """Rows ``offset .. offset+length`` of the flattened grid of ``count`` images as matrices.

    ``rows`` layout: consecutive images continue each other's rows, giving one
    ``(C, count*H*W)`` matrix per group, shape ``(G, C, length)``.  Otherwise one matrix
    per (image, group), shape ``(count*G, C, length)`` with ``length`` per image.
    """
    _, groups, channels, _, _ = grid.shape
    s_a, s_g, s_c, _, s_w = grid.stride()
    start = grid.storage_offset() + first * s_a + offset * s_w
    batch = groups if rows else count * groups
    return grid.as_strided((batch, channels, length), (s_g, s_c, s_w), start)


def _images_per_chunk(x: Tensor, bytes_per_image: int) -> int:
    budget = _CHUNK_BYTES.get(x.device.type, _ACCELERATOR_CHUNK_BYTES)
    return max(1, min(x.shape[0], budget // max(1, bytes_per_image)))


def _block_size(items: int, width: int, reduced_precision: bool) -> int:
    """How many taps (or positions) to stack so each product contracts enough rows.

    Reduced precision stacks everything: one product per chunk accumulates in float32
    inside the matrix-multiply kernel instead of rounding to bfloat16 after every tap.
    """
    return items if reduced_precision else max(1, min(items, math.ceil(_MIN_CONTRACTION / width)))


def _blocks(items: list, width: int, reduced_precision: bool) -> list[list]:
    """``items`` cut into consecutive runs of ``_block_size``."""
    size = _block_size(len(items), width, reduced_precision)
    return [items[i : i + size] for i in range(0, len(items), size)]


def _product(out: Tensor, left: Tensor, right: Tensor, accumulate: bool) -> None:
    """``out (+)= left @ right`` for a batch of matrices, written in place (views allowed)."""
    beta = 1 if accumulate else 0
    if out.shape[0] == 1:
        out[0].addmm_(left[0], right[0], beta=beta)
    else:
        out.baddbmm_(left, right, beta=beta)


def _reduced(dtype: torch.dtype) -> bool:
    return dtype in (torch.bfloat16, torch.float16)


# ---------------------------------------------------------------------------------------
# Loop over kernel taps: forward pass and input gradient
# ---------------------------------------------------------------------------------------


def _correlate_by_taps(x: Tensor, w: Tensor, plans: tuple[_TapPlan, _TapPlan], rows: bool, out: Tensor) -> Tensor:
    batch, groups, channels, _, _ = x.shape
    _, out_channels, _, _, _ = w.shape
    plan_h, plan_w = plans
    grid_h, grid_w = plan_h.grid.length, plan_w.grid.length
    phases = sorted(
        {(th.phase, tw.phase) for ph in plan_h.phases for th in ph.taps for pw in plan_w.phases for tw in pw.taps}
    )
    depthwise = channels == 1 and groups > 1
    reduced = _reduced(x.dtype)
    stacked_width = 0 if depthwise else channels * _block_size(w.shape[-1] * w.shape[-2], channels, reduced)
    bytes_per_image = grid_h * grid_w * groups * (channels * len(phases) + out_channels + stacked_width) * x.element_size()
    chunk = _images_per_chunk(x, bytes_per_image)
    grid = _Grid(x, (plan_h.grid, plan_w.grid), phases, chunk, rows)
    per_image = grid_h * grid_w

    jobs = []
    for phase_h in plan_h.phases:
        for phase_w in plan_w.phases:
            taps = [(th, tw) for th in phase_h.taps for tw in phase_w.taps]
            target = out[..., phase_h.start :: plan_h.out_period, phase_w.start :: plan_w.out_period]
            if not taps:
                target.zero_()
                continue
            blocks = [] if depthwise else _blocks(taps, channels, reduced)
            weights = [torch.cat([w[..., th.index, tw.index] for th, tw in block], dim=2) for block in blocks]
            direct = (target.shape[-2:] == (grid_h, grid_w)) and _is_grid(target, rows)
            tile = None if direct else _empty_grid((chunk, groups, out_channels, grid_h, grid_w), rows, x)
            jobs.append((phase_h.count, phase_w.count, taps, blocks, weights, target, tile))

    for first in range(0, batch, chunk):
        count = min(chunk, batch - first)
        grid.fill(first, count)
        for count_h, count_w, taps, blocks, weights, target, tile in jobs:
            last = (count_h - 1) * grid_w + count_w
            length = (count - 1) * per_image + last if rows else last
            if tile is None:
                y, y_first = target, first
            else:
                y, y_first = tile, 0
            y_span = _span(y, y_first, count, 0, length, rows)

            def source(th: _Tap, tw: _Tap) -> Tensor:
                phase_grid, at = grid.phase((th.phase, tw.phase), first)
                return _span(phase_grid, at, count, th.offset * grid_w + tw.offset, length, rows)

            if depthwise:
                # One input channel per group: the product over channels is a per-channel multiply-add.
                for n, (th, tw) in enumerate(taps):
                    kernel = w[..., th.index, tw.index].repeat(1 if rows else count, 1, 1)
                    if n == 0:
                        torch.mul(kernel, source(th, tw), out=y_span)
                    else:
                        y_span.addcmul_(kernel, source(th, tw))
            else:
                for n, (block, weight) in enumerate(zip(blocks, weights)):
                    views = [source(th, tw) for th, tw in block]
                    stacked = views[0] if len(views) == 1 else torch.cat(views, dim=1)
                    _product(y_span, weight.repeat(1 if rows else count, 1, 1), stacked, accumulate=n > 0)
            if tile is not None:
                target[first : first + count].copy_(tile[:count, ..., :count_h, :count_w])
    return out


# ---------------------------------------------------------------------------------------
# Loop over output positions: weight gradient (the "kernel" is the upstream gradient)
# ---------------------------------------------------------------------------------------


def _correlate_by_positions(x: Tensor, w: Tensor, plans: tuple[_PositionPlan, _PositionPlan], rows: bool) -> Tensor:
    batch, groups, channels, _, _ = x.shape
    _, out_channels, _, kernel_h, kernel_w = w.shape
    plan_h, plan_w = plans
    grid_h, grid_w = plan_h.grid.length, plan_w.grid.length
    out_h, out_w = len(plan_h.positions), len(plan_w.positions)
    # The contraction runs over channels and kernel positions, so channels are what is chunked.
    x = x.transpose(0, 2)
    kernel = w.permute(2, 0, 1, 3, 4)
    positions = [(ph, pw) for ph in plan_h.positions for pw in plan_w.positions]
    phases = sorted({(ph[0], pw[0]) for ph, pw in positions})
    dot_products = batch == 1 and out_channels == 1 and groups > 1
    reduced = _reduced(x.dtype)
    stacked = 1 if dot_products else _block_size(len(positions), batch, reduced)
    bytes_per_channel = (
        grid_h * grid_w * groups * (batch * (len(phases) + stacked) + out_channels) * x.element_size()
    )
    chunk = _images_per_chunk(x, bytes_per_channel)
    grid = _Grid(x, (plan_h.grid, plan_w.grid), phases, chunk, rows)
    kernel_axes = (_GridAxis(1, 0, grid_h), _GridAxis(1, 0, grid_w))
    kernel_grid = _Grid(kernel, kernel_axes, [(0, 0)], chunk, rows)

    accumulator = torch.zeros(
        (groups, out_h * out_w, batch, out_channels),
        dtype=torch.float32 if reduced else x.dtype,
        device=x.device,
    )
    per_image = grid_h * grid_w
    last = (kernel_h - 1) * grid_w + kernel_w
    blocks = _blocks(list(range(len(positions))), batch, reduced) if not dot_products else [[p] for p in range(len(positions))]
    for first in range(0, channels, chunk):
        count = min(chunk, channels - first)
        grid.fill(first, count)
        kernel_grid.fill(first, count)
        length = (count - 1) * per_image + last if rows else last
        kernel_at, kernel_first = kernel_grid.phase((0, 0), first)
        kernel_span = _span(kernel_at, kernel_first, count, 0, length, rows).transpose(1, 2)
        for block in blocks:
            views = []
            for p in block:
                (phase_h, offset_h), (phase_w, offset_w) = positions[p]
                phase_grid, at = grid.phase((phase_h, phase_w), first)
                views.append(_span(phase_grid, at, count, offset_h * grid_w + offset_w, length, rows))
            target = accumulator[:, block[0] : block[-1] + 1].reshape(groups, len(block) * batch, out_channels)
            if dot_products:
                partial = (views[0] * kernel_span.transpose(1, 2)).sum(dim=2, keepdim=True)
            else:
                left = views[0] if len(views) == 1 else torch.cat(views, dim=1)
                if rows and not reduced:
                    target.baddbmm_(left, kernel_span) if groups > 1 else target[0].addmm_(left[0], kernel_span[0])
                    continue
                partial = torch.bmm(left, kernel_span)
            if not rows:
                partial = partial.view(count, groups, *partial.shape[1:]).sum(dim=0)
            target.add_(partial)
    out = accumulator.view(groups, out_h, out_w, batch, out_channels).permute(3, 0, 4, 1, 2)
    return out.to(x.dtype)


# ---------------------------------------------------------------------------------------
# The primitive
# ---------------------------------------------------------------------------------------


def correlate(
    x: Tensor,
    w: Tensor,
    *,
    stride: Pair = (1, 1),
    padding: tuple[Pair, Pair] = ((0, 0), (0, 0)),
    dilation: Pair = (1, 1),
    input_dilation: Pair = (1, 1),
    channels_last: bool = False,
) -> Tensor:
    """Grouped cross-correlation ``(B, G, C, H, W) x (G, O, C, KH, KW) -> (B, G, O, OH, OW)``.

    ``padding`` is ``((top, bottom), (left, right))`` and may be negative (cropping);
    ``input_dilation`` inserts ``e - 1`` zeros between input samples (XLA's "lhs
    dilation").  ``channels_last`` asks for an output whose memory has channels
    innermost.  Every float dtype and device that has matrix products works.
    """
    batch, groups, channels, height, width = x.shape
    w_groups, out_channels, w_channels, kernel_h, kernel_w = w.shape
    if (w_groups, w_channels) != (groups, channels):
        raise ValueError(f"kernel {tuple(w.shape)} does not fit input {tuple(x.shape)}")
    size_h = output_size(height, kernel_h, stride[0], dilation[0], input_dilation[0], padding[0])
    size_w = output_size(width, kernel_w, stride[1], dilation[1], input_dilation[1], padding[1])
    if size_h <= 0 or size_w <= 0:
        raise ValueError(f"kernel {tuple(w.shape[-2:])} with this padding does not fit input {(height, width)}")

    if input_dilation != (1, 1) and (stride != (1, 1) or size_h * size_w < kernel_h * kernel_w):
        # Neither loop below takes a stride together with an input dilation; the
        # convolution's own gradients never ask for it, so insert the zeros for real.
        dilated = x.new_zeros(*x.shape[:3], (height - 1) * input_dilation[0] + 1, (width - 1) * input_dilation[1] + 1)
        dilated[..., :: input_dilation[0], :: input_dilation[1]] = x
        return correlate(
            dilated, w, stride=stride, padding=padding, dilation=dilation, channels_last=channels_last
        )

    if batch == 0 or out_channels == 0:
        return x.new_zeros(batch, groups, out_channels, size_h, size_w)
    rows = channels_last
    if size_h * size_w < kernel_h * kernel_w:
        plans = (
            _plan_positions(height, kernel_h, stride[0], dilation[0], padding[0]),
            _plan_positions(width, kernel_w, stride[1], dilation[1], padding[1]),
        )
        return _correlate_by_positions(x, w, plans, rows)
    plans = (
        _plan_taps(height, kernel_h, stride[0], dilation[0], input_dilation[0], padding[0]),
        _plan_taps(width, kernel_w, stride[1], dilation[1], input_dilation[1], padding[1]),
    )
    out = _empty_grid((batch, groups, out_channels, size_h, size_w), channels_last, x)
    return _correlate_by_taps(x, w, plans, rows, out)

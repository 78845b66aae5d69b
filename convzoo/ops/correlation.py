"""Cross-correlation written by hand: the one primitive behind ``convzoo.ops.conv2d``
and both of its gradients.

With the group axis made explicit, for ``x`` of shape ``(B, G, C, H, W)`` and ``w`` of
shape ``(G, O, C, KH, KW)``::

    out[b, g, o, i, j] = sum_{c, u, v} x~[b, g, c, i*sh + u*dh, j*sw + v*dw] * w[g, o, c, u, v]

where ``x~`` is ``x`` with ``input_dilation - 1`` zeros inserted between neighbours and
then zero-padded (negative padding crops).  Forward pass, weight gradient and input
gradient are all this one sum with different arguments (see ``convzoo/ops/convolution.py``).

How the sum is evaluated: im2col, mostly without building it
------------------------------------------------------------
The lecture's Toeplitz view (lecture 000, "convolution as a matrix product") writes the
correlation as one product of the im2col matrix, one column per output position and
one row per (channel, tap), with the flattened kernel.  Its rows come in blocks of
``C``, one block per kernel tap, and each block is the input shifted by that tap's
offset.  Every evaluation below is that product, blocked differently:

* Shifted (the default for wide maps): lay the padded input on a grid and flatten its
  rows; a tap's block is then a *view* of the grid, offset by ``u*grid_width + v``, and
  the product is a sum over taps of ``kernel[:, :, u, v] @ view`` with nothing copied.
  Cells in the grid's spare columns are computed and thrown away (4 % at 56x56).
* Gathered (small maps, thin channels, bfloat16): copy the taps' windows into a real
  im2col block, a chunk of images at a time, and make one wide product.  Taps reading
  one phase at evenly spaced offsets (a lattice, ``convzoo.ops.plans``) are one strided
  view, so the block is filled by a copy per lattice, not per tap.
* Depthwise (one channel per group): the product over channels is a per-channel
  multiply-add, over windows or over grid spans.
* Clipped (input much smaller than its padding, as in LeNet's C5 input gradient): each
  tap multiplies only the output cells where it reads input samples.
* Stride ``s``: splitting the padded input into ``s*s`` phases ``x[p::s, q::s]`` makes
  every tap read a unit-stride window of one phase.
* Input dilation ``e`` (the input gradient of a strided convolution correlates a
  zero-dilated upstream gradient): rather than multiplying the inserted zeros, the
  output is split into ``e*e`` phases, each a stride-1 correlation with the taps that
  land on real samples (the polyphase form of a transposed convolution).
* Output smaller than the kernel (the weight gradient, whose "kernel" is the upstream
  gradient): taps and output positions swap roles.  Loop over the few output
  positions, each one product over (channel, kernel cell), the kernel laid on the same
  grid so its rows are again a view; phases now split the input by the dilation.

Layout: grids keep channels innermost ("rows": one tall matrix per chunk of images) or
each image's spatial plane innermost ("planes"), whichever avoids transposing copies
for the shape at hand (``_PLANES_MIN_CELLS``).  Work goes a chunk of images at a time
(``_CHUNK_BYTES``), so the grid and output tile stay in cache across the taps and the
scratch memory is a chunk, never a multiple of a tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from convzoo.ops.plans import (
    GridAxis,
    Lattice,
    Pair,
    PositionPlan,
    Tap,
    TapPlan,
    group_into_lattices,
    output_size,
    plan_positions,
    plan_taps,
    reading_samples,
    real_cells,
    share_reading_samples,
)

_CHUNK_BYTES = {"cpu": 6 << 20}
"""Working set per chunk of images: about what stays in a CPU's last-level cache slice.
Accelerators take the whole batch at once (kernel launches, not caches, dominate)."""
_ACCELERATOR_CHUNK_BYTES = 1 << 30
_MIN_CHUNK_BYTES = 1 << 20
_MIN_CONTRACTION = 32
"""Products contracting fewer channels than this are memory-bound: gather taps into one."""
_MAX_WASTE = 1.1
"""Gather when a grid has more than this many cells per output cell (small images)."""
_MIN_SAMPLES_READ = 0.3
"""Below this share of products that read input samples rather than padding, clip each tap."""
_DEPTHWISE_SPAN_WIDTH = 32
"""Depthwise layers on channels-first maps narrower than this multiply grid spans, not windows."""
_PLANES_MIN_CELLS = 14 * 14
"""Channels-first 1x1 convolutions of maps at least this large are multiplied plane by plane
(no transposing copy: measured 1.2-2.5x faster); rows win on smaller maps and for 3x3
kernels.  Thin channels (the stem, LeNet) stay in planes at any size."""


# ---------------------------------------------------------------------------------------
# Grids: the padded, phase-split input, a chunk of images at a time
# ---------------------------------------------------------------------------------------


def _empty_grid(shape: tuple[int, ...], rows: bool, like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """A tensor of logical ``shape`` (..., A, G, C, H, W) with channels innermost (``rows``) or spatial innermost."""
    dtype = dtype or like.dtype
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


class _Grid:
    """The input phases a computation reads, laid on grids, refilled for each chunk of images.

    Cells that hold no input sample (padding, the grid's spare columns) are zeroed once
    when the buffer is made and never written again.
    """

    def __init__(self, x: Tensor, axes: tuple[GridAxis, GridAxis], phases: list[Pair], chunk: int, rows: bool):
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
            lo_h, hi_h, src_h = real_cells(self.axes[0], phase_h, height)
            lo_w, hi_w, src_w = real_cells(self.axes[1], phase_w, width)
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


def _budget(x: Tensor, *operands: Tensor) -> int:
    """Bytes of scratch buffers per chunk: a cache's worth, but never much more than the operands
    themselves (a small layer's buffers would otherwise dwarf its tensors)."""
    device_budget = _CHUNK_BYTES.get(x.device.type, _ACCELERATOR_CHUNK_BYTES)
    operand_bytes = sum(t.numel() * t.element_size() for t in operands)
    return min(device_budget, max(_MIN_CHUNK_BYTES, operand_bytes))


def _images_per_chunk(images: int, bytes_per_image: int, budget: int) -> int:
    return max(1, min(images, budget // max(1, bytes_per_image)))


def _rows_per_band(bytes_per_image: int, height: int, budget: int) -> int:
    """Rows of an im2col block to fill at a time when even one image's block is over budget."""
    return max(1, min(height, height * budget // max(1, bytes_per_image)))


def _gather(contraction: int, grid_cells: int, used_cells: int, dtype: torch.dtype) -> bool:
    """Whether to copy exact windows into an im2col block instead of multiplying grid views.

    Views cost nothing to make, but each product then contracts only ``contraction``
    channels and also computes the grid's spare cells; a gathered block costs a copy
    and buys one wide product over exactly the cells needed.  Reduced precision always
    gathers: one product accumulates in float32 inside the matrix-multiply kernel
    instead of rounding to bfloat16 after every tap.
    """
    return contraction < _MIN_CONTRACTION or grid_cells > _MAX_WASTE * used_cells or _reduced(dtype)


def _product(out: Tensor, left: Tensor, right: Tensor, accumulate: bool) -> None:
    """``out (+)= left @ right`` for a batch of matrices, written in place (views allowed)."""
    if left.shape[2] == 1:  # one channel per group (depthwise): the product is a broadcast multiply
        if accumulate:
            out.addcmul_(left, right)
        else:
            torch.mul(left, right, out=out)
        return
    beta = 1 if accumulate else 0
    if out.shape[0] == 1:
        out[0].addmm_(left[0], right[0], beta=beta)
    else:
        out.baddbmm_(left, right, beta=beta)


def _per_image(weight: Tensor, count: int) -> Tensor:
    """``weight`` (G, O, C) repeated for ``count`` images, as (count*G, O, C); a view when G == 1."""
    if weight.shape[0] == 1:
        return weight.expand(count, -1, -1)
    return weight.repeat(count, 1, 1)


def _copy(target: Tensor, source: Tensor) -> None:
    """``target.copy_(source)``; from rows to planes, image by image as 2-D transposes.

    torch's blocked 2-D transpose is about twice as fast as its generic strided copy
    for this change of layout, which every channels-first output computed in rows needs.
    """
    if not (_is_grid(target, rows=False) and _is_grid(source, rows=True)):
        target.copy_(source)
        return
    _, groups, channels, height, width = target.shape
    for image in range(target.shape[0]):
        by_cell = source[image].permute(2, 3, 0, 1).reshape(height * width, groups * channels)
        target[image].view(groups * channels, height * width).copy_(by_cell.t())


def _reduced(dtype: torch.dtype) -> bool:
    return dtype in (torch.bfloat16, torch.float16)


# ---------------------------------------------------------------------------------------
# Loop over kernel taps: forward pass and input gradient
# ---------------------------------------------------------------------------------------


@dataclass
class _TapJob:
    """One output phase: the taps that feed it and where its result goes."""

    taps: list[tuple[Tap, Tap]]
    lattices: list[tuple[Lattice, Lattice]]
    """``taps`` come lattice pair by lattice pair, in this order."""
    target: Tensor
    """The output positions of this phase, (B, G, O, count_h, count_w), a view of the output."""
    method: str
    """"shifted" (grid views), "gathered" (im2col block) or "depthwise" (per-channel multiply-add)."""
    weight: Tensor
    tile: Tensor | None = None
    columns: Tensor | None = None
    band: int = 0
    """Output rows gathered at a time (when one image's im2col block is over budget)."""


def _correlate_by_taps(x: Tensor, w: Tensor, plans: tuple[TapPlan, TapPlan], rows: bool, out: Tensor) -> Tensor:
    batch, groups, channels, _, _ = x.shape
    _, out_channels, _, kernel_h, kernel_w = w.shape
    plan_h, plan_w = plans
    grid_h, grid_w = plan_h.grid.length, plan_w.grid.length
    phases = sorted(
        {(th.phase, tw.phase) for ph in plan_h.phases for th in ph.taps for pw in plan_w.phases for tw in pw.taps}
    )
    specs = []
    for phase_h in plan_h.phases:
        for phase_w in plan_w.phases:
            target = out[..., phase_h.start :: plan_h.out_period, phase_w.start :: plan_w.out_period]
            # Taps ordered lattice by lattice, so that each lattice's windows are one block of im2col rows.
            lattices = [
                (lattice_h, lattice_w)
                for lattice_h in group_into_lattices([(t.phase, t.offset) for t in phase_h.taps])
                for lattice_w in group_into_lattices([(t.phase, t.offset) for t in phase_w.taps])
            ]
            taps = [
                (phase_h.taps[i], phase_w.taps[j]) for lh, lw in lattices for i in lh.members for j in lw.members
            ]
            if not taps:
                target.zero_()
            elif channels == 1 and groups > 1:
                # Per-channel multiply-adds: over exact windows, or over grid spans when a channels-first
                # map is too narrow for a window's rows to make a long inner loop.
                narrow_planes = not rows and phase_w.count < _DEPTHWISE_SPAN_WIDTH
                specs.append((taps, lattices, target, "shifted" if narrow_planes else "depthwise"))
            elif _gather(channels, grid_h * grid_w, phase_h.count * phase_w.count, x.dtype):
                specs.append((taps, lattices, target, "gathered"))
            else:
                specs.append((taps, lattices, target, "shifted"))
    cells = grid_h * grid_w
    bytes_per_image = groups * x.element_size() * (
        cells * (channels * len(phases) + out_channels)
        + sum(len(taps) * channels * target.shape[-2] * target.shape[-1] for taps, _, target, how in specs if how == "gathered")
    )
    budget = _budget(x, x, out)
    chunk = _images_per_chunk(batch, bytes_per_image, budget)
    # Tap-major, channels innermost: each tap's (G, O, C) slice is contiguous, all taps in a row are (G, O, T*C).
    by_tap = w.permute(0, 1, 3, 4, 2).contiguous()
    natural_order = [(u, v) for u in range(kernel_h) for v in range(kernel_w)]
    jobs = []
    for taps, lattices, target, method in specs:
        size = target.shape[-2:]
        if method == "depthwise":
            weight = w[..., 0, :, :]
        elif [(th.index, tw.index) for th, tw in taps] == natural_order:
            weight = by_tap.flatten(2)
        else:
            weight = torch.cat([by_tap[:, :, th.index, tw.index] for th, tw in taps], dim=2)
        job = _TapJob(taps, lattices, target, method, weight)
        if method == "gathered":
            block_bytes = groups * len(taps) * channels * size[0] * size[1] * x.element_size()
            job.band = _rows_per_band(block_bytes, size[0], budget) if chunk == 1 else size[0]
            job.columns = _empty_grid((chunk, groups, len(taps) * channels, job.band, size[1]), rows, x)
            if not _is_grid(target, rows):
                job.tile = _empty_grid((chunk, groups, out_channels, *size), rows, x)
        elif method == "shifted" and _reduced(x.dtype):
            # Only depthwise layers take grid views in reduced precision (see _gather): their
            # taps are summed by multiply-adds, into a float32 tile rounded once at the end.
            job.tile = _empty_grid((chunk, groups, out_channels, grid_h, grid_w), rows, x, torch.float32)
        elif method == "shifted" and not (size == (grid_h, grid_w) and _is_grid(target, rows)):
            job.tile = _empty_grid((chunk, groups, out_channels, grid_h, grid_w), rows, x)
        jobs.append(job)

    grid = _Grid(x, (plan_h.grid, plan_w.grid), phases, chunk, rows)
    run = {"shifted": _shifted_taps, "gathered": _gathered_taps, "depthwise": _depthwise_taps}
    for first in range(0, batch, chunk):
        count = min(chunk, batch - first)
        grid.fill(first, count)
        for job in jobs:
            run[job.method](job, grid, first, count, rows)
    return out


def _window(grid: _Grid, tap: tuple[Tap, Tap], first: int, count: int, size: Pair, top: int = 0) -> Tensor:
    """The input cells tap ``tap`` multiplies for ``count`` images, from output row ``top``: (count, G, C, *size)."""
    tap_h, tap_w = tap
    phase_grid, at = grid.phase((tap_h.phase, tap_w.phase), first)
    start_h = tap_h.offset + top
    return phase_grid[at : at + count, ..., start_h : start_h + size[0], tap_w.offset : tap_w.offset + size[1]]


def _lattice_windows(
    grid: _Grid, lattices: tuple[Lattice, Lattice], first: int, count: int, size: Pair, top: int = 0
) -> Tensor:
    """The windows of every tap in a pair of lattices, one strided view: (count, G, nh, nw, C, *size)."""
    lattice_h, lattice_w = lattices
    phase_grid, at = grid.phase((lattice_h.phase, lattice_w.phase), first)
    _, groups, channels, _, _ = phase_grid.shape
    s_a, s_g, s_c, s_h, s_w = phase_grid.stride()
    start = phase_grid.storage_offset() + at * s_a + (lattice_h.start + top) * s_h + lattice_w.start * s_w
    shape = (count, groups, len(lattice_h.members), len(lattice_w.members), channels, *size)
    strides = (s_a, s_g, lattice_h.step * s_h, lattice_w.step * s_w, s_c, s_h, s_w)
    return phase_grid.as_strided(shape, strides, start)


def _shifted_taps(job: _TapJob, grid: _Grid, first: int, count: int, rows: bool) -> None:
    """Sum over taps of ``kernel[tap] @ (grid rows shifted by the tap)``: im2col's blocks as views."""
    count_h, count_w = job.target.shape[-2:]
    grid_h, grid_w = grid.axes[0].length, grid.axes[1].length
    last = (count_h - 1) * grid_w + count_w
    length = (count - 1) * grid_h * grid_w + last if rows else last
    y, y_first = (job.target, first) if job.tile is None else (job.tile, 0)
    y_span = _span(y, y_first, count, 0, length, rows)
    channels = job.weight.shape[2] // len(job.taps)
    for n, (tap_h, tap_w) in enumerate(job.taps):
        phase_grid, at = grid.phase((tap_h.phase, tap_w.phase), first)
        source = _span(phase_grid, at, count, tap_h.offset * grid_w + tap_w.offset, length, rows)
        kernel = _per_image(job.weight[..., n * channels : (n + 1) * channels], 1 if rows else count)
        _product(y_span, kernel, source, accumulate=n > 0)
    if job.tile is not None:
        _copy(job.target[first : first + count], job.tile[:count, ..., :count_h, :count_w])


def _gathered_taps(job: _TapJob, grid: _Grid, first: int, count: int, rows: bool) -> None:
    """Copy every tap's window into one im2col block, then one product over all taps."""
    height, width = job.target.shape[-2:]
    channels = job.weight.shape[2] // len(job.taps)
    y, y_first = (job.target, first) if job.tile is None else (job.tile, 0)
    weight = _per_image(job.weight, 1 if rows else count)
    for top in range(0, height, job.band):
        band = min(job.band, height - top)
        row = 0
        for lattices in job.lattices:
            windows = _lattice_windows(grid, lattices, first, count, (band, width), top)
            taps_here = windows.shape[2] * windows.shape[3]
            block = job.columns[:count, :, row : row + taps_here * channels, :band]
            block.unflatten(2, windows.shape[2:5]).copy_(windows)
            row += taps_here * channels
        cells = band * width * (count if rows else 1)
        columns = _span(job.columns, 0, count, 0, cells, rows)
        _product(_span(y, y_first, count, top * width, cells, rows), weight, columns, accumulate=False)
    if job.tile is not None:
        _copy(job.target[first : first + count], job.tile[:count])


def _depthwise_taps(job: _TapJob, grid: _Grid, first: int, count: int, rows: bool) -> None:
    """One input channel per group: the product over channels is a per-channel multiply-add.

    Reduced precision sums the taps in float32 and rounds once, as the gathered product does.
    """
    y = job.target[first : first + count]
    total = torch.zeros(y.shape, dtype=torch.float32, device=y.device) if _reduced(y.dtype) else y
    for n, tap in enumerate(job.taps):
        kernel = job.weight[..., tap[0].index, tap[1].index].unsqueeze(-1).unsqueeze(-1)
        window = _window(grid, tap, first, count, y.shape[-2:])
        if n == 0 and total is y:
            torch.mul(window, kernel, out=y)
        else:
            total.addcmul_(window, kernel)
    if total is not y:
        y.copy_(total)


# ---------------------------------------------------------------------------------------
# Mostly padding: each tap over just the output cells where it reads input samples
# ---------------------------------------------------------------------------------------


def _correlate_clipped(x: Tensor, w: Tensor, plans: tuple[TapPlan, TapPlan], out: Tensor) -> Tensor:
    """The same sum over taps, each tap restricted to the output cells where it reads samples.

    For a small input padded up to a large output (the input gradient of a convolution
    whose output was much smaller than its input: LeNet's C5 pads a 1x1 gradient to 9x9)
    the grid would be mostly zeros; here the padding is never multiplied.
    """
    (phase_h,), (phase_w,) = plans[0].phases, plans[1].phases
    period_h, period_w = plans[0].grid.period, plans[1].grid.period
    # Reduced precision: each tap's product and the sum over taps in float32, rounded once at the end.
    compute = torch.float32 if _reduced(x.dtype) else x.dtype
    total = torch.zeros(out.shape, dtype=compute, device=out.device) if compute != out.dtype else out.zero_()
    for tap_h in phase_h.taps:
        lo_h, hi_h, source_h = reading_samples(plans[0].grid, tap_h, phase_h.count, x.shape[-2])
        for tap_w in phase_w.taps:
            lo_w, hi_w, source_w = reading_samples(plans[1].grid, tap_w, phase_w.count, x.shape[-1])
            if hi_h == lo_h or hi_w == lo_w:
                continue
            samples = x[
                ...,
                source_h : source_h + (hi_h - lo_h - 1) * period_h + 1 : period_h,
                source_w : source_w + (hi_w - lo_w - 1) * period_w + 1 : period_w,
            ]
            # Images and cells side by side as the product's columns: one (O, C) x (C, B*cells) per group.
            batch, groups, channels, rows, columns = samples.shape
            by_channel = samples.permute(1, 2, 0, 3, 4).reshape(groups, channels, -1).to(compute)
            product = torch.bmm(w[..., tap_h.index, tap_w.index].to(compute), by_channel)
            total[..., lo_h:hi_h, lo_w:hi_w] += product.view(groups, -1, batch, rows, columns).permute(2, 0, 1, 3, 4)
    return out if total is out else out.copy_(total)


# ---------------------------------------------------------------------------------------
# Loop over output positions: weight gradient (the "kernel" is the upstream gradient)
# ---------------------------------------------------------------------------------------


def _correlate_by_positions(x: Tensor, w: Tensor, plans: tuple[PositionPlan, PositionPlan], rows: bool) -> Tensor:
    batch, groups, channels, _, _ = x.shape
    _, out_channels, _, kernel_h, kernel_w = w.shape
    plan_h, plan_w = plans
    grid_h, grid_w = plan_h.grid.length, plan_w.grid.length
    out_h, out_w = len(plan_h.positions), len(plan_w.positions)
    # Positions ordered lattice by lattice (one strided view gathers a lattice's windows).
    lattices = [(lh, lw) for lh in group_into_lattices(list(plan_h.positions)) for lw in group_into_lattices(list(plan_w.positions))]
    order = [(i, j) for lh, lw in lattices for i in lh.members for j in lw.members]
    positions = [(plan_h.positions[i], plan_w.positions[j]) for i, j in order]
    phases = sorted({(ph[0], pw[0]) for ph, pw in positions})
    # The contraction runs over channels and kernel cells, so chunks are of channels.
    x = x.transpose(0, 2)
    kernel = w.permute(2, 0, 1, 3, 4)
    reduced = _reduced(x.dtype)
    if batch == 1 and groups > 1:  # depthwise: see _correlate_by_taps
        method = "shifted" if not rows and kernel_w < _DEPTHWISE_SPAN_WIDTH else "depthwise"
    elif _gather(batch, grid_h * grid_w, kernel_h * kernel_w, x.dtype):
        method = "gathered"
    else:
        method = "shifted"
    kernel_size = (kernel_h, kernel_w) if method != "shifted" else (grid_h, grid_w)
    cells = grid_h * grid_w
    bytes_per_channel = groups * x.element_size() * (
        cells * batch * len(phases)
        + kernel_size[0] * kernel_size[1] * out_channels
        + (len(positions) * batch * kernel_h * kernel_w if method == "gathered" else 0)
    )
    budget = _budget(x, x, kernel)
    chunk = _images_per_chunk(channels, bytes_per_channel, budget)
    grid = _Grid(x, (plan_h.grid, plan_w.grid), phases, chunk, rows)
    kernel_grid = _Grid(kernel, tuple(GridAxis(1, 0, n) for n in kernel_size), [(0, 0)], chunk, rows)
    columns = None
    band = kernel_h
    if method == "gathered":
        block_bytes = groups * len(positions) * batch * kernel_h * kernel_w * x.element_size()
        band = _rows_per_band(block_bytes, kernel_h, budget) if chunk == 1 else kernel_h
        columns = _empty_grid((chunk, groups, len(positions) * batch, band, kernel_w), rows, x)

    accumulator = torch.zeros(
        (groups, out_h * out_w, batch, out_channels),
        dtype=torch.float32 if reduced else x.dtype,
        device=x.device,
    )
    for first in range(0, channels, chunk):
        count = min(chunk, channels - first)
        grid.fill(first, count)
        kernel_grid.fill(first, count)
        kernel_at, kernel_first = kernel_grid.phase((0, 0), first)
        kernel_chunk = kernel_at[kernel_first : kernel_first + count]
        if method == "depthwise":
            for p, ((phase_h, offset_h), (phase_w, offset_w)) in enumerate(positions):
                tap = (Tap(0, phase_h, offset_h), Tap(0, phase_w, offset_w))
                window = _window(grid, tap, first, count, (kernel_h, kernel_w))
                accumulator[:, p, 0] += (window * kernel_chunk).sum(dim=(0, 3, 4), dtype=accumulator.dtype)
        elif method == "gathered":
            for top in range(0, kernel_h, band):
                rows_here = min(band, kernel_h - top)
                row = 0
                for pair in lattices:
                    windows = _lattice_windows(grid, pair, first, count, (rows_here, kernel_w), top)
                    block = columns[:count, :, row : row + windows.shape[2] * windows.shape[3] * batch, :rows_here]
                    block.unflatten(2, windows.shape[2:5]).copy_(windows)
                    row += windows.shape[2] * windows.shape[3] * batch
                used = rows_here * kernel_w * (count if rows else 1)
                left = _span(columns, 0, count, 0, used, rows)
                right = _span(kernel_at, kernel_first, count, top * kernel_w, used, rows).transpose(1, 2)
                _accumulate(accumulator.view(groups, -1, out_channels), left, right, count=1 if rows else count)
        else:
            last = (kernel_h - 1) * grid_w + kernel_w
            length = (count - 1) * cells + last if rows else last
            right = _span(kernel_at, kernel_first, count, 0, length, rows).transpose(1, 2)
            for p, ((phase_h, offset_h), (phase_w, offset_w)) in enumerate(positions):
                phase_grid, at = grid.phase((phase_h, phase_w), first)
                left = _span(phase_grid, at, count, offset_h * grid_w + offset_w, length, rows)
                _accumulate(accumulator[:, p], left, right, count=1 if rows else count)
    natural = [i * out_w + j for i, j in order]
    if natural != sorted(natural):
        accumulator = accumulator[:, sorted(range(len(natural)), key=natural.__getitem__)]
    out = accumulator.reshape(groups, out_h, out_w, batch, out_channels).permute(3, 0, 4, 1, 2)
    return out.to(x.dtype)


def _accumulate(target: Tensor, left: Tensor, right: Tensor, count: int) -> None:
    """``target += sum over images of left @ right``; ``left`` and ``right`` hold ``count`` images per group."""
    if count == 1 and target.dtype == left.dtype:
        _product(target, left, right, accumulate=True)
        return
    if left.shape[1] == right.shape[2] == 1:  # depthwise: dot products, not a batch of 1x1 matrix products
        partial = (left * right.transpose(1, 2)).sum(dim=2, keepdim=True, dtype=target.dtype)
    else:
        partial = torch.bmm(left, right)
    target += partial.view(count, -1, *partial.shape[1:]).sum(dim=0, dtype=target.dtype)


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
    out: Tensor | None = None,
) -> Tensor:
    """Grouped cross-correlation ``(B, G, C, H, W) x (G, O, C, KH, KW) -> (B, G, O, OH, OW)``.

    ``padding`` is ``((top, bottom), (left, right))`` and may be negative (cropping);
    ``input_dilation`` inserts ``e - 1`` zeros between input samples (XLA's "lhs
    dilation").  ``channels_last`` asks for an output whose memory has channels
    innermost; ``out``, if given, receives the result.  Every float dtype and device
    that has matrix products works.
    """
    batch, groups, channels, height, width = x.shape
    w_groups, out_channels, w_channels, kernel_h, kernel_w = w.shape
    if (w_groups, w_channels) != (groups, channels):
        raise ValueError(f"kernel {tuple(w.shape)} does not fit input {tuple(x.shape)}")
    size_h = output_size(height, kernel_h, stride[0], dilation[0], input_dilation[0], padding[0])
    size_w = output_size(width, kernel_w, stride[1], dilation[1], input_dilation[1], padding[1])
    if size_h <= 0 or size_w <= 0:
        raise ValueError(f"kernel {tuple(w.shape[-2:])} with this padding does not fit input {(height, width)}")
    if out is not None and out.shape != (batch, groups, out_channels, size_h, size_w):
        raise ValueError(f"out has shape {tuple(out.shape)}, the result {(batch, groups, out_channels, size_h, size_w)}")

    if input_dilation != (1, 1) and (stride != (1, 1) or size_h * size_w < kernel_h * kernel_w):
        # Neither loop below takes a stride together with an input dilation; the
        # convolution's own gradients never ask for it, so insert the zeros for real.
        dilated = x.new_zeros(*x.shape[:3], (height - 1) * input_dilation[0] + 1, (width - 1) * input_dilation[1] + 1)
        dilated[..., :: input_dilation[0], :: input_dilation[1]] = x
        return correlate(
            dilated, w, stride=stride, padding=padding, dilation=dilation, channels_last=channels_last, out=out
        )

    if out is None:
        out = _empty_grid((batch, groups, out_channels, size_h, size_w), channels_last, x)
    if out.numel() == 0 or channels == 0:
        return out.zero_()
    by_positions = size_h * size_w < kernel_h * kernel_w
    if by_positions:  # channels are the contraction, chunked: laid out as (C, G, B, H, W)
        planes = _is_grid(x.transpose(0, 2), rows=False)
        thin, pointwise = batch < _MIN_CONTRACTION, (size_h, size_w) == (1, 1)
        cells = min(height * width, kernel_h * kernel_w)
    else:
        planes = _is_grid(x, rows=False)
        thin, pointwise = channels < _MIN_CONTRACTION, (kernel_h, kernel_w) == (1, 1)
        cells = min(height * width, size_h * size_w)
    rows = channels_last or not planes or not (thin or (pointwise and cells >= _PLANES_MIN_CELLS))
    if by_positions:
        plans = (
            plan_positions(height, kernel_h, stride[0], dilation[0], padding[0]),
            plan_positions(width, kernel_w, stride[1], dilation[1], padding[1]),
        )
        return out.copy_(_correlate_by_positions(x, w, plans, rows))
    plans = (
        plan_taps(height, kernel_h, stride[0], dilation[0], input_dilation[0], padding[0]),
        plan_taps(width, kernel_w, stride[1], dilation[1], input_dilation[1], padding[1]),
    )
    if input_dilation == (1, 1) and share_reading_samples(plans, (height, width)) < _MIN_SAMPLES_READ:
        return _correlate_clipped(x, w, plans, out)
    return _correlate_by_taps(x, w, plans, rows, out)

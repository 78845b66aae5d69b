"""RoI pooling and RoI align with ``torchvision.ops``' signatures, forward and backward by hand.

Both ops cut a fixed ``output_size`` grid of features out of every region of interest
(RoI) of a feature map, so that a detector's head sees the same shape whatever the
region's size.  A region is a box ``(batch_index, x1, y1, x2, y2)`` in image
coordinates; ``spatial_scale`` maps it onto the feature map (1/16 for a stride-16
backbone).

* RoI pooling (Girshick, Fast R-CNN, 2015, section 2.1) rounds the box to whole
  feature-map cells, splits it into ``output_size`` bins (3x3, say, whatever the box's
  size) of about ``height/3 x width/3`` cells each and takes each bin's maximum.  A 4x6 region pooled to 3x3 gets bins of 4/3 x 2 cells:
  the bin rows are ``[floor(i*4/3), ceil((i+1)*4/3))``, so neighbouring bins share a row.
  Its gradient is the upstream gradient routed to each bin's argmax cell.

* RoI align (He et al., Mask R-CNN, 2017, section 3) keeps the box's fractional
  coordinates, and averages ``sampling_ratio x sampling_ratio`` bilinearly interpolated
  points per bin (``ceil(bin size)`` points per axis when ``sampling_ratio <= 0``, so the
  number of points varies by RoI).  ``aligned=True`` shifts the box by half a cell so
  that a pixel's centre, not its corner, sits at integer coordinates.  Its gradient is
  the upstream gradient spread back over the four neighbours of every sample with the
  same bilinear weights.

Every detail that decides a number follows torchvision's kernels, so the results agree:
box corners rounded half away from zero (C's ``round``) for RoI pooling, malformed
(inverted, zero-size) boxes forced to one cell (pooling) or one unit (align, unless
``aligned``), bins clipped to the map and empty bins giving 0, samples further than one
cell outside the map giving 0 and nearer ones clamped onto the border.  One difference:
with ``aligned=True`` and adaptive sampling an inverted box has a negative sample count,
which torchvision's CPU kernel rejects ("cannot create std::vector larger than
max_size()") and its CUDA kernel pools to 0; here it pools to 0 on every device.

Vectorisation.  Neither op loops over RoIs or bins in Python:

* RoI pooling answers every bin's maximum from a 2-D sparse table (range-maximum query):
  table ``(i, j)`` holds the maximum, and its first position, of each ``2^i x 2^j``
  block of the map, and any bin is covered by four such blocks.  Building the tables
  costs ``log(bin height) * log(bin width)`` passes over the map, after which each bin
  costs four gathers whatever its size.  Ties keep the first position in row-major
  order, as torchvision's strict ``>`` scan does, so the gradients land on the same cell.
  Only the channels are chunked (a Python loop over channel groups) to bound the
  tables' memory.
* RoI align gathers the four neighbours of every sample of every bin at once and sums
  them with their bilinear weights (one ``einsum``).  With adaptive sampling the grid
  differs per RoI: RoIs whose grids round up to the same powers of two form a group,
  padded to its largest grid with zero-weight samples, and groups are cut to bounded
  memory (a Python loop over these few groups, not over RoIs).

Both work in the input's dtype, as torchvision's kernels do, except that RoI align
computes half-precision inputs (float16, bfloat16) in float32 and rounds the result
once, so its averages accumulate in float32 (torchvision's CPU kernel rounds every step
to float16 and has no bfloat16).  RoI pooling has nothing to accumulate: it stays in
the input's dtype and matches torchvision in float16 too, bin boundaries included.
"""

from __future__ import annotations


import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from convzoo.ops.convolution import _autocast_disabled

BoxesLike = Tensor | list[Tensor] | tuple[Tensor, ...]

# Elements one gather may produce before the work is split (about 128 MB in float64).
_ELEMENT_BUDGET = 2**24
# torchvision starts each bin's maximum at -FLT_MAX: values at or below it are never picked.
_LOWEST = torch.finfo(torch.float32).min


def _pair(output_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(output_size, int):
        return output_size, output_size
    height, width = output_size
    return int(height), int(width)


def to_rois(boxes: BoxesLike, dtype: torch.dtype | None = None) -> Tensor:
    """Boxes as one ``(K, 5)`` tensor of ``(batch_index, x1, y1, x2, y2)`` rows.

    Accepts what torchvision's RoI ops accept: that tensor itself, or a list with one
    ``(L, 4)`` tensor of ``(x1, y1, x2, y2)`` per image, whose position is its batch index.
    """
    if isinstance(boxes, (list, tuple)):
        for per_image in boxes:
            if per_image.dim() != 2 or per_image.shape[1] != 4:
                raise ValueError("The shape of the tensor in the boxes list is not correct as List[Tensor[L, 4]]")
        if not boxes:
            return torch.zeros(0, 5, dtype=dtype)
        rois = torch.cat(
            [torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)], dim=0
        )
    elif isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError("The boxes tensor shape is not correct as Tensor[K, 5]")
        rois = boxes
    else:
        raise TypeError("boxes is expected to be a Tensor[K, 5] or a List[Tensor[L, 4]]")
    return rois if dtype is None else rois.to(dtype)


def _working_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _round_half_away(values: Tensor) -> Tensor:
    """C's ``round``: halves go away from zero (``torch.round`` sends them to even)."""
    truncated = values.trunc()
    return torch.where((values - truncated).abs() >= 0.5, truncated + values.sign(), truncated)


# ----------------------------------------------------------------------------- RoI pooling


def _pool_bins(rois: Tensor, output_size: tuple[int, int], spatial_scale: float, height: int, width: int):
    """Each RoI's bins as half-open cell ranges ``[start, end)``, clipped to the map.

    Returns ``(rows_start, rows_end)`` of shape (K, PH) and ``(cols_start, cols_end)`` of
    shape (K, PW), computed in the boxes' dtype as torchvision's kernel does.
    """
    # The scale is rounded to the boxes' dtype first, as the kernel's ``T spatial_scale``.
    corners = _round_half_away(rois[:, 1:] * rois.new_tensor(spatial_scale)).long()
    ranges = []
    # x1, x2 span the width; y1, y2 the height.
    for start, end, bins, limit in ((corners[:, 1], corners[:, 3], output_size[0], height),
                                    (corners[:, 0], corners[:, 2], output_size[1], width)):
        size = (end - start + 1).clamp(min=1)
        bin_size = size.to(rois.dtype) / bins
        steps = torch.arange(bins + 1, dtype=rois.dtype, device=rois.device)
        offsets = steps * bin_size[:, None]
        lower = offsets[:, :-1].floor().long() + start[:, None]
        upper = offsets[:, 1:].ceil().long() + start[:, None]
        ranges.append((lower.clamp(0, limit), upper.clamp(0, limit)))
    return ranges


def _floor_log2(values: Tensor) -> Tensor:
    """``floor(log2(v))`` of positive integers, exactly (no float rounding)."""
    levels = torch.zeros_like(values)
    for bit in range(1, int(values.max()).bit_length()):
        levels += (values >= 1 << bit).long()
    return levels


def _block_maxima(values: Tensor, levels_h: int, levels_w: int) -> tuple[Tensor, Tensor]:
    """Sparse tables of a (N, H, W, C) map: entry ``[i, j, n, h, w, c]`` is the maximum of
    ``values[n, h:h+2^i, w:w+2^j, c]`` and the first row-major position ``h' * W + w'``
    holding it.  Where a block would run off the map the entry is the smaller block's (never read)."""
    _, height, width, _ = values.shape
    positions = torch.arange(height * width, device=values.device, dtype=torch.int32)
    table_values = values.new_empty((levels_h, levels_w, *values.shape))
    table_positions = torch.empty(table_values.shape, dtype=torch.int32, device=values.device)
    table_values[0, 0] = values
    table_positions[0, 0] = positions.view(1, height, width, 1)
    # Widen row 0's blocks along the width, then every column of tables along the height:
    # two neighbouring blocks make one twice the size.  All the first block's positions
    # come before the second's, so on a tie the first keeps its position.
    for i in range(levels_h):
        for j in range(1 if i == 0 else 0, levels_w):
            source, axis, half = ((0, j - 1), 2, 1 << (j - 1)) if i == 0 else ((i - 1, j), 1, 1 << (i - 1))
            before_v, before_p = table_values[source], table_positions[source]
            length = before_v.shape[axis] - half
            first_v, second_v = before_v.narrow(axis, 0, length), before_v.narrow(axis, half, length)
            first_p, second_p = before_p.narrow(axis, 0, length), before_p.narrow(axis, half, length)
            take_second = second_v > first_v
            table_values[i, j].narrow(axis, 0, length).copy_(torch.where(take_second, second_v, first_v))
            table_positions[i, j].narrow(axis, 0, length).copy_(torch.where(take_second, second_p, first_p))
            table_values[i, j].narrow(axis, length, half).copy_(before_v.narrow(axis, length, half))
            table_positions[i, j].narrow(axis, length, half).copy_(before_p.narrow(axis, length, half))
    return table_values, table_positions


def _roi_pool_forward(input: Tensor, rois: Tensor, output_size: tuple[int, int], spatial_scale: float):
    """Pooled (K, C, PH, PW) maxima and their positions ``h * W + w`` in the map (-1: none)."""
    batch, channels, height, width = input.shape
    num_rois = rois.shape[0]
    pooled_h, pooled_w = output_size
    (rows_start, rows_end), (cols_start, cols_end) = _pool_bins(rois, output_size, spatial_scale, height, width)
    empty = (rows_end <= rows_start)[:, :, None] | (cols_end <= cols_start)[:, None, :]
    if num_rois == 0 or height == 0 or width == 0:
        output = input.new_zeros((num_rois, channels, pooled_h, pooled_w))
        return output, torch.full(output.shape, -1, dtype=torch.long, device=input.device)

    # Each bin [a, b) is covered by the two blocks of length 2^level starting at a and b - 2^level.
    rows_length = (rows_end - rows_start).clamp(min=1)
    cols_length = (cols_end - cols_start).clamp(min=1)
    level_h, level_w = _floor_log2(rows_length), _floor_log2(cols_length)
    rows = [rows_start.clamp(max=height - 1), (rows_end - (1 << level_h)).clamp(0, height - 1)]
    cols = [cols_start.clamp(max=width - 1), (cols_end - (1 << level_w)).clamp(0, width - 1)]
    image = rois[:, 0].long()[:, None, None]
    level_h, level_w = level_h[:, :, None], level_w[:, None, :]
    rows = [row[:, :, None] for row in rows]
    cols = [col[:, None, :] for col in cols]

    # Only values above -FLT_MAX (so not NaN either) can win a bin, as in torchvision's scan.
    candidates = input.permute(0, 2, 3, 1)
    candidates = torch.where(candidates > _LOWEST, candidates, float("-inf"))
    levels_h, levels_w = int(level_h.max()) + 1, int(level_w.max()) + 1
    chunk = max(1, _ELEMENT_BUDGET // max(1, levels_h * levels_w * batch * height * width))
    maxima, positions = [], []
    for channel_start in range(0, channels, chunk):
        table_values, table_positions = _block_maxima(
            candidates[..., channel_start:channel_start + chunk], levels_h, levels_w
        )
        table_values, table_positions = table_values.flatten(0, -2), table_positions.flatten(0, -2)
        best_value = best_position = None
        for row in rows:
            for col in cols:
                # One table row of channels per bin, read with a single index_select.
                at = ((((level_h * levels_w + level_w) * batch + image) * height + row) * width + col).flatten()
                value = table_values.index_select(0, at)
                position = table_positions.index_select(0, at)
                if best_value is None:
                    best_value, best_position = value, position
                    continue
                # Overlapping blocks: the first position among equal maxima wins.
                better = (value > best_value) | ((value == best_value) & (position < best_position))
                torch.where(better, value, best_value, out=best_value)
                torch.where(better, position, best_position, out=best_position)
        maxima.append(best_value.view(num_rois, pooled_h, pooled_w, -1))
        positions.append(best_position.view(num_rois, pooled_h, pooled_w, -1))
    maximum = torch.cat(maxima, dim=-1) if len(maxima) > 1 else maxima[0]
    argmax = (torch.cat(positions, dim=-1) if len(positions) > 1 else positions[0]).long()
    no_candidate = maximum == float("-inf")
    empty = empty[..., None]
    lowest = torch.tensor(_LOWEST).to(maximum.dtype)  # -inf in float16, as the kernel's cast gives
    maximum.masked_fill_(no_candidate, lowest).masked_fill_(empty, 0)
    argmax.masked_fill_(no_candidate.logical_or_(empty), -1)
    return maximum.permute(0, 3, 1, 2).contiguous(), argmax.permute(0, 3, 1, 2).contiguous()


class _RoIPool(torch.autograd.Function):
    """RoI max pooling whose backward pass routes each bin's gradient to its argmax cell."""

    @staticmethod
    def forward(ctx, input: Tensor, rois: Tensor, output_size: tuple[int, int],  # type: ignore[override]
                spatial_scale: float) -> Tensor:
        output, argmax = _roi_pool_forward(input, rois, output_size, spatial_scale)
        ctx.save_for_backward(rois, argmax)
        ctx.input_shape = input.shape
        return output

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        rois, argmax = ctx.saved_tensors
        batch, channels, height, width = ctx.input_shape
        grad_input = grad_output.new_zeros(batch * channels * height * width)
        # Flat position of each bin's argmax in the input, bins in (RoI, channel, row, column)
        # order: torchvision's accumulation order, so float sums come out identical.
        maps = rois[:, 0].long()[:, None] * channels + torch.arange(channels, device=argmax.device)
        flat = (maps[:, :, None, None] * (height * width) + argmax).flatten()
        picked = argmax.flatten() >= 0
        grad_input.index_add_(0, flat[picked], grad_output.flatten()[picked])
        return grad_input.view(batch, channels, height, width), None, None, None


def _check_input(input: Tensor, name: str) -> None:
    if input.dim() != 4:
        raise ValueError(f"{name}: expected a 4-D (N, C, H, W) input, got size {list(input.shape)}")


def roi_pool(
    input: Tensor,
    boxes: BoxesLike,
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
) -> Tensor:
    """RoI max pooling (Fast R-CNN) with exactly ``torchvision.ops.roi_pool``'s semantics.

    ``boxes`` is a (K, 5) tensor of ``(batch_index, x1, y1, x2, y2)`` or a list of (L, 4)
    tensors, one per image; the result is (K, C, *output_size).

    >>> x = torch.arange(16.).view(1, 1, 4, 4)
    >>> roi_pool(x, torch.tensor([[0, 0, 0, 3, 3.]]), 2).flatten().tolist()
    [5.0, 7.0, 13.0, 15.0]
    """
    _check_input(input, "roi_pool")
    # A maximum is exact in any dtype: half-precision inputs stay half, bins and all.
    rois = to_rois(boxes, input.dtype).to(input.device)
    with _autocast_disabled(input.device.type):
        return _RoIPool.apply(input, rois, _pair(output_size), float(spatial_scale))


# ----------------------------------------------------------------------------- RoI align


def _align_grid(rois: Tensor, output_size: tuple[int, int], spatial_scale: float, sampling_ratio: int,
                aligned: bool):
    """Per RoI and axis (y, x): the box start, the bin size and the samples per bin."""
    offset = 0.5 if aligned else 0.0
    scaled = rois[:, 1:] * spatial_scale - offset
    axes = []
    for start, end, bins in ((scaled[:, 1], scaled[:, 3], output_size[0]),
                             (scaled[:, 0], scaled[:, 2], output_size[1])):
        size = end - start
        if not aligned:
            size = size.clamp(min=1.0)  # malformed boxes become one unit wide
        bin_size = size / bins
        if sampling_ratio > 0:
            samples = torch.full_like(start, sampling_ratio, dtype=torch.long)
        else:
            samples = bin_size.ceil().long()  # <= 0 for an aligned inverted box: no samples, output 0
        axes.append((start, bin_size, samples))
    return axes


def _axis_samples(start: Tensor, bin_size: Tensor, samples: Tensor, bins: int, max_samples: int, limit: int):
    """Cells and bilinear weights along one axis for (K, bins, max_samples) sample points.

    Returns the two neighbouring cells and their weights, shape (K, bins, max_samples * 2).
    Padding samples (beyond a RoI's own count) and samples further than one cell outside
    the map get weight 0, as torchvision skips them.
    """
    bin_index = torch.arange(bins, dtype=start.dtype, device=start.device)[None, :, None]
    sample_index = torch.arange(max_samples, dtype=start.dtype, device=start.device)[None, None, :]
    real = sample_index < samples[:, None, None]
    count = samples.clamp(min=1).to(start.dtype)[:, None, None]
    # torchvision's order of operations, so border cases fall on the same side.
    coordinate = (start[:, None, None] + bin_index * bin_size[:, None, None]) + (
        (sample_index + 0.5) * bin_size[:, None, None] / count
    )
    coordinate = torch.where(real, coordinate, 0.0)
    inside = real & (coordinate >= -1.0) & (coordinate <= limit)
    coordinate = coordinate.clamp(min=0.0)
    low = coordinate.floor().long()
    at_end = low >= limit - 1
    low = torch.where(at_end, limit - 1, low)
    high = torch.where(at_end, limit - 1, low + 1)
    coordinate = torch.where(at_end, low.to(coordinate.dtype), coordinate)
    fraction = coordinate - low
    weights = torch.stack([1.0 - fraction, fraction], dim=-1)
    weights = torch.where(inside[..., None], weights, 0.0)
    cells = torch.stack([low, high], dim=-1).clamp(0, max(limit - 1, 0))
    return cells.flatten(-2), weights.flatten(-2)


def _power_of_two_ceiling(values: Tensor) -> Tensor:
    ceiling = torch.ones_like(values)
    for _ in range(int(values.max()).bit_length()):
        ceiling = torch.where(ceiling < values, ceiling * 2, ceiling)
    return ceiling


def _align_groups(samples_h: Tensor, samples_w: Tensor, per_sample: int) -> list[tuple[Tensor, int, int]]:
    """The RoIs in groups that share a sample grid up to a factor of two per axis, each cut
    to at most ``_ELEMENT_BUDGET`` gathered elements: ``(indices, grid height, grid width)``.

    A group is padded to its largest grid, so grouping by powers of two wastes at most
    three quarters of a group's samples and keeps the groups few (about log^2 of the
    largest grid), whatever the spread of RoI sizes.
    """
    if samples_h.numel() == 0:
        return []
    ceiling_h = _power_of_two_ceiling(samples_h.clamp(min=1))
    ceiling_w = _power_of_two_ceiling(samples_w.clamp(min=1))
    bucket = ceiling_h * (int(ceiling_w.max()) + 1) + ceiling_w
    order = torch.argsort(bucket, stable=True)
    bucket, cost = bucket[order], (ceiling_h * ceiling_w)[order] * per_sample
    spent = cost.cumsum(0)
    first_of_bucket = torch.ones_like(bucket, dtype=torch.bool)
    first_of_bucket[1:] = bucket[1:] != bucket[:-1]
    bucket_start = torch.cummax(torch.where(first_of_bucket, spent - cost, 0), dim=0).values
    piece = torch.div(spent - bucket_start - 1, _ELEMENT_BUDGET, rounding_mode="floor")
    group = bucket * (len(order) + 1) + piece
    sizes = torch.unique_consecutive(group, return_counts=True)[1].tolist()
    return [
        (indices, int(samples_h[indices].max().clamp(min=0)), int(samples_w[indices].max().clamp(min=0)))
        for indices in torch.split(order, sizes)
    ]


def _align_plan(rois, input_shape, output_size, spatial_scale, sampling_ratio, aligned):
    """For each group of RoIs: the indices, the input rows to gather and their weights."""
    _, channels, height, width = input_shape
    pooled_h, pooled_w = output_size
    (start_y, bin_h, samples_h), (start_x, bin_w, samples_w) = _align_grid(
        rois, output_size, spatial_scale, sampling_ratio, aligned
    )
    divisor = (samples_h * samples_w).clamp(min=1).to(rois.dtype)
    image = rois[:, 0].long()
    plan = []
    for indices, grid_h, grid_w in _align_groups(samples_h, samples_w, channels * pooled_h * pooled_w * 4):
        rows, weights_y = _axis_samples(start_y[indices], bin_h[indices], samples_h[indices], pooled_h, grid_h, height)
        cols, weights_x = _axis_samples(start_x[indices], bin_w[indices], samples_w[indices], pooled_w, grid_w, width)
        weights_y = weights_y / divisor[indices, None, None]  # the average over the bin's samples
        # Flat (N * H * W) position of every (RoI, bin row, y sample, bin column, x sample).
        flat = ((image[indices, None, None, None, None] * height + rows[:, :, :, None, None]) * width
                + cols[:, None, None, :, :])
        plan.append((indices, flat, weights_y, weights_x))
    return plan


def _roi_align_forward(input: Tensor, rois: Tensor, output_size, spatial_scale, sampling_ratio, aligned) -> Tensor:
    _, channels, height, width = input.shape
    output = input.new_zeros((rois.shape[0], *output_size, channels))
    features = input.permute(0, 2, 3, 1).reshape(-1, channels)  # one row of channels per cell
    plan = _align_plan(rois, input.shape, output_size, spatial_scale, sampling_ratio, aligned) if height * width else []
    for indices, flat, weights_y, weights_x in plan:
        gathered = features[flat]  # (K, PH, Sy, PW, Sx, C)
        output[indices] = torch.einsum("kpaqbc,kpa,kqb->kpqc", gathered, weights_y, weights_x)
    return output.permute(0, 3, 1, 2).contiguous()


class _RoIAlign(torch.autograd.Function):
    """RoI align whose backward pass scatters the bilinear weights back onto the map."""

    @staticmethod
    def forward(ctx, input: Tensor, rois: Tensor, output_size: tuple[int, int],  # type: ignore[override]
                spatial_scale: float, sampling_ratio: int, aligned: bool) -> Tensor:
        ctx.save_for_backward(rois)
        ctx.input_shape = input.shape
        ctx.arguments = (output_size, spatial_scale, sampling_ratio, aligned)
        return _roi_align_forward(input, rois, output_size, spatial_scale, sampling_ratio, aligned)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        (rois,) = ctx.saved_tensors
        batch, channels, height, width = ctx.input_shape
        grad_input = grad_output.new_zeros((batch * height * width, channels))
        grad_cells = grad_output.permute(0, 2, 3, 1)  # (K, PH, PW, C)
        # A backward run inside autocast must not lower the products' precision.
        with _autocast_disabled(grad_output.device.type):
            plan = _align_plan(rois, ctx.input_shape, *ctx.arguments) if height * width else []
            for indices, flat, weights_y, weights_x in plan:
                spread = torch.einsum("kpqc,kpa,kqb->kpaqbc", grad_cells[indices], weights_y, weights_x)
                grad_input.index_add_(0, flat.flatten(), spread.reshape(-1, channels))
        grad_input = grad_input.view(batch, height, width, channels).permute(0, 3, 1, 2).contiguous()
        return grad_input, None, None, None, None, None


def roi_align(
    input: Tensor,
    boxes: BoxesLike,
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoI align (Mask R-CNN) with exactly ``torchvision.ops.roi_align``'s semantics.

    ``boxes`` is a (K, 5) tensor of ``(batch_index, x1, y1, x2, y2)`` or a list of (L, 4)
    tensors, one per image; the result is (K, C, *output_size).  ``sampling_ratio <= 0``
    samples ``ceil(bin size)`` points per bin and axis; ``aligned=True`` shifts the box
    by -0.5 cell.

    With ``aligned=True`` the box (0, 0)-(2, 2) covers cells 0 and 1 of each axis exactly,
    and its 2x2 adaptive samples fall on their centres:

    >>> x = torch.arange(16.).view(1, 1, 4, 4)
    >>> roi_align(x, torch.tensor([[0, 0, 0, 2, 2.]]), 1, aligned=True).item(), x[0, 0, :2, :2].mean().item()
    (2.5, 2.5)
    """
    _check_input(input, "roi_align")
    working = _working_dtype(input.dtype)
    rois = to_rois(boxes, working).to(input.device)
    # Autocast would run the products in low precision: the working dtype is chosen above.
    with _autocast_disabled(input.device.type):
        output = _RoIAlign.apply(
            input.to(working), rois, _pair(output_size), float(spatial_scale), int(sampling_ratio), bool(aligned)
        )
    return output.to(input.dtype)

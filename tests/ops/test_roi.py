"""``convzoo.ops.roi_pool`` and ``roi_align`` are torchvision's: same values, same gradients,
same box formats, including boxes at and past the border and malformed ones."""

from __future__ import annotations

import pytest
import torch
from torchvision import ops as tv_ops

import convzoo.ops.roi as roi_module
from convzoo.ops import MultiScaleRoIAlign, RoIAlign, RoIPool, roi_align, roi_pool, use_scratch_roi_ops

needs_cuda = pytest.mark.cuda  # skipped without a GPU by tests/conftest.py; `pytest -m cuda` selects it

# Boxes every comparison includes, as (x1, y1, x2, y2) on a 9x11 map at scale 1.
AWKWARD_BOXES = [
    (0.0, 0.0, 10.0, 8.0),  # the whole map
    (8.0, 6.0, 14.0, 12.0),  # past the bottom-right border
    (-4.0, -3.0, 2.0, 1.0),  # past the top-left border
    (12.0, 10.0, 15.0, 13.0),  # wholly outside
    (-9.0, -9.0, -2.0, -2.0),  # wholly outside, negative
    (3.0, 2.0, 3.0, 2.0),  # zero size
    (5.0, 4.0, 2.0, 1.0),  # inverted
    (0.5, 1.5, 2.5, 3.5),  # corners on halves: round() sends them away from zero
    (-0.5, -1.5, 4.5, 7.5),
    (10.0, 8.0, 10.0, 8.0),  # the last cell only
    (-2.0, 2.0, 0.0, 4.0),  # centre on x = -1, the last place a sample still counts
    (10.0, 7.0, 12.0, 9.0),  # centre on (x, y) = (W, H), clamped onto the last cell
]


def make_rois(num_random: int, batch: int, height: int, width: int, spatial_scale: float, seed: int,
              inverted: bool = True) -> torch.Tensor:
    """(K, 5) RoIs in image coordinates: random ones reaching 30% past each border (and,
    with ``inverted``, about half of them inverted), small ones, then the awkward ones."""
    generator = torch.Generator().manual_seed(seed)
    size = torch.tensor([width, height, width, height], dtype=torch.float64) / spatial_scale
    boxes = (torch.rand(num_random, 4, generator=generator, dtype=torch.float64) * 1.6 - 0.3) * size
    small = num_random // 3
    boxes[:small, 2:] = boxes[:small, :2] + torch.rand(small, 2, generator=generator, dtype=torch.float64) * 2
    awkward = torch.tensor(AWKWARD_BOXES, dtype=torch.float64) / spatial_scale
    boxes = torch.cat([boxes, awkward])
    if not inverted:
        boxes = torch.cat([torch.minimum(boxes[:, :2], boxes[:, 2:]), torch.maximum(boxes[:, :2], boxes[:, 2:])], 1)
    images = torch.randint(0, batch, (len(boxes), 1), generator=generator).to(torch.float64)
    return torch.cat([images, boxes], dim=1)


def values_and_gradient(op, input, rois, *args, seed=1):
    """The op's output and d(output . g)/d(input) for a fixed random g."""
    input = input.detach().requires_grad_()
    output = op(input, rois, *args)
    upstream = torch.randn(output.shape, generator=torch.Generator().manual_seed(seed), dtype=output.dtype)
    upstream = upstream.to(output.device)
    (gradient,) = torch.autograd.grad(output, input, upstream)
    return output, gradient


def feature_map(batch=2, channels=3, height=9, width=11, dtype=torch.float64, seed=0):
    return torch.randn(batch, channels, height, width, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ----------------------------------------------------------------------------- RoI pooling


@pytest.mark.parametrize("spatial_scale", [1.0, 0.5, 0.3])
@pytest.mark.parametrize("output_size", [(3, 3), (2, 4), 1, (5, 7)])
def test_roi_pool_equals_torchvision_values_and_gradients_exactly(spatial_scale, output_size):
    input, rois = feature_map(), make_rois(40, 2, 9, 11, spatial_scale, seed=2)
    ours = values_and_gradient(roi_pool, input, rois, output_size, spatial_scale)
    theirs = values_and_gradient(tv_ops.roi_pool, input, rois, output_size, spatial_scale)
    # Same cells, same maxima, same argmax on ties, gradients summed in the same order.
    assert torch.equal(ours[0], theirs[0])
    assert torch.equal(ours[1], theirs[1])


def test_roi_pool_ties_pick_the_first_cell_in_row_major_order():
    input = torch.zeros(1, 1, 4, 5, dtype=torch.float64)
    input[0, 0, 1:3, 1:4] = 2.0  # a plateau, ties within and across the four covering blocks
    rois = torch.tensor([[0, 0, 0, 4, 3], [0, 1, 1, 3, 2], [0, 2, 0, 4, 3.0]], dtype=torch.float64)
    for output_size in [1, 2, (2, 3)]:
        ours = values_and_gradient(roi_pool, input, rois, output_size)
        theirs = values_and_gradient(tv_ops.roi_pool, input, rois, output_size)
        assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


def test_roi_pool_skips_what_torchvision_never_picks():
    """NaN and values at or below -FLT_MAX never win a bin; a bin of only those gives -FLT_MAX."""
    input = feature_map(1, 2, 5, 5)
    input[0, 0, :2, :2] = float("nan")
    input[0, 1, :3, :3] = float("-inf")
    input[0, 1, 0, 0] = -1e39
    rois = torch.tensor([[0, 0, 0, 4, 4], [0, 0, 0, 1, 1], [0, 0, 0, 2, 2.0]], dtype=torch.float64)
    ours = values_and_gradient(roi_pool, input, rois, 2)
    theirs = values_and_gradient(tv_ops.roi_pool, input, rois, 2)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


def test_lecture_example_4x6_region_pooled_to_3x3():
    """The lecture's 4x6 RoI pooled to 3x3 (its notes show three of the four rows; the
    fourth is ours).  Bins are 4/3 rows by 2 columns: rows [0,2), [1,3), [2,4), columns
    [0,2), [2,4), [4,6), so the middle bin row shares a row with each neighbour."""
    region = torch.tensor([
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        [1.0, 0.7, 0.2, 0.6, 0.1, 0.9],
        [0.9, 0.8, 0.7, 0.3, 0.5, 0.2],
        [0.3, 0.1, 0.8, 0.2, 0.4, 0.7],
    ], dtype=torch.float64)
    input = torch.full((1, 1, 6, 8), 5.0, dtype=torch.float64)  # larger than anything inside the box
    input[0, 0, 1:5, 1:7] = region
    box = torch.tensor([[1.0, 1.0, 6.0, 4.0]], dtype=torch.float64)  # corners are cells: 6 wide, 4 high

    input.requires_grad_()
    pooled = roi_pool(input, [box], 3)
    pooled.sum().backward()

    assert pooled[0, 0].tolist() == [[1.0, 0.6, 0.9], [1.0, 0.7, 0.9], [0.9, 0.8, 0.7]]
    # Each bin sends its gradient to its maximum; 1.0 at (1,0) and 0.9 at (1,5) win two bins each.
    expected = torch.zeros(4, 6, dtype=torch.float64)
    for (row, col), times in {(1, 0): 2, (1, 3): 1, (1, 5): 2, (2, 2): 1, (2, 0): 1, (3, 2): 1, (3, 5): 1}.items():
        expected[row, col] = times
    assert torch.equal(input.grad[0, 0, 1:5, 1:7], expected)
    assert input.grad.sum() == 9


# ----------------------------------------------------------------------------- RoI align


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2, 3])
@pytest.mark.parametrize("spatial_scale,output_size", [(1.0, (3, 3)), (0.5, (2, 4)), (0.25, 1)])
def test_roi_align_equals_torchvision_values_and_gradients(spatial_scale, output_size, sampling_ratio, aligned):
    # With aligned=True an inverted box has a negative size, and torchvision's CPU kernel
    # fails to size its adaptive sample grid for it (its CUDA kernel gives 0, as convzoo does).
    inverted = not (aligned and sampling_ratio <= 0)
    input, rois = feature_map(), make_rois(40, 2, 9, 11, spatial_scale, seed=3, inverted=inverted)
    arguments = (output_size, spatial_scale, sampling_ratio, aligned)
    ours = values_and_gradient(roi_align, input, rois, *arguments)
    theirs = values_and_gradient(tv_ops.roi_align, input, rois, *arguments)
    torch.testing.assert_close(ours[0], theirs[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(ours[1], theirs[1], rtol=0, atol=1e-12)


def test_roi_align_adaptive_grids_of_very_different_sizes():
    """One RoI samples 1x1 points per bin, another 30x20: grouping pads each group to its own grid."""
    input = feature_map(1, 2, 64, 48)
    rois = torch.tensor([[0, 1, 1, 1.5, 1.5], [0, 0, 0, 40, 60], [0, 3, 2, 20, 9], [0, 10, 10, 11, 40]],
                        dtype=torch.float64)
    for aligned in (False, True):
        ours = values_and_gradient(roi_align, input, rois, 2, 1.0, -1, aligned)
        theirs = values_and_gradient(tv_ops.roi_align, input, rois, 2, 1.0, -1, aligned)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)


def test_roi_align_samples_count_up_to_one_cell_outside_the_map():
    """A sample at -1 or at the size counts (read at the border cell); one a hair further out gives 0."""
    input = feature_map(1, 1, 4, 5)
    centres = [(-1.0, 1.0), (-1.0 - 1e-9, 1.0), (5.0, 2.0), (5.0 + 1e-9, 2.0),
               (2.0, -1.0), (2.0, 4.0), (2.0, 4.0 + 1e-9)]
    rois = torch.tensor([[0, x - 1, y - 1, x + 1, y + 1] for x, y in centres], dtype=torch.float64)
    ours = values_and_gradient(roi_align, input, rois, 1, 1.0, 1)
    theirs = values_and_gradient(tv_ops.roi_align, input, rois, 1, 1.0, 1)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    assert ours[0].flatten()[[1, 3, 6]].tolist() == [0.0, 0.0, 0.0]
    assert ours[0].flatten()[0] == input[0, 0, 1, 0]


def test_roi_align_pools_an_aligned_inverted_box_to_zero_with_adaptive_sampling():
    """Its sample count is negative: torchvision's CUDA kernel gives 0 (its CPU kernel fails
    to size the sample grid, "cannot create std::vector larger than max_size()")."""
    rois = torch.tensor([[0, 4.0, 4.0, 1.0, 1.0], [0, 1.0, 4.0, 4.0, 1.0]], dtype=torch.float64)
    output = roi_align(feature_map(1, 2, 5, 5), rois, 2, 1.0, -1, aligned=True)
    assert torch.equal(output, torch.zeros(2, 2, 2, 2, dtype=torch.float64))


def test_splitting_the_work_to_bound_memory_changes_nothing(monkeypatch):
    """A tiny element budget: RoI pooling's tables one channel at a time, RoI align's RoIs
    in many small groups."""
    monkeypatch.setattr(roi_module, "_ELEMENT_BUDGET", 500)
    input, rois = feature_map(), make_rois(40, 2, 9, 11, 0.5, seed=11, inverted=False)
    ours = values_and_gradient(roi_pool, input, rois, 3, 0.5)
    theirs = values_and_gradient(tv_ops.roi_pool, input, rois, 3, 0.5)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    for aligned in (False, True):
        ours = values_and_gradient(roi_align, input, rois, 3, 0.5, -1, aligned)
        theirs = values_and_gradient(tv_ops.roi_align, input, rois, 3, 0.5, -1, aligned)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("sampling_ratio,aligned", [(2, False), (-1, True), (3, True)])
def test_roi_align_gradcheck(sampling_ratio, aligned):
    input = feature_map(2, 2, 5, 6).requires_grad_()
    rois = torch.tensor([[0, 0.3, 0.2, 4.1, 3.7], [1, -1.2, 2.5, 6.4, 5.8], [1, 2.0, 1.0, 2.6, 1.2]],
                        dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: roi_align(x, rois, (2, 3), 1.0, sampling_ratio, aligned), (input,))


# ----------------------------------------------------------------------------- formats, dtypes, modules


@pytest.mark.parametrize("op", [roi_pool, roi_align], ids=["roi_pool", "roi_align"])
def test_list_of_boxes_is_the_same_as_rois_with_batch_indices(op):
    input = feature_map()
    boxes = [make_rois(6, 1, 9, 11, 0.5, seed=4)[:, 1:], make_rois(3, 1, 9, 11, 0.5, seed=5)[:, 1:]]
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i), dtype=b.dtype), b], 1) for i, b in enumerate(boxes)])
    reference = getattr(tv_ops, op.__name__)
    assert torch.equal(op(input, boxes, 2, 0.5), op(input, rois, 2, 0.5))
    torch.testing.assert_close(op(input, boxes, 2, 0.5), reference(input, boxes, 2, 0.5), rtol=0, atol=1e-12)


@pytest.mark.parametrize("op", [roi_pool, roi_align], ids=["roi_pool", "roi_align"])
def test_no_boxes_give_an_empty_batch_and_a_zero_gradient(op):
    input = feature_map().requires_grad_()
    for boxes in ([torch.zeros(0, 4, dtype=torch.float64)] * 2, torch.zeros(0, 5, dtype=torch.float64)):
        output = op(input, boxes, (3, 4))
        assert output.shape == (0, 3, 3, 4)
        (gradient,) = torch.autograd.grad(output.sum(), input)
        assert torch.equal(gradient, torch.zeros_like(input))


def test_malformed_boxes_are_rejected_as_torchvision_does():
    with pytest.raises(ValueError, match=r"Tensor\[K, 5\]"):
        roi_align(feature_map(), torch.zeros(2, 4), 2)
    with pytest.raises(ValueError, match=r"List\[Tensor\[L, 4\]\]"):
        roi_pool(feature_map(), [torch.zeros(2, 5)], 2)


@pytest.mark.parametrize("spatial_scale", [0.5, 0.3])
def test_float32_and_half_precision_keep_the_input_dtype(spatial_scale):
    input, rois = feature_map(dtype=torch.float32), make_rois(30, 2, 9, 11, spatial_scale, seed=6).float()
    arguments = (3, spatial_scale)
    torch.testing.assert_close(roi_align(input, rois, *arguments, 2), tv_ops.roi_align(input, rois, *arguments, 2))
    assert torch.equal(roi_pool(input, rois, *arguments), tv_ops.roi_pool(input, rois, *arguments))
    # RoI pooling works in float16 as torchvision's kernel does: bins computed in float16.
    half, half_rois = input.half(), rois.half()
    assert torch.equal(roi_pool(half, half_rois, *arguments), tv_ops.roi_pool(half, half_rois, *arguments))
    # RoI align accumulates half precision in float32 and rounds once (torchvision has no CPU bfloat16).
    for low in (half, input.bfloat16()):
        output = roi_align(low, rois.to(low.dtype), *arguments, 2)
        assert output.dtype == low.dtype
        assert torch.equal(output, roi_align(low.float(), rois.to(low.dtype).float(), *arguments, 2).to(low.dtype))
    assert roi_pool(input.bfloat16(), rois, *arguments).dtype == torch.bfloat16


def test_autocast_does_not_lower_the_precision():
    input, rois = feature_map(dtype=torch.float32).requires_grad_(), make_rois(20, 2, 9, 11, 0.5, seed=10).float()
    expected = roi_align(input, rois, 3, 0.5, 2)
    (expected_gradient,) = torch.autograd.grad(expected.sum(), input)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = roi_align(input, rois, 3, 0.5, 2)
        (gradient,) = torch.autograd.grad(output.sum(), input)
    assert output.dtype == torch.float32
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(gradient, expected_gradient)


def test_modules_are_torchvisions_with_convzoos_ops():
    input, rois = feature_map(), make_rois(20, 2, 9, 11, 0.5, seed=7)
    pool, align = RoIPool((3, 2), 0.5), RoIAlign(3, 0.5, 2, aligned=True)
    assert repr(pool) == repr(tv_ops.RoIPool((3, 2), 0.5))
    assert isinstance(align, tv_ops.RoIAlign)
    assert torch.equal(pool(input, rois), roi_pool(input, rois, (3, 2), 0.5))
    assert torch.equal(align(input, rois), roi_align(input, rois, 3, 0.5, 2, True))


def fpn_features_and_boxes(seed=8):
    """A random FPN-like pyramid (strides 4 to 32 of an 800x640 image) and boxes of all sizes."""
    generator = torch.Generator().manual_seed(seed)
    features = {
        name: torch.randn(2, 4, 800 // stride, 640 // stride, generator=generator, dtype=torch.float64)
        for name, stride in (("0", 4), ("1", 8), ("2", 16), ("3", 32))
    }
    features["pool"] = torch.randn(2, 4, 13, 10, generator=generator, dtype=torch.float64)  # not pooled from
    boxes = []
    for count in (30, 17):
        corner = torch.rand(count, 2, generator=generator, dtype=torch.float64) * torch.tensor([600.0, 760.0])
        size = torch.exp(torch.rand(count, 2, generator=generator, dtype=torch.float64) * 7)  # 1 to 1100 pixels
        boxes.append(torch.cat([corner, corner + size], dim=1))
    return features, boxes, [(800, 640), (790, 600)]


def test_multiscale_roi_align_equals_torchvisions_on_an_fpn_pyramid():
    features, boxes, image_shapes = fpn_features_and_boxes()
    for names in (["0", "1", "2", "3"], ["2"]):
        ours = MultiScaleRoIAlign(names, 7, 2)
        theirs = tv_ops.MultiScaleRoIAlign(names, 7, 2)
        inputs = {name: f.clone().requires_grad_() for name, f in features.items()}
        pooled = ours(inputs, boxes, image_shapes)
        expected = theirs(features, boxes, image_shapes)
        assert pooled.shape == (47, 4, 7, 7)
        torch.testing.assert_close(pooled, expected, rtol=0, atol=1e-12)
        assert ours.scales == theirs.scales
        pooled.sum().backward()  # each FPN level receives its boxes' gradient
        levels = ours.map_levels(boxes).unique().tolist() if len(names) > 1 else [0]
        assert len(levels) == len(names)
        assert all(inputs[names[level]].grad.abs().sum() > 0 for level in levels)


def test_use_scratch_roi_ops_swaps_torchvisions_modules_in_place():
    model = torch.nn.ModuleDict({
        "box_roi_pool": tv_ops.MultiScaleRoIAlign(["0", "1"], 7, 2),
        "align": tv_ops.RoIAlign(5, 0.25, 2),
        "pool": tv_ops.RoIPool(7, 0.0625),
    })
    pooler = model["box_roi_pool"]
    assert use_scratch_roi_ops(model) is model
    assert model["box_roi_pool"] is pooler and type(pooler) is MultiScaleRoIAlign
    assert type(model["align"]) is RoIAlign and type(model["pool"]) is RoIPool
    assert model["align"].spatial_scale == 0.25


def test_faster_rcnn_detects_the_same_with_convzoos_box_pooler():
    """The switch a detection engineer makes: torchvision's Faster R-CNN, its box RoI pool swapped."""
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    torch.manual_seed(0)
    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=5,
                                                  box_score_thresh=0.0).eval()
    images = [torch.rand(3, 240, 320), torch.rand(3, 300, 200)]
    with torch.no_grad():
        expected = model(images)
        use_scratch_roi_ops(model)
        detections = model(images)
    assert type(model.roi_heads.box_roi_pool) is MultiScaleRoIAlign
    for ours, theirs in zip(detections, expected):
        assert len(ours["boxes"]) > 0
        torch.testing.assert_close(ours, theirs)


@needs_cuda
def test_cuda_equals_torchvision_cuda():
    input, rois = feature_map().cuda(), make_rois(40, 2, 9, 11, 0.5, seed=9).cuda()
    ours = values_and_gradient(roi_pool, input, rois, 3, 0.5)
    theirs = values_and_gradient(tv_ops.roi_pool, input, rois, 3, 0.5)
    assert torch.equal(ours[0], theirs[0])
    torch.testing.assert_close(ours[1], theirs[1], rtol=0, atol=1e-12)  # CUDA adds atomically, in any order
    for aligned in (False, True):
        ours = values_and_gradient(roi_align, input, rois, 3, 0.5, -1, aligned)
        theirs = values_and_gradient(tv_ops.roi_align, input, rois, 3, 0.5, -1, aligned)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    low, low_rois = input.bfloat16(), rois.bfloat16()
    expected = tv_ops.roi_align(low.float(), low_rois.float(), 3, 0.5, 2)
    torch.testing.assert_close(roi_align(low, low_rois, 3, 0.5, 2), expected.bfloat16())

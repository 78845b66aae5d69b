"""Receptive fields: the lecture's facts, and the computed field checked against the
gradient-measured one on small modules (stacks, dilations, additions, concatenations,
strides, padding, crops) and on every registered model."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convzoo.receptive_field import ReceptiveField, measure_receptive_field, receptive_fields
from convzoo.registry import create_model, get_model_info, list_models
from convzoo.summary import build_uninitialised


def assert_measured_equals_computed(model: nn.Module, input_size: tuple[int, int, int], layer: str,
                                    position: tuple[int, int] | None = None,
                                    dtype: torch.dtype = torch.float64) -> ReceptiveField:
    """The input pixels one unit depends on (by gradient) are those its computed field covers."""
    field = receptive_fields(model, input_size).field(layer)
    rows, columns, position = measure_receptive_field(model, input_size, layer, position, dtype=dtype)
    (top, bottom), (left, right) = field.box(*position)
    height, width = input_size[1:]
    assert (rows, columns) == ((max(top, 0), min(bottom, height - 1)), (max(left, 0), min(right, width - 1))), (
        f"{layer}: computed field {field.size} (jump {field.jump}, start {field.start}) at unit {position}")
    return field


def sizes_by_layer(model: nn.Module, input_size: tuple[int, int, int]) -> dict[str, int]:
    return {call.name: call.field.size for call in receptive_fields(model, input_size).calls}


# --------------------------------------------------------------------------- the lecture's facts


def test_three_stacked_3x3_convolutions_see_7x7():
    stack = nn.Sequential(*[nn.Conv2d(1, 1, 3) for _ in range(3)])
    assert [sizes_by_layer(stack, (1, 16, 16))[name] for name in "012"] == [3, 5, 7]
    assert_measured_equals_computed(stack, (1, 16, 16), "2")


def test_dilations_1_2_4_see_3_7_15():
    # Yu & Koltun 2016, Figure 1: exponential growth at a constant number of parameters.
    stack = nn.Sequential(*[nn.Conv2d(1, 1, 3, dilation=d, padding=d) for d in (1, 2, 4)])
    assert [sizes_by_layer(stack, (1, 32, 32))[name] for name in "012"] == [3, 7, 15]
    for layer in "012":
        assert_measured_equals_computed(stack, (1, 32, 32), layer)


def test_vgg16_sees_212_pixels_at_pool5():
    model = build_uninitialised("vgg16")
    trace = receptive_fields(model, (3, 224, 224))
    pool5 = [call for call in trace.calls if isinstance(call.module, nn.MaxPool2d)][-1]
    assert (pool5.field.size, pool5.field.jump, pool5.field.start) == (212, 32, -90)
    assert trace.final_field.size == 212


@pytest.mark.parametrize("name, patch", [("bagnet9", 9), ("bagnet17", 17), ("bagnet33", 33)])
def test_bagnets_end_at_their_patch_size(name, patch):
    if name not in list_models():
        pytest.skip(f"{name} is not registered")
    trace = receptive_fields(build_uninitialised(name), get_model_info(name).input_size)
    assert trace.final_field.size == patch


def test_lenet5_fields_grow_to_the_whole_32x32_image():
    model = build_uninitialised("lenet5")
    sizes = sizes_by_layer(model, (1, 32, 32))
    assert [sizes[f"features.{i}"] for i in range(8)] == [5, 5, 6, 14, 14, 16, 32, 32]
    assert receptive_fields(model, (1, 32, 32)).final_field.size == 32
    for layer in ("features.3", "features.5", "features.6"):
        assert_measured_equals_computed(model, (1, 32, 32), layer)


# --------------------------------------------------------------------------- architectures in small


class Residual(nn.Module):
    """A ResNet basic block, with a strided 1x1 projection when the grid shrinks."""

    def __init__(self, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, stride, 1)
        self.bn = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.shortcut = nn.Conv2d(channels, channels, 1, stride) if stride > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.bn(self.conv1(x))))
        out += self.shortcut(x)
        return F.relu(out)


class SmallResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(2, 4, 7, 2, 3), nn.MaxPool2d(3, 2, 1))
        self.block1 = Residual(4)
        self.block2 = Residual(4, stride=2)
        self.block3 = Residual(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block3(self.block2(self.block1(self.stem(x))))


class Inception(nn.Module):
    """GoogLeNet's module: branches of different fields, concatenated along channels."""

    def __init__(self) -> None:
        super().__init__()
        self.branch1 = nn.Conv2d(3, 2, 1)
        self.branch3 = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Conv2d(2, 2, 3, padding=1))
        self.branch5 = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Conv2d(2, 2, 5, padding=2))
        self.pool = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(3, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch3(x), self.branch5(x), self.pool(x)], dim=1)


class Concatenations(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 3, 3, stride=2)
        self.mixed = Inception()
        self.head = nn.Conv2d(8, 4, 3, dilation=2, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.mixed(self.stem(x)))


class DenseBlock(nn.Module):
    """DenseNet's pattern: every layer sees the concatenation of all earlier maps."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Conv2d(in_channels + 2 * i, 2, 3, padding=1) for i in range(3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, 1)))
        return F.avg_pool2d(torch.cat(features, 1), 2)


class Functional(nn.Module):
    """Operations outside modules: explicit padding, non-square kernels, pooling, cropping."""

    def __init__(self) -> None:
        super().__init__()
        self.wide = nn.Conv2d(1, 2, (1, 7))
        self.tall = nn.Conv2d(2, 2, (5, 1), stride=(2, 1))
        self.last = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tall(self.wide(F.pad(x, (3, 3, 0, 0))))
        x = F.max_pool2d(x, 2, ceil_mode=True)[:, :, 1:, ::2]
        return self.last(F.avg_pool2d(x, 3, 1, 1))


def test_additions_take_the_union_of_the_paths():
    model = SmallResNet()
    for layer in ("stem", "block1", "block2.shortcut", "block2", "block3"):
        assert_measured_equals_computed(model, (2, 64, 64), layer)
    # The 1x1 projection shortcut sees less than the two-convolution path it joins.
    trace = receptive_fields(model, (2, 64, 64))
    assert trace.field("block2").size == trace.field("block2.conv2").size > trace.field("block2.shortcut").size


def test_concatenations_take_the_union_of_the_branches():
    model = Concatenations()
    trace = receptive_fields(model, (3, 64, 64))
    assert trace.field("mixed").size == trace.field("mixed.branch5").size == 11
    for layer in ("mixed.branch1", "mixed.pool", "mixed", "head"):
        assert_measured_equals_computed(model, (3, 64, 64), layer)
    assert_measured_equals_computed(model, (3, 64, 64), "head", position=(0, 0))  # field reaching into the padding


def test_dense_concatenations():
    model = nn.Sequential(DenseBlock(2), DenseBlock(8))
    # Three 3x3 layers and a 2x2 pool each; the second block at jump 2.
    assert receptive_fields(model, (2, 32, 32)).field("1").size == (1 + 3 * 2 + 1) + (3 * 2 * 2 + 1 * 2)
    for layer in ("0", "1"):
        assert_measured_equals_computed(model, (2, 32, 32), layer)


def test_padding_non_square_kernels_and_crops():
    model = Functional()
    field = assert_measured_equals_computed(model, (1, 40, 40), "last", position=(3, 2))
    # Height: 5 (tall) + 1x2 (pool) + 2x4 (avg); width: 7 (wide) + 1x1 (pool) + 2x4 (avg).
    assert field.size == (15, 16)
    assert field.jump == 4 and field.start == (0, -3 - 4)


def test_global_pooling_makes_the_field_global_and_keeps_the_last_local_one():
    model = nn.Sequential(nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 2))
    trace = receptive_fields(model, (1, 10, 10))
    assert trace.final_field.size == 5 and not trace.final_field.is_global
    assert trace.field("2").is_global and trace.field("2").size == 5 + 5  # spans all 6 positions
    assert trace.field("4").is_global
    assert trace.output_field.weight_depth == 3


def test_nearest_upsampling_repeats_each_units_field():
    """An FPN's top-down path: unit j of a 2x nearest upsampling sees what unit j // 2 sees."""
    class Upsample(nn.Module):
        def forward(self, x):
            return F.interpolate(x, scale_factor=2.0)

    model = nn.Sequential(nn.Conv2d(1, 1, 3), Upsample(), nn.Conv2d(1, 1, 3))
    trace = receptive_fields(model, (1, 8, 8))
    assert not trace.unsupported
    assert (trace.field("1").size, trace.field("1").jump) == (3, 0.5)
    assert trace.field("2").size == 4
    assert_measured_equals_computed(model, (1, 8, 8), "2")


def test_unknown_operations_are_reported_not_guessed():
    class Upsample(nn.Module):
        def forward(self, x):
            return F.interpolate(x, scale_factor=2.0, mode="bilinear")

    trace = receptive_fields(nn.Sequential(nn.Conv2d(1, 1, 3), Upsample(), nn.Conv2d(1, 1, 3)), (1, 8, 8))
    assert trace.unsupported == {"interpolate"}
    assert not trace.field("2").is_known and trace.field("0").size == 3


@pytest.mark.parametrize("kernel, stride, padding", [(4, 2, 1), (3, 2, 1), (16, 8, 4), (2, 2, 0)])
def test_a_transposed_convolution_divides_the_jump_by_its_stride(kernel, stride, padding):
    """Against the gradient measurement of every unit in two periods of the output: the size
    is the largest unit's, ``stride`` units advance by one input unit's jump, and the start
    is unit 0's (by periodicity from the units inside the image)."""
    model = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2), nn.ConvTranspose2d(1, 1, kernel, stride, padding))
    input_size = (1, 48, 9)
    field = receptive_fields(model, input_size).field("1").height
    assert field.jump == Fraction(2, stride)
    first_unit = 3 * stride  # fields from here on lie inside the image: measured unclipped
    measured = {unit: measure_receptive_field(model, input_size, "1", (unit, 1))[0]
                for unit in range(first_unit, first_unit + 2 * stride)}
    assert field.size == max(last - first + 1 for first, last in measured.values())
    assert all(measured[unit + stride][0] - measured[unit][0] == 2 for unit in range(first_unit, first_unit + stride))
    assert field.start == measured[first_unit][0] - 2 * (first_unit // stride)


def test_tracing_leaves_the_model_unchanged():
    model = SmallResNet().double().train()
    model.block1.bn.eval()
    state = {key: value.clone() for key, value in model.state_dict().items()}
    modes = [module.training for module in model.modules()]
    receptive_fields(model, (2, 32, 32), train_mode=True)
    assert [module.training for module in model.modules()] == modes
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]) and value.dtype == state[key].dtype, key
    assert not any(hasattr(t, "_convzoo_receptive_field") for t in model.state_dict().values())


# --------------------------------------------------------------------------- every registered model


def probe_input_size(name: str, model: nn.Module) -> tuple[int, int, int]:
    """A small input the model takes: its own when fixed or small, else the smallest side
    that an ImageNet model's downsampling leaves a feature map for (cost grows with it)."""
    info = get_model_info(name)
    channels, height, _ = info.input_size
    if info.fixed_input_size or height <= 64:
        return info.input_size
    for side in (32, 48, 64, 96, 128):
        try:
            receptive_fields(model, (channels, side, side))
            return channels, side, side
        except RuntimeError:
            continue
    return info.input_size


def deepest_measurable_layer(name: str, model: nn.Module, input_size: tuple[int, int, int]) -> str:
    """The module with the widest field whose centre unit's field still lies inside the image.

    There, the measured square has the computed size, position and extent, unclipped; a
    field wider than the image would only show that it covers the image.
    """
    trace = receptive_fields(model, input_size)
    counts: dict[str, int] = {}
    for call in trace.calls:
        counts[call.name] = counts.get(call.name, 0) + 1
    best, best_size = None, 0
    for call in trace.calls:
        field = call.field
        if (counts[call.name] > 1 or field is None or not field.is_known or field.is_global or not field.uniform
                or len(call.output_shapes[0]) != 4 or isinstance(field.jump, (float, tuple))):
            continue
        (top, bottom), (left, right) = field.box(call.output_shapes[0][-2] // 2, call.output_shapes[0][-1] // 2)
        inside = top >= 0 and left >= 0 and bottom < input_size[1] and right < input_size[2]
        if inside and field.largest_size >= best_size:
            best, best_size = call.name, field.largest_size
    assert best is not None, f"{name}: no layer whose field fits in {input_size}"
    return best


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_matches_its_gradient_measurement(name):
    model = build_uninitialised(name)  # the measurement materialises the weights it needs
    input_size = probe_input_size(name, model)
    trace = receptive_fields(model, input_size)
    assert not trace.unsupported
    assert trace.final_field is not None and trace.final_field.is_known
    layer = deepest_measurable_layer(name, model, input_size)
    # float32 for speed (float64 depthwise convolutions are slow on CPU): a field that fits
    # in the image is a few dozen layers deep, far from where products of 1/fan-in underflow.
    field = assert_measured_equals_computed(model, input_size, layer, dtype=torch.float32)
    assert field.largest_size > 1


def test_vgg16_pool5_measured_at_224():
    model = build_uninitialised("vgg16")
    pool5 = [name for name, module in model.named_modules() if isinstance(module, nn.MaxPool2d)][-1]
    field = assert_measured_equals_computed(model, (3, 224, 224), pool5)
    assert field.size == 212


def test_measurement_does_not_touch_the_model():
    model = create_model("resnet20")
    before = {key: value.clone() for key, value in model.state_dict().items()}
    measure_receptive_field(model, (3, 32, 32), "layer1")
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())

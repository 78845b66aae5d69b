"""``convzoo.ops.conv_transpose2d`` is ``torch.nn.functional.conv_transpose2d`` (values,
gradients, autocast, argument checks), and ``use_scratch_conv`` swaps ``nn.ConvTranspose2d``
for ``ScratchConvTranspose2d`` without changing what a model computes."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from convzoo.ops import Conv2d, ScratchConvTranspose2d, conv_transpose2d, use_scratch_conv
from tests.ops import test_conv2d
from tests.ops.test_conv2d import (
    assert_output_can_be_modified_in_place_like_torchs,
    assert_relative_close,
    assert_unbatched_input_and_empty_batch_like_torchs,
    forward_and_gradients,
)


@dataclass(frozen=True)
class Case(test_conv2d.Case):
    """A convolution test case plus ``output_padding``; the weight is ``(in, out / groups, KH, KW)``."""

    output_padding: tuple[int, int] = (0, 0)

    def weight_shape(self) -> tuple[int, ...]:
        return (self.in_channels, self.out_channels // self.groups, *self.kernel)

    def arguments(self):
        return self.stride, self.padding, self.output_padding, self.groups, self.dilation


def output_size(case: Case) -> tuple[int, ...]:
    return tuple(
        (n - 1) * s - 2 * p + d * (k - 1) + e + 1
        for n, k, s, p, e, d in zip(case.size, case.kernel, case.stride, case.padding, case.output_padding,
                                    case.dilation)
    )


def random_cases(seed: int, count: int) -> list[Case]:
    """Strides 1-3, paddings 0-3, every output_padding torch allows (below the stride or the
    dilation), dilations 1-3, groups (depthwise too), non-square kernels and maps, bias or not."""
    rng = random.Random(seed)
    cases: list[Case] = []
    while len(cases) < count:
        groups = rng.choice([1, 1, 2, 3])
        in_per_group, out_per_group = rng.randint(1, 3), rng.randint(1, 3)
        if rng.random() < 0.2:  # depthwise
            in_per_group, out_per_group = 1, rng.choice([1, 2])
        stride = (rng.randint(1, 3), rng.randint(1, 3))
        dilation = rng.choice([(1, 1), (1, 1), (2, 2), (rng.randint(1, 3), rng.randint(1, 3))])
        case = Case(
            batch=rng.randint(1, 2),
            in_channels=groups * in_per_group,
            out_channels=groups * out_per_group,
            size=(rng.randint(1, 7), rng.randint(1, 7)),
            kernel=(rng.randint(1, 5), rng.randint(1, 5)),
            stride=stride,
            padding=(rng.randint(0, 3), rng.randint(0, 3)),
            output_padding=tuple(rng.randint(0, max(s, d) - 1) for s, d in zip(stride, dilation)),
            dilation=dilation,
            groups=groups,
            bias=rng.random() < 0.5,
        )
        if min(output_size(case)) > 0:
            cases.append(case)
    return cases


EDGE_CASES = [  # batch, in, out, size, kernel, stride, padding, dilation, groups, bias, output_padding
    Case(1, 21, 21, (8, 8), (4, 4), (2, 2), (1, 1), (1, 1), 1, False),  # FCN's 2x upsampling of scores
    Case(1, 3, 3, (3, 4), (16, 16), (8, 8), (4, 4), (1, 1), 1, False),  # FCN-8s' 8x upsampling
    Case(2, 4, 6, (5, 5), (3, 3), (2, 2), (1, 1), (1, 1), 1, True, (1, 1)),  # a decoder's 3x3 stride 2, size doubled
    Case(2, 2, 4, (4, 3), (3, 3), (1, 1), (2, 2), (2, 2), 2, True, (1, 1)),  # output_padding below the dilation only
    Case(1, 2, 2, (1, 1), (3, 3), (1, 1), (1, 1), (1, 1), 1, False),  # output smaller than the kernel
    Case(2, 4, 4, (6, 5), (3, 3), (2, 1), (4, 1), (1, 1), 4, True, (1, 0)),  # depthwise, more padding than reach
]
CASES = random_cases(seed=0, count=40) + EDGE_CASES


@pytest.mark.parametrize("case", CASES, ids=str)
def test_float64_output_and_gradients_equal_torch(case):
    mine = forward_and_gradients(conv_transpose2d, case, torch.float64)
    assert_relative_close(mine, forward_and_gradients(F.conv_transpose2d, case, torch.float64), 1e-10)


@pytest.mark.cuda
@pytest.mark.parametrize("case", CASES[::4] + EDGE_CASES, ids=str)
def test_cuda_float32_equals_torch(case):
    mine = forward_and_gradients(conv_transpose2d, case, torch.float32, device="cuda")
    reference = forward_and_gradients(F.conv_transpose2d, case, torch.float64)
    assert_relative_close({name: value.cpu().double() for name, value in mine.items()}, reference, 1e-4)


@pytest.mark.parametrize("case", CASES[:4] + EDGE_CASES[:3], ids=str)
def test_channels_last_in_channels_last_out(case):
    mine = forward_and_gradients(conv_transpose2d, case, torch.float64, channels_last=True)
    reference = forward_and_gradients(F.conv_transpose2d, case, torch.float64, channels_last=True)
    assert_relative_close(mine, reference, 1e-10)
    assert mine["output"].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("case", [CASES[0], CASES[5], EDGE_CASES[2], EDGE_CASES[3], EDGE_CASES[5]], ids=str)
def test_gradcheck_float64(case):
    x, w, b = case.operands()
    inputs = (x, w) if b is None else (x, w, b)

    def function(*tensors):
        x, w, *rest = tensors
        return conv_transpose2d(x, w, rest[0] if rest else None, *case.arguments())

    assert torch.autograd.gradcheck(function, inputs, eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True)


def test_bfloat16_autocast_computes_in_bfloat16_like_torch():
    """A float32 input and weight under CPU autocast: bfloat16 output, float32 gradients for the
    float32 leaves, values within bfloat16's precision of torch's."""
    case = Case(2, 8, 6, (6, 7), (4, 4), (2, 2), (1, 1), (1, 1), 2, True, (0, 1))
    results = {}
    for name, function in (("scratch", conv_transpose2d), ("torch", F.conv_transpose2d)):
        x, w, b = case.operands(torch.float32)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = function(x, w, b, *case.arguments())
        out.float().square().mean().backward()
        results[name] = {"output": out, "input": x.grad, "weight": w.grad, "bias": b.grad}
    scratch, reference = results["scratch"], results["torch"]
    assert scratch["output"].dtype == reference["output"].dtype == torch.bfloat16
    assert all(scratch[key].dtype == torch.float32 for key in ("input", "weight", "bias"))
    assert_relative_close(scratch, reference, 3e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # float64 is left alone, as torch leaves it
        x, w, b = case.operands(torch.float64)
        assert conv_transpose2d(x, w, b, *case.arguments()).dtype == torch.float64


def test_output_can_be_modified_in_place():
    """A decoder's ``ReLU(inplace=True)`` may follow."""
    assert_output_can_be_modified_in_place_like_torchs(conv_transpose2d, F.conv_transpose2d, EDGE_CASES[2:4])


def test_unbatched_input_and_empty_batch():
    x, w = torch.randn(3, 4, 6, dtype=torch.float64), torch.randn(3, 5, 3, 3, dtype=torch.float64)
    assert_unbatched_input_and_empty_batch_like_torchs(conv_transpose2d, F.conv_transpose2d, x, w, stride=2)


def test_no_builtin_convolution_runs_in_forward_or_backward():
    x, w, b = EDGE_CASES[2].operands(torch.float32)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        conv_transpose2d(x, w, b, *EDGE_CASES[2].arguments()).square().sum().backward()
    torch_ops = {event.name for event in profile.events() if event.name.startswith(("aten::", "mkldnn", "cudnn"))}
    assert torch_ops and not [op for op in torch_ops if "conv" in op or "dnn" in op], sorted(torch_ops)


@pytest.mark.parametrize(
    "x_shape,w_shape,arguments,message",
    [
        ((1, 4, 5, 5), (4, 3, 3, 3), dict(stride=2, output_padding=2), "smaller than either stride or dilation"),
        ((1, 4, 5, 5), (4, 3, 3, 3), dict(stride=(1, 2), dilation=(2, 1), output_padding=(1, 2)), "either stride"),
        ((1, 4, 5, 5), (4, 3, 3, 3), dict(padding=-1), "negative padding"),
        ((1, 4, 5, 5), (4, 3, 3, 3), dict(output_padding=-1), "negative output_padding"),
        ((1, 4, 5, 5), (4, 3, 3, 3), dict(stride=0), "non-positive stride"),
        ((1, 4, 5, 5), (4, 3, 3, 3), dict(dilation=0), "dilation should be greater than zero"),
        ((1, 4, 5, 5), (4, 3, 3, 3), dict(groups=0), "non-positive groups"),
        ((1, 4, 5, 5), (4, 3, 3, 3), dict(groups=3), "divisible by 3"),
        ((1, 4, 5, 5), (4, 3, 3, 3), dict(padding=5), "Output size is too small"),
        ((1, 5, 5, 5), (4, 3, 3, 3), dict(), "expected input\\[1, 5, 5, 5\\] to have 4 channels"),
        ((5, 5), (4, 3, 3, 3), dict(), "Expected 3D \\(unbatched\\) or 4D"),
        ((1, 4, 5, 5), (4, 3, 3, 3), dict(padding="same"), "expected padding to be an int or a pair"),
        ((1, 4, 5, 5), (4, 3, 3, 3), dict(bias=torch.zeros(4)), "expected bias to be 1-dimensional with 3"),
    ],
)
def test_rejects_what_torch_rejects(x_shape, w_shape, arguments, message):
    x, w = torch.randn(x_shape), torch.randn(w_shape)
    with pytest.raises((RuntimeError, TypeError)):
        F.conv_transpose2d(x, w, **arguments)
    with pytest.raises(RuntimeError, match=message):
        conv_transpose2d(x, w, **arguments)


CONSTRUCTIONS = [
    dict(in_channels=4, out_channels=6, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=(2, 5), stride=(2, 1), padding=(1, 2), output_padding=(1, 0)),
    dict(in_channels=4, out_channels=8, kernel_size=3, stride=2, dilation=2, groups=2, bias=False),
]


@pytest.mark.parametrize("arguments", CONSTRUCTIONS, ids=str)
def test_module_is_nn_conv_transpose2d_with_the_same_state_and_output(arguments):
    torch.manual_seed(0)
    reference = nn.ConvTranspose2d(**arguments).double()
    scratch = ScratchConvTranspose2d(**arguments).double()
    assert isinstance(scratch, nn.ConvTranspose2d)
    assert scratch.state_dict().keys() == reference.state_dict().keys()
    scratch.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64)
    torch.testing.assert_close(scratch(x), reference(x), rtol=1e-10, atol=1e-10)


def test_module_takes_output_size_like_torch():
    """``output_size=`` picks the output_padding (a decoder matching its encoder's odd size)."""
    torch.manual_seed(0)
    reference = nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1).double()
    scratch = use_scratch_conv(copy.deepcopy(reference))
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64)
    for size in ([9, 10], [1, 3, 10, 9]):
        expected = reference(x, output_size=size)
        assert expected.shape[-2:] == tuple(size[-2:])
        torch.testing.assert_close(scratch(x, output_size=size), expected, rtol=1e-10, atol=1e-10)


def test_use_scratch_conv_swaps_transposed_convolutions_keeping_weights_and_output():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.Sequential(nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1, bias=False)),
    ).double()
    images = torch.randn(2, 3, 10, 12, dtype=torch.float64)
    keys = list(model.state_dict())
    parameters = dict(model.named_parameters())
    expected = model(images)
    assert use_scratch_conv(model) is model
    assert [type(m) for m in (model[0], model[2], model[4][0])] == [Conv2d, ScratchConvTranspose2d,
                                                                   ScratchConvTranspose2d]
    assert list(model.state_dict()) == keys
    assert all(p is parameters[name] for name, p in model.named_parameters())
    torch.testing.assert_close(model(images), expected, rtol=1e-10, atol=1e-10)


def test_export_turns_scratch_transposed_convolutions_back_into_torchs():
    """An exported graph carries the standard ConvTranspose operator, with the same weights."""
    from convzoo.deploy.export import standard_conv_for_export

    model = use_scratch_conv(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1)))
    exported, notes = standard_conv_for_export(model)
    assert [type(m) for m in exported] == [nn.Conv2d, nn.ConvTranspose2d] and "2 scratch convolution(s)" in notes[0]
    assert type(model[1]) is ScratchConvTranspose2d, "the eager model keeps computing with the scratch convolution"
    images = torch.randn(1, 3, 9, 9)
    torch.testing.assert_close(exported(images), model(images), rtol=1e-4, atol=1e-5)

"""``convzoo.ops.conv2d`` is ``torch.nn.functional.conv2d``: same values, same gradients,
same argument forms, on every evaluation path of the hand-written primitive."""

from __future__ import annotations

import ast
import contextlib
import inspect
import random
import textwrap
from dataclasses import dataclass

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

import convzoo.ops.convolution as convolution
import convzoo.ops.correlation as correlation
import convzoo.ops.plans as plans
from convzoo.ops import conv2d

needs_cuda = pytest.mark.cuda  # skipped without a GPU by tests/conftest.py; `pytest -m cuda` selects it


@dataclass(frozen=True)
class Case:
    batch: int
    in_channels: int
    out_channels: int
    size: tuple[int, int]
    kernel: tuple[int, int]
    stride: int | tuple[int, int]
    padding: int | tuple[int, int] | str
    dilation: int | tuple[int, int]
    groups: int
    bias: bool

    def operands(self, dtype=torch.float64, device="cpu", channels_last=False, seed=0):
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(self.batch, self.in_channels, *self.size, generator=generator, dtype=torch.float64)
        w = torch.randn(self.weight_shape(), generator=generator, dtype=torch.float64)
        b = torch.randn(self.out_channels, generator=generator, dtype=torch.float64) if self.bias else None
        # Rounded to the test's dtype first, so a float64 reference sees exactly the same values.
        x, w, b = [None if t is None else t.to(dtype).to(torch.float64) for t in (x, w, b)]
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        return [None if t is None else t.to(device=device, dtype=dtype).requires_grad_() for t in (x, w, b)]

    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups, *self.kernel)

    def arguments(self):
        return self.stride, self.padding, self.dilation, self.groups


def _pair(value):
    return (value, value) if isinstance(value, int) else value


def _fits(case: Case) -> bool:
    if case.padding == "same" and _pair(case.stride) != (1, 1):
        return False
    for axis in range(2):
        if case.padding == "same":
            return True
        pad = 0 if case.padding == "valid" else _pair(case.padding)[axis]
        reach = _pair(case.dilation)[axis] * (case.kernel[axis] - 1) + 1
        if case.size[axis] + 2 * pad < reach:
            return False
    return True


def random_cases(seed: int, count: int) -> list[Case]:
    """Configurations over the grid the issue names: groups (depthwise too), kernels 1-7 non-square,
    strides 1-3, paddings including "same"/"valid", dilations 1-3, with and without bias."""
    rng = random.Random(seed)
    cases: list[Case] = []
    while len(cases) < count:
        groups = rng.choice([1, 1, 2, 3])
        in_per_group, out_per_group = rng.randint(1, 3), rng.randint(1, 3)
        if rng.random() < 0.25:  # depthwise, sometimes with a channel multiplier
            groups, in_per_group, out_per_group = rng.randint(2, 4), 1, rng.choice([1, 2])
        stride = rng.choice([1, 2, 3, (rng.randint(1, 3), rng.randint(1, 3))])
        padding = rng.choice([0, 1, 2, (rng.randint(0, 3), rng.randint(0, 3)), "valid", "same"])
        case = Case(
            batch=rng.randint(1, 3),
            in_channels=groups * in_per_group,
            out_channels=groups * out_per_group,
            size=(rng.randint(3, 11), rng.randint(3, 11)),
            kernel=(rng.randint(1, 7), rng.randint(1, 7)),
            stride=stride,
            padding=padding,
            dilation=rng.choice([1, 2, 3, (1, 2)]),
            groups=groups,
            bias=rng.random() < 0.5,
        )
        if _fits(case):
            cases.append(case)
    return cases


EDGE_CASES = [
    Case(2, 3, 4, (8, 9), (2, 4), 1, "same", 1, 1, True),  # even kernels: torch pads one more after
    Case(2, 3, 4, (8, 9), (2, 3), 1, "same", (3, 2), 1, False),  # ... and with dilation
    Case(2, 4, 6, (9, 9), (1, 1), 2, 0, 1, 1, False),  # ResNet's 1x1 stride-2 shortcut
    Case(1, 2, 3, (5, 6), (1, 1), 1, 2, 1, 1, True),  # padding beyond the kernel's reach
    Case(2, 3, 2, (10, 8), (3, 3), 3, 0, 1, 1, False),  # trailing input no output reads
    Case(2, 6, 12, (7, 7), (3, 3), 2, 1, 1, 6, True),  # depthwise with multiplier 2, strided
    Case(1, 4, 4, (12, 12), (3, 3), 2, 2, 2, 2, False),  # stride and dilation together
    Case(3, 3, 8, (16, 16), (7, 7), 2, 3, 1, 1, False),  # a stem
    Case(2, 16, 12, (5, 5), (5, 5), 1, 0, 1, 1, True),  # LeNet's C5: its input gradient pads 1x1 up to 9x9
    Case(2, 3, 4, (3, 4), (3, 3), 2, 3, 1, 1, False),  # more padding than input, strided
    Case(2, 8, 8, (6, 5), (3, 3), 1, 1, 1, 8, True),  # depthwise on a narrow map
]
CASES = random_cases(seed=0, count=40) + EDGE_CASES


@contextlib.contextmanager
def evaluation(method: str):
    """Force one of the primitive's evaluation paths (module knobs, restored afterwards)."""
    knobs = {
        "auto": {},
        "shifted": {"_MIN_CONTRACTION": 0, "_MAX_WASTE": float("inf")},  # grid views only
        "gathered": {"_MAX_WASTE": 0.0},  # im2col blocks only
        "planes": {"_PLANES_MIN_CELLS": 0},  # channels-first grids wherever allowed
        "chunked": {"_CHUNK_BYTES": {"cpu": 1}},  # one image, one row band at a time
    }[method]
    saved = {name: getattr(correlation, name) for name in knobs}
    for name, value in knobs.items():
        setattr(correlation, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(correlation, name, value)


METHODS = ["auto", "shifted", "gathered", "planes", "chunked"]


def forward_and_gradients(function, case: Case, dtype, device="cpu", channels_last=False):
    x, w, b = case.operands(dtype, device, channels_last)
    out = function(x, w, b, *case.arguments())
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grad_out = grad_out.to(device=device, dtype=dtype)
    out.backward(grad_out)
    results = {"output": out, "input": x.grad, "weight": w.grad}
    if b is not None:
        results["bias"] = b.grad
    return results


def assert_relative_close(mine: dict, reference: dict, tolerance: float, label: str = "") -> None:
    for name, expected in reference.items():
        got = mine[name]
        assert got.shape == expected.shape, f"{label} {name}: shape {tuple(got.shape)} != {tuple(expected.shape)}"
        scale = expected.abs().max().item() or 1.0
        error = (got - expected).abs().max().item() / scale
        assert error <= tolerance, f"{label} {name}: relative error {error:.2e} > {tolerance:.0e}"


def torch_reference(case: Case, dtype, device="cpu", channels_last=False):
    """``F.conv2d``'s output and gradients for the same values, computed in float64.

    For a float32 comparison this is the stricter reference (torch's own float32 result
    is itself ~1e-6 off), and on CPU it spares oneDNN compiling a kernel per shape.
    """
    with contextlib.ExitStack() as stack:
        if device == "cuda":  # cuDNN would otherwise use TF32 for float32
            stack.enter_context(torch.backends.cudnn.flags(enabled=True, allow_tf32=False))
        results = forward_and_gradients(F.conv2d, case, torch.float64, device, channels_last)
    return {name: value.to(dtype) for name, value in results.items()}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_float64_equals_torch_within_1e_10(case, method):
    with evaluation(method):
        mine = forward_and_gradients(conv2d, case, torch.float64)
    assert_relative_close(mine, torch_reference(case, torch.float64), 1e-10, method)


@pytest.mark.parametrize("method", ["auto", "shifted"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_float32_equals_torch_within_1e_4(case, method):
    with evaluation(method):
        mine = forward_and_gradients(conv2d, case, torch.float32)
    assert_relative_close(mine, torch_reference(case, torch.float32), 1e-4, method)


@pytest.mark.parametrize("method", ["auto", "shifted", "gathered"])
@pytest.mark.parametrize("case", CASES[::3] + EDGE_CASES, ids=str)
def test_channels_last_in_channels_last_out(case, method):
    with evaluation(method):
        mine = forward_and_gradients(conv2d, case, torch.float64, channels_last=True)
    reference = torch_reference(case, torch.float64, channels_last=True)
    assert_relative_close(mine, reference, 1e-10, method)
    assert mine["output"].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("method", ["auto", "planes", "chunked"])
def test_imagenet_sized_layers_equal_torch(method):
    """Shapes big enough to take the paths small tests never reach (planes, bands, multi-image chunks)."""
    cases = [
        Case(2, 3, 16, (40, 40), (7, 7), 2, 3, 1, 1, False),  # stem: thin channels, gathered in bands
        Case(2, 40, 48, (16, 16), (1, 1), 1, 0, 1, 1, True),  # pointwise on a channels-first plane
        Case(2, 40, 48, (30, 30), (1, 1), 2, 0, 1, 1, False),  # strided pointwise shortcut
        Case(3, 48, 40, (14, 14), (3, 3), 1, 1, 1, 1, False),  # 3x3 on a small map
        Case(2, 32, 32, (20, 20), (3, 3), 2, 1, 1, 32, False),  # depthwise, strided
    ]
    for case in cases:
        with evaluation(method):
            mine = forward_and_gradients(conv2d, case, torch.float32)
        assert_relative_close(mine, torch_reference(case, torch.float32), 1e-4, f"{method} {case}")


small_cases = st.builds(
    lambda groups, per_group, out_per_group, depthwise, batch, size, kernel, stride, padding, dilation, bias: Case(
        batch,
        groups * (1 if depthwise else per_group),
        groups * (1 if depthwise else out_per_group),
        size,
        kernel,
        stride,
        padding,
        dilation,
        groups,
        bias,
    ),
    groups=st.integers(1, 3),
    per_group=st.integers(1, 2),
    out_per_group=st.integers(1, 2),
    depthwise=st.booleans(),
    batch=st.integers(1, 2),
    size=st.tuples(st.integers(3, 6), st.integers(3, 6)),
    kernel=st.tuples(st.integers(1, 7), st.integers(1, 7)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.one_of(st.tuples(st.integers(0, 3), st.integers(0, 3)), st.sampled_from(["same", "valid"])),
    dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    bias=st.booleans(),
).filter(_fits)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(case=small_cases, method=st.sampled_from(["auto", "shifted", "gathered"]))
def test_gradcheck_float64(case, method):
    """Finite differences agree with ``backward``: checked along random directions (gradcheck's
    fast mode), which catches any wrong Jacobian entry with probability one."""
    x, w, b = case.operands(torch.float64)
    inputs = (x, w) if b is None else (x, w, b)

    def function(*tensors):
        return conv2d(*tensors, *case.arguments()) if b is not None else conv2d(*tensors, None, *case.arguments())

    with evaluation(method):
        assert torch.autograd.gradcheck(function, inputs, eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True)


@needs_cuda
@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("case", CASES[::2] + EDGE_CASES, ids=str)
def test_cuda_equals_torch(case, dtype, tolerance):
    mine = forward_and_gradients(conv2d, case, dtype, device="cuda")
    reference = torch_reference(case, dtype, device="cuda")
    assert_relative_close(mine, reference, tolerance)


def autocast_case(device: str, dtype: torch.dtype):
    case = Case(4, 16, 24, (12, 12), (3, 3), 1, 1, 1, 1, True)
    results = {}
    for name, function in (("scratch", conv2d), ("torch", F.conv2d)):
        x, w, b = case.operands(torch.float32, device)
        with torch.autocast(device_type=device, dtype=dtype):
            out = function(x, w, b, *case.arguments())
        out.float().square().mean().backward()
        results[name] = {"output": out, "input": x.grad, "weight": w.grad, "bias": b.grad}
    return results


@pytest.mark.parametrize(
    "device,dtype",
    [
        ("cpu", torch.bfloat16),
        pytest.param("cuda", torch.bfloat16, marks=needs_cuda),
        pytest.param("cuda", torch.float16, marks=needs_cuda),
    ],
)
def test_autocast_runs_in_low_precision_like_torch(device, dtype):
    results = autocast_case(device, dtype)
    assert results["scratch"]["output"].dtype == results["torch"]["output"].dtype == dtype
    assert results["scratch"]["weight"].dtype == torch.float32, "gradients reach the float32 parameters"
    assert_relative_close(results["scratch"], results["torch"], 3e-2)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_bfloat16_sums_of_many_taps_are_rounded_once(layout):
    """Reduced precision accumulates in float32 on every path, as the gathered product does.

    Ones convolved with ones count the taps each output reads: 289 of them at the centre of
    a depthwise 17x17 kernel and of a 33x33 kernel over a 17x17 input mostly padded away
    (the clipped path).  Summed in bfloat16 the count sticks at 256, where adding 1 no longer
    changes a bfloat16; summed in float32 it is 289, which rounds once to 288.
    """
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    cases = [  # (input shape, weight shape, padding, groups)
        ((1, 2, 20, 20), (2, 1, 17, 17), 8, 2),  # depthwise
        ((1, 1, 17, 17), (1, 1, 33, 33), 32, 1),  # clipped
    ]
    for x_shape, w_shape, padding, groups in cases:
        x = torch.ones(x_shape, dtype=torch.bfloat16).contiguous(memory_format=memory_format).requires_grad_()
        w = torch.ones(w_shape, dtype=torch.bfloat16, requires_grad=True)
        out = conv2d(x, w, padding=padding, groups=groups)
        out.backward(torch.ones_like(out))
        x64, w64 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
        exact = F.conv2d(x64, w64, padding=padding, groups=groups)
        exact.backward(torch.ones_like(exact))
        assert exact.max() == 289
        for name, got, expected in (("output", out, exact), ("input", x.grad, x64.grad), ("weight", w.grad, w64.grad)):
            assert torch.equal(got, expected.to(torch.bfloat16)), f"{w_shape} {name}: {got.max()} != {expected.max()}"


@needs_cuda
@pytest.mark.parametrize("case", CASES[::4] + EDGE_CASES, ids=str)
def test_cuda_channels_last_in_channels_last_out(case):
    mine = forward_and_gradients(conv2d, case, torch.float32, device="cuda", channels_last=True)
    reference = torch_reference(case, torch.float32, device="cuda", channels_last=True)
    assert_relative_close(mine, reference, 1e-4)
    assert mine["output"].is_contiguous(memory_format=torch.channels_last)


class PrimitiveCalls:
    """Records which of forward / input gradient / weight gradient called the primitive."""

    def __init__(self, case: Case):
        self.case = case
        self.calls: list[str] = []

    def __call__(self, x, w, **kwargs):
        group_out = self.case.out_channels // self.case.groups
        group_in = self.case.in_channels // self.case.groups
        if w.shape[1:3] == (group_out, group_in):
            self.calls.append("forward")
        elif w.shape[1:3] == (group_in, group_out):
            self.calls.append("input")
        else:
            self.calls.append("weight")
        return correlation.correlate(x, w, **kwargs)


@pytest.mark.parametrize(
    "wanted,expected_calls",
    [
        ({"input", "weight", "bias"}, ["forward", "input", "weight"]),
        ({"weight"}, ["forward", "weight"]),
        ({"input"}, ["forward", "input"]),
        ({"bias"}, ["forward"]),
    ],
)
def test_backward_computes_only_the_gradients_asked_for(monkeypatch, wanted, expected_calls):
    case = Case(2, 3, 5, (9, 9), (3, 3), 2, 1, 1, 1, True)  # distinct channel counts tell the calls apart
    recorder = PrimitiveCalls(case)
    monkeypatch.setattr(convolution, "correlate", recorder)
    x, w, b = case.operands(torch.float64)
    for tensor, name in ((x, "input"), (w, "weight"), (b, "bias")):
        tensor.requires_grad_(name in wanted)
    conv2d(x, w, b, *case.arguments()).sum().backward()
    assert recorder.calls == expected_calls
    assert (x.grad is not None, w.grad is not None, b.grad is not None) == tuple(
        name in wanted for name in ("input", "weight", "bias")
    )
    reference = torch_reference(case, torch.float64)
    if "bias" in wanted:
        torch.testing.assert_close(b.grad, torch.ones_like(reference["output"]).sum((0, 2, 3)))


FORBIDDEN_NAMES = {
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "convolution",
    "_convolution", "convolution_backward", "conv2d_input", "conv2d_weight", "mkldnn_convolution",
    "cudnn_convolution", "unfold_backward", "autograd", "backward", "vjp", "jacobian", "functional_call",
}


def names_used(source: str) -> set[str]:
    tree = ast.parse(textwrap.dedent(source))
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    return names | {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}


def test_backward_source_calls_no_builtin_convolution_or_autograd():
    """The rule of the exercise, checked on the code itself so that it cannot regress."""
    sources = [
        inspect.getsource(convolution._Convolution.backward),
        inspect.getsource(convolution._input_gradient),
        inspect.getsource(convolution._weight_gradient),
        inspect.getsource(correlation),
        inspect.getsource(plans),
    ]
    for source in sources:
        assert not names_used(source) & FORBIDDEN_NAMES, names_used(source) & FORBIDDEN_NAMES


def test_no_builtin_convolution_runs_in_forward_or_backward():
    x, w, b = Case(2, 4, 6, (12, 12), (3, 3), 2, 1, 1, 2, True).operands(torch.float32)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        conv2d(x, w, b, 2, 1, 1, 2).square().sum().backward()
    torch_ops = {event.name for event in profile.events() if event.name.startswith(("aten::", "mkldnn", "cudnn"))}
    assert torch_ops and not [op for op in torch_ops if "conv" in op or "dnn" in op], sorted(torch_ops)


@pytest.mark.parametrize(
    "arguments",
    [
        dict(stride=2, padding=1, dilation=1),
        dict(stride=(2,), padding=[1, 2], dilation=(1, 2)),
        dict(stride=[1, 2], padding=(0, 1), dilation=[2, 1]),
        dict(padding="valid"),
        dict(padding="same", dilation=2),
    ],
)
def test_argument_forms_like_torch(arguments):
    x, w = torch.randn(2, 4, 11, 10, dtype=torch.float64), torch.randn(6, 2, 3, 4, dtype=torch.float64)
    expected = F.conv2d(x, w, groups=2, **arguments)
    torch.testing.assert_close(conv2d(x, w, groups=2, **arguments), expected, rtol=1e-12, atol=1e-12)


def assert_output_can_be_modified_in_place_like_torchs(function, reference, cases) -> None:
    """``nn.ReLU(inplace=True)`` follows most convolutions: the output must not be a view."""
    for case in cases:
        x, w, b = case.operands(torch.float64)
        assert function(x, w, b, *case.arguments())._base is None
        mine = forward_and_gradients(lambda *a: function(*a).relu_(), case, torch.float64)
        expected = forward_and_gradients(lambda *a: reference(*a).relu_(), case, torch.float64)
        assert_relative_close(mine, expected, 1e-10)


def test_output_can_be_modified_in_place_like_torchs():
    cases = (CASES[0], EDGE_CASES[-1], Case(2, 16, 120, (5, 5), (5, 5), 1, 0, 1, 1, True))
    assert_output_can_be_modified_in_place_like_torchs(conv2d, F.conv2d, cases)


def assert_unbatched_input_and_empty_batch_like_torchs(function, reference, x, weight, **arguments) -> None:
    """A 3-D input is one image; an empty batch gives an empty batch of torch's shape."""
    torch.testing.assert_close(function(x, weight, **arguments), reference(x, weight, **arguments))
    empty = x.new_zeros(0, *x.shape)
    assert function(empty, weight, **arguments).shape == reference(empty, weight, **arguments).shape


def test_unbatched_input_and_empty_batch():
    x, w = torch.randn(3, 8, 8, dtype=torch.float64), torch.randn(5, 3, 3, 3, dtype=torch.float64)
    assert_unbatched_input_and_empty_batch_like_torchs(conv2d, F.conv2d, x, w, padding=1)


@pytest.mark.parametrize(
    "x_shape,w_shape,arguments",
    [
        ((1, 4, 8, 8), (2, 4, 3, 3), dict(stride=2, padding="same")),
        ((1, 4, 8, 8), (2, 3, 3, 3), dict()),
        ((1, 4, 8, 8), (3, 2, 3, 3), dict(groups=2)),
        ((1, 4, 2, 2), (2, 4, 3, 3), dict()),
        ((1, 4, 8, 8), (2, 4, 3, 3), dict(padding=-1)),
        ((1, 4, 8, 8), (2, 4, 3, 3), dict(padding="full")),
    ],
)
def test_rejects_what_torch_rejects(x_shape, w_shape, arguments):
    x, w = torch.randn(x_shape), torch.randn(w_shape)
    with pytest.raises((RuntimeError, ValueError)):
        F.conv2d(x, w, **arguments)
    with pytest.raises(RuntimeError):
        conv2d(x, w, **arguments)

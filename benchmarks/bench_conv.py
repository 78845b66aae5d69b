"""Time and memory of ``convzoo.ops.conv2d`` against ``torch.nn.functional.conv2d``, layer by layer.

For every distinct convolution shape of ResNet-50 (batch 32, 224x224), LeNet-5 and
MobileNet-v2's depthwise layers, both implementations run forward + backward side by
side in this process, alternating, and the script prints each layer's ratio, the
time-weighted total (sum of scratch times over sum of torch times) and the peak memory
of one forward + backward.

Layer shapes are read off the zoo's own models (``convzoo.create_model``) with forward
hooks on the meta device, so nothing is computed to find them.  A stem convolution
(whose input is the image) is timed without an input gradient, as in training.

Peak memory is what the convolution allocates on top of its inputs: on CUDA the
allocator's peak; on CPU the running sum of the allocations and frees that torch's
profiler records (``profile_memory=True``), whose maximum is the peak.  Both count every
tensor torch allocates, including oneDNN's reorder buffers and scratchpads; neither
sees the matrix-multiply library's private packing buffers.

    python benchmarks/bench_conv.py                     # full CPU run, a few minutes
    python benchmarks/bench_conv.py --quick             # smoke run, seconds
    python benchmarks/bench_conv.py --models resnet50 --batch-size 8 --repeats 3
    python benchmarks/bench_conv.py --device cuda       # against cuDNN
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn
from torch.nn import functional as F

import convzoo
from convzoo.ops import conv2d as scratch_conv2d


@dataclass(frozen=True)
class ConvShape:
    """One convolution as the network runs it."""

    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    groups: int
    bias: bool
    height: int
    width: int

    @property
    def is_stem(self) -> bool:
        return self.in_channels <= 3

    def describe(self) -> str:
        kind = "dw " if self.groups == self.in_channels > 1 else ""
        return (
            f"{kind}{self.in_channels}->{self.out_channels} k{self.kernel[0]}x{self.kernel[1]} "
            f"s{self.stride[0]} @{self.height}x{self.width}"
        )


MODELS: dict[str, tuple[int, int, Callable[[nn.Conv2d], bool]]] = {
    # name: (channels, image size at full scale, which convolutions to keep)
    "resnet50": (3, 224, lambda conv: True),
    "lenet5": (1, 32, lambda conv: True),
    "mobilenet_v2": (3, 224, lambda conv: conv.groups == conv.in_channels > 1),
}


def conv_shapes(model_name: str, image_size: int) -> Counter[ConvShape]:
    """Every convolution the model runs on one image, with how many times each shape occurs."""
    channels, _, keep = MODELS[model_name]
    with torch.device("meta"):
        model = convzoo.create_model(model_name, image_size=image_size)
    shapes: Counter[ConvShape] = Counter()

    def record(conv: nn.Conv2d, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
        if keep(conv):
            height, width = inputs[0].shape[-2:]
            padding = conv.padding if isinstance(conv.padding, tuple) else (0, 0)
            shape = ConvShape(
                conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, padding,
                conv.groups, conv.bias is not None, height, width,
            )
            shapes[shape] += 1

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(record)
    model.eval()
    model(torch.empty(1, channels, image_size, image_size, device="meta"))
    return shapes


def make_operands(shape: ConvShape, batch: int, device: str, dtype: torch.dtype, channels_last: bool):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, shape.in_channels, shape.height, shape.width, generator=generator, dtype=dtype)
    w = torch.randn(shape.out_channels, shape.in_channels // shape.groups, *shape.kernel, generator=generator, dtype=dtype)
    w /= w[0].numel() ** 0.5
    b = torch.randn(shape.out_channels, generator=generator, dtype=dtype) if shape.bias else None
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x, w = x.to(device).requires_grad_(not shape.is_stem), w.to(device).requires_grad_()
    b = None if b is None else b.to(device).requires_grad_()
    return x, w, b


def step_function(conv, shape: ConvShape, operands, grad_out: torch.Tensor) -> Callable[[], None]:
    x, w, b = operands

    def step() -> None:
        for t in (x, w, b):
            if t is not None:
                t.grad = None
        out = conv(x, w, b, shape.stride, shape.padding, 1, shape.groups)
        out.backward(grad_out)

    return step


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_side_by_side(steps: dict[str, Callable[[], None]], repeats: int, warmup: int, device: str) -> dict[str, float]:
    """Median seconds per call, the implementations alternating so that load noise hits both alike."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            synchronize(device)
            start = time.perf_counter()
            step()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Silence C++ writes to file descriptor 2 while the profiler runs.

    Kineto logs two lines per profile ("profiler_start", "profiler_stop") and a warning
    about blocks allocated before it started, straight from C++: about 290 lines for a
    full run, burying the table. Python-level errors still propagate as exceptions.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def peak_bytes(step: Callable[[], None], device: str) -> float:
    """Peak bytes allocated during ``step`` beyond what was live before it (NaN if unmeasurable)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    try:
        from torch._C._profiler import _EventType
        from torch.profiler import ProfilerActivity, profile

        with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            step()
        allocations = []
        pending = list(prof.profiler.kineto_results.experimental_event_tree())
        while pending:
            node = pending.pop()
            pending.extend(node.children)
            if node.tag == _EventType.Allocation and node.extra_fields.device.type == "cpu":
                allocations.append((node.start_time_ns, node.extra_fields.alloc_size))
    except Exception:  # private profiler API: report "n/a" rather than fail the timing run
        return float("nan")
    live = peak = 0
    for _, size in sorted(allocations):
        live += size
        peak = max(peak, live)
    return float(peak)


def run(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        # Compare like with like: cuDNN would otherwise use TF32 for float32 convolutions.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    dtype = getattr(torch, args.dtype)
    print(
        f"# bench_conv: device={args.device} threads={torch.get_num_threads()} batch={args.batch_size} "
        f"dtype={args.dtype} channels_last={args.channels_last} repeats={args.repeats} torch={torch.__version__}"
    )
    header = (
        f"{'model':<13}{'layer':<34}{'n':>3}{'torch ms':>10}{'scratch ms':>11}{'ratio':>7}"
        f"{'torch MB':>10}{'scratch MB':>11}{'mem x':>7}"
    )
    print(header)
    print("-" * len(header))
    totals = {"distinct": [0.0, 0.0], "weighted": [0.0, 0.0]}
    worst_memory = 0.0
    for model_name in args.models:
        _, full_size, _ = MODELS[model_name]
        image_size = min(full_size, args.image_size) if model_name != "lenet5" else 32
        model_totals = [0.0, 0.0]
        for shape, count in conv_shapes(model_name, image_size).items():
            if args.filter and args.filter not in shape.describe():
                continue
            operands = make_operands(shape, args.batch_size, args.device, dtype, args.channels_last)
            with torch.no_grad():
                out = F.conv2d(operands[0], operands[1], operands[2], shape.stride, shape.padding, 1, shape.groups)
            grad_out = torch.randn_like(out)
            steps = {
                "torch": step_function(F.conv2d, shape, operands, grad_out),
                "scratch": step_function(scratch_conv2d, shape, operands, grad_out),
            }
            seconds = time_side_by_side(steps, args.repeats, args.warmup, args.device)
            # The profiler now and then misses a run's allocations: the larger of two readings counts.
            memory = (
                {name: max(peak_bytes(step, args.device) for _ in range(2)) for name, step in steps.items()}
                if args.memory
                else {}
            )
            ratio = seconds["scratch"] / seconds["torch"]
            memory_ratio = memory["scratch"] / memory["torch"] if memory and memory["torch"] > 0 else float("nan")
            worst_memory = max(worst_memory, memory_ratio) if memory_ratio == memory_ratio else worst_memory
            for key, weight in (("distinct", 1), ("weighted", count)):
                totals[key][0] += weight * seconds["torch"]
                totals[key][1] += weight * seconds["scratch"]
            model_totals[0] += count * seconds["torch"]
            model_totals[1] += count * seconds["scratch"]
            mb = {name: value / 2**20 for name, value in memory.items()}
            print(
                f"{model_name:<13}{shape.describe():<34}{count:>3}{seconds['torch'] * 1e3:>10.1f}"
                f"{seconds['scratch'] * 1e3:>11.1f}{ratio:>7.2f}"
                f"{mb.get('torch', float('nan')):>10.1f}{mb.get('scratch', float('nan')):>11.1f}{memory_ratio:>7.2f}",
                flush=True,
            )
        if model_totals[0]:
            print(f"{model_name:<13}{'whole network (x n)':<34}{'':>3}{model_totals[0] * 1e3:>10.1f}"
                  f"{model_totals[1] * 1e3:>11.1f}{model_totals[1] / model_totals[0]:>7.2f}")
    print("-" * len(header))
    for key, label in (("distinct", "each distinct shape once"), ("weighted", "each shape x its count")):
        torch_s, scratch_s = totals[key]
        if torch_s:
            print(f"total time ratio, {label}: {scratch_s / torch_s:.2f}  ({scratch_s * 1e3:.1f} ms vs {torch_s * 1e3:.1f} ms)")
    if args.memory:
        print(f"worst peak-memory ratio: {worst_memory:.2f}")


def add_timing_options(parser: argparse.ArgumentParser) -> None:
    """The options of every side-by-side convolution benchmark (this one, bench_conv_transpose)."""
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per implementation (median reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224, help="for ResNet-50 and MobileNet-v2 (LeNet-5 is 32)")
    add_timing_options(parser)
    parser.add_argument("--channels-last", action="store_true", help="channels-last inputs")
    parser.add_argument("--filter", default="", help="only layers whose description contains this text")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory runs")
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 2, 64x64, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_size, args.image_size, args.repeats, args.warmup = 2, 64, 1, 0
    return args


if __name__ == "__main__":
    run(parse_args())

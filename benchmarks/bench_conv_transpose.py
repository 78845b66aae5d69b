"""Time ``convzoo.ops.conv_transpose2d`` against ``torch.nn.functional.conv_transpose2d``.

The shapes are the upsampling layers of segmentation networks on a 512x512 image: FCN-8s'
three learned upsamplings of 21-class score maps (2x with kernel 4 stride 2 from 1/32 and
from 1/16 of the image, then 8x with kernel 16 stride 8 from 1/8), and a U-Net decoder's
2x2 stride-2 up-convolution.  Each is timed forward only (inference) and forward +
backward (training), the two implementations alternating in this process; the script
prints each ratio (scratch time over torch time) and the totals.

    python benchmarks/bench_conv_transpose.py                  # batch 8, a minute or so on a laptop CPU
    python benchmarks/bench_conv_transpose.py --quick          # smoke run, seconds
    python benchmarks/bench_conv_transpose.py --device cuda    # against cuDNN
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))  # beside its siblings, however it is loaded
from bench_conv import add_timing_options, time_side_by_side  # noqa: E402
from bench_default_commands import cpu_model  # noqa: E402

from convzoo.ops import conv_transpose2d  # noqa: E402


@dataclass(frozen=True)
class UpsamplingShape:
    """One transposed convolution; padding ``(kernel - stride) / 2`` makes the output exactly ``stride`` times larger."""

    name: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    fraction: int
    """The input map is the image side divided by this."""

    @property
    def padding(self) -> int:
        return (self.kernel - self.stride) // 2

    def describe(self, image_size: int) -> str:
        side = image_size // self.fraction
        return f"{self.in_channels}->{self.out_channels} k{self.kernel} s{self.stride} @{side}x{side}"


SHAPES = [
    UpsamplingShape("fcn8s upscore2", 21, 21, 4, 2, 32),
    UpsamplingShape("fcn8s upscore_pool4", 21, 21, 4, 2, 16),
    UpsamplingShape("fcn8s upscore8", 21, 21, 16, 8, 8),
    UpsamplingShape("unet up-conv", 256, 128, 2, 2, 8),
]


def make_operands(shape: UpsamplingShape, batch: int, image_size: int, device: str, dtype: torch.dtype):
    generator = torch.Generator().manual_seed(0)
    side = image_size // shape.fraction
    x = torch.randn(batch, shape.in_channels, side, side, generator=generator, dtype=dtype)
    w = torch.randn(shape.in_channels, shape.out_channels, shape.kernel, shape.kernel, generator=generator, dtype=dtype)
    w /= (shape.in_channels * shape.kernel**2 / shape.stride**2) ** 0.5
    return x.to(device).requires_grad_(), w.to(device).requires_grad_()


def steps_for(function, shape: UpsamplingShape, x: torch.Tensor, w: torch.Tensor, grad_out: torch.Tensor):
    """The forward-only call and the forward + backward call of one implementation."""

    def forward() -> None:
        with torch.no_grad():
            function(x, w, None, shape.stride, shape.padding)

    def training() -> None:
        x.grad = w.grad = None
        function(x, w, None, shape.stride, shape.padding).backward(grad_out)

    return forward, training


def run(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.allow_tf32 = False  # like with like: cuDNN would use TF32 for float32
        machine = torch.cuda.get_device_name()
    else:
        machine = f"{cpu_model()}, {os.cpu_count()} cores"
    dtype = getattr(torch, args.dtype)
    print(
        f"# bench_conv_transpose: {machine}, {platform.system()}, torch {torch.__version__}, device={args.device} "
        f"threads={torch.get_num_threads()} batch={args.batch_size} image={args.image_size} dtype={args.dtype} "
        f"repeats={args.repeats}"
    )
    header = f"{'layer':<22}{'shape':<26}{'pass':<10}{'torch ms':>10}{'scratch ms':>12}{'ratio':>7}"
    print(header)
    print("-" * len(header))
    totals: dict[str, list[float]] = {"forward": [0.0, 0.0], "fwd+bwd": [0.0, 0.0]}
    for shape in SHAPES:
        x, w = make_operands(shape, args.batch_size, args.image_size, args.device, dtype)
        with torch.no_grad():
            grad_out = torch.randn_like(F.conv_transpose2d(x, w, None, shape.stride, shape.padding))
        torch_steps = steps_for(F.conv_transpose2d, shape, x, w, grad_out)
        scratch_steps = steps_for(conv_transpose2d, shape, x, w, grad_out)
        for label, torch_step, scratch_step in zip(totals, torch_steps, scratch_steps):
            seconds = time_side_by_side({"torch": torch_step, "scratch": scratch_step}, args.repeats, args.warmup,
                                        args.device)
            totals[label][0] += seconds["torch"]
            totals[label][1] += seconds["scratch"]
            print(
                f"{shape.name:<22}{shape.describe(args.image_size):<26}{label:<10}{seconds['torch'] * 1e3:>10.2f}"
                f"{seconds['scratch'] * 1e3:>12.2f}{seconds['scratch'] / seconds['torch']:>7.2f}",
                flush=True,
            )
    print("-" * len(header))
    for label, (torch_s, scratch_s) in totals.items():
        print(f"total time ratio, {label}: {scratch_s / torch_s:.2f}  ({scratch_s * 1e3:.1f} ms vs {torch_s * 1e3:.1f} ms)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=512, help="the input maps are 1/32, 1/16 and 1/8 of it")
    add_timing_options(parser)
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 1, 64x64, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_size, args.image_size, args.repeats, args.warmup = 1, 64, 1, 0
    return args


if __name__ == "__main__":
    run(parse_args())

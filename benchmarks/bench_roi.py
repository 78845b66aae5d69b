"""Time of ``convzoo.ops.roi_pool`` / ``roi_align`` against ``torchvision.ops``', side by side.

A detector's box head in miniature: RoIs of 16 to 400 pixels on a stride-16 feature map
(default 512 RoIs on a 256x50x50 map, an 800x800 image, two images), pooled to 7x7,
RoI align with 2x2 samples per bin as torchvision's Faster R-CNN uses.  Both
implementations run forward only (no autograd) and forward + backward, alternating, in
this process; the script prints each median, the ratio convzoo / torchvision and the
largest difference of the outputs.

    python benchmarks/bench_roi.py                    # CPU, a few seconds
    python benchmarks/bench_roi.py --quick            # smoke run
    python benchmarks/bench_roi.py --device cuda --rois 2048
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import torch
from torchvision import ops as tv_ops

sys.path.insert(0, str(Path(__file__).resolve().parent))  # beside its siblings, however it is loaded
from bench_conv import time_side_by_side  # noqa: E402
from bench_default_commands import cpu_model  # noqa: E402

from convzoo.ops import roi_align, roi_pool  # noqa: E402

STRIDE = 16


def make_inputs(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    dtype = getattr(torch, args.dtype)
    features = torch.randn(args.batch_size, args.channels, args.size, args.size, generator=generator)
    image_size = args.size * STRIDE
    corner = torch.rand(args.rois, 2, generator=generator) * image_size * 0.9
    extent = 16 + torch.rand(args.rois, 2, generator=generator) * (min(400, image_size) - 16)
    images = torch.randint(0, args.batch_size, (args.rois, 1), generator=generator).float()
    rois = torch.cat([images, corner, corner + extent], dim=1)
    return features.to(args.device, dtype), rois.to(args.device, dtype)


def steps_for(op: Callable[..., torch.Tensor], features: torch.Tensor, rois: torch.Tensor,
              arguments: tuple, backward: bool) -> Callable[[], None]:
    features = features.detach().requires_grad_(backward)
    upstream = op(features.detach(), rois, *arguments).detach().normal_()

    def step() -> None:
        if not backward:
            with torch.no_grad():
                op(features, rois, *arguments)
            return
        features.grad = None
        op(features, rois, *arguments).backward(upstream)

    return step


def run(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else cpu_model()
    print(f"# bench_roi: {device_name}, torch {torch.__version__}, torchvision "
          f"{__import__('torchvision').__version__}, threads={torch.get_num_threads()} device={args.device} "
          f"dtype={args.dtype} repeats={args.repeats}")
    print(f"# {args.rois} RoIs on {args.batch_size}x{args.channels}x{args.size}x{args.size}, output "
          f"{args.output_size}x{args.output_size}, spatial scale 1/{STRIDE}, align sampling {args.sampling_ratio}")
    features, rois = make_inputs(args)
    ops = {
        "roi_pool": ((roi_pool, tv_ops.roi_pool), (args.output_size, 1 / STRIDE)),
        "roi_align": ((roi_align, tv_ops.roi_align), (args.output_size, 1 / STRIDE, args.sampling_ratio)),
    }
    header = f"{'op':<11}{'pass':<18}{'torchvision ms':>15}{'convzoo ms':>12}{'ratio':>8}{'max |diff|':>12}"
    print(header)
    print("-" * len(header))
    for name, ((ours, theirs), arguments) in ops.items():
        with torch.no_grad():
            difference = (ours(features, rois, *arguments) - theirs(features, rois, *arguments)).abs().max().item()
        for label, backward in (("forward", False), ("forward+backward", True)):
            steps = {
                "torchvision": steps_for(theirs, features, rois, arguments, backward),
                "convzoo": steps_for(ours, features, rois, arguments, backward),
            }
            seconds = time_side_by_side(steps, args.repeats, args.warmup, args.device)
            print(f"{name:<11}{label:<18}{seconds['torchvision'] * 1e3:>15.2f}{seconds['convzoo'] * 1e3:>12.2f}"
                  f"{seconds['convzoo'] / seconds['torchvision']:>8.2f}{difference:>12.2e}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rois", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=2, help="images the RoIs are spread over")
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--size", type=int, default=50, help="feature map height and width")
    parser.add_argument("--output-size", type=int, default=7)
    parser.add_argument("--sampling-ratio", type=int, default=2,
                        help="RoI align samples per bin and axis (<= 0: adaptive)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per implementation (median reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 16 RoIs on 8x12x12, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.rois, args.channels, args.size, args.repeats, args.warmup = 16, 8, 12, 1, 0
    return args


if __name__ == "__main__":
    run(parse_args())

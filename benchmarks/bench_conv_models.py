"""Whole-model training steps with torch's convolutions against convzoo's scratch ones.

Two copies of the same model (same weights) train side by side in this process on the
same synthetic batch, one with ``nn.Conv2d`` and one after ``convzoo.ops.use_scratch_conv``,
their steps alternating so that load noise hits both alike; the script prints the median
step time of each and the ratio.  Everything but the convolutions (batch norm, pooling,
the optimiser) is shared, so the ratio is what a ``--conv scratch`` run costs.

    python benchmarks/bench_conv_models.py                          # ResNet-18 (32x3x224x224), LeNet-5
    python benchmarks/bench_conv_models.py --quick                  # smoke run
    python benchmarks/bench_conv_models.py --models resnet50 --image-size 128 --batch-size 16
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

import convzoo
from convzoo.ops import use_scratch_conv

DEFAULT_BATCH = {"lenet5": 128}
"""LeNet-5 at its MNIST batch size (469 steps make an epoch); everything else at 32."""


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor):
    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        outputs = model(images)
        logits = outputs[0] if isinstance(outputs, tuple) else outputs
        nn.functional.cross_entropy(logits, labels).backward()
        optimizer.step()

    return step


def bench_model(name: str, args: argparse.Namespace) -> tuple[float, float]:
    info = convzoo.get_model_info(name)
    channels = info.input_size[0]
    side = info.input_size[1] if info.fixed_input_size else args.image_size
    batch = args.batch_size or DEFAULT_BATCH.get(name, 32)
    torch.manual_seed(0)
    reference = convzoo.create_model(name, num_classes=args.num_classes, image_size=side).to(args.device)
    scratch = use_scratch_conv(copy.deepcopy(reference))
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    images = torch.randn(batch, channels, side, side, device=args.device).to(memory_format=memory_format)
    labels = torch.randint(0, args.num_classes, (batch,), device=args.device)
    steps = {}
    for label, model in (("torch", reference), ("scratch", scratch)):
        model.to(memory_format=memory_format).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        steps[label] = training_step(model, optimizer, images, labels)
    for _ in range(args.warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {label: [] for label in steps}
    for _ in range(args.steps):
        for label, step in steps.items():
            synchronize(args.device)
            start = time.perf_counter()
            step()
            synchronize(args.device)
            times[label].append(time.perf_counter() - start)
    torch_s, scratch_s = (statistics.median(times[label]) for label in ("torch", "scratch"))
    shape = f"{batch}x{channels}x{side}x{side}"
    print(f"{name:<14}{shape:<18}{torch_s * 1e3:>12.1f}{scratch_s * 1e3:>14.1f}{scratch_s / torch_s:>8.2f}", flush=True)
    return torch_s, scratch_s


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "lenet5"])
    parser.add_argument("--batch-size", type=int, default=0, help="default: 32 (LeNet-5: 128)")
    parser.add_argument("--image-size", type=int, default=224, help="ignored by fixed-size models (LeNet-5)")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per implementation (median reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 4, 64x64, 1 step")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_size, args.image_size, args.steps, args.warmup, args.num_classes = 4, 64, 1, 0, 10
    return args


def run(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.allow_tf32 = False  # compare float32 with float32
        torch.backends.cuda.matmul.allow_tf32 = False
    print(f"# bench_conv_models: device={args.device} threads={torch.get_num_threads()} torch={torch.__version__}")
    header = f"{'model':<14}{'batch':<18}{'torch ms':>12}{'scratch ms':>14}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    for name in args.models:
        bench_model(name, args)


if __name__ == "__main__":
    run(parse_args())

"""FCN-32s, FCN-16s, FCN-8s and U-Net on mnist-scenes at an equal budget (issue 25, acceptance 1),
and the scratch transposed convolution inside a full FCN-8s training step (acceptance 2).

    python benchmarks/bench_segmentation.py --data-dir ../shared/data
    python benchmarks/bench_segmentation.py --models fcn8s_resnet18,unet --epochs 3 --train-size 5000
    python benchmarks/bench_segmentation.py --quick          # a smoke run of both parts

Part 1 trains each model with ``convzoo train --model M --dataset mnist-scenes --epochs E
--set train_size=N`` (its own recipe decides the rest: the same budget in epochs and images
for every model) and reports the best test mIoU, pixel accuracy, time per epoch and images/s.
Long et al. (2015, Table 2) found FCN-8s > FCN-16s > FCN-32s on one backbone: the skips from
the stride-16 and stride-8 exits recover the boundaries that the stride-32 map loses.

Part 2 builds one FCN-8s twice with the same weights: torch's ``nn.ConvTranspose2d``, and
convzoo's ``ScratchConvTranspose2d`` in its place (every other layer torch's), runs the same
training steps on the same batch (forward, backward, SGD update) and compares the outputs,
the gradients of every upsampling weight, and the time of a step, alternating the two.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # beside its sibling, however it is loaded
from bench_default_commands import cpu_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODELS = ("fcn32s_resnet18", "fcn16s_resnet18", "fcn8s_resnet18", "unet")


def train_one(model: str, args: argparse.Namespace, out: Path) -> dict:
    command = [sys.executable, "-m", "convzoo", "train", "--model", model, "--dataset", "mnist-scenes",
               "--epochs", str(args.epochs), "--set", f"train_size={args.train_size}", "--out", str(out),
               "--name", model, "--quiet", "--json", *args.extra]
    if args.test_size:
        command += ["--set", f"test_size={args.test_size}"]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if finished.returncode != 0:
        sys.exit(f"failed ({finished.returncode}): {' '.join(command)}\n{finished.stderr.strip()[-2000:]}")
    result = json.loads(finished.stdout)
    records = [json.loads(line) for line in (out / model / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {
        "model": model, "best_miou": result["best_acc"], "best_epoch": result["best_epoch"],
        "mious": [record["test_miou"] for record in records],
        "pixel_acc": records[result["best_epoch"] - 1]["test_pixel_acc"],
        "epoch_s": statistics.mean(record["epoch_time_s"] for record in records),
        "images_per_s": statistics.mean(record["images_per_s"] for record in records),
        "wall_s": time.perf_counter() - started,
    }


def scratch_step(args: argparse.Namespace) -> dict:
    """Part 2: one FCN-8s, torch's and convzoo's transposed convolutions, the same steps."""
    import copy

    import torch

    from convzoo import create_model
    from convzoo.ops.modules import ScratchConvTranspose2d

    torch.manual_seed(0)
    side = args.side
    model = create_model(args.step_model, num_classes=11, in_channels=1, image_size=side)
    scratch = copy.deepcopy(model)
    swapped = 0
    for module in scratch.modules():
        if type(module) is torch.nn.ConvTranspose2d:
            module.__class__ = ScratchConvTranspose2d
            swapped += 1
    images = torch.randn(args.step_batch, 1, side, side)
    masks = torch.randint(0, 11, (args.step_batch, side, side))

    def step(network: torch.nn.Module, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        scores = network(images)
        torch.nn.functional.cross_entropy(scores, masks).backward()
        optimizer.step()
        return scores.detach()

    optimizers = [torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9) for network in (model, scratch)]
    outputs = [step(network, optimizer) for network, optimizer in zip((model, scratch), optimizers)]
    upsampling = [name for name, module in model.named_modules() if isinstance(module, torch.nn.ConvTranspose2d)]
    weight_difference = max(float((dict(model.named_parameters())[f"{name}.weight"].detach()
                                   - dict(scratch.named_parameters())[f"{name}.weight"].detach()).abs().max())
                            for name in upsampling)
    times: dict[str, list[float]] = {"torch": [], "scratch": []}
    for _ in range(args.step_repeats):
        for label, network, optimizer in (("torch", model, optimizers[0]), ("scratch", scratch, optimizers[1])):
            started = time.perf_counter()
            step(network, optimizer)
            times[label].append(time.perf_counter() - started)
    torch_s, scratch_s = statistics.median(times["torch"]), statistics.median(times["scratch"])
    return {"model": args.step_model, "side": side, "batch": args.step_batch, "swapped": swapped,
            "max_output_difference": float((outputs[0] - outputs[1]).abs().max()),
            "max_upsampling_weight_difference_after_step": weight_difference,
            "torch_step_ms": 1000 * torch_s, "scratch_step_ms": 1000 * scratch_s, "ratio": scratch_s / torch_s,
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-size", type=int, default=10_000)
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument("--data-dir", default=os.environ.get("CONVZOO_DATA"))
    parser.add_argument("--step-model", default="fcn8s_resnet18")
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--step-batch", type=int, default=32)
    parser.add_argument("--step-repeats", type=int, default=10)
    parser.add_argument("--skip-training", action="store_true", help="Part 2 only.")
    parser.add_argument("--skip-part2", action="store_true", help="Part 1 only.")
    parser.add_argument("--markdown", default=None, help="Also write the tables to this file.")
    parser.add_argument("--quick", action="store_true", help="Tiny sizes: checks the script runs, measures nothing.")
    args, args.extra = parser.parse_known_args()
    if args.quick:
        args.epochs, args.train_size, args.test_size = 1, 64, 32
        args.step_batch, args.step_repeats, args.side = 2, 1, 32
        args.extra += ["--set", "batch_size=16"]
    import torch

    lines = [f"Run {datetime.date.today()} on {cpu_model()} ({os.cpu_count()} cores), torch {torch.__version__}, "
             f"Python {platform.python_version()}: `python benchmarks/bench_segmentation.py {' '.join(sys.argv[1:])}`", ""]
    if not args.skip_training:
        flags = " ".join(args.extra) or "none: every model's own recipe"
        lines += [f"Part 1: mnist-scenes, {args.epochs} epochs of {args.train_size:,} scenes each; flags for every "
                  f"model: {flags}.", "",
                  "| model | test mIoU by epoch | best mIoU | pixel accuracy | s / epoch | images / s |",
                  "|---|---|---|---|---|---|"]
        with tempfile.TemporaryDirectory() as folder:
            for model in args.models.split(","):
                row = train_one(model, args, Path(folder))
                lines.append(f"| {model} | {' → '.join(f'{m:.4f}' for m in row['mious'])} | **{row['best_miou']:.4f}** "
                             f"| {100 * row['pixel_acc']:.2f} % | {row['epoch_s']:.1f} | {row['images_per_s']:.0f} |")
                print(lines[-1], flush=True)
                if args.markdown:
                    Path(args.markdown).write_text("\n".join(lines) + "\n")
    if args.skip_part2:
        return
    step = scratch_step(args)
    lines += ["", f"Part 2: one training step of {step['model']} ({step['batch']} images of {step['side']}x{step['side']}, "
              f"{step['threads']} threads), its {step['swapped']} transposed convolutions torch's or convzoo's:", "",
              "| largest output difference | largest upsampling-weight difference after the step | torch step | "
              "scratch step | ratio |", "|---|---|---|---|---|",
              f"| {step['max_output_difference']:.2e} | {step['max_upsampling_weight_difference_after_step']:.2e} | "
              f"{step['torch_step_ms']:.1f} ms | {step['scratch_step_ms']:.1f} ms | **{step['ratio']:.2f}x** |"]
    print("\n".join(lines))
    if args.markdown:
        Path(args.markdown).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

"""Issue 24's augmentation: what it costs a ResNet-20 Fashion-MNIST training epoch, side by side.

Trains one epoch with ``configs/resnet20-fashion-mnist.yaml``'s recipe through ``convzoo.train``,
without and with the full augmentation (``--auto-augment trivialaugment --random-erasing 0.25``,
drawn per image and applied batched on the device, data/batched_augment.py), alternating which
goes first so that load from other processes hits both alike, and prints the training images/s
of each (the engine's own epoch time: the training loop, augmentation included, no evaluation)
and their ratio; the issue's target is >= 0.85. It also drains the training loader alone, to
show what the augmentation costs per image apart from the model.

    python benchmarks/bench_augment.py --data-dir ../shared/data --device cuda
    python benchmarks/bench_augment.py --data-dir ../shared/data --quick      # 4,096 images, one pass
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

FULL = {"auto_augment": "trivialaugment", "random_erasing": 0.25}
RECIPE = Path(__file__).resolve().parents[1] / "configs" / "resnet20-fashion-mnist.yaml"


def train_epoch(data_dir: str, device: str, train_size: int | None, batch_size: int, augmentation: dict) -> float:
    """Training images/s of one epoch of ResNet-20 on Fashion-MNIST, as the engine logs it."""
    from convzoo.config import load_config
    from convzoo.engine.train import train

    with tempfile.TemporaryDirectory() as out:
        overrides = {"data_dir": data_dir, "device": device, "epochs": 1, "batch_size": batch_size,
                     "train_size": train_size, "test_size": 256, "out": out, "name": "bench", **augmentation}
        config = load_config(RECIPE, overrides)
        result = train(config, quiet=True)
        record = json.loads(open(f"{result['run_dir']}/metrics.jsonl").read().splitlines()[-1])
    return record["images_per_s"]


def drain_loader(data_dir: str, device: str, train_size: int | None, batch_size: int, augmentation: dict) -> float:
    """Images/s of the training loader alone: gather, augment, normalise; no model."""
    from convzoo.data import build_loaders, get_dataset_spec

    loaders = build_loaders(get_dataset_spec("fashion-mnist"), batch_size=batch_size, eval_batch_size=1000,
                            device=device, data_dir=data_dir, train_size=train_size, test_size=256, **augmentation)
    images = 0
    started = time.perf_counter()
    for batch, _ in loaders.train:
        images += len(batch)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return images / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="passes of each, interleaved; the median is printed")
    parser.add_argument("--train-size", type=int, help="train on the first N images (default: all 60,000)")
    parser.add_argument("--quick", action="store_true", help="4,096 training images, one pass each: a smoke run")
    args = parser.parse_args(argv)
    train_size, repeats = (args.train_size or 4096, 1) if args.quick else (args.train_size, args.repeats)
    device = args.device
    name = torch.cuda.get_device_name() if device.startswith("cuda") else (platform.processor() or platform.machine())
    print(f"# {platform.node()} {name}, torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, "
          f"batch {args.batch_size}, {train_size or 60000} images, median of {repeats}")
    measured = {"plain": {"train": [], "loader": []}, "augmented": {"train": [], "loader": []}}
    ways = [("plain", {}), ("augmented", FULL)]
    for repeat in range(repeats):
        for label, augmentation in ways if repeat % 2 == 0 else ways[::-1]:
            measured[label]["train"].append(train_epoch(args.data_dir, device, train_size, args.batch_size, augmentation))
            measured[label]["loader"].append(drain_loader(args.data_dir, device, train_size, args.batch_size, augmentation))
    median = {label: {kind: statistics.median(values) for kind, values in kinds.items()} for label, kinds in measured.items()}
    print(f"{'':<40}{'train img/s':>14}{'loader img/s':>14}")
    print(f"{'no augmentation':<40}{median['plain']['train']:>14,.0f}{median['plain']['loader']:>14,.0f}")
    print(f"{'trivialaugment + random erasing 0.25':<40}{median['augmented']['train']:>14,.0f}"
          f"{median['augmented']['loader']:>14,.0f}")
    ratio = median["augmented"]["train"] / median["plain"]["train"]
    print(f"augmented / plain training throughput: {ratio:.2f}x (target >= 0.85x)")


if __name__ == "__main__":
    main()

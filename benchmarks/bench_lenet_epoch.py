"""One LeNet-5 MNIST training epoch, three ways, side by side in one process.

1. convzoo's engine (``convzoo.train`` with the shipped config's batch and optimiser);
2. the canonical torchvision loop: a DataLoader over ``torchvision.datasets.MNIST`` with
   ``Pad``/``ToTensor``/``Normalize``, same model, optimiser and batch size;
3. the bare compute loop: pre-normalised tensors sliced in a plain Python loop.

(3) is the floor: what the arithmetic costs. convzoo's overhead is (1)/(3) - 1; the
canonical loop shows what per-sample PIL work costs. Run:

    python benchmarks/bench_lenet_epoch.py --data-dir ../shared/data [--device cuda] [--repeats 2]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import torch
import torch.nn.functional as F


def build(device: torch.device, seed: int = 0):
    import convzoo

    torch.manual_seed(seed)
    model = convzoo.create_model("lenet5").to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    return model, optimizer


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_steps(model, optimizer, batches, device, amp: bool) -> int:
    seen = 0
    for images, labels in batches:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            loss = F.cross_entropy(model(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += labels.numel()
    synchronize(device)
    return seen


def bare_loop(data_dir: str, device: torch.device, batch_size: int, amp: bool) -> float:
    from convzoo.data import get_dataset_spec, load_tensors
    from convzoo.data.memory import pad_images

    spec = get_dataset_spec("mnist")
    images, labels = load_tensors(spec, train=True, data_dir=data_dir)
    images = ((pad_images(images, 32).float() / 255 - spec.mean[0]) / spec.std[0]).to(device)
    labels = labels.to(device)
    model, optimizer = build(device)
    order = torch.randperm(len(labels), device=device)
    images, labels = images[order], labels[order]
    batches = [(images[i:i + batch_size], labels[i:i + batch_size]) for i in range(0, len(labels) - batch_size + 1, batch_size)]
    train_steps(model, optimizer, batches[:20], device, amp)  # warm-up
    started = time.perf_counter()
    train_steps(model, optimizer, batches, device, amp)
    return time.perf_counter() - started


def canonical_loop(data_dir: str, device: torch.device, batch_size: int, amp: bool, workers: int) -> float:
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.Pad(2), transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    dataset = datasets.MNIST(data_dir, train=True, download=True, transform=transform)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
                        pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    model, optimizer = build(device)
    started = time.perf_counter()
    train_steps(model, optimizer, loader, device, amp)
    return time.perf_counter() - started


def convzoo_engine(data_dir: str, device: torch.device, batch_size: int, amp: bool) -> tuple[float, float]:
    """(training-loop seconds of the epoch as the engine logs it, whole train() call seconds)."""
    import json

    from convzoo.config import TrainConfig
    from convzoo.engine.train import train

    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(model="lenet5", dataset="mnist", data_dir=data_dir, epochs=1, batch_size=batch_size,
                             lr=0.05, schedule="constant", weight_decay=0.0, device=device.type, amp=amp, out=out, name="bench")
        started = time.perf_counter()
        result = train(config, quiet=True)
        whole = time.perf_counter() - started
        record = json.loads(open(f"{result['run_dir']}/metrics.jsonl").read().splitlines()[-1])
    return record["epoch_time_s"], whole


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2, help="best of N for each way")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of the canonical loop")
    parser.add_argument("--no-amp", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    amp = not args.no_amp
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f", batch {args.batch_size}, best of {args.repeats}")
    bare, canonical, engine_loop, engine_whole = [], [], [], []
    for _ in range(args.repeats):  # interleaved, so drifting machine load hits all three alike
        bare.append(bare_loop(args.data_dir, device, args.batch_size, amp))
        canonical.append(canonical_loop(args.data_dir, device, args.batch_size, amp, args.workers))
        loop, whole = convzoo_engine(args.data_dir, device, args.batch_size, amp)
        engine_loop.append(loop)
        engine_whole.append(whole)
    bare_s, canonical_s, engine_s, whole_s = min(bare), min(canonical), min(engine_loop), min(engine_whole)
    print(f"{'way':<44}{'epoch s':>9}{'vs bare':>9}")
    print(f"{'bare compute loop (in-memory tensors)':<44}{bare_s:>9.2f}{1:>9.2f}")
    print(f"{f'canonical torchvision DataLoader (workers={args.workers})':<44}{canonical_s:>9.2f}{canonical_s / bare_s:>9.2f}")
    print(f"{'convzoo engine, training loop':<44}{engine_s:>9.2f}{engine_s / bare_s:>9.2f}")
    print(f"{'convzoo train(), whole call (+eval, ckpt)':<44}{whole_s:>9.2f}{whole_s / bare_s:>9.2f}")
    print(f"convzoo overhead over bare: {100 * (engine_s / bare_s - 1):+.1f}%; "
          f"convzoo vs canonical: {canonical_s / engine_s:.2f}x faster")


if __name__ == "__main__":
    main()

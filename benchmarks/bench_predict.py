"""``convzoo predict`` over a folder of PNGs against a plain torchvision loop doing the same.

Writes the first ``--count`` MNIST test images as PNG files (ImageFolder layout, one
sub-folder per digit), then alternates, ``--rounds`` times each:

- convzoo: ``Predictor.from_checkpoint(ckpt).predict_files([folder], top_k=5)``, the code
  behind ``convzoo predict --checkpoint CKPT FOLDER``;
- baseline: ``torchvision.datasets.ImageFolder`` (PIL decoding) with ``Grayscale``,
  ``Pad`` to the model's side, ``ToTensor``, ``Normalize``, a ``DataLoader`` with the same
  batch size and workers, and ``softmax(model(x)).topk(5)`` under ``inference_mode``.

Both exclude building the model; both include listing the folder, decoding, batching and
the forward pass. Prints images/s (best round of each) and checks the top-1 classes agree.

    python benchmarks/bench_predict.py --checkpoint runs/lenet5-mnist/best.pt
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch


def write_pngs(folder: Path, data_dir: str | None, count: int) -> None:
    from torchvision.io import write_png

    from convzoo.data import get_dataset_spec, load_tensors

    images, labels = load_tensors(get_dataset_spec("mnist"), train=False, data_dir=data_dir, size=count)
    for index, (image, label) in enumerate(zip(images, labels.tolist())):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        write_png(image, str(folder / str(label) / f"{index:05d}.png"))


def run_convzoo(predictor, folder: Path, batch_size: int, workers: int) -> list[int]:
    return [result.classes[0] for result in
            predictor.predict_files([folder], top_k=5, batch_size=batch_size, num_workers=workers)]


def run_baseline(model, preprocessing, folder: Path, batch_size: int, workers: int) -> list[int]:
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    padding = (preprocessing.model_side - preprocessing.dataset_side) // 2
    transform = transforms.Compose([
        transforms.Grayscale(), transforms.Pad(padding), transforms.ToTensor(),
        transforms.Normalize(preprocessing.mean, preprocessing.std),
    ])
    loader = DataLoader(datasets.ImageFolder(str(folder), transform=transform), batch_size=batch_size,
                        num_workers=workers)
    top1 = []
    with torch.inference_mode():
        for images, _ in loader:
            top1 += torch.softmax(model(images), dim=1).topk(5, dim=1).indices[:, 0].tolist()
    return top1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="A LeNet-5 MNIST run's best.pt.")
    parser.add_argument("--data-dir", default=os.environ.get("CONVZOO_DATA"))
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: convzoo's).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    from convzoo.deploy import Predictor
    from convzoo.deploy.predict import default_workers

    workers = default_workers() if args.workers is None else args.workers
    predictor = Predictor.from_checkpoint(args.checkpoint, device="cpu")
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        write_pngs(folder, args.data_dir, args.count)
        rates: dict[str, list[float]] = {"convzoo": [], "baseline": []}
        answers = {}
        for _ in range(args.rounds):
            for name, run in (("convzoo", lambda: run_convzoo(predictor, folder, args.batch_size, workers)),
                              ("baseline", lambda: run_baseline(predictor.model, predictor.preprocessing, folder,
                                                                args.batch_size, workers))):
                started = time.perf_counter()
                answers[name] = run()
                rates[name].append(args.count / (time.perf_counter() - started))
    # ImageFolder orders by class folder then name, convzoo by path: the same sorted order here.
    agree = sum(a == b for a, b in zip(answers["convzoo"], answers["baseline"]))
    print(f"torch {torch.__version__}, {args.threads} threads, {workers} workers, batch {args.batch_size}, "
          f"{args.count} PNGs, best of {args.rounds}", file=sys.stderr)
    convzoo, baseline = max(rates["convzoo"]), max(rates["baseline"])
    print(f"convzoo predict: {convzoo:,.0f} images/s  (rounds: {', '.join(f'{r:,.0f}' for r in rates['convzoo'])})")
    print(f"torchvision ImageFolder loop: {baseline:,.0f} images/s  "
          f"(rounds: {', '.join(f'{r:,.0f}' for r in rates['baseline'])})")
    print(f"ratio {convzoo / baseline:.2f}x; top-1 agrees on {agree} of {args.count} images")


if __name__ == "__main__":
    main()

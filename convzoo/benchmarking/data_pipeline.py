"""How fast the input pipeline alone delivers training batches, beside torchvision's canonical one.

No model runs: the loader is drained and images/s counted, so the number is the ceiling
the data puts on training speed. The canonical pipeline is what torchvision's tutorials
and reference scripts use — a ``torchvision.datasets`` class (``ImageFolder`` for image
folders) with per-image transforms in a ``DataLoader`` — with the same batch size,
workers and transforms as convzoo's, so that the ratio measures the design, not settings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterable

import torch


@dataclass
class PipelineResult:
    dataset: str
    implementation: str
    batch_size: int
    num_workers: int
    images: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "images_per_s": self.images_per_s}


def drain(batches: Iterable[Any], max_batches: int, device: torch.device) -> tuple[int, float]:
    """Images and seconds to pull up to ``max_batches`` batches (the first one is not timed:
    it pays for starting workers and moving a dataset to the device)."""
    iterator = iter(batches)
    first = next(iterator, None)
    if first is None:
        return 0, 0.0
    images, started = 0, time.perf_counter()
    for index, (batch, _labels) in enumerate(iterator):
        if index >= max_batches:
            break
        images += batch.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return images, time.perf_counter() - started


def canonical_loader(spec: Any, data_dir: str | None, batch_size: int, num_workers: int):
    """torchvision's textbook pipeline for ``spec``: dataset class + per-image transforms + DataLoader."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    from convzoo.data import resolve_data_dir

    if spec.in_memory:
        normalize = transforms.Compose([transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)])
        root = str(resolve_data_dir(data_dir))
        classes = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST,
                   "cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}
        if spec.name not in classes:
            return None
        steps = [transforms.RandomCrop(spec.image_size, padding=4), transforms.RandomHorizontalFlip()] \
            if spec.augmentation == "crop_flip" else []
        dataset = classes[spec.name](root, train=True, download=False,
                                     transform=transforms.Compose([*steps, normalize]))
    else:
        from pathlib import Path

        from convzoo.data.imagefolder import split_folder

        folder = split_folder(Path(spec.name.split(":", 1)[1]).expanduser(), train=True)
        dataset = datasets.ImageFolder(str(folder), transform=transforms.Compose([
            transforms.RandomResizedCrop(spec.image_size), transforms.RandomHorizontalFlip(),
            transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std),
        ]))
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=num_workers,
                      persistent_workers=False)


def benchmark_pipelines(dataset: str, *, batch_size: int, num_workers: int, max_batches: int,
                        device: torch.device, data_dir: str | None = None,
                        compare: bool = True) -> list[PipelineResult]:
    """convzoo's training loader for ``dataset`` and (``compare``) the canonical torchvision one."""
    from convzoo.data import build_loaders, get_dataset_spec

    spec = get_dataset_spec(dataset)
    loaders = build_loaders(spec, batch_size=batch_size, eval_batch_size=batch_size, device=device,
                            data_dir=data_dir, num_workers=num_workers)
    loaders.train.set_epoch(0)
    images, seconds = drain(loaders.train, max_batches, device)
    results = [PipelineResult(spec.name, "convzoo", batch_size, num_workers if not spec.in_memory else 0, images,
                              seconds)]
    if compare:
        canonical = canonical_loader(spec, data_dir, batch_size, num_workers)
        if canonical is not None:
            images, seconds = drain(canonical, max_batches, torch.device("cpu"))
            results.append(PipelineResult(spec.name, "torchvision", batch_size, num_workers, images, seconds))
    return results

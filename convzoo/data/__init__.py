"""Datasets by name, and the loaders that feed them to the training loop.

``build_loaders(...)`` is the one entry point the engine uses: it returns train and test
loaders yielding normalised ``(images, labels)`` batches on the training device, plus the
dataset's spec (whose shape and class count size the model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from convzoo.data.catalog import DATASETS, DatasetSpec, dataset_names, dataset_shape, get_dataset_spec
from convzoo.data.files import resolve_data_dir

__all__ = [
    "DATASETS", "DatasetSpec", "Loaders", "build_loaders", "dataset_names", "dataset_shape", "fixed_random_subset",
    "get_dataset_spec", "load_tensors", "resolve_data_dir",
]


def load_tensors(spec: DatasetSpec, *, train: bool, data_dir: str | None = None, size: int | None = None):
    """A small dataset's split as uint8 images (N, C, H, W) and int64 labels (N,) on the CPU."""
    name = spec.name
    if name == "synthetic":
        from convzoo.data.synthetic import DEFAULT_TEST_SIZE, DEFAULT_TRAIN_SIZE, cached_synthetic

        count = size or (DEFAULT_TRAIN_SIZE if train else DEFAULT_TEST_SIZE)
        # The dataset's own seed is fixed: every run trains on the same synthetic images.
        return cached_synthetic(count, image_size=spec.image_size, channels=spec.channels, train=train)
    root = resolve_data_dir(data_dir)
    if name in ("mnist", "fashion-mnist"):
        from convzoo.data.mnist import load_mnist_like

        images, labels = load_mnist_like(name, root, train)
    else:
        from convzoo.data.cifar import load_cifar

        images, labels = load_cifar(name, root, train)
    if size is not None:
        images, labels = images[:size], labels[:size]
    return images, labels


@dataclass
class Loaders:
    spec: DatasetSpec
    train: Any
    test: Any
    image_size: int
    """Side of the images the model sees (after padding for fixed-size models)."""


def build_loaders(
    spec: DatasetSpec,
    *,
    batch_size: int,
    eval_batch_size: int,
    device: Any,
    data_dir: str | None = None,
    seed: int = 0,
    augment: bool = True,
    train_size: int | None = None,
    test_size: int | None = None,
    pad_to: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 4,
    channels_last: bool = False,
) -> Loaders:
    """Train and test loaders on ``device``; ``pad_to`` zero-pads small images (LeNet-5's 32x32).

    ``train_size`` / ``test_size`` keep only that many images of each split (all when None).
    """
    sizes = {True: train_size, False: test_size}
    if not spec.in_memory:
        return _build_streaming_loaders(spec, batch_size, eval_batch_size, augment, num_workers, rank, world_size,
                                        device, sizes)
    from convzoo.data.memory import InMemoryLoader, pad_images

    image_size = max(spec.image_size, pad_to or 0)
    loaders = []
    for train in (True, False):
        images, labels = load_tensors(spec, train=train, data_dir=data_dir, size=sizes[train])
        images = pad_images(images, image_size)
        loaders.append(InMemoryLoader(
            images, labels,
            batch_size=batch_size if train else eval_batch_size,
            mean=spec.mean, std=spec.std, device=device,
            shuffle=train, augmentation=spec.augmentation if (train and augment) else "none",
            seed=seed, drop_last=train, rank=rank if train else 0, world_size=world_size if train else 1,
            channels_last=channels_last,
        ))
    return Loaders(spec, loaders[0], loaders[1], image_size)


class _DeviceLoader:
    """Moves a DataLoader's CPU batches to the device (non-blocking from pinned memory)."""

    def __init__(self, loader: Any, device: Any, sampler: Any = None) -> None:
        self.loader, self.device, self.sampler = loader, device, sampler

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)

    def __iter__(self):
        for images, labels in self.loader:
            yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)


def fixed_random_subset(dataset: Any, size: int | None) -> Any:
    """``size`` items of ``dataset`` drawn once with a fixed seed, in their original order.

    An image folder lists its files class by class, so its first N would hold only the
    first few classes; the same N on every run and every rank keeps runs comparable.
    """
    import torch
    from torch.utils.data import Subset

    if size is None or size >= len(dataset):
        return dataset
    picked = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:size]
    return Subset(dataset, sorted(picked.tolist()))


def _build_streaming_loaders(spec, batch_size, eval_batch_size, augment, num_workers, rank, world_size, device,
                             sizes) -> Loaders:
    import torch
    from torch.utils.data import DataLoader, DistributedSampler

    from convzoo.data.imagefolder import build_imagefolder_dataset

    pin = torch.device(device).type == "cuda"
    train_set = fixed_random_subset(build_imagefolder_dataset(spec, train=True, augment=augment), sizes[True])
    test_set = fixed_random_subset(build_imagefolder_dataset(spec, train=False, augment=False), sizes[False])
    sampler = DistributedSampler(train_set, num_replicas=world_size, rank=rank, drop_last=True) if world_size > 1 else None
    common = dict(num_workers=num_workers, pin_memory=pin, persistent_workers=num_workers > 0)
    train_loader = DataLoader(
        train_set, batch_size=batch_size, shuffle=sampler is None, sampler=sampler, drop_last=True, **common
    )
    test_loader = DataLoader(test_set, batch_size=eval_batch_size, shuffle=False, **common)
    return Loaders(spec, _DeviceLoader(train_loader, device, sampler), _DeviceLoader(test_loader, device), spec.image_size)

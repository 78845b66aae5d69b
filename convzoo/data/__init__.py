"""Datasets by name, and the loaders that feed them to the training loop.

``build_loaders(...)`` is the one entry point the engine uses: it returns train and test
loaders yielding normalised ``(images, targets)`` batches on the training device, plus the
dataset's spec (whose shape and class count size the model). The targets are class labels,
or, with ``targets="masks"``/``"boxes"``, per-pixel class masks or padded boxes, for the
datasets that have them (``DatasetSpec.targets``); streamed detection folders
(``coco:``/``vocdet:``) yield a list of per-image dicts of boxes, labels and iscrowd.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

from convzoo.data.catalog import (
    DATASETS, DatasetSpec, check_targets, dataset_names, dataset_shape, get_dataset_spec,
)
from convzoo.data.files import resolve_data_dir

__all__ = [
    "DATASETS", "DatasetSpec", "Loaders", "build_loaders", "dataset_names", "dataset_shape", "default_num_workers",
    "fixed_random_subset", "get_dataset_spec", "load_tensors", "resolve_data_dir",
]


def load_tensors(spec: DatasetSpec, *, train: bool, data_dir: str | None = None, size: int | None = None,
                 targets: str = "labels"):
    """A small dataset's split as uint8 images (N, C, H, W) and its targets on the CPU:
    int64 labels (N,); uint8 class masks (N, H, W) for ``targets="masks"``; float32 boxes
    (N, 4, 5) of x1, y1, x2, y2, label (label -1 in padding rows) for ``targets="boxes"``."""
    check_targets(spec, targets)
    name = spec.name
    if name == "synthetic":
        from convzoo.data.synthetic import DEFAULT_TEST_SIZE, DEFAULT_TRAIN_SIZE, cached_synthetic

        count = size or (DEFAULT_TRAIN_SIZE if train else DEFAULT_TEST_SIZE)
        # The dataset's own seed is fixed: every run trains on the same synthetic images.
        return cached_synthetic(count, image_size=spec.image_size, channels=spec.channels, train=train)
    root = resolve_data_dir(data_dir)
    if name == "mnist-scenes":
        from convzoo.data.scenes import load_scenes

        scenes = load_scenes(train=train, data_dir=root, size=size, image_size=spec.image_size)
        return scenes.images, scenes.masks if targets == "masks" else scenes.padded_boxes()
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

    def close(self) -> None:
        """End the DataLoader workers of both loaders, if they have any."""
        for loader in (self.train, self.test):
            if hasattr(loader, "close"):
                loader.close()


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
    num_workers: int | None = None,
    channels_last: bool = False,
    test_only: bool = False,
    auto_augment: str | None = None,
    random_erasing: float = 0.0,
    repeated_aug: int = 1,
    targets: str = "labels",
) -> Loaders:
    """Train and test loaders on ``device``; ``pad_to`` zero-pads small images (LeNet-5's 32x32).

    ``test_only`` (evaluation) leaves an in-memory dataset's training split unread (``train``
    is then None), so a missing training file is not what ``eval`` complains about.

    ``train_size`` / ``test_size`` keep only that many images of each split (all when None).
    With ``world_size`` > 1 both loaders are this rank's shard: training shards of equal
    length, test shards that together hold every test image once (``evaluate`` sums them).
    ``num_workers`` (image folders only) defaults to ``default_num_workers()``.
    ``auto_augment`` (a policy, as ``config.parse_auto_augment`` reads it) and ``random_erasing``
    (a probability) augment the training split on top of ``augment``; ``repeated_aug`` > 1
    repeats each training image that many times in a row in the epoch's order (see ``TrainConfig``).
    ``targets`` (``labels``, ``masks`` or ``boxes``: what ``load_tensors`` returns) is what the
    loaders yield beside the images; masks come as int64 (N, H, W), boxes as float32 (N, K, 5),
    or, from ``coco:``/``vocdet:`` folders, as a list of per-image dicts (``data/detection.py``).
    """
    check_targets(spec, targets)
    if targets != "labels":
        _check_geometry_kept(spec, augment, auto_augment, random_erasing)
    sizes = {True: train_size, False: test_size}
    if not spec.in_memory:
        workers = default_num_workers() if num_workers is None else num_workers
        return _build_streaming_loaders(spec, batch_size, eval_batch_size, augment, workers, rank, world_size,
                                        device, sizes, seed, channels_last, auto_augment, random_erasing, repeated_aug)
    from convzoo.config import parse_auto_augment
    from convzoo.data.memory import InMemoryLoader, pad_images, pad_targets

    image_size = max(spec.image_size, pad_to or 0)
    loaders = [None] if test_only else []
    for train in (False,) if test_only else (True, False):
        images, labels = load_tensors(spec, train=train, data_dir=data_dir, size=sizes[train], targets=targets)
        labels = pad_targets(labels, *images.shape[-2:], image_size)
        images = pad_images(images, image_size)
        loaders.append(InMemoryLoader(
            images, labels,
            batch_size=batch_size if train else eval_batch_size,
            mean=spec.mean, std=spec.std, device=device,
            shuffle=train, augmentation=spec.augmentation if (train and augment) else "none",
            seed=seed, drop_last=train, rank=rank, world_size=world_size, channels_last=channels_last,
            auto_augment=parse_auto_augment(auto_augment) if (train and auto_augment) else None,
            random_erasing=random_erasing if train else 0.0, repeats=repeated_aug if train else 1,
        ))
    return Loaders(spec, loaders[0], loaders[1], image_size)


def _check_geometry_kept(spec: DatasetSpec, augment: bool, auto_augment: str | None, random_erasing: float) -> None:
    """Refuse the augmentations that would change an image's pixels and leave its masks or
    boxes as they were: the in-memory crops and flips, the auto-augment policies (shears,
    rotations, translations) and random erasing (noise a mask would still call a digit).
    Streamed segmentation folders crop and flip image and mask together (data/segmentation.py)."""
    from convzoo.errors import ConvzooError

    if augment and spec.in_memory and spec.augmentation != "none":
        raise ConvzooError(f"{spec.name}'s {spec.augmentation} augmentation moves images but not their masks or "
                           "boxes; train it with augment off.")
    for option, used in (("auto_augment", auto_augment), ("random_erasing", random_erasing > 0)):
        if used:
            raise ConvzooError(f"{option} changes images but not their masks or boxes; leave it off for "
                               f"{spec.name}'s {'/'.join(spec.targets)} targets.")


def default_num_workers() -> int:
    """DataLoader workers per loader when the config leaves ``num_workers`` unset: up to 4,
    from the cores this process may run on (its CPU affinity, shared among the processes
    torchrun starts on the node), keeping one for the training loop itself. More workers
    than cores only queue for them, and PyTorch warns about it."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity masks
        cores = os.cpu_count() or 1
    per_process = cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(0, min(4, per_process - 1))


class _DeviceLoader:
    """Moves a DataLoader's CPU batches to the device (non-blocking from pinned memory), in
    the memory format the model uses.

    ``world_size`` > 1 marks a shard of a split that ``evaluate`` sums over the ranks.
    """

    def __init__(self, loader: Any, device: Any, sampler: Any = None, *, channels_last: bool = False,
                 world_size: int = 1) -> None:
        self.loader, self.device, self.sampler = loader, device, sampler
        self.channels_last, self.world_size = channels_last, world_size

    @property
    def num_samples(self) -> int:
        """Images this rank sees per epoch."""
        return len(self.loader.sampler)

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """The epoch the next pass yields, from its batch ``start_step`` on (0: all of it)."""
        if self.sampler is not None:
            self.sampler.set_epoch(epoch, start_step * self.loader.batch_size)

    def close(self) -> None:
        """End the loader's persistent workers now, not when the loader is collected: a
        stopped run ends them before it stops ignoring SIGTERM (engine/interrupts.py)."""
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self.loader._iterator = None

    def __iter__(self):
        import torch

        for images, labels in self.loader:
            images = images.to(self.device, non_blocking=True)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            if isinstance(labels, list):  # detection targets: a dict of tensors per image
                labels = [{key: value.to(self.device, non_blocking=True) for key, value in target.items()}
                          for target in labels]
            else:
                labels = labels.to(self.device, non_blocking=True)
            yield images, labels


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
                             sizes, seed, channels_last, auto_augment, random_erasing, repeated_aug) -> Loaders:
    import torch
    from torch.utils.data import DataLoader, Subset

    from convzoo.data.resumable import ResumableSampler, SeededPerSample
    from convzoo.engine.interrupts import ignore_stop_signals, trainer_catches_sigterm
    from convzoo.seeding import derived_seed

    pin = torch.device(device).type == "cuda"
    collate = None
    if "masks" in spec.targets:
        from convzoo.data.segmentation import build_segmentation_dataset

        train_set = build_segmentation_dataset(spec, train=True, augment=augment)
        test_set = build_segmentation_dataset(spec, train=False, augment=False)
    elif "boxes" in spec.targets:
        from convzoo.data.detection import build_detection_dataset, collate_detection

        train_set = build_detection_dataset(spec, train=True, augment=augment)
        test_set = build_detection_dataset(spec, train=False, augment=False)
        collate = collate_detection  # a list of per-image target dicts: images hold different numbers of boxes
    else:
        from convzoo.data.imagefolder import build_imagefolder_dataset

        train_set = build_imagefolder_dataset(spec, train=True, augment=augment, auto_augment=auto_augment,
                                              random_erasing=random_erasing)
        test_set = build_imagefolder_dataset(spec, train=False, augment=False)
    train_set, test_set = fixed_random_subset(train_set, sizes[True]), fixed_random_subset(test_set, sizes[False])
    # The order of epoch e is drawn from (seed, e), as for in-memory data, on one rank or many;
    # each image's augmentation from (seed, e, index), whichever worker decodes it, so that an
    # epoch resumed at any batch goes on as it would have (see data/resumable.py).
    train_set = SeededPerSample(train_set, seed)
    sampler = ResumableSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True,
                               repeats=repeated_aug)
    # Whatever else a worker draws (Python's and NumPy's generators) is seeded per rank.
    workers_seed = torch.Generator().manual_seed(derived_seed(seed, "workers", rank))
    worker_init = functools.partial(ignore_stop_signals, trainer_catching=trainer_catches_sigterm())
    common = dict(num_workers=num_workers, pin_memory=pin, persistent_workers=num_workers > 0,
                  worker_init_fn=worker_init if num_workers > 0 else None, collate_fn=collate)
    train_loader = DataLoader(
        train_set, batch_size=batch_size, sampler=sampler, drop_last=True, generator=workers_seed, **common
    )
    test_shard = Subset(test_set, range(rank, len(test_set), world_size)) if world_size > 1 else test_set
    test_loader = DataLoader(test_shard, batch_size=eval_batch_size, shuffle=False, **common)
    return Loaders(
        spec,
        _DeviceLoader(train_loader, device, sampler, channels_last=channels_last),
        _DeviceLoader(test_loader, device, channels_last=channels_last, world_size=world_size),
        spec.image_size,
    )
